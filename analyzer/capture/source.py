"""Where capture bytes come from: a path, stdin or a file object, maybe gzip/bz2/xz compressed.

The readers above this module ask for "some more bytes" and get b"" at the end. For regular
files a request returns a big chunk; for pipes it returns whatever has arrived, so a record is
yielded as soon as it is complete (`tcpdump -U -w - | wsadiag analyze -`).
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import stat
import sys
import zlib
from typing import IO, Any, Callable

from analyzer.capture.formats import BZIP2_MAGIC, GZIP_MAGIC, XZ_MAGIC
from analyzer.errors import CaptureError

FILE_CHUNK = 1 << 20  # regular files: big reads amortise the per-read buffer copy
PIPE_CHUNK = 1 << 16  # pipes: at most one pipe buffer per read; returns what has arrived

# name appended to the format, and the stream reader class that decompresses it
COMPRESSIONS: tuple[tuple[bytes, str, Callable[[Any], Any]], ...] = (  # opener: file-like -> decompressing reader
    (GZIP_MAGIC, "gzip", lambda f: gzip.GzipFile(fileobj=f, mode="rb")),
    (BZIP2_MAGIC, "bz2", lambda f: bz2.BZ2File(f, mode="rb")),
    (XZ_MAGIC, "xz", lambda f: lzma.LZMAFile(f, mode="rb")),
)
# What the decompressors raise on bad data (EOFError, for a stream cut short, is handled apart).
DECOMPRESSION_ERRORS = (OSError, zlib.error, lzma.LZMAError, ValueError)

Warn = Callable[[str, str], None]


class _Prefixed:
    """A file-like object that first returns bytes already read, then reads on from `read`."""

    def __init__(self, prefix: bytes, read: Callable[[int], bytes]) -> None:
        self._prefix = prefix
        self._read = read

    def read(self, n: int = -1) -> bytes:
        if self._prefix:
            data = self._prefix if n < 0 else self._prefix[:n]
            self._prefix = self._prefix[len(data) :]
            return data
        return self._read(PIPE_CHUNK if n is None or n < 0 else n)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        pass


class Source:
    """A byte stream with a `read(n)` that returns some bytes, b"" at the end, and never raises.

    Read and decompression errors become warnings (through `warn`) and end the stream.
    """

    def __init__(self, path: str, fobj: IO[bytes], owned: bool) -> None:
        self.path = path
        self.compression = ""  # "gzip", "bz2", "xz" or ""
        self.failed = False  # the stream ended on an error, already reported
        self.warn: Warn = lambda code, message: None
        self._fobj = fobj
        self._owned = owned
        self._decomp: Any = None  # a GzipFile, BZ2File or LZMAFile once one is opened
        regular = _is_regular(fobj)
        self.chunk = FILE_CHUNK if regular else PIPE_CHUNK
        if regular or not hasattr(fobj, "read1"):
            # FileIO.read on a pipe already returns what has arrived
            self._raw_read: Callable[[int], bytes] = fobj.read
        else:
            self._raw_read = fobj.read1
        self._regular = regular
        self._read = self._raw_read

    def start(self) -> bytes:
        """Read the first bytes, wrap a decompressor when they say so; return the first content bytes.

        Returns at least 8 bytes unless the content is shorter; the caller reads on with
        `read_at_least` for the rest of its header, so a pipe is never waited on for more.
        """
        try:
            prefix = self.read_at_least(self._raw_read, 8)
        except (OSError, ValueError) as exc:
            raise CaptureError(f"{self.path}: cannot read: {_why(exc)}") from None
        for magic, name, opener in COMPRESSIONS:
            if prefix.startswith(magic):
                self.compression = name
                try:
                    self._decomp = opener(_Prefixed(prefix, self._raw_read))
                    if self._regular:
                        self._read = self._decomp.read
                    else:
                        self._read = self._decomp.read1
                    return self.read_at_least(self._read, 8)
                except EOFError:
                    raise CaptureError(f"{self.path}: {name} stream ends before any data") from None
                except DECOMPRESSION_ERRORS as exc:
                    raise CaptureError(f"{self.path}: corrupt {name} data ({_why(exc)})") from None
        return prefix

    def top_up(self, head: bytes, n: int) -> bytes:
        """`head` extended to `n` bytes (fewer only at the end); errors end the stream quietly."""
        if len(head) >= n:
            return head
        return head + self.read_at_least(self.read, n - len(head))

    def read_at_least(self, read: Callable[[int], bytes], n: int) -> bytes:
        """Read until `n` bytes or more, or the end: magic detection needs the whole header even from a pipe.

        Always asks for a whole chunk: gzip's reader, asked for a few bytes, can keep decompressed
        output back until more input arrives, which on a pipe means waiting for the next record.
        """
        parts = []
        have = 0
        while have < n:
            data = read(self.chunk)
            if not data:
                break
            parts.append(data)
            have += len(data)
        return b"".join(parts)

    def read(self, n: int) -> bytes:
        """Some bytes (a chunk, or at least `n` if more is asked), or b"" at the end or after an error."""
        if self.failed:
            return b""
        try:
            data = self._read(max(n, self.chunk))
            # A file object of the caller's may hand out bytearray or memoryview: the walks take bytes.
            return data if type(data) is bytes else bytes(data)
        except EOFError:
            self.failed = True
            self.warn("truncated", f"{self.compression} stream ends early: the capture is cut short")
        except DECOMPRESSION_ERRORS as exc:
            self.failed = True
            if self.compression:
                self.warn("corrupt-compression", f"corrupt {self.compression} data: {_why(exc)}")
            else:
                self.warn("read-error", f"read failed: {_why(exc)}")
        return b""

    def close(self) -> None:
        try:
            if self._decomp is not None:
                self._decomp.close()
            if self._owned:
                self._fobj.close()
        except Exception:  # closing must not fail the run: the data has been read already
            pass


def open_source(src: str | os.PathLike[str] | IO[bytes]) -> Source:
    """Open a path, "-" (stdin) or a binary file object; raise CaptureError naming the path."""
    if isinstance(src, (str, os.PathLike)):
        path = os.fspath(src)
        if path == "-":
            return Source("-", sys.stdin.buffer, owned=False)
        try:
            fobj = open(path, "rb", buffering=0)
        except FileNotFoundError:
            raise CaptureError(f"{path}: no such file") from None
        except IsADirectoryError:
            raise CaptureError(f"{path}: is a directory, not a capture file") from None
        except OSError as exc:
            raise CaptureError(f"{path}: cannot open: {_why(exc)}") from None
        if stat.S_ISDIR(os.fstat(fobj.fileno()).st_mode):
            fobj.close()
            raise CaptureError(f"{path}: is a directory, not a capture file")
        return Source(path, fobj, owned=True)
    name = getattr(src, "name", None)
    return Source(name if isinstance(name, str) else "<stream>", src, owned=False)


def _is_regular(fobj: IO[bytes]) -> bool:
    try:
        return stat.S_ISREG(os.fstat(fobj.fileno()).st_mode)
    except (OSError, ValueError, AttributeError, TypeError):
        return False  # BytesIO and friends: read() already returns what is there


def _why(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
