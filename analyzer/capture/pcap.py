"""Record cursors: where the packet loop stands in a capture; the pcap record walk is one.

A cursor's next_record() moves it to the next record and leaves that record's place in its
attributes (`buf[start:start + incl]`, its wire length, number, time and link type). The
pipeline owns the packet loop over a cursor and hands each place to the decoder, which reads it
where it lies: for pcap, in the reader's own buffer (no Frame built, no frame bytes copied).

The pcap walk reads big chunks into a bytes buffer and walks the 16-byte record headers in
place; only faults and buffer refills leave the inner loop. `frames()` turns any cursor back
into Frame objects, for callers that want them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterator

from mypy_extensions import mypyc_attr

from analyzer.capture.formats import MAX_RECORD_LEN, PCAP_HEADER_LEN, PCAP_RECORD_LEN, SNAPLEN_SLACK
from analyzer.capture.heap import keep_freed_buffers
from analyzer.model import Frame
from analyzer.wire import be32, le32

if TYPE_CHECKING:
    from analyzer.capture.reader import Capture


def record_limit(snaplen: int) -> int:
    """The largest captured length a record may claim before we call its header garbage."""
    if 0 < snaplen < MAX_RECORD_LEN:
        return min(MAX_RECORD_LEN, snaplen + SNAPLEN_SLACK)
    return MAX_RECORD_LEN


# Python subclasses (analyzer.stitch's cursor over several files) must be allowed when compiled.
@mypyc_attr(allow_interpreted_subclasses=True)
class RecordCursor:
    """The record a packet loop stands on: data buf[start:start + incl], frame number n."""

    def __init__(self) -> None:
        self.buf = b""
        self.start = 0
        self.incl = 0
        self.orig = 0  # length on the wire
        self.n = 0  # 1-based frame number of the record last delivered (= records delivered)
        self.ts = 0.0
        self.linktype = 0
        self.closed = False

    def next_record(self) -> bool:
        """Move to the next record; False at the end of the capture (after reporting any fault)."""
        raise NotImplementedError

    def close(self) -> None:
        """The loop is over (at the end, or stopped early): settle the capture's frame count and warnings."""
        self.closed = True


class FrameCursor(RecordCursor):
    """A cursor over Frame objects (the pcapng walk yields them): each frame's data is its own buffer."""

    def __init__(self, cap: Capture, frames: Iterator[Frame]) -> None:
        super().__init__()
        self.cap = cap
        self.source = frames

    def next_record(self) -> bool:
        frame = next(self.source, None)
        if frame is None:
            return False
        self.buf = frame.data
        self.incl = len(frame.data)
        self.orig = frame.wirelen
        self.n = frame.number
        self.ts = frame.ts
        self.linktype = frame.linktype
        return True

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.cap.frames = self.n  # the walk settles warnings itself when it ends


class PcapWalk(RecordCursor):
    """The walk's position in a pcap stream; next_record() moves it on by one record.

    A record whose timestamp fraction is not below one second (`units`) is still delivered,
    with the fraction dropped: seconds + fraction would jump minutes ahead (a 2^31 µs
    fraction is 35 minutes) and fake idle gaps, while the seconds field is usually sound.
    The first such record is reported ("bad-timestamp").
    """

    def __init__(self, cap: Capture, buf: bytes, order: str, units: int, linktype: int, snaplen: int) -> None:
        super().__init__()
        self.cap = cap
        self.linktype = linktype
        self.refill: Callable[[bytes, int, int], bytes] = cap._source.refill
        self.little = order == "<"
        self.units = units
        self.limit = record_limit(snaplen)
        self.buf = buf
        self.pos = PCAP_HEADER_LEN
        self.bad_ts = 0

    def next_record(self) -> bool:
        hlen = PCAP_RECORD_LEN
        while True:
            buf = self.buf
            pos = self.pos
            end = len(buf)
            if pos + hlen > end:
                if not self._refill(
                    f"capture ends inside the record header of frame {self.n + 1} "
                    f"({end - pos} of {hlen} bytes); the frames before it are kept"
                ):
                    return False
                continue
            if self.little:
                sec, frac, incl, orig = le32(buf, pos), le32(buf, pos + 4), le32(buf, pos + 8), le32(buf, pos + 12)
            else:
                sec, frac, incl, orig = be32(buf, pos), be32(buf, pos + 4), be32(buf, pos + 8), be32(buf, pos + 12)
            if incl > self.limit:
                self.cap._warn(
                    "bad-record-length",
                    f"record of frame {self.n + 1} claims {incl} captured bytes (limit {self.limit}); "
                    "the file is corrupt from here on and reading stops",
                    self.n + 1,
                )
                return False
            nxt = pos + hlen + incl
            if nxt > end:
                if not self._refill(
                    f"capture ends inside frame {self.n + 1} ({end - pos - hlen} of {incl} "
                    "data bytes); the frames before it are kept"
                ):
                    return False
                continue
            self.n += 1
            if frac < self.units:
                self.ts = sec + frac / self.units
            else:
                self.ts = float(sec)
                self.bad_ts += 1
                if self.bad_ts == 1:
                    self.cap._warn(
                        "bad-timestamp",
                        f"frame {self.n} has a timestamp fraction of {frac} (must be below {self.units}); "
                        "such timestamps are taken as whole seconds",
                        self.n,
                    )
            self.start = pos + hlen
            self.incl = incl
            self.orig = orig
            self.pos = nxt
            return True

    def _refill(self, truncated: str) -> bool:
        """Read more after the unread tail of the buffer; at the end, report a cut-short record."""
        data = self.refill(self.buf, self.pos, 1)
        keep_freed_buffers(len(data))
        if not data:
            if self.pos < len(self.buf) and not self.cap._source.failed:
                self.cap._warn("truncated", truncated, self.n + 1)
            return False
        self.buf = data
        self.pos = 0
        return True

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.cap._finish(self.n)


def frames(cursor: RecordCursor) -> Iterator[Frame]:
    """The records of a cursor as Frame objects (each one's bytes copied out of the buffer)."""
    try:
        while cursor.next_record():
            start = cursor.start
            yield Frame(
                cursor.n, cursor.ts, cursor.incl, cursor.orig, cursor.linktype, cursor.buf[start : start + cursor.incl]
            )
    finally:
        cursor.close()
