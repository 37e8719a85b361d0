"""Captures made by the benchmark generator (bench/generate.py) for tests that need many packets."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

GENERATE = Path(__file__).resolve().parents[1] / "bench" / "generate.py"


def bench_capture(path: Path, packets: int) -> Path:
    """The generator's capture of `packets` packets at `path`: thousands of interleaved
    conversations, with findings (5k packets: 3.7 MB)."""
    spec = importlib.util.spec_from_file_location("bench_generate", GENERATE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    assert module.main([str(path), "--packets", str(packets), "--quiet"]) == 0
    return path
