"""The network-namespace lab that real-socket samples are captured in.

Topology (documentation addresses only, RFC 5737 / RFC 3849):

    client ns wsa-c            router ns wsa-r (ip_forward=1)          server ns wsa-s
    c0 192.0.2.10/24   <--->   r0 192.0.2.1/24     r1 198.51.100.1/24  <--->  s0 198.51.100.20/24
       2001:db8:a::10/64          2001:db8:a::1/64    2001:db8:b::1/64            2001:db8:b::20/64

The server namespace sends with TTL / hop limit 128 (a Windows-like server), the client and
the router with Linux's 64, so at the client's capture point the server's packets arrive with
127 and anything the router forges or reports arrives with 64.
Neighbours are static, so no ARP or neighbour discovery clutters the captures.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

CLIENT, ROUTER, SERVER = "wsa-c", "wsa-r", "wsa-s"
CLIENT4, ROUTER4_C, ROUTER4_S, SERVER4 = "192.0.2.10", "192.0.2.1", "198.51.100.1", "198.51.100.20"
CLIENT6, ROUTER6_C, ROUTER6_S, SERVER6 = "2001:db8:a::10", "2001:db8:a::1", "2001:db8:b::1", "2001:db8:b::20"
# Locally administered MACs, fixed so reruns give the same Ethernet headers.
MAC = {"c0": "02:00:5e:00:0c:10", "r0": "02:00:5e:00:0c:01", "r1": "02:00:5e:00:0d:01", "s0": "02:00:5e:00:0d:20"}

PEERS = Path(__file__).with_name("peers.py")
# Only error ICMPv6 (types below 128) and no neighbour discovery / MLD in the captures.
CAPTURE_FILTER = "tcp or udp or icmp or (icmp6 and ip6[40] < 128)"


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run one command, failing loudly unless told otherwise."""
    return subprocess.run(list(args), check=check, capture_output=True, text=True)


def nsx(ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return sh("ip", "netns", "exec", ns, *args, check=check)


def start_peer(ns: str, role: str, addr: str, port: int, *steps: str) -> subprocess.Popen:
    """A peer (peers.py) started in namespace `ns` in the background; for servers, once it listens."""
    proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, str(PEERS), role, addr, str(port),
                             *steps], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if role.endswith(("server", "listener")):
        line = proc.stdout.readline()
        if "listening" not in line:
            raise RuntimeError(f"{role} did not start: {line}{proc.stdout.read()}")
    return proc


def finish_peer(proc: subprocess.Popen, timeout: float = 60) -> str:
    """Wait for a peer and return what it printed (killed after `timeout` seconds)."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        out += "\nKILLED (timeout)"
    return out


class Lab:
    """Client, router and server namespaces; built once, reused by every netns sample."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="wsa-lab-"))
        self.cert = self.key = None

    # -- building and tearing down -------------------------------------------------------
    def up(self) -> None:
        self.down()
        for ns in (CLIENT, ROUTER, SERVER):
            sh("ip", "netns", "add", ns)
            nsx(ns, "ip", "link", "set", "lo", "up")
            nsx(ns, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
            nsx(ns, "sysctl", "-qw", "net.ipv6.conf.default.router_solicitations=0")
        sh("ip", "link", "add", "c0", "netns", CLIENT, "type", "veth", "peer", "name", "r0", "netns", ROUTER)
        sh("ip", "link", "add", "r1", "netns", ROUTER, "type", "veth", "peer", "name", "s0", "netns", SERVER)
        plan = [(CLIENT, "c0", CLIENT4, CLIENT6), (ROUTER, "r0", ROUTER4_C, ROUTER6_C),
                (ROUTER, "r1", ROUTER4_S, ROUTER6_S), (SERVER, "s0", SERVER4, SERVER6)]
        for ns, dev, a4, a6 in plan:
            nsx(ns, "ip", "link", "set", dev, "address", MAC[dev])
            nsx(ns, "ip", "addr", "add", a4 + "/24", "dev", dev)
            nsx(ns, "ip", "addr", "add", a6 + "/64", "dev", dev, "nodad")
            nsx(ns, "ip", "link", "set", dev, "up")
        nsx(ROUTER, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
        nsx(CLIENT, "ip", "route", "add", "default", "via", ROUTER4_C)
        nsx(CLIENT, "ip", "-6", "route", "add", "default", "via", ROUTER6_C)
        nsx(SERVER, "ip", "route", "add", "default", "via", ROUTER4_S)
        nsx(SERVER, "ip", "-6", "route", "add", "default", "via", ROUTER6_S)
        neigh = [(CLIENT, "c0", [(ROUTER4_C, "r0"), (ROUTER6_C, "r0")]),
                 (ROUTER, "r0", [(CLIENT4, "c0"), (CLIENT6, "c0")]),
                 (ROUTER, "r1", [(SERVER4, "s0"), (SERVER6, "s0")]),
                 (SERVER, "s0", [(ROUTER4_S, "r1"), (ROUTER6_S, "r1")])]
        for ns, dev, entries in neigh:
            for addr, other in entries:
                nsx(ns, "ip", "neigh", "replace", addr, "lladdr", MAC[other], "nud", "permanent", "dev", dev)
        # A Windows-like server: initial TTL / hop limit 128.
        nsx(SERVER, "sysctl", "-qw", "net.ipv4.ip_default_ttl=128", "net.ipv6.conf.all.hop_limit=128",
            "net.ipv6.conf.s0.hop_limit=128")
        # Short timers on the client so timeouts happen within seconds (RFC 6298 backoff, 200 ms floor):
        # 2 SYN retransmissions (gives up ~7 s), 3 data retransmissions (gives up ~6 s).
        nsx(CLIENT, "sysctl", "-qw", "net.ipv4.tcp_syn_retries=2", "net.ipv4.tcp_retries2=3")
        # Linux 6.5+ retransmits the first SYNs at a linear 1 s; turn that off for the classic
        # exponential backoff (1 s, 2 s, 4 s) other stacks show. Absent on older kernels.
        nsx(CLIENT, "sysctl", "-qw", "net.ipv4.tcp_syn_linear_timeouts=0", check=False)
        # Let interface-up chatter (MLD reports) pass before any capture starts.
        time.sleep(2.0)
        self.make_cert()

    def down(self) -> None:
        for ns in (CLIENT, ROUTER, SERVER):
            sh("ip", "netns", "del", ns, check=False)

    def make_cert(self) -> None:
        """A throwaway self-signed certificate for the TLS samples (openssl, else cryptography)."""
        self.cert, self.key = self.tmp / "cert.pem", self.tmp / "key.pem"
        res = sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                 "-subj", "/CN=www.example.com", "-keyout", str(self.key), "-out", str(self.cert), check=False)
        if res.returncode == 0:
            return
        import datetime

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "www.example.com")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now)
                .not_valid_after(now + datetime.timedelta(days=2)).sign(key, hashes.SHA256()))
        self.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        self.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    # -- pieces a sample is made of -------------------------------------------------------
    def flag(self, name: str) -> str:
        """A path the peers and the orchestrator use to signal each other."""
        path = self.tmp / name
        path.unlink(missing_ok=True)
        return str(path)

    @contextmanager
    def capture(self, out: Path, ns: str = CLIENT, iface: str = "c0", bpf: str = CAPTURE_FILTER):
        """tcpdump in a namespace for the duration of the block; stopped with SIGINT.
        BPF replaces the usual filter where a sample stands for a capture that missed packets."""
        out.parent.mkdir(parents=True, exist_ok=True)
        log = self.tmp / "tcpdump.log"
        with open(log, "w") as errf:
            proc = subprocess.Popen(["ip", "netns", "exec", ns, "tcpdump", "-i", iface, "-n", "-U",
                                     "--immediate-mode",
                                     "-w", str(out), bpf], stdout=subprocess.DEVNULL, stderr=errf)
        try:
            deadline = time.monotonic() + 10
            while "listening on" not in log.read_text() and time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise RuntimeError("tcpdump exited: " + log.read_text())
                time.sleep(0.05)
            time.sleep(0.2)
            yield
        finally:
            # Let the last packets reach tcpdump before it is told to stop.
            time.sleep(1.0)
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def start(self, ns: str, role: str, addr: str, port: int, *steps: str) -> subprocess.Popen:
        """Start a peer in the background; for servers, wait until it listens."""
        return start_peer(ns, role, addr, port, *steps)

    @staticmethod
    def finish(proc: subprocess.Popen, timeout: float = 60) -> str:
        """Wait for a peer and return what it printed."""
        return finish_peer(proc, timeout)

    def run(self, ns: str, role: str, addr: str, port: int, *steps: str, timeout: float = 60) -> str:
        return self.finish(self.start(ns, role, addr, port, *steps), timeout)

    def settle(self, timeout: float = 8.0) -> None:
        """Wait until no connection is left in either end (only LISTEN or TIME-WAIT), so a
        killed peer's retransmitted FIN cannot leak into the next sample's capture."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            busy = [line for ns in (CLIENT, SERVER)
                    for line in nsx(ns, "ss", "-Htan", check=False).stdout.splitlines()
                    if line.split() and line.split()[0] not in ("LISTEN", "TIME-WAIT")]
            if not busy:
                return
            time.sleep(0.1)

    @staticmethod
    def one_segment_per_packet(on: bool = True) -> None:
        """Make the client's and server's TCP hand the veths MSS-sized packets (gso_max_segs 1)
        instead of 64 KB offload batches, so a capture shows the segments a NIC would send.
        Sockets read the limit when they connect: call this before the conversation starts."""
        segs = "1" if on else "65535"
        for ns, dev in ((CLIENT, "c0"), (SERVER, "s0")):
            nsx(ns, "ip", "link", "set", "dev", dev, "gso_max_segs", segs)

    @staticmethod
    def wait_listening(ns: str, port: int, timeout: float = 10) -> None:
        """Wait until a TCP socket listens on PORT in NS (for programs that do not say so)."""
        deadline = time.monotonic() + timeout
        while not nsx(ns, "ss", "-Htln", f"sport = :{port}", check=False).stdout.strip():
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on port {port} in {ns}")
            time.sleep(0.05)

    def wait_for(self, path: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not os.path.exists(path):
            if time.monotonic() > deadline:
                raise RuntimeError(f"peer never reached {path}")
            time.sleep(0.02)
