"""The pcapng block walk: sections, interfaces and the packet blocks that refer to them.

Enhanced Packet Blocks take a fast path (one `unpack_from` for the block head, one for the
trailing length); every other block, and any EPB that is not plainly well-formed, goes
through `_slow`, which also reports what is wrong.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

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
from analyzer.model import Frame

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


_new = tuple.__new__  # builds a Frame without NamedTuple's Python-level __new__


def epb_frame(
    n: int, buf: bytes, pos: int, iface: tuple[int, int, int], hi: int, lo: int, caplen: int, orig: int
) -> Frame:
    """Frame `n` from the enhanced (or obsolete) packet block at `pos`, whose header fields are given.

    The one place a packet block becomes a frame: the fast path and the checked path both call it.
    iface: (link type, timestamp units per second, timestamp offset in seconds).
    """
    linktype, units, offset = iface
    ts = ((hi << 32) | lo) / units + offset
    return _new(Frame, (n, ts, caplen, orig, linktype, buf[pos + 28 : pos + 28 + caplen]))


def walk_pcapng(cap: Capture, buf: bytes) -> Iterator[Frame]:
    """Yield the frames of a pcapng stream whose first bytes (starting with an SHB) are `buf`.

    Timestamps are (64-bit count) / units + if_tsoffset; values before 1970 or after 2242
    are still yielded and reported once ("bad-timestamp").
    """
    top_up = cap._source.top_up
    order = "<"
    head = struct.Struct("<II").unpack_from
    epb = struct.Struct("<IIIIIII").unpack_from
    u32 = struct.Struct("<I").unpack_from
    ifaces: list[Interface] = cap._ifaces
    seen_linktypes = set(cap.linktypes)
    # (linktype, units, offset) per interface of the current section, for the fast path
    fast: list[tuple[int, int, int]] = []
    epb_type = BT_EPB
    ts_max = TS_MAX
    pos = 0
    end = len(buf)
    n = 0
    bad_ts = 0
    try:
        while True:
            # fast path: well-formed EPBs that are wholly in the buffer
            while pos + 32 <= end:
                btype, blen, ifid, hi, lo, caplen, orig = epb(buf, pos)
                nxt = pos + blen
                if (
                    btype != epb_type
                    or nxt > end
                    or blen & 3
                    or caplen > blen - 32
                    or ifid >= len(fast)
                    or u32(buf, nxt - 4)[0] != blen
                ):
                    break
                n += 1
                frame = epb_frame(n, buf, pos, fast[ifid], hi, lo, caplen, orig)
                if not 0.0 <= frame[1] < ts_max:
                    bad_ts += 1
                    if bad_ts == 1:
                        _warn_ts(cap, n, frame[1])
                yield frame
                pos = nxt

            # slow path: one block of any kind, or a refill
            avail = end - pos
            if avail >= 12:
                btype = head(buf, pos)[0]
                if btype == BT_SHB:
                    bom = buf[pos + 8 : pos + 12]
                    new_order = "<" if bom == PCAPNG_BOM_LE else ">" if bom == PCAPNG_BOM_BE else ""
                    if not new_order:
                        cap._warn(
                            "bad-block", f"section header with a bad byte-order magic {bom.hex()}; reading stops", n + 1
                        )
                        return
                    if new_order != order:
                        order = new_order
                        head = struct.Struct(order + "II").unpack_from
                        epb = struct.Struct(order + "IIIIIII").unpack_from
                        u32 = struct.Struct(order + "I").unpack_from
                blen = head(buf, pos)[1]
                what = BLOCK_NAMES.get(btype, f"type 0x{btype:08x}")
                minimum = PCAPNG_MIN_SHB if btype == BT_SHB else PCAPNG_MIN_BLOCK
                if blen < minimum or blen & 3 or blen > PCAPNG_MAX_BLOCK:
                    cap._warn(
                        "bad-block",
                        f"{what} block at byte {cap._consumed + pos} has an impossible length {blen}; "
                        "the file is corrupt from here on and reading stops",
                        n + 1,
                    )
                    return
                nxt = pos + blen
            else:
                nxt = pos + 12  # need at least a block head
                blen = 0
            if nxt > end:
                # The whole block at once: a pipe hands out a pipe buffer per read, and growing
                # the buffer read by read would copy a large block once per 64 KiB (quadratic).
                data = top_up(b"", nxt - end)
                if not data:
                    if pos < end and not cap._source.failed:
                        got = f"{avail} of {blen}" if blen else f"{avail} of at least 12"
                        cap._warn(
                            "truncated",
                            f"capture ends inside a block ({got} bytes); the frames before it are kept",
                            n + 1,
                        )
                    return
                cap._consumed += pos
                buf = buf[pos:] + data
                pos = 0
                end = len(buf)
                continue
            if u32(buf, nxt - 4)[0] != blen:
                cap._warn(
                    "bad-block",
                    f"{what} block at byte {cap._consumed + pos}: its trailing length "
                    f"{u32(buf, nxt - 4)[0]} differs from its length {blen}; reading stops",
                    n + 1,
                )
                return

            if btype == BT_EPB or btype == BT_PB or btype == BT_SPB:
                checked = _checked_packet(cap, buf, pos, blen, btype, order, n + 1)
                if checked is _STOP:
                    return
                if checked is not None:
                    n += 1
                    if not 0.0 <= checked[1] < ts_max:
                        bad_ts += 1
                        if bad_ts == 1:
                            _warn_ts(cap, n, checked[1])
                    yield checked
            elif btype == BT_IDB:
                if blen < 20:
                    cap._warn(
                        "bad-block", f"interface description block too short ({blen} bytes); reading stops", n + 1
                    )
                    return
                iface = parse_idb(cap, buf, pos, nxt, order, n + 1)
                ifaces.append(iface)
                fast.append(iface.fast)
                if iface.linktype not in seen_linktypes:  # a set: a file may hold 100,000 interfaces
                    seen_linktypes.add(iface.linktype)
                    cap.linktypes.append(iface.linktype)
            elif btype == BT_SHB:
                major, minor = struct.unpack_from(order + "HH", buf, pos + 12)
                if major != 1:
                    cap._warn(
                        "bad-block",
                        f"section header of unsupported pcapng version {major}.{minor}; reading stops",
                        n + 1,
                    )
                    return
                ifaces.clear()  # interface ids are per section
                fast.clear()
            # other block types (statistics, name resolution, custom, ...) carry no packets
            pos = nxt
    finally:
        cap._finish(n)


_STOP = _new(Frame, (0, 0.0, 0, 0, 0, b""))  # _checked_packet: reading stops here (warned)


def _checked_packet(cap: Capture, buf: bytes, pos: int, blen: int, btype: int, order: str, n: int) -> Frame | None:
    """A packet block the fast path did not take, checked: frame `n`, None to skip it, or _STOP (both warned)."""
    ifaces = cap._ifaces
    if btype == BT_SPB:
        if not ifaces:
            cap._warn(
                "unknown-interface", "simple packet block before any interface description; the packet is skipped", n
            )
            return None
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
        return _new(Frame, (n, 0.0, caplen, orig, i.linktype, buf[pos + 12 : pos + 12 + caplen]))
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
        return None
    return epb_frame(n, buf, pos, ifaces[ifid].fast, hi, lo, caplen, orig)


def _warn_ts(cap: Capture, n: int, ts: float) -> None:
    cap._warn(
        "bad-timestamp",
        f"frame {n} has a timestamp of {ts:.6g} s, outside 1970-2242 (bad if_tsresol or if_tsoffset?); "
        "frames are kept with the timestamps as written",
        n,
    )
