"""The regression's errors."""
from ticketforge.errors import TicketforgeError

__all__ = ["SimError", "SimMismatch"]


class SimError(TicketforgeError):
    """A simulator is missing or failed to build/run."""


class SimMismatch(TicketforgeError):
    """The RTL disagrees with the reference; details in mismatches.json."""
