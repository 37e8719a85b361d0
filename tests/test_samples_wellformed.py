"""The regression captures in samples/ are complete and readable.

Every capture has a sidecar, every sidecar names a capture that exists and only rule codes the
catalogue plan lists, every planned rule has a capture that must fire it and one that must stay
silent for it, and every capture opens with dpkt and holds packets. Whether the analyzer agrees
with the sidecars is tested elsewhere.
"""

from __future__ import annotations

import re
from pathlib import Path

import dpkt
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
PLAN = ROOT / "docs" / "CATALOGUE-PLAN.md"
CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".etl")
SIDECAR_KEYS = {"description", "made_by", "expect", "silent_for"}
PEER_KEYS = {"capture", "expect", "silent_for"}  # optional `peer:` of a two-capture sample (analyze --peer)
EXPECT_KEYS = {"rule", "side", "winsock"}
# RFC 5737 / RFC 3849 documentation ranges and loopback: the only addresses a sample may carry.
DOC_NETS = ("192.0.2.", "198.51.100.", "203.0.113.", "127.")


def plan_codes() -> set[str]:
    """Rule codes from the first column of the catalogue plan's table."""
    return set(re.findall(r"^\|\s*([A-Z]{3}\d{3})\s*\|", PLAN.read_text(), re.M))


def captures() -> list[Path]:
    return sorted(p for p in SAMPLES.iterdir() if p.suffix in CAPTURE_SUFFIXES)


def sidecars() -> list[Path]:
    return sorted(SAMPLES.glob("*.yaml"))


def load(sidecar: Path) -> dict:
    return yaml.safe_load(sidecar.read_text())


def capture_of(sidecar: Path) -> list[Path]:
    return [sidecar.with_suffix(s) for s in CAPTURE_SUFFIXES if sidecar.with_suffix(s).exists()]


def test_plan_lists_rules():
    assert len(plan_codes()) >= 21


def test_samples_exist():
    assert len(captures()) >= 2 * len(plan_codes())


@pytest.mark.parametrize("capture", captures(), ids=lambda p: p.name)
def test_every_capture_has_a_sidecar(capture):
    assert capture.with_suffix(".yaml").exists(), f"{capture.name} has no sidecar"


@pytest.mark.parametrize("sidecar", sidecars(), ids=lambda p: p.name)
def test_sidecar_is_well_formed(sidecar):
    assert len(capture_of(sidecar)) == 1, f"{sidecar.name} must name exactly one capture"
    data = load(sidecar)
    assert isinstance(data, dict) and set(data) - {"peer"} == SIDECAR_KEYS, sorted(data or ())
    if "peer" in data:
        assert set(data["peer"]) == PEER_KEYS, sorted(data["peer"])
        assert (ROOT / data["peer"]["capture"]).is_file(), f"{sidecar.name}: its peer capture is missing"
        codes = plan_codes()
        assert {e["rule"] for e in data["peer"]["expect"]} | set(data["peer"]["silent_for"]) <= codes
    assert isinstance(data["description"], str) and data["description"].strip()
    assert data["made_by"] in ("netns", "scapy")
    codes = plan_codes()
    assert isinstance(data["expect"], list)
    for entry in data["expect"]:
        assert set(entry) <= EXPECT_KEYS and "rule" in entry, entry
        assert entry["rule"] in codes, f"unknown rule {entry['rule']}"
        if "side" in entry:
            assert entry["side"] in ("client", "server")
        if "winsock" in entry:
            assert entry["winsock"].startswith("WSA")
    assert isinstance(data["silent_for"], list)
    for code in data["silent_for"]:
        assert code in codes, f"unknown rule {code}"
    fired = {e["rule"] for e in data["expect"]}
    assert not fired & set(data["silent_for"]), "a capture cannot both fire and be silent for a rule"
    assert data["expect"] or data["silent_for"], "a sample must fire something or be a near-miss"


@pytest.mark.parametrize("code", sorted(plan_codes()))
def test_every_rule_has_a_firing_and_a_silent_sample(code):
    # A two-capture sample's `peer:` block counts like a sidecar of its own.
    datas = [load(s) for s in sidecars()]
    datas += [d["peer"] for d in datas if "peer" in d]
    assert any(code in {e["rule"] for e in d["expect"]} for d in datas), f"no sample fires {code}"
    assert any(code in d["silent_for"] for d in datas), f"no near-miss sample for {code}"


def read_packets(path: Path) -> list[tuple[float, bytes, int]]:
    if path.suffix == ".etl":  # dpkt has no ETL reader: the analyzer's own (held to Microsoft's in test_capture_etl)
        from analyzer.capture import open_capture

        with open_capture(path) as cap:
            return [(f.ts, f.data, f.linktype) for f in cap]
    with path.open("rb") as fh:
        magic = fh.read(4)
        fh.seek(0)
        reader = dpkt.pcapng.Reader(fh) if magic == b"\x0a\x0d\x0d\x0a" else dpkt.pcap.Reader(fh)
        linktype = reader.datalink()
        return [(ts, buf, linktype) for ts, buf in reader]


def ip_layer(buf: bytes, linktype: int):
    if linktype == dpkt.pcap.DLT_EN10MB:
        return dpkt.ethernet.Ethernet(buf).data
    if linktype == 276:  # LINKTYPE_LINUX_SLL2: 20-byte header, protocol type first
        ethertype = int.from_bytes(buf[:2], "big")
        return (dpkt.ip.IP if ethertype == 0x0800 else dpkt.ip6.IP6)(buf[20:])
    raise AssertionError(f"unexpected link type {linktype}")


@pytest.mark.parametrize("capture", captures(), ids=lambda p: p.name)
def test_capture_is_readable_and_uses_documentation_addresses(capture):
    packets = read_packets(capture)
    assert packets, f"{capture.name} holds no packets"
    assert len(packets) <= 100, "samples stay small"
    times = [ts for ts, _, _ in packets]
    assert times == sorted(times), "timestamps go forward"
    for _, buf, linktype in packets:
        ip = ip_layer(buf, linktype)
        if isinstance(ip, dpkt.ip.IP):
            addrs = [".".join(str(b) for b in a) for a in (ip.src, ip.dst)]
            assert all(a.startswith(DOC_NETS) for a in addrs), addrs
        else:
            assert isinstance(ip, dpkt.ip6.IP6), type(ip)
            for a in (ip.src, ip.dst):
                assert a[:4] == b"\x20\x01\x0d\xb8", a.hex()  # 2001:db8::/32


def test_link_types_are_mixed():
    kinds = {(p.suffix, read_packets(p)[0][2]) for p in captures()}
    assert (".pcapng", dpkt.pcap.DLT_EN10MB) in kinds
    assert any(lt == 276 for _, lt in kinds), "one Linux SLL2 capture"
    assert any(lt == dpkt.pcap.DLT_EN10MB for _, lt in kinds)
