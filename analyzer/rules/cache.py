"""The built-in rule files, parsed once and kept in the user's cache directory.

Parsing the 40-odd YAML files (with the line of every key, for error messages) is the largest
single cost of starting `wsadiag analyze` on a small capture. The parsed form is plain data
(dicts, lists, strings, numbers and tuples), so it is kept with `marshal`, which loads it about
thirty times faster than YAML parses it. The cache is keyed by checksums of every file's name and
text and of the Python version, so an edited rule or another interpreter never sees a stale
entry; a damaged or unreadable entry is ignored and rebuilt, and a cache that cannot be written
(read-only home, no home) only costs the parse. WSADIAG_NO_CACHE=1 turns it off.

The checksums are zlib's CRC-32 and Adler-32 (64 bits together, plus the length), not SHA-256:
they guard against edits and torn files, not against an attacker who can write the user's own
cache, and importing hashlib (OpenSSL) costs a few milliseconds of every start-up.
"""

from __future__ import annotations

import marshal
import os
import sys
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

from analyzer.rules.source import Source

# Bump when what is cached changes shape (a Source field added, the lines' keys changed).
FORMAT = b"wsadiag-rules-2"
_DIGEST = 8  # bytes of checksum in front of the payload: a torn or damaged file is never loaded


def cache_dir() -> Path | None:
    """$XDG_CACHE_HOME/wsadiag (or ~/.cache/wsadiag); None when caching is off or there is no home."""
    if os.environ.get("WSADIAG_NO_CACHE"):
        return None
    base = os.environ.get("XDG_CACHE_HOME") or ""
    if not base:
        home = os.path.expanduser("~")
        if home == "~":
            return None
        base = os.path.join(home, ".cache")
    return Path(base) / "wsadiag"


def _key(files: Sequence[tuple[str, str]]) -> str:
    data = b"\0".join(
        [FORMAT, sys.version.encode()]
        + [name.encode() + b"\0" + text.encode("utf-8", "surrogatepass") for name, text in files]
    )
    return f"{_digest(data).hex()}{len(data):x}"


def _digest(data: bytes) -> bytes:
    """CRC-32 and Adler-32 of data, 8 bytes."""
    return zlib.crc32(data).to_bytes(4, "big") + zlib.adler32(data).to_bytes(4, "big")


def _load(path: Path, files: Sequence[tuple[str, str]]) -> list[Source] | None:
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    payload = raw[_DIGEST:]
    if len(raw) <= _DIGEST or _digest(payload) != raw[:_DIGEST]:
        return None
    try:
        items = marshal.loads(payload)
    except (ValueError, EOFError, TypeError):
        return None
    if not isinstance(items, list) or len(items) != len(files):
        return None
    out = []
    for item, (name, _text) in zip(items, files):
        if not (isinstance(item, tuple) and len(item) == 3 and item[0] == name and isinstance(item[2], dict)):
            return None
        out.append(Source(name, item[1], item[2]))
    return out


def _store(folder: Path, path: Path, sources: Sequence[Source]) -> None:
    """Write the entry atomically (a reader never sees half a file) and drop older entries; failures are ignored."""
    import tempfile  # only when the entry is written, not on every start-up that reads it

    try:
        # ValueError: a value marshal cannot hold (YAML dates, say); such files are simply parsed
        payload = marshal.dumps([(s.path, s.data, s.lines) for s in sources])
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".rules-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(_digest(payload) + payload)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
        for old in folder.glob("rules-*.marshal"):
            if old != path:  # entries of rule files as they were before an edit or upgrade
                old.unlink(missing_ok=True)
    except (OSError, ValueError):
        pass  # a cache that cannot be written costs only the parse, next time too


def parsed(files: Sequence[tuple[str, str]], parse: Callable[[str, str], Source]) -> list[Source]:
    """`parse(text, name)` of every (name, text), from the cache when it holds exactly these files."""
    folder = cache_dir()
    if folder is None:
        return [parse(text, name) for name, text in files]
    path = folder / f"rules-{_key(files)}.marshal"
    cached = _load(path, files)
    if cached is not None:
        return cached
    sources = [parse(text, name) for name, text in files]
    _store(folder, path, sources)
    return sources
