"""The JSON report (the contract in DESIGN.md "The JSON report") and its JSON Lines variant."""

from __future__ import annotations

import json
from typing import Any

from analyzer.model import CaptureResult, Conversation, Finding, SocketErrorSeen
from analyzer.report.common import conversation_total, conversations_by_id, summary_counts
from analyzer.report.options import ReportOptions

JSON_VERSION = 1  # bump when a field of the contract is renamed or removed
TOOL_NAME = "wsadiag"


def conversation_dict(conv: Conversation) -> dict[str, Any]:
    """One conversation as the contract writes it (plus role_inferred, packets, duration, stream)."""
    return {
        "id": conv.id,
        "proto": conv.proto,
        "client": str(conv.client),
        "server": str(conv.server),
        "state": conv.state,
        "history": conv.history,
        "frames": [conv.first_frame, conv.last_frame],
        "bytes": {"client": conv.client_stats.bytes, "server": conv.server_stats.bytes},
        "packets": {"client": conv.client_stats.packets, "server": conv.server_stats.packets},
        "duration": round(conv.duration, 6),
        "role_inferred": conv.role_inferred,
        "stream": conv.stream,
        "closed_by": conv.closed_by,
    }


def error_dict(err: SocketErrorSeen) -> dict[str, Any]:
    """One side's socket error with its spelling on each platform."""
    out: dict[str, Any] = {
        "side": err.side,
        "endpoint": err.endpoint,
        "operation": err.operation,
        "winsock": dict(err.winsock),
        "posix": dict(err.posix),
        "seen_as": dict(err.seen_as),
    }
    if err.note:
        out["note"] = err.note
    return out


def finding_dict(finding: Finding) -> dict[str, Any]:
    """One finding as the contract writes it (plus falsepositives)."""
    return {
        "rule": finding.rule,
        "name": finding.name,
        "level": finding.level,
        "title": finding.title,
        "message": finding.message,
        "conversation": finding.conversation,
        "errors": [error_dict(e) for e in finding.errors],
        "cause": finding.cause,
        "remedy": finding.remedy,
        "confidence": finding.confidence,
        "frames": list(finding.frames),
        "wireshark_filter": finding.wireshark_filter,
        "references": list(finding.references),
        "falsepositives": list(finding.falsepositives),
        "also_consistent_with": [
            {"rule": a.rule, "name": a.name, "title": a.title, "message": a.message, "confidence": a.confidence}
            for a in finding.also
        ],
    }


def capture_dict(result: CaptureResult, opts: ReportOptions) -> dict[str, Any]:
    """One capture's part of the document; `findings` left out for `wsadiag conversations`."""
    out: dict[str, Any] = {
        "path": result.path,
        "format": result.format,
        "linktypes": list(result.linktypes),
        "packets": result.packets,
        "warnings": [{"code": w.code, "message": w.message, "frame": w.frame} for w in result.warnings],
        "conversations": [conversation_dict(c) for c in result.conversations],
        # every conversation seen; `conversations` may list only those with findings (wsadiag analyze)
        "conversation_count": conversation_total(result),
    }
    if not opts.conversations_only:
        out["findings"] = [finding_dict(f) for f in result.findings]
    if result.encapsulations:  # only when there were any: older documents stay as they were
        out["encapsulations"] = list(result.encapsulations)
    if result.error:
        out["error"] = result.error
    return out


def to_json_document(results: list[CaptureResult], opts: ReportOptions | None = None) -> dict[str, Any]:
    """The whole JSON report as Python data (what `--format json` prints)."""
    opts = opts or ReportOptions()
    return {
        "version": JSON_VERSION,
        "tool": {"name": TOOL_NAME, "version": opts.tool_version},
        "captures": [capture_dict(r, opts) for r in results],
        "summary": summary_counts(results),
    }


def render_json(results: list[CaptureResult], opts: ReportOptions) -> str:
    """`--format json`: the document, indented, keys in contract order, non-ASCII kept."""
    return json.dumps(to_json_document(results, opts), indent=2, ensure_ascii=False) + "\n"


def render_jsonl(results: list[CaptureResult], opts: ReportOptions) -> str:
    """`--format jsonl`: one self-contained record per line, for log pipelines.

    Each finding line carries the capture path and the conversation's endpoints, state and
    proto, so a line can be read alone. A capture that could not be read gives one
    `"kind": "capture-error"` line, so failures are not silently missing from a log.
    With conversations_only, one line per conversation instead.
    """
    lines: list[str] = []
    for result in results:
        if result.error:
            lines.append(
                json.dumps({"kind": "capture-error", "capture": result.path, "error": result.error}, ensure_ascii=False)
            )
        if opts.conversations_only:
            for conv in result.conversations:
                lines.append(
                    json.dumps(
                        {"kind": "conversation", "capture": result.path, **conversation_dict(conv)}, ensure_ascii=False
                    )
                )
            continue
        convs = conversations_by_id(result)
        for finding in result.findings:
            conv = convs.get(finding.conversation)
            record: dict[str, Any] = {"kind": "finding", "capture": result.path}
            if conv is not None:
                record.update(proto=conv.proto, client=str(conv.client), server=str(conv.server), state=conv.state)
            record.update(finding_dict(finding))
            lines.append(json.dumps(record, ensure_ascii=False))
    return "".join(line + "\n" for line in lines)
