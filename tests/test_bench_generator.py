"""The benchmark generator must give the same bytes for the same seed, and a readable capture."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import dpkt

GENERATE = Path(__file__).resolve().parents[1] / "bench" / "generate.py"


def _load():
    spec = importlib.util.spec_from_file_location("bench_generate", GENERATE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_same_seed_same_bytes_and_a_valid_capture(tmp_path):
    gen = _load()
    a, b, c = tmp_path / "a.pcap", tmp_path / "b.pcap", tmp_path / "c.pcap"
    assert gen.main([str(a), "--packets", "3000", "--seed", "7", "--quiet"]) == 0
    assert gen.main([str(b), "--packets", "3000", "--seed", "7", "--quiet"]) == 0
    assert gen.main([str(c), "--packets", "3000", "--seed", "8", "--quiet"]) == 0
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()

    with open(a, "rb") as f:
        records = list(dpkt.pcap.Reader(f))
    assert len(records) == 3000
    times = [ts for ts, _ in records]
    assert times == sorted(times)
    assert min(len(buf) for _, buf in records) >= 60  # short frames are padded to the Ethernet minimum
    flags = set()
    for _, buf in records:
        ip = dpkt.ethernet.Ethernet(buf).data
        if isinstance(ip.data, dpkt.tcp.TCP):
            flags.add(ip.data.flags & (dpkt.tcp.TH_SYN | dpkt.tcp.TH_RST | dpkt.tcp.TH_FIN))
    assert {dpkt.tcp.TH_SYN, dpkt.tcp.TH_FIN, dpkt.tcp.TH_RST} <= flags
