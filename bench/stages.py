"""Where the time goes: each stage of the pipeline timed on one capture, best of N passes.

    python bench/stages.py /tmp/bench-100k.pcap --runs 3

Stages are cumulative (each pass repeats the stages before it), timed in one process with
`analyzer` imported from wherever Python finds it (compiled modules when they were built).
"""

from __future__ import annotations

import argparse
import gc
import time

from analyzer.capture import open_capture
from analyzer.decode import Decoder
from analyzer.flows import FlowTable
from analyzer.model import Conversation
from analyzer.pipeline import analyze_capture
from analyzer.rules import load_rules


def read(path: str) -> int:
    n = 0
    with open_capture(path) as cap:
        for _ in cap:
            n += 1
    return n


def decode(path: str) -> int:
    dec = Decoder()
    with open_capture(path) as cap:
        return cap.feed(dec, dec._keep)  # decoded in place; the sink keeps only the last Packet


def flows(path: str) -> int:
    convs: list[Conversation] = []
    table = FlowTable(convs.append)
    with open_capture(path) as cap:
        cap.feed(Decoder(), table)
    table.flush()
    return len(convs)


def everything(path: str) -> int:
    return len(analyze_capture(path, load_rules()).findings)


STAGES = [("read records (Frame objects)", read), ("decode in place", decode), ("+ conversation table", flows),
          ("+ rules (analyze_capture)", everything)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("capture")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-gc", action="store_true", help="disable the cycle collector in every stage")
    args = ap.parse_args()
    if args.no_gc:
        gc.disable()
    packets = read(args.capture)
    print("| stage | best CPU s | per packet |\n| --- | ---: | ---: |")
    prev = 0.0
    for name, fn in STAGES:
        best = float("inf")
        for _ in range(args.runs):
            t0 = time.process_time()
            fn(args.capture)
            best = min(best, time.process_time() - t0)
        print(f"| {name} | {best:.2f} | {(best - prev) / packets * 1e6:.2f} µs |", flush=True)
        prev = best


if __name__ == "__main__":
    main()
