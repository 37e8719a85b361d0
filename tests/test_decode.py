"""Byte-literal tests of the decoder: each link layer, each protocol path, truncation, garbage."""

from __future__ import annotations

import socket
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.decode import LINKTYPE_NAMES, Decoder
from analyzer.decode.reference import reference_decode
from analyzer.model import PAYLOAD_HEAD, Frame, Packet, Quoted
from analyzer.protocol import ACK, FIN, OPT_MSS, OPT_SACK, OPT_SACK_PERM, OPT_TIMESTAMP, OPT_WSCALE, PSH, RST, SYN

A4, B4 = socket.inet_aton("192.0.2.1"), socket.inet_aton("198.51.100.7")
A6, B6 = socket.inet_pton(socket.AF_INET6, "2001:db8::1"), socket.inet_pton(socket.AF_INET6, "2001:db8::2")
MAC = bytes.fromhex("020000000001") + bytes.fromhex("020000000002")
SYN_OPTS = bytes.fromhex("020405b4" "0402" "080a000000010000000" "0" "01" "030307")  # MSS, SACKOK, TS, NOP, WS


def tcp(sport=49732, dport=443, seq=1000, ack=0, flags=SYN, win=64240, opts=b"", payload=b"") -> bytes:
    opts += b"\x00" * (-len(opts) % 4)
    off = (20 + len(opts)) // 4
    return struct.pack("!HHIIBBHHH", sport, dport, seq, ack, off << 4, flags, win, 0, 0) + opts + payload


def udp(sport=5353, dport=53, payload=b"") -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def icmp(kind, code, body=b"", rest=b"\0\0\0\0") -> bytes:
    return struct.pack("!BBH", kind, code, 0) + rest + body


def ipv4(proto, body, src=A4, dst=B4, ttl=64, ip_id=0x1234, frag=0, opts=b"", total=None) -> bytes:
    ihl = 5 + len(opts) // 4
    total = ihl * 4 + len(body) if total is None else total
    return struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, total, ip_id, frag, ttl, proto, 0, src, dst) + opts + body


def ipv6(nxt, body, src=A6, dst=B6, hlim=57, plen=None) -> bytes:
    plen = len(body) if plen is None else plen
    return struct.pack("!IHBB16s16s", 6 << 28, plen, nxt, hlim, src, dst) + body


def eth(etype, body, tags=()) -> bytes:
    head = MAC
    for tpid, vid in tags:
        head += struct.pack("!HH", tpid, vid)
    return head + struct.pack("!H", etype) + body


def decode(data: bytes, linktype: int = 1, dec: Decoder | None = None) -> Packet | None:
    """Decode one frame with a fresh decoder, holding fast path, general path and dpkt to one answer."""
    frame = Frame(7, 1.5, len(data), len(data), linktype, data)
    got = (dec or Decoder()).decode(frame)
    assert Decoder().decode_general(frame) == got
    return got


def test_ethernet_ipv4_tcp_syn_with_options() -> None:
    pkt = decode(eth(0x0800, ipv4(6, tcp(opts=SYN_OPTS))))
    assert (pkt.family, pkt.src, pkt.dst, pkt.proto, pkt.sport, pkt.dport) == (4, A4, B4, 6, 49732, 443)
    got = (pkt.flags, pkt.seq, pkt.win, pkt.ttl, pkt.ip_id, pkt.plen, pkt.payload)
    assert got == (SYN, 1000, 64240, 64, 0x1234, 0, b"")
    assert pkt.tcp_opts == OPT_MSS | OPT_SACK_PERM | OPT_TIMESTAMP | OPT_WSCALE
    assert pkt.quoted is None and pkt.inner is None and pkt.icmp_type == -1
    assert reference_decode(Frame(7, 1.5, 0, 0, 1, eth(0x0800, ipv4(6, tcp(opts=SYN_OPTS))))) == pkt._replace(ts=1.5)


def test_sack_blocks_set_the_sack_bit() -> None:
    sack = bytes.fromhex("0101050a") + struct.pack("!II", 5000, 6000)
    assert decode(eth(0x0800, ipv4(6, tcp(flags=ACK, opts=sack)))).tcp_opts == OPT_SACK


def test_payload_length_comes_from_ip_and_ethernet_padding_is_not_payload() -> None:
    frame = eth(0x0800, ipv4(6, tcp(flags=PSH | ACK, payload=b"hi"))) + b"\x00" * 10  # padded to 60+
    pkt = decode(frame)
    assert (pkt.plen, pkt.payload, pkt.flags) == (2, b"hi", PSH | ACK)


def test_payload_head_is_bounded_and_plen_is_the_wire_length() -> None:
    body = bytes(range(256)) * 4
    pkt = decode(eth(0x0800, ipv4(6, tcp(flags=ACK, payload=body))))
    assert pkt.plen == 1024 and pkt.payload == body[:PAYLOAD_HEAD]
    # snaplen cut the frame after 10 payload bytes: plen still says what was sent
    cut = eth(0x0800, ipv4(6, tcp(flags=ACK, payload=body)))[:14 + 20 + 20 + 10]
    pkt = decode(cut)
    assert pkt.plen == 1024 and pkt.payload == body[:10]


def test_udp_over_ethernet() -> None:
    pkt = decode(eth(0x0800, ipv4(17, udp(payload=b"\x12\x34query"))))
    assert (pkt.proto, pkt.sport, pkt.dport, pkt.plen, pkt.payload, pkt.flags) == (17, 5353, 53, 7, b"\x12\x34query", 0)


@pytest.mark.parametrize("tags", [[(0x8100, 10)], [(0x88A8, 100), (0x8100, 10)], [(0x9100, 5), (0x8100, 7)]],
                         ids=["802.1Q", "QinQ-88a8", "QinQ-9100"])
def test_vlan_tags(tags) -> None:
    pkt = decode(eth(0x0800, ipv4(6, tcp(flags=RST)), tags=tags))
    assert (pkt.src, pkt.flags, pkt.dport) == (A4, RST, 443)


def test_ethernet_ipv6() -> None:
    pkt = decode(eth(0x86DD, ipv6(6, tcp(flags=SYN | ACK, ack=1001))))
    got = (pkt.family, pkt.src, pkt.dst, pkt.ttl, pkt.ip_id, pkt.flags, pkt.ack)
    assert got == (6, A6, B6, 57, -1, SYN | ACK, 1001)


def test_linux_sll_and_sll2() -> None:
    sll = struct.pack("!HHH8sH", 0, 1, 6, MAC[:8], 0x0800) + ipv4(6, tcp())
    sll2 = struct.pack("!HHIHBB8s", 0x86DD, 0, 2, 1, 4, 6, MAC[:8]) + ipv6(17, udp())
    assert decode(sll, 113).src == A4
    assert (decode(sll2, 276).family, decode(sll2, 276).proto) == (6, 17)


@pytest.mark.parametrize("linktype", [101, 12, 14])
def test_raw_ip_link_types_read_the_version(linktype) -> None:
    assert decode(ipv4(6, tcp()), linktype).family == 4
    assert decode(ipv6(6, tcp()), linktype).family == 6


def test_ipv4_and_ipv6_only_link_types_reject_the_other_version() -> None:
    assert decode(ipv4(6, tcp()), 228).family == 4
    assert decode(ipv6(6, tcp()), 229).family == 6
    dec = Decoder()
    assert decode(ipv6(6, tcp()), 228, dec) is None
    assert [w.code for w in dec.warnings()] == ["bad-ip-header"]


@pytest.mark.parametrize("linktype", [0, 108])
@pytest.mark.parametrize("family,version", [(2, 4), (24, 6), (28, 6), (30, 6)])
@pytest.mark.parametrize("order", ["<I", ">I"])
def test_bsd_loopback_families_in_both_byte_orders(linktype, family, version, order) -> None:
    body = ipv4(6, tcp()) if version == 4 else ipv6(6, tcp())
    assert decode(struct.pack(order, family) + body, linktype).family == version


@pytest.mark.parametrize("order", ["<", ">"])
def test_nflog_walks_tlvs_to_the_payload(order) -> None:
    packet = ipv4(17, udp(payload=b"x"))
    prefix = b"abc\x00"  # NFULA_PREFIX (10), padded
    tlvs = struct.pack(order + "HH", 4 + 3, 10) + prefix + struct.pack(order + "HH", 4 + len(packet), 9) + packet
    pkt = decode(struct.pack("!BBH", 2, 0, 7) + tlvs, 239)
    assert (pkt.proto, pkt.dport, pkt.payload) == (17, 53, b"x")


def test_pppoe_session_and_ppp() -> None:
    pppoe = struct.pack("!BBHH", 0x11, 0, 0x1234, 2 + 40 + 8) + b"\x00\x57" + ipv6(17, udp())
    assert decode(eth(0x8864, pppoe)).family == 6
    assert decode(b"\xff\x03\x00\x21" + ipv4(6, tcp()), 9).family == 4
    dec = Decoder()
    lcp = struct.pack("!BBHH", 0x11, 0, 0x1234, 6) + b"\xc0\x21" + b"\x01\x01\x00\x04"
    assert decode(eth(0x8864, lcp), dec=dec) is None
    assert dec.warnings() == [] and "PPP protocol 0xc021" in dec.counts()["non-ip"]


def test_mpls_label_stack() -> None:
    labels = struct.pack("!I", (100 << 12) | 64) + struct.pack("!I", (200 << 12) | 0x100 | 64)
    assert decode(eth(0x8847, labels + ipv4(6, tcp()))).dport == 443


def test_ipv4_options_move_the_transport_header() -> None:
    pkt = decode(eth(0x0800, ipv4(6, tcp(flags=FIN | ACK, payload=b"abc"), opts=b"\x94\x04\x00\x00")))
    assert (pkt.sport, pkt.flags, pkt.plen, pkt.payload) == (49732, FIN | ACK, 3, b"abc")


@pytest.mark.parametrize("ihl_byte", [0x44, 0x40, 0x4F])
def test_invalid_ihl_is_skipped_and_counted(ihl_byte) -> None:
    frame = bytearray(eth(0x0800, ipv4(6, tcp())))
    frame[14] = ihl_byte  # IHL 4, 0 (< 5) or 15 (60 bytes > the 40-byte total length)
    dec = Decoder()
    assert decode(bytes(frame), dec=dec) is None
    assert [w.code for w in dec.warnings()] == ["bad-ip-header"]


def test_first_fragment_is_decoded_later_fragments_are_counted() -> None:
    dec = Decoder()
    first = decode(eth(0x0800, ipv4(17, udp(payload=b"a" * 16), frag=0x2000)), dec=dec)  # MF, offset 0
    assert (first.sport, first.dport, first.plen) == (5353, 53, 16)
    assert decode(eth(0x0800, ipv4(17, b"b" * 16, frag=0x0003)), dec=dec) is None  # offset 24
    (w,) = dec.warnings()
    assert w.code == "ip-fragment" and w.frame == 7 and w.message.startswith("1 ")


def test_ipv6_extension_headers_are_walked_and_not_counted_in_plen() -> None:
    hop = bytes([60, 0]) + b"\x01\x04\x00\x00\x00\x00"  # -> destination options, PadN
    dst = bytes([44, 1]) + b"\x01\x0c" + b"\x00" * 12  # 16 bytes -> fragment
    frag = bytes([6, 0]) + struct.pack("!HI", 0x0001, 99)  # offset 0, M=1
    pkt = decode(eth(0x86DD, ipv6(0, hop + dst + frag + tcp(flags=ACK, payload=b"xyz"))))
    assert (pkt.proto, pkt.flags, pkt.plen, pkt.payload) == (6, ACK, 3, b"xyz")
    dec = Decoder()
    later = bytes([6, 0]) + struct.pack("!HI", 8 << 3, 99)
    assert decode(eth(0x86DD, ipv6(44, later + b"\x00" * 20)), dec=dec) is None
    assert [w.code for w in dec.warnings()] == ["ip-fragment"]


def test_ipv6_ah_length_is_in_4_byte_units() -> None:
    ah = bytes([17, 4]) + b"\x00" * 22  # (4 + 2) * 4 = 24 bytes
    assert decode(eth(0x86DD, ipv6(51, ah + udp(payload=b"q")))).payload == b"q"


def test_esp_and_other_protocols_are_unsupported_warnings() -> None:
    dec = Decoder()
    assert decode(eth(0x86DD, ipv6(50, b"\x00" * 24)), dec=dec) is None
    assert decode(eth(0x0800, ipv4(2, b"\x11" * 8)), dec=dec) is None
    (w,) = dec.warnings()
    assert w.code == "unsupported-protocol" and "ESP" in w.message and "IGMP" in w.message


def test_icmp_port_unreachable_quotes_the_udp_packet() -> None:
    quoted = ipv4(17, udp(sport=40000, dport=161, payload=b"abcd"), src=B4, dst=A4)
    pkt = decode(eth(0x0800, ipv4(1, icmp(3, 3, quoted))))
    assert (pkt.proto, pkt.icmp_type, pkt.icmp_code, pkt.sport, pkt.dport) == (1, 3, 3, 0, 0)
    assert pkt.quoted == Quoted(B4, A4, 17, 40000, 161, -1)


def test_icmp_time_exceeded_quotes_tcp_with_seq_from_8_bytes() -> None:
    quoted = ipv4(6, tcp(seq=0xDEADBEEF), src=B4, dst=A4)[:28]  # the RFC 792 minimum: header + 8 bytes
    assert decode(eth(0x0800, ipv4(1, icmp(11, 0, quoted)))).quoted == Quoted(B4, A4, 6, 49732, 443, 0xDEADBEEF)


def test_icmpv6_unreachable_quotes_tcp() -> None:
    quoted = ipv6(6, tcp(seq=7), src=B6, dst=A6)
    pkt = decode(eth(0x86DD, ipv6(58, icmp(1, 4, quoted))))
    assert (pkt.icmp_type, pkt.icmp_code, pkt.quoted) == (1, 4, Quoted(B6, A6, 6, 49732, 443, 7))


@pytest.mark.parametrize("garbage", [b"", b"\x45\x00", b"\x60" + b"\x00" * 30, b"\x4f" + b"\x00" * 30,
                                     b"\x41" + b"\x00" * 30])
def test_icmp_error_with_garbage_quote_has_no_quote(garbage) -> None:
    pkt = decode(eth(0x0800, ipv4(1, icmp(3, 1, garbage))))
    assert pkt.icmp_type == 3 and pkt.quoted is None


def test_echo_is_not_an_error() -> None:
    pkt = decode(eth(0x0800, ipv4(1, icmp(8, 0, b"ping" * 4, rest=b"\x0d\x3d\x00\x01"))))
    assert (pkt.icmp_type, pkt.quoted, pkt.plen, pkt.payload) == (8, None, 16, b"ping" * 4)


TEREDO_A6 = socket.inet_pton(socket.AF_INET6, "2001:0:4137:9e50:8000:f12a:b9c8:2815")


def test_teredo_on_the_server_port_with_origin_and_auth_indications() -> None:
    inner = ipv6(6, tcp(flags=SYN, dport=80), src=TEREDO_A6, dst=B6)
    origin = b"\x00\x00" + b"\xf1\x2a" + b"\xb9\xc8\x28\x15"
    auth = b"\x00\x01" + bytes([2, 0]) + b"id" + b"\x00" * 8 + b"\x00"
    pkt = decode(eth(0x0800, ipv4(17, udp(sport=3544, dport=3797, payload=auth + origin + inner))))
    assert (pkt.proto, pkt.sport, pkt.dport) == (17, 3544, 3797)
    assert pkt.inner is not None
    inner = pkt.inner
    assert (inner.family, inner.src, inner.proto, inner.dport, inner.flags) == (6, TEREDO_A6, 6, 80, SYN)


def test_teredo_between_peers_needs_the_teredo_prefix() -> None:
    teredo = ipv6(17, udp(payload=b"dns"), src=TEREDO_A6, dst=B6)
    assert decode(eth(0x0800, ipv4(17, udp(sport=3797, dport=32900, payload=teredo)))).inner.dport == 53
    plain = ipv6(17, udp(payload=b"dns"), src=A6, dst=B6)  # IPv6-looking payload without the prefix
    assert decode(eth(0x0800, ipv4(17, udp(sport=3797, dport=32900, payload=plain)))).inner is None


def test_vxlan_carries_an_inner_ethernet_frame() -> None:
    inner = eth(0x0800, ipv4(6, tcp(sport=1234, dport=22, flags=RST | ACK), src=B4, dst=A4))
    vxlan = b"\x08\x00\x00\x00" + b"\x00\x00\x2a\x00" + inner
    pkt = decode(eth(0x0800, ipv4(17, udp(sport=38071, dport=4789, payload=vxlan))))
    assert pkt.dport == 4789 and pkt.inner.src == B4 and (pkt.inner.dport, pkt.inner.flags) == (22, RST | ACK)


def test_tunnels_nest_at_most_two_deep() -> None:
    packet = ipv4(6, tcp())
    for _ in range(3):
        packet = ipv4(17, udp(dport=4789, payload=b"\x08\x00\x00\x00\x00\x00\x01\x00" + eth(0x0800, packet)))
    pkt = decode(eth(0x0800, packet))
    assert pkt.inner is not None and pkt.inner.inner is not None
    assert pkt.inner.inner.proto == 17 and pkt.inner.inner.inner is None


def test_unknown_link_type_is_named_in_the_warning() -> None:
    dec = Decoder()
    for _ in range(3):
        assert decode(b"\x00" * 40, 107, dec) is None
    (w,) = dec.warnings()
    assert w.code == "unknown-linktype" and "FRELAY" in w.message and w.message.startswith("3 ")
    assert LINKTYPE_NAMES[1] == "EN10MB" and LINKTYPE_NAMES[113] == "LINUX_SLL" and LINKTYPE_NAMES[276] == "LINUX_SLL2"


def test_arp_is_counted_but_not_a_warning() -> None:
    dec = Decoder()
    assert decode(eth(0x0806, b"\x00" * 28), dec=dec) is None
    assert dec.warnings() == [] and dec.counts() == {"non-ip": {"ARP": 1}}


FRAMES = {
    "eth-ipv4-tcp-opts": (1, eth(0x0800, ipv4(6, tcp(opts=SYN_OPTS, payload=b"data")))),
    "qinq-ipv6-ext-tcp": (1, eth(0x86DD, ipv6(60, bytes([6, 0]) + b"\x01\x04" + b"\x00" * 4 + tcp()),
                                 tags=[(0x88A8, 1), (0x8100, 2)])),
    "icmp-error": (1, eth(0x0800, ipv4(1, icmp(3, 3, ipv4(6, tcp(), src=B4, dst=A4)[:28])))),
    "sll2-udp": (276, struct.pack("!HHIHBB8s", 0x0800, 0, 2, 1, 4, 6, MAC[:8]) + ipv4(17, udp(payload=b"z"))),
    "teredo": (1, eth(0x0800, ipv4(17, udp(sport=3544, payload=ipv6(6, tcp(), src=TEREDO_A6))))),
}


@pytest.mark.parametrize("name", FRAMES)
def test_truncation_at_every_offset_never_raises_and_is_counted(name) -> None:
    linktype, data = FRAMES[name]
    full = decode(data, linktype)
    assert full is not None
    for cut in range(len(data)):
        dec = Decoder()
        frame = Frame(1, 0.0, cut, len(data), linktype, data[:cut])
        pkt = dec.decode(frame)
        assert pkt == dec.decode_general(frame)
        counts = dec.counts()
        assert "decode-error" not in counts
        if pkt is None:
            assert counts, f"cut at {cut}: skipped without a count"
        else:  # a partial result keeps the header fields and the length the IP header gave
            assert (pkt.src, pkt.dst, pkt.proto, pkt.sport, pkt.dport, pkt.plen) == \
                (full.src, full.dst, full.proto, full.sport, full.dport, full.plen)


LINKTYPES = [0, 1, 9, 12, 14, 50, 51, 101, 108, 113, 228, 229, 239, 276]


@settings(max_examples=300, deadline=None)
@given(linktype=st.sampled_from(LINKTYPES), data=st.binary(max_size=200))
def test_arbitrary_bytes_under_each_link_type_never_raise(linktype, data) -> None:
    dec = Decoder()
    frame = Frame(1, 0.0, len(data), len(data), linktype, data)
    pkt = dec.decode(frame)
    assert "decode-error" not in dec.counts()
    assert pkt is None or isinstance(pkt, Packet)
    assert pkt == Decoder().decode_general(frame)


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(sorted(FRAMES)), flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)),
                                                            max_size=6))
def test_corrupted_real_looking_frames_never_raise(name, flips) -> None:
    linktype, data = FRAMES[name]
    buf = bytearray(data)
    for pos, value in flips:
        buf[pos % len(buf)] = value
    dec = Decoder()
    frame = Frame(1, 0.0, len(buf), len(buf), linktype, bytes(buf))
    pkt = dec.decode(frame)
    assert "decode-error" not in dec.counts()
    assert pkt == Decoder().decode_general(frame)


@pytest.mark.parametrize("wrap", [lambda seg: eth(0x0800, ipv4(6, seg)), lambda seg: eth(0x86DD, ipv6(6, seg))],
                         ids=["ipv4", "ipv6"])
def test_the_usual_nop_nop_timestamp_block(wrap) -> None:
    pkt = decode(wrap(tcp(flags=ACK, opts=bytes.fromhex("0101080a0000000100000002"), payload=b"ok")))
    assert (pkt.tcp_opts, pkt.plen, pkt.payload) == (OPT_TIMESTAMP, 2, b"ok")
