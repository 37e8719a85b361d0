"""Golden files: every format on every hand-built case, byte for byte.

A change in output shows up as a diff a reviewer reads; regenerate deliberately with
`WSADIAG_UPDATE_GOLDEN=1 pytest tests/test_report_golden.py` and review the diff before committing.
The tool version is pinned in the options so a release does not churn the files; no report
contains the run time.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from analyzer.report import FORMATS, ReportOptions, render
from tests import report_cases as rc

GOLDEN = Path(__file__).parent / "golden"
EXTENSIONS = {"text": "txt", "json": "json", "jsonl": "jsonl", "markdown": "md", "html": "html",
              "junit": "xml", "sarif": "sarif", "github": "github.txt"}
OPTS = ReportOptions(rules=rc.RULES, tool_version="0.0.0-test")


def _check(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("WSADIAG_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"missing golden file {path}: run with WSADIAG_UPDATE_GOLDEN=1 and review it"
    assert text == path.read_text(encoding="utf-8"), f"{name} differs from its golden file"


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("case", sorted(rc.CASES))
def test_golden(case: str, fmt: str) -> None:
    _check(f"{case}.{EXTENSIONS[fmt]}", render(fmt, rc.CASES[case](), OPTS))


@pytest.mark.parametrize("fmt", ["text", "json", "markdown", "html"])
def test_golden_conversations(fmt: str) -> None:
    opts = ReportOptions(rules=rc.RULES, tool_version="0.0.0-test", conversations_only=True)
    _check(f"conversations.{EXTENSIONS[fmt]}", render(fmt, rc.rst003_case() + rc.failed_case(), opts))
