"""ICMP and ICMPv6 messages: named types and codes, and the one table of their names.

Constants follow dpkt's spelling (`ICMP_UNREACH_PORT`, `ICMP6_DST_UNREACH_NOPORT`). MESSAGES is
the only place a message is named: the decoder's error types, the rule language's `icmp:` words,
the ladder's labels and the `{icmp}` placeholder are all derived from it.
"""

# Annotations in this module are evaluated, not kept as strings (no `from __future__ import
# annotations`): typing.NamedTuple compiles each string annotation when it makes its class, dozens
# of compiles on every start-up (tests/test_startup.py).
from typing import Final, NamedTuple

# ICMPv4 types (RFC 792).
ICMP_ECHOREPLY: Final = 0
ICMP_UNREACH: Final = 3
ICMP_SRCQUENCH: Final = 4
ICMP_REDIRECT: Final = 5
ICMP_ECHO: Final = 8
ICMP_TIMEXCEED: Final = 11
ICMP_PARAMPROB: Final = 12

# ICMPv4 destination-unreachable codes: RFC 792 (0-5), RFC 1122 3.2.2.1 (6-12), RFC 1812 5.2.7.1 (13-15).
ICMP_UNREACH_NET: Final = 0
ICMP_UNREACH_HOST: Final = 1
ICMP_UNREACH_PROTO: Final = 2
ICMP_UNREACH_PORT: Final = 3
ICMP_UNREACH_NEEDFRAG: Final = 4
ICMP_UNREACH_SRCFAIL: Final = 5
ICMP_UNREACH_NET_UNKNOWN: Final = 6
ICMP_UNREACH_HOST_UNKNOWN: Final = 7
ICMP_UNREACH_ISOLATED: Final = 8
ICMP_UNREACH_NET_PROHIB: Final = 9
ICMP_UNREACH_HOST_PROHIB: Final = 10
ICMP_UNREACH_TOSNET: Final = 11
ICMP_UNREACH_TOSHOST: Final = 12
ICMP_UNREACH_FILTER_PROHIB: Final = 13
ICMP_UNREACH_HOST_PRECEDENCE: Final = 14
ICMP_UNREACH_PRECEDENCE_CUTOFF: Final = 15

# ICMPv4 redirect, time-exceeded and parameter-problem codes (RFC 792, RFC 1108 for 12/1).
ICMP_REDIRECT_NET: Final = 0
ICMP_REDIRECT_HOST: Final = 1
ICMP_REDIRECT_TOSNET: Final = 2
ICMP_REDIRECT_TOSHOST: Final = 3
ICMP_TIMEXCEED_INTRANS: Final = 0
ICMP_TIMEXCEED_REASS: Final = 1
ICMP_PARAMPROB_ERRATPTR: Final = 0
ICMP_PARAMPROB_OPTABSENT: Final = 1
ICMP_PARAMPROB_LENGTH: Final = 2

# ICMPv6 types (RFC 4443 section 2.1: 1-127 are errors).
ICMP6_DST_UNREACH: Final = 1
ICMP6_PACKET_TOO_BIG: Final = 2
ICMP6_TIME_EXCEEDED: Final = 3
ICMP6_PARAM_PROB: Final = 4
ICMP6_ECHO_REQUEST: Final = 128
ICMP6_ECHO_REPLY: Final = 129

# ICMPv6 codes (RFC 4443 sections 3.1, 3.3, 3.4).
ICMP6_DST_UNREACH_NOROUTE: Final = 0
ICMP6_DST_UNREACH_ADMIN: Final = 1
ICMP6_DST_UNREACH_BEYONDSCOPE: Final = 2
ICMP6_DST_UNREACH_ADDR: Final = 3
ICMP6_DST_UNREACH_NOPORT: Final = 4
ICMP6_DST_UNREACH_POLICY: Final = 5
ICMP6_DST_UNREACH_REJECT_ROUTE: Final = 6
ICMP6_PACKET_TOO_BIG_CODE: Final = 0
ICMP6_TIME_EXCEED_TRANSIT: Final = 0
ICMP6_TIME_EXCEED_REASSEMBLY: Final = 1
ICMP6_PARAMPROB_HEADER: Final = 0
ICMP6_PARAMPROB_NEXTHEADER: Final = 1
ICMP6_PARAMPROB_OPTION: Final = 2

# Messages that quote the packet that caused them (RFC 792; RFC 4443 2.1): the decoder reads
# their quote and the flow table attaches them to the quoted conversation.
ICMP4_ERROR_TYPES: Final = frozenset({ICMP_UNREACH, ICMP_SRCQUENCH, ICMP_REDIRECT, ICMP_TIMEXCEED, ICMP_PARAMPROB})
ICMP6_ERROR_TYPES: Final = frozenset({ICMP6_DST_UNREACH, ICMP6_PACKET_TOO_BIG, ICMP6_TIME_EXCEEDED, ICMP6_PARAM_PROB})


class Message(NamedTuple):
    """One ICMP or ICMPv6 message kind."""

    family: int  # 4: ICMP, 6: ICMPv6
    type: int
    code: int | None  # None names the whole type
    name: str  # the RFC's wording, shortened
    word: str = ""  # the rule language's `icmp:` word for it (kebab-case), "" when a rule cannot name it


V4, V6 = 4, 6

# The one table. Several codes share a word where a socket cannot tell them apart
# (net-unreachable is RFC 792's code 0 and RFC 1122's "network unknown" and "for TOS").
MESSAGES: tuple[Message, ...] = (
    Message(V4, ICMP_ECHOREPLY, None, "echo reply"),
    Message(V4, ICMP_UNREACH, None, "destination unreachable"),
    Message(V4, ICMP_UNREACH, ICMP_UNREACH_NET, "net unreachable", "net-unreachable"),
    Message(V4, ICMP_UNREACH, ICMP_UNREACH_HOST, "host unreachable", "host-unreachable"),
    Message(V4, ICMP_UNREACH, ICMP_UNREACH_PROTO, "protocol unreachable", "protocol-unreachable"),
    Message(V4, ICMP_UNREACH, ICMP_UNREACH_PORT, "port unreachable", "port-unreachable"),
    Message(V4, ICMP_UNREACH, ICMP_UNREACH_NEEDFRAG, "fragmentation needed and DF set", "fragmentation-needed"),
    Message(V4, ICMP_UNREACH, ICMP_UNREACH_SRCFAIL, "source route failed"),
    Message(V4, ICMP_UNREACH, ICMP_UNREACH_NET_UNKNOWN, "destination network unknown", "net-unreachable"),
    Message(V4, ICMP_UNREACH, ICMP_UNREACH_HOST_UNKNOWN, "destination host unknown", "host-unreachable"),
    Message(V4, ICMP_UNREACH, ICMP_UNREACH_ISOLATED, "source host isolated"),
    Message(V4, ICMP_UNREACH, ICMP_UNREACH_NET_PROHIB, "network administratively prohibited", "admin-prohibited"),
    Message(V4, ICMP_UNREACH, ICMP_UNREACH_HOST_PROHIB, "host administratively prohibited", "admin-prohibited"),
    Message(V4, ICMP_UNREACH, ICMP_UNREACH_TOSNET, "network unreachable for type of service", "net-unreachable"),
    Message(V4, ICMP_UNREACH, ICMP_UNREACH_TOSHOST, "host unreachable for type of service", "host-unreachable"),
    Message(
        V4, ICMP_UNREACH, ICMP_UNREACH_FILTER_PROHIB, "communication administratively prohibited", "admin-prohibited"
    ),
    Message(V4, ICMP_UNREACH, ICMP_UNREACH_HOST_PRECEDENCE, "host precedence violation"),
    Message(V4, ICMP_UNREACH, ICMP_UNREACH_PRECEDENCE_CUTOFF, "precedence cutoff in effect"),
    Message(V4, ICMP_SRCQUENCH, None, "source quench"),
    Message(V4, ICMP_REDIRECT, None, "redirect"),
    Message(V4, ICMP_REDIRECT, ICMP_REDIRECT_NET, "redirect for network"),
    Message(V4, ICMP_REDIRECT, ICMP_REDIRECT_HOST, "redirect for host"),
    Message(V4, ICMP_REDIRECT, ICMP_REDIRECT_TOSNET, "redirect for type of service and network"),
    Message(V4, ICMP_REDIRECT, ICMP_REDIRECT_TOSHOST, "redirect for type of service and host"),
    Message(V4, ICMP_ECHO, None, "echo request"),
    Message(V4, ICMP_TIMEXCEED, None, "time exceeded"),
    Message(V4, ICMP_TIMEXCEED, ICMP_TIMEXCEED_INTRANS, "time to live exceeded in transit", "time-exceeded"),
    Message(V4, ICMP_TIMEXCEED, ICMP_TIMEXCEED_REASS, "fragment reassembly time exceeded", "time-exceeded"),
    Message(V4, ICMP_PARAMPROB, None, "parameter problem"),
    Message(V4, ICMP_PARAMPROB, ICMP_PARAMPROB_ERRATPTR, "pointer indicates the error"),
    Message(V4, ICMP_PARAMPROB, ICMP_PARAMPROB_OPTABSENT, "missing a required option"),
    Message(V4, ICMP_PARAMPROB, ICMP_PARAMPROB_LENGTH, "bad length"),
    Message(V6, ICMP6_DST_UNREACH, None, "destination unreachable"),
    Message(V6, ICMP6_DST_UNREACH, ICMP6_DST_UNREACH_NOROUTE, "no route to destination", "net-unreachable"),
    Message(
        V6,
        ICMP6_DST_UNREACH,
        ICMP6_DST_UNREACH_ADMIN,
        "communication with destination administratively prohibited",
        "admin-prohibited",
    ),
    Message(V6, ICMP6_DST_UNREACH, ICMP6_DST_UNREACH_BEYONDSCOPE, "beyond scope of source address"),
    Message(V6, ICMP6_DST_UNREACH, ICMP6_DST_UNREACH_ADDR, "address unreachable", "host-unreachable"),
    Message(V6, ICMP6_DST_UNREACH, ICMP6_DST_UNREACH_NOPORT, "port unreachable", "port-unreachable"),
    Message(
        V6,
        ICMP6_DST_UNREACH,
        ICMP6_DST_UNREACH_POLICY,
        "source address failed ingress/egress policy",
        "admin-prohibited",
    ),
    Message(V6, ICMP6_DST_UNREACH, ICMP6_DST_UNREACH_REJECT_ROUTE, "reject route to destination", "admin-prohibited"),
    Message(V6, ICMP6_PACKET_TOO_BIG, None, "packet too big"),
    Message(V6, ICMP6_PACKET_TOO_BIG, ICMP6_PACKET_TOO_BIG_CODE, "packet too big", "fragmentation-needed"),
    Message(V6, ICMP6_TIME_EXCEEDED, None, "time exceeded"),
    Message(V6, ICMP6_TIME_EXCEEDED, ICMP6_TIME_EXCEED_TRANSIT, "hop limit exceeded in transit", "time-exceeded"),
    Message(
        V6, ICMP6_TIME_EXCEEDED, ICMP6_TIME_EXCEED_REASSEMBLY, "fragment reassembly time exceeded", "time-exceeded"
    ),
    Message(V6, ICMP6_PARAM_PROB, None, "parameter problem"),
    Message(V6, ICMP6_PARAM_PROB, ICMP6_PARAMPROB_HEADER, "erroneous header field encountered"),
    Message(V6, ICMP6_PARAM_PROB, ICMP6_PARAMPROB_NEXTHEADER, "unrecognized next header type encountered"),
    Message(V6, ICMP6_PARAM_PROB, ICMP6_PARAMPROB_OPTION, "unrecognized IPv6 option encountered"),
    Message(V6, ICMP6_ECHO_REQUEST, None, "echo request"),
    Message(V6, ICMP6_ECHO_REPLY, None, "echo reply"),
)

# (family, type, code) -> name; code None names the whole type.
NAMES: dict[tuple[int, int, int | None], str] = {(m.family, m.type, m.code): m.name for m in MESSAGES}
# (family, type, code) -> the rule word, for the messages a rule can name.
WORDS: dict[tuple[int, int, int], str] = {
    (m.family, m.type, m.code): m.word for m in MESSAGES if m.word and m.code is not None
}
_TYPES_WITH_CODES = frozenset((m.family, m.type) for m in MESSAGES if m.code is not None)


def icmp_name(family: int, type: int, code: int) -> str:
    """The name of an ICMP (family 4) or ICMPv6 (family 6) type and code, e.g. 'port unreachable'."""
    name = NAMES.get((family, type, code))
    if name is not None:
        return name
    kind = NAMES.get((family, type, None))
    if kind is None:
        return f"{'ICMP' if family == V4 else 'ICMPv6'} type {type} code {code}"
    if code == 0 and (family, type) not in _TYPES_WITH_CODES:
        return kind  # a type without named codes (echo, source quench)
    return f"{kind} (code {code})"


def icmp_word(family: int, type: int, code: int) -> str:
    """The rule language's word for a message ("port-unreachable"), or "" when a rule cannot name it."""
    return WORDS.get((family, type, code), "")


def icmp_label(family: int, type: int, code: int) -> str:
    """How a report names a message: the rule word where there is one, with the RFC's name beside it
    when the two differ, e.g. 'ICMP host-unreachable (destination host unknown)'."""
    name = icmp_name(family, type, code)
    if name.startswith("ICMP"):
        return name
    prefix = "ICMPv6 " if family == V6 else "ICMP "
    word = icmp_word(family, type, code)
    if not word:
        return prefix + name
    return prefix + word if name.replace(" ", "-") == word else f"{prefix}{word} ({name})"


def word_pairs(word: str) -> tuple[frozenset[tuple[int, int]], frozenset[tuple[int, int]]]:
    """The (type, code) pairs of ICMPv4 and of ICMPv6 that a rule word names."""
    v4 = frozenset((t, c) for (f, t, c), w in WORDS.items() if w == word and f == V4)
    v6 = frozenset((t, c) for (f, t, c), w in WORDS.items() if w == word and f == V6)
    return v4, v6
