"""The terminal report: findings grouped by conversation, with a ladder of the evidence.

Every capture-derived string goes through common.clean() so nothing a capture contains can
reach the terminal as a control sequence; colour is added only around our own text.
"""

from __future__ import annotations

from analyzer.model import CaptureResult, Conversation, Finding
from analyzer.report.common import (
    clean,
    clean_block,
    conversation_total,
    conversations_by_id,
    display_path,
    findings_by_conversation,
    fmt_duration,
    frame_ranges,
    plural,
    summary_line,
)
from analyzer.report.ladder import ascii_ladder, ladder_rows
from analyzer.report.options import ReportOptions

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


def _indent(text: str, prefix: str) -> list[str]:
    return [prefix + line for line in clean_block(text).splitlines() or [""]]


def _conversation_head(conv: Conversation | None, conv_id: int) -> str:
    if conv is None:
        return f"conversation {conv_id}"
    inferred = " (roles inferred)" if conv.role_inferred else ""
    return (
        f"conversation {conv.id} {conv.proto} {clean(conv.client)} -> {clean(conv.server)}{inferred}  "
        f"state {clean(conv.state)} history {clean(conv.history)}  frames {conv.first_frame}-{conv.last_frame}"
    )


def _finding_lines(finding: Finding, conv: Conversation | None, opts: ReportOptions, paint: _Painter) -> list[str]:
    level = paint(finding.level, finding.level.upper())
    lines = [f"  {level} {paint('bold', clean(finding.rule))} {clean(finding.name)}: {clean(finding.title)}"]
    lines += _indent(finding.message, "    ")
    for err in finding.errors:
        ws = err.winsock or {}
        px = err.posix or {}
        lines.append(
            f"    {clean(err.side)} {clean(err.endpoint)} {clean(err.operation)}(): "
            f"{ws.get('code', '?')} {clean(ws.get('name', ''))} / {clean(px.get('name', ''))}"
            + (f" (Linux {px['linux']}, macOS {px['macos']})" if "linux" in px and "macos" in px else "")
        )
        if ws.get("message"):
            lines.append(f"      {clean(ws['message'])}")
        for platform, label in (("dotnet", ".NET"), ("java", "Java"), ("python", "Python"), ("curl", "curl")):
            text = (err.seen_as or {}).get(platform)
            if text:
                lines.append(f"      {label + ':':<8}{clean(text)}")
        if err.note:
            lines.append(f"      note: {clean(err.note)}")
    lines.append(f"    {paint('bold', 'cause:')}")
    lines += _indent(finding.cause, "      ")
    lines.append(f"    {paint('bold', 'remedy:')}")
    lines += _indent(finding.remedy, "      ")
    lines.append(f"    confidence {clean(finding.confidence)}; evidence frames {frame_ranges(finding.frames)}")
    lines.append(f"    wireshark: {clean(finding.wireshark_filter)}")
    if finding.references:
        lines.append(f"    see: {'; '.join(clean(r) for r in finding.references)}")
    if conv is not None and conv.timeline:
        rows = ladder_rows(conv, finding, opts.ladder_context, opts.ladder_max_rows)
        for line in ascii_ladder(conv, rows, clean):
            styled = paint("culprit", line) if line.startswith(">>") else line
            lines.append("    " + styled)
    return lines


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


def render_text(results: list[CaptureResult], opts: ReportOptions) -> str:
    """`--format text`: per capture, findings by conversation; a summary line at the end."""
    if opts.conversations_only:
        return render_conversation_table(results, opts)
    paint = _Painter(opts.color)
    out: list[str] = []
    for result in results:
        out += _capture_head(result, paint)
        convs = conversations_by_id(result)
        groups = findings_by_conversation(result)
        if not result.error and not groups:
            out.append("  no findings")
        for conv_id, findings in groups.items():
            conv = convs.get(conv_id)
            out.append("")
            out.append(paint("bold", _conversation_head(conv, conv_id)))
            for finding in findings:
                out += _finding_lines(finding, conv, opts, paint)
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
