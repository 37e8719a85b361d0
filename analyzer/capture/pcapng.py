"""The pcapng block walk: sections, interfaces and the packet blocks that refer to them.

A record cursor like the pcap walk (compiled with it): Enhanced Packet Blocks are read where
they lie in the buffer; every other block, and any EPB that is not plainly well-formed, goes
through `PcapngWalk._step`, which also reports what is wrong.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from analyzer.capture.formats import (
    BT_EPB,
    BT_IDB,
    BT_PB,
    BT_SHB,
    BT_SPB,
    DEFAULT_TSRESOL_UNITS,
    IF_FCSLEN,
    IF_TSOFFSET,
    IF_TSRESOL,
    OPT_ENDOFOPT,
    PCAPNG_BOM_BE,
    PCAPNG_BOM_LE,
    PCAPNG_MAX_BLOCK,
    PCAPNG_MIN_BLOCK,
    PCAPNG_MIN_SHB,
    TS_MAX,
)
from analyzer.capture.heap import keep_freed_buffers
from analyzer.capture.pcap import RecordCursor
from analyzer.wire import be32, le32

if TYPE_CHECKING:
    from analyzer.capture.reader import Capture

BLOCK_NAMES = {
    BT_SHB: "section header",
    BT_IDB: "interface description",
    BT_PB: "packet",
    BT_SPB: "simple packet",
    BT_EPB: "enhanced packet",
}


@dataclass(frozen=True, slots=True)
class Interface:
    """What a packet block needs from its Interface Description Block."""

    linktype: int
    snaplen: int  # 0: no limit
    units: int  # timestamp units per second (if_tsresol)
    offset: int  # seconds added to every timestamp (if_tsoffset)
    fcslen: int  # bytes of FCS at the end of each packet (if_fcslen); -1 unknown

    @property
    def fast(self) -> tuple[int, int, int]:
        """(linktype, units, offset): what epb_frame needs, as one tuple for the fast path."""
        return (self.linktype, self.units, self.offset)


def tsresol_units(value: int) -> int:
    """Timestamp units per second for an if_tsresol byte: 10^n, or 2^n when bit 7 is set."""
    return 2 ** (value & 0x7F) if value & 0x80 else 10**value


def parse_idb(cap: Capture, buf: bytes, pos: int, nxt: int, order: str, frame: int) -> Interface:
    """Read an IDB's link type, snaplen and the timestamp options; bad options are reported."""
    linktype, _reserved, snaplen = struct.unpack_from(order + "HHI", buf, pos + 8)
    units = DEFAULT_TSRESOL_UNITS
    offset = 0
    fcslen = -1
    opt = struct.Struct(order + "HH").unpack_from
    o = pos + 16
    oend = nxt - 4
    while o + 4 <= oend:
        code, olen = opt(buf, o)
        if code == OPT_ENDOFOPT:
            break
        vstart = o + 4
        if vstart + olen > oend:
            cap._warn(
                "bad-option",
                f"interface {len(cap._ifaces)}: option {code} runs past the end of its block; "
                "the remaining options are ignored",
                frame,
            )
            break
        if code == IF_TSRESOL and olen >= 1:
            units = tsresol_units(buf[vstart])
        elif code == IF_TSOFFSET and olen >= 8:
            offset = struct.unpack_from(order + "q", buf, vstart)[0]
        elif code == IF_FCSLEN and olen >= 1:
            fcslen = buf[vstart]
        o = vstart + ((olen + 3) & ~3)
    return Interface(linktype, snaplen, units, offset, fcslen)


# What one step of the checked (slow) path did.
_BLOCK = 0  # consumed a block that delivers no packet (or refilled the buffer): step again
_PACKET = 1  # the cursor now stands on a packet
_STOP = 2  # the end of the capture, or a fault that stops reading (warned)


class PcapngWalk(RecordCursor):
    """The walk's position in a pcapng stream; next_record() moves it to the next packet block.

    Enhanced Packet Blocks take a fast path: the block is read where it lies in the buffer, as
    the pcap walk does, and no Frame is built. Every other block, and any EPB that is not plainly
    well-formed, goes through `_step`, which also reports what is wrong.
    Timestamps are (64-bit count) / units + if_tsoffset; values before 1970 or after 2242
    are still delivered and reported once ("bad-timestamp").
    """

    def __init__(self, cap: Capture, buf: bytes) -> None:
        super().__init__()
        self.cap = cap
        self.buf = buf
        self.pos = 0
        self.order = "<"
        self.little = True
        # (linktype, units, offset) per interface of the current section, for the fast path
        self.fast: list[tuple[int, int, int]] = []
        self.seen_linktypes: set[int] = set(cap.linktypes)
        self.bad_ts = 0
        self.ended = False

    def next_record(self) -> bool:
        while not self.ended:
            if self._fast():
                return True
            step = self._step()
            if step == _PACKET:
                return True
            if step == _STOP:
                self.ended = True
        return False

    def _fast(self) -> bool:
        """Stand on the EPB at pos if it is well-formed and wholly in the buffer."""
        buf = self.buf
        pos = self.pos
        end = len(buf)
        if pos + 32 > end:
            return False
        # both orders spelled out: the compiled reads stay direct calls
        if self.little:
            btype, blen, ifid, caplen = le32(buf, pos), le32(buf, pos + 4), le32(buf, pos + 8), le32(buf, pos + 20)
        else:
            btype, blen, ifid, caplen = be32(buf, pos), be32(buf, pos + 4), be32(buf, pos + 8), be32(buf, pos + 20)
        nxt = pos + blen
        if btype != BT_EPB or nxt > end or blen & 3 or caplen > blen - 32 or ifid >= len(self.fast):
            return False
        if self.little:
            trailer, hi, lo, orig = le32(buf, nxt - 4), le32(buf, pos + 12), le32(buf, pos + 16), le32(buf, pos + 24)
        else:
            trailer, hi, lo, orig = be32(buf, nxt - 4), be32(buf, pos + 12), be32(buf, pos + 16), be32(buf, pos + 24)
        if trailer != blen:
            return False
        linktype, units, offset = self.fast[ifid]
        self._deliver(pos + 28, caplen, orig, linktype, ((hi << 32) | lo) / units + offset)
        self.pos = nxt
        return True

    def _deliver(self, start: int, caplen: int, orig: int, linktype: int, ts: float) -> None:
        self.n += 1
        self.start = start
        self.incl = caplen
        self.orig = orig
        self.linktype = linktype
        self.ts = ts
        if not 0.0 <= ts < TS_MAX:
            self.bad_ts += 1
            if self.bad_ts == 1:
                _warn_ts(self.cap, self.n, ts)

    def _step(self) -> int:
        """One block of any kind, checked, or a refill of the buffer."""
        cap = self.cap
        buf = self.buf
        pos = self.pos
        end = len(buf)
        avail = end - pos
        what = ""
        btype = 0
        blen = 0
        if avail >= 12:
            if struct.unpack_from(self.order + "I", buf, pos)[0] == BT_SHB:  # a palindrome: either order
                bom = buf[pos + 8 : pos + 12]
                new_order = "<" if bom == PCAPNG_BOM_LE else ">" if bom == PCAPNG_BOM_BE else ""
                if not new_order:
                    cap._warn(
                        "bad-block",
                        f"section header with a bad byte-order magic {bom.hex()}; reading stops",
                        self.n + 1,
                    )
                    return _STOP
                self.order = new_order
                self.little = new_order == "<"
            btype, blen = struct.unpack_from(self.order + "II", buf, pos)
            what = BLOCK_NAMES.get(btype, f"type 0x{btype:08x}")
            minimum = PCAPNG_MIN_SHB if btype == BT_SHB else PCAPNG_MIN_BLOCK
            if blen < minimum or blen & 3 or blen > PCAPNG_MAX_BLOCK:
                cap._warn(
                    "bad-block",
                    f"{what} block at byte {cap._consumed + pos} has an impossible length {blen}; "
                    "the file is corrupt from here on and reading stops",
                    self.n + 1,
                )
                return _STOP
            nxt = pos + blen
        else:
            nxt = pos + 12  # need at least a block head
        if nxt > end:
            return self._refill(nxt - end, avail, blen)
        trailer = struct.unpack_from(self.order + "I", buf, nxt - 4)[0]
        if trailer != blen:
            cap._warn(
                "bad-block",
                f"{what} block at byte {cap._consumed + pos}: its trailing length "
                f"{trailer} differs from its length {blen}; reading stops",
                self.n + 1,
            )
            return _STOP
        step = self._block(btype, blen, nxt)
        if step != _STOP:
            self.pos = nxt
        return step

    def _refill(self, need: int, avail: int, blen: int) -> int:
        """Read on until the block at pos is whole; at the end, report a cut-short block."""
        # The whole block at once: a pipe hands out a pipe buffer per read, and growing
        # the buffer read by read would copy a large block once per 64 KiB (quadratic).
        cap = self.cap
        data = cap._source.refill(self.buf, self.pos, need)
        keep_freed_buffers(len(data))
        if not data:
            if avail > 0 and not cap._source.failed:
                got = f"{avail} of {blen}" if blen else f"{avail} of at least 12"
                cap._warn(
                    "truncated", f"capture ends inside a block ({got} bytes); the frames before it are kept", self.n + 1
                )
            return _STOP
        cap._consumed += self.pos
        self.buf = data
        self.pos = 0
        return _BLOCK

    def _block(self, btype: int, blen: int, nxt: int) -> int:
        """A whole, framed block at pos: a packet, an interface, a section header or one to skip."""
        cap = self.cap
        buf = self.buf
        pos = self.pos
        order = self.order
        if btype == BT_EPB or btype == BT_PB or btype == BT_SPB:
            return self._checked_packet(blen, btype)
        if btype == BT_IDB:
            if blen < 20:
                cap._warn(
                    "bad-block", f"interface description block too short ({blen} bytes); reading stops", self.n + 1
                )
                return _STOP
            iface = parse_idb(cap, buf, pos, nxt, order, self.n + 1)
            cap._ifaces.append(iface)
            self.fast.append(iface.fast)
            if iface.linktype not in self.seen_linktypes:  # a set: a file may hold 100,000 interfaces
                self.seen_linktypes.add(iface.linktype)
                cap.linktypes.append(iface.linktype)
        elif btype == BT_SHB:
            major, minor = struct.unpack_from(order + "HH", buf, pos + 12)
            if major != 1:
                cap._warn(
                    "bad-block",
                    f"section header of unsupported pcapng version {major}.{minor}; reading stops",
                    self.n + 1,
                )
                return _STOP
            cap._ifaces.clear()  # interface ids are per section
            self.fast.clear()
        # other block types (statistics, name resolution, custom, ...) carry no packets
        return _BLOCK

    def _checked_packet(self, blen: int, btype: int) -> int:
        """A packet block the fast path did not take, checked: delivered, skipped or stop (both warned)."""
        cap = self.cap
        buf = self.buf
        pos = self.pos
        order = self.order
        n = self.n + 1
        ifaces = cap._ifaces
        if btype == BT_SPB:
            if not ifaces:
                cap._warn(
                    "unknown-interface",
                    "simple packet block before any interface description; the packet is skipped",
                    n,
                )
                return _BLOCK
            i = ifaces[0]
            orig = struct.unpack_from(order + "I", buf, pos + 8)[0]
            caplen = min(orig, i.snaplen) if i.snaplen else orig
            if caplen > blen - 16:
                cap._warn(
                    "bad-record-length",
                    f"simple packet block of frame {n} holds {orig} bytes in a {blen}-byte block; reading stops",
                    n,
                )
                return _STOP
            # an SPB has no timestamp: 0.0, as Wireshark shows it
            self._deliver(pos + 12, caplen, orig, i.linktype, 0.0)
            return _PACKET
        if blen < 32:
            cap._warn("bad-block", f"{BLOCK_NAMES[btype]} block too short ({blen} bytes); reading stops", n)
            return _STOP
        _, _, ifid, hi, lo, caplen, orig = struct.unpack_from(order + "IIIIIII", buf, pos)
        if btype == BT_PB:
            ifid = struct.unpack_from(order + "H", buf, pos + 8)[0]
        if caplen > blen - 32:
            cap._warn(
                "bad-record-length",
                f"packet block of frame {n} claims {caplen} captured bytes in a {blen}-byte block; reading stops",
                n,
            )
            return _STOP
        if ifid >= len(ifaces):
            cap._warn(
                "unknown-interface",
                f"packet refers to interface {ifid} but its section describes {len(ifaces)}; the packet is skipped",
                n,
            )
            return _BLOCK
        linktype, units, offset = ifaces[ifid].fast
        self._deliver(pos + 28, caplen, orig, linktype, ((hi << 32) | lo) / units + offset)
        return _PACKET

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.cap._finish(self.n)


def _warn_ts(cap: Capture, n: int, ts: float) -> None:
    cap._warn(
        "bad-timestamp",
        f"frame {n} has a timestamp of {ts:.6g} s, outside 1970-2242 (bad if_tsresol or if_tsoffset?); "
        "frames are kept with the timestamps as written",
        n,
    )
