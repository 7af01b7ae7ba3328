// ticketforge's spiking layers for hls4ml (Vivado/Vitis backends): the integer LIF layer
// of the hardware IR (docs/IR.md), the OR-pool of spikes and the membrane-sum readout.
// Hand-written: hls4ml 1.3 has no spiking layers (its extension API is how they enter).
//
// Layout: a layer processes all T timesteps before the next layer starts.  That is the
// IR's per-timestep order re-associated: layer l at step t reads only layer l-1 at step t
// and its own membranes, so running layer by layer over the whole time window computes
// the same spikes.  Spike tensors are [T][C][H][W] (flatten is a no-op on this layout).
//
// Skipping (what a pruned neuron and a masked synapse cost here: nothing):
// - `live` lists only the neurons that DynSNN kept; pruned neurons get no membrane, no
//   loop iteration, and their spikes stay 0 from the initial clear.
// - `taps` is the compressed synapse table: per output channel, only the kept synapses
//   (position in the C x k x k window and the integer weight), CSR-indexed by
//   `tap_start`.  A masked synapse has no entry, so no iteration and no read.
// - binary weights (weight_bits == 2, values +-1) add or subtract the input: no multiply.
#ifndef NNET_SPIKING_H_
#define NNET_SPIKING_H_

#include "nnet_common.h"

namespace nnet {

struct lif_config {
    // geometry: a linear layer is a 1x1 conv on a C x 1 x 1 input
    static const unsigned T = 1;
    static const unsigned in_c = 1, in_h = 1, in_w = 1;
    static const unsigned out_c = 1, out_h = 1, out_w = 1;
    static const unsigned kernel = 1, stride = 1, padding = 0;
    static const bool input_per_step = true;  // false: the image, the same every step
    static const unsigned n_live = 1, n_taps = 1;
    static const bool binary = true;
    // neuron (docs/IR.md)
    static const unsigned input_shift = 0;
    static const unsigned leak = 0;  // 0 none, 1 shift, 2 fixed
    static const unsigned leak_shift = 0, leak_mult = 0, leak_frac_bits = 0;
    static const bool soft_reset = false;
    static const long long vmin = -32768, vmax = 32767;
    typedef ap_int<16> membrane_t;  // B bits
    typedef ap_int<24> acc_t;       // holds any accumulation of the layer
    typedef ap_int<32> wide_t;      // holds H before saturation
};

template <class CONFIG_T> typename CONFIG_T::wide_t lif_leak(typename CONFIG_T::membrane_t v) {
    typedef typename CONFIG_T::wide_t wide_t;
    if (CONFIG_T::leak == 1)
        return wide_t(v) - (wide_t(v) >> CONFIG_T::leak_shift);  // >> on ap_int is arithmetic
    if (CONFIG_T::leak == 2)
        return (wide_t(v) * wide_t(CONFIG_T::leak_mult)) >> CONFIG_T::leak_frac_bits;
    return wide_t(v);
}

template <class data_T, class res_T, class live_T, class start_T, class tap_T, class w_T, class bias_T,
          class thr_T, typename CONFIG_T>
void lif_layer(data_T input[(CONFIG_T::input_per_step ? CONFIG_T::T : 1) * CONFIG_T::in_c * CONFIG_T::in_h *
                            CONFIG_T::in_w],
               res_T spikes[CONFIG_T::T * CONFIG_T::out_c * CONFIG_T::out_h * CONFIG_T::out_w],
               const live_T live[CONFIG_T::n_live], const start_T tap_start[CONFIG_T::out_c + 1],
               const tap_T taps[CONFIG_T::n_taps], const w_T tap_w[CONFIG_T::n_taps],
               const bias_T bias[CONFIG_T::out_c], const thr_T threshold[CONFIG_T::out_c]) {
    typedef typename CONFIG_T::acc_t acc_t;
    typedef typename CONFIG_T::wide_t wide_t;
    const unsigned n_in = CONFIG_T::in_c * CONFIG_T::in_h * CONFIG_T::in_w;
    const unsigned plane = CONFIG_T::out_h * CONFIG_T::out_w;
    const unsigned n_out = CONFIG_T::out_c * plane;
    const unsigned kk = CONFIG_T::kernel * CONFIG_T::kernel;

    typename CONFIG_T::membrane_t v[CONFIG_T::n_live];  // live neurons only
ClearMembranes:
    for (unsigned i = 0; i < CONFIG_T::n_live; i++)
        v[i] = 0;
ClearSpikes:
    for (unsigned i = 0; i < CONFIG_T::T * n_out; i++)
        spikes[i] = 0;

Steps:
    for (unsigned t = 0; t < CONFIG_T::T; t++) {
        const unsigned x0 = CONFIG_T::input_per_step ? t * n_in : 0;
    LiveNeurons:
        for (unsigned i = 0; i < CONFIG_T::n_live; i++) {
            const unsigned n = live[i];
            const unsigned o = n / plane, pos = n % plane;
            const int oy = pos / CONFIG_T::out_w, ox = pos % CONFIG_T::out_w;
            acc_t acc = 0;
        KeptSynapses:
            for (unsigned k = tap_start[o]; k < tap_start[o + 1]; k++) {
                const unsigned tap = taps[k];
                const unsigned c = tap / kk, r = tap % kk;
                const int iy = oy * int(CONFIG_T::stride) + int(r / CONFIG_T::kernel) - int(CONFIG_T::padding);
                const int ix = ox * int(CONFIG_T::stride) + int(r % CONFIG_T::kernel) - int(CONFIG_T::padding);
                if (iy < 0 || iy >= int(CONFIG_T::in_h) || ix < 0 || ix >= int(CONFIG_T::in_w))
                    continue;  // zero padding
                const data_T xin = input[x0 + (c * CONFIG_T::in_h + iy) * CONFIG_T::in_w + ix];
                if (xin == 0)
                    continue;  // no event: nothing to accumulate
                const acc_t x = xin;
                if (CONFIG_T::binary)
                    acc += (tap_w[k] < 0) ? acc_t(-x) : x;
                else
                    acc += acc_t(tap_w[k] * x);
            }
            wide_t h = lif_leak<CONFIG_T>(v[i]) + (wide_t(acc) << CONFIG_T::input_shift) + wide_t(bias[o]);
            if (h < wide_t(CONFIG_T::vmin))
                h = CONFIG_T::vmin;  // saturate to the membrane's B bits
            if (h > wide_t(CONFIG_T::vmax))
                h = CONFIG_T::vmax;
            const bool fire = h >= wide_t(threshold[o]);
            if (!fire)
                v[i] = h;
            else if (CONFIG_T::soft_reset)
                v[i] = h - wide_t(threshold[o]);
            else
                v[i] = 0;
            spikes[t * n_out + n] = fire;
        }
    }
}

struct spike_pool_config {
    static const unsigned T = 1;
    static const unsigned c = 1, in_h = 2, in_w = 2, kernel = 2;
    static const unsigned out_h = 1, out_w = 1;
};

// k x k max of 0/1 spikes is their OR; rows/columns that do not fill a window are dropped.
template <class data_T, class res_T, typename CONFIG_T>
void spike_pool(data_T input[CONFIG_T::T * CONFIG_T::c * CONFIG_T::in_h * CONFIG_T::in_w],
                res_T output[CONFIG_T::T * CONFIG_T::c * CONFIG_T::out_h * CONFIG_T::out_w]) {
Steps:
    for (unsigned t = 0; t < CONFIG_T::T; t++) {
    Channels:
        for (unsigned c = 0; c < CONFIG_T::c; c++) {
            for (unsigned y = 0; y < CONFIG_T::out_h; y++) {
                for (unsigned x = 0; x < CONFIG_T::out_w; x++) {
                    bool any = false;
                    for (unsigned i = 0; i < CONFIG_T::kernel; i++)
                        for (unsigned j = 0; j < CONFIG_T::kernel; j++)
                            any |= bool(input[((t * CONFIG_T::c + c) * CONFIG_T::in_h + y * CONFIG_T::kernel + i) *
                                                  CONFIG_T::in_w +
                                              x * CONFIG_T::kernel + j]);
                    output[((t * CONFIG_T::c + c) * CONFIG_T::out_h + y) * CONFIG_T::out_w + x] = any;
                }
            }
        }
    }
}

struct spike_readout_config {
    static const unsigned T = 1;
    static const unsigned n_in = 1, n_classes = 1, n_taps = 1;
    static const bool binary = true;
};

// score[k] = sum over t of the class row's kept synapses times the input spikes.
template <class data_T, class res_T, class start_T, class tap_T, class w_T, typename CONFIG_T>
void spike_readout(data_T input[CONFIG_T::T * CONFIG_T::n_in], res_T scores[CONFIG_T::n_classes],
                   const start_T tap_start[CONFIG_T::n_classes + 1], const tap_T taps[CONFIG_T::n_taps],
                   const w_T tap_w[CONFIG_T::n_taps]) {
Classes:
    for (unsigned k = 0; k < CONFIG_T::n_classes; k++) {
        res_T score = 0;
    Steps:
        for (unsigned t = 0; t < CONFIG_T::T; t++) {
        KeptSynapses:
            for (unsigned j = tap_start[k]; j < tap_start[k + 1]; j++) {
                const res_T x = input[t * CONFIG_T::n_in + taps[j]];
                if (CONFIG_T::binary)
                    score += (tap_w[j] < 0) ? res_T(-x) : x;
                else
                    score += res_T(tap_w[j] * x);
            }
        }
        scores[k] = score;
    }
}

} // namespace nnet

#endif
