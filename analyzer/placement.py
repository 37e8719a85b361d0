"""Where a command's captures are analysed: one after the other in this process, in a process
pool or on Dask (analyzer/scale.py), or one big capture split across processes (analyzer/split.py).

The decision needs only the options and the captures' sizes, so it lives apart from the
machinery that runs them: a run in this process does not import that machinery.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Literal

SPLIT_FROM_BYTES = 64 << 20  # a smaller capture is read in about a second: not worth starting processes


def big_capture(captures: Sequence[str], jobs: int) -> bool:
    """Whether one capture is big enough to be split by conversation across `jobs` processes."""
    if jobs < 2 or len(captures) != 1 or captures[0] == "-":
        return False
    try:
        return os.path.getsize(captures[0]) >= SPLIT_FROM_BYTES
    except OSError:  # reported by the serial path, as ever
        return False


def many_at_once(captures: Sequence[str], jobs: int, dask: str | None, timeout: float | None) -> bool:
    """Whether the captures go to a process pool or Dask rather than one after another in this process.

    Standard input stays in this process (so does the live JSONL writer: the CLI asks first).
    """
    if "-" in captures:
        return False
    urls = any("://" in c for c in captures)
    return bool(dask) or timeout is not None or urls or (jobs > 1 and len(captures) > 1)


Placement = Literal["split", "pool", ""]


def placement(
    captures: Sequence[str], jobs: int, dask: str | None, timeout: float | None, *, split: bool, live: bool
) -> Placement:
    """Where the captures are analysed: "split" (one big capture across `jobs` processes), "pool"
    (a process pool or Dask), or "" (in this process, one after another).

    split: the run may split a capture (only findings are kept, and --jobs was asked for or is
    the default). live: findings are written as each conversation ends (the live JSONL writer),
    which only this process can do.
    """
    if live:
        return ""
    if split and big_capture(captures, jobs):
        return "split"
    return "pool" if many_at_once(captures, jobs, dask, timeout) else ""
