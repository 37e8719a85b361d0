"""Compressed captures decompressed in a forked child: what a user sees is what the thread gives.

A compressed file opened by path is decompressed ahead in a child process when this process has
one thread (analyzer/capture/source.py); elsewhere on a worker thread. Reports, frames and
warnings must not depend on which, on sound files and on damaged ones; a child that dies or is
sent Ctrl-C costs no traceback, and no child outlives its capture.
"""

from __future__ import annotations

import bz2
import gc
import gzip
import json
import lzma
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest

from analyzer.capture import open_capture, source
from analyzer.cli import main
from analyzer.errors import CaptureError
from tests.generated import bench_capture

REPO = Path(__file__).resolve().parents[1]
COMPRESS = {"gz": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress}
pytestmark = pytest.mark.skipif(not source.FORK, reason="the forked child is used on Linux only")


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    return bench_capture(tmp_path_factory.mktemp("gen") / "gen-5k.pcap", 5000)


@pytest.fixture
def forks(monkeypatch) -> list[int]:
    """The process ids of the children started in a test; the process is left with one thread, so it may fork."""
    started: list[int] = []

    class Recorded(source._ForkAhead):
        def __init__(self, *args) -> None:
            super().__init__(*args)
            started.append(self.pid)

    monkeypatch.setattr(source, "_ForkAhead", Recorded)
    gc.collect()  # captures other tests left unclosed stop their workers when collected
    for t in threading.enumerate():
        if t.name == "wsadiag-inflate":
            t.join(5)
    if threading.active_count() != 1 or len(os.listdir("/proc/self/task")) != 1:
        # a thread another test module left alive (a Dask cluster's): a capture would not fork here
        pytest.skip("other threads are alive in this test process, so no capture forks")
    return started


def damaged(data: bytes, ext: str, how: str) -> bytes:
    """`data` compressed, then damaged as files met in the field are."""
    pack = COMPRESS[ext]
    z = bytearray(pack(data))
    if how == "cut":
        return bytes(z[: len(z) * 2 // 3])
    if how == "checksum":
        z[-8 if ext == "gz" else -20] ^= 0xFF  # gzip: the CRC-32 in its trailer; bz2 and xz: near their end
        return bytes(z)
    if how == "garbage":
        return bytes(z) + b"garbage after the compressed data\n"
    if how == "zeros":
        return bytes(z) + b"\0" * 512
    if how == "concatenated":
        half = len(data) // 2
        return pack(data[:half]) + pack(data[half:])
    return corrupt_block(z, ext)


def corrupt_block(z: bytearray, ext: str) -> bytes:
    """`z` with 64 bytes in the middle overwritten by noise its decompressor rejects."""
    rng = random.Random(5)
    decompress = {
        "gz": lambda b: zlib.decompressobj(wbits=31).decompress(b),
        "bz2": bz2.decompress,
        "xz": lzma.decompress,
    }[ext]
    for at in range(len(z) // 2, len(z) // 2 + 100 * 997, 997):
        bad = bytearray(z)
        bad[at : at + 64] = rng.randbytes(64)
        try:
            decompress(bytes(bad))
        except (zlib.error, OSError, lzma.LZMAError, ValueError):
            return bytes(bad)
    raise AssertionError("no overwrite that the decompressor rejects")


def cli_report(path: Path, capsys) -> tuple[int, str, str]:
    code = main(["analyze", "--format", "json", "--no-progress", "--fail-on", "never", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


HOWS = ["cut", "checksum", "corrupt", "garbage", "zeros", "concatenated"]


@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize("ext", COMPRESS)
def test_the_child_and_the_thread_give_the_same_report(
    ext: str, how: str, generated: Path, tmp_path: Path, capsys, monkeypatch, forks
) -> None:
    path = tmp_path / f"d.pcap.{ext}"
    path.write_bytes(damaged(generated.read_bytes(), ext, how))
    in_child = cli_report(path, capsys)
    assert len(forks) == 1  # that report was read through a child
    monkeypatch.setattr(source, "FORK", False)
    on_thread = cli_report(path, capsys)
    assert len(forks) == 1
    assert in_child == on_thread
    capture = json.loads(in_child[1])["captures"][0]
    assert capture["packets"] > 100  # the frames before the damage are read
    # the damage is named (bz2 checks a block only at its end: the pcap walk may meet its garbage first)
    assert bool(capture["warnings"]) == (how not in ("zeros", "concatenated"))
    assert multiprocessing.active_children() == []


def frames_and_warnings(cap) -> tuple[list[bytes], list[tuple[str, str]]]:
    frames = [f.data for f in cap]
    return frames, [(w.code, w.message) for w in cap.warnings]


def test_a_killed_child_ends_the_stream_with_a_warning_and_the_frames_read_are_kept(
    generated: Path, tmp_path: Path, monkeypatch, forks
) -> None:
    monkeypatch.setattr(source, "AHEAD_ITEM", 1 << 16)  # many items: most are still to come when it dies
    path = tmp_path / "g.pcap.xz"
    path.write_bytes(lzma.compress(generated.read_bytes()))
    with open_capture(str(generated)) as plain:
        want = [f.data for f in plain]
    with open_capture(str(path)) as cap:
        frames = iter(cap)
        first = [next(frames).data for _ in range(10)]
        (child,) = forks
        os.kill(child, signal.SIGKILL)
        rest, warnings = frames_and_warnings(cap)
    got = first + rest
    assert 10 <= len(got) < len(want)
    assert got == want[: len(got)]
    assert warnings == [
        (
            "read-error",
            f"decompression failed: the decompressing process was killed (SIGKILL) (after frame {len(got)})",
        )
    ]
    assert multiprocessing.active_children() == []


def test_ctrl_c_sent_to_the_child_alone_changes_nothing(generated: Path, tmp_path: Path, forks) -> None:
    """A terminal sends Ctrl-C to the whole process group: the child leaves it to the parent."""
    path = tmp_path / "g.pcap.gz"
    path.write_bytes(gzip.compress(generated.read_bytes()))
    with open_capture(str(generated)) as plain:
        want = frames_and_warnings(plain)
    with open_capture(str(path)) as cap:
        os.kill(forks[0], signal.SIGINT)
        got = frames_and_warnings(cap)
    assert got == want and len(want[0]) == 5000


@pytest.mark.parametrize("ext", COMPRESS)
def test_closing_a_capture_early_leaves_no_child(ext: str, generated: Path, tmp_path: Path, forks) -> None:
    path = tmp_path / f"g.pcap.{ext}"
    path.write_bytes(COMPRESS[ext](generated.read_bytes()))
    with open_capture(str(path)) as cap:
        frames = iter(cap)
        assert len([next(frames) for _ in range(10)]) == 10
        assert [p.pid for p in multiprocessing.active_children()] == forks
    assert multiprocessing.active_children() == []
    with pytest.raises(ProcessLookupError):  # reaped, not a zombie
        os.kill(forks[0], 0)


@pytest.mark.parametrize("how", ["sound", "cut", "corrupt", "concatenated"])
@pytest.mark.parametrize("ext", COMPRESS)
def test_short_reads_from_a_one_page_pipe_give_the_threads_frames_and_warnings(
    ext: str, how: str, generated: Path, tmp_path: Path, monkeypatch, forks
) -> None:
    """The parent takes what one read of the child's pipe gives; with a pipe of one page every
    read is short, and the walk still gets every frame and the same warnings as on the thread."""
    import fcntl

    monkeypatch.setattr(source, "_widen", lambda fd: fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 4096))
    sizes: list[int] = []
    real = source._ForkAhead.read

    def counted(self, n: int) -> bytes:
        data = real(self, n)
        sizes.append(len(data))
        return data

    monkeypatch.setattr(source._ForkAhead, "read", counted)
    path = tmp_path / f"g.pcap.{ext}"
    data = generated.read_bytes()
    path.write_bytes(COMPRESS[ext](data) if how == "sound" else damaged(data, ext, how))
    with open_capture(str(path)) as cap:
        in_child = frames_and_warnings(cap)
    assert len(forks) == 1 and len(sizes) > 10 and max(sizes) <= 4096  # every read was short
    monkeypatch.setattr(source, "FORK", False)
    with open_capture(str(path)) as cap:
        on_thread = frames_and_warnings(cap)
    assert in_child == on_thread
    assert len(in_child[0]) > 100


def test_two_compressed_captures_open_at_once_each_have_their_own_child(
    generated: Path, tmp_path: Path, forks
) -> None:
    """The second child is forked while the first runs: closing the first early still stops its
    child, the second is read whole, and no file descriptor is left open."""
    with open_capture(str(generated)) as plain:
        want = [f.data for f in plain]
    first, second = tmp_path / "a.pcap.xz", tmp_path / "b.pcap.gz"
    first.write_bytes(lzma.compress(generated.read_bytes()))
    second.write_bytes(gzip.compress(generated.read_bytes()))
    before = set(os.listdir("/proc/self/fd"))
    a = open_capture(str(first))
    a_frames = iter(a)
    assert len([next(a_frames) for _ in range(5)]) == 5
    with open_capture(str(second)) as b:
        b_frames = iter(b)
        head = [next(b_frames).data for _ in range(5)]
        assert len(forks) == 2
        a.close()
        assert [p.pid for p in multiprocessing.active_children()] == forks[1:]
        assert head + [f.data for f in b_frames] == want
        assert b.warnings == []
    assert multiprocessing.active_children() == []
    gc.collect()
    assert set(os.listdir("/proc/self/fd")) <= before


def test_an_error_in_the_analysis_leaves_no_child(generated: Path, tmp_path: Path, forks) -> None:
    path = tmp_path / "g.pcap.gz"
    path.write_bytes(gzip.compress(generated.read_bytes()))
    with pytest.raises(RuntimeError), open_capture(str(path)) as cap:
        next(iter(cap))
        raise RuntimeError("the analysis failed")
    assert len(forks) == 1
    assert multiprocessing.active_children() == []


def test_a_capture_dropped_unclosed_stops_its_child(generated: Path, tmp_path: Path, forks) -> None:
    path = tmp_path / "g.pcap.xz"
    path.write_bytes(lzma.compress(generated.read_bytes()))
    cap = open_capture(str(path))
    next(iter(cap))
    assert len(multiprocessing.active_children()) == 1
    del cap
    gc.collect()
    assert multiprocessing.active_children() == []


def test_with_threads_running_the_thread_does_the_work(generated: Path, tmp_path: Path, forks) -> None:
    """Forking a process with threads can deadlock the child (a lock held by another thread)."""
    path = tmp_path / "g.pcap.bz2"
    path.write_bytes(bz2.compress(generated.read_bytes()))
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        with open_capture(str(path)) as cap:
            got = frames_and_warnings(cap)
    finally:
        release.set()
        other.join()
    with open_capture(str(generated)) as plain:
        assert got == frames_and_warnings(plain)
    assert forks == []


def test_when_fork_fails_the_thread_does_the_work(generated: Path, tmp_path: Path, forks, monkeypatch) -> None:
    def refused() -> int:
        raise BlockingIOError(11, "Resource temporarily unavailable")  # what fork(2) gives at a process limit

    monkeypatch.setattr(os, "fork", refused)
    path = tmp_path / "g.pcap.xz"
    path.write_bytes(lzma.compress(generated.read_bytes()))
    with open_capture(str(path)) as cap:
        got = frames_and_warnings(cap)
    with open_capture(str(generated)) as plain:
        assert got == frames_and_warnings(plain)
    assert multiprocessing.active_children() == []


def test_a_file_object_of_the_callers_is_read_on_the_thread(generated: Path, tmp_path: Path, forks) -> None:
    """The child would move the file offset the caller's object shares with it."""
    path = tmp_path / "g.pcap.gz"
    path.write_bytes(gzip.compress(generated.read_bytes()))
    with open(path, "rb") as fh, open_capture(fh) as cap:
        assert len(frames_and_warnings(cap)[0]) == 5000
    assert forks == []


def child_wrote(pid: int) -> int:
    """Bytes the process `pid` has written so far (its pipe to the parent), 0 once it is gone."""
    try:
        io = Path(f"/proc/{pid}/io").read_text()
    except OSError:
        return 0
    return int(next(line.split()[1] for line in io.splitlines() if line.startswith("wchar:")))


def _started(argv: list[str]) -> subprocess.Popen:
    """`wsadiag ARGV` in a process group of its own, as a terminal starts a job."""
    return subprocess.Popen(
        [sys.executable, "-m", "analyzer", *argv],
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def _its_child(proc: subprocess.Popen) -> int:
    """The process id of the run's first child (the decompressing one), once it exists."""
    child = 0
    while not child and proc.poll() is None:
        try:
            child = int(Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()[0])
        except (OSError, IndexError):
            time.sleep(0.001)
    assert child, "the run ended before its child was seen"
    return child


def _ctrl_c(proc: subprocess.Popen, child: int) -> None:
    """Ctrl-C as a terminal sends it, to every process of the run: it ends with its one-line
    message and exit status 2, no traceback, its child reaped."""
    os.killpg(proc.pid, signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 2, err.decode(errors="replace")
    assert b"interrupted" in err and b"Traceback" not in err
    assert not Path(f"/proc/{child}").exists()  # reaped by the parent before it exited


def test_ctrl_c_to_the_process_group_reports_what_was_read_without_a_traceback(tmp_path: Path) -> None:
    """As from a terminal: the parent and the child both get SIGINT; the child leaves it to the parent."""
    # Big enough that the child is still sending when the signal comes: it keeps only a few items
    # ahead of the parent, so it lives until the parent has read all but the last megabytes.
    path = tmp_path / "g.pcap.gz"
    path.write_bytes(gzip.compress(bench_capture(tmp_path / "g.pcap", 100_000).read_bytes(), compresslevel=1))
    report = tmp_path / "r.json"
    proc = _started(["analyze", "--no-progress", "--format", "json", "-o", str(report), str(path)])
    child = _its_child(proc)  # the child starts once the capture is opened
    # The child starts before the rules load (the capture is opened early): wait until it has
    # sent more than the pipe holds beside the first item, which the parent takes only in its
    # packet loop.
    while proc.poll() is None and child_wrote(child) < 8 * source.AHEAD_ITEM:
        time.sleep(0.002)
    _ctrl_c(proc, child)
    assert json.loads(report.read_text())["captures"][0]["packets"] > 0


def test_garbage_between_bz2_streams_is_said_once_in_the_report_and_nowhere_else(tmp_path: Path) -> None:
    """The fast bz2 reader prints its own line on such garbage; the child's output goes nowhere, so
    what the user sees is the report's warning alone."""
    pcap = (REPO / "samples" / "con001-refused.pcap").read_bytes()
    path = tmp_path / "junk.pcap.bz2"
    path.write_bytes(bz2.compress(pcap) + b"not a stream" * 8 + bz2.compress(b""))
    report = tmp_path / "r.json"
    argv = [sys.executable, "-m", "analyzer", "analyze", "--no-progress", "--format", "json", "-o", str(report)]
    done = subprocess.run(
        [*argv, str(path)], cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True
    )
    assert done.returncode == 1  # the refusal is found
    assert done.stderr == ""
    warnings = json.loads(report.read_text())["captures"][0]["warnings"]
    assert [w["code"] for w in warnings] == ["corrupt-compression"]
    assert "trailing garbage" in warnings[0]["message"]


# -- the first capture opened before the rules load (analyzer/cli.py _opened_early) ------------


def analyze_json(argv: list[str], capsys) -> tuple[int, dict, str]:
    code = main(["analyze", "--format", "json", "--no-progress", "--fail-on", "never", *argv])
    out, err = capsys.readouterr()
    return code, json.loads(out), err


def plain_name(path: str) -> str:
    stem, _, ext = path.rpartition(".")
    return stem if ext in COMPRESS else path


def as_plain(doc: dict) -> str:
    """The report with each capture's name (also in incidents) and format as its plain version's would be."""
    for capture in doc["captures"]:
        capture["path"] = plain_name(capture["path"])
        capture["format"] = capture["format"].split("+")[0]
    for incident in doc["incidents"]:
        incident["capture"] = plain_name(incident["capture"])
    return json.dumps(doc, sort_keys=True)


def test_several_compressed_captures_in_one_run_report_what_their_plain_versions_report(
    generated: Path, tmp_path: Path, capsys, forks, monkeypatch
) -> None:
    """One run in this process (--jobs 1): the first is opened early, its child decompressing
    while the rules load, the others in turn."""
    from analyzer import cli

    load_rules = cli._load_rules
    children_when_rules_load: list[int] = []

    def counted(args):
        children_when_rules_load.append(len(forks))
        return load_rules(args)

    plain = [generated, REPO / "samples" / "con001-refused.pcap", REPO / "samples" / "con001-refused-ipv6.pcap"]
    copies = [tmp_path / f"{i}.pcap" for i in range(len(plain))]
    packed = []
    for p, copy, ext in zip(plain, copies, ["xz", "gz", "bz2"]):
        copy.write_bytes(p.read_bytes())
        packed.append(tmp_path / f"{copy.name}.{ext}")
        packed[-1].write_bytes(COMPRESS[ext](p.read_bytes()))
    want = analyze_json(["--jobs", "1", *map(str, copies)], capsys)
    monkeypatch.setattr(cli, "_load_rules", counted)
    got = analyze_json(["--jobs", "1", *map(str, packed)], capsys)
    assert children_when_rules_load == [1]  # the first capture's child was at work before the rules loaded
    assert len(forks) == len(packed)  # each read through its child
    assert got[0] == want[0] and got[2] == want[2]
    assert as_plain(got[1]) == as_plain(want[1])
    assert got[1]["captures"][0]["packets"] == 5000
    assert multiprocessing.active_children() == []


@pytest.mark.parametrize("first", [True, False], ids=["opened-early", "opened-in-turn"])
def test_a_compressed_capture_that_cannot_be_decompressed_gives_its_one_line_error_in_its_turn(
    first: bool, generated: Path, tmp_path: Path, capsys, forks
) -> None:
    bad = tmp_path / "bad.pcap.gz"
    bad.write_bytes(gzip.compress(b"")[:10] + b"\xff" * 4000)  # a gzip header, then no deflate stream
    good = tmp_path / "good.pcap.gz"
    good.write_bytes(gzip.compress(generated.read_bytes()))
    with pytest.raises(CaptureError) as refused:
        open_capture(str(bad))
    assert "nothing decompressed" in str(refused.value)
    order = [bad, good] if first else [good, bad]
    code, doc, err = analyze_json(["--jobs", "1", *map(str, order)], capsys)
    assert code == 2
    assert err == f"error: {refused.value}\n"
    by_path = {c["path"]: c for c in doc["captures"]}
    assert by_path[str(bad)]["error"] == str(refused.value)
    assert by_path[str(good)]["packets"] == 5000
    assert [c["path"] for c in doc["captures"]] == list(map(str, order))
    assert multiprocessing.active_children() == []


def test_a_run_refused_after_its_capture_was_opened_leaves_no_child(
    generated: Path, tmp_path: Path, capsys, forks
) -> None:
    """The capture is opened before the rules load; a bad --rules folder still ends the run cleanly."""
    path = tmp_path / "g.pcap.xz"
    path.write_bytes(lzma.compress(generated.read_bytes()))
    missing = tmp_path / "no-rules-here"
    code = main(["analyze", "--no-progress", "--rules", str(missing), str(path)])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.splitlines()[0] == f"error: --rules {missing}: not a directory"
    assert len(forks) == 1  # it was opened, and its child stopped and reaped
    assert multiprocessing.active_children() == []
    with pytest.raises(ProcessLookupError):
        os.kill(forks[0], 0)


def test_a_pool_of_captures_is_not_forked_beside_a_decompressing_child(
    generated: Path, tmp_path: Path, capsys, forks
) -> None:
    """With --jobs 2 the captures go to a process pool: none is opened early in this process."""
    packed = []
    for ext in ("gz", "xz"):
        packed.append(tmp_path / f"{ext}.pcap.{ext}")
        packed[-1].write_bytes(COMPRESS[ext](generated.read_bytes()))
    got = analyze_json(["--jobs", "2", *map(str, packed)], capsys)
    assert forks == []
    assert got[0] == 0 and [c["packets"] for c in got[1]["captures"]] == [5000, 5000]
    assert multiprocessing.active_children() == []


def test_ctrl_c_while_the_run_sets_up_leaves_no_child_and_no_traceback(tmp_path: Path) -> None:
    """Ctrl-C as soon as the decompressing child exists: the rules may still be loading (and the
    Ctrl-C may land in code a module's import runs through exec(): cli.forget_unhandled_interrupt)."""
    path = tmp_path / "g.pcap.xz"
    path.write_bytes(lzma.compress(bench_capture(tmp_path / "g.pcap", 20_000).read_bytes(), preset=0))
    proc = _started(["analyze", "--no-progress", "--format", "json", str(path)])
    _ctrl_c(proc, _its_child(proc))
