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
    fmt_duration,
    frame_ranges,
    summary_counts,
    summary_line,
)
from analyzer.report.evidence_names import evidence_file
from analyzer.report.incidents import Incident, frame_times, incident_summary, incidents, show_span, show_time
from analyzer.report.ladder import ascii_ladder, ladder_rows, path_ladder
from analyzer.report.options import ReportOptions
from analyzer.report.path import healthy_left_out, healthy_paths, path_summary
from analyzer.tls import TLS_STACKS
from analyzer.winsock import seen_lines

# Markdown punctuation that opens inline constructs (emphasis, code, links, tables, strikethrough,
# headings, escapes) is written as a numeric character reference (CommonMark 6.2): it renders as
# the character itself and, unlike a backslash escape, never shows as a literal backslash in a
# renderer that skips escapes. HTML specials likewise, so trackers that render inline HTML do not.
_ENTITIES = {ch: f"&#{ord(ch)};" for ch in '\\`*_[]#|~<>&"'}
_LINE_START = re.compile(r"^(\s*)([-+](?=\s|$)|\d{1,9}(?=[.)](?:\s|$)))")  # what would start a list item


def md(text: object) -> str:
    """Escape a string for Markdown prose or a table cell: one line, no markup, no HTML."""
    s = clean(str(text).replace("\r\n", "\n").replace("\n", " "))
    return "".join(_ENTITIES.get(ch, ch) for ch in s)


def _md_line(text: str) -> str:
    """md() for text that starts a line: a leading "-", "+" or "1." is not made a list."""
    s = md(text)
    m = _LINE_START.match(s)
    if m is None:
        return s
    mark = m.group(2)
    if mark[0].isdigit():  # "1." -> "1&#46;"
        end = m.end()
        return s[:end] + f"&#{ord(s[end])};" + s[end + 1 :]
    return m.group(1) + f"&#{ord(mark)};" + s[m.end() :]


def md_block(text: object) -> str:
    """Escape multi-line prose: each line escaped, line breaks kept as Markdown hard breaks."""
    return "  \n".join(_md_line(line) for line in str(text).splitlines()) or ""


_CODE = re.compile(r"`([^`\n]+)`")


def md_prose(text: object) -> str:
    """Rule prose (cause, remedy): `commands` in backticks stay code spans, the rest is escaped."""
    out = []
    for line in str(text).splitlines():
        pieces, last = [], 0
        for m in _CODE.finditer(line):
            pieces.append((_md_line if last == 0 else md)(line[last : m.start()]) + code_span(m.group(1)))
            last = m.end()
        pieces.append((_md_line if last == 0 else md)(line[last:]))
        out.append("".join(pieces))
    return "  \n".join(out)


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


def _errors(finding: Finding) -> list[str]:
    """Each side's error as a list item, how each language shows it as a nested list of code."""
    out: list[str] = []
    for e in finding.errors:
        ws, px = e.winsock, e.posix
        posix = md(px.name or "-")
        if px.linux is not None and px.macos is not None:
            posix += f" (Linux {md(px.linux)}, macOS {md(px.macos)})"
        out.append(
            f"- **{md(e.side)}** {code_span(e.endpoint)} {md(e.operation)}(): {md(ws.code)} {md(ws.name)} / {posix}"
        )
        for label, text in seen_lines(e.seen_as):
            out.append(f"  - {label}: {code_span(text)}")
        if e.note:
            out.append(f"  - *note:* {md(e.note)}")
    alert = finding.tls_alert
    if alert:
        out.append(
            f"- **TLS alert** from the {md(alert['sender'])}: {md(alert['level'])} {md(alert['description'])} "
            f"({md(alert['code'])}): {md(alert['meaning'])}"
        )
        seen = alert["seen_as"]
        assert isinstance(seen, dict)
        out += [f"  - {label}: {code_span(str(seen[key]))}" for key, label in TLS_STACKS]
    return out + [""] if out else []


def _finding(finding: Finding, conv: Conversation | None, opts: ReportOptions, capture: str) -> list[str]:
    out = [f"#### {finding.level.upper()} {md(finding.rule)} {md(finding.name)}: {md(finding.title)}", ""]
    if conv is not None:
        inferred = " (roles inferred)" if conv.role_inferred else ""
        out.append(
            f"Conversation {conv.id}, {md(conv.proto)}, client {code_span(conv.client)} → server "
            f"{code_span(conv.server)}{inferred}, state {code_span(conv.state)}, history {code_span(conv.history)}, "
            f"frames {conv.first_frame}–{conv.last_frame}, {fmt_duration(conv.duration)}, "
            f"started {md(show_time(conv.start, opts.tz))}"
        )
    else:
        out.append(f"Conversation {finding.conversation}")
    out += ["", md_block(finding.message), ""]
    for alt in finding.also:
        out.append(
            f"*Also consistent with:* {md(alt.rule)} {md(alt.name)} ({md(alt.confidence)}) — {md(alt.message)}  "
        )
    if finding.also:
        out.append("")
    out += _errors(finding)
    times = [t for t in frame_times(conv, finding) if t is not None]
    when = f", {md(show_time(times[0], opts.tz))}" if times else ""
    out += [
        f"**Cause:** {md_prose(finding.cause)}",
        "",
        f"**Remedy:** {md_prose(finding.remedy)}",
        "",
        f"**Evidence frames:** {frame_ranges(finding.frames)}{when} (confidence {md(finding.confidence)})  ",
        f"**Wireshark filter:** {code_span(finding.wireshark_filter)}",
    ]
    where = evidence_file(opts.evidence_dir, capture, finding, conv)
    if where:
        out.append(f"  \n**Evidence capture:** {code_span(where)}")
    if finding.references:
        out.append(f"  \n**References:** {'; '.join(md(r) for r in finding.references)}")
    if conv is not None and conv.path is not None:  # two captures: both points as lanes
        out += [""] + _path_block(conv, finding, opts)
    elif conv is not None and conv.timeline:
        rows = ladder_rows(conv, finding, opts.ladder_context, opts.ladder_max_rows)
        out += ["", "<details><summary>Packet ladder</summary>", ""]
        out += fenced(ascii_ladder(conv, rows, clean))
        out += ["", "</details>"]
    out.append("")
    return out


def _path_block(conv: Conversation, finding: Finding | None, opts: ReportOptions) -> list[str]:
    """A conversation's path summary and two-point ladder, folded away (fenced: literal text)."""
    ladder = path_ladder(conv, finding, opts.ladder_context, opts.ladder_max_rows, clean)
    out = ["<details><summary>Packet ladder at both capture points</summary>", ""]
    out += fenced([clean(line) for line in path_summary(conv)] + ladder)
    return out + ["", "</details>"]


def _healthy_paths(result: CaptureResult, opts: ReportOptions, room: int) -> list[str]:
    """Two captures: the paths of conversations without findings (a NAT's translation, a proxy),
    as many as fit in `room` characters and at most HEALTHY_LADDERS; the rest counted."""
    shown, left = healthy_paths(result)
    if not shown:
        return []
    out = ["### Paths without findings", ""]
    size = sum(len(line) + 1 for line in out)
    for n, conv in enumerate(shown):
        block = [
            f"Conversation {conv.id}, {md(conv.proto)}, client {code_span(conv.client)} → server "
            f"{code_span(conv.server)}, state {code_span(conv.state)}, frames {conv.first_frame}–{conv.last_frame}",
            "",
            *_path_block(conv, None, opts),
            "",
        ]
        cost = sum(len(line) + 1 for line in block)
        if size + cost > room:
            left += len(shown) - n
            break
        out += block
        size += cost
    if left:
        out += [f"*{md(healthy_left_out(left))}*", ""]
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


def _incident_table(found: list[Incident], opts: ReportOptions, budget: int) -> list[str]:
    lines = [
        "| # | level | rule | server | conversations | clients | client subnet | time |",
        "|---:|---|---|---|---:|---:|---|---|",
    ]
    size = 0
    for n, inc in enumerate(found):
        row = (
            f"| {inc.id} | {inc.level} | {md(inc.rule)} {md(inc.name)} | "
            f"{code_span(inc.server) if inc.server else ''} | "
            f"{inc.count} | {inc.clients} | {md(inc.client_subnet)} | {md(show_span(inc.start, inc.end, opts.tz))} |"
        )
        size += len(row) + 1
        if size > budget:
            lines += ["", f"*… and {len(found) - n} more incidents (the JSON and HTML reports list them all).*"]
            break
        lines.append(row)
    return lines + [""]


def _incident_section(inc: Incident, result: CaptureResult, opts: ReportOptions) -> tuple[list[str], list[str]]:
    """An incident's heading and the findings shown (the rest counted in the heading's note)."""
    convs = conversations_by_id(result)
    head = [f"### Incident {inc.id}: {md(inc.rule)} {md(inc.name)} {md(inc.server)}", ""]
    head.append(f"{md(incident_summary(inc, opts.tz))}")
    head.append("")
    shown = [_finding(f, convs.get(f.conversation), opts, result.path) for f in inc.findings[: opts.examples]]
    rest = len(inc.findings) - len(shown)
    tail = []
    if rest:
        ids = ", ".join(str(f.conversation) for f in inc.findings[opts.examples :][:20])
        more = ", …" if rest > 20 else ""
        tail = [f"*… and {rest} more conversations like these: {ids}{more}.*", ""]
    return head, [line for block in shown for line in block] + tail


def render_markdown(results: list[CaptureResult], opts: ReportOptions) -> str:
    """`--format markdown`: summary, incident table, then each incident's first findings.

    Kept under opts.markdown_limit characters (GitHub's comment limit is 65,536): what does not
    fit is counted at the end, with a pointer to the HTML report.
    """
    out = ["# wsadiag report", "", *_summary_table(results), "", f"**{md(summary_line(results))}**", ""]
    if opts.conversations_only:
        for r in results:
            out += [f"## {md(display_path(r.path))}", ""] + _capture_notes(r)
            if not r.error:
                out += _conversation_table(r) + [""]
        out.append(f"<sub>wsadiag {md(opts.tool_version)}</sub>")
        return "\n".join(out) + "\n"
    found = incidents(results)
    limit = opts.markdown_limit
    if found:
        out += ["## Incidents", ""] + _incident_table(found, opts, limit // 3)
    size = sum(len(line) + 1 for line in out)
    reserve = 600  # the closing note and footer
    left_out = 0
    for index, r in enumerate(results):
        section = [f"## {md(display_path(r.path))}", ""] + _capture_notes(r)
        if not r.error and not r.findings:
            section += ["No findings.", ""]
        for inc in (i for i in found if i.capture == index):
            head, body = _incident_section(inc, r, opts)
            block = head + body
            cost = sum(len(line) + 1 for line in block)
            if size + sum(len(x) + 1 for x in section) + cost + reserve > limit:
                left_out += inc.count
                continue
            section += block
        section_size = sum(len(line) + 1 for line in section)
        if size + section_size + reserve > limit:
            left_out += sum(1 for _ in r.findings) if section_size > reserve else 0
            continue
        out += section
        size += section_size
        if not r.error:
            paths = _healthy_paths(r, opts, limit - size - reserve)
            out += paths
            size += sum(len(line) + 1 for line in paths)
    if left_out:
        out += [
            f"*{left_out} findings are not shown, to keep this report under GitHub's 65,536-character "
            "comment limit: the HTML report (`--format html`) shows them all.*",
            "",
        ]
    out.append(f"<sub>wsadiag {md(opts.tool_version)}</sub>")
    return "\n".join(out) + "\n"


def _capture_notes(r: CaptureResult) -> list[str]:
    if r.error:
        return [f"Cannot read this capture: {md(r.error)}", ""]
    out = []
    for w in r.warnings:
        where = f" (frame {w.frame})" if w.frame is not None else ""
        out.append(f"> **Capture warning** {md(w.code)}{where}: {md(w.message)}  ")
    return out + [""] if out else out
