"""Windows Event Trace Log (.etl) files: the packets `pktmon` and `netsh trace` record, as frames.

The file layer (buffers, event records, the log file header's clock) is read here by hand: the
one library that reads it well (dissect.etl) is AGPL, and etl-parser fails on pktmon's files.
Compressed buffers are LZ77 "Xpress" (MS-XCA), decompressed by dissect.util (Apache-2.0).

Events are ordered within one processor's buffer, not across the file, so the whole file is
read before the first frame is handed on (also from a pipe) and packets come out in time order.

pktmon logs a packet once per component it passes (the same group id, appearance 1, 2, ...).
By default one frame is kept per group: the appearance nearest the wire (a received packet's
first appearance, a sent packet's last: components log in the order the packet passes them).
`appearances="all"` keeps every appearance, as Microsoft's own pcapng conversion does.
A drop event (170) keeps the dropped packet (when no other appearance of it was logged) and
records why and where Windows dropped it: Capture.drops, by frame number.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

from analyzer.capture import etwfacts as W
from analyzer.model import Frame, WindowsDrop

Drop = WindowsDrop  # what Capture.drops holds

if TYPE_CHECKING:
    from analyzer.capture.reader import Capture

_U16 = struct.Struct("<H").unpack_from
_U32 = struct.Struct("<I").unpack_from
_Q = struct.Struct("<q").unpack_from
_PKT = struct.Struct(W.PKTMON_PACKET_HEAD).unpack_from
_TAIL = struct.Struct(W.LOG_TAIL_FIELDS).unpack_from


@dataclass(frozen=True, slots=True)
class _Record:
    """One packet event, before the clock converts its time and the groups are resolved."""

    raw_ts: int
    order: int  # position in the file, to keep ties stable
    group: int  # pktmon group id; 0 for netsh packets
    appearance: int
    direction: str
    component: int
    linktype: int
    wirelen: int
    data: bytes
    drop: tuple[int, int] | None  # (reason, location) for a drop event


@dataclass(slots=True)
class _State:
    """What the walk learns besides packets: the clock, the components, netsh's open fragments."""

    clock: tuple[int, float] | None = None  # (clock type, ticks per second)
    anchor_raw: int = 0
    anchor_unix: float = 0.0
    pktmon: bool = False
    netsh: bool = False
    components: dict[int, tuple[int, str, str]] | None = None  # id -> (type, driver, description)
    addresses: dict[int, list[str]] | None = None  # id -> its IPv4, IPv6 and MAC addresses
    fragments: dict[tuple[int, int], list[bytes]] | None = None  # (processor, LowerIfIndex) -> fragments so far
    wifi_meta: tuple[int, ...] | None = None  # the last 1002 metadata, for the next packet
    skipped: int = 0  # packet events of kinds that carry no frame


def looks_like_etl(head: bytes) -> bool:
    """True when `head` starts like an ETL file: a buffer whose first record is the log file header."""
    if len(head) < W.BUFFER_HEADER_LEN + 8:
        return False
    p = W.BUFFER_HEADER_LEN
    kind, marker = head[p + 2], head[p + 3]
    size = _U32(head, W.BUF_SIZE)[0]
    return (
        kind in (W.HEADER_SYSTEM32, W.HEADER_SYSTEM64)
        and marker == W.TRACE_MARKER
        and _U16(head, p + 6)[0] == W.SYSTEM_HOOK_LOGFILE
        and W.BUFFER_HEADER_LEN < size <= W.MAX_BUFFER
    )


def walk_etl(cap: Capture, head: bytes, appearances: str) -> Iterator[Frame]:
    """Yield the frames of an ETL stream whose first bytes are `head`, in time order."""
    n = 0
    try:
        data = _read_all(cap, head)
        state = _State(components={}, fragments={}, addresses={})
        records: list[_Record] = []
        for cpu_payload in _buffers(cap, data):
            _events(cap, cpu_payload, state, records)
        if state.fragments and any(state.fragments.values()):
            cap._warn("truncated", "netsh packet fragments without their last fragment were dropped", None)
        kind = "etl-pktmon" if state.pktmon else "etl-netsh" if state.netsh else "etl"
        cap.format = kind + cap.format[len("etl") :]  # keep a "+gzip" suffix
        if state.skipped:
            cap._warn(
                "unsupported-event",
                f"{state.skipped} packet events carry no whole frame (pktmon packet types other than "
                "Ethernet, Wi-Fi and IP) and were skipped",
                None,
            )
        chosen, drops = _resolve(records, appearances)
        to_unix = _clock(cap, state)
        chosen.sort(key=lambda r: (r.raw_ts, r.order))
        for r in chosen:
            n += 1
            if r.linktype not in cap.linktypes:
                cap.linktypes.append(r.linktype)
            drop = drops.get(id(r))
            if drop is not None:
                cap.drops[n] = _drop(n, drop, state)
            yield Frame(n, to_unix(r.raw_ts), len(r.data), max(r.wirelen, len(r.data)), r.linktype, r.data)
    finally:
        cap._finish(n)


def _read_all(cap: Capture, head: bytes) -> bytes:
    parts = [head]
    while True:
        data = cap._source.read(cap._source.chunk)
        if not data:
            return b"".join(parts)
        parts.append(data)


def _buffers(cap: Capture, data: bytes) -> Iterator[tuple[int, bytes]]:
    """(processor, used bytes after the header) of every buffer; damage becomes a warning."""
    from dissect.util.compression import lzxpress  # imported here: only ETL files need it

    p = 0
    end = len(data)
    while p + W.BUFFER_HEADER_LEN <= end:
        size, saved = struct.unpack_from("<II", data, p)
        flags = _U16(data, p + W.BUF_FLAGS)[0]
        cpu = data[p + W.BUF_CPU]
        if size <= W.BUFFER_HEADER_LEN or size > W.MAX_BUFFER or saved > W.MAX_BUFFER:
            cap._warn("bad-block", f"ETL buffer at byte {p} has an impossible size {size}; reading stops", None)
            return
        body = data[p + W.BUFFER_HEADER_LEN : p + size]
        cut = p + size > end
        if cut:
            cap._warn(
                "truncated",
                f"the file ends inside an ETL buffer ({end - p} of {size} bytes); its complete events are kept",
                None,
            )
        if flags & W.BUFFER_FLAG_COMPRESSED:
            try:
                body = lzxpress.decompress(body)
            except Exception as exc:  # any failure of the decompressor means this buffer is lost
                cap._warn("corrupt-compression", f"ETL buffer at byte {p} does not decompress ({exc})", None)
                body = b""
        yield cpu, body[: max(saved - W.BUFFER_HEADER_LEN, 0)]
        if cut:
            return
        p += size
    if p < end and any(data[p:end]):
        cap._warn("truncated", f"the file ends inside an ETL buffer header ({end - p} bytes)", None)


def _events(cap: Capture, cpu_body: tuple[int, bytes], state: _State, out: list[_Record]) -> None:
    """Walk one buffer's event records; packet events become _Records."""
    cpu, body = cpu_body
    q = 0
    end = len(body)
    while q + 8 <= end:
        first = _U32(body, q)[0]
        if first == W.BUFFER_PADDING:
            return
        kind = (first >> 16) & 0xFF
        size = _U16(body, q + 4)[0] if kind in W.SIZE_AT_4 else first & 0xFFFF
        if size < 8 or q + size > end:
            if q + size > end and size >= 8:
                return  # an event cut short by a truncated buffer
            cap._warn(
                "bad-block",
                f"an ETL event record has an impossible size {size}; the rest of its buffer is skipped",
                None,
            )
            return
        if kind in (W.HEADER_EVENT32, W.HEADER_EVENT64) and size >= W.EVENT_HEADER_LEN:
            _event(body, q, size, state, out, cpu)
        elif kind in (W.HEADER_SYSTEM32, W.HEADER_SYSTEM64) and _U16(body, q + 6)[0] == W.SYSTEM_HOOK_LOGFILE:
            _logfile_header(body, q, size, state)
        q += (size + W.EVENT_ALIGN - 1) & ~(W.EVENT_ALIGN - 1)


def _logfile_header(body: bytes, q: int, size: int, state: _State) -> None:
    """The clock: the header's QPC stamp is the file's StartTime."""
    if state.clock is not None:
        return
    u = q + W.SYSTEM_HEADER_LEN
    ptr = _U32(body, u + W.LOG_POINTER_SIZE)[0]
    tail = u + W.LOG_NAMES_AT + 2 * (8 if ptr == 8 else 4) + W.TIME_ZONE_LEN
    tail = (tail + 7) & ~7  # BootTime is 8-byte aligned
    if tail + struct.calcsize(W.LOG_TAIL_FIELDS) > q + size:
        return
    _boot, freq, start, clock = _TAIL(body, tail)
    if clock == W.CLOCK_CYCLES:
        freq = _U32(body, u + W.LOG_CPU_MHZ)[0] * 1_000_000
    state.clock = (clock, float(freq or W.FILETIME_UNITS))
    state.anchor_raw = _Q(body, q + 16)[0]
    state.anchor_unix = start / W.FILETIME_UNITS - W.FILETIME_UNIX_OFFSET


def _clock(cap: Capture, state: _State):
    """raw event time -> seconds since the epoch."""
    if state.clock is None:
        cap._warn("bad-timestamp", "the ETL file has no log file header: times are relative to 1970", None)
        return lambda raw: raw / W.FILETIME_UNITS
    kind, freq = state.clock
    if kind == W.CLOCK_SYSTEM:
        return lambda raw: raw / W.FILETIME_UNITS - W.FILETIME_UNIX_OFFSET
    anchor_raw, anchor_unix = state.anchor_raw, state.anchor_unix
    return lambda raw: anchor_unix + (raw - anchor_raw) / freq


def _user_data(body: bytes, q: int, size: int) -> bytes:
    """An EVENT_HEADER record's user data, after any extended data items."""
    p = q + W.EVENT_HEADER_LEN
    if _U16(body, q + W.EV_FLAGS)[0] & W.EV_FLAG_EXTENDED_INFO:
        while p + W.EXT_ITEM_LEN <= q + size:
            linkage, length = struct.unpack_from("<HH", body, p + 4)
            p += (W.EXT_ITEM_LEN + length + 7) & ~7
            if not linkage & W.EXT_LINKAGE:
                break
    return body[p : q + size]


def _event(body: bytes, q: int, size: int, state: _State, out: list[_Record], cpu: int) -> None:
    provider = body[q + W.EV_PROVIDER : q + W.EV_PROVIDER + 16]
    if provider == W.PKTMON_PROVIDER:
        state.pktmon = True
        _pktmon(body, q, size, state, out)
    elif provider == W.NDISCAP_PROVIDER:
        state.netsh = True
        _ndiscap(body, q, size, state, out, cpu)


def _pktmon(body: bytes, q: int, size: int, state: _State, out: list[_Record]) -> None:
    eid = _U16(body, q + W.EV_ID)[0]
    ud = _user_data(body, q, size)
    if eid == W.PKTMON_COMPONENT and len(ud) >= 4:
        cid, ctype = struct.unpack_from("<HH", ud)
        names = ud[4:].decode("utf-16-le", "replace").split("\0")
        assert state.components is not None
        state.components[cid] = (ctype, names[0], names[1] if len(names) > 1 else "")
        return
    if eid in W.PKTMON_ADDRESS_EVENTS and len(ud) >= 8:
        address = _component_address(eid, ud)
        if address:
            assert state.addresses is not None
            state.addresses.setdefault(_U16(ud, 0)[0], []).append(address)
        return
    if eid not in (W.PKTMON_PACKET, W.PKTMON_DROP) or len(ud) < W.PKTMON_PACKET_HEAD_LEN:
        return
    group, _num, appearance, dirtag, ptype, comp, _edge, _filt, reason, loc, orig, logged = _PKT(ud)
    linktype = W.PKTMON_LINKTYPES.get(ptype)
    if linktype is None:
        state.skipped += 1
        return
    data = ud[W.PKTMON_PACKET_HEAD_LEN : W.PKTMON_PACKET_HEAD_LEN + logged]
    out.append(
        _Record(
            _Q(body, q + W.EV_TIME)[0],
            len(out),
            group,
            appearance,
            W.DIRECTION_TAGS.get(dirtag, ""),
            comp,
            linktype,
            orig,
            bytes(data),
            (reason, loc) if eid == W.PKTMON_DROP else None,
        )
    )


def _component_address(eid: int, ud: bytes) -> str:
    """The address a component event (65 IPv4, 66 IPv6, 70 MAC) gives, as text; "" if malformed."""
    import ipaddress

    if eid == W.PKTMON_IPV4_ADDRESS and len(ud) >= 8:
        return str(ipaddress.IPv4Address(ud[4:8]))
    if eid == W.PKTMON_IPV6_ADDRESS and len(ud) >= 20:
        return str(ipaddress.IPv6Address(ud[4:20]))
    if eid == W.PKTMON_MAC_ADDRESS and len(ud) >= 8:
        n = _U32(ud, 4)[0]
        mac = ud[8 : 8 + n]
        return ":".join(f"{b:02x}" for b in mac) if len(mac) == n == 6 else ""
    return ""


def _ndiscap(body: bytes, q: int, size: int, state: _State, out: list[_Record], cpu: int) -> None:
    eid = _U16(body, q + W.EV_ID)[0]
    keyword = struct.unpack_from("<Q", body, q + W.EV_KEYWORD)[0]
    ud = _user_data(body, q, size)
    if eid == W.NDIS_METADATA and len(ud) >= 12:
        meta = ud[12 : 12 + _U32(ud, 8)[0]]
        if len(meta) >= struct.calcsize(W.DOT11_RECV_CONTEXT):
            state.wifi_meta = struct.unpack_from(W.DOT11_RECV_CONTEXT, meta)
        return
    if eid == W.NDIS_FRAGMENT and len(ud) >= 12:
        lower = _U32(ud, 4)[0]
        fragment = ud[12 : 12 + _U32(ud, 8)[0]]
    elif eid == W.NDIS_VMSWITCH_FRAGMENT and len(ud) >= 12:
        found = _vmswitch(ud)
        if found is None:
            return
        lower, fragment, vlan = found
        if vlan and len(fragment) >= W.ETHERNET_ADDRS:
            # The switch port's VLAN travels out of band; put it back as the 802.1Q tag a mirror
            # port would show, so the frame says which VLAN it was on.
            tci = struct.pack(">HH", W.ETHERTYPE_8021Q, vlan)
            fragment = fragment[: W.ETHERNET_ADDRS] + tci + fragment[W.ETHERNET_ADDRS :]
    else:
        return
    assert state.fragments is not None
    # A packet's fragments are logged one after another by one processor: join them per processor
    # and interface, so that other processors' buffers in between cannot mix into them.
    parts = state.fragments.setdefault((cpu, lower), [])
    parts.append(bytes(fragment))
    if not keyword & W.KW_PACKET_END:
        return
    frame = b"".join(parts)
    parts.clear()
    if keyword & W.KW_MEDIA_NATIVE_802_11:
        linktype = 105
        if len(frame) > 1 and frame[1] & 0x40:  # ndiscap logs frames decrypted: clear Protected
            frame = frame[:1] + bytes([frame[1] & 0xBF]) + frame[2:]
        state.wifi_meta = None
    elif keyword & W.KW_MEDIA_WIRELESS_WAN:
        linktype = 101
    else:
        linktype = 1
    direction = "out" if keyword & W.KW_SEND else "in" if keyword & W.KW_RECEIVE else ""
    out.append(_Record(_Q(body, q + W.EV_TIME)[0], len(out), 0, 1, direction, lower, linktype, len(frame), frame, None))


def _utf16z(ud: bytes, p: int) -> int:
    """The offset just past the NUL-terminated UTF-16 string at p."""
    while p + 2 <= len(ud):
        if ud[p] == 0 and ud[p + 1] == 0:
            return p + 2
        p += 2
    return len(ud)


def _vmswitch(ud: bytes) -> tuple[int, bytes, int] | None:
    """(LowerIfIndex, fragment, VLAN id) of a VMSwitch packet fragment (1003)."""
    lower = _U32(ud, 4)[0]
    p = 12
    for _ in range(3):  # source port name, NIC name, NIC type
        p = _utf16z(ud, p)
    if p + 4 > len(ud):
        return None
    count = _U32(ud, p)[0]
    p += 4
    for _ in range(min(count, 64)):  # each destination: port id and three names
        p += 4
        for _ in range(3):
            p = _utf16z(ud, p)
    if p + 4 > len(ud):
        return None
    length = _U32(ud, p)[0]
    fragment = ud[p + 4 : p + 4 + length]
    p += 4 + length
    vlan = 0
    if p + 4 <= len(ud):
        oob = ud[p + 4 : p + 4 + _U32(ud, p)[0]]
        at = W.OOB_8021Q_INDEX * 8
        if len(oob) >= at + 4:
            vlan = (_U32(oob, at)[0] >> W.VLAN_SHIFT) & W.VLAN_MASK
    return lower, fragment, vlan


def _resolve(records: list[_Record], appearances: str) -> tuple[list[_Record], dict[int, _Record]]:
    """The records to hand on, and for each one that was dropped (by id) the drop event's record."""
    drops: dict[int, _Record] = {}
    if appearances == "all":
        for r in records:
            if r.drop is not None:
                drops[id(r)] = r
        return list(records), drops
    groups: dict[int, list[_Record]] = {}
    chosen: list[_Record] = []
    for r in records:
        if r.group:
            groups.setdefault(r.group, []).append(r)
        else:
            chosen.append(r)
    for members in groups.values():
        keep = _nearest_wire(members)
        chosen.append(keep)
        dropped = next((m for m in members if m.drop is not None), None)
        if dropped is not None:
            drops[id(keep)] = dropped
    return chosen, drops


def _nearest_wire(members: list[_Record]) -> _Record:
    """The appearance of a packet nearest the wire: a received packet's first, a sent one's last.

    Packet events (160) are preferred to drop events (170): a drop event's component is where
    the packet ended, not where it entered.
    """
    seen = [m for m in members if m.drop is None] or members
    seen.sort(key=lambda m: (m.appearance, m.order))
    return seen[-1] if seen[0].direction == "out" else seen[0]


def _drop(frame: int, d: _Record, state: _State) -> Drop:
    """The Drop for frame `frame`, from the drop event's record `d` (its component is where it ended)."""
    reason, loc = d.drop or (0, 0)
    ctype, driver, desc = (state.components or {}).get(d.component, (0, "", ""))
    where = ", ".join([driver] * bool(driver) + (state.addresses or {}).get(d.component, []))
    name = f"{desc} ({where})" if desc and where else desc or where or f"component {d.component}"
    return WindowsDrop(
        frame,
        reason,
        W.drop_reason_name(reason),
        loc,
        name,
        W.COMPONENT_KINDS.get(ctype, ""),
        driver.lower(),
        d.direction,
        reason in W.FILTER_REASONS or driver.lower() in W.FILTERING_DRIVERS,
    )
