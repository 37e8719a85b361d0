"""The names of the per-finding evidence captures (`--evidence DIR`), shared by writer and reports."""

from __future__ import annotations

import os
import re

from analyzer.model import Conversation, Finding

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def evidence_name(finding: Finding, conv: Conversation) -> str:
    """'conv12-CON001-203.0.113.43-8443.pcapng': conversation, rule and server, file-name safe."""
    server = _UNSAFE.sub("-", f"{conv.server.addr}-{conv.server.port}").strip("-")
    return f"conv{conv.id}-{_UNSAFE.sub('-', finding.rule)}-{server}.pcapng"


def evidence_path(directory: str, finding: Finding, conv: Conversation) -> str:
    """Where the evidence capture of a finding is written: DIR/name."""
    return os.path.join(directory, evidence_name(finding, conv))
