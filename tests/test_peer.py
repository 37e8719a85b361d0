"""Two captures of one path (`wsadiag analyze CLIENT --peer SERVER`), on the pairs in samples/.

Each pair was captured at once on the client host and on the server host of a namespace lab
with a router between them (scripts/make_path_samples.py); the client capture's sidecar says,
under `peer:`, which two-capture rules the pair must fire and which it must not.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import dpkt
import pytest
import yaml

from analyzer.cli import main
from analyzer.peer.path import analyze_pair
from analyzer.rules import load_rules

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"
PAIRS = sorted(p for p in SAMPLES.glob("*-client.yaml") if "peer" in (yaml.safe_load(p.read_text()) or {}))


def _pair_paths(sidecar: Path) -> tuple[str, str]:
    spec = yaml.safe_load(sidecar.read_text())
    return str(sidecar.with_suffix(".pcap")), str(REPO / spec["peer"]["capture"])


@functools.cache
def _rules():
    return load_rules()


@functools.cache
def _pair(client: str, server: str):
    return analyze_pair(client, server, _rules())


def _findings(results):
    return [f for r in results for f in r.findings]


def _path_of(results, index: int = 0):
    """The path views of the conversations of one capture that carry findings or a changed path."""
    return {c.id: c.path for c in results[index].conversations if c.path is not None}


def test_there_are_pairs_for_every_two_capture_rule():
    fired = {e["rule"] for p in PAIRS for e in yaml.safe_load(p.read_text())["peer"]["expect"]}
    assert fired == {"PTH001", "PTH002", "PTH003", "PTH004", "PTH005", "PTH006", "PTH007"}


@pytest.mark.parametrize("sidecar", PAIRS, ids=lambda p: p.stem.removesuffix("-client"))
def test_pair_fires_its_diagnosis_and_nothing_else_of_its_family(sidecar: Path):
    spec = yaml.safe_load(sidecar.read_text())["peer"]
    results = _pair(*_pair_paths(sidecar))
    assert all(r.error is None for r in results)
    fired = sorted(f.rule for f in _findings(results) if f.rule.startswith("PTH"))
    assert fired == sorted(e["rule"] for e in spec["expect"])
    assert not set(fired) & set(spec["silent_for"])
    for f in _findings(results):
        assert "{" not in f.message, f.message


@pytest.mark.parametrize("sidecar", PAIRS, ids=lambda p: p.stem.removesuffix("-client"))
def test_path_findings_need_the_second_capture(sidecar: Path):
    # Alone, each capture of the pair says only what one point can tell: no two-capture rule.
    from analyzer.pipeline import analyze_capture

    for path in _pair_paths(sidecar):
        assert not [f for f in analyze_capture(path, _rules()).findings if f.rule.startswith("PTH")]


def _sample(name: str) -> tuple[str, str]:
    return str(SAMPLES / f"{name}-client.pcap"), str(SAMPLES / f"{name}-server.pcap")


def test_injected_reset_names_the_hops_from_each_point():
    results = _pair(*_sample("pth001-rst-injected"))
    (finding,) = [f for f in results[0].findings if f.rule == "PTH001"]
    assert "1 hop from it and 1 hop from the server-side point" in finding.message
    assert "1 router apart" in finding.message
    assert [e.winsock.name for e in finding.errors] == ["WSAECONNRESET"]
    view = _path_of(results)[finding.conversation]
    fates = [(f.dir, f.fate) for f in view.packets]
    # the client's second request vanished, the RST in the server's name appeared in between
    assert fates[-2:] == [(0, "lost"), (1, "injected")]
    assert view.here_near == "client" and view.matched_by == "5-tuple"
    # the same conversation in the server's capture: seen from the other point
    server_view = _path_of(results, 1)[view.peer_conversation]
    assert server_view.here_near == "server" and server_view.count("injected") == 1


def test_nat_is_seen_through_by_sequence_numbers():
    results = _pair(*_sample("pth001-nat-rst-injected"))
    views = _path_of(results)
    assert {v.matched_by for v in views.values()} == {"isn"}
    for conv in results[0].conversations:
        assert conv.path.translated
        assert f"client {conv.client} -> 198.51.100.1:{conv.client.port} (address/port translated)" in conv.path.changes
    assert [f.rule for f in results[0].findings if f.rule.startswith("PTH")] == ["PTH001"]


def test_healthy_nat_stays_silent_and_shows_translation_and_mss_clamp(capsys):
    client, server = _sample("pth-nat-healthy")
    assert not _findings(_pair(client, server))
    code = main(["analyze", client, "--peer", server, "--format", "json", "--no-progress"])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["version"] == 1
    path = doc["captures"][0]["conversations"][0]["path"]
    assert path["translated"] is True and path["matched_by"] == "isn"
    assert path["peer_endpoints"]["client"].startswith("198.51.100.1:")
    assert "MSS 1460 -> 1200 (clamped) on the client's SYN" in path["changes"]
    assert path["fates"]["lost"] == 0 and path["fates"]["injected"] == 0
    assert path["fates"]["changed"] == 2  # the SYN and the SYN/ACK, clamped by the router
    assert path["hops_between"] == 1


def test_silent_syn_drop_and_refusal_in_the_path():
    drop = _pair(*_sample("pth002-syn-dropped"))
    (f,) = [f for f in _findings(drop) if f.rule == "PTH002"]
    view = _path_of(drop)[f.conversation]
    assert view.peer_conversation == 0 and view.count("lost") == 3  # the SYN and its two retransmissions
    refused = _pair(*_sample("pth004-refused-in-path"))
    (f,) = [f for f in _findings(refused) if f.rule == "PTH004"]
    assert [e.winsock.name for e in f.errors] == ["WSAECONNREFUSED"]
    assert "never reached the server's side" in f.message


def test_mtu_black_hole_names_the_sizes():
    results = _pair(*_sample("pth003-mtu-blackhole"))
    (f,) = [f for f in _findings(results) if f.rule == "PTH003"]
    assert "the client's segments of 1104 to 1448 bytes vanished while its packets of up to 70 bytes" in f.message


def test_idle_drop_points_at_the_lost_keepalive():
    results = _pair(*_sample("pth005-idle-dropped"))
    (f,) = [f for f in _findings(results) if f.rule == "PTH005"]
    assert "keep-alive probe" in f.message and "never reached the other" in f.message


def test_order_of_arguments_does_not_decide_which_point_is_nearer_the_client():
    client, server = _sample("pth001-rst-injected")
    results = analyze_pair(server, client, _rules())  # the server's capture given first
    assert {v.here_near for v in _path_of(results).values()} == {"server"}
    assert [f.rule for f in results[1].findings if f.rule.startswith("PTH")] == ["PTH001"]


# -- clock offset ------------------------------------------------------------------------------


def _shifted(src: str, dest: Path, seconds: float) -> str:
    """A copy of a capture with every timestamp moved by `seconds` (another host's clock)."""
    with open(src, "rb") as fin, open(dest, "wb") as fout:
        reader = dpkt.pcap.Reader(fin)
        writer = dpkt.pcap.Writer(fout, linktype=reader.datalink())
        for ts, buf in reader:
            writer.writepkt(buf, ts=ts + seconds)
    return str(dest)


@pytest.mark.parametrize("seconds", [300.0, -420.0, 5400.25, -90.5])
@pytest.mark.parametrize("name", ["pth001-nat-rst-injected", "pth003-mtu-blackhole"])
def test_clock_offset_found_within_a_millisecond(tmp_path, name, seconds):
    client, server = _sample(name)
    # The lab's two tcpdumps share one kernel clock: the true offset is the shift alone.
    results = analyze_pair(client, _shifted(server, tmp_path / "server.pcap", seconds), _rules())
    for view in _path_of(results).values():
        assert abs(view.clock.offset - seconds) < 0.001
        assert 0 <= view.clock.uncertainty < 0.001
    for view in _path_of(results, 1).values():  # seen from the server's point: the other way round
        assert abs(view.clock.offset + seconds) < 0.001
    # and the diagnosis does not move with the clock
    assert sorted(f.rule for f in _findings(results)) == sorted(f.rule for f in _findings(_pair(client, server)))


def test_clock_offset_when_the_client_capture_is_the_shifted_one(tmp_path):
    client, server = _sample("pth001-rst-injected")
    results = analyze_pair(_shifted(client, tmp_path / "client.pcap", -600.0), server, _rules())
    for view in _path_of(results).values():
        assert abs(view.clock.offset - 600.0) < 0.001  # the server's clock reads 600 s later
    assert "PTH001" in {f.rule for f in _findings(results)}


# -- the command line ----------------------------------------------------------------------------


def test_cli_text_report_draws_both_points(capsys):
    client, server = _sample("pth004-refused-in-path")
    assert main(["analyze", client, "--peer", server, "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "PTH004 refused-in-path" in out
    assert "|-------------o------X      :             |  SYN seq=0 len=0 LOST between the points" in out
    injected = "|<------------o------*      :             |  RST,ACK seq=0 len=0 INJECTED between the points"
    assert injected + " (TTL 64)" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["samples/pth001-rst-injected-client.pcap", "samples/pth002-syn-dropped-client.pcap"],
        ["-"],
    ],
)
def test_cli_peer_takes_one_file_each_side(argv, capsys):
    args = [str(REPO / a) if a != "-" else a for a in argv]
    assert main(["analyze", *args, "--peer", str(SAMPLES / "pth001-rst-injected-server.pcap")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --peer takes one capture on each side") and "Traceback" not in err


def test_cli_peer_that_is_not_a_capture(tmp_path, capsys):
    bad = tmp_path / "notes.txt"
    bad.write_text("not a capture\n")
    code = main(["analyze", str(SAMPLES / "pth001-rst-injected-client.pcap"), "--peer", str(bad), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err


def test_captures_of_different_traffic_say_nothing_about_the_path():
    # The client's capture of one sample, the server's capture of another: no conversation in common.
    results = analyze_pair(_sample("pth002-syn-dropped")[0], _sample("pth-nat-healthy")[1], _rules())
    assert not [f for f in _findings(results) if f.rule.startswith("PTH")]
    assert all(c.path is None for r in results for c in r.conversations)
    assert all("no-peer-match" in {w.code for w in r.warnings} for r in results)


def test_identical_requests_matched_by_payload_alone_are_flagged():
    # Both samples start with the same health-check exchange (same bytes, other ports and ISNs):
    # a likeness, not proof, and the report says so.
    results = analyze_pair(_sample("pth002-syn-dropped")[0], _sample("pth005-idle-dropped")[1], _rules())
    assert {v.matched_by for v in _path_of(results).values() if v.peer_conversation} == {"payload"}
    assert all("peer-match-by-payload" in {w.code for w in r.warnings} for r in results)


def test_html_and_markdown_draw_both_points(tmp_path):
    client, server = _sample("pth004-refused-in-path")
    html, md = tmp_path / "r.html", tmp_path / "r.md"
    argv = ["analyze", client, "--peer", server, "--select", "PTH", "--no-progress"]
    assert main([*argv, "--format", "html", "-o", str(html)]) == 1
    page = html.read_text()
    assert "Packet ladder at both capture points" in page
    assert "1: pth004-refused-in-path-client.pcap" in page and "2: pth004-refused-in-path-server.pcap" in page
    assert page.count("✕") == 1 and page.count("✱") == 1  # the SYN vanished, the RST appeared, in between
    assert "<script" not in page
    assert main([*argv, "--format", "markdown", "-o", str(md)]) == 1
    text = md.read_text()
    assert "Packet ladder at both capture points" in text and "LOST between the points" in text


def _same_segment(src: str, dest: Path, ttl_of: dict[str, int]) -> str:
    """A copy of a capture whose TTLs are rewritten per source address, as if no router stood between."""
    with open(src, "rb") as fin, open(dest, "wb") as fout:
        reader = dpkt.pcap.Reader(fin)
        writer = dpkt.pcap.Writer(fout, linktype=reader.datalink())
        for ts, buf in reader:
            eth = dpkt.ethernet.Ethernet(buf)
            ip = eth.data
            if isinstance(ip, dpkt.ip.IP):
                ip.ttl = ttl_of.get(".".join(str(b) for b in ip.src), ip.ttl)
                ip.sum = 0  # dpkt computes the header checksum again when packing
            writer.writepkt(bytes(eth), ts=ts)
    return str(dest)


def test_points_ordered_by_handshake_timing_when_no_ttl_is_lost(tmp_path):
    client, server = _sample("pth001-rst-injected")
    # The server's capture as if taken on the client's segment: the same TTLs as at the client.
    flat = _same_segment(server, tmp_path / "server.pcap", {"192.0.2.10": 64, "198.51.100.20": 127})
    results = analyze_pair(flat, client, _rules())  # given in the "wrong" order on purpose
    views = list(_path_of(results).values())
    assert views and all(v.here_near == "server" and v.hops_between == 0 for v in views)
    assert all(v.order_basis.startswith("handshake timing") for v in views)
    assert "PTH001" in {f.rule for f in _findings(results)}


def test_filter_by_client_address_finds_the_natted_half(capsys):
    client, server = _sample("pth001-nat-rst-injected")
    argv = ["analyze", client, "--peer", server, "--filter", "host 192.0.2.10 and port 80", "--format", "json"]
    assert main([*argv, "--no-progress"]) == 1
    doc = json.loads(capsys.readouterr().out)
    near, far = doc["captures"]
    assert [c["path"]["matched_by"] for c in near["conversations"]] == ["isn"]
    assert [c["client"].split(":")[0] for c in far["conversations"]] == ["198.51.100.1"]
    assert [f["rule"] for f in near["findings"] if f["rule"].startswith("PTH")] == ["PTH001"]


def test_segmentation_offload_is_not_loss():
    # Each host's tcpdump records its own stack's segments (TSO/GSO up to 7240 bytes here), which
    # the router cuts into 1448-byte ones: bytes cut differently at the two points still passed.
    results = _pair(*_sample("pth-healthy-offload"))
    (view,) = _path_of(results).values()
    assert view.count("lost") == 0 and view.count("injected") == 0
    assert any(f.near is not None and f.near.plen == 7240 and f.far is None for f in view.packets)
    assert any(c.startswith("cut into other segments") for c in view.changes)
    assert not _findings(results)
