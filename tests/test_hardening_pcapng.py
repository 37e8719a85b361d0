"""pcapng inputs that used to cost quadratic time, and the one packet-block decoding both paths share.

The interface-block bound is a resource limit, not a timing: the reading runs in a child process
under RLIMIT_CPU, set about 20 times above what linear work needs and well below what the
quadratic path took (100,000 interface blocks: 23 s of CPU before, 0.3 s after). The pipe case
spends its time in the kernel's copies, which that limit did not catch here: it is checked for
completeness at a size where the old growth took 7.1 s of CPU (0.4 s now; see the README).
"""

from __future__ import annotations

import io
import os
import resource
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from analyzer.capture import open_capture

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "rst003-stray-ack-after-fin.pcapng"


def block(btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    return struct.pack("<II", btype, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))


SHB = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))


def idb(linktype: int) -> bytes:
    return block(1, struct.pack("<HHI", linktype, 0, 0))


def epb(data: bytes, iface: int = 0, ts: int = 1_700_000_000_000_000) -> bytes:
    return block(6, struct.pack("<IIIII", iface, ts >> 32, ts & 0xFFFFFFFF, len(data), len(data)) + data)


def _limit_cpu(seconds: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds + 1))

    return apply


READ_STDIN = """
import sys
from analyzer.capture import open_capture
with open_capture(sys.stdin.buffer) as cap:
    n = total = 0
    for f in cap:
        n += 1
        total += len(f.data)
print(n, total, len(cap.linktypes), [w.code for w in cap.warnings])
"""


def read_in_child(producer: str, cpu_seconds: int) -> str:
    """Run a reader over a pipe fed by a separate writer process; the reader alone is CPU-limited."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    writer = subprocess.Popen([sys.executable, "-c", producer], stdout=subprocess.PIPE, env=env)
    try:
        done = subprocess.run(
            [sys.executable, "-c", READ_STDIN], stdin=writer.stdout, capture_output=True, env=env,
            preexec_fn=_limit_cpu(cpu_seconds), timeout=300,
        )
    finally:
        writer.stdout.close()
        writer.wait(timeout=60)
    assert done.returncode == 0, f"reader stopped (signal {-done.returncode} is SIGXCPU=24): {done.stderr[-300:]}"
    return done.stdout.decode().strip()


BUILDERS = """
import struct, sys
def block(btype, body):
    body += b"\\0" * (-len(body) % 4)
    return struct.pack("<II", btype, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))
out = sys.stdout.buffer
out.write(block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)))
"""


def test_a_hundred_thousand_interfaces_with_distinct_link_types_read_in_linear_time():
    producer = BUILDERS + """
for i in range(100_000):
    out.write(block(1, struct.pack("<HHI", i % 65536, 0, 0)))
"""
    assert read_in_child(producer, cpu_seconds=6) == "0 0 65536 []"


def test_large_blocks_through_a_pipe_are_read_whole():
    size = 16 * 1024 * 1024 - 64
    producer = BUILDERS + f"""
out.write(block(1, struct.pack("<HHI", 1, 0, 0)))
pkt = block(6, struct.pack("<IIIII", 0, 0, 1, {size}, {size}) + b"\\xab" * {size})
for _ in range(30):
    out.write(pkt)
"""
    assert read_in_child(producer, cpu_seconds=60) == f"30 {30 * size} 1 []"


def test_link_types_are_listed_once_each_in_order_of_appearance():
    data = SHB + idb(1) + idb(101) + idb(1) + idb(276) + idb(101) + epb(b"x" * 20, 3)
    with open_capture(io.BytesIO(data)) as cap:
        frames = list(cap)
    assert cap.linktypes == [1, 101, 276]
    assert [(f.linktype, f.data) for f in frames] == [(276, b"x" * 20)]


def _through_pipe(data: bytes, piece: int) -> list:
    r, w = os.pipe()

    def feed() -> None:
        with os.fdopen(w, "wb", buffering=0) as fh:
            for i in range(0, len(data), piece):
                fh.write(data[i : i + piece])

    t = threading.Thread(target=feed)
    t.start()
    with os.fdopen(r, "rb") as fh, open_capture(fh) as cap:
        frames = list(cap)
    t.join()
    return frames


@pytest.mark.parametrize("piece", [7, 1000, 65536])
def test_packet_blocks_read_alike_on_the_fast_and_the_checked_path(piece):
    """A pipe that hands out odd pieces sends many blocks down the checked path; the frames are the same."""
    data = SAMPLE.read_bytes()
    with open_capture(io.BytesIO(data)) as cap:
        whole = list(cap)
    assert len(whole) > 10
    assert _through_pipe(data, piece) == whole
