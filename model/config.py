"""Run configuration: one TOML file per MODEL name, loaded into frozen dataclasses.

`model/configs/<name>.toml` holds four tables, ``[model]``, ``[data]``, ``[train]`` and
``[energy]``; every key is optional and defaults to the field default below.  Overrides
from the command line use ``section.key=value`` (or a bare ``key=value`` when the key
name is unique).  Unknown keys, wrong types and values outside an allowed set fail with a
:class:`ConfigError` that names the key and what is allowed.  Nothing here imports torch.
"""
from __future__ import annotations

import dataclasses
import tomllib
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from ticketforge.errors import ConfigError

__all__ = [
    "ModelConfig", "DataConfig", "TrainConfig", "EnergyConfig", "PruneConfig", "NirConfig", "HwConfig", "RunConfig",
    "CONFIG_DIR", "ARCHITECTURES", "VARIANTS", "DATASETS",
    "load_config", "parse_overrides", "available_configs", "resolve_config_path",
]

CONFIG_DIR = Path(__file__).resolve().parent / "configs"

# Allowed values, checked when a config is built (kept here so the config module stays
# torch-free; the zoo and data registries assert that they agree with these tuples).
ARCHITECTURES = ("conv4", "vgg9", "vgg11", "vgg16", "resnet19", "mlp", "sconv", "sresnet", "spikformer",
                 "spikformer_tiny", "spikformer_small")
VARIANTS = ("ann", "snn", "binw", "slt", "bnn")
DATASETS = ("digits", "mnist5k", "cifar10", "cifar100", "svhn", "fmnist", "synthetic", "nmnist5k", "nmnist", "dvs128gesture", "cifar10dvs")
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("cosine", "none")
RESETS = ("hard", "soft")
SURROGATES = ("atan", "sigmoid")


@dataclass(frozen=True)
class ModelConfig:
    arch: str = "vgg9"
    variant: str = "binw"
    width: float = 1.0
    # Timesteps; `ann` and `bnn` have no time axis and always run with T = 1.
    T: int = 4
    # Membrane decay per timestep, V <- lam * V + I (see ticketforge.model.neurons).
    lam: float = 0.99
    v_threshold: float = 1.0
    reset: str = "hard"
    surrogate: str = "atan"
    # Pruning rate r_p: the fraction of each layer's weights that is masked to zero.
    r_p: float = 0.0
    # BatchNorm affine parameters; None picks the variant's default (frozen-weight
    # searches `binw`/`slt` train no weights, so their BN is non-affine, as in edge-popup).
    bn_affine: bool | None = None
    # Spikformers (model/spikformer.py): "binw" makes the ConvPEP's weights a BinW-SLT ticket
    # at r_p (the SLT paper's P_a), "trained" trains them like the rest; patch_prune is
    # MultiSp's P_b, the fraction of patches pruned after train.epochs (stage 1), followed
    # by train.patch_epochs of training with the patch keep-mask (stage 2).
    pep_weights: str = "trained"
    patch_prune: float = 0.0

    def __post_init__(self) -> None:
        _check_choice("model.arch", self.arch, ARCHITECTURES)
        _check_choice("model.pep_weights", self.pep_weights, ("trained", "binw"))
        _check_range("model.patch_prune", self.patch_prune, 0.0, 1.0, high_open=True)
        _check_choice("model.variant", self.variant, VARIANTS)
        _check_choice("model.reset", self.reset, RESETS)
        _check_choice("model.surrogate", self.surrogate, SURROGATES)
        _check_range("model.width", self.width, 0.0, None, low_open=True)
        _check_range("model.T", self.T, 1, 64)
        _check_range("model.lam", self.lam, 0.0, 1.0, high_open=True)
        _check_range("model.v_threshold", self.v_threshold, 0.0, None, low_open=True)
        _check_range("model.r_p", self.r_p, 0.0, 1.0, high_open=True)

    @property
    def timesteps(self) -> int:
        """Timesteps the network really runs (1 for the non-spiking variants)."""
        return self.T if self.variant in ("snn", "binw", "slt") else 1

    @property
    def affine_bn(self) -> bool:
        if self.bn_affine is not None:
            return self.bn_affine
        return self.variant not in ("binw", "slt")


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "mnist5k"
    # Folder with the on-disk datasets (cifar10, cifar100, svhn, fmnist); falls back to
    # the TICKETFORGE_DATA environment variable.
    data_dir: str = ""
    batch_size: int = 64
    eval_batch_size: int = 500
    # Random crop (`crop_pad`-pixel padding, so shifts of up to that many pixels) and, for
    # CIFAR-like data, horizontal flip.  A fully connected network has no translation
    # invariance, and MNIST digits are centred: 2 pixels suit an MLP on 28x28 digits.
    augment: bool = False
    crop_pad: int = 4

    def __post_init__(self) -> None:
        _check_choice("data.dataset", self.dataset, DATASETS)
        _check_range("data.batch_size", self.batch_size, 1, None)
        _check_range("data.eval_batch_size", self.eval_batch_size, 1, None)
        _check_range("data.crop_pad", self.crop_pad, 0, None)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    seed: int = 0
    # Fine-tune a found ticket (the BinW-SLT paper's FT): a config name or ticket folder.
    # The ticket's masks are frozen and its binary weights are trained (sign with a
    # straight-through gradient); the result is again a binary-weight ticket.
    finetune_from: str = ""
    # Cap on torch's intra-op threads; 0 keeps torch's default (all cores).
    threads: int = 0
    # MultiSp stage 2 (model.patch_prune > 0): epochs of training with the patch keep-mask,
    # from patch_lr (its own schedule: the network has converged; a restart at lr undoes it)
    patch_epochs: int = 2
    patch_lr: float = 0.001

    def __post_init__(self) -> None:
        _check_choice("train.optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("train.schedule", self.schedule, SCHEDULES)
        _check_range("train.epochs", self.epochs, 0, None)
        _check_range("train.lr", self.lr, 0.0, None, low_open=True)
        _check_range("train.threads", self.threads, 0, None)
        _check_range("train.patch_epochs", self.patch_epochs, 0, None)
        _check_range("train.patch_lr", self.patch_lr, 0.0, None, low_open=True)


@dataclass(frozen=True)
class EnergyConfig:
    # 45 nm energies per operation (Horowitz; the papers' convention), picojoules.
    e_mac_pj: float = 4.6
    e_ac_pj: float = 0.9


@dataclass(frozen=True)
class PruneConfig:
    """Settings of `ticketforge prune` (SNN-LTH paper defaults in comments; epochs per round
    come from ``train.epochs``)."""
    rate: float = 0.25            # IMP: fraction of the surviving weights pruned per round (p)
    rounds: int = 8               # IMP: rounds K (0.75**8 -> 89.99% sparsity)
    target: float = 0.0           # synapse sparsity to reach (0: 1 - (1 - rate)**rounds)
    rewind_epoch: int = 1         # late rewinding to the weights after this epoch (paper: 20 of 300)
    scope: str = "global"         # global (one threshold) or local (per layer)
    eb_window: int = 5            # Early-Bird: q
    eb_tau: float = 0.02          # Early-Bird: max mask distance over the last q epochs
    eb_max_epochs: int = 10       # Early-Bird: give up searching after this many epochs
    et_lambda: float = 0.6        # Early-Time: normalised-KL threshold
    et_warmup_epochs: int = 2     # Early-Time: epochs at full T before the KL measurement
    et_images: int = 512          # Early-Time: fixed training subset for the KL
    snip_batches: int = 4         # SNIP: batches of saliency at initialisation
    fsr_threshold: float = 0.01   # DynSNN: fire-spike rate below which a neuron is fading
    reactivate_epoch: int = 2     # DynSNN (training-time): when fading neurons are reactivated
    calibration_images: int = 1000  # DynSNN: training images over which FSR is measured
    recover_epochs: int = 0       # DynSNN (inference-time): optional training/search epochs after
    recover_lr: float = 0.001     #   pruning, neuron masks fixed (0 = pure inference-time pruning)

    def __post_init__(self) -> None:
        _check_range("prune.rate", self.rate, 0.0, 1.0, low_open=True, high_open=True)
        _check_range("prune.rounds", self.rounds, 0, 64)
        _check_range("prune.target", self.target, 0.0, 1.0, high_open=True)
        _check_range("prune.rewind_epoch", self.rewind_epoch, 0, None)
        _check_choice("prune.scope", self.scope, ("global", "local"))
        _check_range("prune.eb_window", self.eb_window, 1, None)
        _check_range("prune.et_lambda", self.et_lambda, 0.0, None, low_open=True)
        _check_range("prune.fsr_threshold", self.fsr_threshold, 0.0, 1.0)


@dataclass(frozen=True)
class NirConfig:
    """A network from another SNN framework instead of a ticket (`ticketforge import`,
    `model/nir_import.py`): with ``file`` set, ``make hw`` imports it in place of the model
    and quantize stages; ``model.T`` is its timesteps and ``data.dataset`` its data."""
    file: str = ""                # the NIR file (relative paths from the working directory)
    dt: float = 0.0               # the exporter's time step (snnTorch: 1e-4); required with file
    reset: str = ""               # hard or soft: NIR does not record it; required with file
    weight_bits: int = 8          # signed bits per weight in the IR (2..8)

    def __post_init__(self) -> None:
        if self.reset:
            _check_choice("nir.reset", self.reset, RESETS)
        _check_range("nir.weight_bits", self.weight_bits, 2, 8)
        _check_range("nir.dt", self.dt, 0.0, None)
        if self.file and (not self.dt or not self.reset):
            raise ConfigError("nir.file needs nir.dt (the exporter's time step, snnTorch: 1e-4) and nir.reset "
                              "(hard or soft: NIR does not record it)")


@dataclass(frozen=True)
class HwConfig:
    """What `make hw` builds after the model stage (the rtl/sim/synth stages' defaults)."""
    board: str = "ulx3s"          # deploy/boards.py; `ticketforge synth --board` overrides
    # the accelerator's datapath (rtl/datapath.py): "lane" (event driven, one synapse per PE
    # per cycle), "bitpar" (bit-parallel, layer-major; pes is then its lane count, 1-32) or
    # "rowstream" (fully connected networks: a weight row of pes lanes per input event a cycle)
    datapath: str = "lane"
    pes: int = 16                 # processing elements (lane: PEs; bitpar, rowstream: lanes)
    fifo_depth: int | None = None  # each PE's event FIFO (lane only); None: the generator's default, 2 x pes
    # the core's clock on the board from the FPGA's PLL (the highest it makes at or below
    # this, MHz); None: the board's oscillator (deploy/pll.py)
    clock_mhz: float | None = None
    # every other setting a hardware build depends on; the command line's options override them
    precision_bits: int = 8       # quantize: bits of threshold precision per channel (--precision-bits)
    # quantize: signed bits of a real-valued ticket's (snn, slt) weights, 2-8, quantized after
    # training; a binary ticket's are 2 whatever this says (--weight-bits)
    weight_bits: int = 8
    memory_style: str = "auto"    # rtl: how synthesis maps the memories: auto, block, logic (--memory-style)
    # rtl: the network's numbers baked in as memory initial values, or "runtime": loaded over
    # the board link before the first image (--weights)
    weights: str = "baked"
    # quantize and rtl: run this ticket on another ticket's runtime-weights bitpar design (a
    # config name, whose build/<name>/rtl is used, or an rtl folder): the IR takes that
    # design's membrane widths and only weights.bin is new (--fit-to); "": its own design
    fit_to: str = ""
    trace: bool = True            # rtl: the per-PE spike-trace debug port (--no-trace)
    simulator: str = "verilator"  # sim: icarus or verilator (--simulator)
    images: int | None = None     # sim and hls: test images to run; None: the whole test split (--images)
    trace_images: int = 2         # sim: images whose every layer's spike trains are checked (--trace-images)
    bitstream: bool = False       # synth: also pack a bitstream (--bitstream)
    hls: bool = False             # hw: also run the hls stage (--hls)
    hls_backend: str = "Vitis"    # hls: the hls4ml backend, Vitis or Vivado (--backend)
    # netlist: test images run through the board's synthesized netlist (yosys synth_<family>
    # with the cell models) after synth, on the simulator above; 0: no netlist stage
    netlist_images: int = 2

    def __post_init__(self) -> None:
        _check_range("hw.precision_bits", self.precision_bits, 2, 16)
        _check_range("hw.weight_bits", self.weight_bits, 2, 8)
        _check_choice("hw.memory_style", self.memory_style, ("auto", "block", "logic"))
        _check_choice("hw.weights", self.weights, ("baked", "runtime"))
        _check_choice("hw.simulator", self.simulator, ("icarus", "verilator"))
        if self.images is not None:
            _check_range("hw.images", self.images, 1, None)
        _check_range("hw.trace_images", self.trace_images, 0, None)
        _check_range("hw.netlist_images", self.netlist_images, 0, None)
        _check_choice("hw.hls_backend", self.hls_backend, ("Vitis", "Vivado"))
        if self.datapath not in ("lane", "bitpar", "rowstream"):
            raise ConfigError(f"hw.datapath must be one of lane, bitpar, rowstream, got {self.datapath!r}")
        _check_range("hw.pes", self.pes, 1, 1024)
        if self.datapath == "bitpar" and self.pes not in (1, 2, 4, 8, 16, 32):
            raise ConfigError(f"hw.pes is the lane count of the bitpar datapath: one of 1, 2, 4, 8, 16, 32 "
                              f"(they divide a 32-bit spike word), got {self.pes}")
        if self.datapath == "rowstream" and self.pes > 64:
            raise ConfigError(f"hw.pes is the lane count of the rowstream datapath: at most 64, got {self.pes}")
        if self.fifo_depth is not None:
            # the generator's own bounds: a FIFO at least one entry deeper than its reader's latency
            from ticketforge.rtl.cycles import MAX_FIFO_DEPTH, MIN_FIFO_DEPTH

            _check_range("hw.fifo_depth", self.fifo_depth, MIN_FIFO_DEPTH, MAX_FIFO_DEPTH)
        if self.clock_mhz is not None:
            _check_range("hw.clock_mhz", self.clock_mhz, 1, 400)


@dataclass(frozen=True)
class RunConfig:
    name: str
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    energy: EnergyConfig = field(default_factory=EnergyConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    nir: NirConfig = field(default_factory=NirConfig)
    hw: HwConfig = field(default_factory=HwConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_SECTIONS: dict[str, type] = {
    "model": ModelConfig, "data": DataConfig, "train": TrainConfig, "energy": EnergyConfig,
    "prune": PruneConfig, "nir": NirConfig, "hw": HwConfig,
}


def available_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))


def resolve_config_path(name_or_path: str) -> Path:
    """A MODEL name resolves to ``model/configs/<name>.toml``; a path is taken as is."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        if not p.is_file():
            raise ConfigError(f"config file {str(p)!r} does not exist")
        return p
    candidate = CONFIG_DIR / f"{name_or_path}.toml"
    if not candidate.is_file():
        raise ConfigError(
            f"unknown config {name_or_path!r}; known configs: {', '.join(available_configs())} "
            f"(or pass a path to a .toml file)")
    return candidate


def load_config(name_or_path: str, overrides: dict[str, str] | None = None) -> RunConfig:
    """Load a config by MODEL name or path and apply ``section.key -> value`` overrides."""
    path = resolve_config_path(name_or_path)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    return build_config(path.stem, raw, overrides or {}, source=str(path))


def build_config(name: str, raw: dict, overrides: dict[str, str], source: str = "<dict>") -> RunConfig:
    unknown = set(raw) - set(_SECTIONS)
    if unknown:
        raise ConfigError(f"{source}: unknown table(s) {sorted(unknown)}; allowed: {sorted(_SECTIONS)}")
    sections: dict[str, dict] = {k: dict(raw.get(k, {})) for k in _SECTIONS}
    for sec, table in sections.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [{sec}] must be a table")
        cls = _SECTIONS[sec]
        known = {f.name for f in fields(cls)}
        for key in table:
            if key not in known:
                raise ConfigError(f"{source}: unknown key {sec}.{key}; allowed keys in [{sec}]: "
                                  f"{', '.join(sorted(known))}")
        for key, value in list(table.items()):
            table[key] = _coerce(f"{sec}.{key}", value, _field_type(cls, key), from_text=False)
    for dotted, text in overrides.items():
        sec, key = _resolve_override_key(dotted)
        sections[sec][key] = _coerce(f"{sec}.{key}", text, _field_type(_SECTIONS[sec], key), from_text=True)
    try:
        parts = {sec: _SECTIONS[sec](**sections[sec]) for sec in _SECTIONS}
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    return RunConfig(name=name, **parts)


def parse_overrides(items: list[str] | None) -> dict[str, str]:
    """Turn ``["train.epochs=3", "r_p=0.5"]`` into ``{"train.epochs": "3", "r_p": "0.5"}``."""
    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set train.epochs=3")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def with_overrides(cfg: RunConfig, **sections: dict) -> RunConfig:
    """Return a copy of `cfg` with some fields replaced, e.g. ``train={"epochs": 1}``."""
    parts = {sec: replace(getattr(cfg, sec), **vals) for sec, vals in sections.items()}
    return replace(cfg, **parts)


# -- helpers -------------------------------------------------------------------------------

def _resolve_override_key(dotted: str) -> tuple[str, str]:
    if "." in dotted:
        sec, key = dotted.split(".", 1)
        if sec not in _SECTIONS:
            raise ConfigError(f"--set {dotted}: unknown table {sec!r}; allowed: {', '.join(_SECTIONS)}")
        if key not in {f.name for f in fields(_SECTIONS[sec])}:
            allowed = ", ".join(f"{sec}.{f.name}" for f in fields(_SECTIONS[sec]))
            raise ConfigError(f"--set {dotted}: unknown key {key!r}; allowed keys: {allowed}")
        return sec, key
    owners = [sec for sec, cls in _SECTIONS.items() if dotted in {f.name for f in fields(cls)}]
    if len(owners) == 1:
        return owners[0], dotted
    if not owners:
        allowed = ", ".join(f"{s}.{f.name}" for s, c in _SECTIONS.items() for f in fields(c))
        raise ConfigError(f"--set {dotted}: unknown key; allowed keys: {allowed}")
    raise ConfigError(f"--set {dotted}: ambiguous key, write one of "
                      f"{', '.join(f'{s}.{dotted}' for s in owners)}")


def _field_type(cls: type, key: str):
    hints = typing.get_type_hints(cls)
    return hints[key]


def _coerce(key: str, value, typ, from_text: bool):
    """Check (TOML) or parse (command line) one value against its field type."""
    optional = typing.get_origin(typ) in (typing.Union, __import__("types").UnionType) \
        and type(None) in typing.get_args(typ)
    base = next((a for a in typing.get_args(typ) if a is not type(None)), typ) if optional else typ
    if from_text:
        if optional and value.lower() in ("none", "auto", ""):
            return None
        try:
            if base is bool:
                if value.lower() in ("true", "1", "yes", "on"):
                    return True
                if value.lower() in ("false", "0", "no", "off"):
                    return False
                raise ValueError
            return base(value)
        except ValueError:
            raise ConfigError(f"{key}: {value!r} is not a valid {base.__name__}") from None
    if value is None and optional:
        return None
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, base) or (base is int and isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {base.__name__}, got {type(value).__name__} {value!r}")
    return value


def _check_choice(key: str, value, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}: unknown value {value!r}; allowed: {', '.join(allowed)}")


def _check_range(key, value, low, high, low_open=False, high_open=False) -> None:
    bad = (low is not None and (value <= low if low_open else value < low)) or \
          (high is not None and (value >= high if high_open else value > high))
    if bad:
        lo = "" if low is None else ("(" if low_open else "[") + str(low)
        hi = "" if high is None else str(high) + (")" if high_open else "]")
        raise ConfigError(f"{key}: {value!r} is out of range {lo or '(-inf'}, {hi or 'inf)'}")
