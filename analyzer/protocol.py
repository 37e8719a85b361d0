"""Protocol facts shared by the decoder, the flow tracker and the rules: one table each."""

from __future__ import annotations

from typing import Final

# TCP header flag bits (RFC 9293 section 3.1; ECE/CWR from RFC 3168).
FIN: Final = 0x01
SYN: Final = 0x02
RST: Final = 0x04
PSH: Final = 0x08
ACK: Final = 0x10
URG: Final = 0x20
ECE: Final = 0x40
CWR: Final = 0x80

TCP_FLAG_NAMES: dict[str, int] = {
    "FIN": FIN,
    "SYN": SYN,
    "RST": RST,
    "PSH": PSH,
    "ACK": ACK,
    "URG": URG,
    "ECE": ECE,
    "CWR": CWR,
}

# TCP options seen on a segment, as bits of Packet.tcp_opts (kinds from RFC 9293, 7323, 2018).
OPT_MSS: Final = 0x01  # kind 2
OPT_WSCALE: Final = 0x02  # kind 3
OPT_SACK_PERM: Final = 0x04  # kind 4
OPT_SACK: Final = 0x08  # kind 5
OPT_TIMESTAMP: Final = 0x10  # kind 8

# IP protocol numbers (IANA "Assigned Internet Protocol Numbers").
IPPROTO_ICMP: Final = 1
IPPROTO_TCP: Final = 6
IPPROTO_UDP: Final = 17
IPPROTO_ICMPV6: Final = 58


def flag_string(flags: int) -> str:
    """Flags as Wireshark lists them, e.g. 'SYN, ACK'."""
    return ", ".join(name for name, bit in TCP_FLAG_NAMES.items() if flags & bit)


# Ports a server is likely to listen on: used, like Zeek's `likely_server_ports`, to guess the
# roles when a conversation starts without a SYN. Zeek builds its set from the ports its protocol
# analyzers register; this is the same idea with the common services written out (IANA registry).
LIKELY_SERVER_PORTS: frozenset[int] = frozenset(
    {
        20,
        21,
        22,
        23,
        25,
        42,
        43,
        53,
        67,
        69,
        80,
        81,
        88,
        102,
        110,
        111,
        113,
        119,
        123,
        135,
        137,
        138,
        139,
        143,
        161,
        162,
        179,
        389,
        443,
        445,
        464,
        465,
        502,
        512,
        513,
        514,
        515,
        520,
        543,
        544,
        548,
        554,
        563,
        587,
        593,
        631,
        636,
        646,
        853,
        873,
        902,
        989,
        990,
        992,
        993,
        994,
        995,
        1080,
        1194,
        1433,
        1434,
        1521,
        1701,
        1723,
        1812,
        1813,
        1883,
        1900,
        2049,
        2082,
        2083,
        2181,
        2375,
        2376,
        2379,
        3128,
        3260,
        3268,
        3306,
        3389,
        3478,
        3544,
        4222,
        4369,
        4500,
        4789,
        5000,
        5060,
        5061,
        5222,
        5269,
        5353,
        5355,
        5432,
        5671,
        5672,
        5900,
        5938,
        5984,
        6379,
        6443,
        6660,
        6661,
        6662,
        6663,
        6664,
        6665,
        6666,
        6667,
        6668,
        6669,
        6697,
        7000,
        7001,
        8000,
        8008,
        8080,
        8081,
        8443,
        8883,
        8888,
        9000,
        9042,
        9092,
        9100,
        9200,
        9300,
        9418,
        11211,
        27017,
    }
)
