"""Model stage: datasets, the SNN zoo, BinW-SLT/SLT ticket search, pruning, energy, and the
lowering to the hardware IR.

Submodules are imported on use (``from ticketforge.model import zoo``) so that importing
the package itself does not load torch.  The hardware IR it lowers to is ``ticketforge.ir``
(top-level ``ir/``), which never loads torch.
"""
__all__ = ["config", "data", "neurons", "layers", "zoo", "energy", "train", "ticket", "pruning",
           "sweep", "brevitas_view", "quantize", "intsim", "nir_export"]
