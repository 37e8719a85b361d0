"""Decoding: captured frames -> lean Packets (link layer, IPv4/IPv6, TCP/UDP/ICMP, tunnels).

dec = Decoder()
pkt = dec.decode(frame)   # Packet, or None when the frame carries nothing usable (counted)
dec.warnings()            # one CaptureWarning per kind of thing skipped, with counts
"""

from analyzer.decode.facts import LINKTYPE_NAMES, linktype_name
from analyzer.decode.fast import Decoder

__all__ = ["Decoder", "LINKTYPE_NAMES", "linktype_name"]
