"""How fast the capture reader walks a file, next to a plain dpkt.pcap.Reader loop.

Usage: python bench/read_speed.py FILE [--repeat N]
Prints records/s for both (best of N runs); dpkt is skipped where it cannot read the file.
Times are this process's CPU time (time.process_time): steadier than wall time on a shared
machine, and with the file in the page cache reading is CPU-bound anyway.
"""

from __future__ import annotations

import argparse
import gzip
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dpkt  # noqa: E402

from analyzer.capture import open_capture  # noqa: E402


def time_ours(path: str) -> tuple[int, float]:
    """Records read and seconds taken by open_capture's iteration (touching each frame's data)."""
    t0 = time.process_time()
    n = 0
    size = 0
    with open_capture(path) as cap:
        for frame in cap:
            n += 1
            size += len(frame.data)
    return n, time.process_time() - t0


def time_dpkt(path: str) -> tuple[int, float]:
    """Records read and seconds taken by a dpkt reader loop over the same file."""
    t0 = time.process_time()
    n = 0
    size = 0
    with open(path, "rb") as raw:
        f = gzip.GzipFile(fileobj=raw) if raw.read(2) == b"\x1f\x8b" else raw
        f.seek(0)
        head = f.read(4)
        f.seek(0)
        reader = dpkt.pcapng.Reader(f) if head == b"\x0a\x0d\x0d\x0a" else dpkt.pcap.Reader(f)
        for _ts, buf in reader:
            n += 1
            size += len(buf)
    return n, time.process_time() - t0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    for name, fn in (("analyzer.capture", time_ours), ("dpkt", time_dpkt)):
        best = None
        count = 0
        try:
            for _ in range(args.repeat):
                count, secs = fn(args.file)
                best = secs if best is None else min(best, secs)
        except Exception as exc:  # dpkt's own errors on files it cannot read
            print(f"{name:18} failed: {exc!r}")
            continue
        rate = count / best if best else float("inf")
        print(f"{name:18} {count:>10} records  {best:8.3f} s  {rate:>12,.0f} records/s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
