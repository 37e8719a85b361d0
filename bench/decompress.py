"""Decompress a capture and throw the bytes away, with the library `wsadiag` uses for it.

Usage: python bench/decompress.py FILE.pcap.gz|.pcap.xz|.pcap.bz2

bench/matrix.py times this beside `wsadiag analyze` of the same packets as a plain pcap: a
compressed capture cannot be analysed in less wall time than its decompression takes (the
decompressing child starts after the interpreter, and hands the last bytes over before the
analysis of them can end), so this row is the floor under the compressed rows.

The libraries are the ones analyzer/capture/source.py picks: python-isal for gzip and
indexed_bzip2 on two threads for bzip2 when they are installed (the standard library otherwise),
lzma for xz; one megabyte of output at a time, as wsadiag's decompressing child asks for it.
"""

from __future__ import annotations

import sys

STEP = 1 << 20


def main(path: str) -> int:
    total = 0
    if path.endswith(".bz2"):
        try:
            import indexed_bzip2

            reader = indexed_bzip2.open(path, parallelization=2)
        except ImportError:
            import bz2

            reader = bz2.open(path, "rb")
        with reader:
            while chunk := reader.read(STEP):
                total += len(chunk)
    else:
        if path.endswith(".gz"):
            try:
                from isal import isal_zlib as zlib
            except ImportError:
                import zlib  # type: ignore[no-redef]
            decompressor = zlib.decompressobj(wbits=31)  # gzip framing, CRC checked
        elif path.endswith(".xz"):
            import lzma

            decompressor = lzma.LZMADecompressor()
        else:
            print(f"decompress.py: {path}: not .gz, .xz or .bz2", file=sys.stderr)
            return 2
        with open(path, "rb") as f:
            while raw := f.read(STEP // 4):
                total += len(decompressor.decompress(raw))
    print(f"{total} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
