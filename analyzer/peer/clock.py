"""The two capture points: which is nearer the client, and how far apart their clocks are.

Order: a packet loses one TTL per router, so the client's packets carry a higher TTL at the
point nearer the client; with no router in between, the handshake tells it, as the SYN to
SYN/ACK time is longer at the point nearer the client (it includes the stretch between the
points, twice). Neither needs the clocks to agree.

Offset (far clock minus near clock): a packet from near to far is seen at the far point at
t_far = t_near + offset + delay, one from far to near at t_near = t_far - offset + delay, and
delays are never negative. So every near-to-far pair bounds the offset from above and every
far-to-near pair from below; the offset is the middle of the tightest bounds, and half their
distance its uncertainty (the way NTP bounds a clock with one round trip).
"""

from __future__ import annotations

import statistics

from analyzer.peer.model import Clock

DISAGREE = "median of both directions (bounds disagree)"
Pair = tuple[int, float, float]  # (dir, ts at point A, ts at point B); dir 0: client -> server


def order_by_ttl(pairs: list[tuple[int, int, int]]) -> bool | None:
    """True when point A is nearer the client, from (dir, ttl at A, ttl at B) of matched packets."""
    votes = 0
    for d, ttl_a, ttl_b in pairs:
        if ttl_a != ttl_b:
            a_first = ttl_a > ttl_b  # the packet had not yet lost its TTL at A: A is before B on its way
            votes += 1 if a_first == (d == 0) else -1
    return None if votes == 0 else votes > 0


def order_by_handshake(gaps: list[tuple[float, float]]) -> bool | None:
    """True when A is nearer the client, from (SYN->SYN/ACK time at A, at B) of matched handshakes."""
    votes = sum(1 if a > b else -1 for a, b in gaps if a != b)
    return None if votes == 0 else votes > 0


def estimate(pairs: list[Pair]) -> Clock:
    """The far point's clock offset from matched packets, dir 0 travelling near -> far."""
    upper = [tb - ta for d, ta, tb in pairs if d == 0]  # offset <= t_far - t_near
    lower = [tb - ta for d, ta, tb in pairs if d == 1]  # offset >= t_far - t_near
    if upper and lower:
        hi, lo = min(upper), max(lower)
        if lo <= hi:
            return Clock((hi + lo) / 2, (hi - lo) / 2, len(pairs), "bounded by packets in both directions")
        # Bounds that cross: a copy paired with the wrong twin. The medians still sit near the truth.
        mid = (statistics.median(upper) + statistics.median(lower)) / 2
        return Clock(mid, abs(hi - lo) / 2, len(pairs), DISAGREE)
    if upper:
        return Clock(min(upper), -1.0, len(pairs), "upper bound only: packets matched in one direction")
    if lower:
        return Clock(max(lower), -1.0, len(pairs), "lower bound only: packets matched in one direction")
    return Clock(0.0, -1.0, 0, "no packet seen at both points: clocks assumed to agree")
