"""The command line as a user meets it: verbs, exit codes, one-line errors, stdin and live pipes."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from analyzer.cli import main
from tests.corpus import CORPUS

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"
REFUSED = SAMPLES / "con001-refused.pcap"
HEALTHY = SAMPLES / "ok-http-fin-close.pcap"
HARMLESS = SAMPLES / "rst010-client-linger0-after-response.pcap"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("fail_on, expected", [("error", 1), ("warning", 1), ("info", 1), ("never", 0)])
def test_exit_code_follows_fail_on_for_an_error(capsys, fail_on, expected):
    code, _, _ = run(capsys, "analyze", REFUSED, "--fail-on", fail_on)
    assert code == expected


def test_info_finding_fails_only_at_info(capsys):
    assert run(capsys, "analyze", HARMLESS)[0] == 0  # default --fail-on warning
    assert run(capsys, "analyze", HARMLESS, "--fail-on", "info")[0] == 1


def test_healthy_capture_exits_zero_and_says_so(capsys):
    code, out, _ = run(capsys, "analyze", HEALTHY)
    assert code == 0
    assert "0 errors, 0 warnings" in out


def test_json_report_follows_the_contract(capsys):
    code, out, _ = run(capsys, "analyze", REFUSED, "--format", "json")
    doc = json.loads(out)
    assert code == 1 and doc["version"] == 1 and doc["tool"]["name"] == "wsadiag"
    cap = doc["captures"][0]
    assert cap["format"] == "pcap" and cap["linktypes"] == ["EN10MB"] and cap["packets"] == 2
    finding = cap["findings"][0]
    assert finding["rule"] == "CON001" and finding["level"] == "error"
    err = finding["errors"][0]
    assert err["side"] == "client" and err["winsock"]["code"] == 10061
    assert err["posix"] == {"name": "ECONNREFUSED", "linux": 111, "macos": 61}
    conv = next(c for c in cap["conversations"] if c["id"] == finding["conversation"])
    assert conv["state"] == "REJ" and conv["frames"] == [1, 2]
    assert doc["summary"] == {"errors": 1, "warnings": 0, "info": 0}


def test_conversations_json_has_no_findings(capsys):
    code, out, _ = run(capsys, "conversations", HEALTHY, "--format", "json")
    cap = json.loads(out)["captures"][0]
    assert code == 0 and "findings" not in cap
    (conv,) = cap["conversations"]
    # The server closes first in this sample, so its FIN (f) comes before the client's (F).
    assert conv["state"] == "SF" and conv["history"] == "ShADadfF"


def test_select_and_ignore_take_codes_and_prefixes(capsys):
    assert run(capsys, "analyze", REFUSED, "--ignore", "CON,GEN")[0] == 0
    assert run(capsys, "analyze", REFUSED, "--ignore", "CON")[0] == 1  # the generic finding still reports the RST
    assert run(capsys, "analyze", REFUSED, "--select", "RST,TLS001")[0] == 0
    assert run(capsys, "analyze", REFUSED, "--select", "CON001")[0] == 1


def test_filter_focuses_on_matching_conversations(capsys):
    assert run(capsys, "analyze", REFUSED, "--filter", "port 9")[0] == 0
    code, out, _ = run(capsys, "analyze", REFUSED, "--filter", "tcp and net 198.51.100.0/24")
    assert code == 1 and "CON001" in out


def test_bad_filter_is_a_one_line_usage_error(capsys):
    code, out, err = run(capsys, "analyze", REFUSED, "--filter", "port banana")
    assert code == 2 and out == ""
    assert err.startswith("error: --filter: 'banana' is not a valid port") and "Traceback" not in err


def test_explain_a_rule_a_winsock_code_and_an_errno(capsys):
    code, out, _ = run(capsys, "explain", "rst003")
    assert code == 0 and out.startswith("RST003 stray-ack-after-fin") and "KB Q152474" in out
    code, out, _ = run(capsys, "explain", "10054")
    assert code == 0 and "WSAECONNRESET" in out and "RST003" in out and "ECONNRESET (Linux 104, macOS 54)" in out
    code, out, _ = run(capsys, "explain", "ECONNREFUSED")
    assert code == 0 and out.startswith("10061 WSAECONNREFUSED") and "CON001" in out


def test_explain_says_when_a_capture_cannot_show_the_error(capsys):
    code, out, _ = run(capsys, "explain", "WSAESHUTDOWN")
    assert code == 0 and "The capture cannot show this error" in out


def test_explain_unknown_is_an_error_with_a_hint(capsys):
    code, _, err = run(capsys, "explain", "XYZ999")
    assert code == 2
    assert err.splitlines()[0].startswith("error: ") and err.splitlines()[1].startswith("hint: ")


def test_rules_lists_the_catalogue(capsys):
    code, out, _ = run(capsys, "rules", "--format", "json")
    codes = [r["code"] for r in json.loads(out)["rules"]]
    assert code == 0 and "RST003" in codes and "UDP001" in codes and codes == sorted(codes)
    code, out, _ = run(capsys, "rules", "--vocabulary")
    assert code == 0 and "absent" in out


def test_stdin_is_read_with_a_dash(capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(REFUSED.read_bytes())))
    code, out, _ = run(capsys, "analyze", "-", "--format", "json")
    assert code == 1 and json.loads(out)["captures"][0]["path"] == "-"


def test_missing_file_among_good_ones_reports_the_good_and_exits_two(capsys, tmp_path):
    code, out, err = run(capsys, "analyze", REFUSED, tmp_path / "nope.pcap", "--format", "json")
    doc = json.loads(out)
    assert code == 2
    assert [bool(c.get("error")) for c in doc["captures"]] == [False, True]
    assert doc["captures"][0]["findings"]
    assert "nope.pcap" in err and "Traceback" not in err


def test_a_directory_is_walked_for_captures(capsys):
    code, out, _ = run(capsys, "analyze", SAMPLES, "--format", "json", "--fail-on", "never")
    doc = json.loads(out)
    captures = [p for p in SAMPLES.iterdir() if p.suffix in (".pcap", ".pcapng", ".etl")]
    assert code == 0 and len(doc["captures"]) == len(captures)
    assert any(c["format"] == "etl-pktmon" for c in doc["captures"])


def test_output_file(capsys, tmp_path):
    target = tmp_path / "r.md"
    code, out, _ = run(capsys, "analyze", REFUSED, "--format", "markdown", "-o", target)
    assert code == 1 and out == "" and "CON001" in target.read_text()


def _corpus_captures() -> list[Path]:
    if not CORPUS.is_dir():
        return []
    return sorted(p for p in CORPUS.rglob("*") if p.suffix in (".pcap", ".pcapng", ".gz"))


@pytest.mark.skipif(not CORPUS.is_dir(), reason="corpus absent")
@pytest.mark.parametrize("capture", _corpus_captures(), ids=lambda p: str(p.relative_to(CORPUS)))
def test_every_corpus_capture_is_read_without_a_traceback(capsys, capture):
    code, out, err = run(capsys, "analyze", capture, "--format", "json", "--fail-on", "never")
    assert code in (0, 2), err
    assert "Traceback" not in err and "internal error" not in err
    doc = json.loads(out)
    if code == 2:
        # Nothing readable at all (an empty file), or not one IP packet to analyse (exit 2 unless
        # --allow-empty): a short error naming the file.
        cap = doc["captures"][0]
        empty = {w["code"] for w in cap["warnings"]} & {"no-packets", "no-ip-packets"}
        assert cap.get("error") or empty, err
        assert err.startswith("error: ") and len(err.strip().splitlines()) <= 2
        if not cap.get("error"):
            assert "nothing to analyse" in err and run(capsys, "analyze", capture, "--allow-empty")[0] == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(shutil.which("tcpdump") is None or os.geteuid() != 0, reason="needs tcpdump and root")
def test_live_tcpdump_pipe_is_diagnosed(tmp_path):
    """`tcpdump -U -w - | wsadiag analyze -`: a refused connection on loopback, diagnosed from the pipe."""
    port = _free_port()  # nothing listens there: the kernel answers the SYN with RST/ACK
    dump = subprocess.Popen(["tcpdump", "-U", "-n", "-i", "lo", "-w", "-", f"tcp port {port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wsadiag = subprocess.Popen([sys.executable, "-m", "analyzer", "analyze", "-", "--format", "json"],
                               stdin=dump.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    dump.stdout.close()
    try:
        ready = dump.stderr.readline()  # tcpdump says "listening on lo, ..." once it captures
        assert b"listening on" in ready, ready
        time.sleep(0.5)  # tcpdump prints that line a moment before its socket sees packets
        with socket.socket() as s:
            with pytest.raises(ConnectionRefusedError):
                s.connect(("127.0.0.1", port))
        time.sleep(0.5)
    finally:
        dump.terminate()
        dump.wait(timeout=10)
    out, err = wsadiag.communicate(timeout=30)
    assert wsadiag.returncode == 1, err.decode()
    findings = json.loads(out)["captures"][0]["findings"]
    assert [f["rule"] for f in findings] == ["CON001"]
    assert findings[0]["errors"][0]["winsock"]["name"] == "WSAECONNREFUSED"


INTERRUPTED_IN_EXEC = """
import os, signal, sys

from analyzer import cli


def main(argv):  # main() as it handles a Ctrl-C that lands while a dataclass makes its methods
    try:
        exec("os.kill(os.getpid(), signal.SIGINT)\\nsum(range(100_000))")
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
    return 2


cli.main = main
cli.entrypoint()  # the console script's and `python -m analyzer`'s own exit
"""


def test_a_ctrl_c_handled_during_set_up_ends_python_m_with_the_exit_status_2(tmp_path):
    """main() handles a Ctrl-C and returns 2; CPython marked one that left exec()'d code as
    unhandled, and `python -m analyzer` then ended by SIGINT (seen in CI as status -2 after
    "error: interrupted"). The entry point clears the mark before exiting."""
    (tmp_path / "interrupted_in_exec.py").write_text(INTERRUPTED_IN_EXEC)
    run = subprocess.run(
        [sys.executable, "-m", "interrupted_in_exec"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{tmp_path}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (run.returncode, run.stderr) == (2, "error: interrupted\n")
