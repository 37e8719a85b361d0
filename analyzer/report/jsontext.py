"""Indented JSON text, exactly as `json.dumps(obj, indent=2, ensure_ascii=False)` writes it, built faster.

The standard library writes indented JSON with its pure-Python encoder; only compact JSON goes
through its C encoder. Most of a report is small objects whose values are all scalars (timeline
packets, socket errors, counts): those are written by the C encoder with the line break and
indentation passed as its item separator, and only the structure around them is walked here.
tests/test_report_formats.py holds the output to json.dumps on generated documents.
"""

from __future__ import annotations

import json
from typing import Any

INDENT = "  "
_SCALAR = json.JSONEncoder(ensure_ascii=False)
_FLAT: dict[int, json.JSONEncoder] = {}  # by depth: item separator ",\n" + that depth's indentation


def dumps(obj: Any) -> str:
    """`json.dumps(obj, indent=2, ensure_ascii=False)`."""
    out: list[str] = []
    _write(obj, 0, out)
    return "".join(out)


def _flat(depth: int) -> json.JSONEncoder:
    enc = _FLAT.get(depth)
    if enc is None:
        enc = _FLAT[depth] = json.JSONEncoder(ensure_ascii=False, separators=(",\n" + INDENT * (depth + 1), ": "))
    return enc


def _key(k: Any) -> str:
    """A dict key as json writes it: strings as they are; numbers, booleans and None as their JSON text."""
    if isinstance(k, str):
        return _SCALAR.encode(k)
    if k is True or k is False or k is None or isinstance(k, (int, float)):
        return _SCALAR.encode(_SCALAR.encode(k))
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(k).__name__}")


def _write(obj: Any, depth: int, out: list[str]) -> None:
    if isinstance(obj, dict):
        if not obj:
            out.append("{}")
            return
        inner = "\n" + INDENT * (depth + 1)
        if not any(isinstance(v, (dict, list, tuple)) for v in obj.values()):
            text = _flat(depth).encode(obj)
            out.append("{" + inner + text[1:-1] + "\n" + INDENT * depth + "}")
            return
        sep = "{" + inner
        for k, v in obj.items():
            out.append(sep + _key(k) + ": ")
            _write(v, depth + 1, out)
            sep = "," + inner
        out.append("\n" + INDENT * depth + "}")
    elif isinstance(obj, (list, tuple)):
        if not obj:
            out.append("[]")
            return
        inner = "\n" + INDENT * (depth + 1)
        if not any(isinstance(v, (dict, list, tuple)) for v in obj):
            text = _flat(depth).encode(obj)
            out.append("[" + inner + text[1:-1] + "\n" + INDENT * depth + "]")
            return
        sep = "[" + inner
        for v in obj:
            out.append(sep)
            _write(v, depth + 1, out)
            sep = "," + inner
        out.append("\n" + INDENT * depth + "]")
    else:
        out.append(_SCALAR.encode(obj))
