"""The sink of one share of a capture split by conversation (analyzer.split): compiled (setup.py).

The decoder's fast path hands this sink only the TCP and UDP packets of its share (it reads the
share from the header bytes, analyzer.decode.fast.flow_share) and reports the others through
elsewhere(), which only moves the flow table's expiry clock. Packets of the general path (ICMP,
tunnels, VLAN tags, IP options ...) arrive decoded, and their share is taken here from the same
hash. Compiled, so that a share costs its part of the table's work plus a look at every header,
not a Python call per packet.

Besides feeding the table, the sink records what the client needs to number conversations and
Wireshark streams across all shares, and to replay host context and the stream-number bound as a
serial run sees them: where each conversation and stream was opened, where each conversation
ended, and where an ICMP error's quoted header touched a stream pair. A position is (frame,
depth): depth 0 the packet, 1 the packet a tunnel carries, and so on.
"""

from __future__ import annotations

from typing import Final

from analyzer.decode.fast import flow_share
from analyzer.flows.table import (
    MAX_HOSTS,
    MAX_TTL_VALUES,
    FlowTable,
    _Flow,
    _idle_limit,
    endpoint_key,
    reverse_key,
)
from analyzer.model import Packet
from analyzer.protocol import IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP
from analyzer.sink import Sink

# What a pair-log entry records (see ShareSink.pairs).
PAIR_END: Final = 0  # a TCP or UDP conversation on the pair ended (the table retires the pair)
PAIR_OPEN: Final = 1  # a TCP or UDP conversation on the pair was opened
PAIR_TOUCH: Final = 2  # an ICMP error quoted a header of the pair (Wireshark dissects it)

# When something happened, as a key that sorts every share's entries in a serial run's order:
# (frame, depth, phase, deadline, first packet). At one packet: conversations due are handed on
# first (EXPIRED, by deadline and then first packet), then those the packet itself ends, then the
# conversations and stream pairs it opens.
When = tuple[int, int, int, float, int]
EXPIRED: Final = 0
ENDED_BY_PACKET: Final = 1
OPENS: Final = 2
END: Final = 1 << 62  # the frame of the conversations still alive at the end of the capture (flushed)
# when, PAIR_*, 1 if TCP, pair, and for an opening or a quote that opened no stream here: the
# stream of the pair this share still knew (-1 otherwise)
PairEntry = tuple[When, int, int, bytes, int]
HostEntry = tuple[When, int, bytes, dict[int, int], bytes, dict[int, int]]


def packet_share(pkt: Packet, shares: int) -> int:
    """The share of a decoded packet: its conversation's, or for an ICMP error the quoted one's."""
    q = pkt.quoted
    if pkt.proto == IPPROTO_ICMP or pkt.proto == IPPROTO_ICMPV6:
        if q is not None and (q.proto == IPPROTO_TCP or q.proto == IPPROTO_UDP):
            return flow_share(q.src, 0, q.dst, 0, len(q.src), q.sport, q.dport, shares)
        return flow_share(pkt.src, 0, pkt.dst, 0, len(pkt.src), pkt.icmp_type, 0, shares)
    return flow_share(pkt.src, 0, pkt.dst, 0, len(pkt.src), pkt.sport, pkt.dport, shares)


def pair_of(a: bytes, b: bytes) -> bytes:
    """A stream pair's name, the same from either direction's endpoint key."""
    return a if a < b else b


class ShareSink(Sink):
    """Hands the flow table the packets of its share; the others only move the expiry clock."""

    def __init__(self, table: FlowTable, share: int, shares: int, share_end: int = -1) -> None:
        """Follow the conversations of shares `share` up to `share_end` (default: `share` alone) of `shares`."""
        self.table = table
        self.share = share
        self.share_end = share + 1 if share_end < 0 else share_end
        self.shares = shares
        self.frame = 0  # the position of the packet being handled
        self.depth = 0
        self.created: list[tuple[int, int, int]] = []  # per local id - 1: frame, depth, 1 if ICMP
        self.tcp_opened: list[tuple[int, int]] = []  # per local tcp.stream: where it was opened
        self.udp_opened: list[tuple[int, int]] = []
        # (when, PAIR_*, 1 if TCP, pair, stream kept) in the order it happened: the client replays
        # the stream-number bound of a serial run from every share's log (analyzer.split).
        self.pairs: list[PairEntry] = []
        # (when, local id, client address, its TTLs, server address, its TTLs) of each conversation
        # as it ended: the client learns host context from these (analyzer.split).
        self.host_log: list[HostEntry] = []
        table.learn_hosts = self.ended
        table.ws.hold_requeued = True  # forget no pair before a serial run does (WiresharkStreams)

    def detach(self) -> None:
        """Let the table go once the share is read: the table's learn_hosts refers back to this sink,
        and `wsadiag` runs with the cycle collector paused, so the cycle (the table, its stream
        pairs, the capture reader) would otherwise be left for one full collection at exit, on
        the split's critical path."""
        self.table.learn_hosts = None

    def elsewhere(self, number: int, ts: float) -> None:
        self.frame = number
        self.depth = 0
        table = self.table
        if ts >= table.meter.next_check:
            table._expire(ts)
        self.next_tick = table.meter.next_check

    # The decoder's fast path calls tcp() and udp() only with packets of this share.

    def tcp(
        self,
        number: int,
        ts: float,
        key: bytes,
        sport: int,
        dport: int,
        flags: int,
        seq: int,
        ack: int,
        win: int,
        plen: int,
        ttl: int,
        ip_id: int,
        payload: bytes,
        opts: int,
    ) -> None:
        table = self.table
        self.frame = number
        self.depth = 0
        ids, tcps, udps = self._counts()
        table.tcp(number, ts, key, sport, dport, flags, seq, ack, win, plen, ttl, ip_id, payload, opts)
        self._opened(ids, tcps, udps)

    def udp(
        self,
        number: int,
        ts: float,
        key: bytes,
        sport: int,
        dport: int,
        plen: int,
        ttl: int,
        ip_id: int,
        payload: bytes,
    ) -> None:
        table = self.table
        self.frame = number
        self.depth = 0
        ids, tcps, udps = self._counts()
        table.udp(number, ts, key, sport, dport, plen, ttl, ip_id, payload)
        self._opened(ids, tcps, udps)

    def packet(self, pkt: Packet) -> None:
        depth = 0
        layer: Packet | None = pkt
        while layer is not None:  # a tunnel's packet, then the packet it carries, as FlowTable.add
            self._layer(layer, depth)
            layer = layer.inner
            depth += 1

    def _layer(self, pkt: Packet, depth: int) -> None:
        proto = pkt.proto
        if proto != IPPROTO_TCP and proto != IPPROTO_UDP and proto != IPPROTO_ICMP and proto != IPPROTO_ICMPV6:
            return
        self.frame = pkt.number
        self.depth = depth
        table = self.table
        h = packet_share(pkt, self.shares)
        if h < self.share or h >= self.share_end:
            if pkt.ts >= table.meter.next_check:
                table._expire(pkt.ts)
            self.next_tick = table.meter.next_check
            return
        ids, tcps, udps = self._counts()
        table.add(pkt._replace(inner=None))
        q = pkt.quoted
        if q is not None and (q.proto == IPPROTO_UDP or (q.proto == IPPROTO_TCP and q.seq >= 0)):
            # FlowTable._quoted_stream: Wireshark finds (or opens) the quoted header's stream pair
            qkey = endpoint_key(q.src, q.sport, q.dst, q.dport)
            tcp = q.proto == IPPROTO_TCP
            opened = table.ws.tcp_count > tcps if tcp else table.ws.udp_count > udps
            held = (table.ws.tcp_pairs if tcp else table.ws.udp_pairs).get(qkey)
            kept = held.stream if held is not None and not opened else -1
            when = (pkt.number, depth, OPENS, 0.0, 0)
            self.pairs.append((when, PAIR_TOUCH, int(tcp), pair_of(qkey, reverse_key(qkey)), kept))
        self._opened(ids, tcps, udps)

    def _counts(self) -> tuple[int, int, int]:
        """The table's next conversation id and stream counts, before a packet is handed to it."""
        table = self.table
        return table.next_id, table.ws.tcp_count, table.ws.udp_count

    def _opened(self, ids: int, tcps: int, udps: int) -> None:
        """Record the conversations and streams the packet just handled opened (counts before it:
        _counts), and when the table looks at its deadlines next."""
        table = self.table
        where = (self.frame, self.depth)
        for fid in range(ids, table.next_id):
            flow = table.alive.get(fid)
            icmp = flow is not None and flow.proto == "icmp"
            self.created.append((self.frame, self.depth, int(icmp)))
            if flow is not None and not icmp:
                tcp = flow.proto == "tcp"
                opened = table.ws.tcp_count > tcps if tcp else table.ws.udp_count > udps
                kept = flow.stream if not opened else -1  # a stream of a pair this share still knew
                when = (self.frame, self.depth, OPENS, 0.0, 0)
                self.pairs.append((when, PAIR_OPEN, int(tcp), pair_of(flow.c_key, flow.s_key), kept))
        for _ in range(tcps, table.ws.tcp_count):
            self.tcp_opened.append(where)
        for _ in range(udps, table.ws.udp_count):
            self.udp_opened.append(where)
        self.next_tick = table.meter.next_check

    def ended(self, flow: _Flow) -> None:
        """Instead of FlowTable._learn_hosts: the host context is the client's (analyzer.split)."""
        when = self._when_ended(flow)
        self.host_log.append((when, flow.id, flow.c_addr, dict(flow.orig.ttls), flow.s_addr, dict(flow.resp.ttls)))
        if flow.proto != "icmp":
            self.pairs.append((when, PAIR_END, int(flow.proto == "tcp"), pair_of(flow.c_key, flow.s_key), -1))

    def _when_ended(self, flow: _Flow) -> When:
        """Where a conversation ended, as the key that puts every share's ends in a serial run's order.

        At one packet the table first hands on what is due, in order of deadline and then of first
        packet (FlowTable._expire), then what the packet itself ends (this share's alone); at the end
        of the capture it hands on the rest in order of first packet.
        """
        f, d, _ = self.created[flow.id - 1]
        opened = f * 64 + d  # in order of first packet, across shares
        if self.frame == END:
            return (END, 0, EXPIRED, 0.0, opened)
        if self.table.expiring:
            return (self.frame, self.depth, EXPIRED, flow.last_ts + _idle_limit(flow), opened)
        return (self.frame, self.depth, ENDED_BY_PACKET, 0.0, 0)


# -- the client's replays, over every share's logs (analyzer.split.merge_shares) -------------------


def interleave(keys: list[list[When]]) -> list[tuple[int, int]]:
    """(share, index) of every share's entries in one order: by key, each share's own in its order,
    equal keys by share. Each share's keys are in order already: a k-way merge, not a sort."""
    heads = [0] * len(keys)
    total = 0
    for k in keys:
        total += len(k)
    out: list[tuple[int, int]] = []
    while len(out) < total:
        best = -1
        top: When = (0, 0, 0, 0.0, 0)
        for s in range(len(keys)):
            i = heads[s]
            if i < len(keys[s]):
                key = keys[s][i]
                if best < 0 or _before(key, top):
                    best, top = s, key
        out.append((best, heads[best]))
        heads[best] += 1
    return out


def _before(a: When, b: When) -> bool:
    """a < b, field by field (compiled: no generic tuple comparison)."""
    if a[0] != b[0]:
        return a[0] < b[0]
    if a[1] != b[1]:
        return a[1] < b[1]
    if a[2] != b[2]:
        return a[2] < b[2]
    if a[3] != b[3]:
        return a[3] < b[3]
    return a[4] < b[4]


def pair_order(logs: list[list[PairEntry]]) -> list[tuple[int, int]]:
    """The shares' pair-log entries in a serial run's order."""
    return interleave([[e[0] for e in log] for log in logs])


def host_order(logs: list[list[HostEntry]]) -> list[tuple[int, int]]:
    """The shares' host-log entries (conversations as they ended) in a serial run's order."""
    return interleave([[e[0] for e in log] for log in logs])


def forgotten(
    logs: list[list[PairEntry]], order: list[tuple[int, int]], bound: int
) -> tuple[int, list[tuple[int, int, int, int, int]]]:
    """The pairs a serial run's WiresharkStreams forgets, replayed over the shares' pair logs; and
    where a serial run opens a stream that the share did not, because it forgot the pair and the
    share did not: (share, 1 if TCP, frame, depth, the stream the share kept using).

    A pair is forgotten when it leaves the queue of the `bound` most recently retired ones while
    no live conversation uses it (asked, as the table asks, in the protocol of the conversation
    whose end pushed it out) and it was seen again (opened, or quoted) since it was last forgotten.
    """
    live: list[dict[bytes, int]] = [{}, {}]  # by 1 if TCP: live conversations per pair
    known: list[set[bytes]] = [set(), set()]  # pairs in the serial run's table
    queue_tcp: list[int] = []
    queue_pair: list[bytes] = []
    head = 0
    count = 0
    reopened: list[tuple[int, int, int, int, int]] = []
    for s, i in order:
        when, kind, tcp, pair, kept = logs[s][i]
        if kind != PAIR_END:
            if kept >= 0 and pair not in known[tcp]:
                reopened.append((s, tcp, when[0], when[1], kept))
            known[tcp].add(pair)
            if kind == PAIR_OPEN:
                live[tcp][pair] = live[tcp].get(pair, 0) + 1
            continue
        live[tcp][pair] = live[tcp].get(pair, 0) - 1
        queue_tcp.append(tcp)
        queue_pair.append(pair)
        while len(queue_pair) - head > bound:
            old_tcp, old = queue_tcp[head], queue_pair[head]
            head += 1
            if live[tcp].get(old, 0) > 0:
                continue
            if old in known[old_tcp]:
                known[old_tcp].discard(old)
                count += 1
    return count, reopened


def host_contexts(
    logs: list[list[HostEntry]], order: list[tuple[int, int]], wanted: list[set[int]], bound: int = MAX_HOSTS
) -> tuple[dict[tuple[int, int], tuple[dict[int, int] | None, dict[int, int] | None]], bool]:
    """For each wanted (share, index): the TTLs known of its client's and its server's host when it
    ended, as FlowTable._learn_hosts learns them from the conversations that ended before; and
    whether the replay came to know `bound` (MAX_HOSTS) hosts, when a serial run forgets them all.

    Up to that point a replay of short logs (compact_host_log) knows the serial run's hosts, each
    host's first sighting being kept; past it only whole logs replay what the run learns anew."""
    hosts: dict[bytes, dict[int, int]] = {}
    out: dict[tuple[int, int], tuple[dict[int, int] | None, dict[int, int] | None]] = {}
    filled = False
    for s, i in order:
        _, _, c_addr, c_ttls, s_addr, s_ttls = logs[s][i]
        if i in wanted[s]:
            c_host = hosts.get(c_addr)
            s_host = hosts.get(s_addr)
            out[(s, i)] = (None if c_host is None else dict(c_host), None if s_host is None else dict(s_host))
        if len(hosts) >= bound:  # FlowTable._learn_hosts, on a host-log entry
            hosts.clear()
        _learn(hosts, c_addr, c_ttls)
        _learn(hosts, s_addr, s_ttls)
        filled = filled or len(hosts) >= bound
    return out, filled


def _learn(hosts: dict[bytes, dict[int, int]], addr: bytes, ttls: dict[int, int]) -> None:
    """FlowTable._learn_hosts for one side."""
    if not ttls:
        return
    known = hosts.get(addr)
    if known is None:
        known = {}
        hosts[addr] = known
    for ttl, n in ttls.items():
        if ttl in known or len(known) < MAX_TTL_VALUES:
            known[ttl] = known.get(ttl, 0) + n


def compact_host_log(log: list[HostEntry], keep: set[int]) -> tuple[list[HostEntry], dict[int, int], int]:
    """A share's host log with only what the client's replay can learn from, where each entry of
    `keep` went in it, and how many hosts the share learnt.

    What a replay tells a conversation of a host (analyzer.flows.table._odd_marks) is which TTLs
    the host showed (the first MAX_TTL_VALUES distinct ones) and whether one of them was seen at
    least twice. A share keeps each TTL of a host until it has counted it twice and drops the
    later counts: every TTL's first sighting is kept, so the replay keeps the same first distinct
    TTLs, and a TTL seen twice across shares was seen twice in one share or once in two. A replay
    forgets every host when it knows MAX_HOSTS of them, which depends on every entry: short logs
    are exact only while the replay knows fewer hosts than that (host_contexts says when not).
    """
    counted: dict[bytes, dict[int, int]] = {}  # host -> this share's count of each TTL kept
    out: list[HostEntry] = []
    moved: dict[int, int] = {}
    for i, (when, fid, c_addr, c_ttls, s_addr, s_ttls) in enumerate(log):
        c_new = _news(counted, c_addr, c_ttls)
        s_new = _news(counted, s_addr, s_ttls)
        if i in keep:
            moved[i] = len(out)
        elif not c_new and not s_new:
            continue
        out.append((when, fid, c_addr, c_new, s_addr, s_new))
    return out, moved, len(counted)


def _news(counted: dict[bytes, dict[int, int]], addr: bytes, ttls: dict[int, int]) -> dict[int, int]:
    """The counts of `ttls` a replay can still learn from, given what this share counted before."""
    news: dict[int, int] = {}
    if not ttls:
        return news
    known = counted.get(addr)
    if known is None:
        known = {}
        counted[addr] = known
    for ttl, n in ttls.items():
        had = known.get(ttl, 0)
        if had < 2:
            news[ttl] = n
            known[ttl] = had + n
    return news
