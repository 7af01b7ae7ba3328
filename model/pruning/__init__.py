"""Pruning methods: synapse tickets (IMP, Early-Bird, Early-Time, random, SNIP, ANN
transfer), DynSNN neuron pruning and MultiSp patch pruning.  See ``run.prune`` for the `ticketforge prune` entry."""
__all__ = ["masks", "lth", "dynsnn", "multisp", "run"]
