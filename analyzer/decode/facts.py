"""Link-layer and IP facts the decoder looks up: link types, ethertypes, address families, headers.

Each fact lives here once, with its source, and the decoder looks it up; the fast path's fixed
header offsets are named beside it, in decode/fast.py.
"""

from __future__ import annotations

from typing import Final

# Link types as written in pcap/pcapng headers (tcpdump.org "Link-Layer Header Types"),
# named as libpcap's pcap_datalink_val_to_name() and `tcpdump -L` name them.
LINKTYPE_NULL: Final = 0  # BSD loopback: 4-byte address family in the capturing host's byte order
LINKTYPE_EN10MB: Final = 1  # Ethernet II / 802.3
LINKTYPE_PPP: Final = 9  # RFC 1661 PPP, optionally with RFC 1662 0xff 0x03 address/control
LINKTYPE_RAW_DLT12: Final = 12  # raw IP: DLT_RAW on most BSDs and Linux (old files)
LINKTYPE_RAW_DLT14: Final = 14  # raw IP: DLT_RAW on OpenBSD (old files)
LINKTYPE_PPP_HDLC: Final = 50  # PPP in HDLC-like framing (RFC 1662)
LINKTYPE_PPP_ETHER: Final = 51  # PPPoE session header without Ethernet (RFC 2516)
LINKTYPE_IEEE802_11: Final = 105  # 802.11 frames without a radio header
LINKTYPE_IEEE802_11_RADIOTAP: Final = 127  # radiotap header (radiotap.org), then an 802.11 frame
LINKTYPE_RAW: Final = 101  # raw IPv4 or IPv6, version from the first nibble
LINKTYPE_LOOP: Final = 108  # OpenBSD loopback: 4-byte address family in network byte order
LINKTYPE_LINUX_SLL: Final = 113  # Linux "cooked" v1: 16-byte header, protocol at offset 14
LINKTYPE_IPV4: Final = 228  # raw IPv4 only
LINKTYPE_IPV6: Final = 229  # raw IPv6 only
LINKTYPE_NFLOG: Final = 239  # Linux netfilter NFLOG: 4-byte header then TLVs
LINKTYPE_LINUX_SLL2: Final = 276  # Linux "cooked" v2: 20-byte header, protocol at offset 0

LINKTYPE_NAMES: dict[int, str] = {
    0: "NULL",
    1: "EN10MB",
    6: "IEEE802",
    7: "ARCNET",
    8: "SLIP",
    9: "PPP",
    10: "FDDI",
    12: "RAW",
    14: "RAW",
    50: "PPP_HDLC",
    51: "PPP_ETHER",
    100: "ATM_RFC1483",
    101: "RAW",
    102: "SLIP_BSDOS",
    103: "PPP_BSDOS",
    104: "C_HDLC",
    105: "IEEE802_11",
    107: "FRELAY",
    108: "LOOP",
    109: "ENC",
    113: "LINUX_SLL",
    114: "LTALK",
    117: "PFLOG",
    119: "PRISM_HEADER",
    122: "IP_OVER_FC",
    123: "SUNATM",
    127: "IEEE802_11_RADIO",
    129: "ARCNET_LINUX",
    138: "APPLE_IP_OVER_IEEE1394",
    139: "MTP2_WITH_PHDR",
    140: "MTP2",
    141: "MTP3",
    142: "SCCP",
    143: "DOCSIS",
    144: "LINUX_IRDA",
    163: "IEEE802_11_RADIO_AVS",
    166: "PPP_PPPD",
    169: "GPRS_LLC",
    177: "LINUX_LAPD",
    187: "BLUETOOTH_HCI_H4",
    189: "USB_LINUX",
    192: "PPI",
    195: "IEEE802_15_4",
    197: "ERF",
    201: "BLUETOOTH_HCI_H4_WITH_PHDR",
    209: "IPMB_LINUX",
    215: "IEEE802_15_4_NONASK_PHY",
    219: "MPLS",
    220: "USB_LINUX_MMAPPED",
    226: "IPNET",
    227: "CAN_SOCKETCAN",
    228: "IPV4",
    229: "IPV6",
    230: "IEEE802_15_4_NOFCS",
    231: "DBUS",
    235: "DVB_CI",
    239: "NFLOG",
    240: "NETANALYZER",
    241: "NETANALYZER_TRANSPARENT",
    242: "IPOIB",
    243: "MPEG_2_TS",
    246: "PFSYNC",
    247: "INFINIBAND",
    248: "SCTP",
    249: "USBPCAP",
    251: "BLUETOOTH_LE_LL",
    252: "WIRESHARK_UPPER_PDU",
    253: "NETLINK",
    254: "BLUETOOTH_LINUX_MONITOR",
    256: "BLUETOOTH_LE_LL_WITH_PHDR",
    258: "PKTAP",
    266: "USB_DARWIN",
    267: "OPENFLOW",
    271: "VSOCK",
    272: "NORDIC_BLE",
    274: "ETHERNET_MPACKET",
    276: "LINUX_SLL2",
    279: "EBHSCR",
    280: "VPP_DISPATCH",
    281: "DSA_TAG_BRCM",
    283: "IEEE802_15_4_TAP",
}


def linktype_name(linktype: int) -> str:
    """A link type as tcpdump names it, or its number when the name is unknown."""
    return LINKTYPE_NAMES.get(linktype, f"LINKTYPE_{linktype}")


# Ethertypes (IEEE 802 "EtherType" registry; IANA "ieee-802-numbers").
ETHERTYPE_IPV4: Final = 0x0800
ETHERTYPE_ARP: Final = 0x0806
ETHERTYPE_VLAN: Final = 0x8100  # IEEE 802.1Q customer tag
ETHERTYPE_IPV6: Final = 0x86DD
ETHERTYPE_MPLS: Final = 0x8847  # RFC 3032 unicast
ETHERTYPE_MPLS_MCAST: Final = 0x8848  # RFC 3032 multicast
ETHERTYPE_PPPOE_DISC: Final = 0x8863  # RFC 2516 discovery stage
ETHERTYPE_PPPOE_SESS: Final = 0x8864  # RFC 2516 session stage
ETHERTYPE_QINQ: Final = 0x88A8  # IEEE 802.1ad service tag
ETHERTYPE_QINQ_OLD: Final = 0x9100  # pre-802.1ad vendor service tag
ETHERTYPE_MAX_8023_LEN: Final = 1500  # values up to this are an 802.3 length, not a type (IEEE 802.3 3.2.6)

VLAN_TPIDS: Final = frozenset({ETHERTYPE_VLAN, ETHERTYPE_QINQ, ETHERTYPE_QINQ_OLD})
MAX_VLAN_TAGS: Final = 8  # more tags than any real network stacks: treat as garbage

ETHERTYPE_NAMES: dict[int, str] = {
    ETHERTYPE_IPV4: "IPv4",
    ETHERTYPE_ARP: "ARP",
    0x8035: "RARP",
    ETHERTYPE_VLAN: "802.1Q",
    ETHERTYPE_IPV6: "IPv6",
    0x8808: "Ethernet flow control",
    0x8809: "slow protocols (LACP)",
    ETHERTYPE_MPLS: "MPLS",
    ETHERTYPE_MPLS_MCAST: "MPLS multicast",
    ETHERTYPE_PPPOE_DISC: "PPPoE discovery",
    ETHERTYPE_PPPOE_SESS: "PPPoE session",
    0x888E: "EAPOL (802.1X)",
    ETHERTYPE_QINQ: "802.1ad",
    0x88CC: "LLDP",
    0x88F7: "PTP",
    0x8899: "Realtek RRCP",
    0x893A: "IEEE 1905.1",
    0x88E5: "MACsec",
    0x8892: "PROFINET",
    0x9000: "loopback (CTP)",
    ETHERTYPE_QINQ_OLD: "802.1Q-in-Q",
    0x22F0: "AVTP",
    0x6002: "DEC MOP",
}

# PPP protocol field (IANA "PPP DLL Protocol Numbers").
PPP_IPV4: Final = 0x0021
PPP_IPV6: Final = 0x0057
PPP_MPLS: Final = 0x0281  # RFC 3032 5: MPLS unicast over PPP
PPP_MPLS_MCAST: Final = 0x0283  # RFC 3032 5: MPLS multicast over PPP
PPP_ADDRESS_CONTROL: Final = b"\xff\x03"  # RFC 1662 3.1: all-stations address, UI control

PPPOE_HEADER_LEN: Final = 6  # RFC 2516 4: ver/type, code, session id, length

MPLS_LABEL_LEN: Final = 4  # RFC 3032 2.1: label 20, TC 3, bottom-of-stack 1, TTL 8 bits
MPLS_BOTTOM_OF_STACK: Final = 0x01  # in the third byte of a label entry
MAX_MPLS_LABELS: Final = 8

# Address families in BSD loopback headers (NULL, LOOP): AF_INET is 2 everywhere,
# AF_INET6 differs by OS (tcpdump.org LINKTYPE_NULL; Wireshark packet-null.c).
BSD_AF_INET: Final = 2
BSD_AF_INET6: Final = frozenset({24, 28, 30})  # NetBSD/OpenBSD/BSDi, FreeBSD/DragonFly, Darwin

LINUX_SLL_HEADER_LEN: Final = 16
LINUX_SLL_PROTOCOL_OFFSET: Final = 14
LINUX_SLL2_HEADER_LEN: Final = 20
LINUX_SLL2_PROTOCOL_OFFSET: Final = 0

# NFLOG (tcpdump.org LINKTYPE_NFLOG): 4-byte header (family, version, resource id), then TLVs
# whose 16-bit length and type are in the capturing host's byte order, padded to 4 bytes.
NFLOG_HEADER_LEN: Final = 4
NFULA_PAYLOAD: Final = 9  # TLV type holding the packet, starting at its network header

# IPv6 extension headers walked to find the transport (RFC 8200 4; RFC 4302 AH).
IPV6_HOPOPTS: Final = 0
IPV6_ROUTING: Final = 43
IPV6_FRAGMENT: Final = 44
IPV6_AH: Final = 51  # length in 4-byte units minus 2, unlike the others (RFC 4302 2.2)
IPV6_DSTOPTS: Final = 60
IPV6_ESP: Final = 50  # payload encrypted: nothing to decode beyond it
IPV6_NONXT: Final = 59  # No Next Header: nothing follows
IPV6_EXT_HEADERS: Final = frozenset({IPV6_HOPOPTS, IPV6_ROUTING, IPV6_FRAGMENT, IPV6_AH, IPV6_DSTOPTS})
MAX_IPV6_EXT_HEADERS: Final = 16  # more than any real stack sends: guard against loops of garbage

# Names for IP protocols the decoder skips, for warnings (IANA "Assigned Internet Protocol Numbers").
IP_PROTO_NAMES: dict[int, str] = {
    0: "HOPOPT",
    2: "IGMP",
    4: "IPIP",
    8: "EGP",
    9: "IGP",
    41: "IPv6-in-IP",
    46: "RSVP",
    47: "GRE",
    50: "ESP",
    51: "AH",
    59: "IPv6-NoNxt",
    88: "EIGRP",
    89: "OSPF",
    103: "PIM",
    112: "VRRP",
    115: "L2TP",
    132: "SCTP",
    136: "UDPLite",
    137: "MPLS-in-IP",
}

# Tunnels whose inner packets are decoded as well (Zeek logs both layers).
TEREDO_PORT: Final = 3544  # RFC 4380 server port; either side of the UDP exchange
TEREDO_AUTH: Final = b"\x00\x01"  # RFC 4380 5.1.1 authentication indicator
TEREDO_ORIGIN: Final = b"\x00\x00"  # RFC 4380 5.1.1 origin indication
TEREDO_AUTH_FIXED_LEN: Final = 13  # indicator 2, id-len 1, auth-len 1, nonce 8, confirmation 1
TEREDO_ORIGIN_LEN: Final = 8  # indicator 2, obfuscated port 2, obfuscated IPv4 4
TEREDO_PREFIX: Final = b"\x20\x01\x00\x00"  # RFC 4380 2.6: 2001:0000::/32
VXLAN_PORT: Final = 4789  # RFC 7348 5: IANA destination port
VXLAN_HEADER_LEN: Final = 8
VXLAN_FLAG_VNI: Final = 0x08  # RFC 7348 5: the I flag, set for a valid VNI
GENEVE_PORT: Final = 6081  # RFC 8926 3.3: IANA destination port
GENEVE_HEADER_LEN: Final = 8  # RFC 8926 3.4: ver/opt len, flags, protocol type, VNI, reserved
GENEVE_VERSION_SHIFT: Final = 6  # version in the top two bits of the first byte (0 today)
GENEVE_OPT_LEN_MASK: Final = 0x3F  # options length, in 4-byte units

# GRE (RFC 2784, RFC 2890 keys and sequence numbers): 16 bits of flags and version, then the
# protocol type (an ethertype); each flag adds one 4-byte field in the order checksum, key, sequence.
IPPROTO_GRE: Final = 47
GRE_HEADER_LEN: Final = 4
GRE_CHECKSUM: Final = 0x8000  # C: checksum and reserved1 present
GRE_ROUTING: Final = 0x4000  # R: RFC 1701 source routing (obsolete; not decoded)
GRE_KEY: Final = 0x2000  # K: RFC 2890 key present
GRE_SEQ: Final = 0x1000  # S: RFC 2890 sequence number present
GRE_VERSION_MASK: Final = 0x0007  # 0; 1 is PPTP's enhanced GRE, which carries PPP (RFC 2637)
ETHERTYPE_TEB: Final = 0x6558  # Transparent Ethernet Bridging: an Ethernet frame follows
# ERSPAN (draft-foschiano-erspan): Cisco's mirrored Ethernet frames inside GRE.
ETHERTYPE_ERSPAN_II: Final = 0x88BE  # type II with the S bit set (8-byte header); type I without it (none)
ETHERTYPE_ERSPAN_III: Final = 0x22EB  # type III: 12-byte header, plus 8 when its O bit is set
ERSPAN_II_HEADER_LEN: Final = 8
ERSPAN_III_HEADER_LEN: Final = 12
ERSPAN_III_SUBHEADER_LEN: Final = 8  # platform-specific subheader
ERSPAN_III_O_FLAG: Final = 0x01  # in the header's last byte: the subheader follows
# Names of the outer layers, as the report's capture line shows them.
ENCAPSULATION_NAMES: dict[int, str] = {
    ETHERTYPE_IPV4: "GRE",
    ETHERTYPE_IPV6: "GRE",
    ETHERTYPE_TEB: "GRE (Ethernet)",
    ETHERTYPE_MPLS: "GRE (MPLS)",
    ETHERTYPE_ERSPAN_III: "ERSPAN III",
}

# IEEE 802.11-2020 9.2.4.1 frame control: type in bits 2-3 of the first byte, subtype in bits 4-7;
# flags in the second byte.
DOT11_TYPE_DATA: Final = 2
DOT11_SUBTYPE_NULL: Final = 0x4  # subtype bit: no frame body (Null, QoS Null, CF-Ack ...)
DOT11_SUBTYPE_QOS: Final = 0x8  # subtype bit: a 2-byte QoS control field follows the addresses
DOT11_TO_FROM_DS: Final = 0x03  # both set: a fourth address (WDS / mesh)
DOT11_PROTECTED: Final = 0x40  # the body is encrypted: nothing to decode
DOT11_ORDER: Final = 0x80  # in a QoS data frame: a 4-byte HT control field follows
DOT11_HEADER_LEN: Final = 24  # frame control, duration, three addresses, sequence control
DOT11_ADDR4_LEN: Final = 6
DOT11_QOS_LEN: Final = 2
DOT11_HTC_LEN: Final = 4
RADIOTAP_MIN_LEN: Final = 8  # version, pad, length (little-endian), first present word

# IEEE 802.2 LLC and the RFC 1042 SNAP header that carries an ethertype over 802.3 and 802.11.
LLC_SNAP: Final = b"\xaa\xaa\x03"  # DSAP, SSAP = SNAP, control = UI
LLC_SNAP_LEN: Final = 8  # LLC 3 + OUI 3 + ethertype 2
LLC_SAP_IP: Final = b"\x06\x06\x03"  # DSAP, SSAP = IP (RFC 1042 allows it; rare), UI
LLC_LEN: Final = 3

MAX_TUNNEL_DEPTH: Final = 2  # tunnels decoded inside tunnels at most this deep (Zeek's default max_depth)

ETHERNET_HEADER_LEN: Final = 14
IPV4_MIN_HEADER_LEN: Final = 20
IPV6_HEADER_LEN: Final = 40
TCP_MIN_HEADER_LEN: Final = 20
UDP_HEADER_LEN: Final = 8
ICMP_HEADER_LEN: Final = 8  # type, code, checksum and the 4-byte rest of header (RFC 792, RFC 4443)

# TCP option kinds (IANA "TCP Option Kind Numbers").
TCPOPT_EOL: Final = 0
TCPOPT_NOP: Final = 1
TCPOPT_MSS: Final = 2
TCPOPT_WSCALE: Final = 3
TCPOPT_SACK_PERM: Final = 4
TCPOPT_SACK: Final = 5
TCPOPT_TIMESTAMP: Final = 8
