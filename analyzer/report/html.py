"""The HTML report: one self-contained file (inline CSS and SVG, no scripts, no network).

Rendered by jinja2 with autoescaping on from analyzer/report/templates/report.html.j2; every
capture-derived string reaches the page only through autoescaped template expressions. A
Content-Security-Policy meta tag forbids scripts and remote loads as a second line of defence.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jinja2

from analyzer.model import CaptureResult
from analyzer.report.common import (
    clean,
    conversation_total,
    conversations_by_id,
    display_path,
    findings_by_conversation,
    fmt_duration,
    frame_ranges,
    summary_counts,
    summary_line,
)
from analyzer.report.ladder import ladder_rows, svg_ladder, svg_path_ladder
from analyzer.report.options import ReportOptions
from analyzer.report.path import path_summary

TEMPLATE = "report.html.j2"


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("analyzer.report", "templates"),
        autoescape=True,  # every template here is HTML: escape unconditionally, not by file extension
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["clean"] = clean
    env.filters["frames"] = frame_ranges
    env.filters["duration"] = fmt_duration
    return env


def _capture_view(result: CaptureResult, index: int, opts: ReportOptions) -> dict:
    convs = conversations_by_id(result)
    findings = []
    for conv_id, group in findings_by_conversation(result).items():
        conv = convs.get(conv_id)
        for n, f in enumerate(group):
            ladder = None
            if conv is not None and conv.timeline:
                ladder = svg_ladder(conv, ladder_rows(conv, f, opts.ladder_context, opts.ladder_max_rows))
            item: dict[str, Any] = {"f": f, "conv": conv, "ladder": ladder, "anchor": f"c{index}-f{conv_id}-{n}"}
            item.update(path=None, path_ladder=None)
            if conv is not None and conv.path is not None:  # two captures: both points as lanes
                item.update(ladder=None, path=path_summary(conv))
                item["path_ladder"] = svg_path_ladder(conv, f, opts.ladder_context, opts.ladder_max_rows)
            findings.append(item)
    return {
        "r": result,
        "name": display_path(result.path),
        "findings": findings,
        "counts": summary_counts([result]),
        "anchor": f"c{index}",
        "total": conversation_total(result),
    }


def render_html(results: list[CaptureResult], opts: ReportOptions) -> str:
    """`--format html`: summary, every finding with its ladder diagram, conversation tables."""
    template = _environment().get_template(TEMPLATE)
    return template.render(
        captures=[_capture_view(r, i, opts) for i, r in enumerate(results)],
        counts=summary_counts(results),
        summary=summary_line(results),
        opts=opts,
    )
