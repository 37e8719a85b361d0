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
    # each pair holds conversations matched by proof: its findings keep their rule's confidence
    assert all(f.confidence == "high" and "not proof" not in f.message for f in _findings(results) if f.rule in fired)


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
    assert [(e.operation, e.winsock.name) for e in f.errors] == [("connect", "WSAETIMEDOUT")]  # not recv
    refused = _pair(*_sample("pth004-refused-in-path"))
    (f,) = [f for f in _findings(refused) if f.rule == "PTH004"]
    assert [e.winsock.name for e in f.errors] == ["WSAECONNREFUSED"]
    assert "never reached the server's side" in f.message


def test_silent_drop_of_data_in_the_path():
    # The router dropped the client's second request mid-connection: it and every retransmission
    # left the client's point and never reached the server's; the client's receive timed out.
    results = _pair(*_sample("pth002-data-dropped"))
    (f,) = [f for f in _findings(results) if f.rule == "PTH002"]
    view = _path_of(results)[f.conversation]
    lost = [p for p in view.packets if p.fate == "lost"]
    assert len(lost) > 1 and all(p.dir == 0 and p.packet.plen == lost[0].packet.plen > 0 for p in lost)
    assert view.peer_conversation and view.count("injected") == 0
    assert f"{lost[0].packet.plen} bytes) and every later one left this capture point" in f.message
    assert [(e.operation, e.winsock.name) for e in f.errors] == [("recv", "WSAETIMEDOUT")]


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


def _fate_row(f) -> tuple:
    return (f.dir, f.fate, f.near and f.near.frame, f.far and f.far.frame, round(f.delay, 6))


def _by_capture(results) -> dict[str, object]:
    """Per capture file: its findings and the path of each conversation, as a user reads them."""
    out = {}
    for r in results:
        views = {
            c.id: (
                c.path.here_near,
                c.path.matched_by,
                c.path.peer_conversation,
                round(c.path.clock.offset, 6),
                round(c.path.clock.uncertainty, 6),
                c.path.changes,
                [_fate_row(f) for f in c.path.packets],
            )
            for c in r.conversations
            if c.path is not None
        }
        out[Path(r.path).name] = (sorted((f.rule, f.conversation, f.message) for f in r.findings), views)
    return out


@pytest.mark.parametrize("sidecar", PAIRS, ids=lambda p: p.stem.removesuffix("-client"))
def test_either_capture_first_gives_the_same_answer(sidecar: Path):
    # Which file is given first is the user's accident: the fates, delays, clock and findings of
    # each capture must not move with it (the server's capture first once flipped the offset's
    # direction and turned a proxy into "sequence numbers rewritten", with negative delays).
    client, server = _pair_paths(sidecar)
    assert _by_capture(analyze_pair(server, client, _rules())) == _by_capture(_pair(client, server))


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


@pytest.mark.parametrize("seconds", [300.0, -300.5])
@pytest.mark.parametrize("name", ["pth001-nat-rst-injected", "pth003-mtu-blackhole", "pth-relay-identical"])
@pytest.mark.parametrize("first", ["client", "server"])
def test_clock_offset_within_a_millisecond_whichever_capture_comes_first(tmp_path, name, seconds, first):
    client, server = _sample(name)
    shifted = _shifted(server, tmp_path / "server.pcap", seconds)
    results = analyze_pair(client, shifted, _rules()) if first == "client" else analyze_pair(shifted, client, _rules())
    at_client, at_server = (results[0], results[1]) if first == "client" else (results[1], results[0])
    views = [c.path for c in at_client.conversations if c.path is not None and c.path.peer_conversation]
    assert views
    for view in views:  # the server's clock minus the client's, however the files were given
        assert view.here_near == "client"
        assert abs(view.clock.offset - seconds) < 0.001
        assert 0 <= view.clock.uncertainty < 0.001
    for conv in at_server.conversations:
        if conv.path is not None and conv.path.peer_conversation:
            assert abs(conv.path.clock.offset + seconds) < 0.001


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


def test_identical_requests_matched_by_payload_alone_are_flagged(tmp_path):
    # The NATed healthy exchange with its ISNs renumbered in between: only the payload bytes tell
    # that both captures hold it, a likeness, not proof, and the report says so.
    client, server = _sample("pth-nat-healthy")
    renumbered = _renumbered_headers_only(server, tmp_path / "s.pcap", (123456, 7654321), whole=True)
    results = analyze_pair(client, renumbered, _rules())
    assert {v.matched_by for v in _path_of(results).values() if v.peer_conversation} == {"payload"}
    assert all("peer-match-by-payload" in {w.code for w in r.warnings} for r in results)


def test_alike_requests_of_two_incidents_are_no_match():
    # Both samples start with the same health-check exchange (same bytes, other ports and ISNs),
    # captured minutes apart: the packets cannot agree on one clock offset, so the likeness is not
    # taken for one conversation seen twice, and nothing is said about a path.
    results = analyze_pair(_sample("pth002-syn-dropped")[0], _sample("pth005-idle-dropped")[1], _rules())
    assert all(c.path is None for r in results for c in r.conversations)
    assert all("no-peer-match" in {w.code for w in r.warnings} for r in results)
    assert not [f for f in _findings(results) if f.rule.startswith("PTH")]


def test_captures_of_two_different_incidents_are_flagged_as_a_guess():
    # The client's capture of the injected RST, the server's capture of the MTU black hole: alike
    # in their health check and their port-80 request, nothing else. Some conversations match by
    # payload, some by lengths and timing, none by address or sequence number: the report warns,
    # and whatever two-capture finding comes of it is low confidence and says why.
    # When their packets cannot agree on one clock offset, it is no match at all.
    results = analyze_pair(_sample("pth001-rst-injected")[0], _sample("pth003-mtu-blackhole")[1], _rules())
    kinds = {c.path.matched_by for r in results for c in r.conversations if c.path is not None}
    assert not kinds & {"5-tuple", "isn"}
    for r in results:
        codes = {"peer-match-guessed", "peer-match-by-payload", "peer-match-by-lengths", "no-peer-match"}
        assert codes & {w.code for w in r.warnings}
    path_findings = [f for f in _findings(results) if f.rule.startswith("PTH")]
    assert all(f.confidence == "low" and "not proof" in f.message for f in path_findings)


def test_two_incidents_a_day_apart_give_no_error(tmp_path):
    # The server's capture of another incident, its clock a day off: the conversations alike in
    # their health check and request cannot agree on one offset: no match, no error-level finding
    # from the path.
    shifted = _shifted(_sample("pth005-idle-dropped")[1], tmp_path / "p5day.pcap", 86400.0)
    results = analyze_pair(_sample("pth001-rst-injected")[0], shifted, _rules())
    assert all("no-peer-match" in {w.code for w in r.warnings} for r in results)
    assert not [f for f in _findings(results) if f.rule.startswith("PTH")]


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
    # the marks a reader follows: the SYN ends at X between the points, the RST starts at * there
    assert "|-------------o------X      :             |  SYN seq=0 len=0 LOST between the points" in text
    assert "|<------------o------*      :             |  RST,ACK seq=0 len=0 INJECTED between the points" in text


def test_text_report_says_how_the_points_were_ordered(capsys, tmp_path):
    client, server = _sample("pth001-rst-injected")
    assert main(["analyze", client, "--peer", server, "--no-progress"]) == 1
    assert "order of the points: TTL: the client's packets lose TTL" in capsys.readouterr().out
    flat = _same_segment(server, tmp_path / "server.pcap", {"192.0.2.10": 64, "198.51.100.20": 127})
    assert main(["analyze", flat, "--peer", client, "--no-progress"]) == 1
    assert "order of the points: handshake timing" in capsys.readouterr().out


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


def test_segmentation_offload_is_not_loss(capsys):
    # Each host's tcpdump records its own stack's segments (TSO/GSO up to 7240 bytes here), which
    # the router cuts into 1448-byte ones: bytes cut differently at the two points still passed.
    results = _pair(*_sample("pth-healthy-offload"))
    (view,) = _path_of(results).values()
    assert view.count("lost") == 0 and view.count("injected") == 0
    assert any(f.near is not None and f.near.plen == 7240 and f.far is None for f in view.packets)
    assert any(c.startswith("cut into other segments") for c in view.changes)
    assert not _findings(results)
    # The seen count holds each point's recut segments apart: the report says how many, so that a
    # count above either capture's packets reads right.
    one_point = [f for f in view.packets if f.fate == "seen" and (f.near is None or f.far is None)]
    assert view.recut() == len(one_point) > 0
    client, server = _sample("pth-healthy-offload")
    assert main(["analyze", client, "--peer", server, "--no-progress"]) == 0
    out = capsys.readouterr().out
    here = sum(1 for f in one_point if f.near is not None)
    both = view.count("seen") - len(one_point)
    assert f"{both} seen at both points, {len(one_point)} segments recorded at one point only" in out
    assert f"({here} here, {len(one_point) - here} there)" in out
    # the numbers add up to the packets this capture holds of the conversation
    (conv,) = [c for c in results[0].conversations if c.path is view]
    assert both + here == conv.last_frame - conv.first_frame + 1
    assert "segmented otherwise: cut into other segments" in out and "changed in between: cut" not in out


# -- a proxy that terminates the connection: matched by payload lengths and timing ----------------


def _relayed(results, index: int = 0):
    """(conversation, its path) of one capture, for the conversations the proxy on the router carried."""
    port = 8080 if index == 0 else 80
    return [(c, c.path) for c in results[index].conversations if port <= c.server.port <= port + 2]


def test_proxy_legs_matched_by_lengths_and_timing():
    # Six conversations through a reverse proxy, all opening with the same request and answer: the
    # four alike in every length are told apart by time, the two at once by a later message's length.
    results = _pair(*_sample("pth-relay-identical"))
    assert not _findings(results)
    legs = _relayed(results)
    assert len(legs) == 6
    far = {c.id: c for c in results[1].conversations}
    for conv, view in legs:
        assert view.matched_by == "lengths+timing"
        twin = far[view.peer_conversation]
        assert twin.server.port == conv.server.port - 8000  # the proxy forwards 8080+k to 80+k
        assert 0 <= twin.start - conv.start < 0.2  # the proxy's leg opens when the client connects
        assert view.count("lost") == 0 and view.count("injected") == 0 and view.count("proxied") > 0
        assert view.changes[0].startswith("connection terminated between the points")
    assert len({view.peer_conversation for _, view in legs}) == 6
    assert abs(legs[0][1].clock.offset) < 0.001  # one kernel clock for both tcpdumps
    assert all("peer-match-by-lengths" in {w.code for w in r.warnings} for r in results)


def test_alike_in_lengths_but_seconds_apart_is_not_a_match():
    # The proxy's own health check (server capture only) and the router's cached answer (client
    # capture only) carry the same request and answer lengths, five seconds apart: no pair.
    results = _pair(*_sample("pth-relay-identical"))
    (cached,) = [c for c in results[0].conversations if c.server.port == 8090]
    (probe,) = [c for c in results[1].conversations if c.path.peer_conversation == 0]
    assert cached.path.peer_conversation == 0 and cached.path.matched_by == ""
    assert probe.server.port == 80 and abs(probe.start - cached.start) > 4
    # alike: the same bytes each way (and so the same turn lengths)
    assert (probe.client_stats.bytes, probe.server_stats.bytes) == (
        cached.client_stats.bytes,
        cached.server_stats.bytes,
    )


def _without_port(src: str, dest: Path, port: int) -> str:
    """A copy of a capture without one TCP port's packets, as if taken with a narrower filter."""
    with open(src, "rb") as fin, open(dest, "wb") as fout:
        reader = dpkt.pcap.Reader(fin)
        writer = dpkt.pcap.Writer(fout, linktype=reader.datalink())
        for ts, buf in reader:
            tcp = getattr(dpkt.ethernet.Ethernet(buf).data, "data", None)
            if not (isinstance(tcp, dpkt.tcp.TCP) and port in (tcp.sport, tcp.dport)):
                writer.writepkt(buf, ts=ts)
    return str(dest)


def test_alike_in_time_but_not_in_lengths_is_not_a_match(tmp_path):
    # The client's leg of the 700-byte conversation without its server leg, and the server's leg of
    # the 100-byte one (20 ms apart, the same first request and answer) without its client leg:
    # the two are alike in time and first bytes, not in lengths, and must stay apart.
    client, server = _sample("pth-relay-identical")
    near = _without_port(client, tmp_path / "client.pcap", 8081)
    far = _without_port(server, tmp_path / "server.pcap", 82)
    results = analyze_pair(near, far, _rules())
    legs = {c.server.port: v for c, v in _relayed(results)}
    assert 8081 not in legs and legs[8082].peer_conversation == 0
    # the proxy in between answered it, and its leg toward the server is not in the server's capture
    assert legs[8082].count("answered") > 0 and legs[8082].count("lost") == 0
    (lone,) = [c for c in results[1].conversations if c.server.port == 81]
    assert lone.path.peer_conversation == 0
    assert [v.matched_by for _, v in _relayed(results) if v.peer_conversation] == ["lengths+timing"] * 4


@pytest.mark.parametrize("seconds", [300.0, -45.5])
def test_proxy_legs_matched_when_the_clocks_disagree(tmp_path, seconds):
    # No address, sequence number or unique payload agrees: the offset is the shift most alike
    # conversations agree on, and the identical ones are still paired by time.
    client, server = _sample("pth-relay-identical")
    shifted = analyze_pair(client, _shifted(server, tmp_path / "server.pcap", seconds), _rules())
    plain = _pair(client, server)
    assert [v.peer_conversation for _, v in _relayed(shifted)] == [v.peer_conversation for _, v in _relayed(plain)]
    assert all(abs(v.clock.offset - seconds) < 0.001 for _, v in _relayed(shifted))


def test_json_path_says_how_each_pair_was_matched(capsys):
    client, server = _sample("pth-relay-identical")
    assert main(["analyze", client, "--peer", server, "--format", "json", "--no-progress"]) == 0
    doc = json.loads(capsys.readouterr().out)
    how = {c["server"]: c["path"]["matched_by"] for c in doc["captures"][0]["conversations"]}
    assert set(how.values()) == {"lengths+timing", ""}
    assert how["192.0.2.1:8090"] == ""
    path = doc["captures"][0]["conversations"][0]["path"]
    assert path["fates"]["proxied"] > 0 and path["hops_between"] is None


# -- ICMP errors between the points ----------------------------------------------------------------


def _icmp_fates(view):
    return [f for f in view.packets if f.packet.icmp is not None]


def test_icmp_error_sent_by_the_router_between_the_points():
    results = _pair(*_sample("pth006-icmp-rejected"))
    found = {f.rule: f for f in results[0].findings if f.rule.startswith("PTH")}
    assert sorted(found) == ["PTH006", "PTH007"]
    assert not [f for f in results[1].findings]  # the server saw neither the SYN nor the datagram
    for rule, quoted in (("PTH006", "SYN"), ("PTH007", "datagram")):
        f = found[rule]
        assert f"'s {quoted} (frame" in f.message and "never reached" in f.message
        assert "from 192.0.2.1, never passed" in f.message and "1 router apart" in f.message
        view = _path_of(results)[f.conversation]
        assert view.peer_conversation == 0
        errors = _icmp_fates(view)
        assert errors and all(e.fate == "injected" for e in errors)
        assert all(e.origin.startswith("originated between the points: sent by 192.0.2.1") for e in errors)
        sent = [p for p in view.packets if p.packet.icmp is None]
        assert sent and all(p.fate == "lost" and p.dir == 0 for p in sent)
    assert [e.winsock.name for e in found["PTH006"].errors] == ["WSAEHOSTUNREACH"]
    assert found["PTH006"].also and found["PTH006"].also[0].rule == "CON003"


def test_icmp_error_from_the_server_is_seen_at_both_points(capsys):
    client, server = _sample("pth-udp-closed-port")
    results = _pair(client, server)
    assert not [f for f in _findings(results) if f.rule.startswith("PTH")]
    # one datagram, one failure: reported once, at the client's point (whose recvfrom fails), with
    # the server capture's frames as more evidence
    assert [f.rule for f in results[0].findings] == ["UDP001"] and results[1].findings == []
    assert "pth-udp-closed-port-server.pcap shows it too (conversation" in results[0].findings[0].message
    (error,) = _icmp_fates(_path_of(results)[results[0].findings[0].conversation])
    assert error.fate == "seen" and error.near is not None and error.far is not None
    assert error.origin == "sent by the server itself (198.51.100.20), seen at both points"
    assert main(["analyze", client, "--peer", server, "--format", "json", "--no-progress"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["summary"]["errors"] == 1 and len(doc["incidents"]) == 1
    packets = [p for c in doc["captures"][0]["conversations"] for p in c["path"]["packets"] if "icmp" in p]
    assert [(p["fate"], p["icmp"]["name"], p["icmp"]["from"]) for p in packets] == [
        ("seen", "ICMP port-unreachable", "198.51.100.20")
    ]


def test_text_report_says_the_icmp_error_came_from_between_the_points(capsys):
    client, server = _sample("pth006-icmp-rejected")
    assert main(["analyze", client, "--peer", server, "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "|<------------o------*      :             |  ICMP port-unreachable from 192.0.2.1 ORIGINATED between" in out
    assert "it answers the client's packet (frame 15), which never reached the server-side point" in out


# -- reports: conversations without findings -------------------------------------------------------


def test_healthy_nat_pair_drawn_with_its_translation_in_markdown_and_html(tmp_path):
    client, server = _sample("pth-nat-healthy")
    html, md = tmp_path / "r.html", tmp_path / "r.md"
    argv = ["analyze", client, "--peer", server, "--no-progress"]
    assert main([*argv, "--format", "markdown", "-o", str(md)]) == 0
    text = md.read_text()
    assert text.count("### Paths without findings") == 2  # one per capture
    assert "(address/port translated)" in text and "MSS 1460 -> 1200 (clamped)" in text
    assert "|-------------o-------------o------------>|  SYN seq=0 len=0" in text
    assert main([*argv, "--format", "html", "-o", str(html)]) == 0
    page = html.read_text()
    assert page.count("Packet ladder at both capture points, conversation 1") == 2
    assert "198.51.100.1:" in page and "(address/port translated)" in page and "<script" not in page


def test_healthy_ladders_are_bounded(tmp_path, monkeypatch):
    import analyzer.report.path as report_path

    monkeypatch.setattr(report_path, "HEALTHY_LADDERS", 2)
    client, server = _sample("pth-relay-identical")  # 7 conversations without findings in each capture
    for fmt in ("markdown", "html", "text"):
        out = tmp_path / f"r.{fmt}"
        assert main(["analyze", client, "--peer", server, "--no-progress", "--format", fmt, "-o", str(out)]) == 0
        page = out.read_text()
        assert page.count("and 5 more conversations without findings whose path is not drawn") == 2, fmt
    assert page.count("(its own leg: a proxy in between)") > 0


def _outside_fences(markdown: str) -> str:
    return "".join(part for i, part in enumerate(markdown.split("```")) if i % 2 == 0)


def test_capture_names_cannot_inject_markup_into_path_reports(tmp_path):
    import shutil

    client, server = _sample("pth-nat-healthy")
    evil = tmp_path / "<img src=x onerror=alert(1)>.pcap"
    shutil.copy(server, evil)
    html, md = tmp_path / "r.html", tmp_path / "r.md"
    argv = ["analyze", client, "--peer", str(evil), "--no-progress"]
    assert main([*argv, "--format", "html", "-o", str(html)]) == 0
    page = html.read_text()
    assert "<img" not in page and "&lt;img src=x onerror=alert(1)&gt;.pcap" in page
    assert main([*argv, "--format", "markdown", "-o", str(md)]) == 0
    assert "<img" not in _outside_fences(md.read_text())


def _renumbered_headers_only(src: str, dest: Path, shift: tuple[int, int], whole: bool = False) -> str:
    """A copy of a capture as a firewall that renumbers TCP sequence numbers would leave it (each
    direction's numbers moved by its own constant, the acknowledgements with them), taken with a
    snap length that keeps only the headers (tcpdump -s 96): no payload byte to compare; whole:
    with the payload kept."""
    client = bytes([192, 0, 2, 10]), bytes([198, 51, 100, 1])  # the client's address before and after the NAT
    with open(src, "rb") as fin, open(dest, "wb") as fout:
        reader = dpkt.pcap.Reader(fin)
        writer = dpkt.pcap.Writer(fout, linktype=reader.datalink(), snaplen=96)
        for ts, buf in reader:
            eth = dpkt.ethernet.Ethernet(buf)
            ip, tcp = eth.data, eth.data.data
            if isinstance(tcp, dpkt.tcp.TCP):
                mine, theirs = shift if ip.src in client else shift[::-1]
                tcp.seq = (tcp.seq + mine) & 0xFFFFFFFF
                if tcp.flags & dpkt.tcp.TH_ACK:
                    tcp.ack = (tcp.ack + theirs) & 0xFFFFFFFF
                tcp.sum = 0
            frame = bytes(eth)
            head = 14 + ip.hl * 4 + (tcp.off * 4 if isinstance(tcp, dpkt.tcp.TCP) else 8)
            writer.writepkt(frame if whole else frame[:head], ts=ts)
    return str(dest)


def test_sequence_numbers_renumbered_in_between_is_not_taken_for_a_proxy(tmp_path):
    # The NATed healthy exchange, its server capture as if a firewall had renumbered both ISNs and
    # the capture kept headers only: neither addresses, ISNs nor payload bytes agree, the lengths and
    # times do. Every packet was forwarded (the SYN/ACK passed the server's point first): no proxy.
    client, server = _sample("pth-nat-healthy")
    results = analyze_pair(client, _renumbered_headers_only(server, tmp_path / "s.pcap", (123456, 7654321)), _rules())
    (view,) = _path_of(results).values()
    assert view.matched_by == "lengths+timing"
    assert "sequence numbers rewritten in between" in view.changes[0]
    assert view.count("proxied") == 0 and view.count("lost") == 0 and view.count("injected") == 0
    assert not _findings(results)


# -- what the other capture did not cover ----------------------------------------------------------


def _frames(
    src: str, dest: Path, first: int = 1, last: int | None = None, pcapng: bool = False, drop: range = range(0)
) -> str:
    """A copy of a capture with frames first..last only (1-based, as editcap -r counts) but those in
    `drop`, as pcap or pcapng."""
    with open(src, "rb") as fin, open(dest, "wb") as fout:
        reader = dpkt.pcap.Reader(fin)
        writer_type = dpkt.pcapng.Writer if pcapng else dpkt.pcap.Writer
        writer = writer_type(fout, linktype=reader.datalink())
        for n, (ts, buf) in enumerate(reader, 1):
            if first <= n and (last is None or n <= last) and n not in drop:
                writer.writepkt(buf, ts=ts)
    return str(dest)


def _head(src: str, dest: Path, size: int) -> str:
    """The first `size` bytes of a file, as `head -c` leaves a capture copied off a host that went down."""
    dest.write_bytes(Path(src).read_bytes()[:size])
    return str(dest)


def _bad_record_length(src: str, dest: Path, frame: int) -> str:
    """A pcap whose record `frame` claims an impossible captured length (a damaged file)."""
    data = bytearray(Path(src).read_bytes())
    at = 24
    for _ in range(frame - 1):
        at += 16 + int.from_bytes(data[at + 8 : at + 12], "little")
    data[at + 8 : at + 12] = (0x7FFFFFFF).to_bytes(4, "little")
    dest.write_bytes(bytes(data))
    return str(dest)


def _path_claims(results) -> list[tuple[str, str]]:
    """(capture, fate) of every packet said lost or injected, and the two-capture findings."""
    claims = [
        (Path(r.path).name, f.fate)
        for r in results
        for c in r.conversations
        if c.path is not None
        for f in c.path.packets
        if f.fate in ("lost", "injected")
    ]
    return claims + [(Path(r.path).name, f.rule) for r in results for f in r.findings if f.rule.startswith("PTH")]


@pytest.mark.parametrize(
    "cut",
    ["stopped-after-10-frames", "pcapng-stopped-after-10-frames", "head-1000-bytes", "pcapng-head-1500-bytes",
     "bad-record-length-at-12"],
)  # fmt: skip
def test_peer_capture_that_ended_early_claims_nothing_after_its_end(tmp_path, cut):
    # The server's capture ends (stopped, cut off, damaged) after the healthy exchange, before the
    # request the router rejected: what the client saw after that is not lost or injected, unknown.
    client, server = _sample("pth001-rst-injected")
    if cut.startswith(("stopped", "pcapng-stopped")):
        peer = _frames(server, tmp_path / "s.pcap", last=10, pcapng=cut.startswith("pcapng"))
    elif cut == "head-1000-bytes":
        peer = _head(server, tmp_path / "s.pcap", 1000)
    elif cut == "pcapng-head-1500-bytes":
        peer = _head(_frames(server, tmp_path / "full.pcapng", pcapng=True), tmp_path / "s.pcapng", 1500)
    else:
        peer = _bad_record_length(server, tmp_path / "s.pcap", 12)
    results = analyze_pair(client, peer, _rules())
    assert all(r.error is None for r in results)
    assert _path_claims(results) == []
    (late,) = [c for c in results[0].conversations if c.server.port == 80]
    assert late.path is not None and late.path.count("unknown") > 0
    assert {f.fate for f in late.path.packets} <= {"seen", "unknown"}
    damaged = cut.startswith(("head", "pcapng-head", "bad"))
    assert ("peer-cut-short" in {w.code for w in results[0].warnings}) == damaged
    assert bool(late.path.peer_damage) == damaged  # said in the path section too


def test_truncated_primary_capture_claims_nothing_after_its_end(tmp_path):
    # The client's capture cut off inside the healthy NATed exchange: the server's packets after
    # the cut are unknown to it, not lost or injected, and the server's view says so too.
    client, server = _sample("pth-nat-healthy")
    results = analyze_pair(_head(client, tmp_path / "c.pcap", 1000), server, _rules())
    assert _path_claims(results) == []
    (view,) = [c.path for c in results[1].conversations if c.path is not None and c.path.peer_conversation]
    assert view.count("unknown") > 0 and view.count("seen") + view.count("changed") > 0
    assert "peer-cut-short" in {w.code for w in results[1].warnings}


def test_packets_before_the_peer_capture_began_are_unknown(tmp_path):
    # The server's capture begins with the first request (frame 14): the handshake before it, a few
    # milliseconds earlier, cannot be said lost, the clock being known to microseconds. The request
    # the router rejected and its RST came while both captures ran: those stay lost and injected.
    client, server = _sample("pth001-rst-injected")
    results = analyze_pair(client, _frames(server, tmp_path / "s.pcap", first=14), _rules())
    (conv,) = [c for c in results[0].conversations if c.server.port == 80]
    view = conv.path
    start = min(f.far.ts for f in view.packets if f.far is not None) - view.clock.offset
    before = [f for f in view.packets if f.far is None and f.ts < start]
    assert [f.packet.flags & 0x12 for f in before] == [0x02, 0x12, 0x10][: len(before)] and before
    assert {f.fate for f in before} == {"unknown"}
    assert [(f.dir, f.fate) for f in view.packets if f.fate in ("lost", "injected")] == [(0, "lost"), (1, "injected")]


# -- a capture that began after the handshake ----------------------------------------------------


def _first_request(src: str, port: int) -> int:
    """The frame number of the first segment carrying data to `port`: a capture started there has
    no handshake for that conversation."""
    with open(src, "rb") as fin:
        for n, (_, buf) in enumerate(dpkt.pcap.Reader(fin), 1):
            tcp = getattr(dpkt.ethernet.Ethernet(buf).data, "data", None)
            if isinstance(tcp, dpkt.tcp.TCP) and tcp.dport == port and tcp.data:
                return n
    raise AssertionError(f"no request to port {port} in {src}")


@pytest.mark.parametrize(
    ("name", "late", "rule"),
    [
        ("pth005-idle-dropped", "client", "PTH005"),
        ("pth001-rst-injected", "client", "PTH001"),
        ("pth001-rst-injected", "server", "PTH001"),
    ],
)
def test_capture_begun_after_the_handshake_is_matched_by_its_5_tuple(tmp_path, name, late, rule):
    # One capture starts at the first request: its conversation has no SYN and so no ISN to compare,
    # but its addresses and ports are the other capture's, at the same time: the same conversation.
    client, server = _sample(name)
    src = client if late == "client" else server
    cut = _frames(src, tmp_path / f"{late}.pcap", first=_first_request(src, 80))
    results = analyze_pair(cut, server, _rules()) if late == "client" else analyze_pair(client, cut, _rules())
    (f,) = [f for f in _findings(results) if f.rule.startswith("PTH")]
    assert f.rule == rule and f.confidence == "high"
    conv = next(c for r in results for c in r.conversations if c.id == f.conversation and c.path is not None)
    assert conv.path.matched_by == "5-tuple"
    assert not any(w.code.startswith("peer-match") for r in results for w in r.warnings)


def _port_moved(src: str, dest: Path, port: int, seconds: float) -> str:
    """A copy of a capture with one TCP port's packets `seconds` later, in time order: as if that
    5-tuple were a later connection reusing the port."""
    with open(src, "rb") as fin:
        reader = dpkt.pcap.Reader(fin)
        linktype, records = reader.datalink(), []
        for ts, buf in reader:
            tcp = getattr(dpkt.ethernet.Ethernet(buf).data, "data", None)
            moved = isinstance(tcp, dpkt.tcp.TCP) and port in (tcp.sport, tcp.dport)
            records.append((ts + seconds if moved else ts, buf))
    with open(dest, "wb") as fout:
        writer = dpkt.pcap.Writer(fout, linktype=linktype)
        for ts, buf in sorted(records, key=lambda r: r[0]):
            writer.writepkt(buf, ts=ts)
    return str(dest)


def test_one_5_tuple_at_other_times_is_not_paired(tmp_path):
    # The client's capture from its first request on (no SYN), the server's with that 5-tuple's
    # conversation ten seconds later (a reused port) while the health check, matched by proof, sets
    # the clocks equal: one 5-tuple, but not one conversation.
    client, server = _sample("pth005-idle-dropped")
    request = _first_request(client, 80)
    near = _frames(client, tmp_path / "c.pcap", drop=range(request - 3, request))  # without its handshake
    far = _port_moved(server, tmp_path / "s.pcap", 80, 10.0)
    results = analyze_pair(near, far, _rules())
    (conv,) = [c for c in results[0].conversations if c.server.port == 80]
    assert conv.path is not None and conv.path.matched_by != "5-tuple"


def test_jsonl_to_stdout_carries_the_pair_findings(capsys):
    client, server = _sample("pth001-rst-injected")
    assert main(["analyze", client, "--peer", server, "--format", "jsonl", "--no-progress"]) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    found = [(Path(x["capture"]).name, x["rule"]) for x in lines if x.get("kind") == "finding"]
    assert ("pth001-rst-injected-client.pcap", "PTH001") in found
    assert all(x.get("kind") for x in lines)
    # a finding line is readable alone: it carries its conversation's path, as the JSON report does
    (pth001,) = [x for x in lines if x.get("rule") == "PTH001"]
    assert pth001["path"]["fates"]["injected"] == 1 and pth001["path"]["peer_capture"] == Path(server).name


@pytest.mark.parametrize("spelling", ["same", "symlink"])
def test_the_same_capture_twice_is_refused_in_one_line(tmp_path, capsys, spelling):
    client = _sample("pth001-rst-injected")[0]
    peer = client
    if spelling == "symlink":
        peer = str(tmp_path / "server.pcap")
        Path(peer).symlink_to(client)
    assert main(["analyze", client, "--peer", peer, "--no-progress"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert err[0].startswith("error: --peer names the capture itself") and "Traceback" not in captured.err
    assert captured.out == ""


def test_a_byte_identical_copy_as_peer_is_warned(tmp_path):
    import shutil

    client = _sample("pth001-rst-injected")[0]
    copy = tmp_path / "server.pcap"
    shutil.copy(client, copy)
    results = analyze_pair(client, str(copy), _rules())
    assert all("peer-identical" in {w.code for w in r.warnings} for r in results)
    # an honest pair is not
    assert not any(w.code == "peer-identical" for r in _pair(*_sample("pth001-rst-injected")) for w in r.warnings)


@pytest.mark.parametrize("container", ["gzip", "pcapng"])
def test_the_same_packets_in_another_container_as_peer_are_warned(tmp_path, container):
    import gzip

    client = _sample("pth001-rst-injected")[0]
    if container == "gzip":
        copy = tmp_path / "server.pcap.gz"
        copy.write_bytes(gzip.compress(Path(client).read_bytes()))
    else:
        copy = Path(_frames(client, tmp_path / "server.pcapng", pcapng=True))
    assert copy.read_bytes() != Path(client).read_bytes()
    results = analyze_pair(client, str(copy), _rules())
    assert all("peer-identical" in {w.code for w in r.warnings} for r in results)
    # one packet less is another capture: not warned as the same
    fewer = _frames(client, tmp_path / "fewer.pcapng", 2, pcapng=True)
    assert not any(w.code == "peer-identical" for r in analyze_pair(client, fewer, _rules()) for w in r.warnings)


def test_a_conversation_answered_between_the_points_is_neither_lost_nor_injected(capsys):
    # The router's cache answered the client (client capture only) and the proxy checked the
    # server's health itself (server capture only): each conversation's other end is a device in
    # between, so nothing of it had to cross to the other point.
    client, server = _sample("pth-relay-identical")
    results = _pair(client, server)
    (cached,) = [c for c in results[0].conversations if c.server.port == 8090]
    (probe,) = [c for c in results[1].conversations if c.path is not None and c.path.peer_conversation == 0]
    for view in (cached.path, probe.path):
        assert view.count("lost") == view.count("injected") == 0
        assert view.count("answered") == len(view.packets) > 0
    assert main(["analyze", client, "--peer", server, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "|-------------o------#      :             |  SYN seq=0 len=0 ANSWERED between the points" in out
    assert "LOST" not in out and "INJECTED" not in out


def test_a_refusal_between_the_points_is_not_an_answer():
    # The router refusing the SYN with a RST is what PTH004 is about: still lost and injected.
    results = _pair(*_sample("pth004-refused-in-path"))
    (f,) = [f for f in _findings(results) if f.rule == "PTH004"]
    view = _path_of(results)[f.conversation]
    assert view.count("answered") == 0 and view.count("lost") == 1 and view.count("injected") == 1


# -- the clock estimate's promise, whatever the delays ----------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@functools.cache
def _real_times() -> list[tuple[int, float]]:
    """(direction, time) of every packet of the client capture of a pair, as its tcpdump stamped them."""
    from analyzer.peer.read import read_point

    packets, _ = read_point(_sample("pth001-rst-injected")[0])
    return [(0 if p.src.startswith("192.0.2.10:") else 1, p.ts) for p in packets]


@settings(max_examples=60, deadline=None)
@given(
    offset=st.floats(-7200, 7200),
    delays=st.lists(st.floats(0, 0.25), min_size=40, max_size=40),
    slow=st.sampled_from([0, 1]),
)
def test_clock_interval_holds_the_true_offset_whatever_the_delays(offset, delays, slow):
    # The packets' real times at one point; at the other, the same packets after a one-way delay that
    # varies packet by packet and is ten times longer one way (a queue, an asymmetric route). The
    # offset given is the middle of an interval, and the true offset lies in it: no median of the
    # differences keeps that promise once the delays are asymmetric.
    from analyzer.peer.clock import estimate

    pairs = []
    fastest = [float("inf"), float("inf")]
    for i, (d, ts) in enumerate(_real_times()):
        delay = delays[i % len(delays)] * (10 if d == slow else 1)
        fastest[d] = min(fastest[d], delay)
        pairs.append((d, ts, ts + offset + delay) if d == 0 else (d, ts + delay, ts + offset))
    clock = estimate(pairs)
    assert clock.basis == "bounded by packets in both directions"
    assert abs(clock.offset - offset) <= clock.uncertainty + 1e-6
    assert clock.uncertainty <= sum(fastest) / 2 + 1e-6  # as tight as the quickest packet each way allows


# -- traffic that never went toward the other point, and where unknown packets are drawn ----------


def _with_other_site(src: str, dest: Path, ttl: int = 50) -> str:
    """The capture plus a healthy conversation of its client with 203.0.113.5 (crafted with scapy,
    answers arriving with TTL `ttl`), as a real client capture holds traffic to other sites."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether

    with open(src, "rb") as fin:
        reader = dpkt.pcap.Reader(fin)
        frames = list(reader)
    start = frames[0][0] + 0.5
    c, s = ("192.0.2.10", 40400), ("203.0.113.5", 443)
    out, back = dict(src=c[0], dst=s[0], ttl=64), dict(src=s[0], dst=c[0], ttl=ttl)
    cs, ss = 1000, 5000
    crafted = [
        (out, TCP(sport=c[1], dport=s[1], flags="S", seq=cs)),
        (back, TCP(sport=s[1], dport=c[1], flags="SA", seq=ss, ack=cs + 1)),
        (out, TCP(sport=c[1], dport=s[1], flags="A", seq=cs + 1, ack=ss + 1)),
        (out, TCP(sport=c[1], dport=s[1], flags="PA", seq=cs + 1, ack=ss + 1) / (b"x" * 40)),
        (back, TCP(sport=s[1], dport=c[1], flags="PA", seq=ss + 1, ack=cs + 41) / (b"y" * 300)),
        (out, TCP(sport=c[1], dport=s[1], flags="FA", seq=cs + 41, ack=ss + 301)),
        (back, TCP(sport=s[1], dport=c[1], flags="FA", seq=ss + 301, ack=cs + 42)),
        (out, TCP(sport=c[1], dport=s[1], flags="A", seq=cs + 42, ack=ss + 302)),
    ]
    extra = [(start + i * 0.01, bytes(Ether() / IP(**ip) / tcp)) for i, (ip, tcp) in enumerate(crafted)]
    with open(dest, "wb") as fout:
        writer = dpkt.pcap.Writer(fout, linktype=1, nano=False)
        for ts, buf in sorted(frames + extra, key=lambda x: x[0]):
            writer.writepkt(buf, ts=ts)
    return str(dest)


def test_traffic_to_another_site_is_not_said_to_pass_the_other_point(tmp_path, capsys):
    # The client's capture holds a conversation with 203.0.113.5 (answers from 14 routers away);
    # the server's capture never saw that address: no claim that it was answered, lost or injected
    # between the points, and the pair's own diagnosis still stands.
    client, server = _sample("pth001-rst-injected")
    mixed = _with_other_site(client, tmp_path / "client.pcap")
    results = analyze_pair(mixed, server, _rules())
    other = [c for c in results[0].conversations if str(c.server).startswith("203.0.113.5")]
    for conv in other:
        assert conv.path is None or not conv.path.packets, conv.path
    assert "PTH001" in {f.rule for f in _findings(results)}
    assert main(["analyze", mixed, "--peer", server, "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "203.0.113.5" not in out

    # an address the server's capture saw is still one that passes it: the pair's own claims stay
    def claims(res):
        return sorted((i, what) for i, r in enumerate(res) for _, what in _path_claims([r]))

    assert claims(results) == claims(_pair(client, server))


def test_unknown_packets_are_drawn_at_the_point_that_saw_them(tmp_path, capsys):
    # The server's capture holds only the healthy request (frames 14-17): the client's SYN, SYN/ACK
    # and the RST it got later are unknown, each drawn at the client-side point, which saw them.
    from analyzer.report.ladder import svg_path_ladder

    client, server = _sample("pth001-rst-injected")
    late = _frames(server, tmp_path / "late-s.pcap", 14, 17)
    assert main(["analyze", client, "--peer", late, "--no-progress"]) == 1
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.rstrip().endswith("RST seq=867 len=0")]
    assert rows and all("|<------------o------?      :" in r for r in rows), rows
    results = analyze_pair(client, late, _rules())
    conv = next(c for c in results[0].conversations if c.path is not None and c.path.count("unknown"))
    ladder = svg_path_ladder(conv, None)
    assert ladder is not None
    unknown = [r for r in ladder.rows if r.kind == "packet" and r.frames.endswith("/ -")]
    assert unknown and all(r.seen_at == (420,) for r in unknown), unknown


# -- which point is nearer the client, when no packet was seen at both ------------------------------


def test_points_ordered_by_ttl_without_a_packet_seen_at_both(tmp_path):
    # The client's capture holds only its keep-alives and its RST (frames 18-21, the rest lost in
    # between): no packet was seen at both points, but the client's packets carry TTL 64 there and
    # 63 at the server. Either order of the arguments gives the same answer: all four lost on the
    # way, no RST injected in anyone's name.
    client, server = _sample("pth005-idle-dropped")
    ka = _frames(client, tmp_path / "ka.pcap", 18, 21)
    answers = []
    for first, second in ((ka, server), (server, ka)):
        results = analyze_pair(first, second, _rules())
        views = {Path(r.path).name: v for r in results for v in _path_of([r]).values() if v.peer_conversation}
        assert views["ka.pcap"].here_near == "client" and views["pth005-idle-dropped-server.pcap"].here_near == "server"
        assert all(v.order_basis.startswith("TTL") for v in views.values())
        assert views["ka.pcap"].count("lost", 0) == 4 and views["ka.pcap"].count("injected") == 0
        answers.append(sorted((Path(r.path).name, f.rule) for r in results for f in r.findings))
    assert answers[0] == answers[1] and "PTH001" not in {rule for _, rule in answers[0]}
    # the server's capture tells that the lost bare ACKs were keep-alive probes (one below the next
    # sequence number the client had used): the idle connection was dropped in between
    assert ("ka.pcap", "PTH005") in answers[0]


def test_order_only_assumed_gives_no_high_confidence_path_finding(tmp_path):
    # The same, with the client's TTL as the server saw it: nothing tells the order, the command
    # line is followed (the server's capture first: nearer the client), and the RST looks injected.
    # That rests on a guess: low confidence, and the message says so.
    client, server = _sample("pth005-idle-dropped")
    ka = _same_segment(_frames(client, tmp_path / "ka.pcap", 18, 21), tmp_path / "ka63.pcap", {"192.0.2.10": 63})
    results = analyze_pair(server, ka, _rules())
    views = [v for v in _path_of(results, 1).values()]
    assert views and all(v.order_basis.startswith("assumed") for v in views)
    path_findings = [f for f in _findings(results) if f.rule.startswith("PTH")]
    assert path_findings, "the guess still shows what it would mean"
    assert all(f.confidence == "low" and "only assumed" in f.message for f in path_findings)


def test_cli_peer_given_twice_is_refused_in_one_line(capsys):
    client, server = _sample("pth001-rst-injected")
    other = _sample("pth002-syn-dropped")[1]
    assert main(["analyze", client, "--peer", server, "--peer", other, "--no-progress"]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: --peer given twice") and "Traceback" not in captured.err
    assert captured.out == ""


def test_unknown_packets_say_when_the_peer_capture_ran(tmp_path, capsys):
    # The server's capture of port 80 only (tcpdump -w with the filter 'tcp port 80'): it ends,
    # cleanly, with the healthy exchange, before the request the router rejected. The client's two
    # later packets are unknown, and the report says why: the other capture had ended.
    client, server = _sample("pth001-rst-injected")
    port80 = tmp_path / "port80only.pcap"
    with open(server, "rb") as fin, open(port80, "wb") as fout:
        reader = dpkt.pcap.Reader(fin)
        writer = dpkt.pcap.Writer(fout, linktype=reader.datalink())
        for ts, buf in reader:
            tcp = dpkt.ethernet.Ethernet(buf).data.data
            if isinstance(tcp, dpkt.tcp.TCP) and 80 in (tcp.sport, tcp.dport):
                writer.writepkt(buf, ts=ts)
    main(["analyze", client, "--peer", str(port80), "--no-progress"])
    out = capsys.readouterr().out
    assert "2 unknown" in out
    assert "port80only.pcap covers " in out and "(it ends before frame 18 here)" in out


def test_a_filter_that_keeps_nothing_says_so(capsys):
    client, server = _sample("pth001-rst-injected")
    main(["analyze", client, "--peer", server, "--filter", "port 9999", "--no-progress"])
    out = capsys.readouterr().out
    assert "no-peer-match" in out and "the filter kept no TCP or UDP conversation" in out
    assert "different traffic" not in out


def test_server_section_points_to_the_finding_in_the_client_section(capsys):
    # The injected RST is reported once, with the client's capture; the server's capture shows the
    # same conversation's path among those without findings, and says where its finding went.
    client, server = _sample("pth001-rst-injected")
    assert main(["analyze", client, "--peer", server, "--no-progress"]) == 1
    out = capsys.readouterr().out
    server_part = out[out.index(f"{Path(server).name}: pcap") :]
    assert "findings on it are reported with pth001-rst-injected-client.pcap, conversation 2: PTH001" in server_part
    assert main(["analyze", client, "--peer", server, "--no-progress", "--format", "json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    paths = [c["path"] for cap in doc["captures"] for c in cap["conversations"] if c.get("path")]
    assert ["PTH001"] in [p["peer_findings"] for p in paths]
