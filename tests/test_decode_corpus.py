"""The decoder on real third-party captures: agreement with the dpkt reference, tunnels, bad headers."""

from __future__ import annotations

import csv
import gzip
import ipaddress
from collections import Counter
from pathlib import Path

import pytest

from analyzer.decode import Decoder
from analyzer.decode.reference import reference_decode
from analyzer.model import Frame, Packet

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
CAPTURES = sorted(p for p in CORPUS.rglob("*") if p.name.endswith((".pcap", ".pcapng", ".pcap.gz"))) \
    if CORPUS.is_dir() else []
needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus not present")


def frames(path: Path) -> list[Frame]:
    """Every frame of a capture: through analyzer.capture when it is there, else through dpkt."""
    try:
        from analyzer.capture import open_capture
    except ImportError:
        open_capture = None
    if open_capture is not None:
        with open_capture(str(path)) as cap:
            return list(cap)
    import dpkt

    out = []
    with (gzip.open(path) if path.suffix == ".gz" else open(path, "rb")) as f:
        head = f.read(4)
        f.seek(0)
        reader = dpkt.pcapng.Reader(f) if head == b"\x0a\x0d\x0d\x0a" else dpkt.pcap.Reader(f)
        try:
            for n, (ts, buf) in enumerate(reader, 1):
                out.append(Frame(n, ts, len(buf), len(buf), reader.datalink(), buf))
        except (dpkt.NeedData, ValueError):
            pass  # a truncated last record: the complete frames before it are still used
    return out


def decode_all(path: Path) -> tuple[Decoder, list[Packet | None]]:
    dec = Decoder()
    return dec, [dec.decode(f) for f in frames(path)]


@needs_corpus
@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: str(p.relative_to(CORPUS)))
def test_fast_decoder_agrees_with_dpkt_reference_on_every_packet(path: Path) -> None:
    dec = Decoder()
    general = Decoder()
    checked = 0
    for frame in frames(path):
        got = dec.decode(frame)
        want = reference_decode(frame)
        assert got == want, f"frame {frame.number}: fast {got} != dpkt {want}"
        assert general.decode_general(frame) == got, f"frame {frame.number}: general path differs"
        checked += got is not None
    assert "decode-error" not in dec.counts()
    if path.stat().st_size > 200:  # not an empty capture
        assert checked or dec.counts(), "nothing decoded and nothing counted"


def _zeek_rows(trace: str) -> list[dict[str, str]]:
    with open(CORPUS / "zeek" / "conn_state.tsv", newline="") as f:
        return [r for r in csv.DictReader(f, delimiter="\t") if r["trace"] == trace]


def _flows(packets: list[Packet | None]) -> set[tuple]:
    """The unordered (addresses, ports, protocol) of every packet and every tunnelled inner packet."""
    out = set()
    for pkt in packets:
        while pkt is not None:
            a = (ipaddress.ip_address(pkt.src), pkt.sport)
            b = (ipaddress.ip_address(pkt.dst), pkt.dport)
            out.add((frozenset((a, b)), pkt.proto))
            pkt = pkt.inner
    return out


def _zeek_flows(trace: str, proto: str) -> set[tuple]:
    number = {"tcp": 6, "udp": 17}[proto]
    return {(frozenset(((ipaddress.ip_address(r["orig_h"]), int(r["orig_p"])),
                        (ipaddress.ip_address(r["resp_h"]), int(r["resp_p"])))), number)
            for r in _zeek_rows(trace) if r["proto"] == proto}


@needs_corpus
@pytest.mark.parametrize("trace", ["tunnels/Teredo.pcap", "tunnels/vxlan.pcap", "pppoe.pcap"])
def test_every_tcp_and_udp_flow_zeek_logged_is_decoded(trace: str) -> None:
    _, packets = decode_all(CORPUS / "zeek" / "traces" / trace)
    seen = _flows(packets)
    for proto in ("tcp", "udp"):
        missing = _zeek_flows(trace, proto) - seen
        assert not missing, f"{proto} flows Zeek logged but the decoder did not produce: {missing}"


@needs_corpus
def test_teredo_inner_packets_match_zeek_counts() -> None:
    _, packets = decode_all(CORPUS / "zeek" / "traces" / "tunnels" / "Teredo.pcap")
    inner = [p.inner for p in packets if p is not None and p.inner is not None]
    http = [p for p in inner if p.proto == 6 and 80 in (p.sport, p.dport)]
    (row,) = [r for r in _zeek_rows("tunnels/Teredo.pcap") if r["orig_p"] == "1286"]
    assert len(http) == int(row["orig_pkts"]) + int(row["resp_pkts"])
    assert {ipaddress.ip_address(p.src) for p in http} == {ipaddress.ip_address(row["orig_h"]),
                                                           ipaddress.ip_address(row["resp_h"])}
    echo = [p for p in inner if p.proto == 58 and p.icmp_type in (128, 129)]
    assert sorted(p.icmp_type for p in echo) == [128, 129]


@needs_corpus
def test_vxlan_carries_the_echo_exchange_zeek_saw() -> None:
    _, packets = decode_all(CORPUS / "zeek" / "traces" / "tunnels" / "vxlan.pcap")
    outer = [p for p in packets if p is not None]
    assert all(p.proto == 17 and p.dport == 4789 for p in outer)
    inner = [p.inner for p in outer if p.inner is not None]
    (row,) = [r for r in _zeek_rows("tunnels/vxlan.pcap") if r["proto"] == "icmp"]
    assert Counter(p.icmp_type for p in inner) == {8: int(row["orig_pkts"]), 0: int(row["resp_pkts"])}
    assert {str(ipaddress.ip_address(p.src)) for p in inner} == {row["orig_h"], row["resp_h"]}


@needs_corpus
def test_pppoe_session_packets_are_ipv6_and_control_frames_are_not_warnings() -> None:
    dec, packets = decode_all(CORPUS / "zeek" / "traces" / "pppoe.pcap")
    decoded = [p for p in packets if p is not None]
    expected = sum(int(r["orig_pkts"]) + int(r["resp_pkts"]) for r in _zeek_rows("pppoe.pcap"))
    assert len(decoded) == expected
    assert {p.family for p in decoded} == {6}
    assert dec.warnings() == []  # LCP/IPCP/discovery frames are normal, counted as non-ip only
    assert dec.counts()["non-ip"]


@needs_corpus
def test_invalid_ihl_is_skipped_with_a_bad_ip_header_warning() -> None:
    dec, packets = decode_all(CORPUS / "tcpdump" / "ipv4_invalid_hdr_length.pcap")
    assert packets == [None]
    (w,) = dec.warnings()
    assert w.code == "bad-ip-header" and w.frame == 1 and "header length" in w.message


@needs_corpus
def test_later_fragments_are_counted_not_decoded() -> None:
    dec, packets = decode_all(CORPUS / "tcpdump" / "afs.pcap")
    skipped = dec.counts()["ip-fragment"]["IPv4"]
    assert skipped == packets.count(None) > 0
    assert any(w.code == "ip-fragment" and str(skipped) in w.message for w in dec.warnings())


@needs_corpus
def test_icmp_errors_quote_the_udp_packet_they_answer() -> None:
    _, (v4,) = decode_all(CORPUS / "zeek" / "traces" / "icmp" / "icmp-destunreach-udp.pcap")
    _, (v6,) = decode_all(CORPUS / "zeek" / "traces" / "icmp" / "icmp6-destunreach-ip6ext-udp.pcap")
    assert v4.icmp_type == 3 and v4.quoted is not None and v4.quoted.proto == 17
    assert v4.quoted.src == v4.dst  # the error goes back to the quoted packet's sender
    assert v6.icmp_type == 1 and v6.quoted is not None and v6.quoted.proto == 17
    assert v6.quoted.src == v6.dst and v6.quoted.sport and v6.quoted.dport
