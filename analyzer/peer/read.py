"""One capture point's TCP and UDP packets, with the header fields matching and fates compare."""

from __future__ import annotations

import functools
import hashlib
import ipaddress

import dpkt

from analyzer.capture import open_capture
from analyzer.decode import Decoder
from analyzer.decode.reference import _link  # dpkt's view of a frame: the TCP options the lean Packet leaves out
from analyzer.errors import CaptureError
from analyzer.model import Endpoint, Frame, Packet
from analyzer.peer.model import Coverage, PointPacket
from analyzer.protocol import IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, SYN


@functools.lru_cache(maxsize=65536)
def _address(addr: bytes) -> str:
    return str(ipaddress.ip_address(addr))  # a capture repeats a few addresses a million times


def _endpoint(addr: bytes, port: int) -> str:
    return str(Endpoint(_address(addr), port))


def _mss(frame: Frame) -> int:
    """The MSS option of a SYN (dpkt parses the options; SYNs are few, so the slow path is fine)."""
    try:
        ipo = _link(frame.linktype, frame.data)
        seg = ipo.data if ipo is not None else None
        if not isinstance(seg, dpkt.tcp.TCP):
            return 0
        for kind, value in dpkt.tcp.parse_opts(seg.opts):
            if kind == dpkt.tcp.TCP_OPT_MSS and len(value) == 2:
                return int.from_bytes(value, "big")
    except (dpkt.UnpackError, IndexError, ValueError, TypeError, AttributeError):
        return 0
    return 0


def point_packet(frame: Frame, pkt: Packet) -> PointPacket:
    mss = _mss(frame) if pkt.proto == IPPROTO_TCP and pkt.flags & SYN else 0
    return PointPacket(
        frame=pkt.number,
        ts=pkt.ts,
        proto=pkt.proto,
        src=_endpoint(pkt.src, pkt.sport),
        dst=_endpoint(pkt.dst, pkt.dport),
        flags=pkt.flags,
        seq=pkt.seq,
        ack=pkt.ack,
        plen=pkt.plen,
        win=pkt.win,
        ttl=pkt.ttl,
        opts=pkt.tcp_opts,
        mss=mss,
        head=pkt.payload,
    )


def icmp_point_packet(pkt: Packet) -> PointPacket | None:
    """An ICMP error quoting a TCP or UDP packet, as a packet of the quoted conversation travelling
    toward the quoted packet's sender (as the flow table files it); None for any other ICMP."""
    q = pkt.quoted
    if q is None or q.proto not in (IPPROTO_TCP, IPPROTO_UDP):
        return None
    return PointPacket(
        frame=pkt.number,
        ts=pkt.ts,
        proto=pkt.proto,
        src=_endpoint(q.dst, q.dport),
        dst=_endpoint(q.src, q.sport),
        flags=0,
        seq=q.seq,
        ack=0,
        plen=pkt.plen,
        win=0,
        ttl=pkt.ttl,
        opts=0,
        mss=0,
        head=b"",
        icmp=(pkt.icmp_type, pkt.icmp_code),
        icmp_from=_address(pkt.src),
        quoted=q.proto,
    )


# The reader's warnings after which nothing more of the file is read: the capture ends there,
# whatever the capturing host saw afterwards (analyzer.capture.reader.WARNING_CODES).
READING_STOPPED = ("truncated", "bad-record-length", "bad-block", "corrupt-compression", "read-error")


def read_point(path: str) -> tuple[list[PointPacket], Coverage]:
    """Every TCP and UDP packet of a capture and the ICMP errors quoting one, in frame order, and the
    time the capture covers; CaptureError when it cannot be read."""
    decoder = Decoder()
    out: list[PointPacket] = []
    first, last = float("inf"), float("-inf")
    # Every frame's bytes and time (to the microsecond every format keeps), whatever the container
    # (pcap, pcapng, compressed): two files that agree in it hold one capture, not two points.
    digest = hashlib.sha256()
    with open_capture(path) as cap:
        for frame in cap:
            first, last = min(first, frame.ts), max(last, frame.ts)  # frames need not be in time order
            digest.update(b"%d %d " % (round(frame.ts * 1_000_000), len(frame.data)))
            digest.update(frame.data)
            pkt = decoder.decode(frame)
            if pkt is None or pkt.inner is not None:
                continue
            if pkt.proto in (IPPROTO_TCP, IPPROTO_UDP):
                out.append(point_packet(frame, pkt))
            elif pkt.proto in (IPPROTO_ICMP, IPPROTO_ICMPV6):
                icmp = icmp_point_packet(pkt)
                if icmp is not None:
                    out.append(icmp)
        stop = next((w for w in cap.warnings if w.code in READING_STOPPED), None)
    if first > last:
        first = last = 0.0
    damage = f"{stop.code}: {stop.message}" if stop is not None else ""
    return out, Coverage(first, last, damage, digest.hexdigest())


__all__ = ["CaptureError", "read_point"]
