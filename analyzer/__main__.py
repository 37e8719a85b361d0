"""Allow `python -m analyzer`."""

from analyzer.cli import entrypoint

entrypoint()
