"""Every sample capture produces exactly the findings its sidecar expects, and the rule files agree."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest
import yaml

from analyzer.pipeline import analyze_capture
from analyzer.rules import load_rules

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"


def _capture(sidecar: Path) -> Path | None:
    for ext in (".pcap", ".pcapng", ".pcap.gz", ".etl"):
        p = sidecar.with_suffix(ext)
        if p.is_file():
            return p
    return None


SIDECARS = sorted(p for p in SAMPLES.glob("*.yaml") if _capture(p) is not None)


# Samples whose expected finding needs an observation the flow tracker does not make yet.
# strict: once the tracker makes it, the test passes and this entry must go.
TRACKER_GAPS: dict[str, str] = {  # sample -> why the tracker cannot get it right yet (strict xfail)
}


@functools.cache
def _rules():
    return load_rules()


@functools.cache
def _result(name: str):
    result = analyze_capture(_capture(SAMPLES / name), _rules())
    assert result.error is None, result.error
    return result


def _findings(name: str):
    return _result(name).findings


@pytest.mark.parametrize("sidecar", SIDECARS, ids=lambda p: p.stem)
def test_sample_findings_match_sidecar(sidecar: Path, request):
    if sidecar.stem in TRACKER_GAPS:
        request.applymarker(pytest.mark.xfail(reason=TRACKER_GAPS[sidecar.stem], strict=True))
    if _result(sidecar.name).packets == 0:
        pytest.skip(f"{sidecar.stem}: the sample capture holds no packets yet")
    spec = yaml.safe_load(sidecar.read_text())
    findings = _findings(sidecar.name)
    assert sorted(f.rule for f in findings) == sorted(e["rule"] for e in spec.get("expect") or [])
    for want in spec.get("expect") or []:
        errors = [e for f in findings if f.rule == want["rule"] for e in f.errors]
        alerts = [f.tls_alert for f in findings if f.rule == want["rule"] and f.tls_alert]
        if alerts and "winsock" not in want:
            # A TLS alert, no socket error: the side is the one whose TLS library received the alert.
            assert not errors, f"{want['rule']} claims socket errors {errors} for an orderly close"
            assert any(a["sender"] != want.get("side") for a in alerts), alerts
        elif "side" in want or "winsock" in want:
            assert any(e.side == want.get("side", e.side) and e.winsock.name == want.get("winsock", e.winsock.name)
                       for e in errors), f"{want} not among {[(e.side, e.winsock.name) for e in errors]}"
    for silent in spec.get("silent_for") or []:
        assert silent not in {f.rule for f in findings}
    for f in findings:
        assert f.frames == tuple(sorted(f.frames)) and f.frames
        assert "{" not in f.message, f.message


def _sidecar_rules(sample: str) -> tuple[set[str], set[str]]:
    """What a sample fires and is silent for, alone or (its `peer:` block) with its peer capture."""
    spec = yaml.safe_load((SAMPLES / Path(sample).name).with_suffix(".yaml").read_text())
    fires = {e["rule"] for e in spec.get("expect") or []}
    silent = set(spec.get("silent_for") or [])
    peer = spec.get("peer") or {}
    return fires | {e["rule"] for e in peer.get("expect") or []}, silent | set(peer.get("silent_for") or [])


@pytest.mark.parametrize("rule", [r.code for r in load_rules().rules])
def test_rule_samples_agree_with_sidecars(rule: str):
    r = _rules().get(rule)
    for sample in r.samples["fires"]:
        expect, _ = _sidecar_rules(sample)
        assert rule in expect, f"{rule} names {sample} as firing but its sidecar does not expect it"
    for sample in r.samples["silent"]:
        expect, _ = _sidecar_rules(sample)
        assert rule not in expect, f"{rule} names {sample} as silent but its sidecar expects it"


@pytest.mark.parametrize("sidecar", SIDECARS, ids=lambda p: p.stem)
def test_a_forged_reset_names_a_ttl_other_than_its_own(sidecar):
    # "TTL 64 is unlike the sender's other packets (usually 64)" contradicts itself: where the RST
    # is all its sender sent, the judgment rests on the host's other conversations, and says so.
    if _result(sidecar.name).packets == 0:
        pytest.skip(f"{sidecar.stem}: the sample capture holds no packets yet")
    texts = [f.message for f in _findings(sidecar.name)]
    texts += [a.message for f in _findings(sidecar.name) for a in f.also]
    for text in texts:
        for own, usual in re.findall(r"TTL (\d+) is unlike the sender's other packets \(usually (\d+)\)", text):
            assert own != usual, text
