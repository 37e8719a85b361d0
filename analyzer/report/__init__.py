"""Reports: each output format is a function of the capture results.

    text = render("json", results, ReportOptions(fail_on="warning"))

One module per format; they share escaping and counting in common.py and the ladder layout in
ladder.py. Nothing here reads captures or evaluates rules.
"""

from __future__ import annotations

from collections.abc import Callable

from analyzer.errors import UsageError
from analyzer.model import CaptureResult
from analyzer.report.github import render_github
from analyzer.report.html import render_html
from analyzer.report.jsondoc import render_json, render_jsonl, to_json_document
from analyzer.report.junit import render_junit
from analyzer.report.markdown import render_markdown
from analyzer.report.options import ReportOptions
from analyzer.report.sarif import render_sarif
from analyzer.report.text import render_text

RENDERERS: dict[str, Callable[[list[CaptureResult], ReportOptions], str]] = {
    "text": render_text,
    "json": render_json,
    "jsonl": render_jsonl,
    "markdown": render_markdown,
    "html": render_html,
    "junit": render_junit,
    "sarif": render_sarif,
    "github": render_github,
}
FORMATS: tuple[str, ...] = tuple(RENDERERS)


def render(fmt: str, results: list[CaptureResult], opts: ReportOptions | None = None) -> str:
    """The report in format `fmt` (one of FORMATS) as one string, ready to write out."""
    try:
        renderer = RENDERERS[fmt]
    except KeyError:
        raise UsageError(f"unknown report format {fmt!r}", hint=f"choose one of: {', '.join(FORMATS)}") from None
    return renderer(list(results), opts or ReportOptions())


__all__ = ["FORMATS", "ReportOptions", "render", "to_json_document"]
