"""The JSON report (the contract in DESIGN.md "The JSON report") and its JSON Lines variant."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Iterable, Iterator
from types import GeneratorType
from typing import IO, Any

import orjson

from analyzer.model import CaptureResult, Conversation, Finding, SocketErrorSeen
from analyzer.report.common import conversation_total, conversations_by_id, escape_undecodable, summary_counts
from analyzer.report.evidence_names import evidence_file
from analyzer.report.incidents import frame_times, incident_dict, incidents, iso_utc
from analyzer.report.options import ReportOptions
from analyzer.report.path import path_dict

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
        "start_time": iso_utc(conv.start),  # ISO 8601 UTC, to look up in a server's log
        "end_time": iso_utc(conv.end),
    } | ({"path": path_dict(conv.path)} if conv.path is not None else {})  # two captures (analyze --peer)


def conversation_json(conv: Conversation) -> str:
    """The JSON text of conversation_dict(conv) (json's separators, non-ASCII kept), written directly.

    A conversations listing writes one per conversation; making the dictionary and encoding it
    took about 10 us, a tenth of the listing, against 5 us here. tests/test_hardening_stream.py holds
    the two equal on every sample and corpus conversation.
    """
    if conv.path is not None:  # two captures (analyze --peer): the general way
        return json_text(conversation_dict(conv))
    cs, ss = conv.client_stats, conv.server_stats
    return (
        f'{{"id": {conv.id}, "proto": {_str(conv.proto)}, "client": {_str(str(conv.client))}, '
        f'"server": {_str(str(conv.server))}, "state": {_str(conv.state)}, "history": {_str(conv.history)}, '
        f'"frames": [{conv.first_frame}, {conv.last_frame}], '
        f'"bytes": {{"client": {cs.bytes}, "server": {ss.bytes}}}, '
        f'"packets": {{"client": {cs.packets}, "server": {ss.packets}}}, '
        f'"duration": {_number(round(conv.duration, 6))}, '
        f'"role_inferred": {"true" if conv.role_inferred else "false"}, '
        f'"stream": {conv.stream}, "closed_by": {_str(conv.closed_by)}, '
        f'"start_time": {_str(iso_utc(conv.start))}, "end_time": {_str(iso_utc(conv.end))}}}'
    )


# one JSON value as the json module writes it on one line, non-ASCII kept (also report/stream.py's rows):
# json.dumps(value, ensure_ascii=False) would make an encoder per call, and a listing calls it per conversation
json_text: Callable[[Any], str] = json.JSONEncoder(ensure_ascii=False).encode


def _number(x: float) -> str:
    """A float as the json module writes it: its repr, but NaN and Infinity as JSON spells them."""
    return repr(x) if math.isfinite(x) else json_text(x)


_str: Callable[[str], str] = json.encoder.encode_basestring  # json's own quoting of a string (non-ASCII kept)


def error_dict(err: SocketErrorSeen) -> dict[str, Any]:
    """One side's socket error with its spelling on each platform."""
    out: dict[str, Any] = {
        "side": err.side,
        "endpoint": err.endpoint,
        "operation": err.operation,
        "winsock": dataclasses.asdict(err.winsock),
        "posix": dataclasses.asdict(err.posix),
        "seen_as": dataclasses.asdict(err.seen_as),
    }
    if err.note:
        out["note"] = err.note
    return out


def finding_dict(
    finding: Finding, conv: Conversation | None = None, opts: ReportOptions | None = None, capture: str = ""
) -> dict[str, Any]:
    """One finding as the contract writes it (plus falsepositives, alternatives, absolute times, a TLS
    alert when one is on the wire, the evidence file)."""
    out: dict[str, Any] = {
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
        # ISO 8601 UTC of each evidence frame, in the order of `frames` (null if the packet was not kept)
        "frame_times": [None if t is None else iso_utc(t) for t in frame_times(conv, finding)],
    }
    if finding.tls_alert is not None:
        out["tls_alert"] = finding.tls_alert
    where = evidence_file(opts.evidence_dir, capture, finding, conv) if opts is not None else ""
    if where:
        out["evidence_file"] = where
    return out


def capture_dict(result: CaptureResult, opts: ReportOptions, lazy: bool = False) -> dict[str, Any]:
    """One capture's part of the document; `findings` left out for `wsadiag conversations`.

    lazy: its conversations and findings are generators, each made as it is written (json_pieces)."""
    listed = (conversation_dict(c) for c in result.conversations)
    out: dict[str, Any] = {
        "path": result.path,
        "format": result.format,
        "linktypes": list(result.linktypes),
        "packets": result.packets,
        "warnings": [{"code": w.code, "message": w.message, "frame": w.frame} for w in result.warnings],
        "conversations": listed if lazy else list(listed),
        # every conversation seen; `conversations` may list only those with findings (wsadiag analyze)
        "conversation_count": conversation_total(result),
    }
    if not opts.conversations_only:
        convs = conversations_by_id(result)
        found = (finding_dict(f, convs.get(f.conversation), opts, result.path) for f in result.findings)
        out["findings"] = found if lazy else list(found)
    if result.encapsulations:  # only when there were any: older documents stay as they were
        out["encapsulations"] = list(result.encapsulations)
    if result.parts:  # --stitch: which frames each file holds
        out["files"] = [
            {"path": p.path, "first_frame": p.first_frame, "frames": p.frames, "start": p.start} for p in result.parts
        ]
    if result.error:
        out["error"] = result.error
    return out


def to_json_document(
    results: Iterable[CaptureResult], opts: ReportOptions | None = None, lazy: bool = False
) -> dict[str, Any]:
    """The whole JSON report as Python data (what `--format json` prints).

    lazy: the captures, and each capture's conversations and findings, are generators (json_pieces
    writes them one item at a time, so the report never exists whole in memory), and `results`
    may be an iterator whose results are still to come (a process pool's, in order): the summary
    and the incidents, written after the captures, are counted when json_pieces reaches them,
    from the results met by then."""
    opts = opts or ReportOptions()
    met: list[CaptureResult] = []

    def captures() -> Iterator[dict[str, Any]]:
        for r in results:
            met.append(r)
            yield capture_dict(r, opts, lazy)

    if not lazy:
        met = list(results)
    doc = {
        "version": JSON_VERSION,
        "tool": {"name": TOOL_NAME, "version": opts.tool_version},
        "captures": captures() if lazy else [capture_dict(r, opts) for r in met],
        "summary": Later(lambda: summary_counts(met)) if lazy else summary_counts(met),
    }
    if not opts.conversations_only:
        found = Later(lambda: [incident_dict(inc, met) for inc in incidents(met)])
        doc["incidents"] = found if lazy else found.make()
    return doc


@dataclasses.dataclass(frozen=True, slots=True)
class Later:
    """A value of the document that json_pieces makes only when it reaches it."""

    make: Callable[[], Any]


def render_json(results: Iterable[CaptureResult], opts: ReportOptions) -> Iterator[str]:
    """`--format json`: the document, indented, keys in contract order, non-ASCII kept; written a
    piece at a time (the bytes dumps_indented gives for the whole document), each capture's as
    its result comes."""
    return json_pieces(to_json_document(results, opts, lazy=True))


def json_pieces(value: Any, depth: int = 0) -> Iterator[str]:
    """`value` as dumps_indented writes it, in pieces: generators (lists made one item at a time)
    and the dicts that hold one are walked here; anything else is one piece written by orjson
    and indented to its depth. JSON strings hold no raw line break, so every line break orjson
    writes is one of its own, where the depth's indentation goes. A piece orjson refuses (an
    integer beyond 64 bits) is written by the json module alone, not the whole document as
    dumps_indented does: the same values, small and large numbers spelled its way in that piece."""
    if isinstance(value, Later):
        value = value.make()
    if isinstance(value, GeneratorType) or (
        isinstance(value, dict) and any(isinstance(v, (GeneratorType, Later)) for v in value.values())
    ):
        yield from _container_pieces(value, depth)
    else:
        text = dumps_indented(value)[:-1]
        yield text.replace("\n", "\n" + "  " * depth) if depth and "\n" in text else text
    if not depth:
        yield "\n"


def _container_pieces(value: dict[str, Any] | Iterator[Any], depth: int) -> Iterator[str]:
    if isinstance(value, dict):
        items: Iterator[tuple[str, Any]] = ((orjson.dumps(k).decode("utf-8") + ": ", v) for k, v in value.items())
        brackets = "{}"
    else:
        items = (("", v) for v in value)
        brackets = "[]"
    inner = "\n" + "  " * (depth + 1)
    opened = False
    for key, item in items:
        yield (brackets[0] if not opened else ",") + inner + key
        opened = True
        yield from json_pieces(item, depth + 1)
    yield "\n" + "  " * depth + brackets[1] if opened else brackets


def dumps_indented(doc: Any) -> str:
    """A document as indented JSON (two spaces), non-ASCII kept, with a final newline.

    orjson writes it several times faster than the json module (which has no C encoder for
    indented output), with the same bytes but for the spelling of very small or large numbers
    (1e-05 against 0.00001: the same value to any JSON reader). What orjson refuses (an integer
    beyond 64 bits, a key that is not a string) goes through the json module.
    """
    try:
        return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode("utf-8") + "\n"
    except TypeError:
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def _finding_record(path: str, conv: Conversation | None, finding: Finding, opts: ReportOptions) -> str:
    """One `"kind": "finding"` line: readable alone (capture, endpoints, state)."""
    record: dict[str, Any] = {"kind": "finding", "capture": path}
    if conv is not None:
        record.update(proto=conv.proto, client=str(conv.client), server=str(conv.server), state=conv.state)
    record.update(finding_dict(finding, conv, opts, path))
    if conv is not None and conv.path is not None:  # two captures: the line carries its path, as the JSON does
        record["path"] = path_dict(conv.path)
    return json.dumps(record, ensure_ascii=False)


def _closing_records(results: list[CaptureResult], opts: ReportOptions) -> list[str]:
    """The lines after the findings: unreadable captures, then one `"kind": "summary"` line."""
    lines = [
        json.dumps({"kind": "capture-error", "capture": r.path, "error": r.error}, ensure_ascii=False)
        for r in results
        if r.error
    ]
    summary = {
        "kind": "summary",
        **summary_counts(results),
        "captures": len(results),
        "conversations": sum(conversation_total(r) for r in results),
        "incidents": [incident_dict(inc, results) for inc in incidents(results)],
    }
    return lines + [json.dumps(summary, ensure_ascii=False)]


def render_jsonl(results: list[CaptureResult], opts: ReportOptions) -> str:
    """`--format jsonl`: one self-contained record per line, for log pipelines.

    Each finding line carries the capture path and the conversation's endpoints, state and
    proto, so a line can be read alone. A capture that could not be read gives one
    `"kind": "capture-error"` line, so failures are not silently missing from a log; the last
    line is `"kind": "summary"` (counts and incidents). With conversations_only, one line per
    conversation instead.
    """
    lines: list[str] = []
    if opts.conversations_only:
        for result in results:
            if result.error:
                lines.append(
                    json.dumps(
                        {"kind": "capture-error", "capture": result.path, "error": result.error}, ensure_ascii=False
                    )
                )
            for conv in result.conversations:
                lines.append(
                    json.dumps(
                        {"kind": "conversation", "capture": result.path, **conversation_dict(conv)}, ensure_ascii=False
                    )
                )
        return "".join(one_line(line) + "\n" for line in lines)
    for result in results:
        convs = conversations_by_id(result)
        lines += [_finding_record(result.path, convs.get(f.conversation), f, opts) for f in result.findings]
    lines += _closing_records(results, opts)
    return "".join(one_line(line) + "\n" for line in lines)


class LiveJsonl:
    """`--format jsonl` while the capture is read: each finding written (and flushed) as its
    conversation ends, so a log pipeline fed by `tcpdump -U -w - | wsadiag analyze -` sees
    failures as they happen; the capture errors and the summary line come at the end."""

    def __init__(self, stream: IO[str], opts: ReportOptions | None = None) -> None:
        self.stream = stream
        self.opts = opts or ReportOptions()

    def for_capture(self, path: str) -> Callable[[Conversation, list[Finding]], None]:
        """The pipeline's on_findings callback for one capture."""
        path = escape_undecodable(path)  # as every other report names it

        def write(conv: Conversation, findings: list[Finding]) -> None:
            for finding in findings:
                self.stream.write(one_line(_finding_record(path, conv, finding, self.opts)) + "\n")
            self.stream.flush()

        return write

    def finish(self, results: list[CaptureResult], opts: ReportOptions) -> str:
        """What is left to write once every capture has been read."""
        return "".join(one_line(line) + "\n" for line in _closing_records(results, opts))


# Characters that some line readers (Python's str.splitlines, JavaScript) take as line ends;
# json.dumps writes them raw with ensure_ascii=False. They can only occur inside JSON strings,
# where the \uXXXX spelling means the same.
_LINE_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def one_line(record: str) -> str:
    """A JSON text with the Unicode line and paragraph separators escaped: one record, one line."""
    return record.translate(_LINE_BREAKS)
