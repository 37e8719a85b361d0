"""The pcap record walk: classic libpcap files, microsecond or nanosecond timestamps.

Reads big chunks into a bytes buffer and walks the 16-byte record headers with one
`struct.unpack_from` each; only faults and buffer refills leave the inner loop.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Iterator

from analyzer.capture.formats import MAX_RECORD_LEN, PCAP_HEADER_LEN, PCAP_RECORD_LEN, SNAPLEN_SLACK
from analyzer.model import Frame

if TYPE_CHECKING:
    from analyzer.capture.reader import Capture


def record_limit(snaplen: int) -> int:
    """The largest captured length a record may claim before we call its header garbage."""
    if 0 < snaplen < MAX_RECORD_LEN:
        return min(MAX_RECORD_LEN, snaplen + SNAPLEN_SLACK)
    return MAX_RECORD_LEN


def walk_pcap(cap: Capture, buf: bytes, order: str, units: int, linktype: int, snaplen: int) -> Iterator[Frame]:
    """Yield the frames of a pcap stream whose first bytes (global header included) are `buf`.

    A record whose timestamp fraction is not below one second (`units`) is still yielded,
    with the fraction dropped: seconds + fraction would jump minutes ahead (a 2^31 µs
    fraction is 35 minutes) and fake idle gaps, while the seconds field is usually sound.
    The first such record is reported ("bad-timestamp").
    """
    unpack = struct.Struct(order + "IIII").unpack_from
    read = cap._source.read
    chunk = cap._source.chunk
    new = tuple.__new__
    F = Frame
    limit = record_limit(snaplen)
    hlen = PCAP_RECORD_LEN
    pos = PCAP_HEADER_LEN
    end = len(buf)
    n = 0
    bad_ts = 0
    try:
        while True:
            while pos + hlen <= end:
                sec, frac, incl, orig = unpack(buf, pos)
                nxt = pos + hlen + incl
                if nxt > end or incl > limit or frac >= units:
                    break
                n += 1
                yield new(F, (n, sec + frac / units, incl, orig, linktype, buf[pos + hlen : nxt]))
                pos = nxt
            else:
                # fewer than a record header left in the buffer
                data = read(chunk)
                if not data:
                    if pos < end and not cap._source.failed:
                        cap._warn(
                            "truncated",
                            f"capture ends inside the record header of frame {n + 1} "
                            f"({end - pos} of {hlen} bytes); the frames before it are kept",
                            n + 1,
                        )
                    return
                buf = buf[pos:] + data
                pos = 0
                end = len(buf)
                continue
            if incl > limit:
                cap._warn(
                    "bad-record-length",
                    f"record of frame {n + 1} claims {incl} captured bytes (limit {limit}); "
                    "the file is corrupt from here on and reading stops",
                    n + 1,
                )
                return
            if nxt > end:
                data = read(chunk)
                if not data:
                    if not cap._source.failed:
                        cap._warn(
                            "truncated",
                            f"capture ends inside frame {n + 1} ({end - pos - hlen} of {incl} "
                            "data bytes); the frames before it are kept",
                            n + 1,
                        )
                    return
                buf = buf[pos:] + data
                pos = 0
                end = len(buf)
                continue
            # the fraction is a second or more: keep the frame, say so once
            n += 1
            bad_ts += 1
            if bad_ts == 1:
                cap._warn(
                    "bad-timestamp",
                    f"frame {n} has a timestamp fraction of {frac} (must be below {units}); "
                    "such timestamps are taken as whole seconds",
                    n,
                )
            yield new(F, (n, float(sec), incl, orig, linktype, buf[pos + hlen : nxt]))
            pos = nxt
    finally:
        cap._finish(n)
