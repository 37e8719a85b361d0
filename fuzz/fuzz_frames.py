"""Structure-aware fuzzing of decode -> flows -> rules -> reports, skipping the file format.

    python fuzz/fuzz_frames.py -max_total_time=3600 fuzz/frames-corpus-dir

fuzz_pipeline.py spends most mutations on the capture container; this target takes the
container as given and spends them on the packets. An input is

    linktype (1 byte: an index into LINKTYPES)
    then frames, each: length (2 bytes, big-endian), time step in ms (2 bytes, signed), data

so a mutation changes a header field, a time step or a frame boundary, never the framing
of the whole file. Seeds are the captures of samples/ (and ../shared/corpus) re-encoded
this way at start-up, in a temporary directory.
"""

from __future__ import annotations

import os
import struct
import sys
import tempfile
from pathlib import Path

import atheris

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing the package

with atheris.instrument_imports():
    from analyzer.capture import open_capture
    from analyzer.decode import Decoder
    from analyzer.errors import CaptureError, WsadiagError
    from analyzer.flows import FlowTable
    from analyzer.flows.table import TIMELINE_HEAD, TIMELINE_TAIL
    from analyzer.model import CaptureResult, Conversation, Frame
    from analyzer.report import FORMATS, ReportOptions, render
    from analyzer.rules import load_rules

# The link types the decoder reads (LINKTYPE_* values, tcpdump.org/linktypes.html), and one it does not.
LINKTYPES = (1, 101, 113, 276, 0, 108, 12, 14, 228, 229, 239, 9, 50, 51, 147)
FRAME_HEAD = struct.Struct(">Hh")
T0 = 1_700_000_000.0
FUZZ_MAX_CONVERSATIONS = 16
RULES = load_rules()
OPTIONS = ReportOptions(rules=list(RULES.rules))
CORPUS = REPO.parent / "shared" / "corpus"


def frames_of(data: bytes) -> tuple[int, list[Frame]]:
    """Decode the input format into (linktype, frames); trailing bytes that make no frame are dropped."""
    if not data:
        return LINKTYPES[0], []
    linktype = LINKTYPES[data[0] % len(LINKTYPES)]
    frames, pos, ts = [], 1, T0
    while pos + 4 <= len(data):
        length, step = FRAME_HEAD.unpack_from(data, pos)
        body = data[pos + 4 : pos + 4 + length]
        pos += 4 + length
        ts += step / 1000
        frames.append(Frame(len(frames) + 1, ts, len(body), len(body), linktype, body))
    return linktype, frames


def encode(linktype: int, frames: list[Frame]) -> bytes:
    """The inverse of frames_of, for seeds (time steps clamped to the 2-byte field)."""
    out = [bytes([LINKTYPES.index(linktype)])]
    prev = frames[0].ts if frames else 0.0
    for f in frames:
        step = max(-32768, min(32767, round((f.ts - prev) * 1000)))
        prev = f.ts
        out.append(FRAME_HEAD.pack(min(len(f.data), 0xFFFF), step) + f.data[:0xFFFF])
    return b"".join(out)


def TestOneInput(data: bytes) -> None:
    _, frames = frames_of(data)
    result = CaptureResult(path="<fuzz>")

    def emit(conv: Conversation) -> None:
        assert len(conv.timeline) <= TIMELINE_HEAD + TIMELINE_TAIL, "timeline not bounded"
        result.conversation_count += 1
        result.findings.extend(RULES.evaluate(conv))
        result.conversations.append(conv)

    table = FlowTable(emit, max_conversations=FUZZ_MAX_CONVERSATIONS)
    decoder = Decoder()
    for frame in frames:
        pkt = decoder.decode(frame)
        if pkt is not None:
            table.add(pkt)
    table.flush()
    result.packets = len(frames)
    result.warnings.extend(decoder.warnings())
    result.warnings.extend(table.warnings())
    result.conversations.sort(key=lambda c: c.id)
    for fmt in FORMATS:
        try:
            render(fmt, [result], OPTIONS)
        except WsadiagError:
            pass


def seed_dir() -> str:
    """Sample and corpus captures (up to 64 frames each) re-encoded as fuzz inputs, in a temporary directory."""
    tmp = tempfile.mkdtemp(prefix="wsadiag-fuzz-frames-seeds-")
    n = 0
    for root in (REPO / "samples", CORPUS):
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*")):
            if not (path.is_file() and path.name.endswith((".pcap", ".pcapng"))) or path.stat().st_size > 1 << 20:
                continue
            try:
                with open_capture(path) as cap:
                    frames = [f for _, f in zip(range(64), cap)]
            except CaptureError:
                continue
            if frames and frames[0].linktype in LINKTYPES:
                n += 1
                Path(tmp, f"{n:04d}-{path.stem}").write_bytes(encode(frames[0].linktype, frames))
    print(f"fuzz: {n} seed inputs written to {tmp}", file=sys.stderr)
    return tmp


def main(argv: list[str]) -> None:
    args = list(argv)
    positional = [a for a in args[1:] if not a.startswith("-")]
    if positional and not Path(positional[0]).is_file():
        Path(positional[0]).mkdir(parents=True, exist_ok=True)
        args.append(seed_dir())
    atheris.Setup(args, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
