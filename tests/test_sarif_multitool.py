"""SARIF passes Microsoft's SARIF multitool `validate` (npm @microsoft/sarif-multitool).

The schema test (test_report_formats.py) checks structure; the multitool also applies the SARIF
rules code-scanning services enforce (absolute helpUri, regions in physical locations, ...).
.ci/run installs it under .ci/node; the test skips cleanly where it is absent.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from analyzer.pipeline import analyze_capture
from analyzer.report import ReportOptions, render
from analyzer.rules import load_rules
from tests import report_cases as rc

ROOT = Path(__file__).resolve().parents[1]


def _multitool() -> str | None:
    for candidate in (
        os.environ.get("WSADIAG_SARIF_MULTITOOL"),
        shutil.which("sarif-multitool"),
        str(ROOT / ".ci" / "node" / "node_modules" / ".bin" / "sarif-multitool"),
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


MULTITOOL = _multitool()
pytestmark = pytest.mark.skipif(MULTITOOL is None, reason="SARIF multitool not installed (.ci/run installs it)")


def _validate(tmp_path: Path, sarif: str) -> list[tuple[str, str]]:
    """(rule id, level) of every problem the multitool reports."""
    log, report = tmp_path / "wsadiag.sarif", tmp_path / "validation.sarif"
    log.write_text(sarif, encoding="utf-8")
    done = subprocess.run(
        [MULTITOOL or "", "validate", str(log), "-o", str(report)], capture_output=True, text=True, timeout=300
    )
    assert report.exists(), done.stdout + done.stderr
    runs = json.loads(report.read_text(encoding="utf-8"))["runs"]
    return [(r["ruleId"], r.get("level", "warning")) for run in runs for r in run.get("results", [])]


@pytest.fixture(scope="module")
def results():
    rules = load_rules()
    samples = sorted((ROOT / "samples").glob("*.pcap"))
    return [analyze_capture(p, rules) for p in samples] + rc.hostile_case() + rc.failed_case()


def test_sarif_passes_the_multitool(tmp_path, results):
    opts = ReportOptions(rules=list(load_rules().rules), information_uri="https://example.org/wsadiag")
    assert _validate(tmp_path, render("sarif", results, opts)) == []


def test_without_a_home_page_only_information_uri_is_missing(tmp_path, results):
    # wsadiag has no published home page yet: the one remark left is the tool's informationUri.
    problems = _validate(tmp_path, render("sarif", results, ReportOptions(rules=list(load_rules().rules))))
    assert {rule for rule, _ in problems} == {"SARIF2005"} and all(level != "error" for _, level in problems)


def test_the_multitool_catches_a_relative_help_uri(tmp_path, results):
    doc = json.loads(render("sarif", results, ReportOptions(rules=list(load_rules().rules))))
    doc["runs"][0]["tool"]["driver"]["rules"][0]["helpUri"] = "docs/rules/CON001.md"
    assert ("SARIF1005", "error") in _validate(tmp_path, json.dumps(doc))
