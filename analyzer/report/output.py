"""Writing reports to files: nothing the user owns is truncated or overwritten by accident.

A report goes to a temporary file in the target's own folder, and is renamed over the target
only once it is complete (a rename within one file system is atomic), so a failed write leaves
the previous report as it was, and the temporary file is removed. Evidence captures
(analyzer/evidence.py) are written the same way. The checks run before an analysis, so a bad
`-o` fails in a second rather than after an hour of reading.
"""

from __future__ import annotations

import contextlib
import functools
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
def replacing(path: str, binary: bool = False, sync: bool = True) -> Iterator[Any]:
    """A new file (text in UTF-8, or binary) beside `path` that becomes `path` when the block ends
    without an exception; on an exception the target is as it was and the new file is removed.

    sync: flushed to the disk before it replaces the target (a report replacing the last one);
    evidence captures, many small new files, skip it.
    """
    import tempfile  # only when a report goes to a file: its imports (random) are a start-up's cost

    fd, tmp = tempfile.mkstemp(prefix=".wsadiag-", suffix=".tmp", dir=os.path.dirname(path) or ".")
    try:
        if binary:
            fh: IO[Any] = os.fdopen(fd, "wb")
        else:
            fh = os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape", newline="")
        with fh:
            yield fh
            fh.flush()
            if sync:
                os.fsync(fh.fileno())
        # closed first: Windows renames no open file, and has os.fchmod only from Python 3.13
        _keep_mode(path, tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _keep_mode(target: str, tmp: str) -> None:
    """Give the new file the old one's permission bits (mkstemp makes it 0600), or the umask's default."""
    try:
        mode = os.stat(target).st_mode & 0o7777
    except OSError:
        mode = _new_file_mode()
    os.chmod(tmp, mode)


@functools.cache
def _new_file_mode() -> int:
    """What open() gives a new file under this process's umask; read once (reading the umask sets
    it, briefly, for the whole process), not for every evidence file."""
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
