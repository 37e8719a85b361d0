"""Adversarial resource use: captures built to make wsadiag allocate, remember or loop too much.

Each test states its bound and why. Small inputs are measured in-process with tracemalloc;
the big ones (hundreds of thousands of packets, tens of MB) run analyze_capture in a child
process that reports its own peak resident memory growth (VmHWM minus VmRSS after imports,
from /proc), because tracemalloc slows the pipeline several times over.

Captures are generated with struct straight into a temporary file (scapy is far too slow
for a million packets).
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path

import pytest

from analyzer.flows.table import TIMELINE_HEAD, TIMELINE_TAIL
from analyzer.pipeline import analyze_capture
from analyzer.report import FORMATS, ReportOptions, render

REPO = Path(__file__).resolve().parents[1]
MB = 1 << 20

PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)  # LE, µs, Ethernet
RECORD = struct.Struct("<IIII")
ETH_IP4 = bytes.fromhex("020000000002" "020000000001" "0800")
IP4 = struct.Struct("!BBHHHBBH4s4s")
TCP = struct.Struct("!HHIIBBHHH")
UDP = struct.Struct("!HHHH")
ICMP4 = struct.Struct("!BBHI")
CLIENT, SERVER, ROUTER = bytes([192, 0, 2, 1]), bytes([198, 51, 100, 2]), bytes([203, 0, 113, 1])
T0 = 1_700_000_000


def tcp_frame(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int,
              payload: bytes = b"", ip_id: int = 0) -> bytes:
    return (ETH_IP4 + IP4.pack(0x45, 0, 40 + len(payload), ip_id, 0x4000, 64, 6, 0, src, dst)
            + TCP.pack(sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 0x50, flags, 64240, 0, 0) + payload)


def record(i: int, frame: bytes, per_second: int = 10_000) -> bytes:
    """A pcap record for the i-th packet, `per_second` packets to each second of capture time."""
    usec = (i % per_second) * (1_000_000 // per_second)
    return RECORD.pack(T0 + i // per_second, usec, len(frame), len(frame)) + frame


def write_pcap(path: Path, records) -> Path:
    with open(path, "wb") as fh:
        fh.write(PCAP_HEADER)
        batch = []
        for rec in records:
            batch.append(rec)
            if len(batch) >= 20_000:
                fh.write(b"".join(batch))
                batch.clear()
        fh.write(b"".join(batch))
    return path


def run_child(path: Path, **kwargs) -> dict:
    """analyze_capture in a fresh interpreter: what it found and how much memory and time it took."""
    script = textwrap.dedent(f"""
        import json, sys, time
        sys.path.insert(0, {str(REPO)!r})
        from analyzer.pipeline import analyze_capture
        from analyzer.rules import load_rules

        def status(field):
            with open("/proc/self/status") as fh:
                for line in fh:
                    if line.startswith(field + ":"):
                        return int(line.split()[1]) * 1024
        rules = load_rules()
        base = status("VmRSS")
        t = time.perf_counter()
        r = analyze_capture({str(path)!r}, rules, **{kwargs!r})
        seconds = time.perf_counter() - t
        print(json.dumps({{
            "packets": r.packets, "conversations": r.conversation_count, "error": r.error,
            "warnings": [[w.code, w.message] for w in r.warnings],
            "kept": [[len(c.timeline), c.elided, c.elided_after, c.packets] for c in r.conversations],
            "findings": len(r.findings), "growth": status("VmHWM") - base, "seconds": seconds,
        }}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])


linux_only = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc for peak memory")


# --- lengths that claim far more than the file holds ---


def traced_peak(fn):
    tracemalloc.start()
    try:
        value = fn()
        return value, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("caplen", [0xFFFFFFFF, 0xFFFFFFF0, 1 << 31, 262_145 + 65_536])
def test_record_claiming_4gb_captured_length(caplen):
    """A record header claiming up to 4 GiB: no allocation of that size, a clear warning naming the
    frame, and the frames before it analysed.
    Bound: 8 MiB traced peak, the reader's 1 MiB read chunk and its copies, with room to spare;
    trusting the length field would need gigabytes."""
    good = [
        tcp_frame(CLIENT, SERVER, 40000, 443, 1000, 0, 0x02),
        tcp_frame(SERVER, CLIENT, 443, 40000, 5000, 1001, 0x12),
    ]
    data = PCAP_HEADER + record(0, good[0]) + record(1, good[1])
    data += RECORD.pack(T0 + 1, 0, caplen, caplen) + b"\xab" * 4096
    result, peak = traced_peak(lambda: analyze_capture(io.BytesIO(data)))
    assert peak < 8 * MB, f"peak {peak / MB:.1f} MiB"
    assert result.error is None and result.packets == 2 and result.conversation_count == 1
    bad = [w for w in result.warnings if w.code == "bad-record-length"]
    assert bad and str(caplen) in bad[0].message and bad[0].frame == 3
    for fmt in ("text", "json", "markdown", "html"):  # the formats a person reads warnings in
        assert f"claims {caplen} captured bytes" in render(fmt, [result], ReportOptions()), fmt


def test_original_length_of_4gb_is_only_a_number():
    """The original (wire) length is metadata: 4 GiB there must not be allocated or stop the read.
    Bound: 8 MiB traced peak, as above."""
    frame = tcp_frame(CLIENT, SERVER, 40000, 443, 1000, 0, 0x02)
    data = PCAP_HEADER + RECORD.pack(T0, 0, len(frame), 0xFFFFFFFF) + frame + record(1, frame)
    result, peak = traced_peak(lambda: analyze_capture(io.BytesIO(data)))
    assert peak < 8 * MB
    assert result.packets == 2 and result.conversation_count == 1


def pcapng_block(btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    return struct.pack("<II", btype, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))


def pcapng_with_one_packet() -> bytes:
    shb = pcapng_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    idb = pcapng_block(1, struct.pack("<HHI", 1, 0, 0))
    frame = tcp_frame(CLIENT, SERVER, 40000, 443, 1000, 0, 0x02)
    ts = T0 * 1_000_000
    epb = pcapng_block(6, struct.pack("<IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, len(frame), len(frame)) + frame)
    return shb + idb + epb


@pytest.mark.parametrize("blen", [0xFFFFFFFC, 0x80000000, 16 * MB + 4])
def test_pcapng_block_length_beyond_any_real_block(blen):
    """A block length of up to 4 GiB: refused as corrupt, with no buffer of that size.
    Bound: 8 MiB traced peak (the limit the reader accepts is 16 MiB; these are above it)."""
    data = pcapng_with_one_packet() + struct.pack("<II", 6, blen) + b"\0" * 64
    result, peak = traced_peak(lambda: analyze_capture(io.BytesIO(data)))
    assert peak < 8 * MB, f"peak {peak / MB:.1f} MiB"
    assert result.packets == 1 and result.conversation_count == 1
    assert any(w.code == "bad-block" and str(blen) in w.message for w in result.warnings)


def test_pcapng_largest_allowed_block_length_in_a_short_file():
    """A 16 MiB block length (the largest the reader accepts) in a file that ends 64 bytes later.
    Bound: 64 MiB traced peak: the reader may ask for the whole block (16 MiB) and copy its
    buffer once; it gets 64 bytes back and reports the truncation."""
    data = pcapng_with_one_packet() + struct.pack("<II", 6, 16 * MB) + b"\0" * 64
    result, peak = traced_peak(lambda: analyze_capture(io.BytesIO(data)))
    assert peak < 64 * MB, f"peak {peak / MB:.1f} MiB"
    assert result.packets == 1
    assert any(w.code == "truncated" for w in result.warnings)


# --- many conversations, one huge conversation ---

SYN_FLOOD = 200_000  # 1M takes minutes here (the rules look at every conversation): 200k is the CI size


def syn_flood(i: int) -> bytes:
    """The i-th SYN of a flood: every one from a distinct (address, port), none answered."""
    src = CLIENT if i < 60_000 else bytes([10, (i >> 16) & 255, (i >> 8) & 255, i & 255])
    return record(i, tcp_frame(src, SERVER, 1024 + i % 60_000, 443, i * 7919, 0, 0x02, ip_id=i & 0xFFFF))


@linux_only
def test_syn_flood_from_distinct_ports_stays_within_the_table(tmp_path):
    """200,000 SYNs from distinct source ports, 10,000 conversations alive at most.
    Bound: 150 MiB of peak resident growth. 10,000 live conversations at a few KiB each, plus
    the 1 MiB read chunk, is a few tens of MiB; holding all 200,000 would be several hundred.
    The table-full warning says conversations were handed on early."""
    path = write_pcap(tmp_path / "flood.pcap", (syn_flood(i) for i in range(SYN_FLOOD)))
    got = run_child(path, max_conversations=10_000)
    assert got["error"] is None
    assert got["packets"] == SYN_FLOOD
    assert got["conversations"] == SYN_FLOOD  # every SYN is its own conversation, none merged or lost
    full = [m for code, m in got["warnings"] if code == "conversation-table-full"]
    assert full and "10000" in full[0]
    assert got["growth"] < 150 * MB, f"grew {got['growth'] / MB:.0f} MiB"


ONE_CONVERSATION = 1_000_000


def one_long_conversation(n: int):
    """A handshake, then n-3 alternating one-byte data segments and their ACKs, 10,000 a second."""
    yield record(0, tcp_frame(CLIENT, SERVER, 40000, 443, 1000, 0, 0x02))
    yield record(1, tcp_frame(SERVER, CLIENT, 443, 40000, 9000, 1001, 0x12))
    yield record(2, tcp_frame(CLIENT, SERVER, 40000, 443, 1001, 9001, 0x10))
    seq = 1001
    for i in range(3, n):
        if i % 2:
            yield record(i, tcp_frame(CLIENT, SERVER, 40000, 443, seq, 9001, 0x18, b"x", ip_id=i & 0xFFFF))
            seq += 1
        else:
            yield record(i, tcp_frame(SERVER, CLIENT, 443, 40000, 9001, seq, 0x10, ip_id=i & 0xFFFF))


@linux_only
def test_one_conversation_of_a_million_packets_keeps_a_bounded_timeline(tmp_path):
    """A million packets in one conversation: the timeline keeps TIMELINE_HEAD + TIMELINE_TAIL
    events and counts the rest as elided.
    Bound: 100 MiB of peak resident growth: the per-conversation state is fixed-size, so memory
    must not follow the packet count (a million Events would be ~200 MiB)."""
    path = write_pcap(tmp_path / "long.pcap", one_long_conversation(ONE_CONVERSATION))
    got = run_child(path, keep="all-full")
    assert got["packets"] == ONE_CONVERSATION and got["conversations"] == 1
    (timeline, elided, elided_after, packets), = got["kept"]
    assert packets == ONE_CONVERSATION
    assert timeline == TIMELINE_HEAD + TIMELINE_TAIL
    assert elided == ONE_CONVERSATION - timeline
    assert elided_after == TIMELINE_HEAD - 1
    assert got["growth"] < 100 * MB, f"grew {got['growth'] / MB:.0f} MiB"


# --- ICMP errors quoting one another ---


def ip4(proto: int, body: bytes, src: bytes, dst: bytes, ip_id: int = 0) -> bytes:
    return IP4.pack(0x45, 0, 20 + len(body), ip_id, 0, 64, proto, 0, src, dst) + body


def icmp_chain(depth: int) -> bytes:
    """An ICMP port-unreachable quoting an ICMP error quoting ... a UDP datagram, `depth` deep.
    The quote is whole each time (no 8-byte cut), so the packet grows with the depth."""
    inner = ip4(17, UDP.pack(40000, 53, 9, 0) + b"q", CLIENT, SERVER)
    for _ in range(depth):
        inner = ip4(1, ICMP4.pack(3, 1, 0, 0) + inner, ROUTER, CLIENT)
    return ETH_IP4 + ip4(1, ICMP4.pack(3, 3, 0, 0) + inner, ROUTER, CLIENT)


def test_icmp_errors_quoting_one_another_end_quickly():
    """50,000 ICMP errors, each quoting a chain of 60 ICMP errors (a 1.7 KB packet).
    Bound: under 60 s and 32 MiB traced peak: the decoder reads one quote level (RFC 1122 3.2.2
    forbids errors about errors), so the cost is per packet, not per nesting level; a decoder
    recursing into every level would do 3 million header parses."""
    udp = ETH_IP4 + ip4(17, UDP.pack(40000, 53, 9, 0) + b"q", CLIENT, SERVER)
    chain = icmp_chain(60)
    n = 50_000
    data = PCAP_HEADER + record(0, udp) + b"".join(record(i, chain) for i in range(1, n + 1))
    start = time.perf_counter()
    result, peak = traced_peak(lambda: analyze_capture(io.BytesIO(data), keep="all"))
    elapsed = time.perf_counter() - start
    assert result.packets == n + 1
    assert elapsed < 60, f"{elapsed:.1f} s"
    assert peak < 32 * MB + len(data), f"peak {peak / MB:.1f} MiB"
    udp_convs = [c for c in result.conversations if c.proto == "udp"]
    assert len(udp_convs) == 1 and udp_convs[0].icmp_errors == 0


def test_deeply_nested_icmp_does_not_recurse():
    """One packet nesting ICMP errors as deep as a 64 KiB IP datagram allows (~2,300 levels).
    Bound: no RecursionError (Python's limit is 1,000 frames) and one packet's worth of time."""
    chain = icmp_chain(2_300)
    assert len(chain) < 65_535 + 14
    data = PCAP_HEADER + record(0, chain)
    start = time.perf_counter()
    result = analyze_capture(io.BytesIO(data), keep="all")
    assert time.perf_counter() - start < 5
    assert result.packets == 1 and result.error is None
    for fmt in FORMATS:
        render(fmt, [result], ReportOptions())


# --- decompression bombs ---


@linux_only
def test_gzip_bomb_of_empty_records_is_streamed(tmp_path):
    """An 8 KiB gzip file that inflates to a pcap of 8 MiB of zeros: 524,288 empty records.
    Bound: 50 MiB of peak resident growth: decompression is streamed in chunks, so memory
    does not follow the inflated size (a reader that inflated it whole would hold 8 MiB here,
    and 1 GiB for a 1 MiB bomb). The time is linear in the inflated size; every record counts."""
    import gzip

    path = tmp_path / "bomb.pcap.gz"
    with gzip.open(path, "wb", compresslevel=9) as gz:
        gz.write(PCAP_HEADER)
        zeros = b"\0" * MB
        for _ in range(8):
            gz.write(zeros)
    assert path.stat().st_size < 16 * 1024
    got = run_child(path)
    assert got["error"] is None
    assert got["packets"] == 8 * MB // 16
    assert any(code == "truncated-headers" for code, _ in got["warnings"])
    assert got["growth"] < 50 * MB, f"grew {got['growth'] / MB:.0f} MiB"
