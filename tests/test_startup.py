"""What a start-up imports: a command loads the modules it uses, and those only some inputs,
formats or options need are imported when they are used.

How long a start-up takes is measured in bench/ (bench/README.md); these tests hold the
guarantee behind the figures, and that each module left out at start-up still comes in on the
paths that need it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from analyzer.cli import main

REPO = Path(__file__).resolve().parents[1]
PCAP = REPO / "samples" / "gen004-syn-at-capture-end.pcap"  # one finding (GEN004), as a small run has

# Imported only where used: --debug (traceback), two captures (peer.model, peer.words), pktmon drops (windrops),
# pcapng input, JSON lines and rule files outside the package (json, jsonschema); `socket`
# builds its enums at import, and the flow table needs only its C core.
LAZY = (
    "traceback",
    "socket",
    "json",
    "jsonschema",
    "analyzer.peer.model",
    "analyzer.peer.words",
    "analyzer.windrops",
    "analyzer.capture.pcapng",
)


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
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "XDG_CACHE_HOME": str(tmp_path)}
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    return run.stdout.splitlines()[-1].split()


def test_importing_the_cli_imports_none_of_the_modules_only_some_commands_need(tmp_path):
    assert _imported(tmp_path, LAZY, "import analyzer.cli") == []


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
    # twice: the first run parses the rule files into the cache, the second starts from it
    assert _imported(tmp_path, lazy, *run) == []
    assert _imported(tmp_path, lazy, *run) == []


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
