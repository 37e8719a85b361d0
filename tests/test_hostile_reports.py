"""Hostile strings through the real CLI on real files: the capture's name and its payloads.

The reports helper's unit tests feed hand-built results to each renderer; these run
`wsadiag analyze` (analyzer.cli.main, in-process) on a capture file whose name and payloads
carry markup, CDATA terminators, ANSI escapes, NULs and newlines, and check what a browser,
an XML parser, a terminal and the GitHub Actions runner would get.
"""

from __future__ import annotations

import json
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from analyzer.capture import open_capture
from analyzer.cli import main
from analyzer.report import FORMATS

REPO = Path(__file__).resolve().parents[1]
BASE_SAMPLE = REPO / "samples" / "rst002-reset-during-response.pcap"  # a finding with payload both ways
HOSTILE_PAYLOAD = b"<script>alert(1)</script>]]>\x1b[31m\x00\x1b]0;title\x07<![CDATA[\r\n"
SCRIPT_NAME = "<script>alert(1)</script>.pcap"  # the "/" makes it a folder "<script>alert(1)<" and a file
# Linux lets a file name hold ESC and newline: a name that tries to forge a GitHub annotation
# and colour the terminal.
CONTROL_NAME = "evil\x1b[31m\n::error file=x::pwned\r\n.pcap"


def hostile_capture(path: Path) -> Path:
    """The base sample with every TCP payload byte replaced by the hostile pattern (lengths and
    sequence numbers unchanged, so the same finding fires)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    with open_capture(BASE_SAMPLE) as cap:
        assert cap.linktypes == [1]
        for frame in cap:
            data = bytearray(frame.data)
            ihl = (data[14] & 0x0F) * 4
            start = 14 + ihl + (data[14 + ihl + 12] >> 4) * 4
            n = len(data) - start
            data[start:] = (HOSTILE_PAYLOAD * (n // len(HOSTILE_PAYLOAD) + 1))[:n]
            sec = int(frame.ts)
            out.append(struct.pack("<IIII", sec, round((frame.ts - sec) * 1e6), len(data), frame.wirelen))
            out.append(bytes(data))
    path.write_bytes(b"".join(out))
    return path


@pytest.fixture(scope="module")
def script_capture(tmp_path_factory) -> Path:
    return hostile_capture(tmp_path_factory.mktemp("hostile") / SCRIPT_NAME)


@pytest.fixture(scope="module")
def control_capture(tmp_path_factory) -> Path:
    return hostile_capture(tmp_path_factory.mktemp("hostile") / CONTROL_NAME)


def analyze(capture: Path, fmt: str, tmp_path: Path, *extra: str) -> tuple[int, str]:
    out = tmp_path / f"report.{fmt}"
    code = main(["analyze", str(capture), "--format", fmt, "-o", str(out), "--no-progress", *extra])
    return code, out.read_text(encoding="utf-8")


def test_the_hostile_capture_still_gives_its_finding(script_capture, tmp_path):
    code, text = analyze(script_capture, "json", tmp_path)
    doc = json.loads(text)
    assert code == 1
    assert [f["rule"] for c in doc["captures"] for f in c["findings"]] == ["RST002"]
    assert doc["captures"][0]["path"] == str(script_capture)  # JSON carries the name exactly


@pytest.mark.parametrize("fmt", ["html", "markdown"])
def test_html_and_markdown_have_no_raw_script_tag(script_capture, control_capture, tmp_path, fmt):
    for capture in (script_capture, control_capture):
        _, text = analyze(capture, fmt, tmp_path)
        assert "<script" not in text.lower()
        assert "\x1b" not in text and "\x00" not in text
        assert "RST002" in text
    _, text = analyze(script_capture, fmt, tmp_path)
    # the name is shown, escaped (HTML: named entities; Markdown: numeric ones), not dropped
    assert ("&lt;script&gt;alert" if fmt == "html" else "&#60;script&#62;alert") in text


def test_junit_parses_as_xml(script_capture, control_capture, tmp_path):
    for capture in (script_capture, control_capture):
        _, text = analyze(capture, "junit", tmp_path)
        root = ET.fromstring(text)
        parsed = " ".join(el.get("name", "") + " " + (el.text or "") + " " + el.get("message", "")
                          for el in root.iter())
        assert "RST002" in parsed
        assert "\x1b" not in text
    _, text = analyze(script_capture, "junit", tmp_path)
    names = [el.get("name", "") for el in ET.fromstring(text).iter()]
    assert any(str(script_capture) in name for name in names)  # the exact name survives the round trip


def test_sarif_and_json_parse(script_capture, control_capture, tmp_path):
    for capture in (script_capture, control_capture):
        for fmt in ("sarif", "json"):
            _, text = analyze(capture, fmt, tmp_path)
            json.loads(text)
        _, text = analyze(capture, "jsonl", tmp_path)
        for line in text.splitlines():
            json.loads(line)


def test_text_output_has_no_escape_byte(script_capture, control_capture, tmp_path, capsys):
    for capture in (script_capture, control_capture):
        _, text = analyze(capture, "text", tmp_path)
        assert "\x1b" not in text and "\x00" not in text and "\r" not in text
        assert "RST002" in text
        # on standard output too (no -o), where a terminal would interpret it
        main(["analyze", str(capture), "--no-progress", "--color", "never"])
        out, err = capsys.readouterr()
        assert "\x1b" not in out + err


def test_github_output_cannot_inject_workflow_commands(control_capture, tmp_path):
    _, text = analyze(control_capture, "github", tmp_path)
    lines = text.splitlines()
    assert lines, "no annotation at all"
    assert all(line.startswith(("::error ", "::warning ", "::notice ")) for line in lines), lines
    assert not any(line.startswith("::error file=x") for line in lines)
    assert "\x1b" not in text and "\r" not in text
    assert sum(" title=RST002 " in line for line in lines) == 1


def test_every_format_renders_the_hostile_capture(script_capture, control_capture, tmp_path):
    for capture in (script_capture, control_capture):
        for fmt in FORMATS:
            code, text = analyze(capture, fmt, tmp_path)
            assert code == 1 and text, fmt


def test_conversations_verb_on_the_hostile_capture(control_capture, tmp_path, capsys):
    code = main(["conversations", str(control_capture), "--no-progress"])
    out, _ = capsys.readouterr()
    assert code == 0
    assert "\x1b" not in out and "\x00" not in out


def test_unreadable_capture_with_a_hostile_name_gives_one_clean_error_line(tmp_path, capsys):
    """The error line names the file, on one line, with its control characters spelled out."""
    bad = tmp_path / CONTROL_NAME
    bad.write_bytes(b"\x00\x01garbage that is not a capture")
    code = main(["analyze", str(bad), "--no-progress", "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 2
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    assert "\x1b" not in err, "a capture's name sent a raw escape sequence to the terminal"
    assert "pwned" in errors[0], "the error line does not name the whole file"


def test_usage_error_naming_a_hostile_folder_is_one_clean_line(tmp_path, capsys):
    folder = tmp_path / "empty\x1b[2J\nfolder"
    folder.mkdir()
    code = main(["analyze", str(folder), "--no-progress"])
    _, err = capsys.readouterr()
    assert code == 2
    assert "\x1b" not in err
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1
    assert len(err.splitlines()) <= 2  # the error line and at most one hint line
