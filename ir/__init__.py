"""The hardware IR: schema, disk format, validation, passes, golden interpreter, random IRs.

Torch-free (numpy only): every hardware backend depends on this package and nothing
torch-side.  The integer semantics are written down in docs/IR.md.
"""
from ticketforge.ir.chain import chain_form, copy_neurons
from ticketforge.ir.golden import GoldenResult, run
from ticketforge.ir.io import graph_from_dict, graph_to_dict, load_graph, load_test_inputs, save_graph
from ticketforge.ir.passes import (LOWERING_PASSES, compact_pruned_neurons, flip_negative_channels,
                                         fold_batchnorm, integerize, size_membranes)
from ticketforge.ir.random import random_graph, random_images, random_ticket_like
from ticketforge.ir.schema import (INPUT, SCHEMA_ID, SCHEMA_VERSION, Graph, InputSpec, IRError, Layer,
                                         Neuron)
from ticketforge.ir.validate import validate

__all__ = [
    "Graph", "Layer", "Neuron", "InputSpec", "IRError", "SCHEMA_ID", "SCHEMA_VERSION", "INPUT",
    "load_graph", "save_graph", "load_test_inputs", "graph_to_dict", "graph_from_dict", "validate", "run", "GoldenResult",
    "fold_batchnorm", "flip_negative_channels", "integerize", "size_membranes",
    "compact_pruned_neurons", "LOWERING_PASSES", "chain_form", "copy_neurons", "random_graph", "random_images", "random_ticket_like",
]
