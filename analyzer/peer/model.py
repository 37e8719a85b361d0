"""The records of a two-capture analysis: packets at a capture point, their fates, a conversation's path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

# The words of `fate:` are in analyzer.peer.fates: the rule compiler needs them on every start-up,
# and these records only with two captures.
from analyzer.peer.fates import RECUT

# unknown: outside the other capture's time span
Fate = Literal["seen", "changed", "lost", "injected", "proxied", "answered", "unknown"]


class PointPacket(NamedTuple):
    """One TCP or UDP packet as one capture point saw it: what matching and fates need."""

    frame: int
    ts: float
    proto: int
    src: str  # "192.0.2.1:443" as Endpoint prints it
    dst: str
    flags: int
    seq: int  # absolute
    ack: int
    plen: int
    win: int
    ttl: int
    opts: int  # Packet.tcp_opts bits
    mss: int  # MSS option value, 0 when absent
    head: bytes  # first payload bytes
    # An ICMP error is filed under the conversation it quotes, travelling toward the quoted
    # packet's sender (src/dst are the quoted packet's dst/src): these say what it was and who sent it.
    icmp: tuple[int, int] | None = None  # (type, code)
    icmp_from: str = ""  # the address that sent the ICMP error
    quoted: int = 0  # the quoted packet's protocol (IPPROTO_TCP or IPPROTO_UDP)


class PacketFate(NamedTuple):
    """One packet of a conversation pair and what happened to it between the points."""

    dir: int  # 0 client->server, 1 server->client
    fate: Fate
    near: PointPacket | None  # as the capture point nearer the client saw it
    far: PointPacket | None  # as the capture point nearer the server saw it
    ts: float  # on the near point's clock (far-only packets converted with the clock offset)
    delay: float  # one-way delay between the points (seen/changed), else 0
    changes: tuple[str, ...]  # what was rewritten in between, e.g. "MSS 1460 -> 1200"
    origin: str = ""  # ICMP errors: where the error was sent from, as far as the two points tell
    # A lost bare ACK one below the next sequence number the other point saw its sender use: a
    # keep-alive probe, which a capture that began after the handshake cannot tell alone.
    keepalive: bool = False

    @property
    def packet(self) -> PointPacket:
        """The packet as one of the points saw it (the near one when both did)."""
        p = self.near if self.near is not None else self.far
        assert p is not None  # a fate is only made for a packet seen at one point at least
        return p


@dataclass(frozen=True, slots=True)
class Coverage:
    """The time one capture covers, on its own clock: a packet the other point saw outside it
    (mapped with the clock offset) cannot be said lost or injected."""

    first: float  # its earliest frame
    last: float  # its latest frame
    damage: str = ""  # why reading stopped early (a truncated or damaged file), "" when it ended cleanly
    frames: str = ""  # a digest of every frame's bytes and time: equal in two files of one capture


@dataclass(frozen=True, slots=True)
class Clock:
    """The far capture's clock offset (far minus near, seconds), from matched packets."""

    offset: float
    uncertainty: float  # half the width of the interval the offset must lie in; -1: one-sided or unknown
    pairs: int  # matched packets it rests on
    basis: str  # how it was found, in words


@dataclass(frozen=True, slots=True)
class PathView:
    """One conversation seen from two capture points of its path (`wsadiag analyze --peer`).

    Attached to the Conversation of each capture; `here` is that capture's point.
    """

    here: str  # this capture's path
    peer: str  # the other capture's path
    here_near: Literal["client", "server"]  # which end this capture point is nearer
    order_basis: str  # how the points' order was told (TTL, handshake timing, or assumed)
    matched_by: str  # "5-tuple", "isn", "payload", "lengths+timing", "" when the other capture lacks the conversation
    peer_conversation: int  # its id in the other capture, 0 when unmatched
    peer_client: str  # the endpoints as the other capture sees them ("" when unmatched)
    peer_server: str
    clock: Clock
    hops_between: int  # routers between the points (TTL decrement of matched packets), -1 unknown
    packets: tuple[PacketFate, ...]  # every packet of the pair, in time order (near point's clock)
    changes: tuple[str, ...]  # rewrites seen on the conversation: translation, MSS clamp, ...
    lost_only_large: bool = False  # see only_large_lost(); worked out once, rules ask it often
    peer_damage: str = ""  # why the other capture stopped early (truncated, damaged); "" when it ended cleanly
    peer_span: tuple[float, float] = (0.0, 0.0)  # the other capture's first and last frame times, on its clock
    peer_findings: tuple[str, ...] = ()  # rules that fired on the peer conversation in the other capture's report

    @property
    def translated(self) -> bool:
        return any(c.startswith(("client ", "server ")) for c in self.changes)

    def count(self, fate: str, d: int | None = None) -> int:
        return sum(1 for p in self.packets if p.fate == fate and (d is None or p.dir == d))

    def recut(self) -> int:
        """Seen packets that have no twin of their own: the other point saw their bytes cut otherwise
        (so a conversation's `seen` count may exceed its packets at either point)."""
        return sum(1 for p in self.packets if p.fate == "seen" and RECUT in p.changes)

    def sizes(self, d: int) -> tuple[list[int], list[int]]:
        """Payload lengths of direction d's packets: (lost, got through)."""
        return sizes(self.packets, d)


def sizes(packets: tuple[PacketFate, ...], d: int) -> tuple[list[int], list[int]]:
    """Payload lengths of direction d's packets: (lost, got through)."""
    lost = [f.packet.plen for f in packets if f.dir == d and f.fate == "lost"]
    through = [f.packet.plen for f in packets if f.dir == d and f.fate in ("seen", "changed")]
    return lost, through


def only_large_lost(packets: tuple[PacketFate, ...]) -> bool:
    """Packets were lost, and in each direction that lost some, every lost packet was larger than
    every one that got through: what a path MTU black hole (or a size filter) does."""
    found = False
    for d in (0, 1):
        lost, through = sizes(packets, d)
        if not lost:
            continue
        if not through or min(lost) <= max(through):
            return False
        found = True
    return found
