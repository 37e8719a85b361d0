"""The diagnosis guarantee, checked from the packets alone on every sample and corpus capture.

1. Completeness: every conversation whose end is abnormal (a RST, an unanswered SYN, data never
   acknowledged, an ICMP error, a handshake cut short) gets a finding; silence means healthy.
2. Honesty: a socket error is claimed for a side only when a packet it received (a RST, an ICMP
   error) or a timeout it suffered (its SYN or data never answered) shows it. A FIN never does.

Both are judged here from the conversation's own packets, not from the engine's reasoning.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from analyzer.model import Conversation, Event
from analyzer.pipeline import analyze_capture
from analyzer.protocol import ACK, RST, SYN
from analyzer.rules import load_rules
from tests.corpus import CORPUS

REPO = Path(__file__).resolve().parents[1]
SAMPLES = sorted(p for p in (REPO / "samples").iterdir() if p.suffix in (".pcap", ".pcapng", ".gz"))
CORPUS_CAPTURES = (
    sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.suffix in (".pcap", ".pcapng", ".cap", ".gz"))
    if CORPUS.is_dir()
    else []
)
# ICMP messages that report a path fact the stack acts on (PMTUD), not a failure by themselves.
PATH_MTU = {(3, 4), (2, 0)}  # IPv4 fragmentation needed, ICMPv6 packet too big


@functools.cache
def _rules():
    return load_rules()


def _analysed(path: Path):
    result = analyze_capture(path, _rules(), keep="all-full")
    return result, {f.conversation: f for f in result.findings}


def _failing_icmp(conv: Conversation) -> list[Event]:
    return [e for e in conv.timeline if e.icmp is not None and e.icmp not in PATH_MTU]


def abnormal_end(conv: Conversation) -> str:
    """Why this conversation ended abnormally, judged from its packets; "" when it did not."""
    if conv.proto == "icmp":
        return ""
    if _failing_icmp(conv):
        return "an ICMP error"
    if conv.proto != "tcp":
        return ""
    c, s = conv.client_stats, conv.server_stats
    if c.sent_syn and any(e.dir == 1 and e.flags & SYN and e.flags & ACK for e in conv.timeline) and not conv.handshake:
        return "a handshake cut short"
    if c.sent_rst or s.sent_rst:
        return "a RST"
    if conv.state == "S0":
        return "an unanswered SYN"
    for side in (c, s):
        if getattr(side, "unacked", 0) and side.retransmissions:  # (bench/accuracy.py runs older code too)
            return "data never acknowledged"
    return ""


def _received_rst(conv: Conversation, side: int) -> bool:
    return any(e.flags & RST and e.dir != side and e.icmp is None for e in conv.timeline)


def _received_icmp(conv: Conversation, side: int) -> bool:
    return any(e.icmp is not None and e.dir != side for e in conv.timeline)


def _timed_out(conv: Conversation, side: int) -> bool:
    me = conv.client_stats if side == 0 else conv.server_stats
    peer_sent = any(e.dir != side and e.icmp is None for e in conv.timeline)
    syn_unanswered = any(e.dir == side and e.flags & SYN for e in conv.timeline) and not peer_sent
    return syn_unanswered or bool(me.unacked and me.retransmissions) or me.keepalives > 0


def _check(path: Path) -> tuple[list[str], list[str]]:
    result, by_conv = _analysed(path)
    assert result.error is None or result.packets == 0, result.error
    silent, unfounded = [], []
    for conv in result.conversations:
        why = abnormal_end(conv)
        finding = by_conv.get(conv.id)
        if why and finding is None:
            silent.append(f"conversation {conv.id} ({conv.client} -> {conv.server}, {conv.state}) ended with {why}")
        if finding is None:
            continue
        for err in finding.errors:
            side = 0 if err.side == "client" else 1
            if not (_received_rst(conv, side) or _received_icmp(conv, side) or _timed_out(conv, side)):
                unfounded.append(
                    f"{finding.rule} claims {err.winsock.name} for the {err.side} of conversation {conv.id}"
                )
    return silent, unfounded


@pytest.mark.parametrize("path", SAMPLES + CORPUS_CAPTURES, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_no_failed_connection_is_left_silent_and_no_error_is_claimed_without_a_packet(path: Path):
    silent, unfounded = _check(path)
    assert silent == [], "failed connections without a finding: " + "; ".join(silent)
    assert unfounded == [], "errors the packets do not support: " + "; ".join(unfounded)


def test_the_guarantee_is_checked_on_failures_of_every_kind():
    # The parametrized test above would pass vacuously on healthy captures: make sure the samples
    # hold failed conversations of every kind the guarantee names.
    kinds = set()
    for path in SAMPLES:
        result, _ = _analysed(path)
        kinds |= {abnormal_end(c) for c in result.conversations}
    assert kinds >= {"an ICMP error", "a RST", "an unanswered SYN", "a handshake cut short", "data never acknowledged"}
