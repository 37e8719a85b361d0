"""Replays every input kept in tests/fuzz_regressions/ through the fuzzer's pipeline, without atheris."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from analyzer.flows.table import TIMELINE_HEAD, TIMELINE_TAIL
from analyzer.pipeline import analyze_capture
from analyzer.report import FORMATS, ReportOptions, render
from analyzer.rules import load_rules

INPUTS = sorted(p for p in (Path(__file__).parent / "fuzz_regressions").iterdir() if p.suffix != ".md")
RULES = load_rules()
FUZZ_MAX_CONVERSATIONS = 16  # as fuzz/fuzz_pipeline.py, so eviction runs as it did when found


@pytest.mark.parametrize("path", INPUTS, ids=lambda p: p.name)
def test_fuzz_input_replays_cleanly(path):
    data = path.read_bytes()
    result = analyze_capture(io.BytesIO(data), RULES, keep="all-full", max_conversations=FUZZ_MAX_CONVERSATIONS)
    if result.error:
        assert "\n" not in result.error
    for conv in result.conversations:
        assert len(conv.timeline) <= TIMELINE_HEAD + TIMELINE_TAIL
    for fmt in FORMATS:
        render(fmt, [result], ReportOptions(rules=list(RULES.rules)))
