"""Where the shared corpus of third-party captures lives, and how tests skip without it."""

from __future__ import annotations

from pathlib import Path

import pytest

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"

needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"corpus not found at {CORPUS}")


def corpus_file(rel: str) -> Path:
    """A corpus capture, or skip the calling test when it is absent."""
    path = CORPUS / rel
    if not path.exists():
        pytest.skip(f"corpus file missing: {path}")
    return path
