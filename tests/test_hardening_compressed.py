"""Damaged gzip/bz2/xz captures: every packet that decompressed is read, and the damage is named.

Each case is run on the three ways a capture comes in: a file, a pipe, and a file object in memory.
The expected frame count is worked out independently: the stdlib decompressors give the longest
output the damaged bytes yield, and the complete pcap records in that output are counted.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import random
import struct
import threading
import zlib
from pathlib import Path

import pytest

from analyzer.capture import open_capture
from analyzer.cli import main

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "rst004-close-with-unread-data.pcap"


def big_pcap(count: int = 12_000, seed: int = 7) -> bytes:
    """A pcap of `count` Ethernet/IPv4/UDP datagrams whose payload compresses only partly (> 1 MiB)."""
    rng = random.Random(seed)
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i in range(count):
        payload = bytes(rng.getrandbits(8) for _ in range(48)) + b"x" * 64
        udp = struct.pack("!HHHH", 40000 + i % 50, 53, 8 + len(payload), 0) + payload
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i & 0xFFFF, 0, 64, 17, 0,
                         bytes([192, 0, 2, 1]), bytes([198, 51, 100, 2])) + udp
        frame = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip
        out.append(struct.pack("<IIII", 1_700_000_000 + i // 100, i % 100 * 1000, len(frame), len(frame)) + frame)
    return b"".join(out)


def complete_records(data: bytes) -> int:
    """Complete pcap records in `data` (a pcap stream, maybe cut)."""
    pos, n = 24, 0
    while pos + 16 <= len(data):
        caplen = struct.unpack_from("<I", data, pos + 8)[0]
        if pos + 16 + caplen > len(data):
            break
        pos += 16 + caplen
        n += 1
    return n


def longest_output(kind: str, damaged: bytes) -> bytes:
    """What the stdlib decompressors yield from the damaged bytes, fed a small piece at a time."""
    d = {"gzip": lambda: zlib.decompressobj(wbits=31), "bz2": bz2.BZ2Decompressor,
         "xz": lzma.LZMADecompressor}[kind]()
    out = []
    for i in range(0, len(damaged), 512):
        try:
            out.append(d.decompress(damaged[i : i + 512]))
        except (OSError, zlib.error, lzma.LZMAError, EOFError):
            break
    return b"".join(out)


COMPRESS = {"gzip": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress}


def read_file(tmp_path: Path, data: bytes, name: str = "c.pcap.gz"):
    path = tmp_path / name
    path.write_bytes(data)
    with open_capture(str(path)) as cap:
        n = sum(1 for _ in cap)
    return n, cap.warnings


def read_memory(data: bytes):
    with open_capture(io.BytesIO(data)) as cap:
        n = sum(1 for _ in cap)
    return n, cap.warnings


def read_pipe(data: bytes):
    r, w = os.pipe()

    def feed() -> None:
        try:
            with os.fdopen(w, "wb") as fh:
                for i in range(0, len(data), 4096):
                    fh.write(data[i : i + 4096])
        except BrokenPipeError:
            pass  # the reader stopped at the damage

    writer = threading.Thread(target=feed)
    writer.start()
    try:
        with os.fdopen(r, "rb") as fh, open_capture(fh) as cap:
            n = sum(1 for _ in cap)
    finally:
        writer.join()
    return n, cap.warnings


PATHS = ("file", "pipe", "memory")


def read_via(how: str, tmp_path: Path, data: bytes):
    if how == "file":
        return read_file(tmp_path, data)
    if how == "pipe":
        return read_pipe(data)
    return read_memory(data)


@pytest.fixture(scope="module")
def raw() -> bytes:
    return big_pcap()


@pytest.mark.parametrize("how", PATHS)
@pytest.mark.parametrize("kind", ["gzip", "bz2", "xz"])
def test_cut_stream_keeps_every_packet_that_decompressed(raw: bytes, kind: str, how: str, tmp_path: Path) -> None:
    z = COMPRESS[kind](raw)
    cut = z[: len(z) * 9 // 10]
    expected = complete_records(longest_output(kind, cut))
    assert expected > 1000  # the cut is far from the start: many packets decompress
    n, warnings = read_via(how, tmp_path, cut)
    assert n == expected
    assert any(w.code == "truncated" and kind in w.message for w in warnings)


@pytest.mark.parametrize("how", PATHS)
def test_gzip_without_its_trailer_gives_every_packet(raw: bytes, how: str, tmp_path: Path) -> None:
    n, warnings = read_via(how, tmp_path, gzip.compress(raw)[:-8])
    assert n == complete_records(raw) == 12_000
    assert [w.code for w in warnings] == ["truncated"]
    assert "trailer missing" in warnings[0].message


def test_small_gzip_without_its_trailer_is_read_not_refused(tmp_path: Path) -> None:
    """The reported case: a small capture whose gzip trailer is gone was refused ('ends before any data')."""
    data = SAMPLE.read_bytes()
    n, warnings = read_file(tmp_path, gzip.compress(data)[:-8])
    assert n == complete_records(data) > 0
    assert "trailer missing" in warnings[0].message


@pytest.mark.parametrize("how", PATHS)
@pytest.mark.parametrize("kind", ["gzip", "bz2", "xz"])
def test_trailing_garbage_is_read_with_a_warning(raw: bytes, kind: str, how: str, tmp_path: Path) -> None:
    n, warnings = read_via(how, tmp_path, COMPRESS[kind](raw) + b"garbage after the member\n")
    assert n == 12_000
    assert [w.code for w in warnings] == ["corrupt-compression"]
    assert "trailing garbage" in warnings[0].message


def test_zero_padding_after_gzip_is_not_damage(raw: bytes, tmp_path: Path) -> None:
    n, warnings = read_file(tmp_path, gzip.compress(raw) + b"\0" * 512)
    assert (n, warnings) == (12_000, [])


@pytest.mark.parametrize("how", PATHS)
def test_gzip_with_a_bad_crc_is_read_with_a_warning(raw: bytes, how: str, tmp_path: Path) -> None:
    z = bytearray(gzip.compress(raw))
    z[-8] ^= 0xFF  # the CRC-32 in the trailer
    n, warnings = read_via(how, tmp_path, bytes(z))
    assert n == 12_000
    assert [w.code for w in warnings] == ["corrupt-compression"]
    assert "CRC mismatch" in warnings[0].message


def test_concatenated_gzip_members_are_read_as_one_stream(tmp_path: Path) -> None:
    data = SAMPLE.read_bytes()
    half = 24 + 16 + struct.unpack_from("<I", data, 24 + 8)[0]  # header and first record in member one
    n, warnings = read_file(tmp_path, gzip.compress(data[:half]) + gzip.compress(data[half:]))
    assert (n, warnings) == (complete_records(data), [])


@pytest.mark.parametrize("how", PATHS)
def test_corrupt_gzip_keeps_the_packets_before_the_damage(raw: bytes, how: str, tmp_path: Path) -> None:
    z = bytearray(gzip.compress(raw))
    at = len(z) // 2
    z[at : at + 64] = b"\xff" * 64
    n, warnings = read_via(how, tmp_path, bytes(z))
    expected = complete_records(longest_output("gzip", bytes(z)))
    # the decoder's last step before the fault (at most 64 KiB of output) may be lost: under 600 frames
    assert expected - 600 <= n <= expected
    assert n > 5000
    # garbage that still inflates can reach the pcap walk first: it then stops on a bad record
    assert warnings[0].code in ("corrupt-compression", "bad-record-length")


def test_cli_reports_the_packets_of_a_gzip_without_trailer(tmp_path: Path, capsys) -> None:
    data = SAMPLE.read_bytes()
    path = tmp_path / "t.pcap.gz"
    path.write_bytes(gzip.compress(data)[:-8])
    code = main(["analyze", "--format", "json", "--no-progress", str(path)])
    import json

    doc = json.loads(capsys.readouterr().out)
    assert code in (0, 1)
    capture = doc["captures"][0]
    assert capture["packets"] == complete_records(data)
    assert any("trailer missing" in w["message"] for w in capture["warnings"])


def test_gzip_with_nothing_decompressible_is_one_line_error(tmp_path: Path, capsys) -> None:
    path = tmp_path / "t.pcap.gz"
    path.write_bytes(gzip.compress(b"")[:10])  # a header, then nothing
    assert main(["analyze", "--no-progress", str(path)]) == 2
    err = capsys.readouterr().err
    assert "gzip" in err and "Traceback" not in err


@pytest.mark.parametrize("how", PATHS)
def test_damage_past_where_reading_stops_is_reported_alike_on_every_path(how: str, tmp_path: Path) -> None:
    """Found by fuzz/fuzz_cli.py: a record claiming 180 MB stops the reading before a cut in the gzip
    stream; a file (read ahead by 1 MiB) reported the cut as well, memory and pipes did not."""
    data = SAMPLE.read_bytes()
    first = 24 + 16 + struct.unpack_from("<I", data, 24 + 8)[0]
    noise = random.Random(3).randbytes(4000)  # incompressible: the cut falls in it, after the bad header
    bad = data[:first] + struct.pack("<IIII", 1_700_000_000, 0, 184_549_480, 60) + noise
    n, warnings = read_via(how, tmp_path, gzip.compress(bad)[:-100])
    assert n == 1
    assert [w.code for w in warnings] == ["bad-record-length"]
