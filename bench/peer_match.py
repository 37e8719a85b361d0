"""How fast and how right `analyze --peer` pairs conversations by payload lengths and timing.

    python bench/peer_match.py [--conversations 5000] [--spacing 0.01] [--jitter 0.001] [--seed 1]

Builds, in memory, N conversations seen at two capture points across a proxy: every one the same
request and answer (so neither addresses, sequence numbers nor payload bytes tell them apart),
starting at random times SPACING seconds apart on average, the far point's clock 300 s ahead and
each far leg delayed by up to JITTER seconds. Prints how many were paired with their true twin
and how long the matching took. Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import random
import time
from types import SimpleNamespace

from analyzer.peer.match import Side, match_by_lengths
from analyzer.peer.model import PointPacket
from analyzer.protocol import ACK, IPPROTO_TCP, PSH

OFFSET = 300.002  # the far clock minus the near one


def _side(cid: int, start: float, delay: float, rng: random.Random) -> Side:
    """A request of 75 bytes and an answer of 366, as one capture point saw them."""
    seq = [rng.getrandbits(32), rng.getrandbits(32)]
    packets = []
    for n, (d, size) in enumerate(((0, 75), (1, 366))):
        ts = start + n * 0.001 + (delay if d == 0 else -delay)
        p = PointPacket(cid, ts, IPPROTO_TCP, "c:1", "s:2", ACK | PSH, seq[d], seq[1 - d], size, 500, 64, 0, 0, b"GET")
        packets.append((d, p))
    return Side(SimpleNamespace(proto="tcp", start=start, id=cid), packets)  # type: ignore[arg-type]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--conversations", type=int, default=5000)
    ap.add_argument("--spacing", type=float, default=0.01)
    ap.add_argument("--jitter", type=float, default=0.001)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    n = args.conversations
    starts = sorted(rng.uniform(0, n * args.spacing) for _ in range(n))
    near = {i: _side(i, t, 0.0, rng) for i, t in enumerate(starts)}
    far = {i: _side(i, t + OFFSET, rng.uniform(0, args.jitter), rng) for i, t in enumerate(starts)}
    began = time.perf_counter()
    found = match_by_lengths(near, far, [])
    took = time.perf_counter() - began
    right = sum(1 for a, b in found.items() if a == b)
    print("| conversations | spacing | jitter | paired | with the true twin | seconds |")
    print("|---:|---:|---:|---:|---:|---:|")
    print(f"| {n} | {args.spacing} s | {args.jitter} s | {len(found)} | {right} ({right / n:.1%}) | {took:.2f} |")


if __name__ == "__main__":
    main()
