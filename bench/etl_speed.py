"""How fast ETL files are read, beside pcapng holding the same packets.

Usage: python bench/etl_speed.py CAPTURE [--packets N] [--repeat R]

Takes the first N frames (default 100,000) of CAPTURE (any capture wsadiag reads, e.g. one made
by bench/generate.py), writes them to temporary files as pcapng, as a pktmon ETL file (one packet
event per frame, two processors' buffers of 64 KiB) uncompressed, and the same ETL with compressed
buffers (literal-only Xpress, as scripts/samples_lib/etlwrite.py writes them: decompression does
the full per-byte work, only the match copying of real files is missing), then times
open_capture's iteration over each (process CPU time, best of R).
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analyzer.capture import open_capture  # noqa: E402
from scripts.samples_lib.etlwrite import EtlWriter  # noqa: E402


def read_frames(path: str, limit: int) -> list:
    with open_capture(path) as cap:
        out = []
        for frame in cap:
            out.append(frame)
            if len(out) >= limit:
                break
        return out


def write_pcapng(path: str, frames: list) -> None:
    with open(path, "wb") as f:
        f.write(struct.pack("<IIIHHqI", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1, 28))
        f.write(struct.pack("<IIHHII", 1, 20, frames[0].linktype, 0, 0, 20))
        for fr in frames:
            us = int(round(fr.ts * 1_000_000))
            pad = -len(fr.data) % 4
            blen = 32 + len(fr.data) + pad
            f.write(struct.pack("<IIIIIII", 6, blen, 0, us >> 32, us & 0xFFFFFFFF, len(fr.data), fr.wirelen))
            f.write(fr.data + b"\0" * pad + struct.pack("<I", blen))


def write_etl(path: str, frames: list, compress: bool) -> None:
    w = EtlWriter(frames[0].ts)
    for i, fr in enumerate(frames, 1):
        w.pktmon_packet(fr.ts, fr.data, group=i, component=1)
    with open(path, "wb") as f:
        f.write(w.to_bytes(cpus=2, compress=compress, per_buffer=64))


def time_read(path: str, repeat: int) -> tuple[int, float]:
    best = None
    n = 0
    for _ in range(repeat):
        t0 = time.process_time()
        with open_capture(path) as cap:
            n = sum(1 for _ in cap)
        secs = time.process_time() - t0
        best = secs if best is None else min(best, secs)
    return n, best or 0.0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("capture")
    parser.add_argument("--packets", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    frames = read_frames(args.capture, args.packets)
    with tempfile.TemporaryDirectory() as tmp:
        files = {
            "pcapng": os.path.join(tmp, "f.pcapng"),
            "etl (pktmon)": os.path.join(tmp, "f.etl"),
            "etl (pktmon, compressed)": os.path.join(tmp, "fc.etl"),
        }
        write_pcapng(files["pcapng"], frames)
        write_etl(files["etl (pktmon)"], frames, compress=False)
        write_etl(files["etl (pktmon, compressed)"], frames, compress=True)
        print("| file | size | packets | CPU s | packets/s |")
        print("|---|---:|---:|---:|---:|")
        for name, path in files.items():
            n, secs = time_read(path, args.repeat)
            size = os.path.getsize(path) / 1e6
            print(f"| {name} | {size:.1f} MB | {n:,} | {secs:.3f} | {n / secs if secs else 0:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
