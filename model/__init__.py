"""Model stage: datasets, the SNN zoo, BinW-SLT/SLT ticket search, training, energy.

Submodules are imported on use (``from ticketforge.model import zoo``) so that importing
the package itself does not load torch.
"""
__all__ = ["config", "data", "neurons", "layers", "zoo", "energy", "train", "ticket"]
