"""The whole pipeline on damaged captures: it never raises, it ends, and it keeps what was readable.

The reader's own properties (tests/test_capture_properties.py) and the decoder's
(tests/test_decode*.py) are checked at their layer; here every case goes through
analyze_capture with the built-in rules and then through every report format, and the
conversations found in a damaged capture are compared with those of its intact part.
"""

from __future__ import annotations

import functools
import io
import struct
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzer.capture import open_capture
from analyzer.model import CaptureResult
from analyzer.pipeline import analyze_capture
from analyzer.report import FORMATS, ReportOptions, render
from analyzer.rules import load_rules

REPO = Path(__file__).resolve().parents[1]
SAMPLES = sorted(p for p in (REPO / "samples").glob("*.pcap*"))
RULES = load_rules()
OPTIONS = ReportOptions(rules=list(RULES.rules))

# deadline: a damaged capture of a few KB must be analysed in well under a second; 5 s leaves
# room for a loaded CI machine while still catching a walk that loops instead of ending.
PROPS = settings(max_examples=200, deadline=timedelta(seconds=5),
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

LINK_HEADER = {1: 14, 276: 20, 113: 16, 101: 0}  # Ethernet, Linux SLL2, Linux SLL, raw IP

# --- building captures in memory (struct only) ---


def pcap_bytes(frames: list[tuple[float, bytes]], linktype: int = 1, snaplen: int = 262144) -> bytes:
    """A little-endian microsecond pcap holding `frames` as (timestamp, data)."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype)]
    for ts, data in frames:
        sec = int(ts)
        out.append(struct.pack("<IIII", sec, int(round((ts - sec) * 1e6)) % 1_000_000, len(data), len(data)))
        out.append(data)
    return b"".join(out)


def pcap_record_ends(data: bytes) -> list[int]:
    """Byte offsets where each complete record of an (intact) little-endian pcap ends."""
    ends, pos = [], 24
    while pos + 16 <= len(data):
        incl = struct.unpack_from("<I", data, pos + 8)[0]
        if pos + 16 + incl > len(data):
            break
        pos += 16 + incl
        ends.append(pos)
    return ends


def pcapng_blocks(data: bytes) -> list[tuple[int, int, int]]:
    """(offset, type, length) of each block of a little-endian pcapng."""
    out, pos = [], 0
    while pos + 12 <= len(data):
        btype, blen = struct.unpack_from("<II", data, pos)
        out.append((pos, btype, blen))
        pos += blen
    return out


def sample_frames(path: Path) -> tuple[int, list[tuple[float, bytes]]]:
    with open_capture(path) as cap:
        frames = [(f.ts, f.data) for f in cap]
        return cap.linktypes[0], frames


def analyze(data: bytes, reports: bool = True) -> CaptureResult:
    """analyze_capture on in-memory bytes, keeping every conversation, then every report format."""
    result = analyze_capture(io.BytesIO(data), RULES, keep="all-full")
    if reports:
        render_all(result)
    return result


@functools.lru_cache(maxsize=512)
def analyze_intact(data: bytes) -> CaptureResult:
    """The reference run on an undamaged capture (or intact prefix), computed once per input."""
    return analyze(data, reports=False)


def render_all(result: CaptureResult) -> None:
    for fmt in FORMATS:
        text = render(fmt, [result], OPTIONS)
        assert isinstance(text, str), fmt


def shape(result: CaptureResult) -> list[tuple]:
    """What a user compares between two runs: each conversation's endpoints, state and packet count."""
    return [(c.proto, str(c.client), str(c.server), c.state, c.packets, c.first_frame, c.last_frame)
            for c in result.conversations]


PCAP_SAMPLES = [p for p in SAMPLES if p.suffix == ".pcap" and p.stat().st_size > 24]
PCAPNG_SAMPLES = [p for p in SAMPLES if p.suffix == ".pcapng"]


def test_there_are_samples_to_damage():
    assert len(PCAP_SAMPLES) >= 10 and PCAPNG_SAMPLES


# --- truncation ---


@pytest.mark.parametrize("path", PCAP_SAMPLES, ids=lambda p: p.name)
def test_truncation_at_every_record_boundary_and_inside_each_record(path):
    """Cut just before, at, just after and in the middle of every record: the frames before the cut
    make exactly the conversations the intact prefix makes, and a cut inside a record is reported."""
    data = path.read_bytes()
    ends = pcap_record_ends(data)
    starts = [24] + ends[:-1]
    cuts = set()
    for s, e in zip(starts, ends):
        cuts.update({s + 1, s + 15, s + 16, (s + e) // 2, e - 1, e})
    for cut in sorted(c for c in cuts if 24 < c <= len(data)):
        check_truncation(data, ends, cut)


@given(st.data())
@PROPS
def test_truncation_anywhere_keeps_the_intact_prefix(data):
    path = data.draw(st.sampled_from(PCAP_SAMPLES), label="sample")
    raw = path.read_bytes()
    cut = data.draw(st.integers(0, len(raw)), label="cut")
    check_truncation(raw, pcap_record_ends(raw), cut)


def check_truncation(raw: bytes, ends: list[int], cut: int) -> None:
    damaged = analyze(raw[:cut])
    if cut < 24:
        assert damaged.error and "\n" not in damaged.error
        return
    assert damaged.error is None
    whole = [e for e in ends if e <= cut]
    assert damaged.packets == len(whole)
    prefix = analyze_intact(raw[: whole[-1]] if whole else raw[:24])
    assert shape(damaged) == shape(prefix)
    assert [f.rule for f in damaged.findings] == [f.rule for f in prefix.findings]
    on_boundary = cut == 24 or cut in ends
    truncated = [w for w in damaged.warnings if w.code == "truncated"]
    assert bool(truncated) == (not on_boundary), (cut, damaged.warnings)


@pytest.mark.parametrize("path", PCAPNG_SAMPLES, ids=lambda p: p.name)
def test_pcapng_truncation_at_every_offset(path):
    raw = path.read_bytes()
    blocks = pcapng_blocks(raw)
    edges = {b[0] + d for b in blocks for d in (-1, 0, 1, 8, 12)}
    for cut in range(len(raw) + 1):
        # every offset is analysed; the reports are rendered near block edges only (time)
        damaged = analyze(raw[:cut], reports=cut in edges)
        if cut < 28:
            assert damaged.error
            continue
        complete = [b for b in blocks if b[0] + b[2] <= cut]
        assert damaged.packets == sum(1 for b in complete if b[1] == 6)
        if complete:
            prefix = analyze_intact(raw[: complete[-1][0] + complete[-1][2]])
            assert shape(damaged) == shape(prefix)


# --- bit flips in the IP and transport headers of real frames ---


@given(st.data())
@PROPS
def test_bit_flips_in_ip_and_transport_headers(data):
    """One flipped header bit changes one packet: at most one conversation more or fewer, at most
    one packet moved, every frame still counted."""
    path = data.draw(st.sampled_from(PCAP_SAMPLES), label="sample")
    linktype, frames = sample_frames(path)
    if not frames:
        return
    link = LINK_HEADER[linktype]
    i = data.draw(st.integers(0, len(frames) - 1), label="frame")
    ts, frame = frames[i]
    span = min(len(frame) - link, 80)  # IP header (+ options) and the TCP/UDP/ICMP header after it
    if span <= 0:
        return
    nflips = data.draw(st.integers(1, 3), label="flips")
    buf = bytearray(frame)
    for _ in range(nflips):
        bit = data.draw(st.integers(0, span * 8 - 1), label="bit")
        buf[link + bit // 8] ^= 1 << (bit % 8)
    mutated = frames[:i] + [(ts, bytes(buf))] + frames[i + 1 :]
    intact = analyze_intact(pcap_bytes(frames, linktype))
    damaged = analyze(pcap_bytes(mutated, linktype))
    assert damaged.error is None
    assert damaged.packets == len(frames)
    if nflips == 1:
        # the flipped packet may start a conversation of its own or vanish; when it was the packet
        # ICMP errors quote, those errors no longer match and stand alone (one conversation each)
        orphans = sum(c.icmp_errors for c in intact.conversations)
        assert abs(damaged.conversation_count - intact.conversation_count) <= 1 + orphans
        before = sum(c.packets for c in intact.conversations)
        after = sum(c.packets for c in damaged.conversations)
        assert abs(after - before) <= 1


# --- ICMP errors quoting garbage, or quoting other ICMP errors ---

scapy = pytest.importorskip("scapy.all")
from scapy.all import ICMP, IP, UDP, Ether, ICMPv6DestUnreach, IPerror6, IPv6, Raw  # noqa: E402

CLIENT, SERVER, ROUTER = "192.0.2.10", "198.51.100.20", "203.0.113.1"
CLIENT6, SERVER6, ROUTER6 = "2001:db8::10", "2001:db8:1::20", "2001:db8:2::1"


def ether(pkt) -> bytes:
    return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / pkt)


def udp_exchange() -> list[tuple[float, bytes]]:
    return [(1_700_000_000.0, ether(IP(src=CLIENT, dst=SERVER) / UDP(sport=40000, dport=53) / b"query"))]


ICMP_ERRORS4 = [(3, c) for c in range(16)] + [(11, 0), (11, 1), (12, 0), (4, 0), (5, 1)]


@given(st.data())
@PROPS
def test_icmp_errors_quoting_garbage(data):
    kind, code = data.draw(st.sampled_from(ICMP_ERRORS4), label="icmp")
    body = data.draw(st.binary(max_size=120), label="quoted bytes")
    icmp = ether(IP(src=ROUTER, dst=CLIENT) / ICMP(type=kind, code=code) / Raw(body))
    frames = udp_exchange() + [(1_700_000_000.5, icmp)]
    result = analyze(pcap_bytes(frames))
    assert result.error is None and result.packets == 2
    # the UDP exchange is still there whatever the error quoted
    assert any(c.proto == "udp" and c.client.port == 40000 for c in result.conversations)


@given(st.data())
@PROPS
def test_icmp_errors_quoting_truncated_real_packets(data):
    """A router quotes fewer bytes than the header it answers (RFC 792 asks for 8 after the IP header)."""
    quoted = bytes(IP(src=CLIENT, dst=SERVER, ttl=1) / UDP(sport=40000, dport=53) / b"query")
    keep = data.draw(st.integers(0, len(quoted)), label="quoted length")
    kind, code = data.draw(st.sampled_from(ICMP_ERRORS4), label="icmp")
    icmp = ether(IP(src=ROUTER, dst=CLIENT) / ICMP(type=kind, code=code) / Raw(quoted[:keep]))
    result = analyze(pcap_bytes(udp_exchange() + [(1_700_000_000.5, icmp)]))
    assert result.packets == 2
    udp = [c for c in result.conversations if c.proto == "udp" and c.client.port == 40000]
    assert len(udp) == 1


def nested_icmp(depth: int, v6: bool):
    """An ICMP error quoting an ICMP error quoting ... a UDP datagram, `depth` levels deep."""
    if v6:
        inner = IPerror6(src=CLIENT6, dst=SERVER6) / UDP(sport=40000, dport=53) / b"q"
        for _ in range(depth):
            inner = IPerror6(src=ROUTER6, dst=CLIENT6) / ICMPv6DestUnreach(code=1) / inner
        return IPv6(src=ROUTER6, dst=CLIENT6) / ICMPv6DestUnreach(code=1) / inner
    inner = IP(src=CLIENT, dst=SERVER) / UDP(sport=40000, dport=53) / b"q"
    for _ in range(depth):
        inner = IP(src=ROUTER, dst=CLIENT) / ICMP(type=3, code=1) / inner
    return IP(src=ROUTER, dst=CLIENT) / ICMP(type=3, code=3) / inner


@pytest.mark.parametrize("v6", [False, True], ids=["icmp", "icmpv6"])
@pytest.mark.parametrize("depth", [1, 2, 5, 40])
def test_icmp_errors_quoting_icmp_errors(depth, v6):
    """RFC 1122 3.2.2 says no ICMP error answers an ICMP error; a hostile capture has them anyway.
    None of them may be taken as an error about the UDP exchange they nest around."""
    first = IPv6(src=CLIENT6, dst=SERVER6) / UDP(sport=40000, dport=53) / b"q" if v6 else \
        IP(src=CLIENT, dst=SERVER) / UDP(sport=40000, dport=53) / b"q"
    frames = [(1_700_000_000.0, ether(first))] + [
        (1_700_000_000.1 + k / 100, ether(nested_icmp(depth, v6))) for k in range(3)]
    result = analyze(pcap_bytes(frames))
    assert result.error is None and result.packets == 4
    udp = [c for c in result.conversations if c.proto == "udp"]
    assert len(udp) == 1
    assert udp[0].icmp_errors == 0, "an error quoting an ICMP error was blamed on the UDP exchange"


# --- pcapng structure faults ---


def pcapng_sample() -> bytes:
    return PCAPNG_SAMPLES[0].read_bytes()


def epb_offsets(raw: bytes) -> list[tuple[int, int]]:
    return [(off, blen) for off, btype, blen in pcapng_blocks(raw) if btype == 6]


@given(st.data())
@PROPS
def test_pcapng_wrong_block_length_keeps_the_packets_before_it(data):
    raw = pcapng_sample()
    epbs = epb_offsets(raw)
    k = data.draw(st.integers(0, len(epbs) - 1), label="packet block")
    off, blen = epbs[k]
    which = data.draw(st.sampled_from(["head", "tail", "both"]), label="which length")
    value = data.draw(st.one_of(st.integers(0, 2**32 - 1), st.integers(max(0, blen - 64), blen + 64)), label="length")
    buf = bytearray(raw)
    if which in ("head", "both"):
        struct.pack_into("<I", buf, off + 4, value)
    if which in ("tail", "both"):
        struct.pack_into("<I", buf, off + blen - 4, value)
    result = analyze(bytes(buf))
    assert result.error is None
    if value != blen:
        assert result.packets >= k, "a packet before the damaged block was lost"
        assert result.packets <= len(epbs)
        prefix = raw[: off]
        intact = analyze_intact(prefix)
        # the conversation(s) of the intact part are there, with at least as many packets
        for conv in intact.conversations:
            same = [c for c in result.conversations if (c.client, c.server) == (conv.client, conv.server)
                    or (c.client, c.server) == (conv.server, conv.client)]
            assert same and sum(c.packets for c in same) >= conv.packets
        assert any(w.code in ("bad-block", "bad-record-length", "truncated") for w in result.warnings)


@given(st.data())
@PROPS
def test_pcapng_interface_ids_that_do_not_exist(data):
    raw = pcapng_sample()
    epbs = epb_offsets(raw)
    chosen = data.draw(st.sets(st.integers(0, len(epbs) - 1), min_size=1), label="packet blocks")
    ifid = data.draw(st.integers(1, 2**32 - 1), label="interface id")
    buf = bytearray(raw)
    for k in chosen:
        struct.pack_into("<I", buf, epbs[k][0] + 8, ifid)
    result = analyze(bytes(buf))
    assert result.packets == len(epbs) - len(chosen)
    assert any(w.code == "unknown-interface" for w in result.warnings)
    assert result.conversation_count <= 1 + len(chosen)


@given(st.data())
@PROPS
def test_pcapng_options_running_past_their_block(data):
    """An interface description whose option length runs past the block: reported, the packets kept."""
    raw = pcapng_sample()
    blocks = pcapng_blocks(raw)
    idb_off, _, idb_len = next(b for b in blocks if b[1] == 1)
    olen = data.draw(st.integers(idb_len, 0xFFFF), label="option length")
    code = data.draw(st.sampled_from([2, 9, 13, 14, 0x1234]), label="option code")
    # the IDB body: linktype(2) reserved(2) snaplen(4), then options; rewrite the first option
    body = struct.pack("<HHI", 1, 0, 0) + struct.pack("<HH", code, olen) + b"\x06\0\0\0"
    new_idb = struct.pack("<II", 1, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))
    mutated = raw[:idb_off] + new_idb + raw[idb_off + idb_len :]
    result = analyze(mutated)
    intact = analyze_intact(raw)
    assert any(w.code == "bad-option" for w in result.warnings)
    assert result.packets == intact.packets
    assert shape(result) == shape(intact)


# --- arbitrary bytes after a valid header: the end-to-end version of the reader's property ---


@given(st.binary(max_size=600), st.sampled_from([1, 101, 113, 276, 0, 12, 228, 229]))
@PROPS
def test_arbitrary_frames_after_a_valid_header(payload, linktype):
    data = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype) + payload
    result = analyze(data)
    assert result.error is None


# --- random packet sequences: flags, sequence numbers and clocks a real stack never produces ---

HOSTS = [bytes([192, 0, 2, 1]), bytes([198, 51, 100, 2]), bytes([203, 0, 113, 1])]
PORTS = [80, 443, 40000, 40001]
ETH_IP4 = bytes.fromhex("020000000002" "020000000001" "0800")


def ip4(proto: int, body: bytes, src: bytes, dst: bytes) -> bytes:
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 0, 0, 64, proto, 0, src, dst) + body


SEQ = st.one_of(st.integers(0, 2**32 - 1), st.sampled_from([0, 1, 1000, 1001, 2**31, 2**32 - 1]))
TCP_PACKET = st.builds(
    lambda s, d, sp, dp, seq, ack, flags, pl: ip4(6, struct.pack("!HHIIBBHHH", sp, dp, seq, ack, 0x50, flags, 0, 0, 0)
                                                  + pl, s, d),
    st.sampled_from(HOSTS), st.sampled_from(HOSTS), st.sampled_from(PORTS), st.sampled_from(PORTS),
    SEQ, SEQ, st.integers(0, 255), st.binary(max_size=40))
UDP_PACKET = st.builds(
    lambda s, d, sp, dp, pl: ip4(17, struct.pack("!HHHH", sp, dp, 8 + len(pl), 0) + pl, s, d),
    st.sampled_from(HOSTS), st.sampled_from(HOSTS), st.sampled_from(PORTS), st.sampled_from(PORTS),
    st.binary(max_size=20))
# an ICMP message of any type and code, quoting an earlier packet of the capture (by index) or garbage
ICMP_PACKET = st.tuples(st.sampled_from(HOSTS), st.sampled_from(HOSTS), st.integers(0, 255), st.integers(0, 255),
                        st.integers(0, 80), st.binary(max_size=60))


@given(st.lists(st.one_of(TCP_PACKET, UDP_PACKET, ICMP_PACKET), max_size=60),
       st.lists(st.floats(-1000, 100_000, allow_nan=False), min_size=60, max_size=60),
       st.sampled_from([16, 200_000]))
@PROPS
def test_random_packet_sequences_with_time_going_backwards(packets, offsets, max_conversations):
    frames: list[tuple[float, bytes]] = []
    for i, pkt in enumerate(packets):
        if isinstance(pkt, tuple):
            src, dst, kind, code, quote, garbage = pkt
            body = frames[quote][1][14:] if quote < len(frames) else garbage
            pkt = ip4(1, struct.pack("!BBHI", kind, code, 0, 0) + body, src, dst)
        frames.append((1_700_000_000 + offsets[i], ETH_IP4 + pkt))
    result = analyze_capture(io.BytesIO(pcap_bytes(frames)), RULES, keep="all-full",
                             max_conversations=max_conversations)
    render_all(result)
    assert result.error is None and result.packets == len(frames)
    assert result.conversation_count <= len(frames)
    assert sum(c.packets for c in result.conversations) <= len(frames)
    for conv in result.conversations:
        assert len(conv.timeline) <= conv.packets + conv.icmp_errors
        assert conv.first_frame <= conv.last_frame
