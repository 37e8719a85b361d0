"""The reference decoder: the same Packet as analyzer.decode.Decoder, built from dpkt objects.

Slow (dpkt builds an object per header) and used only by tests and the benchmark, which hold the
fast decoder to its answers. Where dpkt has no parser (NFLOG TLVs, Teredo indications) the few
bytes are walked here by hand; every other field comes from a dpkt object.
"""

from __future__ import annotations

import struct

import dpkt
from dpkt import (
    ethernet,
    gre,
    icmp,
    icmp6,
    ieee80211,
    ip,
    ip6,
    llc,
    loopback,
    ppp,
    pppoe,
    radiotap,
    sll,
    sll2,
    tcp,
    udp,
)

from analyzer.decode import facts as F
from analyzer.icmp import ICMP4_ERROR_TYPES, ICMP6_ERROR_TYPES
from analyzer.model import PAYLOAD_HEAD, Frame, Packet, Quoted
from analyzer.protocol import (
    OPT_MSS,
    OPT_SACK,
    OPT_SACK_PERM,
    OPT_TIMESTAMP,
    OPT_WSCALE,
)

_OPT_BITS = {
    tcp.TCP_OPT_MSS: OPT_MSS,
    tcp.TCP_OPT_WSCALE: OPT_WSCALE,
    tcp.TCP_OPT_SACKOK: OPT_SACK_PERM,
    tcp.TCP_OPT_SACK: OPT_SACK,
    tcp.TCP_OPT_TIMESTAMP: OPT_TIMESTAMP,
}
_ERRORS = (dpkt.UnpackError, IndexError, struct.error, ValueError, KeyError, TypeError)


def reference_decode(frame: Frame) -> Packet | None:
    """The Packet dpkt sees in one frame, or None when there is no usable IP packet."""
    try:
        ipo = _link(frame.linktype, frame.data)
    except _ERRORS:
        return None
    if ipo is None:
        return None
    return _ip(frame.number, frame.ts, ipo, frame.wirelen - len(frame.data), 0)


def _link(linktype: int, data: bytes):
    if linktype == F.LINKTYPE_EN10MB:
        return _payload_ip(ethernet.Ethernet(data))
    if linktype == F.LINKTYPE_LINUX_SLL:
        return _payload_ip(sll.SLL(data))
    if linktype == F.LINKTYPE_LINUX_SLL2:
        return _payload_ip(sll2.SLL2(data))
    if linktype in (F.LINKTYPE_RAW, F.LINKTYPE_RAW_DLT12, F.LINKTYPE_RAW_DLT14, F.LINKTYPE_IPV4, F.LINKTYPE_IPV6):
        version = data[0] >> 4
        want = {F.LINKTYPE_IPV4: 4, F.LINKTYPE_IPV6: 6}.get(linktype, version)
        if version != want:
            return None
        return ip.IP(data) if version == 4 else ip6.IP6(data) if version == 6 else None
    if linktype in (F.LINKTYPE_NULL, F.LINKTYPE_LOOP):
        return _payload_ip(loopback.Loopback(data))
    if linktype in (F.LINKTYPE_PPP, F.LINKTYPE_PPP_HDLC):
        body = data[2:] if data[:2] == F.PPP_ADDRESS_CONTROL else data
        if struct.unpack_from("!H", body)[0] in (F.PPP_MPLS, F.PPP_MPLS_MCAST):
            return _mpls(body[2:])  # dpkt's PPP has no MPLS: the label stack is walked by hand
        return _payload_ip(ppp.PPP(body))
    if linktype == F.LINKTYPE_IEEE802_11_RADIOTAP:
        return _dot11(radiotap.Radiotap(data).data)
    if linktype == F.LINKTYPE_IEEE802_11:
        return _dot11(ieee80211.IEEE80211(data))
    if linktype == F.LINKTYPE_PPP_ETHER:
        return _payload_ip(pppoe.PPPoE(data))
    if linktype == F.LINKTYPE_NFLOG:
        p = F.NFLOG_HEADER_LEN
        while p + 4 <= len(data):
            length, kind = struct.unpack_from("<HH", data, p)
            if kind > 0xFF:
                length, kind = struct.unpack_from(">HH", data, p)
            if length < 4:
                return None
            if kind == F.NFULA_PAYLOAD:
                if p + length > len(data):
                    return None
                body = data[p + 4 :]
                return ip.IP(body) if body[0] >> 4 == 4 else ip6.IP6(body) if body[0] >> 4 == 6 else None
            p += (length + 3) & ~3
    return None


def _mpls(raw: bytes):
    for i in range(0, 4 * F.MAX_MPLS_LABELS, 4):
        if raw[i + 2] & F.MPLS_BOTTOM_OF_STACK:
            body = raw[i + 4 :]
            return ip.IP(body) if body[0] >> 4 == 4 else ip6.IP6(body) if body[0] >> 4 == 6 else None
    return None


def _dot11(frame):
    """The IP packet of a dpkt IEEE80211 data frame (dpkt leaves its body, the LLC header, as bytes)."""
    if not isinstance(frame, ieee80211.IEEE80211) or frame.type != ieee80211.DATA_TYPE or frame.wep:
        return None
    if frame.to_ds and frame.from_ds:
        return None  # dpkt does not decode four-address frames
    body = frame.data if isinstance(frame.data, bytes) else bytes(frame.data)
    if not body:
        return None
    return _payload_ip(llc.LLC(body))


def _payload_ip(layer):
    """Follow a link-layer dpkt object's .data down to its IP or IPv6 object (or None)."""
    while layer is not None and not isinstance(layer, (ip.IP, ip6.IP6)):
        if isinstance(layer, (pppoe.PPPoE, ppp.PPP, sll.SLL, sll2.SLL2, loopback.Loopback, ethernet.Ethernet, llc.LLC)):
            layer = layer.data
        else:
            return None
    return layer


def _ip(number: int, ts: float, ipo, uncaptured: int, depth: int) -> Packet | None:
    """Packet fields from a dpkt IP/IP6 object; uncaptured = wire length - captured length."""
    if isinstance(ipo, ip.IP):
        if ipo.offset:
            return None
        ihl = ipo.hl * 4
        tot = ipo.len or ihl + len(ipo.data) + uncaptured
        if tot < ihl:
            return None
        return _transport(number, ts, 4, ipo.src, ipo.dst, ipo.p, ipo.ttl, ipo.id, ipo.data, tot - ihl, depth)
    ext_len = sum(h.length for h in ipo.all_extension_headers)
    for h in ipo.all_extension_headers:
        if isinstance(h, ip6.IP6FragmentHeader) and h.frag_off:
            return None
    plen = ipo.plen
    if plen == 0 and ipo.nxt != F.IPV6_NONXT:
        plen = ext_len + len(ipo.data) + uncaptured
    if ext_len > plen:
        return None
    return _transport(number, ts, 6, ipo.src, ipo.dst, ipo.p, ipo.hlim, -1, ipo.data, plen - ext_len, depth)


def _transport(number, ts, family, src, dst, proto, ttl, ip_id, body, ip_plen, depth) -> Packet | None:
    if proto == 6:
        if not isinstance(body, tcp.TCP):
            return None
        thl = body.off * 4
        opts = 0
        for kind, _data in _tcp_opts(body.opts):
            opts |= _OPT_BITS.get(kind, 0)
        plen = max(ip_plen - thl, 0)
        payload = bytes(body.data[:PAYLOAD_HEAD]) if plen else b""
        return Packet(
            number,
            ts,
            family,
            src,
            dst,
            6,
            body.sport,
            body.dport,
            ttl,
            ip_id,
            body.flags & 0xFF,
            body.seq,
            body.ack,
            body.win,
            plen,
            payload,
            -1,
            0,
            None,
            opts,
            None,
        )
    if proto == 17:
        if not isinstance(body, udp.UDP):
            return None
        plen = max(ip_plen - 8, 0)
        payload = bytes(body.data[:PAYLOAD_HEAD]) if plen else b""
        inner = None
        if depth < F.MAX_TUNNEL_DEPTH and plen >= 22:
            if body.dport == F.VXLAN_PORT:
                inner = _vxlan(number, ts, bytes(body.data), depth)
            elif body.dport == F.GENEVE_PORT:
                inner = _geneve(number, ts, bytes(body.data), depth)
            elif plen >= 40:
                inner = _teredo(number, ts, bytes(body.data), plen, F.TEREDO_PORT in (body.sport, body.dport), depth)
        return Packet(
            number,
            ts,
            family,
            src,
            dst,
            17,
            body.sport,
            body.dport,
            ttl,
            ip_id,
            0,
            0,
            0,
            0,
            plen,
            payload,
            -1,
            0,
            None,
            0,
            inner,
        )
    if proto == F.IPPROTO_GRE and depth < F.MAX_TUNNEL_DEPTH:
        return _gre(number, ts, body, depth) if isinstance(body, gre.GRE) else None
    if proto in (1, 58):
        kind = icmp.ICMP if proto == 1 else icmp6.ICMP6
        if not isinstance(body, kind):
            return None
        plen = max(ip_plen - 8, 0)
        rest = bytes(body)[8:]  # the message after type, code, checksum and the 4-byte field
        payload = rest[:PAYLOAD_HEAD] if plen else b""
        quoted = None
        if (body.type in ICMP4_ERROR_TYPES) if proto == 1 else (body.type in ICMP6_ERROR_TYPES):
            quoted = _quote(rest, 4 if proto == 1 else 6)
        return Packet(
            number,
            ts,
            family,
            src,
            dst,
            proto,
            0,
            0,
            ttl,
            ip_id,
            0,
            0,
            0,
            0,
            plen,
            payload,
            body.type,
            body.code,
            quoted,
            0,
            None,
        )
    return None


def _tcp_opts(raw: bytes):
    """dpkt's option list, read as far as the first end-of-list or malformed option."""
    for opt in tcp.parse_opts(raw):
        if opt is None or opt[0] == tcp.TCP_OPT_EOL:
            return
        yield opt


def _quote(rest: bytes, version: int) -> Quoted | None:
    try:
        if not rest or rest[0] >> 4 != version:
            return None
        if version == 4:
            if len(rest) < 20 or len(rest) < (rest[0] & 15) * 4:
                return None
            q = ip.IP(rest)
            if q.offset:
                return Quoted(q.src, q.dst, q.p, 0, 0, -1)
            t = rest[q.hl * 4 :]
        else:
            if len(rest) < 40:
                return None
            q = ip6.IP6(rest)
            t = rest[40 + sum(h.length for h in q.all_extension_headers) :]
    except _ERRORS:
        return None
    if q.p == 6 and len(t) >= 8:
        return Quoted(q.src, q.dst, 6, *struct.unpack("!HHI", t[:8]))
    if q.p in (6, 17) and len(t) >= 4:
        u = udp.UDP(t[:4] + b"\0" * 4)
        return Quoted(q.src, q.dst, q.p, u.sport, u.dport, -1)
    return Quoted(q.src, q.dst, q.p, 0, 0, -1)


def _teredo(number, ts, raw: bytes, udp_plen: int, server_port: bool, depth: int) -> Packet | None:
    q = 0
    if raw[:2] == F.TEREDO_AUTH and len(raw) >= 4:
        q = F.TEREDO_AUTH_FIXED_LEN + raw[2] + raw[3]
    if raw[q : q + 2] == F.TEREDO_ORIGIN:
        q += F.TEREDO_ORIGIN_LEN
    body = raw[q:]
    if len(body) < 40 or body[0] >> 4 != 6:
        return None
    try:
        inner = ip6.IP6(body)
    except _ERRORS:
        return None
    if 40 + inner.plen != udp_plen - q:
        return None
    if not server_port and not (inner.src.startswith(F.TEREDO_PREFIX) or inner.dst.startswith(F.TEREDO_PREFIX)):
        return None
    return _ip(number, ts, inner, udp_plen - len(raw), depth + 1)


def _gre(number, ts, g, depth: int) -> Packet | None:
    """The packet inside a dpkt GRE object; ERSPAN headers (which dpkt does not know) are skipped by hand."""
    if g.flags & (F.GRE_VERSION_MASK | F.GRE_ROUTING):
        return None
    raw = g.data if isinstance(g.data, bytes) else bytes(g.data)
    if g.p == F.ETHERTYPE_ERSPAN_II:
        raw = raw[F.ERSPAN_II_HEADER_LEN :] if g.flags & F.GRE_SEQ else raw
    elif g.p == F.ETHERTYPE_ERSPAN_III:
        sub = raw[F.ERSPAN_III_HEADER_LEN - 1] & F.ERSPAN_III_O_FLAG
        raw = raw[F.ERSPAN_III_HEADER_LEN + (F.ERSPAN_III_SUBHEADER_LEN if sub else 0) :]
    elif g.p == F.ETHERTYPE_MPLS:
        ipo = _mpls(raw)
        return _ip(number, ts, ipo, 0, depth + 1) if ipo is not None else None
    elif isinstance(g.data, (ip.IP, ip6.IP6)):
        return _ip(number, ts, g.data, 0, depth + 1)
    elif g.p != F.ETHERTYPE_TEB:
        return None
    try:
        ipo = _payload_ip(ethernet.Ethernet(raw))
    except _ERRORS:
        return None
    return _ip(number, ts, ipo, 0, depth + 1) if ipo is not None else None


def _geneve(number, ts, raw: bytes, depth: int) -> Packet | None:
    """Geneve (RFC 8926) by hand: dpkt has no parser for it."""
    if raw[0] >> F.GENEVE_VERSION_SHIFT:
        return None
    body = raw[F.GENEVE_HEADER_LEN + ((raw[0] & F.GENEVE_OPT_LEN_MASK) << 2) :]
    proto = struct.unpack_from("!H", raw, 2)[0]
    try:
        if proto == F.ETHERTYPE_TEB:
            ipo = _payload_ip(ethernet.Ethernet(body))
        elif proto in (F.ETHERTYPE_IPV4, F.ETHERTYPE_IPV6):
            ipo = ip.IP(body) if proto == F.ETHERTYPE_IPV4 else ip6.IP6(body)
        else:
            return None
    except _ERRORS:
        return None
    return _ip(number, ts, ipo, 0, depth + 1) if ipo is not None else None


def _vxlan(number, ts, raw: bytes, depth: int) -> Packet | None:
    if len(raw) < 22 or not raw[0] & F.VXLAN_FLAG_VNI:
        return None
    try:
        ipo = _payload_ip(ethernet.Ethernet(raw[8:]))
    except _ERRORS:
        return None
    if ipo is None:
        return None
    return _ip(number, ts, ipo, 0, depth + 1)
