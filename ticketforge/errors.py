"""Errors the flow raises for bad input; the CLI prints them without a traceback."""

__all__ = ["TicketforgeError", "ConfigError", "DatasetError", "TicketError", "UsageError", "StageMissingError",
           "UnsupportedError"]


class TicketforgeError(Exception):
    """Base class: a problem with the user's input that names what is wrong and the fix."""


class ConfigError(TicketforgeError, ValueError):
    """A config file or override is malformed (unknown key, wrong type, bad value)."""


class DatasetError(TicketforgeError):
    """A dataset is unknown, missing on disk, or malformed."""


class TicketError(TicketforgeError):
    """A ticket folder is missing or does not match the config that loads it."""


class UsageError(TicketforgeError, ValueError):
    """A command-line option or an API argument has a bad value; the message shows the value
    and what is allowed."""


class StageMissingError(TicketforgeError):
    """A stage's input, an earlier stage's output, is missing: the message names the command
    that makes it."""


class UnsupportedError(TicketforgeError):
    """A well-formed input that a back end cannot take (a capability limit): the message names
    the layer and what the back end takes."""
