"""Our conn_state agrees with Zeek's conn.log on the corpus traces (issue 2's measure)."""

from __future__ import annotations

import csv
from collections import Counter, defaultdict

import pytest

from analyzer.pipeline import analyze_capture
from tests.corpus import CORPUS, needs_corpus

THRESHOLDS = {"tcp": 0.95, "udp": 0.90}


def _zeek_rows():
    with open(CORPUS / "zeek" / "conn_state.tsv", newline="") as fh:
        yield from csv.DictReader(fh, delimiter="\t")


def _ours(trace: str) -> dict[tuple, list[str]]:
    """Our conversations of a trace, by unordered endpoint pair and protocol -> states."""
    path = CORPUS / "zeek" / "traces" / trace
    result = analyze_capture(path, keep="all")
    assert result.error is None, result.error
    by_key: dict[tuple, list[str]] = defaultdict(list)
    for conv in result.conversations:
        ends = frozenset({(conv.client.addr, conv.client.port), (conv.server.addr, conv.server.port)})
        by_key[(conv.proto, ends)].append(conv.state)
        by_key[(conv.proto, None)].append(conv.state)
    return by_key


def agreement() -> dict[str, tuple[int, int, list[str]]]:
    """Per protocol: (agreeing rows, all rows, the disagreements)."""
    zeek: dict[tuple, list[str]] = defaultdict(list)
    traces: dict[tuple, str] = {}
    for row in _zeek_rows():
        if row["proto"] not in THRESHOLDS:
            continue
        if row["orig_p"]:
            ends = frozenset({(row["orig_h"], int(row["orig_p"])), (row["resp_h"], int(row["resp_p"]))})
        else:
            ends = None  # the baseline printed only state and history: the trace's one connection
        key = (row["trace"], row["proto"], ends)
        zeek[key].append(row["conn_state"])
        traces[key] = row["trace"]
    ours_by_trace = {trace: _ours(trace) for trace in sorted(set(traces.values()))}
    totals: dict[str, list] = {p: [0, 0, []] for p in THRESHOLDS}
    for (trace, proto, ends), states in zeek.items():
        mine = Counter(ours_by_trace[trace].get((proto, ends), []))
        theirs = Counter(states)
        agree = sum((mine & theirs).values())
        totals[proto][0] += agree
        totals[proto][1] += len(states)
        if agree < len(states):
            pair = " <-> ".join(f"{a}:{p}" for a, p in sorted(ends or ()))
            totals[proto][2].append(f"{trace} {proto} {pair}: zeek {sorted(states)} ours {sorted(mine.elements())}")
    return {p: tuple(v) for p, v in totals.items()}


@needs_corpus
@pytest.mark.parametrize("proto", sorted(THRESHOLDS))
def test_conn_state_agrees_with_zeek(proto, capsys):
    agree, total, misses = agreement()[proto]
    share = agree / total
    with capsys.disabled():
        print(f"\n{proto}: conn_state agrees with Zeek on {agree}/{total} = {share:.1%}")
        for miss in misses:
            print("   differs:", miss)
    assert total > 0
    assert share >= THRESHOLDS[proto], "\n".join(misses)
