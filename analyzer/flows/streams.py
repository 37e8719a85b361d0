"""Wireshark's tcp.stream and udp.stream numbers, computed packet by packet as Wireshark does.

A display filter such as `tcp.stream eq 7` only opens the right packets if 7 is the index
Wireshark itself gives. Wireshark (epan/dissectors/packet-tcp.c, packet-udp.c, read for the
rules, none of the code) numbers its conversations, not ours:

- A conversation is found by its two address/port pairs, either way round. The first packet of
  a pair never seen before opens a conversation and takes the next index (0, 1, 2, ...), one
  counter per protocol.
- TCP remembers a base sequence number per direction: the first SYN's sequence number, or the
  first segment's sequence number minus one when the segment is not a SYN.
- A pure SYN (SYN without ACK) whose sequence number differs from its direction's base opens a
  new conversation on the same pair (Wireshark's "TCP port numbers reused"). A SYN that repeats
  the base sequence number, as a connect() retried after a RST does, stays in the same stream.
  A SYN/ACK never opens one.
- UDP pairs never split: one udp.stream per pair for the whole capture.
- A TCP or UDP header quoted inside an ICMP error is dissected too: it finds (or opens) the
  conversation of its pair, but sets no base sequence number.

Wireshark keeps every conversation of a capture in memory. This table keeps the pairs of live
conversations and the RETIRED_PAIRS most recently finished ones, so memory stays bounded: a pair
seen again after that many others have finished since it did gets a stream of its own where
Wireshark would reuse its old one (`forgotten` counts them; the flow table warns). Evidence
filters also name the exact frames, so they select the evidence either way.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Container
from typing import Final

from analyzer.model import CaptureWarning
from analyzer.protocol import ACK, SYN

_M32: Final = 0xFFFFFFFF
_UNSET: Final = -1
RETIRED_PAIRS: Final = 8_192  # finished address/port pairs remembered (a few MiB)


def forgotten_warning(forgotten: int) -> CaptureWarning:
    """The warning of a capture on which `forgotten` finished pairs were dropped from the table."""
    return CaptureWarning(
        "stream-numbers-bounded",
        f"{forgotten} finished address/port pairs were forgotten to keep memory bounded; a pair "
        "seen again after that may get a tcp.stream/udp.stream of its own where Wireshark reuses "
        "the old one (the evidence filters also name the exact frames)",
    )


class _Pair:
    """One address/port pair's current Wireshark conversation."""

    __slots__ = ("key", "stream", "base")

    def __init__(self, key: bytes, stream: int) -> None:
        self.key = key  # the endpoint key of the packet that opened it: base[0] is that direction
        self.stream = stream
        self.base = [_UNSET, _UNSET]  # base sequence number per direction


class WiresharkStreams:
    """Gives each TCP segment and UDP datagram the stream index Wireshark would show."""

    def __init__(self) -> None:
        self.tcp_pairs: dict[bytes, _Pair] = {}
        self.udp_pairs: dict[bytes, _Pair] = {}
        self.tcp_count = 0
        self.udp_count = 0
        self.retired: deque[tuple[bool, bytes, bytes]] = deque()  # (tcp, key, rkey) of finished pairs, oldest first
        self.forgotten = 0  # pairs dropped from the table to keep it bounded
        # A share of a split capture (analyzer.flows.shares) holds a pair until its last entry in
        # `retired` leaves: it then never forgets a pair before a serial run does (whose queue
        # spans fewer packets), and the client replays the serial run's forgetting exactly.
        self.hold_requeued = False
        self.queued: dict[tuple[bool, bytes], int] = {}  # entries per (tcp, pair) in `retired`, when holding

    def retire(self, tcp: bool, key: bytes, rkey: bytes, live: Container[bytes]) -> None:
        """A conversation on this pair ended; the oldest finished pairs past RETIRED_PAIRS are forgotten.

        live: the endpoint keys of live conversations (a pair one of them uses again is kept).
        """
        retired = self.retired
        retired.append((tcp, key, rkey))
        hold = self.hold_requeued
        if hold:
            pair = (tcp, key if key < rkey else rkey)
            self.queued[pair] = self.queued.get(pair, 0) + 1
        while len(retired) > RETIRED_PAIRS:
            old_tcp, old_key, old_rkey = retired.popleft()
            if hold:
                pair = (old_tcp, old_key if old_key < old_rkey else old_rkey)
                left = self.queued[pair] - 1
                if left:
                    self.queued[pair] = left
                    continue  # retired again since: decided when its last entry leaves
                del self.queued[pair]
            if old_key in live:
                continue
            pairs = self.tcp_pairs if old_tcp else self.udp_pairs
            if pairs.pop(old_key, None) is not None:
                self.forgotten += 1
            pairs.pop(old_rkey, None)

    def _open_tcp(self, key: bytes, rkey: bytes) -> _Pair:
        pair = _Pair(key, self.tcp_count)
        self.tcp_count += 1
        self.tcp_pairs[key] = pair
        self.tcp_pairs[rkey] = pair
        return pair

    def tcp(self, key: bytes, rkey: bytes, flags: int, seq: int) -> int:
        """The tcp.stream of a segment whose endpoint key is `key` (rkey: the other direction's)."""
        pair = self.tcp_pairs.get(key)
        if pair is None:
            pair = self._open_tcp(key, rkey)
        side = 0 if key == pair.key else 1
        base = pair.base[side]
        if flags & (SYN | ACK) == SYN and base != _UNSET and seq != base:
            pair = self._open_tcp(key, rkey)
            side, base = 0, _UNSET
        if base == _UNSET:
            pair.base[side] = seq if flags & SYN else (seq - 1) & _M32
        return pair.stream

    def tcp_quoted(self, key: bytes, rkey: bytes) -> int:
        """The tcp.stream of a TCP header quoted in an ICMP error (opens one if the pair is new)."""
        pair = self.tcp_pairs.get(key)
        if pair is None:
            pair = self._open_tcp(key, rkey)
        return pair.stream

    def udp(self, key: bytes, rkey: bytes) -> int:
        """The udp.stream of a datagram (or of a UDP header quoted in an ICMP error)."""
        pair = self.udp_pairs.get(key)
        if pair is None:
            pair = _Pair(key, self.udp_count)
            self.udp_count += 1
            self.udp_pairs[key] = pair
            self.udp_pairs[rkey] = pair
        return pair.stream
