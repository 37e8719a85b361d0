"""Frame numbers as people write them: runs of consecutive numbers."""

from __future__ import annotations

from collections.abc import Iterable


def frame_runs(frames: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted, distinct frame numbers as (first, last) runs: (6, 14, 15, 16) -> [(6, 6), (14, 16)]."""
    numbers = sorted(set(frames))
    runs: list[tuple[int, int]] = []
    for n in numbers:
        if runs and n == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], n)
        else:
            runs.append((n, n))
    return runs
