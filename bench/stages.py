"""Where the time goes: parts of the pipeline timed alone on one capture, best of N passes.

    python bench/stages.py /tmp/bench-100k.pcap --runs 3

Each line is a whole pass over the capture doing that much of the work (CPU seconds of this
process, with the cycle collector paused as `analyze` pauses it), timed in one process with
`analyzer` imported from wherever Python finds it (compiled modules when they were built).
"""

from __future__ import annotations

import argparse
import time

from analyzer.capture import open_capture
from analyzer.decode import Decoder
from analyzer.flows import FlowTable
from analyzer.model import Conversation
from analyzer.pipeline import analyze_capture, collector_paused, packet_loop
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
        packet_loop(cap.records(), dec, dec._keep)  # decoded in place; the sink keeps only the last Packet
        return cap.frames


def flows(path: str) -> int:
    built = 0

    def count(conv: Conversation) -> None:
        nonlocal built
        built += 1

    table = FlowTable(count)
    with open_capture(path) as cap:
        packet_loop(cap.records(), Decoder(), table)
    table.flush()
    return built


def everything(path: str) -> int:
    return len(analyze_capture(path, load_rules()).findings)


STAGES = [("records read as Frame objects (not the analyze path)", read),
          ("records walked and decoded in place, each into a Packet", decode),
          ("... and every conversation built", flows),
          ("analyze_capture: conversations no rule could fire on left unbuilt, rules run", everything)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("capture")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    packets = read(args.capture)
    print("| pass | best CPU s | per packet |\n| --- | ---: | ---: |")
    with collector_paused():
        for name, fn in STAGES:
            best = float("inf")
            for _ in range(args.runs):
                t0 = time.process_time()
                fn(args.capture)
                best = min(best, time.process_time() - t0)
            print(f"| {name} | {best:.2f} | {best / packets * 1e6:.2f} µs |", flush=True)


if __name__ == "__main__":
    main()
