"""Refuse to test stale compiled modules.

`pip install -e .` compiles the packet-path modules (setup.py) and puts each .so beside its .py;
Python then imports the .so. A source edited after that build would go untested, so the run
stops and says how to rebuild.
"""

from __future__ import annotations

import importlib.machinery
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def pytest_sessionstart(session: pytest.Session) -> None:
    stale = []
    for source in sorted((ROOT / "analyzer").rglob("*.py")):
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            built = source.with_name(source.stem + suffix)
            if built.exists() and built.stat().st_mtime < source.stat().st_mtime:
                stale.append(str(source.relative_to(ROOT)))
    if stale:
        pytest.exit(f"compiled modules are older than their source ({', '.join(stale)}): "
                    "run `python3 -m pip install -e .` again (or delete the .so files to test the Python)",
                    returncode=4)



def pytest_configure(config: pytest.Config) -> None:
    """The rules cache of a test run lives in a folder of its own (removed at exit), not the user's.

    Set here, before collection: test modules load the rules while they are collected.
    """
    import atexit
    import os
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="wsadiag-test-cache-")
    os.environ["XDG_CACHE_HOME"] = folder
    atexit.register(shutil.rmtree, folder, True)
