"""A progress bar on stderr for captures that take more than a moment to read.

Shown only when stderr is a terminal (never in pipes, CI logs or tests), and only once a capture
has taken longer than `delay` seconds, so small captures print nothing. Drawn with rich (already a
dependency of the environment; it handles terminal width and redraw). The caller reports progress
every so many frames (the pipeline: every 65536), not per packet, so the hot path stays plain.

    with CaptureProgress("big.pcap") as bar:
        analyze_capture(path, rules, progress=bar.update)   # bar.update(frames_so_far)
"""

from __future__ import annotations

import sys
import time
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:  # rich is imported only when a bar is shown
    from rich.progress import Progress, TaskID

from analyzer.report.common import clean


class CaptureProgress:
    """Context manager that draws a transient bar for one capture once it runs past `delay`."""

    def __init__(
        self,
        label: str,
        total: int | None = None,
        stream: IO[str] | None = None,
        delay: float = 0.5,
        enabled: bool | None = None,
        unit: str = "frames",
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.enabled = enabled if enabled is not None else bool(isatty and isatty())
        self.label = clean(label)  # a file name from the user: no control sequences to the terminal
        self.total = total if total and total > 0 else None
        self.delay = delay
        self.unit = unit
        self._start = time.monotonic()
        self._progress: Progress | None = None  # once shown
        self._task: TaskID | None = None
        self.shown = False

    def __enter__(self) -> CaptureProgress:
        self._start = time.monotonic()
        return self

    def _show(self) -> None:
        from rich.console import Console
        from rich.markup import escape
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        console = Console(file=self.stream, stderr=self.stream is sys.stderr)
        # without a total the bar pulses: a pcap's frame count is unknown until it is read
        progress = self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:,} " + escape(self.unit)),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        progress.start()
        self._task = progress.add_task(escape(self.label), total=self.total)
        self.shown = True

    def update(self, done: int) -> None:
        """Report `done` units (frames) handled so far."""
        if not self.enabled:
            return
        if self._progress is None:
            if time.monotonic() - self._start < self.delay:
                return
            self._show()
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=done)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
