"""RTL stage: mapping an integer IR onto P processing elements and the accelerator's exact
cycle model (the Amaranth generator that meets it is the open RTL issue).  Depends on the
IR only, never on torch."""
__all__ = ["program", "cycles"]
