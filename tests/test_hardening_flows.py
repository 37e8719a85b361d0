"""The conversation table under load: memory bounded in bytes, expiry that costs what expires,
and a clock that one outlier timestamp cannot stop or run ahead.

Bounds are measured with tracemalloc (memory) and the table's own count of deadlines looked at
(expiry work); nothing here asserts a time.
"""

from __future__ import annotations

import io
import json
import tracemalloc
from pathlib import Path

import pytest

from analyzer.cli import main
from analyzer.flows.table import DEFAULT_MAX_LIVE_BYTES, FlowTable, endpoint_key
from analyzer.pipeline import analyze_capture
from tests.test_resources import CLIENT, PCAP_HEADER, RECORD, SERVER, T0, tcp_frame

MB = 1 << 20
UDP_HDR = bytes.fromhex("0200000000020200000000010800")


def udp_frame(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes = b"q" * 20) -> bytes:
    import struct

    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28 + len(payload), 0, 0x4000, 64, 17, 0, src, dst)
    return UDP_HDR + ip + struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def at(ts: float, frame: bytes) -> bytes:
    sec = int(ts)
    return RECORD.pack(sec, int((ts - sec) * 1_000_000), len(frame), len(frame)) + frame


def pcap(records) -> io.BytesIO:
    return io.BytesIO(PCAP_HEADER + b"".join(records))


def host(i: int) -> bytes:
    return bytes([10, 1 + (i >> 16) & 127, (i >> 8) & 255, i & 255])


# -- memory bounded in bytes ------------------------------------------------------------------


def open_connections(n: int, rounds: int):
    """n TCP connections, handshakes first, then `rounds` data exchanges on each, none closed."""
    recs = []
    t = float(T0)
    for i in range(n):
        c = host(i)
        recs.append(at(t, tcp_frame(c, SERVER, 40000, 443, 1000, 0, 0x02)))
        recs.append(at(t, tcp_frame(SERVER, c, 443, 40000, 5000, 1001, 0x12)))
        recs.append(at(t, tcp_frame(c, SERVER, 40000, 443, 1001, 5001, 0x10)))
        t += 0.0001
    for r in range(rounds):
        for i in range(n):
            c = host(i)
            seq = 1001 + r * 10
            recs.append(at(t, tcp_frame(c, SERVER, 40000, 443, seq, 5001, 0x18, b"x" * 10)))
            recs.append(at(t, tcp_frame(SERVER, c, 443, 40000, 5001, seq + 10, 0x10)))
            t += 0.0001
    return recs


def traced(fn):
    tracemalloc.start()
    try:
        value = fn()
        return value, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.fixture(scope="module")
def full_timelines(tmp_path_factory) -> Path:
    """1,000 open connections with full timelines: 7-14 MiB of live conversations (compiled, rows
    hold their numbers unboxed and take half the memory)."""
    path = tmp_path_factory.mktemp("open") / "open.pcap"
    path.write_bytes(pcap(open_connections(1000, 25)).getvalue())
    return path


def test_live_memory_is_bounded_in_bytes(full_timelines):
    unbounded = analyze_capture(str(full_timelines))
    table_free = FlowTable(lambda conv: None)
    assert not [w for w in unbounded.warnings if w.code == "memory-bound"]
    bounded, peak = traced(lambda: analyze_capture(str(full_timelines), max_live_bytes=4 * MB))
    # 4 MiB of conversations plus what does not depend on them: the reading buffers, the decoder
    # (6 MiB: the whole peak with a 1 MiB bound is 6.0 MiB); unbounded this capture peaks at 12-19 MiB
    assert peak < 4 * MB + 6 * MB, f"peak {peak / MB:.1f} MiB"
    warnings = [w for w in bounded.warnings if w.code == "memory-bound"]
    assert warnings and "4 MiB" in warnings[0].message and "--max-memory" in warnings[0].message
    assert bounded.packets == unbounded.packets
    assert table_free.max_live_bytes == DEFAULT_MAX_LIVE_BYTES


def test_without_the_bound_the_same_capture_needs_more(full_timelines):
    """The check above means something: unbounded, the same capture peaks above that bound."""
    result, peak = traced(lambda: analyze_capture(str(full_timelines), max_conversations=10**6))
    _, bounded_peak = traced(lambda: analyze_capture(str(full_timelines), max_live_bytes=4 * MB))
    assert peak > bounded_peak + 2 * MB, f"peak {peak / MB:.1f} MiB against {bounded_peak / MB:.1f} MiB bounded"
    assert result.conversation_count == 1000


def test_memory_estimate_tracks_what_is_measured():
    """The bound means what it says: the table's estimate is within 25% of tracemalloc's count."""
    table = FlowTable(lambda conv: None, max_conversations=10**9, max_live_bytes=1 << 40)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        ts = float(T0)
        for i in range(2000):
            c, s = host(i), SERVER
            ck, sk = endpoint_key(c, 40000, s, 443), endpoint_key(s, 443, c, 40000)
            table.tcp(1, ts, ck, 40000, 443, 0x02, 1000, 0, 64240, 0, 64, 1, b"", 0)
            table.tcp(2, ts, sk, 443, 40000, 0x12, 5000, 1001, 64240, 0, 64, 1, b"", 0)
            for j in range(i % 60):
                table.tcp(3 + j, ts, ck, 40000, 443, 0x18, 1001 + 10 * j, 5001, 64240, 10, 64, j, b"y" * 10, 0)
        used = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    # never below what is held (the bound errs on the safe side), and not far above it
    assert used < table.live_bytes() < 1.6 * used, (used, table.live_bytes())


def test_default_bound_is_one_gib_and_the_option_sets_it(full_timelines, capsys):
    """The bound splits conversations alike in a listing (which keeps no packet rows) and in an
    analysis (which does): both commands see the same conversations under the same bound."""
    assert DEFAULT_MAX_LIVE_BYTES == 1 << 30
    path = full_timelines
    seen = {}
    for verb, extra in (("conversations", []), ("analyze", ["--fail-on", "never"])):
        main([verb, "--no-progress", "--format", "json", *extra, "--max-memory", "4M", str(path)])
        out = capsys.readouterr().out
        assert "memory-bound" in out and "4 MiB" in out
        capture = json.loads(out)["captures"][0]
        seen[verb] = (capture["conversation_count"], [w for w in capture["warnings"] if w["code"] == "memory-bound"])
    assert seen["conversations"] == seen["analyze"] and seen["analyze"][0] > 1000
    assert main(["conversations", "--no-progress", "--max-memory", "lots", str(path)]) == 2


# -- a clock that one outlier cannot stop ------------------------------------------------------


def udp_stream(count: int, per_second: int, outlier_at: int | None, outlier_ts: float):
    recs = []
    for i in range(count):
        if i == outlier_at:
            recs.append(at(outlier_ts, udp_frame(CLIENT, SERVER, 9, 9)))
        recs.append(at(T0 + i / per_second, udp_frame(host(i), SERVER, 30000 + i % 1000, 53)))
    return recs


@pytest.mark.parametrize("where", [None, 0, 1000, 4000])
def test_one_far_future_timestamp_does_not_stop_expiry(where):
    """8,000 one-datagram conversations over 80 s (about 6,000 alive at once with the 60 s UDP limit):
    a far-future datagram first, early or midway must not keep the others alive to the end."""
    capture = pcap(udp_stream(8_000, 100, where, T0 + 10 * 365 * 86400.0))
    result = analyze_capture(capture, max_conversations=7_000)
    assert result.conversation_count == 8_000 + (where is not None)
    assert [w.code for w in result.warnings if w.code in ("conversation-table-full", "memory-bound")] == []


def test_an_outlier_does_not_end_the_live_conversations():
    """A TCP conversation spanning a far-future datagram stays one conversation, not cut by a timeout."""
    c = host(7)
    recs = [
        at(T0, tcp_frame(c, SERVER, 40000, 443, 1000, 0, 0x02)),
        at(T0, tcp_frame(SERVER, c, 443, 40000, 5000, 1001, 0x12)),
        at(T0 + 0.1, tcp_frame(c, SERVER, 40000, 443, 1001, 5001, 0x10)),
    ]
    for k in range(20):
        recs.append(at(T0 + 1 + k, udp_frame(host(100 + k), SERVER, 5000, 53)))
    recs.append(at(T0 + 1e9, udp_frame(CLIENT, SERVER, 9, 9)))  # the outlier
    for k in range(20):
        recs.append(at(T0 + 21 + k, udp_frame(host(200 + k), SERVER, 5000, 53)))
    recs.append(at(T0 + 41, tcp_frame(c, SERVER, 40000, 443, 1001, 5001, 0x18, b"late")))
    result = analyze_capture(pcap(recs), keep="all")
    tcp = [conv for conv in result.conversations if conv.proto == "tcp"]
    assert len(tcp) == 1 and tcp[0].packets == 4


def test_a_real_jump_in_time_is_followed():
    """A capture paused for a day: after it, conversations from before expire (not held to the end)."""
    seen = []
    table = FlowTable(lambda conv: seen.append(conv.id), max_conversations=10**6)
    for i in range(50):
        table.udp(i + 1, T0 + i * 0.01, endpoint_key(host(i), 5000, SERVER, 53), 5000, 53, 20, 64, 0, b"")
    for i in range(50):
        ts = T0 + 86400 + i * 0.5
        table.udp(100 + i, ts, endpoint_key(host(1000 + i), 5000, SERVER, 53), 5000, 53, 20, 64, 0, b"")
    assert sorted(seen) == list(range(1, 51))  # the 50 from before the pause are handed on


# -- expiry work proportional to what expires --------------------------------------------------


def test_expiry_work_follows_what_expires_not_what_is_alive():
    """5,000 long-lived conversations alive over 10 hours of capture time, with short ones coming and
    going: the old idle sweep looked at all 5,000 every 10 s (18 million looks); the heap looks at
    each conversation about once per idle limit."""
    table = FlowTable(lambda conv: None, max_conversations=10**6)
    long_lived = [
        (endpoint_key(host(i), 40000, SERVER, 443), endpoint_key(SERVER, 443, host(i), 40000)) for i in range(5000)
    ]
    n = 0
    for ck, sk in long_lived:
        n += 1
        table.tcp(n, T0, ck, 40000, 443, 0x02, 1000, 0, 64240, 0, 64, 1, b"", 0)
        table.tcp(n, T0, sk, 443, 40000, 0x12, 5000, 1001, 64240, 0, 64, 1, b"", 0)
    short = 0
    for second in range(0, 36_000, 5):  # every 5 s: a short UDP exchange, and 5 long-lived ones keep talking
        ts = T0 + second
        n += 1
        table.udp(n, ts, endpoint_key(host(100_000 + short), 5000, SERVER, 53), 5000, 53, 20, 64, 0, b"")
        short += 1
        for k in range(5):
            ck, _ = long_lived[(second + k) % 5000]
            table.tcp(n, ts, ck, 40000, 443, 0x10, 1001, 5001, 64240, 0, 64, 1, b"", 0)
    conversations = 5000 + short
    assert len(table.alive) > 5000 - 100  # the long-lived ones are still there
    # at most a few looks per conversation (each is pushed back while it is alive and busy)
    assert table.expiry_checks < 6 * conversations, table.expiry_checks
