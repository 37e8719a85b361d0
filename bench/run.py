"""Time wsadiag beside tshark on one capture and print a Markdown table.

Usage: python bench/run.py CAPTURE [--runs 3] [--what conversations|analyze|both] [--jobs N]

Each pair is run alternately in the same session (wsadiag then tshark, then tshark then
wsadiag, ...), because this kind of machine is noisy and only ratios measured side by side mean
something:
  conversations: wsadiag conversations CAPTURE --format json  (stdout to /dev/null)
                 beside tshark -r CAPTURE -q -z conv,tcp
  analyze:       wsadiag analyze CAPTURE --format json --fail-on never
                 beside tshark -r CAPTURE -q -z expert
For each command: median wall seconds, packets per second (packets in the capture over the
median), peak resident memory of that one child process in MiB (from os.wait4's rusage, so
several children never mix), and the median of the per-run ratios tshark / wsadiag (above 1
means wsadiag is faster). If `wsadiag` is not on PATH, `python -m analyzer` is run from the
repository. A failing command has its stderr printed and the others go on.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Block types and magic numbers of the two capture formats (libpcap; pcapng draft, IETF opsawg).
PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">",  # microsecond
    b"\x4d\x3c\xb2\xa1": "<", b"\xa1\xb2\x3c\x4d": ">",  # nanosecond
}
PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
PCAPNG_PACKET_BLOCKS = {0x00000006, 0x00000003, 0x00000002}  # EPB, SPB, obsolete PB
PCAPNG_BOM = 0x1A2B3C4D


@dataclass
class Sample:
    """The outcome of one run of one command."""

    wall: float
    peak_kib: int
    ok: bool
    stderr: str


@dataclass
class Command:
    """A command under test and its runs."""

    label: str
    argv: list[str]
    cwd: Path | None = None
    samples: list[Sample] = field(default_factory=list)

    @property
    def good(self) -> list[Sample]:
        return [s for s in self.samples if s.ok]


def count_packets(path: Path) -> int:
    """Number of packet records in a pcap or pcapng file, by walking record headers only."""
    with open(path, "rb") as f:
        head = f.read(24)
        if head[:4] in PCAP_MAGICS:
            rec = struct.Struct(PCAP_MAGICS[head[:4]] + "IIII")
            n = 0
            while True:
                h = f.read(16)
                if len(h) < 16:
                    return n
                caplen = rec.unpack(h)[2]
                f.seek(caplen, os.SEEK_CUR)
                n += 1
        if head[:4] == PCAPNG_SHB:
            f.seek(0)
            n = 0
            order = "<"
            while True:
                h = f.read(12)
                if len(h) < 12:
                    return n
                btype = struct.unpack(order + "I", h[:4])[0]
                if h[:4] == PCAPNG_SHB:
                    order = "<" if struct.unpack("<I", h[8:12])[0] == PCAPNG_BOM else ">"
                    btype = 0x0A0D0D0A
                blen = struct.unpack(order + "I", h[4:8])[0]
                if blen < 12:
                    return n
                if btype in PCAPNG_PACKET_BLOCKS:
                    n += 1
                f.seek(blen - 12, os.SEEK_CUR)
    raise SystemExit(f"error: {path} is neither pcap nor pcapng")


def run_once(cmd: Command) -> Sample:
    """Run cmd once; wall time from start to reaping, peak RSS of that child alone."""
    with tempfile.TemporaryFile() as err:
        began = time.perf_counter()
        proc = subprocess.Popen(cmd.argv, stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL,
                                cwd=cmd.cwd)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - began
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen must not wait again
        err.seek(0)
        text = err.read().decode("utf-8", "replace")
    # ru_maxrss is in KiB on Linux.
    return Sample(wall=wall, peak_kib=usage.ru_maxrss, ok=proc.returncode == 0, stderr=text)


def wsadiag_argv(sub: str, capture: str, jobs: int | None = None) -> tuple[list[str], Path | None]:
    """The wsadiag command line for a subcommand, or `python -m analyzer` from the repository.

    jobs: passed on as --jobs (1: one process, as tshark and tcptrace are); None: wsadiag's default.
    """
    rest = {
        # stdout goes to /dev/null (run_once); `-o /dev/null` is refused: not a regular file
        "conversations": [capture, "--format", "json"],
        "analyze": [capture, "--format", "json", "--fail-on", "never"],
    }[sub]
    if jobs is not None:
        rest += ["--jobs", str(jobs)]
    exe = shutil.which("wsadiag")
    if exe:
        return [exe, sub, *rest], None
    return [sys.executable, "-m", "analyzer", sub, *rest], REPO


def stand_in_argv(template: str, capture: str) -> list[str]:
    """A stand-in command (hidden --cmd) with {capture} replaced, or the capture appended."""
    argv = shlex.split(template)
    if any("{capture}" in a for a in argv):
        return [a.replace("{capture}", capture) for a in argv]
    return argv + [capture]


def build_pairs(capture: str, what: str, stand_in: str | None,
                jobs: int | None = None) -> list[tuple[Command, Command]]:
    """(ours, tshark) pairs for the chosen subcommands."""
    tshark = shutil.which("tshark") or "tshark"
    pairs = []
    for sub, z in (("conversations", "conv,tcp"), ("analyze", "expert")):
        if what not in (sub, "both"):
            continue
        if stand_in:
            ours = Command(f"stand-in `{stand_in}`", stand_in_argv(stand_in, capture))
        else:
            argv, cwd = wsadiag_argv(sub, capture, jobs)
            shown = " ".join(["wsadiag", sub, *argv[argv.index(sub) + 1:]])
            ours = Command(f"`{shown}`", argv, cwd)
        theirs = Command(f"`tshark -r {capture} -q -z {z}`", [tshark, "-r", capture, "-q", "-z", z])
        pairs.append((ours, theirs))
    return pairs


def warm(path: Path) -> None:
    """Read the capture once so the first timed run does not pay for the disk."""
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


def report_failure(cmd: Command, sample: Sample) -> None:
    tail = "\n".join(sample.stderr.strip().splitlines()[-15:])
    print(f"FAILED: {cmd.label}\n{tail}\n", file=sys.stderr)


def table(pairs: list[tuple[Command, Command]], packets: int) -> str:
    """The Markdown table of medians and paired ratios."""
    lines = ["| command | runs ok | median wall s | packets/s | peak MiB | tshark / this |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for ours, theirs in pairs:
        ratios = [t.wall / o.wall for o, t in zip(ours.samples, theirs.samples) if o.ok and t.ok]
        for cmd, ratio in ((ours, ratios), (theirs, None)):
            good = cmd.good
            if not good:
                lines.append(f"| {cmd.label} | 0/{len(cmd.samples)} | failed | | | |")
                continue
            wall = statistics.median(s.wall for s in good)
            peak = max(s.peak_kib for s in good) / 1024
            rate = packets / wall if wall > 0 else float("inf")
            if ratio is None:
                shown = "1"
            elif ratio:
                shown = f"{statistics.median(ratio):.2f}"
            else:
                shown = "n/a"
            lines.append(f"| {cmd.label} | {len(good)}/{len(cmd.samples)} | {wall:.2f} | {_si(rate)} | "
                         f"{peak:,.0f} | {shown} |")
    return "\n".join(lines)


def _si(x: float) -> str:
    if x >= 1e6:
        return f"{x / 1e6:.2f} M"
    if x >= 1e3:
        return f"{x / 1e3:.0f} k"
    return f"{x:.0f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("capture", type=Path)
    ap.add_argument("--runs", type=int, default=3, help="runs of each command (default 3)")
    ap.add_argument("--what", choices=("conversations", "analyze", "both"), default="both")
    ap.add_argument("--jobs", type=int, help="pass --jobs N to wsadiag (1: one process, like tshark; default: "
                    "wsadiag's own default, every core, which splits a big capture across processes)")
    ap.add_argument("--cmd", help=argparse.SUPPRESS)  # stand-in for wsadiag while testing this runner
    args = ap.parse_args(argv)
    if not args.capture.is_file():
        ap.error(f"{args.capture}: no such file")
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    capture = str(args.capture.resolve())
    # The children may write bytecode, as an installed wsadiag has it; otherwise every run of a
    # checkout would compile its Python sources again (about 60 ms) where an installed one does not.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    packets = count_packets(args.capture)
    warm(args.capture)
    pairs = build_pairs(capture, args.what, args.cmd, args.jobs)
    for run in range(args.runs):
        for ours, theirs in pairs:
            order = (ours, theirs) if run % 2 == 0 else (theirs, ours)
            for cmd in order:
                sample = run_once(cmd)
                cmd.samples.append(sample)
                state = "ok" if sample.ok else "FAILED"
                print(f"run {run + 1}/{args.runs}: {sample.wall:7.2f} s {sample.peak_kib / 1024:8.0f} MiB "
                      f"{state} {cmd.label}", file=sys.stderr)
                if not sample.ok:
                    report_failure(cmd, sample)
    size = args.capture.stat().st_size
    print(f"Capture: {args.capture.name}, {packets:,} packets, {size / 1e6:,.0f} MB; "
          f"{args.runs} alternating run(s) per command; peak MiB is the largest of the runs.\n")
    print(table(pairs, packets))
    failed = any(not s.ok for pair in pairs for c in pair for s in c.samples)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
