"""What a support engineer and a CI job do with `wsadiag analyze`: evidence captures to attach,
times to look up, configuration kept with the captures, empty captures that must fail, live JSONL,
and `explain` from the error text they have."""

from __future__ import annotations

import json
import os
import select
import shutil
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import dpkt
import pytest

from analyzer.capture import open_capture
from analyzer.cli import main
from analyzer.explain import rule_for_terminal
from analyzer.rules import load_rules

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
REFUSED = SAMPLES / "con001-refused.pcap"  # one CON001 finding
ABORTED = SAMPLES / "rst001-client-linger0-after-upload.pcap"  # a full handshake, then RST001
TSHARK = shutil.which("tshark")


def run(capsys, *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args] + ["--no-progress"] if args[0] == "analyze" else [str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


# ---- --evidence ---------------------------------------------------------------------------------


def test_evidence_writes_one_commented_pcapng_per_finding(capsys, tmp_path):
    folder = tmp_path / "evidence"
    code, out, err = run(capsys, "analyze", REFUSED, ABORTED, "--evidence", folder, "--format", "json")
    assert code == 1 and "wrote 2 evidence capture(s)" in err
    doc = json.loads(out)
    named = [f["evidence_file"] for c in doc["captures"] for f in c["findings"]]
    assert sorted(Path(p).name for p in named) == sorted(p.name for p in folder.iterdir())
    aborted = next(p for p in named if "RST001" in p)
    with open_capture(aborted) as cap:
        frames = list(cap)
        assert cap.format == "pcapng"
    finding = next(f for c in doc["captures"] for f in c["findings"] if f["rule"] == "RST001")
    # the handshake (3 packets) and the evidence frames, nothing else, byte for byte from the capture
    assert len(frames) == 3 + len(finding["frames"])
    with open_capture(ABORTED) as cap:
        original = {fr.number: fr.data for fr in cap}
    assert [fr.data for fr in frames] == [original[n] for n in sorted({1, 2, 3, *finding["frames"]})]
    raw = Path(aborted).read_bytes()
    assert raw.count(b"wsadiag RST001 handshake") == 3 and raw.count(b"wsadiag RST001 evidence") == 2


@pytest.mark.parametrize("fmt", ["json", "text", "markdown", "html"])
def test_evidence_from_standard_input_is_named_nowhere(tmp_path, fmt):
    """Standard input cannot be read again, so --evidence writes nothing for it: no report names
    a file for it either (the warning says why), while a capture read beside it keeps its file."""
    folder = tmp_path / "evidence"
    argv = [sys.executable, "-m", "analyzer", "analyze", "-", str(ABORTED), "--evidence", str(folder), "--format", fmt]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with REFUSED.open("rb") as stdin:
        done = subprocess.run(argv, stdin=stdin, capture_output=True, text=True, cwd=ROOT, env=env, check=False)
    assert done.returncode == 1, done.stderr
    assert "standard input cannot be read again" in done.stderr
    written = [p.name for p in folder.iterdir()]
    assert len(written) == 1 and "RST001" in written[0]  # the file of the capture read by path
    assert "CON001" in done.stdout  # the finding of standard input is reported ...
    marker = {"json": '"evidence_file"', "text": "evidence capture:", "markdown": "**Evidence capture:**"}
    assert done.stdout.count(marker.get(fmt, "<dt>Evidence capture</dt>")) == 1  # ... with no file named


@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")
def test_evidence_comments_show_in_wireshark(capsys, tmp_path):
    run(capsys, "analyze", REFUSED, "--evidence", tmp_path)
    (capture,) = tmp_path.glob("*.pcapng")
    out = subprocess.run(
        [TSHARK, "-r", str(capture), "-T", "fields", "-e", "frame.comment"], capture_output=True, text=True
    ).stdout
    assert out.splitlines() == [
        "wsadiag CON001 evidence 1/2 (frame 1): client -> server SYN seq=0 len=0",
        "wsadiag CON001 evidence 2/2 (frame 2): server -> client RST,ACK seq=1 ack=1 len=0",
    ]


def test_evidence_never_overwrites_a_file_it_did_not_write(capsys, tmp_path):
    run(capsys, "analyze", REFUSED, "--evidence", tmp_path)
    (capture,) = tmp_path.glob("*.pcapng")
    assert run(capsys, "analyze", REFUSED, "--evidence", tmp_path)[0] == 1  # its own file: replaced
    capture.write_bytes(b"the user's notes")
    code, _, err = run(capsys, "analyze", REFUSED, "--evidence", tmp_path)
    assert code == 2 and "not overwriting" in err and capture.read_bytes() == b"the user's notes"


def _frames_of(path: object) -> list[bytes]:
    with open_capture(str(path)) as cap:
        return [bytes(fr.data) for fr in cap]


def _each_evidence_file_is_its_own_captures(doc: dict, folder: Path) -> None:
    """Every finding names a file of its own, the folder holds exactly those, and each file holds its
    capture's packets (the evidence frames among them), not another capture's."""
    named = [(c["path"], f) for c in doc["captures"] for f in c["findings"]]
    files = [f["evidence_file"] for _, f in named]
    assert len(set(files)) == len(files), "two findings name one evidence file"
    assert sorted(Path(p).name for p in files) == sorted(p.name for p in folder.iterdir())
    for capture, finding in named:
        original = _frames_of(capture)
        kept = _frames_of(finding["evidence_file"])
        assert all(data in original for data in kept), f"{finding['evidence_file']} holds packets not in {capture}"
        assert all(original[n - 1] in kept for n in finding["frames"])


def test_evidence_of_captures_read_together_is_kept_apart(capsys, tmp_path):
    """Conversation numbers start at 1 in each capture: the refusals of one service seen through a
    GRE tunnel and through ERSPAN (conversation 1, CON001, the same server in both) are two files."""
    folder = tmp_path / "evidence"
    captures = [SAMPLES / "con001-refused-gre.pcap", SAMPLES / "con001-refused-erspan.pcap"]
    code, out, err = run(capsys, "analyze", *captures, "--evidence", folder, "--format", "json", "--jobs", 1)
    assert code == 1 and "wrote 2 evidence capture(s)" in err
    doc = json.loads(out)
    assert [len(c["findings"]) for c in doc["captures"]] == [1, 1]
    _each_evidence_file_is_its_own_captures(doc, folder)


def test_evidence_of_captures_of_one_name_in_two_folders_is_kept_apart(capsys, tmp_path):
    """A folder of CI jobs, each with its traffic.pcap: the file name alone does not tell them apart."""
    for job, sample in (("job-1", "con001-refused-gre.pcap"), ("job-2", "con001-refused-erspan.pcap")):
        (tmp_path / "jobs" / job).mkdir(parents=True)
        shutil.copy(SAMPLES / sample, tmp_path / "jobs" / job / "traffic.pcap")
    folder = tmp_path / "evidence"
    code, out, _ = run(capsys, "analyze", tmp_path / "jobs", "--evidence", folder, "--format", "json", "--jobs", 1)
    assert code == 1
    doc = json.loads(out)
    assert [len(c["findings"]) for c in doc["captures"]] == [1, 1]
    _each_evidence_file_is_its_own_captures(doc, folder)


def test_evidence_names_that_would_collide_are_refused_before_reading(capsys, tmp_path):
    for name in ("a b.pcap", "a-b.pcap"):  # one name once made safe for a file name
        shutil.copy(REFUSED, tmp_path / name)
    folder = tmp_path / "evidence"
    code, _, err = run(capsys, "analyze", tmp_path / "a b.pcap", tmp_path / "a-b.pcap", "--evidence", folder)
    assert code == 2 and err.startswith("error: --evidence: ") and "same names" in err
    assert not folder.exists()


# ---- absolute times -----------------------------------------------------------------------------


def test_times_are_iso_utc_in_json_and_zoned_in_text(capsys):
    doc = json.loads(run(capsys, "analyze", REFUSED, "--format", "json")[1])
    conv = doc["captures"][0]["conversations"][0]
    finding = doc["captures"][0]["findings"][0]
    with open_capture(REFUSED) as cap:
        first = next(iter(cap)).ts
    from datetime import datetime, timezone

    assert conv["start_time"] == datetime.fromtimestamp(first, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert len(finding["frame_times"]) == len(finding["frames"]) and finding["frame_times"][0] == conv["start_time"]
    utc = " ".join(run(capsys, "analyze", REFUSED)[1].split())  # lines are wrapped to the width
    berlin = " ".join(run(capsys, "analyze", REFUSED, "--tz", "Europe/Berlin")[1].split())
    hour = int(conv["start_time"][11:13])
    assert f"started {conv['start_time'][:10]} {conv['start_time'][11:19]}" in utc and " UTC" in utc
    assert f" {(hour + 1) % 24:02d}:{conv['start_time'][14:19]}" in berlin and "CET" in berlin
    code, _, err = run(capsys, "analyze", REFUSED, "--tz", "Mars/Olympus")
    assert code == 2 and err.startswith("error: unknown time zone")


def test_junit_classname_has_no_path_and_cases_have_times(capsys):
    out = run(capsys, "analyze", REFUSED, "--format", "junit")[1]
    root = ET.fromstring(out)
    cases = list(root.iter("testcase"))
    assert cases and all("/" not in c.get("classname") and "\\" not in c.get("classname") for c in cases)
    assert cases[0].get("classname") == "wsadiag.con001-refused_pcap"
    assert all(c.get("time") is not None for c in cases) and root.find("testsuite").get("timestamp")


# ---- nothing to analyse -------------------------------------------------------------------------


def _arp_only(path: Path) -> Path:
    with path.open("wb") as fh:
        writer = dpkt.pcap.Writer(fh, linktype=dpkt.pcap.DLT_EN10MB)
        frame = b"\xff" * 6 + b"\x02" * 6 + struct.pack("!H", 0x0806) + bytes(28)
        for i in range(5):
            writer.writepkt(frame, ts=1_700_000_000 + i)
    return path


def test_a_capture_without_ip_packets_fails_ci_unless_allowed(capsys, tmp_path):
    capture = _arp_only(tmp_path / "wrong-interface.pcap")
    code, out, err = run(capsys, "analyze", capture)
    assert code == 2 and "nothing to analyse" in err and "5 packets" in err and "--allow-empty" in err
    assert run(capsys, "analyze", capture, "--allow-empty")[0] == 0


# ---- configuration ------------------------------------------------------------------------------


def test_configuration_next_to_the_captures_and_the_command_line_wins(capsys, tmp_path):
    shutil.copy(REFUSED, tmp_path / "refused.pcap")
    (tmp_path / "wsadiag.toml").write_text('ignore = ["CON", "GEN"]\ntz = "Asia/Tokyo"\n', encoding="utf-8")
    code, out, _ = run(capsys, "analyze", tmp_path / "refused.pcap")
    assert code == 0 and "no findings" in out
    code, out, _ = run(capsys, "analyze", tmp_path / "refused.pcap", "--ignore", "RST")
    assert code == 1 and "CON001" in out and "JST" in out  # --ignore given: the file's ignore is not used
    assert run(capsys, "analyze", tmp_path / "refused.pcap", "--no-config")[0] == 1


def test_pyproject_tool_table_sets_fail_on_and_baseline(capsys, tmp_path):
    capture = tmp_path / "caps" / "refused.pcap"
    capture.parent.mkdir()
    shutil.copy(REFUSED, capture)
    assert run(capsys, "analyze", capture, "--write-baseline", tmp_path / "known.json")[0] == 1
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n[tool.wsadiag]\nbaseline = "known.json"\n', encoding="utf-8"
    )
    assert run(capsys, "analyze", capture)[0] == 0  # found one folder up; the baseline is relative to it
    (tmp_path / "pyproject.toml").write_text('[tool.wsadiag]\nfail-on = "sometimes"\n', encoding="utf-8")
    code, _, err = run(capsys, "analyze", capture)
    assert code == 2 and "fail-on must be one of" in err


# ---- GitHub -------------------------------------------------------------------------------------


def test_github_format_writes_the_step_summary(capsys, tmp_path, monkeypatch):
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    code, out, _ = run(capsys, "analyze", REFUSED, ABORTED, "--format", "github")
    assert code == 1 and len(out.splitlines()) == 2  # one annotation per incident
    text = summary.read_text(encoding="utf-8")
    assert text.startswith("# wsadiag report") and "## Incidents" in text and "CON001" in text


# ---- live JSONL ---------------------------------------------------------------------------------


def _pcap_header() -> bytes:
    return struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101)  # raw IPv4 (LINKTYPE_RAW)


def _record(ts: float, packet: bytes) -> bytes:
    return struct.pack("<IIII", int(ts), int(ts % 1 * 1e6), len(packet), len(packet)) + packet


def _tcp(src: str, dst: str, sport: int, dport: int, flags: int, seq: int, ack: int) -> bytes:
    tcp = dpkt.tcp.TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack, win=0 if flags & 4 else 64240)
    ip = dpkt.ip.IP(src=bytes(map(int, src.split("."))), dst=bytes(map(int, dst.split("."))), p=6, ttl=64, data=tcp)
    ip.len = len(bytes(ip))
    return bytes(ip)


def test_live_jsonl_writes_a_finding_before_the_capture_ends():
    proc = subprocess.Popen(
        [sys.executable, "-m", "analyzer", "analyze", "-", "--format", "jsonl", "--no-progress"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdin is not None and proc.stdout is not None
    t0 = 1_700_000_000.0
    first = _pcap_header()
    first += _record(t0, _tcp("192.0.2.10", "198.51.100.20", 40000, 81, 0x02, 1000, 0))
    first += _record(t0 + 0.001, _tcp("198.51.100.20", "192.0.2.10", 81, 40000, 0x14, 0, 1001))
    # a later packet of another conversation: the refused one has lingered long enough to be handed on
    first += _record(t0 + 30, _tcp("192.0.2.11", "198.51.100.21", 40001, 443, 0x02, 5, 0))
    proc.stdin.write(first)
    proc.stdin.flush()
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    assert ready, "no JSONL line while the capture was still open"
    line = json.loads(proc.stdout.readline())
    assert line["kind"] == "finding" and line["rule"] == "CON001" and line["frame_times"]
    assert proc.poll() is None  # still reading: the capture has not ended
    proc.stdin.write(_record(t0 + 31, _tcp("198.51.100.21", "192.0.2.11", 443, 40001, 0x14, 0, 6)))
    proc.stdin.close()
    rest = [json.loads(x) for x in proc.stdout.read().splitlines()]
    assert proc.wait(timeout=60) == 1
    assert [r["kind"] for r in rest] == ["finding", "summary"] and rest[-1]["errors"] == 2
    proc.stdout.close()
    proc.stderr.close()


# ---- explain ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "what, winsock",
    [
        ("104", "10054 WSAECONNRESET"),
        ("111", "10061 WSAECONNREFUSED"),
        ("connection reset by peer", "10054 WSAECONNRESET"),
        ("forcibly closed", "10054 WSAECONNRESET"),
        ("Connection refused", "10061 WSAECONNREFUSED"),
    ],
)
def test_explain_from_what_the_user_saw(capsys, what, winsock):
    code, out, _ = run(capsys, "explain", what)
    assert code == 0 and winsock in out.split("\n\n", 1)[0] + out and "Patterns on the wire that produce it" in out


def test_explain_names_a_and_b(capsys):
    out = run(capsys, "explain", "CON001")[1]
    assert "A is the client" in out and "client: connect() fails with 10061" in out
    out = run(capsys, "explain", "RST001")[1]
    assert "either can be the client or the server" in out


def test_rule_doc_renders_as_formatted_terminal_text():
    text = rule_for_terminal(load_rules().get("RST003"), width=90)
    assert "\x1b[" in text and "## What it detects" not in text and "What it detects" in text
    assert "Who A and B are" in text
    plain = rule_for_terminal(load_rules().get("RST003"), width=90, color=False)
    assert "\x1b[" not in plain and max(len(line) for line in plain.splitlines()) <= 90


def test_explain_unknown_text_is_a_clear_error(capsys):
    code, _, err = run(capsys, "explain", "the printer is on fire")
    assert code == 2 and err.startswith("error: nothing is called") and "hint:" in err
