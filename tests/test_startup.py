"""What a start-up imports: a command loads the modules it uses, and those only some inputs,
formats or options need are imported when they are used.

How long a start-up takes is measured in bench/ (bench/README.md); these tests hold the
guarantee behind the figures, and that each module left out at start-up still comes in on the
paths that need it.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from analyzer.cli import main

REPO = Path(__file__).resolve().parents[1]
PCAP = REPO / "samples" / "gen004-syn-at-capture-end.pcap"  # one finding (GEN004), as a small run has

# Imported only where used: --debug (traceback), two captures (peer.model, peer.words), pktmon drops (windrops),
# pcapng input, JSON lines and rule files outside the package (json, jsonschema); `socket`
# builds its enums at import, and the flow table needs only its C core; the built-in rule files
# are found by path (importlib.resources only for an install inside a zip); a process pool, Dask
# or a split (scale); a compressed capture's forked child (signal, which also builds enums).
LAZY = (
    "traceback",
    "socket",
    "json",
    "jsonschema",
    "analyzer.peer.model",
    "analyzer.peer.words",
    "analyzer.windrops",
    "analyzer.capture.pcapng",
    "importlib.resources",
    "analyzer.scale",
    "signal",
)
# Imported only to write a file (a report with -o, the rules cache entry of a first run).
WRITING = ("tempfile",)


# The interpreter without site's .pth hooks (-S): some machines' hooks import modules a start-up
# must not (certifi's imports importlib.resources), which would hide them from these tests; the
# dependencies come from site-packages named on the path.
_BARE = [sys.executable, "-S"]


def _env(tmp_path: Path) -> dict[str, str]:
    paths = [str(REPO), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    return {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths)),
        "XDG_CACHE_HOME": str(tmp_path),
    }


def _imported(tmp_path: Path, lazy: tuple[str, ...], *statements: str) -> list[str]:
    """The `lazy` modules a fresh interpreter imports running `statements` (not those it started with)."""
    script = "\n".join(
        [
            "import sys",
            "before = set(sys.modules)",  # what the interpreter's own start-up (site, .pth hooks) brought
            *statements,
            f"print(' '.join(m for m in {lazy!r} if m in sys.modules and m not in before))",
        ]
    )
    run = subprocess.run(_BARE + ["-c", script], env=_env(tmp_path), capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    return run.stdout.splitlines()[-1].split()


def test_importing_the_cli_imports_none_of_the_modules_only_some_commands_need(tmp_path):
    assert _imported(tmp_path, LAZY + WRITING, "import analyzer.cli") == []


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_analyzing_a_pcap_imports_none_of_them_either(tmp_path, fmt):
    run = (
        "from analyzer.cli import main",
        "import io, contextlib",
        "out = io.StringIO()",
        "with contextlib.redirect_stdout(out):",
        f"    code = main(['analyze', '--format', {fmt!r}, '--no-progress', '--fail-on', 'never', {str(PCAP)!r}])",
        "assert code == 0 and 'GEN004' in out.getvalue(), out.getvalue()",
    )
    # orjson, the JSON report's writer, may import json itself
    lazy = tuple(m for m in LAZY if m != "json") if fmt == "json" else LAZY
    # twice: the first run parses the rule files into the cache (and writes it), the second starts from it
    assert _imported(tmp_path, lazy, *run) == []
    assert _imported(tmp_path, lazy + WRITING, *run) == []


def test_debug_still_shows_the_traceback(tmp_path, capsys):
    """traceback is imported only when --debug asks for one: the error line, then the traceback."""
    missing = tmp_path / "no-such-folder"
    assert main(["--debug", "analyze", "--no-progress", "--rules", str(missing), str(PCAP)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --rules {missing}: not a directory\n")
    assert "Traceback (most recent call last):" in err and err.rstrip().endswith("not a directory")


def test_without_debug_the_error_comes_alone(tmp_path, capsys):
    missing = tmp_path / "no-such-folder"
    assert main(["analyze", "--no-progress", "--rules", str(missing), str(PCAP)]) == 2
    assert capsys.readouterr().err == f"error: --rules {missing}: not a directory\n"


def test_a_start_up_compiles_no_string_annotations(tmp_path):
    """typing.NamedTuple compiles each annotation given as a string (a ForwardRef) when its class
    is made: with `from __future__ import annotations` in a module of NamedTuples, that is dozens
    of compiles on every start-up. The modules that define them keep their annotations evaluated;
    only a field naming its own class (not defined yet) stays a string."""
    script = "\n".join(
        [
            "import sys, typing",
            "made = []",
            "init = typing.ForwardRef.__init__",
            "def counted(self, arg, *a, **k):",
            "    f = sys._getframe(1)",
            "    while f is not None and f.f_code.co_filename.endswith('typing.py'):",
            "        f = f.f_back",
            "    if f is not None and '/analyzer/' in f.f_code.co_filename:",
            "        made.append((f.f_code.co_filename, f.f_lineno, arg))",
            "    init(self, arg, *a, **k)",
            "typing.ForwardRef.__init__ = counted",
            "from analyzer.cli import main",
            "import io, contextlib",
            "with contextlib.redirect_stdout(io.StringIO()):",
            f"    main(['analyze', '--format', 'json', '--no-progress', '--fail-on', 'never', {str(PCAP)!r}])",
            "print(made)",
        ]
    )
    run = subprocess.run(_BARE + ["-c", script], env=_env(tmp_path), capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    made = ast.literal_eval(run.stdout.splitlines()[-1])
    for filename, line, text in made:  # the line of the class statement being run
        statement = Path(filename).read_text().splitlines()[line - 1]
        name = statement.removeprefix("class ").split("(")[0]
        assert statement.startswith("class ") and name in text.split(" | "), (filename, line, text)
