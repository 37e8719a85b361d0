"""The scapy-crafted samples: patterns that no Linux stack in a namespace produces on demand.

Every session is seen from a capture on the client's host. Initial TTLs: Windows 128, Linux 64;
a server N hops away arrives with its initial TTL less N.
"""

from __future__ import annotations

from .craft import End, Session, http_request, http_response

CLIENT_MAC, GATEWAY_MAC = "02:00:5e:10:00:33", "02:00:5e:10:00:01"
CLIENT_IP, SERVER_IP = "192.0.2.33", "203.0.113.80"


def windows_client(port: int = 49732) -> End:
    return End(CLIENT_MAC, CLIENT_IP, port, ttl=128, ipid=0x3A10, isn=0x5C3B1A20, ts_base=28411203)


def linux_client(port: int = 41874) -> End:
    return End(CLIENT_MAC, CLIENT_IP, port, ttl=64, ipid=0x9E21, isn=0x1F00D1E5, ts_base=3561120044)


def linux_server(port: int = 80, hops: int = 12) -> End:
    return End(GATEWAY_MAC, SERVER_IP, port, ttl=64 - hops, ipid=0x5D03, isn=0xA4B1C000, ts_base=912345678)


def windows_server(port: int = 80, hops: int = 8) -> End:
    return End(GATEWAY_MAC, SERVER_IP, port, ttl=128 - hops, ipid=0x11F0, isn=0x73E2A901, ts_base=15500321)


RTT = 0.024


def exchange(s: Session, path: str = "/", size: int = 2400) -> None:
    """One request and its response, each acknowledged."""
    s.data("client", http_request(path), dt=0.002, ack_after=RTT / 2)
    s.data("server", http_response(size), dt=0.004, ack_after=0.0004)


def fin_close(s: Session, first: str = "client") -> None:
    """A clean close: FIN from FIRST, its ACK, the peer's FIN, the last ACK."""
    other = "server" if first == "client" else "client"
    s.seg(first, "FA", dt=0.05)
    s.seg(other, "A", dt=RTT / 2)
    s.seg(other, "FA", dt=0.003)
    s.seg(first, "A", dt=RTT / 2)


def register(sample, fires) -> None:
    """Add the crafted samples to make_samples.py's registry."""

    @sample("rst003-stray-ack-after-fin", "scapy",
            "A Windows client closes first (FIN), the server answers with its FIN, the client ACKs "
            "it and then sends a duplicate ACK; the server, already closed, answers RST (KB Q152474).",
            expect=[fires("RST003")], ext=".pcapng")
    def rst003(path):
        s = Session(windows_client(), linux_server())
        s.handshake(RTT)
        exchange(s)
        fin_close(s, "client")
        last = s.packets[-1]
        # The duplicate: same seq and ack as the last ACK, 200 ms later.
        s.seg("client", "A", dt=0.2, seq=last["TCP"].seq, ack=last["TCP"].ack)
        # No connection left at the server: RFC 793 reset takes its seq from the segment's ACK field.
        s.seg("server", "R", dt=RTT / 2, seq=last["TCP"].ack, ack=0)
        s.write(path, pcapng=True)

    @sample("rst003-silent-normal-close", "scapy",
            "The same session closed cleanly: FIN, FIN, last ACK, and no stray segment after it.",
            silent_for=("RST003", "RST010"))
    def rst003_silent(path):
        s = Session(windows_client(), linux_server())
        s.handshake(RTT)
        exchange(s)
        fin_close(s, "client")
        s.write(path)

    @sample("rst006-data-after-shutdown-receive", "scapy",
            "A Windows server that called shutdown(SD_RECEIVE) after answering the first request "
            "resets the connection when the client's second request arrives; it never sent a FIN.",
            expect=[fires("RST006", "client", "WSAECONNRESET")])
    def rst006(path):
        s = Session(linux_client(), windows_server())
        s.handshake(RTT)
        exchange(s, "/first")
        before = s.ends["client"].seq
        s.data("client", http_request("/second"), dt=1.5, ack_after=None)
        server = s.ends["server"]
        s.seg("server", "RA", dt=RTT / 2, seq=server.seq, ack=before)
        s.write(path)

    @sample("rst006-silent-data-acked", "scapy",
            "The same two requests to a Windows server that keeps receiving: the second is answered "
            "and both sides close with FIN.", silent_for=("RST006",))
    def rst006_silent(path):
        s = Session(linux_client(), windows_server())
        s.handshake(RTT)
        exchange(s, "/first")
        s.seg("client", "PA", dt=1.5, payload=http_request("/second"))
        s.seg("server", "A", dt=RTT / 2)
        s.data("server", http_response(900), dt=0.004, ack_after=0.0004)
        fin_close(s, "client")
        s.write(path)

    @sample("rst007-half-open-after-restart", "scapy",
            "After one exchange the server restarts and loses the connection; 20 s later the "
            "client's next request is answered by a bare RST (no ACK) from a server that no longer "
            "knows it.", expect=[fires("RST007", "client", "WSAECONNRESET")])
    def rst007(path):
        s = Session(linux_client(), linux_server())
        s.handshake(RTT)
        exchange(s, "/first")
        s.data("client", http_request("/second"), dt=20.0, ack_after=None)
        server = s.ends["server"]
        # No socket: RFC 793 takes the RST's seq from the segment's ACK field; ack 0, no ACK flag.
        s.seg("server", "R", dt=RTT / 2, seq=server.seq, ack=0, ipid=(server.ipid + 37) & 0xFFFF)
        s.write(path)

    @sample("rst007-silent-idle-then-answered", "scapy",
            "The same 20 s silence, but the server still knows the connection: the next request is "
            "answered and both close with FIN.", silent_for=("RST007", "RST008"))
    def rst007_silent(path):
        s = Session(linux_client(), linux_server())
        s.handshake(RTT)
        exchange(s, "/first")
        s.seg("client", "PA", dt=20.0, payload=http_request("/second"))
        s.seg("server", "A", dt=RTT / 2)
        s.data("server", http_response(700), dt=0.004, ack_after=0.0004)
        fin_close(s, "client")
        s.write(path)

    def banner_then_reset(path, idle: float) -> None:
        # A server-speaks-first protocol (port 7000): the server's banner, acknowledged, then
        # silence, then a RST in the server's name with consistent seq, ack, TTL and IP ID.
        s = Session(linux_client(), linux_server(port=7000))
        s.handshake(RTT)
        s.data("server", b"220 wsadiag sample service ready\r\n", dt=0.003, ack_after=0.0004)
        server = s.ends["server"]
        s.seg("server", "RA", dt=idle, seq=server.seq, ack=s.ends["client"].seq)
        s.write(path)

    @sample("rst008-reset-after-idle", "scapy",
            "The server's banner, then 360 s of silence, then a RST in the server's name: what a "
            "load balancer's idle timeout (350 s, AWS NLB) does to an idle connection.",
            expect=[fires("RST008", "client", "WSAECONNRESET")], silent_for=("RST007",))
    def rst008(path):
        banner_then_reset(path, 360.0)

    @sample("rst008-silent-short-idle", "scapy",
            "The same banner and RST, but after only 20 s of silence: an abortive close, not an "
            "idle timeout.", expect=[fires("RST001", "client", "WSAECONNRESET")], silent_for=("RST008",))
    def rst008_silent(path):
        banner_then_reset(path, 20.0)

    @sample("rst009-forged-reset-ttl-ipid", "scapy",
            "While a Windows client waits for its second response, a RST claiming to be the server "
            "arrives with TTL 64 and IP ID 54321, where the server's packets arrive with TTL 52 and "
            "IDs counting up from 23811.", expect=[fires("RST009", "client", "WSAECONNRESET")],
            silent_for=("RST002",))
    def rst009(path):
        s = Session(windows_client(), linux_server())
        s.handshake(RTT)
        exchange(s, "/first")
        s.data("client", http_request("/second"), dt=0.8, ack_after=RTT / 2)
        server = s.ends["server"]
        s.seg("server", "RA", dt=0.003, seq=server.seq, ack=s.ends["client"].seq, ttl=64, ipid=54321)
        s.write(path)

    @sample("con001-windows-connect-retry", "scapy",
            "One connect() by a Windows client to a port nothing listens on. The client's SYN (TTL "
            "128, window 64240, options MSS 1460, NOP, window scale 8, NOP, NOP, SACK permitted, no "
            "timestamps) is answered by RST/ACK (seq 0, ack = ISN + 1, window 0) from the server "
            "(TTL 52); 0.5 s later the client sends the same SYN again (same source port, same "
            "ISN, next IP ID), RST/ACK again; 0.5 s later a third time, RST/ACK a third time: 3 "
            "SYNs, 3 RSTs (frames 1 to 6). Windows retries a refused connect() this way "
            "(TcpMaxConnectRetransmissions) before connect() fails once with WSAECONNREFUSED.",
            expect=[fires("CON001", "client", "WSAECONNREFUSED")])
    def con001_windows(path):
        s = Session(windows_client(port=50112), linux_server(port=8443))
        isn = s.ends["client"].isn
        syn_options = [("MSS", 1460), ("NOP", None), ("WScale", 8), ("NOP", None), ("NOP", None), ("SAckOK", b"")]
        for attempt in range(3):
            s.seg("client", "S", dt=0.0 if attempt == 0 else 0.5 - RTT / 2, seq=isn, tcp_options=syn_options)
            s.seg("server", "RA", dt=RTT / 2, seq=0, ack=(isn + 1) & 0xFFFFFFFF, window=0)
        s.write(path)

    @sample("gen001-reset-midstream", "scapy",
            "A capture that starts in the middle of a connection (no handshake): the client sends "
            "a request, the server acknowledges it and answers with 1200 bytes, the client "
            "acknowledges, and 0.2 s later the server sends RST/ACK (same TTL as its other "
            "packets, next IP ID): a reset no specific pattern explains.",
            expect=[fires("GEN001", "client", "WSAECONNRESET")], silent_for=("GEN002", "GEN003"))
    def gen001(path):
        s = Session(linux_client(), linux_server())
        s.data("client", http_request("/status"), dt=0.0, ack_after=RTT / 2)
        s.data("server", http_response(1200), dt=0.002, ack_after=RTT / 2)
        s.seg("server", "RA", dt=0.2)
        s.write(path)

    @sample("gen002-capture-ends-while-retransmitting", "scapy",
            "After the handshake the client sends a request that the server never acknowledges; "
            "the client retransmits it twice (0.2 s, then 0.4 s later) and the capture ends: the "
            "data is unacknowledged and nobody has given up yet.",
            expect=[fires("GEN002")], silent_for=("TMO001", "GEN001", "TMO004"))
    def gen002(path):
        s = Session(linux_client(), linux_server())
        s.handshake(RTT)
        request = http_request("/slow")
        first = s.seg("client", "PA", dt=0.001, payload=request)
        for wait in (0.2, 0.4):
            s.seg("client", "PA", dt=wait, payload=request, seq=first["TCP"].seq)
        s.write(path)

    @sample("gen003-synack-then-client-rst", "scapy",
            "The client's SYN is answered by a SYN/ACK, and the client answers that with a bare "
            "RST (seq = the SYN/ACK's ack) instead of completing the handshake, as a client whose "
            "connect() was cancelled (or a SYN scanner) does.",
            expect=[fires("GEN003")], silent_for=("GEN001", "GEN004"))
    def gen003(path):
        s = Session(linux_client(), linux_server())
        s.seg("client", "S", dt=0)
        s.seg("server", "SA", dt=RTT / 2)
        s.seg("client", "R", dt=RTT / 2, ack=0)
        s.write(path)

    @sample("gen004-syn-at-capture-end", "scapy",
            "A client sends one SYN to port 8443 and the capture ends there, with no answer and no "
            "retransmission yet: the attempt is still pending.",
            expect=[fires("GEN004")], silent_for=("CON002",))
    def gen004(path):
        s = Session(linux_client(), linux_server(port=8443))
        s.seg("client", "S", dt=0)
        s.write(path)
