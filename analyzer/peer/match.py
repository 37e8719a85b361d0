"""Which conversation of one capture is which of the other's, and which packet is which.

Conversations are matched by their 5-tuple where no address was rewritten; through a NAT or a
load balancer by the initial sequence numbers (rewritten addresses and ports leave them alone);
where those are rewritten too, by the first payload bytes each side sent. Packets of a matched
pair are then paired by what a middlebox does not change (direction, flags, sequence and
acknowledgement numbers relative to the SYNs, payload length), copy by copy in time order.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from dataclasses import dataclass

from analyzer.model import Conversation
from analyzer.peer.model import PointPacket
from analyzer.protocol import ACK, FIN, IPPROTO_TCP, RST, SYN

KEY_FLAGS = SYN | FIN | RST | ACK  # the flags that say what a segment is (PSH, ECE, CWR may be rewritten)
NEAREST_LIMIT = 4096  # copies x copies of one key beyond which they are paired in step rather than nearest-first
PAIR_WINDOW = 2.0  # seconds: the most a copy may lie from its twin, clocks aligned (one-way delay and jitter)


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
            if pd == d and p.plen > 0 and p.head:
                return p.head
        return b""


def sides(convs: list[Conversation], packets: list[PointPacket]) -> dict[int, Side]:
    """Each TCP/UDP conversation of a capture with its packets, found by endpoints and frame range."""
    index: dict[tuple, list[Conversation]] = defaultdict(list)
    out: dict[int, Side] = {}
    for c in convs:
        if c.proto in ("tcp", "udp"):
            index[(c.proto, frozenset((str(c.client), str(c.server))))].append(c)
            out[c.id] = Side(c, [])
    for p in packets:
        proto = "tcp" if p.proto == IPPROTO_TCP else "udp"
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
    pair("isn", lambda s: (s.isn(0), s.isn(1)) if s.isn(0) is not None else None)
    pair("isn", lambda s: s.isn(0))
    pair("payload", lambda s: (s.conv.proto, s.head(0), s.head(1)) if s.head(0) or s.head(1) else None)
    return found


def _bases(a: Side, b: Side) -> tuple[int, int, int, int]:
    """Per direction, the sequence base of each capture: the SYNs when both have them, else 0 (absolute)."""
    out = []
    for d in (0, 1):
        ia, ib = a.isn(d), b.isn(d)
        out.append((ia, ib) if ia is not None and ib is not None else (0, 0))
    return out[0][0], out[0][1], out[1][0], out[1][1]


def _key(d: int, p: PointPacket, own: int, other: int) -> tuple:
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
