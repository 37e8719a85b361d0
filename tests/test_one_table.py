"""Facts spelt once: the mark words, ICMP names and endpoint states each come from one table.

A user reads a word in a report and writes it in a rule; these tests check that the word the
report shows is the word the rule language takes, on the project's own sample captures.
"""

from __future__ import annotations

import re
from pathlib import Path

from analyzer.model import MARKS, Mark
from analyzer.pipeline import analyze_capture
from analyzer.report.ladder import packet_label
from tests.test_rules import load_one

REPO = Path(__file__).resolve().parents[1]
SAMPLES = sorted(p for p in (REPO / "samples").iterdir() if p.suffix in (".pcap", ".pcapng"))
LABEL = re.compile(r"\[([a-z0-9-]+)\]")


def sample_conversations():
    for path in SAMPLES:
        yield from analyze_capture(path, keep="all-full").conversations


def test_every_mark_has_one_word():
    marks = [m.mark for m in MARKS]
    # each bit once; NONE is not a word, and a packet's fate between two capture points is a `fate:` word
    assert sorted(marks) == sorted(m for m in Mark if m.value and not m.name.startswith("PATH_"))
    words = [m.word for m in MARKS]
    assert len(set(words)) == len(words)
    assert all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", w) and m.doc for w, m in zip(words, MARKS))


def test_a_rule_using_a_ladder_label_loads_and_fires_on_that_packet(tmp_path):
    seen: dict[str, tuple] = {}  # label -> (conversation, frame) where a ladder showed it
    for conv in sample_conversations():
        for ev in conv.timeline:
            for word in LABEL.findall(packet_label(conv, ev)):
                seen.setdefault(word, (conv, ev.frame))
    # The samples show several distinct marks, among them the two whose labels used to differ.
    assert {"duplicate-ack", "retransmission", "syn-retransmission"} <= set(seen), sorted(seen)
    for word, (conv, frame) in seen.items():
        rs = load_one(tmp_path, match={"sequence": [{"kind": word}]}, message="{step1.frame}", errors=[])
        found = rs.evaluate(conv)
        assert found and found[0].frames == (frame,), word


ICMP_LABEL = re.compile(r"^ICMP(?:v6)? ([a-z-]+)")


def test_a_rule_using_the_ladder_icmp_word_fires_and_its_message_says_the_same_word(tmp_path):
    seen = []
    for conv in sample_conversations():
        for ev in conv.timeline:
            m = ICMP_LABEL.match(packet_label(conv, ev)) if ev.icmp is not None else None
            if m:
                seen.append((m.group(1), conv, ev.frame))
    assert {"host-unreachable", "admin-prohibited", "port-unreachable"} <= {w for w, _, _ in seen}
    for word, conv, frame in seen:
        rs = load_one(tmp_path, match={"sequence": [{"icmp": word}]}, message="ICMP {icmp}", errors=[])
        found = rs.evaluate(conv)
        assert found and found[0].message == f"ICMP {word}", (word, conv.id)
        assert found[0].frames[0] <= frame  # the first ICMP error of that kind, this one or earlier


def test_icmp_rule_words_are_derived_from_the_message_table():
    from analyzer import icmp
    from analyzer.rules.tables import ICMP_ERRORS

    assert set(ICMP_ERRORS) == set(icmp.WORDS.values())
    for word, (v4, v6) in ICMP_ERRORS.items():
        assert v4 | v6, word
        assert all(icmp.icmp_word(4, t, c) == word for t, c in v4)
        assert all(icmp.icmp_word(6, t, c) == word for t, c in v6)
    # Numbers collide across families: ICMPv6 3/0 is hop limit exceeded, not port unreachable.
    assert icmp.icmp_label(6, icmp.ICMP6_TIME_EXCEEDED, 0).startswith("ICMPv6 time-exceeded")
    assert icmp.icmp_label(4, icmp.ICMP_UNREACH, icmp.ICMP_UNREACH_PORT) == "ICMP port-unreachable"


def test_winsock_takes_its_icmp_names_from_the_one_table():
    from analyzer import icmp, winsock

    assert winsock.ICMP_NAMES is icmp.NAMES and winsock.icmp_name is icmp.icmp_name


def test_every_endpoint_state_the_tracker_can_produce_is_in_the_table():
    from itertools import product

    from analyzer.flows import zeek

    states = range(zeek.INACTIVE, zeek.RESET + 1)
    produced = {
        zeek.endpoint_state(proto, sent, own, peer, first)
        for proto, sent, own, peer, first in product(
            ("tcp", "udp", "icmp"), (False, True), states, states, (False, True)
        )
    }
    assert produced == set(zeek.ENDPOINT_STATES)  # every produced state documented, nothing documented unproduced


def test_a_rule_naming_a_produced_endpoint_state_fires_on_a_sample(tmp_path):
    convs = list(sample_conversations())
    states = {c.server_stats.state for c in convs if c.proto == "tcp"}
    assert {"RESET", "CLOSED"} & states
    for state in sorted(states - {""}):
        match = {"where": {"server": {"state": state}}, "sequence": [{"from": "client"}]}
        rs = load_one(tmp_path, match=match, message="x", errors=[])
        fired = [c for c in convs if c.proto == "tcp" and rs.evaluate(c)]
        assert fired and all(c.server_stats.state == state for c in fired), state


def test_an_unknown_endpoint_state_is_rejected_with_file_and_line(tmp_path):
    from tests.test_rules import error_of, line_of, rule_text

    for typo in ("FIN_WAIT_ONE_TYPO", "FIN_WAIT_1"):  # FIN_WAIT_1 is RFC wording the wire cannot show
        text = rule_text(match={"where": {"A": {"state": typo}}, "sequence": [{"from": "A", "flags": ["RST"]}]})
        msg = error_of(tmp_path, text)  # asserts the message starts with the file and a line number
        assert f"unknown endpoint state ['{typo}']" in msg and "FIN_WAIT" in msg
        assert line_of(msg) == next(i for i, line in enumerate(text.splitlines(), 1) if typo in line)


def test_timeline_rows_are_built_in_events_field_order():
    from analyzer.flows.table import TimelineRow
    from analyzer.model import Event

    # A distinct value of each field's own type (the compiled module checks the types).
    kinds = {"ts": float, "idle": float, "payload": str, "icmp": tuple, "icmp_src": bytes}
    make = {int: lambda i: 100 + i, float: lambda i: 100.5 + i, str: lambda i: f"kind {i}",
            tuple: lambda i: (3, i), bytes: lambda i: bytes([i])}
    values = {name: make[kinds.get(name, int)](i) for i, name in enumerate(Event._fields)}
    row = TimelineRow(**values)  # what the flow table keeps per packet of a live conversation
    event = row.event()  # the flow table turns rows into Events this way
    assert all(getattr(event, name) == value for name, value in values.items())
