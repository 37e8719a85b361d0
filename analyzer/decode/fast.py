"""The packet decoder: one captured frame in, its packet handed on (or the frame counted as skipped).

Two paths give the same answers. The fast path reads untagged Ethernet + option-less,
unfragmented IPv4 (or IPv6 without extension headers) + TCP/UDP at fixed offsets, straight out
of the reader's buffer, and hands the header fields to a Sink without building any object but
the addresses and payload head. Everything else (other link layers, VLAN tags, IPv4 options,
IPv6 extension headers, ICMP errors, tunnels, truncation) takes the general path, which checks
every length before it reads and builds a Packet. decode() returns the Packet either path gives;
tests/test_decode_corpus.py holds both paths to the dpkt-based reference decoder, field by field,
on every capture of the corpus.

A sink that follows one share of a capture split by conversation (Sink.shares > 1, analyzer.split)
gets from the fast path only the packets of its share: the share is hashed from the header bytes
once the packet is known to be a plain TCP or UDP one (flow_share), and any other share's packet
goes to Sink.elsewhere() without a key, a payload or a call with its fields being built.

Nothing here raises on bad input: a frame that cannot be used is counted under a warning code
and decode() returns None.
"""

from __future__ import annotations

from struct import Struct
from typing import Final

from analyzer.decode import facts as F
from analyzer.decode.warnings import Tally
from analyzer.icmp import ICMP4_ERROR_TYPES, ICMP6_ERROR_TYPES
from analyzer.model import PAYLOAD_HEAD, CaptureWarning, Frame, Packet, Quoted
from analyzer.protocol import (
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    OPT_MSS,
    OPT_SACK,
    OPT_SACK_PERM,
    OPT_TIMESTAMP,
    OPT_WSCALE,
)
from analyzer.sink import Sink
from analyzer.wire import be16, be32

_IP4: Final = Struct("!BxHHHBB2x4s4s")  # ver/ihl, total length, id, frag, ttl, proto, src, dst
_IP6: Final = Struct("!BxxxHBB16s16s")  # ver/class, payload length, next header, hop limit, src, dst
_TCP: Final = Struct("!HHIIBBH")  # ports, seq, ack, data offset, flags, window
_PORTS: Final = Struct("!HH")
_PORTS_SEQ: Final = Struct("!HHI")
_U16: Final = Struct("!H")
_TLV_LE: Final = Struct("<HH")
_TLV_BE: Final = Struct(">HH")
_new = tuple.__new__  # builds a Packet without a Python-level __new__ call

_OPT_BITS: Final = {
    F.TCPOPT_MSS: OPT_MSS,
    F.TCPOPT_WSCALE: OPT_WSCALE,
    F.TCPOPT_SACK_PERM: OPT_SACK_PERM,
    F.TCPOPT_SACK: OPT_SACK,
    F.TCPOPT_TIMESTAMP: OPT_TIMESTAMP,
}
_IP4_FRAG_MASK: Final = 0x3FFF  # MF flag + fragment offset: any bit set means a fragment (RFC 791)
_IP4_OFFSET_MASK: Final = 0x1FFF
_IP6_FRAG_OFFSET_MASK: Final = 0xFFF8  # RFC 8200 4.5, in 8-octet units already shifted left by 3
_HEAD: Final = PAYLOAD_HEAD

# The fast path's frame: untagged Ethernet II (RFC 894), then IPv4 without options (RFC 791 3.1)
# or IPv6 without extension headers (RFC 8200 3), then TCP or UDP. Offsets are from the frame's
# first byte; written as numbers (with their sums beside them) so that mypyc folds them.
_ETH_TYPE: Final = 12  # EtherType, after the two MAC addresses
_IP: Final = 14  # the IP header: facts.ETHERNET_HEADER_LEN
_IP4_VER_IHL: Final = 14  # version and header length: 0x45 is IPv4 without options
_IP4_NO_OPTIONS: Final = 0x45
_IP4_TOTAL_LEN: Final = 16  # 14 + 2
_IP4_ID: Final = 18  # 14 + 4
_IP4_FRAG: Final = 20  # 14 + 6: flags and fragment offset
_IP4_TTL: Final = 22  # 14 + 8
_IP4_PROTO: Final = 23  # 14 + 9
_IP4_ADDRS: Final = 26  # 14 + 12: source then destination address
_IP4_PAYLOAD: Final = 34  # 14 + 20
_IP4_HLEN: Final = 20
_IP6_PAYLOAD_LEN: Final = 18  # 14 + 4
_IP6_NEXT: Final = 20  # 14 + 6: next header
_IP6_HOPS: Final = 21  # 14 + 7: hop limit
_IP6_ADDRS: Final = 22  # 14 + 8
_IP6_PAYLOAD: Final = 54  # 14 + 40
_TCP_MIN: Final = 20  # F.TCP_MIN_HEADER_LEN
_UDP_HLEN: Final = 8
# Within the TCP header (RFC 9293 3.1); the ports are its first four bytes, ending the flow key.
_PORTS_END: Final = 4
_TCP_SEQ: Final = 4
_TCP_ACK: Final = 8
_TCP_DATA_OFF: Final = 12  # header length in 32-bit words, in the high nibble
_TCP_FLAGS: Final = 13
_TCP_WIN: Final = 14
# NOP, NOP, timestamp (kind 8, length 10): the only option Linux and BSD put on every segment
# after the SYN, so it is recognised without walking the options.
_TCP_WITH_TIMESTAMP: Final = 32  # 20 + 12
_TS_OPTION_HEAD: Final = b"\x01\x01\x08\x0a"


def tcp_option_bits(data: bytes, p: int, end: int) -> int:
    """The OPT_* bits of the TCP options in data[p:end]; stops at EOL or a malformed option."""
    bits = 0
    while p < end:
        kind = data[p]
        if kind == F.TCPOPT_EOL:
            break
        if kind == F.TCPOPT_NOP:
            p += 1
            continue
        if p + 1 >= end:
            break
        length = data[p + 1]
        if length < 2 or p + length > end:
            break
        bits |= _OPT_BITS.get(kind, 0)
        p += length
    return bits


def _payload(data: bytes, start: int, plen: int, stop: int) -> bytes:
    """Up to PAYLOAD_HEAD payload bytes from start, not past the captured frame's end."""
    if not plen:
        return b""
    end = start + (plen if plen < _HEAD else _HEAD)
    return data[start : end if end < stop else stop]


def _options(data: bytes, q: int, thl: int) -> int:
    """The OPT_* bits of the TCP header at q, whose length thl is known to be captured."""
    if thl == _TCP_MIN:
        return 0
    o = q + _TCP_MIN
    if thl == _TCP_WITH_TIMESTAMP and data[o : o + 4] == _TS_OPTION_HEAD:
        return OPT_TIMESTAMP
    return tcp_option_bits(data, o, q + thl)


# The share hash works in 30 bits: compiled, a product of two numbers below 2**30 stays a machine
# integer (mypyc checks only that much before it falls back to Python's big integers).
_HASH_MASK: Final = 0x3FFFFFFF
_FNV_PRIME: Final = 0x01000193
_FNV_START: Final = 0x011C9DC5


def _side_hash(data: bytes, at: int, alen: int, port: int) -> int:
    """One side (address, port) of a conversation as a 30-bit number (FNV-1a over 16-bit words)."""
    h = (_FNV_START ^ port) * _FNV_PRIME & _HASH_MASK
    for i in range(at, at + alen, 2):
        h = (h ^ be16(data, i)) * _FNV_PRIME & _HASH_MASK
    return h


def flow_share(a: bytes, at_a: int, b: bytes, at_b: int, alen: int, port_a: int, port_b: int, shares: int) -> int:
    """The share (0 .. shares - 1) of the conversation between address a[at_a:at_a + alen], port_a and
    b[at_b:at_b + alen], port_b: the same from either direction's packet (the two sides' hashes are
    combined with XOR). Read in place, so the fast path can drop another share's packet before
    building anything; analyzer.flows.shares gives decoded packets their share the same way.
    A hand-written mix rather than zlib.crc32: it would need the key as one bytes object first.
    """
    h = _side_hash(a, at_a, alen, port_a) ^ _side_hash(b, at_b, alen, port_b)
    h = (h ^ (h >> 15)) * 0x045D9F3B & _HASH_MASK  # the sides' bits spread over the low bits
    return (h ^ (h >> 15)) % shares


def _maybe_tunnel(data: bytes, q: int, sport: int, dport: int, plen: int, stop: int) -> bool:
    """A UDP datagram at q that may carry Teredo or VXLAN: the general path looks inside it."""
    if sport == F.TEREDO_PORT or dport == F.TEREDO_PORT or dport == F.VXLAN_PORT or dport == F.GENEVE_PORT:
        return True
    # Teredo's payload starts with an IPv6 header (0x6_) or an indication header (0x00).
    return plen >= 40 and q + 8 < stop and (data[q + 8] >> 4 == 6 or data[q + 8] == 0)


def _tcp(
    sink: Sink, number: int, ts: float, data: bytes, addrs: int, q: int, seg: int, ttl: int, ip_id: int, stop: int
) -> bool:
    """Hand on the TCP segment at q (addresses at `addrs`, `seg` bytes by the IP header); False if it is odd."""
    thl = (data[q + _TCP_DATA_OFF] >> 4) << 2
    plen = seg - thl
    if thl < _TCP_MIN or plen < 0 or q + thl > stop:
        return False
    shares = sink.shares
    if shares > 1:
        alen = (q - addrs) >> 1
        h = flow_share(data, addrs, data, addrs + alen, alen, be16(data, q), be16(data, q + 2), shares)
        if h < sink.share or h >= sink.share_end:
            if ts >= sink.next_tick:
                sink.elsewhere(number, ts)
            return True
    sink.tcp(
        number,
        ts,
        data[addrs : q + _PORTS_END],
        be16(data, q),
        be16(data, q + 2),
        data[q + _TCP_FLAGS],
        be32(data, q + _TCP_SEQ),
        be32(data, q + _TCP_ACK),
        be16(data, q + _TCP_WIN),
        plen,
        ttl,
        ip_id,
        _payload(data, q + thl, plen, stop),
        _options(data, q, thl) if sink.wants_options else 0,
    )
    return True


def _udp(
    sink: Sink, number: int, ts: float, data: bytes, addrs: int, q: int, plen: int, ttl: int, ip_id: int, stop: int
) -> bool:
    """Hand on the UDP datagram at q (addresses at `addrs`, plen payload bytes); False if it may be a tunnel."""
    sport = be16(data, q)
    dport = be16(data, q + 2)
    if _maybe_tunnel(data, q, sport, dport, plen, stop):
        return False
    shares = sink.shares
    if shares > 1:
        alen = (q - addrs) >> 1
        h = flow_share(data, addrs, data, addrs + alen, alen, sport, dport, shares)
        if h < sink.share or h >= sink.share_end:
            if ts >= sink.next_tick:
                sink.elsewhere(number, ts)
            return True
    payload = _payload(data, q + _UDP_HLEN, plen, stop)
    sink.udp(number, ts, data[addrs : q + _PORTS_END], sport, dport, plen, ttl, ip_id, payload)
    return True


class _Keep(Sink):
    """The sink behind Decoder.decode: keeps the one Packet, whole."""

    def __init__(self) -> None:
        self.pkt: Packet | None = None
        self.wants_options = True

    def tcp(
        self,
        number: int,
        ts: float,
        key: bytes,
        sport: int,
        dport: int,
        flags: int,
        seq: int,
        ack: int,
        win: int,
        plen: int,
        ttl: int,
        ip_id: int,
        payload: bytes,
        opts: int,
    ) -> None:
        family = 4 if len(key) == 12 else 6
        alen = 4 if family == 4 else 16
        self.pkt = Packet(
            number,
            ts,
            family,
            key[:alen],
            key[alen : 2 * alen],
            IPPROTO_TCP,
            sport,
            dport,
            ttl,
            ip_id,
            flags,
            seq,
            ack,
            win,
            plen,
            payload,
            -1,
            0,
            None,
            opts,
            None,
        )

    def udp(
        self,
        number: int,
        ts: float,
        key: bytes,
        sport: int,
        dport: int,
        plen: int,
        ttl: int,
        ip_id: int,
        payload: bytes,
    ) -> None:
        family = 4 if len(key) == 12 else 6
        alen = 4 if family == 4 else 16
        self.pkt = Packet(
            number,
            ts,
            family,
            key[:alen],
            key[alen : 2 * alen],
            IPPROTO_UDP,
            sport,
            dport,
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
            None,
        )

    def packet(self, pkt: Packet) -> None:
        self.pkt = pkt


class Decoder:
    """Decodes frames into Packets and tallies what it had to skip, for the capture's warnings."""

    def __init__(self) -> None:
        self._tally = Tally()
        self._keep = _Keep()
        self._encaps: dict[str, int] = {}  # outer layers unwrapped (GRE, ERSPAN, Geneve ...) -> packets
        self._links = {
            F.LINKTYPE_EN10MB: self._link_ethernet,
            F.LINKTYPE_LINUX_SLL: self._link_sll,
            F.LINKTYPE_LINUX_SLL2: self._link_sll2,
            F.LINKTYPE_RAW: self._link_raw,
            F.LINKTYPE_RAW_DLT12: self._link_raw,
            F.LINKTYPE_RAW_DLT14: self._link_raw,
            F.LINKTYPE_IPV4: self._link_ipv4,
            F.LINKTYPE_IPV6: self._link_ipv6,
            F.LINKTYPE_NULL: self._link_loopback,
            F.LINKTYPE_LOOP: self._link_loopback,
            F.LINKTYPE_NFLOG: self._link_nflog,
            F.LINKTYPE_PPP: self._link_ppp,
            F.LINKTYPE_PPP_HDLC: self._link_ppp,
            F.LINKTYPE_PPP_ETHER: self._link_ppp_ether,
            F.LINKTYPE_IEEE802_11: self._link_dot11,
            F.LINKTYPE_IEEE802_11_RADIOTAP: self._link_radiotap,
        }

    def warnings(self) -> list[CaptureWarning]:
        """One warning per kind of thing skipped so far, with counts and the first frame."""
        return self._tally.warnings()

    def encapsulations(self) -> list[str]:
        """The outer layers unwrapped so far (GRE, ERSPAN II, Geneve ...), in the order first seen."""
        return list(self._encaps)

    def counts(self) -> dict[str, dict[str, int]]:
        """Every tally by code and detail, including non-IP frames (which are not warnings)."""
        return self._tally.counts()

    # -- entry points --------------------------------------------------------------------------

    def decode(self, frame: Frame) -> Packet | None:
        """The Packet in one frame, or None when it carries nothing usable (counted)."""
        keep = self._keep
        data = frame.data
        self.take(data, 0, len(data), frame.wirelen, frame.number, frame.ts, frame.linktype, keep)
        pkt = keep.pkt
        keep.pkt = None
        return pkt

    def take(
        self, data: bytes, start: int, stop: int, wirelen: int, number: int, ts: float, linktype: int, sink: Sink
    ) -> None:
        """Decode the frame data[start:stop] and hand it to `sink`; a frame that cannot be used is counted.

        Fast path: untagged Ethernet, IPv4 with IHL 5 that is not a fragment or IPv6 without
        extension headers, then TCP or UDP with its whole header captured. Its fields go to
        sink.tcp() or sink.udp() as numbers read in place, without building a Packet. Anything
        else takes the general path and reaches sink.packet().
        """
        p = start
        n = stop - start
        if linktype == F.LINKTYPE_EN10MB and n >= _IP4_PAYLOAD:
            etype = be16(data, p + _ETH_TYPE)
            if etype == F.ETHERTYPE_IPV4:
                if data[p + _IP4_VER_IHL] == _IP4_NO_OPTIONS and not be16(data, p + _IP4_FRAG) & _IP4_FRAG_MASK:
                    proto = data[p + _IP4_PROTO]
                    tot = be16(data, p + _IP4_TOTAL_LEN)
                    ttl = data[p + _IP4_TTL]
                    ip_id = be16(data, p + _IP4_ID)
                    q = p + _IP4_PAYLOAD
                    if proto == IPPROTO_TCP and tot >= _IP4_HLEN + _TCP_MIN and n >= _IP4_PAYLOAD + _TCP_MIN:
                        if _tcp(sink, number, ts, data, p + _IP4_ADDRS, q, tot - _IP4_HLEN, ttl, ip_id, stop):
                            return
                    elif proto == IPPROTO_UDP and tot >= _IP4_HLEN + _UDP_HLEN and n >= _IP4_PAYLOAD + _UDP_HLEN:
                        seg = tot - _IP4_HLEN - _UDP_HLEN
                        if _udp(sink, number, ts, data, p + _IP4_ADDRS, q, seg, ttl, ip_id, stop):
                            return
            elif etype == F.ETHERTYPE_IPV6 and n >= _IP6_PAYLOAD and data[p + _IP] >> 4 == 6:
                nxt = data[p + _IP6_NEXT]
                plen6 = be16(data, p + _IP6_PAYLOAD_LEN)
                hops = data[p + _IP6_HOPS]
                q = p + _IP6_PAYLOAD
                if nxt == IPPROTO_TCP and n >= _IP6_PAYLOAD + _TCP_MIN:
                    if _tcp(sink, number, ts, data, p + _IP6_ADDRS, q, plen6, hops, -1, stop):
                        return
                elif nxt == IPPROTO_UDP and plen6 >= _UDP_HLEN and n >= _IP6_PAYLOAD + _UDP_HLEN:
                    if _udp(sink, number, ts, data, p + _IP6_ADDRS, q, plen6 - _UDP_HLEN, hops, -1, stop):
                        return
        frame = Frame(number, ts, n, wirelen, linktype, data if p == 0 and stop == len(data) else data[p:stop])
        pkt = self._general(frame)
        if pkt is not None:
            sink.packet(pkt)

    def decode_general(self, frame: Frame) -> Packet | None:
        """decode() without the fast path: for tests that hold the two paths to one answer."""
        return self._general(frame)

    def _general(self, frame: Frame) -> Packet | None:
        link = self._links.get(frame.linktype)
        if link is None:
            self._tally.add("unknown-linktype", f"{F.linktype_name(frame.linktype)} ({frame.linktype})", frame.number)
            return None
        data = frame.data
        try:
            found = link(data, frame.number)
            if found is None:
                return None
            version, off = found
            return self._ip(frame.number, frame.ts, data, off, version, frame.wirelen, 0)
        except Exception as exc:  # a decoder bug must not end the analysis: count it, go on
            self._tally.add("decode-error", f"{type(exc).__name__}: {exc}", frame.number)
            return None

    # -- link layers: each returns (IP version expected or 0 for either, offset) or None -----

    def _short(self, what: str, number: int) -> None:
        self._tally.add("truncated-headers", what, number)

    def _link_ethernet(self, data: bytes, number: int) -> tuple[int, int] | None:
        if len(data) < F.ETHERNET_HEADER_LEN:
            self._short("Ethernet", number)
            return None
        return self._ethertype(data, _U16.unpack_from(data, 12)[0], F.ETHERNET_HEADER_LEN, number)

    def _ethertype(self, data: bytes, etype: int, off: int, number: int) -> tuple[int, int] | None:
        """Follow VLAN tags, PPPoE and MPLS from an ethertype whose payload starts at off."""
        for _ in range(F.MAX_VLAN_TAGS + 1):
            if etype == F.ETHERTYPE_IPV4:
                return 4, off
            if etype == F.ETHERTYPE_IPV6:
                return 6, off
            if etype in F.VLAN_TPIDS:
                if len(data) < off + 4:
                    self._short("VLAN tag", number)
                    return None
                etype = _U16.unpack_from(data, off + 2)[0]
                off += 4
                continue
            if etype == F.ETHERTYPE_PPPOE_SESS:
                if len(data) < off + F.PPPOE_HEADER_LEN + 2:
                    self._short("PPPoE", number)
                    return None
                return self._ppp_protocol(
                    _U16.unpack_from(data, off + F.PPPOE_HEADER_LEN)[0], off + F.PPPOE_HEADER_LEN + 2, number
                )
            if etype == F.ETHERTYPE_MPLS or etype == F.ETHERTYPE_MPLS_MCAST:
                return self._mpls(data, off, number)
            break
        else:
            self._tally.add("malformed-link", "too many VLAN tags", number)
            return None
        if etype <= F.ETHERTYPE_MAX_8023_LEN:
            return self._llc(data, off, number)
        else:
            self._tally.add("non-ip", F.ETHERTYPE_NAMES.get(etype, f"ethertype 0x{etype:04x}"), number)
        return None

    def _llc(self, data: bytes, off: int, number: int) -> tuple[int, int] | None:
        """An 802.2 LLC header at off (802.3 frames, 802.11 data): SNAP carries an ethertype on."""
        head = data[off : off + F.LLC_LEN]
        if head == F.LLC_SNAP:
            if len(data) < off + F.LLC_SNAP_LEN:
                self._short("LLC/SNAP", number)
                return None
            etype = _U16.unpack_from(data, off + F.LLC_SNAP_LEN - 2)[0]
            if etype > F.ETHERTYPE_MAX_8023_LEN:  # a length here would loop back into LLC
                return self._ethertype(data, etype, off + F.LLC_SNAP_LEN, number)
        elif head == F.LLC_SAP_IP:
            return 4, off + F.LLC_LEN
        self._tally.add("non-ip", "802.3/LLC", number)
        return None

    def _link_radiotap(self, data: bytes, number: int) -> tuple[int, int] | None:
        if len(data) < F.RADIOTAP_MIN_LEN:
            self._short("radiotap header", number)
            return None
        return self._dot11(data, data[2] | (data[3] << 8), number)  # the length is little-endian

    def _link_dot11(self, data: bytes, number: int) -> tuple[int, int] | None:
        return self._dot11(data, 0, number)

    def _dot11(self, data: bytes, off: int, number: int) -> tuple[int, int] | None:
        """An 802.11 frame at off: data frames go on through LLC; the rest are not IP."""
        if len(data) < off + F.DOT11_HEADER_LEN:
            self._short("802.11 header", number)
            return None
        fc, flags = data[off], data[off + 1]
        subtype = fc >> 4
        if (fc >> 2) & 3 != F.DOT11_TYPE_DATA:
            self._tally.add("non-ip", "802.11 management/control", number)
            return None
        if subtype & F.DOT11_SUBTYPE_NULL:
            self._tally.add("non-ip", "802.11 null data", number)
            return None
        if flags & F.DOT11_PROTECTED:
            self._tally.add("non-ip", "802.11 encrypted", number)
            return None
        hlen = F.DOT11_HEADER_LEN
        if flags & F.DOT11_TO_FROM_DS == F.DOT11_TO_FROM_DS:
            hlen += F.DOT11_ADDR4_LEN
        if subtype & F.DOT11_SUBTYPE_QOS:
            hlen += F.DOT11_QOS_LEN + (F.DOT11_HTC_LEN if flags & F.DOT11_ORDER else 0)
        return self._llc(data, off + hlen, number)

    def _ppp_protocol(self, protocol: int, off: int, number: int, data: bytes = b"") -> tuple[int, int] | None:
        if protocol == F.PPP_IPV4:
            return 4, off
        if protocol == F.PPP_IPV6:
            return 6, off
        if (protocol == F.PPP_MPLS or protocol == F.PPP_MPLS_MCAST) and data:
            return self._mpls(data, off, number)
        self._tally.add("non-ip", f"PPP protocol 0x{protocol:04x}", number)
        return None

    def _mpls(self, data: bytes, off: int, number: int) -> tuple[int, int] | None:
        for _ in range(F.MAX_MPLS_LABELS):
            if len(data) < off + F.MPLS_LABEL_LEN + 1:
                self._short("MPLS", number)
                return None
            bottom = data[off + 2] & F.MPLS_BOTTOM_OF_STACK
            off += F.MPLS_LABEL_LEN
            if bottom:
                # RFC 3032 leaves the payload type to the label; the first nibble is the usual guess.
                version = data[off] >> 4
                if version == 4 or version == 6:
                    return version, off
                self._tally.add("non-ip", "MPLS payload not IP", number)
                return None
        self._tally.add("malformed-link", "MPLS label stack without bottom", number)
        return None

    def _link_sll(self, data: bytes, number: int) -> tuple[int, int] | None:
        if len(data) < F.LINUX_SLL_HEADER_LEN:
            self._short("Linux cooked header", number)
            return None
        etype = _U16.unpack_from(data, F.LINUX_SLL_PROTOCOL_OFFSET)[0]
        return self._ethertype(data, etype, F.LINUX_SLL_HEADER_LEN, number)

    def _link_sll2(self, data: bytes, number: int) -> tuple[int, int] | None:
        if len(data) < F.LINUX_SLL2_HEADER_LEN:
            self._short("Linux cooked v2 header", number)
            return None
        etype = _U16.unpack_from(data, F.LINUX_SLL2_PROTOCOL_OFFSET)[0]
        return self._ethertype(data, etype, F.LINUX_SLL2_HEADER_LEN, number)

    def _link_raw(self, data: bytes, number: int) -> tuple[int, int] | None:
        return 0, 0

    def _link_ipv4(self, data: bytes, number: int) -> tuple[int, int] | None:
        return 4, 0

    def _link_ipv6(self, data: bytes, number: int) -> tuple[int, int] | None:
        return 6, 0

    def _link_loopback(self, data: bytes, number: int) -> tuple[int, int] | None:
        if len(data) < 4:
            self._short("loopback header", number)
            return None
        # The family is a 32-bit value in either byte order: one end byte holds it, the rest are 0.
        family = data[0] or data[3]
        if family == F.BSD_AF_INET:
            return 4, 4
        if family in F.BSD_AF_INET6:
            return 6, 4
        self._tally.add("non-ip", f"loopback family {family}", number)
        return None

    def _link_nflog(self, data: bytes, number: int) -> tuple[int, int] | None:
        p = F.NFLOG_HEADER_LEN
        n = len(data)
        if n < p:
            self._short("NFLOG header", number)
            return None
        while p + 4 <= n:
            length, kind = _TLV_LE.unpack_from(data, p)
            if kind > 0xFF:  # written on a big-endian host: types are small numbers
                length, kind = _TLV_BE.unpack_from(data, p)
            if length < 4:
                break
            if kind == F.NFULA_PAYLOAD:
                if p + length > n:
                    self._short("NFLOG payload", number)
                    return None
                return 0, p + 4
            p += (length + 3) & ~3
        self._tally.add("non-ip", "NFLOG record without packet", number)
        return None

    def _link_ppp(self, data: bytes, number: int) -> tuple[int, int] | None:
        off = 2 if data[:2] == F.PPP_ADDRESS_CONTROL else 0
        if len(data) < off + 2:
            self._short("PPP header", number)
            return None
        return self._ppp_protocol(_U16.unpack_from(data, off)[0], off + 2, number, data)

    def _link_ppp_ether(self, data: bytes, number: int) -> tuple[int, int] | None:
        if len(data) < F.PPPOE_HEADER_LEN + 2:
            self._short("PPPoE", number)
            return None
        return self._ppp_protocol(_U16.unpack_from(data, F.PPPOE_HEADER_LEN)[0], F.PPPOE_HEADER_LEN + 2, number)

    # -- network layer -------------------------------------------------------------------------

    def _ip(self, number: int, ts: float, data: bytes, off: int, expect: int, wire: int, depth: int) -> Packet | None:
        """Decode the IP packet at data[off:]; wire is the frame's length on the wire."""
        n = len(data)
        if n <= off:
            self._short("IP", number)
            return None
        version = data[off] >> 4
        if expect and version != expect:
            self._tally.add("bad-ip-header", f"IPv{version} where IPv{expect} was announced", number)
            return None
        if version == 4:
            if n < off + F.IPV4_MIN_HEADER_LEN:
                self._short("IPv4", number)
                return None
            vihl, tot, ip_id, frag, ttl, proto, src, dst = _IP4.unpack_from(data, off)
            ihl = (vihl & 0x0F) << 2
            if ihl < F.IPV4_MIN_HEADER_LEN:
                self._tally.add("bad-ip-header", f"IPv4 header length {ihl} < 20", number)
                return None
            if tot == 0:
                # TCP segmentation offload: the sender's capture shows 0; the frame length is right.
                tot = wire - off
            if tot < ihl:
                self._tally.add("bad-ip-header", f"IPv4 total length {tot} < header length {ihl}", number)
                return None
            if n < off + ihl:
                self._short("IPv4 options", number)
                return None
            if frag & _IP4_OFFSET_MASK:
                self._tally.add("ip-fragment", "IPv4", number)
                return None
            return self._transport(number, ts, 4, src, dst, proto, ttl, ip_id, data, off + ihl, off + tot, depth)
        if version == 6:
            if n < off + F.IPV6_HEADER_LEN:
                self._short("IPv6", number)
                return None
            _vc, plen, nxt, hlim, src, dst = _IP6.unpack_from(data, off)
            p = off + F.IPV6_HEADER_LEN
            if plen == 0 and nxt != F.IPV6_NONXT:
                plen = wire - p  # jumbogram or segmentation offload: trust the frame length
            end = p + plen
            found = self._ip6_ext(data, p, end, nxt, number)
            if found is None:
                return None
            nxt, p = found
            return self._transport(number, ts, 6, src, dst, nxt, hlim, -1, data, p, end, depth)
        self._tally.add("bad-ip-header", f"IP version {version}", number)
        return None

    def _ip6_ext(self, data: bytes, p: int, end: int, nxt: int, number: int) -> tuple[int, int] | None:
        """Walk IPv6 extension headers from p: (transport protocol, its offset) or None (counted)."""
        n = len(data)
        for _ in range(F.MAX_IPV6_EXT_HEADERS):
            if nxt not in F.IPV6_EXT_HEADERS:
                return nxt, p
            if n < p + 8:  # every extension header is at least 8 bytes
                self._short("IPv6 extension header", number)
                return None
            if nxt == F.IPV6_FRAGMENT:
                if _U16.unpack_from(data, p + 2)[0] & _IP6_FRAG_OFFSET_MASK:
                    self._tally.add("ip-fragment", "IPv6", number)
                    return None
                length = 8
            elif nxt == F.IPV6_AH:
                length = (data[p + 1] + 2) << 2
            else:
                length = (data[p + 1] + 1) << 3
            nxt = data[p]
            p += length
            if p > end:
                self._tally.add("bad-ip-header", "IPv6 extension headers beyond the payload length", number)
                return None
        self._tally.add("bad-ip-header", "too many IPv6 extension headers", number)
        return None

    # -- transport layer -----------------------------------------------------------------------

    def _transport(
        self,
        number: int,
        ts: float,
        family: int,
        src: bytes,
        dst: bytes,
        proto: int,
        ttl: int,
        ip_id: int,
        data: bytes,
        p: int,
        end: int,
        depth: int,
    ) -> Packet | None:
        """Decode the transport header at p; end is where the IP length says the packet ends."""
        lim = end if end < len(data) else len(data)  # captured bytes of this packet (no padding)
        ip_plen = end - p
        if proto == IPPROTO_TCP:
            if lim < p + F.TCP_MIN_HEADER_LEN:
                self._transport_short("TCP", end, p + F.TCP_MIN_HEADER_LEN, number)
                return None
            sport, dport, seq, ack, doff, flags, win = _TCP.unpack_from(data, p)
            thl = (doff >> 4) << 2
            if thl < F.TCP_MIN_HEADER_LEN:
                self._tally.add("bad-transport-header", f"TCP header length {thl} < 20", number)
                return None
            opts = 0
            if thl > F.TCP_MIN_HEADER_LEN:
                if lim < p + thl:
                    self._tally.add("truncated-headers", "TCP options (packet kept)", number)
                opts = tcp_option_bits(data, p + F.TCP_MIN_HEADER_LEN, min(lim, p + thl))
            plen = ip_plen - thl
            if plen < 0:
                plen = 0
            payload = data[p + thl : min(lim, p + thl + _HEAD)] if plen else b""
            return _new(
                Packet,
                (
                    number,
                    ts,
                    family,
                    src,
                    dst,
                    proto,
                    sport,
                    dport,
                    ttl,
                    ip_id,
                    flags,
                    seq,
                    ack,
                    win,
                    plen,
                    payload,
                    -1,
                    0,
                    None,
                    opts,
                    None,
                ),
            )
        if proto == IPPROTO_UDP:
            if lim < p + F.UDP_HEADER_LEN:
                self._transport_short("UDP", end, p + F.UDP_HEADER_LEN, number)
                return None
            sport, dport = _PORTS.unpack_from(data, p)
            plen = ip_plen - F.UDP_HEADER_LEN
            if plen < 0:
                plen = 0
            q = p + F.UDP_HEADER_LEN
            payload = data[q : min(lim, q + _HEAD)] if plen else b""
            inner = None
            if depth < F.MAX_TUNNEL_DEPTH and plen >= F.VXLAN_HEADER_LEN + F.ETHERNET_HEADER_LEN:
                if dport == F.VXLAN_PORT:
                    inner = self._vxlan(number, ts, data, q, lim, depth)
                elif dport == F.GENEVE_PORT:
                    inner = self._geneve(number, ts, data, q, lim, depth)
                elif plen >= F.IPV6_HEADER_LEN:
                    inner = self._teredo(
                        number, ts, data, q, end, lim, depth, sport == F.TEREDO_PORT or dport == F.TEREDO_PORT
                    )
            return _new(
                Packet,
                (
                    number,
                    ts,
                    family,
                    src,
                    dst,
                    proto,
                    sport,
                    dport,
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
                ),
            )
        if proto == IPPROTO_ICMP or proto == IPPROTO_ICMPV6:
            if lim < p + 4:
                self._transport_short("ICMP", end, p + 4, number)
                return None
            icmp_type = data[p]
            icmp_code = data[p + 1]
            plen = ip_plen - F.ICMP_HEADER_LEN
            if plen < 0:
                plen = 0
            q = p + F.ICMP_HEADER_LEN
            payload = data[q : min(lim, q + _HEAD)] if plen else b""
            quoted = None
            if proto == IPPROTO_ICMP:
                if icmp_type in ICMP4_ERROR_TYPES:
                    quoted = _quote(data, q, lim, 4)
            elif icmp_type in ICMP6_ERROR_TYPES:
                quoted = _quote(data, q, lim, 6)
            return _new(
                Packet,
                (
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
                    icmp_type,
                    icmp_code,
                    quoted,
                    0,
                    None,
                ),
            )
        if proto == F.IPV6_NONXT:
            self._tally.add("non-ip", "IPv6 without payload (No Next Header)", number)
            return None
        if proto == F.IPPROTO_GRE and depth < F.MAX_TUNNEL_DEPTH:
            return self._gre(number, ts, data, p, lim, depth)
        name = F.IP_PROTO_NAMES.get(proto, "")
        self._tally.add("unsupported-protocol", f"{name} ({proto})" if name else f"protocol {proto}", number)
        return None

    def _transport_short(self, what: str, end: int, need: int, number: int) -> None:
        if end < need:
            self._tally.add("bad-transport-header", f"{what} header longer than the IP packet", number)
        else:
            self._short(what, number)
        return None

    # -- tunnels: the outer UDP packet carries the decoded inner one -----------------------------

    def _teredo(
        self, number: int, ts: float, data: bytes, q: int, end: int, lim: int, depth: int, server_port: bool
    ) -> Packet | None:
        """The IPv6 packet in a Teredo datagram (RFC 4380 5.1.1), after its optional indications.

        On the Teredo server port any IPv6 packet filling the datagram is Teredo; between clients
        and relays (any ports, found by Zeek's dynamic protocol detection) one of its addresses
        must also carry the Teredo prefix.
        """
        if data[q : q + 2] == F.TEREDO_AUTH:
            if lim < q + 4:
                return None
            q += F.TEREDO_AUTH_FIXED_LEN + data[q + 2] + data[q + 3]
        if data[q : q + 2] == F.TEREDO_ORIGIN:
            q += F.TEREDO_ORIGIN_LEN
        if lim < q + F.IPV6_HEADER_LEN or data[q] >> 4 != 6:
            return None  # not Teredo after all (or a bare indication): the UDP packet stands alone
        if F.IPV6_HEADER_LEN + _U16.unpack_from(data, q + 4)[0] != end - q:
            return None
        if not server_port and data[q + 8 : q + 12] != F.TEREDO_PREFIX and data[q + 24 : q + 28] != F.TEREDO_PREFIX:
            return None
        return self._ip(number, ts, data[:lim], q, 6, lim, depth + 1)

    def _vxlan(self, number: int, ts: float, data: bytes, q: int, lim: int, depth: int) -> Packet | None:
        """The Ethernet frame in a VXLAN datagram (RFC 7348 5), decoded down to its IP packet."""
        e = q + F.VXLAN_HEADER_LEN
        if lim < e + F.ETHERNET_HEADER_LEN or not data[q] & F.VXLAN_FLAG_VNI:
            return None
        inner = data[:lim]
        found = self._ethertype(inner, _U16.unpack_from(inner, e + 12)[0], e + F.ETHERNET_HEADER_LEN, number)
        if found is None:
            return None
        return self._ip(number, ts, inner, found[1], found[0], lim, depth + 1)

    def _geneve(self, number: int, ts: float, data: bytes, q: int, lim: int, depth: int) -> Packet | None:
        """The frame in a Geneve datagram (RFC 8926 3.4): Ethernet or IP, after the header's options."""
        if data[q] >> F.GENEVE_VERSION_SHIFT:
            return None  # a version we do not know: the UDP packet stands alone
        e = q + F.GENEVE_HEADER_LEN + ((data[q] & F.GENEVE_OPT_LEN_MASK) << 2)
        found = self._inner_frame(data[:lim], _U16.unpack_from(data, q + 2)[0], e, number)
        if found is None:
            return None
        self._encap("Geneve")
        return self._ip(number, ts, data[:lim], found[1], found[0], lim, depth + 1)

    def _inner_frame(self, data: bytes, etype: int, e: int, number: int) -> tuple[int, int] | None:
        """The IP packet of a tunnelled frame at e whose type is `etype` (Ethernet when TEB)."""
        if etype != F.ETHERTYPE_TEB:
            return self._ethertype(data, etype, e, number)
        if len(data) < e + F.ETHERNET_HEADER_LEN:
            self._short("tunnelled Ethernet", number)
            return None
        return self._ethertype(data, _U16.unpack_from(data, e + 12)[0], e + F.ETHERNET_HEADER_LEN, number)

    def _gre(self, number: int, ts: float, data: bytes, p: int, lim: int, depth: int) -> Packet | None:
        """The packet inside GRE (RFC 2784/2890) or ERSPAN I/II/III: it stands for the outer one.

        A mirrored or tunnelled conversation is what is diagnosed; the outer header is only named
        (Decoder.encapsulations) for the report's capture line.
        """
        if lim < p + F.GRE_HEADER_LEN:
            self._short("GRE", number)
            return None
        flags, etype = _PORTS.unpack_from(data, p)
        if flags & (F.GRE_VERSION_MASK | F.GRE_ROUTING):
            self._tally.add("unsupported-protocol", "GRE version 1 (PPTP) or source-routed GRE (47)", number)
            return None
        e = p + F.GRE_HEADER_LEN
        for bit in (F.GRE_CHECKSUM, F.GRE_KEY, F.GRE_SEQ):
            if flags & bit:
                e += 4
        name = F.ENCAPSULATION_NAMES.get(etype, "GRE")
        if etype == F.ETHERTYPE_ERSPAN_II:
            name = "ERSPAN II" if flags & F.GRE_SEQ else "ERSPAN I"  # type I has no header of its own
            e += F.ERSPAN_II_HEADER_LEN if flags & F.GRE_SEQ else 0
            etype = F.ETHERTYPE_TEB
        elif etype == F.ETHERTYPE_ERSPAN_III:
            if lim < e + F.ERSPAN_III_HEADER_LEN:
                self._short("ERSPAN III", number)
                return None
            sub = data[e + F.ERSPAN_III_HEADER_LEN - 1] & F.ERSPAN_III_O_FLAG
            e += F.ERSPAN_III_HEADER_LEN + (F.ERSPAN_III_SUBHEADER_LEN if sub else 0)
            etype = F.ETHERTYPE_TEB
        found = self._inner_frame(data[:lim], etype, e, number)
        if found is None:
            return None
        self._encap(name)
        return self._ip(number, ts, data[:lim], found[1], found[0], lim, depth + 1)

    def _encap(self, name: str) -> None:
        self._encaps[name] = self._encaps.get(name, 0) + 1


def _quote(data: bytes, q: int, lim: int, version: int) -> Quoted | None:
    """The 5-tuple (and TCP seq) of the packet an ICMP error quotes at data[q:lim], or None."""
    if lim < q + 1 or data[q] >> 4 != version:
        return None
    if version == 4:
        if lim < q + F.IPV4_MIN_HEADER_LEN:
            return None
        vihl, _tot, _id, frag, _ttl, proto, src, dst = _IP4.unpack_from(data, q)
        ihl = (vihl & 0x0F) << 2
        if ihl < F.IPV4_MIN_HEADER_LEN or lim < q + ihl:
            return None
        if frag & _IP4_OFFSET_MASK:
            return Quoted(src, dst, proto, 0, 0, -1)  # a later fragment: no transport header
        t = q + ihl
    else:
        if lim < q + F.IPV6_HEADER_LEN:
            return None
        _vc, _plen, proto, _hlim, src, dst = _IP6.unpack_from(data, q)
        t = q + F.IPV6_HEADER_LEN
        for _ in range(F.MAX_IPV6_EXT_HEADERS):
            if proto not in F.IPV6_EXT_HEADERS:
                break
            if lim < t + 8:
                return Quoted(src, dst, proto, 0, 0, -1)
            if proto == F.IPV6_FRAGMENT and _U16.unpack_from(data, t + 2)[0] & _IP6_FRAG_OFFSET_MASK:
                return Quoted(src, dst, data[t], 0, 0, -1)
            length = (
                8
                if proto == F.IPV6_FRAGMENT
                else ((data[t + 1] + 2) << 2 if proto == F.IPV6_AH else (data[t + 1] + 1) << 3)
            )
            proto = data[t]
            t += length
        else:
            return None
    if proto == IPPROTO_TCP and lim >= t + 8:
        sport, dport, seq = _PORTS_SEQ.unpack_from(data, t)
        return Quoted(src, dst, proto, sport, dport, seq)
    if (proto == IPPROTO_TCP or proto == IPPROTO_UDP) and lim >= t + 4:
        sport, dport = _PORTS.unpack_from(data, t)
        return Quoted(src, dst, proto, sport, dport, -1)
    return Quoted(src, dst, proto, 0, 0, -1)
