"""The command line: argument parsing, exit codes and nothing else.

Exit codes: 0 nothing at or above --fail-on, 1 findings at or above it, 2 wsadiag could not do its
job (a bad option, an unreadable capture, a malformed rule file).

argparse (standard library) rather than click: the verbs are few, `main(argv) -> int` must return
exit codes rather than exit, and our own exceptions decide the error text.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import gc
import glob
import os
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, Callable, Iterable, Iterator, Sequence

from analyzer import __version__
from analyzer.errors import UsageError, WsadiagError
from analyzer.model import CaptureResult, CaptureWarning
from analyzer.report.common import FAIL_ON, fails

if TYPE_CHECKING:  # imported lazily at run time: start-up stays short
    from analyzer.capture.reader import OpenedEarly
    from analyzer.pipeline import Keep
    from analyzer.placement import Placement
    from analyzer.report import ReportOptions
    from analyzer.rules import RuleSet

EXIT_OK, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2
CAPTURE_SUFFIXES = (
    ".pcap",
    ".pcapng",
    ".cap",
    ".dmp",
    ".etl",  # Windows pktmon / netsh trace
    ".pcap.gz",
    ".pcapng.gz",
    ".pcap.bz2",
    ".pcap.xz",
    ".pcapng.bz2",
    ".pcapng.xz",
    ".gz",
    ".bz2",
    ".xz",
)


class _Parser(argparse.ArgumentParser):
    """argparse that raises our UsageError instead of exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message, hint=f"see `{self.prog} --help`")


def _capture_options() -> _Parser:
    """Options shared by every verb that reads captures."""
    p = _Parser(add_help=False)
    p.add_argument(
        "captures",
        nargs="+",
        metavar="CAPTURE",
        help="pcap/pcapng/ETL files (plain or gzip/bz2/xz), directories of them, globs, or - for standard input",
    )
    p.add_argument("-o", "--output", metavar="FILE", help="write the report to FILE instead of standard output")
    p.add_argument("--filter", metavar="EXPR", help="only conversations matching, e.g. 'host 192.0.2.1 and port 443'")
    p.add_argument(
        "--max-conversations",
        type=int,
        default=None,
        metavar="N",
        help="conversations alive at once before the oldest are handed on early (default 200000)",
    )
    p.add_argument(
        "--max-memory",
        type=_byte_size,
        default=None,
        metavar="SIZE",
        help="estimated memory of live conversations before the oldest are handed on early "
        "(default 1G; suffixes K, M, G)",
    )
    p.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour in text output (auto: only on a terminal, and never with NO_COLOR set)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar on standard error")
    p.add_argument(
        "--jobs",
        "-j",
        type=_positive_int,
        default=None,
        metavar="N",
        help="captures analysed at once, one process each (default: the machine's cores); given "
        "with one big capture, N >= 2 splits its conversations across N processes",
    )
    p.add_argument(
        "--stitch",
        action="store_true",
        help="read the captures given (or a directory of them) as one capture, in order of their first packets: "
        "rotated files (tcpdump -C/-G), conversations followed across them",
    )
    p.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="run each capture as a task on Dask: 'local' (a LocalCluster of --jobs workers) or a "
        "scheduler's address, e.g. tcp://192.0.2.10:8786 (needs pip install 'wsadiag[cluster]')",
    )
    p.add_argument(
        "--timeout",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="give up on a capture after this long and report it as failed (the others go on)",
    )
    return p


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give at least 1")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a time above 0")
    return value


_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _byte_size(text: str) -> int:
    """A --max-memory value: bytes, or a number with K, M, G or T (powers of 1024; KiB, MB... accepted)."""
    spelled = text.strip().upper().removesuffix("B").removesuffix("I")
    number, unit = (spelled[:-1], spelled[-1]) if spelled[-1:] in _SIZE_UNITS else (spelled, "")
    try:
        value = float(number) * _SIZE_UNITS[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 512M, 2G)") from None
    if not 1 << 20 <= value < 1 << 50:
        raise argparse.ArgumentTypeError(f"{text!r}: give at least 1M")
    return int(value)


def _rule_options() -> _Parser:
    """Options that choose rules."""
    p = _Parser(add_help=False)
    p.add_argument("--rules", action="append", default=[], metavar="DIR", help="also load the rule files in DIR")
    p.add_argument(
        "--select",
        action="append",
        default=[],
        metavar="CODES",
        help="only these rule codes or prefixes (comma-separated, repeatable), e.g. RST,CON001",
    )
    p.add_argument("--ignore", action="append", default=[], metavar="CODES", help="leave out these codes or prefixes")
    return p


def build_parser() -> argparse.ArgumentParser:
    from analyzer.report import FORMATS

    parser = _Parser(prog="wsadiag", description="Diagnose failed TCP/UDP connections in packet captures.")
    parser.add_argument("--version", action="version", version=f"wsadiag {__version__}")
    parser.add_argument("--debug", action="store_true", help="show a traceback when something fails")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    sub.required = True
    # each bundle is made once and shared by the verbs that take it, as argparse's parents allow
    captures, rules = _capture_options(), _rule_options()

    a = sub.add_parser("analyze", parents=[captures, rules], help="diagnose how each connection failed")
    a.add_argument("--format", choices=FORMATS, default="text")
    a.add_argument(
        "--fail-on",
        choices=FAIL_ON,
        default=None,
        help="exit 1 when a finding at or above this level remains (default: warning)",
    )
    a.add_argument(
        "--peer",
        metavar="CAPTURE",
        action=_Once,
        help="a second capture of the same traffic taken at another point of the path (e.g. on the server): "
        "line the two up and say where in between packets were lost, injected or rewritten",
    )
    a.add_argument("--baseline", metavar="FILE", help="leave out findings recorded in FILE")
    a.add_argument("--write-baseline", metavar="FILE", help="record this run's findings in FILE")
    a.add_argument(
        "--tz",
        metavar="ZONE",
        default=None,
        help="show times in text, Markdown and HTML in ZONE: UTC (default), local, or a name like Europe/Berlin",
    )
    a.add_argument(
        "--evidence",
        metavar="DIR",
        help="write a small pcapng per finding (handshake and evidence packets, each commented) into DIR",
    )
    a.add_argument(
        "--allow-empty",
        action="store_true",
        help="do not fail (exit 2) on a capture without a single TCP, UDP or ICMP packet",
    )
    a.add_argument("--no-config", action="store_true", help="ignore wsadiag.toml and [tool.wsadiag] in pyproject.toml")

    c = sub.add_parser("conversations", parents=[captures], help="list the conversations")
    c.add_argument("--format", choices=("text", "json", "jsonl"), default="text")

    e = sub.add_parser("explain", parents=[rules], help="explain a rule code, a Winsock code or name, or an errno name")
    e.add_argument("what", metavar="WHAT", help="RST003, 10054, WSAECONNRESET or ECONNRESET")

    r = sub.add_parser("rules", parents=[rules], help="list the rule catalogue")
    r.add_argument("--format", choices=("text", "json", "markdown"), default="text")
    r.add_argument("--vocabulary", action="store_true", help="print the rule-file language instead")
    return parser


def _default_jobs(args: argparse.Namespace) -> None:
    """--jobs left out means every core for many captures, and no split of one big capture: on a
    machine of few cores the split costs more CPU than it saves time (bench/README.md)."""
    if hasattr(args, "jobs"):
        args.split_asked = args.jobs is not None
        if args.jobs is None:
            args.jobs = os.cpu_count() or 1


class _Once(argparse.Action):
    """An option that names one file: given twice, a usage error rather than the last one silently."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        if getattr(namespace, self.dest, None) is not None:
            raise UsageError(
                f"{option_string} given twice ({getattr(namespace, self.dest)}, {values}): it takes one capture",
                hint="wsadiag analyze CLIENT.pcap --peer SERVER.pcap",
            )
        setattr(namespace, self.dest, values)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one wsadiag command; return its exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
        _default_jobs(args)
        from analyzer.pipeline import collector_paused  # a one-shot run: reports too are built without cycles

        with collector_paused(), _opened_early(args):
            return _VERBS[args.verb](args)
    except WsadiagError as exc:
        _print_error(exc)
        if debug:
            _print_traceback()
        return EXIT_ERROR
    except BrokenPipeError:
        # `wsadiag ... | head`: the reader went away; not our failure.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # a bug of ours: one line, unless --debug
        if debug:
            _print_traceback()
        else:
            print(f"error: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
            print("hint: run again with --debug and report the traceback", file=sys.stderr)
        return EXIT_ERROR


@contextlib.contextmanager
def _opened_early(args: argparse.Namespace) -> Iterator[None]:
    """Open the first capture now, before the rules load and the report modules are imported.

    A compressed capture is decompressed by a child forked when it is opened (analyzer/capture/
    source.py), and that child is the run's critical path: opened here, it works while this
    process sets up rather than after. Only the first capture, and only when this process will
    read it itself (no pool, split, Dask, --stitch or --peer: a process that forks workers must
    hold no decompressing child): the later ones open in turn, so however many are given, one
    child and its few megabytes run ahead. The run takes it from `args.early` (_source); what it
    did not take (it stopped before, on an error or Ctrl-C) is closed here, its child stopped.
    """
    early = _open_early(args)
    args.early = early
    try:
        yield
    finally:
        if early is not None:
            early.close()


def _open_early(args: argparse.Namespace) -> OpenedEarly | None:
    """The first capture opened (or the error opening met, kept), or None where it is not opened early."""
    if args.verb not in ("analyze", "conversations") or getattr(args, "peer", None) or args.stitch:
        return None
    try:
        captures = _captures(args)
    except UsageError:  # said when the verb expands them, in its turn
        return None
    keep: Keep = "findings" if args.verb == "analyze" else "all"
    # a regular file only: opening a FIFO would wait for its writer; "-" is standard input, read in
    # its turn (even beside a file of that name)
    if not captures or captures[0] == "-" or not os.path.isfile(captures[0]) or _placement(args, captures, keep):
        return None
    from analyzer.capture.reader import OpenedEarly

    return OpenedEarly(captures[0])


def _print_traceback() -> None:
    import traceback  # only for --debug: it costs a few ms of every start-up otherwise

    traceback.print_exc()


def entrypoint() -> None:
    """The `wsadiag` console script."""
    from analyzer.capture import heap

    heap.enable()  # this process is wsadiag's own: it may tune malloc for its big reads
    gc.disable()  # and makes no cycles worth collecting: main() pauses the collector anyway, from here on
    code = main(sys.argv[1:])
    # The process ends here and everything alive goes with it. Python would still run cycle
    # collections over all of it while shutting down (over 10 ms, a tenth of a small run):
    # frozen objects are left out of them.
    gc.freeze()
    forget_unhandled_interrupt()
    sys.exit(code)


def forget_unhandled_interrupt() -> None:
    """Let a Ctrl-C that main() handled end the process with main()'s exit status.

    CPython marks a KeyboardInterrupt that leaves code run by exec() of a string as unhandled,
    even when a caller catches it, and `python -m analyzer` then ends by SIGINT after exiting
    (status 130, not 2). Such code runs while modules import (dataclasses make their methods that
    way), so a Ctrl-C during the set-up could land there. An exec() that completes clears the mark.
    """
    exec("pass")


def _print_error(exc: WsadiagError) -> None:
    from analyzer.report.common import clean  # messages name paths, which may hold ESC or newlines

    message = clean(str(exc).replace("\n", " "))
    print(f"error: {message}", file=sys.stderr)
    if exc.hint:
        print(f"hint: {exc.hint}", file=sys.stderr)


# -- verbs ------------------------------------------------------------------------------------


def _apply_config(args: argparse.Namespace) -> None:
    """Fill the options not given on the command line from the captures' configuration file."""
    from analyzer.config import Config, find_config, load_config

    path = None if args.no_config else find_config(_captures(args))
    config = load_config(path) if path is not None else Config()
    args.config_file = str(path) if path is not None else None  # an input too: no output may name it
    args.select = args.select or list(config.select)
    args.ignore = args.ignore or list(config.ignore)
    args.rules = args.rules or list(config.rules)
    args.fail_on = args.fail_on or config.fail_on or "warning"
    args.baseline = args.baseline or config.baseline or None
    args.tz = args.tz or config.tz or "UTC"


def _analyze(args: argparse.Namespace) -> int:
    from analyzer.report import AS_THEY_COME, render, render_pieces
    from analyzer.report.incidents import zone

    _apply_config(args)
    if args.baseline or args.write_baseline:  # its hashlib and json are a few ms of a start-up
        from analyzer.report.baseline import apply_baseline, load_baseline, write_baseline
    zone(args.tz)  # an unknown zone is a usage error before any capture is read
    captures = _captures(args)
    # Everything that can be refused is refused before the first capture is read.
    _check_outputs(args, captures)
    known = load_baseline(args.baseline) if args.baseline else None
    ruleset = _load_rules(args)
    opts = _report_options(args, ruleset)
    live = None if args.peer else _live_jsonl(args)  # a pair's findings come only once both are read
    # A pool's results can be written as they come when nothing needs all of them first, and not
    # onto the terminal where the progress bar is drawn.
    on_terminal = args.output in (None, "-") and sys.stdout.isatty()
    as_they_come = args.format in AS_THEY_COME and not (
        live or args.peer or args.baseline or args.write_baseline or args.evidence or on_terminal
    )
    written = False

    def report(coming: Iterable[CaptureResult]) -> list[CaptureResult]:
        nonlocal written
        written = True
        return _write_as_they_come(args, coming, opts)

    if args.peer:
        results, interrupted = _run_pair(args, ruleset), False
    else:
        results, interrupted = _run(
            args, ruleset, "findings", captures, on_findings=live, report=report if as_they_come else None
        )
    if written:  # a pool's run: each capture was written as its result came
        return _finish(args, results, interrupted)
    if args.write_baseline:
        if interrupted:
            print(f"baseline {args.write_baseline} left as it was: the run was interrupted", file=sys.stderr)
        else:
            count = write_baseline(results, args.write_baseline)
            print(f"wrote {count} finding(s) to baseline {args.write_baseline}", file=sys.stderr)
    if known is not None:
        results, suppressed = apply_baseline(results, known)
        if suppressed:
            print(f"{suppressed} known finding(s) left out by baseline {args.baseline}", file=sys.stderr)
    if args.evidence:
        from analyzer.evidence import write_evidence

        count = write_evidence(results, args.evidence)
        print(f"wrote {count} evidence capture(s) to {args.evidence}", file=sys.stderr)
    if live is not None:
        from analyzer.report import printable_names

        _write(None, live.finish([printable_names(r) for r in results], opts))
    else:
        _write(args.output, render_pieces(args.format, results, opts))
    if args.format == "github" and os.environ.get("GITHUB_STEP_SUMMARY"):
        _append_step_summary(os.environ["GITHUB_STEP_SUMMARY"], render("markdown", results, opts))
    return _finish(args, results, interrupted)


def _report_options(args: argparse.Namespace, ruleset: RuleSet) -> ReportOptions:
    from analyzer.report import ReportOptions

    return ReportOptions(
        fail_on=args.fail_on,
        color=_color(args),
        rules=list(ruleset.rules),
        tz=args.tz,
        evidence_dir=args.evidence or "",
        width=_width(args),
        # only SARIF shows it, and reading package metadata costs a noticeable part of start-up
        information_uri=_home_page() if args.format == "sarif" else "",
    )


def _write_as_they_come(
    args: argparse.Namespace, coming: Iterable[CaptureResult], opts: ReportOptions
) -> list[CaptureResult]:
    """The report of a pool's run, written while its later captures are still analysed; its results.

    Nothing is written before the first result is in: a run that cannot start (no Dask scheduler)
    fails with standard output empty, as before. Each capture's part is flushed once written, so
    a pipe's reader has it while the next capture is read. Should the writing stop early (a reader
    of standard output that went away), the run is still finished: the exit status is that of
    every capture."""
    from itertools import chain

    from analyzer.report import render_pieces

    results: list[CaptureResult] = []
    flush = sys.stdout.flush if args.output in (None, "-") else None

    def kept(given: Iterator[CaptureResult]) -> Iterator[CaptureResult]:
        for result in given:
            results.append(result)
            yield result
            if flush is not None:  # the renderer asks for the next result once this one's part is written
                try:
                    flush()
                except BrokenPipeError:  # _write sees it at its next write, and handles it
                    pass

    given = iter(coming)
    first = next(given, None)
    rest = kept(given if first is None else chain((first,), given))
    _write(args.output, render_pieces(args.format, rest, opts))
    for _ in rest:
        pass
    return results


def _finish(args: argparse.Namespace, results: list[CaptureResult], interrupted: bool) -> int:
    """The exit status of `wsadiag analyze` once its report is written."""
    if interrupted or any(r.error for r in results):
        return EXIT_ERROR
    empty = _nothing_analysed(results)
    if empty and not args.allow_empty:
        for message in empty:
            print(f"error: {message}", file=sys.stderr)
        print("hint: pass --allow-empty if an empty capture is not a failure here", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_FINDINGS if fails(results, args.fail_on) else EXIT_OK


def _conversations(args: argparse.Namespace) -> int:
    """The listing is written as conversations end (report/stream.py): memory stays flat."""
    from analyzer.report import ReportOptions
    from analyzer.report.output import atomic_stream
    from analyzer.report.stream import ConversationStream

    captures = _captures(args)
    _check_outputs(args, captures)
    opts = ReportOptions(color=_color(args), conversations_only=True)
    with atomic_stream(args.output) as out:
        stream = ConversationStream(args.format, out, opts)
        results, interrupted = _run(args, None, "all", captures, stream=stream)
        stream.finish(results)
    return EXIT_ERROR if interrupted or any(r.error for r in results) else EXIT_OK


def _explain(args: argparse.Namespace) -> int:
    import shutil

    from analyzer.explain import _RULE_CODE, explain, rule_for_terminal

    ruleset = _load_rules(args)
    what = args.what.strip()
    if sys.stdout.isatty() and _RULE_CODE.match(what) and not what.upper().startswith("WSA"):
        # On a terminal a rule's documentation is rendered (headings, lists, code), not shown as Markdown.
        width = shutil.get_terminal_size((100, 24)).columns
        sys.stdout.write(rule_for_terminal(ruleset.get(what), width, color=not os.environ.get("NO_COLOR")))
        return EXIT_OK
    print(explain(args.what, ruleset))
    return EXIT_OK


def _rules(args: argparse.Namespace) -> int:
    from analyzer.explain import rules_catalogue
    from analyzer.rules import vocabulary_markdown

    if args.vocabulary:
        print(vocabulary_markdown())
    else:
        print(rules_catalogue(_load_rules(args), args.format))
    return EXIT_OK


_VERBS = {"analyze": _analyze, "conversations": _conversations, "explain": _explain, "rules": _rules}


# -- helpers ----------------------------------------------------------------------------------


def _split_codes(values: list[str]) -> list[str]:
    return [code.strip() for value in values for code in value.split(",") if code.strip()]


def _load_rules(args: argparse.Namespace):
    from analyzer.rules import load_rules

    for folder in args.rules:
        if not Path(folder).is_dir():
            raise UsageError(f"--rules {folder}: not a directory")
    return load_rules(extra_dirs=args.rules, select=_split_codes(args.select), ignore=_split_codes(args.ignore))


def expand_captures(items: Sequence[str]) -> list[str]:
    """Capture arguments as files: directories are walked for captures, unexpanded globs expanded.

    Neither follows a link to a directory (a link loop would never end, a link to a parent would
    list its captures again), and both walk with a stack, so folder depth is not limited by
    Python's recursion limit. A link to a file is read.
    """
    out: list[str] = []
    for item in items:
        if item == "-":
            out.append(item)
        elif os.path.isdir(item):
            found = sorted(p for p in walk_files(item) if _capture_name(os.path.basename(p)))
            if not found:
                raise UsageError(
                    f"{item}: no capture files in this directory",
                    hint="captures end in .pcap, .pcapng, .cap or .etl, optionally .gz/.bz2/.xz",
                )
            out.extend(found)
        elif not os.path.exists(item) and glob.has_magic(item):
            matches = sorted(glob_paths(item))
            if not matches:
                raise UsageError(f"{item}: no file matches this pattern")
            out.extend(matches)
        else:
            out.append(item)
    if out.count("-") > 1:
        raise UsageError("standard input (-) can be read only once")
    return out


def _capture_name(name: str) -> bool:
    """Whether a file in a directory is read as a capture: by its suffix, or a rotated one
    (`tcpdump -C` writes ring.pcap, ring.pcap1, ring.pcap2 ...)."""
    lower = name.lower()
    return lower.endswith(CAPTURE_SUFFIXES) or lower.rstrip("0123456789").endswith((".pcap", ".pcapng", ".cap"))


def _entries(folder: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder or ".") as it:
            return list(it)
    except OSError:  # unreadable or vanished: nothing to list there
        return []


def walk_files(top: str) -> list[str]:
    """Every file under `top` (links to files included), without entering links to directories."""
    files: list[str] = []
    stack = [top]
    while stack:
        folder = stack.pop()
        for entry in _entries(folder):
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
            elif entry.is_file():
                files.append(entry.path)
    return files


def glob_paths(pattern: str) -> list[str]:
    """The paths matching a glob, `**` matching any depth of folders; links to directories are not entered.

    The standard library's glob follows such links and recurses once per folder level.
    Names starting with a dot match only a pattern part that starts with one (as in glob).
    """
    head, parts = _split_pattern(pattern)
    found: set[str] = set()
    seen: set[tuple[str, int]] = set()
    stack = [(head, 0)]
    while stack:
        base, i = stack.pop()
        if (base, i) in seen:
            continue
        seen.add((base, i))
        if i == len(parts):
            if base and os.path.lexists(base):
                found.add(base)
            continue
        part = parts[i]
        if part == "**":
            stack.append((base, i + 1))
            for e in _entries(base):
                if e.name.startswith("."):
                    continue
                path = os.path.join(base, e.name) if base else e.name
                if e.is_dir(follow_symlinks=False):
                    stack.append((path, i))
                if i + 1 == len(parts):  # a last `**` matches every name below, as in glob
                    found.add(path)
        elif glob.has_magic(part):
            hidden_ok = part.startswith(".")
            for e in _entries(base):
                if (hidden_ok or not e.name.startswith(".")) and fnmatch.fnmatch(e.name, part):
                    if i + 1 == len(parts) or e.is_dir():
                        stack.append((os.path.join(base, e.name) if base else e.name, i + 1))
        else:
            stack.append((os.path.join(base, part) if base else part, i + 1))
    return list(found)


def _split_pattern(pattern: str) -> tuple[str, list[str]]:
    """A pattern's literal start (a root, or "") and its parts, empty parts and "." dropped."""
    drive, rest = os.path.splitdrive(pattern)
    head = drive + os.sep if rest.startswith(os.sep) else drive
    parts = [p for p in rest.split(os.sep) if p and p != "."]
    return head, parts


def _check_outputs(args: argparse.Namespace, captures: list[str]) -> None:
    """Refuse a report or baseline path that cannot be written or that names a file the run reads
    (a capture, --peer's, a rule file, the configuration file; for -o also the baseline)."""
    from analyzer.report.output import check_output

    captures = [*captures, *filter(None, [getattr(args, "peer", None)])]  # --peer's capture is read too
    # and so are the rule files and the configuration file: no output may name them either
    inputs = [*captures, *filter(None, [getattr(args, "config_file", None)])]
    inputs += _rule_files(getattr(args, "rules", None) or [])
    if args.output not in (None, "-"):
        check_output(args.output, "-o", [*inputs, *filter(None, [getattr(args, "baseline", None)])])
    if getattr(args, "write_baseline", None):
        check_output(args.write_baseline, "--write-baseline", inputs)
    if getattr(args, "evidence", None):
        from analyzer.report.evidence_names import check_distinct

        check_distinct(captures)


def _rule_files(items: list[str]) -> list[str]:
    """The files `--rules` reads (each folder's, as the rule loader lists them), and what is not a folder as given."""
    if not items:
        return []
    from analyzer.rules.loader import folder_rule_files

    return [str(f) for item in items for f in (folder_rule_files(Path(item)) if Path(item).is_dir() else [item])]


def _nothing_analysed(results: list[CaptureResult]) -> list[str]:
    """One message per capture in which not a single IP packet could be analysed."""
    from analyzer.report.common import clean, display_path

    out = []
    for r in results:
        for w in r.warnings:
            if w.code in ("no-packets", "no-ip-packets"):
                out.append(f"{clean(display_path(r.path))}: nothing to analyse: {clean(w.message)}")
    return out


def _home_page() -> str:
    """The project's home page from the installed package's metadata (SARIF informationUri), or ""."""
    from importlib import metadata

    try:
        meta = metadata.metadata("wsadiag")
    except metadata.PackageNotFoundError:
        return ""
    for entry in meta.get_all("Project-URL") or []:
        label, _, url = entry.partition(",")
        if label.strip().lower() in ("homepage", "home", "repository", "source") and url.strip().startswith("http"):
            return url.strip()
    home = meta["Home-page"] if "Home-page" in meta else ""
    return home if home.startswith("http") else ""


def _width(args: argparse.Namespace) -> int:
    """The text report's line width: the terminal's when writing to one, else 100."""
    import shutil

    if args.output in (None, "-") and sys.stdout.isatty():
        return max(60, shutil.get_terminal_size((100, 24)).columns)
    return 100


def _append_step_summary(path: str, markdown: str) -> None:
    """GitHub Actions shows $GITHUB_STEP_SUMMARY (Markdown) on the run's summary page."""
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(markdown)
    except OSError as exc:
        print(f"warning: cannot write GITHUB_STEP_SUMMARY {path}: {exc.strerror}", file=sys.stderr)


def _live_jsonl(args: argparse.Namespace):
    """A writer that prints each finding line as its conversation ends, for `--format jsonl` on stdout."""
    if args.format != "jsonl" or args.output not in (None, "-") or args.baseline or args.write_baseline:
        return None
    from analyzer.report import ReportOptions
    from analyzer.report.jsondoc import LiveJsonl

    return LiveJsonl(sys.stdout, ReportOptions(evidence_dir=args.evidence or ""))


def _run(
    args: argparse.Namespace,
    ruleset: RuleSet | None,
    keep: Keep,
    captures: list[str],
    on_findings=None,
    stream=None,
    report: Callable[[Iterable[CaptureResult]], list[CaptureResult]] | None = None,
) -> tuple[list[CaptureResult], bool]:
    """The result of each capture, and whether Ctrl-C stopped the run (the results cover what was read).

    on_findings: the live JSONL writer (each finding as its conversation ends). stream: a
    ConversationStream that takes each conversation as it ends (the results then hold none).
    report: writes the report of a process pool's or Dask's run from its results as they come, and
    returns them (the caller then writes none); not called for a run in this process.
    """
    from analyzer.filter import compile_filter
    from analyzer.pipeline import analyze_capture
    from analyzer.report.common import clean
    from analyzer.report.progress import CaptureProgress

    stitched = _stitched(args, captures)
    elsewhere = "" if stitched is not None else _placement(args, captures, keep, live=on_findings is not None)
    if stitched is not None:
        captures = [stitched.name]
    elif elsewhere == "split":
        from analyzer import scale  # the pool's machinery: only for a run that uses it

        return [scale.run_split(captures[0], _job(args, keep), args.jobs, args.dask)], False
    elif elsewhere == "pool":
        from analyzer import scale

        job = _job(args, keep, listing=stream is not None)
        run = scale.ManyRun(captures, job, args.jobs, args.dask, False if args.no_progress else None, stream)
        results = list(run) if report is None else report(run)
        return results, run.interrupted
    conv_filter = compile_filter(args.filter) if args.filter else None
    extra = {} if args.max_conversations is None else {"max_conversations": args.max_conversations}
    if args.max_memory is not None:
        extra["max_live_bytes"] = args.max_memory
    if stream is not None:
        extra["listen"] = stream.conversation
    results = []
    interrupted = False
    for path in captures:
        source = stitched or _source(args, path)
        live = None if on_findings is None else on_findings.for_capture(path)
        if stream is not None:
            stream.capture_start(path)
        try:
            with CaptureProgress(path, enabled=False if args.no_progress else None) as bar:
                result = analyze_capture(
                    source, ruleset, conv_filter, keep=keep, progress=bar.update, on_findings=live, **extra
                )
        except KeyboardInterrupt:  # outside the packet loop (opening, the last conversations): nothing to show
            interrupted = True
            if stream is not None:  # close what the stream opened for it, so the document stays whole
                note = CaptureWarning("interrupted", "interrupted before this capture was read to its end")
                stream.capture_end(CaptureResult(path=path, warnings=[note]))
            break
        if path == "-":
            result.path = "-"
        if stitched is not None:
            from analyzer.stitch import name_files

            name_files(result, stitched.parts)
        if result.error:
            print(f"error: {clean(result.error)}", file=sys.stderr)  # the path may hold ESC or newlines
        if stream is not None:
            stream.capture_end(result)
        results.append(result)
        # The packet loop turns Ctrl-C into a warning so the frames read are reported: stop here.
        if any(w.code == "interrupted" for w in result.warnings):
            interrupted = True
            break
    if interrupted:
        print(
            f"error: interrupted: the report covers {len(results)} of {len(captures)} capture(s), "
            "the last one only up to where it stopped",
            file=sys.stderr,
        )
    return results, interrupted


def _placement(args: argparse.Namespace, captures: list[str], keep: Keep, live: bool = False) -> Placement:
    """analyzer.placement.placement for this run's options."""
    from analyzer.placement import placement

    split = keep == "findings" and args.split_asked
    return placement(captures, args.jobs, args.dask, args.timeout, split=split, live=live)


def _captures(args: argparse.Namespace) -> list[str]:
    """The capture arguments as files (expand_captures), walked once per run: the configuration
    lookup, the early open and the verb all ask."""
    found: list[str] | None = getattr(args, "expanded", None)
    if found is None:
        found = args.expanded = expand_captures(args.captures)
    return found


def _source(args: argparse.Namespace, path: str) -> str | IO[bytes] | OpenedEarly:
    """What the pipeline reads for `path`: the capture opened early (_opened_early), once; else the path or stdin."""
    early = getattr(args, "early", None)
    if early is not None and early.name == path:
        args.early = None  # the same path given twice is opened again the second time
        return early
    return sys.stdin.buffer if path == "-" else path


def _stitched(args: argparse.Namespace, captures: list[str]):
    """The captures as one StitchedSet (analyzer/stitch.py) under --stitch, else None."""
    if not getattr(args, "stitch", False):
        return None
    from analyzer.stitch import stitched_set

    return stitched_set(args.captures, captures, getattr(args, "evidence", None) or getattr(args, "peer", None))


def _job(args: argparse.Namespace, keep: Keep, listing: bool = False):
    """What each worker process needs to analyse a capture as this command says (analyzer/scale.py)."""
    from analyzer.scale import Job

    return Job(
        keep=keep,
        rules=keep == "findings",
        rule_dirs=tuple(getattr(args, "rules", ())),
        select=tuple(_split_codes(getattr(args, "select", []))),
        ignore=tuple(_split_codes(getattr(args, "ignore", []))),
        filter=args.filter,
        max_conversations=args.max_conversations,
        max_live_bytes=args.max_memory,
        timeout=args.timeout,
        listing=listing,
    )


def _run_pair(args: argparse.Namespace, ruleset) -> list[CaptureResult]:
    """`analyze CAPTURE --peer CAPTURE`: the two captures lined up (analyzer.peer)."""
    from analyzer.filter import compile_filter
    from analyzer.peer.path import analyze_pair
    from analyzer.report.common import clean

    captures = _captures(args)
    if args.stitch:
        raise UsageError("--stitch cannot be combined with --evidence or --peer yet")
    if len(captures) != 1 or "-" in (captures[0], args.peer):
        raise UsageError(
            "--peer takes one capture on each side, both files", hint="wsadiag analyze CLIENT.pcap --peer SERVER.pcap"
        )
    if _same_file(captures[0], args.peer):
        raise UsageError(
            f"--peer names the capture itself ({args.peer}): give the other point's capture",
            hint="wsadiag analyze CLIENT.pcap --peer SERVER.pcap",
        )
    conv_filter = compile_filter(args.filter) if args.filter else None
    extra = {} if args.max_conversations is None else {"max_conversations": args.max_conversations}
    results = analyze_pair(captures[0], args.peer, ruleset, conv_filter, **extra)
    for result in results:
        if result.error:
            print(f"error: {clean(result.error)}", file=sys.stderr)
    return results


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # a missing file is the reader's to report
        return False


def _color(args: argparse.Namespace) -> bool:
    if args.color == "always":
        return True
    if args.color == "never" or os.environ.get("NO_COLOR"):
        return False
    return args.output in (None, "-") and sys.stdout.isatty()


def _write(output: str | None, text: str | Iterable[str]) -> None:
    """The report to standard output or, atomically, to the file `output`; text may come in pieces.

    Pieces are written as they are made: should making one fail (a bug, Ctrl-C), standard output
    holds the report up to there and the exit status says the run failed, while a file named
    with -o is left as it was (the pieces went to a temporary file that is removed)."""
    if output in (None, "-"):
        try:
            last = ""
            for piece in (text,) if isinstance(text, str) else text:
                if piece:
                    sys.stdout.write(piece)
                    last = piece
            if last and not last.endswith("\n"):
                sys.stdout.write("\n")
            sys.stdout.flush()
        except BrokenPipeError:
            # `wsadiag ... | head`: the reader went away. Not our failure, and the exit status
            # (findings or not) still holds; stdout goes nowhere so the exit flush is quiet.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return
    from analyzer.report.output import atomic_write_text

    try:
        atomic_write_text(output, text)
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from None
