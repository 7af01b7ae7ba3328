// ticketforge's spiking layers for hls4ml (Vivado/Vitis backends): the integer LIF layer
// of the hardware IR (docs/IR.md), with or without a residual skip input, spiking
// self-attention, the OR-pool of spikes and the membrane-sum readout.
// Hand-written: hls4ml 1.3 has no spiking layers (its extension API is how they enter).
//
// Layout: a layer processes all T timesteps before the next layer starts.  That is the
// IR's per-timestep order re-associated: layer l at step t reads only its sources (earlier
// layers of the IR) at step t and its own membranes, so running layer by layer over the
// whole time window computes the same spikes.  Spike tensors are [T][C][H][W] (flatten is a no-op on this layout).
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

// One neuron's accumulation over a source's kept synapses at one timestep (shared by the
// main and the skip synapses of a layer; the geometry is the source's).
template <class acc_t, class data_T, class start_T, class tap_T, class w_T, unsigned in_c, unsigned in_h,
          unsigned in_w, unsigned kernel, unsigned stride, unsigned padding, bool binary>
acc_t kept_synapse_sum(const data_T *input, unsigned o, int oy, int ox, const start_T *tap_start,
                       const tap_T *taps, const w_T *tap_w) {
    const unsigned kk = kernel * kernel;
    acc_t acc = 0;
KeptSynapses:
    for (unsigned k = tap_start[o]; k < tap_start[o + 1]; k++) {
        const unsigned tap = taps[k];
        const unsigned c = tap / kk, r = tap % kk;
        const int iy = oy * int(stride) + int(r / kernel) - int(padding);
        const int ix = ox * int(stride) + int(r % kernel) - int(padding);
        if (iy < 0 || iy >= int(in_h) || ix < 0 || ix >= int(in_w))
            continue;  // zero padding
        const data_T xin = input[(c * in_h + iy) * in_w + ix];
        if (xin == 0)
            continue;  // no event: nothing to accumulate
        const acc_t x = xin;
        if (binary)
            acc += (tap_w[k] < 0) ? acc_t(-x) : x;
        else
            acc += acc_t(tap_w[k] * x);
    }
    return acc;
}

// The LIF update of docs/IR.md for one neuron: leak, add the shifted accumulation and the
// bias, saturate to B bits, fire and reset.  Returns the spike.
template <class CONFIG_T, class bias_T, class thr_T>
bool lif_update(typename CONFIG_T::membrane_t &v, typename CONFIG_T::acc_t acc, bias_T bias, thr_T threshold) {
    typedef typename CONFIG_T::wide_t wide_t;
    wide_t h = lif_leak<CONFIG_T>(v) + (wide_t(acc) << CONFIG_T::input_shift) + wide_t(bias);
    if (h < wide_t(CONFIG_T::vmin))
        h = CONFIG_T::vmin;  // saturate to the membrane's B bits
    if (h > wide_t(CONFIG_T::vmax))
        h = CONFIG_T::vmax;
    const bool fire = h >= wide_t(threshold);
    if (!fire)
        v = h;
    else if (CONFIG_T::soft_reset)
        v = h - wide_t(threshold);
    else
        v = 0;
    return fire;
}

// Membranes of the live neurons to 0; every spike to 0 (a pruned neuron's stay 0).
template <typename CONFIG_T, class res_T>
void clear_state(typename CONFIG_T::membrane_t v[CONFIG_T::n_live],
                 res_T spikes[CONFIG_T::T * CONFIG_T::out_c * CONFIG_T::out_h * CONFIG_T::out_w]) {
ClearMembranes:
    for (unsigned i = 0; i < CONFIG_T::n_live; i++)
        v[i] = 0;
ClearSpikes:
    for (unsigned i = 0; i < CONFIG_T::T * CONFIG_T::out_c * CONFIG_T::out_h * CONFIG_T::out_w; i++)
        spikes[i] = 0;
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
    const unsigned n_in = CONFIG_T::in_c * CONFIG_T::in_h * CONFIG_T::in_w;
    const unsigned plane = CONFIG_T::out_h * CONFIG_T::out_w;
    const unsigned n_out = CONFIG_T::out_c * plane;

    typename CONFIG_T::membrane_t v[CONFIG_T::n_live];  // live neurons only
    clear_state<CONFIG_T>(v, spikes);

Steps:
    for (unsigned t = 0; t < CONFIG_T::T; t++) {
        const data_T *x = input + (CONFIG_T::input_per_step ? t * n_in : 0);
    LiveNeurons:
        for (unsigned i = 0; i < CONFIG_T::n_live; i++) {
            const unsigned n = live[i];
            const unsigned o = n / plane, pos = n % plane;
            const int oy = pos / CONFIG_T::out_w, ox = pos % CONFIG_T::out_w;
            const acc_t acc =
                kept_synapse_sum<acc_t, data_T, start_T, tap_T, w_T, CONFIG_T::in_c, CONFIG_T::in_h, CONFIG_T::in_w,
                                 CONFIG_T::kernel, CONFIG_T::stride, CONFIG_T::padding, CONFIG_T::binary>(
                    x, o, oy, ox, tap_start, taps, tap_w);
            spikes[t * n_out + n] = lif_update<CONFIG_T>(v[i], acc, bias[o], threshold[o]);
        }
    }
}

struct lif_skip_config : lif_config {
    // the skip source's geometry and synapses (docs/IR.md, "skip input")
    static const unsigned skip_c = 1, skip_h = 1, skip_w = 1;
    static const unsigned skip_kernel = 1, skip_stride = 1, skip_padding = 0;
    static const bool skip_per_step = true;
    static const unsigned n_skip_taps = 1;
    static const bool skip_binary = false;
};

// A residual layer: the main synapses over `input` plus the skip synapses over `skip`, both
// summed into one accumulation before the shift (a membrane sum).
template <class data_T, class skip_T, class res_T, class live_T, class start_T, class tap_T, class w_T,
          class sstart_T, class stap_T, class sw_T, class bias_T, class thr_T, typename CONFIG_T>
void lif_skip_layer(data_T input[(CONFIG_T::input_per_step ? CONFIG_T::T : 1) * CONFIG_T::in_c * CONFIG_T::in_h *
                                 CONFIG_T::in_w],
                    skip_T skip[(CONFIG_T::skip_per_step ? CONFIG_T::T : 1) * CONFIG_T::skip_c * CONFIG_T::skip_h *
                                CONFIG_T::skip_w],
                    res_T spikes[CONFIG_T::T * CONFIG_T::out_c * CONFIG_T::out_h * CONFIG_T::out_w],
                    const live_T live[CONFIG_T::n_live], const start_T tap_start[CONFIG_T::out_c + 1],
                    const tap_T taps[CONFIG_T::n_taps], const w_T tap_w[CONFIG_T::n_taps],
                    const sstart_T skip_tap_start[CONFIG_T::out_c + 1], const stap_T skip_taps[CONFIG_T::n_skip_taps],
                    const sw_T skip_tap_w[CONFIG_T::n_skip_taps], const bias_T bias[CONFIG_T::out_c],
                    const thr_T threshold[CONFIG_T::out_c]) {
    typedef typename CONFIG_T::acc_t acc_t;
    const unsigned n_in = CONFIG_T::in_c * CONFIG_T::in_h * CONFIG_T::in_w;
    const unsigned n_skip = CONFIG_T::skip_c * CONFIG_T::skip_h * CONFIG_T::skip_w;
    const unsigned plane = CONFIG_T::out_h * CONFIG_T::out_w;
    const unsigned n_out = CONFIG_T::out_c * plane;

    typename CONFIG_T::membrane_t v[CONFIG_T::n_live];
    clear_state<CONFIG_T>(v, spikes);

Steps:
    for (unsigned t = 0; t < CONFIG_T::T; t++) {
        const data_T *x = input + (CONFIG_T::input_per_step ? t * n_in : 0);
        const skip_T *s = skip + (CONFIG_T::skip_per_step ? t * n_skip : 0);
    LiveNeurons:
        for (unsigned i = 0; i < CONFIG_T::n_live; i++) {
            const unsigned n = live[i];
            const unsigned o = n / plane, pos = n % plane;
            const int oy = pos / CONFIG_T::out_w, ox = pos % CONFIG_T::out_w;
            const acc_t main =
                kept_synapse_sum<acc_t, data_T, start_T, tap_T, w_T, CONFIG_T::in_c, CONFIG_T::in_h, CONFIG_T::in_w,
                                 CONFIG_T::kernel, CONFIG_T::stride, CONFIG_T::padding, CONFIG_T::binary>(
                    x, o, oy, ox, tap_start, taps, tap_w);
            const acc_t side =
                kept_synapse_sum<acc_t, skip_T, sstart_T, stap_T, sw_T, CONFIG_T::skip_c, CONFIG_T::skip_h,
                                 CONFIG_T::skip_w, CONFIG_T::skip_kernel, CONFIG_T::skip_stride,
                                 CONFIG_T::skip_padding, CONFIG_T::skip_binary>(s, o, oy, ox, skip_tap_start,
                                                                                skip_taps, skip_tap_w);
            spikes[t * n_out + n] = lif_update<CONFIG_T>(v[i], acc_t(main + side), bias[o], threshold[o]);
        }
    }
}

struct spike_attention_config : lif_config {
    // out_c channels (heads of out_c / heads), tokens = out_h * out_w
    static const unsigned heads = 1;
    typedef ap_uint<16> score_t;  // holds a head's q.k (at most out_c / heads)
};

// Spiking self-attention (docs/IR.md): per head and timestep, the token-by-token score
// s[n][m] = sum over the head's channels e of q[e][n] AND k[e][m] (binary spikes: a popcount
// of an AND, no multiply), then acc[d][n] = sum over m of v[d][m] * s[n][m] into the LIF
// neurons.  No softmax: the power-of-two scale is the layer's input shift.
template <class q_T, class k_T, class v_T, class res_T, class live_T, class bias_T, class thr_T, typename CONFIG_T>
void spike_attention(q_T q[CONFIG_T::T * CONFIG_T::out_c * CONFIG_T::out_h * CONFIG_T::out_w],
                     k_T k[CONFIG_T::T * CONFIG_T::out_c * CONFIG_T::out_h * CONFIG_T::out_w],
                     v_T v_in[CONFIG_T::T * CONFIG_T::out_c * CONFIG_T::out_h * CONFIG_T::out_w],
                     res_T spikes[CONFIG_T::T * CONFIG_T::out_c * CONFIG_T::out_h * CONFIG_T::out_w],
                     const live_T live[CONFIG_T::n_live], const bias_T bias[CONFIG_T::out_c],
                     const thr_T threshold[CONFIG_T::out_c]) {
    typedef typename CONFIG_T::acc_t acc_t;
    typedef typename CONFIG_T::score_t score_t;
    const unsigned tokens = CONFIG_T::out_h * CONFIG_T::out_w;
    const unsigned n_out = CONFIG_T::out_c * tokens;
    const unsigned dh = CONFIG_T::out_c / CONFIG_T::heads;

    typename CONFIG_T::membrane_t v[CONFIG_T::n_live];
    score_t score[CONFIG_T::heads][tokens][tokens];
    clear_state<CONFIG_T>(v, spikes);

Steps:
    for (unsigned t = 0; t < CONFIG_T::T; t++) {
        const unsigned base = t * n_out;
    Scores:
        for (unsigned h = 0; h < CONFIG_T::heads; h++)
            for (unsigned n = 0; n < tokens; n++)
                for (unsigned m = 0; m < tokens; m++) {
                    score_t s = 0;
                    for (unsigned e = h * dh; e < (h + 1) * dh; e++)
                        s += score_t(bool(q[base + e * tokens + n]) & bool(k[base + e * tokens + m]));
                    score[h][n][m] = s;
                }
    LiveNeurons:
        for (unsigned i = 0; i < CONFIG_T::n_live; i++) {
            const unsigned nrn = live[i];
            const unsigned d = nrn / tokens, n = nrn % tokens;
            acc_t acc = 0;
        Values:
            for (unsigned m = 0; m < tokens; m++)
                if (v_in[base + d * tokens + m])
                    acc += score[d / dh][n][m];
            spikes[base + nrn] = lif_update<CONFIG_T>(v[i], acc, bias[d], threshold[d]);
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
