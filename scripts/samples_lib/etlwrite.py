"""Writes small Windows ETL files the way pktmon and netsh trace lay them out, for tests and samples.

    from scripts.samples_lib.etlwrite import EtlWriter
    w = EtlWriter(start=1_700_000_000.0)
    w.pktmon_component(66, 11, "tcpip.sys", "TCP/IPv4 - L3/L4")
    w.pktmon_packet(t, frame_bytes, group=1, component=3, direction="in")
    w.pktmon_drop(t, frame_bytes, group=1, component=66, reason=1204)
    data = w.to_bytes(cpus=2, compress=True)

Every event goes into the buffer of a processor (round robin over `cpus`), so events are in time
order within a buffer and not across the file, as Windows writes them. Compressed buffers use a
literal-only LZ77 "Xpress" stream (MS-XCA 2.3: every flag bit 0, so every byte is a literal):
valid input for any Xpress decompressor, with no compressor to write.
Field layouts are those analyzer/capture/etwfacts.py documents; only the fields a reader uses are
filled, the rest are zero.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from analyzer.capture import etwfacts as W

FREQ = 10_000_000  # QPC ticks per second written into the log file header
QPC_AT_START = 2_500_000_000_000  # an arbitrary counter value at the start time
BUFFER_SIZE = 4096

_DIRECTIONS = {"in": 3, "out": 4, "": 0}  # PKTMON_DIRECTION_TAG Rx / Tx / unspecified


@dataclass
class _Event:
    ts: float
    records: list[bytes]  # logged back to back by one processor (a packet's fragments)


def _filetime(t: float) -> int:
    return int(round((t + W.FILETIME_UNIX_OFFSET) * W.FILETIME_UNITS))


def _utf16z(text: str) -> bytes:
    return text.encode("utf-16-le") + b"\0\0"


def _pad8(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) % 8)


def xpress_literals(data: bytes) -> bytes:
    """`data` as a literal-only Xpress stream: a zero 32-bit flag word before every 32 bytes."""
    out = bytearray()
    for i in range(0, len(data), 32):
        out += b"\0\0\0\0" + data[i : i + 32]
    return bytes(out)


class EtlWriter:
    """Collects events and writes them as an ETL file."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.start = start
        self.events: list[_Event] = []

    # -- records ------------------------------------------------------------------------------

    def _qpc(self, t: float) -> int:
        return QPC_AT_START + int(round((t - self.start) * FREQ))

    def event(self, t: float, provider: bytes, eid: int, user_data: bytes, keyword: int = 0) -> None:
        """Append one EVENT_HEADER record (64-bit header type, trace marker)."""
        self.events.append(_Event(t, [self._record(t, provider, eid, user_data, keyword)]))

    def _record(self, t: float, provider: bytes, eid: int, user_data: bytes, keyword: int = 0) -> bytes:
        size = W.EVENT_HEADER_LEN + len(user_data)
        head = struct.pack("<HBBHHIIq", size, W.HEADER_EVENT64, W.TRACE_MARKER, 0, 0, 4, 4, self._qpc(t))
        head += provider + struct.pack("<HBBBBHQ", eid, 0, 0, 4, 0, 0, keyword) + b"\0" * 24
        assert len(head) == W.EVENT_HEADER_LEN
        return head + user_data

    def pktmon_component(self, cid: int, ctype: int, driver: str, description: str) -> None:
        """Component information (event 20), logged before the packets."""
        self.event(
            self.start,
            W.PKTMON_PROVIDER,
            W.PKTMON_COMPONENT,
            struct.pack("<HH", cid, ctype) + _utf16z(driver) + _utf16z(description),
        )

    def pktmon_mac(self, cid: int, mac: str) -> None:
        """A component's MAC address (event 70)."""
        raw = bytes.fromhex(mac.replace(":", ""))
        body = struct.pack("<HHI", cid, 6, len(raw)) + raw
        self.event(self.start, W.PKTMON_PROVIDER, W.PKTMON_MAC_ADDRESS, body)

    def pktmon_ipv4(self, cid: int, address: str) -> None:
        """A component's IPv4 address (event 65)."""
        import ipaddress

        body = struct.pack("<HH", cid, 13) + ipaddress.IPv4Address(address).packed
        self.event(self.start, W.PKTMON_PROVIDER, W.PKTMON_IPV4_ADDRESS, body)

    def pktmon_packet(
        self,
        t: float,
        frame: bytes,
        *,
        group: int,
        component: int,
        direction: str = "in",
        appearance: int = 1,
        ptype: int = 1,
        eid: int = W.PKTMON_PACKET,
        reason: int = 0,
        location: int = 0,
        logged: int | None = None,
    ) -> None:
        """A packet event (160), or a drop event (170) with a reason."""
        data = frame if logged is None else frame[:logged]
        head = struct.pack(
            W.PKTMON_PACKET_HEAD,
            group,
            1,
            appearance,
            _DIRECTIONS[direction],
            ptype,
            component,
            1,
            0,
            reason,
            location,
            len(frame),
            len(data),
        )
        self.event(t, W.PKTMON_PROVIDER, eid, head + data)

    def pktmon_drop(
        self,
        t: float,
        frame: bytes,
        *,
        group: int,
        component: int,
        reason: int,
        direction: str = "in",
        appearance: int = 2,
        location: int = 0,
    ) -> None:
        self.pktmon_packet(
            t,
            frame,
            group=group,
            component=component,
            direction=direction,
            appearance=appearance,
            eid=W.PKTMON_DROP,
            reason=reason,
            location=location,
        )

    def ndis_fragments(
        self, t: float, frame: bytes, *, ifindex: int, send: bool, media: int = 0, pieces: int = 1
    ) -> None:
        """A netsh trace packet as `pieces` fragment events (1001), the last with KW_PACKET_END."""
        cut = max(1, -(-len(frame) // pieces))
        chunks = [frame[i : i + cut] for i in range(0, len(frame), cut)]
        direction = W.KW_SEND if send else W.KW_RECEIVE
        records = []
        for i, chunk in enumerate(chunks):
            kw = media | direction | (W.KW_PACKET_START if i == 0 else 0)
            kw |= W.KW_PACKET_END if i == len(chunks) - 1 else 0
            body = struct.pack("<III", ifindex, ifindex, len(chunk)) + chunk
            records.append(self._record(t, W.NDISCAP_PROVIDER, W.NDIS_FRAGMENT, body, kw))
        self.events.append(_Event(t, records))

    def ndis_wifi_metadata(self, t: float, *, ifindex: int, rssi: int, mhz: int, rate: int) -> None:
        """Wi-Fi receive metadata (1002) for the next packet."""
        meta = struct.pack(W.DOT11_RECV_CONTEXT, 0, 1, mhz, 1, rssi, rate)
        self.event(
            t,
            W.NDISCAP_PROVIDER,
            W.NDIS_METADATA,
            struct.pack("<III", ifindex, ifindex, len(meta)) + meta,
            W.KW_MEDIA_NATIVE_802_11 | W.KW_RECEIVE,
        )

    def vmswitch_fragment(self, t: float, frame: bytes, *, ifindex: int, vlan: int, send: bool) -> None:
        """A VMSwitch packet fragment (1003) with its VLAN in the OOB 802.1Q info."""
        body = struct.pack("<III", ifindex, ifindex, 7)
        body += _utf16z("port-7") + _utf16z("vm-nic") + _utf16z("Synthetic")
        body += struct.pack("<I", 1) + struct.pack("<I", 8) + _utf16z("port-8") + _utf16z("ext") + _utf16z("External")
        oob = bytearray(8 * 8)
        struct.pack_into("<I", oob, W.OOB_8021Q_INDEX * 8, vlan << W.VLAN_SHIFT)
        body += struct.pack("<I", len(frame)) + frame + struct.pack("<I", len(oob)) + bytes(oob)
        kw = W.KW_VMSWITCH | W.KW_PACKET_START | W.KW_PACKET_END | (W.KW_SEND if send else W.KW_RECEIVE)
        self.event(t, W.NDISCAP_PROVIDER, W.NDIS_VMSWITCH_FRAGMENT, body, kw)

    # -- the file -----------------------------------------------------------------------------

    def _logfile_header(self) -> bytes:
        u = bytearray(W.LOG_NAMES_AT + 16 + W.TIME_ZONE_LEN + 4 + 32)
        struct.pack_into("<I", u, 0, BUFFER_SIZE)
        struct.pack_into("<I", u, W.LOG_POINTER_SIZE, 8)
        tail = (W.LOG_NAMES_AT + 16 + W.TIME_ZONE_LEN + 7) & ~7
        struct.pack_into(W.LOG_TAIL_FIELDS, u, tail, 0, FREQ, _filetime(self.start), W.CLOCK_QPC)
        size = W.SYSTEM_HEADER_LEN + len(u)
        head = (
            struct.pack(
                "<HBBHHIIq", 2, W.HEADER_SYSTEM64, W.TRACE_MARKER, size, W.SYSTEM_HOOK_LOGFILE, 0, 0, QPC_AT_START
            )
            + b"\0" * 8
        )
        return head + bytes(u)

    def _buffer(self, cpu: int, records: list[bytes], compress: bool) -> bytes:
        body = b"".join(_pad8(r) for r in records)
        saved = W.BUFFER_HEADER_LEN + len(body)
        if compress:
            stored = xpress_literals(body)
            flags = W.BUFFER_FLAG_COMPRESSED
        else:
            stored = body + b"\xff" * (-(W.BUFFER_HEADER_LEN + len(body)) % 64)
            flags = 0
        head = bytearray(W.BUFFER_HEADER_LEN)
        struct.pack_into("<II", head, 0, W.BUFFER_HEADER_LEN + len(stored), saved)
        head[W.BUF_CPU] = cpu
        struct.pack_into("<HH", head, W.BUF_FLAGS, flags, 0)
        return bytes(head) + stored

    def to_bytes(self, *, cpus: int = 2, compress: bool = False, per_buffer: int = 8) -> bytes:
        """The ETL file: the header buffer, then the events spread over `cpus` processors' buffers.

        Buffers are written processor by processor, so a later buffer can hold earlier events.
        """
        out = [self._buffer(0, [self._logfile_header()], False)]
        by_cpu: list[list[bytes]] = [[] for _ in range(cpus)]
        for i, ev in enumerate(sorted(self.events, key=lambda e: e.ts)):
            by_cpu[i % cpus].extend(ev.records)
        for cpu, records in enumerate(by_cpu):
            for i in range(0, len(records), per_buffer):
                out.append(self._buffer(cpu, records[i : i + per_buffer], compress))
        return b"".join(out)
