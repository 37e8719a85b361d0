"""Facts the rule language names: marks, ICMP errors, payload kinds, durations, idle timeouts.

One table per fact, looked up by the compiler and by the documentation generator.
"""

from __future__ import annotations

from analyzer.model import Mark

# Step `kind:` names for the flow tracker's Mark bits. The kebab-case of the enum name,
# except where a longer word reads better in a rule file.
_MARK_RENAMES = {"DUP_ACK": "duplicate-ack"}

MARK_NAMES: dict[str, int] = {
    _MARK_RENAMES.get(name, name.lower().replace("_", "-")): int(m)
    for name, m in Mark.__members__.items()
    if m.value and not name.startswith("PATH_")  # NONE is not a name; PATH_ bits are `fate:` words
}

# ICMP and ICMPv6 errors by name, as (type, code) pairs for each family.
# ICMPv4 type 3 codes: RFC 792 (0-5), RFC 1122 (6-12), RFC 1812 (13); type 11: RFC 792.
# ICMPv6 type 1 codes and type 3: RFC 4443 section 3.1 and 3.3.
# The numbers collide across families (v4 3/3 is port unreachable, v6 3/0 is hop limit
# exceeded), so a name resolves per family.
ICMP_ERRORS: dict[str, tuple[frozenset[tuple[int, int]], frozenset[tuple[int, int]]]] = {
    # name: (ICMPv4 pairs, ICMPv6 pairs)
    "net-unreachable": (frozenset({(3, 0), (3, 6), (3, 11)}), frozenset({(1, 0)})),
    "host-unreachable": (frozenset({(3, 1), (3, 7), (3, 12)}), frozenset({(1, 3)})),
    "protocol-unreachable": (frozenset({(3, 2)}), frozenset()),
    "port-unreachable": (frozenset({(3, 3)}), frozenset({(1, 4)})),
    "fragmentation-needed": (frozenset({(3, 4)}), frozenset({(2, 0)})),  # v6: Packet Too Big
    "admin-prohibited": (
        frozenset({(3, 9), (3, 10), (3, 13)}),
        frozenset({(1, 1), (1, 5), (1, 6)}),  # prohibited, source policy failed, reject route
    ),
    "time-exceeded": (frozenset({(11, 0), (11, 1)}), frozenset({(3, 0), (3, 1)})),
}
# "unreachable" is every destination-unreachable code; "any" is every ICMP error.
ICMP_GROUPS: dict[str, tuple[str, ...]] = {
    "unreachable": (
        "net-unreachable",
        "host-unreachable",
        "protocol-unreachable",
        "port-unreachable",
        "fragmentation-needed",
        "admin-prohibited",
    ),
}
ICMP_ANY = "any"

# What the flow tracker's payload sniff calls a segment's payload (Event.payload): its own table.
from analyzer.flows.sniff import PAYLOAD_KINDS  # noqa: E402,F401
from analyzer.flows.zeek import CONN_STATES as ZEEK_CONN_STATES  # noqa: E402

# Zeek conn_state values a `where: {state: ...}` may name: the table in analyzer.flows.zeek.
CONN_STATES = frozenset(ZEEK_CONN_STATES)

PROTOS = frozenset({"tcp", "udp", "icmp"})

# Duration units a rule may write ("500ms", "1.5s", "4m", "2h").
DURATION_UNITS: dict[str, float] = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
MAX_DURATION = 30 * 86400.0  # a longer window is a typo, not a diagnosis

# Socket calls an `errors:` entry may name.
OPERATIONS = frozenset(
    {
        "connect",
        "accept",
        "send",
        "recv",
        "sendto",
        "recvfrom",
        "close",
        "shutdown",
        "select",
    }
)

# Idle timeouts of common middleboxes and stacks, for naming a gap before a reset.
# (seconds, who, source)
IDLE_TIMEOUTS: tuple[tuple[float, str], ...] = (
    (60.0, "AWS Application Load Balancer default idle timeout (60 s)"),  # ALB docs, idle_timeout.timeout_seconds
    (
        240.0,
        "Azure Load Balancer / NAT gateway default TCP idle timeout (4 min)",
    ),  # learn.microsoft.com load-balancer-tcp-reset
    (350.0, "AWS Network Load Balancer / NAT gateway TCP idle timeout (350 s)"),  # NLB docs, update-idle-timeout
    (
        600.0,
        "Google Cloud VPC firewall connection tracking (10 min without a packet)",
    ),  # cloud.google.com vpc/docs/firewalls
    (1200.0, "Google Cloud NAT established TCP idle timeout default (20 min)"),  # Cloud NAT timeouts doc
    (
        3600.0,
        "firewall TCP session timeouts of 1 hour (Cisco ASA conn timeout, Palo Alto tcp timeout)",
    ),  # vendor defaults
    (
        7200.0,
        "the TCP keep-alive time default of Windows and Linux (2 h): idle longer than this is unusual",
    ),  # KeepAliveTime, tcp_keepalive_time
)


def idle_timeout_hint(gap: float) -> str:
    """Names the common idle timeouts a gap is consistent with (a timeout that expired within it)."""
    close = [who for t, who in IDLE_TIMEOUTS if abs(gap - t) <= max(2.0, 0.02 * t)]
    if close:
        return "the gap matches " + "; ".join(close)
    below = [who for t, who in IDLE_TIMEOUTS if t < gap]
    if below:
        return "the gap is longer than " + below[-1]
    return "the gap is shorter than the common middlebox idle timeouts"
