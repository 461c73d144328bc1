"""The sleep cycle, one module per stage."""
