"""The glibc heap tuning for big reads (analyzer/capture/heap.py): the command's alone, harmless.

Each case runs in a fresh interpreter: the tuning is process-wide and happens once.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_resources import SERVER, record, tcp_frame, write_pcap

REPO = Path(__file__).resolve().parents[1]

PROBE = """
import json, sys
if {no_ctypes}:
    sys.modules["ctypes"] = None  # a Python built without _ctypes/libffi
from analyzer.capture import heap
from analyzer.pipeline import analyze_capture
if {enable}:
    heap.enable()
result = analyze_capture(sys.argv[1])
print(json.dumps({{"convs": result.conversation_count, "error": result.error,
                  "tuned": heap._done, "ctypes": sys.modules.get("ctypes") is not None}}))
"""


def run_probe(path: Path, enable: bool, no_ctypes: bool = False) -> dict:
    code = PROBE.format(enable=enable, no_ctypes=no_ctypes)
    out = subprocess.run([sys.executable, "-c", code, str(path)], cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> Path:
    """A 3 MiB capture: several megabyte refills."""
    path = tmp_path_factory.mktemp("heap") / "big.pcap"
    client = bytes([192, 0, 2, 7])
    recs = (
        record(i, tcp_frame(client, SERVER, 40000, 443, 1001 + 1400 * i, 1, 0x10, b"z" * 1400)) for i in range(2200)
    )
    return write_pcap(path, recs)


def test_a_library_caller_keeps_its_malloc_and_the_command_tunes_it_on_big_reads(big, tmp_path):
    assert big.stat().st_size > 3 << 20
    alone = run_probe(big, enable=False)
    tuned = run_probe(big, enable=True)
    assert not alone["tuned"] and not alone["ctypes"]
    assert tuned["tuned"] and tuned["ctypes"]
    assert alone["convs"] == tuned["convs"] == 1
    small = write_pcap(
        tmp_path / "small.pcap", iter([record(0, tcp_frame(bytes([192, 0, 2, 7]), SERVER, 1, 2, 0, 0, 2))])
    )
    assert run_probe(small, enable=True) == {"convs": 1, "error": None, "tuned": False, "ctypes": False}


def test_a_python_without_ctypes_still_analyses(big):
    assert run_probe(big, enable=True, no_ctypes=True) == run_probe(big, enable=False) | {"tuned": True}
