"""GitHub Actions workflow commands: one annotation line per finding.

Escaping follows the Actions runner (actions/toolkit core/src/command.ts): in the message
`%`, CR and LF are percent-encoded; in properties also `:` and `,`. Other control characters are
spelled \\xNN (common.clean) so a capture cannot send ANSI sequences into the job log.
"""

from __future__ import annotations

from analyzer.model import CaptureResult
from analyzer.report.common import clean, clean_block, conversations_by_id, display_path, frame_ranges
from analyzer.report.incidents import Incident, incident_summary, incidents
from analyzer.report.options import ReportOptions

# Finding level -> workflow command (GitHub has error, warning and notice).
COMMANDS: dict[str, str] = {"error": "error", "warning": "warning", "info": "notice"}
# GitHub shows at most 10 annotations of each kind per step: 9 incidents, then one line for the rest.
PER_KIND = 10


def escape_data(text: str) -> str:
    """A workflow command's message part."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command's property value (title=...)."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _command(kind: str, title: str, message: str) -> str:
    return f"::{kind} title={escape_property(clean(title))}::{escape_data(message)}"


def render_github(results: list[CaptureResult], opts: ReportOptions) -> str:
    """`--format github`: one `::error title=CON001 connection-refused::...` line per incident.

    A thousand findings of one outage are one annotation, not a thousand: the annotation names
    the incident's size and span and shows its first finding in full. (The CLI also writes the
    Markdown report to $GITHUB_STEP_SUMMARY when it is set.)
    """
    lines: list[str] = []
    for result in results:
        path = clean(display_path(result.path))
        if result.error:
            lines.append(_command("error", "wsadiag cannot read capture", f"{path}: {clean(result.error)}"))
            continue
        for w in result.warnings:
            where = f" (frame {w.frame})" if w.frame is not None else ""
            lines.append(_command("warning", f"capture {w.code}", f"{path}{where}: {clean(w.message)}"))
    if opts.conversations_only:
        return "".join(line + "\n" for line in lines)
    shown: dict[str, int] = {}
    left: dict[str, list[Incident]] = {}
    for inc in incidents(results):  # most severe and largest first
        kind = COMMANDS.get(inc.level, "notice")
        if shown.get(kind, 0) < PER_KIND - 1:
            shown[kind] = shown.get(kind, 0) + 1
            lines.append(_incident_command(inc, results[inc.capture], opts))
        else:
            left.setdefault(kind, []).append(inc)
    for kind, rest in left.items():
        if len(rest) == 1:
            lines.append(_incident_command(rest[0], results[rest[0].capture], opts))
            continue
        findings = sum(inc.count for inc in rest)
        rules = ", ".join(sorted({inc.rule for inc in rest}))
        lines.append(
            _command(
                kind,
                f"wsadiag: {len(rest)} more incidents",
                f"{len(rest)} more {kind} incidents ({findings} findings; rules {rules}) are not annotated: "
                "GitHub shows 10 annotations of each kind per step. The job summary and the "
                "JSON/HTML reports list them all.",
            )
        )
    return "".join(line + "\n" for line in lines)


def _incident_command(inc: Incident, result: CaptureResult, opts: ReportOptions) -> str:
    path = clean(display_path(result.path))
    convs = conversations_by_id(result)
    f = inc.findings[0]
    conv = convs.get(f.conversation)
    message = f"{path}: {clean(incident_summary(inc, opts.tz))}"
    where = f"conversation {f.conversation}"
    if conv is not None:
        where += f" {conv.proto} {clean(conv.client)} -> {clean(conv.server)} ({clean(conv.state)})"
    message += f"\nfirst: {where}: {clean_block(f.message)}"
    for alt in f.also:
        message += f"\nalso consistent with: {clean(alt.rule)} {clean(alt.name)}: {clean_block(alt.message)}"
    errors = "; ".join(
        f"{clean(e.side)} sees {e.winsock.code} {clean(e.winsock.name)} / {clean(e.posix.name or '-')}"
        for e in f.errors
    )
    if errors:
        message += f"\n{errors}"
    message += f"\nremedy: {clean_block(f.remedy)}"
    message += f"\nframes {frame_ranges(f.frames)}; wireshark: {clean(f.wireshark_filter)}"
    if inc.count > 1:
        ids = ", ".join(str(x.conversation) for x in inc.findings[1:21]) + (", ..." if inc.count > 21 else "")
        message += f"\nalso in conversations {ids}"
    title = f"{inc.rule} {inc.name}" + (f" x{inc.count}" if inc.count > 1 else "")
    return _command(COMMANDS.get(inc.level, "notice"), title, message)
