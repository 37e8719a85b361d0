"""The conversation table on crafted TCP/UDP/ICMP sessions: states, history, marks, roles, bounds."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from scapy.all import ICMP, IP, TCP, UDP, Ether, IPv6, Raw, wrpcap  # noqa: F401  (scapy layers)

from analyzer.flows.table import TIMELINE_HEAD, TIMELINE_TAIL
from analyzer.model import Mark
from analyzer.pipeline import analyze_capture

C, S = "192.0.2.10", "198.51.100.20"
MACS = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}  # fixed: scapy would ARP for a missing one
CP, SP = 49152, 80


class Session:
    """Builds a TCP conversation packet by packet with correct sequence numbers."""

    def __init__(self, t0: float = 1_700_000_000.0, c_ttl: int = 64, s_ttl: int = 63) -> None:
        self.pkts: list = []
        self.t = t0
        self.cseq, self.sseq = 1000, 5000
        self.c_ttl, self.s_ttl = c_ttl, s_ttl
        self.c_id, self.s_id = 100, 700

    def _add(self, pkt, dt: float) -> None:
        self.t += dt
        pkt.time = self.t
        self.pkts.append(pkt)

    def c(self, flags: str, data: bytes = b"", dt: float = 0.01, seq: int | None = None, ack: int | None = None,
          win: int = 64240, ttl: int | None = None, ip_id: int | None = None) -> None:
        self.c_id += 1
        ip = IP(src=C, dst=S, ttl=ttl or self.c_ttl, id=self.c_id if ip_id is None else ip_id)
        seg = TCP(sport=CP, dport=SP, flags=flags, seq=self.cseq if seq is None else seq,
                  ack=(self.sseq if ack is None else ack) if "A" in flags else 0, window=win)
        self._add(Ether(**MACS) / ip / seg / Raw(data) if data else Ether(**MACS) / ip / seg, dt)
        if seq is None:
            self.cseq += len(data) + ("S" in flags) + ("F" in flags)

    def s(self, flags: str, data: bytes = b"", dt: float = 0.01, seq: int | None = None, ack: int | None = None,
          win: int = 65160, ttl: int | None = None, ip_id: int | None = None) -> None:
        self.s_id += 1
        ip = IP(src=S, dst=C, ttl=ttl or self.s_ttl, id=self.s_id if ip_id is None else ip_id)
        seg = TCP(sport=SP, dport=CP, flags=flags, seq=self.sseq if seq is None else seq,
                  ack=(self.cseq if ack is None else ack) if "A" in flags else 0, window=win)
        self._add(Ether(**MACS) / ip / seg / Raw(data) if data else Ether(**MACS) / ip / seg, dt)
        if seq is None:
            self.sseq += len(data) + ("S" in flags) + ("F" in flags)

    def handshake(self) -> None:
        self.c("S")
        self.s("SA")
        self.c("A")

    def analyze(self, tmp_path: Path):
        path = tmp_path / "s.pcap"
        wrpcap(str(path), self.pkts)
        result = analyze_capture(path, keep="all-full")
        assert result.error is None
        return result


def _marks(conv, mark: Mark) -> list[int]:
    return [e.frame for e in conv.timeline if e.marks & mark]


def test_fin_close_is_sf_with_zeek_history(tmp_path):
    s = Session()
    s.handshake()
    s.c("PA", b"GET / HTTP/1.1\r\n\r\n")
    s.s("A")
    s.s("PA", b"HTTP/1.1 200 OK\r\n\r\n")
    s.c("A")
    s.c("FA")
    s.s("FA")
    s.c("A")
    (conv,) = s.analyze(tmp_path).conversations
    assert (conv.state, conv.history) == ("SF", "ShADadFf")
    assert str(conv.client) == f"{C}:{CP}" and str(conv.server) == f"{S}:{SP}"
    assert conv.handshake and not conv.role_inferred
    assert conv.client_stats.payload_kind == "http-request"
    assert conv.server_stats.payload_kind == "http-response"
    assert conv.client_stats.bytes == 18 and conv.server_stats.bytes == 19
    assert conv.closed_by == "fin"
    assert (conv.client_stats.state, conv.server_stats.state) == ("TIME_WAIT", "CLOSED")
    # Relative sequence numbers as Wireshark shows them: SYN 0, first data byte 1.
    assert [e.seq for e in conv.timeline if e.dir == 0][:2] == [0, 1]


def test_stray_ack_after_fin_is_marked(tmp_path):
    s = Session()
    s.handshake()
    s.s("PA", b"x" * 100)
    s.c("A")
    s.c("FA")
    s.s("FA")
    s.c("A")
    s.c("A", dt=0.2)  # the stray duplicate ACK of KB Q152474
    s.s("R", seq=s.sseq, dt=0.001)
    (conv,) = s.analyze(tmp_path).conversations
    acks_fin = _marks(conv, Mark.ACKS_FIN)
    dup = _marks(conv, Mark.DUP_ACK)
    assert dup == [9]  # 1-3 handshake, 4 data, 5 ack, 6 FIN, 7 FIN, 8 ack of FIN, 9 stray, 10 RST
    assert 8 in acks_fin and 9 in acks_fin
    assert conv.timeline[-1].flags & 0x04 and conv.timeline[-1].dir == 1
    assert conv.closed_by == "rst"


def test_retransmission_keepalive_zero_window_and_gap(tmp_path):
    s = Session()
    s.handshake()
    s.c("PA", b"a" * 10)
    s.c("PA", b"a" * 10, seq=s.cseq - 10, dt=0.3)  # retransmission
    s.s("A")
    s.c("A", b"\x00", seq=s.cseq - 1, dt=45)  # keep-alive probe with one garbage byte
    s.s("A", dt=0.01)  # its answer
    s.s("A", win=0)  # zero window
    s.c("PA", b"b" * 5, seq=s.cseq + 100)  # starts past what was sent: a gap
    s.cseq += 105
    conv = s.analyze(tmp_path).conversations[0]
    assert _marks(conv, Mark.RETRANSMISSION) == [5]
    assert _marks(conv, Mark.KEEPALIVE) == [7]
    assert _marks(conv, Mark.KEEPALIVE_ACK) == [8]
    assert _marks(conv, Mark.ZERO_WINDOW) == [9]
    assert _marks(conv, Mark.GAP) == [10]
    assert conv.timeline[6].idle == pytest.approx(45, abs=0.01)
    assert "T" in conv.history and "w" in conv.history and "G" in conv.history


def test_forged_rst_has_odd_ttl_and_ip_id(tmp_path):
    s = Session(s_ttl=52)
    s.handshake()
    for _ in range(3):
        s.c("PA", b"q" * 20)
        s.s("PA", b"r" * 40)
    s.s("RA", ttl=64, ip_id=40000)  # injected by a box closer to the client
    conv = s.analyze(tmp_path).conversations[0]
    rst = conv.timeline[-1]
    assert rst.marks & Mark.TTL_ODD and rst.marks & Mark.IPID_ODD
    assert conv.server_stats.ttl == 52 and conv.server_stats.ip_id_mode == "incrementing"
    assert not any(e.marks & (Mark.TTL_ODD | Mark.IPID_ODD) for e in conv.timeline[:-1])


def test_refused_connect_retried_with_the_same_isn_is_one_conversation(tmp_path):
    s = Session()
    s.c("S")
    s.s("RA", seq=0)
    s.c("S", seq=1000, dt=0.5)  # the same ISN again, as Windows retries a refused connect()
    s.s("RA", seq=0)
    convs = s.analyze(tmp_path).conversations
    # Wireshark keeps a SYN that repeats the ISN in the same tcp.stream: one connect(), one conversation
    assert [(c.state, c.first_frame, c.last_frame, c.stream) for c in convs] == [("REJ", 1, 4, 0)]


def test_new_isn_after_a_refusal_is_a_new_conversation_and_stream(tmp_path):
    s = Session()
    s.c("S")
    s.s("RA", seq=0)
    s.c("S", seq=5000, dt=0.5)  # a new ISN: a new connection on the same ports (port reuse)
    s.s("RA", seq=0)
    convs = s.analyze(tmp_path).conversations
    assert [(c.state, c.history) for c in convs] == [("REJ", "Sr"), ("REJ", "Sr")]
    assert [c.stream for c in convs] == [0, 1]


def test_midstream_start_infers_roles_from_ports(tmp_path):
    s = Session()
    s.s("PA", b"HTTP/1.1 200 OK\r\n\r\n")  # first packet comes from port 80
    s.c("A")
    (conv,) = s.analyze(tmp_path).conversations
    assert conv.role_inferred
    assert conv.server.port == SP and conv.history.startswith("^")


def test_long_conversation_timeline_is_bounded(tmp_path):
    s = Session()
    s.handshake()
    for _ in range(400):
        s.c("PA", b"z" * 10, dt=0.001)
        s.s("A", dt=0.001)
    s.c("FA")
    s.s("FA")
    s.c("A")
    conv = s.analyze(tmp_path).conversations[0]
    assert len(conv.timeline) == TIMELINE_HEAD + TIMELINE_TAIL
    assert conv.elided == conv.packets - len(conv.timeline)
    assert conv.timeline[0].flags & 0x02 and conv.timeline[-1].frame == conv.last_frame


def test_udp_with_icmp_port_unreachable_is_tied_to_the_exchange(tmp_path):
    q = Ether(**MACS) / IP(src=C, dst=S, ttl=64) / UDP(sport=5353, dport=53) / Raw(b"\x12\x34" + b"\x00" * 10)
    err = Ether(**MACS) / IP(src=S, dst=C, ttl=63) / ICMP(type=3, code=3) / bytes(q[IP])[:28]
    q.time, err.time = 1.0, 1.001
    path = tmp_path / "u.pcap"
    wrpcap(str(path), [q, err])
    result = analyze_capture(path, keep="all-full")
    (conv,) = result.conversations
    assert conv.proto == "udp" and conv.icmp_errors == 1
    ev = conv.timeline[-1]
    assert ev.icmp == (3, 3) and ev.dir == 1 and ev.marks & Mark.ICMP_ERROR


def test_udp_conversation_splits_after_a_minute_idle(tmp_path):
    pkts = []
    for t in (0.0, 0.1, 90.0, 90.1):
        src, dst, sp, dp = (C, S, 40000, 53) if t in (0.0, 90.0) else (S, C, 53, 40000)
        p = Ether(**MACS) / IP(src=src, dst=dst) / UDP(sport=sp, dport=dp) / Raw(b"q" * 12)
        p.time = 1_000.0 + t
        pkts.append(p)
    path = tmp_path / "d.pcap"
    wrpcap(str(path), pkts)
    convs = analyze_capture(path, keep="all").conversations
    assert [(c.state, c.history, c.packets) for c in convs] == [("SF", "Dd", 2), ("SF", "Dd", 2)]


def test_table_cap_hands_on_early_with_a_warning(tmp_path):
    pkts = []
    for i in range(300):
        p = Ether(**MACS) / IP(src=C, dst=S) / TCP(sport=20000 + i, dport=443, flags="S", seq=i)
        p.time = 1.0 + i * 0.001
        pkts.append(p)
    path = tmp_path / "syns.pcap"
    wrpcap(str(path), pkts)
    result = analyze_capture(path, keep="all", max_conversations=100)
    assert result.conversation_count == 300
    assert all(c.state == "S0" for c in result.conversations)
    assert any(w.code == "conversation-table-full" for w in result.warnings)


def test_findings_per_rule_are_capped_with_a_warning(tmp_path):
    from analyzer.rules import load_rules

    pkts = []
    for i in range(30):  # a port scan: thirty refused connections
        syn = Ether(**MACS) / IP(src=C, dst=S) / TCP(sport=30000 + i, dport=1000 + i, flags="S", seq=i)
        rst = Ether(**MACS) / IP(src=S, dst=C) / TCP(sport=1000 + i, dport=30000 + i, flags="RA", ack=i + 1)
        syn.time, rst.time = 1.0 + i, 1.0005 + i
        pkts += [syn, rst]
    path = tmp_path / "scan.pcap"
    wrpcap(str(path), pkts)
    result = analyze_capture(path, load_rules(), max_findings_per_rule=10)
    assert [f.rule for f in result.findings] == ["CON001"] * 10
    (warning,) = [w for w in result.warnings if w.code == "findings-capped"]
    assert "CON001 fired on 30 conversations" in warning.message


def test_icmp_and_icmpv6_between_two_hosts_are_two_conversations(tmp_path):
    # An IPv4 packet claiming protocol 58 is odd, but it is not the ICMP echo beside it.
    echo = Ether(**MACS) / IP(src=C, dst=S, proto=1) / ICMP(type=8)
    odd = Ether(**MACS) / IP(src=C, dst=S, proto=58) / ICMP(type=8)
    echo.time, odd.time = 1.0, 1.5
    path = tmp_path / "i.pcap"
    wrpcap(str(path), [echo, odd])
    convs = analyze_capture(path, keep="all").conversations
    assert [(c.proto, c.packets) for c in convs] == [("icmp", 1), ("icmp", 1)]


def test_a_file_object_that_reads_bytearrays_is_analyzed_like_the_file(tmp_path):
    class Bytearrays(io.BytesIO):
        def read(self, n: int = -1) -> bytearray:  # type: ignore[override]
            return bytearray(super().read(n))

    s = Session()
    s.handshake()
    s.c("PA", b"GET / HTTP/1.1\r\n\r\n")
    s.s("R")
    path = tmp_path / "b.pcap"
    wrpcap(str(path), s.pkts)
    want = analyze_capture(path, keep="all-full")
    got = analyze_capture(Bytearrays(path.read_bytes()), keep="all-full")
    assert got.error is None and got.packets == want.packets == 5
    assert [c.timeline for c in got.conversations] == [c.timeline for c in want.conversations]


def test_a_closed_conversation_is_handed_on_five_seconds_after_its_last_packet(tmp_path):
    """Not later because an earlier-closed conversation still receives packets: the listing
    (`wsadiag conversations`, written as conversations are handed on) shows it in that order."""

    def seg(t: float, sport: int, flags: str, seq: int, ack: int, back: bool = False):
        ip = IP(src=S, dst=C) if back else IP(src=C, dst=S)
        tcp = (
            TCP(sport=SP, dport=sport, flags=flags, seq=seq, ack=ack)
            if back
            else TCP(sport=sport, dport=SP, flags=flags, seq=seq, ack=ack)
        )
        p = Ether(**MACS) / ip / tcp
        p.time = 1_700_000_000.0 + t
        return p

    def closed_at(t: float, sport: int) -> list:
        return [
            seg(t, sport, "S", 100, 0),
            seg(t + 0.01, sport, "SA", 900, 101, back=True),
            seg(t + 0.02, sport, "A", 101, 901),
            seg(t + 0.03, sport, "FA", 101, 901),
            seg(t + 0.04, sport, "FA", 901, 102, back=True),
            seg(t + 0.05, sport, "A", 102, 902),
        ]

    early = closed_at(1.0, 40001)  # closed first, then keeps sending (stray ACKs) until t=20
    early += [seg(2.0 + k, 40001, "A", 102, 902) for k in range(19)]
    later = closed_at(2.0, 40002)  # closed second, then silent
    clock = [seg(25.0 + k, 40003, "S", 7, 0) for k in range(6)]  # packets that move capture time on
    path = tmp_path / "closing.pcap"
    wrpcap(str(path), sorted(early + later + clock, key=lambda p: p.time))
    handed_on: list[int] = []
    analyze_capture(path, keep="all", listen=lambda conv: handed_on.append(conv.client.port))
    assert handed_on == [40002, 40001, 40003]


def test_the_empty_ttl_table_sides_share_is_never_written():
    """Sides share one empty TTL dict until they count a run: after every sample analysed whole,
    as a listing and with rules, it is still empty, and the TTLs were counted all the same."""
    from analyzer.flows import table
    from analyzer.pipeline import analyze_capture
    from analyzer.rules import load_rules

    rules = load_rules()
    seen: set[int] = set()
    for path in sorted((Path(__file__).resolve().parents[1] / "samples").glob("*.pcap*")):
        whole = analyze_capture(str(path), keep="all-full")
        analyze_capture(str(path), rules)
        analyze_capture(str(path), listen=lambda conv: None)
        seen.update(v for c in whole.conversations for v in c.client_stats.ttl_values + c.server_stats.ttl_values)
    assert table._NO_TTLS == {}
    assert {64, 128} <= seen  # Linux and Windows senders' TTLs were counted
