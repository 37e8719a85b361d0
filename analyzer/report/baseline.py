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
from dataclasses import replace
from pathlib import Path, PurePath

from analyzer.errors import UsageError
from analyzer.model import CaptureResult, Conversation, Finding
from analyzer.report.common import conversations_by_id

BASELINE_VERSION = 1

Key = tuple[str, str, str, str]  # rule, client address, server endpoint, capture file name


def capture_name(path: str) -> str:
    """The capture's file name (both / and \\ separators), '-' for standard input."""
    return PurePath(path.replace("\\", "/")).name or path


def finding_key(result: CaptureResult, finding: Finding, conv: Conversation | None) -> Key:
    """The baseline key of one finding."""
    client = conv.client.addr if conv is not None else ""
    server = str(conv.server) if conv is not None else ""
    return (finding.rule, client, server, capture_name(result.path))


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
        Path(path).write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write baseline {path}: {exc.strerror or exc}") from None
    return len(doc["findings"])


def load_baseline(path: str | Path) -> set[Key]:
    """The keys of a baseline file; a file that is not one raises UsageError naming it."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read baseline {path}: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"baseline {path} is not JSON: {exc}", hint="write one with --write-baseline FILE") from None
    if not isinstance(doc, dict) or doc.get("version") != BASELINE_VERSION or not isinstance(doc.get("findings"), list):
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


def apply_baseline(results: list[CaptureResult], path: str | Path) -> tuple[list[CaptureResult], int]:
    """The results with every baselined finding removed, and how many were removed."""
    known = load_baseline(path)
    out: list[CaptureResult] = []
    suppressed = 0
    for result in results:
        convs = conversations_by_id(result)
        kept = [f for f in result.findings if finding_key(result, f, convs.get(f.conversation)) not in known]
        suppressed += len(result.findings) - len(kept)
        out.append(replace(result, findings=kept))
    return out, suppressed
