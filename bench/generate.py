"""Write a large, deterministic, realistic Ethernet pcap for benchmarking wsadiag against tshark.

Usage: python bench/generate.py OUT.pcap --packets 1000000 [--seed 1]

The same seed and packet count always give the same bytes. Headers are packed by hand with
struct (scapy needs minutes for a million packets); IPv4 header checksums and TCP, UDP, ICMP and
ICMPv6 checksums are all computed and correct. The capture point is on the clients' LAN, so a
server's reaction to a client packet appears one round trip later and a client's reaction appears
a fraction of a millisecond later.

What is in it (shares are of TCP conversations unless said otherwise):
- IPv4 and about 25% IPv6 conversations; addresses only from 192.0.2.0/24, 198.51.100.0/24,
  203.0.113.0/24 (RFC 5737) and 2001:db8::/32 (RFC 3849).
- Conversations arrive at random (Poisson) and overlap: about 1,000+ alive at once.
- Full handshakes with MSS, window-scale and SACK-permitted options; request/response exchanges
  with log-normal sizes, slow-start flights and delayed ACKs; FIN closes from either side.
- Resets of several kinds: refused SYN answered by RST/ACK (sometimes retried), abortive RST in
  the middle of a response (from either side, with the client resetting late segments),
  RST after a complete FIN exchange, a stray ACK after the close answered by a bare RST, and data
  sent after the server's FIN answered by RST.
- SYNs never answered (retransmitted with back-off), SYNs answered by ICMP host unreachable.
- Retransmitted requests (timeout), lost response segments seen as dup ACKs plus a fast
  retransmission, zero windows with zero-window probes and a window update, keep-alives.
- DNS over UDP: answered, unanswered and retried, sent to a dead resolver answered by ICMP port
  unreachable, and late answers to which the client replies ICMP port unreachable. ICMP errors
  quote the whole offending IP packet.
- Frames shorter than the Ethernet minimum are zero-padded to 60 bytes.

Statistics (conversations, peak concurrency, resets, time taken) go to stderr.
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
import struct
import sys
import time
from array import array
from pathlib import Path

# ---- protocol facts used to pack headers --------------------------------------------------
ETH_IPV4 = 0x0800  # EtherType, IEEE 802.3 / IANA
ETH_IPV6 = 0x86DD
PROTO_ICMP = 1  # IANA protocol numbers
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ICMPV6 = 58
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10  # TCP flag bits, RFC 9293 section 3.1
ICMP_UNREACH = 3  # RFC 792
ICMP_HOST_UNREACH = 1
ICMP_PORT_UNREACH = 3
ICMP6_UNREACH = 1  # RFC 4443 section 3.1
ICMP6_ADDR_UNREACH = 3
ICMP6_PORT_UNREACH = 4
ETH_MIN_FRAME = 60  # minimum Ethernet frame without FCS, IEEE 802.3
PCAP_MAGIC_USEC = 0xA1B2C3D4  # libpcap file format, microsecond timestamps
LINKTYPE_ETHERNET = 1
# MSS 1460, NOP, window scale 7, NOP, NOP, SACK permitted: what Linux sends in a SYN (RFC 9293, 7323, 2018).
SYN_OPTS_V4 = bytes.fromhex("020405b4" "01030307" "01010402")
SYN_OPTS_V6 = bytes.fromhex("020405a0" "01030307" "01010402")  # MSS 1440 for IPv6
WSCALE = 7

PCAP_HDR = struct.Struct("<IHHiIII")
REC_HDR = struct.Struct("<IIII")
IP4_TCP = struct.Struct("!BBHHHBBH4s4sHHIIBBHHH")  # IPv4 header (20) + TCP header (20)
IP6_TCP = struct.Struct("!IHBB16s16sHHIIBBHHH")  # IPv6 header (40) + TCP header (20)
IP4 = struct.Struct("!BBHHHBBH4s4s")
IP6 = struct.Struct("!IHBB16s16s")
UDP = struct.Struct("!HHHH")
ICMP = struct.Struct("!BBHI")

EPOCH_US = 1_700_000_000 * 1_000_000
MASK32 = 0xFFFFFFFF

# ---- the traffic model's knobs -------------------------------------------------------------
TCP_RATE = 270.0  # TCP conversations started per second of capture time
DNS_RATE = 300.0  # DNS lookups per second
IPV6_SHARE = 0.25
# Scenario of a TCP conversation and its weight.
SCENARIOS = (
    ("normal", 0.898),
    ("refused", 0.018),
    ("syn_timeout", 0.010),
    ("host_unreach", 0.006),
    ("abort_mid", 0.013),
    ("rst_after_fin", 0.010),
    ("stray_ack", 0.006),
    ("data_after_fin", 0.008),
    ("keepalive", 0.032),
)
# Services whose dissectors stay quiet on random payload (HTTP on 80 would flag every segment).
SERVER_PORTS = (443, 443, 443, 443, 8443, 993, 22, 5432, 3306, 6379)
POOL_SIZE = 1 << 18  # bytes of payload material; segments are slices of it


def _fold(s: int) -> int:
    """Fold a one's complement sum to 16 bits (RFC 1071)."""
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def _sum16(data: bytes) -> int:
    """One's complement sum of big-endian 16-bit words of data, folded (for the rare packets)."""
    if len(data) & 1:
        data += b"\0"
    a = array("H", data)
    if sys.byteorder == "little":
        a.byteswap()
    return _fold(sum(a))


def _words(addr: bytes) -> int:
    """Sum of an address's big-endian 16-bit words (for pseudo-headers)."""
    return _sum16(addr)


class Payload:
    """Deterministic payload bytes with prefix word sums, so a segment's checksum costs O(1)."""

    def __init__(self, rng: random.Random) -> None:
        self.data = rng.randbytes(POOL_SIZE)
        words = struct.unpack(f"!{POOL_SIZE // 2}H", self.data)
        prefix = [0] * (len(words) + 1)
        s = 0
        for i, w in enumerate(words):
            s += w
            prefix[i + 1] = s
        self.prefix = prefix
        self.span = POOL_SIZE - 4096

    def slice(self, key: int, length: int) -> tuple[bytes, int]:
        """Bytes for a segment identified by key (e.g. its sequence number) and their word sum."""
        off = (key % self.span) & ~1
        end = off + length
        p = self.prefix
        if length & 1:
            s = p[(end - 1) >> 1] - p[off >> 1] + (self.data[end - 1] << 8)
        else:
            s = p[end >> 1] - p[off >> 1]
        return self.data[off:end], s


class Hosts:
    """Addresses, MACs and per-server traits, all from the documentation ranges."""

    def __init__(self, rng: random.Random) -> None:
        self.clients4 = [bytes((192, 0, 2, i)) for i in range(10, 250)] + [
            bytes((198, 51, 100, i)) for i in range(10, 250)
        ]
        self.servers4 = [bytes((203, 0, 113, i)) for i in range(10, 230)]
        v6c = bytes.fromhex("20010db8000100000000000000000000")
        v6s = bytes.fromhex("20010db8000200000000000000000000")
        self.clients6 = [v6c[:14] + struct.pack("!H", 0x100 + i) for i in range(160)]
        self.servers6 = [v6s[:14] + struct.pack("!H", 0x10 + i) for i in range(80)]
        self.router4 = {192: bytes((192, 0, 2, 1)), 198: bytes((198, 51, 100, 1))}
        self.far_router4 = bytes((203, 0, 113, 254))
        self.far_router6 = bytes.fromhex("20010db80002000000000000000000fe")
        self.resolver4 = bytes((192, 0, 2, 53))
        self.dead_resolver4 = bytes((192, 0, 2, 54))
        self.resolver6 = bytes.fromhex("20010db8005300000000000000000053")
        self.dead_resolver6 = bytes.fromhex("20010db8005300000000000000000054")
        self.gw_mac = bytes.fromhex("020000ff0001")
        self.server_port = {}
        self.server_rtt = {}
        self.server_ttl = {}
        for s in self.servers4 + self.servers6:
            self.server_port[s] = rng.choice(SERVER_PORTS)
            self.server_rtt[s] = int(rng.lognormvariate(math.log(30_000), 0.7)) + 2_000  # microseconds
            self.server_ttl[s] = rng.choice((44, 49, 52, 56, 58, 117, 240))
        self.next_port = {c: rng.randrange(32768, 60000) for c in self.clients4 + self.clients6}

    def mac(self, addr: bytes) -> bytes:
        return b"\x02\x00" + addr[-4:]

    def ephemeral(self, client: bytes) -> int:
        """Next ephemeral port of a client, Linux range 32768-60999, so no 4-tuple repeats."""
        p = self.next_port[client]
        self.next_port[client] = 32768 if p >= 60999 else p + 1
        return p


class Out:
    """Collects one conversation's packets as (time in microseconds, frame bytes)."""

    __slots__ = ("pkts",)

    def __init__(self) -> None:
        self.pkts: list[tuple[int, bytes]] = []


def _pad(frame: bytes) -> bytes:
    if len(frame) < ETH_MIN_FRAME:
        return frame + bytes(ETH_MIN_FRAME - len(frame))
    return frame


def ip_packet(src: bytes, dst: bytes, proto: int, body: bytes, ttl: int, ip_id: int) -> bytes:
    """An IPv4 or IPv6 packet around an already checksummed transport body."""
    if len(src) == 4:
        hdr = IP4.pack(0x45, 0, 20 + len(body), ip_id & 0xFFFF, 0x4000, ttl, proto, 0, src, dst)
        ck = ~_sum16(hdr) & 0xFFFF
        return hdr[:10] + struct.pack("!H", ck) + hdr[12:] + body
    return IP6.pack(0x60000000, len(body), proto, ttl, src, dst) + body


def pseudo_sum(src: bytes, dst: bytes, proto: int, length: int) -> int:
    """Sum of the pseudo-header words (RFC 9293 section 3.1, RFC 8200 section 8.1)."""
    return _words(src) + _words(dst) + proto + length


def udp_packet(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes, ttl: int, ip_id: int) -> bytes:
    ulen = 8 + len(payload)
    s = pseudo_sum(src, dst, PROTO_UDP, ulen) + sport + dport + ulen + _sum16(payload)
    ck = ~_fold(s) & 0xFFFF or 0xFFFF  # 0 means "no checksum" in UDP, RFC 768
    return ip_packet(src, dst, PROTO_UDP, UDP.pack(sport, dport, ulen, ck) + payload, ttl, ip_id)


def icmp_error(src: bytes, dst: bytes, quoted: bytes, ttl: int, ip_id: int, v4code: int, v6code: int) -> bytes:
    """An ICMP or ICMPv6 destination unreachable quoting the offending IP packet."""
    if len(src) == 4:
        quoted = quoted[:548]  # stay within 576 bytes, RFC 1812 section 4.3.2.3
        s = _fold(_sum16(ICMP.pack(ICMP_UNREACH, v4code, 0, 0)) + _sum16(quoted))
        body = ICMP.pack(ICMP_UNREACH, v4code, ~s & 0xFFFF, 0) + quoted
        return ip_packet(src, dst, PROTO_ICMP, body, ttl, ip_id)
    quoted = quoted[:1232]  # stay within the IPv6 minimum MTU, RFC 4443 section 2.4
    length = 8 + len(quoted)
    s = _fold(pseudo_sum(src, dst, PROTO_ICMPV6, length) + (ICMP6_UNREACH << 8 | v6code) + _sum16(quoted))
    body = ICMP.pack(ICMP6_UNREACH, v6code, ~s & 0xFFFF, 0) + quoted
    return ip_packet(src, dst, PROTO_ICMPV6, body, ttl, ip_id)


class Tcp:
    """One TCP conversation: builds all its packets in time order when created."""

    def __init__(self, gen: "Generator", t: int, v6: bool) -> None:
        rng = gen.rng
        h = gen.hosts
        self.gen = gen
        self.rng = rng
        self.pay = gen.payload
        if v6:
            client = rng.choice(h.clients6)
            server = rng.choice(h.servers6)
        else:
            client = rng.choice(h.clients4)
            server = rng.choice(h.servers4)
        self.v6 = v6
        self.addr = (client, server)
        self.ports = (h.ephemeral(client), h.server_port[server])
        self.rtt = max(1_000, int(h.server_rtt[server] * rng.uniform(0.8, 1.3)))
        self.gap = rng.choice((12, 12, 25, 60, 120))  # microseconds per full segment: the bottleneck
        self.mss = 1440 if v6 else 1460
        self.ttl = (64, h.server_ttl[server])
        self.ip_id = [rng.randrange(65536), rng.randrange(65536)]
        cmac = h.mac(client)
        self.eth = (h.gw_mac + cmac + struct.pack("!H", ETH_IPV6 if v6 else ETH_IPV4),
                    cmac + h.gw_mac + struct.pack("!H", ETH_IPV6 if v6 else ETH_IPV4))
        # Constant parts of the checksums for each direction.
        if v6:
            self.psum = (_words(client) + _words(server) + PROTO_TCP,) * 2
            self.ipsum = (0, 0)
        else:
            base = _words(client) + _words(server)
            self.psum = (base + PROTO_TCP, base + PROTO_TCP)
            self.ipsum = tuple(base + 0x4500 + 0x4000 + (ttl << 8 | PROTO_TCP) for ttl in self.ttl)
        self.nxt = [rng.getrandbits(32), rng.getrandbits(32)]
        self.wnd = [rng.choice((1024, 2048, 4096, 8192)), rng.choice((502, 1024, 2048))]
        self.cwnd = [10, 10]
        self.last = [0, 0]
        self.out: list[tuple[int, bytes]] = []
        self.rsts = 0

    # -- packet building (the hot path) --
    def pkt(self, t: int, side: int, flags: int, seq: int, ack: int, win: int, plen: int = 0,
            opts: bytes = b"") -> None:
        """Append one TCP frame sent by side (0 client, 1 server) seen at time t."""
        # A side's packets leave in the order they are built, whatever the random delays say.
        if t <= self.last[side]:
            t = self.last[side] + 1
        self.last[side] = t
        seq &= MASK32
        ack &= MASK32
        if plen:
            data, dsum = self.pay.slice(seq, plen)
        else:
            data, dsum = b"", 0
        if opts:
            data = opts + data
            dsum += _sum16(opts)
        sport = self.ports[side]
        dport = self.ports[1 - side]
        doff = (5 + len(opts) // 4) << 4
        tlen = 20 + len(opts) + plen
        s = (self.psum[side] + tlen + sport + dport + (seq >> 16) + (seq & 0xFFFF) + (ack >> 16)
             + (ack & 0xFFFF) + (doff << 8 | flags) + win + dsum)
        s = (s & 0xFFFF) + (s >> 16)
        s = (s & 0xFFFF) + (s >> 16)
        ck = ~((s & 0xFFFF) + (s >> 16)) & 0xFFFF
        ip_id = self.ip_id[side] = (self.ip_id[side] + 1) & 0xFFFF
        src = self.addr[side]
        dst = self.addr[1 - side]
        if self.v6:
            hdr = IP6_TCP.pack(0x60000000, tlen, PROTO_TCP, self.ttl[side], src, dst,
                               sport, dport, seq, ack, doff, flags, win, ck, 0)
            self.out.append((t, self.eth[side] + hdr + data))
            return
        total = 20 + tlen
        i = self.ipsum[side] + total + ip_id
        i = (i & 0xFFFF) + (i >> 16)
        ick = ~((i & 0xFFFF) + (i >> 16)) & 0xFFFF
        hdr = IP4_TCP.pack(0x45, 0, total, ip_id, 0x4000, self.ttl[side], PROTO_TCP, ick, src, dst,
                           sport, dport, seq, ack, doff, flags, win, ck, 0)
        frame = self.eth[side] + hdr + data
        if len(frame) < ETH_MIN_FRAME:
            frame += bytes(ETH_MIN_FRAME - len(frame))
        self.out.append((t, frame))

    def react(self, side: int) -> int:
        """Delay from a packet seen at the capture point to side's answer seen there."""
        if side == 1:
            return self.rtt + self.rng.randrange(50, 400)
        return self.rng.randrange(30, 250)

    def ack_from(self, t: int, side: int, win: int | None = None) -> None:
        self.pkt(t, side, ACK, self.nxt[side], self.nxt[1 - side], self.wnd[side] if win is None else win)

    def rst(self, t: int, side: int, with_ack: bool = True) -> None:
        if with_ack:
            self.pkt(t, side, RST | ACK, self.nxt[side], self.nxt[1 - side], 0)
        else:
            self.pkt(t, side, RST, self.nxt[side], 0, 0)
        self.rsts += 1

    # -- building blocks --
    def handshake(self, t: int) -> int:
        opts = SYN_OPTS_V6 if self.v6 else SYN_OPTS_V4
        self.pkt(t, 0, SYN, self.nxt[0], 0, 64240, opts=opts)
        self.nxt[0] += 1
        t += self.react(1)
        self.pkt(t, 1, SYN | ACK, self.nxt[1], self.nxt[0], 65160 if not self.v6 else 64800, opts=opts)
        self.nxt[1] += 1
        t += self.react(0)
        self.ack_from(t, 0)
        return t

    def send(self, t: int, s: int, n: int, piggyback: bool = False, lose: bool = False,
             zero_win: bool = False, abort_after: int = -1) -> int:
        """Send n bytes from side s in slow-start flights; returns the time the last ACK was seen.

        piggyback: the receiver's last ACK rides on its next data, so none is emitted; the returned
        time is then when the receiver has the whole message. lose: one segment of a flight is lost
        before the capture point (dup ACKs, then a fast retransmission). zero_win: the receiver's
        window drops to zero after one flight (zero-window probes, then a window update).
        abort_after: after this many flights the client aborts with RST (-1: never).
        Returns -1 when the transfer was aborted.
        """
        r = 1 - s
        mss = self.mss
        gap = self.gap
        rng = self.rng
        cwnd = self.cwnd[s]
        remaining = n
        flight_no = 0
        last = t
        while remaining > 0:
            k = min(cwnd, -(-remaining // mss))
            lost = -1
            if lose and r == 0 and k >= 6:
                lost = rng.randrange(0, k - 4)
                lose = False
            seg_t = t
            lost_seq = 0
            dup_times = []
            for i in range(k):
                plen = mss if remaining > mss else remaining
                remaining -= plen
                seg_t += gap * plen // mss + 1
                flags = ACK | PSH if (remaining == 0 or i == k - 1) else ACK
                if i == lost:
                    lost_seq = self.nxt[s]
                elif lost >= 0 and i > lost:
                    self.pkt(seg_t, s, flags, self.nxt[s], self.nxt[r], self.wnd[s], plen)
                else:
                    self.pkt(seg_t, s, flags, self.nxt[s], self.nxt[r], self.wnd[s], plen)
                self.nxt[s] += plen
                if lost >= 0 and i > lost:
                    # Each segment after the hole gets an immediate duplicate ACK for the hole.
                    at = seg_t + self.react(r)
                    self.pkt(at, r, ACK, self.nxt[r], lost_seq, self.wnd[r])
                    dup_times.append(at)
                    last = at
                elif (i & 1 or remaining == 0 or i == k - 1) and not (lost >= 0 and i == lost):
                    if piggyback and remaining == 0:
                        last = seg_t + self.react(r)
                    else:
                        last = seg_t + self.react(r)
                        win = 0 if (zero_win and (remaining == 0 or i == k - 1) and flight_no >= 1) else None
                        self.ack_from(last, r, win)
                        if win == 0:
                            last = self._zero_window(last, s)
                            zero_win = False
            if lost >= 0:
                # Fast retransmission after the third duplicate ACK, then one ACK covering all.
                rt = dup_times[2] + self.react(s)
                plen = mss
                self.pkt(rt, s, ACK, lost_seq, self.nxt[r], self.wnd[s], plen)
                last = rt + self.react(r)
                self.ack_from(last, r)
                cwnd = max(cwnd // 2, 2)
            flight_no += 1
            if flight_no == abort_after and remaining > 0:
                # The client's application gives up: RST/ACK, then bare RSTs for segments in flight.
                at = last + rng.randrange(1_000, 200_000)
                self.rst(at, 0)
                late = at + 10
                for _ in range(rng.randrange(0, 3)):
                    late += gap + 5
                    plen = min(mss, remaining)
                    remaining -= plen
                    if plen <= 0:
                        break
                    self.pkt(late, s, ACK, self.nxt[s], self.nxt[r], self.wnd[s], plen)
                    self.nxt[s] += plen
                    self.pkt(late + self.react(r), r, RST, self.nxt[r], 0, 0)
                    self.rsts += 1
                    late += self.react(r)
                return -1
            t = last + self.react(s)
            cwnd = min(cwnd * 2, 64)
        self.cwnd[s] = cwnd
        return last

    def _zero_window(self, t: int, s: int) -> int:
        """Zero-window probes of one byte from s with exponential back-off, then a window update."""
        r = 1 - s
        rng = self.rng
        wait = 200_000 + self.rtt
        at = t
        for _ in range(rng.randrange(1, 5)):
            at += wait
            self.pkt(at, s, ACK, self.nxt[s], self.nxt[r], self.wnd[s], 1)
            self.ack_from(at + self.react(r), r, 0)
            wait *= 2
        at += self.react(r) + rng.randrange(5_000, 150_000)
        self.ack_from(at, r)
        return at

    def syn_retries(self, t: int, tries: int) -> int:
        """A SYN and its retransmissions (1, 2, 4 s back-off, RFC 6298 initial RTO of 1 s)."""
        opts = SYN_OPTS_V6 if self.v6 else SYN_OPTS_V4
        rto = 1_000_000
        for i in range(tries):
            self.pkt(t, 0, SYN, self.nxt[0], 0, 64240, opts=opts)
            if i < tries - 1:
                t += rto
                rto *= 2
        return t

    def fin_close(self, t: int, first: int) -> int:
        """An orderly close begun by side first; returns the time of the last packet."""
        other = 1 - first
        self.pkt(t, first, FIN | ACK, self.nxt[first], self.nxt[other], self.wnd[first])
        self.nxt[first] += 1
        t += self.react(other)
        if other == 1 or self.rng.random() < 0.5:
            # The other side's FIN rides with its ACK (no data left to send).
            self.pkt(t, other, FIN | ACK, self.nxt[other], self.nxt[first], self.wnd[other])
        else:
            self.ack_from(t, other)
            t += self.rng.randrange(100, 5_000)
            self.pkt(t, other, FIN | ACK, self.nxt[other], self.nxt[first], self.wnd[other])
        self.nxt[other] += 1
        t += self.react(first)
        self.ack_from(t, first)
        return t

    # -- whole conversations --
    def build(self, t: int, scenario: str) -> None:
        rng = self.rng
        if scenario == "syn_timeout":
            self.syn_retries(t, rng.randrange(2, 5))
            return
        if scenario == "refused":
            # Windows retries a refused connect twice, 0.5 s apart; Linux does not.
            for i in range(rng.choice((1, 1, 3))):
                self.pkt(t, 0, SYN, self.nxt[0], 0, 64240, opts=SYN_OPTS_V6 if self.v6 else SYN_OPTS_V4)
                at = t + self.react(1)
                self.pkt(at, 1, RST | ACK, 0, self.nxt[0] + 1, 0)
                self.rsts += 1
                t = at + 500_000
            return
        if scenario == "host_unreach":
            tries = rng.randrange(1, 3)
            rto = 1_000_000
            for _ in range(tries):
                self.syn_retries(t, 1)
                syn_ip = self.out[-1][1][14:]
                at = t + self.rtt // 2 + rng.randrange(100, 3_000)
                h = self.gen.hosts
                router = h.far_router6 if self.v6 else h.far_router4
                ip = icmp_error(router, self.addr[0], syn_ip, 250, rng.randrange(65536),
                                ICMP_HOST_UNREACH, ICMP6_ADDR_UNREACH)
                self.out.append((at, _pad(self.eth[1] + ip)))
                t += rto
                rto *= 2
            return

        t = self.handshake(t)
        exchanges = 1 + min(int(rng.expovariate(1 / 1.2)), 40)
        if scenario == "abort_mid":
            exchanges = rng.randrange(1, 3)
        for x in range(exchanges):
            t += rng.randrange(50, 2_000) if x == 0 else int(rng.expovariate(1 / 400_000))
            # Request from the client.
            if rng.random() < 0.03:
                req = int(rng.lognormvariate(10, 1.5)) + 1
            else:
                req = min(int(rng.lognormvariate(6, 0.8)) + 40, self.mss)
            if req <= self.mss and rng.random() < 0.02:
                # Request retransmitted after the retransmission timeout (min RTO 200 ms, Linux).
                seq = self.nxt[0]
                self.pkt(t, 0, ACK | PSH, seq, self.nxt[1], self.wnd[0], req)
                self.nxt[0] += req
                t += 200_000 + self.rtt + rng.randrange(0, 50_000)
                self.pkt(t, 0, ACK | PSH, seq, self.nxt[1], self.wnd[0], req)
                t += self.react(1)
            else:
                t = self.send(t, 0, req, piggyback=req <= 2 * self.mss)
            t += rng.randrange(100, 20_000)  # server think time
            # Response from the server.
            resp = min(int(rng.lognormvariate(8.2, 1.6)) + 1, 8_000_000)
            abort = -1
            if scenario == "abort_mid" and x == exchanges - 1:
                if rng.random() < 0.35:
                    # The server aborts before answering.
                    t += rng.randrange(1_000, 3_000_000)
                    self.rst(t, 1)
                    return
                resp = max(resp, 40 * self.mss)
                abort = rng.randrange(1, 4)
            t = self.send(t, 1, resp, lose=rng.random() < 0.04, zero_win=resp > 60_000 and rng.random() < 0.15,
                          abort_after=abort)
            if t < 0:
                return
        if scenario == "keepalive":
            for _ in range(rng.randrange(2, 6)):
                t += rng.randrange(1_000_000, 3_000_000)
                self.pkt(t, 0, ACK, self.nxt[0] - 1, self.nxt[1], self.wnd[0])
                t += self.react(1)
                self.ack_from(t, 1)
        if rng.random() < 0.03:
            return  # still open when the capture ends (or closed beyond it)
        if scenario == "data_after_fin":
            # Server idle timeout closes; the client had a new request on its way: RST.
            t += rng.randrange(500_000, 5_000_000)
            self.pkt(t, 1, FIN | ACK, self.nxt[1], self.nxt[0], self.wnd[1])
            self.nxt[1] += 1
            t += rng.randrange(30, 200)
            req = min(int(rng.lognormvariate(6, 0.8)) + 40, self.mss)
            self.pkt(t, 0, ACK | PSH, self.nxt[0], self.nxt[1], self.wnd[0], req)
            self.nxt[0] += req
            t += self.react(1)
            self.pkt(t, 1, RST, self.nxt[1], 0, 0)
            self.rsts += 1
            return
        server_first = rng.random() < 0.35
        t += rng.randrange(2_000_000, 16_000_000) if server_first else rng.randrange(100, 300_000)
        t = self.fin_close(t, 1 if server_first else 0)
        if scenario == "rst_after_fin":
            # SO_LINGER 0 / late data after both FINs: a reset follows the orderly close.
            t += rng.randrange(20, 2_000)
            self.pkt(t, 1, RST | ACK, self.nxt[1], self.nxt[0], 0) if rng.random() < 0.5 else \
                self.pkt(t, 0, RST | ACK, self.nxt[0], self.nxt[1], 0)
            self.rsts += 1
        elif scenario == "stray_ack":
            # A late ACK after the server forgot the connection: a bare RST (RFC 9293 3.10.7.1).
            t += rng.randrange(500_000, 20_000_000)
            self.pkt(t, 0, ACK, self.nxt[0], self.nxt[1], self.wnd[0])
            t += self.react(1)
            self.pkt(t, 1, RST, self.nxt[1], 0, 0)
            self.rsts += 1


class Generator:
    """Schedules conversations and DNS lookups and writes their packets merged by time."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.hosts = Hosts(self.rng)
        self.payload = Payload(self.rng)
        self.dns_id = self.rng.randrange(65536)
        self.stats = {"tcp": 0, "dns": 0, "rst": 0, "icmp": 0}
        self.spans: list[tuple[int, int]] = []
        self.scen_names = [s for s, _ in SCENARIOS]
        self.scen_weights = [w for _, w in SCENARIOS]

    def tcp(self, t: int) -> list[tuple[int, bytes]]:
        rng = self.rng
        conv = Tcp(self, t, rng.random() < IPV6_SHARE)
        scenario = rng.choices(self.scen_names, self.scen_weights)[0]
        conv.build(t, scenario)
        out = conv.out
        out.sort(key=lambda p: p[0])
        self.stats["tcp"] += 1
        self.stats["rst"] += conv.rsts
        self.spans.append((out[0][0], out[-1][0]))
        return out

    def dns(self, t: int) -> list[tuple[int, bytes]]:
        """One DNS lookup over UDP and whatever answered it (or did not)."""
        rng = self.rng
        h = self.hosts
        v6 = rng.random() < IPV6_SHARE
        client = rng.choice(h.clients6 if v6 else h.clients4)
        kind = rng.random()
        dead = kind < 0.04
        server = (h.dead_resolver6 if dead else h.resolver6) if v6 else (h.dead_resolver4 if dead else h.resolver4)
        et = struct.pack("!H", ETH_IPV6 if v6 else ETH_IPV4)
        to_srv = h.gw_mac + h.mac(client) + et
        to_cli = h.mac(client) + h.gw_mac + et
        sport = h.ephemeral(client)
        self.dns_id = (self.dns_id + 1) & 0xFFFF
        name = b"".join(bytes((len(p),)) + p for p in
                        (b"host%d" % rng.randrange(5000), rng.choice((b"example", b"test", b"invalid")),
                         b"com")) + b"\0"
        qtype = 28 if rng.random() < 0.4 else 1  # AAAA or A, RFC 3596 / 1035
        question = name + struct.pack("!HH", qtype, 1)
        query = struct.pack("!HHHHHH", self.dns_id, 0x0100, 1, 0, 0, 0) + question
        out = []
        ipid = rng.randrange(65536)
        q_ip = udp_packet(client, server, sport, 53, query, 64, ipid)
        out.append((t, _pad(to_srv + q_ip)))
        rtt = rng.randrange(300, 40_000)
        if dead:
            # Nothing listens on port 53 there: ICMP port unreachable quoting the query.
            ip = icmp_error(server, client, q_ip, 64, rng.randrange(65536), ICMP_PORT_UNREACH, ICMP6_PORT_UNREACH)
            out.append((t + rtt, _pad(to_cli + ip)))
            self.stats["icmp"] += 1
        else:
            if kind < 0.07:
                # Unanswered; the stub resolver retries after its 1 s... 5 s timeout.
                t += rng.choice((1_000_000, 2_000_000, 5_000_000))
                q_ip = udp_packet(client, server, sport, 53, query, 64, ipid + 1)
                out.append((t, _pad(to_srv + q_ip)))
            late = kind > 0.975
            if late:
                rtt += rng.randrange(2_000_000, 6_000_000)  # after the client gave up and closed the socket
            if rng.random() < 0.08:
                flags, answers = 0x8183, b""  # NXDOMAIN
                count = 0
            else:
                flags = 0x8180
                count = rng.randrange(1, 4)
                rdata = (b"\x20\x01\x0d\xb8" + rng.randbytes(12)) if qtype == 28 else bytes(
                    (203, 0, 113, rng.randrange(1, 255)))
                answers = b"".join(b"\xc0\x0c" + struct.pack("!HHIH", qtype, 1, 300, len(rdata)) + rdata
                                   for _ in range(count))
            resp = struct.pack("!HHHHHH", self.dns_id, flags, 1, count, 0, 0) + question + answers
            r_ip = udp_packet(server, client, 53, sport, resp, 64, rng.randrange(65536))
            out.append((t + rtt, _pad(to_cli + r_ip)))
            if late:
                ip = icmp_error(client, server, r_ip, 64, rng.randrange(65536), ICMP_PORT_UNREACH,
                                ICMP6_PORT_UNREACH)
                out.append((t + rtt + rng.randrange(20, 200), _pad(to_srv + ip)))
                self.stats["icmp"] += 1
        self.stats["dns"] += 1
        return out

    def write(self, path: Path, packets: int) -> int:
        """Write packets frames to path; returns the number of bytes written."""
        rng = self.rng
        heap: list[tuple[int, int, bytes]] = []
        counter = 0
        next_tcp = EPOCH_US + int(rng.expovariate(TCP_RATE) * 1e6)
        next_dns = EPOCH_US + int(rng.expovariate(DNS_RATE) * 1e6)
        written = 0
        size = PCAP_HDR.size
        rec = REC_HDR.pack
        push = heapq.heappush
        pop = heapq.heappop
        with open(path, "wb", buffering=1 << 20) as f:
            f.write(PCAP_HDR.pack(PCAP_MAGIC_USEC, 2, 4, 0, 0, 65535, LINKTYPE_ETHERNET))
            buf: list[bytes] = []
            while written < packets:
                start = min(next_tcp, next_dns)
                while heap and heap[0][0] <= start and written < packets:
                    t, _, frame = pop(heap)
                    n = len(frame)
                    buf.append(rec(t // 1_000_000, t % 1_000_000, n, n))
                    buf.append(frame)
                    size += 16 + n
                    written += 1
                    if len(buf) >= 8192:
                        f.write(b"".join(buf))
                        buf.clear()
                if written >= packets:
                    break
                if next_tcp <= next_dns:
                    new = self.tcp(next_tcp)
                    next_tcp += int(rng.expovariate(TCP_RATE) * 1e6) + 1
                else:
                    new = self.dns(next_dns)
                    next_dns += int(rng.expovariate(DNS_RATE) * 1e6) + 1
                for t, frame in new:
                    counter += 1
                    push(heap, (t, counter, frame))
            f.write(b"".join(buf))
        self.last_time = t
        return size

    def max_concurrent(self, until: int) -> int:
        """Most TCP conversations alive at once (first to last packet), within the written span."""
        events = []
        for a, b in self.spans:
            if a <= until:
                events.append((a, 1))
                events.append((min(b, until), -1))
        events.sort()
        cur = best = 0
        for _, d in events:
            cur += d
            best = max(best, cur)
        return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="pcap file to write")
    ap.add_argument("--packets", type=int, default=1_000_000, help="number of frames (default 1000000)")
    ap.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    ap.add_argument("--quiet", action="store_true", help="no statistics on stderr")
    args = ap.parse_args(argv)
    if args.packets < 1:
        ap.error("--packets must be at least 1")
    began = time.perf_counter()
    gen = Generator(args.seed)
    size = gen.write(args.out, args.packets)
    took = time.perf_counter() - began
    if not args.quiet:
        s = gen.stats
        span = (gen.last_time - EPOCH_US) / 1e6
        print(f"{args.out}: {args.packets} packets, {size / 1e6:.1f} MB, {span:.1f} s of traffic, "
              f"written in {took:.1f} s", file=sys.stderr)
        print(f"TCP conversations started: {s['tcp']}, max alive at once: {gen.max_concurrent(gen.last_time)}, "
              f"RSTs built: {s['rst']}, DNS lookups: {s['dns']}, ICMP errors for DNS: {s['icmp']}",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
