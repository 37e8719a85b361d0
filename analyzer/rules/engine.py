"""Evaluates compiled rules on a conversation: bounded sequence matching, then findings.

Matching is a linear sweep per step (EQL's `sequence ... until` over one conversation):
for each positive step, in timeline order, an event matches when it satisfies the step's
predicate and the latest event that matched the previous step lies within the step's
`within` window with no `absent` packet in between. The latest predecessor is always the
best one (it makes every window and every gap the shortest), so the sweep finds a match
whenever one exists, in O(steps x events), with no backtracking.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from analyzer.errors import UsageError
from analyzer.model import Conversation, Event, Finding, Level, SocketErrorSeen
from analyzer.protocol import flag_string
from analyzer.rules.language import Pattern, Step
from analyzer.rules.tables import ICMP_ERRORS, idle_timeout_hint

# Message placeholders: name -> meaning (documented by vocabulary_markdown()).
PLACEHOLDERS: dict[str, str] = {
    "A": "the endpoint bound to A (`192.0.2.1:443`)",
    "B": "the endpoint bound to B",
    "A_role": "`client` or `server`: the role of A",
    "B_role": "`client` or `server`: the role of B",
    "client": "the client endpoint",
    "server": "the server endpoint",
    "conversation": "the conversation number",
    "stream": "Wireshark's tcp.stream / udp.stream index",
    "state": "Zeek conn_state",
    "history": "Zeek history letters",
    "first_frame": "the first evidence frame",
    "last_frame": "the last evidence frame",
    "gap": "time between the last two matched steps (`1.2 s`)",
    "idle": "the longest silence before any matched step (`312 s`)",
    "timeout_hint": "which common idle timeouts `idle` is consistent with",
    "icmp": "the ICMP error in the evidence (`port-unreachable`), empty if none",
    "icmp_from": "the address that sent that ICMP error",
    "duration": "the conversation's duration",
}
STEP_FIELDS = ("frame", "time", "idle", "flags", "plen", "seq", "ack", "win", "ttl", "ip_id",
               "payload", "icmp", "sender")
# `winsock: from-icmp`: the error Windows reports for the ICMP error in the evidence, looked up
# in the socket-error catalogue's ICMP table rather than repeated in rule files.
FROM_ICMP = "from-icmp"
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_]+)?)\}")
_STEP_REF = re.compile(r"^step([1-9][0-9]?)\.([a-z_]+)$")


def template_names(template: str) -> list[str]:
    """The placeholder names a message template uses."""
    return _PLACEHOLDER.findall(template)


def check_placeholder(name: str, steps: int) -> str | None:
    """Why `name` is not a valid placeholder for a rule with `steps` positive steps, or None."""
    if name in PLACEHOLDERS:
        return None
    m = _STEP_REF.match(name)
    if not m:
        return f"unknown placeholder {{{name}}} (known: {', '.join(PLACEHOLDERS)}, stepN.FIELD)"
    n, field = int(m.group(1)), m.group(2)
    if field not in STEP_FIELDS:
        return f"unknown step field {{{name}}} (fields: {', '.join(STEP_FIELDS)})"
    if n > steps:
        return f"placeholder {{{name}}} names step {n} but the sequence has {steps} matched steps"
    return None


def fill(template: str, values: dict[str, str]) -> str:
    """Substitutes {name} placeholders from a dict: plain lookup, never str.format."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def seconds(x: float) -> str:
    """A duration as a support engineer reads it: 250 ms, 1.2 s, 312 s."""
    if x < 1:
        return f"{x * 1000:.0f} ms"
    if x < 100:
        return f"{x:.1f} s"
    return f"{x:.0f} s"


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    """One `errors:` entry: which side saw which socket error in which call."""

    side: str  # A, B, client, server
    operation: str
    winsock: str
    note: str = ""
    if_icmp: tuple[frozenset, frozenset] | None = None  # only when the evidence ICMP is one of these


@dataclass(frozen=True, slots=True)
class Rule:
    """A loaded, validated and compiled rule."""

    code: str
    name: str
    title: str
    level: Level
    status: str
    message: str
    doc: str
    cause: str
    remedy: str
    confidence: str
    falsepositives: tuple[str, ...]
    references: tuple[str, ...]
    samples: dict  # {"fires": (paths...), "silent": (paths...)}
    errors: tuple[ErrorSpec, ...]
    path: str
    supersedes: tuple[str, ...] = ()
    bindings: tuple[tuple[int, tuple[Pattern, ...]], ...] = ()  # (direction of A, alternatives)
    lines: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)  # key -> line in path


class Summary:
    """What a conversation's timeline contains, per direction: computed once, shared by all rules."""

    __slots__ = ("flags", "marks", "payloads", "icmp")

    def __init__(self, timeline: Sequence[Event]) -> None:
        flags = [0, 0]
        marks = [0, 0]
        payloads: list[set[str]] = [set(), set()]
        icmp = False
        for e in timeline:
            d = e.dir & 1
            flags[d] |= e.flags
            marks[d] |= e.marks
            if e.payload:
                payloads[d].add(e.payload)
            if e.icmp is not None:
                icmp = True
        self.flags = (flags[0], flags[1], flags[0] | flags[1])
        self.marks = (marks[0], marks[1], marks[0] | marks[1])
        self.payloads = (payloads[0], payloads[1], payloads[0] | payloads[1])
        self.icmp = icmp


def _possible(step: Step, s: Summary) -> bool:
    i = 2 if step.dir is None else step.dir
    if step.need_flags & ~s.flags[i] or step.need_marks & ~s.marks[i]:
        return False
    if step.need_icmp and not s.icmp:
        return False
    if step.payloads is not None and not step.payloads & s.payloads[i]:
        return False
    return True


def _prefix(pred: Callable[[Event], bool], events: Sequence[Event]) -> list[int]:
    counts = [0]
    n = 0
    for e in events:
        n += pred(e)
        counts.append(n)
    return counts


def match(pattern: Pattern, conv: Conversation, summary: Summary) -> list[int] | None:
    """Indices into the timeline of the earliest-completing match of a pattern, or None."""
    for cond in pattern.where:
        if not cond(conv):
            return None
    steps = pattern.steps
    for st in steps:
        if not st.absent and not _possible(st, summary):
            return None
    events = conv.timeline
    n = len(events)
    # Absent steps attach to the gap before the next positive step; trailing ones to the end.
    gaps: list[list[list[int]]] = []  # per positive step: prefix counts of its absent steps
    pending: list[list[int]] = []
    positives: list[Step] = []
    for st in steps:
        if st.absent:
            pending.append(_prefix(st.pred, events))
        else:
            positives.append(st)
            gaps.append(pending)
            pending = []
    trailing = pending
    until = _prefix(pattern.until.pred, events) if pattern.until is not None else None

    def clear(counts_list: list[list[int]], lo: int, hi: int) -> bool:
        # No absent match strictly between timeline indices lo and hi.
        return all(c[hi] - c[lo + 1] == 0 for c in counts_list)

    first = positives[0]
    reach = [j for j in range(n) if first.pred(events[j]) and clear(gaps[0], -1, j)]
    back: list[dict[int, int]] = []
    for k in range(1, len(positives)):
        if not reach:
            return None
        st = positives[k]
        absent = gaps[k] + ([until] if until is not None else [])
        nxt: list[int] = []
        links: dict[int, int] = {}
        r = 0
        latest = -1
        for j in range(reach[0] + 1, n):
            while r < len(reach) and reach[r] < j:
                latest = reach[r]
                r += 1
            if not st.pred(events[j]):
                continue
            if st.within is not None and events[j].ts - events[latest].ts > st.within:
                continue
            if absent and not clear(absent, latest, j):
                continue
            nxt.append(j)
            links[j] = latest
        back.append(links)
        reach = nxt
    for j in reach:
        if clear(trailing, j, n):
            chain = [j]
            for links in reversed(back):
                chain.append(links[chain[-1]])
            chain.reverse()
            return chain
    return None


def _icmp_name(e: Event) -> str:
    fam = len(e.icmp_src)
    for name, (v4, v6) in ICMP_ERRORS.items():
        if (fam != 16 and e.icmp in v4) or (fam != 4 and e.icmp in v6):
            return name
    return f"icmp {e.icmp[0]}/{e.icmp[1]}" if e.icmp else ""


def _addr(packed: bytes) -> str:
    try:
        return str(ipaddress.ip_address(packed))
    except ValueError:
        return ""


def default_filter(conv: Conversation, chain_events: Sequence[Event]) -> str:
    """A Wireshark display filter showing the evidence: the stream from the first evidence frame."""
    first = min(e.frame for e in chain_events)
    if conv.proto in ("tcp", "udp") and not any(e.icmp is not None for e in chain_events):
        return f"{conv.proto}.stream eq {conv.stream} && frame.number >= {first}"
    # ICMP errors are not part of Wireshark's streams; an address/port filter catches the
    # quoted headers inside them too (fields match anywhere in the packet).
    ip = "ipv6.addr" if ":" in conv.client.addr else "ip.addr"
    parts = [f"{ip} == {conv.client.addr}", f"{ip} == {conv.server.addr}"]
    if conv.proto in ("tcp", "udp"):
        parts += [f"{conv.proto}.port == {conv.client.port}", f"{conv.proto}.port == {conv.server.port}"]
    parts.append(f"frame.number >= {first}")
    return " && ".join(parts)


class RuleSet:
    """The loaded rules, in code order, and their evaluation on conversations."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules: list[Rule] = sorted(rules, key=lambda r: r.code)
        self._by_code = {r.code: r for r in self.rules}

    def __len__(self) -> int:
        return len(self.rules)

    def __iter__(self):
        return iter(self.rules)

    def get(self, code: str) -> Rule:
        """The rule with this code (case-insensitive), or UsageError."""
        rule = self._by_code.get(code.strip().upper())
        if rule is None:
            raise UsageError(f"unknown rule code {code!r}", hint="`wsadiag rules` lists the rule codes")
        return rule

    def evaluate(self, conv: Conversation,
                 stream_filter: Callable[[Conversation, Sequence[Event]], str] | None = None) -> list[Finding]:
        """Findings for one conversation, in code order; a rule fires at most once per conversation.

        `stream_filter(conv, evidence_events)` may replace the default Wireshark filter.
        A finding whose rule another firing rule `supersedes` is dropped.
        """
        if not conv.timeline:
            return []
        summary = Summary(conv.timeline)
        fired: list[tuple[Rule, int, list[int]]] = []
        for rule in self.rules:
            hit = _first_match(rule, conv, summary)
            if hit is not None:
                fired.append((rule, *hit))
        if not fired:
            return []
        dropped = {code for rule, _, _ in fired for code in rule.supersedes}
        build = stream_filter or default_filter
        return [_finding(rule, conv, a_dir, chain, build) for rule, a_dir, chain in fired
                if rule.code not in dropped]


def _first_match(rule: Rule, conv: Conversation, summary: Summary) -> tuple[int, list[int]] | None:
    best: tuple[int, list[int]] | None = None
    for a_dir, patterns in rule.bindings:
        for pattern in patterns:
            chain = match(pattern, conv, summary)
            if chain is not None and (best is None or chain[-1] < best[1][-1]):
                best = (a_dir, chain)
    return best


def _side(spec_side: str, a_dir: int) -> int:
    return {"A": a_dir, "B": 1 - a_dir, "client": 0, "server": 1}[spec_side]


def _finding(rule: Rule, conv: Conversation, a_dir: int, chain: list[int],
             build_filter: Callable[[Conversation, Sequence[Event]], str]) -> Finding:
    from analyzer import winsock  # the socket-error catalogue

    events = [conv.timeline[i] for i in chain]
    icmp_ev = next((e for e in events if e.icmp is not None), None)
    if icmp_ev is None:
        icmp_ev = next((e for e in conv.timeline if e.icmp is not None), None)
    ends = (conv.client, conv.server)
    errors: list[SocketErrorSeen] = []
    for spec in rule.errors:
        if spec.if_icmp is not None:
            if icmp_ev is None:
                continue
            v4, v6 = spec.if_icmp
            fam = len(icmp_ev.icmp_src)
            if not ((fam != 16 and icmp_ev.icmp in v4) or (fam != 4 and icmp_ev.icmp in v6)):
                continue
        d = _side(spec.side, a_dir)
        name = spec.winsock
        if name == FROM_ICMP:
            if icmp_ev is None or icmp_ev.icmp is None:
                continue
            family = 6 if ":" in conv.client.addr else 4
            transport = "udp" if conv.proto == "udp" else "tcp"
            phase = "established" if conv.handshake else "connect"
            name = winsock.icmp_error(family, icmp_ev.icmp[0], icmp_ev.icmp[1], transport, "windows", phase)
            if name is None:
                continue
        seen = winsock.seen("client" if d == 0 else "server", str(ends[d]), spec.operation, name)
        if spec.note:
            seen = dataclasses.replace(seen, note=spec.note)
        errors.append(seen)
    values = _values(conv, a_dir, events, icmp_ev)
    return Finding(
        rule=rule.code, name=rule.name, level=rule.level, title=rule.title,
        message=fill(rule.message, values), conversation=conv.id, errors=tuple(errors),
        cause=rule.cause, remedy=rule.remedy, confidence=rule.confidence,  # type: ignore[arg-type]
        frames=tuple(sorted({e.frame for e in events})),
        wireshark_filter=build_filter(conv, events),
        references=rule.references, falsepositives=rule.falsepositives,
    )


def _values(conv: Conversation, a_dir: int, events: list[Event], icmp_ev: Event | None) -> dict[str, str]:
    ends = (conv.client, conv.server)
    roles = ("client", "server")
    idle = max(e.idle for e in events)
    gap = events[-1].ts - events[-2].ts if len(events) > 1 else events[-1].idle
    v = {
        "A": str(ends[a_dir]), "B": str(ends[1 - a_dir]),
        "A_role": roles[a_dir], "B_role": roles[1 - a_dir],
        "client": str(conv.client), "server": str(conv.server),
        "conversation": str(conv.id), "stream": str(conv.stream),
        "state": conv.state, "history": conv.history,
        "first_frame": str(min(e.frame for e in events)), "last_frame": str(max(e.frame for e in events)),
        "gap": seconds(max(gap, 0.0)), "idle": seconds(idle), "timeout_hint": idle_timeout_hint(idle),
        "icmp": _icmp_name(icmp_ev) if icmp_ev else "",
        "icmp_from": _addr(icmp_ev.icmp_src) if icmp_ev else "",
        "duration": seconds(conv.duration),
    }
    for n, e in enumerate(events, 1):
        p = f"step{n}."
        v[p + "frame"] = str(e.frame)
        v[p + "time"] = seconds(max(e.ts - conv.start, 0.0))
        v[p + "idle"] = seconds(e.idle)
        v[p + "flags"] = flag_string(e.flags) or "none"
        v[p + "plen"] = str(e.plen)
        v[p + "seq"] = str(e.seq)
        v[p + "ack"] = str(e.ack)
        v[p + "win"] = str(e.win)
        v[p + "ttl"] = str(e.ttl)
        v[p + "ip_id"] = str(e.ip_id)
        v[p + "payload"] = e.payload or "none"
        v[p + "icmp"] = _icmp_name(e) if e.icmp else "none"
        v[p + "sender"] = roles[e.dir & 1]
    return v
