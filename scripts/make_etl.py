#!/usr/bin/env python3
"""Write small example ETL files (pktmon and netsh trace layouts) into a folder, for trying the reader.

    python scripts/make_etl.py OUTDIR

The tests build the same kinds of files in memory with scripts/samples_lib/etlwrite.py; the
samples' Windows refusal is made by scripts/make_samples.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scapy.layers.inet import IP, TCP  # noqa: E402
from scapy.layers.l2 import Ether  # noqa: E402

from analyzer.capture import etwfacts as W  # noqa: E402
from scripts.samples_lib.etlwrite import EtlWriter  # noqa: E402

T0 = 1_700_000_000.0


def _syn(sport: int) -> bytes:
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    return bytes(eth / IP(src="192.0.2.10", dst="192.0.2.20") / TCP(sport=sport, dport=1433, flags="S"))


def pktmon_drops() -> bytes:
    w = EtlWriter(T0)
    w.pktmon_component(3, W.MINIPORT, "netvsc.sys", "Microsoft Hyper-V Network Adapter")
    w.pktmon_component(66, 11, "tcpip.sys", "TCP/IPv4 - L3/L4")
    for i in range(3):
        w.pktmon_packet(T0 + i, _syn(50000 + i), group=i + 1, component=3)
        w.pktmon_drop(T0 + i + 1e-5, _syn(50000 + i), group=i + 1, component=66, reason=1204)
    return w.to_bytes(compress=True)


def netsh_fragments() -> bytes:
    w = EtlWriter(T0)
    for i in range(3):
        w.ndis_fragments(T0 + i, _syn(51000 + i) + b"x" * 100, ifindex=7, send=True, pieces=2)
    w.vmswitch_fragment(T0 + 4, _syn(52000), ifindex=9, vlan=42, send=False)
    return w.to_bytes()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    for name, make in (("pktmon-drops.etl", pktmon_drops), ("netsh-fragments.etl", netsh_fragments)):
        path = out / name
        if path.exists():
            print(f"{path}: exists, not overwritten", file=sys.stderr)
            continue
        path.write_bytes(make())
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
