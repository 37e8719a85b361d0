"""Protocol facts shared by the decoder, the flow tracker and the rules: one table each."""

from __future__ import annotations

# TCP header flag bits (RFC 9293 section 3.1; ECE/CWR from RFC 3168).
FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10
URG = 0x20
ECE = 0x40
CWR = 0x80

TCP_FLAG_NAMES: dict[str, int] = {
    "FIN": FIN, "SYN": SYN, "RST": RST, "PSH": PSH,
    "ACK": ACK, "URG": URG, "ECE": ECE, "CWR": CWR,
}

# TCP options seen on a segment, as bits of Packet.tcp_opts (kinds from RFC 9293, 7323, 2018).
OPT_MSS = 0x01  # kind 2
OPT_WSCALE = 0x02  # kind 3
OPT_SACK_PERM = 0x04  # kind 4
OPT_SACK = 0x08  # kind 5
OPT_TIMESTAMP = 0x10  # kind 8

# IP protocol numbers (IANA "Assigned Internet Protocol Numbers").
IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_ICMPV6 = 58

PROTO_NAMES: dict[int, str] = {IPPROTO_TCP: "tcp", IPPROTO_UDP: "udp", IPPROTO_ICMP: "icmp", IPPROTO_ICMPV6: "icmp"}


def flag_string(flags: int) -> str:
    """Flags as Wireshark lists them, e.g. 'SYN, ACK'."""
    return ", ".join(name for name, bit in TCP_FLAG_NAMES.items() if flags & bit)
