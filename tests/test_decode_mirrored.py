"""Mirrored and odd link layers: GRE, ERSPAN I/II/III, Geneve, 802.11 (radiotap and plain), LLC/SNAP, MPLS over PPP.

Frames are built with scapy; the decoder's fast and general paths must give the inner TCP packet,
and the dpkt reference the same where dpkt decodes the layers (ERSPAN and Geneve headers are
walked by hand there).
"""

from __future__ import annotations

import ipaddress

import pytest
from scapy.contrib.erspan import ERSPAN_I, ERSPAN_II, ERSPAN_III, ERSPAN_PlatformSpecific
from scapy.contrib.geneve import GENEVE
from scapy.contrib.mpls import MPLS
from scapy.layers.dot11 import Dot11, Dot11QoS, RadioTap
from scapy.layers.inet import GRE, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import LLC, SNAP, Dot1Q, Ether
from scapy.layers.ppp import HDLC, PPP

from analyzer.decode import Decoder
from analyzer.decode.reference import reference_decode
from analyzer.model import Frame

INNER = IP(src="192.0.2.10", dst="198.51.100.20", ttl=63) / TCP(sport=49152, dport=1433, flags="S", seq=1000)
INNER6 = IPv6(src="2001:db8::10", dst="2001:db8::20") / TCP(sport=49153, dport=443, flags="SA", seq=7, ack=8)
OUTER = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src="203.0.113.1", dst="203.0.113.2")
MACS = Ether(src="02:00:00:00:00:0a", dst="02:00:00:00:00:0b")

CASES = {
    # name: (linktype, frame bytes, expected encapsulation, dpkt decodes it)
    "gre-plain": (1, OUTER / GRE() / INNER, "GRE", True),
    "gre-key-seq-checksum": (
        1,
        OUTER / GRE(key_present=1, key=42, seqnum_present=1, sequence_number=7, chksum_present=1) / INNER,
        "GRE",
        True,
    ),
    "gre-ipv6-inner": (1, OUTER / GRE(proto=0x86DD) / INNER6, "GRE", True),
    "gre-ethernet": (1, OUTER / GRE(proto=0x6558) / MACS / INNER, "GRE (Ethernet)", True),
    "erspan-i": (1, OUTER / GRE(proto=0x88BE) / ERSPAN_I() / MACS / INNER, "ERSPAN I", True),
    "erspan-ii": (
        1,
        OUTER / GRE(proto=0x88BE, seqnum_present=1, sequence_number=3) / ERSPAN_II(session_id=5) / MACS / INNER,
        "ERSPAN II",
        True,
    ),
    "erspan-ii-vlan": (
        1,
        OUTER / GRE(proto=0x88BE, seqnum_present=1) / ERSPAN_II(vlan=10) / MACS / Dot1Q(vlan=10) / INNER,
        "ERSPAN II",
        True,
    ),
    "erspan-iii": (
        1,
        OUTER / GRE(proto=0x22EB, seqnum_present=1) / ERSPAN_III(session_id=9) / MACS / INNER,
        "ERSPAN III",
        True,
    ),
    "erspan-iii-subheader": (
        1,
        OUTER
        / GRE(proto=0x22EB, seqnum_present=1)
        / ERSPAN_III(o=1)
        / ERSPAN_PlatformSpecific(platf_id=3)
        / MACS
        / INNER6,
        "ERSPAN III",
        True,
    ),
    "geneve-ethernet": (
        1,
        OUTER / UDP(sport=50000, dport=6081) / GENEVE(vni=7, proto=0x6558) / MACS / INNER,
        "Geneve",
        False,
    ),
    "geneve-options-ip": (
        1,
        OUTER
        / UDP(sport=50000, dport=6081)
        / GENEVE(proto=0x0800, optionlen=2, options=b"\x01\x02\x03\x01" + b"\x00" * 4)
        / INNER,
        "Geneve",
        False,
    ),
    "radiotap-qos-data": (
        127,
        RadioTap()
        / Dot11(
            type=2,
            subtype=8,
            FCfield=1,
            addr1="02:00:00:00:00:01",
            addr2="02:00:00:00:00:02",
            addr3="02:00:00:00:00:03",
        )
        / Dot11QoS()
        / LLC()
        / SNAP(code=0x0800)
        / INNER,
        "",
        True,
    ),
    "dot11-plain-data": (105, Dot11(type=2, subtype=0, FCfield=2) / LLC() / SNAP(code=0x86DD) / INNER6, "", True),
    "dot11-four-address": (
        105,
        Dot11(type=2, subtype=0, FCfield=3, addr4="02:00:00:00:00:04") / LLC() / SNAP(code=0x0800) / INNER,
        "",
        False,
    ),
    "ethernet-llc-snap": (
        1,
        Ether(dst="02:00:00:00:00:02", src="02:00:00:00:00:01", type=len(LLC() / SNAP() / INNER))
        / LLC()
        / SNAP(code=0x0800)
        / INNER,
        "",
        True,
    ),
    "mpls-over-ppp": (9, PPP(proto=0x0281) / MPLS(label=16, s=1, ttl=64) / INNER, "", True),
    "mpls-over-ppp-hdlc": (
        50,
        HDLC() / PPP(proto=0x0281) / MPLS(label=17, s=0) / MPLS(label=18, s=1) / INNER,
        "",
        True,
    ),
}


def _frame(linktype: int, pkt) -> Frame:
    data = bytes(pkt)
    return Frame(1, 1.0, len(data), len(data), linktype, data)


def _tcp_packet(pkt):
    """The packet a test expects the decoder to hand on: the inner TCP one (Geneve: its outer UDP's .inner)."""
    return pkt.inner if pkt is not None and pkt.proto == 17 else pkt


@pytest.mark.parametrize("name", sorted(CASES))
def test_inner_conversation_is_decoded_the_same_by_both_paths(name: str) -> None:
    linktype, pkt, encap, dpkt_decodes = CASES[name]
    frame = _frame(linktype, pkt)
    dec = Decoder()
    got = dec.decode(frame)
    assert got == Decoder().decode_general(frame)
    inner = _tcp_packet(got)
    assert inner is not None, dec.warnings()
    want = INNER6 if IPv6 in pkt and pkt[IPv6] is not None and inner.family == 6 else INNER
    assert inner.proto == 6 and inner.sport == want[TCP].sport and inner.dport == want[TCP].dport
    assert ipaddress.ip_address(inner.src) == ipaddress.ip_address(want.src)
    assert inner.seq == want[TCP].seq
    assert dec.encapsulations() == ([encap] if encap else [])
    assert dec.warnings() == []
    if dpkt_decodes:
        assert reference_decode(frame) == got


def test_encrypted_and_null_wifi_frames_are_not_ip_and_not_warnings() -> None:
    dec = Decoder()
    protected = RadioTap() / Dot11(type=2, subtype=0, FCfield=0x40) / (b"\x00" * 40)
    null = RadioTap() / Dot11(type=2, subtype=4)
    beacon = RadioTap() / Dot11(type=0, subtype=8) / (b"\x00" * 12)
    for pkt in (protected, null, beacon):
        assert dec.decode(_frame(127, pkt)) is None
    assert dec.warnings() == []
    assert set(dec.counts()["non-ip"]) == {"802.11 encrypted", "802.11 null data", "802.11 management/control"}


def test_pptp_gre_is_an_unsupported_protocol_warning() -> None:
    dec = Decoder()
    pptp = OUTER / GRE(version=1, proto=0x880B, key_present=1) / (b"\x00" * 20)
    assert dec.decode(_frame(1, pptp)) is None
    (w,) = dec.warnings()
    assert w.code == "unsupported-protocol" and "PPTP" in w.message


@pytest.mark.parametrize("cut", [36, 40, 50, 60])
def test_truncated_mirrored_frames_are_counted_never_raise(cut: int) -> None:
    data = bytes(
        OUTER / GRE(proto=0x22EB, seqnum_present=1) / ERSPAN_III(o=1) / ERSPAN_PlatformSpecific() / MACS / INNER
    )[:cut]
    dec = Decoder()
    assert dec.decode(Frame(1, 1.0, len(data), len(data) + 100, 1, data)) is None
    assert "decode-error" not in dec.counts()
    assert dec.warnings(), "a cut-short mirrored frame is reported"


# Corpus traces with these layers (Zeek's own test traces, when the corpus holds them): each must give
# conversations instead of a skip warning, and the GRE ones Zeek's conn_state.
CORPUS_TRACES = {
    "zeek/traces/tunnels/gre-sample.pcap": True,
    "zeek/traces/tunnels/gre-within-gre.pcap": True,
    "zeek/traces/tunnels/gre-erspan3-dot1q.pcap": True,
    "zeek/traces/tunnels/erspanII.pcap": True,
    "zeek/traces/tunnels/erspanIII.pcap": True,
    "zeek/traces/tunnels/geneve.pcap": True,
    "zeek/traces/radiotap.pcap": False,
    "zeek/traces/llc.pcap": False,
    "zeek/traces/mpls-in-vlan.pcap": False,
    "zeek/traces/ppp-mpls.pcap": False,
}


@pytest.mark.parametrize("rel", sorted(CORPUS_TRACES))
def test_corpus_mirrored_and_wifi_traces_give_conversations(rel: str) -> None:
    import csv

    from analyzer.pipeline import analyze_capture
    from tests.corpus import CORPUS, corpus_file

    path = corpus_file(rel)
    result = analyze_capture(path, keep="all")
    assert result.error is None
    assert result.conversations, "no conversation decoded"
    skipped = {w.code: w.message for w in result.warnings}
    assert "unknown-linktype" not in skipped
    assert "GRE" not in skipped.get("unsupported-protocol", "")
    if not CORPUS_TRACES[rel]:
        return
    trace = rel.removeprefix("zeek/traces/")
    with open(CORPUS / "zeek" / "conn_state.tsv", newline="") as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t") if r["trace"] == trace and r["proto"] == "tcp"]
    ours = {
        frozenset({(c.client.addr, c.client.port), (c.server.addr, c.server.port)}): c.state
        for c in result.conversations
        if c.proto == "tcp"
    }
    for r in rows:
        key = frozenset({(r["orig_h"], int(r["orig_p"])), (r["resp_h"], int(r["resp_p"]))})
        assert ours.get(key) == r["conn_state"], f"{key}: zeek {r['conn_state']}, ours {ours.get(key)}"
