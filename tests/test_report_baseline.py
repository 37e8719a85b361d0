"""Baselines: known findings written once, left out of later runs, robust to new ephemeral ports."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from analyzer.errors import UsageError
from analyzer.model import Endpoint
from analyzer.report.baseline import apply_baseline, write_baseline
from tests import report_cases as rc


def test_write_then_apply_suppresses_everything(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    assert write_baseline(rc.rst003_case(), path) == 2
    kept, suppressed = apply_baseline(rc.rst003_case(), path)
    assert suppressed == 2 and kept[0].findings == []
    assert len(kept[0].conversations) == 3  # only findings are removed


def test_a_new_client_port_still_matches(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    write_baseline(rc.rst003_case(), path)
    rerun = rc.rst003_case()
    conv = rerun[0].conversations[0]
    rerun[0].conversations[0] = replace(conv, client=Endpoint(conv.client.addr, 50111))
    rerun[0].path = "/elsewhere/checkout/samples/rst003-stray-ack.pcap"  # same file name, other folder
    kept, suppressed = apply_baseline(rerun, path)
    assert suppressed == 2 and kept[0].findings == []


def test_a_new_finding_is_not_suppressed(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    write_baseline(rc.rst003_case(), path)
    rerun = rc.rst003_case()
    conv = rerun[0].conversations[0]
    rerun[0].conversations[0] = replace(conv, server=Endpoint(conv.server.addr, 8443))  # another service
    kept, suppressed = apply_baseline(rerun, path)
    assert suppressed == 1 and [f.rule for f in kept[0].findings] == ["RST003"]
    assert apply_baseline(rc.warnings_case(), path) == (rc.warnings_case(), 0)


def test_baseline_file_is_readable_json(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    write_baseline(rc.rst003_case(), path)
    doc = json.loads(path.read_text())
    assert doc["version"] == 1
    assert {"rule": "RST003", "client_address": "192.0.2.33", "server": "192.0.2.200:8000",
            "capture": "rst003-stray-ack.pcap"} in doc["findings"]


@pytest.mark.parametrize("content", ["not json", "[]", '{"version": 99, "findings": []}',
                                     '{"version": 1, "findings": [{"rule": 3}]}'])
def test_bad_baseline_is_a_usage_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "b.json"
    path.write_text(content)
    with pytest.raises(UsageError, match="baseline"):
        apply_baseline(rc.rst003_case(), path)


def test_missing_baseline_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read baseline"):
        apply_baseline(rc.rst003_case(), tmp_path / "nope.json")
