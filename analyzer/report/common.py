"""Helpers every report format shares: level order, counting, escaping, rule lookup."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from analyzer.frames import frame_runs
from analyzer.model import LEVELS, CaptureResult, Conversation, Finding
from analyzer.report.options import RuleCatalogue

# Severity order: lower rank = more severe. "never" ranks above every level so nothing reaches it.
LEVEL_RANK: dict[str, int] = {level: rank for rank, level in enumerate(LEVELS)}

FailOn = Literal["error", "warning", "info", "never"]
FAIL_ON: tuple[FailOn, ...] = (*LEVELS, "never")  # what --fail-on accepts


def at_or_above(level: str, fail_on: str) -> bool:
    """Whether a finding of `level` reaches the `--fail-on` threshold: the one place that decides it."""
    if fail_on == "never":
        return False
    return LEVEL_RANK.get(level, len(LEVELS)) <= LEVEL_RANK.get(fail_on, len(LEVELS))


def fails(results: Iterable[CaptureResult], fail_on: str) -> bool:
    """Whether any finding reaches the `--fail-on` threshold (the exit status and junit agree on it)."""
    return any(at_or_above(f.level, fail_on) for r in results for f in r.findings)


def summary_counts(results: Iterable[CaptureResult]) -> dict[str, int]:
    """Findings per level over all captures, keyed as the JSON contract's summary."""
    counts = {"errors": 0, "warnings": 0, "info": 0}
    key = {"error": "errors", "warning": "warnings", "info": "info"}
    for result in results:
        for finding in result.findings:
            counts[key.get(finding.level, "info")] += 1
    return counts


def conversations_by_id(result: CaptureResult) -> dict[int, Conversation]:
    """The capture's conversations keyed by Conversation.id (findings refer to them by id)."""
    return {conv.id: conv for conv in result.conversations}


def findings_by_conversation(result: CaptureResult) -> dict[int, list[Finding]]:
    """Findings grouped by conversation id, most severe first, groups in conversation order."""
    groups: dict[int, list[Finding]] = {}
    for finding in sorted(result.findings, key=lambda f: (f.conversation, LEVEL_RANK.get(f.level, 9), f.rule)):
        groups.setdefault(finding.conversation, []).append(finding)
    return groups


def conversation_total(result: CaptureResult) -> int:
    """All conversations the capture held: `conversations` may keep only those with findings."""
    return max(result.conversation_count, len(result.conversations))


def plural(n: int, word: str, many: str | None = None) -> str:
    """'1 error', '2 errors' ('info' stays 'info')."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


def summary_line(results: list[CaptureResult]) -> str:
    """One line a user reads last: counts per level, captures and conversations."""
    counts = summary_counts(results)
    convs = sum(conversation_total(r) for r in results)
    failed = sum(1 for r in results if r.error)
    line = (
        f"{plural(counts['errors'], 'error')}, {plural(counts['warnings'], 'warning')}, "
        f"{counts['info']} info in {plural(len(results), 'capture')} ({plural(convs, 'conversation')})"
    )
    if failed:
        line += f"; {failed} could not be read"
    return line


def frame_ranges(frames: Iterable[int]) -> str:
    """Frame numbers compressed to ranges: (14, 15, 16, 20) -> '14-16, 20'."""
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in frame_runs(frames))


def fmt_duration(seconds: float) -> str:
    """A duration short enough for a table cell: 0.000412s, 1.204s, 5m 12s."""
    if seconds < 0:
        seconds = 0.0
    if seconds < 10:
        return f"{seconds:.6f}s" if seconds < 0.01 else f"{seconds:.3f}s"
    if seconds < 120:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 120:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


# Characters never written raw to a terminal: C0 and C1 controls, DEL, and the Unicode
# format characters that reorder or hide text (bidi overrides: CVE-2021-42574 "Trojan Source").
# These classes (and _XML_FORBIDDEN) are compiled on first use (_pattern): a JSON report uses
# none of them, and compiling them is a millisecond of every start-up.
_UNSAFE_TERM = "[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]"
_UNSAFE_TERM_KEEP_NL = "[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]"


# Kept here rather than left to re's own cache: re.sub with a pattern string looks it up there on
# every call, twice the cost of the substitution on a short cell, and a text listing has
# hundreds of thousands of them.
_pattern = functools.cache(re.compile)


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clean(text: object) -> str:
    """A capture-derived string made safe for one terminal line: controls shown as \\xNN."""
    return _pattern(_UNSAFE_TERM).sub(_escape_char, str(text))


def clean_block(text: object) -> str:
    """Like clean() but keeps newlines: for multi-line rule text (cause, remedy)."""
    return _pattern(_UNSAFE_TERM_KEEP_NL).sub(_escape_char, str(text))


# XML 1.0 section 2.2 Char production: everything else is forbidden even as a character reference.
# Written as the complement of the Char ranges (tab, LF, CR, U+0020-U+D7FF, U+E000-U+FFFD and
# U+10000-U+10FFFF): the same characters, but a negated class over those ranges takes re about
# 4 ms to compile, a noticeable part of every start-up.
_XML_FORBIDDEN = "[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]"


def xml_safe(text: object) -> str:
    """A string with the characters XML 1.0 forbids replaced by their \\xNN spelling."""
    return _pattern(_XML_FORBIDDEN).sub(_escape_char, str(text))


def _field(record: Any, name: str, default: Any = "") -> Any:
    if isinstance(record, Mapping):
        return record.get(name, default)
    return getattr(record, name, default)


def rule_records(rules: RuleCatalogue | None) -> list[dict[str, Any]]:
    """The rule catalogue as plain dicts (code, name, title, level, description, doc), by code.

    Accepts whatever the rules layer hands over: a mapping code -> rule, or an iterable of rule
    records (dataclasses or dicts) having at least `code`; missing fields become "".
    """
    if rules is None:
        return []
    items = rules.values() if isinstance(rules, Mapping) else rules
    records = []
    for rule in items:
        code = str(_field(rule, "code"))
        if not code:
            continue
        records.append(
            {
                "code": code,
                "name": str(_field(rule, "name")),
                "title": str(_field(rule, "title")),
                "level": str(_field(rule, "level", "warning")),
                "description": str(_field(rule, "description") or _field(rule, "cause") or ""),
                "doc": str(_field(rule, "doc") or ""),
            }
        )
    return sorted(records, key=lambda r: r["code"])


def display_path(path: str) -> str:
    """How a capture is named in reports: '-' (standard input) is spelled out."""
    return "<stdin>" if path == "-" else path


# Lone surrogates: what Python makes of file-name bytes that are not UTF-8 (PEP 383); no encoder
# writes them, so a name holding one is shown with those bytes escaped instead.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _escape_surrogate(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"


def escape_undecodable(text: str) -> str:
    """A name with the bytes that were not UTF-8 spelled \\xNN, so every report can encode it."""
    return _SURROGATE.sub(_escape_surrogate, text) if _SURROGATE.search(text) else text
