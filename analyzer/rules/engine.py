"""Evaluates compiled rules on a conversation: a prefilter, bounded sequence matching, then findings.

Prefilter: one pass over the timeline folds every event's TCP flags, marks, payload and ICMP
into a feature word (see `features`). Each pattern has a gate worked out from its steps when
the rule set is built: the bits its positive steps need, and for `flags_any`/`kind_any`/
`payload` lists the masks of which one bit must be present. A pattern whose gate the word
fails cannot match, so it is not matched; which patterns pass is remembered per word, and most
conversations (healthy ones) are done with after the pass and one dictionary lookup.

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
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Final, Literal

from analyzer.errors import UsageError
from analyzer.frames import frame_runs
from analyzer.icmp import icmp_word
from analyzer.model import Alternative, Confidence, Conversation, Event, Finding, Level, Mark, SocketErrorSeen, Traits
from analyzer.protocol import TCP_FLAG_NAMES, flag_string
from analyzer.rules.language import FACT_NO_HANDSHAKE, FACT_PATH, FACT_SERVER_SILENT, SERVER_SILENT_STATES, Pattern
from analyzer.rules.tables import (
    MARK_NAMES,
    PAYLOAD_KINDS,
    idle_timeout_hint,
)

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
    "tls_alert": "the first plaintext TLS alert and its sender (`fatal protocol_version (70) from the server`)",
    "rtt": "the round-trip time the handshake shows (`0.3 ms`), `unknown` without a handshake",
    "rst_signal": "what shows a RST was not sent by its claimed sender (its TTL, its IP ID, or talk after it)",
    "end_note": "how an attempt ended: `; the client reset it (frame 3)` or `; nothing more came from the client`",
    # two captures (analyze --peer); empty with one capture
    "peer_capture": "the other capture's file",
    "path_between": "where the two capture points sit and how many routers apart",
    "injected_hops": "how many hops the injected packet in the evidence came from each capture point (from its TTL)",
    "lost_sizes": "the sizes of the packets lost between the points and of those that got through",
    "clock_offset": "the other capture's clock against this one's, with its uncertainty",
    "windows_drop": "Windows' own reason for dropping a packet of the evidence (pktmon ETL input), a sentence or empty",
}
# `winsock: from-icmp`: the error Windows reports for the ICMP error in the evidence, looked up
# in the socket-error catalogue's ICMP table rather than repeated in rule files.
FROM_ICMP = "from-icmp"
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_]+)?)\}")
_STEP_REF = re.compile(r"^step([1-9][0-9]?)\.([a-z_]+)$")
_NUMBERS: Final = frozenset(("conversation", "stream"))  # the placeholders that name a conversation's numbers


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


def seconds(x: float) -> str:
    """A duration as a support engineer reads it: 250 ms, 1.2 s, 312 s."""
    if x < 1:
        return f"{x * 1000:.0f} ms"
    if x < 100:
        return f"{x:.1f} s"
    return f"{x:.0f} s"


_ROLES = ("client", "server")


@dataclass(frozen=True, slots=True)
class _Evidence:
    """What a finding's message is filled from."""

    conv: Conversation
    a_dir: int
    events: list[Event]  # the matched steps' events, in order
    icmp: Event | None  # the ICMP error among them, else the conversation's first one

    def end(self, d: int) -> str:
        return str(self.conv.client if d == 0 else self.conv.server)

    def idle(self) -> float:
        return max(e.idle for e in self.events)

    def gap(self) -> float:
        events = self.events
        return events[-1].ts - events[-2].ts if len(events) > 1 else events[-1].idle


# How each placeholder of PLACEHOLDERS and each step field is worked out; a message works out
# only those it names (most name two or three).
_VALUES: dict[str, Callable[[_Evidence], str]] = {
    "A": lambda x: x.end(x.a_dir),
    "B": lambda x: x.end(1 - x.a_dir),
    "A_role": lambda x: _ROLES[x.a_dir],
    "B_role": lambda x: _ROLES[1 - x.a_dir],
    "client": lambda x: str(x.conv.client),
    "server": lambda x: str(x.conv.server),
    "conversation": lambda x: str(x.conv.id),
    "stream": lambda x: str(x.conv.stream),
    "state": lambda x: x.conv.state,
    "history": lambda x: x.conv.history,
    "first_frame": lambda x: str(min(e.frame for e in x.events)),
    "last_frame": lambda x: str(max(e.frame for e in x.events)),
    "gap": lambda x: seconds(max(x.gap(), 0.0)),
    "idle": lambda x: seconds(x.idle()),
    "timeout_hint": lambda x: idle_timeout_hint(x.idle()),
    "icmp": lambda x: _icmp_name(x.icmp) if x.icmp else "",
    "icmp_from": lambda x: _addr(x.icmp.icmp_src) if x.icmp else "",
    "duration": lambda x: seconds(x.conv.duration),
    "tls_alert": lambda x: _alert_text(x.conv),
    "rtt": lambda x: seconds(x.conv.rtt) if x.conv.rtt >= 0 else "unknown",
    "rst_signal": lambda x: _rst_signal(x),
    "end_note": lambda x: _end_note(x),
    "peer_capture": lambda x: _words().peer_capture(x.conv),
    "path_between": lambda x: _words().path_between(x.conv),
    "injected_hops": lambda x: _words().injected_hops(x.conv, x.events),
    "lost_sizes": lambda x: _words().lost_sizes(x.conv),
    "clock_offset": lambda x: _words().clock_offset(x.conv),
    "windows_drop": lambda x: _windrops().drop_sentence(x.conv, x.events),
}


def _words() -> ModuleType:
    from analyzer.peer import words  # two captures only: imported when a message is filled, not at start-up

    return words


def _windrops() -> ModuleType:
    from analyzer import windrops  # pktmon drops only: likewise

    return windrops


def _rst_signal(x: _Evidence) -> str:
    rst = next((e for e in x.events if e.flags & RST_FLAG), None)
    if rst is None:
        return "no RST in the evidence"
    stats = x.conv.client_stats if rst.dir == 0 else x.conv.server_stats
    if rst.marks & TTL_ODD:
        if 0 <= stats.ttl != rst.ttl:
            return f"its TTL {rst.ttl} is unlike the sender's other packets (usually {stats.ttl})"
        others = ", ".join(str(t) for t in stats.ttl_values if t != rst.ttl)
        if others:
            return f"its TTL {rst.ttl} is unlike the sender's other packets ({others})"
        # The RST is all this side sent here: it was judged against the host's other conversations.
        return f"its TTL {rst.ttl} is unlike the TTL this host's other conversations arrived with"
    if rst.marks & IPID_ODD:
        return f"its IP ID {rst.ip_id} is far from the sender's running IP ID sequence"
    return "the claimed sender went on sending after it"


def _end_note(x: _Evidence) -> str:
    last = x.events[-1]
    if last.flags & RST_FLAG and last.dir == 0:
        return f"; the client reset it (frame {last.frame})"
    return "; nothing more came from the client"


def _alert_text(conv: Conversation) -> str:
    from analyzer import tls  # the alert table

    for side, stats in (("server", conv.server_stats), ("client", conv.client_stats)):
        if stats.tls_alert is not None:
            return f"{tls.describe(*stats.tls_alert)} from the {side}"
    return "no readable alert"


_STEP_VALUES: dict[str, Callable[[Conversation, Event], str]] = {
    "frame": lambda c, e: str(e.frame),
    "time": lambda c, e: seconds(max(e.ts - c.start, 0.0)),
    "idle": lambda c, e: seconds(e.idle),
    "flags": lambda c, e: flag_string(e.flags) or "none",
    "plen": lambda c, e: str(e.plen),
    "seq": lambda c, e: str(e.seq),
    "ack": lambda c, e: str(e.ack),
    "win": lambda c, e: str(e.win),
    "ttl": lambda c, e: str(e.ttl),
    "ip_id": lambda c, e: str(e.ip_id),
    "payload": lambda c, e: e.payload or "none",
    "icmp": lambda c, e: _icmp_name(e) if e.icmp else "none",
    "sender": lambda c, e: _ROLES[e.dir & 1],
}
STEP_FIELDS = tuple(_STEP_VALUES)  # what `{stepN.FIELD}` may name


@dataclass(frozen=True, slots=True)
class Message:
    """A message template taken apart once: the text around its placeholders, and how to fill each.

    Substitution is plain lookup, never str.format; a placeholder the engine has no value for
    stays as written.
    """

    text: tuple[str, ...]  # one more piece than there are fills
    fills: tuple[Callable[[_Evidence], str], ...]

    def render(self, evidence: _Evidence) -> str:
        out = [self.text[0]]
        for value, text in zip(self.fills, self.text[1:]):
            out.append(value(evidence))
            out.append(text)
        return "".join(out)


def compile_message(template: str) -> Message:
    """The Message for a rule's `message:` template."""
    text = [""]
    fills: list[Callable[[_Evidence], str]] = []
    pos = 0
    for m in _PLACEHOLDER.finditer(template):
        name, written = m.group(1), m.group(0)
        text[-1] += template[pos : m.start()]
        pos = m.end()
        value = _VALUES.get(name)
        step = _STEP_REF.match(name) if value is None else None
        field = _STEP_VALUES.get(step.group(2)) if step is not None else None
        if step is not None and field is not None:
            value = _step_value(int(step.group(1)), field, written)
        if value is None:
            text[-1] += written
        else:
            fills.append(value)
            text.append("")
    text[-1] += template[pos:]
    return Message(tuple(text), tuple(fills))


def _step_value(n: int, field: Callable[[Conversation, Event], str], written: str) -> Callable[[_Evidence], str]:
    # A chain shorter than n leaves the placeholder as written (the loader rejects such messages).
    def value(x: _Evidence) -> str:
        return field(x.conv, x.events[n - 1]) if n <= len(x.events) else written

    return value


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    """One `errors:` entry: which side saw which socket error in which call."""

    side: str  # A, B, client, server
    operation: str
    winsock: str
    note: str = ""
    if_icmp: tuple[frozenset, frozenset] | None = None  # only when the evidence ICMP is one of these
    if_handshake: bool | None = None  # only when the handshake was (true) or was not (false) completed


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
    confidence: Confidence
    falsepositives: tuple[str, ...]
    references: tuple[str, ...]
    samples: dict  # {"fires": (paths...), "silent": (paths...)}
    errors: tuple[ErrorSpec, ...]
    path: str
    bindings: tuple[tuple[int, tuple[Pattern, ...]], ...] = ()  # (direction of A, alternatives)
    lines: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)  # key -> line in path


# The feature word: what a conversation's events carry, as one integer computed in one pass.
# It has three sections, for events sent by the client, by the server, and by either; each
# holds the events' TCP flags, their marks, a bit for "carries payload", a bit for "is an ICMP
# error" and one bit per payload kind. A step can only match an event whose bits it finds in
# its direction's section, so a pattern whose steps need bits the word lacks cannot match.
_FLAG_BITS: Final = max(TCP_FLAG_NAMES.values()).bit_length()
_FLAG_MASK: Final = (1 << _FLAG_BITS) - 1
_MARK_BITS: Final = max(MARK_NAMES.values()).bit_length()
_MARK_MASK: Final = (1 << _MARK_BITS) - 1
_DATA: Final = 1 << (_FLAG_BITS + _MARK_BITS)
_ICMP: Final = _DATA << 1
_PAYLOAD: Final[dict[str, int]] = {kind: _ICMP << (1 + i) for i, kind in enumerate(PAYLOAD_KINDS)}
_SECTION: Final = _FLAG_BITS + _MARK_BITS + 2 + len(PAYLOAD_KINDS)  # bits in one section
_EITHER: Final = 2  # the section index of "sent by either side"; 0 and 1 are Event.dir
_FACTS_SHIFT: Final = 3 * _SECTION  # after the three sections: the conversation facts (language.FACT_*)
_MEMO_LIMIT: Final = 4096  # feature words remembered per rule set: a bound for hostile captures (real ones show dozens)


def features(timeline: Sequence[Event]) -> int:
    """The feature word of a timeline (see above): the union of its events' bits per direction."""
    client = server = 0
    for e in timeline:
        bits = e.flags | e.marks << _FLAG_BITS
        if e.plen > 0:
            bits |= _DATA
        if e.icmp is not None:
            bits |= _ICMP
        if e.payload:
            bits |= _PAYLOAD.get(e.payload, 0)
        if e.dir & 1:
            server |= bits
        else:
            client |= bits
    return _word(client, server)


def _facts(handshake: bool, server_silent: bool, path: bool) -> int:
    facts = 0 if handshake else FACT_NO_HANDSHAKE
    if server_silent:
        facts |= FACT_SERVER_SILENT
    if path:
        facts |= FACT_PATH
    return facts << _FACTS_SHIFT


def conversation_features(conv: Conversation) -> int:
    """The feature word of a built conversation: its timeline's bits and its facts.

    Each fact is set whenever the `where:` condition it stands for can hold (the state a rule
    names, not only the packet count behind it), so the gate never keeps out a match.
    """
    silent = conv.server_stats.packets == 0 or conv.state in SERVER_SILENT_STATES
    return features(conv.timeline) | _facts(conv.handshake, silent, conv.path is not None)


def trait_features(traits: Traits) -> int:
    """The feature word of every packet of a conversation, from the flow table's summary.

    Its bits include those of the conversation's timeline (a subset of its packets), so a
    pattern its gates keep out cannot match the timeline either.
    """
    sides = []
    for d in (0, 1):
        bits = traits.flags[d] | traits.marks[d] << _FLAG_BITS
        if traits.data[d]:
            bits |= _DATA
        if traits.icmp[d]:
            bits |= _ICMP
        for kind in traits.kinds[d]:
            bits |= _PAYLOAD.get(kind, 0)
        sides.append(bits)
    # A flow table sees one capture: no conversation it builds has a second capture's path yet.
    return _word(sides[0], sides[1]) | _facts(traits.handshake, traits.server_silent, False)


def _word(client: int, server: int) -> int:
    # A value wider than its field spills into the next one: that only sets more bits, so the
    # word may let a pattern through needlessly but never keeps out one that matches.
    return client | server << _SECTION | (client | server) << (_EITHER * _SECTION)


@dataclass(frozen=True, slots=True)
class Gate:
    """What a feature word must hold for a pattern to be worth matching: a necessary condition."""

    need: int  # every one of these bits
    any_of: tuple[int, ...]  # at least one bit of each of these masks

    def admits(self, word: int) -> bool:
        if self.need & ~word:
            return False
        for mask in self.any_of:
            if not mask & word:
                return False
        return True


def gate(pattern: Pattern) -> Gate:
    """The gate of a pattern, from what each of its positive steps requires of one event.

    `where:` conditions and the timing of steps are left to the matcher; absent steps and
    `until` forbid events, so they require nothing.
    """
    need = pattern.facts << _FACTS_SHIFT
    wanted: list[int] = []
    for step in pattern.steps:
        if step.absent:
            continue
        shift = _SECTION * (_EITHER if step.dir is None else step.dir)
        bits = (step.need_flags & _FLAG_MASK) | (step.need_marks & _MARK_MASK) << _FLAG_BITS
        if step.need_icmp:
            bits |= _ICMP
        if step.data:
            bits |= _DATA
        need |= bits << shift
        # An any-of mask cut down to our field would ask more than the step does: whole or not at all.
        if step.any_flags and step.any_flags & _FLAG_MASK == step.any_flags:
            wanted.append(step.any_flags << shift)
        if step.any_marks and step.any_marks & _MARK_MASK == step.any_marks:
            wanted.append(step.any_marks << (_FLAG_BITS + shift))
        if step.payloads is not None and all(k in _PAYLOAD for k in step.payloads):
            kinds = 0
            for k in step.payloads:
                kinds |= _PAYLOAD[k]
            wanted.append(kinds << shift)
    any_of: list[int] = []
    for mask in wanted:
        if not mask:
            continue  # no bit of ours stands for what the step wants: say nothing
        if mask & (mask - 1) == 0:
            need |= mask  # one bit to choose from: simply needed
        elif mask not in any_of:
            any_of.append(mask)
    return Gate(need, tuple(m for m in any_of if not m & need))


def _prefix(pred: Callable[[Event], bool], events: Sequence[Event]) -> list[int]:
    counts = [0]
    n = 0
    for e in events:
        n += pred(e)
        counts.append(n)
    return counts


def match(pattern: Pattern, conv: Conversation) -> list[int] | None:
    """Indices into the timeline of the earliest-completing match of a pattern, or None."""
    for cond in pattern.where:
        if not cond(conv):
            return None
    events = conv.timeline
    n = len(events)
    # Each positive step's earliest possible event is the first to satisfy it after the previous
    # step's earliest: no chain gets further sooner. So when a step has none, nothing matches,
    # and a step's other events need only be looked for after its earliest.
    positives = [st for st in pattern.steps if not st.absent]
    firsts: list[int] = []
    j = 0
    for st in positives:
        pred = st.pred
        while j < n and not pred(events[j]):
            j += 1
        if j == n:
            return None
        firsts.append(j)
        j += 1
    hits: list[list[int]] = []  # per positive step: the timeline indices of the events satisfying it
    for st, first in zip(positives, firsts):
        pred = st.pred
        hits.append([first] + [i for i in range(first + 1, n) if pred(events[i])])
    # Absent steps attach to the gap before the next positive step; trailing ones to the end.
    gaps: list[list[list[int]]] = []  # per positive step: prefix counts of its absent steps
    pending: list[list[int]] = []
    for st in pattern.steps:
        if st.absent:
            pending.append(_prefix(st.pred, events))
        else:
            gaps.append(pending)
            pending = []
    trailing = pending
    until = _prefix(pattern.until.pred, events) if pattern.until is not None else None

    def clear(counts_list: list[list[int]], lo: int, hi: int) -> bool:
        # No absent match strictly between timeline indices lo and hi.
        return all(c[hi] - c[lo + 1] == 0 for c in counts_list)

    reach = [j for j in hits[0] if clear(gaps[0], -1, j)]
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
        at = hits[k]
        for i in range(bisect_right(at, reach[0]), len(at)):
            j = at[i]
            while r < len(reach) and reach[r] < j:
                latest = reach[r]
                r += 1
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
    """The rule word of an event's ICMP error; the sender's address length tells the family."""
    if e.icmp is None:
        return ""
    fam = len(e.icmp_src)
    word = icmp_word(4, *e.icmp) if fam != 16 else ""
    if not word and fam != 4:
        word = icmp_word(6, *e.icmp)
    return word or f"icmp {e.icmp[0]}/{e.icmp[1]}"


def _addr(packed: bytes) -> str:
    try:
        return str(ipaddress.ip_address(packed))
    except ValueError:
        return ""


def frame_set(frames: Iterable[int]) -> str:
    """Frame numbers as a display-filter set: (6, 14, 15, 16, 17) -> '{6, 14..17}'.

    Commas, not spaces: tshark 4.0 rejects `{6 9}` ("9" was unexpected) and later versions
    deprecate whitespace separators; `{6, 14..17}` works in both.
    """
    parts = [str(a) if a == b else f"{a}..{b}" for a, b in frame_runs(frames)]
    return "{" + ", ".join(parts) + "}"


def default_filter(conv: Conversation, chain_events: Sequence[Event]) -> str:
    """A Wireshark display filter that selects exactly the evidence frames, within their stream.

    The stream numbers are Wireshark's own (analyzer.flows.streams); the frame set alone would
    select the evidence, the stream names where it lives for "Follow TCP Stream".
    """
    return evidence_filter(conv, [e.frame for e in chain_events], any(e.icmp is not None for e in chain_events))


def evidence_filter(conv: Conversation, evidence_frames: Iterable[int], via_icmp: bool) -> str:
    """default_filter from the evidence's frame numbers, and whether an ICMP error is among them."""
    frames = frame_set(evidence_frames)
    if conv.proto in ("tcp", "udp") and not via_icmp:
        streams = conv.streams or (conv.stream,)
        if len(streams) == 1:
            return f"{conv.proto}.stream eq {streams[0]} && frame.number in {frames}"
        return f"{conv.proto}.stream in {{{', '.join(map(str, streams))}}} && frame.number in {frames}"
    # An ICMP error carries the quoted conversation's addresses and ports inside it (fields match
    # anywhere in the packet), so an address/port filter names the evidence with the ICMP error.
    ip = "ipv6.addr" if ":" in conv.client.addr else "ip.addr"
    parts = [f"{ip} == {conv.client.addr}", f"{ip} == {conv.server.addr}"]
    if conv.proto in ("tcp", "udp"):
        parts += [f"{conv.proto}.port == {conv.client.port}", f"{conv.proto}.port == {conv.server.port}"]
    parts.append(f"frame.number in {frames}")
    return " && ".join(parts)


Candidates = tuple[tuple[int, Pattern], ...]  # (direction of A, pattern) pairs of one rule, in order


RST_FLAG: Final = TCP_FLAG_NAMES["RST"]
TTL_ODD: Final = int(Mark.TTL_ODD)
IPID_ODD: Final = int(Mark.IPID_ODD)
GENERIC_FAMILY: Final = "GEN"  # the generic findings: last in precedence, after any unlisted rule


def precedence_rank(order: Sequence[str]) -> Callable[[str], int]:
    """How a rule code ranks under the precedence list (lower leads); unlisted codes rank before the generic ones."""
    index = {code: i for i, code in enumerate(order)}
    generic = next((i for i, code in enumerate(order) if code.startswith(GENERIC_FAMILY)), len(order))

    def rank(code: str) -> int:
        found = index.get(code)
        if found is not None:
            return 2 * found
        return 2 * generic - 1

    return rank


class RuleSet:
    """The loaded rules, in code order, and their evaluation on conversations."""

    def __init__(self, rules: Sequence[Rule], order: Sequence[str] = ()) -> None:
        """order: the precedence list (rules/precedence.yaml): which rule leads when several fire."""
        self.rules: list[Rule] = sorted(rules, key=lambda r: r.code)
        self.order: tuple[str, ...] = tuple(order)
        self.rank = precedence_rank(self.order)
        self._by_code = {r.code: r for r in self.rules}
        self._gated: list[tuple[Rule, tuple[tuple[int, Pattern, Gate], ...]]] = [
            (r, tuple((a_dir, p, gate(p)) for a_dir, patterns in r.bindings for p in patterns)) for r in self.rules
        ]
        self._messages = {r.code: compile_message(r.message) for r in self.rules}
        # rules whose message names the conversation or stream number (none built in; a user's may)
        self._numbered = frozenset(r.code for r in self.rules if _NUMBERS.intersection(template_names(r.message)))
        # feature word -> the rules (and their patterns) whose gates admit it
        self._admitted: dict[int, tuple[tuple[Rule, Candidates], ...]] = {}

    def __len__(self) -> int:
        return len(self.rules)

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.rules)

    def get(self, code: str) -> Rule:
        """The rule with this code (case-insensitive), or UsageError."""
        rule = self._by_code.get(code.strip().upper())
        if rule is None:
            raise UsageError(f"unknown rule code {code!r}", hint="`wsadiag rules` lists the rule codes")
        return rule

    def candidates(self, word: int) -> tuple[tuple[Rule, Candidates], ...]:
        """The rules, in code order, with those of their patterns whose gates admit a feature word."""
        found = self._admitted.get(word)
        if found is None:
            out: list[tuple[Rule, Candidates]] = []
            for rule, gated in self._gated:
                admitted = tuple((a_dir, p) for a_dir, p, g in gated if g.admits(word))
                if admitted:
                    out.append((rule, admitted))
            found = tuple(out)
            if len(self._admitted) >= _MEMO_LIMIT:
                self._admitted.clear()
            self._admitted[word] = found
        return found

    def could_fire(self, traits: Traits) -> bool:
        """False when no rule can fire on a conversation with these traits (it need not be built)."""
        word = trait_features(traits)
        todo = self._admitted.get(word)
        if todo is None:
            todo = self.candidates(word)
        return bool(todo)

    def evaluate(
        self, conv: Conversation, stream_filter: Callable[[Conversation, Sequence[Event]], str] | None = None
    ) -> list[Finding]:
        """Findings for one conversation, in code order; a rule fires at most once per conversation.

        `stream_filter(conv, evidence_events)` may replace the default Wireshark filter.
        At most one finding: when several rules fire, the precedence order picks the one that
        leads and the others become its `also` alternatives.
        """
        if not conv.timeline:
            return []
        word = conversation_features(conv)
        todo = self._admitted.get(word)
        if todo is None:
            todo = self.candidates(word)
        if not todo:
            return []
        fired: list[tuple[Rule, int, list[int]]] = []
        for rule, patterns in todo:
            hit = _first_match(patterns, conv)
            if hit is not None:
                fired.append((rule, *hit))
        if not fired:
            return []
        # One conversation, one failure: the rule that ranks first leads, the others are kept under it.
        fired.sort(key=lambda hit: (self.rank(hit[0].code), hit[0].code))
        build = stream_filter or default_filter
        rule, a_dir, chain = fired[0]
        primary = _finding(rule, self._messages[rule.code], conv, a_dir, chain, build)
        if len(fired) == 1:
            return [primary]
        also = tuple(
            Alternative(
                other.code,
                other.name,
                other.title,
                self._messages[other.code].render(_evidence(conv, other_dir, other_chain)),
                other.confidence,
            )
            for other, other_dir, other_chain in fired[1:]
            # A generic finding only stands in when nothing specific fired: it is no alternative.
            if not other.code.startswith(GENERIC_FAMILY)
        )
        return [dataclasses.replace(primary, also=also)]

    def names_numbers(self, findings: Sequence[Finding]) -> bool:
        """Whether a message of the findings (or of their alternatives) names the conversation or stream number."""
        numbered = self._numbered
        return any(f.rule in numbered or any(a.rule in numbered for a in f.also) for f in findings)

    def renumbered(self, finding: Finding, conv: Conversation) -> Finding:
        """`finding`, judged by evaluate() on this conversation under other conversation and stream
        numbers (a share of a split capture), with conv's own. Only for a finding whose messages do
        not name them (names_numbers); for one that does, judge the conversation again."""
        text = finding.wireshark_filter
        if text.startswith(f"{conv.proto}.stream "):  # default_filter's stream form: no ICMP error in the evidence
            text = evidence_filter(conv, finding.frames, via_icmp=False)
        return dataclasses.replace(finding, conversation=conv.id, wireshark_filter=text)


def _first_match(patterns: Candidates, conv: Conversation) -> tuple[int, list[int]] | None:
    best: tuple[int, list[int]] | None = None
    for a_dir, pattern in patterns:
        chain = match(pattern, conv)
        if chain is not None and (best is None or chain[-1] < best[1][-1]):
            best = (a_dir, chain)
    return best


def _seen_from_icmp(
    side: Literal["client", "server"],
    endpoint: str,
    operation: str,
    conv: Conversation,
    icmp_msg: tuple[int, int],
    transport: Literal["tcp", "udp"],
) -> SocketErrorSeen | None:
    """`winsock: from-icmp`: what Windows and Linux report for the ICMP error in the evidence
    (winsock.icmp_error's tables), or None where neither reports anything."""
    from analyzer import winsock  # the socket-error catalogue

    family = 6 if ":" in conv.client.addr else 4
    phase: Literal["connect", "established"] = "established" if conv.handshake else "connect"
    on_windows = winsock.icmp_error(family, icmp_msg[0], icmp_msg[1], transport, "windows", phase)
    on_linux = winsock.icmp_error(family, icmp_msg[0], icmp_msg[1], transport, "linux", phase)
    posix = on_linux if on_linux and on_linux in winsock.ERRNO_NAMES else None
    if on_windows is None:
        if posix is None or transport != "udp":
            return None
        # Only Linux tells the socket: the record keeps the shape, named by the errno's Winsock twin.
        return winsock.seen(
            side, endpoint, operation, posix, posix_name=posix, transport=transport, windows_silent=True
        )
    silent = transport == "udp" and on_linux is None
    return winsock.seen(
        side, endpoint, operation, on_windows, posix_name=posix, transport=transport, posix_silent=silent
    )


def wire_supports(conv: Conversation, side: int) -> bool:
    """Whether the packets show something that fails a socket call on `side` (0 client, 1 server).

    A RST from the peer, an ICMP error sent toward it, or a timeout it suffered: its SYN never
    answered, its data retransmitted and never acknowledged, its keep-alives unanswered. A FIN
    is an orderly end of the stream, never an error.
    """
    me = conv.client_stats if side == 0 else conv.server_stats
    peer = conv.server_stats if side == 0 else conv.client_stats
    if peer.sent_rst:
        return True
    if any(e.icmp is not None and e.dir != side for e in conv.timeline):
        return True
    if conv.proto != "tcp":
        return False
    if me.sent_syn and not peer.packets:
        return True  # connect() timed out
    if me.unacked and me.retransmissions:
        return True  # retransmission timeout (or still retransmitting when the capture ended)
    return me.keepalives > 0 and conv.closed_by != "fin"


def tls_alert_seen(conv: Conversation) -> dict[str, object] | None:
    """The first plaintext TLS alert of the conversation: who sent it, what it means, how stacks report it."""
    from analyzer import tls  # the alert table

    for side, stats in (("server", conv.server_stats), ("client", conv.client_stats)):
        if stats.tls_alert is not None:
            level, code = stats.tls_alert
            kind = tls.alert_kind(code)
            return {
                "sender": side,
                "level": tls.LEVEL_NAMES.get(level, str(level)),
                "description": kind.name,
                "code": code,
                "meaning": kind.meaning,
                "seen_as": tls.seen_as(code),
            }
    return None


def _evidence(conv: Conversation, a_dir: int, chain: list[int]) -> _Evidence:
    events = [conv.timeline[i] for i in chain]
    icmp_ev = next((e for e in events if e.icmp is not None), None)
    if icmp_ev is None:
        icmp_ev = next((e for e in conv.timeline if e.icmp is not None), None)
    return _Evidence(conv, a_dir, events, icmp_ev)


def _side(spec_side: str, a_dir: int) -> int:
    return {"A": a_dir, "B": 1 - a_dir, "client": 0, "server": 1}[spec_side]


def _finding(
    rule: Rule,
    message: Message,
    conv: Conversation,
    a_dir: int,
    chain: list[int],
    build_filter: Callable[[Conversation, Sequence[Event]], str],
) -> Finding:
    from analyzer import winsock  # the socket-error catalogue

    evidence = _evidence(conv, a_dir, chain)
    events, icmp_ev = evidence.events, evidence.icmp
    ends = (conv.client, conv.server)
    errors: list[SocketErrorSeen] = []
    transport: Literal["tcp", "udp"] = "udp" if conv.proto == "udp" else "tcp"
    for spec in rule.errors:
        if spec.if_handshake is not None and conv.handshake != spec.if_handshake:
            continue  # e.g. connect times out when the SYN got no answer, recv once connected
        if spec.if_icmp is not None:
            if icmp_ev is None:
                continue
            v4, v6 = spec.if_icmp
            fam = len(icmp_ev.icmp_src)
            if not ((fam != 16 and icmp_ev.icmp in v4) or (fam != 4 and icmp_ev.icmp in v6)):
                continue
        d = _side(spec.side, a_dir)
        if not wire_supports(conv, d):
            continue  # an error is claimed only for what this side received or timed out on
        side: Literal["client", "server"] = "client" if d == 0 else "server"
        if spec.winsock == FROM_ICMP:
            if icmp_ev is None or icmp_ev.icmp is None:
                continue
            seen = _seen_from_icmp(side, str(ends[d]), spec.operation, conv, icmp_ev.icmp, transport)
            if seen is None:
                continue  # neither platform tells the socket: the application sees its own timeout
        else:
            seen = winsock.seen(side, str(ends[d]), spec.operation, spec.winsock, transport=transport)
        if spec.note:
            seen = dataclasses.replace(seen, note=spec.note)
        errors.append(seen)
    text = message.render(evidence)
    return Finding(
        rule=rule.code,
        name=rule.name,
        level=rule.level,
        title=rule.title,
        message=text,
        conversation=conv.id,
        errors=tuple(errors),
        cause=rule.cause,
        remedy=rule.remedy,
        confidence=rule.confidence,
        frames=tuple(sorted({e.frame for e in events})),
        tls_alert=tls_alert_seen(conv),
        wireshark_filter=build_filter(conv, events),
        references=rule.references,
        falsepositives=rule.falsepositives,
    )
