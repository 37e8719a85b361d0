"""A lab for two-capture samples: client, router and server namespaces, tcpdump on both end hosts.

Topology (documentation addresses only, RFC 5737):

    client ns p15-c             router ns p15-r (ip_forward=1)            server ns p15-s
    (the prefix p15 is PATHLAB_PREFIX's value when set)
    pc0 192.0.2.10/24  <--->  pr0 192.0.2.1/24   pr1 198.51.100.1/24  <--->  ps0 198.51.100.20/24

The same shape as samples_lib/lab.py (whose namespaces another sample run may be using), under
names of its own. The server sends with TTL 128 (a Windows-like host), client and router with
Linux's 64, so each capture tells the server's packets, the client's and the router's apart.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

from samples_lib.lab import finish_peer, sh, start_peer

# Namespace names: PATHLAB_PREFIX picks another prefix, so two runs on one machine do not collide.
PREFIX = os.environ.get("PATHLAB_PREFIX", "p15")
CLIENT, ROUTER, SERVER = f"{PREFIX}-c", f"{PREFIX}-r", f"{PREFIX}-s"
CLIENT4, ROUTER4_C, ROUTER4_S, SERVER4 = "192.0.2.10", "192.0.2.1", "198.51.100.1", "198.51.100.20"
MAC = {"pc0": "02:00:5e:00:1c:10", "pr0": "02:00:5e:00:1c:01", "pr1": "02:00:5e:00:1d:01", "ps0": "02:00:5e:00:1d:20"}
# The same filter on both hosts, as the README tells users to take their two captures.
CAPTURE_FILTER = "tcp or udp or icmp"


# One ICMP echo request to each address given (the image has no ping), the replies awaited.
PING = """
import socket, struct, sys
def csum(b):
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    t = (t >> 16) + (t & 0xFFFF)
    return ~(t + (t >> 16)) & 0xFFFF
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.settimeout(1.0)
for seq, addr in enumerate(sys.argv[1:], 1):
    body = struct.pack("!HH", 0x15C, seq) + b"end of sample"
    head = struct.pack("!BBH", 8, 0, 0) + body
    s.sendto(struct.pack("!BBH", 8, 0, csum(head + b"\\0")) + body, (addr, 0))
    s.recvfrom(256)
"""


def nsx(ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return sh("ip", "netns", "exec", ns, *args, check=check)


class PathLab:
    """Three namespaces; every firewall or route change happens inside the router namespace."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="p15-lab-"))

    def up(self) -> None:
        self.down()
        for ns in (CLIENT, ROUTER, SERVER):
            sh("ip", "netns", "add", ns)
            nsx(ns, "ip", "link", "set", "lo", "up")
            nsx(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
        sh("ip", "link", "add", "pc0", "netns", CLIENT, "type", "veth", "peer", "name", "pr0", "netns", ROUTER)
        sh("ip", "link", "add", "pr1", "netns", ROUTER, "type", "veth", "peer", "name", "ps0", "netns", SERVER)
        for ns, dev, a4 in [
            (CLIENT, "pc0", CLIENT4),
            (ROUTER, "pr0", ROUTER4_C),
            (ROUTER, "pr1", ROUTER4_S),
            (SERVER, "ps0", SERVER4),
        ]:
            nsx(ns, "ip", "link", "set", dev, "address", MAC[dev])
            nsx(ns, "ip", "addr", "add", a4 + "/24", "dev", dev)
            nsx(ns, "ip", "link", "set", dev, "up")
            # Segments as the wire carries them: one segment per packet, no 64 KiB super-packets
            # in the captures (what `ethtool -K DEV tso off gso off` does, without ethtool).
            nsx(ns, "ip", "link", "set", "dev", dev, "gso_max_segs", "1", check=False)
        nsx(ROUTER, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        nsx(CLIENT, "ip", "route", "add", "default", "via", ROUTER4_C)
        nsx(SERVER, "ip", "route", "add", "default", "via", ROUTER4_S)
        for ns, dev, addr, other in [
            (CLIENT, "pc0", ROUTER4_C, "pr0"),
            (ROUTER, "pr0", CLIENT4, "pc0"),
            (ROUTER, "pr1", SERVER4, "ps0"),
            (SERVER, "ps0", ROUTER4_S, "pr1"),
        ]:
            nsx(ns, "ip", "neigh", "replace", addr, "lladdr", MAC[other], "nud", "permanent", "dev", dev)
        nsx(SERVER, "sysctl", "-qw", "net.ipv4.ip_default_ttl=128")
        # Short timers so a failure shows within seconds: 2 SYN retransmissions, 3 data ones.
        nsx(CLIENT, "sysctl", "-qw", "net.ipv4.tcp_syn_retries=2", "net.ipv4.tcp_retries2=3")
        nsx(CLIENT, "sysctl", "-qw", "net.ipv4.tcp_syn_linear_timeouts=0", check=False)
        time.sleep(1.0)

    def down(self) -> None:
        for ns in (CLIENT, ROUTER, SERVER):
            sh("ip", "netns", "del", ns, check=False)

    def segment_offload(self, on: bool) -> None:
        """Let the end hosts hand their NIC segments of up to 64 KiB (tcpdump records them so), or not.

        The router's interfaces keep one segment per packet, so it cuts what it forwards into
        wire-size segments: each host's capture then sees the other's data cut differently, as
        real hosts with TSO/GRO do.
        """
        for ns, dev in ((CLIENT, "pc0"), (SERVER, "ps0")):
            nsx(ns, "ip", "link", "set", "dev", dev, "gso_max_segs", "65535" if on else "1", check=False)

    def reset_router(self) -> None:
        """Undo what a sample set on the router: filter, NAT and mangle rules, conntrack entries."""
        for table in ("filter", "nat", "mangle"):
            nsx(ROUTER, "iptables", "-t", table, "-F", check=False)
        nsx(ROUTER, "conntrack", "-F", check=False)

    def router(self, *args: str) -> None:
        nsx(ROUTER, *args)

    def mark_end(self) -> None:
        """The router pings both end hosts once the sample's exchange is over: each capture then
        holds a frame after the failure, the proof that it was still running when the lost or
        injected packets would have passed (what the README asks of users' own captures). From
        the router itself, so the sample's FORWARD rules (a DROP of everything) do not stop it."""
        nsx(ROUTER, sys.executable, "-c", PING, CLIENT4, SERVER4)
        time.sleep(0.2)

    def flag(self, name: str) -> str:
        path = self.tmp / name
        path.unlink(missing_ok=True)
        return str(path)

    @contextmanager
    def _tcpdump(self, out: Path, ns: str, iface: str):
        out.parent.mkdir(parents=True, exist_ok=True)
        log = self.tmp / f"tcpdump-{ns}.log"
        with open(log, "w") as errf:
            proc = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    ns,
                    "tcpdump",
                    "-i",
                    iface,
                    "-n",
                    "-U",
                    "--immediate-mode",
                    "-B",  # a roomy kernel buffer: a capture that drops packets shows them as lost
                    "8192",
                    "-w",
                    str(out),
                    CAPTURE_FILTER,
                ],
                stdout=subprocess.DEVNULL,
                stderr=errf,
            )
        try:
            deadline = time.monotonic() + 10
            while "listening on" not in log.read_text() and time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise RuntimeError("tcpdump exited: " + log.read_text())
                time.sleep(0.05)
            yield
        finally:
            time.sleep(1.0)  # let the last packets reach tcpdump
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    @contextmanager
    def capture_both(self, client_out: Path, server_out: Path):
        """Two tcpdump processes at once: one on the client host, one on the server host."""
        with ExitStack() as stack:
            stack.enter_context(self._tcpdump(client_out, CLIENT, "pc0"))
            stack.enter_context(self._tcpdump(server_out, SERVER, "ps0"))
            time.sleep(0.3)
            yield

    def start(self, ns: str, role: str, addr: str, port: int, *steps: str) -> subprocess.Popen:
        return start_peer(ns, role, addr, port, *steps)

    @staticmethod
    def finish(proc: subprocess.Popen, timeout: float = 60) -> str:
        return finish_peer(proc, timeout).strip().replace("\n", " | ")

    def wait_for(self, path: str, timeout: float = 30) -> None:
        import os

        deadline = time.monotonic() + timeout
        while not os.path.exists(path):
            if time.monotonic() > deadline:
                raise RuntimeError(f"peer never reached {path}")
            time.sleep(0.02)
