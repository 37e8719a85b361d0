"""Compressed captures read on the worker thread: the same answers as the plain capture.

The decompression runs on a second thread in big steps, with python-isal for gzip when it is
installed (analyzer/capture/source.py). What a user sees must not depend on any of that: a
compressed capture reports what its plain capture reports, and a damaged one keeps the frames and
the warning that the standard library, step by small step, gives.
"""

from __future__ import annotations

import bz2
import gc
import gzip
import importlib.util
import json
import lzma
import random
import sys
import threading
import zlib
from pathlib import Path

import pytest

from analyzer.capture import open_capture, source
from analyzer.cli import main

REPO = Path(__file__).resolve().parents[1]
GENERATE = REPO / "bench" / "generate.py"
SAMPLES = [REPO / "samples" / n for n in ("rst015-silent-slow-reader-reads-all.pcap", "con001-refused.pcap")]
COMPRESS = {"gz": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress}
HAS_IBZ2 = importlib.util.find_spec("indexed_bzip2") is not None


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """The benchmark generator's capture: 3.7 MB, several of the worker's big steps, with findings."""
    path = tmp_path_factory.mktemp("gen") / "gen-5k.pcap"
    spec = importlib.util.spec_from_file_location("bench_generate", GENERATE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    assert module.main([str(path), "--packets", "5000", "--quiet"]) == 0
    return path


def report(path: Path, capsys) -> dict:
    code = main(["analyze", "--format", "json", "--no-progress", "--fail-on", "never", str(path)])
    assert code == 0
    return json.loads(capsys.readouterr().out)


def frames_and_warnings(path: Path) -> tuple[list[bytes], list[tuple[str, str]]]:
    with open_capture(str(path)) as cap:
        frames = [f.data for f in cap]
    return frames, [(w.code, w.message) for w in cap.warnings]


@pytest.mark.parametrize("ext", COMPRESS)
def test_a_compressed_capture_reports_what_its_plain_capture_reports(
    ext: str, generated: Path, tmp_path: Path, capsys
) -> None:
    for plain in [generated, *SAMPLES]:
        packed = tmp_path / f"{plain.name}.{ext}"
        packed.write_bytes(COMPRESS[ext](plain.read_bytes()))
        want = report(plain, capsys)
        got = report(packed, capsys)
        name = {"gz": "gzip"}.get(ext, ext)
        assert got["captures"][0].pop("format") == want["captures"][0].pop("format") + "+" + name
        assert json.dumps(got).replace(str(packed), str(plain)) == json.dumps(want)
        assert want["captures"][0]["packets"] > 0


def damaged(data: bytes, ext: str, how: str) -> bytes:
    """The compressed `data` cut short, with a bad checksum at its end, or overwritten in the middle."""
    z = bytearray(COMPRESS[ext](data))
    if how == "cut":
        return bytes(z[: len(z) * 2 // 3])
    if how == "checksum":
        z[-8 if ext == "gz" else -20] ^= 0xFF  # gzip: the CRC-32 in its trailer; bz2 and xz: near their end
        return bytes(z)
    z[len(z) // 2 : len(z) // 2 + 64] = b"\xff" * 64
    if ext == "gz":
        return rejected_by_zlib(z)
    return bytes(z)


def rejected_by_zlib(z: bytearray) -> bytes:
    """`z` overwritten in the middle with noise that inflate rejects (0xff bytes still inflate, to garbage)."""
    rng = random.Random(5)
    for at in range(len(z) // 2, len(z) // 2 + 100 * 997, 997):
        bad = bytearray(z)
        bad[at : at + 64] = rng.randbytes(64)
        try:
            zlib.decompressobj(wbits=-zlib.MAX_WBITS).decompress(bytes(bad[10:]))  # the deflate data, no CRC check
        except zlib.error:
            return bytes(bad)
    raise AssertionError("no overwrite that zlib rejects")


@pytest.mark.parametrize("how", ["cut", "checksum", "corrupt"])
@pytest.mark.parametrize("ext", COMPRESS)
def test_a_damaged_file_gives_the_frames_and_warning_of_small_standard_library_steps(
    ext: str, how: str, generated: Path, tmp_path: Path, monkeypatch
) -> None:
    """Big steps (python-isal, indexed_bzip2 when installed) are replayed in small ones after a fault."""
    path = tmp_path / f"d.pcap.{ext}"
    path.write_bytes(damaged(generated.read_bytes(), ext, how))
    fast = frames_and_warnings(path)
    monkeypatch.setattr(source, "FAST_MODULES", {})
    monkeypatch.setattr(source, "FAST_READERS", {})
    monkeypatch.setattr(source, "AHEAD_STEP", source.INFLATE_STEP)
    monkeypatch.setattr(source, "AHEAD_RAW", source.RAW_STEP)
    small = frames_and_warnings(path)
    assert fast == small
    assert len(fast[0]) > 100 and fast[1]  # frames before the damage are kept, and the damage is named


def test_stopping_early_stops_the_worker_and_restores_the_switch_interval(
    generated: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(source, "FORK", False)  # the worker thread (the forked child: test_compressed_fork.py)
    path = tmp_path / "g.pcap.gz"
    path.write_bytes(gzip.compress(generated.read_bytes()))
    gc.collect()  # captures other tests left unclosed halt their workers when collected
    for t in workers():
        t.join(5)
    before = sys.getswitchinterval()
    with open_capture(str(path)) as cap:
        frames = iter(cap)
        first = [next(frames).data for _ in range(10)]
        assert sys.getswitchinterval() <= source.AHEAD_SWITCH
        assert workers()
    assert len(first) == 10
    assert not workers()
    assert sys.getswitchinterval() == before


def test_a_capture_dropped_unclosed_halts_its_worker(generated: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(source, "AHEAD_ITEM", 1 << 16)  # the worker still has items to hand over
    monkeypatch.setattr(source, "FORK", False)  # the worker thread (the forked child: test_compressed_fork.py)
    path = tmp_path / "g.pcap.xz"
    path.write_bytes(lzma.compress(generated.read_bytes()))
    gc.collect()
    for t in workers():
        t.join(5)
    cap = open_capture(str(path))
    next(iter(cap))
    (worker,) = workers()
    del cap
    gc.collect()
    worker.join(5)
    assert not worker.is_alive()


def workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "wsadiag-inflate"]


def test_an_unexpected_failure_of_the_worker_ends_the_stream_with_a_warning(
    generated: Path, tmp_path: Path, monkeypatch
) -> None:
    """A decompressor that raises what no decompressor should (a bug) leaves no reader waiting forever."""

    class Broken:
        """zlib until 3 MiB are out (the first item is handed over by then), then a bug."""

        def __init__(self) -> None:
            self._z = zlib.decompressobj(wbits=-zlib.MAX_WBITS)
            self._out = 0

        def __getattr__(self, name: str):
            return getattr(self._z, name)

        def decompress(self, data: bytes, step: int) -> bytes:
            if self._out >= 3 << 20:
                raise RuntimeError("decompressor bug")
            out = self._z.decompress(data, step)
            self._out += len(out)
            return out

    path = tmp_path / "g.pcap.gz"
    path.write_bytes(gzip.compress(generated.read_bytes()))
    monkeypatch.setattr(source, "_fast", lambda name: (Broken, OSError, zlib.crc32))
    frames, warnings = frames_and_warnings(path)
    assert warnings == [("read-error", f"decompression failed: decompressor bug (after frame {len(frames)})")]
    assert len(frames) > 100  # what decompressed before it is read


@pytest.mark.skipif(not HAS_IBZ2, reason="indexed_bzip2 is not installed: the bz2 module reads every .bz2")
@pytest.mark.parametrize("between", [b"", b"junk between the streams", b"\0" * 512])
def test_bz2_streams_with_bytes_between_them_are_read_as_the_standard_library_reads_them(
    between: bytes, generated: Path, tmp_path: Path, monkeypatch
) -> None:
    """The parallel reader stops at bytes that are no stream; the bz2 module goes on and names them."""
    data = generated.read_bytes()
    half = len(data) // 2
    path = tmp_path / "two.pcap.bz2"
    path.write_bytes(bz2.compress(data[:half]) + between + bz2.compress(data[half:]))
    fast = frames_and_warnings(path)
    monkeypatch.setattr(source, "FAST_READERS", {})
    plain = frames_and_warnings(path)
    assert fast == plain
    if between:  # what follows a stream and is none is named, and reading stops there
        assert [code for code, _ in plain[1]] == ["corrupt-compression"] and len(plain[0]) < 5000
    else:
        assert plain == frames_and_warnings(generated)


@pytest.mark.skipif(not HAS_IBZ2, reason="indexed_bzip2 is not installed: the bz2 module reads every .bz2")
def test_a_sound_bz2_file_is_read_once_by_the_parallel_reader(generated: Path, tmp_path: Path, monkeypatch) -> None:
    """Read again by the bz2 module only after a fault: a sound file is not decompressed twice."""
    outcomes = []
    work_fast = source._work_fast

    def recorded(*args):
        outcomes.append(work_fast(*args))
        return outcomes[-1]

    monkeypatch.setattr(source, "_work_fast", recorded)
    monkeypatch.setattr(source, "FORK", False)  # recorded here, on the worker thread, not in a child
    path = tmp_path / "g.pcap.bz2"
    path.write_bytes(bz2.compress(generated.read_bytes()))
    assert frames_and_warnings(path) == frames_and_warnings(generated)
    assert outcomes == [True]
