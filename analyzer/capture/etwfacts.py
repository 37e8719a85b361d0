"""Facts about Windows Event Trace Log (.etl) files and the two packet providers wsadiag reads.

Sources (read, not copied): Microsoft Learn (WNODE_HEADER, EVENT_TRACE_LOGFILE, TRACE_LOGFILE_HEADER,
EVENT_HEADER, "Packet Monitor (pktmon)" and the pktmonnpik.h reference: PKTMON_PACKET_TYPE,
PKTMON_DIRECTION_TAG, PKTMON_COMPONENT_TYPE, PktMonClntNblDrop), the drop-reason enumeration that
`pktmon etl2txt` prints (INET_EndpointNotFound = 1204 ...; the same numbers as the WFP
IP_DISCARD_REASON / INET_DISCARD_REASON docs, offset by 900 and 1200), the
Microsoft-Windows-NDIS-PacketCapture manifest's event messages (1001 "Packet Fragment (%3 bytes)",
1002 "Packet Metadata", 1003 "VMSwitch Packet Fragment (%9 bytes)") and its keywords, and
Microsoft's MIT-licensed etl2pcapng for how those keywords are used.
"""

from __future__ import annotations

from typing import Final

# -- the file layer ------------------------------------------------------------------------------
# An ETL file is a run of buffers; each starts with a 72-byte WMI_BUFFER_HEADER.
BUFFER_HEADER_LEN: Final = 72
BUF_SIZE: Final = 0x00  # u32: bytes of this buffer in the file (compressed size when compressed)
BUF_SAVED: Final = 0x04  # u32: bytes in use, header included (after decompression)
BUF_CPU: Final = 0x28  # u8: the processor whose events the buffer holds
BUF_FLAGS: Final = 0x34  # u16: ETW_BUFFER_FLAG_*
BUFFER_FLAG_COMPRESSED: Final = 0x40  # the rest of the buffer is LZ77 "Xpress" (MS-XCA 2.3/2.4) data
MAX_BUFFER: Final = 64 * 1024 * 1024  # ETW buffers are at most 16 MiB; more means corruption

# Event records inside a buffer are 8-byte aligned; the first u32 of each says what it is:
# bits 16-23 the header type, bits 24-31 marker flags (0xC0 on every trace record).
EVENT_ALIGN: Final = 8
BUFFER_PADDING: Final = 0xFFFFFFFF  # unused space at the end of a buffer
TRACE_MARKER: Final = 0xC0
HEADER_SYSTEM32: Final = 0x01  # SYSTEM_TRACE_HEADER: u16 version, type, flags, u16 size at +4, u16 hook id at +6
HEADER_SYSTEM64: Final = 0x02
HEADER_COMPACT32: Final = 0x03
HEADER_COMPACT64: Final = 0x04
HEADER_PERFINFO32: Final = 0x10
HEADER_PERFINFO64: Final = 0x11
HEADER_EVENT32: Final = 0x12  # EVENT_HEADER (80 bytes) of a manifest / TraceLogging provider
HEADER_EVENT64: Final = 0x13
SIZE_AT_4: Final = frozenset(
    {HEADER_SYSTEM32, HEADER_SYSTEM64, HEADER_COMPACT32, HEADER_COMPACT64, HEADER_PERFINFO32, HEADER_PERFINFO64}
)  # the others keep their size in the first u16
SYSTEM_HEADER_LEN: Final = 32  # SYSTEM_TRACE_HEADER with its 64-bit QPC time at +16
SYSTEM_HOOK_LOGFILE: Final = 0x0000  # EVENT_TRACE_GROUP_HEADER, type INFO: the TRACE_LOGFILE_HEADER

# EVENT_HEADER fields (offsets in the record).
EV_FLAGS: Final = 4  # u16: EVENT_HEADER_FLAG_*
EV_TIME: Final = 16  # i64: the clock value (see CLOCK_*)
EV_PROVIDER: Final = 24  # GUID, 16 bytes, little-endian fields
EV_ID: Final = 40  # u16 event id, then version, channel, level, opcode, task (u16)
EV_KEYWORD: Final = 48  # u64
EVENT_HEADER_LEN: Final = 80
EV_FLAG_EXTENDED_INFO: Final = 0x0001  # extended data items sit between the header and the user data
EXT_ITEM_LEN: Final = 8  # u16 reserved, u16 type, u16 linkage (bit 0: another item follows), u16 size
EXT_LINKAGE: Final = 0x0001

# TRACE_LOGFILE_HEADER (the user data of the first system event), offsets from its start.
LOG_POINTER_SIZE: Final = 44  # u32: 4 or 8; the two name pointers before the time zone take that much
LOG_CPU_MHZ: Final = 52  # u32: for the cycle-counter clock
LOG_NAMES_AT: Final = 56
TIME_ZONE_LEN: Final = 172
LOG_TAIL_FIELDS: Final = "<qqqI"  # BootTime, PerfFreq, StartTime (FILETIME), ReservedFlags (the clock type)
CLOCK_QPC: Final = 1  # QueryPerformanceCounter ticks at PerfFreq
CLOCK_SYSTEM: Final = 2  # FILETIME, 100 ns since 1601
CLOCK_CYCLES: Final = 3  # CPU cycles at CpuSpeedInMHz

FILETIME_UNIX_OFFSET: Final = 11_644_473_600  # seconds from 1601-01-01 to 1970-01-01
FILETIME_UNITS: Final = 10_000_000  # 100-ns units per second

# -- Microsoft-Windows-PktMon ({4d4f80d9-c8bd-4d73-bb5b-19c90402c5ac}) --------------------------------
PKTMON_PROVIDER: Final = bytes.fromhex("d9804f4dbdc8734dbb5b19c90402c5ac")  # the GUID as stored in a record
PKTMON_PACKET: Final = 160  # a packet seen by a component
PKTMON_DROP: Final = 170  # a packet dropped by a component, with reason and location
PKTMON_COMPONENT: Final = 20  # u16 id, u16 type, driver name and description (UTF-16, NUL-terminated)
PKTMON_IPV4_ADDRESS: Final = 65  # u16 component, u16 property, 4 bytes
PKTMON_IPV6_ADDRESS: Final = 66  # u16 component, u16 property, 16 bytes
PKTMON_MAC_ADDRESS: Final = 70  # u16 component, u16 property, u32 length, the address
PKTMON_ADDRESS_EVENTS: Final = frozenset({PKTMON_IPV4_ADDRESS, PKTMON_IPV6_ADDRESS, PKTMON_MAC_ADDRESS})
# Event 160/170 user data: group id, packet number, appearance, direction tag, packet type,
# component, edge, filter, drop reason, drop location, original size, logged size; then the bytes.
PKTMON_PACKET_HEAD: Final = "<QHHHHHHHIIHH"
PKTMON_PACKET_HEAD_LEN: Final = 34

# PKTMON_PACKET_TYPE -> pcap link type (only these carry a whole frame).
PKTMON_LINKTYPES: dict[int, int] = {1: 1, 2: 105, 3: 101}  # Ethernet, Wi-Fi (802.11), IP (raw)

# PKTMON_DIRECTION_TAG: which way the component saw the packet go.
DIRECTION_TAGS: dict[int, str] = {
    0: "",
    1: "in",
    2: "out",
    3: "in",
    4: "out",
    5: "in",
    6: "out",
}  # In/Out, Rx/Tx, Ingress/Egress

# PKTMON_COMPONENT_TYPE values seen in component events, as words for reports and rules.
COMPONENT_KINDS: dict[int, str] = {
    1: "ndis",
    2: "miniport",  # the NIC driver: nearest the wire
    3: "filter",  # NDIS lightweight filters (WFP MAC layer, QoS, XDP, Npcap ...)
    4: "protocol",  # tcpip L2, LLDP ...
    9: "vmswitch",
    10: "http",
    11: "tcpip",  # "TCP/IPv4 - L3/L4": where a socket's port is looked up
    13: "ipsec",
}
MINIPORT: Final = 2
# Drivers whose drops are policy: the Windows Filtering Platform (Windows Firewall and other WFP
# callouts), IPsec. A drop there names a filter, not the stack, as the cause.
FILTERING_DRIVERS: Final = frozenset({"wfplwfs.sys", "wfpcapture.sys", "fwpkclnt.sys", "ipsec"})

# PKTMON_DROP_REASON: the numbers pktmon writes and the names `pktmon etl2txt` prints (without its
# "PktMonDrop_" prefix). Only these are named; any other is shown as its number.
DROP_REASONS: dict[int, str] = {
    0: "Unknown",
    1: "InvalidData",
    2: "InvalidPacket",
    3: "Resources",
    4: "NotReady",
    5: "Disconnected",
    6: "NotAccepted",
    7: "Busy",
    8: "Filtered",
    9: "FilteredVLAN",
    10: "UnauthorizedVLAN",
    11: "UnauthorizedMAC",
    12: "FailedSecurityPolicy",
    14: "Qos",
    15: "Ipsec",
    16: "MacSpoofing",
    23: "MTUMismatch",
    34: "FailedPacketFilter",
    201: "Pause",
    202: "Reset",
    203: "SendAborted",
    204: "ProtocolNotBound",
    601: "FL_LoopbackPacket",
    603: "FL_InvalidEthernetType",
    604: "FL_InvalidPacketLength",
    607: "FL_InterfaceNotReady",
    718: "PortBlocked",
    901: "NL_BadSourceAddress",
    902: "NL_NotLocallyDestined",
    903: "NL_ProtocolUnreachable",
    904: "NL_PortUnreachable",
    905: "NL_BadLength",
    906: "NL_MalformedHeader",
    907: "NL_NoRoute",
    908: "NL_BeyondScope",
    909: "NL_InspectionDrop",
    910: "NL_TooManyDecapsulations",
    911: "NL_AdministrativelyProhibited",
    912: "NL_BadChecksum",
    914: "NL_HopLimitExceeded",
    915: "NL_AddressUnreachable",
    919: "NL_InspectionAbsorb",
    920: "NL_DontFragmentMtuExceeded",
    922: "NL_AddressResolutionTimeout",
    923: "NL_AddressResolutionFailure",
    924: "NL_IpsecFailure",
    949: "NL_QueueFull",
    1200: "INET_SourceUnspecified",
    1201: "INET_DestinationMulticast",
    1202: "INET_HeaderInvalid",
    1203: "INET_ChecksumInvalid",
    1204: "INET_EndpointNotFound",
    1205: "INET_ConnectedPath",
    1206: "INET_SessionState",
    1207: "INET_ReceiveInspection",
    1208: "INET_AckInvalid",
    1209: "INET_ExpectedSyn",
    1210: "INET_Rst",
    1211: "INET_SynRcvdSyn",
    1212: "INET_SimultaneousConnect",
    1213: "INET_PawsFailed",
    1214: "INET_LandAttack",
    1215: "INET_MissedReset",
    1216: "INET_OutsideWindow",
    1217: "INET_DuplicateSegment",
    1218: "INET_ClosedWindow",
    1219: "INET_TcbRemoved",
    1220: "INET_FinWait2",
    1222: "INET_FinReceived",
    1223: "INET_ListenerInvalidFlags",
    1224: "INET_TcbNotInTcbTable",
    1227: "INET_TimeWaitTcb",
    1229: "INET_PauseAccept",
    1230: "INET_SynAttack",
    1231: "INET_AcceptInspection",
    1407: "Ipsec_ClearTextDrop",
    1408: "Ipsec_AuthFirewallDrop",
}
# Reasons that are a filter's decision (WFP inspection, the firewall, IPsec policy), whatever the
# component that logged them.
FILTER_REASONS: Final = frozenset({8, 34, 718, 909, 911, 919, 1207, 1231, 1407, 1408})
# What a drop reason means for a connection, in a finding's words.
DROP_MEANINGS: dict[int, str] = {
    1204: "no socket was listening on port {port} at that moment",
    1210: "the RST did not match a connection Windows knew",
    902: "the destination address is not one of this host's",
    904: "no socket was bound to UDP port {port}",
    1224: "the connection was no longer in Windows' TCP table",
}


def drop_reason_name(code: int) -> str:
    """A pktmon drop reason by name (INET_EndpointNotFound), or its number when the name is unknown."""
    return DROP_REASONS.get(code, str(code))


# -- Microsoft-Windows-NDIS-PacketCapture ({2ed6006e-4729-4609-b423-3ee7bcd678ef}): netsh trace -------
NDISCAP_PROVIDER: Final = bytes.fromhex("6e00d62e29470946b4233ee7bcd678ef")
NDIS_FRAGMENT: Final = 1001  # u32 MiniportIfIndex, u32 LowerIfIndex, u32 FragmentSize, the bytes
NDIS_METADATA: Final = 1002  # u32, u32, u32 MetadataSize, DOT11_EXTSTA_RECV_CONTEXT for the next packet
NDIS_VMSWITCH_FRAGMENT: Final = 1003  # u32 x3 (..., SourcePortId), 3 strings, u32 DestinationCount,
# the destinations (u32 port id and three strings each), u32 FragmentSize, the bytes, u32 OOBDataSize, OOB data
KW_MEDIA_WIRELESS_WAN: Final = 0x200  # mobile broadband: raw IP frames
KW_MEDIA_NATIVE_802_11: Final = 0x10000  # 802.11 frames (logged decrypted, the Protected bit still set)
KW_VMSWITCH: Final = 0x1000000
KW_PACKET_START: Final = 0x40000000
KW_PACKET_END: Final = 0x80000000  # a packet's last fragment: join the interface's fragments until here
KW_SEND: Final = 0x100000000
KW_RECEIVE: Final = 0x200000000
# DOT11_EXTSTA_RECV_CONTEXT: NDIS object header, u32 flags, u32 PHY id, u32 centre frequency (MHz),
# u16 MPDUs, (pad), i32 RSSI, u8 data rate.
DOT11_RECV_CONTEXT: Final = "<4xIIIH2xiB"
# OOB data of a VMSwitch fragment: NET_BUFFER_LIST info pointers; Ieee8021QNetBufferListInfo is
# the fourth, whose low bits hold priority (3), CFI (1) and then the 12-bit VLAN id.
OOB_8021Q_INDEX: Final = 3
VLAN_SHIFT: Final = 4
VLAN_MASK: Final = 0xFFF
ETHERNET_ADDRS: Final = 12  # destination and source MAC: an 802.1Q tag goes after them
ETHERTYPE_8021Q: Final = 0x8100
