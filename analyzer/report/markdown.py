"""The Markdown report, for pasting into an issue tracker (GitHub/GitLab flavoured Markdown).

Capture-derived text is escaped twice over: HTML special characters become entities (trackers
render inline HTML) and Markdown punctuation is backslash-escaped (no links, emphasis or table
breaks can be smuggled in). Code spans and fenced blocks are literal in CommonMark, so there
only the fence is chosen longer than any backtick run inside.
"""

from __future__ import annotations

import re

from analyzer.model import CaptureResult, Conversation, Finding
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
from analyzer.report.ladder import ascii_ladder, ladder_rows, path_ladder
from analyzer.report.options import ReportOptions
from analyzer.report.path import path_summary

_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}
# CommonMark section 2.4: any ASCII punctuation may be backslash-escaped; these are the ones that
# start or end inline constructs (emphasis, links, code, tables, strikethrough, headings, lists).
_MD_PUNCT = re.compile(r"([\\`*_{}\[\]()#+!|~-])")


def md(text: object) -> str:
    """Escape a string for Markdown prose or a table cell: one line, no markup, no HTML."""
    s = clean(str(text).replace("\r\n", "\n").replace("\n", " "))
    s = _MD_PUNCT.sub(r"\\\1", s)
    return "".join(_HTML.get(ch, ch) for ch in s)


def md_block(text: object) -> str:
    """Escape multi-line prose: each line escaped, line breaks kept as Markdown hard breaks."""
    return "  \n".join(md(line) for line in str(text).splitlines()) or ""


def code_span(text: object) -> str:
    """A literal inline code span, fenced with more backticks than the text contains."""
    s = clean(str(text).replace("\n", " "))
    longest = max((len(m) for m in re.findall(r"`+", s)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if s.startswith("`") or s.endswith("`") or not s.strip() else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def fenced(lines: list[str], info: str = "text") -> list[str]:
    """A fenced code block whose fence cannot be closed by its content."""
    longest = max((len(m) for line in lines for m in re.findall(r"`{3,}", line)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + info, *lines, fence]


def _summary_table(results: list[CaptureResult]) -> list[str]:
    lines = [
        "| capture | format | packets | conversations | errors | warnings | info |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        c = summary_counts([r])
        fmt = md(r.format) if not r.error else "**cannot read**: " + md(r.error)
        lines.append(
            f"| {md(display_path(r.path))} | {fmt} | {r.packets} | {conversation_total(r)} | "
            f"{c['errors']} | {c['warnings']} | {c['info']} |"
        )
    return lines


def _finding(finding: Finding, conv: Conversation | None, opts: ReportOptions) -> list[str]:
    out = [f"### {finding.level.upper()} {md(finding.rule)} {md(finding.name)}: {md(finding.title)}", ""]
    if conv is not None:
        inferred = " (roles inferred)" if conv.role_inferred else ""
        out.append(
            f"Conversation {conv.id}, {md(conv.proto)}, client {md(conv.client)} → server "
            f"{md(conv.server)}{inferred}, state {code_span(conv.state)}, history {code_span(conv.history)}, "
            f"frames {conv.first_frame}–{conv.last_frame}, {fmt_duration(conv.duration)}"
        )
    else:
        out.append(f"Conversation {finding.conversation}")
    out += ["", md_block(finding.message), ""]
    if finding.errors:
        out += [
            "| side | endpoint | operation | Winsock | POSIX | .NET | Java | Python | curl |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for e in finding.errors:
            ws, px, seen = e.winsock or {}, e.posix or {}, e.seen_as or {}
            posix = md(px.get("name", ""))
            if "linux" in px and "macos" in px:
                posix += f" (Linux {md(px['linux'])}, macOS {md(px['macos'])})"
            out.append(
                f"| {md(e.side)} | {md(e.endpoint)} | {md(e.operation)} | {md(ws.get('code', ''))} "
                f"{md(ws.get('name', ''))} | {posix} | "
                + " | ".join(md(seen.get(k, "")) for k in ("dotnet", "java", "python", "curl"))
                + " |"
            )
        notes = [e for e in finding.errors if e.note]
        out.append("")
        for e in notes:
            out.append(f"*Note ({md(e.side)}):* {md(e.note)}  ")
        if notes:
            out.append("")
    out += [
        f"**Cause:** {md_block(finding.cause)}",
        "",
        f"**Remedy:** {md_block(finding.remedy)}",
        "",
        f"**Evidence frames:** {frame_ranges(finding.frames)} (confidence {md(finding.confidence)})  ",
        f"**Wireshark filter:** {code_span(finding.wireshark_filter)}",
    ]
    if finding.references:
        out.append(f"  \n**References:** {'; '.join(md(r) for r in finding.references)}")
    if conv is not None and conv.path is not None:  # two captures: both points as lanes
        ladder = path_ladder(conv, finding, opts.ladder_context, opts.ladder_max_rows, clean)
        out += ["", "<details><summary>Packet ladder at both capture points</summary>", ""]
        out += fenced([clean(line) for line in path_summary(conv)] + ladder)
        out += ["", "</details>"]
    elif conv is not None and conv.timeline:
        rows = ladder_rows(conv, finding, opts.ladder_context, opts.ladder_max_rows)
        out += ["", "<details><summary>Packet ladder</summary>", ""]
        out += fenced(ascii_ladder(conv, rows, clean))
        out += ["", "</details>"]
    out.append("")
    return out


def _conversation_table(result: CaptureResult) -> list[str]:
    lines = [
        "| id | proto | client | server | state | history | packets c/s | bytes c/s | frames | duration |",
        "|---:|---|---|---|---|---|---:|---:|---|---:|",
    ]
    for c in result.conversations:
        lines.append(
            f"| {c.id} | {md(c.proto)} | {md(c.client)}{' (inferred)' if c.role_inferred else ''} | "
            f"{md(c.server)} | {md(c.state)} | {md(c.history)} | "
            f"{c.client_stats.packets}/{c.server_stats.packets} | {c.client_stats.bytes}/{c.server_stats.bytes} | "
            f"{c.first_frame}–{c.last_frame} | {fmt_duration(c.duration)} |"
        )
    return lines


def render_markdown(results: list[CaptureResult], opts: ReportOptions) -> str:
    """`--format markdown`: summary table, then every finding with its errors and evidence."""
    out = ["# wsadiag report", "", *_summary_table(results), "", f"**{md(summary_line(results))}**", ""]
    for r in results:
        out += [f"## {md(display_path(r.path))}", ""]
        if r.error:
            out += [f"Cannot read this capture: {md(r.error)}", ""]
            continue
        for w in r.warnings:
            where = f" (frame {w.frame})" if w.frame is not None else ""
            out.append(f"> **Capture warning** {md(w.code)}{where}: {md(w.message)}  ")
        if r.warnings:
            out.append("")
        if opts.conversations_only:
            out += _conversation_table(r) + [""]
            continue
        groups = findings_by_conversation(r)
        if not groups:
            out += ["No findings.", ""]
        convs = conversations_by_id(r)
        for conv_id, findings in groups.items():
            for f in findings:
                out += _finding(f, convs.get(conv_id), opts)
    out.append(f"<sub>wsadiag {md(opts.tool_version)}</sub>")
    return "\n".join(out) + "\n"
