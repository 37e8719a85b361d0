"""The progress bar appears only on a terminal and only for captures that take a while."""

from __future__ import annotations

import io
import time

from analyzer.report.progress import CaptureProgress


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_silent_when_not_a_terminal() -> None:
    stream = io.StringIO()
    with CaptureProgress("big.pcap", total=100, stream=stream, delay=0) as bar:
        bar.update(50)
    assert stream.getvalue() == "" and not bar.shown


def test_silent_for_a_quick_capture() -> None:
    stream = _Tty()
    with CaptureProgress("small.pcap", total=100, stream=stream, delay=60) as bar:
        bar.update(100)
    assert not bar.shown and stream.getvalue() == ""


def test_shown_on_a_terminal_after_the_delay() -> None:
    stream = _Tty()
    with CaptureProgress("big\x1b[2J.pcap", stream=stream, delay=0.01) as bar:
        time.sleep(0.02)
        bar.update(500)
        assert bar.shown
    out = stream.getvalue()
    assert "big" in out and "\x1b[2J" not in out  # the file name is escaped, not executed


def test_counts_frames_without_a_total() -> None:
    stream = _Tty()
    with CaptureProgress("big.pcap", stream=stream, delay=0) as bar:
        bar.update(131072)
    assert "131,072 frames" in stream.getvalue()
