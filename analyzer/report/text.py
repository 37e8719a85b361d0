"""The terminal report: findings grouped by conversation, with a ladder of the evidence.

Every capture-derived string goes through common.clean() so nothing a capture contains can
reach the terminal as a control sequence; colour is added only around our own text.
"""

from __future__ import annotations

import textwrap
from collections.abc import Collection

from analyzer.model import CaptureResult, Conversation, Finding
from analyzer.report.common import (
    clean,
    clean_block,
    conversation_total,
    conversations_by_id,
    display_path,
    fmt_duration,
    frame_ranges,
    plural,
    summary_line,
)
from analyzer.report.evidence_names import evidence_file
from analyzer.report.incidents import Incident, frame_times, incident_summary, incidents, show_span, show_time
from analyzer.report.ladder import ascii_ladder, ladder_rows, path_ladder
from analyzer.report.options import ReportOptions
from analyzer.report.path import healthy_left_out, healthy_paths, path_summary
from analyzer.tls import TLS_STACKS
from analyzer.winsock import seen_lines

# ANSI SGR codes (ECMA-48 8.3.117) for the few styles the report uses.
STYLES: dict[str, str] = {
    "error": "1;31",
    "warning": "1;33",
    "info": "1;36",
    "bold": "1",
    "dim": "2",
    "culprit": "31",
}


class _Painter:
    """Wraps our own text in ANSI styles when colour is on; a no-op otherwise."""

    def __init__(self, color: bool) -> None:
        self.color = color

    def __call__(self, style: str, text: str) -> str:
        if not self.color or style not in STYLES:
            return text
        return f"\x1b[{STYLES[style]}m{text}\x1b[0m"


def _indent(text: str, prefix: str, width: int = 0) -> list[str]:
    """Prose indented by `prefix`, each line wrapped to `width` columns (0: no wrapping)."""
    out: list[str] = []
    for line in clean_block(text).splitlines() or [""]:
        if width and len(prefix) + len(line) > width:
            out += textwrap.wrap(line, width, initial_indent=prefix, subsequent_indent=prefix) or [prefix]
        else:
            out.append(prefix + line)
    return out


def _wrap(lines: list[str], width: int) -> list[str]:
    """Lines longer than `width` wrapped, continuing 8 columns right of where they start."""
    out: list[str] = []
    for line in lines:
        if not width or len(line) <= width:
            out.append(line)
            continue
        lead = " " * (len(line) - len(line.lstrip(" ")))
        out += textwrap.wrap(line.lstrip(" "), width, initial_indent=lead, subsequent_indent=lead + " " * 8) or [line]
    return out


def _conversation_head(conv: Conversation | None, conv_id: int, tz: str = "UTC") -> str:
    if conv is None:
        return f"conversation {conv_id}"
    inferred = " (roles inferred)" if conv.role_inferred else ""
    return (
        f"conversation {conv.id} {conv.proto} {clean(conv.client)} -> {clean(conv.server)}{inferred}  "
        f"state {clean(conv.state)} history {clean(conv.history)}  frames {conv.first_frame}-{conv.last_frame}  "
        f"started {show_time(conv.start, tz)}"
    )


def _evidence_times(finding: Finding, conv: Conversation | None, tz: str) -> str:
    """'frame 14 at 10:02:11.123456, frame 15 at ...' (dated once, in the zone asked for)."""
    times = frame_times(conv, finding)
    known = [(n, t) for n, t in zip(finding.frames, times) if t is not None]
    if not known:
        return ""
    first = show_time(known[0][1], tz)
    rest = [f"{n} at {show_time(t, tz, date=False).rsplit(' ', 1)[0]}" for n, t in known[1:]]
    return "; ".join([f"{known[0][0]} at {first}", *rest])


def _finding_lines(
    finding: Finding, conv: Conversation | None, opts: ReportOptions, paint: _Painter, capture: str
) -> list[str]:
    level = paint(finding.level, finding.level.upper())
    width = opts.width
    lines = [f"  {level} {paint('bold', clean(finding.rule))} {clean(finding.name)}: {clean(finding.title)}"]
    lines += _indent(finding.message, "    ", width)
    for alt in finding.also:
        lines += _indent(
            f"also consistent with: {alt.rule} {alt.name} ({alt.confidence}) — {alt.message}", "    ", width
        )
    for err in finding.errors:
        ws, px = err.winsock, err.posix
        lines.append(
            f"    {clean(err.side)} {clean(err.endpoint)} {clean(err.operation)}(): "
            f"{ws.code} {clean(ws.name)} / {clean(px.name or '-')}"
            + (f" (Linux {px.linux}, macOS {px.macos})" if px.linux is not None and px.macos is not None else "")
        )
        if ws.message:
            lines.append(f"      {clean(ws.message)}")
        for label, text in seen_lines(err.seen_as):
            lines.append(f"      {label + ':':<8}{clean(text)}")
        if err.note:
            lines.append(f"      note: {clean(err.note)}")
    lines += _tls_alert_lines(finding)
    lines.append(f"    {paint('bold', 'cause:')}")
    lines += _indent(finding.cause, "      ", width)
    lines.append(f"    {paint('bold', 'remedy:')}")
    lines += _indent(finding.remedy, "      ", width)
    lines.append(f"    confidence {clean(finding.confidence)}; evidence frames {frame_ranges(finding.frames)}")
    when = _evidence_times(finding, conv, opts.tz)
    if when:
        lines += _indent(f"evidence times: {when}", "    ", width)
    lines.append(f"    wireshark: {clean(finding.wireshark_filter)}")
    where = evidence_file(opts.evidence_dir, capture, finding, conv)
    if where:
        lines.append(f"    evidence capture: {clean(where)}")
    if finding.references:
        lines.append(f"    see: {'; '.join(clean(r) for r in finding.references)}")
    lines = _wrap(lines, width)  # the ladder below is drawn to fit 80 columns on its own
    if conv is not None and conv.path is not None:  # two captures: both points as lanes
        lines += ["    " + clean(line) for line in path_summary(conv)]
        lines += [
            "    " + (paint("culprit", ln) if ln.startswith(">>") else ln) for ln in _path_ladder(conv, finding, opts)
        ]
    elif conv is not None and conv.timeline:
        rows = ladder_rows(conv, finding, opts.ladder_context, opts.ladder_max_rows)
        for line in ascii_ladder(conv, rows, clean):
            styled = paint("culprit", line) if line.startswith(">>") else line
            lines.append("    " + styled)
    return lines


def _tls_alert_lines(finding: Finding) -> list[str]:
    """The TLS alert on the wire and what the receiving side's TLS stack reports for it."""
    alert = finding.tls_alert
    if not alert:
        return []
    receiver = "client" if alert["sender"] == "server" else "server"
    lines = [
        f"    TLS alert from the {clean(str(alert['sender']))}: {clean(str(alert['level']))} "
        f"{clean(str(alert['description']))} ({alert['code']}): {clean(str(alert['meaning']))}",
        f"      the {receiver}'s TLS stack reports it as:",
    ]
    seen = alert["seen_as"]
    assert isinstance(seen, dict)
    for key, label in TLS_STACKS:
        lines.append(f"      {label + ':':<9}{clean(str(seen[key]))}")
    return lines


def _path_ladder(conv: Conversation, finding: Finding | None, opts: ReportOptions) -> list[str]:
    return path_ladder(conv, finding, opts.ladder_context, opts.ladder_max_rows, clean)


def _path_only(result: CaptureResult, groups: Collection[int], opts: ReportOptions, paint: _Painter) -> list[str]:
    """Two captures: conversations without findings whose path shows something (a NAT, a clamp)."""
    out: list[str] = []
    shown, left = healthy_paths(result)
    if shown:
        out += ["", paint("bold", "  Paths without findings")]
    for conv in shown:
        out += ["", paint("bold", _conversation_head(conv, conv.id))]
        out += ["  " + clean(line) for line in path_summary(conv)]
        out += ["  " + line for line in _path_ladder(conv, None, opts)]
    if left:
        out += ["", "  " + healthy_left_out(left)]
    return out


def _capture_head(result: CaptureResult, paint: _Painter) -> list[str]:
    name = clean(display_path(result.path))
    if result.error:
        return [f"{paint('bold', name)}: {paint('error', 'cannot read')}: {clean(result.error)}"]
    linktypes = ",".join(clean(t) for t in result.linktypes) or "?"
    if result.encapsulations:  # mirrored or tunnelled traffic: the conversations are the inner ones
        linktypes += ", inner traffic of " + ", ".join(clean(e) for e in result.encapsulations)
    lines = [
        f"{paint('bold', name)}: {clean(result.format) or '?'} {linktypes}, {result.packets} packets, "
        f"{plural(conversation_total(result), 'conversation')}"
    ]
    for w in result.warnings:
        where = f" (frame {w.frame})" if w.frame is not None else ""
        lines.append(f"  {paint('warning', 'capture warning')} {clean(w.code)}{where}: {clean(w.message)}")
    return lines


def incident_table(found: list[Incident], opts: ReportOptions, paint: _Painter) -> list[str]:
    """The report's opening: one line per incident, most severe first."""
    if not found:
        return []
    lines = [paint("bold", f"{plural(len(found), 'incident')}:")]
    for inc in found:
        text = clean(incident_summary(inc, opts.tz))
        lines += _indent(f"#{inc.id} {inc.level.upper()} {text}", "  ", opts.width)
    return lines + [""]


def _incident_details(
    inc: Incident, result: CaptureResult, convs: dict, opts: ReportOptions, paint: _Painter
) -> list[str]:
    """One incident: its first findings in full, the rest counted and named by conversation."""
    span = show_span(inc.start, inc.end, opts.tz)
    head = f"incident #{inc.id}: {clean(inc.rule)} {clean(inc.name)} {clean(inc.server)}"
    head += f"  ({plural(inc.count, 'conversation')}, {span})"
    out = ["", *(paint("bold", line) for line in _wrap([head], opts.width)), ""]
    for finding in inc.findings[: opts.examples]:
        conv = convs.get(finding.conversation)
        out += [
            paint("bold", line) for line in _wrap([_conversation_head(conv, finding.conversation, opts.tz)], opts.width)
        ]
        out += _finding_lines(finding, conv, opts, paint, result.path)
        out.append("")
    rest = inc.findings[opts.examples :]
    if rest:
        ids = ", ".join(str(f.conversation) for f in rest[:20]) + (", ..." if len(rest) > 20 else "")
        out += _indent(
            f"... and {plural(len(rest), 'more conversation')} like these (not shown): {ids}", "  ", opts.width
        )
    return out


def render_text(results: list[CaptureResult], opts: ReportOptions) -> str:
    """`--format text`: the incident table, then per capture each incident's first findings in full."""
    if opts.conversations_only:
        return render_conversation_table(results, opts)
    paint = _Painter(opts.color)
    found = incidents(results)
    out: list[str] = incident_table(found, opts, paint)
    for index, result in enumerate(results):
        out += _capture_head(result, paint)
        convs = conversations_by_id(result)
        if not result.error and not result.findings:
            out.append("  no findings")
        for inc in found:
            if inc.capture == index:
                out += _incident_details(inc, result, convs, opts, paint)
        groups = {f.conversation for f in result.findings}
        out += _path_only(result, groups, opts, paint)
        out.append("")
    out.append(summary_line(results))
    return "\n".join(out) + "\n"


CONVERSATION_COLUMNS = (
    "id",
    "proto",
    "client",
    "server",
    "state",
    "history",
    "pkts c/s",
    "bytes c/s",
    "frames",
    "duration",
)


def render_conversation_table(results: list[CaptureResult], opts: ReportOptions) -> str:
    """`wsadiag conversations`: one aligned row per conversation, per capture."""
    paint = _Painter(opts.color)
    out: list[str] = []
    for result in results:
        out += _capture_head(result, paint)
        if result.error:
            out.append("")
            continue
        rows = [CONVERSATION_COLUMNS]
        for c in result.conversations:
            client = clean(c.client) + ("?" if c.role_inferred else "")
            rows.append(
                (
                    str(c.id),
                    c.proto,
                    client,
                    clean(c.server),
                    clean(c.state),
                    clean(c.history),
                    f"{c.client_stats.packets}/{c.server_stats.packets}",
                    f"{c.client_stats.bytes}/{c.server_stats.bytes}",
                    f"{c.first_frame}-{c.last_frame}",
                    fmt_duration(c.duration),
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(CONVERSATION_COLUMNS))]
        numeric = {0, 6, 7, 8, 9}
        for n, row in enumerate(rows):
            cells = [cell.rjust(w) if i in numeric else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))]
            line = "  " + "  ".join(cells).rstrip()
            out.append(paint("bold", line) if n == 0 else line)
        if any(c.role_inferred for c in result.conversations):
            out.append("  ? roles inferred: the handshake is not in the capture")
        out.append("")
    total = sum(len(r.conversations) for r in results)
    out.append(f"{plural(total, 'conversation')} in {plural(len(results), 'capture')}")
    return "\n".join(out) + "\n"
