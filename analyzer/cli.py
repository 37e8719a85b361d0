"""The command line: argument parsing, exit codes and nothing else.

Exit codes: 0 nothing at or above --fail-on, 1 findings at or above it, 2 wsadiag could not do its
job (a bad option, an unreadable capture, a malformed rule file).

argparse (standard library) rather than click: the verbs are few, `main(argv) -> int` must return
exit codes rather than exit, and our own exceptions decide the error text.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import traceback
from pathlib import Path
from typing import Sequence

from analyzer import __version__
from analyzer.errors import UsageError, WsadiagError
from analyzer.model import FAIL_ON, LEVELS, CaptureResult

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


def _capture_options() -> argparse.ArgumentParser:
    """Options shared by every verb that reads captures."""
    p = argparse.ArgumentParser(add_help=False)
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
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour in text output (auto: only on a terminal, and never with NO_COLOR set)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar on standard error")
    return p


def _rule_options() -> argparse.ArgumentParser:
    """Options that choose rules."""
    p = argparse.ArgumentParser(add_help=False)
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

    a = sub.add_parser(
        "analyze", parents=[_capture_options(), _rule_options()], help="diagnose how each connection failed"
    )
    a.add_argument("--format", choices=FORMATS, default="text")
    a.add_argument(
        "--fail-on",
        choices=FAIL_ON,
        default="warning",
        help="exit 1 when a finding at or above this level remains (default: warning)",
    )
    a.add_argument("--baseline", metavar="FILE", help="leave out findings recorded in FILE")
    a.add_argument("--write-baseline", metavar="FILE", help="record this run's findings in FILE")

    c = sub.add_parser("conversations", parents=[_capture_options()], help="list the conversations")
    c.add_argument("--format", choices=("text", "json", "jsonl"), default="text")

    e = sub.add_parser(
        "explain", parents=[_rule_options()], help="explain a rule code, a Winsock code or name, or an errno name"
    )
    e.add_argument("what", metavar="WHAT", help="RST003, 10054, WSAECONNRESET or ECONNRESET")

    r = sub.add_parser("rules", parents=[_rule_options()], help="list the rule catalogue")
    r.add_argument("--format", choices=("text", "json", "markdown"), default="text")
    r.add_argument("--vocabulary", action="store_true", help="print the rule-file language instead")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one wsadiag command; return its exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
        from analyzer.pipeline import collector_paused  # a one-shot run: reports too are built without cycles

        with collector_paused():
            return _VERBS[args.verb](args)
    except WsadiagError as exc:
        _print_error(exc)
        if debug:
            traceback.print_exc()
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
            traceback.print_exc()
        else:
            print(f"error: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
            print("hint: run again with --debug and report the traceback", file=sys.stderr)
        return EXIT_ERROR


def entrypoint() -> None:
    """The `wsadiag` console script."""
    sys.exit(main(sys.argv[1:]))


def _print_error(exc: WsadiagError) -> None:
    from analyzer.report.common import clean  # messages name paths, which may hold ESC or newlines

    message = clean(str(exc).replace("\n", " "))
    print(f"error: {message}", file=sys.stderr)
    if exc.hint:
        print(f"hint: {exc.hint}", file=sys.stderr)


# -- verbs ------------------------------------------------------------------------------------


def _analyze(args: argparse.Namespace) -> int:
    from analyzer.report import ReportOptions, render
    from analyzer.report.baseline import apply_baseline, write_baseline

    ruleset = _load_rules(args)
    results = _run(args, ruleset, keep="findings")
    if args.write_baseline:
        count = write_baseline(results, args.write_baseline)
        print(f"wrote {count} finding(s) to baseline {args.write_baseline}", file=sys.stderr)
    if args.baseline:
        results, suppressed = apply_baseline(results, args.baseline)
        if suppressed:
            print(f"{suppressed} known finding(s) left out by baseline {args.baseline}", file=sys.stderr)
    opts = ReportOptions(fail_on=args.fail_on, color=_color(args), rules=list(ruleset.rules))
    _write(args.output, render(args.format, results, opts))
    if any(r.error for r in results):
        return EXIT_ERROR
    if args.fail_on == "never":
        return EXIT_OK
    threshold = LEVELS.index(args.fail_on)
    failing = any(LEVELS.index(f.level) <= threshold for r in results for f in r.findings)
    return EXIT_FINDINGS if failing else EXIT_OK


def _conversations(args: argparse.Namespace) -> int:
    from analyzer.report import ReportOptions, render

    results = _run(args, None, keep="all")
    opts = ReportOptions(color=_color(args), conversations_only=True)
    _write(args.output, render(args.format, results, opts))
    return EXIT_ERROR if any(r.error for r in results) else EXIT_OK


def _explain(args: argparse.Namespace) -> int:
    from analyzer.explain import explain

    print(explain(args.what, _load_rules(args)))
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
    """Capture arguments as files: directories are walked for captures, unexpanded globs expanded."""
    out: list[str] = []
    for item in items:
        if item == "-":
            out.append(item)
        elif os.path.isdir(item):
            found = sorted(
                str(p) for p in Path(item).rglob("*") if p.is_file() and p.name.lower().endswith(CAPTURE_SUFFIXES)
            )
            if not found:
                raise UsageError(
                    f"{item}: no capture files in this directory",
                    hint="captures end in .pcap, .pcapng, .cap or .etl, optionally .gz/.bz2/.xz",
                )
            out.extend(found)
        elif not os.path.exists(item) and glob.has_magic(item):
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                raise UsageError(f"{item}: no file matches this pattern")
            out.extend(matches)
        else:
            out.append(item)
    if out.count("-") > 1:
        raise UsageError("standard input (-) can be read only once")
    return out


def _run(args: argparse.Namespace, ruleset, keep: str) -> list[CaptureResult]:
    from analyzer.filter import compile_filter
    from analyzer.pipeline import analyze_capture
    from analyzer.report.common import clean
    from analyzer.report.progress import CaptureProgress

    conv_filter = compile_filter(args.filter) if args.filter else None
    extra = {} if args.max_conversations is None else {"max_conversations": args.max_conversations}
    results = []
    for path in expand_captures(args.captures):
        source = sys.stdin.buffer if path == "-" else path
        with CaptureProgress(path, enabled=False if args.no_progress else None) as bar:
            result = analyze_capture(source, ruleset, conv_filter, keep=keep, progress=bar.update, **extra)
        if path == "-":
            result.path = "-"
        if result.error:
            print(f"error: {clean(result.error)}", file=sys.stderr)  # the path may hold ESC or newlines
        results.append(result)
    return results


def _color(args: argparse.Namespace) -> bool:
    if args.color == "always":
        return True
    if args.color == "never" or os.environ.get("NO_COLOR"):
        return False
    return args.output in (None, "-") and sys.stdout.isatty()


def _write(output: str | None, text: str) -> None:
    if output in (None, "-"):
        sys.stdout.write(text)
        if text and not text.endswith("\n"):
            sys.stdout.write("\n")
        sys.stdout.flush()
        return
    try:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror}") from None
