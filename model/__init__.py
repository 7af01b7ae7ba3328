"""Model stage: datasets, the SNN zoo, BinW-SLT/SLT ticket search, pruning, energy, and the
lowering to the hardware IR.

Submodules are imported on use (``from ticketforge.model import zoo``) so that importing
the package itself does not load torch; ``ticketforge.model.ir`` never loads it.
"""
__all__ = ["config", "data", "neurons", "layers", "zoo", "energy", "train", "ticket", "pruning",
           "sweep", "ir", "brevitas_view", "quantize", "intsim", "nir_export"]
