"""Many captures on several cores: serial beside `--jobs N` beside `--dask local`, as a Markdown table.

Usage: python bench/scale.py [--dir /tmp/wsadiag-scale] [--captures 8] [--packets 200000] [--runs 1] [--jobs 2]
                            [--big-packets 1000000]

Then one big capture (--big-packets, made once the same way): serial beside split by conversation
across --jobs processes (`wsadiag analyze BIG --jobs N`), measured the same way.

The captures are made by bench/generate.py (seeds 1..N, written once into --dir and reused).
Each command is `wsadiag analyze DIR --format json -o FILE --fail-on never` with the options of its
row, run in turns (serial, jobs, dask, then again) because a shared machine is noisy and only
ratios measured side by side mean something. For each: the median wall seconds, the ratio serial
/ this (above 1: faster than serial), and the peak resident memory of the largest single process
of its tree in MiB (os.wait4's rusage: a process's maximum includes the children it reaped, so a
pool worker or a Dask worker process counts, and the figure is per process, not a sum). The
reports of every row must be byte for byte the serial one; a row whose report differs says so.
`CPU s (all)` is the user and system seconds of the whole tree: on a shared machine, where other
work takes cores away, it says what the command cost beside what its wall time was.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def wsadiag() -> list[str]:
    found = shutil.which("wsadiag")
    return [found] if found else [sys.executable, "-m", "analyzer"]


def make_captures(folder: Path, count: int, packets: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for seed in range(1, count + 1):
        path = folder / f"bench-{packets // 1000}k-seed{seed}.pcap"
        if not path.exists():
            subprocess.run(
                [
                    sys.executable,
                    str(REPO / "bench" / "generate.py"),
                    str(path),
                    "--packets",
                    str(packets),
                    "--seed",
                    str(seed),
                    "--quiet",
                ],
                check=True,
            )
    return folder


def timed(argv: list[str]) -> tuple[float, float, int, float]:
    """Wall seconds, peak RSS in MiB of the largest process of the tree, exit status, CPU seconds of the tree."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 1) and proc.stderr is not None:
        sys.stderr.write(proc.stderr.read().decode(errors="replace"))
    return wall, usage.ru_maxrss / 1024, proc.returncode, usage.ru_utime + usage.ru_stime


def big(args: argparse.Namespace) -> None:
    """One big capture: serial beside split by conversation across --jobs processes."""
    folder = Path(args.dir) / "big"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"bench-{args.big_packets // 1000}k.pcap"
    if not path.exists():
        subprocess.run(
            [
                sys.executable,
                str(REPO / "bench" / "generate.py"),
                str(path),
                "--packets",
                str(args.big_packets),
                "--quiet",
            ],
            check=True,
        )
    rows = {"serial (--jobs 1)": "1", f"split (--jobs {args.jobs})": str(args.jobs)}
    walls: dict[str, list[float]] = {name: [] for name in rows}
    cpus: dict[str, list[float]] = {name: [] for name in rows}
    peaks = {name: 0.0 for name in rows}
    reports = {}
    for run in range(args.runs):
        for name in list(rows) if run % 2 == 0 else list(reversed(rows)):
            out = Path(args.dir) / f"big-{rows[name]}.json"
            cmd = [
                *wsadiag(),
                "analyze",
                str(path),
                "--format",
                "json",
                "-o",
                str(out),
                "--fail-on",
                "never",
                "--no-progress",
                "--jobs",
                rows[name],
            ]
            wall, peak, _, cpu = timed(cmd)
            walls[name].append(wall)
            cpus[name].append(cpu)
            peaks[name] = max(peaks[name], peak)
            reports[name] = out.read_bytes()
    serial = statistics.median(walls["serial (--jobs 1)"])
    print(f"one capture of {args.big_packets:,} packets, {args.runs} run(s)\n")
    print("| command | median wall s | serial / this | CPU s (all) | peak RSS MiB | report = serial |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for name in rows:
        med = statistics.median(walls[name])
        same = reports[name] == reports["serial (--jobs 1)"]
        cpu = statistics.median(cpus[name])
        print(
            f"| {name} | {med:.1f} | {serial / med:.2f}x | {cpu:.1f} | {peaks[name]:.0f} | {'yes' if same else 'NO'} |"
        )
    print()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default="/tmp/wsadiag-scale")
    ap.add_argument("--captures", type=int, default=8)
    ap.add_argument("--packets", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--no-dask", action="store_true", help="leave out the --dask local row")
    ap.add_argument("--big-packets", type=int, default=1_000_000, help="the one big capture (0: leave it out)")
    args = ap.parse_args(argv)
    folder = make_captures(Path(args.dir) / "captures", args.captures, args.packets)
    rows = {"serial (--jobs 1)": ["--jobs", "1"], f"--jobs {args.jobs}": ["--jobs", str(args.jobs)]}
    if not args.no_dask:
        rows[f"--dask local (--jobs {args.jobs})"] = ["--dask", "local", "--jobs", str(args.jobs)]
    walls: dict[str, list[float]] = {name: [] for name in rows}
    cpus: dict[str, list[float]] = {name: [] for name in rows}
    peaks: dict[str, float] = {name: 0.0 for name in rows}
    same: dict[str, bool] = {name: True for name in rows}
    for run in range(args.runs):
        order = list(rows) if run % 2 == 0 else list(reversed(rows))
        for name in order:
            out = Path(args.dir) / f"report-{list(rows).index(name)}.json"
            cmd = [
                *wsadiag(),
                "analyze",
                str(folder),
                "--format",
                "json",
                "-o",
                str(out),
                "--fail-on",
                "never",
                "--no-progress",
                *rows[name],
            ]
            wall, peak, code, cpu = timed(cmd)
            if code != 0:
                print(f"{name}: exit {code}", file=sys.stderr)
            walls[name].append(wall)
            cpus[name].append(cpu)
            peaks[name] = max(peaks[name], peak)
        reference = (Path(args.dir) / "report-0.json").read_bytes()
        for i, name in enumerate(rows):
            same[name] = same[name] and (Path(args.dir) / f"report-{i}.json").read_bytes() == reference
    serial = statistics.median(walls["serial (--jobs 1)"])
    print(f"{args.captures} captures of {args.packets:,} packets, {args.runs} run(s), {os.cpu_count()} cores\n")
    print("| command | median wall s | serial / this | CPU s (all) | peak RSS MiB | report = serial |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for name in rows:
        med = statistics.median(walls[name])
        cpu = statistics.median(cpus[name])
        print(
            f"| {name} | {med:.1f} | {serial / med:.2f}x | {cpu:.1f} | {peaks[name]:.0f} "
            f"| {'yes' if same[name] else 'NO'} |"
        )
    print()
    if args.big_packets:
        big(args)
    return 0 if all(same.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
