"""Windows' drop reasons as evidence: the pktmon refusal sample, the same traffic mirrored, and the rule words."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from scapy.utils import wrpcap

from analyzer.pipeline import analyze_capture
from analyzer.rules import load_rules
from analyzer.rules.loader import RuleError
from scripts.samples_lib import windows
from scripts.samples_lib.etlwrite import EtlWriter
from tests.test_rules import DOC, write

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"
ETL = SAMPLES / "con001-windows-refusal-pktmon.etl"
MIRRORED = [SAMPLES / "con001-refused-erspan.pcap", SAMPLES / "con001-refused-gre.pcap"]


def _summary(result):
    """What a user reads off the findings, without the words that name the capture or the drop."""
    return [
        (f.rule, f.frames, [(e.side, e.winsock.name) for e in f.errors], f.message.split(" Windows logged")[0])
        for f in result.findings
    ]


def test_pktmon_refusal_names_windows_drop_reason_in_the_finding() -> None:
    result = analyze_capture(ETL, load_rules())
    assert result.format == "etl-pktmon"
    # one connect(): Windows re-sends the same SYN after each RST
    assert [f.rule for f in result.findings] == ["CON001"]
    for f in result.findings:
        assert "INET_EndpointNotFound" in f.message and "TCP/IPv4 - L3/L4 (tcpip.sys)" in f.message
        assert "no socket was listening on port 1433" in f.message


def test_the_same_refusal_plain_mirrored_and_from_pktmon_is_diagnosed_the_same(tmp_path: Path) -> None:
    plain = tmp_path / "plain.pcap"
    wrpcap(str(plain), windows.refused_connects())
    rules = load_rules()
    unmirrored = analyze_capture(plain, rules)
    want = _summary(unmirrored)
    assert [w[0] for w in want] == ["CON001"]  # one connect(), its SYN re-sent twice
    assert not any("Windows logged" in f.message for f in unmirrored.findings)
    for path in [ETL, *MIRRORED]:
        assert _summary(analyze_capture(path, rules)) == want, path.name
    assert analyze_capture(MIRRORED[0], rules).encapsulations == ["ERSPAN II"]
    assert analyze_capture(MIRRORED[1], rules).encapsulations == ["GRE (Ethernet)"]


def _rule(tmp_path: Path, step: dict, message: str = "{client}{windows_drop}") -> object:
    body = {
        "code": "XYZ001",
        "name": "test-rule",
        "title": "A test rule",
        "level": "error",
        "status": "experimental",
        "message": message,
        "match": {"sequence": [{"from": "client", "flags_exact": ["SYN"], **step}]},
        "errors": [{"side": "client", "operation": "connect", "winsock": "WSAECONNREFUSED"}],
        "cause": "c",
        "remedy": "r",
        "confidence": "low",
        "falsepositives": [],
        "references": [],
        "samples": {"fires": [], "silent": []},
        "doc": DOC,
    }
    write(tmp_path, yaml.safe_dump(body, sort_keys=False))
    return load_rules(extra_dirs=[tmp_path], select=["XYZ001"])


@pytest.mark.parametrize(
    "step, fires",
    [
        ({"dropped": "INET_EndpointNotFound"}, True),
        ({"dropped": "inet_endpointnotfound"}, True),
        ({"dropped": 1204}, True),
        ({"dropped": "any"}, True),
        ({"dropped": ["INET_Rst", "NL_NotLocallyDestined"]}, False),
        ({"dropped_by": "tcpip"}, True),
        ({"dropped_by": "tcpip.sys"}, True),
        ({"dropped_by": "firewall"}, False),
        ({"dropped": "INET_EndpointNotFound", "dropped_by": "filter"}, False),
    ],
)
def test_drop_words_in_a_step(tmp_path: Path, step: dict, fires: bool) -> None:
    rules = _rule(tmp_path, step)
    assert bool(analyze_capture(ETL, rules).findings) == fires
    assert analyze_capture(MIRRORED[0], rules).findings == [], "no drop record, no match"


def test_a_firewall_drop_names_the_filter(tmp_path: Path) -> None:
    w = EtlWriter(1_700_000_000.0)
    w.pktmon_component(14, 3, "wfplwfs.sys", "WFP Native MAC Layer LightWeight Filter")
    syn = windows.refused_connects()[0]
    w.pktmon_packet(1_700_000_000.0, bytes(syn), group=1, component=3)
    w.pktmon_drop(1_700_000_000.0001, bytes(syn), group=1, component=14, reason=8, appearance=2)
    path = tmp_path / "fw.etl"
    path.write_bytes(w.to_bytes())
    (finding,) = analyze_capture(path, _rule(tmp_path, {"dropped_by": "firewall"})).findings
    assert "Windows Firewall / WFP" in finding.message and "Filtered" in finding.message
    assert "wfplwfs.sys" in finding.message


@pytest.mark.parametrize("value, words", [("INET_Nonsense", "unknown drop reason"), ("router", "unknown component")])
def test_unknown_drop_words_are_load_errors(tmp_path: Path, value: str, words: str) -> None:
    key = "dropped" if words.endswith("reason") else "dropped_by"
    with pytest.raises(RuleError) as exc:
        _rule(tmp_path, {key: value})
    assert words in str(exc.value) and "XYZ001" in str(exc.value)
