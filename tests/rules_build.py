"""Builds Conversations by hand for rule-engine tests: a tiny timeline language."""

from __future__ import annotations

from analyzer.model import Conversation, Endpoint, Event, SideStats
from analyzer.protocol import TCP_FLAG_NAMES


def ev(frame: int, t: float, d: int, flags: str = "", plen: int = 0, marks: int = 0, *,
       payload: str = "", icmp: tuple[int, int] | None = None, icmp_src: bytes = b"",
       ttl: int = 64, idle: float | None = None) -> Event:
    """One event: `d` 0 client->server, 1 server->client; flags like 'SA' or 'RA'."""
    letters = {"S": "SYN", "A": "ACK", "F": "FIN", "R": "RST", "P": "PSH"}
    bits = 0
    for ch in flags:
        bits |= TCP_FLAG_NAMES[letters[ch]]
    return Event(frame, t, d, bits, 0, 0, plen, 1000, ttl, frame, marks,
                 -1.0 if idle is None else idle, payload, icmp, icmp_src)


def conv(events: list[Event], proto: str = "tcp", *, handshake: bool = True, state: str = "SF",
         client_stats: SideStats | None = None, server_stats: SideStats | None = None,
         v6: bool = False) -> Conversation:
    """A conversation around a timeline; idle gaps are filled in from the timestamps."""
    fixed = []
    prev = None
    for e in events:
        idle = e.idle if e.idle >= 0 else (0.0 if prev is None else e.ts - prev)
        fixed.append(e._replace(idle=idle))
        prev = e.ts
    c_addr, s_addr = ("2001:db8::1", "2001:db8::2") if v6 else ("192.0.2.1", "192.0.2.2")
    return Conversation(
        id=7, stream=3, proto=proto, client=Endpoint(c_addr, 50000), server=Endpoint(s_addr, 443),
        role_inferred=False, state=state, history="", first_frame=events[0].frame,
        last_frame=events[-1].frame, start=events[0].ts, end=events[-1].ts,
        client_stats=client_stats or _stats(fixed, 0), server_stats=server_stats or _stats(fixed, 1),
        timeline=tuple(fixed), handshake=handshake)


def _stats(events: list[Event], d: int) -> SideStats:
    """What a side's own packets in the timeline say about it (as the flow tracker would count them)."""
    mine = [e for e in events if e.dir == d and e.icmp is None]
    return SideStats(packets=len(mine), sent_rst=any(e.flags & TCP_FLAG_NAMES["RST"] for e in mine),
                     sent_fin=any(e.flags & TCP_FLAG_NAMES["FIN"] for e in mine),
                     sent_syn=any(e.flags & TCP_FLAG_NAMES["SYN"] for e in mine))
