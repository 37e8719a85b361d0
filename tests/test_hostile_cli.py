"""`wsadiag analyze DIR` with broken captures among good ones: it goes on, reports every good
capture, names each broken one on one error line, and exits 2 at the end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from analyzer.cli import main

REPO = Path(__file__).resolve().parents[1]
GOOD = {  # sample -> the rule its sidecar says must fire
    "con001-refused.pcap": "CON001",
    "rst002-reset-during-response.pcap": "RST002",
    "udp001-port-unreachable.pcap": "UDP001",
}


@pytest.fixture
def mixed_dir(tmp_path: Path) -> Path:
    """Good captures with a broken one sorted between them, and a truncated one that is still readable."""
    folder = tmp_path / "captures"
    folder.mkdir()
    for name in GOOD:
        shutil.copy(REPO / "samples" / name, folder / name)
    (folder / "nested").mkdir()
    (folder / "nested" / "zz-text.pcap").write_text("12:00:00.000 IP 192.0.2.1.1 > 192.0.2.2.2: Flags [S]\n")
    (folder / "con999-broken.pcap").write_bytes(b"\x00\x11\x22\x33 not a capture at all" * 10)
    (folder / "empty.pcapng").write_bytes(b"")
    good = (REPO / "samples" / "rst002-reset-during-response.pcap").read_bytes()
    (folder / "rst002-cut.pcap").write_bytes(good[: len(good) - 7])  # ends inside the last frame
    (folder / "notes.txt").write_text("not a capture name: skipped by the directory walk")
    return folder


BROKEN = ("con999-broken.pcap", "empty.pcapng", "zz-text.pcap")


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


def test_directory_with_broken_captures_reports_the_good_ones_and_exits_2(mixed_dir, capsys):
    code = main(["analyze", str(mixed_dir), "--format", "json", "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 2
    doc = json.loads(out)
    by_name = {Path(c["path"]).name: c for c in doc["captures"]}
    for name, rule in GOOD.items():
        assert rule in [f["rule"] for f in by_name[name]["findings"]], name
    # the truncated capture is not an error: its frames before the cut are diagnosed, with a warning
    cut = by_name["rst002-cut.pcap"]
    assert not cut.get("error")
    assert any(w["code"] == "truncated" for w in cut["warnings"])
    # each broken capture: one error line naming it, and an error entry in the report
    lines = error_lines(err)
    assert len(lines) == len(BROKEN), err
    for name in BROKEN:
        assert sum(name in line for line in lines) == 1, (name, lines)
        assert by_name[name]["error"]
    assert "Traceback" not in err and "notes.txt" not in out + err


def test_broken_capture_first_does_not_stop_the_rest(tmp_path, capsys):
    first = tmp_path / "a-broken.pcap"
    first.write_bytes(b"\xd4\xc3\xb2\xa1\x02\x00")  # a pcap magic, then the file ends
    good = tmp_path / "b-good.pcap"
    shutil.copy(REPO / "samples" / "con001-refused.pcap", good)
    code = main(["analyze", str(first), str(good), "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 2
    assert "CON001" in out and "b-good.pcap" in out
    (line,) = error_lines(err)
    assert "a-broken.pcap" in line


def test_text_report_lists_every_capture(mixed_dir, capsys):
    code = main(["analyze", str(mixed_dir), "--no-progress", "--color", "never"])
    out, _ = capsys.readouterr()
    assert code == 2
    for name, rule in GOOD.items():
        assert name in out and rule in out
    for name in BROKEN:
        assert name in out  # the report itself says which captures could not be read


def test_conversations_verb_goes_on_too(mixed_dir, capsys):
    code = main(["conversations", str(mixed_dir), "--format", "json", "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 2
    doc = json.loads(out)
    names = {Path(c["path"]).name for c in doc["captures"]}
    assert set(GOOD) <= names
    assert len(error_lines(err)) == len(BROKEN)


def test_all_good_directory_exits_by_findings_not_2(mixed_dir, capsys):
    for name in BROKEN:
        next(mixed_dir.rglob(name)).unlink()
    code = main(["analyze", str(mixed_dir), "--no-progress"])
    _, err = capsys.readouterr()
    assert code == 1 and not error_lines(err)
