"""Two captures of one path: every conversation's packets lined up, and each packet's fate between the points.

    results = analyze_pair("client.pcap", "server.pcap", rules)

Each capture is analysed as usual; then its conversations are matched with the other's
(analyzer.peer.match), the clocks aligned and the points ordered (analyzer.peer.clock), every
packet given a fate, and the rules evaluated again on conversations that now carry their path
(fates as packet marks, the PathView on the conversation): the two-capture rules fire only then.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections import Counter
from collections.abc import Callable
from typing import Any

from analyzer.errors import CaptureError
from analyzer.model import CaptureResult, CaptureWarning, Conversation, Mark
from analyzer.peer.clock import DISAGREE, estimate, order_by_handshake, order_by_ttl
from analyzer.peer.fates import FATE_MARKS, RECUT
from analyzer.peer.match import (
    BY_LENGTHS,
    PAIR_WINDOW,
    Side,
    keyed,
    match_conversations,
    resegmented,
    sides,
    timed_pairs,
    unique_pairs,
)
from analyzer.peer.model import (
    Clock,
    Coverage,
    Fate,
    PacketFate,
    PathView,
    PointPacket,
    only_large_lost,
)
from analyzer.peer.read import read_point
from analyzer.pipeline import analyze_capture, keep_evidence
from analyzer.protocol import ACK, FIN, IPPROTO_TCP, OPT_MSS, OPT_SACK_PERM, OPT_TIMESTAMP, OPT_WSCALE, RST, SYN

OPTION_NAMES = (
    (OPT_MSS, "MSS"),
    (OPT_WSCALE, "window scale"),
    (OPT_SACK_PERM, "SACK permitted"),
    (OPT_TIMESTAMP, "timestamps"),
)
TERMINATED = (
    "connection terminated between the points (a proxy or relay): each side has its own ports, sequence "
    "numbers, handshake and acknowledgements; only the payload crosses"
)
PROOF = frozenset(("5-tuple", "isn"))  # matches no likeness can fake; the rest are guesses
GUESSED_NOTE = (
    " (This rests on conversations matched {how} only, not by address or sequence number: a likeness, "
    "not proof that both captures hold the same connection.)"
)
ASSUMED = "assumed from the command line (the first capture nearer the client)"
ASSUMED_NOTE = (
    " (Which capture point is nearer the client was only assumed from the order of the arguments: "
    "nothing in the captures told it, and with the other order lost and injected swap.)"
)
RENUMBERED = "sequence numbers rewritten in between (a firewall's initial sequence number randomisation)"


@dataclasses.dataclass(slots=True)
class _Pair:
    """Both captures at once: A is the first capture given, B the peer."""

    a_path: str
    b_path: str
    a: dict[int, Side]
    b: dict[int, Side]
    matches: dict[int, tuple[int, str]]
    a_near: bool = True
    order_basis: str = ASSUMED
    clock: Clock = Clock(0.0, -1.0, 0, "")
    hops: int = -1
    cover_a: Coverage = Coverage(0.0, 0.0)
    cover_b: Coverage = Coverage(0.0, 0.0)
    max_delay: float = 0.0  # the longest one-way delay between the points of the matched packets

    @property
    def b_minus_a(self) -> float:
        return self.clock.offset if self.a_near else -self.clock.offset


def analyze_pair(
    a_path: str, b_path: str, rules: Any, conv_filter: Callable[[Conversation], bool] | None = None, **kw: Any
) -> list[CaptureResult]:
    """Both captures analysed, lined up, and diagnosed together; one CaptureResult per capture.

    conv_filter chooses conversations by the first capture's view of them: the peer capture is
    read whole, so a NAT that rewrote the addresses cannot hide a conversation's other half, and
    keeps what the chosen conversations matched.
    """
    ra = analyze_capture(a_path, rules, conv_filter, keep="all-full", **kw)
    rb = analyze_capture(b_path, rules, None, keep="all-full", **kw)
    if ra.error or rb.error:
        return [_trim(ra), _trim(rb)]
    try:
        (pa, cover_a), (pb, cover_b) = read_point(a_path), read_point(b_path)
    except CaptureError as exc:
        ra.error = str(exc)
        return [_trim(ra), _trim(rb)]
    same = _same_bytes(a_path, b_path)
    if same or cover_a.frames and cover_a.frames == cover_b.frames:
        what = "the same bytes" if same else "the same packets at the same times (in another container)"
        for result in (ra, rb):
            result.warnings.append(
                CaptureWarning(
                    "peer-identical",
                    f"{os.path.basename(a_path)} and {os.path.basename(b_path)} hold {what}: one capture "
                    "given twice, not two points of a path (every packet seen at both, no delay, no router)",
                )
            )
    pair = _Pair(a_path, b_path, sides(ra.conversations, pa), sides(rb.conversations, pb), {})
    pair.matches = match_conversations(pair.a, pair.b)
    pair.cover_a, pair.cover_b = cover_a, cover_b
    if conv_filter is not None:
        kept = {bid for bid, _ in pair.matches.values()}
        pair.b = {bid: side for bid, side in pair.b.items() if bid in kept}
        rb.conversations = [c for c in rb.conversations if c.id in kept or c.id not in pair.b and c.proto == "icmp"]
        rb.findings = [f for f in rb.findings if f.conversation in kept]
    if not pair.matches:
        # Nothing seen at both points: other traffic, other times, or the filter differed. Calling
        # every packet lost or injected would be a guess; say so and leave the path out.
        if conv_filter is not None and not pair.a:
            return _no_match(ra, rb, f"the filter kept no TCP or UDP conversation of {os.path.basename(a_path)}")
        return _no_match(ra, rb, "the captures hold different traffic or times")
    _order_and_clock(pair)
    if not {how for _, how in pair.matches.values()} & PROOF and pair.clock.basis == DISAGREE:
        # Matched by likeness only, and the matched packets cannot agree on one clock offset: two
        # incidents that look alike, not one seen twice. Nothing about a path that is not there.
        return _no_match(
            ra,
            rb,
            "conversations alike only in payload or lengths were found, but their packets disagree on "
            "the clock offset (captures of different incidents)",
        )
    for result, cover, other in ((ra, cover_b, b_path), (rb, cover_a, a_path)):
        if cover.damage:
            result.warnings.append(CaptureWarning("peer-cut-short", _cut_short(other, cover)))
    guessed = _guess_warning(pair)
    if guessed is not None:
        ra.warnings.append(guessed)
        rb.warnings.append(guessed)
    views_a, views_b = _views(pair)
    for result, views in ((ra, views_a), (rb, views_b)):
        _rediagnose(result, views, rules, all_guessed=guessed is not None, assumed=pair.order_basis == ASSUMED)
    _fold_twins(pair, ra, rb)
    _point_to_peer_findings(ra, rb)
    _point_to_peer_findings(rb, ra)
    return [_trim(ra), _trim(rb)]


def _point_to_peer_findings(here: CaptureResult, other: CaptureResult) -> None:
    """Each path names the findings its conversation has in the other capture's report: one failure
    seen at both points is reported once, and the other section then says where."""
    rules = _by_conversation(other.findings)
    convs = []
    for conv in here.conversations:
        view = conv.path
        if view is not None and view.peer_conversation in rules:
            fired = tuple(sorted(rules[view.peer_conversation]))
            conv = dataclasses.replace(conv, path=dataclasses.replace(view, peer_findings=fired))
        convs.append(conv)
    here.conversations = convs


def _no_match(ra: CaptureResult, rb: CaptureResult, why: str) -> list[CaptureResult]:
    for result, other in ((ra, rb.path), (rb, ra.path)):
        result.warnings.append(
            CaptureWarning(
                "no-peer-match",
                f"no conversation is also in {os.path.basename(other)}: {why}, so nothing is said about the path",
            )
        )
    return [_trim(ra), _trim(rb)]


def _same_bytes(a: str, b: str) -> bool:
    """Both files hold the same bytes (sizes first: two captures of one path almost never agree)."""
    try:
        if os.path.getsize(a) != os.path.getsize(b):
            return False
        with open(a, "rb") as fa, open(b, "rb") as fb:
            return hashlib.file_digest(fa, "sha256").digest() == hashlib.file_digest(fb, "sha256").digest()
    except OSError:
        return False


def _guess_warning(pair: _Pair) -> CaptureWarning | None:
    """A warning when no conversation matched by proof (its 5-tuple or its ISNs): then every
    match is a likeness, and captures of two different incidents may have been lined up."""
    kinds = {how for _, how in pair.matches.values()}
    if kinds & PROOF:
        return None
    if kinds == {BY_LENGTHS}:
        code, how = "peer-match-by-lengths", "by payload lengths and timing alone"
    elif kinds == {"payload"}:
        code, how = "peer-match-by-payload", "by payload bytes alone"
    else:
        code, how = "peer-match-guessed", "by payload bytes, or lengths and timing, alone"
    return CaptureWarning(
        code,
        f"conversations matched across the captures {how} (no address or sequence number agreed): if the "
        "captures were not taken at the same time, the path and the clock offset are guesses, and so are "
        "the two-capture findings",
    )


# -- order of the points and the clocks ---------------------------------------------------------


def _order_and_clock(pair: _Pair) -> None:
    ttls: list[tuple[int, int, int]] = []
    gaps: list[tuple[float, float]] = []
    raw: list[tuple[int, PointPacket, PointPacket]] = []
    turn_gaps: list[tuple[float, float]] = []
    for aid, (bid, how) in pair.matches.items():
        sa, sb = pair.a[aid], pair.b[bid]
        ka, kb = keyed(sa, sb)
        found = unique_pairs(ka, kb)
        if how == BY_LENGTHS:
            # Perhaps two legs of a connection a proxy terminates: then only payload crossed, and
            # its own handshake, ACKs and TTLs tell neither the clock nor the hops. Left out alike.
            raw += [(d, pa, pb) for d, pa, pb in found if pa.plen > 0 and pa.icmp is None]
            ga, gb = _turn_gap(sa), _turn_gap(sb)
            if ga is not None and gb is not None:
                turn_gaps.append((ga, gb))
            continue
        raw += found
        ttls += [(d, pa.ttl, pb.ttl) for d, pa, pb in found]
        ga, gb = _handshake_gap(sa), _handshake_gap(sb)
        if ga is not None and gb is not None:
            gaps.append((ga, gb))
    by_ttl, by_hs, by_turns = order_by_ttl(ttls), order_by_handshake(gaps), order_by_handshake(turn_gaps)
    by_habit = order_by_ttl(_ttl_habits(pair)) if by_ttl is None else None
    if by_ttl is not None:
        pair.a_near, pair.order_basis = (
            by_ttl,
            "TTL: the client's packets lose TTL on the way from one point to the other",
        )
    elif by_habit is not None:
        pair.a_near, pair.order_basis = (
            by_habit,
            "TTL: the client's packets arrive with a smaller TTL at the point nearer the server, the "
            "server's at the point nearer the client (no packet seen at both points)",
        )
    elif by_hs is not None:
        pair.a_near, pair.order_basis = (
            by_hs,
            "handshake timing: SYN to SYN/ACK takes longer at the point nearer the client",
        )
    elif by_turns is not None:
        pair.a_near, pair.order_basis = (
            by_turns,
            "request timing: the first answer takes longer to come at the point nearer the client",
        )
    # The estimate takes (dir, near time, far time). The client's packets (dir 0) always travel
    # from the near point to the far one, whichever capture was given first: only the times swap.
    pair.clock = estimate([(d, pa.ts, pb.ts) if pair.a_near else (d, pb.ts, pa.ts) for d, pa, pb in raw])
    pair.max_delay = _max_delay(pair, raw)
    drops = Counter(abs(ttl_a - ttl_b) for _, ttl_a, ttl_b in ttls)
    pair.hops = drops.most_common(1)[0][0] if drops else -1
    if _drop_untimely_payload_matches(pair):
        _order_and_clock(pair)


def _ttl_habits(pair: _Pair) -> list[tuple[int, int, int]]:
    """(dir, usual TTL at A, usual TTL at B) of each conversation matched by proof, one per direction
    both points saw: what orders the points when no packet was seen at both (a capture begun late,
    a drop of everything after some time). The usual TTL, so that one packet injected at a point
    does not outvote the end's own."""
    out = []
    for aid, (bid, how) in pair.matches.items():
        if how not in PROOF:
            continue
        for d in (0, 1):
            at_a = Counter(p.ttl for pd, p in pair.a[aid].packets if pd == d and p.icmp is None)
            at_b = Counter(p.ttl for pd, p in pair.b[bid].packets if pd == d and p.icmp is None)
            if at_a and at_b:
                out.append((d, at_a.most_common(1)[0][0], at_b.most_common(1)[0][0]))
    return out


def _max_delay(pair: _Pair, raw: list[tuple[int, PointPacket, PointPacket]]) -> float:
    """The longest one-way delay between the points among the packets the clock rests on (a twin
    paired wrongly cannot widen it past PAIR_WINDOW)."""
    off, longest = pair.clock.offset, 0.0
    for d, pa, pb in raw:
        near, far = (pa, pb) if pair.a_near else (pb, pa)
        longest = max(longest, far.ts - off - near.ts if d == 0 else near.ts - (far.ts - off))
    return min(longest, PAIR_WINDOW)


def _cut_short(path: str, cover: Coverage) -> str:
    return (
        f"{os.path.basename(path)} ends early ({cover.damage}): what this capture saw after that "
        "capture's last frame has fate `unknown`, neither lost nor injected"
    )


def _drop_untimely_payload_matches(pair: _Pair) -> bool:
    """Forget payload-only matches whose packets disagree with the clock the other matches give.

    Identical requests (health checks, retries) carry identical bytes; a 5-tuple or ISN match
    is proof, a payload match only a likeness, so it must also fit in time.
    """
    strong = [how for how in pair.matches.values() if how[1] != "payload"]
    if not strong:
        return False
    untimely = []
    for aid, (bid, how) in pair.matches.items():
        if how != "payload":
            continue
        found = unique_pairs(*keyed(pair.a[aid], pair.b[bid]))
        shifts = sorted(pb.ts - pa.ts for _, pa, pb in found)
        if not shifts or abs(shifts[len(shifts) // 2] - pair.b_minus_a) > PAIR_WINDOW:
            untimely.append(aid)
    for aid in untimely:
        del pair.matches[aid]
    return bool(untimely)


def _turn_gap(side: Side) -> float | None:
    """Time from the client's first payload to the server's first payload after it."""
    turns = side.turns()
    first = next((i for i, t in enumerate(turns) if t[0] == 0), None)
    if first is None or first + 1 >= len(turns):
        return None
    return turns[first + 1][2] - turns[first][2]


def _handshake_gap(side: Side) -> float | None:
    syn, synack = side.first(0, SYN, ACK), side.first(1, SYN | ACK)
    return synack.ts - syn.ts if syn is not None and synack is not None else None


# -- fates ---------------------------------------------------------------------------------------------


def _views(pair: _Pair) -> tuple[dict[int, PathView], dict[int, PathView]]:
    views_a: dict[int, PathView] = {}
    views_b: dict[int, PathView] = {}
    for aid, sa in pair.a.items():
        bid, how = pair.matches.get(aid, (0, ""))
        sb = pair.b.get(bid)
        if sb is None and not _may_cross(pair, sa, True):
            continue  # never went toward the other point: no path to tell
        note = _legs(pair, sa, sb) if how == BY_LENGTHS and sb is not None else ""
        packets = _fates(pair, sa, sb, terminated=note == TERMINATED)
        views_a[aid] = _view(pair, True, sa, sb, how, packets, note)
        if sb is not None:
            views_b[bid] = _view(pair, False, sb, sa, how, packets, note)
    matched_b = {bid for bid, _ in pair.matches.values()}
    for bid, sb in pair.b.items():
        if bid not in matched_b and _may_cross(pair, sb, False):
            views_b[bid] = _view(pair, False, sb, None, "", _fates(pair, None, sb))
    return views_a, views_b


def _may_cross(pair: _Pair, side: Side, in_a: bool) -> bool:
    """Whether a conversation seen at one point only may have had to pass the other point.

    A capture holds traffic of its own host that never goes toward the other point (name lookups,
    other sites): its packets are neither lost nor injected nor answered in between. One went
    toward the other point when its remote end (the end that is not a host of this point's side)
    is an address the other capture saw or that a matched conversation went to, or when the TTL of
    its answers puts the answering device nearer than the other point's end. With neither end known
    on this point's side, nothing tells it apart: it is treated as passing, as before."""
    here_near = in_a == pair.a_near
    mine, theirs = (pair.a, pair.b) if in_a else (pair.b, pair.a)
    matched = {aid: bid for aid, (bid, _) in pair.matches.items()}
    matched_here = [mine[i] for i in (matched if in_a else matched.values()) if i in mine]
    # the end of a matched conversation on this point's side: its client at the near point
    local = {_host(str(s.conv.client if here_near else s.conv.server)) for s in matched_here}
    ends = {_host(str(side.conv.client)), _host(str(side.conv.server))}
    remote = ends - local
    if not ends & local or not remote:
        return True
    reach = {_host(str(e)) for s in theirs.values() for e in (s.conv.client, s.conv.server)}
    reach |= {_host(str(s.conv.server if here_near else s.conv.client)) for s in matched_here}
    if remote & reach:
        return True
    return _answered_nearer(side, matched_here, remote, 1 if here_near else 0)


def _hops(ttl: int) -> int:
    """Routers a packet passed, from its TTL and the usual initial values (64, 128, 255)."""
    return next(start for start in (64, 128, 255) if ttl <= start) - ttl


def _answered_nearer(side: Side, matched_here: list[Side], remote: set[str], toward_here: int) -> bool:
    """The remote end's packets came from fewer routers away than the matched conversations' far
    ends did (their packets in direction toward_here): the answering device lies before the other point."""
    answers = [_hops(p.ttl) for _, p in side.packets if _host(p.src) in remote and p.icmp is None]
    far_ends = [_hops(p.ttl) for s in matched_here for d, p in s.packets if d == toward_here and p.icmp is None]
    return bool(answers and far_ends) and min(answers) < min(far_ends)


def _legs(pair: _Pair, sa: Side, sb: Side) -> str:
    """What a TCP conversation matched by lengths and timing went through, when its ISNs differ:
    a proxy that terminates it (TERMINATED) or a firewall that renumbers it (RENUMBERED).

    A forwarded SYN/ACK reaches the point nearer the client after it passed the other one; a
    proxy answers the client's SYN itself, before the server's SYN/ACK exists (by the clock the
    payload gives). Otherwise "": UDP, or a SYN or SYN/ACK missing at a point."""
    if sa.conv.proto != "tcp" or None in (sa.isn(0), sb.isn(0)) or sa.isn(0) == sb.isn(0):
        return ""
    near, far = (sa, sb) if pair.a_near else (sb, sa)
    got, sent = near.first(1, SYN | ACK), far.first(1, SYN | ACK)
    if got is None or sent is None:
        return ""
    slack = max(pair.clock.uncertainty, 0.0) + 1e-4
    return TERMINATED if got.ts < sent.ts - pair.clock.offset - slack else RENUMBERED


def _fates(pair: _Pair, sa: Side | None, sb: Side | None, terminated: bool = False) -> tuple[PacketFate, ...]:
    """Every packet of one conversation at either point, with its fate, in the near point's time.

    terminated: the two are legs of one connection a proxy in between terminates (matched by
    lengths+timing): only packets carrying payload (and ICMP errors) can have a twin.
    """
    off = pair.b_minus_a
    paired: list[tuple[int, PointPacket, PointPacket]] = []
    recut: tuple[set[int], set[int]] = (set(), set())
    if sa is not None and sb is not None:
        ka, kb = keyed(sa, sb)
        if terminated:
            ka = {k: v for k, v in ka.items() if v[0].plen > 0 or v[0].icmp is not None}
        paired = timed_pairs(ka, kb, off)
        recut = resegmented(sa, sb, ka, kb)
    seen_a = {pa.frame for _, pa, _ in paired}
    seen_b = {pb.frame for _, _, pb in paired}
    out = [_both(pair, d, pa, pb) for d, pa, pb in paired]
    for side, seen, in_a, cut in ((sa, seen_a, True, recut[0]), (sb, seen_b, False, recut[1])):
        if side is None:
            continue
        for d, p in side.packets:
            if p.frame in seen:
                continue
            if terminated and p.plen == 0 and p.icmp is None and not p.flags & RST:
                at_near = in_a == pair.a_near
                ts = p.ts if at_near else p.ts - pair.clock.offset
                out.append(PacketFate(d, "proxied", p if at_near else None, None if at_near else p, ts, 0.0, ()))
            else:
                fate = _one(pair, d, p, in_a, p.frame in cut)
                other = sb if in_a else sa
                if fate.fate == "lost" and other is not None and _probe(p, other, d):
                    fate = fate._replace(keepalive=True)
                out.append(fate)
    out.sort(key=lambda f: f.ts)
    if sa is None or sb is None:
        out = _answered_between(out)
    return tuple(out)


def _probe(p: PointPacket, other: Side, d: int) -> bool:
    """A bare ACK whose sequence number is one below the next one its sender had used when the
    other point last saw it: a keep-alive probe (RFC 1122 4.2.3.6)."""
    if p.proto != IPPROTO_TCP or p.plen > 1 or p.flags & (SYN | FIN | RST) or not p.flags & ACK:
        return False
    sent = [q for qd, q in other.packets if qd == d and q.proto == IPPROTO_TCP and q.icmp is None]
    if not sent:
        return False
    last = sent[-1]
    nxt = last.seq + last.plen + (1 if last.flags & (SYN | FIN) else 0)
    return (p.seq + 1) & 0xFFFFFFFF == nxt & 0xFFFFFFFF


def _answered_between(fates: list[PacketFate]) -> list[PacketFate]:
    """A conversation seen at one point only that was answered there nonetheless: its other end is
    a device between the points (a TCP SYN answered by a SYN/ACK, a datagram by a datagram), so its
    packets were not lost or injected but went no farther. A refusal (a RST or an ICMP error in
    answer) stays as it is: that is what PTH004, PTH006 and PTH007 are about."""
    crossing = [f for f in fates if f.fate in ("lost", "injected") and f.packet.icmp is None]
    if not crossing:
        return fates
    if crossing[0].packet.proto == IPPROTO_TCP:
        syn = any(f.dir == 0 and f.packet.flags & (SYN | ACK) == SYN for f in crossing)
        answered = syn and any(f.dir == 1 and f.packet.flags & (SYN | ACK) == SYN | ACK for f in crossing)
    else:
        answered = {f.dir for f in crossing} == {0, 1}
    if not answered:
        return fates
    return [f._replace(fate="answered") if f in crossing else f for f in fates]


def _host(endpoint: str) -> str:
    return endpoint.rsplit(":", 1)[0].strip("[]")


def _icmp_origin(fate: str, d: int, sender: PointPacket, at_near: bool) -> str:
    """Where an ICMP error came from, as far as the two points tell (sender: its copy at the point it
    passed first, or at the only point that saw it)."""
    end = "server" if d == 1 else "client"  # it travels from this end's side toward the other
    if fate == "injected":
        return f"originated between the points: sent by {sender.icmp_from}, a device in between"
    if fate == "lost":
        side = "client" if at_near else "server"
        return f"sent by {sender.icmp_from}; left the {side}-side point and never reached the other"
    if fate in ("seen", "changed"):
        if sender.icmp_from == _host(sender.src):
            return f"sent by the {end} itself ({sender.icmp_from}), seen at both points"
        return f"forwarded from beyond the {end}-side point: sent by {sender.icmp_from}, seen at both points"
    return f"sent by {sender.icmp_from}"


def _both(pair: _Pair, d: int, pa: PointPacket, pb: PointPacket) -> PacketFate:
    near, far = (pa, pb) if pair.a_near else (pb, pa)
    sender, receiver = (near, far) if d == 0 else (far, near)
    off = pair.clock.offset
    delay = (far.ts - off - near.ts) if d == 0 else (near.ts - (far.ts - off))
    changes = _changes(sender, receiver)
    fate: Fate = "changed" if changes else "seen"
    origin = _icmp_origin(fate, d, sender, d == 0) if sender.icmp is not None else ""
    return PacketFate(d, fate, near, far, near.ts, delay, changes, origin)


def _changes(sent: PointPacket, got: PointPacket) -> tuple[str, ...]:
    out = []
    if sent.mss and got.mss and sent.mss != got.mss:
        out.append(f"MSS {sent.mss} -> {got.mss}" + (" (clamped)" if got.mss < sent.mss else ""))
    if sent.win != got.win:
        out.append(f"window {sent.win} -> {got.win}")
    if sent.opts != got.opts:
        gone = [name for bit, name in OPTION_NAMES if sent.opts & bit and not got.opts & bit]
        added = [name for bit, name in OPTION_NAMES if got.opts & bit and not sent.opts & bit]
        out += [f"option {n} removed" for n in gone] + [f"option {n} added" for n in added]
    return tuple(out)


def _one(pair: _Pair, d: int, p: PointPacket, in_a: bool, recut: bool) -> PacketFate:
    """A packet seen at one point only: lost if it was leaving that point, injected if arriving;
    seen, when the other point saw all its bytes in segments cut differently (recut)."""
    at_near = in_a == pair.a_near
    off = pair.clock.offset
    ts = p.ts if at_near else p.ts - off
    leaving = (d == 0) == at_near
    fate: Fate
    changes: tuple[str, ...] = ()
    if recut:
        fate, changes = "seen", (RECUT,)
    elif not _covered(pair, p, in_a, leaving):
        fate = "unknown"  # the other capture had not started, or had stopped, when it would have passed
    else:
        fate = "lost" if leaving else "injected"
    origin = _icmp_origin(fate, d, p, at_near) if p.icmp is not None else ""
    return PacketFate(d, fate, p if at_near else None, None if at_near else p, ts, 0.0, changes, origin)


def _covered(pair: _Pair, p: PointPacket, in_a: bool, leaving: bool) -> bool:
    """Whether the other capture was running whenever p could have passed its point.

    On the other point's clock p passes there within the clock's uncertainty of its time here
    mapped with the offset, later by the one-way delay when it was leaving this point, earlier
    when it was arriving; the delay is at most the longest one the matched packets took.
    """
    other = pair.cover_b if in_a else pair.cover_a
    shift = pair.b_minus_a if in_a else -pair.b_minus_a
    spread = pair.clock.uncertainty if pair.clock.uncertainty >= 0 else PAIR_WINDOW  # one-sided: a wide guess
    lo = p.ts + shift - spread - (0.0 if leaving else pair.max_delay)
    hi = p.ts + shift + spread + (pair.max_delay if leaving else 0.0)
    return other.first <= lo and hi <= other.last


def _view(
    pair: _Pair, in_a: bool, here: Side, other: Side | None, how: str, packets: tuple, note: str = ""
) -> PathView:
    near_here = in_a == pair.a_near
    clock = pair.clock
    if not near_here:  # seen from the far point, the offset is the near clock minus the far one
        clock = dataclasses.replace(clock, offset=-clock.offset)
    return PathView(
        here=os.path.basename(pair.a_path if in_a else pair.b_path),
        peer=os.path.basename(pair.b_path if in_a else pair.a_path),
        here_near="client" if near_here else "server",
        order_basis=pair.order_basis,
        matched_by=how,
        peer_conversation=other.conv.id if other is not None else 0,
        peer_client=str(other.conv.client) if other is not None else "",
        peer_server=str(other.conv.server) if other is not None else "",
        clock=clock,
        hops_between=pair.hops,
        packets=packets,
        changes=_conversation_changes(here, other, near_here, packets, note),
        lost_only_large=only_large_lost(packets),
        peer_damage=(pair.cover_b if in_a else pair.cover_a).damage,
        peer_span=_span(pair.cover_b if in_a else pair.cover_a),
    )


def _span(cover: Coverage) -> tuple[float, float]:
    return (cover.first, cover.last)


def _conversation_changes(
    here: Side, other: Side | None, near_here: bool, packets: tuple, note: str = ""
) -> tuple[str, ...]:
    out: list[str] = [note] if note else []
    if other is not None:
        near, far = (here.conv, other.conv) if near_here else (other.conv, here.conv)
        if str(near.client) != str(far.client):
            out.append(f"client {near.client} -> {far.client} (address/port translated)")
        if str(near.server) != str(far.server):
            out.append(f"server {near.server} -> {far.server} (address/port translated)")
    for f in packets:
        for c in f.changes:
            what = "SYN" if f.packet.flags & SYN else "segments"
            text = f"{c} on the {'client' if f.dir == 0 else 'server'}'s {what}"
            if text not in out:
                out.append(text)
    return tuple(out)


# -- the rules again, on conversations that carry their path ------------------------------------


def annotate(conv: Conversation, view: PathView) -> Conversation:
    """The conversation with its path: each event marked with its packet's fate."""
    near_here = view.here_near == "client"
    marks: dict[int, int] = {}
    idle: dict[int, float] = {}  # a probe's silence before it, from the packets either point saw
    for i, f in enumerate(view.packets):
        p = f.near if near_here else f.far
        if p is not None and f.fate in FATE_MARKS:
            marks[p.frame] = FATE_MARKS[f.fate] | (Mark.KEEPALIVE if f.keepalive else 0)
            if f.keepalive and i:
                idle[p.frame] = f.ts - view.packets[i - 1].ts
    timeline = tuple(
        ev._replace(marks=ev.marks | marks[ev.frame], idle=max(ev.idle, idle.get(ev.frame, 0.0)))
        if ev.frame in marks
        else ev
        for ev in conv.timeline
    )
    return dataclasses.replace(conv, timeline=timeline, path=view)


def _rediagnose(
    result: CaptureResult, views: dict[int, PathView], rules: Any, all_guessed: bool = False, assumed: bool = False
) -> None:
    """The rules again on each conversation that carries its path. A finding the capture alone did
    not make rests on the path: when the match behind it was a likeness (this conversation's, or
    every one's), or the order of the points only assumed, its confidence drops to low and its
    message says so."""
    convs = []
    findings = [f for f in result.findings if f.conversation not in views]
    alone = {(f.conversation, f.rule) for f in result.findings}
    for conv in result.conversations:
        view = views.get(conv.id)
        if view is not None:
            conv = annotate(conv, view)
            if rules is not None:
                how = _guessed_how(view, all_guessed)
                for f in rules.evaluate(conv):
                    if (f.conversation, f.rule) not in alone:
                        f = _hedged(f, how, assumed)
                    findings.append(f)
        convs.append(conv)
    result.conversations = convs
    findings.sort(key=lambda f: (f.conversation, f.frames[:1], f.rule))
    result.findings = findings


def _hedged(f: Any, how: str, assumed: bool) -> Any:
    """A finding that rests on the path, at low confidence when the path rests on a guess."""
    note = (GUESSED_NOTE.format(how=how) if how else "") + (ASSUMED_NOTE if assumed else "")
    return dataclasses.replace(f, confidence="low", message=f.message + note) if note else f


def _guessed_how(view: PathView, all_guessed: bool) -> str:
    """How a conversation's path was matched, in words, when that was a likeness; "" when by proof."""
    if view.matched_by == "payload":
        return "by payload bytes"
    if view.matched_by == BY_LENGTHS:
        return "by payload lengths and timing"
    return "by payload bytes or lengths and timing" if all_guessed else ""


def _fold_twins(pair: _Pair, ra: CaptureResult, rb: CaptureResult) -> None:
    """One failure seen at both points is one finding: where a rule fired on both views of a
    conversation matched by proof, the finding stays in the capture nearer the side whose error it
    names (the client's when it names none), and names the other capture's frames as more evidence."""
    by_a = _by_conversation(ra.findings)
    by_b = _by_conversation(rb.findings)
    dropped: dict[int, set[tuple[int, str]]] = {0: set(), 1: set()}
    for aid, (bid, how) in pair.matches.items():
        if how not in PROOF:
            continue  # a likeness may pair two failures that only look alike: both stay
        fa, fb = by_a.get(aid, {}), by_b.get(bid, {})
        for rule in fa.keys() & fb.keys():
            side = fa[rule].errors[0].side if fa[rule].errors else "client"
            keep_a = (side == "client") == pair.a_near
            kept, other, other_path = (fa[rule], fb[rule], rb.path) if keep_a else (fb[rule], fa[rule], ra.path)
            frames = ", ".join(str(n) for n in other.frames[:8])
            note = f" {os.path.basename(other_path)} shows it too (conversation {other.conversation}, frames {frames})."
            folded = dataclasses.replace(kept, message=kept.message + note)
            here = ra if keep_a else rb
            here.findings = [folded if f is kept else f for f in here.findings]
            dropped[1 if keep_a else 0].add((other.conversation, rule))
    ra.findings = [f for f in ra.findings if (f.conversation, f.rule) not in dropped[0]]
    rb.findings = [f for f in rb.findings if (f.conversation, f.rule) not in dropped[1]]


def _by_conversation(findings: list) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for f in findings:
        out.setdefault(f.conversation, {}).setdefault(f.rule, f)
    return out


def _worth_showing(view: PathView) -> bool:
    return bool(view.changes) or any(f.fate in ("lost", "injected", "changed", "answered") for f in view.packets)


def _trim(result: CaptureResult) -> CaptureResult:
    """Only the conversations a report shows: those with findings, or whose path shows something."""
    by_conv: dict[int, list] = {}
    for f in result.findings:
        by_conv.setdefault(f.conversation, []).append(f)
    kept = []
    for conv in result.conversations:
        if conv.id in by_conv:
            kept.append(keep_evidence(conv, by_conv[conv.id]))
        elif conv.path is not None and _worth_showing(conv.path):
            kept.append(conv)
    result.conversations = kept
    return result
