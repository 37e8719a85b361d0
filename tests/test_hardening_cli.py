"""The command line with hostile or unlucky arguments: outputs, baselines, rule files, Ctrl-C, pipes, globs."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

import analyzer.pipeline
from analyzer.cli import expand_captures, main

ROOT = Path(__file__).resolve().parent.parent
FIRES = ROOT / "samples" / "rst003-stray-ack-after-fin.pcapng"
SILENT = ROOT / "samples" / "rst004-silent-drained-close.pcap"


def run_cli(*args: str, cwd: Path | None = None, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "analyzer", *args], cwd=cwd or ROOT, env=env, capture_output=True, timeout=120, **kw
    )


@pytest.fixture
def capture(tmp_path: Path) -> Path:
    path = tmp_path / "t.pcapng"
    shutil.copy(FIRES, path)
    return path


@pytest.fixture
def no_analysis(monkeypatch):
    """Fails the test if a capture is read: the refusals must come first."""

    def refuse(*args, **kwargs):
        raise AssertionError("a capture was read before the arguments were checked")

    monkeypatch.setattr(analyzer.pipeline, "analyze_capture", refuse)


# -- outputs --------------------------------------------------------------------------------


@pytest.mark.parametrize("option", ["-o", "--write-baseline"])
def test_output_naming_an_input_capture_is_refused(option, capture, capsys, no_analysis):
    before = capture.read_bytes()
    assert main(["analyze", "--no-progress", option, str(capture), str(capture)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "refusing to overwrite" in err[0] and err[0].startswith("error:")
    assert capture.read_bytes() == before


@pytest.mark.parametrize("option", ["-o", "--write-baseline"])
def test_output_naming_the_peer_capture_is_refused(option, tmp_path, capture, capsys, no_analysis):
    """`--peer` names a capture being read too: writing the report over it would destroy it."""
    peer = tmp_path / "server.pcap"
    shutil.copy(ROOT / "samples" / "pth001-rst-injected-server.pcap", peer)
    before = peer.read_bytes()
    assert main(["analyze", "--no-progress", str(capture), "--peer", str(peer), option, str(peer)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "refusing to overwrite" in err[0] and err[0].startswith("error:")
    assert peer.read_bytes() == before


@pytest.mark.parametrize("option", ["-o", "--write-baseline"])
@pytest.mark.parametrize("read", ["rule file", "configuration file"])
def test_output_naming_a_rule_or_configuration_file_is_refused(option, read, tmp_path, capture, capsys, no_analysis):
    """The run reads these too: a report written over one would destroy the user's rule or settings."""
    rules = tmp_path / "site-rules"
    rules.mkdir()
    rule = rules / "SIT003-site-stray-ack.yaml"
    shipped = (ROOT / "rules" / "RST003-stray-ack-after-fin.yaml").read_text(encoding="utf-8")
    rule.write_text(shipped.replace("code: RST003", "code: SIT003").replace("stray-ack-after-fin", "site-stray-ack"))
    config = tmp_path / "wsadiag.toml"
    config.write_text('rules = ["site-rules"]\nfail-on = "error"\n')
    target = rule if read == "rule file" else config
    before = target.read_bytes()
    assert main(["analyze", "--no-progress", str(capture), option, str(target)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "refusing to overwrite" in err[0] and err[0].startswith("error:")
    assert target.read_bytes() == before


def test_output_naming_an_input_through_another_spelling_is_refused(capture, capsys, no_analysis, monkeypatch):
    monkeypatch.chdir(capture.parent)
    os.symlink(capture.name, "link.pcapng")
    before = capture.read_bytes()
    assert main(["analyze", "--no-progress", "-o", "./link.pcapng", str(capture.parent)]) == 2
    assert capture.read_bytes() == before


def test_output_into_a_missing_folder_fails_before_reading(tmp_path, capture, capsys, no_analysis):
    assert main(["analyze", "--no-progress", "-o", str(tmp_path / "nope" / "r.json"), str(capture)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_output_that_is_a_directory_fails_before_reading(tmp_path, capture, capsys, no_analysis):
    assert main(["analyze", "--no-progress", "-o", str(tmp_path), str(capture)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_bad_baseline_fails_before_reading(tmp_path, capture, capsys, no_analysis):
    bad = tmp_path / "b.json"
    bad.write_text("{}")
    assert main(["analyze", "--no-progress", "--baseline", str(bad), str(capture)]) == 2
    assert "not a wsadiag baseline" in capsys.readouterr().err


def _fsize_limit(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_failed_report_write_leaves_the_previous_report_whole(tmp_path, capture):
    report = tmp_path / "report.json"
    assert run_cli("analyze", "--no-progress", "--format", "json", "-o", str(report), str(capture)).returncode == 1
    previous = report.read_bytes()
    assert len(previous) > 2000
    # The next write fails half way (file size limit): the old report must stay as it was.
    done = run_cli(
        "analyze", "--no-progress", "--format", "html", "-o", str(report), str(capture),
        preexec_fn=_fsize_limit(2000),
    )
    assert done.returncode == 2
    assert b"cannot write" in done.stderr and b"Traceback" not in done.stderr
    assert report.read_bytes() == previous
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json", "t.pcapng"]  # no temporary left


def test_report_file_keeps_its_permissions(tmp_path, capture):
    report = tmp_path / "r.txt"
    report.write_text("old")
    report.chmod(0o640)
    assert main(["analyze", "--no-progress", "-o", str(report), str(capture)]) == 1
    assert report.stat().st_mode & 0o777 == 0o640
    assert "RST003" in report.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.txt", "t.pcapng"]  # no temporary left


def test_an_evidence_capture_that_cannot_be_written_whole_leaves_nothing(tmp_path):
    folder = tmp_path / "evidence"
    done = run_cli(
        "analyze", "--no-progress", "--evidence", str(folder), str(FIRES), preexec_fn=_fsize_limit(300),
    )
    assert done.returncode == 2
    assert b"cannot write" in done.stderr and b"Traceback" not in done.stderr
    assert list(folder.iterdir()) == []  # no half-written capture, no temporary beside it


# -- baselines and rule files -----------------------------------------------------------------


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


@pytest.mark.parametrize(
    "make, says",
    [
        (lambda d: _fifo(d / "b.json"), "not a regular file"),
        (lambda d: (d / "b.json").symlink_to("/dev/zero") or d / "b.json", "not a regular file"),
        (lambda d: d, "is a directory"),
        (lambda d: (d / "b.json").write_bytes(b"{}") and os.truncate(d / "b.json", 3 << 30) or d / "b.json",
         "larger than 64 MiB"),
        (lambda d: (d / "b.json").write_text('{"version": true, "findings": []}') and d / "b.json",
         "not a wsadiag baseline"),
        (lambda d: (d / "b.json").write_text("[" * 200_000 + "]" * 200_000) and d / "b.json", "nested too deeply"),
    ],
    ids=["fifo", "dev-zero", "directory", "3GiB-sparse", "version-true", "deep-nesting"],
)
def test_baselines_that_are_not_baselines_are_refused_in_one_line(tmp_path, capture, capsys, make, says):
    folder = tmp_path / "b"
    folder.mkdir()
    path = make(folder)
    tracemalloc.start()
    try:
        code = main(["analyze", "--no-progress", "--baseline", str(path), str(capture)])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert says in err[0] and len(err) <= 2  # error and maybe a hint
    assert peak < 100 << 20  # nothing was read whole


@pytest.mark.parametrize(
    "make, says",
    [
        (lambda d: _fifo(d / "r.yaml"), "not a regular file"),
        (lambda d: (d / "r.yaml").symlink_to("/dev/zero"), "not a regular file"),
        (lambda d: (d / "r.yaml").write_bytes(b"code: X") and os.truncate(d / "r.yaml", 3 << 30), "larger than"),
    ],
    ids=["fifo", "dev-zero", "3GiB-sparse"],
)
def test_rule_files_that_are_not_rule_files_are_refused_in_one_line(tmp_path, capture, capsys, make, says):
    folder = tmp_path / "rules"
    folder.mkdir()
    make(folder)
    tracemalloc.start()
    try:
        code = main(["analyze", "--no-progress", "--rules", str(folder), str(capture)])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert says in err[0] and "r.yaml" in err[0]
    assert peak < 100 << 20


# -- Ctrl-C and broken pipes -----------------------------------------------------------------


def _pcap_records(n: int) -> bytes:
    data = SILENT.read_bytes()
    return data[24:] * n


def test_ctrl_c_stops_the_whole_run_and_reports_what_was_read(tmp_path):
    fifo = _fifo(tmp_path / "live.pcap")
    second = tmp_path / "second.pcapng"
    shutil.copy(FIRES, second)
    report = tmp_path / "r.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "analyzer", "analyze", "--no-progress", "--format", "json", "-o", str(report),
         str(fifo), str(second)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    with open(fifo, "wb") as w:  # returns once wsadiag has opened the FIFO: it is reading capture one
        w.write(SILENT.read_bytes()[:24] + _pcap_records(3))
        w.flush()
        time.sleep(1.0)  # lets it take in those packets (not asserted: only what is reported)
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
    assert proc.returncode == 2
    assert b"interrupted" in err
    doc = json.loads(report.read_text())
    paths = [c["path"] for c in doc["captures"]]
    assert paths == [str(fifo)]  # the second capture was not read
    assert any(w["code"] == "interrupted" for w in doc["captures"][0]["warnings"])


def test_broken_pipe_keeps_the_exit_status_of_the_findings():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "analyzer", "analyze", "--no-progress", str(FIRES)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # `| head` that has already gone
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 1  # findings at or above --fail-on, as without the pipe
    assert b"Traceback" not in err


# -- walking folders --------------------------------------------------------------------------


def _tree_with_loops(top: Path) -> None:
    (top / "a" / "b").mkdir(parents=True)
    shutil.copy(SILENT, top / "a" / "b" / "x.pcap")
    os.symlink("..", top / "a" / "b" / "up")  # a loop
    os.symlink(str(top), top / "a" / "root")  # another
    os.symlink(str(top / "a"), top / "a" / "b" / "side")  # a second way to the same capture


def test_double_star_glob_does_not_follow_directory_links(tmp_path, monkeypatch):
    _tree_with_loops(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert expand_captures(["**/*.pcap"]) == [os.path.join("a", "b", "x.pcap")]
    assert expand_captures([str(tmp_path / "**" / "*.pcap")]) == [str(tmp_path / "a" / "b" / "x.pcap")]


def test_directory_walk_does_not_follow_directory_links(tmp_path):
    _tree_with_loops(tmp_path)
    assert expand_captures([str(tmp_path)]) == [str(tmp_path / "a" / "b" / "x.pcap")]


def test_file_links_are_still_read(tmp_path):
    shutil.copy(SILENT, tmp_path / "real.pcap")
    os.symlink("real.pcap", tmp_path / "link.pcap")
    assert sorted(expand_captures([str(tmp_path / "**" / "*.pcap")])) == [
        str(tmp_path / "link.pcap"), str(tmp_path / "real.pcap")]


def test_a_thousand_nested_folders_are_walked(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    levels = [os.path.join(*(["d"] * depth)) for depth in range(1, 1001)]
    deep = levels[-1]
    try:
        for level in levels:  # os.makedirs itself recurses once per level
            os.mkdir(level)
        shutil.copy(SILENT, os.path.join(deep, "x.pcap"))
        assert expand_captures(["**/*.pcap"]) == [os.path.join(deep, "x.pcap")]
        assert expand_captures(["d"]) == [os.path.join(deep, "x.pcap")]
        assert main(["analyze", "--no-progress", "--format", "json", "**/*.pcap"]) == 0
        assert json.loads(capsys.readouterr().out)["captures"][0]["packets"] > 0
    finally:  # removed here: pytest's own clean-up (shutil.rmtree) recurses once per level too
        if os.path.exists(os.path.join(deep, "x.pcap")):
            os.unlink(os.path.join(deep, "x.pcap"))
        for level in reversed(levels):
            if os.path.isdir(level):
                os.rmdir(level)


def test_glob_matches_as_the_standard_glob_does_without_links(tmp_path, monkeypatch):
    import glob

    for name in ["x.pcap", "s/y.pcap", "s/t/z.pcapng", ".hidden/h.pcap", "s/.w.pcap"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    for pattern in ["**/*.pcap*", "*.pcap", "s/*/*", "**", "s/**/z.*", "**/.w.pcap"]:
        assert expand_captures([pattern]) == sorted(glob.glob(pattern, recursive=True)), pattern


def test_output_naming_the_baseline_being_read_is_refused(tmp_path, capture, capsys, no_analysis):
    baseline = tmp_path / "known.json"
    baseline.write_text('{"version": 1, "findings": []}')
    assert main(["analyze", "--no-progress", "--baseline", str(baseline), "-o", str(baseline), str(capture)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert baseline.read_text() == '{"version": 1, "findings": []}'


@pytest.mark.parametrize(
    "text", ["[" * 30_000 + "]" * 30_000, "code: X\nmatch: " + "{a: " * 12_000 + "1" + "}" * 12_000]
)
def test_deeply_nested_rule_file_is_refused_in_one_line(text, tmp_path, capture):
    """It crashed the interpreter (libyaml recurses in C per level): run in a child so a regression shows."""
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "deep.yaml").write_text(text)
    done = run_cli("analyze", "--no-progress", "--rules", str(folder), str(capture))
    assert done.returncode == 2, done
    err = done.stderr.decode().strip().splitlines()
    assert len(err) == 1 and "deep.yaml" in err[0] and "nested more than 64 levels" in err[0]


def test_interrupted_run_reports_what_was_read_and_keeps_the_baseline(tmp_path, capture, monkeypatch, capsys):
    real = analyzer.pipeline.analyze_capture
    seen = []

    def stop_on_second(*args, **kwargs):
        seen.append(args[0])
        if len(seen) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(analyzer.pipeline, "analyze_capture", stop_on_second)
    baseline = tmp_path / "known.json"
    baseline.write_text('{"version": 1, "findings": []}')
    report = tmp_path / "r.json"
    args = ["analyze", "--no-progress", "--format", "json", "-o", str(report), "--write-baseline", str(baseline)]
    args += ["--jobs", "1"]  # in this process, where the stand-in for analyze_capture is
    assert main([*args, str(capture), str(SILENT), str(FIRES)]) == 2
    assert len(seen) == 2  # the third capture was not read
    assert [c["path"] for c in json.loads(report.read_text())["captures"]] == [str(capture)]
    assert baseline.read_text() == '{"version": 1, "findings": []}'
    err = capsys.readouterr().err
    assert "interrupted" in err and "1 of 3" in err
