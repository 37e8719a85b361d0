"""Opening a capture: recognise its format by magic and hand back its record cursor (or its frames)."""

from __future__ import annotations

import os
import struct
from typing import IO, TYPE_CHECKING, Any, Iterator, Protocol, runtime_checkable

from analyzer.capture.formats import (
    OTHER_MAGICS,
    PCAP_FCS_PRESENT,
    PCAP_FCS_SHIFT,
    PCAP_HEADER_LEN,
    PCAP_LINKTYPE_MASK,
    PCAP_MAGICS,
    PCAPNG_BOM_BE,
    PCAPNG_BOM_LE,
    PCAPNG_MAGIC,
    PCAPNG_MIN_SHB,
)
from analyzer.capture.pcap import FrameCursor, PcapWalk, RecordCursor, frames
from analyzer.capture.source import Source, open_source
from analyzer.errors import CaptureError
from analyzer.model import CaptureWarning, Frame

if TYPE_CHECKING:
    from analyzer.capture.etl import Drop
    from analyzer.capture.pcapng import Interface

# The CaptureWarning codes this package emits; the frame number is the frame that was lost or
# affected (for a fault between frames, the number the next frame would have had).
WARNING_CODES: dict[str, str] = {
    "truncated": "the capture ends inside a record or block (or its compressed stream ends early)",
    "bad-record-length": "a record claims an impossible captured length; reading stops there",
    "bad-block": "a pcapng block has an impossible or mismatched length, or a bad section header; reading stops",
    "bad-option": "pcapng interface options run past their block; the rest of them are ignored",
    "unknown-interface": "a pcapng packet refers to an interface its section does not describe; it is skipped",
    "bad-timestamp": "a timestamp is out of range; the frame is kept (pcap: fraction dropped), reported once",
    "corrupt-compression": "the gzip/bz2/xz data is corrupt; frames decompressed before it are kept",
    "read-error": "the operating system reported a read error; frames before it are kept",
    "unsupported-event": "ETL packet events that carry no whole frame were skipped",
}

# Each warning code is listed at most this many times; the rest are counted in one summary
# warning, so a capture full of faults cannot grow the list without bound.
WARNINGS_PER_CODE = 10

ETL_MIN_HEAD = 80  # an ETL buffer header and the first event record's head
HINT_CONVERT = "if it is a capture in another format, convert it with `editcap -F pcap IN OUT` (Wireshark)"
HINT_TEXT = (
    "this looks like text, e.g. tcpdump's printed output: capture with `tcpdump -w FILE`, "
    "or turn a hex dump into a pcap with text2pcap"
)


class Capture:
    """An open capture: walk its records() (the packet loop) or iterate it for Frames.

    `format`, `linktypes` and `warnings` describe it; `linktypes` and `warnings` grow while
    reading (pcapng interfaces appear as they are read), and `frames` is set once the walk ends.
    Both ways of reading share one position: reading again continues where the last stopped.
    """

    def __init__(self, source: Source) -> None:
        self.path = source.path
        self.format = ""
        self.linktypes: list[int] = []
        self.warnings: list[CaptureWarning] = []
        self.snaplen = 0  # pcap header snaplen (pcapng: per interface)
        self.fcs_len = -1  # pcap header FCS length in bytes when the F bit says so, else -1
        self._source = source
        self._ifaces: list[Interface] = []
        self._consumed = 0  # bytes dropped from the front of the walk's buffer (for messages)
        self._counts: dict[str, int] = {}
        self._frames: Iterator[Frame] = iter(())
        self._cursor: RecordCursor = FrameCursor(self, self._frames)
        self.frames = 0  # frames read, once a walk has ended
        self.drops: dict[int, Drop] = {}  # ETL (pktmon): frame number -> why Windows dropped that packet
        self.appearances = "wire"  # ETL (pktmon): "wire" keeps one appearance per packet, "all" every one
        source.warn = lambda code, message: self._warn(code, message, None)

    def __iter__(self) -> Iterator[Frame]:
        return self._frames

    def records(self) -> RecordCursor:
        """The cursor a packet loop walks: next_record() until False, then close() (also when stopped early)."""
        return self._cursor

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the file (a file object passed in by the caller is left open)."""
        self._source.close()

    def _warn(self, code: str, message: str, frame: int | None) -> None:
        count = self._counts.get(code, 0) + 1
        self._counts[code] = count
        if count <= WARNINGS_PER_CODE:
            # the stream-level warnings (compression, read errors) name the last frame read
            self.warnings.append(CaptureWarning(code, message, frame))

    def _finish(self, frames: int) -> None:
        """Called once when the walk ends: summarise warnings that were not all listed."""
        self.frames = frames
        for code, count in self._counts.items():
            if count > WARNINGS_PER_CODE:
                self.warnings.append(
                    CaptureWarning(code, f"{count - WARNINGS_PER_CODE} more '{code}' warnings not listed", None)
                )
        self._counts = {}
        for i, w in enumerate(self.warnings):
            if w.frame is None and w.code in ("truncated", "corrupt-compression", "read-error"):
                self.warnings[i] = CaptureWarning(w.code, f"{w.message} (after frame {frames})", frames + 1)


def open_capture(src: str | os.PathLike[str] | IO[bytes], *, appearances: str = "wire") -> Capture:
    """Open a pcap/pcapng/ETL capture (maybe gzip/bz2/xz compressed) from a path, "-" or a file object.

    appearances: for pktmon ETL files, "wire" (one frame per packet, the one nearest the wire) or
    "all" (every component's copy, as Microsoft's conversion writes them).
    Raises CaptureError with a one-line message naming the path when nothing can be read.
    """
    source = _begun(src)
    try:
        return _capture(source, appearances)
    except BaseException:
        source.close()
        raise


def _begun(src: str | os.PathLike[str] | IO[bytes]) -> Source:
    """The source opened and begun (its first bytes read, its decompression started), or closed again."""
    source = open_source(src)
    try:
        source.begin()
    except BaseException:
        source.close()
        raise
    return source


def _capture(source: Source, appearances: str) -> Capture:
    """The capture on a begun source: its first bytes read and its format recognised."""
    cap = Capture(source)
    cap.appearances = appearances
    _detect(cap, source, source.first())
    return cap


@runtime_checkable
class Opens(Protocol):
    """A source that opens itself (analyze_capture takes one): captures read as one
    (analyzer/stitch.py), or a capture the command line opened early (OpenedEarly). Here, not in
    the compiled pipeline: a protocol class mypyc compiles is no protocol to runtime_checkable."""

    def opened(self) -> Any:
        """The capture to read (a Capture or what behaves as one); raises CaptureError."""
        ...


class OpenedEarly:
    """A capture file opened before its analysis starts, so that its decompression runs meanwhile.

    The command line opens the first capture right after parsing its arguments: a compressed one
    is then decompressed (in its forked child, analyzer/capture/source.py) while the rules load
    and the report modules are imported. Only the file is opened and its decompression started
    here, without waiting for its first bytes; opened() reads them and recognises the format, at
    the point the capture would have been opened, and raises there what opening met.
    """

    def __init__(self, path: str) -> None:
        self.name = path
        self._source: Source | None = None
        self._error: CaptureError | None = None
        try:
            self._source = _begun(path)
        except CaptureError as exc:
            self._error = exc

    def opened(self, appearances: str = "wire") -> Capture:
        """The open capture, once (whoever takes it closes it); raises the CaptureError opening meets."""
        if self._error is not None:
            raise self._error
        source, self._source = self._source, None
        assert source is not None, "a capture opened early is read once"
        try:
            return _capture(source, appearances)
        except BaseException:
            source.close()
            raise

    def close(self) -> None:
        """Close the file if it was not taken (the run stopped before its analysis); stops its child."""
        if self._source is not None:
            self._source.close()
            self._source = None


def _detect(cap: Capture, source: Source, head: bytes) -> None:
    path = source.path
    suffix = f"+{source.compression}" if source.compression else ""
    inside = f" after {source.compression} decompression" if source.compression else ""
    if not head:
        raise CaptureError(f"{path}: empty file{inside}: not a pcap or pcapng capture")
    magic = head[:4]
    if magic in PCAP_MAGICS:
        order, units, name = PCAP_MAGICS[magic]
        head = source.top_up(head, PCAP_HEADER_LEN)
        if len(head) < PCAP_HEADER_LEN:
            raise CaptureError(
                f"{path}: file ends inside the pcap header ({len(head)} of {PCAP_HEADER_LEN} bytes){inside}"
            )
        snaplen, ltinfo = struct.unpack_from(order + "II", head, 16)
        cap.format = name + suffix
        cap.snaplen = snaplen
        cap.linktypes.append(ltinfo & PCAP_LINKTYPE_MASK)
        if ltinfo & PCAP_FCS_PRESENT:
            cap.fcs_len = 2 * (ltinfo >> PCAP_FCS_SHIFT)  # counted in 16-bit units
        walk = PcapWalk(cap, head, order, units, ltinfo & PCAP_LINKTYPE_MASK, snaplen)
        cap._cursor = walk
        cap._frames = frames(walk)
        return
    if magic == PCAPNG_MAGIC:
        head = source.top_up(head, 12)
        if len(head) < 12:
            raise CaptureError(f"{path}: file ends inside the pcapng section header ({len(head)} bytes){inside}")
        if head[8:12] not in (PCAPNG_BOM_LE, PCAPNG_BOM_BE):
            raise CaptureError(
                f"{path}: not a pcapng capture: bad byte-order magic {head[8:12].hex()}", hint=HINT_CONVERT
            )
        head = source.top_up(head, PCAPNG_MIN_SHB)
        if len(head) < PCAPNG_MIN_SHB:
            raise CaptureError(f"{path}: file ends inside the pcapng section header ({len(head)} bytes){inside}")
        cap.format = "pcapng" + suffix
        from analyzer.capture.pcapng import PcapngWalk  # pcapng only: not on a pcap's start-up

        ng = PcapngWalk(cap, head)
        cap._cursor = ng
        cap._frames = frames(ng)
        return
    head = source.top_up(head, ETL_MIN_HEAD)
    from analyzer.capture.etl import looks_like_etl, walk_etl  # ETL only: not on a pcap's start-up

    if looks_like_etl(head):
        cap.format = "etl" + suffix
        cap._frames = walk_etl(cap, head, cap.appearances)
        cap._cursor = FrameCursor(cap, cap._frames)
        return
    other = next((what for m, what in OTHER_MAGICS.items() if head.startswith(m)), None)
    if other:
        raise CaptureError(
            f"{path}: a {other}, not a pcap or pcapng capture{inside}",
            hint="convert it with `editcap -F pcap IN OUT` (Wireshark)",
        )
    if len(head) < 4:
        raise CaptureError(f"{path}: file too short ({len(head)} bytes){inside}: not a pcap or pcapng capture")
    head = source.top_up(head, 64)
    hint = HINT_TEXT if _looks_like_text(head) else HINT_CONVERT
    raise CaptureError(f"{path}: not a pcap or pcapng capture (starts with {head[:4].hex()}){inside}", hint=hint)


def _looks_like_text(data: bytes) -> bool:
    for cut in range(4):  # the sample may end inside a multi-byte character
        try:
            text = data[: len(data) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
        return all(c.isprintable() or c in "\r\n\t" for c in text)
    return False
