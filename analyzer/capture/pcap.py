"""The pcap record walk: classic libpcap files, microsecond or nanosecond timestamps.

Reads big chunks into a bytes buffer and walks the 16-byte record headers in place; only faults
and buffer refills leave the inner loop. Frames come out two ways: `walk_pcap` yields Frame
objects, and `feed_pcap` hands each record's place in the buffer straight to the decoder (the
packet loop of `analyze`, which then builds no Frame and copies no frame bytes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterator

from analyzer.capture.formats import MAX_RECORD_LEN, PCAP_HEADER_LEN, PCAP_RECORD_LEN, SNAPLEN_SLACK
from analyzer.decode.fast import Decoder, Sink
from analyzer.model import Frame
from analyzer.wire import be32, le32

if TYPE_CHECKING:
    from analyzer.capture.reader import Capture


def record_limit(snaplen: int) -> int:
    """The largest captured length a record may claim before we call its header garbage."""
    if 0 < snaplen < MAX_RECORD_LEN:
        return min(MAX_RECORD_LEN, snaplen + SNAPLEN_SLACK)
    return MAX_RECORD_LEN


class PcapWalk:
    """The walk's position in the stream; next_record() moves it on by one record.

    A record whose timestamp fraction is not below one second (`units`) is still delivered,
    with the fraction dropped: seconds + fraction would jump minutes ahead (a 2^31 µs
    fraction is 35 minutes) and fake idle gaps, while the seconds field is usually sound.
    The first such record is reported ("bad-timestamp").
    """

    def __init__(self, cap: Capture, buf: bytes, order: str, units: int, snaplen: int) -> None:
        self.cap = cap
        self.read: Callable[[int], bytes] = cap._source.read
        self.chunk: int = cap._source.chunk
        self.little = order == "<"
        self.units = units
        self.limit = record_limit(snaplen)
        self.buf = buf
        self.pos = PCAP_HEADER_LEN
        self.n = 0  # records delivered
        self.bad_ts = 0
        # the record last delivered: its data is buf[start:start + incl]
        self.start = 0
        self.incl = 0
        self.orig = 0
        self.ts = 0.0

    def next_record(self) -> bool:
        """Move to the next record; False at the end of the stream (after reporting a fault)."""
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
        data = self.read(self.chunk)
        if not data:
            if self.pos < len(self.buf) and not self.cap._source.failed:
                self.cap._warn("truncated", truncated, self.n + 1)
            return False
        self.buf = self.buf[self.pos :] + data
        self.pos = 0
        return True


def walk_pcap(cap: Capture, buf: bytes, order: str, units: int, linktype: int, snaplen: int) -> Iterator[Frame]:
    """Yield the frames of a pcap stream whose first bytes (global header included) are `buf`."""
    walk = PcapWalk(cap, buf, order, units, snaplen)
    try:
        while walk.next_record():
            start = walk.start
            yield Frame(walk.n, walk.ts, walk.incl, walk.orig, linktype, walk.buf[start : start + walk.incl])
    finally:
        cap._finish(walk.n)


def feed_pcap(
    cap: Capture,
    buf: bytes,
    order: str,
    units: int,
    linktype: int,
    snaplen: int,
    decoder: Decoder,
    sink: Sink,
    progress: Callable[[int], None] | None,
) -> None:
    """Decode every frame of a pcap stream in place into `sink`; progress(frames) every 65,536 frames."""
    walk = PcapWalk(cap, buf, order, units, snaplen)
    try:
        while walk.next_record():
            start = walk.start
            decoder.take(walk.buf, start, start + walk.incl, walk.orig, walk.n, walk.ts, linktype, sink)
            if progress is not None and not walk.n & 0xFFFF:
                progress(walk.n)
    finally:
        cap._finish(walk.n)
