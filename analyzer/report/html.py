"""The HTML report: one self-contained file (inline CSS and SVG, no scripts, no network).

Rendered by jinja2 with autoescaping on from analyzer/report/templates/report.html.j2; every
capture-derived string reaches the page only through autoescaped template expressions. A
Content-Security-Policy meta tag forbids scripts and remote loads as a second line of defence.
"""

from __future__ import annotations

from functools import lru_cache

import jinja2

from analyzer.model import CaptureResult, Conversation, Finding
from analyzer.report.common import (
    clean,
    conversation_total,
    conversations_by_id,
    display_path,
    fmt_duration,
    frame_ranges,
    summary_counts,
    summary_line,
)
from analyzer.report.evidence_names import evidence_file
from analyzer.report.incidents import Incident, frame_times, incident_summary, incidents, show_span, show_time
from analyzer.report.ladder import ladder_rows, svg_ladder, svg_path_ladder
from analyzer.report.options import ReportOptions
from analyzer.report.path import healthy_left_out, healthy_paths, path_summary
from analyzer.tls import TLS_STACKS
from analyzer.winsock import seen_lines

TEMPLATE = "report.html.j2"
OPEN_FIRST = 3  # incidents shown expanded when the page opens; the rest are one line each
MORE_IDS = 50  # conversation ids named for the findings beyond an incident's cards
MAX_CONVERSATION_ROWS = 500  # rows of a capture's conversation table (with findings) before it is cut
MAX_CARDS = 150  # finding cards (with ladders) per page: a 300k-packet capture's report stays under 1 MB


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
    env.globals["seen_lines"] = seen_lines
    env.globals["tls_stacks"] = TLS_STACKS
    return env


def _card(f: Finding, conv: Conversation | None, opts: ReportOptions, anchor: str, capture: str) -> dict:
    ladder = path = path_ladder = None
    if conv is not None and conv.path is not None:  # two captures: both points as lanes
        path = path_summary(conv)
        path_ladder = svg_path_ladder(conv, f, opts.ladder_context, opts.ladder_max_rows)
    elif conv is not None and conv.timeline:
        ladder = svg_ladder(conv, ladder_rows(conv, f, opts.ladder_context, opts.ladder_max_rows))
    times = [t for t in frame_times(conv, f) if t is not None]
    return {
        "f": f,
        "conv": conv,
        "ladder": ladder,
        "path": path,
        "path_ladder": path_ladder,
        "anchor": anchor,
        "started": show_time(conv.start, opts.tz) if conv is not None else "",
        "evidence_time": show_time(times[0], opts.tz) if times else "",
        "evidence_file": evidence_file(opts.evidence_dir, capture, f, conv),
    }


def _incident_view(
    inc: Incident, result: CaptureResult, convs: dict[int, Conversation], opts: ReportOptions, budget: list[int]
) -> dict:
    """budget: cards the page may still draw (shared by all incidents, most severe first)."""
    shown = max(0, min(opts.html_cards, budget[0]))
    budget[0] -= shown
    cards = [
        _card(f, convs.get(f.conversation), opts, f"i{inc.id}-f{n}", result.path)
        for n, f in enumerate(inc.findings[:shown])
    ]
    rest = inc.findings[shown:]
    return {
        "inc": inc,
        "summary": incident_summary(inc, opts.tz),
        "span": show_span(inc.start, inc.end, opts.tz),
        "cards": cards,
        "rest": len(rest),
        "rest_ids": ", ".join(str(f.conversation) for f in rest[:MORE_IDS]) + (", …" if len(rest) > MORE_IDS else ""),
    }


def _healthy_path_views(result: CaptureResult, opts: ReportOptions) -> tuple[list[dict], str]:
    """Two captures: the path and two-point ladder of conversations without findings (bounded)."""
    shown, left = healthy_paths(result)
    views = [
        {
            "conv": conv,
            "path": path_summary(conv),
            "ladder": svg_path_ladder(conv, None, opts.ladder_context, opts.ladder_max_rows),
            "started": show_time(conv.start, opts.tz),
        }
        for conv in shown
    ]
    return views, healthy_left_out(left) if left else ""


def _capture_view(result: CaptureResult, index: int, incident_views: list[dict], opts: ReportOptions) -> dict:
    paths, more_paths = _healthy_path_views(result, opts) if not result.error else ([], "")
    return {
        "paths": paths,
        "more_paths": more_paths,
        "r": result,
        "name": display_path(result.path),
        "incidents": [v for v in incident_views if v["inc"].capture == index],
        "counts": summary_counts([result]),
        "anchor": f"c{index}",
        "total": conversation_total(result),
        "conversations": result.conversations[:MAX_CONVERSATION_ROWS],
        "more_conversations": max(0, len(result.conversations) - MAX_CONVERSATION_ROWS),
    }


def render_html(results: list[CaptureResult], opts: ReportOptions) -> str:
    """`--format html`: summary, incident table, each incident collapsible with its first cards."""
    template = _environment().get_template(TEMPLATE)
    found = [] if opts.conversations_only else incidents(results)
    # Cards are drawn for the most severe, largest incidents first (incidents() order) until the
    # page's budget is spent; the rest of each incident is one line of conversation ids.
    budget = [MAX_CARDS]
    convs = [conversations_by_id(r) for r in results]
    views = [_incident_view(inc, results[inc.capture], convs[inc.capture], opts, budget) for inc in found]
    captures = [_capture_view(r, i, views, opts) for i, r in enumerate(results)]
    return template.render(
        captures=captures,
        incidents=[{"inc": inc, "span": show_span(inc.start, inc.end, opts.tz)} for inc in found],
        counts=summary_counts(results),
        summary=summary_line(results),
        opts=opts,
        open_first=OPEN_FIRST,
    )
