"""Capture names that are not UTF-8, look like drives, or hold Unicode line separators, in every format."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from analyzer.cli import main
from analyzer.report import FORMATS

ROOT = Path(__file__).resolve().parent.parent
FIRES = ROOT / "samples" / "rst003-stray-ack-after-fin.pcapng"
BAD_NAME = b"caf\xe9-\xff.pcapng"  # Latin-1 bytes: not UTF-8
SHOWN = "caf\\xe9-\\xff.pcapng"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A folder with one capture whose name is not UTF-8 and one whose name is."""
    d = tmp_path / "caps"
    d.mkdir()
    shutil.copy(FIRES, os.path.join(os.fsencode(d), BAD_NAME))
    shutil.copy(FIRES, d / "plain.pcapng")
    return d


@pytest.mark.parametrize("fmt", FORMATS)
def test_undecodable_name_is_escaped_in_a_report_file(fmt, folder, tmp_path, capsys):
    out = tmp_path / f"report.{fmt}"
    assert main(["analyze", "--no-progress", "--format", fmt, "-o", str(out), str(folder)]) == 1
    assert "internal error" not in capsys.readouterr().err
    text = out.read_bytes().decode("utf-8")  # the whole report is valid UTF-8
    assert "plain.pcapng" in text  # one bad name does not sink the others
    if fmt != "sarif":
        # each format spells the backslash its own way (JSON and Markdown escape it)
        assert "caf" in text and "xe9" in text and "xff.pcapng" in text
        if fmt in ("text", "junit", "github"):
            assert SHOWN in text
    else:
        assert "caf%E9-%FF.pcapng" in text  # the artifact URI carries the name's own bytes


@pytest.mark.parametrize("fmt", FORMATS)
def test_undecodable_name_is_escaped_on_standard_output(fmt, folder):
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONIOENCODING="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "analyzer", "analyze", "--no-progress", "--format", fmt, os.fsencode(folder)],
        cwd=ROOT, env=env, capture_output=True, timeout=120,
    )
    assert done.returncode == 1, done.stderr
    text = done.stdout.decode("utf-8")
    assert "plain.pcapng" in text
    if fmt in ("json", "sarif"):
        json.loads(text)


@pytest.mark.parametrize("fmt", ["text", "json", "jsonl"])
def test_undecodable_name_in_conversations(fmt, folder, capsys):
    assert main(["conversations", "--no-progress", "--format", fmt, str(folder)]) == 0
    out = capsys.readouterr().out
    assert "plain.pcapng" in out and "caf" in out


@pytest.mark.parametrize("name", ["C:x.pcapng", "a:b.pcapng", os.path.join("x:dir", "f.pcapng")])
def test_sarif_takes_drive_like_relative_names(name, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path(name).parent.mkdir(exist_ok=True)
    shutil.copy(FIRES, name)
    assert main(["analyze", "--no-progress", "--format", "sarif", name]) == 1
    doc = json.loads(capsys.readouterr().out)
    uri = doc["runs"][0]["artifacts"][0]["location"]["uri"]
    assert not uri.startswith("file:") and "%3A" in uri  # a relative reference; the colon cannot read as a scheme


@pytest.mark.parametrize("sep", ["\x85", "\u2028", "\u2029"])
@pytest.mark.parametrize("verb", ["analyze", "conversations"])
def test_jsonl_records_stay_one_line_each(sep, verb, tmp_path, capsys):
    path = tmp_path / f"a{sep}b.pcapng"
    shutil.copy(FIRES, path)
    main([verb, "--no-progress", "--format", "jsonl", str(path)])
    out = capsys.readouterr().out
    lines = out.splitlines()  # str.splitlines splits at all three
    assert len(lines) == out.count("\n") and lines
    for line in lines:
        record = json.loads(line)
        assert record["kind"] == "summary" or record["capture"] == str(path)


def test_baseline_of_an_undecodable_name_round_trips(folder, tmp_path, capsys):
    baseline = tmp_path / "known.json"
    assert main(["analyze", "--no-progress", "--write-baseline", str(baseline), str(folder)]) == 1
    baseline.read_bytes().decode("utf-8")  # the baseline is UTF-8 text
    assert SHOWN.replace("\\", "\\\\") in baseline.read_text()
    capsys.readouterr()
    assert main(["analyze", "--no-progress", "--baseline", str(baseline), str(folder)]) == 0
    assert "2 known finding(s) left out" in capsys.readouterr().err


def test_sarif_fingerprint_of_an_undecodable_name_matches_the_baseline_key(folder, tmp_path, capsys):
    baseline = tmp_path / "known.json"
    main(["analyze", "--no-progress", "--write-baseline", str(baseline), "--format", "sarif", str(folder)])
    doc = json.loads(capsys.readouterr().out)
    names = {json.dumps(e["capture"]) for e in json.loads(baseline.read_text())["findings"]}
    assert json.dumps(SHOWN) in names
    from analyzer.report.baseline import fingerprint

    keys = [(e["rule"], e["client_address"], e["server"], e["capture"])
            for e in json.loads(baseline.read_text())["findings"]]
    prints = {r["partialFingerprints"][k] for r in doc["runs"][0]["results"] for k in r["partialFingerprints"]}
    assert {fingerprint(k) for k in keys} <= prints
