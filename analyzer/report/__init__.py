"""Reports: each output format is a function of the capture results.

    text = render("json", results, ReportOptions(fail_on="warning"))

One module per format; they share escaping and counting in common.py and the ladder layout in
ladder.py. Nothing here reads captures or evaluates rules.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Iterable
from typing import Any

from analyzer.errors import UsageError
from analyzer.model import CaptureResult
from analyzer.report.common import escape_undecodable
from analyzer.report.options import ReportOptions

# format -> (module, function): a format's module (HTML brings jinja2) is imported when it is used.
RENDERERS: dict[str, tuple[str, str]] = {
    "text": ("text", "render_text"),
    "json": ("jsondoc", "render_json"),
    "jsonl": ("jsondoc", "render_jsonl"),
    "markdown": ("markdown", "render_markdown"),
    "html": ("html", "render_html"),
    "junit": ("junit", "render_junit"),
    "sarif": ("sarif", "render_sarif"),
    "github": ("github", "render_github"),
}
FORMATS: tuple[str, ...] = tuple(RENDERERS)
# The formats whose renderer takes the results as they come (an iterator) and writes each
# capture's part before the next result is in; the others are given all of them first.
AS_THEY_COME: frozenset[str] = frozenset({"json"})


def renderer(fmt: str) -> Callable[[Iterable[CaptureResult], ReportOptions], str | Iterable[str]]:
    """The function that writes format `fmt` (one of FORMATS)."""
    try:
        module, name = RENDERERS[fmt]
    except KeyError:
        raise UsageError(f"unknown report format {fmt!r}", hint=f"choose one of: {', '.join(FORMATS)}") from None
    return getattr(importlib.import_module(f"analyzer.report.{module}"), name)


def render(fmt: str, results: list[CaptureResult], opts: ReportOptions | None = None) -> str:
    """The report in format `fmt` (one of FORMATS) as one string, ready to write out."""
    return "".join(render_pieces(fmt, results, opts))


def render_pieces(fmt: str, results: Iterable[CaptureResult], opts: ReportOptions | None = None) -> Iterable[str]:
    """The report in pieces to write one after the other: the JSON report is made as it is
    written (it never exists whole in memory), and takes `results` as they come when they are
    an iterator (AS_THEY_COME); the other formats are one piece."""
    named = (printable_names(r) for r in results)
    out = renderer(fmt)(named if fmt in AS_THEY_COME else list(named), opts or ReportOptions())
    return (out,) if isinstance(out, str) else out


def printable_names(result: CaptureResult) -> CaptureResult:
    """The result with file names that are not UTF-8 escaped for every format: the capture's, and
    where they appear in its error, its warnings and, for files read as one (--stitch), the
    files' list and each finding's per-file filter."""
    path = escape_undecodable(result.path)
    error = escape_undecodable(result.error) if result.error else result.error
    warnings = [
        w if _printable(w.message) else dataclasses.replace(w, message=escape_undecodable(w.message))
        for w in result.warnings
    ]
    parts = [p if _printable(p.path) else dataclasses.replace(p, path=escape_undecodable(p.path)) for p in result.parts]
    if parts == result.parts and warnings == result.warnings and path is result.path and error is result.error:
        return result
    findings = [
        f
        if _printable(f.wireshark_filter)
        else dataclasses.replace(f, wireshark_filter=escape_undecodable(f.wireshark_filter))
        for f in result.findings
    ]
    return dataclasses.replace(result, path=path, error=error, warnings=warnings, parts=parts, findings=findings)


def _printable(text: str) -> bool:
    return escape_undecodable(text) is text


def __getattr__(name: str) -> Any:
    # to_json_document is imported when asked for: a text report does not load the JSON writer.
    if name == "to_json_document":
        from analyzer.report.jsondoc import to_json_document

        return to_json_document
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["AS_THEY_COME", "FORMATS", "ReportOptions", "render", "render_pieces", "to_json_document"]
