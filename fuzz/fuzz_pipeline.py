"""Coverage-guided fuzzing of the whole pipeline: capture bytes in, every report format out.

    python fuzz/fuzz_pipeline.py -max_total_time=3600 fuzz/corpus-dir

Each input is taken as a capture file and goes open_capture (from a BytesIO) -> Decoder ->
FlowTable -> the rule engine -> every report format. The only exceptions allowed to escape
are our own (analyzer.errors.WsadiagError and subclasses): anything else is a bug, and
libFuzzer saves the input as crash-<sha1> in the working directory.

Seeds are read in place, never copied into the repository: the small captures in samples/
and in ../shared/corpus are linked into a temporary directory that is passed to libFuzzer as
an extra (read-only) corpus. The first corpus directory on the command line is where libFuzzer
keeps the inputs it finds; it is created when missing.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
from pathlib import Path

import atheris

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing the package

with atheris.instrument_imports():
    from analyzer.capture import open_capture
    from analyzer.decode import Decoder
    from analyzer.errors import WsadiagError
    from analyzer.flows import FlowTable
    from analyzer.flows.table import TIMELINE_HEAD, TIMELINE_TAIL
    from analyzer.model import CaptureResult, Conversation
    from analyzer.report import FORMATS, ReportOptions, render

    try:
        from analyzer.rules import load_rules
    except Exception as exc:  # a broken rule engine is another test's business, not the fuzzer's
        print(f"fuzz: rule engine not importable ({type(exc).__name__}: {exc})", file=sys.stderr)
        load_rules = None

CORPUS = REPO.parent / "shared" / "corpus"
SEED_MAX_BYTES = 16_384  # small seeds keep each mutation cheap; larger captures add little coverage
SEED_SUFFIXES = (".pcap", ".pcapng", ".cap")
# A small table makes the fuzzer reach the early-eviction path ("conversation-table-full").
FUZZ_MAX_CONVERSATIONS = 16


def _load_rules():
    """The built-in rule set, or None when it does not load (the rules are fuzzed only if they load)."""
    if load_rules is None:
        return None
    try:
        return load_rules()
    except Exception as exc:  # a broken rule file is another test's business, not the fuzzer's
        print(f"fuzz: rules not loaded ({type(exc).__name__}: {exc}); fuzzing without them", file=sys.stderr)
        return None


RULES = _load_rules()
OPTIONS = ReportOptions(rules=list(RULES.rules) if RULES is not None else None)


def run_pipeline(data: bytes) -> CaptureResult:
    """Push one input through every stage the way analyze_capture does, with invariant checks.

    Raises WsadiagError for inputs we reject on purpose; AssertionError for broken invariants.
    """
    result = CaptureResult(path="<fuzz>")
    convs: list[Conversation] = []

    def emit(conv: Conversation) -> None:
        assert len(conv.timeline) <= TIMELINE_HEAD + TIMELINE_TAIL, "timeline not bounded"
        assert conv.elided >= 0
        result.conversation_count += 1
        if RULES is not None:
            result.findings.extend(RULES.evaluate(conv))
        convs.append(conv)

    table = FlowTable(emit, max_conversations=FUZZ_MAX_CONVERSATIONS)
    decoder = Decoder()
    frames = 0
    with open_capture(io.BytesIO(data)) as cap:
        result.format = cap.format
        last = 0
        for frame in cap:
            frames += 1
            assert frame.number == last + 1, "frames not numbered consecutively"
            assert frame.caplen == len(frame.data), "caplen disagrees with the data"
            last = frame.number
            pkt = decoder.decode(frame)
            if pkt is not None:
                table.add(pkt)
        table.flush()
        result.warnings.extend(cap.warnings)
    result.warnings.extend(decoder.warnings())
    result.warnings.extend(table.warnings())
    result.packets = frames
    result.conversations = sorted(convs, key=lambda c: c.id)
    return result


def TestOneInput(data: bytes) -> None:
    try:
        result = run_pipeline(data)
    except WsadiagError as exc:
        message = str(exc)
        assert message and "\n" not in message, f"error message not one line: {message!r}"
        return
    for fmt in FORMATS:
        try:
            render(fmt, [result], OPTIONS)
        except WsadiagError:
            pass


def seed_dir() -> str:
    """A temporary directory of symlinks to the small sample and corpus captures."""
    tmp = tempfile.mkdtemp(prefix="wsadiag-fuzz-seeds-")
    roots = [REPO / "samples", CORPUS]
    n = 0
    for root in roots:
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*")):
            if path.is_file() and path.name.endswith(SEED_SUFFIXES) and path.stat().st_size <= SEED_MAX_BYTES:
                n += 1
                os.symlink(path, os.path.join(tmp, f"{n:04d}-{path.name}"))
    print(f"fuzz: {n} seed captures linked in {tmp}", file=sys.stderr)
    return tmp


def main(argv: list[str]) -> None:
    args = list(argv)
    positional = [a for a in args[1:] if not a.startswith("-")]
    # `fuzz_pipeline.py crash-<sha1>` replays one input: no seeds then.
    if positional and not Path(positional[0]).is_file():
        Path(positional[0]).mkdir(parents=True, exist_ok=True)
        args.append(seed_dir())
    if not any(a.startswith("-dict=") for a in args):
        args.append(f"-dict={Path(__file__).with_name('pcap.dict')}")
    atheris.Setup(args, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
