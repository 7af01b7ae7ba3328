"""ticketforge's spiking layers as an hls4ml extension (hls4ml 1.3 has none).

Five hls4ml layer classes, their Vivado/Vitis templates and one C++ header
(`hls/nnet_utils/nnet_spiking.h`), registered through hls4ml's extension API
(`register_layer`, `backend.register_template`, `backend.register_source`):

- `SpikingLIF`: a conv or linear layer of integer LIF neurons over all T steps, with its
  compressed tables (live neurons, kept synapses) as hls4ml weight variables;
- `SpikingSkipLIF`: the same with a residual skip input (two sources, two synapse tables,
  one accumulation);
- `SpikeAttention`: spiking self-attention over three sources (Q, K, V), AND + popcount;
- `SpikePool`: the k x k OR-pool of spikes;
- `SpikeReadout`: the membrane-sum readout (class scores summed over T).

The layers are built from the IR by `ticketforge.hls.from_ir`, not from a torch model:
there is no frontend handler to register.
"""
from __future__ import annotations

from pathlib import Path

import hls4ml
import numpy as np
from hls4ml.backends.template import FunctionCallTemplate, LayerConfigTemplate
from hls4ml.model.layers import Layer
from hls4ml.model.types import IntegerPrecisionType

__all__ = ["SpikingLIF", "SpikingSkipLIF", "SpikeAttention", "SpikePool", "SpikeReadout", "HEADER", "BACKENDS",
           "register"]

HEADER = Path(__file__).parent / "nnet_utils" / "nnet_spiking.h"
BACKENDS = ("Vitis", "Vivado")
_INCLUDE = ["nnet_utils/nnet_spiking.h"]


def int_type(values: np.ndarray | int, signed: bool | None = None) -> IntegerPrecisionType:
    """The narrowest ap_(u)int holding every value (at least 1 bit)."""
    a = np.asarray(values, dtype=np.int64)
    lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
    if signed is None:
        signed = lo < 0
    if signed:
        width = max(max(hi, 0).bit_length(), max(-lo - 1, 0).bit_length()) + 1
    else:
        width = max(hi.bit_length(), 1)
    return IntegerPrecisionType(width=width, signed=signed)


class _TableLayer(Layer):
    """A layer whose tables (numpy arrays in `tables`) become hls4ml weight variables."""

    _tables: tuple[str, ...] = ()

    def _add_tables(self) -> None:
        for name in self._tables:
            data = np.asarray(self.get_attr("tables")[name], dtype=np.int64)
            signed = name in ("tap_w", "skip_tap_w", "bias", "threshold")
            self.add_weights_variable(name=name, var_name=f"{name}{{index}}", type_name=f"{name}{{index}}_t",
                                      precision=int_type(data, signed=signed), data=data)


class SpikingLIF(_TableLayer):
    """Output: spikes [T * out_c * out_h * out_w], 1 bit, t-major."""

    _tables = ("live", "tap_start", "taps", "tap_w", "bias", "threshold")

    def initialize(self):
        self.add_output_variable([self.get_attr("T") * self.get_attr("n_out")],
                                 precision=IntegerPrecisionType(width=1, signed=False))
        self._add_tables()


class SpikingSkipLIF(_TableLayer):
    """A residual LIF layer: inputs (main source, skip source); output as `SpikingLIF`'s.
    (Not a subclass of it: hls4ml picks a layer's templates by its class.)"""

    _tables = SpikingLIF._tables + ("skip_tap_start", "skip_taps", "skip_tap_w")

    def initialize(self):
        self.add_output_variable([self.get_attr("T") * self.get_attr("n_out")],
                                 precision=IntegerPrecisionType(width=1, signed=False))
        self._add_tables()


class SpikeAttention(_TableLayer):
    """Inputs (Q, K, V); output: spikes [T * C * H * W], 1 bit, t-major."""

    _tables = ("live", "bias", "threshold")

    def initialize(self):
        self.add_output_variable([self.get_attr("T") * self.get_attr("n_out")],
                                 precision=IntegerPrecisionType(width=1, signed=False))
        self._add_tables()


class SpikePool(Layer):
    def initialize(self):
        self.add_output_variable([self.get_attr("T") * self.get_attr("c") * self.get_attr("out_h")
                                  * self.get_attr("out_w")], precision=IntegerPrecisionType(width=1, signed=False))


class SpikeReadout(_TableLayer):
    """Output: the class scores (the IR's integer `scores`)."""

    _tables = ("tap_start", "taps", "tap_w")

    def initialize(self):
        self.add_output_variable([self.get_attr("n_classes")],
                                 precision=IntegerPrecisionType(width=self.get_attr("score_bits"), signed=True))
        self._add_tables()


_LIF_CONFIG = """struct config{index} : nnet::lif_config {{
    static const unsigned T = {T};
    static const unsigned in_c = {in_c}, in_h = {in_h}, in_w = {in_w};
    static const unsigned out_c = {out_c}, out_h = {out_h}, out_w = {out_w};
    static const unsigned kernel = {kernel}, stride = {stride}, padding = {padding};
    static const bool input_per_step = {input_per_step};
    static const unsigned n_live = {n_live}, n_taps = {n_taps};
    static const bool binary = {binary};
    static const unsigned input_shift = {input_shift};
    static const unsigned leak = {leak_code};
    static const unsigned leak_shift = {leak_shift}, leak_mult = {leak_mult}, leak_frac_bits = {leak_frac_bits};
    static const bool soft_reset = {soft_reset};
    static const long long vmin = {vmin}LL, vmax = {vmax}LL;
    typedef ap_int<{membrane_bits}> membrane_t;
    typedef ap_int<{acc_bits}> acc_t;
    typedef ap_int<{wide_bits}> wide_t;
}};
"""

_SKIP_CONFIG = _LIF_CONFIG.replace("nnet::lif_config", "nnet::lif_skip_config").replace("}};\n", """\
    static const unsigned skip_c = {skip_c}, skip_h = {skip_h}, skip_w = {skip_w};
    static const unsigned skip_kernel = {skip_kernel}, skip_stride = {skip_stride}, skip_padding = {skip_padding};
    static const bool skip_per_step = {skip_per_step};
    static const unsigned n_skip_taps = {n_skip_taps};
    static const bool skip_binary = {skip_binary};
}};
""")

_ATTENTION_CONFIG = _LIF_CONFIG.replace("nnet::lif_config", "nnet::spike_attention_config").replace("}};\n", """\
    static const unsigned heads = {heads};
    typedef ap_uint<{score_bits}> score_t;
}};
""")

_POOL_CONFIG = """struct config{index} : nnet::spike_pool_config {{
    static const unsigned T = {T};
    static const unsigned c = {c}, in_h = {in_h}, in_w = {in_w}, kernel = {kernel};
    static const unsigned out_h = {out_h}, out_w = {out_w};
}};
"""

_READOUT_CONFIG = """struct config{index} : nnet::spike_readout_config {{
    static const unsigned T = {T};
    static const unsigned n_in = {n_in}, n_classes = {n_classes}, n_taps = {n_taps};
    static const bool binary = {binary};
}};
"""


def _table_params(node: Layer, names: tuple[str, ...]) -> dict:
    params = {}
    for name in names:
        var = node.get_weights(name)
        params[name] = var.name
        params[name + "_t"] = var.type.name
    return params


class _Config(LayerConfigTemplate):
    layer: type
    text: str

    def __init__(self):
        super().__init__(self.layer)
        self.template = self.text

    def format(self, node):
        return self.template.format(**self._default_config_params(node))


class SpikingLIFConfig(_Config):
    layer, text = SpikingLIF, _LIF_CONFIG


class SpikingSkipLIFConfig(_Config):
    layer, text = SpikingSkipLIF, _SKIP_CONFIG


class SpikeAttentionConfig(_Config):
    layer, text = SpikeAttention, _ATTENTION_CONFIG


class SpikePoolConfig(_Config):
    layer, text = SpikePool, _POOL_CONFIG


class SpikeReadoutConfig(_Config):
    layer, text = SpikeReadout, _READOUT_CONFIG


class _Function(FunctionCallTemplate):
    """The layer's C++ call: hls4ml's default parameters plus each table's name and type."""
    layer: type
    text: str

    def __init__(self):
        super().__init__(self.layer, include_header=_INCLUDE)

    def format(self, node):
        p = self._default_function_params(node)
        p.update(_table_params(node, getattr(self.layer, "_tables", ())))
        for i, name in enumerate(node.inputs):      # a layer with several sources: input0, input1, ...
            var = node.get_input_variable(name)
            p[f"input{i}"], p[f"input{i}_t"] = var.name, var.type.name
        return self.text.format(**p)


class SpikingLIFFunction(_Function):
    layer = SpikingLIF
    text = ("nnet::lif_layer<{input_t}, {output_t}, {live_t}, {tap_start_t}, {taps_t}, {tap_w_t}, {bias_t}, "
            "{threshold_t}, {config}>({input}, {output}, {live}, {tap_start}, {taps}, {tap_w}, {bias}, {threshold});")


class SpikingSkipLIFFunction(_Function):
    layer = SpikingSkipLIF
    text = ("nnet::lif_skip_layer<{input0_t}, {input1_t}, {output_t}, {live_t}, {tap_start_t}, {taps_t}, {tap_w_t}, "
            "{skip_tap_start_t}, {skip_taps_t}, {skip_tap_w_t}, {bias_t}, {threshold_t}, {config}>"
            "({input0}, {input1}, {output}, {live}, {tap_start}, {taps}, {tap_w}, {skip_tap_start}, {skip_taps}, "
            "{skip_tap_w}, {bias}, {threshold});")


class SpikeAttentionFunction(_Function):
    layer = SpikeAttention
    text = ("nnet::spike_attention<{input0_t}, {input1_t}, {input2_t}, {output_t}, {live_t}, {bias_t}, {threshold_t}, "
            "{config}>({input0}, {input1}, {input2}, {output}, {live}, {bias}, {threshold});")


class SpikePoolFunction(_Function):
    layer = SpikePool
    text = "nnet::spike_pool<{input_t}, {output_t}, {config}>({input}, {output});"


class SpikeReadoutFunction(_Function):
    layer = SpikeReadout
    text = ("nnet::spike_readout<{input_t}, {output_t}, {tap_start_t}, {taps_t}, {tap_w_t}, {config}>"
            "({input}, {output}, {tap_start}, {taps}, {tap_w});")


_registered: set[str] = set()


def register(backend_name: str = "Vitis") -> None:
    """Register the layers, templates and C++ source with hls4ml (idempotent)."""
    if backend_name not in BACKENDS:
        raise ValueError(f"hls backend {backend_name!r} is not supported by the spiking extension; "
                         f"choose one of {', '.join(BACKENDS)}")
    if not _registered:
        for cls in (SpikingLIF, SpikingSkipLIF, SpikeAttention, SpikePool, SpikeReadout):
            hls4ml.model.layers.register_layer(cls.__name__, cls)
    if backend_name in _registered:
        return
    backend = hls4ml.backends.get_backend(backend_name)
    for template in (SpikingLIFConfig, SpikingSkipLIFConfig, SpikeAttentionConfig, SpikePoolConfig,
                     SpikeReadoutConfig, SpikingLIFFunction, SpikingSkipLIFFunction, SpikeAttentionFunction,
                     SpikePoolFunction, SpikeReadoutFunction):
        backend.register_template(template)
    backend.register_source(HEADER)
    _registered.add(backend_name)
