"""SARIF 2.1.0 (OASIS) for code-scanning dashboards: one run, one result per finding.

The analysed "artifact" is the capture file; a finding has no line in it, so the frame numbers go
in the result's properties and the conversation is a logical location. partialFingerprints carry
the baseline key (rule, client address, server endpoint, capture name) so dashboards track a
finding across runs even though the client's ephemeral port changes.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any
from urllib.parse import quote

from analyzer.model import CaptureResult, Finding
from analyzer.report.baseline import finding_key, fingerprint
from analyzer.report.common import conversations_by_id, rule_records
from analyzer.report.incidents import frame_times, iso_utc
from analyzer.report.jsondoc import dumps_indented
from analyzer.report.options import ReportOptions

SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
SARIF_VERSION = "2.1.0"
SRCROOT = "%SRCROOT%"  # the uriBaseId code-scanning tools resolve to the repository checkout

# Finding level -> SARIF result.level (SARIF 3.27.10: none, note, warning, error).
SARIF_LEVELS: dict[str, str] = {"error": "error", "warning": "warning", "info": "note"}


def artifact_uri(path: str) -> str:
    """A capture path as a SARIF URI reference: relative paths stay relative, absolute ones become file: URIs."""
    if path == "-":
        return "stdin"
    windows = PureWindowsPath(path)
    if windows.drive and windows.is_absolute():  # "C:x.pcap" has a drive but is relative: no file: URI
        return windows.as_uri()
    # A name that was not UTF-8 reaches reports with those bytes spelled \xNN: the URI carries the bytes.
    posix = _ESCAPED_BYTE.sub(lambda m: chr(0xDC00 + int(m.group(1), 16)), path).replace("\\", "/")
    if posix.startswith("/"):
        return PurePosixPath(posix).as_uri()
    return quote(posix.encode("utf-8", "surrogateescape"), safe="/")


_ESCAPED_BYTE = re.compile(r"\\x([89a-f][0-9a-f])")  # as report.common.escape_undecodable writes them


def _descriptor(rule: dict[str, Any], opts: ReportOptions) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": rule["code"],
        "name": rule["name"] or rule["code"],
        "shortDescription": {"text": rule["title"] or rule["code"]},
        "fullDescription": {"text": rule["description"] or rule["title"] or rule["code"]},
        "defaultConfiguration": {"level": SARIF_LEVELS.get(rule["level"], "warning")},
    }
    # The rule's documentation travels inside the log (`help`): a dashboard shows it without a link.
    doc = rule["doc"] or rule["description"] or rule["title"] or rule["code"]
    out["help"] = {"text": doc, "markdown": doc}
    if opts.doc_base.startswith(("https://", "http://")):  # helpUri must be absolute (SARIF 3.49.12)
        out["helpUri"] = f"{opts.doc_base}{rule['code']}.md"
    return out


def _rule_from_finding(f: Finding) -> dict[str, Any]:
    """A descriptor for a finding whose rule is not in the catalogue handed over."""
    return {"code": f.rule, "name": f.name, "title": f.title, "level": f.level, "description": f.cause, "doc": ""}


def render_sarif(results: list[CaptureResult], opts: ReportOptions) -> str:
    """`--format sarif`: a SARIF 2.1.0 log."""
    rules = {r["code"]: r for r in rule_records(opts.rules)}
    for result in results:
        for f in result.findings:
            rules.setdefault(f.rule, _rule_from_finding(f))
    codes = sorted(rules)
    index = {code: i for i, code in enumerate(codes)}

    artifacts: list[dict[str, Any]] = []
    sarif_results: list[dict[str, Any]] = []
    notifications: list[dict[str, Any]] = []
    for a_index, result in enumerate(results):
        uri = artifact_uri(result.path)
        mime = "application/x-pcapng" if result.format.startswith("pcapng") else "application/vnd.tcpdump.pcap"
        artifact_location: dict[str, Any] = {"uri": uri}
        if not uri.startswith("file:") and uri != "stdin":
            artifact_location["uriBaseId"] = SRCROOT  # relative to the checkout, as code scanning expects
        artifacts.append({"location": artifact_location, "mimeType": mime})
        # A capture has no lines; code-scanning UIs still require a region, so the finding points at
        # the start of the file and the frames are in the result's properties.
        location = {
            "physicalLocation": {
                "artifactLocation": {**artifact_location, "index": a_index},
                "region": {"startLine": 1},
            }
        }
        if result.error:
            notifications.append(
                {"level": "error", "message": {"text": f"cannot read capture: {result.error}"}, "locations": [location]}
            )
        for w in result.warnings:
            text = w.message + (f" (frame {w.frame})" if w.frame is not None else "")
            notifications.append(
                {"level": "warning", "message": {"text": text}, "locations": [location], "descriptor": {"id": w.code}}
            )
        if opts.conversations_only:
            continue
        convs = conversations_by_id(result)
        for f in result.findings:
            conv = convs.get(f.conversation)
            conv_name = f"conversation {f.conversation}"
            logical: dict[str, Any] = {
                "name": conv_name,
                "kind": "object",
                "fullyQualifiedName": f"{result.path}#{f.conversation}",
            }
            props: dict[str, Any] = {
                "frames": list(f.frames),
                "conversation": f.conversation,
                "confidence": f.confidence,
                "wiresharkFilter": f.wireshark_filter,
                "cause": f.cause,
                "remedy": f.remedy,
                "errors": [
                    {
                        "side": e.side,
                        "endpoint": e.endpoint,
                        "operation": e.operation,
                        "winsock": dataclasses.asdict(e.winsock),
                        "posix": dataclasses.asdict(e.posix),
                    }
                    for e in f.errors
                ],
            }
            props["frameTimes"] = [None if t is None else iso_utc(t) for t in frame_times(conv, f)]
            if f.also:
                props["alsoConsistentWith"] = [{"rule": a.rule, "name": a.name, "message": a.message} for a in f.also]
            if conv is not None:
                props["conversationStart"] = iso_utc(conv.start)
                logical["name"] = f"{conv_name} {conv.proto} {conv.client} -> {conv.server}"
                props.update(
                    proto=conv.proto,
                    client=str(conv.client),
                    server=str(conv.server),
                    state=conv.state,
                    history=conv.history,
                )
            if f.references:
                props["references"] = list(f.references)
            message = f"{f.message} (frames {', '.join(map(str, f.frames))}; remedy: {f.remedy})"
            if f.also:
                message += "\nAlso consistent with: " + "; ".join(f"{a.rule} {a.name}" for a in f.also)
            sarif_results.append(
                {
                    "ruleId": f.rule,
                    "ruleIndex": index[f.rule],
                    "level": SARIF_LEVELS.get(f.level, "warning"),
                    "message": {"text": message},
                    "locations": [{**location, "logicalLocations": [logical]}],
                    "partialFingerprints": {"wsadiagFinding/v1": fingerprint(finding_key(result, f, conv))},
                    "properties": props,
                }
            )

    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": "wsadiag",
                "version": opts.tool_version,
                "semanticVersion": opts.tool_version,
                **({"informationUri": opts.information_uri} if opts.information_uri else {}),
                "rules": [_descriptor(rules[c], opts) for c in codes],
            }
        },
        "artifacts": artifacts,
        "invocations": [
            {
                "executionSuccessful": not any(r.error for r in results),
                "toolExecutionNotifications": notifications,
            }
        ],
        "results": sarif_results,
    }
    log = {"$schema": SARIF_SCHEMA, "version": SARIF_VERSION, "runs": [run]}
    return dumps_indented(log)
