"""HLS stage: the integer IR as an hls4ml project (Vitis/Vivado backends) with ticketforge's
spiking layers added through hls4ml's extension API, C-simulated with g++ against the
golden interpreter.  Depends on the IR only, never on torch.

- `extension`: the hls4ml layer classes, templates and the C++ header `nnet_utils/nnet_spiking.h`;
- `from_ir`: IR -> hls4ml ModelGraph (compressed live-neuron and kept-synapse tables);
- `csim`: write, compile and C-simulate; compare scores and spike trains with `==`.
"""
__all__ = ["extension", "from_ir", "csim"]
