"""Writing reports to files: nothing the user owns is truncated or overwritten by accident.

A report goes to a new file in the target's own folder, and is renamed over the target only
once it is complete (a rename within one file system is atomic), so a failed write leaves the
previous report as it was. On Linux the report is written into a file with no name
(O_TMPFILE), copied into a hidden one (`.wsadiag-*.tmp`) only once complete, and that is
renamed: a run killed outright while it writes (SIGKILL, the machine's memory killer) leaves
nothing behind. Where the file system has no unnamed files, the hidden file is written
directly; either is removed on any error Python sees. The same goes for the evidence files
(analyzer/evidence.py). The checks run before an analysis, so a bad `-o` fails in a second
rather than after an hour of reading.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, TextIO

from analyzer.errors import UsageError


def atomic_write_text(path: str | os.PathLike[str], text: str | Iterable[str]) -> None:
    """Write `text` (a string or its pieces) to `path` through a temporary file and a rename.

    Names that are not UTF-8 are written as the bytes they came from (surrogateescape); the text
    itself is UTF-8. Raises OSError; the target is untouched when it does.
    """
    with replacing(os.fspath(path)) as fh:
        if isinstance(text, str):
            fh.write(text)
        else:
            for piece in text:
                fh.write(piece)


@contextlib.contextmanager
def atomic_stream(path: str | None) -> Iterator[TextIO]:
    """A text stream for a report written piece by piece: standard output for None or "-", else a
    temporary file beside `path` renamed over it when the block ends without an exception."""
    if path in (None, "-"):
        yield sys.stdout
        return
    try:
        with replacing(path) as fh:
            yield fh
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


@contextlib.contextmanager
def replacing(path: str, binary: bool = False) -> Iterator[Any]:
    """A new file (text, UTF-8, or binary) that becomes `path` when the block ends without an
    exception; on any exception the target is as it was and nothing is left beside it."""
    fd, tmp = _new_file(os.path.dirname(path) or ".")
    try:
        if binary:
            fh: IO[Any] = os.fdopen(fd, "wb")
        else:
            fh = os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape", newline="")
        with fh:
            yield fh
            _put_in_place(fh, tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def _new_file(folder: str) -> tuple[int, str | None]:
    """A new file in `folder` for a report, open for writing, and its name: None while it has
    none (O_TMPFILE), else a hidden temporary name (mkstemp)."""
    unnamed = getattr(os, "O_TMPFILE", 0)  # Linux only
    if unnamed:
        try:
            return os.open(folder, unnamed | os.O_RDWR, 0o600), None
        except OSError:  # a file system without it (NFS, some FUSE mounts): a named temporary file
            pass
    return _named(folder)


def _named(folder: str) -> tuple[int, str]:
    import tempfile  # only when a report goes to a file: its imports (random) are a start-up's cost

    return tempfile.mkstemp(prefix=".wsadiag-", suffix=".tmp", dir=folder)


def _put_in_place(fh: IO[Any], tmp: str | None, target: str) -> None:
    """Make the written file `target`: synced, with the target's permissions, renamed over it.

    An unnamed file is first copied into a named one in the same folder (in the kernel: a few
    milliseconds even for a large report), since giving it a name (linkat through /proc) is not
    allowed everywhere. A temporary name made here is removed if this fails."""
    fh.flush()
    fd = fh.fileno()
    mode = _mode(target)
    if tmp is None:
        out, tmp = _named(os.path.dirname(target) or ".")
        try:
            size, done = os.fstat(fd).st_size, 0
            while done < size:
                done += os.sendfile(out, fd, done, size - done)
            os.fchmod(out, mode)
            os.fsync(out)
        except BaseException:
            _remove(tmp)
            raise
        finally:
            os.close(out)
    else:
        os.fchmod(fd, mode)
        os.fsync(fd)
    try:
        os.replace(tmp, target)
    except BaseException:
        _remove(tmp)
        raise


def _remove(tmp: str | None) -> None:
    """Remove a temporary file left by a failed write (an unnamed one goes with its descriptor)."""
    if tmp is not None:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _mode(target: str) -> int:
    """The old file's permission bits (a new file is made 0600), or the umask's default."""
    try:
        return os.stat(target).st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def check_output(path: str, option: str, inputs: Iterable[str]) -> None:
    """Refuse, before any reading, an output path that cannot be written or that names an input."""
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"{option} {path}: is a directory")
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise UsageError(f"{option} {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {path}: folder {folder} is not writable")
    if target.exists() and not target.is_file():
        raise UsageError(f"{option} {path}: exists and is not a regular file")
    for item in inputs:
        if item != "-" and _same_file(path, item):
            raise UsageError(
                f"{option} {path}: is {item!r}, one of the files being read; refusing to overwrite it",
                hint="name another file for the output",
            )


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): then it cannot be the other
        return False
