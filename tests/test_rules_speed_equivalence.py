"""The rule prefilter never costs a finding: evaluation finds what matching every pattern finds."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzer.model import Conversation, Mark, SideStats
from analyzer.pipeline import analyze_capture
from analyzer.rules import RuleSet, load_rules
from analyzer.rules.engine import PLACEHOLDERS, STEP_FIELDS, match
from analyzer.rules.tables import ICMP_ERRORS, PAYLOAD_KINDS
from tests.corpus import CORPUS
from tests.rules_build import conv, ev
from tests.test_rules import load_one

REPO = Path(__file__).resolve().parents[1]
SAMPLES = sorted(p for p in (REPO / "samples").iterdir() if ".pcap" in p.name)


@functools.cache
def _rules() -> RuleSet:
    return load_rules()


def ungated(rs: RuleSet, c: Conversation) -> list[tuple[str, tuple[int, ...], list[str]]]:
    """(rule, evidence frames, alternatives) found by matching every pattern of every rule, as
    evaluate() reports them."""
    fired = {}
    for rule in rs.rules:
        best = None
        for _, patterns in rule.bindings:
            for pattern in patterns:
                chain = match(pattern, c)
                if chain is not None and (best is None or chain[-1] < best[-1]):
                    best = chain
        if best is not None:
            fired[rule.code] = (rule, tuple(sorted({c.timeline[i].frame for i in best})))
    if not fired:
        return []
    ranked = sorted(fired, key=lambda code: (rs.rank(code), code))
    return [(ranked[0], fired[ranked[0]][1], sorted(c for c in ranked[1:] if not c.startswith("GEN")))]


def found(rs: RuleSet, c: Conversation) -> list[tuple[str, tuple[int, ...], list[str]]]:
    return [(f.rule, f.frames, sorted(a.rule for a in f.also)) for f in rs.evaluate(c)]


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_every_sample_conversation_gets_the_findings_of_plain_matching(path: Path):
    result = analyze_capture(path, None, keep="all-full")
    assert result.error is None, result.error
    for c in result.conversations:
        assert found(_rules(), c) == ungated(_rules(), c), f"conversation {c.id}"


CORPUS_CAPTURES = sorted(p for p in CORPUS.rglob("*") if ".pcap" in p.name) if CORPUS.is_dir() else []


def _every_conversation(conv: Conversation) -> bool:
    return True  # a filter turns off the pipeline's prefilter: every conversation is built and evaluated


@pytest.mark.parametrize("path", SAMPLES + CORPUS_CAPTURES, ids=lambda p: p.name)
def test_conversations_left_unbuilt_would_have_had_no_finding(path: Path):
    # analyze_capture skips building conversations whose Traits no rule admits; with a filter it
    # builds them all. Findings and the conversation count must not differ.
    rs = _rules()
    fast = analyze_capture(path, rs)
    full = analyze_capture(path, rs, _every_conversation)
    assert [(f.conversation, f.rule, f.frames, f.message) for f in fast.findings] == \
        [(f.conversation, f.rule, f.frames, f.message) for f in full.findings]
    assert fast.conversation_count == full.conversation_count


FLAGS = st.sampled_from(["S", "SA", "A", "PA", "FA", "FPA", "R", "RA", "F", ""])
MARKS = st.lists(st.sampled_from(list(Mark)[1:]), max_size=3).map(lambda ms: sum({int(m) for m in ms}))
ICMP = st.none() | st.sampled_from(sorted({p for v4, v6 in ICMP_ERRORS.values() for p in v4 | v6}))
EVENT = st.tuples(st.sampled_from([0.0, 0.01, 0.4, 1.5, 4.0, 6.0, 70.0]), st.integers(0, 1), FLAGS,
                  st.sampled_from([0, 0, 1, 1460]), MARKS, st.sampled_from(["", *PAYLOAD_KINDS]), ICMP)
SIDE = st.builds(SideStats, packets=st.integers(0, 5), sent_fin=st.booleans(), sent_rst=st.booleans())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(EVENT, min_size=1, max_size=16), st.sampled_from(["tcp", "udp"]), st.booleans(),
       st.sampled_from(["S0", "SF", "REJ", "RSTO", "RSTR", "S1"]), SIDE, SIDE, st.booleans())
def test_any_timeline_gets_the_findings_of_plain_matching(steps, proto, handshake, state, cs, ss, v6):
    events = []
    t = 0.0
    for n, (dt, d, flags, plen, marks, payload, icmp) in enumerate(steps, 1):
        t += dt
        src = (b"\x20" * 16 if v6 else b"\xc6\x33\x64\x01") if icmp else b""
        events.append(ev(n, t, d, flags, plen, marks, payload=payload if plen else "", icmp=icmp, icmp_src=src))
    c = conv(events, proto, handshake=handshake, state=state, client_stats=cs, server_stats=ss, v6=v6)
    assert found(_rules(), c) == ungated(_rules(), c)


EVIDENCE = [ev(1, 0, 0, "PA", 10, payload="http-request"), ev(2, 0.25, 1, "RA", ttl=51)]
TWO_STEPS = {"sequence": [{"from": "A", "data": True}, {"from": "B", "flags": ["RST"]}]}


@pytest.mark.parametrize("name", [*PLACEHOLDERS, *(f"step{n}.{f}" for n in (1, 2) for f in STEP_FIELDS)])
def test_a_message_fills_every_placeholder_and_step_field(tmp_path, name):
    rs = load_one(tmp_path, message=f"<{{{name}}}>", errors=[], match=TWO_STEPS)
    assert "{" not in rs.evaluate(conv(EVIDENCE))[0].message


def test_a_message_says_what_the_evidence_shows(tmp_path):
    rs = load_one(tmp_path, message="{A} reset after {gap}: {step2.flags}, ttl {step2.ttl}, {step1.payload}",
                  errors=[], match=TWO_STEPS)
    message = rs.evaluate(conv(EVIDENCE))[0].message
    assert message == "192.0.2.1:50000 reset after 250 ms: RST, ACK, ttl 51, http-request"
