"""Where capture bytes come from: a path, stdin or a file object, maybe gzip/bz2/xz compressed.

The readers above this module ask for "some more bytes" and get b"" at the end. For regular
files a request returns a big chunk; for pipes it returns whatever has arrived, so a record is
yielded as soon as it is complete (`tcpdump -U -w - | wsadiag analyze -`).

A compressed capture is decompressed ahead of the analysis, by the same worker code (`_work`) run
in one of two places:

- a forked child process (`_ForkAhead`), for a file opened by path on Linux while the process
  has one thread. A process because a thread does not overlap: on a 200k-packet capture the
  compiled analysis holds the GIL for long stretches, so each time the worker came back from
  lzma it waited about 1 ms for the GIL (0.15 s of waiting over 161 calls, for 0.49 s of
  decompression), and python-isal's decompressobj does not release the GIL at all. A child has
  a GIL of its own. multiprocessing's "fork" context rather than os.fork by hand: it flushes
  stdout and stderr before the fork (so no buffered report is written twice), ends the child
  with os._exit (the parent's atexit handlers and finally blocks do not run in it), and reaps it
  (join, active_children). The decompressed bytes go through a pipe of their own, unframed: the
  parent reads them straight into the bytes objects the walk takes, one copy, where a
  multiprocessing message took three in the parent (its read, a BytesIO, the message's bytes).
  How the stream ended (the inflater's damage) follows on a multiprocessing pipe. In the child
  the worker runs on a thread as below, beside a thread that writes its items: the pipe holds
  half an item, and a worker that wrote its own would stop while the parent had not taken the
  last.
- a worker thread (`_ReadAhead`) everywhere else: pipes and stdin, a caller's file object,
  other platforms, a process that already has threads (a Dask worker, a pool's parent: forking
  with threads can deadlock the child), or when the child cannot be started.

Both give the same bytes and the same damage, so the same frames and warnings.
"""

from __future__ import annotations

import bz2
import gc
import importlib
import lzma
import os
import stat
import sys
import threading
import weakref
import zlib
from collections import deque
from typing import IO, TYPE_CHECKING, Any, Callable, Iterator

from analyzer.capture import heap
from analyzer.capture.formats import BZIP2_MAGIC, GZIP_MAGIC, XZ_MAGIC
from analyzer.errors import CaptureError

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

FILE_CHUNK = 1 << 20  # regular files: big reads amortise the per-read buffer copy
PIPE_CHUNK = 1 << 16  # pipes: at most one pipe buffer per read; returns what has arrived

# name appended to the format, its magic, and a factory of incremental decompressors.
# gzip is inflated raw (wbits=-15) with its header and trailer read here: zlib's own gzip mode
# raises on a bad CRC or a missing trailer and drops the output of that call with it, and the
# stdlib's GzipFile drops up to a whole read (1 MiB) when the stream is cut; done by hand, every
# byte that decompressed is handed on and the damage becomes a warning.
COMPRESSIONS: tuple[tuple[bytes, str, Callable[[], Any]], ...] = (
    (GZIP_MAGIC, "gzip", lambda: zlib.decompressobj(wbits=-zlib.MAX_WBITS)),
    (BZIP2_MAGIC, "bz2", bz2.BZ2Decompressor),
    (XZ_MAGIC, "xz", lambda: lzma.LZMADecompressor(lzma.FORMAT_AUTO)),
)
# What the decompressors raise on bad data.
DECOMPRESSION_ERRORS: tuple[type[Exception], ...] = (OSError, zlib.error, lzma.LZMAError, ValueError, EOFError)
# Quicker decompressors of the same formats, when installed (a dependency, but the standard
# library does without): python-isal inflates gzip in about 70% of zlib's time. They are used
# only where a fault can be replayed with the standard library's decompressor, so their answers
# are its answers.
FAST_MODULES = {"gzip": "isal.isal_zlib"}


# a decompressor factory, what it raises on bad data, and its module's CRC-32 (the same sums as
# zlib's, in a fifth of the time on a gzip capture: the gzip trailer's check)
Fast = tuple[Callable[[], Any], type[Exception], Callable[[bytes, int], int]]


def _fast(name: str) -> Fast | None:
    """The quicker decompressor for `name`, or None (not installed); imported on first use."""
    module = FAST_MODULES.get(name)
    if module is None:
        return None
    try:
        isal_zlib = importlib.import_module(module)
    except ImportError:  # not installed: the standard library alone, same answers
        return None
    return lambda: isal_zlib.decompressobj(wbits=-isal_zlib.MAX_WBITS), isal_zlib.error, isal_zlib.crc32


# Whole-file readers that decompress in parallel, when installed (likewise): indexed_bzip2 finds
# the bzip2 blocks and decodes them on several threads, in about half the CPU time of the bz2
# module even on one. It reads a regular file by name; what it hands out is checked (_work_fast).
FAST_READERS = {"bz2": "indexed_bzip2"}
# Its threads: each keeps ~5 MiB of blocks; two kept `analyze` of a 200k .bz2 at 92 MiB peak.
FAST_THREADS = 2
BZ2_END = 0x177245385090  # the 48-bit end-of-stream marker; then a 32-bit CRC and padding to a byte
BZ2_TAIL = 11  # bytes that hold the marker, the CRC and up to 7 bits of padding
FastReader = tuple[Callable[[], Any], int]  # a reader factory and the size of the file it reads


def _fast_reader(name: str, path: str, fobj: IO[bytes]) -> FastReader | None:
    """A faster whole-file reader of `path` and the file's size, or None (not installed, or an unclean end).

    Only a file that ends with a stream's end marker is given to it: trailing bytes (garbage,
    zero padding) are read by the standard library, which names them.
    """
    module = FAST_READERS.get(name)
    if module is None:
        return None
    try:
        size = os.fstat(fobj.fileno()).st_size
        tail = os.pread(fobj.fileno(), BZ2_TAIL, max(size - BZ2_TAIL, 0))
        reader = importlib.import_module(module)
    except (ImportError, OSError, AttributeError, ValueError):
        return None
    value = int.from_bytes(tail, "big")
    if not any((value >> (pad + 32)) & 0xFFFFFFFFFFFF == BZ2_END for pad in range(8)):
        return None
    threads = min(os.cpu_count() or 1, FAST_THREADS)
    return lambda: reader.open(path, parallelization=threads), size


# Output asked of a decompressor per call: data of a call that fails is lost, so this bounds
# what a corrupt block can take with it (bz2 and xz check a block's CRC only at its end).
INFLATE_STEP = 1 << 16
# Compressed input read per raw read. zlib hands back the input it did not get to (each
# INFLATE_STEP of output) as a new bytes object: fed a whole 1 MiB chunk, it would copy the rest
# of that chunk about fifty times over; fed 64 KiB, a few times 64 KiB at most.
RAW_STEP = 1 << 16
GZIP_HEADER_MAX = 1 << 16  # a gzip header longer than this (file name, comment, extra) is taken as corrupt
# RFC 1952 section 2.3.1: header flag bits
GZ_FHCRC, GZ_FEXTRA, GZ_FNAME, GZ_FCOMMENT = 0x02, 0x04, 0x08, 0x10
GZ_DEFLATE = 8  # the only compression method RFC 1952 defines

# Read-ahead on a second thread (compressed input): decompressed bytes handed over per item and
# items kept ready. zlib, bz2 and lzma release the GIL while they work, so the decompression runs
# beside the analysis; big items keep the hand-overs (each one a GIL round trip) few.
AHEAD_ITEM = 2 << 20
AHEAD_DEPTH = 2
# On the worker a decompressor call asks for this much output and a raw read for AHEAD_RAW (regular
# files): each call and read gives the GIL back and has to win it again.
AHEAD_STEP = 1 << 20
AHEAD_RAW = 1 << 18
# The GIL switch interval while a worker runs (the default is 5 ms). The analysis seldom waits,
# so each time the worker comes back from zlib it waits the interval for the GIL: at 5 ms a
# second's decompression took two, and the thread gained nothing.
AHEAD_SWITCH = 1e-4
PIPE_WAIT = 1.0  # s: closing waits this long for a worker that reads a pipe
# Read-ahead in a forked child (see the module doc). A module switch: False keeps every capture on
# the worker thread (tests that look at the thread set it).
FORK = sys.platform.startswith("linux")
# The pipe buffer asked for (Linux F_SETPIPE_SZ; 1 MiB is the default limit for an unprivileged
# process): the parent takes up to a megabyte per read rather than the default 64 KiB (156 MB
# through the pipe in 2 MiB items: 0.05 s of the parent's CPU, 0.2 s with 64 KiB).
FORK_PIPE = 1 << 20
FORK_DEPTH = 4  # items the child's worker keeps ready beside the one on the pipe (its memory, not the parent's)
FORK_WAIT = 1.0  # s: closing waits this long for a child that was asked to stop (SIGTERM), then kills it

Warn = Callable[[str, str], None]


class _Inflater:
    """Decompresses a gzip, bz2 or xz stream incrementally; damage ends the output with a warning.

    Concatenated members (gzip) and streams (bz2, xz) are read on, as their own tools read them.
    Whatever decompressed before a fault is handed out first: a cut stream, a missing gzip
    trailer, a bad CRC or trailing garbage each cost no byte that decompressed.
    """

    def __init__(self, name: str, magic: bytes, factory: Callable[[], Any], raw: Callable[[int], bytes], chunk: int):
        self.name = name
        # The first fault ("" while the stream is sound) and its warning code. The warning is given
        # by Source.read when the reader reaches the fault, not when read-ahead meets it, so a file
        # (read far ahead) and a pipe report the same.
        self.damage = ""
        self.damage_code = ""
        self._magic = magic
        self._factory = factory
        self._plain = factory  # the standard library's decompressor: what a replay uses
        self._raw = raw
        self._chunk = chunk
        self._raw_chunk = min(chunk, RAW_STEP)
        # Output asked per decompressor call. Bigger steps (the worker thread) lose more on a
        # fault, so they are taken only where the step can be done again in INFLATE_STEPs: from a
        # copy of the decompressor (zlib) or by reading the member again (a regular file).
        self._step = INFLATE_STEP
        self._tell: Callable[[], int] | None = None  # the raw stream's position and seek, when it has them
        self._seek: Callable[[int], int] | None = None
        self._decomp: Any = None  # the current member's decompressor
        self.skip = 0  # output to drop from the start: a faster reader handed it out before it failed
        self._errors = DECOMPRESSION_ERRORS
        self._crc32: Callable[[bytes, int], int] = zlib.crc32
        self._in = b""  # compressed bytes read but not yet given to a decompressor
        self._at_end = False  # the raw stream has ended (or failed)
        self._out = self._members()

    def ahead(self, fobj: IO[bytes] | None, fast: Fast | None) -> None:
        """Tune for the worker thread: big calls and reads; `fobj` (a regular file) can be read again.

        `fast` is a quicker decompressor of the same format (python-isal for gzip), used where a
        fault can be replayed with the standard library's.
        """
        if fobj is not None:
            self._raw_chunk = AHEAD_RAW
            self._tell, self._seek = fobj.tell, fobj.seek
            if fast is not None:
                self._factory = fast[0]
                self._errors = (*DECOMPRESSION_ERRORS, fast[1])
                self._crc32 = fast[2]
            self._step = AHEAD_STEP
        elif hasattr(self._factory(), "copy"):
            self._step = AHEAD_STEP

    def read(self, n: int) -> bytes:
        """Decompressed bytes: at least `n` from a regular file, what one raw read gave from a pipe; b"" at the end."""
        parts: list[bytes] = []
        have = 0
        for data in self._out:
            if self.skip:  # handed out already by a faster reader (_work)
                cut = min(self.skip, len(data))
                self.skip -= cut
                data = data[cut:]
            parts.append(data)
            have += len(data)
            if have >= n or self._chunk < FILE_CHUNK:
                break
        return b"".join(parts)

    # -- the raw stream ---------------------------------------------------------------------

    def _fill(self) -> bool:
        """Read more compressed bytes onto `_in`; False at the end of the raw stream."""
        if self._at_end:
            return False
        try:
            data = self._raw(self._raw_chunk)
        except (OSError, ValueError) as exc:
            self._at_end = True
            self._fault("read-error", f"read failed: {_why(exc)}")
            return False
        if not data:
            self._at_end = True
            return False
        self._in += data if type(data) is bytes else bytes(data)
        return True

    def _need(self, n: int) -> bool:
        """At least `n` compressed bytes in `_in`, reading on; False if the stream ends first."""
        while len(self._in) < n:
            if not self._fill():
                return False
        return True

    def _fault(self, code: str, message: str) -> None:
        if not self.damage:
            self.damage = message
            self.damage_code = code

    # -- members ----------------------------------------------------------------------------

    def _members(self) -> Iterator[bytes]:
        first = True
        while True:
            if not first and not self._next_member():
                return
            first = False
            if self.name == "gzip" and not self._gzip_header():
                return
            crc = [0, 0]  # gzip: CRC-32 and length of this member's output
            self._decomp = decomp = self._factory()
            for data in self._inflate():
                if self.name == "gzip":
                    crc[0] = self._crc32(data, crc[0])
                    crc[1] += len(data)
                yield data
            decomp = self._decomp  # a rewind replaces it
            if not decomp.eof:
                return  # cut short or corrupt: warned
            self._in = decomp.unused_data + self._in
            if self.name == "gzip" and not self._gzip_trailer(crc[0], crc[1]):
                return

    def _inflate(self) -> Iterator[bytes]:
        """The output of one member (`_decomp`), step by step; warns when it is cut short or corrupt."""
        decomp = self._decomp
        step = self._step
        start = self._tell() - len(self._in) if self._tell is not None else -1  # the member's compressed data
        done = 0  # output of this member handed out
        skip = 0  # output to drop after a replay: it was handed out before
        pending = b""
        more = False  # the decompressor holds output back (the step limit), or input is left
        while not decomp.eof:
            if not more:
                if not self._in and not self._fill():
                    self._fault("truncated", f"{self.name} stream ends early: the capture is cut short")
                    return
                pending, self._in = self._in, b""
            saved = decomp.copy() if step > INFLATE_STEP and hasattr(decomp, "copy") else None
            try:
                data = decomp.decompress(pending, step)
            except self._errors as exc:
                # A big step lost its output with the fault: do it again in INFLATE_STEPs, so a
                # fault costs what it costs without the worker thread.
                if saved is not None:
                    self._decomp = decomp = saved
                elif step > INFLATE_STEP and self._replay(start):
                    decomp, pending, skip = self._decomp, b"", done
                else:
                    self._fault("corrupt-compression", f"corrupt {self.name} data: {_why(exc)}")
                    return
                step = INFLATE_STEP
                more = saved is not None
                continue
            if self.name == "gzip":
                pending = decomp.unconsumed_tail
                more = bool(pending) or len(data) == step
            else:
                pending = b""
                more = not decomp.needs_input
            if skip:
                cut = min(skip, len(data))
                skip -= cut
                data = data[cut:]
            if data:
                done += len(data)
                yield data

    def _replay(self, start: int) -> bool:
        """Read the member again from `start` with the standard library's decompressor; False if it cannot be."""
        if self._seek is None or start < 0:
            return False
        try:
            self._seek(start)
        except (OSError, ValueError):
            return False
        self._in = b""
        self._at_end = False
        self._decomp = self._plain()
        # Read as the main thread reads a regular file (FILE_CHUNK, then RAW_STEPs), so the small
        # steps fall where they fall there and the same bytes come out before the fault.
        grid = FILE_CHUNK + -(-max(start - FILE_CHUNK, 0) // RAW_STEP) * RAW_STEP
        self._raw_chunk = (grid if grid > start else start + RAW_STEP) - start
        self._fill()
        self._raw_chunk = RAW_STEP
        return True

    def _next_member(self) -> bool:
        """After a complete member: True if another follows; trailing bytes that are not one are reported."""
        if not self._need(len(self._magic)) and not self._in:
            return False  # a clean end
        if self._in.startswith(self._magic):
            return True
        # Zero padding (tape blocks, xz stream padding) is not damage; anything else is garbage
        # that gzip and xz too ignore with a note.
        garbage = len(self._in)
        nonzero = bool(self._in.strip(b"\0"))
        self._in = b""
        while self._fill():
            garbage += len(self._in)
            nonzero = nonzero or bool(self._in.strip(b"\0"))
            self._in = b""
        if nonzero:
            self._fault(
                "corrupt-compression",
                f"{garbage} bytes of trailing garbage after the {self.name} data are ignored",
            )
        return False

    def _gzip_header(self) -> bool:
        """Consume one gzip member header (RFC 1952 section 2.3); False, with a warning, if it is bad."""
        if not self._need(10):
            self._fault("truncated", "gzip stream ends inside a member header")
            return False
        if self._in[2] != GZ_DEFLATE:
            self._fault("corrupt-compression", f"corrupt gzip data: unknown compression method {self._in[2]}")
            return False
        flags = self._in[3]
        pos = 10
        if flags & GZ_FEXTRA:
            if not self._need(pos + 2):
                self._fault("truncated", "gzip stream ends inside a member header")
                return False
            pos += 2 + int.from_bytes(self._in[pos : pos + 2], "little")
        for bit in (GZ_FNAME, GZ_FCOMMENT):
            if flags & bit:
                pos = self._after_zero(pos)
                if pos < 0:
                    return False
        if flags & GZ_FHCRC:
            pos += 2
        if not self._need(pos):
            self._fault("truncated", "gzip stream ends inside a member header")
            return False
        self._in = self._in[pos:]
        return True

    def _after_zero(self, pos: int) -> int:
        """The offset after the zero byte that ends a header string at `pos`; -1 (warned) if there is none."""
        while True:
            zero = self._in.find(b"\0", pos)
            if zero >= 0:
                return zero + 1
            if len(self._in) > GZIP_HEADER_MAX:
                self._fault("corrupt-compression", "corrupt gzip data: a member header without end")
                return -1
            if not self._fill():
                self._fault("truncated", "gzip stream ends inside a member header")
                return -1

    def _gzip_trailer(self, crc: int, size: int) -> bool:
        """Check a member's CRC-32 and length (RFC 1952 section 2.3.1); False, with a warning, if they fail."""
        if not self._need(8):
            self._in = b""
            self._fault("truncated", "gzip trailer missing: the data could not be checked (the file is cut short)")
            return False
        want_crc = int.from_bytes(self._in[:4], "little")
        want_size = int.from_bytes(self._in[4:8], "little")
        self._in = self._in[8:]
        # A mismatch does not stop the reading: the frames are kept and a later member is read on.
        if want_crc != crc & 0xFFFFFFFF:
            self._fault("corrupt-compression", "gzip CRC mismatch: the decompressed data may be damaged")
        elif want_size != size & 0xFFFFFFFF:
            self._fault("corrupt-compression", "gzip length mismatch: the decompressed data may be damaged")
        return True


class _Switch:
    """Holds the GIL switch interval at AHEAD_SWITCH while any worker runs; restores it after the last."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._saved = 0.0

    def __enter__(self) -> None:
        with self._lock:
            if self._users == 0:
                self._saved = sys.getswitchinterval()
                sys.setswitchinterval(min(self._saved, AHEAD_SWITCH))
            self._users += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0:
                sys.setswitchinterval(self._saved)


_SWITCH = _Switch()


class _Queue:
    """The items between the worker and the reader, and the worker's stop flag.

    From a pipe the worker hands over what each raw read gave; while the reader is busy these
    pile up in one item (a list of parts, joined once) rather than one hand-over each.
    """

    def __init__(self, item: int, depth: int = AHEAD_DEPTH) -> None:
        self.item = item  # bytes per hand-over (a pipe: what one raw read gave)
        self._depth = depth  # items kept ready
        self._items: deque[list[bytes]] = deque()
        self._last = 0  # bytes in the last item
        self._cond = threading.Condition()
        self._stop = False
        self._done = False  # the worker handed over its last item

    def hand_over(self, data: bytes) -> bool:
        """Queue `data` (b"": the end), waiting while `depth` items are unread; False: stop working."""
        with self._cond:
            if data and self._items and self._last + len(data) <= AHEAD_ITEM:
                self._items[-1].append(data)  # the reader has not taken the last item yet: add to it
                self._last += len(data)
                return True
            while len(self._items) >= self._depth and not self._stop:
                self._cond.wait()
            if self._stop:
                return False
            if data:
                self._items.append([data])
                self._last = len(data)
            else:
                self._done = True
            self._cond.notify_all()
            return bool(data)

    def take(self, n: int) -> bytes:
        """At least `n` bytes unless the stream ends first (a pipe: what is ready); b"" at the end."""
        parts: list[bytes] = []
        have = 0
        with self._cond:
            while True:
                while not self._items and not self._done:
                    self._cond.wait()
                while self._items:
                    for data in self._items.popleft():
                        parts.append(data)
                        have += len(data)
                self._cond.notify_all()
                if have >= n or self._done or self.item < FILE_CHUNK:
                    break
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def take_item(self) -> bytes:
        """The next item whole (the forked child sends each as one message); b"" at the end."""
        with self._cond:
            while not self._items and not self._done:
                self._cond.wait()
            parts = self._items.popleft() if self._items else [b""]
            self._cond.notify_all()
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def halt(self) -> None:
        with self._cond:
            self._stop = True
            self._items.clear()
            self._cond.notify_all()


def _work(inflater: _Inflater, queue: _Queue, fast: FastReader | None) -> None:
    """The worker (a thread, or a forked child): decompress and hand over until the end or a halt."""
    with _SWITCH:
        try:
            if fast is not None and _work_fast(fast, inflater, queue):
                return
            while queue.hand_over(inflater.read(queue.item)):  # damage stays on the inflater, for Source.read
                pass
        except Exception as exc:  # not expected (MemoryError, a decompressor's bug): end the stream with a warning
            inflater._fault("read-error", f"decompression failed: {_why(exc)}")
            queue.hand_over(b"")  # the reader must not wait for an item that never comes


def _work_fast(fast: FastReader, inflater: _Inflater, queue: _Queue) -> bool:
    """Hand over what the faster reader gives; True when it read the whole file soundly (or was halted).

    When it fails, or stops before the file's end, the standard library's decompressor reads the
    file from its start, dropping what was handed out: damage costs what it costs there.
    """
    done = 0
    try:
        with fast[0]() as reader:
            while True:
                data = reader.read(queue.item)
                if not data:
                    if not _read_to_the_end(reader, fast[1], done):
                        break  # it stopped at bytes that are no stream: the standard library names them
                    queue.hand_over(b"")
                    return True
                if not queue.hand_over(data):
                    return True
                done += len(data)
    except Exception:  # whatever it raises (its own errors are RuntimeError and ValueError): read again
        pass
    inflater.skip = done
    return False


def _read_to_the_end(reader: Any, size: int, out: int) -> bool:
    """indexed_bzip2 read the whole file: its last block (or end marker) lies in the last 88 bits.

    It stops quietly at bytes after a stream that start no other; its block table tells where it
    stopped (tell_compressed() says 0 when it decodes in parallel).
    """
    offsets = reader.block_offsets()
    end = max(offsets, default=0)
    return 0 <= size * 8 - end < 8 * BZ2_TAIL and offsets.get(end) == out


class _ReadAhead:
    """Runs an _Inflater's reads on a worker thread and hands its output over in big items.

    zlib, bz2 and lzma release the GIL while they work, so the decompression runs beside the
    analysis on a second core. The bytes and the damage are the inflater's own: only who calls it
    changes. Only the worker touches the inflater and the raw stream until it has stopped. The
    worker holds the queue, not this object: a capture dropped unclosed halts its worker.
    """

    def __init__(
        self, inflater: _Inflater, item: int, fast: FastReader | None = None, depth: int = AHEAD_DEPTH
    ) -> None:
        self._queue = queue = _Queue(item, depth)
        self.read = queue.take
        self.take_item = queue.take_item
        args = (inflater, queue, fast)
        self._thread = threading.Thread(target=_work, args=args, name="wsadiag-inflate", daemon=True)
        weakref.finalize(self, queue.halt)
        self._thread.start()

    def stop(self, wait: float | None) -> bool:
        """Stop the worker (the reader may stop early); True once it has stopped (within `wait` s)."""
        self._queue.halt()
        self._thread.join(wait)
        return not self._thread.is_alive()


def _child(
    inflater: _Inflater,
    data: int,
    parents_data: IO[bytes],
    send: Connection,
    recv: Connection,
    fast: FastReader | None,
) -> None:
    """The forked child: the worker thread's loop (here beside a writer), its bytes written on the
    `data` pipe as they are, then how the stream ended as one message on `send`.

    A pipe holds less than an item, so a worker that wrote its items itself would wait for the parent
    to take each one before it decompressed the next; with the queue between them it keeps FORK_DEPTH
    items ahead (measured on xz: the child waited 0.17 s of 0.72 s for the parent without it).
    """
    import signal  # the fork's alone (its enums cost a plain capture's start-up): the parent imported it

    # Ctrl-C reaches the whole process group; the parent handles it and stops this child. SIGINT
    # was blocked over the fork, so no KeyboardInterrupt can come before this line.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    # Nothing from here reaches the terminal: what goes wrong comes to the parent, which warns.
    # A library's own line (indexed_bzip2 prints one on garbage between streams) would be a stray.
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 2)
    os.close(quiet)
    gc.disable()  # the parent's objects are never freed here: scanning them would only copy their pages
    # Every decompressed step is a fresh megabyte-sized buffer, freed once sent: glibc keeps their
    # pages for the next rather than map and fault them in anew (a 200k-packet .gz: 9.7k -> 3.5k
    # page faults in this child). This process is wsadiag's own, whoever called the parent.
    heap.enable()
    heap.keep_freed_buffers(heap.LARGE_READ)
    recv.close()  # the parent's ends: once the parent closes them, a write here fails and the child ends
    parents_data.close()
    ahead = _ReadAhead(inflater, AHEAD_ITEM, fast, FORK_DEPTH)
    try:
        while item := ahead.take_item():
            _write_all(data, item)
        os.close(data)  # the end (the parent reads b""), then the damage: the inflater is settled
        send.send((inflater.damage_code, inflater.damage))
    except BaseException:  # the parent closed its end (it stopped reading); nothing is printed from here
        ahead.stop(0)


def _write_all(fd: int, item: bytes) -> None:
    """Write all of `item` to a pipe (a signal can cut a write short)."""
    view = memoryview(item)
    while view:
        view = view[os.write(fd, view) :]


class _ForkAhead:
    """Runs `_work` in a forked child and reads its bytes from a pipe; a drop-in for _ReadAhead.

    The bytes and the damage are the inflater's own, as on the thread: the child sends the
    damage once it has closed the bytes' pipe, and it is set on the parent's copy of the inflater
    before the reader sees b"". A child that ends without its last message (killed) ends the
    stream with a read-error warning; the bytes it wrote before are read.
    """

    def __init__(self, inflater: _Inflater, fast: FastReader | None) -> None:
        import multiprocessing  # here, not at import: a plain capture never forks
        import signal

        context = multiprocessing.get_context("fork")
        recv, send = context.Pipe(duplex=False)
        out, into = os.pipe()
        # buffering=0: each read is one read(2) into a bytes object of its own (FileIO.read)
        self._data = open(out, "rb", buffering=0)  # noqa: SIM115 (closed by stop or the finalizer)
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})  # until the child ignores it
        try:
            _widen(into)
            args = (inflater, into, self._data, send, recv, fast)
            process = context.Process(target=_child, args=args, name="wsadiag-inflate", daemon=True)
            process.start()
        except BaseException:
            recv.close()
            self._data.close()
            raise
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            send.close()  # the child's copies are the only writers: their ends are the stream's end
            os.close(into)
        self._inflater = inflater
        self._recv = recv
        self._process = process
        self.pid = process.pid  # the child's process id (tests kill it)
        self._done = False
        # a capture dropped unclosed stops its child
        weakref.finalize(self, _end_child, process, recv, self._data)

    def read(self, n: int) -> bytes:
        """What one read of the pipe gives, up to max(n, FORK_PIPE) bytes and maybe fewer than `n`
        (Source.read_at_least asks again); b"" at the end, the damage set on the inflater."""
        if self._done:
            return b""
        try:
            data = self._data.read(max(n, FORK_PIPE))
            if data:
                return data
            code, message = self._recv.recv()  # the bytes have ended: how the stream did
        except (EOFError, OSError) as exc:  # the child ended without its last message
            self._done = True
            self._inflater._fault("read-error", f"decompression failed: {self._ended(exc)}")
            return b""
        except BaseException:  # Ctrl-C: the child is stopped with the stream (Source.close)
            self._done = True
            self._inflater._fault("read-error", "decompression failed: interrupted")
            raise
        self._done = True
        if code:
            self._inflater._fault(code, message)
        return b""

    def _ended(self, exc: BaseException) -> str:
        """How the child ended, for the warning."""
        self._process.join(FORK_WAIT)
        code = self._process.exitcode
        if code is not None and code < 0:
            import signal

            try:
                return f"the decompressing process was killed ({signal.Signals(-code).name})"
            except ValueError:
                return f"the decompressing process was killed (signal {-code})"
        if code:
            return f"the decompressing process ended with status {code}"
        return f"the decompressing process stopped sending ({_why(exc)})"

    def stop(self, wait: float | None) -> bool:
        """Stop the child (the reader may stop early) and reap it; True once it has ended."""
        return _end_child(self._process, self._recv, self._data)


def _end_child(process: BaseProcess, recv: Connection, data: IO[bytes]) -> bool:
    """Close the parent's ends, stop the child (SIGTERM, then SIGKILL) and reap it; True once it has ended."""
    recv.close()
    data.close()
    try:
        process.join(0 if process.exitcode is None else None)
        if process.exitcode is None:
            process.terminate()
            process.join(FORK_WAIT)
        if process.exitcode is None:
            process.kill()
            process.join()
        process.close()
    except ValueError:  # closed already (stop, then the finalizer)
        pass
    return True


def _widen(fd: int) -> None:
    """Ask for a FORK_PIPE pipe buffer; the default (64 KiB) where the system refuses."""
    try:
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, FORK_PIPE)
    except (ImportError, AttributeError, OSError):
        pass


def _can_fork() -> bool:
    """Whether decompression may go to a forked child: Linux, fork available, one thread in the process.

    Python's threads are counted, and the kernel's (a library's native threads hold locks too).
    """
    if not FORK or threading.active_count() != 1:
        return False
    try:
        import multiprocessing

        return "fork" in multiprocessing.get_all_start_methods() and len(os.listdir("/proc/self/task")) == 1
    except (ImportError, OSError):
        return False


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
        self._inflater: _Inflater | None = None  # once the first bytes say the stream is compressed
        self._ahead: _ReadAhead | _ForkAhead | None = None  # the inflater's worker thread or child
        self._prefix = b""  # the first bytes read by begin(), for first() when they are not compressed
        regular = _is_regular(fobj)
        self.chunk = FILE_CHUNK if regular else PIPE_CHUNK
        if regular or not hasattr(fobj, "read1"):
            # FileIO.read on a pipe already returns what has arrived
            self._raw_read: Callable[[int], bytes] = fobj.read
        else:
            self._raw_read = fobj.read1
        self._regular = regular
        self._read = self._raw_read
        # A file this process opened can be read again in place (refill); not on systems without pread.
        self._positional = regular and owned and hasattr(os, "pread")

    def begin(self) -> None:
        """Read the first bytes and, when they say the stream is compressed, start decompressing it ahead.

        Returns without waiting for decompressed bytes: a capture opened early (reader.OpenedEarly)
        has its child at work while this process goes on with other things until first().
        """
        try:
            self._prefix = self.read_at_least(self._raw_read, 8)
        except (OSError, ValueError) as exc:
            raise CaptureError(f"{self.path}: cannot read: {_why(exc)}") from None
        for magic, name, factory in COMPRESSIONS:
            if self._prefix.startswith(magic):
                self.compression = name
                inflater = _Inflater(name, magic, factory, self._raw_read, self.chunk)
                inflater._in, self._prefix = self._prefix, b""
                # a regular file can be read again after a fault: it may take the big steps and a faster decompressor
                inflater.ahead(self._fobj if self._regular else None, _fast(name))
                self._inflater = inflater
                by_name = self._regular and self._owned  # a path the faster reader can open itself
                fast = _fast_reader(name, self.path, self._fobj) if by_name else None
                self._ahead = self._read_ahead(inflater, fast)
                self._read = self._ahead.read
                return

    def first(self) -> bytes:
        """The first content bytes, after begin(): at least 8 unless the content is shorter.

        The caller reads on with `read_at_least` for the rest of its header, so a pipe is never
        waited on for more.
        """
        if self._inflater is None:
            return self._prefix
        first = self.read_at_least(self._read, 8)
        if not first and self._inflater.damage:
            raise CaptureError(f"{self.path}: {self._inflater.damage}; nothing decompressed")
        return first

    def _read_ahead(self, inflater: _Inflater, fast: FastReader | None) -> _ReadAhead | _ForkAhead:
        """The inflater's worker: a forked child for a file opened by path where that is safe, else a thread.

        A caller's file object stays on the thread even when it is a regular file: the child would
        move the offset it shares with the caller's object behind that object's back.
        """
        if self._regular and self._owned and _can_fork():
            try:
                return _ForkAhead(inflater, fast)
            except (OSError, ValueError, AssertionError):
                # fork refused (no memory, too many processes); AssertionError: this process is a
                # daemonic multiprocessing child, which may not start children
                pass
        return _ReadAhead(inflater, AHEAD_ITEM if self._regular else self.chunk, fast)

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

    def refill(self, buf: bytes, pos: int, need: int = 1) -> bytes:
        """The unread end of what was handed out, buf[pos:], followed by more: at least `need` bytes
        more unless the stream ends first; b"" when nothing more comes (at the end, or after an
        error, reported).

        A walk refills its buffer this way a megabyte at a time. From a plain file this process
        opened, the unread end is read again with the new bytes (os.pread), so the next buffer
        is made in one copy; read and then joined, each byte of the capture was copied twice.
        """
        if self._positional and self._inflater is None and not self.failed:
            return self._read_again(len(buf) - pos, max(need, self.chunk))
        data = self.top_up(b"", need)
        return buf[pos:] + data if data else b""

    def _read_again(self, keep: int, n: int) -> bytes:
        """The last `keep` bytes handed out and up to `n` after them, read in place; b"" if none follow."""
        try:
            at = self._fobj.tell()
            data = os.pread(self._fobj.fileno(), keep + n, at - keep)
            if len(data) <= keep:
                return b""
            self._fobj.seek(at + len(data) - keep)
        except (OSError, ValueError) as exc:
            self.failed = True
            self.warn("read-error", f"read failed: {_why(exc)}")
            return b""
        return data

    def read(self, n: int) -> bytes:
        """Some bytes: about a chunk, or `n` if more is asked (from a pipe or a decompressing child,
        what has arrived; read_at_least asks again until it has what it needs), or b"" at the end
        or after an error."""
        if self.failed:
            return b""
        if self._inflater is not None:
            data = self._read(max(n, self.chunk))  # never raises: damage is kept for here
            if not data and self._inflater.damage:
                self.failed = True
                self.warn(self._inflater.damage_code, self._inflater.damage)
            return data
        try:
            data = self._read(max(n, self.chunk))
            # A file object of the caller's may hand out bytearray or memoryview: the walks take bytes.
            return data if type(data) is bytes else bytes(data)
        except (OSError, ValueError) as exc:
            self.failed = True
            self.warn("read-error", f"read failed: {_why(exc)}")
        return b""

    def close(self) -> None:
        # The worker is stopped before its stream is closed. A regular file's read returns at
        # once; a pipe may keep it waiting for its writer, and then the pipe is left open to it.
        if self._ahead is not None:
            stopped = self._ahead.stop(None if self._regular else PIPE_WAIT if self._owned else 0)
            if not stopped and self._owned:
                return
        try:
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
