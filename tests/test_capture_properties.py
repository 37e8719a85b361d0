"""Properties of the capture reader on damaged input: only CaptureError escapes, iteration ends,
and whatever is read from a damaged capture is what the intact one holds, up to the damage."""

from __future__ import annotations

import gzip
import io
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzer.capture import WARNING_CODES, open_capture
from analyzer.errors import CaptureError
from tests.corpus import CORPUS
from tests.test_capture import (
    RAW,
    epb,
    idb,
    option,
    pb,
    pcap_file,
    pcap_header,
    pcap_record,
    shb,
    spb,
)

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

BUILT_PCAP = pcap_file([b"\x45" * 20, b"", b"\x60" * 40, b"z" * 3])
BUILT_NS_BE = pcap_header(">", 0xA1B23C4D) + pcap_record(b"abc", 5, 999, ">") + pcap_record(b"de", 6, 7, ">")
BUILT_PCAPNG = (
    shb() + idb(options=option(9, b"\x09")) + idb(RAW, snaplen=8) + epb(b"one") + spb(b"simple")
    + pb(b"old", 1) + epb(b"two", 1) + shb(">") + idb(order=">") + epb(b"three", order=">")
)
CORPUS_SMALL = ["zeek/traces/tcp/syn-then-rst.pcap", "zeek/traces/pcapng-multi-interface.pcapng",
                "tcpdump/tcp-handshake-nano.pcap", "arkime/bigendian.pcap", "tcpdump/empty.pcapng"]


def samples() -> list[bytes]:
    found = [BUILT_PCAP, BUILT_NS_BE, BUILT_PCAPNG]
    for rel in CORPUS_SMALL:
        path = CORPUS / rel
        if path.exists():
            found.append(path.read_bytes())
    return found


SAMPLES = samples()


class Trickle(io.RawIOBase):
    """A pipe-like stream: each read returns only a few bytes, as a slow writer would deliver them."""

    def __init__(self, data: bytes, sizes: list[int]) -> None:
        self._data = data
        self._pos = 0
        self._sizes = sizes or [1]
        self._i = 0

    def readable(self) -> bool:
        return True

    def read1(self, n: int = -1) -> bytes:
        size = self._sizes[self._i % len(self._sizes)]
        self._i += 1
        chunk = self._data[self._pos : self._pos + min(size, n if n >= 0 else size)]
        self._pos += len(chunk)
        return chunk

    read = read1


def read(data: bytes | io.RawIOBase) -> tuple[list, list] | None:
    """(frames, warnings), or None when the input is refused; any other exception fails the test."""
    try:
        cap = open_capture(io.BytesIO(data) if isinstance(data, bytes) else data)
    except CaptureError as err:
        assert str(err) and "\n" not in str(err)
        return None
    frames = []
    for frame in cap:
        assert frame.number == len(frames) + 1
        assert len(frame.data) == frame.caplen
        frames.append(frame)
        assert len(frames) < 100_000  # iteration ends
    assert all(w.code in WARNING_CODES for w in cap.warnings)  # every code is documented
    return frames, cap.warnings


def check_prefix(damaged: list, intact: list) -> None:
    assert [tuple(f) for f in damaged] == [tuple(f) for f in intact[: len(damaged)]]


@FAST
@given(st.binary(max_size=512))
def test_arbitrary_bytes(data):
    read(data)


@FAST
@given(st.sampled_from([b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\x3c\x4d", b"\x0a\x0d\x0d\x0a", b"\x1f\x8b", b"BZh",
                        b"\xfd7zXZ\x00"]), st.binary(max_size=512))
def test_arbitrary_bytes_after_a_valid_magic(magic, rest):
    read(magic + rest)


@FAST
@given(st.sampled_from([b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d"]), st.binary(min_size=20, max_size=512))
def test_arbitrary_blocks_after_a_valid_section_header(bom, rest):
    read(shb("<" if bom[0] == 0x4D else ">") + rest)


@pytest.mark.parametrize("index", range(len(SAMPLES)))
def test_truncation_at_every_offset_keeps_a_prefix(index):
    data = SAMPLES[index]
    full = read(data)
    assert full is not None
    frames, warnings = full
    assert warnings == []
    boundaries = {start for start, _, _, _ in layout(data)}
    for cut in range(len(data)):
        got = read(data[:cut])
        if got is None:
            continue  # cut inside the file header
        check_prefix(got[0], frames)
        if cut not in boundaries:  # a cut between records looks like a shorter, whole capture
            assert [w.code for w in got[1]] == ["truncated"], f"cut at {cut}"


def test_gzip_truncation_at_every_offset_keeps_a_prefix():
    z = gzip.compress(BUILT_PCAPNG)
    frames, _ = read(BUILT_PCAPNG)
    for cut in range(len(z)):
        got = read(z[:cut])
        if got is not None:
            check_prefix(got[0], frames)


@FAST
@given(st.data())
def test_bit_flips_never_escape(data):
    base = data.draw(st.sampled_from(SAMPLES))
    buf = bytearray(base)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(buf) - 1))
        buf[pos] ^= 1 << data.draw(st.integers(0, 7))
    read(bytes(buf))


def layout(data: bytes) -> list[tuple[int, str, int, bool]]:
    """(start, byte order, length-field offset, carries a packet) per record/block of a well-formed sample."""
    out = []
    if data[:4] == b"\x0a\x0d\x0d\x0a":
        pos, order = 0, "<"
        while pos + 12 <= len(data):
            if data[pos : pos + 4] == b"\x0a\x0d\x0d\x0a":
                order = "<" if data[pos + 8 : pos + 12] == b"\x4d\x3c\x2b\x1a" else ">"
            btype, blen = struct.unpack_from(order + "II", data, pos)
            out.append((pos, order, pos + 4, btype in (2, 3, 6)))
            if btype in (2, 6):
                out.append((pos, order, pos + 20, True))  # the captured length inside the block
            pos += blen
    else:
        order = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
        pos = 24
        while pos + 16 <= len(data):
            out.append((pos, order, pos + 8, True))
            pos += 16 + struct.unpack_from(order + "I", data, pos + 8)[0]
    return out


@FAST
@given(st.data())
def test_length_field_mutations_keep_the_frames_before_the_damage(data):
    base = data.draw(st.sampled_from([s for s in SAMPLES if layout(s)]))
    intact, _ = read(base)
    blocks = layout(base)
    start, order, field, _ = data.draw(st.sampled_from(blocks))
    value = data.draw(st.one_of(st.integers(0, 2**32 - 1), st.integers(0, 300),
                                st.sampled_from([0, 1, 3, 11, 12, 0xFFFFFFFF, 0x80000000, 262145])))
    buf = bytearray(base)
    struct.pack_into(order + "I", buf, field, value)
    got = read(bytes(buf))
    assert got is not None
    frames, _ = got
    # every frame whose record lies wholly before the damaged one is read as in the intact capture
    kept = len({s for s, _, _, packet in blocks if packet and s < start})
    assert len(frames) >= kept
    check_prefix(frames[:kept], intact)


@FAST
@given(st.data())
def test_trickled_reads_give_the_same_frames(data):
    base = data.draw(st.sampled_from(SAMPLES))
    sizes = data.draw(st.lists(st.integers(1, 70), min_size=1, max_size=8))
    whole = read(base)
    trickled = read(Trickle(base, sizes))
    assert trickled is not None and whole is not None
    assert [tuple(f) for f in trickled[0]] == [tuple(f) for f in whole[0]]
    assert trickled[1] == whole[1]
