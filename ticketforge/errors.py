"""Errors the flow raises for bad input; the CLI prints them without a traceback."""

__all__ = ["TicketforgeError", "ConfigError", "DatasetError", "TicketError"]


class TicketforgeError(Exception):
    """Base class: a problem with the user's input that names what is wrong and the fix."""


class ConfigError(TicketforgeError, ValueError):
    """A config file or override is malformed (unknown key, wrong type, bad value)."""


class DatasetError(TicketforgeError):
    """A dataset is unknown, missing on disk, or malformed."""


class TicketError(TicketforgeError):
    """A ticket folder is missing or does not match the config that loads it."""
