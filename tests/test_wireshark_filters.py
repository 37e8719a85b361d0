"""Every finding's Wireshark filter, run by tshark, selects exactly the finding's evidence frames.

A support engineer pastes the filter into Wireshark: if the stream number drifts from Wireshark's
own, the filter shows nothing (or another connection). Checked on a bench capture made by
bench/generate.py (ports reused, retries, ICMP errors) and on every capture of the shared corpus.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import dpkt
import pytest

from analyzer.model import CaptureResult
from analyzer.pipeline import analyze_capture
from analyzer.rules import load_rules
from analyzer.rules.engine import frame_set
from tests.corpus import CORPUS

ROOT = Path(__file__).resolve().parents[1]
TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (Debian package tshark)")
BENCH_PACKETS = 60_000  # enough for port reuse, retries and ICMP errors; tshark reads it in about 2 s


def _tshark(*args: str) -> str:
    done = subprocess.run([TSHARK or "tshark", *args], capture_output=True, text=True, timeout=600)
    # A capture cut short is read up to the cut (exit 2), as wsadiag reads it.
    assert done.returncode == 0 or "cut short" in done.stderr, done.stderr
    return done.stdout


def _counts(capture: Path, filters: list[str]) -> list[int]:
    """How many frames each display filter selects, all filters evaluated in one tshark pass.

    Each filter is a stats tree (`-z plen,tree,FILTER`: the filter may hold commas). tshark prints
    the trees in an order of its own; two sentinel filters of known count at either end tell it
    (one selects no frame at all, so they differ even in a one-packet capture).
    """
    sentinels = ["frame.number == 1", "frame.number == 0"]
    args = ["-r", str(capture), "-q"]
    for flt in [sentinels[0], *filters, sentinels[1]]:
        args += ["-z", f"plen,tree,{flt}"]
    counts = [int(line.split()[2]) for line in _tshark(*args).splitlines() if line.startswith("Packet Lengths  ")]
    assert len(counts) == len(filters) + 2
    if counts[0] == 0:
        counts.reverse()
    assert counts[0] == 1 and counts[-1] == 0, "sentinels not found: cannot tell the trees apart"
    return counts[1:-1]


def _streams(capture: Path) -> dict[int, tuple[str, str]]:
    """Wireshark's (tcp.stream, udp.stream) of every frame."""
    out = _tshark("-r", str(capture), "-T", "fields", "-e", "frame.number", "-e", "tcp.stream", "-e", "udp.stream")
    table = {}
    for line in out.splitlines():
        number, tcp, udp = (line.split("\t") + ["", ""])[:3]
        table[int(number)] = (tcp, udp)
    return table


def _check(capture: Path, result: CaptureResult) -> None:
    findings = result.findings
    if not findings:
        return
    convs = {c.id: c for c in result.conversations}
    streams = _streams(capture)
    for f in findings:
        # The filter names exactly the evidence frames ...
        assert f"frame.number in {frame_set(f.frames)}" in f.wireshark_filter, f.wireshark_filter
        conv = convs[f.conversation]
        if ".stream " in f.wireshark_filter:
            # ... and the stream Wireshark itself puts them in.
            seen = {streams[n][0 if conv.proto == "tcp" else 1] for n in f.frames}
            assert seen <= {str(s) for s in conv.streams}, (capture.name, f.rule, f.frames, f.wireshark_filter, seen)
    counts = _counts(capture, [f.wireshark_filter for f in findings])
    wrong = [(f.rule, f.frames, f.wireshark_filter, n) for f, n in zip(findings, counts) if n != len(f.frames)]
    assert wrong == [], f"{capture.name}: filters selecting other than their evidence: {wrong[:5]}"


@pytest.fixture(scope="module")
def rules():
    return load_rules()


@needs_tshark
def test_bench_capture_filters_select_exactly_the_evidence(tmp_path, rules):
    capture = tmp_path / "bench.pcap"
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "generate.py"), str(capture), "--packets", str(BENCH_PACKETS)],
        check=True,
        capture_output=True,
    )
    result = analyze_capture(capture, rules)
    tcp = [f for f in result.findings if "tcp.stream" in f.wireshark_filter]
    assert len(tcp) >= 20 and len(result.findings) >= 50  # the capture holds enough failures to mean something
    _check(capture, result)


def _corpus_captures() -> list[Path]:
    if not CORPUS.is_dir():
        return []
    suffixes = (".pcap", ".pcapng", ".cap", ".pcap.gz", ".pcapng.gz")
    return sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.name.lower().endswith(suffixes))


@needs_tshark
@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"corpus not found at {CORPUS}")
@pytest.mark.parametrize("capture", _corpus_captures(), ids=lambda p: str(p.relative_to(CORPUS)))
def test_corpus_filters_select_exactly_the_evidence(capture, rules):
    result = analyze_capture(capture, rules)
    if result.error:
        pytest.skip(f"wsadiag cannot read it: {result.error}")
    _check(capture, result)


def _eth(ip: dpkt.ip.IP) -> bytes:
    ip.len = len(bytes(ip))
    return bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, data=ip))


def _tcp(src: bytes, dst: bytes, sport: int, dport: int, flags: int, seq: int, data: bytes = b"") -> bytes:
    seg = dpkt.tcp.TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=1 if flags & 0x10 else 0, data=data)
    return _eth(dpkt.ip.IP(src=src, dst=dst, p=6, ttl=64, data=seg))


def _udp(src: bytes, dst: bytes, sport: int, dport: int) -> dpkt.ip.IP:
    dgram = dpkt.udp.UDP(sport=sport, dport=dport, data=b"q" * 12)
    dgram.ulen = len(bytes(dgram))
    return dpkt.ip.IP(src=src, dst=dst, p=17, ttl=64, data=dgram)


def _stream_edge_cases(path: Path) -> Path:
    """Port reuse and retries in every way Wireshark's numbering distinguishes them."""
    c, s, r = bytes([192, 0, 2, 10]), bytes([203, 0, 113, 5]), bytes([198, 51, 100, 53])
    frames = [
        _tcp(c, s, 40000, 81, 0x02, 100),  # SYN
        _tcp(s, c, 81, 40000, 0x14, 0),  # RST/ACK
        _tcp(c, s, 40000, 81, 0x02, 100),  # the same SYN again (same ISN): same stream
        _tcp(s, c, 81, 40000, 0x14, 0),
        _tcp(c, s, 40000, 81, 0x02, 7777),  # a new ISN on the same ports: a new stream
        _tcp(s, c, 81, 40000, 0x12, 50),  # SYN/ACK
        _tcp(s, c, 81, 40000, 0x12, 60),  # a SYN/ACK with another seq opens no stream
        _tcp(c, s, 40001, 80, 0x18, 1000, b"GET"),  # mid-stream start: base = seq - 1
        _tcp(c, s, 40001, 80, 0x02, 999),  # a SYN equal to that base: same stream
        _tcp(c, s, 40001, 80, 0x02, 5),  # a SYN with another ISN: new stream
        # an ICMP port unreachable quoting a datagram of a pair never seen: it opens that udp.stream
        _eth(
            dpkt.ip.IP(
                src=r,
                dst=c,
                p=1,
                ttl=64,
                data=dpkt.icmp.ICMP(type=3, code=3, data=dpkt.icmp.ICMP.Unreach(data=bytes(_udp(c, r, 5353, 53)))),
            )
        ),
        _eth(_udp(c, r, 5353, 53)),
        _eth(_udp(c, r, 5354, 53)),
    ]
    with path.open("wb") as fh:
        writer = dpkt.pcap.Writer(fh)
        for n, frame in enumerate(frames):
            writer.writepkt(frame, ts=1_700_000_000 + n * 0.5)
    return path


@needs_tshark
def test_stream_numbers_match_wireshark_on_port_reuse_and_retries(tmp_path):
    capture = _stream_edge_cases(tmp_path / "streams.pcap")
    result = analyze_capture(capture, None, keep="all-full")
    streams = _streams(capture)
    checked = 0
    for conv in result.conversations:
        if conv.proto not in ("tcp", "udp"):
            continue
        column = 0 if conv.proto == "tcp" else 1
        assert str(conv.stream) == streams[conv.first_frame][column], (conv.first_frame, conv.stream)
        for ev in conv.timeline:
            if ev.icmp is None:
                assert streams[ev.frame][column] in {str(x) for x in conv.streams}, (ev.frame, conv.streams)
                checked += 1
    assert checked == 12
    # the retried connect() is one conversation; the port reuse after it is another
    assert [c.first_frame for c in result.conversations if c.proto == "tcp"][:2] == [1, 5]
