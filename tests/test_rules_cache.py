"""The parsed built-in rules kept between runs (analyzer/rules/cache.py) are the rules as parsed."""

from __future__ import annotations

from pathlib import Path

import pytest

from analyzer.rules import cache
from analyzer.rules.loader import _builtin_files
from analyzer.rules.source import parse


@pytest.fixture
def files() -> list[tuple[str, str]]:
    return sorted(_builtin_files())


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("WSADIAG_NO_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path / "wsadiag"


def _entries(folder: Path) -> list[Path]:
    return sorted(folder.glob("rules-*.marshal"))


def test_cached_rules_are_the_parsed_rules(files, home):
    fresh = [parse(text, name) for name, text in files]
    first = cache.parsed(files, parse)  # parses and stores
    assert len(_entries(home)) == 1

    def no_parse(text: str, name: str):
        raise AssertionError(f"{name} parsed again although the cache holds it")

    second = cache.parsed(files, no_parse)
    for a, b, c in zip(fresh, first, second):
        assert (a.path, a.data, a.lines) == (b.path, b.data, b.lines) == (c.path, c.data, c.lines)


def test_an_edited_rule_is_parsed_again_and_the_old_entry_dropped(files, home):
    cache.parsed(files, parse)
    old = _entries(home)
    name, text = files[0]
    edited = [(name, text.replace("name:", "name:  ", 1)), *files[1:]]
    calls = []

    def counting(text: str, name: str):
        calls.append(name)
        return parse(text, name)

    cache.parsed(edited, counting)
    assert len(calls) == len(files)
    assert len(_entries(home)) == 1 and _entries(home) != old


@pytest.mark.parametrize("damage", [lambda b: b[:-10], lambda b: b[:40] + b"x" + b[41:], lambda b: b""])
def test_a_damaged_entry_is_ignored_and_rebuilt(files, home, damage):
    cache.parsed(files, parse)
    (entry,) = _entries(home)
    entry.write_bytes(damage(entry.read_bytes()))
    again = cache.parsed(files, parse)
    assert [s.data for s in again] == [parse(t, n).data for n, t in files]
    assert cache._load(entry, files) is not None  # rewritten whole


def test_an_unwritable_cache_only_costs_the_parse(files, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.delenv("WSADIAG_NO_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # wsadiag/ cannot be made under a file
    assert [s.data for s in cache.parsed(files, parse)] == [parse(t, n).data for n, t in files]


def test_no_cache_when_turned_off(files, home, monkeypatch):
    monkeypatch.setenv("WSADIAG_NO_CACHE", "1")
    cache.parsed(files, parse)
    assert not home.exists()


def test_a_start_up_with_the_cache_filled_imports_no_yaml_parser(home, tmp_path):
    """The precedence list comes from the cache as well: an analysis then needs no YAML at all."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    sample = repo / "samples" / "con001-refused.pcap"
    script = (
        "import sys\n"
        "from analyzer.cli import main\n"
        f"code = main(['analyze', '--format', 'json', '--no-progress', '--fail-on', 'never', {str(sample)!r}])\n"
        "print('yaml' in sys.modules, code, file=sys.stderr)\n"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(repo), "XDG_CACHE_HOME": str(tmp_path)}
    runs = [subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True) for _ in range(2)]
    assert [r.stderr.split()[-2:] for r in runs] == [["True", "0"], ["False", "0"]]  # parsed, then from the cache
    assert runs[0].stdout == runs[1].stdout and '"CON001"' in runs[0].stdout
