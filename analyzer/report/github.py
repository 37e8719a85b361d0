"""GitHub Actions workflow commands: one annotation line per finding.

Escaping follows the Actions runner (actions/toolkit core/src/command.ts): in the message
`%`, CR and LF are percent-encoded; in properties also `:` and `,`. Other control characters are
spelled \\xNN (common.clean) so a capture cannot send ANSI sequences into the job log.
"""

from __future__ import annotations

from analyzer.model import CaptureResult
from analyzer.report.common import clean, clean_block, conversations_by_id, display_path, frame_ranges
from analyzer.report.options import ReportOptions

# Finding level -> workflow command (GitHub has error, warning and notice).
COMMANDS: dict[str, str] = {"error": "error", "warning": "warning", "info": "notice"}


def escape_data(text: str) -> str:
    """A workflow command's message part."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command's property value (title=...)."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _command(kind: str, title: str, message: str) -> str:
    return f"::{kind} title={escape_property(clean(title))}::{escape_data(message)}"


def render_github(results: list[CaptureResult], opts: ReportOptions) -> str:
    """`--format github`: `::error title=RST003 stray-ack-after-fin::...` lines."""
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
            continue
        convs = conversations_by_id(result)
        for f in result.findings:
            conv = convs.get(f.conversation)
            where = f"{path} conversation {f.conversation}"
            if conv is not None:
                where += f" {conv.proto} {clean(conv.client)} -> {clean(conv.server)} ({clean(conv.state)})"
            errors = "; ".join(
                f"{clean(e.side)} sees {(e.winsock or {}).get('code', '?')} {clean((e.winsock or {}).get('name', ''))}"
                f" / {clean((e.posix or {}).get('name', ''))}"
                for e in f.errors
            )
            message = f"{where}: {clean_block(f.message)}"
            if errors:
                message += f"\n{errors}"
            message += f"\nremedy: {clean_block(f.remedy)}"
            message += f"\nframes {frame_ranges(f.frames)}; wireshark: {clean(f.wireshark_filter)}"
            lines.append(_command(COMMANDS.get(f.level, "notice"), f"{f.rule} {f.name}", message))
    return "".join(line + "\n" for line in lines)
