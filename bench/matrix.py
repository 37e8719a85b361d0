"""The whole speed matrix of one build in one table: wsadiag beside tshark and tcptrace.

Usage:
  python bench/matrix.py [--sizes 200k,1M,5M] [--format-size 200k] [--runs 3]
                         [--build DIR] [--workdir /tmp/wsadiag-matrix] [--skip tools,formats,...]

What it measures (one process each, stdout to /dev/null, medians over --runs; every group is run
round by round with its order reversed on odd rounds, so the ratios come from side-by-side runs):

  analyze        wsadiag analyze F --format json --fail-on never
                 beside tshark -r F -q -z expert and tcptrace -n -l F         (per size)
  conversations  wsadiag conversations F --format json
                 beside tshark -r F -q -z conv,tcp and tcptrace -n F           (per size)
  formats        wsadiag analyze over the same packets as pcap, pcapng (editcap), .pcap.gz,
                 .pcap.xz and .pcap.bz2, each beside the plain pcap            (--format-size)
                 and, under each compressed row, its decompression alone (bench/decompress.py,
                 the same library): a floor that no change to wsadiag can go below
  start-up       wsadiag analyze on a one-packet capture (its first record); again with
                 `python -S` (the interpreter's .pth hooks left out, as in a venv of wsadiag's
                 own; the dependencies still come from its site-packages), and the interpreter
                 alone (`python -c pass`, `python -S -c pass`) for the floor under both

Captures come from bench/generate.py (seed 1) and are kept in --workdir for the next run.
--build is the tree whose `analyzer` package is measured (it goes first on PYTHONPATH), for
example a clone built in place with `python setup.py build_ext --inplace`; the table says whether
that build's packet path is compiled (mypyc .so) or plain Python, and its commit.

The ratio column is the median of the per-round ratios wsadiag time / reference time: below 1
means wsadiag was faster (the inverse of run.py's column). Peak MiB is the largest peak RSS of
that one child over its runs (os.wait4 rusage).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import Command, count_packets, run_once, warm  # noqa: E402  (bench/run.py, beside this file)

REPO = Path(__file__).resolve().parents[1]
STARTUP_RUNS = 10  # a start-up takes a fraction of a second: more runs for a steadier median
# name, file suffix, command that writes it from the plain pcap (stdin -> stdout where it can)
FORMATS: tuple[tuple[str, str, list[str]], ...] = (
    ("pcapng", ".pcapng", ["editcap", "-F", "pcapng"]),
    ("gzip", ".pcap.gz", ["gzip", "-c"]),
    ("xz", ".pcap.xz", ["xz", "-c", "-1", "-T1"]),
    ("bz2", ".pcap.bz2", ["bzip2", "-c"]),
)
GROUPS = ("tools", "formats", "startup")


@dataclass
class Group:
    """Commands run side by side each round; ratios are taken against `base` (index into cmds)."""

    case: str
    capture: Path
    cmds: list[Command]
    runs: int
    ours: tuple[int, ...] = (0,)  # the wsadiag commands, compared with every other command


def parse_size(text: str) -> int:
    text = text.strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text.rstrip("km")) * scale)


def size_name(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}k"


def build_kind(build: Path) -> str:
    """Which `analyzer` the build dir provides: compiled or pure Python, and its commit."""
    env = dict(os.environ, PYTHONPATH=str(build))
    probe = "import analyzer.flows.table as t; print(t.__file__)"
    where = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, cwd=build)
    path = where.stdout.strip()
    kind = "compiled (mypyc)" if path.endswith(".so") else "pure Python"
    commit = subprocess.run(["git", "-C", str(build), "log", "-1", "--format=%h %s"], capture_output=True, text=True)
    subject = commit.stdout.strip()[:70] or "not a git tree"
    return f"{kind}: {path or where.stderr.strip()[-200:]}; commit {subject}"


def ensure_capture(workdir: Path, packets: int) -> Path:
    path = workdir / f"gen-{size_name(packets)}.pcap"
    if not path.exists():
        print(f"generating {path} ...", file=sys.stderr)
        tmp = path.with_suffix(".tmp")
        gen = [sys.executable, str(REPO / "bench" / "generate.py"), str(tmp), "--packets", str(packets), "--quiet"]
        subprocess.run(gen, check=True)
        tmp.rename(path)
    return path


def ensure_variant(plain: Path, suffix: str, argv: list[str]) -> Path:
    path = plain.with_suffix(suffix)
    if not path.exists():
        print(f"writing {path} ...", file=sys.stderr)
        tmp = path.with_name(path.name + ".tmp")
        if argv[0] == "editcap":
            subprocess.run([*argv, str(plain), str(tmp)], check=True)
        else:
            with open(plain, "rb") as src, open(tmp, "wb") as dst:
                subprocess.run(argv, stdin=src, stdout=dst, check=True)
        tmp.rename(path)
    return path


def one_packet(plain: Path) -> Path:
    """The first record of a pcap, alone: the start-up capture."""
    path = plain.with_name("one-packet.pcap")
    if not path.exists():
        with open(plain, "rb") as f:
            head = f.read(24 + 16)
            incl = int.from_bytes(head[32:36], "little")
            path.write_bytes(head + f.read(incl))
    return path


def wsadiag(sub: str, capture: Path, label: str) -> Command:
    rest = [str(capture), "--format", "json"] + (["--fail-on", "never"] if sub == "analyze" else [])
    return Command(label, [sys.executable, "-m", "analyzer", sub, *rest])


def tool_groups(captures: list[Path], runs: int) -> list[Group]:
    groups = []
    for cap in captures:
        groups.append(
            Group(
                "analyze",
                cap,
                [
                    wsadiag("analyze", cap, "wsadiag analyze"),
                    Command("tshark -q -z expert", ["tshark", "-r", str(cap), "-q", "-z", "expert"]),
                    Command("tcptrace -n -l", ["tcptrace", "-n", "-l", str(cap)]),
                ],
                runs,
            )
        )
        groups.append(
            Group(
                "conversations",
                cap,
                [
                    wsadiag("conversations", cap, "wsadiag conversations"),
                    Command("tshark -q -z conv,tcp", ["tshark", "-r", str(cap), "-q", "-z", "conv,tcp"]),
                    Command("tcptrace -n", ["tcptrace", "-n", str(cap)]),
                ],
                runs,
            )
        )
    return groups


def format_group(plain: Path, runs: int) -> Group:
    cmds = [wsadiag("analyze", plain, "wsadiag analyze (pcap)")]
    for name, suffix, argv in FORMATS:
        variant = ensure_variant(plain, suffix, argv)
        cmds.append(wsadiag("analyze", variant, f"wsadiag analyze ({name})"))
        if suffix != ".pcapng":  # the floor under that row: its decompression alone
            decompress = [sys.executable, str(REPO / "bench" / "decompress.py"), str(variant)]
            cmds.append(Command(f"decompression alone ({name})", decompress))
    # Here the plain pcap is the reference: every other format is compared with it.
    return Group("formats", plain, cmds, runs, ours=tuple(range(1, len(cmds))))


def startup_group(one: Path) -> Group:
    """A start-up, with and without this interpreter's .pth hooks (some machines' site-packages
    import certifi or an editable install's finder from them), beside the interpreter alone."""
    paths = [os.environ["PYTHONPATH"], sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    bare = ["env", f"PYTHONPATH={os.pathsep.join(dict.fromkeys(paths))}", sys.executable, "-S"]
    one_run = wsadiag("analyze", one, "")
    cmds = [
        wsadiag("analyze", one, "wsadiag analyze"),
        Command("wsadiag analyze, python -S", [*bare, *one_run.argv[1:]]),
        Command("python -c pass", [sys.executable, "-c", "pass"]),
        Command("python -S -c pass", [sys.executable, "-S", "-c", "pass"]),
    ]
    return Group("start-up", one, cmds, STARTUP_RUNS, ours=())


def run_groups(groups: list[Group]) -> None:
    rounds = max(g.runs for g in groups)
    for r in range(rounds):
        for g in groups:
            if r >= g.runs:
                continue
            order = g.cmds if r % 2 == 0 else list(reversed(g.cmds))
            for cmd in order:
                s = run_once(cmd)
                cmd.samples.append(s)
                state = "ok" if s.ok else "FAILED"
                print(
                    f"round {r + 1}: {s.wall:7.3f} s {s.peak_kib / 1024:7.0f} MiB {state} {g.capture.name} {cmd.label}",
                    file=sys.stderr,
                )
                if not s.ok:
                    print("\n".join(s.stderr.strip().splitlines()[-10:]), file=sys.stderr)


def _median(cmd: Command) -> float | None:
    good = cmd.good
    return statistics.median(s.wall for s in good) if good else None


def _paired(a: Command, b: Command) -> str:
    ratios = [x.wall / y.wall for x, y in zip(a.samples, b.samples) if x.ok and y.ok and y.wall > 0]
    return f"{statistics.median(ratios):.2f}" if ratios else "n/a"


def table(groups: list[Group]) -> str:
    lines = [
        "| case | capture | command | runs ok | median s | pkt/s | peak MiB | vs | ratio |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for g in groups:
        packets = count_packets(g.capture) if g.case != "start-up" else 1
        for i, cmd in enumerate(g.cmds):
            med = _median(cmd)
            if med is None:
                lines.append(f"| {g.case} | {g.capture.name} | {cmd.label} | 0/{len(cmd.samples)} | failed | | | | |")
                continue
            peak = max(s.peak_kib for s in cmd.good) / 1024
            rate = f"{packets / med / 1e3:,.0f} k" if packets > 1 else ""
            if g.case == "formats":
                vs = [(g.cmds[0], "pcap")] if i in g.ours else []
            elif i in g.ours:
                vs = [(c, c.label) for j, c in enumerate(g.cmds) if j not in g.ours]
            else:
                vs = []
            shown_vs = "<br>".join(name for _, name in vs)
            shown_ratio = "<br>".join(_paired(cmd, other) for other, _ in vs)
            lines.append(
                f"| {g.case} | {g.capture.name} | {cmd.label} | {len(cmd.good)}/{len(cmd.samples)} | "
                f"{med:.3f} | {rate} | {peak:,.0f} | {shown_vs} | {shown_ratio} |"
            )
    return "\n".join(lines)


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="200k,1M,5M", help="packet counts of the tool comparison (default 200k,1M,5M)")
    ap.add_argument("--format-size", default="200k", help="packets of the format comparison (default 200k)")
    ap.add_argument("--runs", type=int, default=3, help="rounds of each group (default 3; start-up takes 10)")
    ap.add_argument("--build", type=Path, default=REPO, help="tree whose analyzer package is measured")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/wsadiag-matrix"), help="where captures are kept")
    ap.add_argument("--skip", default="", help=f"comma-separated groups to leave out: {', '.join(GROUPS)}")
    args = ap.parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if skip - set(GROUPS):
        ap.error(f"--skip takes {', '.join(GROUPS)}")
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    for tool in ("tshark", "tcptrace", "editcap"):
        if shutil.which(tool) is None and "tools" not in skip:
            ap.error(f"{tool} is not on PATH")
    build = args.build.resolve()
    args.workdir.mkdir(parents=True, exist_ok=True)
    # Children import the analyzer of the build under test, whatever the current directory.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(build), os.environ.get("PYTHONPATH", "")]))
    os.chdir(build)
    # An installed package has its bytecode cached; let the children write theirs, and pay for it
    # in an untimed warm-up run below rather than in every start-up.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    groups: list[Group] = []
    if "tools" not in skip:
        groups += tool_groups([ensure_capture(args.workdir, n) for n in sizes], args.runs)
    plain = ensure_capture(args.workdir, parse_size(args.format_size))
    if "formats" not in skip:
        groups.append(format_group(plain, args.runs))
    if "startup" not in skip:
        one = one_packet(plain)
        groups.append(startup_group(one))
        for cmd in groups[-1].cmds:
            run_once(cmd)  # warm-up: bytecode written, files in the page cache
    for path in sorted({a for g in groups for c in g.cmds for a in c.argv[1:] if a.startswith("/")}):
        if Path(path).is_file():
            warm(Path(path))  # the first timed run should not pay for the disk
    began = time.time()
    before = load()
    run_groups(groups)
    print(f"Build: {build_kind(build)}")
    print(
        f"Python {sys.version.split()[0]}; {before} before, {load()} after; "
        f"{time.time() - began:.0f} s of runs; ratio = median of paired wsadiag / reference wall times.\n"
    )
    print(table(groups))
    return 1 if any(not s.ok for g in groups for c in g.cmds for s in c.samples) else 0


if __name__ == "__main__":
    sys.exit(main())
