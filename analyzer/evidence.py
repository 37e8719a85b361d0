"""`wsadiag analyze --evidence DIR`: one small pcapng per finding, ready to attach to a ticket.

Each file holds the conversation's handshake and the finding's evidence packets, re-read from the
capture by frame number, every packet carrying a pcapng comment (opt_comment) that names its role:
"wsadiag CON001 evidence 2/2 (frame 17): server -> client RST,ACK seq=1 ack=1 len=0". Wireshark
shows the comments in the packet list (pkt_comment) and the expert info.

dpkt writes the pcapng (its EnhancedPacketBlock takes options), so no block layout is written by
hand here.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

from dpkt import pcapng

from analyzer import __version__
from analyzer.capture import open_capture
from analyzer.errors import CaptureError, UsageError
from analyzer.model import CaptureResult, Conversation, Event, Finding
from analyzer.protocol import SYN
from analyzer.report.common import conversations_by_id
from analyzer.report.evidence_names import evidence_path
from analyzer.report.ladder import packet_label
from analyzer.report.output import replacing

TOOL = f"wsadiag {__version__}"  # written as the section's shb_userappl: marks files wsadiag may replace
LITTLE = sys.byteorder == "little"
_SHB = pcapng.SectionHeaderBlockLE if LITTLE else pcapng.SectionHeaderBlock
_IDB = pcapng.InterfaceDescriptionBlockLE if LITTLE else pcapng.InterfaceDescriptionBlock
_EPB = pcapng.EnhancedPacketBlockLE if LITTLE else pcapng.EnhancedPacketBlock
_OPT = pcapng.PcapngOptionLE if LITTLE else pcapng.PcapngOption


def handshake_events(conv: Conversation) -> list[Event]:
    """The packets that opened the conversation: its SYN and SYN/ACK, and the ACK that completed them."""
    head = list(conv.timeline[:3])
    picked = [ev for ev in head if ev.flags & SYN]
    if conv.handshake and len(head) == 3 and not head[2].flags & SYN:
        picked.append(head[2])
    return picked


def roles(finding: Finding, conv: Conversation) -> dict[int, str]:
    """Frame number -> the comment its packet carries in the finding's evidence capture."""
    by_frame = {ev.frame: ev for ev in conv.timeline}
    sides = ("client -> server", "server -> client")
    out: dict[int, str] = {}
    for ev in handshake_events(conv):
        out[ev.frame] = f"wsadiag {finding.rule} handshake: {sides[ev.dir]} {packet_label(conv, ev)}"
    total = len(finding.frames)
    for n, frame in enumerate(finding.frames, 1):
        seen = by_frame.get(frame)
        what = f"{sides[seen.dir]} {packet_label(conv, seen)}" if seen is not None else "packet"
        out[frame] = f"wsadiag {finding.rule} evidence {n}/{total} (frame {frame}): {what}"
    return out


def _may_replace(path: Path) -> bool:
    """Only a file wsadiag wrote earlier is replaced: nothing else the user owns is overwritten."""
    try:
        with path.open("rb") as fh:
            head = fh.read(512)
    except OSError:
        return False
    return head[:4] == b"\x0a\x0d\x0d\x0a" and b"wsadiag" in head


def _write_one(path: Path, packets: list[tuple[int, float, int, bytes, str]]) -> None:
    """One pcapng: packets are (linktype, ts, wirelen, data, comment), in frame order."""
    linktypes = sorted({p[0] for p in packets})
    iface = {lt: i for i, lt in enumerate(linktypes)}
    shb = _SHB(opts=[_OPT(code=pcapng.PCAPNG_OPT_SHB_USERAPPL, text=TOOL), _OPT(code=pcapng.PCAPNG_OPT_ENDOFOPT)])
    idbs = [_IDB(linktype=lt, snaplen=262144) for lt in linktypes]
    with replacing(str(path), binary=True, sync=False) as fh:  # complete, or the old file and nothing beside it
        writer = pcapng.Writer(fh, shb=shb, idb=idbs)
        for linktype, ts, wirelen, data, comment in packets:
            micros = round(ts * 1e6)
            epb = _EPB(
                iface_id=iface[linktype],
                ts_high=micros >> 32,
                ts_low=micros & 0xFFFFFFFF,
                caplen=len(data),
                pkt_len=max(wirelen, len(data)),
                pkt_data=data,
                opts=[_OPT(code=pcapng.PCAPNG_OPT_COMMENT, text=comment), _OPT(code=pcapng.PCAPNG_OPT_ENDOFOPT)],
            )
            writer.writepkt(epb)


def _frames(path: str, wanted: set[int]) -> dict[int, tuple[int, float, int, bytes]]:
    """The wanted frames of a capture, read again: number -> (linktype, ts, wirelen, data)."""
    found: dict[int, tuple[int, float, int, bytes]] = {}
    last = max(wanted, default=0)
    with open_capture(path) as cap:
        for frame in cap:
            if frame.number in wanted:
                found[frame.number] = (frame.linktype, frame.ts, frame.wirelen, bytes(frame.data))
            if frame.number >= last:
                break
    return found


def _capture_evidence(result: CaptureResult, directory: Path) -> int:
    convs = conversations_by_id(result)
    plans: list[tuple[Path, dict[int, str]]] = []
    for finding in result.findings:
        conv = convs.get(finding.conversation)
        if conv is not None:
            plans.append((Path(evidence_path(str(directory), result.path, finding, conv)), roles(finding, conv)))
    if not plans:
        return 0
    frames = _frames(result.path, {n for _, comments in plans for n in comments})
    for target, comments in plans:
        if target.exists() and not _may_replace(target):
            raise UsageError(f"{target} exists and was not written by wsadiag: not overwriting it")
        packets = [
            (*frames[n][:2], frames[n][2], frames[n][3], text) for n, text in sorted(comments.items()) if n in frames
        ]
        _write_one(target, packets)
    return len(plans)


def write_evidence(results: Iterable[CaptureResult], directory: str) -> int:
    """Write every finding's evidence capture into `directory` (made if missing); how many were written."""
    folder = Path(directory)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--evidence {directory}: cannot create the folder: {exc.strerror}") from None
    count = 0
    for result in results:
        if result.error or not result.findings:
            continue
        if result.path == "-":
            print(
                "warning: --evidence: standard input cannot be read again; no evidence captures for it", file=sys.stderr
            )
            continue
        try:
            count += _capture_evidence(result, folder)
        except CaptureError as exc:
            print(f"warning: --evidence: {exc}", file=sys.stderr)
        except OSError as exc:
            raise UsageError(f"--evidence {directory}: cannot write: {exc.strerror}") from None
    return count
