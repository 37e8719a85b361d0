"""Samples of traffic as Windows' own tools and capture appliances deliver it.

One refusal, three ways: a Windows server's pktmon ETL file with its drop event (the SYN dropped at
TCP/IPv4 with INET_EndpointNotFound, the RST/ACK sent back), and the same packets as a switch
mirrors them to an appliance inside ERSPAN type II and inside plain GRE with a key. All are crafted
with scapy (no Windows host or switch here); the wire packets are identical in the three.
"""

from __future__ import annotations

from scapy.contrib.erspan import ERSPAN_II
from scapy.layers.inet import GRE, IP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from analyzer.capture import etwfacts as W

from .craft import End, Session
from .etlwrite import EtlWriter

CLIENT_MAC, SERVER_MAC = "02:00:5e:10:00:33", "02:00:5e:10:00:50"
CLIENT_IP, SERVER_IP = "192.0.2.33", "192.0.2.50"  # same LAN: the server's capture sees the client's SYN
SQL_PORT = 1433
# The mirror session: switch and appliance addresses, as an ERSPAN/GRE tunnel carries them.
SWITCH, APPLIANCE = ("02:00:5e:10:00:fe", "198.51.100.2"), ("02:00:5e:10:00:aa", "198.51.100.9")

TCPIP, MINIPORT = 66, 3  # component ids in the ETL file


def refused_connects():
    """A Windows client's connect to a port with no listener: SYN, RST/ACK, retried twice."""
    s = Session(
        End(CLIENT_MAC, CLIENT_IP, 50110, ttl=128, ipid=0x2A00, isn=0x6D10A000, ts_base=1000),
        End(SERVER_MAC, SERVER_IP, SQL_PORT, ttl=128, ipid=0x0F00, isn=0, ts_base=2000),
    )
    for dt in (0.0, 0.5, 1.0):  # Windows retries a refused connect twice, 0.5 s then 1 s later
        s.seg("client", "S", dt=dt, seq=0x6D10A000, advance=False)
        s.seg("server", "RA", dt=0.0003, seq=0, ack=0x6D10A001)
    return s.packets


def write_pktmon(path, packets) -> None:
    """The server's pktmon capture: each SYN in at the NIC and dropped at TCP/IPv4; each RST out."""
    w = EtlWriter(float(packets[0].time))
    w.pktmon_component(MINIPORT, W.MINIPORT, "netvsc.sys", "Microsoft Hyper-V Network Adapter")
    w.pktmon_component(TCPIP, 11, "tcpip.sys", "TCP/IPv4 - L3/L4")
    for group, pkt in enumerate(packets, 1):
        t, frame = float(pkt.time), bytes(pkt)
        if pkt.src == CLIENT_MAC:
            w.pktmon_packet(t, frame, group=group, component=MINIPORT, direction="in")
            w.pktmon_drop(t + 2e-5, frame, group=group, component=TCPIP, reason=1204, appearance=2)
        else:
            w.pktmon_packet(t - 2e-5, frame, group=group, component=TCPIP, direction="out")
            w.pktmon_packet(t, frame, group=group, component=MINIPORT, direction="out", appearance=2)
    path.write_bytes(w.to_bytes(cpus=2, compress=True))


def mirrored(packets, wrap):
    out = []
    for i, pkt in enumerate(packets):
        outer = Ether(src=SWITCH[0], dst=APPLIANCE[0]) / IP(src="198.51.100.1", dst=APPLIANCE[1], id=i)
        m = outer / wrap(i) / pkt
        m.time = pkt.time
        out.append(m)
    return out


def register(sample, fires) -> None:
    """Add these samples to make_samples.py's registry."""

    @sample("con001-windows-refusal-pktmon", "scapy",
            "A Windows server's pktmon capture (ETL, compressed buffers) of one refused connect() to port 1433 "
            "(the client re-sends the same SYN twice after each RST): "
            "each SYN is logged in at the NIC and dropped at TCP/IPv4 with INET_EndpointNotFound, the "
            "RST/ACK logged going out; the finding names the drop reason.",
            expect=[fires("CON001", "client", "WSAECONNREFUSED")], silent_for=["CON004"], ext=".etl")
    def pktmon(path):
        write_pktmon(path, refused_connects())

    @sample("con001-refused-erspan", "scapy",
            "The same refused connects as mirrored by a switch to a capture appliance inside ERSPAN "
            "type II (GRE with sequence numbers): the inner conversation is diagnosed.",
            expect=[fires("CON001", "client", "WSAECONNREFUSED")], silent_for=["CON004"])
    def erspan(path):
        wrpcap(str(path), mirrored(refused_connects(),
                                   lambda i: GRE(proto=0x88BE, seqnum_present=1, sequence_number=i)
                                   / ERSPAN_II(session_id=7)))

    @sample("con001-refused-gre", "scapy",
            "The same refused connects tunnelled in plain GRE with a key (transparent Ethernet bridging).",
            expect=[fires("CON001", "client", "WSAECONNREFUSED")], silent_for=["CON004"])
    def gre(path):
        wrpcap(str(path), mirrored(refused_connects(), lambda i: GRE(proto=0x6558, key_present=1, key=42)))
