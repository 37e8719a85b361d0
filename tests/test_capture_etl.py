"""Windows ETL input: pktmon and netsh trace files, against Microsoft's own conversion and generated files."""

from __future__ import annotations

import io
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.dot11 import Dot11
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import LLC, SNAP, Ether

from analyzer.capture import WARNING_CODES, open_capture
from analyzer.capture import etwfacts as W
from analyzer.decode import Decoder
from analyzer.errors import CaptureError
from scripts.samples_lib.etlwrite import EtlWriter
from tests.corpus import corpus_file

T0 = 1_700_000_000.0
ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def syn(sport: int, seq: int = 100) -> bytes:
    return bytes(ETH / IP(src="192.0.2.10", dst="192.0.2.20") / TCP(sport=sport, dport=1433, flags="S", seq=seq))


def frames_of(data: bytes, **kw):
    with open_capture(io.BytesIO(data), **kw) as cap:
        frames = list(cap)
        return cap, frames


# -- the oracle: Microsoft's own pcapng conversion of a real pktmon file -------------------------------


def test_pktmon_file_matches_microsofts_conversion_packet_for_packet() -> None:
    etl = corpus_file("pktmon/demikernel-PktMon.etl")
    with open_capture(corpus_file("pktmon/demikernel-PktMon.cap")) as ms_cap:
        ms = list(ms_cap)
    with open_capture(etl, appearances="all") as cap:
        ours = list(cap)
        assert cap.format == "etl-pktmon" and cap.warnings == [] and cap.linktypes == [1]
    assert len(ours) == len(ms) == 114
    for a, b in zip(ours, ms):
        assert a.data == b.data, f"frame {a.number}: bytes differ"
        assert abs(a.ts - b.ts) < 1e-6, f"frame {a.number}: {a.ts} != {b.ts}"
        assert a.wirelen == b.wirelen and a.linktype == b.linktype


def test_pktmon_file_gives_one_frame_per_packet_by_default() -> None:
    etl = corpus_file("pktmon/demikernel-PktMon.etl")
    with open_capture(corpus_file("pktmon/demikernel-PktMon.cap")) as ms_cap:
        ms = [(f.data, f.ts) for f in ms_cap]
    with open_capture(etl) as cap:
        ours = list(cap)
    # 114 appearances of 38 echo requests and replies, each logged by 2 to 4 components
    assert len(ours) == 38
    assert all(any(f.data == d and abs(f.ts - t) < 1e-6 for d, t in ms) for f in ours)
    assert [f.ts for f in ours] == sorted(f.ts for f in ours)
    echoes = [(f.data[34], f.data[40:42]) for f in ours]  # ICMP type and sequence number
    assert len(set(echoes)) == len(echoes), "a packet was kept twice"


# -- generated pktmon files ------------------------------------------------------------------------------


def pktmon_refusal(compress: bool = False, cpus: int = 2) -> bytes:
    w = EtlWriter(T0)
    w.pktmon_component(3, W.MINIPORT, "netvsc.sys", "Microsoft Hyper-V Network Adapter")
    w.pktmon_component(14, 3, "wfplwfs.sys", "WFP Native MAC Layer LightWeight Filter")
    w.pktmon_component(66, 11, "tcpip.sys", "TCP/IPv4 - L3/L4")
    for i in range(6):
        t = T0 + 0.5 * i
        frame = syn(50000 + i, seq=1000 + i)
        w.pktmon_packet(t, frame, group=10 + i, component=3, appearance=1)
        w.pktmon_packet(t + 1e-5, frame, group=10 + i, component=14, appearance=2)
        w.pktmon_drop(t + 2e-5, frame, group=10 + i, component=66, appearance=3, reason=1204 if i < 5 else 4242)
    return w.to_bytes(cpus=cpus, compress=compress)


def test_generated_pktmon_file_keeps_the_appearance_nearest_the_wire_in_time_order() -> None:
    cap, frames = frames_of(pktmon_refusal())
    assert cap.format == "etl-pktmon" and cap.warnings == []
    assert [f.data for f in frames] == [syn(50000 + i, seq=1000 + i) for i in range(6)]
    assert [round(f.ts - T0, 6) for f in frames] == [0.5 * i for i in range(6)]  # the miniport's time


def test_outbound_packets_keep_their_last_appearance() -> None:
    w = EtlWriter(T0)
    frame = syn(40000)
    for app, comp in ((1, 66), (2, 14), (3, 3)):
        w.pktmon_packet(T0 + app * 1e-3, frame, group=7, component=comp, appearance=app, direction="out")
    _, frames = frames_of(w.to_bytes())
    assert len(frames) == 1 and round(frames[0].ts - T0, 6) == 0.003


def test_drop_events_say_why_and_where_windows_dropped_the_packet() -> None:
    cap, frames = frames_of(pktmon_refusal())
    assert sorted(cap.drops) == [1, 2, 3, 4, 5, 6]
    d = cap.drops[1]
    assert d.reason == 1204 and d.reason_name == "INET_EndpointNotFound"
    assert d.component == "TCP/IPv4 - L3/L4 (tcpip.sys)" and d.component_kind == "tcpip" and d.driver == "tcpip.sys"
    assert d.direction == "in" and not d.by_filter
    assert cap.drops[6].reason_name == "4242"  # an unknown reason falls back to its number


def test_component_addresses_name_the_component_of_a_drop() -> None:
    w = EtlWriter(T0)
    w.pktmon_component(3, W.MINIPORT, "netvsc.sys", "Microsoft Hyper-V Network Adapter #3")
    w.pktmon_mac(3, "02:00:5e:10:00:50")
    w.pktmon_ipv4(3, "192.0.2.20")
    w.pktmon_drop(T0, syn(42000), group=1, component=3, reason=23, appearance=1)
    cap, _ = frames_of(w.to_bytes())
    d = cap.drops[1]
    assert d.component.startswith("Microsoft Hyper-V Network Adapter #3 (netvsc.sys, ")
    assert "02:00:5e:10:00:50" in d.component and "192.0.2.20" in d.component
    assert d.component_kind == "miniport" and d.reason_name == "MTUMismatch"


def test_a_drop_at_the_firewall_filter_names_the_filter() -> None:
    w = EtlWriter(T0)
    w.pktmon_component(14, 3, "wfplwfs.sys", "WFP Native MAC Layer LightWeight Filter")
    w.pktmon_drop(T0, syn(41000), group=1, component=14, reason=8, appearance=1)
    cap, frames = frames_of(w.to_bytes())
    assert len(frames) == 1, "a packet logged only by its drop event is still a packet"
    assert cap.drops[1].by_filter and cap.drops[1].reason_name == "Filtered"


def test_compressed_buffers_give_the_same_frames() -> None:
    _, plain = frames_of(pktmon_refusal(compress=False))
    cap, packed = frames_of(pktmon_refusal(compress=True, cpus=3))
    assert cap.warnings == []
    assert [(f.ts, f.data) for f in packed] == [(f.ts, f.data) for f in plain]


def test_raw_ip_and_wifi_packet_types_decode() -> None:
    w = EtlWriter(T0)
    ip = bytes(IP(src="192.0.2.1", dst="192.0.2.2") / TCP(sport=1, dport=2, flags="S"))
    wifi = bytes(Dot11(type=2, subtype=0, FCfield=1) / LLC() / SNAP(code=0x0800) / ip)
    w.pktmon_packet(T0, ip, group=1, component=1, ptype=3)
    w.pktmon_packet(T0 + 1, wifi, group=2, component=1, ptype=2)
    w.pktmon_packet(T0 + 2, b"GET / HTTP/1.1\r\n", group=3, component=1, ptype=4)  # an HTTP payload: no frame
    cap, frames = frames_of(w.to_bytes())
    assert [f.linktype for f in frames] == [101, 105]
    dec = Decoder()
    assert [dec.decode(f).dport for f in frames] == [2, 2]
    assert [w.code for w in cap.warnings] == ["unsupported-event"]


def test_truncated_pktmon_logged_size_keeps_the_original_length() -> None:
    w = EtlWriter(T0)
    w.pktmon_packet(T0, syn(1) + b"\0" * 200, group=1, component=1, logged=64)
    _, (f,) = frames_of(w.to_bytes())
    assert f.caplen == 64 and f.wirelen == len(syn(1)) + 200


# -- generated netsh trace files --------------------------------------------------------------------------


@pytest.mark.parametrize("cpus", [1, 2])
def test_netsh_fragments_are_joined_per_interface_until_the_end_keyword(cpus: int) -> None:
    w = EtlWriter(T0)
    a, b = syn(50001) + b"A" * 300, syn(50002) + b"B" * 300
    w.ndis_fragments(T0, a, ifindex=4, send=True, pieces=3)
    w.ndis_fragments(T0, b, ifindex=9, send=False, pieces=2)
    w.ndis_fragments(T0 + 1, a, ifindex=9, send=False, pieces=4)
    cap, frames = frames_of(w.to_bytes(cpus=cpus, per_buffer=3))
    assert cap.format == "etl-netsh" and cap.warnings == []
    assert [f.data for f in frames] in ([a, b, a], [b, a, a])


def test_netsh_fragments_cut_short_are_reported_not_kept() -> None:
    w = EtlWriter(T0)
    w.ndis_fragments(T0, syn(1), ifindex=4, send=True)
    w.event(
        T0 + 1,
        W.NDISCAP_PROVIDER,
        W.NDIS_FRAGMENT,
        struct.pack("<III", 4, 4, 10) + b"x" * 10,
        W.KW_PACKET_START | W.KW_SEND,
    )
    cap, frames = frames_of(w.to_bytes())
    assert len(frames) == 1 and [w.code for w in cap.warnings] == ["truncated"]


def test_netsh_wifi_metadata_and_media_types() -> None:
    w = EtlWriter(T0)
    ip = bytes(IP(src="192.0.2.1", dst="192.0.2.2") / TCP(sport=5, dport=6, flags="S"))
    wifi = bytes(Dot11(type=2, subtype=0, FCfield=0x41) / LLC() / SNAP(code=0x0800) / ip)  # to-DS + Protected
    w.ndis_wifi_metadata(T0, ifindex=12, rssi=-61, mhz=5180, rate=130)
    w.ndis_fragments(T0, wifi, ifindex=12, send=False, media=W.KW_MEDIA_NATIVE_802_11)
    w.ndis_fragments(T0 + 1, ip, ifindex=13, send=True, media=W.KW_MEDIA_WIRELESS_WAN)
    cap, frames = frames_of(w.to_bytes())
    assert [f.linktype for f in frames] == [105, 101]
    assert frames[0].data[1] & 0x40 == 0, "ndiscap logs 802.11 decrypted: the Protected bit is cleared"
    dec = Decoder()
    assert [dec.decode(f).sport for f in frames] == [5, 5]


def test_vmswitch_fragments_carry_their_vlan_as_a_tag() -> None:
    w = EtlWriter(T0)
    w.vmswitch_fragment(T0, syn(50003), ifindex=20, vlan=42, send=True)
    _, (f,) = frames_of(w.to_bytes())
    assert f.data[12:14] == b"\x81\x00" and int.from_bytes(f.data[14:16], "big") & 0xFFF == 42
    assert Decoder().decode(f).sport == 50003


# -- damaged files, pipes --------------------------------------------------------------------------------


def test_truncated_file_keeps_every_complete_packet_and_warns() -> None:
    data = pktmon_refusal(cpus=1)
    _, whole = frames_of(data)
    previous = -1
    for cut in range(200, len(data), 97):
        cap, frames = frames_of(data[:cut])
        # cut inside the first buffer, the log file header and with it the clock is lost
        assert {w.code for w in cap.warnings} <= {"truncated", "bad-timestamp"} and cap.warnings, cut
        assert all(f.data in {w.data for w in whole} for f in frames)
        assert len(frames) >= previous - 1  # more file never gives (much) fewer packets
        previous = len(frames)
    assert previous >= 5


def test_corrupt_compressed_buffer_is_reported_and_the_others_kept() -> None:
    data = bytearray(pktmon_refusal(compress=True, cpus=1))
    second = struct.unpack_from("<I", data, 0)[0]  # the first event buffer starts after the header buffer
    size = struct.unpack_from("<I", data, second)[0]
    data[second + 72 : second + size] = b"\xff" * (size - 72)  # flags of all ones: matches pointing nowhere
    cap, frames = frames_of(bytes(data))
    assert "corrupt-compression" in {w.code for w in cap.warnings}
    assert 0 < len(frames) < 6


def test_impossible_buffer_size_stops_with_a_warning() -> None:
    data = bytearray(pktmon_refusal())
    second = struct.unpack_from("<I", data, 0)[0]
    struct.pack_into("<I", data, second, 0x7FFFFFFF)
    cap, frames = frames_of(bytes(data))
    assert [w.code for w in cap.warnings] == ["bad-block"] and frames == []


def test_etl_from_a_pipe() -> None:
    import os
    import threading

    data = pktmon_refusal(compress=True)
    r, wfd = os.pipe()
    t = threading.Thread(target=lambda: (os.write(wfd, data), os.close(wfd)))
    t.start()
    with os.fdopen(r, "rb") as f, open_capture(f) as cap:
        frames = list(cap)
    t.join()
    assert len(frames) == 6 and cap.format == "etl-pktmon"


@pytest.mark.parametrize("cut", [0, 10, 72, 79])
def test_tiny_etl_heads_are_a_clear_error_or_empty(cut: int) -> None:
    data = pktmon_refusal()[:cut]
    try:
        _, frames = frames_of(data)
    except CaptureError as exc:
        assert "\n" not in str(exc)
    else:
        assert frames == []


# -- property: damaged ETL files never raise, and give only packets the intact file holds ---------------

INTACT = {True: pktmon_refusal(compress=True), False: pktmon_refusal(compress=False)}
INTACT_FRAMES = {f.data for f in frames_of(INTACT[False])[1]}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    compress=st.booleans(),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6),
    cut=st.integers(0, 10_000),
)
def test_damaged_etl_never_raises_and_keeps_only_real_packets(compress: bool, flips, cut: int) -> None:
    data = bytearray(INTACT[compress])
    for pos, value in flips:
        if 72 <= pos < len(data):  # the first buffer header stays: the file must still look like ETL
            data[pos] = value
    data = data[: max(cut, 200)]
    try:
        cap, frames = frames_of(bytes(data))
    except CaptureError as exc:
        assert "\n" not in str(exc)
        return
    assert {w.code for w in cap.warnings} <= set(WARNING_CODES) | {"unsupported-event"}
    if not flips:
        assert all(f.data in INTACT_FRAMES for f in frames)
    assert len(frames) <= 6 * 3  # never more packets than events in the file
