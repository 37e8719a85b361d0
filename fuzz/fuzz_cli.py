"""Coverage-guided fuzzing of what surrounds the parser: files on disk, compression, and main().

    python fuzz/fuzz_cli.py -max_total_time=600 fuzz/cli-corpus-dir
    python fuzz/fuzz_cli.py crash-<sha1>                       # replay one input

An input is one control byte, two parameter bytes, then capture bytes (the seeds are the same
captures as fuzz_pipeline.py's, behind a zero control byte). The control byte chooses:
  bits 0-1  compression: none, gzip, bz2, xz (the capture bytes are compressed here)
  bit 2     cut the file at a fraction (parameter byte 1) of its length
  bit 3     append trailing garbage
  bit 4     flip a byte of the file, at a fraction (parameter byte 2) of its length
  bits 5-7  with parameter byte 2: which verb and output format main() runs, and -o or stdout
The file is written to a temporary folder and then:
  - read by open_capture from its path and from memory: both must give the same frames and
    warnings, or both the same one-line error;
  - analysed by main() (`analyze` in every format, `conversations` in each of its formats),
    writing to a file or to a standard output that encodes strictly as UTF-8: the exit status
    must be 0, 1 or 2, nothing may say "internal error", and JSON, SARIF and JSONL must parse.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import json
import lzma
import os
import sys
import tempfile
from pathlib import Path

import atheris

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

with atheris.instrument_imports():
    from analyzer.capture import open_capture
    from analyzer.cli import main as cli_main
    from analyzer.errors import CaptureError
    from analyzer.report import FORMATS

COMPRESSORS = (
    ("", lambda b: b),
    (".gz", lambda b: gzip.compress(b, compresslevel=1)),
    (".bz2", lambda b: bz2.compress(b, compresslevel=1)),
    (".xz", lambda b: lzma.compress(b, preset=0)),
)
# (verb, format) pairs main() is run with: every analyze format, every conversations format
RUNS = tuple(("analyze", f) for f in FORMATS) + tuple(("conversations", f) for f in ("text", "json", "jsonl"))
WORK = tempfile.mkdtemp(prefix="wsadiag-fuzz-cli-")


def build_file(data: bytes) -> tuple[str, bytes, int]:
    """The file's suffix and bytes an input describes, and its run selector."""
    if len(data) < 3:
        return "", data, 0
    control, cut_at, where = data[0], data[1], data[2]
    suffix, compress = COMPRESSORS[control & 3]
    body = compress(data[3:])
    if control & 4 and body:
        body = body[: len(body) * cut_at // 256]
    if control & 8:
        body += b"trailing garbage\x00\xff"
    if control & 16 and body:
        i = len(body) * where // 256
        body = body[:i] + bytes([body[i] ^ 0x5A]) + body[i + 1 :]
    return suffix, body, (control >> 5) * 256 + where


def read_both(path: str, body: bytes) -> None:
    """The file path and the in-memory path must agree, frame for frame and warning for warning."""
    got = []
    for src in (path, io.BytesIO(body)):
        try:
            with open_capture(src) as cap:
                frames = [(f.number, f.ts, f.caplen, f.wirelen, f.linktype, f.data) for f in cap]
                got.append(("ok", cap.format, frames, [(w.code, w.message, w.frame) for w in cap.warnings]))
        except CaptureError as exc:
            message = str(exc)
            assert message and "\n" not in message, f"error not one line: {message!r}"
            got.append(("error", message.split(": ", 1)[-1]))
    assert got[0] == got[1], f"file and memory paths differ:\n{got[0]!r:.600}\n{got[1]!r:.600}"


def run_main(path: str, selector: int) -> None:
    verb, fmt = RUNS[selector % len(RUNS)]
    to_file = selector // len(RUNS) % 2 == 1
    out_path = os.path.join(WORK, f"report.{fmt}")
    args = [verb, "--no-progress", "--format", fmt, path]
    if to_file:
        args += ["-o", out_path]
    raw = io.BytesIO()
    stdout = io.TextIOWrapper(raw, encoding="utf-8", errors="strict")  # as a UTF-8 terminal or pipe
    stderr = io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = cli_main(args)
        stdout.flush()
    err = stderr.getvalue()
    assert code in (0, 1, 2), f"exit status {code}"
    assert "internal error" not in err and "Traceback" not in err, err
    text = Path(out_path).read_text(encoding="utf-8") if to_file and code != 2 else raw.getvalue().decode("utf-8")
    if code == 2 and not text:
        return
    if fmt in ("json", "sarif"):
        json.loads(text)
    elif fmt == "jsonl":
        for line in text.splitlines():
            json.loads(line)


def TestOneInput(data: bytes) -> None:
    suffix, body, selector = build_file(data)
    path = os.path.join(WORK, "capture.pcap" + suffix)
    with open(path, "wb") as fh:
        fh.write(body)
    read_both(path, body)
    run_main(path, selector)


def seed_dir() -> str:
    """The small sample and corpus captures, each behind control bytes (none; gzip; gzip cut)."""
    from fuzz_pipeline import CORPUS, SEED_MAX_BYTES, SEED_SUFFIXES

    tmp = tempfile.mkdtemp(prefix="wsadiag-fuzz-cli-seeds-")
    n = 0
    for root in (REPO / "samples", CORPUS):
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*")):
            if path.is_file() and path.name.endswith(SEED_SUFFIXES) and path.stat().st_size <= SEED_MAX_BYTES:
                data = path.read_bytes()
                for i, head in enumerate((b"\x00\x00\x00", b"\x01\x00\x00", b"\x05\xc0\x00")):
                    n += 1
                    Path(tmp, f"{n:04d}-{i}-{path.name}").write_bytes(head + data)
    print(f"fuzz: {n} seeds written in {tmp}", file=sys.stderr)
    return tmp


def main(argv: list[str]) -> None:
    args = list(argv)
    positional = [a for a in args[1:] if not a.startswith("-")]
    if positional and not Path(positional[0]).is_file():
        Path(positional[0]).mkdir(parents=True, exist_ok=True)
        args.append(seed_dir())
    if not any(a.startswith("-dict=") for a in args):
        args.append(f"-dict={Path(__file__).with_name('pcap.dict')}")
    atheris.Setup(args, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
