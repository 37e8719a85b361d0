"""`--filter`: focus on some conversations by host, network, port or protocol.

A small language on purpose (a user types it on a command line): terms joined by `and`/`or`,
`not` in front of a term; a term is `host ADDR`, `net CIDR`, `port N`, `tcp`, `udp` or `icmp`.
`and` binds tighter than `or`. A conversation matches a term when either endpoint does.
"""

from __future__ import annotations

import ipaddress
from typing import Callable

from analyzer.errors import UsageError
from analyzer.model import Conversation

Predicate = Callable[[Conversation], bool]

_HINT = "a filter is terms like 'host 192.0.2.1', 'net 198.51.100.0/24', 'port 443', 'tcp', joined by and/or"


def _negated(term: Predicate) -> Predicate:
    return lambda c: not term(c)


def compile_filter(text: str) -> Predicate:
    """Turn a filter expression into a predicate over conversations."""
    words = text.split()
    if not words:
        raise UsageError("empty --filter", hint=_HINT)
    alternatives: list[list[Predicate]] = [[]]
    i = 0
    while i < len(words):
        negate = False
        if words[i] == "not":
            negate = True
            i += 1
        if i >= len(words):
            raise UsageError(f"--filter ends after 'not': {text!r}", hint=_HINT)
        term, i = _term(words, i, text)
        alternatives[-1].append(_negated(term) if negate else term)
        if i < len(words):
            joiner = words[i]
            if joiner == "or":
                alternatives.append([])
            elif joiner != "and":
                raise UsageError(f"--filter: expected 'and' or 'or', got {joiner!r}", hint=_HINT)
            i += 1
            if i >= len(words):
                raise UsageError(f"--filter ends after {joiner!r}", hint=_HINT)
    return lambda conv: any(all(t(conv) for t in group) for group in alternatives)


def _term(words: list[str], i: int, text: str) -> tuple[Predicate, int]:
    word = words[i].lower()
    if word in ("tcp", "udp", "icmp"):
        return (lambda c, p=word: c.proto == p), i + 1
    if word not in ("host", "net", "port"):
        raise UsageError(f"--filter: unknown term {words[i]!r} in {text!r}", hint=_HINT)
    if i + 1 >= len(words):
        raise UsageError(f"--filter: {word!r} needs a value", hint=_HINT)
    value = words[i + 1]
    try:
        if word == "port":
            port = int(value)
            if not 0 <= port <= 65535:
                raise ValueError
            return (lambda c: c.client.port == port or c.server.port == port), i + 2
        if word == "host":
            addr = ipaddress.ip_address(value.strip("[]"))
            return (lambda c: _is(c.client.addr, addr) or _is(c.server.addr, addr)), i + 2
        net = ipaddress.ip_network(value, strict=False)
        return (lambda c: _within(c.client.addr, net) or _within(c.server.addr, net)), i + 2
    except ValueError:
        raise UsageError(f"--filter: {value!r} is not a valid {word}", hint=_HINT) from None


def _is(addr: str, want: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return ipaddress.ip_address(addr) == want


def _within(addr: str, net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    a = ipaddress.ip_address(addr)
    return a.version == net.version and a in net
