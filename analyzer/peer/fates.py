"""The fates of a packet between two capture points: the words `fate:` names in rule files.

Apart from the records of analyzer.peer.model because the rule compiler (analyzer.rules.language)
needs these words on every start-up, and those records only when two captures are read.
"""

from __future__ import annotations

from analyzer.model import Mark

# A packet's fate between the two capture points (one table; `fate:` in rules names these).
FATES: dict[str, str] = {
    "seen": "seen at both capture points, unchanged but for the TTL (and the NAT translation of its conversation)",
    "changed": "seen at both points with a header rewritten in between: MSS, window or TCP options",
    "lost": "left one capture point toward the other and never reached it (lost or dropped in between)",
    "injected": "reached one capture point from the other's side but never passed the other (sent in between)",
    "proxied": "a packet without payload of one leg of a connection a proxy between the points terminates "
    "(its handshake, acknowledgements and close): the other leg carries its own, so it has no twin",
    "answered": "a packet of a conversation seen at one point only whose other end is a device between the "
    "points (a cache or proxy that answered the client itself, a proxy's own health check): it never had to "
    "cross to the other point",
}
# A seen packet's change when the other point recorded its bytes in segments cut otherwise: no rewrite.
RECUT = "cut into other segments at the other point (TSO/GRO or a middlebox)"
# `fate:` names -> the Mark bit a two-capture analysis sets on the packet's Event.
FATE_MARKS: dict[str, int] = {
    "seen": Mark.PATH_SEEN,
    "changed": Mark.PATH_CHANGED,
    "lost": Mark.PATH_LOST,
    "injected": Mark.PATH_INJECTED,
}
