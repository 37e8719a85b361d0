"""Settings kept with the captures, like ruff's: `[tool.wsadiag]` in pyproject.toml or a wsadiag.toml.

    # wsadiag.toml (or [tool.wsadiag] in pyproject.toml)
    select = ["CON", "RST"]
    ignore = ["RST010"]
    fail-on = "error"
    baseline = "known-findings.json"   # relative to this file
    rules = ["site-rules"]             # folders of extra rule files, relative to this file
    tz = "Europe/Berlin"

The file is looked for next to the first capture, then in each parent folder (for standard
input: from the working folder up); the first wsadiag.toml, or pyproject.toml holding a
[tool.wsadiag] table, wins. Command-line options win over the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analyzer.errors import UsageError
from analyzer.report.common import FAIL_ON

KEYS = ("select", "ignore", "fail-on", "baseline", "rules", "tz")  # what a configuration may set


@dataclass(frozen=True, slots=True)
class Config:
    """The settings read from a configuration file (empty when there is none)."""

    path: str = ""  # the file they came from
    select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    fail_on: str = ""
    baseline: str = ""  # absolute, or relative to the working folder
    rules: tuple[str, ...] = field(default=())
    tz: str = ""


def find_config(captures: list[str]) -> Path | None:
    """The configuration file that applies to these captures, or None."""
    first = next((c for c in captures if c != "-"), None)
    start = Path(first).resolve().parent if first else Path.cwd()
    if first and Path(first).is_dir():
        start = Path(first).resolve()
    for folder in (start, *start.parents):
        own = folder / "wsadiag.toml"
        if own.is_file():
            return own
        project = folder / "pyproject.toml"
        if project.is_file() and "wsadiag" in _read(project).get("tool", {}):
            return project
    return None


def _read(path: Path) -> dict[str, Any]:
    import tomllib  # only when there is a configuration file to read

    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None


def _strings(path: Path, key: str, value: Any, split: bool = True) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"{path}: `{key}` must be a list of strings")
    if not split:
        return tuple(value)
    return tuple(code.strip() for v in value for code in v.split(",") if code.strip())


def load_config(path: Path) -> Config:
    """The settings in one file (`[tool.wsadiag]` of a pyproject.toml, the whole of a wsadiag.toml)."""
    data = _read(path)
    table = data.get("tool", {}).get("wsadiag", {}) if path.name == "pyproject.toml" else data
    if not isinstance(table, dict):
        raise UsageError(f"{path}: [tool.wsadiag] must be a table")
    unknown = sorted(set(table) - set(KEYS))
    if unknown:
        raise UsageError(f"{path}: unknown setting {unknown[0]!r}", hint=f"settings: {', '.join(KEYS)}")
    base = path.parent
    fail_on = table.get("fail-on", "")
    if fail_on and fail_on not in FAIL_ON:
        raise UsageError(f"{path}: fail-on must be one of {', '.join(FAIL_ON)}")
    for key in ("baseline", "tz"):
        if key in table and not isinstance(table[key], str):
            raise UsageError(f"{path}: `{key}` must be a string")
    return Config(
        path=str(path),
        select=_strings(path, "select", table.get("select", [])),
        ignore=_strings(path, "ignore", table.get("ignore", [])),
        fail_on=fail_on,
        baseline=str(base / table["baseline"]) if table.get("baseline") else "",
        rules=tuple(str(base / r) for r in _strings(path, "rules", table.get("rules", []), split=False)),
        tz=table.get("tz", ""),
    )
