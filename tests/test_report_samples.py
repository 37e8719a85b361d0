"""Reports of real captures (samples/*.pcap through analyzer.pipeline), golden and hostile.

Regenerate the golden files with `WSADIAG_UPDATE_GOLDEN=1 pytest tests/test_report_samples.py`
and review the diff: a change in diagnosis or layout shows up there.
"""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest

from analyzer.pipeline import analyze_capture
from analyzer.report import FORMATS, ReportOptions, render
from analyzer.rules import load_rules

REPO = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "golden" / "samples"
EXTENSIONS = {"text": "txt", "json": "json", "jsonl": "jsonl", "markdown": "md", "html": "html",
              "junit": "xml", "sarif": "sarif", "github": "github.txt"}
# a failure of each family, an IPv6 one, a warning-level one and a clean capture
SAMPLES = ["rst002-reset-during-response.pcap", "con001-refused-ipv6.pcap", "rst008-reset-after-idle.pcap",
           "tls001-clienthello-reset.pcap", "ok-http-fin-close.pcap"]


@pytest.fixture(scope="module")
def ruleset():
    return load_rules()


@pytest.fixture(scope="module")
def sample_results(ruleset):
    results = []
    for name in SAMPLES:
        path = REPO / "samples" / name
        if not path.exists():
            pytest.skip(f"sample {name} missing")
        result = analyze_capture(str(path), ruleset, keep="all-full")
        result.path = f"samples/{name}"  # the same text whatever the checkout's location
        results.append(result)
    return results


@pytest.mark.parametrize("fmt", FORMATS)
def test_samples_golden(fmt: str, sample_results, ruleset) -> None:
    opts = ReportOptions(rules=list(ruleset.rules), tool_version="0.0.0-test")
    text = render(fmt, sample_results, opts)
    golden = GOLDEN / f"samples.{EXTENSIONS[fmt]}"
    if os.environ.get("WSADIAG_UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text, encoding="utf-8")
    assert golden.exists(), f"missing {golden}: run with WSADIAG_UPDATE_GOLDEN=1 and review it"
    assert text == golden.read_text(encoding="utf-8")


def test_samples_report_the_expected_rules(sample_results) -> None:
    # the sidecars say which rule each sample must fire; the reports must carry exactly those
    doc = json.loads(render("json", sample_results, ReportOptions()))
    fired = {c["path"]: sorted({f["rule"] for f in c["findings"]}) for c in doc["captures"]}
    for cap in doc["captures"]:
        sidecar = REPO / cap["path"].replace(".pcap", ".yaml")
        expected = sidecar.read_text() if sidecar.exists() else ""
        for rule in fired[cap["path"]]:
            assert rule in expected, f"{cap['path']}: {rule} reported but not in its sidecar"
    assert fired["samples/ok-http-fin-close.pcap"] == []
    assert fired["samples/con001-refused-ipv6.pcap"] == ["CON001"]


def _write_hostile_capture(folder: Path) -> Path:
    scapy = pytest.importorskip("scapy.all")
    # "</script>" contains a slash, so the name is a folder "<script>alert(1)<" holding "script>.pcap":
    # the path string the reports see is exactly "<script>alert(1)</script>.pcap" under `folder`.
    target = folder / "<script>alert(1)</script>.pcap"
    target.parent.mkdir(parents=True, exist_ok=True)
    c, s = "192.0.2.10", "198.51.100.20"
    cp, sp = 40000, 80
    payload = b"GET /<script>alert(2)</script> HTTP/1.1\r\nHost: <iframe src=x>\x1b[31m\r\n\r\n"
    IP, TCP, Raw = scapy.IP, scapy.TCP, scapy.Raw

    def Ether():  # fixed MACs: scapy would otherwise look them up on this host's network
        return scapy.Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    pkts = [
        Ether() / IP(src=c, dst=s, ttl=64) / TCP(sport=cp, dport=sp, flags="S", seq=1000),
        Ether() / IP(src=s, dst=c, ttl=64) / TCP(sport=sp, dport=cp, flags="SA", seq=5000, ack=1001),
        Ether() / IP(src=c, dst=s, ttl=64) / TCP(sport=cp, dport=sp, flags="A", seq=1001, ack=5001),
        Ether() / IP(src=c, dst=s, ttl=64) / TCP(sport=cp, dport=sp, flags="PA", seq=1001, ack=5001) / Raw(payload),
        Ether() / IP(src=s, dst=c, ttl=64) / TCP(sport=sp, dport=cp, flags="A", seq=5001, ack=1001 + len(payload)),
        Ether() / IP(src=s, dst=c, ttl=64) / TCP(sport=sp, dport=cp, flags="RA", seq=5001, ack=1001 + len(payload)),
    ]
    for i, p in enumerate(pkts):
        p.time = 1_700_000_000 + i * 0.01
    scapy.wrpcap(str(target), pkts)
    return target


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.handlers: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs) -> None:
        self.tags.append(tag)
        self.handlers += [name for name, _ in attrs if name.startswith("on")]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_hostile_capture_file_cannot_inject(tmp_path: Path, ruleset) -> None:
    target = _write_hostile_capture(tmp_path)
    result = analyze_capture(str(target), ruleset, keep="all-full")
    assert result.error is None and result.conversations
    results = [result]
    opts = ReportOptions(rules=list(ruleset.rules))

    page = _Tags()
    page.feed(render("html", results, opts))
    assert not {"script", "iframe", "img"} & set(page.tags) and not page.handlers
    assert "<script>alert(1)</script>.pcap" in "".join(page.text)

    md = render("markdown", results, opts)
    prose = re.sub(r"^(`{3,})text\n.*?^\1$", "", md, flags=re.S | re.M)
    assert "<script" not in prose and "&#60;script&#62;alert(1)&#60;/script&#62;.pcap" in prose

    ET.fromstring(render("junit", results, opts))  # well-formed whatever the names
    for fmt in ("text", "github"):
        assert "\x1b" not in render(fmt, results, opts)
