"""The names of the per-finding evidence captures (`--evidence DIR`), shared by writer and reports."""

from __future__ import annotations

import os
import re

from analyzer.errors import UsageError
from analyzer.model import Conversation, Finding
from analyzer.report.common import escape_undecodable

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
LABEL_MAX = 100  # characters of the capture's path kept in a name (a file name may have 255 bytes)


def capture_label(capture: str) -> str:
    """The capture as given, file-name safe: 'ci-job-1-traffic.pcap' for ci/job-1/traffic.pcap.

    Conversation numbers start at 1 in every capture, so the evidence of captures read together
    (a folder of them, or --peer) is told apart by this: by the path, since two folders often hold
    captures of the same name. Long paths keep their end, where the file name is. The name is
    escaped first, so that the writer (raw names) and the reports (escaped names) agree."""
    label = _UNSAFE.sub("-", escape_undecodable(capture)).strip("-.")[-LABEL_MAX:].lstrip("-.")
    return label or "stdin"


def evidence_name(capture: str, finding: Finding, conv: Conversation) -> str:
    """'traffic.pcap-conv12-CON001-203.0.113.43-8443.pcapng': capture, conversation, rule and server, file-name safe."""
    server = _UNSAFE.sub("-", f"{conv.server.addr}-{conv.server.port}").strip("-")
    return f"{capture_label(capture)}-conv{conv.id}-{_UNSAFE.sub('-', finding.rule)}-{server}.pcapng"


def evidence_file(directory: str, capture: str, finding: Finding, conv: Conversation | None) -> str:
    """The evidence capture `--evidence DIR` writes for this finding, as the reports name it; "" when
    it writes none: no --evidence, the conversation not kept, standard input (not read again), or
    no capture named (a caller that has none)."""
    if not directory or conv is None or capture in ("", "-"):
        return ""
    return evidence_path(directory, capture, finding, conv)


def evidence_path(directory: str, capture: str, finding: Finding, conv: Conversation) -> str:
    """Where the evidence capture of a finding of capture `capture` is written: DIR/name."""
    return os.path.join(directory, evidence_name(capture, finding, conv))


def check_distinct(captures: list[str]) -> None:
    """Refuse, before any capture is read, two captures whose evidence files would have the same names."""
    seen: dict[str, str] = {}
    for capture in captures:
        if capture == "-":  # standard input is not read again: it gets no evidence files
            continue
        first = seen.setdefault(capture_label(capture), capture)
        if first != capture and os.path.realpath(first) != os.path.realpath(capture):
            raise UsageError(
                f"--evidence: {first} and {capture} would write their evidence under the same names",
                hint="rename one of them, or give each its own run and --evidence folder",
            )
