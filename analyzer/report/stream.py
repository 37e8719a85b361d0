"""`wsadiag conversations` written as conversations end, so its memory does not grow with the listing.

The batch renderers (text.py, jsondoc.py) take whole CaptureResults; this writer takes each
conversation as the flow table hands it on and writes it at once. What a capture's header needs
(format, packets, warnings) is known only at its end, so it is written after the rows: in text
as the capture's closing line, in JSON as the keys after `conversations` (the same keys as the
batch document; key order carries no meaning in JSON). Conversations appear in the order they
ended, not by id.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, TextIO

from analyzer.model import CaptureResult, Conversation
from analyzer.report.common import clean, display_path, escape_undecodable, fmt_duration, plural
from analyzer.report.jsondoc import JSON_VERSION, TOOL_NAME, conversation_dict, conversation_json, one_line
from analyzer.report.jsondoc import json_text as _json
from analyzer.report.options import ReportOptions
from analyzer.report.text import CONVERSATION_COLUMNS

STREAM_FORMATS = ("text", "json", "jsonl")
# Column widths for rows written before the longest is known: an IPv4 endpoint fits, IPv6 pushes on.
TEXT_WIDTHS = (6, 5, 22, 21, 6, 12, 9, 15, 13, 9)
TEXT_NUMERIC = frozenset({0, 6, 7, 8, 9})
BOLD, RESET = "\x1b[1m", "\x1b[0m"


class ConversationStream:
    """Writes the conversations listing in `fmt` to `out`, one conversation at a time."""

    def __init__(self, fmt: str, out: TextIO, opts: ReportOptions) -> None:
        if fmt not in STREAM_FORMATS:
            raise ValueError(f"no streaming writer for {fmt!r}")
        self.fmt = fmt
        self.opts = opts
        self._out = out
        self._broken = False  # the reader of standard output went away: nothing more is written
        self._path = ""
        self._rows = 0  # conversations written for the current capture
        self._inferred = False
        self._total = 0
        self._captures = 0
        if fmt == "json":
            tool = json.dumps({"name": TOOL_NAME, "version": opts.tool_version})
            self._write(f'{{\n  "version": {JSON_VERSION},\n  "tool": {tool},\n  "captures": [')

    # -- the three moments of a capture ----------------------------------------------------

    def capture_start(self, path: str) -> None:
        """A capture is about to be read."""
        self._path = escape_undecodable(path)
        self._rows = 0
        self._inferred = False
        if self.fmt == "json":
            sep = "," if self._captures else ""
            self._write(f'{sep}\n    {{\n      "path": {_json(self._path)},\n      "conversations": [')
        elif self.fmt == "text":
            self._write(self._bold(clean(display_path(self._path))) + "\n")
        self._captures += 1

    def conversation(self, conv: Conversation) -> None:
        """One conversation has ended: write its row."""
        self._total += 1
        if self.fmt == "jsonl":
            record = {"kind": "conversation", "capture": self._path, **conversation_dict(conv)}
            self._write(one_line(_json(record)) + "\n")
        elif self.fmt == "json":
            sep = "," if self._rows else ""
            self._write(f"{sep}\n        {conversation_json(conv)}")
        else:
            if not self._rows:
                self._write(self._bold(_text_row(CONVERSATION_COLUMNS)) + "\n")
            self._inferred = self._inferred or conv.role_inferred
            self._write(_text_row(_cells(conv)) + "\n")
        self._rows += 1

    def capture_end(self, result: CaptureResult) -> None:
        """The capture has been read: write what is known only now."""
        error = escape_undecodable(result.error) if result.error else None
        if self.fmt == "jsonl":
            if error:
                self._write(one_line(_json({"kind": "capture-error", "capture": self._path, "error": error})) + "\n")
        elif self.fmt == "json":
            self._write(self._json_tail(result, error))
        else:
            self._write("\n".join(self._text_tail(result, error)) + "\n\n")

    def finish(self, results: list[CaptureResult]) -> None:
        """All captures are read: close the document."""
        if self.fmt == "json":
            summary = json.dumps({"errors": 0, "warnings": 0, "info": 0})
            self._write(f'\n  ],\n  "summary": {summary}\n}}\n')
        elif self.fmt == "text":
            self._write(f"{plural(self._total, 'conversation')} in {plural(len(results), 'capture')}\n")
        self._flush()

    # -- pieces ------------------------------------------------------------------------------

    def _json_tail(self, result: CaptureResult, error: str | None) -> str:
        tail: dict[str, Any] = {
            "format": result.format,
            "linktypes": list(result.linktypes),
            "packets": result.packets,
            "warnings": [{"code": w.code, "message": w.message, "frame": w.frame} for w in result.warnings],
            "conversation_count": max(result.conversation_count, self._rows),
        }
        if result.encapsulations:  # as jsondoc.capture_dict writes it: only when there were any
            tail["encapsulations"] = list(result.encapsulations)
        if error:
            tail["error"] = error
        close = "\n      ]" if self._rows else "]"
        keys = "".join(f',\n      "{k}": {_json(v)}' for k, v in tail.items())
        return f"{close}{keys}\n    }}"

    def _text_tail(self, result: CaptureResult, error: str | None) -> list[str]:
        name = clean(display_path(self._path))
        if error:
            return [f"{self._bold(name)}: cannot read: {clean(error)}"]
        linktypes = ",".join(clean(t) for t in result.linktypes) or "?"
        lines = []
        if self._inferred:
            lines.append("  ? roles inferred: the handshake is not in the capture")
        count = max(result.conversation_count, self._rows)
        lines.append(
            f"{self._bold(name)}: {clean(result.format) or '?'} {linktypes}, {result.packets} packets, "
            f"{plural(count, 'conversation')}"
        )
        for w in result.warnings:
            where = f" (frame {w.frame})" if w.frame is not None else ""
            lines.append(f"  capture warning {clean(w.code)}{where}: {clean(w.message)}")
        return lines

    def _bold(self, text: str) -> str:
        return f"{BOLD}{text}{RESET}" if self.opts.color else text

    def _write(self, text: str) -> None:
        if self._broken:
            return
        try:
            self._out.write(text)
        except BrokenPipeError:
            self._went_away()

    def _flush(self) -> None:
        if self._broken:
            return
        try:
            self._out.flush()
        except BrokenPipeError:
            self._went_away()

    def _went_away(self) -> None:
        """`wsadiag conversations ... | head`: stop writing; the exit status still tells how the run went."""
        self._broken = True
        if self._out is sys.stdout:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())


def _cells(c: Conversation) -> tuple[str, ...]:
    return (
        str(c.id),
        c.proto,
        clean(c.client) + ("?" if c.role_inferred else ""),
        clean(c.server),
        clean(c.state),
        clean(c.history),
        f"{c.client_stats.packets}/{c.server_stats.packets}",
        f"{c.client_stats.bytes}/{c.server_stats.bytes}",
        f"{c.first_frame}-{c.last_frame}",
        fmt_duration(c.duration),
    )


def _text_row(cells: tuple[str, ...]) -> str:
    padded = [
        cell.rjust(width) if i in TEXT_NUMERIC else cell.ljust(width)
        for i, (cell, width) in enumerate(zip(cells, TEXT_WIDTHS))
    ]
    return ("  " + "  ".join(padded)).rstrip()
