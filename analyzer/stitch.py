"""Rotated captures read as one (`--stitch`): `tcpdump -C/-G` ring buffers, appliance rotations.

The files are put in order of their first packet's time and their records handed to one packet
loop, so one flow table follows a connection that starts in one file and resets in the next.
Frames are numbered on through the set (file 2's first frame follows file 1's last), which keeps
every layer below the report unchanged; the result then says which frames each file holds
(`CaptureResult.parts`), each finding's Wireshark filter names the file and its own frame
numbers there, and a warning lists the files' frame ranges for the text and Markdown reports.

Files that overlap in time or were given out of time order are read in time order of their first
packets, with a warning: a ring buffer copied off a box often loses its names' order.
"""

from __future__ import annotations

import dataclasses
import os
import re

from analyzer.capture import open_capture
from analyzer.capture.pcap import RecordCursor
from analyzer.capture.reader import Capture
from analyzer.errors import CaptureError, UsageError
from analyzer.model import CapturePart, CaptureResult, CaptureWarning, Finding
from analyzer.rules.engine import frame_set

NAMED_FILES = 4  # a set of more files is named by its first and last
WARNING_CODES: dict[str, str] = {
    "stitched": "which frames of the set each file holds (the files' own numbers start at 1 in each)",
    "stitch-out-of-order": "the files were not given in time order; they are read in order of their first packets",
    "stitch-overlap": "a file starts before the one read before it ends; its packets are read after that one's",
    "stitch-empty": "a file with no packet is left out of the set",
    "stitch-unreadable": "a file of the set could not be opened; the set is read on without it",
}


class _Part:
    def __init__(self, path: str, first_ts: float) -> None:
        self.path = path
        self.first_ts = first_ts


def first_packet_time(path: str) -> float | str | None:
    """The time of a capture's first record, None when it holds none, or why it cannot be read."""
    try:
        with open_capture(path) as cap:
            cursor = cap.records()
            found = cursor.next_record()
            ts = cursor.ts
            cursor.close()
            return ts if found else None
    except CaptureError as exc:
        return str(exc)


class StitchedCursor(RecordCursor):
    """One cursor over the records of several captures, frame numbers running on across them."""

    def __init__(self, stitched: StitchedSet) -> None:
        super().__init__()
        self.set = stitched
        self.index = -1
        self.offset = 0
        self.cap: Capture | None = None
        self.inner: RecordCursor | None = None
        self.last_ts = float("-inf")

    def next_record(self) -> bool:
        while True:
            inner = self.inner
            if inner is not None and inner.next_record():
                self.buf, self.start, self.incl, self.orig = inner.buf, inner.start, inner.incl, inner.orig
                self.ts, self.linktype = inner.ts, inner.linktype
                self.n = self.offset + inner.n
                if self.ts > self.last_ts:
                    self.last_ts = self.ts
                return True
            if not self._next_file():
                return False

    def _next_file(self) -> bool:
        """Close the file read so far and open the next; False when none is left."""
        self._close_file()
        self.index += 1
        parts = self.set.ordered
        if self.index >= len(parts):
            return False
        part = parts[self.index]
        if part.first_ts < self.last_ts:
            self.set.warn(
                "stitch-overlap",
                f"{part.path} starts {self.last_ts - part.first_ts:.6f} s before the file read before it ends: "
                "the files overlap in time (packets are read file after file, not interleaved)",
            )
        try:
            self.cap = open_capture(part.path)
        except CaptureError as exc:
            self.set.warn("stitch-unreadable", f"{exc}; the set is read on without it")
            self.cap = None
            self.set.parts.append(CapturePart(part.path, self.offset + 1, 0, part.first_ts))
            return True
        self.set.adopt(self.cap)
        self.inner = self.cap.records()
        return True

    def _close_file(self) -> None:
        if self.inner is not None and self.cap is not None:
            self.inner.close()
            frames = self.cap.frames
            part = self.set.ordered[self.index]
            self.set.parts.append(CapturePart(part.path, self.offset + 1, frames, part.first_ts))
            self.set.settle(self.cap)
            self.offset += frames
            self.cap.close()
        self.inner = None
        self.cap = None

    def close(self) -> None:
        if not self.closed:
            self._close_file()
            self.closed = True
            self.set.frames = self.offset


class StitchedSet:
    """Several captures as one: what the pipeline opens instead of a single file (see opened)."""

    def __init__(self, paths: list[str], name: str) -> None:
        self.name = name
        self.paths = paths
        self.format = ""
        self.linktypes: list[int] = []
        self.warnings: list[CaptureWarning] = []
        self.drops: dict = {}
        self.frames = 0
        self.parts: list[CapturePart] = []
        timed = [(first_packet_time(p), i, p) for i, p in enumerate(paths)]
        empty = [p for t, _, p in timed if t is None]
        self.errors = [t for t, _, _ in timed if isinstance(t, str)]
        ordered = sorted((t, i, p) for t, i, p in timed if isinstance(t, float))
        self.ordered = [_Part(p, t) for t, _, p in ordered]
        if [i for _, i, _ in ordered] != sorted(i for _, i, _ in ordered):
            self.warn(
                "stitch-out-of-order",
                "the files were not given in the time order of their first packets; they are read in that order: "
                + ", ".join(os.path.basename(p.path) for p in self.ordered[:8])
                + (" ..." if len(self.ordered) > 8 else ""),
            )
        for path in empty:
            self.warn("stitch-empty", f"{path}: no packet; left out of the set")
        for error in self.errors:
            self.warn("stitch-unreadable", f"{error}; the set is read on without it")
        self._cursor = StitchedCursor(self)

    def warn(self, code: str, message: str) -> None:
        self.warnings.append(CaptureWarning(code, message))

    def adopt(self, cap) -> None:
        """A file of the set was opened: its format and link types join the set's."""
        if cap.format and cap.format not in self.format.split(","):
            self.format = f"{self.format},{cap.format}" if self.format else cap.format
        for lt in cap.linktypes:
            if lt not in self.linktypes:
                self.linktypes.append(lt)

    def settle(self, cap) -> None:
        """A file of the set was read: its warnings, named by file, join the set's."""
        self.adopt(cap)
        base = os.path.basename(cap.path) if isinstance(cap.path, str) else str(cap.path)
        for w in cap.warnings:
            self.warnings.append(CaptureWarning(w.code, f"{base}: {w.message}", None))
        if cap.drops:  # pktmon drop records are keyed by the file's own frame numbers
            self.drops.update({self._cursor.offset + n: d for n, d in cap.drops.items()})

    # -- what the pipeline uses of a Capture ----------------------------------------------------

    def opened(self) -> StitchedSet:
        if self.errors and not self.ordered:  # not one file of the set could be read
            raise CaptureError(
                self.errors[0] if len(self.errors) == 1 else f"{self.errors[0]} (and {len(self.errors) - 1} more)"
            )
        return self

    def records(self) -> RecordCursor:
        return self._cursor

    def __enter__(self) -> StitchedSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self._cursor.close()


def set_name(items: list[str], paths: list[str]) -> str:
    """How the report names a stitched set: the directory given, or its files."""
    if len(items) == 1 and os.path.isdir(items[0]):
        return items[0]
    if len(paths) <= NAMED_FILES:
        return " + ".join(paths)
    return f"{paths[0]} + ... + {paths[-1]} ({len(paths)} files)"


def name_files(result: CaptureResult, parts: list[CapturePart]) -> CaptureResult:
    """The result with each finding's filter naming its file(s) and the files' frame ranges listed."""
    if not parts:
        return result
    result.parts = list(parts)
    result.findings = [_in_files(f, parts) for f in result.findings]
    ranges = "; ".join(
        f"{p.first_frame}-{p.first_frame + p.frames - 1} are {p.path}" if p.frames else f"none from {p.path}"
        for p in parts
    )
    result.warnings.insert(0, CaptureWarning("stitched", f"{len(parts)} files read as one capture; frames {ranges}"))
    return result


def locate(frame: int, parts: list[CapturePart]) -> tuple[CapturePart, int] | None:
    """The file holding a frame of the set, and its number in that file."""
    for part in parts:
        if part.first_frame <= frame < part.first_frame + part.frames:
            return part, frame - part.first_frame + 1
    return None


def _in_files(finding: Finding, parts: list[CapturePart]) -> Finding:
    """The finding with a filter per file: Wireshark opens one file at a time, numbered on its own."""
    by_file: dict[str, list[int]] = {}
    for frame in finding.frames:
        where = locate(frame, parts)
        if where is not None:
            by_file.setdefault(where[0].path, []).append(where[1])
    if not by_file:
        return finding
    # Wireshark numbers the streams of each file on its own: the set's stream numbers would
    # mislead there, the addresses and ports (ICMP evidence) still hold.
    rest = _FRAMES.sub("", _STREAM.sub("", finding.wireshark_filter)).strip()
    text = "; ".join(
        f"in {path}: {rest + ' && ' if rest else ''}frame.number in {frame_set(nums)}" for path, nums in by_file.items()
    )
    return dataclasses.replace(finding, wireshark_filter=text)


_STREAM = re.compile(r"^(tcp|udp)\.stream (eq \d+|in \{[^}]*\})( && )?")
_FRAMES = re.compile(r"( && )?frame\.number in \{[^}]*\}$")


def stitched_set(given: list[str], captures: list[str], refused_with: str | None = None) -> StitchedSet:
    """`--stitch`: the captures (expanded from the arguments `given`) as one set.

    refused_with: an option given that cannot be combined with it yet (--evidence, --peer).
    """
    if "-" in captures or any("://" in c for c in captures):
        raise UsageError("--stitch reads files: not standard input or URLs")
    if refused_with:
        raise UsageError("--stitch cannot be combined with --evidence or --peer yet")
    return StitchedSet(captures, set_name(given, captures))
