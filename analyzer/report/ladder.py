"""Ladder diagrams of a conversation's evidence: which packets to show, as text and as SVG geometry.

A conversation's timeline (Conversation.timeline) is already bounded by the flow tracker, with
one hole marked by elided_after/elided. A ladder shows the evidence packets of a finding with a
few packets of context either side; everything else collapses into "... N packets ..." rows, so
a ten-thousand-packet transfer still draws as a short diagram.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

from analyzer.icmp import icmp_label
from analyzer.model import MARKS, Conversation, Event, Finding, Mark
from analyzer.protocol import ACK, RST, SYN, TCP_FLAG_NAMES

# The observations a ladder labels, in the order they are shown, with the words rules use (model.MARKS).
MARK_LABELS: tuple[tuple[Mark, str], ...] = tuple((m.mark, m.word) for m in MARKS if m.ladder)


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
        parts = [icmp_label(family, *ev.icmp)]
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
    for mark, text in MARK_LABELS:
        if ev.marks & mark:
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


# -- two capture points (wsadiag analyze --peer) ---------------------------------------------

# Lane columns of a two-point ladder: client, the point nearer the client, the point nearer the
# server, server. A packet's arrow is drawn over the stretch it is known to have travelled.
PATH_LANES = (0, 14, 28, 42)
PATH_BREAK = 21  # between the two points: where a lost packet vanished or an injected one appeared
PATH_FATE_LABELS = {
    "lost": "LOST between the points",
    "injected": "INJECTED between the points",
    "proxied": "(its own leg: a proxy in between)",
    "answered": "ANSWERED between the points",
    "unknown": "",
}


def _shape(f) -> str:
    """How a packet is drawn: a proxied one arriving from the proxy starts in between, like an
    injected one; one leaving toward it ends there, like a lost one. An unknown one (the other
    capture was not running) is drawn at the lane of the point that saw it, the same way."""
    if f.fate not in ("proxied", "answered", "unknown"):
        return f.fate
    arriving = (f.near is not None) == (f.dir == 1)
    return "injected" if arriving else "lost"


BREAK_MARKS = {"injected": "*", "lost": "X", "unknown": "?", "proxied": "#", "answered": "#"}


def _path_arrow(d: int, fate: str, shape: str = "") -> str:
    c0, p1, p2, s0 = PATH_LANES
    shape = shape or fate
    row = [" "] * (s0 + 1)
    row[c0] = row[s0] = "|"
    row[p1] = row[p2] = ":"
    if shape in ("seen", "changed"):
        lo, hi = c0 + 1, s0 - 1
    elif shape == "injected":
        lo, hi = (PATH_BREAK, s0 - 1) if d == 0 else (c0 + 1, PATH_BREAK)
    else:  # lost, or seen at one point only (unknown): from its sender to the break
        lo, hi = (c0 + 1, PATH_BREAK) if d == 0 else (PATH_BREAK, s0 - 1)
    for i in range(lo, hi + 1):
        row[i] = "-"
    for lane in (p1, p2):
        if lo <= lane <= hi:
            row[lane] = "o"
    if fate in BREAK_MARKS:
        row[PATH_BREAK] = BREAK_MARKS[fate]
    if shape not in ("lost", "unknown"):
        row[hi if d == 0 else lo] = ">" if d == 0 else "<"
    return "".join(row)


def _path_icmp_label(fate_row) -> str:
    """An ICMP error's arrow: what it says, who sent it, and whether it was sent between the points."""
    p = fate_row.packet
    family = 6 if ":" in p.icmp_from else 4
    parts = [icmp_label(family, *p.icmp), f"from {p.icmp_from}"]
    if fate_row.near is not None and fate_row.far is not None:
        parts.append(f"({fate_row.delay * 1000:.2f} ms)")
    if fate_row.fate == "injected":
        parts.append("ORIGINATED between the points")
    elif fate_row.fate == "lost":
        parts.append(PATH_FATE_LABELS["lost"])
    return " ".join(parts)


def _seq_bases(packets) -> dict[tuple[bool, int], int]:
    """(at the near point?, dir) -> the sequence number counted as 0 there: its SYN, else its first packet.

    Per point, because a proxy or a sequence-randomising firewall between the points gives each
    side numbers of its own."""
    out: dict[tuple[bool, int], int] = {}
    for near in (True, False):
        for d in (0, 1):
            mine = [f for f in packets if f.dir == d and (f.near if near else f.far) is not None]
            first = next((f for f in mine if f.packet.flags & SYN), None) or (mine[0] if mine else None)
            if first is not None:
                out[(near, d)] = (first.near if near else first.far).seq
    return out


def _path_label(fate_row, bases: dict[tuple[bool, int], int]) -> str:
    p = fate_row.packet
    if p.icmp is not None:
        return _path_icmp_label(fate_row)
    if p.proto == 17:
        parts = ["UDP", f"len={p.plen}"]
    else:
        flags = ",".join(name for name, bit in TCP_FLAG_NAMES.items() if p.flags & bit) or "none"
        base = bases.get((fate_row.near is not None, fate_row.dir), 0)
        parts = [flags, f"seq={(p.seq - base) & 0xFFFFFFFF}", f"len={p.plen}"]
    if fate_row.near is not None and fate_row.far is not None:
        parts.append(f"({fate_row.delay * 1000:.2f} ms)")
    note = PATH_FATE_LABELS.get(fate_row.fate, "")
    if fate_row.fate == "injected":
        note += f" (TTL {p.ttl})"
    if note:
        parts.append(note)
    parts += [f"[{c}]" for c in fate_row.changes]
    return " ".join(parts)


def _path_keep(n: int, hits: list[int], context: int, max_rows: int) -> list[int]:
    if n <= max_rows:
        return list(range(n))
    wanted = set(range(min(3, n)))
    for i in hits or [n - 1]:
        wanted.update(range(max(0, i - context), min(n, i + context + 1)))
    return sorted(wanted)[:max_rows]


def path_ladder(
    conv: Conversation, finding: Finding | None, context: int = 4, max_rows: int = 40, clean=str
) -> list[str]:
    """A ladder with both capture points as lanes: client, point 1, point 2, server.

    Lost packets stop at an X between the points, injected ones start at a * there; the frame
    columns give each packet's number in each capture. Culprit rows start with '>>'.
    """
    view = conv.path
    if view is None:
        return []
    near_here = view.here_near == "client"
    here_frame = (lambda f: f.near) if near_here else (lambda f: f.far)
    packets = view.packets
    evidence = set(finding.frames) if finding is not None else set()
    hits = [i for i, f in enumerate(packets) if here_frame(f) is not None and here_frame(f).frame in evidence]
    bases = _seq_bases(packets)
    near_name, far_name = (view.here, view.peer) if near_here else (view.peer, view.here)
    c0, p1, p2, s0 = PATH_LANES
    lines = [
        f"   1 = {clean(near_name)} (client side), 2 = {clean(far_name)} (server side)",
        f"{'':2} {'1':>6} {'2':>6} {'time':>10}  {'client':<{p1}}{'1':<{p2 - p1}}{'2':<{s0 - p2}}server",
    ]
    start = packets[0].ts if packets else 0.0
    previous = -1
    for i in _path_keep(len(packets), hits, context, max_rows):
        if i - previous > 1:
            lines.append(f"{'':2} {'':>6} {'':>6} {'':>10}  {_gap_label(i - previous - 1)}")
        f = packets[i]
        n1 = str(f.near.frame) if f.near is not None else "-"
        n2 = str(f.far.frame) if f.far is not None else "-"
        mark = ">>" if i in hits else "  "
        label = clean(_path_label(f, bases))
        when = "+" + format(f.ts - start, ".3f") + "s"
        lines.append(f"{mark} {n1:>6} {n2:>6} {when:>10}  {_path_arrow(f.dir, f.fate, _shape(f))}  {label}")
        previous = i
    if packets and previous < len(packets) - 1:
        lines.append(f"{'':2} {'':>6} {'':>6} {'':>10}  {_gap_label(len(packets) - 1 - previous)}")
    return lines


@dataclass(frozen=True, slots=True)
class SvgPathRow:
    """Geometry of one row of a two-point SVG ladder."""

    kind: str  # "packet" or "gap"
    y: int
    x1: int = 0
    x2: int = 0
    head: str = ""  # arrow head polygon; "" when the packet never reached a lane
    label: str = ""
    frames: str = ""  # "18 / -": its frame in each capture
    time: str = ""
    culprit: bool = False
    seen_at: tuple[int, ...] = ()  # x of the capture points that saw it
    lost_x: int = 0  # where it vanished (an X), 0: did not
    injected_x: int = 0  # where it appeared (a star), 0: did not
    proxied_x: int = 0  # where a proxy between the points ended or began its leg (a square), 0: none


@dataclass(frozen=True, slots=True)
class SvgPathLadder:
    """A two-point ladder for the HTML template: four lanes, one row per packet or gap."""

    width: int
    height: int
    lanes: tuple[int, int, int, int]  # x of client, point 1, point 2, server
    names: tuple[str, str, str, str]
    top: int
    bottom: int
    rows: tuple[SvgPathRow, ...]


SVG_PATH_LANES = (240, 420, 600, 780)
SVG_PATH_WIDTH = 900


def _svg_path_row(f, y: int, culprit: bool, start: float, bases: dict[tuple[bool, int], int]) -> SvgPathRow:
    c0, p1, p2, s0 = SVG_PATH_LANES
    brk = (p1 + p2) // 2
    d, fate = f.dir, _shape(f)
    if fate in ("seen", "changed"):
        x1, x2 = (c0, s0) if d == 0 else (s0, c0)
    elif fate == "injected":
        x1, x2 = (brk, s0) if d == 0 else (brk, c0)
    else:
        x1, x2 = (c0, brk) if d == 0 else (s0, brk)
    lo, hi = min(x1, x2), max(x1, x2)
    reached = fate not in ("lost", "unknown")
    step = 9 if x2 > x1 else -9
    head = f"{x2},{y} {x2 - step},{y - 5} {x2 - step},{y + 5}" if reached else ""
    n1 = str(f.near.frame) if f.near is not None else "-"
    n2 = str(f.far.frame) if f.far is not None else "-"
    return SvgPathRow(
        "packet",
        y,
        x1,
        x2 - step // 3 if reached else x2,
        head,
        _path_label(f, bases),
        f"{n1} / {n2}",
        f"+{f.ts - start:.3f}s",
        culprit,
        tuple(x for x in (p1, p2) if lo <= x <= hi),
        brk if f.fate == "lost" else 0,
        brk if f.fate == "injected" else 0,
        brk if f.fate in ("proxied", "answered") else 0,
    )


def svg_path_ladder(
    conv: Conversation, finding: Finding | None, context: int = 4, max_rows: int = 40
) -> SvgPathLadder | None:
    """Lay out a two-point ladder: client, point 1, point 2 and server lines, one row per packet or gap."""
    view = conv.path
    if view is None:
        return None
    near_here = view.here_near == "client"
    packets = view.packets
    evidence = set(finding.frames) if finding is not None else set()
    hits = set()
    for i, f in enumerate(packets):
        here = f.near if near_here else f.far
        if here is not None and here.frame in evidence:
            hits.add(i)
    bases = _seq_bases(packets)
    start = packets[0].ts if packets else 0.0
    rows: list[SvgPathRow] = []
    y = SVG_TOP + SVG_ROW
    previous = -1
    for i in _path_keep(len(packets), sorted(hits), context, max_rows):
        if i - previous > 1:
            rows.append(SvgPathRow("gap", y, label=_gap_label(i - previous - 1)))
            y += SVG_ROW
        rows.append(_svg_path_row(packets[i], y, i in hits, start, bases))
        y += SVG_ROW
        previous = i
    near_name, far_name = (view.here, view.peer) if near_here else (view.peer, view.here)
    names = (f"client {conv.client}", f"1: {near_name}", f"2: {far_name}", f"server {conv.server}")
    return SvgPathLadder(SVG_PATH_WIDTH, y, SVG_PATH_LANES, names, SVG_TOP, y - SVG_ROW // 2, tuple(rows))
