"""Ladder diagrams of a conversation's evidence: which packets to show, as text and as SVG geometry.

A conversation's timeline (Conversation.timeline) is already bounded by the flow tracker, with
one hole marked by elided_after/elided. A ladder shows the evidence packets of a finding with a
few packets of context either side; everything else collapses into "... N packets ..." rows, so
a ten-thousand-packet transfer still draws as a short diagram.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

from analyzer.model import Conversation, Event, Finding, Mark
from analyzer.protocol import ACK, RST, TCP_FLAG_NAMES
from analyzer.winsock import icmp_name

# Short annotations for the flow tracker's observations, in the order they are shown.
MARK_LABELS: tuple[tuple[Mark, str], ...] = (
    (Mark.RETRANSMISSION, "retx"),
    (Mark.SYN_RETRANSMISSION, "retx"),
    (Mark.OUT_OF_ORDER, "ooo"),
    (Mark.GAP, "gap"),
    (Mark.DUP_ACK, "dup-ack"),
    (Mark.KEEPALIVE, "keep-alive"),
    (Mark.KEEPALIVE_ACK, "keep-alive-ack"),
    (Mark.ZERO_WINDOW, "zero-win"),
    (Mark.WINDOW_PROBE, "win-probe"),
    (Mark.ACK_UNSEEN, "ack-unseen"),
    (Mark.AFTER_PEER_FIN, "after-peer-fin"),
    (Mark.AFTER_RST, "after-rst"),
    (Mark.TTL_ODD, "odd-ttl"),
    (Mark.IPID_ODD, "odd-ipid"),
)


@dataclass(frozen=True, slots=True)
class LadderRow:
    """One row of a ladder: a packet, or a run of packets left out."""

    kind: str  # "packet" or "gap"
    event: Event | None = None
    culprit: bool = False  # one of the finding's evidence frames
    label: str = ""  # arrow label (packet) or "... N packets ..." (gap)
    offset: float = 0.0  # seconds since the conversation's first packet
    skipped: int = 0  # gap: how many packets it stands for


def packet_label(conv: Conversation, ev: Event) -> str:
    """What the arrow of one packet says: flags, relative seq/ack, length, observations."""
    if ev.icmp is not None:
        family = 6 if ":" in conv.client.addr else 4  # an ICMP error shares its conversation's family
        name = icmp_name(family, *ev.icmp)
        parts = [name if name.startswith("ICMP") else ("ICMPv6 " if family == 6 else "ICMP ") + name]
    elif conv.proto == "tcp":
        flags = ",".join(name for name, bit in TCP_FLAG_NAMES.items() if ev.flags & bit) or "none"
        parts = [flags, f"seq={ev.seq}"]
        if ev.flags & ACK:
            parts.append(f"ack={ev.ack}")
        parts.append(f"len={ev.plen}")
        if ev.win == 0 and not ev.flags & RST:  # a zero window matters; a RST's window does not
            parts.append("win=0")
    else:
        parts = [conv.proto.upper(), f"len={ev.plen}"]
    if ev.payload:
        parts.append(ev.payload)
    seen: set[str] = set()
    for mark, text in MARK_LABELS:
        if ev.marks & mark and text not in seen:
            seen.add(text)
            parts.append(f"[{text}]")
    return " ".join(parts)


IDLE_SHOWN = 1.0  # seconds of silence between two adjacent packets worth a row of its own


def _gap_label(n: int) -> str:
    return f"\u2026 {n} packet{'s' if n != 1 else ''} \u2026"


def ladder_rows(conv: Conversation, finding: Finding | None, context: int = 4, max_rows: int = 40) -> list[LadderRow]:
    """The rows of a ladder for one finding (or the whole conversation when finding is None)."""
    timeline = conv.timeline
    n = len(timeline)
    evidence = set(finding.frames) if finding is not None else set()
    hits = [i for i, ev in enumerate(timeline) if ev.frame in evidence]

    if n <= max_rows:
        keep = list(range(n))
    else:
        keep = []
        ctx = context
        while True:
            wanted: set[int] = set()
            anchors = hits or [0, n - 1]
            for i in anchors:
                wanted.update(range(max(0, i - ctx), min(n, i + ctx + 1)))
            keep = sorted(wanted)
            if len(keep) <= max_rows or ctx == 0:
                break
            ctx -= 1
        if len(keep) > max_rows:  # evidence itself longer than a ladder: its two ends
            half = max_rows // 2
            keep = keep[:half] + keep[-half:]

    def skipped_between(lo: int, hi: int) -> int:
        """Packets left out between timeline indices lo and hi (exclusive), incl. the tracker's hole."""
        count = max(0, hi - lo - 1)
        if conv.elided and conv.elided_after >= 0 and lo <= conv.elided_after < hi:
            count += conv.elided
        return count

    rows: list[LadderRow] = []
    previous = -1
    for i in keep:
        gap = skipped_between(previous, i)
        ev = timeline[i]
        if gap:
            rows.append(LadderRow("gap", label=_gap_label(gap), skipped=gap))
        elif previous >= 0 and ev.ts - timeline[previous].ts >= IDLE_SHOWN:
            rows.append(LadderRow("gap", label=f"idle {ev.ts - timeline[previous].ts:.1f}s"))
        rows.append(
            LadderRow(
                "packet",
                event=ev,
                culprit=ev.frame in evidence,
                label=packet_label(conv, ev),
                offset=ev.ts - conv.start,
            )
        )
        previous = i
    tail = skipped_between(previous, n)
    if tail:
        rows.append(LadderRow("gap", label=_gap_label(tail), skipped=tail))
    return rows


LADDER_COLUMNS = 80  # a text ladder fits a classic terminal: long labels wrap inside the lanes
_PREFIX = 23  # "-> frame  +time  " before the client lane


def ascii_ladder(conv: Conversation, rows: list[LadderRow], clean=str) -> list[str]:
    """The ladder as plain text lines: frame, +time, client lane, arrow, server lane.

    `clean` escapes capture-derived text (the payload sniff is part of the label).
    Culprit rows start with '>>'. No line is longer than LADDER_COLUMNS (IPv6 endpoints
    aside): a label too long for the lane continues on the rows below its arrow.
    """
    labels = [clean(r.label) for r in rows]
    widest = LADDER_COLUMNS - _PREFIX - 2
    lane = min(max([len(s) + 8 for s in labels] + [30]), widest)
    client, server = clean(conv.client), clean(conv.server)
    head = f"{'':2} {'frame':>7} {'time':>10}  {client:<{max(lane + 2 - len(server), len(client) + 1)}}{server}"
    lines = [head]
    for row, label in zip(rows, labels):
        if row.kind == "gap":
            lines.append(f"{'':2} {'':>7} {'':>10}  |{label:^{lane}}|")
            continue
        ev = row.event
        assert ev is not None
        parts = textwrap.wrap(label, lane - 5) or [""]
        body = f" {parts[0]} "
        if ev.dir == 0:
            arrow = "|" + body.center(lane - 1, "-") + ">|"
        else:
            arrow = "|<" + body.center(lane - 1, "-") + "|"
        mark = ">>" if row.culprit else "  "
        lines.append(f"{mark} {ev.frame:>7} {'+' + format(row.offset, '.3f') + 's':>10}  {arrow}")
        lines += [f"{'':2} {'':>7} {'':>10}  |{more:^{lane}}|" for more in parts[1:]]
    return lines


@dataclass(frozen=True, slots=True)
class SvgArrow:
    """Geometry of one SVG ladder row, for the HTML template."""

    kind: str
    y: int
    x1: int = 0
    x2: int = 0
    label: str = ""
    frame: int = 0
    time: str = ""
    culprit: bool = False
    head: str = ""  # polygon points of the arrow head


@dataclass(frozen=True, slots=True)
class SvgLadder:
    """Everything the template needs to draw a ladder as inline SVG."""

    width: int
    height: int
    client_x: int
    server_x: int
    top: int
    bottom: int
    client: str
    server: str
    rows: tuple[SvgArrow, ...]


SVG_ROW = 30  # pixels per row
SVG_TOP = 44  # room for the endpoint names
SVG_CLIENT_X = 220
SVG_SERVER_X = 640
SVG_WIDTH = 860


def svg_ladder(conv: Conversation, rows: list[LadderRow]) -> SvgLadder:
    """Lay out a ladder: client line on the left, server on the right, one row per packet or gap."""
    arrows: list[SvgArrow] = []
    y = SVG_TOP + SVG_ROW
    for row in rows:
        if row.kind == "gap":
            arrows.append(SvgArrow("gap", y, label=row.label))
        else:
            ev = row.event
            assert ev is not None
            x1, x2 = (SVG_CLIENT_X, SVG_SERVER_X) if ev.dir == 0 else (SVG_SERVER_X, SVG_CLIENT_X)
            step = 9 if x2 > x1 else -9
            head = f"{x2},{y} {x2 - step},{y - 5} {x2 - step},{y + 5}"
            arrows.append(
                SvgArrow("packet", y, x1, x2 - step // 3, row.label, ev.frame, f"+{row.offset:.3f}s", row.culprit, head)
            )
        y += SVG_ROW
    return SvgLadder(
        SVG_WIDTH,
        y,
        SVG_CLIENT_X,
        SVG_SERVER_X,
        SVG_TOP,
        y - SVG_ROW // 2,
        str(conv.client),
        str(conv.server),
        tuple(arrows),
    )
