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


WINSOCK_BASE = 10000  # WSABASEERR: numbers below it are errno values, not Winsock codes
# Fields of a catalogue row searched for the words of an error message a user quotes.
_TEXT_FIELDS = ("message", "meaning", "dotnet", "java", "python", "python_windows", "curl")


def explain(what: str, ruleset) -> str:
    """The explanation of a rule code, a Winsock code or name, an errno name or number, or error text.

    `104` and `111` are Linux errno numbers (ECONNRESET, ECONNREFUSED); words such as
    "connection reset by peer" or "forcibly closed" find the errors whose messages contain them.
    """
    text = what.strip()
    if _RULE_CODE.match(text) and not text.upper().startswith("WSA"):
        return _explain_rule(ruleset.get(text.upper()))
    if text.isdigit() and int(text) < WINSOCK_BASE:
        return _explain_errno_number(int(text), ruleset)
    try:
        err = winsock.lookup(text)
    except UsageError:
        found = search_errors(text)
        if not found:
            raise UsageError(
                f"nothing is called {what!r}",
                hint="ask for a rule code (RST003, `wsadiag rules` lists them), a Winsock code or name "
                "(10054, WSAECONNRESET), an errno name or Linux number (ECONNRESET, 104), or words of "
                'the error message ("connection reset by peer")',
            ) from None
        return _explain_found(text, found, ruleset)
    return _explain_error(err, ruleset)


def search_errors(words: str) -> list:
    """Catalogue rows whose messages contain all these words (case-insensitive), best match first."""
    wanted = [w for w in re.findall(r"[a-z0-9]+", words.lower()) if w]
    if not wanted:
        return []
    phrase = " ".join(wanted)
    scored = []
    for err in winsock.ALL:
        texts = [" ".join(re.findall(r"[a-z0-9]+", str(getattr(err, f, "") or "").lower())) for f in _TEXT_FIELDS]
        whole = sum(phrase in t for t in texts)  # the words in this order
        every = sum(all(w in t.split() for w in wanted) for t in texts)
        if whole or every:
            scored.append((-whole, -every, err.code, err))
    return [row[-1] for row in sorted(scored, key=lambda r: r[:3])]


def _explain_found(words: str, found: list, ruleset) -> str:
    head = f'"{words}" is how {found[0].code} {found[0].name} reads'
    if len(found) > 1:
        others = ", ".join(f"{e.code} {e.name}" for e in found[1:6])
        head += f" (it also appears in: {others}; `wsadiag explain CODE` explains each)"
    return head + "\n\n" + _explain_error(found[0], ruleset)


def _explain_errno_number(number: int, ruleset) -> str:
    linux = [e for e in winsock.ALL if e.linux == number]
    macos = [e for e in winsock.ALL if e.macos == number and e not in linux]
    if not linux and not macos:
        raise UsageError(
            f"no socket error has errno {number} on Linux or macOS in the catalogue",
            hint="Winsock codes are 10000 and up (10054); errno names work too (ECONNRESET)",
        )
    if linux:
        err = linux[0]
        head = f"errno {number} on Linux is {err.posix_name}, which Winsock calls {err.code} {err.name}."
        if macos:
            head += f" (On macOS, errno {number} is {macos[0].posix_name}: `wsadiag explain {macos[0].posix_name}`.)"
    else:
        err = macos[0]
        head = (
            f"errno {number} on macOS is {err.posix_name} (Linux {err.linux}), "
            f"which Winsock calls {err.code} {err.name}."
        )
    return head + "\n\n" + _explain_error(err, ruleset)


def sides(rule) -> str:
    """Who A and B are in a rule: pinned to client and server, or either way round."""
    dirs = {a_dir for a_dir, _ in rule.bindings}
    if dirs == {0}:
        return "A is the client (the side that sent the first SYN), B the server."
    if dirs == {1}:
        return "A is the server, B the client (the side that sent the first SYN)."
    return (
        "A and B are the two sides as the pattern finds them: A is the side whose packet starts the "
        "pattern, B its peer; either can be the client or the server (the finding says which)."
    )


def _side_name(rule, side: str) -> str:
    dirs = {a_dir for a_dir, _ in rule.bindings}
    if side not in ("A", "B") or len(dirs) != 1:
        return side
    a_is_client = dirs == {0}
    return f"{side} ({'client' if (side == 'A') == a_is_client else 'server'})"


def _explain_rule(rule) -> str:
    lines = [f"{rule.code} {rule.name} ({rule.level})", rule.title, "", sides(rule), ""]
    if rule.errors:
        lines.append("What each side's application sees:")
        for spec in rule.errors:
            if spec.winsock == "from-icmp":
                what = "the error its ICMP type and code give"
            else:
                err = winsock.lookup(spec.winsock)
                posix = f", {err.posix_name}" if err.posix_name else ""
                what = f"{err.code} {err.name}{posix}"
            note = f" — {spec.note}" if spec.note else ""
            lines.append(f"  {_side_name(rule, spec.side)}: {spec.operation}() fails with {what}{note}")
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


def rule_for_terminal(rule, width: int = 100, color: bool = True) -> str:
    """A rule's documentation as formatted terminal text (rich renders its Markdown): headings,
    lists and `commands` styled, not shown as Markdown punctuation."""
    from io import StringIO

    from rich.console import Console
    from rich.markdown import Markdown

    text = rule_markdown(rule).replace("\n## Cause", f"\n## Who A and B are\n\n{sides(rule)}\n\n## Cause", 1)
    buffer = StringIO()
    console = Console(file=buffer, width=width, force_terminal=color, no_color=not color, highlight=False)
    console.print(Markdown(text))
    return buffer.getvalue()


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
