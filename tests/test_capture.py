"""The capture reader on byte-built captures, odd inputs, pipes and the shared corpus."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import random
import struct
import sys
import threading
from pathlib import Path

import dpkt
import pytest

from analyzer.capture import open_capture
from analyzer.errors import CaptureError
from tests.corpus import CORPUS, needs_corpus

# --- byte builders (struct only, so the expected values are the ones written here) ---

MAGIC_US = 0xA1B2C3D4
MAGIC_NS = 0xA1B23C4D
ETH = 1  # LINKTYPE_ETHERNET
RAW = 101  # LINKTYPE_RAW
SLL2 = 276  # LINKTYPE_LINUX_SLL2


def pcap_header(order: str = "<", magic: int = MAGIC_US, snaplen: int = 65535, linktype: int = ETH) -> bytes:
    return struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)


def pcap_record(data: bytes, sec: int = 1_700_000_000, frac: int = 0, order: str = "<",
                caplen: int | None = None, wirelen: int | None = None) -> bytes:
    caplen = len(data) if caplen is None else caplen
    return struct.pack(order + "IIII", sec, frac, caplen, len(data) if wirelen is None else wirelen) + data


def pcap_file(datas: list[bytes], order: str = "<", magic: int = MAGIC_US, linktype: int = ETH) -> bytes:
    return pcap_header(order, magic, linktype=linktype) + b"".join(
        pcap_record(d, 1_700_000_000 + i, i * 10, order) for i, d in enumerate(datas))


def block(btype: int, body: bytes, order: str = "<") -> bytes:
    body += b"\0" * (-len(body) % 4)
    length = 12 + len(body)
    return struct.pack(order + "II", btype, length) + body + struct.pack(order + "I", length)


def option(code: int, value: bytes, order: str = "<") -> bytes:
    return struct.pack(order + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def shb(order: str = "<") -> bytes:
    return block(0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1), order)


def idb(linktype: int = ETH, snaplen: int = 0, options: bytes = b"", order: str = "<") -> bytes:
    if options:
        options += struct.pack(order + "HH", 0, 0)
    return block(1, struct.pack(order + "HHI", linktype, 0, snaplen) + options, order)


def epb(data: bytes, iface: int = 0, ts: int = 1_700_000_000_000_000, order: str = "<",
        caplen: int | None = None) -> bytes:
    caplen = len(data) if caplen is None else caplen
    return block(6, struct.pack(order + "IIIII", iface, ts >> 32, ts & 0xFFFFFFFF, caplen, len(data)) + data, order)


def spb(data: bytes, order: str = "<") -> bytes:
    return block(3, struct.pack(order + "I", len(data)) + data, order)


def pb(data: bytes, iface: int = 0, ts: int = 1_700_000_000_000_000, order: str = "<") -> bytes:
    return block(2, struct.pack(order + "HHIIII", iface, 0, ts >> 32, ts & 0xFFFFFFFF, len(data), len(data)) + data,
                 order)


def read_all(data: bytes) -> tuple[list, object]:
    cap = open_capture(io.BytesIO(data))
    return list(cap), cap


def write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


PAYLOADS = [b"\x01" * 60, b"\x02" * 61, b"", b"\x03" * 1514]

# --- pcap ---


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("magic,fmt,units", [(MAGIC_US, "pcap", 1e6), (MAGIC_NS, "pcap-ns", 1e9)])
def test_pcap_each_magic_and_byte_order(tmp_path, order, magic, fmt, units):
    recs = b"".join(pcap_record(d, 1_600_000_000 + i, 123_456 + i, order) for i, d in enumerate(PAYLOADS))
    path = write(tmp_path, "t.cap", pcap_header(order, magic, linktype=RAW) + recs)
    with open_capture(path) as cap:
        frames = list(cap)
        assert cap.format == fmt
        assert cap.linktypes == [RAW]
        assert cap.warnings == []
    assert [f.number for f in frames] == [1, 2, 3, 4]
    assert [f.data for f in frames] == PAYLOADS
    assert [f.caplen for f in frames] == [len(d) for d in PAYLOADS]
    assert all(f.linktype == RAW for f in frames)
    for i, f in enumerate(frames):
        assert f.ts == pytest.approx(1_600_000_000 + i + (123_456 + i) / units, abs=1e-7)


def test_pcap_nanosecond_timestamps_keep_sub_microsecond_order():
    recs = pcap_record(b"a", 1_700_000_000, 100) + pcap_record(b"b", 1_700_000_000, 900)
    frames, cap = read_all(pcap_header(magic=MAGIC_NS) + recs)
    assert cap.format == "pcap-ns"
    assert frames[0].ts < frames[1].ts
    assert frames[1].ts - frames[0].ts == pytest.approx(800e-9, rel=0.3)


def test_pcap_linktype_field_ignores_fcs_bits():
    # F bit set, FCS length 2 (x 16 bits = 4 bytes): the link type is still Ethernet
    frames, cap = read_all(pcap_header(linktype=ETH | 0x04000000 | (2 << 28)) + pcap_record(b"x" * 64))
    assert cap.linktypes == [ETH]
    assert frames[0].linktype == ETH
    assert cap.fcs_len == 4


def test_pcap_wirelen_larger_than_caplen_is_kept():
    frames, _ = read_all(pcap_header(snaplen=68) + pcap_record(b"x" * 68, wirelen=1514))
    assert (frames[0].caplen, frames[0].wirelen) == (68, 1514)


# --- pcapng ---


def test_pcapng_several_interfaces_link_types_and_resolutions():
    data = (
        shb()
        + idb(ETH, options=option(9, b"\x09"))  # nanoseconds
        + idb(RAW, options=option(9, b"\x94") + option(14, struct.pack("<q", 100)))  # 2^-20 s, +100 s
        + idb(ETH)  # default microseconds; ETH again: linktypes stays deduped
        + epb(b"e0", 0, ts=1_700_000_000_123_456_789)
        + epb(b"r1", 1, ts=(1_700_000_000 << 20) + (1 << 19))  # x.5 s in 2^-20 units
        + epb(b"u2", 2, ts=1_700_000_000_250_000)
    )
    frames, cap = read_all(data)
    assert cap.format == "pcapng"
    assert cap.linktypes == [ETH, RAW]
    assert [(f.linktype, f.data) for f in frames] == [(ETH, b"e0"), (RAW, b"r1"), (ETH, b"u2")]
    assert frames[0].ts == pytest.approx(1_700_000_000.123456789, abs=1e-6)
    assert frames[1].ts == pytest.approx(1_700_000_100.5, abs=1e-6)
    assert frames[2].ts == pytest.approx(1_700_000_000.25, abs=1e-6)
    assert cap.warnings == []


def test_pcapng_big_endian_section_and_new_section_resets_interfaces():
    data = (
        shb(">") + idb(RAW, order=">") + idb(ETH, order=">") + epb(b"one", 1, order=">")
        + shb("<") + idb(SLL2) + epb(b"two", 0) + epb(b"gone", 1) + epb(b"three", 0)
    )
    frames, cap = read_all(data)
    assert [(f.number, f.linktype, f.data) for f in frames] == [(1, ETH, b"one"), (2, SLL2, b"two"),
                                                                (3, SLL2, b"three")]
    assert cap.linktypes == [RAW, ETH, SLL2]
    assert [w.code for w in cap.warnings] == ["unknown-interface"]
    assert "interface 1" in cap.warnings[0].message


def test_pcapng_simple_and_obsolete_packet_blocks_and_unknown_blocks():
    data = (
        shb() + idb(RAW, snaplen=4)
        + block(4, b"\x00\x00\x00\x00")  # name resolution block: no packets
        + spb(b"abcdefgh")  # cut to the interface's snaplen
        + block(0x40000BAD, b"custom stuff")
        + pb(b"old", 0)
        + block(5, b"\0" * 12)  # interface statistics
    )
    frames, cap = read_all(data)
    assert [(f.caplen, f.wirelen, f.data) for f in frames] == [(4, 8, b"abcd"), (3, 3, b"old")]
    assert cap.warnings == []


def test_pcapng_options_running_past_their_block_are_reported():
    bad = block(1, struct.pack("<HHI", ETH, 0, 0) + struct.pack("<HH", 9, 200) + b"\x09\0\0\0")
    frames, cap = read_all(shb() + bad + epb(b"p"))
    assert [f.data for f in frames] == [b"p"]
    assert [w.code for w in cap.warnings] == ["bad-option"]


# --- compression ---


@pytest.mark.parametrize("name,compress", [("gzip", gzip.compress), ("bz2", bz2.compress), ("xz", lzma.compress)])
def test_compressed_captures_are_detected_by_magic(tmp_path, name, compress):
    raw = pcap_file(PAYLOADS)
    path = write(tmp_path, "capture.pcap", compress(raw))  # the name says nothing
    with open_capture(path) as cap:
        frames = list(cap)
        assert cap.format == "pcap+" + name
    assert [f.data for f in frames] == PAYLOADS
    ng = shb() + idb() + epb(b"x")
    frames, cap = read_all(compress(ng))
    assert cap.format == "pcapng+" + name and [f.data for f in frames] == [b"x"]


def test_gzip_cut_short_keeps_frames_and_warns():
    raw = pcap_file([bytes([i]) * 200 for i in range(200)])
    z = gzip.compress(raw, compresslevel=1)
    frames, cap = read_all(z[: len(z) * 2 // 3])
    assert 0 < len(frames) < 200
    assert [f.data for f in frames] == [bytes([i]) * 200 for i in range(len(frames))]
    assert [w.code for w in cap.warnings] == ["truncated"]


def test_gzip_corrupt_midway_keeps_frames_and_warns():
    import random

    rnd = random.Random(7)
    letters = bytes(b"abcdefgh"[i % 8] for i in range(256))
    datas = [rnd.randbytes(400).translate(letters) for _ in range(2000)]
    z = bytearray(gzip.compress(pcap_file(datas)))
    z[len(z) // 2] ^= 0xFF
    frames, cap = read_all(bytes(z))
    # frames decompressed before the bad spot are kept; the decompressor's last batch is lost
    assert 100 < len(frames) < 2000
    assert [f.data for f in frames[:100]] == datas[:100]
    # a flipped bit either upsets the decompressor or turns the data after it into garbage
    assert cap.warnings[-1].code in ("corrupt-compression", "bad-record-length", "truncated")


def test_gzipped_text_is_refused_with_a_hint(tmp_path):
    path = write(tmp_path, "t.pcap.gz", gzip.compress(b"12:00:01.000 IP 192.0.2.1.80 > 192.0.2.2.5000: Flags [R]\n"))
    with pytest.raises(CaptureError) as err:
        open_capture(path)
    assert "not a pcap or pcapng capture" in str(err.value) and "gzip" in str(err.value)
    assert "text" in err.value.hint


# --- pipes and stdin ---


def stream_through_pipe(
    header: bytes, records: list[bytes], encode=lambda b: b, end=lambda: b""
) -> tuple[list, object]:
    """Write `header`, then one record at a time into a pipe, each only after the reader
    has yielded the previous frame; fail if a frame waits for the next record."""
    rfd, wfd = os.pipe()
    arrived = threading.Event()
    failures: list[str] = []

    def writer() -> None:
        with os.fdopen(wfd, "wb", buffering=0) as w:
            w.write(encode(header))
            for i, rec in enumerate(records):
                w.write(encode(rec))
                if not arrived.wait(timeout=10):
                    failures.append(f"frame {i + 1} not yielded while the pipe stayed open")
                    return
                arrived.clear()
            w.write(end())

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    seen = []
    with os.fdopen(rfd, "rb") as r, open_capture(r) as cap:
        for frame in cap:
            seen.append(frame)
            arrived.set()
    t.join(timeout=10)
    assert failures == []
    return seen, cap


def test_pipe_yields_each_frame_as_soon_as_its_record_arrives():
    records = [pcap_record(bytes([i]) * 50, 1_700_000_000 + i) for i in range(3)]
    frames, cap = stream_through_pipe(pcap_header(), records)
    assert [f.number for f in frames] == [1, 2, 3]
    assert cap.warnings == []


def test_pcapng_pipe_yields_each_frame_as_soon_as_its_block_arrives():
    frames, cap = stream_through_pipe(shb() + idb(), [epb(bytes([i]) * 33) for i in range(3)])
    assert [f.data for f in frames] == [bytes([i]) * 33 for i in range(3)]


def test_gzip_pipe_with_flushes_yields_frames_as_they_come():
    import zlib

    z = zlib.compressobj(wbits=31)  # a gzip stream, flushed after each record as `gzip` over a socket would be

    def encode(b: bytes) -> bytes:
        return z.compress(b) + z.flush(zlib.Z_SYNC_FLUSH)

    records = [pcap_record(bytes([i]) * 50) for i in range(3)]
    frames, cap = stream_through_pipe(pcap_header(), records, encode, end=z.flush)
    assert [f.data for f in frames] == [bytes([i]) * 50 for i in range(3)]
    assert cap.format == "pcap+gzip"
    assert cap.warnings == []


def test_stdin_dash(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(pcap_file(PAYLOADS))))
    with open_capture("-") as cap:
        assert [f.data for f in cap] == PAYLOADS


# --- odd inputs ---


def refusal(tmp_path: Path, data: bytes, name: str = "odd.pcap") -> CaptureError:
    path = write(tmp_path, name, data)
    with pytest.raises(CaptureError) as err:
        open_capture(path)
    assert path in str(err.value)  # the message names the file
    assert "\n" not in str(err.value)
    return err.value


def test_empty_file_is_refused(tmp_path):
    assert "empty file" in str(refusal(tmp_path, b""))


def test_text_file_is_refused_with_a_hint(tmp_path):
    err = refusal(tmp_path, b"This is not a capture, just some notes about the outage.\n", "notes.txt")
    assert "not a pcap or pcapng capture" in str(err)
    assert "text" in err.hint


def test_unknown_binary_is_refused_with_editcap_hint(tmp_path):
    err = refusal(tmp_path, b"\x00\x01\x02\x03" * 20)
    assert "not a pcap or pcapng capture" in str(err)
    assert "editcap" in err.hint


def test_netmon_capture_is_named(tmp_path):
    err = refusal(tmp_path, b"GMBU" + b"\0" * 60, "t.cap")
    assert "Network Monitor" in str(err) and "editcap" in err.hint


def test_file_cut_inside_the_global_header(tmp_path):
    assert "ends inside the pcap header (10 of 24 bytes)" in str(refusal(tmp_path, pcap_header()[:10]))


def test_pcapng_cut_inside_the_section_header(tmp_path):
    assert "ends inside the pcapng section header" in str(refusal(tmp_path, shb()[:16], "t.pcapng"))


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(CaptureError, match="no such file"):
        open_capture(str(tmp_path / "nope.pcap"))
    with pytest.raises(CaptureError, match="is a directory"):
        open_capture(str(tmp_path))


@pytest.mark.parametrize("cut", [3, 16, 20])  # inside the record header, at the data start, inside the data
def test_file_cut_inside_a_record_keeps_earlier_frames(cut):
    whole = pcap_file([b"a" * 40, b"b" * 40])
    frames, cap = read_all(whole[: 24 + 56 + cut])
    assert [f.data for f in frames] == [b"a" * 40]
    assert [(w.code, w.frame) for w in cap.warnings] == [("truncated", 2)]
    assert "frame 2" in cap.warnings[0].message


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
@pytest.mark.parametrize("cut", [0, 1000, 5014])  # whole, cut inside the last record's data, inside its header
def test_a_file_read_by_path_gives_the_frames_of_a_stream_of_its_bytes(tmp_path, fmt, cut):
    """A walk refills its buffer a megabyte at a time; from a file opened by path the unread end is
    read again with the new bytes. Records of every size, across several megabytes of refills, and
    a file cut inside its last record, read as the same bytes handed over by a stream do."""
    rng = random.Random(7)
    datas = [bytes([i % 251]) * rng.choice([0, 1, 60, 1514, 9000, 40000, 65535]) for i in range(260)]
    datas.append(b"z" * 5000)
    whole = pcap_file(datas) if fmt == "pcap" else shb() + idb() + b"".join(epb(d) for d in datas)
    data = whole[: len(whole) - cut]
    by_path = open_capture(write(tmp_path, "c." + fmt, data))
    read = list(by_path)
    streamed, by_stream = read_all(data)
    assert len(data) > 3 << 20
    assert len(read) == len(datas) - (cut > 0)
    assert read == streamed
    assert [(w.code, w.frame, w.message) for w in by_path.warnings] == [
        (w.code, w.frame, w.message) for w in by_stream.warnings
    ]
    assert [w.code for w in by_path.warnings] == (["truncated"] if cut else [])


def test_absurd_caplen_stops_without_allocating():
    data = pcap_file([b"ok"]) + struct.pack("<IIII", 1_700_000_001, 0, 0xFFFFFFF0, 60) + b"x" * 60
    frames, cap = read_all(data)
    assert [f.data for f in frames] == [b"ok"]
    assert [(w.code, w.frame) for w in cap.warnings] == [("bad-record-length", 2)]
    assert "4294967280" in cap.warnings[0].message


def test_pcapng_huge_block_length_stops():
    data = shb() + idb() + epb(b"ok") + struct.pack("<II", 6, 0x7FFFFFF0) + b"\0" * 40
    frames, cap = read_all(data)
    assert [f.data for f in frames] == [b"ok"]
    assert [w.code for w in cap.warnings] == ["bad-block"]
    assert "impossible length 2147483632" in cap.warnings[0].message


def test_pcapng_mismatched_trailing_length_stops():
    bad = bytearray(epb(b"bad!"))
    bad[-4:] = struct.pack("<I", 4096)
    frames, cap = read_all(shb() + idb() + epb(b"ok") + bytes(bad) + epb(b"never"))
    assert [f.data for f in frames] == [b"ok"]
    assert [w.code for w in cap.warnings] == ["bad-block"]


def test_pcapng_epb_with_a_nonexistent_interface_is_skipped():
    frames, cap = read_all(shb() + idb() + epb(b"a") + epb(b"ghost", iface=7) + epb(b"b"))
    assert [(f.number, f.data) for f in frames] == [(1, b"a"), (2, b"b")]
    assert [(w.code, w.frame) for w in cap.warnings] == [("unknown-interface", 2)]
    assert "interface 7" in cap.warnings[0].message


def test_pcapng_cut_inside_a_block():
    whole = shb() + idb() + epb(b"a" * 30) + epb(b"b" * 30)
    frames, cap = read_all(whole[:-10])
    assert [f.data for f in frames] == [b"a" * 30]
    assert [w.code for w in cap.warnings] == ["truncated"]


def test_pcap_fraction_of_a_second_or_more_keeps_the_seconds():
    data = pcap_header() + pcap_record(b"a", 100, 999_999) + pcap_record(b"b", 100, 1_000_000) \
        + pcap_record(b"c", 100, 2**31) + pcap_record(b"d", 101, 5)
    frames, cap = read_all(data)
    assert [f.ts for f in frames] == [pytest.approx(100.999999), 100.0, 100.0, pytest.approx(101.000005)]
    assert [(w.code, w.frame) for w in cap.warnings] == [("bad-timestamp", 2)]


def test_warnings_are_bounded():
    data = shb() + idb() + b"".join(epb(b"g", iface=9) for _ in range(1000)) + epb(b"real")
    frames, cap = read_all(data)
    assert [f.data for f in frames] == [b"real"]
    assert len(cap.warnings) <= 11
    assert "990 more" in cap.warnings[-1].message


# --- the shared corpus ---

CORPUS_FILES = (
    sorted(p for p in CORPUS.rglob("*") if p.suffix in (".pcap", ".pcapng", ".gz")) if CORPUS.is_dir() else []
)


def dpkt_frames(path: Path) -> list[tuple[float, int]] | None:
    """(ts, length) per record as dpkt reads it, or None where dpkt fails on the file."""
    raw = gzip.open(path) if path.suffix == ".gz" else open(path, "rb")
    out: list[tuple[float, int]] = []
    try:
        with raw:
            reader = dpkt.pcapng.Reader(raw) if path.suffix == ".pcapng" else dpkt.pcap.Reader(raw)
            for ts, buf in reader:
                out.append((float(ts), len(buf)))
    except Exception:
        return out or None
    return out


@needs_corpus
@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: str(p.relative_to(CORPUS)))
def test_corpus_file_reads_like_dpkt(path):
    try:
        cap = open_capture(path)
    except CaptureError as err:
        assert str(path) in str(err)
        return
    with cap:
        frames = list(cap)
    expected = dpkt_frames(path)
    if expected is None:
        return
    codes = {w.code for w in cap.warnings}
    if codes & {"truncated", "bad-record-length", "bad-block"}:
        # dpkt keeps a short last record (or stops quietly): our frames are its prefix
        assert len(frames) <= len(expected)
        expected = expected[: len(frames)]
    assert len(frames) == len(expected)
    assert [f.caplen for f in frames] == [n for _, n in expected]
    assert [f.number for f in frames] == list(range(1, len(frames) + 1))
    if path.suffix != ".pcapng" and "bad-timestamp" not in codes:
        # dpkt applies the first interface's resolution to every pcapng interface: compare pcap only
        assert all(abs(f.ts - ts) < 1e-5 for f, (ts, _) in zip(frames, expected))


@needs_corpus
def test_corpus_pcapng_multi_interface_timestamps_as_tshark_shows_them():
    path = CORPUS / "zeek/traces/pcapng-multi-interface.pcapng"
    if not path.exists():
        pytest.skip("file missing")
    with open_capture(path) as cap:
        frames = list(cap)
    # tshark -T fields -e frame.time_epoch: interface 0 in ns, interface 1 in µs
    tshark = [1767663089.500330493, 1767663089.514291940, 1767663437.111897, 1767663437.126460,
              1767663437.128303, 1767663437.140942]
    assert [f.ts for f in frames] == [pytest.approx(t, abs=1e-6) for t in tshark]


@needs_corpus
def test_corpus_timestamp_invalid_micro():
    path = CORPUS / "tcpdump/timestamp_invalid_micro.pcap"
    if not path.exists():
        pytest.skip("file missing")
    with open_capture(path) as cap:
        frames = list(cap)
    assert len(frames) == 3
    assert [w.code for w in cap.warnings] == ["bad-timestamp"]
    assert frames[0].ts == pytest.approx(1418145369.999999)
    assert frames[1].ts == frames[2].ts == 1418145370.0  # out-of-range fractions dropped


@needs_corpus
def test_corpus_gzip_capture_format():
    path = CORPUS / "zeek/traces/echo-connections.pcap.gz"
    if not path.exists():
        pytest.skip("file missing")
    with open_capture(path) as cap:
        assert cap.format == "pcap+gzip"
        assert cap.linktypes == [1]
