"""The rule language: every step predicate and `where:` condition, documented and compiled here.

A rule's `match:` is turned, once at load time, into plain closures over `Event` and
`Conversation`. The tables below are the single source of the vocabulary: the compiler
dispatches on them and `vocabulary_markdown()` documents them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from analyzer.capture.etwfacts import COMPONENT_KINDS, DROP_REASONS
from analyzer.flows.zeek import CONN_STATES as ZEEK_CONN_STATES
from analyzer.flows.zeek import ENDPOINT_STATES as ZEEK_ENDPOINT_STATES
from analyzer.model import MARKS, Conversation, Event, Mark, SideStats, WindowsDrop, event_drop
from analyzer.peer.fates import FATE_MARKS, FATES
from analyzer.protocol import TCP_FLAG_NAMES
from analyzer.rules.source import Source
from analyzer.rules.tables import (
    CONN_STATES,
    DURATION_UNITS,
    ENDPOINT_STATES,
    ICMP_ANY,
    ICMP_ERRORS,
    ICMP_GROUPS,
    MARK_NAMES,
    MAX_DURATION,
    PAYLOAD_KINDS,
    PROTOS,
)

if TYPE_CHECKING:  # annotations only: the two-capture records load with two captures
    from analyzer.peer.model import PathView

MAX_STEPS = 32  # steps in one sequence; a longer chain is not a diagnosable pattern
SIDES = ("A", "B", "client", "server")

# Step predicates: name -> (value syntax, meaning). Order is the documentation order.
STEP_PREDICATES: dict[str, tuple[str, str]] = {
    "from": (
        "A | B | client | server",
        "the packet travels from that side (an ICMP error travels toward the side whose packet it quotes)",
    ),
    "to": ("A | B | client | server", "the packet travels toward that side (`to: A` is `from: B`)"),
    "flags": ("FLAG or [FLAG, ...]", "all of these TCP flags are set (SYN, ACK, FIN, RST, PSH, URG, ECE, CWR)"),
    "flags_any": ("[FLAG, ...]", "at least one of these TCP flags is set"),
    "not_flags": ("FLAG or [FLAG, ...]", "none of these TCP flags is set"),
    "flags_exact": (
        "FLAG or [FLAG, ...]",
        "exactly these TCP flags are set, no others (`[RST]` is a bare RST without ACK)",
    ),
    "data": ("true | false", "the segment carries payload (plen > 0), or carries none"),
    "acks": ("fin", "the segment acknowledges the peer's FIN"),
    "kind": (
        "MARK or [MARK, ...]",
        "the flow tracker marked the packet with all of these observations (see the mark table)",
    ),
    "kind_any": ("[MARK, ...]", "the packet carries at least one of these marks"),
    "not_kind": ("MARK or [MARK, ...]", "the packet carries none of these marks"),
    "payload": (
        "KIND or [KIND, ...]",
        "the sniffed payload of this segment is one of these kinds (see the payload table)",
    ),
    "icmp": (
        "NAME, [NAME, ...] or {type: T, code: C}",
        "the packet is an ICMP/ICMPv6 error of one of these kinds (see the ICMP table); `any` is every error",
    ),
    "dropped": (
        "REASON or [REASON, ...]",
        "Windows logged this packet as dropped inside the capturing host (pktmon ETL input) with one of "
        "these reasons: a name as pktmon prints it without its `PktMonDrop_` prefix (`INET_EndpointNotFound`: "
        "no socket listened on the port; `INET_Rst`; `NL_NotLocallyDestined`; `Filtered` ...; see the drop "
        "reason table), a number, or `any`",
    ),
    "dropped_by": (
        "COMPONENT or [COMPONENT, ...]",
        "Windows dropped this packet at such a component: `firewall` (a filter's decision: Windows Firewall / "
        "WFP, IPsec), a component kind (`tcpip`, `filter`, `miniport`, `protocol`, `vmswitch`, `ipsec`, `http`, "
        "`ndis`) or a driver file name (`tcpip.sys`, `wfplwfs.sys`)",
    ),
    "within": ("DURATION", "at most this long after the previous matched step (`500ms`, `1s`, `4m`, `2h`)"),
    "after_idle": ("DURATION", "the packet came after at least this long without any packet in the conversation"),
    "fate": (
        "FATE or [FATE, ...]",
        "two captures only (`analyze --peer`): the packet's fate between the capture points is one of these "
        "(see the fate table)",
    ),
    "absent": (
        "true",
        "a negative step: no packet matching the other predicates lies between the neighbouring matched steps "
        "(before the first step, or after the last, when it stands at an end)",
    ),
}

# `where:` conditions on the whole conversation.
WHERE_CONDITIONS: dict[str, tuple[str, str]] = {
    "proto": ("tcp | udp | icmp, or a list", "the conversation's transport"),
    "state": ("STATE or [STATE, ...]", f"Zeek conn_state is one of these ({', '.join(ZEEK_CONN_STATES)})"),
    "not_state": ("STATE or [STATE, ...]", "Zeek conn_state is none of these"),
    "handshake": ("true | false", "the SYN/ACK and the ACK completing it were seen (the SYN may precede the capture)"),
    "role_inferred": (
        "true | false",
        "client and server were guessed because the handshake or first packet was missing",
    ),
    "closed_by": ('fin | rst | timeout | "", or a list', "how the flow tracker saw the conversation end"),
    "history_has": (
        "LETTERS",
        "every one of these Zeek history letters appears (upper case: client, lower case: server)",
    ),
    "history_lacks": ("LETTERS", "none of these Zeek history letters appears"),
    "A / B / client / server": ("{CONDITION: VALUE, ...}", "conditions on what that side sent (see the side table)"),
    "path": (
        "{CONDITION: VALUE, ...}",
        "two captures only (`analyze --peer`): conditions on the conversation's path (see the path table); "
        "never true with one capture",
    ),
}

# Conditions on a conversation's path inside `where: {path: {...}}` (analyzer.peer.model.PathView).
PATH_CONDITIONS: dict[str, tuple[str, str]] = {
    "matched": ("true | false", "the other capture holds this conversation too"),
    "near": ("client | server", "this capture point is the one nearer that end"),
    "translated": ("true | false", "addresses or ports differ between the two points (NAT, load balancer)"),
    "seen": ('N or "OP N"', "packets seen at both points, unchanged"),
    "changed": ('N or "OP N"', "packets seen at both points with the MSS, window or options rewritten"),
    "lost": ('N or "OP N"', "packets that left one point and never reached the other"),
    "injected": ('N or "OP N"', "packets that reached one point and never passed the other"),
    "lost_only_large": (
        "true | false",
        "in each direction that lost packets, every lost one carried more payload than any packet that got "
        "through (a path MTU black hole)",
    ),
}

# Conditions on one side's SideStats inside `where:`.
SIDE_CONDITIONS: dict[str, tuple[str, str]] = {
    "sent_fin": ("true | false", "the side sent a FIN"),
    "sent_rst": ("true | false", "the side sent a RST"),
    "sent_syn": ("true | false", "the side sent a SYN"),
    "payload_kind": ("KIND or [KIND, ...]", "the sniff of the side's first payload is one of these"),
    "state": (
        "STATE or [STATE, ...]",
        "the side's endpoint state at the end, as the wire shows it (see the endpoint state table)",
    ),
    "packets": ('N or "OP N"', "packets the side sent; OP is one of == != > >= < <="),
    "bytes": ('N or "OP N"', "payload bytes the side sent"),
    "retransmissions": ('N or "OP N"', "retransmitted segments the side sent"),
    "zero_windows": ('N or "OP N"', "zero-window advertisements the side sent"),
    "dup_acks": ('N or "OP N"', "duplicate ACKs the side sent"),
    "keepalives": ('N or "OP N"', "keep-alive probes the side sent"),
    "unacked": ('N or "OP N"', "bytes of the side's data the peer never acknowledged by the end of the capture"),
    "backoff": ("true | false", "the side re-sent its last unacknowledged segment at growing intervals (RTO backoff)"),
    "large_lost": (
        "true | false",
        "the side's never-acknowledged retransmitted segments are all large (>= 1200 bytes), smaller ones got through",
    ),
    "tls_alert": (
        "true | false | NAME or [NAME, ...]",
        "the side sent a plaintext TLS alert (of one of these descriptions: protocol_version, handshake_failure, ...)",
    ),
}

_COMPARE = re.compile(r"^\s*(==|!=|>=|<=|>|<)?\s*(\d{1,12})\s*$")
_DURATION = re.compile(r"^\s*(\d{1,9}(?:\.\d{1,6})?)\s*(ms|s|m|h|d)?\s*$")
_OPS: dict[str, Callable[[int, int], bool]] = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
}


@dataclass(frozen=True, slots=True)
class Step:
    """One compiled step: a predicate over an Event plus what the matcher and prefilter need."""

    pred: Callable[[Event], bool]
    absent: bool
    within: float | None  # seconds since the previous positive step
    dir: int | None  # required direction, None = either
    need_flags: int  # flags the step requires (prefilter)
    need_marks: int  # marks the step requires (prefilter)
    need_icmp: bool
    payloads: frozenset[str] | None  # payload kinds of which one is required (prefilter)
    where: tuple  # the rule-file path of this step, for messages
    any_flags: int = 0  # flags of which one is required (prefilter); 0: no such condition
    any_marks: int = 0  # marks of which one is required (prefilter); 0: no such condition
    data: bool | None = None  # payload required (True), forbidden (False), or either (None)


@dataclass(frozen=True, slots=True)
class Pattern:
    """One compiled alternative of `match:` for one binding of A and B."""

    where: tuple[Callable[[Conversation], bool], ...]
    steps: tuple[Step, ...]  # in file order, positive and absent
    until: Step | None
    positives: int
    facts: int = 0  # FACT_* bits its `where:` requires of the conversation (for the prefilter's gate)


# Conversation facts a `where:` can require that the prefilter can check before a conversation is
# built (most conversations have a handshake and an answering server: patterns about the others
# need not look at them).
FACT_NO_HANDSHAKE: Final = 1  # `handshake: false`
FACT_SERVER_SILENT: Final = 2  # `state: S0` (or a list of states that all mean the server sent nothing)
FACT_PATH: Final = 4  # `path:` conditions: only a two-capture analysis (analyze --peer) can meet them
SERVER_SILENT_STATES: Final = frozenset({"S0"})


def where_facts(raw: object) -> int:
    """The FACT_* bits a raw `where:` mapping requires (0 for anything it cannot promise)."""
    if not isinstance(raw, dict):
        return 0
    facts = 0
    if raw.get("handshake") is False:
        facts |= FACT_NO_HANDSHAKE
    states = raw.get("state")
    names = [states] if isinstance(states, str) else states if isinstance(states, list) else []
    if names and all(isinstance(n, str) and n in SERVER_SILENT_STATES for n in names):
        facts |= FACT_SERVER_SILENT
    if "path" in raw:
        facts |= FACT_PATH
    return facts


def _names(src: Source, where: tuple, value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        if len(value) > 32:
            raise src.error(where, "at most 32 names in one list")
        return list(value)
    raise src.error(where, "expected a name or a list of names")


def _bool(src: Source, where: tuple, value: object) -> bool:
    if not isinstance(value, bool):
        raise src.error(where, f"expected true or false, got {value!r}")
    return value


def parse_duration(src: Source, where: tuple, value: object) -> float:
    """Seconds from a rule duration: a number of seconds or '500ms', '1.5s', '4m', '2h', '1d'."""
    if isinstance(value, bool):
        raise src.error(where, f"expected a duration like 1s or 500ms, got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * DURATION_UNITS[m.group(2) or "s"]
    else:
        raise src.error(where, f"expected a duration like 1s, 500ms, 4m or 2h, got {value!r}")
    if not 0 <= seconds <= MAX_DURATION:
        raise src.error(where, f"duration {value!r} is out of range (0 to {MAX_DURATION / 86400:.0f} days)")
    return seconds


def _compare(src: Source, where: tuple, value: object) -> Callable[[int], bool]:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        op, n = "==", value
    elif isinstance(value, str) and (m := _COMPARE.match(value)):
        op, n = m.group(1) or "==", int(m.group(2))
    else:
        raise src.error(where, f'expected a count like 3 or "> 0", got {value!r}')
    fn = _OPS[op]
    return lambda x: fn(x, n)


def _flag_mask(src: Source, where: tuple, value: object) -> int:
    mask = 0
    for name in _names(src, where, value):
        bit = TCP_FLAG_NAMES.get(name.upper())
        if bit is None:
            raise src.error(where, f"unknown TCP flag {name!r} (known: {', '.join(TCP_FLAG_NAMES)})")
        mask |= bit
    return mask


def _mark_mask(src: Source, where: tuple, value: object) -> int:
    mask = 0
    for name in _names(src, where, value):
        bit = MARK_NAMES.get(name)
        if bit is None:
            raise src.error(where, f"unknown packet kind {name!r} (known: {', '.join(MARK_NAMES)})")
        mask |= bit
    return mask


def _fate_mask(src: Source, where: tuple, value: object) -> int:
    mask = 0
    for name in _names(src, where, value):
        bit = FATE_MARKS.get(name)
        if bit is None:
            raise src.error(where, f"unknown fate {name!r} (known: {', '.join(FATE_MARKS)})")
        mask |= bit
    return mask


def _with_fate(src: Source, where: tuple, raw: dict, pred: Callable[[Event], bool]) -> Callable[[Event], bool]:
    """The step's predicate, also requiring one of the `fate:` marks when the step names any."""
    if "fate" not in raw:
        return pred
    fates = _fate_mask(src, where, raw["fate"])

    def with_fate(e: Event) -> bool:
        return bool(e.marks & fates) and pred(e)

    return with_fate


def _payloads(src: Source, where: tuple, value: object) -> frozenset[str]:
    kinds = _names(src, where, value)
    for k in kinds:
        if k not in PAYLOAD_KINDS:
            raise src.error(where, f"unknown payload kind {k!r} (known: {', '.join(PAYLOAD_KINDS)})")
    return frozenset(kinds)


_REASON_NUMBERS = {name.lower(): code for code, name in DROP_REASONS.items()}
DROP_ANY = "any"
FIREWALL = "firewall"  # the words `dropped_by:` takes besides component kinds and driver names


def _drop_reasons(src: Source, where: tuple, value: object) -> frozenset[int] | None:
    """The drop reason numbers a `dropped:` value names; None means any reason."""
    out = set()
    for name in _names(src, where, [str(v) for v in value] if isinstance(value, list) else str(value)):
        if name == DROP_ANY:
            return None
        code = int(name) if name.isdigit() else _REASON_NUMBERS.get(name.lower().removeprefix("pktmondrop_"))
        if code is None:
            raise src.error(
                where, f"unknown drop reason {name!r} (a pktmon name such as INET_EndpointNotFound, a number, or any)"
            )
        out.add(code)
    return frozenset(out)


def _drop_places(src: Source, where: tuple, value: object) -> frozenset[str]:
    words = {w.lower() for w in _names(src, where, value)}
    known = set(COMPONENT_KINDS.values()) | {FIREWALL}
    for w in words:
        if w not in known and not w.endswith(".sys"):
            raise src.error(
                where, f"unknown component {w!r} (known: {', '.join(sorted(known))}, or a driver such as tcpip.sys)"
            )
    return frozenset(words)


def _drop_test(src: Source, where: tuple, raw: dict) -> Callable[[WindowsDrop | None], bool] | None:
    """The test of a step's `dropped:` and `dropped_by:` on an event's drop record, or None without them."""
    if "dropped" not in raw and "dropped_by" not in raw:
        return None
    reasons = _drop_reasons(src, where + ("dropped",), raw["dropped"]) if "dropped" in raw else None
    places = _drop_places(src, where + ("dropped_by",), raw["dropped_by"]) if "dropped_by" in raw else None

    def test(d: WindowsDrop | None) -> bool:
        if d is None or (reasons is not None and d.reason not in reasons):
            return False
        if places is None:
            return True
        return d.component_kind in places or d.driver in places or (FIREWALL in places and d.by_filter)

    return test


def icmp_names(src: Source, where: tuple, value: object) -> tuple[frozenset, frozenset] | None:
    """ICMPv4 and ICMPv6 (type, code) sets for an `icmp:` value; None means any ICMP error."""
    if isinstance(value, dict):
        t, c = value.get("type"), value.get("code")
        if (
            not isinstance(t, int)
            or isinstance(t, bool)
            or not 0 <= t <= 255
            or (c is not None and (not isinstance(c, int) or isinstance(c, bool) or not 0 <= c <= 255))
        ):
            raise src.error(where, "icmp {type, code} must be integers 0-255")
        extra = set(value) - {"type", "code"}
        if extra:
            raise src.error(where, f"icmp takes only type and code, not {sorted(extra)}")
        pairs = frozenset({(t, c)} if c is not None else {(t, code) for code in range(256)})
        return pairs, pairs
    v4: set = set()
    v6: set = set()
    for name in _names(src, where, value):
        if name == ICMP_ANY:
            return None
        for member in ICMP_GROUPS.get(name, (name,)):
            if member not in ICMP_ERRORS:
                known = [*ICMP_ERRORS, *ICMP_GROUPS, ICMP_ANY]
                raise src.error(where, f"unknown ICMP error {name!r} (known: {', '.join(known)})")
            a, b = ICMP_ERRORS[member]
            v4 |= a
            v6 |= b
    return frozenset(v4), frozenset(v6)


def _side_dir(src: Source, where: tuple, side: object, a_dir: int) -> int:
    if side == "A":
        return a_dir
    if side == "B":
        return 1 - a_dir
    if side == "client":
        return 0
    if side == "server":
        return 1
    raise src.error(where, f"expected a side (A, B, client or server), got {side!r}")


def _step_predicate(
    d: int | None,
    f_all: int,
    f_any: int,
    f_none: int,
    f_exact: int,
    data: bool | None,
    m_all: int,
    m_any: int,
    m_none: int,
    payloads: frozenset[str] | None,
    want_icmp: bool,
    any_icmp: bool,
    v4: frozenset,
    v6: frozenset,
    idle: float | None,
    drop_test: Callable[[WindowsDrop | None], bool] | None = None,
) -> Callable[[Event], bool]:
    """One closure testing every predicate of a step, cheapest first (f_exact -1: no exact flags)."""

    def pred(e: Event) -> bool:
        if d is not None and e.dir != d:
            return False
        f = e.flags
        if f & f_all != f_all or f & f_none:
            return False
        if f_any and not f & f_any:
            return False
        if f_exact >= 0 and f != f_exact:
            return False
        if data is not None and (e.plen > 0) != data:
            return False
        m = e.marks
        if m & m_all != m_all or m & m_none:
            return False
        if m_any and not m & m_any:
            return False
        if payloads is not None and e.payload not in payloads:
            return False
        if want_icmp:
            if e.icmp is None:
                return False
            if not any_icmp:
                # The ICMP sender's address length tells the family; unknown: either table.
                fam = len(e.icmp_src)
                if fam == 16:
                    ok = e.icmp in v6
                elif fam == 4:
                    ok = e.icmp in v4
                else:
                    ok = e.icmp in v4 or e.icmp in v6
                if not ok:
                    return False
        if idle is not None and e.idle < idle:
            return False
        if drop_test is not None and not drop_test(event_drop(e)):
            return False
        return True

    return pred


def compile_step(src: Source, where: tuple, raw: object, a_dir: int, *, first: bool) -> Step:
    """Compiles one step mapping into a single closure with its masks precomputed."""
    if not isinstance(raw, dict) or not raw:
        raise src.error(where, "a step is a mapping of predicates, e.g. {from: A, flags: [RST]}")
    for key in raw:
        if key not in STEP_PREDICATES:
            raise src.error(where + (key,), f"unknown step predicate {key!r} (known: {', '.join(STEP_PREDICATES)})")

    def at(key: str) -> tuple:
        return where + (key,)

    d: int | None = None
    if "from" in raw:
        d = _side_dir(src, at("from"), raw["from"], a_dir)
    if "to" in raw:
        t = 1 - _side_dir(src, at("to"), raw["to"], a_dir)
        if d is not None and d != t:
            raise src.error(at("to"), "`from` and `to` name the same side")
        d = t
    f_all = _flag_mask(src, at("flags"), raw["flags"]) if "flags" in raw else 0
    f_any = _flag_mask(src, at("flags_any"), raw["flags_any"]) if "flags_any" in raw else 0
    f_none = _flag_mask(src, at("not_flags"), raw["not_flags"]) if "not_flags" in raw else 0
    f_exact = _flag_mask(src, at("flags_exact"), raw["flags_exact"]) if "flags_exact" in raw else -1
    if f_all & f_none:
        raise src.error(at("not_flags"), "a flag is both required and forbidden")
    data = _bool(src, at("data"), raw["data"]) if "data" in raw else None
    m_all = _mark_mask(src, at("kind"), raw["kind"]) if "kind" in raw else 0
    if "acks" in raw:
        if raw["acks"] != "fin":
            raise src.error(at("acks"), f"acks takes `fin`, got {raw['acks']!r}")
        m_all |= Mark.ACKS_FIN
    m_any = _mark_mask(src, at("kind_any"), raw["kind_any"]) if "kind_any" in raw else 0
    m_none = _mark_mask(src, at("not_kind"), raw["not_kind"]) if "not_kind" in raw else 0
    if m_all & m_none:
        raise src.error(at("not_kind"), "a kind is both required and forbidden")
    payloads = _payloads(src, at("payload"), raw["payload"]) if "payload" in raw else None
    want_icmp = "icmp" in raw
    icmp_sets = icmp_names(src, at("icmp"), raw["icmp"]) if want_icmp else None
    within = parse_duration(src, at("within"), raw["within"]) if "within" in raw else None
    idle = parse_duration(src, at("after_idle"), raw["after_idle"]) if "after_idle" in raw else None
    absent = _bool(src, at("absent"), raw["absent"]) if "absent" in raw else False
    if "absent" in raw and not absent:
        raise src.error(at("absent"), "write `absent: true` or leave it out")
    if absent and within is not None:
        raise src.error(at("within"), "an absent step has no time of its own to measure `within` from")
    if within is not None and first:
        raise src.error(at("within"), "`within` on the first step has no previous step to measure from")
    if absent and set(raw) == {"absent"}:
        raise src.error(where, "an absent step needs at least one predicate saying what must not appear")

    drop_test = _drop_test(src, where, raw)
    any_icmp = icmp_sets is None  # `icmp: any`, or no icmp condition at all
    v4, v6 = icmp_sets if icmp_sets is not None else (frozenset(), frozenset())
    pred = _step_predicate(
        d,
        f_all,
        f_any,
        f_none,
        f_exact,
        data,
        m_all,
        m_any,
        m_none,
        payloads,
        want_icmp,
        any_icmp,
        v4,
        v6,
        idle,
        drop_test,
    )

    return Step(
        pred=_with_fate(src, at("fate"), raw, pred),
        absent=absent,
        within=within,
        dir=d,
        need_flags=f_all | max(f_exact, 0),
        need_marks=m_all,
        need_icmp=want_icmp,
        payloads=payloads,
        where=where,
        any_flags=f_any,
        any_marks=m_any,
        data=data,
    )


ConvTest = Callable[[Conversation], bool]  # a compiled `where:` condition
SideTest = Callable[[SideStats], bool]  # a compiled side condition

# What the boolean and counting conditions read: the condition name is the field name.
_SIDE_FLAGS: dict[str, Callable[[SideStats], bool]] = {
    "sent_fin": lambda s: s.sent_fin,
    "sent_rst": lambda s: s.sent_rst,
    "sent_syn": lambda s: s.sent_syn,
    "backoff": lambda s: s.backoff,
    "large_lost": lambda s: s.large_lost,
}
_SIDE_COUNTS: dict[str, Callable[[SideStats], int]] = {
    "packets": lambda s: s.packets,
    "bytes": lambda s: s.bytes,
    "retransmissions": lambda s: s.retransmissions,
    "zero_windows": lambda s: s.zero_windows,
    "dup_acks": lambda s: s.dup_acks,
    "keepalives": lambda s: s.keepalives,
    "unacked": lambda s: s.unacked,
}
_CONV_FLAGS: dict[str, Callable[[Conversation], bool]] = {
    "handshake": lambda c: c.handshake,
    "role_inferred": lambda c: c.role_inferred,
}


# Each condition is its own closure so that it captures this key's values, not the loop's last.
def _side_flag(read: Callable[[SideStats], bool], want: bool) -> SideTest:
    def test(s: SideStats) -> bool:
        return read(s) == want

    return test


def _side_count(read: Callable[[SideStats], int], compare: Callable[[int], bool]) -> SideTest:
    def test(s: SideStats) -> bool:
        return compare(read(s))

    return test


def _payload_kind_in(kinds: frozenset[str]) -> SideTest:
    def test(s: SideStats) -> bool:
        return s.payload_kind in kinds

    return test


def _tls_alert_in(codes: frozenset[int] | None, want: bool) -> SideTest:
    # codes None: any alert at all
    def test(s: SideStats) -> bool:
        alert = s.tls_alert
        if alert is None:
            return not want
        return want == (codes is None or alert[1] in codes)

    return test


def _tls_alerts(src: Source, where: tuple, value: object) -> SideTest:
    from analyzer import tls  # the alert table

    if isinstance(value, bool):
        return _tls_alert_in(None, value)
    names = _names(src, where, value)
    unknown = [n for n in names if n not in tls.BY_NAME]
    if unknown:
        raise src.error(where, f"unknown TLS alert {unknown[0]!r} (known: {', '.join(tls.BY_NAME)})")
    return _tls_alert_in(frozenset(tls.BY_NAME[n].code for n in names), True)


def _side_state_in(states: frozenset[str]) -> SideTest:
    def test(s: SideStats) -> bool:
        return s.state in states

    return test


def _endpoint_states(src: Source, where: tuple, value: object) -> frozenset[str]:
    states = frozenset(_names(src, where, value))
    unknown = states - ENDPOINT_STATES
    if unknown:
        known = ", ".join(s for s in ZEEK_ENDPOINT_STATES if s)
        raise src.error(where, f"unknown endpoint state {sorted(unknown)} (known: {known})")
    return states


def _side_conditions(src: Source, where: tuple, raw: object) -> list[SideTest]:
    if not isinstance(raw, dict):
        raise src.error(where, "side conditions are a mapping, e.g. {sent_fin: false}")
    out: list[SideTest] = []
    for key, value in raw.items():
        at = where + (key,)
        if key not in SIDE_CONDITIONS:
            raise src.error(at, f"unknown side condition {key!r} (known: {', '.join(SIDE_CONDITIONS)})")
        if key in _SIDE_FLAGS:
            out.append(_side_flag(_SIDE_FLAGS[key], _bool(src, at, value)))
        elif key == "payload_kind":
            out.append(_payload_kind_in(_payloads(src, at, value)))
        elif key == "tls_alert":
            out.append(_tls_alerts(src, at, value))
        elif key == "state":
            out.append(_side_state_in(_endpoint_states(src, at, value)))
        else:
            out.append(_side_count(_SIDE_COUNTS[key], _compare(src, at, value)))
    return out


def _proto_in(protos: frozenset[str]) -> ConvTest:
    def test(c: Conversation) -> bool:
        return c.proto in protos

    return test


def _state_in(states: frozenset[str], want: bool) -> ConvTest:
    def test(c: Conversation) -> bool:
        return (c.state in states) == want

    return test


def _conv_flag(read: Callable[[Conversation], bool], want: bool) -> ConvTest:
    def test(c: Conversation) -> bool:
        return read(c) == want

    return test


def _closed_by_in(ways: frozenset[str]) -> ConvTest:
    def test(c: Conversation) -> bool:
        return c.closed_by in ways

    return test


def _history_has(letters: tuple[str, ...]) -> ConvTest:
    def test(c: Conversation) -> bool:
        return all(x in c.history for x in letters)

    return test


def _history_lacks(letters: tuple[str, ...]) -> ConvTest:
    def test(c: Conversation) -> bool:
        return not any(x in c.history for x in letters)

    return test


def _side_holds(side: int, conds: tuple[SideTest, ...]) -> ConvTest:
    def test(c: Conversation) -> bool:
        stats = c.client_stats if side == 0 else c.server_stats
        return all(f(stats) for f in conds)

    return test


PathTest = Callable[["PathView"], bool]  # a compiled path condition
_PATH_FLAGS: dict[str, Callable[[PathView], bool]] = {
    "matched": lambda v: v.peer_conversation > 0,
    "translated": lambda v: v.translated,
    "lost_only_large": lambda v: v.lost_only_large,
}


def _path_flag(read: Callable[[PathView], bool], want: bool) -> PathTest:
    def test(v: PathView) -> bool:
        return read(v) == want

    return test


def _path_count(fate: str, compare: Callable[[int], bool]) -> PathTest:
    def test(v: PathView) -> bool:
        return compare(v.count(fate))

    return test


def _path_near(end: str) -> PathTest:
    def test(v: PathView) -> bool:
        return v.here_near == end

    return test


def _path_conditions(src: Source, where: tuple, raw: object) -> list[PathTest]:
    if not isinstance(raw, dict):
        raise src.error(where, "path conditions are a mapping, e.g. {matched: true}")
    out: list[PathTest] = []
    for key, value in raw.items():
        at = where + (key,)
        if key in _PATH_FLAGS:
            out.append(_path_flag(_PATH_FLAGS[key], _bool(src, at, value)))
        elif key == "near":
            if value not in ("client", "server"):
                raise src.error(at, f"expected client or server, got {value!r}")
            out.append(_path_near(str(value)))
        elif key in FATE_MARKS:
            out.append(_path_count(key, _compare(src, at, value)))
        else:
            raise src.error(at, f"unknown path condition {key!r} (known: {', '.join(PATH_CONDITIONS)})")
    return out


def _path_holds(conds: tuple[PathTest, ...]) -> ConvTest:
    def test(c: Conversation) -> bool:
        view = c.path
        return view is not None and all(f(view) for f in conds)

    return test


def compile_where(src: Source, where: tuple, raw: object, a_dir: int) -> list[ConvTest]:
    """Compiles `where:` into conversation predicates for one binding of A."""
    if not isinstance(raw, dict):
        raise src.error(where, "`where` is a mapping of conditions, e.g. {proto: tcp, handshake: true}")
    out: list[ConvTest] = []
    for key, value in raw.items():
        at = where + (key,)
        if key == "proto":
            protos = frozenset(_names(src, at, value))
            if protos - PROTOS:
                raise src.error(at, f"unknown protocol {sorted(protos - PROTOS)} (known: tcp, udp, icmp)")
            out.append(_proto_in(protos))
        elif key in ("state", "not_state"):
            states = frozenset(_names(src, at, value))
            if states - CONN_STATES:
                raise src.error(
                    at, f"unknown conn_state {sorted(states - CONN_STATES)} (known: {', '.join(sorted(CONN_STATES))})"
                )
            out.append(_state_in(states, key == "state"))
        elif key in _CONV_FLAGS:
            out.append(_conv_flag(_CONV_FLAGS[key], _bool(src, at, value)))
        elif key == "closed_by":
            out.append(_closed_by_in(frozenset(_names(src, at, value))))
        elif key in ("history_has", "history_lacks"):
            if not isinstance(value, str) or not value.isalpha():
                raise src.error(at, 'expected Zeek history letters, e.g. "Dd"')
            out.append((_history_has if key == "history_has" else _history_lacks)(tuple(value)))
        elif key == "path":
            out.append(_path_holds(tuple(_path_conditions(src, at, value))))
        elif key in SIDES:
            side = _side_dir(src, at, key, a_dir)
            out.append(_side_holds(side, tuple(_side_conditions(src, at, value))))
        else:
            known = ", ".join([k for k in WHERE_CONDITIONS if " " not in k] + list(SIDES))
            raise src.error(at, f"unknown where condition {key!r} (known: {known})")
    return out


def compile_pattern(
    src: Source, where: tuple, raw: dict, a_dir: int, outer_where: list, outer_facts: int = 0
) -> Pattern:
    """Compiles one `sequence:` (with its `where:` and `until:`) for one binding of A.

    outer_facts: the FACT_* bits the rule-level `where:` requires (where_facts).
    """
    seq = raw.get("sequence")
    if not isinstance(seq, list) or not seq:
        raise src.error(where + ("sequence",), "`sequence` is a non-empty list of steps")
    if len(seq) > MAX_STEPS:
        raise src.error(where + ("sequence",), f"{len(seq)} steps: at most {MAX_STEPS} steps in a sequence")
    conds = list(outer_where)
    if "where" in raw:
        conds += compile_where(src, where + ("where",), raw["where"], a_dir)
    steps: list[Step] = []
    seen_positive = False
    for i, s in enumerate(seq):
        absent = isinstance(s, dict) and s.get("absent") is True
        step = compile_step(src, where + ("sequence", i), s, a_dir, first=not seen_positive and not absent)
        seen_positive = seen_positive or not step.absent
        steps.append(step)
    positives = sum(1 for s in steps if not s.absent)
    if positives == 0:
        raise src.error(where + ("sequence",), "a sequence needs at least one step that is not `absent`")
    until = None
    if "until" in raw:
        u = raw["until"]
        if isinstance(u, dict) and "absent" in u:
            raise src.error(where + ("until", "absent"), "`until` is already a negative step; drop `absent`")
        until = compile_step(src, where + ("until",), u, a_dir, first=True)
        if until.within is not None:
            raise src.error(where + ("until", "within"), "`until` has no time of its own")
    facts = outer_facts | where_facts(raw.get("where"))
    return Pattern(where=tuple(conds), steps=tuple(steps), until=until, positives=positives, facts=facts)


def uses_ab(raw: object) -> bool:
    """Whether a rule fragment mentions side A or B (if not, one binding of A suffices)."""
    if isinstance(raw, dict):
        return any(
            k in ("A", "B") or (k in ("from", "to", "side") and v in ("A", "B")) or uses_ab(v) for k, v in raw.items()
        )
    if isinstance(raw, list):
        return any(uses_ab(v) for v in raw)
    return False


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _pairs(pairs: frozenset[tuple[int, int]]) -> str:
    return ", ".join(f"{t}/{c}" for t, c in sorted(pairs)) or "-"


EMPTY = '""'  # how a rule file writes the empty state


def vocabulary_markdown() -> str:
    """The rule language reference, generated from the tables the compiler uses."""
    out = [
        "# The wsadiag rule language",
        "",
        "A rule's `match:` has optional `where:` conditions on the whole conversation and a",
        "`sequence:` of ordered steps (or `any_of:` a list of such {where, sequence, until}",
        "alternatives). A and B bind to the two sides of the conversation: both bindings are",
        "tried unless `match: {A: client}` (or `A: server`) pins A. Steps match packets in",
        "order; each step after the first is matched after the previous one. `until:` is a",
        "step that must not occur between the first and the last matched step.",
        "",
        "## Step predicates",
        "",
        "| predicate | value | meaning |",
        "|---|---|---|",
    ]
    out += [f"| `{k}` | {_cell(v)} | {_cell(d)} |" for k, (v, d) in STEP_PREDICATES.items()]
    out += ["", "## `where:` conditions", "", "| condition | value | meaning |", "|---|---|---|"]
    out += [f"| `{k}` | {_cell(v)} | {_cell(d)} |" for k, (v, d) in WHERE_CONDITIONS.items()]
    out += [
        "",
        "## Side conditions (under `where: {A: {...}}`)",
        "",
        "| condition | value | meaning |",
        "|---|---|---|",
    ]
    out += [f"| `{k}` | {_cell(v)} | {_cell(d)} |" for k, (v, d) in SIDE_CONDITIONS.items()]
    out += ["", "## Endpoint states (side `state:`)", "", "| state | the side at the end of the capture |", "|---|---|"]
    out += [f"| `{k or EMPTY}` | {_cell(d)} |" for k, d in ZEEK_ENDPOINT_STATES.items()]
    out += [
        "",
        "## Path conditions (under `where: {path: {...}}`)",
        "",
        "| condition | value | meaning |",
        "|---|---|---|",
    ]
    out += [f"| `{k}` | {_cell(v)} | {_cell(d)} |" for k, (v, d) in PATH_CONDITIONS.items()]
    out += ["", "## Packet fates (`fate:`, two captures)", "", "| fate | meaning |", "|---|---|"]
    out += [f"| `{k}` | {_cell(d)} |" for k, d in FATES.items() if k in FATE_MARKS]
    out += ["", "## Packet kinds (`kind:`)", "", "| kind | observation by the flow tracker |", "|---|---|"]
    out += [f"| `{m.word}` | {_cell(m.doc)} |" for m in MARKS]
    out += ["", "## Payload kinds (`payload:`, `payload_kind:`)", "", "| kind | meaning |", "|---|---|"]
    out += [f"| `{k}` | {d} |" for k, d in PAYLOAD_KINDS.items()]
    out += ["", "## ICMP errors (`icmp:`)", "", "| name | ICMPv4 type/code | ICMPv6 type/code |", "|---|---|---|"]
    for name, (v4, v6) in ICMP_ERRORS.items():
        out.append(f"| `{name}` | {_pairs(v4)} | {_pairs(v6)} |")
    for name, members in ICMP_GROUPS.items():
        out.append(f"| `{name}` | any of {', '.join(members)} | |")
    out.append(f"| `{ICMP_ANY}` | every ICMP error attached to the conversation | |")
    out += ["", "## Windows drop reasons (`dropped:`)", "", "| name | number |", "|---|---|"]
    out += [f"| `{name}` | {code} |" for code, name in DROP_REASONS.items()]
    out.append("| any other number | itself |")
    out += [
        "",
        "## Durations",
        "",
        "A number of seconds, or a number with a unit: `ms`, `s`, `m`, `h`, `d` (e.g. `500ms`, `1.5s`, `4m`).",
        f"At most {MAX_DURATION / 86400:.0f} days.",
        "",
        "## Message placeholders",
        "",
        "`message:` may use these, substituted by name (no expressions):",
        "",
    ]
    from analyzer.rules.engine import PLACEHOLDERS, STEP_FIELDS  # the engine fills them

    out += [f"- `{{{k}}}`: {d}" for k, d in PLACEHOLDERS.items()]
    out.append(
        f"- `{{stepN.FIELD}}` for the N-th matched step (1-based, absent steps not counted), "
        f"FIELD one of: {', '.join(STEP_FIELDS)}"
    )
    out.append("")
    return "\n".join(out)
