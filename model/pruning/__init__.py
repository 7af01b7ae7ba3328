"""Pruning methods: synapse tickets (IMP, Early-Bird, Early-Time, random, SNIP, ANN
transfer) and DynSNN neuron pruning.  See ``run.prune`` for the `ticketforge prune` entry."""
__all__ = ["masks", "lth", "dynsnn", "run"]
