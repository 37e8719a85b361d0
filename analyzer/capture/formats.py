"""Facts about capture file formats: magic numbers, block types, option codes and limits.

Sources:
- pcap: draft-ietf-opsawg-pcap (PCAP Capture File Format), libpcap pcap-savefile(5).
- pcapng: draft-ietf-opsawg-pcapng (PCAP Now Generic Capture File Format).
- compression magics: RFC 1952 (gzip), bzip2 format notes, xz file format 1.0.4 section 2.1.1.1.
"""

from __future__ import annotations

from typing import Final

# pcap global header magics, as the 4 bytes appear in the file (draft-ietf-opsawg-pcap section 4).
# value: (struct byte-order prefix, timestamp fraction units per second, format name)
PCAP_MAGICS: dict[bytes, tuple[str, int, str]] = {
    b"\xd4\xc3\xb2\xa1": ("<", 1_000_000, "pcap"),  # 0xA1B2C3D4 little-endian, microseconds
    b"\xa1\xb2\xc3\xd4": (">", 1_000_000, "pcap"),  # 0xA1B2C3D4 big-endian
    b"\x4d\x3c\xb2\xa1": ("<", 1_000_000_000, "pcap-ns"),  # 0xA1B23C4D little-endian, nanoseconds
    b"\xa1\xb2\x3c\x4d": (">", 1_000_000_000, "pcap-ns"),  # 0xA1B23C4D big-endian
}
PCAP_HEADER_LEN: Final = 24  # magic, version major/minor, reserved1, reserved2, snaplen, linktype+info
PCAP_RECORD_LEN: Final = 16  # ts seconds, ts fraction, captured length, original length

# The pcap LinkType field: low 16 bits are the LINKTYPE value; bits 28-31 hold the FCS length
# in 16-bit units when the F bit (0x04000000) is set (draft-ietf-opsawg-pcap section 4;
# libpcap's LT_LINKTYPE / LT_FCS_LENGTH_PRESENT / LT_FCS_LENGTH macros).
PCAP_LINKTYPE_MASK: Final = 0x0000FFFF
PCAP_FCS_PRESENT: Final = 0x04000000
PCAP_FCS_SHIFT: Final = 28

# libpcap's MAXIMUM_SNAPLEN and Wireshark's WTAP_MAX_PACKET_SIZE_STANDARD: no real link
# layer produces a larger record, so a larger captured length means a corrupt header.
MAX_RECORD_LEN: Final = 262_144
# A record may exceed the header's snaplen a little (some writers set snaplen loosely,
# e.g. 1500 on a jumbo-frame link); past this slack the length field is taken as garbage.
SNAPLEN_SLACK: Final = 65_536

# Formats we recognise only to give a better hint (file starts with these bytes).
OTHER_MAGICS: dict[bytes, str] = {
    b"\xa1\xb2\xcd\x34": "modified (Kuznetzov) pcap",  # 0xA1B2CD34 big-endian
    b"\x34\xcd\xb2\xa1": "modified (Kuznetzov) pcap",  # little-endian
    b"GMBU": "Microsoft Network Monitor capture",
    b"snoop\x00\x00\x00": "Solaris snoop capture",
    b"XCP\x00": "NetXRay/Sniffer capture",
}

# pcapng block types (draft-ietf-opsawg-pcapng section 10.1).
BT_SHB: Final = 0x0A0D0D0A  # Section Header Block: a palindrome, so it reads the same in both byte orders
BT_IDB: Final = 0x00000001  # Interface Description Block
BT_PB: Final = 0x00000002  # Packet Block (obsolete, appendix A)
BT_SPB: Final = 0x00000003  # Simple Packet Block
BT_EPB: Final = 0x00000006  # Enhanced Packet Block
PCAPNG_MAGIC: Final = b"\x0a\x0d\x0d\x0a"
PCAPNG_BOM: Final = 0x1A2B3C4D  # byte-order magic inside the SHB body
PCAPNG_BOM_LE: Final = b"\x4d\x3c\x2b\x1a"
PCAPNG_BOM_BE: Final = b"\x1a\x2b\x3c\x4d"
PCAPNG_MIN_BLOCK: Final = 12  # type, total length, trailing total length
PCAPNG_MIN_SHB: Final = 28  # 12 + BOM 4 + version 4 + section length 8
# No pcapng writer we know makes blocks this large (Wireshark caps blocks at 16 MiB too);
# a larger length field means corruption, and refusing it keeps the read buffer bounded.
PCAPNG_MAX_BLOCK: Final = 16 * 1024 * 1024

# pcapng option codes (draft-ietf-opsawg-pcapng sections 3.5 and 4.2).
OPT_ENDOFOPT: Final = 0
IF_TSRESOL: Final = 9  # 1 byte: bit 7 clear -> 10^-n seconds, set -> 2^-n seconds; default 10^-6
IF_FCSLEN: Final = 13  # 1 byte: FCS length in bytes
IF_TSOFFSET: Final = 14  # signed 64-bit seconds added to every timestamp of the interface
DEFAULT_TSRESOL_UNITS: Final = 1_000_000

# Compression containers recognised by their first bytes, never by file name.
GZIP_MAGIC: Final = b"\x1f\x8b"  # RFC 1952 section 2.3.1 (ID1 ID2)
BZIP2_MAGIC: Final = b"BZh"  # bzip2 stream header: "BZ", 'h' = Huffman coding
XZ_MAGIC: Final = b"\xfd7zXZ\x00"  # xz format 1.0.4 section 2.1.1.1

# Timestamps outside this range (seconds since the epoch) are reported once as "bad-timestamp":
# before 1970 only happens with a negative if_tsoffset, and 2^33 s is the year 2242.
TS_MAX: Final = float(2**33)
