"""Hand-built CaptureResults for the report tests (until they can come from analyzer.pipeline).

Each case is what the pipeline would hand the reports for one kind of capture: a reset
diagnosis, a clean capture, warnings only, hostile strings, an unreadable file, a long transfer.
"""

from __future__ import annotations

from analyzer.model import (
    CaptureResult,
    CaptureWarning,
    Conversation,
    Endpoint,
    Event,
    Finding,
    Mark,
    PosixErrno,
    SeenAs,
    SideStats,
    SocketErrorSeen,
    WinsockCode,
)
from analyzer.protocol import ACK, FIN, PSH, RST, SYN

T0 = 1_700_000_000.0
WINDOWS_RESET = "ConnectionResetError: [WinError 10054] An existing connection was forcibly closed by the remote host"


def ev(frame: int, t: float, d: int, flags: int, seq: int, ack: int, plen: int = 0,
       marks: int = 0, payload: str = "", icmp: tuple[int, int] | None = None, win: int = 64240) -> Event:
    return Event(frame, T0 + t, d, flags, seq, ack, plen, win, 64 if d == 0 else 128, 0, marks, 0.0, payload, icmp)


def conv(cid: int, client: Endpoint, server: Endpoint, timeline: tuple[Event, ...], state: str, history: str,
         proto: str = "tcp", cbytes: int = 0, sbytes: int = 0, **kw) -> Conversation:
    cpk = sum(1 for e in timeline if e.dir == 0) + (kw.get("elided", 0) // 2)
    spk = sum(1 for e in timeline if e.dir == 1) + (kw.get("elided", 0) - kw.get("elided", 0) // 2)
    return Conversation(
        id=cid, stream=cid - 1, proto=proto, client=client, server=server, role_inferred=False,
        state=state, history=history, first_frame=timeline[0].frame, last_frame=timeline[-1].frame,
        start=timeline[0].ts, end=timeline[-1].ts,
        client_stats=SideStats(packets=cpk, bytes=cbytes), server_stats=SideStats(packets=spk, bytes=sbytes),
        timeline=timeline, **kw)


CLIENT = Endpoint("192.0.2.33", 49732)
SERVER = Endpoint("192.0.2.200", 8000)

WSAECONNRESET_CLIENT = SocketErrorSeen(
    side="client", endpoint=str(CLIENT), operation="recv",
    winsock=WinsockCode(10054, "WSAECONNRESET", "An existing connection was forcibly closed by the remote host."),
    posix=PosixErrno("ECONNRESET", 104, 54),
    seen_as=SeenAs(dotnet="SocketException (10054): An existing connection was forcibly closed by the remote host.",
                   java="java.net.SocketException: Connection reset",
                   python="ConnectionResetError: [Errno 104] Connection reset by peer",
                   curl="curl: (56) Recv failure: Connection reset by peer",
                   python_windows=WINDOWS_RESET),
)

RST003_TIMELINE = (
    ev(1, 0.000, 0, SYN, 0, 0),
    ev(2, 0.001, 1, SYN | ACK, 0, 1),
    ev(3, 0.001, 0, ACK, 1, 1),
    ev(4, 0.002, 0, PSH | ACK, 1, 1, 25, Mark.NEW_DATA, "http-request"),
    ev(5, 0.010, 1, PSH | ACK, 1, 26, 4200, Mark.NEW_DATA),
    ev(6, 0.011, 0, ACK, 26, 4201),
    ev(14, 1.200, 0, FIN | ACK, 26, 4201),
    ev(15, 1.201, 1, FIN | ACK, 4201, 27),
    ev(16, 1.202, 0, ACK, 27, 4202, marks=Mark.ACKS_FIN),
    ev(17, 1.203, 0, ACK, 27, 4202, marks=Mark.DUP_ACK),
    ev(18, 1.204, 1, RST, 4202, 0),
)

RST003 = Finding(
    rule="RST003", name="stray-ack-after-fin", level="error",
    title="Stray ACK after the closing handshake, answered by RST",
    message="192.0.2.33:49732 acknowledged the server's FIN twice; the server answered the duplicate with RST",
    conversation=1, errors=(WSAECONNRESET_CLIENT,),
    cause="The client's stack sent a duplicate ACK after both FINs; the server had already released the connection.",
    remedy="Harmless when it happens after the application closed; otherwise update the NIC driver (KB Q152474).",
    confidence="high", frames=(14, 15, 16, 17, 18),
    wireshark_filter="tcp.stream eq 0 && frame.number >= 14", references=("Microsoft KB Q152474",),
)

HEALTHY_TIMELINE = (
    ev(7, 0.5, 0, SYN, 0, 0),
    ev(8, 0.501, 1, SYN | ACK, 0, 1),
    ev(9, 0.502, 0, ACK, 1, 1),
    ev(10, 0.6, 0, FIN | ACK, 1, 1),
    ev(11, 0.601, 1, FIN | ACK, 1, 2),
    ev(12, 0.602, 0, ACK, 2, 2),
)

V6_CLIENT = Endpoint("2001:db8::1", 53001)
V6_SERVER = Endpoint("2001:db8::53", 53)
UDP_TIMELINE = (
    ev(20, 2.0, 0, 0, 0, 0, 40),
    ev(21, 2.0004, 1, 0, 0, 0, 0, Mark.ICMP_ERROR, icmp=(1, 4)),
)
UDP001 = Finding(
    rule="UDP001", name="udp-port-unreachable", level="error",
    title="ICMP port unreachable answered a UDP datagram",
    message="[2001:db8::53]:53 has no listener: the sender's next recvfrom fails",
    conversation=3,
    errors=(SocketErrorSeen(
        side="client", endpoint=str(V6_CLIENT), operation="recvfrom",
        winsock=WinsockCode(10054, "WSAECONNRESET", "An existing connection was forcibly closed by the remote host."),
        posix=PosixErrno("ECONNREFUSED", 111, 61),
        seen_as=SeenAs(dotnet="SocketException (10054)", java="java.net.PortUnreachableException",
                       python="ConnectionRefusedError: [Errno 111] Connection refused", curl="",
                       python_windows=WINDOWS_RESET),
        note="Linux reports it on a connected socket only"),),
    cause="Nothing listens on the server port.", remedy="Start the service or fix the port.",
    confidence="high", frames=(20, 21), wireshark_filter="udp.stream eq 0 || icmpv6",
)


def rst003_case() -> list[CaptureResult]:
    """One capture: a RST003 diagnosis, a healthy TCP conversation, a UDP/IPv6 port unreachable."""
    return [CaptureResult(
        path="samples/rst003-stray-ack.pcap", format="pcap", linktypes=["EN10MB"], packets=21,
        conversations=[
            conv(1, CLIENT, SERVER, RST003_TIMELINE, "RSTR", "ShADadFfR", cbytes=25, sbytes=4200, handshake=True,
                 closed_by="rst"),
            conv(2, Endpoint("192.0.2.33", 49733), SERVER, HEALTHY_TIMELINE, "SF", "ShAFf", handshake=True,
                 closed_by="fin"),
            conv(3, V6_CLIENT, V6_SERVER, UDP_TIMELINE, "SHR", "Dd", proto="udp", cbytes=40, icmp_errors=1),
        ],
        findings=[RST003, UDP001],
    )]


def clean_case() -> list[CaptureResult]:
    """A capture where every conversation closed cleanly: no findings."""
    return [CaptureResult(
        path="samples/clean.pcapng", format="pcapng", linktypes=["EN10MB"], packets=6,
        conversations=[conv(1, Endpoint("192.0.2.33", 49733), SERVER, HEALTHY_TIMELINE, "SF", "ShAFf",
                            handshake=True, closed_by="fin")],
    )]


RST008 = Finding(
    rule="RST008", name="reset-after-idle", level="warning",
    title="Reset after a long idle period",
    message="The server reset the connection after 350.0 s idle (AWS NLB idle timeout)",
    conversation=1, errors=(WSAECONNRESET_CLIENT,),
    cause="A middlebox dropped the idle connection.", remedy="Enable TCP keep-alive below the idle timeout.",
    confidence="medium", frames=(7, 8), wireshark_filter="tcp.stream eq 0 && frame.number >= 7",
)


def warnings_case() -> list[CaptureResult]:
    """A truncated capture whose only finding is a warning."""
    timeline = (
        ev(1, 0.0, 0, SYN, 0, 0), ev(2, 0.001, 1, SYN | ACK, 0, 1), ev(3, 0.002, 0, ACK, 1, 1),
        ev(4, 0.003, 0, PSH | ACK, 1, 1, 10), ev(5, 0.004, 1, ACK, 1, 11),
        ev(7, 350.004, 0, PSH | ACK, 11, 1, 10), ev(8, 350.005, 1, RST, 1, 0),
    )
    return [CaptureResult(
        path="samples/idle.pcap.gz", format="pcap+gzip", linktypes=["LINUX_SLL2"], packets=8,
        warnings=[CaptureWarning("truncated", "the last record is cut short (12 of 60 bytes)", 9)],
        conversations=[conv(1, CLIENT, SERVER, timeline, "RSTR", "ShADdR", cbytes=20, handshake=True,
                            closed_by="rst")],
        findings=[RST008],
    )]


HOSTILE_PATH = "<script>alert(1)</script>.pcap"


def hostile_case() -> list[CaptureResult]:
    """Capture-derived strings that try to break out of every format."""
    timeline = (
        ev(1, 0.0, 0, PSH | ACK, 1, 1, 30, payload="<script>alert(2)</script>"),
        ev(2, 0.001, 1, RST, 1, 0),
    )
    finding = Finding(
        rule="RST001", name="abortive-close", level="error",
        title="Abortive close <img src=x onerror=alert(3)>",
        message=(
            "payload said <script>alert(4)</script> | *bold* _it_ [x](javascript:alert(5)) "
            "\x1b[31mRED\x1b[0m\nline2"
        ),
        conversation=1, errors=(WSAECONNRESET_CLIENT,),
        cause="cause with ]]> and & and \x00nul", remedy="remedy `code` <b>b</b>",
        confidence="low", frames=(1, 2), wireshark_filter="tcp.stream eq 0 && http contains \"`<x>`\"",
    )
    return [CaptureResult(
        path=HOSTILE_PATH, format="pcap", linktypes=["EN10MB"], packets=2,
        warnings=[CaptureWarning("pcapng-comment", "comment: \x1b]0;pwned\x07<iframe src=//x>\u202eevil", 1)],
        conversations=[conv(1, CLIENT, SERVER, timeline, "RSTR", "DR", cbytes=30, closed_by="rst")],
        findings=[finding],
    )]


def failed_case() -> list[CaptureResult]:
    """One capture that could not be read next to one that could."""
    return [CaptureResult(path="notes.txt", error="not a capture file (magic 0x48656c6c)")] + clean_case()


def long_case() -> list[CaptureResult]:
    """A long transfer whose timeline was cut by the flow tracker, reset at the end."""
    events = [ev(1, 0.0, 0, SYN, 0, 0), ev(2, 0.001, 1, SYN | ACK, 0, 1), ev(3, 0.002, 0, ACK, 1, 1)]
    frame, seq = 4, 1
    for i in range(60):
        events.append(ev(frame, 0.01 + i * 0.001, 1, ACK, seq, 1, 1448))
        frame += 1
        seq += 1448
    # the tracker dropped 5000 packets here (elided_after = index of the last kept head event)
    elided_after = len(events) - 1
    frame += 5000
    for i in range(30):
        events.append(ev(frame, 9.0 + i * 0.001, 1, ACK, seq, 1, 1448))
        frame += 1
        seq += 1448
    events.append(ev(frame, 9.5, 0, RST | ACK, 1, seq))
    timeline = tuple(events)
    finding = Finding(
        rule="RST004", name="close-with-unread-data", level="error",
        title="Closed with unread data: reset instead of FIN", message="The client closed with data unread.",
        conversation=1, errors=(), cause="close() with a non-empty receive queue.",
        remedy="Read to EOF before closing.", confidence="medium", frames=(frame - 1, frame),
        wireshark_filter=f"tcp.stream eq 0 && frame.number >= {frame - 1}",
    )
    return [CaptureResult(
        path="samples/long.pcap", format="pcap", linktypes=["EN10MB"], packets=frame,
        conversations=[conv(1, CLIENT, SERVER, timeline, "RSTO", "ShADR", sbytes=seq - 1, handshake=True,
                            elided_after=elided_after, elided=5000, closed_by="rst")],
        findings=[finding],
    )]


CASES = {
    "rst003": rst003_case,
    "clean": clean_case,
    "warnings": warnings_case,
    "hostile": hostile_case,
    "failed": failed_case,
    "long": long_case,
}

RULES = [
    {"code": "RST003", "name": "stray-ack-after-fin", "title": "Stray ACK after the closing handshake, answered by RST",
     "level": "error", "description": "A duplicate ACK after both FINs is answered by RST.",
     "doc": "## What it detects\nA stray ACK after FIN/FIN, answered by **RST**.\n"},
    {"code": "RST008", "name": "reset-after-idle", "title": "Reset after a long idle period", "level": "warning",
     "description": "RST after an idle gap.", "doc": "## What it detects\nIdle timeouts.\n"},
    {"code": "UDP001", "name": "udp-port-unreachable", "title": "ICMP port unreachable answered a UDP datagram",
     "level": "error", "description": "ICMP port unreachable for UDP.", "doc": "## What it detects\nNo listener.\n"},
]
