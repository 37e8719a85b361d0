"""How fast the decoder turns frames into Packets, against the dpkt reference decoder.

    python bench/decode_speed.py CAPTURE [--repeat N]

Frames are read once into memory first, so the numbers are decoding alone.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analyzer.capture import open_capture  # noqa: E402
from analyzer.decode import Decoder  # noqa: E402
from analyzer.decode.reference import reference_decode  # noqa: E402


def rate(fn, frames, repeat: int) -> tuple[float, int]:
    """Best packets/s of fn over the frames, and how many Packets it returned."""
    best = 0.0
    decoded = 0
    for _ in range(repeat):
        start = time.perf_counter()
        decoded = sum(1 for f in frames if fn(f) is not None)
        best = max(best, len(frames) / (time.perf_counter() - start))
    return best, decoded


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("capture")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    with open_capture(args.capture) as cap:
        frames = list(cap)
    read = len(frames) / max(time.perf_counter() - start, 1e-9)
    print(f"{len(frames)} frames; reading: {read:,.0f} frames/s")
    results = [("fast (Decoder.decode)", Decoder().decode),
               ("general path only", Decoder().decode_general),
               ("dpkt reference", reference_decode)]
    for name, fn in results:
        pps, decoded = rate(fn, frames, args.repeat)
        print(f"{name:24} {pps:>12,.0f} packets/s  ({decoded} decoded)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
