"""ticketforge: pruned binary-weight spiking lottery tickets -> verified FPGA accelerators.

Stages are subpackages: ``ticketforge.model`` (ticket search, torch), then the hardware
stages ``rtl``, ``hls``, ``sim`` and ``deploy``.  Importing this package loads nothing heavy.
"""
from ticketforge.errors import ConfigError, DatasetError, TicketError, TicketforgeError

__version__ = "0.1.0"
__all__ = ["__version__", "TicketforgeError", "ConfigError", "DatasetError", "TicketError"]
