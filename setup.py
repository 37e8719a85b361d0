"""Build hook: compile the per-packet modules with mypyc when it is available.

Everything else about the package is in pyproject.toml. The modules below are plain, fully
annotated Python; mypyc turns them into C extensions, which run the packet loop several times
faster. When mypyc or a C compiler is missing the build goes on and the same modules run as
Python (slower, same answers). Set WSADIAG_PURE_PYTHON=1 to skip compiling on purpose.
"""

import os

from setuptools import setup

COMPILED = [
    "analyzer/wire.py",
    "analyzer/sink.py",
    "analyzer/capture/pcap.py",
    "analyzer/capture/pcapng.py",
    "analyzer/decode/fast.py",
    "analyzer/flows/table.py",
    "analyzer/flows/streams.py",
    "analyzer/flows/shares.py",
    "analyzer/flows/sniff.py",
    "analyzer/flows/zeek.py",
    "analyzer/rules/engine.py",
    "analyzer/rules/language.py",
    "analyzer/pipeline.py",
]


def compiled_extensions() -> list:
    if os.environ.get("WSADIAG_PURE_PYTHON"):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("wsadiag: mypyc is not available; installing the pure-Python modules")
        return []
    extensions = mypycify(["--ignore-missing-imports", *COMPILED], opt_level="3", debug_level="0")
    for ext in extensions:
        ext.optional = True  # no C compiler: keep the pure-Python modules rather than fail
    return extensions


setup(ext_modules=compiled_extensions())
