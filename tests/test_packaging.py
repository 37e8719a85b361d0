"""What `pip install .` gives a user: the README's first command installs a wheel, not the checkout.

The other tests import the package from the source tree (an editable install), where every module
is found whether the packaging lists it or not. Here a wheel is built from the tracked files (pure
Python, so it takes seconds), installed into a folder of its own, and run from there in an
interpreter that sees neither the checkout nor its editable install.
"""

from __future__ import annotations

import fnmatch
import os
import re
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the built wheel, the folder it is installed in)."""
    import importlib.util

    if not importlib.util.find_spec("setuptools"):
        pytest.skip("setuptools is not installed")
    if not (importlib.util.find_spec("wheel") or importlib.util.find_spec("setuptools.command.bdist_wheel")):
        pytest.skip("building a wheel needs the wheel package with this setuptools (the test extra installs it)")
    work = tmp_path_factory.mktemp("packaging")
    src = work / "src"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=False)
    if tracked.returncode != 0:
        pytest.skip("not a git checkout: the tracked files are what a wheel is built from")
    for name in tracked.stdout.decode().split("\0"):
        if not name or not (REPO / name).is_file():
            continue
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes((REPO / name).read_bytes())
    env = {**os.environ, "WSADIAG_PURE_PYTHON": "1"}
    wheels = work / "wheels"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(src)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = wheels.glob("wsadiag-*.whl")
    target = work / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(target)
    return wheel, target


def _run_installed(target: Path, *argv: str, cwd: Path) -> subprocess.CompletedProcess:
    """`wsadiag ARGV` from the installed folder; -S keeps out the .pth files (the editable install's
    finder among them), the dependencies come from site-packages named after the wheel's folder."""
    paths = [str(target), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["XDG_CACHE_HOME"] = str(cwd / "cache")
    return subprocess.run(
        [sys.executable, "-S", "-m", "analyzer", *argv], capture_output=True, text=True, env=env, cwd=cwd, check=False
    )


def test_the_wheel_holds_every_package_of_the_source(installed: tuple[Path, Path]) -> None:
    wheel, _ = installed
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    inits = (REPO / "analyzer").rglob("__init__.py")
    source = sorted(p.parent.relative_to(REPO).as_posix() for p in inits if "__pycache__" not in p.parts)
    missing = [pkg for pkg in source if f"{pkg}/__init__.py" not in names]
    assert not missing, f"packages left out of the wheel: {missing}"
    rules = sorted(p.name for p in (REPO / "rules").glob("*.yaml"))
    shipped = sorted(Path(n).name for n in names if n.startswith("analyzer/_rules/") and n.endswith(".yaml"))
    assert shipped == rules


def test_the_wheel_ships_every_file_the_packaging_declares(installed: tuple[Path, Path]) -> None:
    """Each package-data pattern in pyproject.toml names files that are in the wheel: a pattern that
    matches nothing is a file the packaging means to ship and does not (py.typed, a template)."""
    import tomllib

    wheel, _ = installed
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    empty = [
        f"{package}: {pattern}"
        for package, patterns in setuptools["package-data"].items()
        for pattern in patterns
        if not any(fnmatch.fnmatch(n, f"{package.replace('.', '/')}/{pattern}") for n in names)
    ]
    assert not empty, f"package data declared in pyproject.toml and not in the wheel: {empty}"


def test_the_installed_wheel_runs_the_quick_start(installed: tuple[Path, Path], tmp_path: Path) -> None:
    """`wsadiag analyze samples/`, the README's first command, from the wheel."""
    import json

    _, target = installed
    out = tmp_path / "report.json"
    done = _run_installed(target, "analyze", str(REPO / "samples"), "--format", "json", "-o", str(out), cwd=tmp_path)
    assert done.returncode in (0, 1), done.stderr  # 1: findings at the failing severity, as it should
    assert "internal error" not in done.stderr
    report = json.loads(out.read_text())
    captures = sorted(p.name for p in (REPO / "samples").iterdir() if p.suffix in (".pcap", ".pcapng", ".etl"))
    assert sorted(Path(c["path"]).name for c in report["captures"]) == captures
    assert not [c["path"] for c in report["captures"] if c.get("error")]
    # the same report as the checkout's own modules give
    here = subprocess.run(
        [sys.executable, "-m", "analyzer", "analyze", str(REPO / "samples"), "--format", "json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache-here")},
        check=False,
    )
    assert here.returncode == done.returncode, here.stderr
    assert json.loads(here.stdout) == report


@pytest.mark.parametrize("fmt", ["html", "text", "markdown"])
def test_the_installed_wheel_writes_each_report(installed: tuple[Path, Path], tmp_path: Path, fmt: str) -> None:
    _, target = installed
    out = tmp_path / f"report.{fmt}"
    sample = REPO / "samples" / "gen001-reset-midstream.pcap"
    done = _run_installed(target, "analyze", str(sample), "--format", fmt, "-o", str(out), cwd=tmp_path)
    assert done.returncode in (0, 1), done.stderr
    assert "internal error" not in done.stderr
    assert "WSAECONNRESET" in out.read_text()


def test_a_rule_error_points_at_documentation_the_install_has(installed: tuple[Path, Path], tmp_path: Path) -> None:
    """A user's own rule with a misspelt mark (`--rules DIR`, run from the wheel): the error names
    file and line, and the hint sends the user to the rule language by a way an install has (the
    checkout's docs/ folder is not installed)."""
    _, target = installed
    rules = tmp_path / "site-rules"
    rules.mkdir()
    shipped = (REPO / "rules" / "RST003-stray-ack-after-fin.yaml").read_text(encoding="utf-8")
    own = shipped.replace("code: RST003", "code: SIT003").replace("name: stray-ack-after-fin", "name: site-stray-ack")
    assert "kind: duplicate-ack" in own
    (rules / "SIT003-site-stray-ack.yaml").write_text(own.replace("kind: duplicate-ack", "kind: dup-ack"))
    sample = REPO / "samples" / "rst003-stray-ack-after-fin.pcapng"
    done = _run_installed(target, "analyze", str(sample), "--rules", str(rules), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    error, hint = done.stderr.splitlines()
    assert error.startswith(f"error: {rules / 'SIT003-site-stray-ack.yaml'}:") and "'dup-ack'" in error
    assert hint.startswith("hint: ")
    command = re.search(r"`wsadiag ([^`]+)`", hint)
    assert command, f"the hint names nothing an installed wsadiag has: {hint}"
    shown = _run_installed(target, *command.group(1).split(), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "duplicate-ack" in shown.stdout  # the page lists the mark the user meant
