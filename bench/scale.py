"""Many captures on several cores: serial beside `--jobs N` beside `--dask local`, as a Markdown table.

Usage: python bench/scale.py [--dir /tmp/wsadiag-scale] [--captures 8] [--packets 200000] [--runs 1] [--jobs 2]
                            [--big-packets 1000000] [--no-dask] [--phases] [--critical-path]

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

--phases instead times, in this one process, the steps of the big capture's split (each share,
moving a share's result between processes, the merge) beside the serial analysis: where the
split's time goes, in CPU seconds, which a busy machine disturbs less than wall times.

--critical-path runs each command once more with its processes' CPU seconds recorded: the
parent's before the first task starts, each worker's (its tasks and sending their results; for
the split also the share the parent follows), the parent's beside them (--jobs: taking each
result and writing its part of the report as it comes), the parent's after the last result is in
(the merge, the rest of the report), and the total of all processes. The critical path is the
parent's before + the busiest process's work, or the work beside it spread over the cores if that
is longer, + the parent's after; on N free cores the wall time cannot be below it. CPU seconds hardly move with
the machine's load, so this says what a quiet machine would give when the wall times cannot.
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


def big_capture(args: argparse.Namespace) -> Path:
    """The one big capture (made once by bench/generate.py, then reused)."""
    folder = Path(args.dir) / "big"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"bench-{args.big_packets // 1000}k.pcap"
    if not path.exists():
        generate = [sys.executable, str(REPO / "bench" / "generate.py"), str(path)]
        subprocess.run([*generate, "--packets", str(args.big_packets), "--quiet"], check=True)
    return path


def big(args: argparse.Namespace) -> None:
    """One big capture: serial beside split by conversation across --jobs processes."""
    path = big_capture(args)
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


def phases(path: Path, jobs: int) -> None:
    """Where the split's time goes, in this process: each share, moving a share's outcome between
    processes (pickle, then unpickle), and the merge; beside the serial analysis. CPU seconds,
    with the cycle collector paused as in `wsadiag` (and in the pool processes forked from it)."""
    import pickle

    from analyzer.pipeline import collector_paused
    from analyzer.scale import Job, _ruleset, analyze_task
    from analyzer.split import analyze_share, merge_shares

    job = Job(keep="findings")
    rules = _ruleset((), (), ())
    rows: list[tuple[str, float]] = []

    def step(name: str, run):
        start = time.process_time()
        out = run()
        rows.append((name, time.process_time() - start))
        return out

    with collector_paused():
        step("serial analysis", lambda: analyze_task(str(path), job))
        outcomes = [
            step(f"share {k} of {jobs}", lambda k=k: analyze_share(str(path), k, jobs, job, True)) for k in range(jobs)
        ]
        blobs = step(f"pickle shares 1 to {jobs - 1}", lambda: [pickle.dumps(o) for o in outcomes[1:]])
        outcomes[1:] = step("unpickle them", lambda: [pickle.loads(b) for b in blobs])
        step("merge", lambda: merge_shares(outcomes, rules))
    print(f"where the split's time goes, {path.name} in {jobs} shares (CPU s, one process)\n")
    print("| step | CPU s |\n| --- | ---: |")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.2f} |")
    print()


# -- --critical-path: one command in a child process, its processes' CPU seconds recorded ------------

TRACE_ENV = "WSADIAG_BENCH_TRACE"  # the file the workers of a traced command append their CPU seconds to


def _cpu() -> float:
    return time.process_time()


def traced_task(path: str, job):
    """analyze_task, then this process's CPU seconds so far (a pool worker: since it was forked)."""
    from analyzer.scale import analyze_task

    out = analyze_task(path, job)
    with open(os.environ[TRACE_ENV], "a") as fh:
        fh.write(f"{os.getpid()} {_cpu():.4f}\n")
    return out


def trace_one(argv: list[str]) -> None:
    """Run `wsadiag ARGV` in this process and print its CPU seconds by part as one JSON line."""
    import functools
    import json
    import resource

    from analyzer import cli, scale, split

    marks: dict[str, float] = {}
    run_pool = scale.run_pool

    def pool(*a, **k):
        marks["before"] = _cpu()
        k["task"] = traced_task
        for out in run_pool(*a, **k):
            yield out
        marks["last in"] = _cpu()

    share = split.analyze_share

    @functools.wraps(share)
    def analyze_share(path, k, *a, **kw):
        parent = k == 0
        if parent:
            marks["before"] = _cpu()
        out = share(path, k, *a, **kw)
        if parent:
            marks["own share"] = _cpu() - marks["before"]
            marks["last in"] = _cpu()
        return out

    scale.run_pool = pool
    split.analyze_share = analyze_share
    cli.main(argv)
    end = _cpu()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    workers: dict[str, float] = {}
    with open(os.environ[TRACE_ENV]) as fh:
        for line in fh:
            pid, cpu = line.split()
            workers[pid] = max(workers.get(pid, 0.0), float(cpu))
    print(
        json.dumps(
            {
                "marks": marks,
                "end": end,
                "children": children.ru_utime + children.ru_stime,
                "workers": list(workers.values()),
            }
        )
    )


def critical_path(args: argparse.Namespace) -> None:
    """Each command's CPU seconds by process and its critical path (see the module doc)."""
    import json
    import tempfile

    folder = make_captures(Path(args.dir) / "captures", args.captures, args.packets)
    commands = [
        (f"{args.captures} x {args.packets // 1000}k, serial", [str(folder), "--jobs", "1"]),
        (f"{args.captures} x {args.packets // 1000}k, --jobs {args.jobs}", [str(folder), "--jobs", str(args.jobs)]),
    ]
    if args.big_packets:
        path = str(big_capture(args))
        big_name = f"1 x {args.big_packets // 1000}k"
        commands.append((f"{big_name}, serial", [path, "--jobs", "1"]))
        commands.append((f"{big_name}, split --jobs {args.jobs}", [path, "--jobs", str(args.jobs)]))
    print(f"CPU seconds by process ({os.cpu_count()} cores; `before`/`after`: the parent's serial parts)\n")
    print(
        "| command | parent before | each process | parent beside them | parent after | critical path | total CPU "
        "| serial / path |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    serial_path = 0.0
    for name, extra in commands:
        with tempfile.NamedTemporaryFile("w", suffix=".trace") as log:
            out = Path(args.dir) / "critical-path.json"
            argv = ["analyze", *extra, "--format", "json", "-o", str(out), "--fail-on", "never", "--no-progress"]
            env = {**os.environ, "PYTHONPATH": str(REPO), TRACE_ENV: log.name}
            proc = subprocess.run(
                [sys.executable, __file__, "--trace-one", *argv], env=env, capture_output=True, text=True, check=True
            )
            got = json.loads(proc.stdout.splitlines()[-1])
        marks, children, workers = got["marks"], got["children"], got["workers"]
        total = got["end"] + children
        each = []
        during = 0.0  # the parent's own work while the workers run (--jobs: taking results, writing the report)
        if "before" not in marks:  # serial: all of it is the parent's
            before, busiest, after = got["end"], 0.0, 0.0
            serial_path = total
        else:
            before = marks["before"]
            if workers:  # --jobs: each worker's tasks, and a part of what workers did after their last task
                rest = max(0.0, children - sum(workers)) / len(workers)
                each = [w + rest for w in workers]
                during = marks["last in"] - before
            else:  # the split: the share this process follows beside each worker's (its share, pickling it)
                each = [marks["own share"], children / max(1, args.jobs - 1)]
            busiest = max(each)
            after = got["end"] - marks["last in"]
        # the workers and the parent's work beside them share the cores: the busiest process, or all
        # of that work spread evenly over the cores, whichever takes longer
        cores = min(os.cpu_count() or 1, args.jobs + 1)  # the workers and the parent
        path_cpu = before + max(busiest, (sum(each) + during) / cores) + after
        ratio = f"{serial_path / path_cpu:.2f}x" if "serial" not in name else "1.00x"
        processes = " + ".join(f"{x:.2f}" for x in each) or "-"
        print(
            f"| {name} | {before:.2f} | {processes} | {during:.2f} | {after:.2f} | {path_cpu:.2f} | {total:.2f} "
            f"| {ratio} |"
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
    ap.add_argument(
        "--phases", action="store_true", help="only time the split's steps on the big capture, in this process"
    )
    ap.add_argument(
        "--critical-path", action="store_true", help="CPU seconds by process of each command, and its critical path"
    )
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--trace-one"]:  # one traced command, in a child process of --critical-path
        sys.path.insert(0, str(REPO))
        trace_one(argv[1:])
        return 0
    args = ap.parse_args(argv)
    if args.critical_path:
        critical_path(args)
        return 0
    if args.phases:
        sys.path.insert(0, str(REPO))
        phases(big_capture(args), args.jobs)
        return 0
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
