"""Many captures at once (--jobs, --dask), rotated sets as one (--stitch), one big capture split.

What a user notices: the report of a parallel run is the report of a serial run, byte for byte;
a capture that breaks, kills its worker or runs too long is reported for itself and the others
complete.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from analyzer.cli import main
from analyzer.scale import Job, run_pool
from tests.corpus import CORPUS, needs_corpus
from tests.generated import bench_capture

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"
REFUSED = SAMPLES / "con001-refused.pcap"
HEALTHY = SAMPLES / "ok-http-fin-close.pcap"


def report(capsys, *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("verb", ["analyze", "conversations"])
def test_jobs_2_writes_the_serial_json_on_the_samples(capsys, verb):
    serial = report(
        capsys, verb, SAMPLES, "--format", "json", "--jobs", "1", *(["--allow-empty"] * (verb == "analyze"))
    )
    parallel = report(
        capsys, verb, SAMPLES, "--format", "json", "--jobs", "2", *(["--allow-empty"] * (verb == "analyze"))
    )
    assert serial[1].count('"path"') > 50  # every sample is in it
    assert parallel == serial


@needs_corpus
def test_jobs_2_writes_the_serial_json_on_the_corpus(capsys):
    serial = report(capsys, "analyze", CORPUS, "--format", "json", "--jobs", "1", "--allow-empty")
    parallel = report(capsys, "analyze", CORPUS, "--format", "json", "--jobs", "2", "--allow-empty")
    assert '"findings": [\n' in serial[1]
    assert parallel == serial


def test_a_broken_capture_is_reported_in_its_place(capsys, tmp_path):
    broken = tmp_path / "broken.pcap"
    broken.write_bytes(b"this is not a capture at all, just text\n" * 4)
    argv = ("analyze", REFUSED, broken, tmp_path / "missing.pcap", HEALTHY, "--format", "json")
    serial = report(capsys, *argv, "--jobs", "1")
    parallel = report(capsys, *argv, "--jobs", "2")
    assert parallel == serial
    code, out, err = parallel
    assert code == 2
    assert out.index("con001-refused") < out.index("broken.pcap") < out.index("missing.pcap") < out.index("ok-http")
    assert err.count("error: ") == 2


def _dies_on_broken(path: str, job: Job):
    """A task whose worker process dies on one capture (as on a crash in a C library)."""
    from analyzer.scale import analyze_task

    if path.endswith("killer.pcap"):
        os._exit(3)
    return analyze_task(path, job)


def _hangs_on_broken(path: str, job: Job):
    """A task stuck on one capture (as on a file on a stalled network share)."""
    from analyzer.scale import analyze_task

    if path.endswith("killer.pcap"):
        time.sleep(120)
    return analyze_task(path, job)


@pytest.mark.parametrize("task, words", [(_dies_on_broken, "died"), (_hangs_on_broken, "timed out")])
def test_a_failing_worker_fails_only_its_capture(tmp_path, task, words):
    killer = tmp_path / "killer.pcap"
    killer.write_bytes(REFUSED.read_bytes())
    captures = [str(REFUSED), str(killer), str(HEALTHY), str(REFUSED)]
    job = Job(keep="findings", timeout=3)
    results = [r for r, _ in run_pool(captures, job, 2, task=task)]
    assert [r.path for r in results] == captures
    assert words in (results[1].error or "")
    assert [r.error for r in results if r is not results[1]] == [None, None, None]
    assert [f.rule for f in results[0].findings] == [f.rule for f in results[3].findings] == ["CON001"]


def _beside_a_named_pipe(tmp_path: Path, **popen) -> tuple[subprocess.Popen, Path, list[str]]:
    """`wsadiag analyze REFUSED late.pcap --jobs 2 --format json` started, late.pcap a named pipe
    nobody writes yet; and the pipe, and the arguments."""
    late = tmp_path / "late.pcap"
    os.mkfifo(late)
    argv = ["analyze", str(REFUSED), str(late), "--jobs", "2", "--format", "json", "--no-progress"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "analyzer", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
        env={**{k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}, "PYTHONPATH": str(REPO)},
        **popen,
    )
    return proc, late, argv


def _read_until(proc: subprocess.Popen, marker: bytes) -> bytes:
    """What the run has written to standard output by the time `marker` is in it (or it ended, or
    two minutes passed), read as it comes."""
    import selectors

    seen = b""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + 120
        while marker not in seen and time.monotonic() < deadline:
            if sel.select(timeout=1):
                chunk = os.read(proc.stdout.fileno(), 1 << 16)
                if not chunk:
                    break
                seen += chunk
    return seen


def test_with_jobs_a_capture_is_written_before_the_next_is_read(capsys, tmp_path):
    """`wsadiag analyze a b --jobs 2 --format json | ...`: the reader gets a's part of the report while
    b is still being analysed (each capture's part is flushed down the pipe); b is a named pipe that
    is fed only once a's findings have arrived."""
    proc, late, argv = _beside_a_named_pipe(tmp_path)
    seen = _read_until(proc, b'"rule": "CON001"')
    fed = b'"rule": "CON001"' in seen
    _feed_once_opened(late, HEALTHY.read_bytes(), proc)  # let b be read in any case, so the run can end
    rest, _ = proc.communicate(timeout=300)
    assert fed, "the first capture's findings were not written before the second capture could be read"
    assert str(late).encode() not in seen  # b's part came after
    late.unlink()
    late.write_bytes(HEALTHY.read_bytes())
    code, serial, _ = report(capsys, *argv[:-3], "--jobs", "1", "--format", "json")
    assert (proc.returncode, (seen + rest).decode()) == (code, serial)


def test_ctrl_c_while_a_part_of_the_report_is_written_still_gives_the_report_of_what_was_read(
    capsys, tmp_path, monkeypatch
):
    """The parent writes each capture's part while the pool works on: a Ctrl-C that lands there is
    handled as one that lands while the pool is waited on (workers stopped, the report whole)."""
    import signal

    from analyzer.report import jsondoc

    one = bench_capture(tmp_path / "one.pcap", 20_000)
    captures = [str(one)]
    for name in ("two.pcap", "three.pcap", "four.pcap"):
        (tmp_path / name).write_bytes(one.read_bytes())
        captures.append(str(tmp_path / name))
    write_part = jsondoc.capture_dict

    def interrupted_while_writing(*args, **kwargs):
        if not sent:
            sent.append(os.getpid())
            os.kill(os.getpid(), signal.SIGINT)
        return write_part(*args, **kwargs)

    sent: list[int] = []
    monkeypatch.setattr(jsondoc, "capture_dict", interrupted_while_writing)
    out = tmp_path / "report.json"
    code = main(["analyze", *captures, "--jobs", "2", "--format", "json", "-o", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert sent and code == 2
    assert "interrupted: the report covers" in err and "Traceback" not in err
    paths = [c["path"] for c in json.loads(out.read_text())["captures"]]
    assert 1 <= len(paths) <= len(captures) and paths == captures[: len(paths)]


def test_ctrl_c_from_the_terminal_while_a_worker_waits_for_work_prints_no_traceback(tmp_path):
    """A terminal's Ctrl-C reaches every process of the run. `analyze a b --jobs 2`: a's worker has
    finished and waits for work while b (a named pipe nobody writes) is still being opened; the run
    stops with its one-line message, and the waiting worker stops without a traceback."""
    import signal

    proc, _, _ = _beside_a_named_pipe(tmp_path, start_new_session=True)  # a group of its own, as a terminal's job
    seen = _read_until(proc, b'"rule": "CON001"')
    assert b'"rule": "CON001"' in seen  # a's part is written: its worker is done with it
    os.killpg(proc.pid, signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 2
    assert err.decode().splitlines() == [
        "error: interrupted: the report covers 2 of 2 capture(s), the last one only up to where it stopped"
    ]


def _feed_once_opened(fifo: Path, data: bytes, proc: subprocess.Popen) -> None:
    """Write `data` into the named pipe once its reader has opened it; give up if the run has ended."""
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # ENXIO: no reader has it open yet
            time.sleep(0.05)
            continue
        os.set_blocking(fd, True)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        return


def test_jobs_must_be_a_positive_number(capsys):
    code, _, err = report(capsys, "analyze", REFUSED, "--jobs", "0")
    assert code == 2 and "--jobs" in err and "at least 1" in err


# -- --stitch -------------------------------------------------------------------------------------


def split_pcap(path: Path, cuts: list[int], out: Path) -> list[Path]:
    """The pcap cut before each frame number in `cuts`, as `tcpdump -C` rotates: each file with the header."""
    data = path.read_bytes()
    header, pos, frame = data[:24], 24, 1
    order = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    files, chunks = [], [header]
    for n, stop in enumerate([*cuts, None]):
        while pos < len(data) and (stop is None or frame < stop):
            (incl,) = struct.unpack_from(order + "I", data, pos + 8)
            chunks.append(data[pos : pos + 16 + incl])
            pos += 16 + incl
            frame += 1
        name = out / f"ring.pcap{n}" if n else out / "ring.pcap"
        name.write_bytes(b"".join(chunks))
        files.append(name)
        chunks = [header]
    return files


@pytest.fixture(scope="module")
def rotation(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rotation")
    whole = bench_capture(folder / "whole.pcap", 20_000)
    ring = folder / "ring"
    ring.mkdir()
    return whole, split_pcap(whole, [7_001, 13_001], ring)


def _json(capsys, *argv: object) -> dict:
    code, out, err = report(capsys, "analyze", *argv, "--format", "json", "--fail-on", "never")
    assert code == 0, err
    return json.loads(out)["captures"]


def _findings(cap: dict) -> list[dict]:
    return [{k: v for k, v in f.items() if k != "wireshark_filter"} for f in cap["findings"]]


def test_a_stitched_rotation_gives_the_findings_of_the_whole_capture(capsys, rotation):
    whole, parts = rotation
    (one,) = _json(capsys, whole)
    (stitched,) = _json(capsys, *parts, "--stitch")
    assert stitched["packets"] == one["packets"] == 20_000
    assert stitched["conversation_count"] == one["conversation_count"]
    assert _findings(stitched) == _findings(one) and len(one["findings"]) > 20
    # the connections that cross a cut are followed across it, and diagnosed as in the whole capture
    convs = {c["id"]: c for c in stitched["conversations"]}
    across = [
        f
        for f in stitched["findings"]
        if convs[f["conversation"]]["frames"][0] < 7_001 <= convs[f["conversation"]]["frames"][1]
    ]
    assert across
    # read file by file, each would be two half conversations
    halves = _json(capsys, *parts, "--jobs", "1")
    assert sum(len(c["findings"]) for c in halves) != len(one["findings"])
    assert [f["path"] for f in stitched["files"]] == [str(p) for p in parts]
    assert [(f["first_frame"], f["frames"]) for f in stitched["files"]] == [(1, 7000), (7001, 6000), (13001, 7000)]


def test_the_evidence_filter_names_the_file_and_its_own_frame_numbers(capsys, rotation):
    whole, parts = rotation
    (one,) = _json(capsys, whole)
    (stitched,) = _json(capsys, *parts, "--stitch")
    late = [f for f in stitched["findings"] if f["frames"][0] > 13_000]
    assert late
    finding = late[0]
    local = finding["frames"][0] - 13_000
    assert finding["wireshark_filter"].startswith(f"in {parts[2]}: ")
    assert f"frame.number in {{{local}" in finding["wireshark_filter"]
    assert "stream" not in finding["wireshark_filter"]  # Wireshark numbers each file's streams anew


def test_files_out_of_order_or_overlapping_give_a_warning_and_the_same_findings(capsys, rotation):
    whole, parts = rotation
    (in_order,) = _json(capsys, *parts, "--stitch")
    (shuffled,) = _json(capsys, parts[2], parts[0], parts[1], "--stitch")
    assert _findings(shuffled) == _findings(in_order)
    assert "stitch-out-of-order" in [w["code"] for w in shuffled["warnings"]]
    (overlapping,) = _json(capsys, whole, parts[1], "--stitch")
    assert "stitch-overlap" in [w["code"] for w in overlapping["warnings"]]
    assert overlapping["packets"] == 26_000


def test_a_file_name_that_is_not_utf8_is_escaped_in_every_place_a_stitched_report_names_it(capsys, rotation, tmp_path):
    """Files list, `stitched` warning and per-file filters: the JSON stays UTF-8 and readable."""
    whole, parts = rotation
    odd = tmp_path / os.fsdecode(b"rot\xff-2.pcap")
    odd.write_bytes(parts[2].read_bytes())
    main(
        [
            "analyze",
            "--no-progress",
            "--format",
            "json",
            "--fail-on",
            "never",
            "--stitch",
            str(parts[0]),
            str(parts[1]),
            str(odd),
        ]
    )
    out = capsys.readouterr().out
    (stitched,) = json.loads(out.encode("utf-8", "strict"))["captures"]
    shown = str(tmp_path / "rot\\xff-2.pcap")
    assert stitched["files"][2]["path"] == shown
    assert shown in stitched["warnings"][0]["message"]
    assert any(f["wireshark_filter"].startswith(f"in {shown}: ") for f in stitched["findings"])


def test_a_directory_is_stitched_in_time_order(capsys, rotation):
    whole, parts = rotation
    (from_dir,) = _json(capsys, parts[0].parent, "--stitch")
    (listed,) = _json(capsys, *parts, "--stitch")
    assert from_dir["path"] == str(parts[0].parent)
    assert _findings(from_dir) == _findings(listed)


# -- Dask -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dask_client():
    """A LocalCluster of two in-process workers, as `--dask local` starts one of processes."""
    pytest.importorskip("distributed")
    from analyzer.cluster import close_client, dask_client

    client = dask_client("local", 2, processes=False)
    yield client
    close_client(client, "local")


def _dask_report(capsys, client, *argv: object) -> tuple[int, str, str]:
    """`wsadiag ARGV --dask ADDRESS` against the test's cluster."""
    return report(capsys, *argv, "--dask", client.scheduler.address)


@pytest.mark.parametrize("verb", ["analyze", "conversations"])
def test_dask_writes_the_serial_json_on_the_samples(capsys, dask_client, verb):
    extra = ["--allow-empty"] * (verb == "analyze")
    serial = report(capsys, verb, SAMPLES, "--format", "json", "--jobs", "1", *extra)
    on_dask = _dask_report(capsys, dask_client, verb, SAMPLES, "--format", "json", *extra)
    assert on_dask == serial


@needs_corpus
def test_dask_writes_the_serial_json_on_the_corpus(capsys, dask_client):
    serial = report(capsys, "analyze", CORPUS, "--format", "json", "--jobs", "1", "--allow-empty")
    on_dask = _dask_report(capsys, dask_client, "analyze", CORPUS, "--format", "json", "--allow-empty")
    assert on_dask == serial


def test_dask_local_starts_its_own_cluster(capsys):
    pytest.importorskip("distributed")
    serial = report(capsys, "analyze", REFUSED, HEALTHY, "--format", "json", "--jobs", "1")
    assert report(capsys, "analyze", REFUSED, HEALTHY, "--format", "json", "--dask", "local", "--jobs", "2") == serial


def test_workers_running_another_wsadiag_are_refused_in_one_line(capsys, dask_client, monkeypatch):
    """Workers that pickle their results as another build does (a worker upgraded before this
    client) would be misread: the run stops before any capture is sent, with exit 2 and one line."""
    from analyzer import cluster

    serial = report(capsys, "analyze", REFUSED, "--format", "json", "--jobs", "1")
    assert _dask_report(capsys, dask_client, "analyze", REFUSED, "--format", "json") == serial
    monkeypatch.setattr(cluster, "LAYOUT", "another build's records")
    code, out, err = _dask_report(capsys, dask_client, "analyze", REFUSED, "--format", "json")
    assert (code, out) == (2, "")
    lines = err.strip().splitlines()
    first = sorted(dask_client.run(cluster.records_layout))[0]
    assert lines[0] == (
        f"error: --dask {dask_client.scheduler.address}: 2 of 2 workers ({first}, ...) "
        "run a wsadiag whose results this one cannot read, or none"
    )
    assert "Traceback" not in err and "install the same wsadiag" in err


def test_a_worker_that_went_away_is_left_to_the_scheduler_and_one_without_wsadiag_is_refused():
    """What the workers answer the check with (client.run, on_error="return"): a worker whose
    connection closed meanwhile does not stop the run; one that cannot import wsadiag does."""
    pytest.importorskip("distributed")
    from distributed.comm.core import CommClosedError

    from analyzer import cluster
    from analyzer.errors import UsageError

    ours = cluster.records_layout()

    class Answers:
        def __init__(self, answers: dict) -> None:
            self.answers = answers

        def run(self, function, on_error: str = "raise") -> dict:
            assert (function, on_error) == (cluster.records_layout, "return")
            return self.answers

    cluster._same_records(Answers({"tcp://w1": ours, "tcp://w2": CommClosedError("gone")}), "tcp://s")
    with pytest.raises(UsageError) as refused:
        cluster._same_records(Answers({"tcp://w1": ours, "tcp://w2": ModuleNotFoundError("analyzer")}), "tcp://s")
    assert "1 of 2 workers (tcp://w2)" in str(refused.value)


def test_a_capture_failing_on_dask_fails_alone(dask_client, tmp_path):
    from analyzer.cluster import run_dask

    killer = tmp_path / "killer.pcap"
    killer.write_bytes(REFUSED.read_bytes())
    captures = [str(REFUSED), str(killer), str(HEALTHY)]
    results = [r for r, _ in run_dask(captures, Job(keep="findings"), dask_client, task=_raises_on_killer)]
    assert [r.path for r in results] == captures
    assert "internal error" in (results[1].error or "")
    assert results[0].error is None and results[2].error is None and results[0].findings


def _raises_on_killer(path: str, job: Job):
    from analyzer.scale import analyze_task

    if path.endswith("killer.pcap"):
        raise MemoryError("out of memory on this capture")
    return analyze_task(path, job)


def test_file_urls_are_read_through_fsspec(capsys):
    pytest.importorskip("fsspec")
    serial = report(capsys, "analyze", REFUSED, "--format", "json", "--jobs", "1")
    code, out, err = report(capsys, "analyze", REFUSED.as_uri(), "--format", "json")
    assert (
        code == serial[0]
        and json.loads(out)["captures"][0]["findings"] == json.loads(serial[1])["captures"][0]["findings"]
    )


def test_without_the_cluster_extra_dask_names_the_install_command(tmp_path):
    script = (
        "import sys; sys.modules['distributed'] = None; sys.modules['dask.distributed'] = None\n"
        "from analyzer.cli import main\n"
        f"sys.exit(main(['analyze', {str(REFUSED)!r}, {str(HEALTHY)!r}, '--dask', 'local', '--format', 'json']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 2
    assert "pip install 'wsadiag[cluster]'" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""  # no report begun that cannot be finished


# -- one big capture split by conversation --------------------------------------------------------


@pytest.fixture(scope="module")
def bench_100k(tmp_path_factory):
    return bench_capture(tmp_path_factory.mktemp("big") / "bench-100k.pcap", 100_000)


def _document(result) -> dict:
    from analyzer.report.jsondoc import to_json_document

    return to_json_document([result])


def test_a_big_capture_split_across_jobs_writes_the_serial_report(capsys, bench_100k):
    from analyzer.placement import SPLIT_FROM_BYTES

    assert bench_100k.stat().st_size >= SPLIT_FROM_BYTES  # so --jobs 2 splits it
    serial = report(capsys, "analyze", bench_100k, "--format", "json", "--jobs", "1")
    split = report(capsys, "analyze", bench_100k, "--format", "json", "--jobs", "2")
    assert split == serial
    doc = json.loads(serial[1])["captures"][0]
    assert doc["packets"] == 100_000 and len(doc["findings"]) > 100


def test_three_shares_give_the_serial_ids_streams_and_findings(bench_100k):
    from analyzer.scale import analyze_task
    from analyzer.split import analyze_split

    job = Job(keep="findings")
    serial, _ = analyze_task(str(bench_100k), job)
    split = analyze_split(str(bench_100k), job, 3)
    assert _document(split) == _document(serial)
    assert {c.stream for c in split.conversations if c.proto == "tcp"} == {
        c.stream for c in serial.conversations if c.proto == "tcp"
    }


def test_the_share_this_process_follows_beside_a_pool_is_the_bigger(bench_100k):
    """Share 0 (followed beside the pool, its outcome not pickled) takes more conversations than
    the other, every conversation is followed by one share, and the report is the serial one."""
    from analyzer.scale import _ruleset, analyze_task
    from analyzer.split import merge_shares

    job = Job(keep="findings")
    serial, _ = analyze_task(str(bench_100k), job)
    outcomes = _lead_shares_here(str(bench_100k), job, 2)
    first, second = (len(o.created) for o in outcomes)
    assert first + second == serial.conversation_count
    assert 1.1 < first / second < 1.4  # 5 slices of 9 against 4
    assert _document(merge_shares(outcomes, _ruleset((), (), ()))) == _document(serial)


@pytest.mark.parametrize("shares", [2, 3, 4, 5])
def test_host_context_survives_the_split(shares):
    """A forged refusal is recognised by the server's TTL learnt from an earlier conversation: in another share."""
    from analyzer.scale import _ruleset, analyze_task
    from analyzer.split import analyze_share, merge_shares

    sample = str(SAMPLES / "con004-forged-refusal.pcap")
    job = Job(keep="findings")
    serial, _ = analyze_task(sample, job)
    outcomes = [analyze_share(sample, k, shares, job) for k in range(shares)]
    # the healthy conversation that teaches the server's TTL and the refusal judged by it are in two shares
    assert sorted(len(o.host_log) for o in outcomes if o.host_log) == [1, 1]
    merged = merge_shares(outcomes, _ruleset((), (), ()))
    assert [f.rule for f in merged.findings] == [f.rule for f in serial.findings] == ["CON004"]
    assert _document(merged) == _document(serial)


NUMBERED_RULE = """\
code: USR100
name: any-reset-numbered
title: A reset, named by conversation and stream
level: warning
status: experimental
message: "conversation {conversation}, stream {stream}: a RST from {B}"
match:
  where: {proto: tcp}
  sequence:
    - {from: A, flags: [RST]}
errors: []
cause: test
remedy: test
confidence: low
falsepositives: []
references: []
samples: {fires: [], silent: []}
doc: |
  ## What it detects
  Any reset.
  ## Why it happens
  Test.
  ## What each side sees
  Test.
  ## Example
  Test.
"""


def test_a_rule_naming_conversation_and_stream_numbers_gives_the_serial_report_split(bench_100k, tmp_path):
    """Shares judge their conversations under their own numbers and the client renumbers the
    findings; a message that names the numbers (a user's rule may) is judged again on them."""
    from analyzer.scale import analyze_task
    from analyzer.split import analyze_split

    (tmp_path / "USR100-any-reset-numbered.yaml").write_text(NUMBERED_RULE)
    job = Job(keep="findings", rule_dirs=(str(tmp_path),))
    serial, _ = analyze_task(str(bench_100k), job)
    split = analyze_split(str(bench_100k), job, 2, run=_lead_shares_here)
    assert _document(split) == _document(serial)
    convs = {c.id: c for c in serial.conversations}
    named = [(f, a.message) for f in serial.findings for a in f.also if a.rule == "USR100"]
    named += [(f, f.message) for f in serial.findings if f.rule == "USR100"]
    assert len({f.rule for f, _ in named}) > 1  # leading, and an alternative under another rule
    for f, text in named:
        assert text.startswith(f"conversation {f.conversation}, stream {convs[f.conversation].stream}:")


def _host_log(rng, shares: int, hosts: list[bytes], ttl_values: tuple[int, ...], entries: int):
    """Random host logs of `shares` shares (analyzer.flows.shares.HostEntry), and in each the entries
    a replay is asked about (conversations that need host context)."""
    from analyzer.flows.shares import EXPIRED

    logs: list[list] = [[] for _ in range(shares)]
    wanted: list[set[int]] = [set() for _ in range(shares)]
    for frame in range(1, entries + 1):
        s = rng.randrange(shares)
        # mostly one packet a side, so that a TTL seen twice is often seen once in each of two shares
        ttls = [{rng.choice(ttl_values): 1 + (rng.random() < 0.05)} for _ in range(2)]
        if rng.random() < 0.3:
            ttls[rng.randrange(2)] = {}
        if rng.random() < 0.1:
            wanted[s].add(len(logs[s]))
        logs[s].append(((frame, 0, EXPIRED, 0.0, 0), frame, rng.choice(hosts), ttls[0], rng.choice(hosts), ttls[1]))
    return logs, wanted


def _replay_answers(logs, wanted) -> dict:
    """What the replay tells each wanted conversation of its two hosts (analyzer.flows.table._odd_marks
    uses only this): the TTLs known, and whether one was seen twice."""
    from analyzer.flows.shares import host_contexts, host_order

    def seen(ttls):
        return None if not ttls else (frozenset(ttls), max(ttls.values()) >= 2)

    return {k: (seen(c), seen(s)) for k, (c, s) in host_contexts(logs, host_order(logs), wanted)[0].items()}


@pytest.mark.parametrize("shares", [2, 3])
@pytest.mark.parametrize("hosts, ttl_values", [(60, 11), (3, 20)], ids=["many-hosts", "many-ttls"])
def test_a_host_log_kept_short_teaches_the_replay_what_the_whole_log_does(shares, hosts, ttl_values):
    """Every share sends only the host-log entries a replay can learn from (compact_host_log): for
    each conversation that needs host context, the replay over the short logs knows the same TTLs of
    its hosts, and whether one was seen twice, as over the whole logs; also for a host that shows
    more distinct TTLs than a host keeps (MAX_TTL_VALUES), in one share or across several."""
    import random

    from analyzer.flows.shares import compact_host_log

    addrs = [bytes([192, 0, 2, n]) for n in range(hosts)]
    values = tuple(range(40, 40 + ttl_values))
    past_bound, twice = 0, set()
    for seed in range(60):
        logs, wanted = _host_log(random.Random(seed), shares, addrs, values, 400)
        whole = _replay_answers(logs, wanted)
        short = [compact_host_log(log, keep) for log, keep in zip(logs, wanted)]
        learnt = [{addr for e in log for addr, ttls in ((e[2], e[3]), (e[4], e[5])) if ttls} for log in logs]
        assert [n for _, _, n in short] == [len(a) for a in learnt]
        # besides the entries asked for: at most two counts of each TTL of each host, in each share
        assert sum(len(log) for log, _, _ in short) <= sum(map(len, wanted)) + shares * hosts * ttl_values * 2
        kept = _replay_answers([log for log, _, _ in short], [set(m.values()) for _, m, _ in short])
        back = [{new: old for old, new in m.items()} for _, m, _ in short]
        assert {(s, back[s][i]): answer for (s, i), answer in kept.items()} == whole, seed
        answers = [a for pair in whole.values() for a in pair if a is not None]
        past_bound += any(len(ttls) == 8 for ttls, _ in answers)  # a host past the bound of distinct TTLs
        twice |= {seen_twice for _, seen_twice in answers}
    assert past_bound and twice == {True, False}


def test_a_ttl_past_a_shares_first_eight_still_counts_when_the_replay_knows_it():
    """Share 0 sees TTL 64 of a host first; share 1 then sees eight other TTLs of it, then 64 again:
    64 is among the replay's TTLs of the host (share 0 saw it first), and share 1's sighting makes it
    seen twice, which marks a later one-packet side of the host that shows another TTL."""
    from analyzer.flows.shares import EXPIRED, compact_host_log

    host, peer = bytes([192, 0, 2, 1]), bytes([198, 51, 100, 1])

    def entry(frame: int, ttls: dict) -> tuple:
        return ((frame, 0, EXPIRED, 0.0, 0), frame, host, ttls, peer, {})

    logs = [[entry(1, {64: 1}), entry(100, {})], [*(entry(10 + t, {t: 1}) for t in range(1, 9)), entry(50, {64: 1})]]
    wanted = [{1}, set()]
    whole = _replay_answers(logs, wanted)
    assert whole[(0, 1)][0] == (frozenset({64, 1, 2, 3, 4, 5, 6, 7}), True)
    short = [compact_host_log(log, keep) for log, keep in zip(logs, wanted)]
    assert _replay_answers([log for log, _, _ in short], [set(m.values()) for _, m, _ in short]) == {
        (0, short[0][1][1]): whole[(0, 1)]
    }


def test_the_replay_of_short_host_logs_says_when_it_knows_as_many_hosts_as_a_run_forgets_them_at():
    """A serial run forgets every host's TTLs when it knows MAX_HOSTS hosts; short host logs replay
    its hosts only up to that point, so the replay says when it gets there (the split is then
    analysed serially, analyze_split). A host two shares saw counts once: two shares that each saw
    the same six hosts and one peer stay under a bound of 8; one host more reaches it."""
    from analyzer.flows.shares import EXPIRED, compact_host_log, host_contexts, host_order

    hosts, peer = [bytes([192, 0, 2, n]) for n in range(7)], bytes([198, 51, 100, 1])

    def short_log(first: int, seen: list[bytes]) -> list:
        log = [((first + k, 0, EXPIRED, 0.0, 0), first + k, h, {64: 1}, peer, {64: 1}) for k, h in enumerate(seen)]
        return compact_host_log(log, set())[0]

    def filled(logs: list) -> bool:
        return host_contexts(logs, host_order(logs), [set() for _ in logs], bound=8)[1]

    assert not filled([short_log(1, hosts[:6]), short_log(11, hosts[:6])])
    assert filled([short_log(1, hosts[:6]), short_log(11, hosts[:7])])


def test_the_shares_of_a_big_capture_run_as_dask_tasks(dask_client):
    from analyzer.cluster import share_tasks
    from analyzer.scale import analyze_task
    from analyzer.split import analyze_split

    sample = str(SAMPLES / "con004-forged-refusal.pcap")
    job = Job(keep="findings")
    serial, _ = analyze_task(sample, job)
    on_dask = analyze_split(sample, job, 2, run=share_tasks(dask_client))
    assert _document(on_dask) == _document(serial) and [f.rule for f in on_dask.findings] == ["CON004"]


def test_a_stitched_set_reads_on_past_an_unreadable_file_and_fails_when_none_reads(capsys, tmp_path):
    broken = tmp_path / "ring.pcap1"
    broken.write_bytes(b"not a capture\n" * 8)
    code, out, err = report(capsys, "analyze", REFUSED, broken, "--stitch", "--format", "json")
    cap = json.loads(out)["captures"][0]
    assert code == 1 and [f["rule"] for f in cap["findings"]] == ["CON001"]
    assert "stitch-unreadable" in [w["code"] for w in cap["warnings"]]
    code, out, err = report(capsys, "analyze", broken, tmp_path / "gone.pcap", "--stitch")
    assert code == 2 and "ring.pcap1" in err and "Traceback" not in err


def _shares_here(path: str, job: Job, shares: int, lead: bool = False) -> list:
    """analyze_split's shares run one after another in this process (small captures: no pool needed).

    lead: share 0 the bigger, as when this process follows it beside a pool (analyze_split)."""
    from analyzer.split import analyze_share

    return [analyze_share(path, k, shares, job, lead) for k in range(shares)]


def _lead_shares_here(path: str, job: Job, shares: int) -> list:
    return _shares_here(path, job, shares, lead=True)


@pytest.mark.parametrize("run", [_shares_here, _lead_shares_here], ids=["equal", "share-0-bigger"])
@pytest.mark.parametrize("shares", [2, 3])
def test_every_sample_split_by_conversation_gives_the_serial_report(shares, run):
    """Tunnels, VLAN tags, fragments, ICMP errors, IPv6: whichever decoder path a packet takes, it
    goes to its conversation's share, and the split's report is the serial one."""
    from analyzer.scale import analyze_task
    from analyzer.split import analyze_split

    job = Job(keep="findings")
    samples = sorted(p for p in SAMPLES.iterdir() if p.suffix in (".pcap", ".pcapng", ".etl"))
    found = 0
    for sample in samples:
        serial, _ = analyze_task(str(sample), job)
        split = analyze_split(str(sample), job, shares, run=run)
        assert _document(split) == _document(serial), sample.name
        found += len(serial.findings)
    assert len(samples) > 80 and found > 50


@pytest.fixture(scope="module")
def past_the_stream_bound(tmp_path_factory):
    """A capture in which more conversations end than the Wireshark stream table remembers."""
    return bench_capture(tmp_path_factory.mktemp("bound") / "bench-150k.pcap", 150_000)


@pytest.mark.parametrize("shares", [2, 3])
def test_a_split_capture_forgets_the_stream_pairs_a_serial_run_forgets(past_the_stream_bound, shares):
    from analyzer.scale import analyze_task
    from analyzer.split import analyze_split

    job = Job(keep="findings")
    serial, _ = analyze_task(str(past_the_stream_bound), job)
    split = analyze_split(str(past_the_stream_bound), job, shares)
    bounded = [w.message for w in serial.warnings if w.code == "stream-numbers-bounded"]
    assert bounded and int(bounded[0].split()[0]) > 100  # the capture does go past the bound
    assert [w.message for w in split.warnings if w.code == "stream-numbers-bounded"] == bounded
    assert _document(split) == _document(serial)


@needs_corpus
def test_every_corpus_capture_split_by_conversation_gives_the_serial_report():
    from analyzer.cli import expand_captures
    from analyzer.scale import analyze_task
    from analyzer.split import analyze_split

    job = Job(keep="findings")
    captures = expand_captures([str(CORPUS)])
    for capture in captures:
        serial, _ = analyze_task(capture, job)
        split = analyze_split(capture, job, 2, run=_shares_here)
        assert _document(split) == _document(serial), capture
    assert len(captures) > 50
