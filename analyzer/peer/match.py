"""Which conversation of one capture is which of the other's, and which packet is which.

Conversations are matched by their 5-tuple where no address was rewritten; through a NAT or a
load balancer by the initial sequence numbers (rewritten addresses and ports leave them alone);
where those are rewritten too, by the first payload bytes each side sent, when no other
conversation began with the same bytes; and last by the payload lengths each side sent, turn by
turn, at times that agree with the other capture's clock: what a proxy that terminates the
connection (its own ports and sequence numbers on each side) leaves alike, and what tells apart
conversations that all began with the same request. Packets of a matched pair are then paired
by what a middlebox does not change (direction, flags, sequence and acknowledgement numbers
relative to the SYNs, payload length), copy by copy in time order.
"""

from __future__ import annotations

import statistics
from bisect import bisect_left, bisect_right
from collections import defaultdict
from dataclasses import dataclass

from analyzer.model import Conversation
from analyzer.peer.model import PointPacket
from analyzer.protocol import ACK, FIN, IPPROTO_TCP, RST, SYN

KEY_FLAGS = SYN | FIN | RST | ACK  # the flags that say what a segment is (PSH, ECE, CWR may be rewritten)
NEAREST_LIMIT = 4096  # copies x copies of one key beyond which they are paired in step rather than nearest-first
PAIR_WINDOW = 2.0  # seconds: the most a copy may lie from its twin, clocks aligned (one-way delay and jitter)
TURN_WINDOW = 1.0  # seconds: the most a turn of a lengths+timing match may lie from the clock offset
MODE_WINDOW = 0.01  # seconds: lengths+timing candidates this close in first-turn shift vote for one offset
SMALL_GROUP = 64  # alike conversations (near x far) few enough that every pair votes for the offset
RHYTHM = 8  # start gaps in a run that tells a large group's conversations apart
ANCHORS = 16  # runs looked for at the other point, per large group
CHOICES = 8  # lengths+timing candidates kept per conversation, nearest the offset first
BY_LENGTHS = "lengths+timing"


@dataclass(slots=True)
class Side:
    """One conversation at one capture point, with its packets (dir 0: from its client)."""

    conv: Conversation
    packets: list[tuple[int, PointPacket]]

    def first(self, d: int, want: int, refuse: int = 0) -> PointPacket | None:
        for pd, p in self.packets:
            if pd == d and p.flags & want == want and not p.flags & refuse:
                return p
        return None

    def isn(self, d: int) -> int | None:
        p = self.first(d, SYN, 0 if d else ACK)
        return p.seq if p is not None else None

    def head(self, d: int) -> bytes:
        for pd, p in self.packets:
            if pd == d and p.plen > 0 and p.head and p.icmp is None:
                return p.head
        return b""

    def turns(self) -> list[tuple[int, int, float]]:
        """(dir, new payload bytes, time of its first packet) per turn, in time order.

        A TCP turn is a run of new data from one side until the other sends new data: counted in
        bytes, so a proxy or offload that cuts the stream into other segments leaves it alike,
        and retransmitted bytes are not counted twice. A UDP datagram is a turn of its own.
        """
        out: list[tuple[int, int, float]] = []
        base: list[int | None] = [None, None]
        high = [0, 0]
        for d, p in self.packets:
            if p.plen <= 0 or p.icmp is not None:
                continue
            new = p.plen
            if p.proto == IPPROTO_TCP:
                if base[d] is None:
                    base[d] = p.seq
                start = (p.seq - (base[d] or 0)) & 0xFFFFFFFF
                new = max(0, start + p.plen - max(start, high[d]))
                high[d] = max(high[d], start + p.plen)
            if not new:
                continue
            if out and out[-1][0] == d and p.proto == IPPROTO_TCP:
                out[-1] = (d, out[-1][1] + new, out[-1][2])
            else:
                out.append((d, new, p.ts))
        return out


def sides(convs: list[Conversation], packets: list[PointPacket]) -> dict[int, Side]:
    """Each TCP/UDP conversation of a capture with its packets, found by endpoints and frame range."""
    index: dict[tuple, list[Conversation]] = defaultdict(list)
    out: dict[int, Side] = {}
    for c in convs:
        if c.proto in ("tcp", "udp"):
            index[(c.proto, frozenset((str(c.client), str(c.server))))].append(c)
            out[c.id] = Side(c, [])
    for p in packets:
        proto = "tcp" if IPPROTO_TCP in (p.proto, p.quoted) else "udp"
        for c in index.get((proto, frozenset((p.src, p.dst))), ()):
            if c.first_frame <= p.frame <= c.last_frame:
                out[c.id].packets.append((0 if p.src == str(c.client) else 1, p))
                break
    return out


def match_conversations(near: dict[int, Side], far: dict[int, Side]) -> dict[int, tuple[int, str]]:
    """near conversation id -> (far conversation id, how they were matched)."""
    found: dict[int, tuple[int, str]] = {}
    taken: set[int] = set()

    def pair(how: str, key_of) -> None:
        keys: dict[object, list[int]] = defaultdict(list)
        for fid, fs in sorted(far.items()):
            k = key_of(fs)
            if fid not in taken and k is not None:
                keys[k].append(fid)
        for nid, ns in sorted(near.items()):
            k = key_of(ns)
            if nid in found or k is None or not keys.get(k):
                continue
            fid = keys[k].pop(0)
            taken.add(fid)
            found[nid] = (fid, how)

    pair("5-tuple", lambda s: (s.conv.proto, str(s.conv.client), str(s.conv.server), s.isn(0)))
    for nid, fid in match_by_endpoints(
        {i: s for i, s in near.items() if i not in found},
        {i: s for i, s in far.items() if i not in taken},
        [(near[n], far[f]) for n, (f, _) in found.items()],
    ).items():
        found[nid] = (fid, "5-tuple")
        taken.add(fid)
    pair("isn", lambda s: (s.isn(0), s.isn(1)) if s.isn(0) is not None else None)
    pair("isn", lambda s: s.isn(0))
    # The same first bytes in several conversations (health checks, retries) prove nothing:
    # only a key one conversation holds at each point pairs here; the rest go to lengths+timing.
    heads = {nid: _head_key(ns) for nid, ns in near.items() if nid not in found}
    far_heads = {fid: _head_key(fs) for fid, fs in far.items() if fid not in taken}
    once = _unique_keys(heads) & _unique_keys(far_heads)
    pair("payload", lambda s: k if (k := _head_key(s)) in once else None)
    for nid, fid in match_by_lengths(
        {i: s for i, s in near.items() if i not in found},
        {i: s for i, s in far.items() if i not in taken},
        [(near[n], far[f]) for n, (f, _) in found.items()],
    ).items():
        found[nid] = (fid, BY_LENGTHS)
    return found


def match_by_endpoints(near: dict[int, Side], far: dict[int, Side], proven: list[tuple[Side, Side]]) -> dict[int, int]:
    """near id -> far id for conversations with one 5-tuple where a capture lacks the SYN (it began
    after the handshake, or lost it), so the ISNs cannot be compared, and whose times overlap.

    Times are compared with the shift the handshake-proven matches give; without any, the clocks
    are taken to agree only as far as order goes: the same 5-tuple's conversations pair in turn.
    Two conversations whose ISNs are both known and differ are not one (a reused port, or a
    firewall that renumbers: that is for lengths+timing).
    """
    shift = statistics.median(b.conv.start - a.conv.start for a, b in proven) if proven else None
    by_key: dict[tuple, list[int]] = defaultdict(list)
    for fid, fs in sorted(far.items(), key=lambda kv: kv[1].conv.start):
        by_key[(fs.conv.proto, str(fs.conv.client), str(fs.conv.server))].append(fid)
    out: dict[int, int] = {}
    for nid, ns in sorted(near.items(), key=lambda kv: kv[1].conv.start):
        cands = by_key.get((ns.conv.proto, str(ns.conv.client), str(ns.conv.server)), [])
        cands = [fid for fid in cands if ns.isn(0) is None or far[fid].isn(0) is None]
        if shift is not None:
            cands = [fid for fid in cands if _gap(ns, far[fid], shift) <= PAIR_WINDOW]
            cands.sort(key=lambda fid: _gap(ns, far[fid], shift))
        if cands:
            out[nid] = cands[0]
            by_key[(ns.conv.proto, str(ns.conv.client), str(ns.conv.server))].remove(cands[0])
    return out


def _gap(a: Side, b: Side, shift: float) -> float:
    """How far apart two conversations' time spans lie once b's clock is set back by shift (0: they overlap)."""
    return max(0.0, a.conv.start - (b.conv.end - shift), (b.conv.start - shift) - a.conv.end)


def _head_key(s: Side) -> tuple | None:
    return (s.conv.proto, s.head(0), s.head(1)) if s.head(0) or s.head(1) else None


def _unique_keys(keys: dict[int, tuple | None]) -> set[tuple]:
    seen: dict[tuple, int] = defaultdict(int)
    for k in keys.values():
        if k is not None:
            seen[k] += 1
    return {k for k, n in seen.items() if n == 1}


Turns = list[tuple[int, int, float]]  # (dir, bytes, time of its first packet), see Side.turns


def _alike(a: Turns, b: Turns) -> int:
    """How many turns two conversations have in common by direction and size; 0 when they differ.

    The first turns must agree. A later last common turn may differ in size when one point saw
    more turns than the other (the rest lost in between, or a capture that ended first)."""
    n = min(len(a), len(b))
    if n == 0 or a[0][:2] != b[0][:2]:
        return 0
    if any(x[:2] != y[:2] for x, y in zip(a[1 : n - 1], b[1 : n - 1])) or a[n - 1][0] != b[n - 1][0]:
        return 0
    if a[n - 1][1] != b[n - 1][1] and len(a) == len(b):
        return 0
    return n


def _spread(a: Turns, b: Turns, n: int) -> float:
    """How far apart the shifts of b's turn times minus a's lie over their n common turns."""
    shifts = [y[2] - x[2] for x, y in zip(a[:n], b[:n])]
    return max(shifts) - min(shifts)


def _mode(shifts: list[float]) -> float | None:
    """The middle of the densest MODE_WINDOW of shifts (ties: the tighter cluster)."""
    shifts = sorted(shifts)
    sums = [0.0]
    for s in shifts:
        sums.append(sums[-1] + s)
    best: tuple[int, float] | None = None
    found = None
    for i, s in enumerate(shifts):
        lo, hi = bisect_left(shifts, s - MODE_WINDOW), bisect_right(shifts, s + MODE_WINDOW)
        # the summed distance to s of the shifts in the window, from prefix sums (no inner loop)
        spread = s * (i - lo) - (sums[i] - sums[lo]) + (sums[hi] - sums[i]) - s * (hi - i)
        score = (hi - lo, -spread)
        if best is None or score > best:
            best, found = score, shifts[(lo + hi) // 2]  # the window's median: its centre of mass
    return found


def _rhythm_shifts(near: list[tuple[float, int]], far: list[tuple[float, int]]) -> list[float]:
    """Clock shifts from the rhythm of many alike conversations: the run of RHYTHM gaps between
    successive starts after each of a few anchors at one point, found again at the other.

    Comparing every pair of a large group would give as many wrong shifts as right ones per
    window; the pattern of start gaps is the same at both points (give or take the delay's
    variation), and a run of them is unlike any other run.
    """
    tn, tf = [t for t, _ in near], [t for t, _ in far]
    gn = [b - a for a, b in zip(tn, tn[1:])]
    gf = [b - a for a, b in zip(tf, tf[1:])]
    if len(gn) < RHYTHM or len(gf) < RHYTHM:
        return []
    out = []
    for i in range(0, len(gn) - RHYTHM + 1, max(1, (len(gn) - RHYTHM) // ANCHORS)):
        best, where = float("inf"), -1
        for j in range(len(gf) - RHYTHM + 1):
            miss = 0.0
            for k in range(RHYTHM):
                miss += abs(gn[i + k] - gf[j + k])
                if miss >= best:
                    break
            else:
                best, where = miss, j
        out.append(tf[where] - tn[i])
    return out


def _reference_shift(
    strong: list[tuple[Side, Side]],
    near: dict[tuple, list[tuple[float, int]]],
    far: dict[tuple, list[tuple[float, int]]],
) -> float | None:
    """The far clock minus the near one, roughly: from the conversations matched by proof when there
    are some, else the shift most conversations alike in their first turn agree on (wrong pairs
    scatter): every pair of a small group votes, a large group by the rhythm of its starts."""
    if strong:
        return statistics.median(b.conv.start - a.conv.start for a, b in strong)
    shifts: list[float] = []
    for key in near.keys() & far.keys():
        if len(near[key]) * len(far[key]) <= SMALL_GROUP:
            shifts += [tf - tn for tn, _ in near[key] for tf, _ in far[key]]
        else:
            shifts += _rhythm_shifts(near[key], far[key])
    return _mode(shifts)


def _first_turns(turns: dict[int, Turns], sides: dict[int, Side]) -> dict[tuple, list[tuple[float, int]]]:
    """Conversations grouped by protocol and first turn, each group in time order."""
    out: dict[tuple, list[tuple[float, int]]] = defaultdict(list)
    for i, t in turns.items():
        if t:
            out[(sides[i].conv.proto, *t[0][:2])].append((t[0][2], i))
    for group in out.values():
        group.sort()
    return out


def match_by_lengths(near: dict[int, Side], far: dict[int, Side], strong: list[tuple[Side, Side]]) -> dict[int, int]:
    """near id -> far id for conversations alike in payload lengths turn by turn and in time.

    A candidate's first turn must lie within TURN_WINDOW of the clock offset (from the matches by
    proof, else the shift most alike conversations agree on) and its later turns keep pace; among
    candidates the pair nearest that offset wins, so identical conversations a few tenths of a
    second apart are told apart by when they happened. Only conversations alike in their first
    turn and within the window are compared, so the work grows with the conversations, not with
    their square. Conversations alike in every length and closer together than the one-way
    delay varies cannot be told apart by any of this, and may be swapped.
    """
    turns_n = {i: s.turns() for i, s in near.items()}
    turns_f = {i: s.turns() for i, s in far.items()}
    groups_n, groups_f = _first_turns(turns_n, near), _first_turns(turns_f, far)
    ref = _reference_shift(strong, groups_n, groups_f)
    if ref is None:
        return {}
    cands: list[tuple[float, int, int, int]] = []  # (distance from the offset, -common turns, near id, far id)
    for key, members in groups_n.items():
        group = groups_f.get(key, [])
        for t, nid in members:
            lo = bisect_left(group, (t + ref - TURN_WINDOW, -1))
            hi = bisect_right(group, (t + ref + TURN_WINDOW, 1 << 62))
            # nearest the offset first; a few alike ones are choice enough for the one-to-one pick.
            # Ranked by the first turn's shift, the measure the offset was found with: later turns
            # add the proxy's and the ends' own pauses, not evidence of identity.
            kept = 0
            for dist, fid in sorted((abs(tf - t - ref), fid) for tf, fid in group[lo:hi]):
                n = _alike(turns_n[nid], turns_f[fid])
                if n and _spread(turns_n[nid], turns_f[fid], n) <= 2 * TURN_WINDOW:
                    cands.append((dist, -n, nid, fid))
                    kept += 1
                    if kept == CHOICES:
                        break
    out: dict[int, int] = {}
    used: set[int] = set()
    for _, _, nid, fid in sorted(cands):
        if nid not in out and fid not in used:
            out[nid] = fid
            used.add(fid)
    return out


def _bases(a: Side, b: Side) -> tuple[int, int, int, int]:
    """Per direction, the sequence base of each capture: the SYNs when both have them, else 0 (absolute)."""
    out = []
    for d in (0, 1):
        ia, ib = a.isn(d), b.isn(d)
        out.append((ia, ib) if ia is not None and ib is not None else (0, 0))
    return out[0][0], out[0][1], out[1][0], out[1][1]


def _key(d: int, p: PointPacket, own: int, other: int) -> tuple:
    if p.icmp is not None:  # NAT rewrites the quoted header and may rewrite the sender: type and code stay
        return (d, "icmp", p.icmp)
    if p.proto != IPPROTO_TCP:
        return (d, p.plen, p.head)
    ack = (p.ack - other) & 0xFFFFFFFF if p.flags & ACK else -1
    return (d, p.flags & KEY_FLAGS, (p.seq - own) & 0xFFFFFFFF, ack, p.plen)


def keyed(a: Side, b: Side) -> tuple[dict[tuple, list[PointPacket]], dict[tuple, list[PointPacket]]]:
    """Both sides' packets grouped by a key no middlebox should change, copies in time order."""
    a0, b0, a1, b1 = _bases(a, b)
    ka: dict[tuple, list[PointPacket]] = defaultdict(list)
    kb: dict[tuple, list[PointPacket]] = defaultdict(list)
    for d, p in a.packets:
        ka[_key(d, p, a0 if d == 0 else a1, a1 if d == 0 else a0)].append(p)
    for d, p in b.packets:
        kb[_key(d, p, b0 if d == 0 else b1, b1 if d == 0 else b0)].append(p)
    return ka, kb


def unique_pairs(ka: dict, kb: dict) -> list[tuple[int, PointPacket, PointPacket]]:
    """(dir, a, b) for keys sent once and seen once at each point: pairs no timing is needed for."""
    return [(k[0], ka[k][0], kb[k][0]) for k in ka if len(ka[k]) == 1 and len(kb.get(k, ())) == 1]


def timed_pairs(ka: dict, kb: dict, offset: float) -> list[tuple[int, PointPacket, PointPacket]]:
    """(dir, a, b) for every copy, paired by nearest time once b's clock is set back by `offset`."""
    out = []
    for k, alist in ka.items():
        blist = kb.get(k)
        if not blist:
            continue
        if len(alist) * len(blist) > NEAREST_LIMIT:
            out += [(k[0], pa, pb) for pa, pb in _in_step(alist, blist, offset)]
            continue
        cands = sorted(
            (abs(pb.ts - offset - pa.ts), i, j)
            for i, pa in enumerate(alist)
            for j, pb in enumerate(blist)
            if abs(pb.ts - offset - pa.ts) <= PAIR_WINDOW
        )
        used_a: set[int] = set()
        used_b: set[int] = set()
        for _, i, j in cands:
            if i not in used_a and j not in used_b:
                used_a.add(i)
                used_b.add(j)
                out.append((k[0], alist[i], blist[j]))
    return out


def _in_step(
    alist: list[PointPacket], blist: list[PointPacket], offset: float
) -> list[tuple[PointPacket, PointPacket]]:
    """Many copies of one key (a run of duplicate ACKs): walk both lists in time order together."""
    out = []
    i = j = 0
    while i < len(alist) and j < len(blist):
        diff = blist[j].ts - offset - alist[i].ts
        if abs(diff) <= PAIR_WINDOW:
            out.append((alist[i], blist[j]))
            i += 1
            j += 1
        elif diff < 0:
            j += 1
        else:
            i += 1
    return out


def _ranges(side: Side, bases: tuple[int, int]) -> list[list[tuple[int, int, int]]]:
    """Per direction, (start, end, frame) of each data segment in sequence space relative to the base."""
    out: list[list[tuple[int, int, int]]] = [[], []]
    for d, p in side.packets:
        if p.proto == IPPROTO_TCP and p.plen > 0:
            start = (p.seq - bases[d]) & 0xFFFFFFFF
            out[d].append((start, start + p.plen, p.frame))
    return out


def _merged(ranges: list[tuple[int, int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, end, _ in sorted(ranges):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _inside(merged: list[tuple[int, int]], start: int, end: int) -> bool:
    i = bisect_right(merged, (start, 1 << 62)) - 1
    return i >= 0 and merged[i][0] <= start and end <= merged[i][1]


def resegmented(a: Side, b: Side, ka: dict, kb: dict) -> tuple[set[int], set[int]]:
    """Frames of data segments at each point that the other point saw cut differently.

    A capturing host with TSO/GSO (sending) or GRO (receiving) records segments of another size
    than the wire carried, and some middleboxes resegment: such a segment has no twin, yet its
    bytes all passed. Only segments whose key has no copy at all at the other point qualify, so
    a lost retransmission of bytes that did arrive earlier stays lost.
    """
    a0, b0, a1, b1 = _bases(a, b)
    key_a = {p.frame: k for k, ps in ka.items() for p in ps}
    key_b = {p.frame: k for k, ps in kb.items() for p in ps}
    ra, rb = _ranges(a, (a0, a1)), _ranges(b, (b0, b1))
    out: list[set[int]] = []
    for mine, theirs, keys, other_keys in ((ra, rb, key_a, kb), (rb, ra, key_b, ka)):
        found: set[int] = set()
        for d in (0, 1):
            merged = _merged(theirs[d])
            for start, end, frame in mine[d]:
                if keys.get(frame) not in other_keys and _inside(merged, start, end):
                    found.add(frame)
        out.append(found)
    return out[0], out[1]
