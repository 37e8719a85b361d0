"""Many captures at once (--jobs, --dask), rotated sets as one (--stitch), one big capture split.

What a user notices: the report of a parallel run is the report of a serial run, byte for byte;
a capture that breaks, kills its worker or runs too long is reported for itself and the others
complete.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from analyzer.cli import main
from analyzer.scale import Job, run_pool
from tests.corpus import CORPUS, needs_corpus

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


def test_jobs_must_be_a_positive_number(capsys):
    code, _, err = report(capsys, "analyze", REFUSED, "--jobs", "0")
    assert code == 2 and "--jobs" in err and "at least 1" in err
