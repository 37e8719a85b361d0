"""Decompress a capture and throw the bytes away, with the library `wsadiag` uses for it.

Usage: python bench/decompress.py FILE.pcap.gz|.pcap.xz|.pcap.bz2

bench/matrix.py times this beside `wsadiag analyze` of the same packets as a plain pcap: a
compressed capture cannot be analysed in less wall time than its decompression takes (the
decompressing child starts after the interpreter, and hands the last bytes over before the
analysis of them can end), so this row is the floor under the compressed rows.

The libraries are the ones analyzer/capture/source.py picks: python-isal for gzip and
indexed_bzip2 for bzip2, on as many threads as wsadiag gives it, when they are installed (the
standard library otherwise), lzma for xz. gzip is inflated with the CRC checked by the library
(wsadiag inflates raw deflate and checks the CRC with python-isal's crc32: the same work).
Compressed input is read 256 KiB at a time; every gzip member and xz stream of a concatenated
file is decompressed.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable

STEP = 1 << 20  # bzip2: output asked per read
RAW = 1 << 18  # gzip, xz: compressed input per read


def _gzip() -> Callable[[], Any]:
    try:
        from isal import isal_zlib as zlib
    except ImportError:
        import zlib  # type: ignore[no-redef]
    return lambda: zlib.decompressobj(wbits=31)  # gzip framing, CRC checked


def _xz() -> Callable[[], Any]:
    import lzma

    return lzma.LZMADecompressor


def _streams(path: str, factory: Callable[[], Any]) -> int:
    """Bytes decompressed from every member (stream) of `path`, one after another."""
    total = 0
    decompressor = factory()
    with open(path, "rb") as f:
        while raw := f.read(RAW):
            while raw:
                total += len(decompressor.decompress(raw))
                if not decompressor.eof:
                    break
                raw = decompressor.unused_data.lstrip(b"\0")  # the next member; xz pads streams with zeros
                decompressor = factory()
    return total


def _bzip2(path: str) -> int:
    try:
        import indexed_bzip2  # type: ignore[import-not-found]

        from analyzer.capture.source import FAST_THREADS  # the threads wsadiag gives it

        reader: Any = indexed_bzip2.open(path, parallelization=min(os.cpu_count() or 1, FAST_THREADS))
    except ImportError:
        import bz2

        reader = bz2.open(path, "rb")
    total = 0
    with reader:
        while chunk := reader.read(STEP):
            total += len(chunk)
    return total


def main(path: str) -> int:
    if path.endswith(".bz2"):
        total = _bzip2(path)
    elif path.endswith(".gz"):
        total = _streams(path, _gzip())
    elif path.endswith(".xz"):
        total = _streams(path, _xz())
    else:
        print(f"decompress.py: {path}: not .gz, .xz or .bz2", file=sys.stderr)
        return 2
    print(f"{total} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
