"""Allow `python -m analyzer`."""

import gc

# This process is wsadiag's own and makes no garbage cycles worth collecting (main() pauses the
# collector for the whole command): pause it from the start, as its passes over the modules being
# imported cost a few ms of a start-up.
gc.disable()

from analyzer.cli import entrypoint  # noqa: E402

entrypoint()
