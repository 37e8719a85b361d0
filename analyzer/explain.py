"""`wsadiag explain` and `wsadiag rules`: the catalogue and the socket errors, in words."""

from __future__ import annotations

import json
import re

from analyzer import winsock
from analyzer.errors import UsageError

_RULE_CODE = re.compile(r"^[A-Za-z]{2,8}\d{3}$")

_CAPTURE_NEXT = (
    "Capture on both ends at once if you can (the client's host and the server's host), from before the "
    "connection starts until after the error, with full packets (`tcpdump -i any -s 0 -w side.pcap host PEER`; "
    "on Windows `pktmon` or `netsh trace start capture=yes`). Two captures show which middlebox changed or "
    "dropped a packet; one capture cannot tell a forged packet from a real one except by TTL and IP ID."
)


def explain(what: str, ruleset) -> str:
    """The explanation of a rule code, a Winsock code or name, or an errno name."""
    text = what.strip()
    if _RULE_CODE.match(text) and not text.upper().startswith("WSA"):
        return _explain_rule(ruleset.get(text.upper()))
    try:
        err = winsock.lookup(text)
    except UsageError:
        raise UsageError(
            f"nothing is called {what!r}",
            hint="ask for a rule code (RST003, `wsadiag rules` lists them), a Winsock code or name "
            "(10054, WSAECONNRESET) or an errno name (ECONNRESET)",
        ) from None
    return _explain_error(err, ruleset)


def _explain_rule(rule) -> str:
    lines = [f"{rule.code} {rule.name} ({rule.level})", rule.title, ""]
    if rule.errors:
        lines.append("What each side's application sees:")
        for spec in rule.errors:
            err = winsock.lookup(spec.winsock)
            posix = f", {err.posix_name}" if err.posix_name else ""
            note = f" — {spec.note}" if spec.note else ""
            lines.append(f"  {spec.side}: {spec.operation}() fails with {err.code} {err.name}{posix}{note}")
        lines.append("")
    lines += ["Likely cause:", f"  {rule.cause.strip()}", "", "What to do:", f"  {rule.remedy.strip()}", ""]
    if rule.falsepositives:
        lines.append("When it is harmless:")
        lines += [f"  - {fp}" for fp in rule.falsepositives]
        lines.append("")
    lines.append(rule.doc.strip())
    if rule.references:
        lines += ["", "References: " + "; ".join(rule.references)]
    return "\n".join(lines)


def _explain_error(err, ruleset) -> str:
    posix = f"{err.posix_name} (Linux {err.linux}, macOS {err.macos})" if err.posix_name else "no POSIX equivalent"
    lines = [f"{err.code} {err.name}: {err.message}", "", err.meaning, "", f"POSIX: {posix}"]
    for label, value in (
        ("Call", err.operation),
        (".NET", err.dotnet),
        ("Java", err.java),
        ("Python (Linux)", err.python),
        ("Python (Windows)", err.python_windows),
        ("curl", err.curl),
    ):
        if value:
            lines.append(f"{label}: {value}")
    producing = [r for r in ruleset.rules if any(spec.winsock == err.name for spec in r.errors)]
    lines.append("")
    if producing:
        lines.append("Patterns on the wire that produce it:")
        lines += [f"  {r.code} {r.name}: {r.title}" for r in producing]
    else:
        lines.append("No rule in the catalogue produces it from a capture.")
    lines.append("")
    if err.local_only:
        lines += [
            "The capture cannot show this error: it is decided inside the host, and no packet carries it.",
            f"Record instead: {err.capture_instead}",
        ]
    else:
        lines += ["What to capture next:", f"  {_CAPTURE_NEXT}"]
    return "\n".join(lines)


def rules_catalogue(ruleset, fmt: str = "text") -> str:
    """The rule catalogue as a table (text or markdown) or a JSON document."""
    rules = list(ruleset.rules)
    if fmt == "json":
        return json.dumps(
            {
                "version": 1,
                "rules": [
                    {
                        "code": r.code,
                        "name": r.name,
                        "level": r.level,
                        "title": r.title,
                        "status": r.status,
                        "errors": [{"side": e.side, "operation": e.operation, "winsock": e.winsock} for e in r.errors],
                        "references": list(r.references),
                        "path": r.path,
                    }
                    for r in rules
                ],
            },
            indent=2,
        )
    if fmt == "markdown":
        rows = ["| code | name | level | title |", "| --- | --- | --- | --- |"]
        rows += [f"| {r.code} | {r.name} | {r.level} | {r.title} |" for r in rules]
        return "\n".join(rows)
    width = max((len(r.name) for r in rules), default=4)
    lines = [f"{r.code:<7} {r.level:<7} {r.name:<{width}}  {r.title}" for r in rules]
    lines.append(f"\n{len(rules)} rules; `wsadiag explain CODE` shows one.")
    return "\n".join(lines)


def rule_markdown(rule) -> str:
    """A rule's documentation page (docs/rules/CODE.md), generated from its file."""
    lines = [
        f"# {rule.code} {rule.name}",
        "",
        f"**{rule.title}** — level `{rule.level}`, confidence {rule.confidence}, status {rule.status}.",
        "",
        rule.doc.strip(),
        "",
    ]
    if rule.errors:
        lines += ["## Socket errors", "", "| side | call | Winsock | POSIX | note |", "| --- | --- | --- | --- | --- |"]
        for spec in rule.errors:
            if spec.winsock == "from-icmp":
                lines.append(f"| {spec.side} | {spec.operation} | from the ICMP type and code | | {spec.note} |")
                continue
            err = winsock.lookup(spec.winsock)
            lines.append(
                f"| {spec.side} | {spec.operation} | {err.code} {err.name} | {err.posix_name or ''} | {spec.note} |"
            )
        lines.append("")
    lines += ["## Cause", "", rule.cause.strip(), "", "## Remedy", "", rule.remedy.strip(), ""]
    if rule.falsepositives:
        lines += ["## When it is harmless", ""] + [f"- {fp}" for fp in rule.falsepositives] + [""]
    if rule.references:
        lines += ["## References", ""] + [f"- {ref}" for ref in rule.references] + [""]
    samples = rule.samples or {}
    lines += ["## Samples", ""]
    lines += [f"- fires: `{p}`" for p in samples.get("fires", ())]
    lines += [f"- stays silent: `{p}`" for p in samples.get("silent", ())]
    return "\n".join(lines) + "\n"


def write_rule_docs(ruleset, folder) -> list[str]:
    """Write docs/rules/CODE.md for every rule; return the file names."""
    from pathlib import Path

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    names = []
    for rule in ruleset.rules:
        (out / f"{rule.code}.md").write_text(rule_markdown(rule), encoding="utf-8")
        names.append(f"{rule.code}.md")
    return names
