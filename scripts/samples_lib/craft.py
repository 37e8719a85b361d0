"""Scapy-built TCP sessions for the patterns no Linux stack produces on demand.

A session is TCP-consistent: handshake, sequence and acknowledgement numbers that follow the
bytes sent, RFC 7323 timestamps that tick with a 1 ms clock, per-sender IP ID counters, and
Ethernet headers. TTLs are the values seen at the capture point (next to the client): an
initial 128 (Windows) or 64 (Linux) less the hops in between.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import PcapNgWriter, wrpcap

# 2024-03-05 10:00:00 UTC: a fixed start so crafted samples are byte-for-byte reproducible.
EPOCH = 1709632800.0


@dataclass
class End:
    """One endpoint of a crafted session, as seen at the capture point."""
    mac: str
    ip: str
    port: int
    ttl: int
    ipid: int
    isn: int
    ts_base: int
    win: int = 64240
    seq: int = field(init=False)
    ts_last_seen: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.seq = self.isn


class Session:
    """Builds one TCP conversation packet by packet, keeping both sides' numbers honest."""

    def __init__(self, client: End, server: End, start: float = EPOCH) -> None:
        self.ends = {"client": client, "server": server}
        self.t = start
        self.start = start
        self.packets = []

    def _other(self, side: str) -> End:
        return self.ends["server" if side == "client" else "client"]

    def tsval(self, end: End) -> int:
        return end.ts_base + int((self.t - self.start) * 1000)

    def seg(self, side: str, flags: str, dt: float = 0.0005, payload: bytes = b"", *, seq: int | None = None,
            ack: int | None = None, ttl: int | None = None, ipid: int | None = None, options: bool = True,
            advance: bool = True, tcp_options: list | None = None, window: int | None = None):
        """Emit one segment from SIDE after DT seconds; SYN/FIN/data advance its sequence.
        TCP_OPTIONS and WINDOW, when given, replace the options and window it would choose."""
        self.t += dt
        me, peer = self.ends[side], self._other(side)
        opts = []
        if options and "R" not in flags:
            opts = [("NOP", None), ("NOP", None), ("Timestamp", (self.tsval(me), peer.ts_last_seen))]
            if "S" in flags:
                opts = [("MSS", 1460), ("NOP", None), ("WScale", 8), ("SAckOK", b""),
                        ("Timestamp", (self.tsval(me), peer.ts_last_seen if "A" in flags else 0))]
        if tcp_options is not None:
            opts = tcp_options
        if ipid is None:
            ipid = me.ipid
            me.ipid = (me.ipid + 1) & 0xFFFF
        the_seq = me.seq if seq is None else seq
        the_ack = (peer.seq if "A" in flags else 0) if ack is None else ack
        pkt = (Ether(src=me.mac, dst=peer.mac)
               / IP(src=me.ip, dst=peer.ip, ttl=me.ttl if ttl is None else ttl, id=ipid, flags="DF")
               / TCP(sport=me.port, dport=peer.port, flags=flags, seq=the_seq, ack=the_ack,
                     window=window if window is not None else 0 if "R" in flags and "A" not in flags else me.win,
                     options=opts)
               / payload)
        pkt.time = self.t
        self.packets.append(pkt)
        if opts:
            me_ts = self.tsval(me)
            peer.ts_last_seen = me_ts
        if advance and seq is None:
            me.seq = (me.seq + len(payload) + ("S" in flags) + ("F" in flags)) & 0xFFFFFFFF
        return pkt

    # conveniences ---------------------------------------------------------------------
    def handshake(self, rtt: float = 0.012) -> None:
        self.seg("client", "S", dt=0)
        self.seg("server", "SA", dt=rtt / 2)
        self.seg("client", "A", dt=rtt / 2)

    def data(self, side: str, payload: bytes, dt: float = 0.001, ack_after: float | None = 0.012) -> None:
        """SIDE sends PAYLOAD (split at 1448 bytes); the peer ACKs after ACK_AFTER seconds."""
        for i in range(0, len(payload), 1448):
            self.seg(side, "PA", dt=dt, payload=payload[i:i + 1448])
            dt = 0.0002
        if ack_after is not None:
            self.seg("server" if side == "client" else "client", "A", dt=ack_after)

    def write(self, path, pcapng: bool = False) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if pcapng:
            with PcapNgWriter(str(path)) as writer:
                for pkt in self.packets:
                    writer.write(pkt)
        else:
            wrpcap(str(path), self.packets)


def http_request(path: str = "/") -> bytes:
    return (b"GET " + path.encode() + b" HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: wsadiag-sample\r\n"
            b"Connection: keep-alive\r\n\r\n")


def http_response(n: int) -> bytes:
    body = (b"0123456789abcdef" * (n // 16 + 1))[:n]
    return b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " + str(n).encode() + b"\r\n\r\n" + body
