"""Baselines: a file of known findings to leave out of later runs (`--baseline`, `--write-baseline`).

A finding is keyed by (rule, client address, server endpoint, capture file name).
The client's *port* is deliberately not part of the key: a client picks a new ephemeral port
for every connection, so a key with it would match nothing the next time the same failure is
captured. The server's port is kept: it names the service. The capture is keyed by its file name,
not its path, so a baseline written in one checkout works in another. One consequence: every
finding of the same rule between the same client host and service in that capture is suppressed
together, which is what "this one is known" means for repeated connections.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from dataclasses import replace
from pathlib import Path, PurePath

from analyzer.errors import UsageError
from analyzer.model import CaptureResult, Conversation, Finding
from analyzer.report.common import conversations_by_id, escape_undecodable
from analyzer.report.output import atomic_write_text

BASELINE_VERSION = 1
# A baseline lists a few thousand keys at most; a file past this is not one (and is not read).
MAX_BASELINE_BYTES = 64 << 20

Key = tuple[str, str, str, str]  # rule, client address, server endpoint, capture file name


def capture_name(path: str) -> str:
    """The capture's file name (both / and \\ separators), '-' for standard input.

    A backslash that starts an escaped byte (\\xe9, as reports spell a name that is not UTF-8) is
    not a separator, so a name gives the same key before and after it is escaped.
    """
    return PurePath(_SEPARATOR.sub("/", path)).name or path


_SEPARATOR = re.compile(r"\\(?!x[89a-f][0-9a-f])")


def finding_key(result: CaptureResult, finding: Finding, conv: Conversation | None) -> Key:
    """The baseline key of one finding."""
    client = conv.client.addr if conv is not None else ""
    server = str(conv.server) if conv is not None else ""
    # the name as reports show it: a name that is not UTF-8 is keyed with those bytes escaped
    return (finding.rule, client, server, escape_undecodable(capture_name(result.path)))


def fingerprint(key: Key) -> str:
    """A stable hex digest of a key (SARIF partialFingerprints use the same identity)."""
    return hashlib.sha256("\x1f".join(key).encode("utf-8")).hexdigest()[:32]


def _keys(results: list[CaptureResult]) -> list[Key]:
    keys: set[Key] = set()
    for result in results:
        convs = conversations_by_id(result)
        for f in result.findings:
            keys.add(finding_key(result, f, convs.get(f.conversation)))
    return sorted(keys)


def baseline_document(results: list[CaptureResult]) -> dict:
    """The baseline file's content for these results."""
    return {
        "version": BASELINE_VERSION,
        "key": ["rule", "client_address", "server", "capture"],
        "findings": [dict(zip(("rule", "client_address", "server", "capture"), k)) for k in _keys(results)],
    }


def write_baseline(results: list[CaptureResult], path: str | Path) -> int:
    """Write every finding of `results` to a baseline file; returns how many keys were written."""
    doc = baseline_document(results)
    try:
        atomic_write_text(path, json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    except OSError as exc:
        raise UsageError(f"cannot write baseline {path}: {exc.strerror or exc}") from None
    return len(doc["findings"])


def read_small_file(path: str | Path, what: str, limit: int) -> bytes:
    """The bytes of a regular file no larger than `limit`; anything else raises UsageError naming it.

    Checked before reading: a FIFO would hang the read, a link to /dev/zero would never end, and a
    huge file would be held whole in memory before any check of its content.
    """
    try:
        st = os.stat(path)
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise UsageError(f"{what} {path} is {kind}")
    if st.st_size > limit:
        raise UsageError(f"{what} {path} is larger than {limit >> 20} MiB ({st.st_size} bytes); refused")
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(data) > limit:  # it grew after the check
        raise UsageError(f"{what} {path} is larger than {limit >> 20} MiB; refused")
    return data


def load_baseline(path: str | Path) -> set[Key]:
    """The keys of a baseline file; a file that is not one raises UsageError naming it."""
    raw = read_small_file(path, "baseline", MAX_BASELINE_BYTES)
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"baseline {path} is not JSON: {exc}", hint="write one with --write-baseline FILE") from None
    except RecursionError:
        raise UsageError(f"baseline {path} is nested too deeply to be a baseline") from None
    version = doc.get("version") if isinstance(doc, dict) else None
    # type() and not ==: JSON true is Python True, which equals 1
    if type(version) is not int or version != BASELINE_VERSION or not isinstance(doc.get("findings"), list):
        raise UsageError(
            f"baseline {path} is not a wsadiag baseline (version {BASELINE_VERSION})",
            hint="write one with --write-baseline FILE",
        )
    keys: set[Key] = set()
    for i, entry in enumerate(doc["findings"]):
        if not isinstance(entry, dict) or not all(
            isinstance(entry.get(k), str) for k in ("rule", "client_address", "server", "capture")
        ):
            raise UsageError(f"baseline {path}: entry {i + 1} lacks rule, client_address, server or capture")
        keys.add((entry["rule"], entry["client_address"], entry["server"], entry["capture"]))
    return keys


def apply_baseline(results: list[CaptureResult], path: str | Path | set[Key]) -> tuple[list[CaptureResult], int]:
    """The results with every baselined finding removed, and how many were removed.

    `path` may be the keys already loaded (the command line loads them before the analysis).
    """
    known = path if isinstance(path, set) else load_baseline(path)
    out: list[CaptureResult] = []
    suppressed = 0
    for result in results:
        convs = conversations_by_id(result)
        kept = [f for f in result.findings if finding_key(result, f, convs.get(f.conversation)) not in known]
        suppressed += len(result.findings) - len(kept)
        out.append(replace(result, findings=kept))
    return out, suppressed
