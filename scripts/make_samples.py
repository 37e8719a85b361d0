#!/usr/bin/env python3
"""Regenerate the regression captures in samples/ and their YAML sidecars.

    python scripts/make_samples.py [--only NAME...] [--list]

Needs root, iproute2 (`ip netns`), tcpdump and iptables for the real-socket samples, scapy for
the crafted ones. Real samples are captured in three network namespaces (client, router,
server; see samples_lib/lab.py) using documentation addresses only; the namespaces are removed
at the end even on error. Crafted samples use fixed times and numbers, so they are reproducible.
Each sample's metadata (what it shows, which findings it must produce, which rules it is a
near-miss for) lives next to the function that makes it and is written to samples/NAME.yaml.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # analyzer, for the ETL writer's facts

import yaml  # noqa: E402

from samples_lib.lab import (CLIENT, CLIENT4, CLIENT6, ROUTER, ROUTER4_C, SERVER, SERVER4,  # noqa: E402
                             SERVER6, Lab, nsx)

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


@dataclass(frozen=True)
class Sample:
    """One capture to make: its name, how, what it must and must not make the analyzer say."""
    name: str
    made_by: str                       # "netns" or "scapy"
    description: str
    make: Callable
    expect: tuple = ()                 # ({"rule":..., "side":..., "winsock":...}, ...)
    silent_for: tuple = ()
    ext: str = ".pcap"

    @property
    def path(self) -> Path:
        return SAMPLES / (self.name + self.ext)

    def sidecar(self) -> dict:
        return {"description": self.description, "made_by": self.made_by,
                "expect": [dict(e) for e in self.expect], "silent_for": list(self.silent_for)}


REGISTRY: list[Sample] = []


def sample(name, made_by, description, expect=(), silent_for=(), ext=".pcap"):
    """Register the decorated function as the maker of one sample."""
    def wrap(fn):
        REGISTRY.append(Sample(name, made_by, description, fn, tuple(expect), tuple(silent_for), ext))
        return fn
    return wrap


def fires(rule, side=None, winsock=None):
    entry = {"rule": rule}
    if side:
        entry["side"] = side
    if winsock:
        entry["winsock"] = winsock
    return entry


# ---------------------------------------------------------------------------------------------
# helpers for the real-socket samples
# ---------------------------------------------------------------------------------------------

def tcp_exchange(lab: Lab, out: Path, server_steps, client_steps, *, addr=SERVER4, port=80,
                 during=None, capture_kw=None, serve=True):
    """Server and client peers inside one capture; DURING(lab) runs while they talk.

    The server is killed only after the capture has stopped, so a server left waiting does not
    add its own close to the capture.
    """
    logs = []
    srv = None
    with lab.capture(out, **(capture_kw or {})):
        if serve:
            srv = lab.start(SERVER, "tcp-server", addr, port, *server_steps)
        cli = lab.start(CLIENT, "tcp-client", addr, port, *client_steps)
        if during:
            during(lab)
        logs.append("client: " + lab.finish(cli).strip().replace("\n", " | "))
        if srv is not None:
            try:
                out_s, _ = srv.communicate(timeout=3)
                logs.append("server: " + out_s.strip().replace("\n", " | "))
            except subprocess.TimeoutExpired:
                pass
    if srv is not None and srv.poll() is None:
        srv.kill()
        logs.append("server: (killed after capture) " + srv.communicate()[0].strip().replace("\n", " | "))
    return logs


def router(*args):
    nsx(ROUTER, *args)


def reset_router():
    """Undo what a sample changed in the lab: iptables rules, special routes, sysctls, and
    segment sizes."""
    nsx(ROUTER, "iptables", "-F", "FORWARD", check=False)
    nsx(ROUTER, "iptables", "-F", "OUTPUT", check=False)
    nsx(SERVER, "iptables", "-F", "OUTPUT", check=False)
    # Kernel defaults; the conntrack ones exist only once a sample loaded conntrack.
    nsx(ROUTER, "sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_timeout_established=432000",
        "net.netfilter.nf_conntrack_tcp_loose=1", check=False)
    nsx(SERVER, "sysctl", "-qw", "net.ipv4.tcp_abort_on_overflow=0", "net.ipv4.tcp_syncookies=1")
    nsx(ROUTER, "ip", "route", "replace", "192.0.2.0/24", "dev", "r0", "proto", "kernel", "scope", "link",
        "src", ROUTER4_C)
    Lab.one_segment_per_packet(False)
    nsx(ROUTER, "tc", "qdisc", "del", "dev", "r0", "root", check=False)
    # Forget learned path MTUs (tmo003-silent-pmtu-works teaches the server 1280), or the next
    # sample's segments would be cut to that size.
    for ns in (CLIENT, SERVER):
        nsx(ns, "ip", "route", "flush", "cache", check=False)
        nsx(ns, "ip", "-6", "route", "flush", "cache", check=False)
    for dest in (SERVER4 + "/32",):
        for kind in ("blackhole", "unreachable", "prohibit"):
            nsx(ROUTER, "ip", "route", "del", kind, dest, check=False)
    for kind in ("blackhole", "unreachable", "prohibit"):
        nsx(ROUTER, "ip", "-6", "route", "del", kind, SERVER6 + "/128", check=False)


def after_flag(flag, action, release=None):
    """A DURING callback: wait for the client's FLAG, change the network, then release it."""
    def during(lab: Lab):
        lab.wait_for(flag)
        action()
        if release:
            open(release, "w").close()
    return during


HTTP_OK_SERVER = ("recvreq", "response:1200", "shutwr", "recvall", "close")
HTTP_OK_CLIENT = ("request:/index.html", "recvall", "close")
HEALTHY_TCP = ("RST001", "RST002", "RST004", "RST005", "RST010", "CON001")


# ---------------------------------------------------------------------------------------------
# healthy captures
# ---------------------------------------------------------------------------------------------

@sample("ok-http-fin-close", "netns",
        "HTTP-like request and 1200-byte response; the server shuts down its sending side (FIN) "
        "after the response, the client reads to EOF and closes (FIN): a clean four-way close.",
        silent_for=HEALTHY_TCP)
def ok_http(lab, out):
    return tcp_exchange(lab, out, HTTP_OK_SERVER, HTTP_OK_CLIENT)


@sample("ok-http-fin-close-ipv6", "netns",
        "The clean HTTP-like exchange and FIN close over IPv6.", silent_for=HEALTHY_TCP)
def ok_http6(lab, out):
    return tcp_exchange(lab, out, HTTP_OK_SERVER, HTTP_OK_CLIENT, addr=SERVER6)


@sample("ok-http-fin-close-sll2", "netns",
        "The clean HTTP-like exchange and FIN close, captured with `tcpdump -i any` (Linux SLL2 "
        "link type).", silent_for=("RST001", "RST010"))
def ok_http_sll2(lab, out):
    return tcp_exchange(lab, out, HTTP_OK_SERVER, HTTP_OK_CLIENT, capture_kw={"iface": "any"})


def udp_exchange(lab, out, client_steps, *, addr=SERVER4, port=53, serve=True, during=None, capture_kw=None):
    logs = []
    with lab.capture(out, **(capture_kw or {})):
        srv = lab.start(SERVER, "udp-server", addr, port, "recvfrom-peer", "echo:120") if serve else None
        cli = lab.start(CLIENT, "udp-client", addr, port, *client_steps)
        if during:
            during(lab)
        logs.append("client: " + lab.finish(cli).strip().replace("\n", " | "))
    if srv is not None:
        if srv.poll() is None:
            srv.kill()
        logs.append("server: " + srv.communicate()[0].strip().replace("\n", " | "))
    return logs


@sample("ok-udp-request-response", "netns",
        "A UDP client sends a 40-byte request to port 53 and gets a 120-byte answer.",
        silent_for=("UDP001", "UDP002", "UDP003"))
def ok_udp(lab, out):
    return udp_exchange(lab, out, ("sendto:40", "recvfrom:2"))


@sample("ok-udp-request-response-ipv6", "netns",
        "A UDP request and its answer over IPv6.", silent_for=("UDP001", "UDP003"))
def ok_udp6(lab, out):
    return udp_exchange(lab, out, ("sendto:40", "recvfrom:2"), addr=SERVER6)


# ---------------------------------------------------------------------------------------------
# RST001 .. RST010
# ---------------------------------------------------------------------------------------------

@sample("rst001-client-linger0-after-upload", "netns",
        "The client uploads 300 bytes, the server reads them and waits; the client closes with "
        "SO_LINGER 0, so its stack sends RST instead of FIN and the server's recv fails.",
        expect=[fires("RST001", "server", "WSAECONNRESET")])
def rst001(lab, out):
    return tcp_exchange(lab, out, ("recv", "recvall"), ("send:300", "sleep:0.3", "linger0", "close"), port=8000)


@sample("rst001-silent-client-fin-after-upload", "netns",
        "The same upload, but the client closes normally (FIN); the server reads EOF and closes too.",
        silent_for=("RST001",))
def rst001_silent(lab, out):
    return tcp_exchange(lab, out, ("recv", "recvall", "close"), ("send:300", "sleep:0.3", "close"), port=8000)


@sample("rst002-reset-during-response", "netns",
        "The client sends a request; the server sends a response head promising 100000 bytes, "
        "3000 of them, then closes with SO_LINGER 0 while the client is still reading.",
        expect=[fires("RST002", "client", "WSAECONNRESET")], silent_for=("RST010", "RST009"))
def rst002(lab, out):
    return tcp_exchange(lab, out, ("recvreq", "partial:100000,3000", "sleep:0.3", "linger0", "close"),
                        ("request:/big", "recvall"))


@sample("rst004-close-with-unread-data", "netns",
        "The client POSTs a head, then a 4000-byte body; the server reads only the head, answers, "
        "and close()s with the body unread, so Linux sends RST instead of FIN.",
        expect=[fires("RST004", "client", "WSAECONNRESET")])
def rst004(lab, out):
    return tcp_exchange(lab, out, ("recvreq", "response:200", "sleep:0.4", "close"),
                        ("post:/upload,4000", "sleep:0.1", "send:4000", "recvall"))


@sample("rst004-silent-drained-close", "netns",
        "The same POST, but the server reads the whole body before answering and closing: FIN, "
        "no reset.", silent_for=("RST004",))
def rst004_silent(lab, out):
    return tcp_exchange(lab, out, ("recvreq", "recvn:4000", "response:200", "shutwr", "recvall", "close"),
                        ("post:/upload,4000", "sleep:0.1", "send:4000", "recvall", "close"))


@sample("rst005-data-after-peer-close", "netns",
        "After one request/response the server closes its idle connection (FIN); the client, not "
        "having read the EOF, sends a second request on it and the server's stack answers RST.",
        expect=[fires("RST005", "client", "WSAECONNRESET")], silent_for=("RST006",))
def rst005(lab, out):
    return tcp_exchange(lab, out, ("recvreq", "response:500", "sleep:0.2", "close"),
                        ("request:/a", "recv", "sleep:0.6", "request:/b", "sleep:0.2", "recv", "recv"))


@sample("rst005-silent-close-after-peer-fin", "netns",
        "The server closes its idle connection (FIN) after one exchange; the client reads the EOF "
        "and closes too, sending nothing more.", silent_for=("RST005",))
def rst005_silent(lab, out):
    return tcp_exchange(lab, out, ("recvreq", "response:500", "sleep:0.2", "close"),
                        ("request:/a", "recv", "recvall", "close"))


@sample("rst004-server-killed-unread", "netns",
        "The client POSTs a head and a 4000-byte body; the server process reads only the head and is "
        "killed (SIGKILL) before answering: the kernel closes its socket with the body unread and "
        "sends RST while the client waits for the response.",
        expect=[fires("RST004", "client", "WSAECONNRESET")], silent_for=("RST011",))
def rst004_killed(lab, out):
    return tcp_exchange(lab, out, ("recvreq", "sleep:0.3", "sigkill"),
                        ("post:/upload,4000", "sleep:0.1", "send:4000", "recvall"))


@sample("rst004-silent-server-killed-after-reading", "netns",
        "The server process reads the whole POST and is killed (SIGKILL) before answering: nothing "
        "is unread, so the kernel closes with FIN; the client reads the EOF (an empty reply, no "
        "socket error) and closes.", silent_for=("RST004", "RST011"))
def rst004_killed_silent(lab, out):
    return tcp_exchange(lab, out, ("recvreq", "recvn:4000", "sleep:0.3", "sigkill"),
                        ("post:/upload,4000", "sleep:0.1", "send:4000", "recvall", "close"))


@sample("rst015-client-killed-mid-download", "netns",
        "The client asks for a 2 MB response, reads a little of it and stops; its window falls to 0 "
        "and it is killed (SIGKILL): its kernel resets with the rest unread while the server waits "
        "to send more.",
        expect=[fires("RST015", "server", "WSAECONNRESET")], silent_for=("RST010", "RST014"))
def rst015(lab, out):
    return tcp_exchange(lab, out, ("recvreq", "response:2000000", "recvall"),
                        ("request:/big", "recv", "sleep:0.2", "sigkill"))


@sample("rst015-silent-slow-reader-reads-all", "netns",
        "The client asks for 300 kB and pauses before reading: its window falls to 0, then opens "
        "again as it reads the whole response; it then closes abortively (SO_LINGER 0): a harmless "
        "reset after a complete exchange.",
        expect=[fires("RST010")], silent_for=("RST015", "RST014"))
def rst015_silent(lab, out):
    return tcp_exchange(lab, out, ("recvreq", "response:300000", "recvall"),
                        ("request:/big", "sleep:0.5", "recvn:300069", "linger0", "close"))


def forge_on_router():
    # REJECT --reject-with tcp-reset answers the matched segment with a RST from the router's
    # stack, claiming the server's address but carrying the router's TTL (64).
    router("iptables", "-I", "FORWARD", "-s", CLIENT4, "-d", SERVER4, "-p", "tcp", "--dport", "80",
           "-j", "REJECT", "--reject-with", "tcp-reset")


@sample("rst009-forged-reset-by-router", "netns",
        "After one exchange a firewall on the router (iptables REJECT --reject-with tcp-reset) "
        "answers the client's second request with a RST in the server's name: TTL 64 where "
        "the server's packets arrive with 127.",
        expect=[fires("RST009", "client", "WSAECONNRESET")], silent_for=("RST002",))
def rst009(lab, out):
    f1, f2 = lab.flag("f1"), lab.flag("f2")
    return tcp_exchange(lab, out, ("recvreq", "response:800", "recvreq"),
                        ("request:/a", "recv", "touch:" + f1, "await:" + f2, "request:/b", "recv"),
                        during=after_flag(f1, forge_on_router, f2))


@sample("rst009-silent-server-reset", "netns",
        "Same two requests, but the server itself reads the second one and resets (SO_LINGER 0): "
        "the RST carries the server's own TTL.",
        expect=[fires("RST002", "client", "WSAECONNRESET")], silent_for=("RST009",))
def rst009_silent(lab, out):
    return tcp_exchange(lab, out, ("recvreq", "response:800", "recvreq", "linger0", "close"),
                        ("request:/a", "recv", "sleep:0.2", "request:/b", "recv"))


@sample("rst010-client-linger0-after-response", "netns",
        "The client reads the whole 600-byte response and closes with SO_LINGER 0 (RST) on "
        "purpose; nothing was lost.", expect=[fires("RST010")], silent_for=("RST001", "RST002"))
def rst010(lab, out):
    return tcp_exchange(lab, out, ("recvreq", "response:600", "recvall"),
                        ("request:/small", "recvn:666", "sleep:0.2", "linger0", "close"))


# RST013: the client sends a request and half-closes (shutdown(SHUT_WR)) at once, then waits for
# an answer; the server reads to EOF and closes. The server's 0.2 s pause lets its stack ACK the
# client's FIN on its own before the close, so the wire is the same on every run.
HALF_CLOSE_CLIENT = ("request:/report", "shutwr", "recvall", "close")


@sample("rst013-reset-after-peer-fin", "netns",
        "After the handshake the client sends a 75-byte GET (frame 4, seq 1-75) and half-closes "
        "at once with shutdown(SHUT_WR): FIN/ACK seq 76 (frame 6). The server's stack ACKs the "
        "data at once (ack 76) and the FIN about 40 ms later (delayed ACK, ack 77, frame 7). Its "
        "application "
        "reads the request to EOF and 0.2 s later closes with SO_LINGER 0 without sending "
        "anything: RST/ACK seq 1 ack 77 (frame 8), covering all 75 bytes and the FIN, so no "
        "client data is unacknowledged at the reset. The client, still reading for an answer, "
        "gets ECONNRESET.",
        expect=[fires("RST013", "client", "WSAECONNRESET")], silent_for=("RST001", "RST004", "GEN001"))
def rst013(lab, out):
    return tcp_exchange(lab, out, ("recvall", "sleep:0.2", "linger0", "close"), HALF_CLOSE_CLIENT)


@sample("rst013-silent-fin-after-peer-fin", "netns",
        "The same 75-byte GET and half-close (frames 4 and 6), ACKed by the server's stack "
        "(frames 5 and 7); the server reads to EOF and 0.2 s later closes gracefully: FIN/ACK "
        "seq 1 ack 77 (frame 8), which the client ACKs (frame 9) after reading EOF. No reset.",
        silent_for=("RST013",))
def rst013_silent(lab, out):
    return tcp_exchange(lab, out, ("recvall", "sleep:0.2", "close"), HALF_CLOSE_CLIENT)


def bottleneck_to_client() -> None:
    """The router's link toward the client becomes a 20 Mbit/s bottleneck with a deep buffer
    (tbf): the server's segments wait in the router's queue, so what the server sent before a
    reset reached it still arrives at the client after the reset, as on a real slow link."""
    router("tc", "qdisc", "replace", "dev", "r0", "root", "tbf", "rate", "20mbit", "burst", "3000",
           "limit", "400000")


# RST014: a 50 kB response (large enough that the server is still sending when the client
# gives up; small enough that the healthy capture stays under 100 packets) that the client stops
# reading after its first 4000 bytes, or reads to the end.
BIG_RESPONSE = "response:50000"


@sample("rst014-client-closes-during-response", "netns",
        "Captured on the client's interface; the router's link toward the client is a 20 Mbit/s "
        "bottleneck with a deep buffer (tbf), so the server's segments queue in the router. The "
        "client sends a 72-byte GET /big (frame 4); the server answers with a 50068-byte response "
        "(a 68-byte head and a 50000-byte body) in 1448-byte segments from frame 6. The client's "
        "application reads only the first 4000 bytes and close()s with the rest unread, so its "
        "stack sends RST/ACK seq 73 ack 4345 (frame 12): its ack covers the three segments it "
        "received (frames 6, 8 and 10, each ACKed in frames 7, 9 and 11). The server, still "
        "sending, had 13 more segments queued in the router: they arrive after the RST within "
        "8 ms (frames 13 to 37, odd numbers, seq 4345 to 21721, 1448 bytes each), and the "
        "client's stack, which has no socket any more, answers each with a bare RST (frames 14 "
        "to 38, even numbers: flags R only, seq 73 = the data's ack number, IP ID 0). The "
        "server's send fails with ECONNRESET.",
        expect=[fires("RST014", "server", "WSAECONNRESET")], silent_for=("RST010", "GEN001"))
def rst014(lab, out):
    lab.one_segment_per_packet()
    bottleneck_to_client()
    return tcp_exchange(lab, out, ("recvreq", BIG_RESPONSE, "recv"), ("request:/big", "recvn:4000", "close"))


@sample("rst014-silent-client-reads-all", "netns",
        "Captured on the client's interface, with the same 20 Mbit/s bottleneck toward the client. "
        "The same GET /big (frame 4) and 50068-byte response: 34 segments of 1448 bytes from "
        "frame 6, then the last 836 bytes together with the server's FIN after shutdown(SHUT_WR) "
        "(FIN/PSH/ACK seq 49233, frame 68); every segment is acknowledged (the client's last ACK, "
        "ack 50070, frame 69), nothing is lost or retransmitted. The client reads the whole "
        "response to EOF and closes normally: FIN/ACK seq 73 ack 50070 (frame 70), ACKed by the "
        "server (frame 71). No RST. (Where the client's delayed ACKs fall varies from run to run, "
        "so a regenerated capture may number its last frames differently.)",
        silent_for=("RST014",))
def rst014_silent(lab, out):
    lab.one_segment_per_packet()
    bottleneck_to_client()
    return tcp_exchange(lab, out, ("recvreq", BIG_RESPONSE, "shutwr", "recvall", "close"),
                        ("request:/big", "recvall", "close"))


# ---------------------------------------------------------------------------------------------
# TLS001, TDS001
# ---------------------------------------------------------------------------------------------

@sample("tls001-version-alert", "netns",
        "A TLS client limited to TLS 1.2 meets a server that accepts only TLS 1.3: the server "
        "answers the ClientHello with a protocol_version alert and both close with FIN (no RST).",
        expect=[fires("TLS002", "client")], silent_for=("TLS001",))
def tls001_alert(lab, out):
    return tcp_exchange(lab, out, (f"tls-server:{lab.cert},{lab.key},1.3",), ("tls-client:1.2",), port=443)


@sample("tls001-clienthello-reset", "netns",
        "The server reads the TLS ClientHello and resets the connection (SO_LINGER 0) without a "
        "ServerHello, as a TLS-intolerant middlebox or server does.",
        expect=[fires("TLS001", "client", "WSAECONNRESET")], silent_for=("RST002",))
def tls001_reset(lab, out):
    return tcp_exchange(lab, out, ("recv", "linger0", "close"), ("tls-client:1.3",), port=443)


@sample("tls001-silent-handshake-ok", "netns",
        "A complete TLS 1.3 handshake, one request and response inside it, and a FIN close.",
        silent_for=("TLS001",))
def tls001_silent(lab, out):
    return tcp_exchange(lab, out, (f"tls-server:{lab.cert},{lab.key},1.2", "recvreq", "response:300", "close"),
                        ("tls-client:1.3", "request:/", "recv", "sleep:0.2", "close"), port=443)


@sample("tds001-prelogin-reset", "netns",
        "A SQL client sends a TDS PRELOGIN packet to port 1433; the (fake) server reads it and "
        "resets the connection (SO_LINGER 0).",
        expect=[fires("TDS001", "client", "WSAECONNRESET")], silent_for=("RST002",))
def tds001(lab, out):
    return tcp_exchange(lab, out, ("recv", "linger0", "close"), ("prelogin", "recv"), port=1433)


@sample("tds001-silent-prelogin-answered", "netns",
        "The TDS PRELOGIN is answered with a PRELOGIN response; the client then closes (FIN).",
        silent_for=("TDS001",))
def tds001_silent(lab, out):
    return tcp_exchange(lab, out, ("recv", "prelogin-reply", "recvall", "close"),
                        ("prelogin", "recv", "close"), port=1433)


# ---------------------------------------------------------------------------------------------
# CON001 .. CON004
# ---------------------------------------------------------------------------------------------

@sample("con001-refused", "netns",
        "The client connects to a server port nothing listens on; the server answers the SYN "
        "with RST/ACK.", expect=[fires("CON001", "client", "WSAECONNREFUSED")],
        silent_for=("CON003", "CON004"))
def con001(lab, out):
    return tcp_exchange(lab, out, (), (), port=81, serve=False)


@sample("con001-refused-ipv6", "netns",
        "A refused connection over IPv6: the SYN is answered with RST/ACK.",
        expect=[fires("CON001", "client", "WSAECONNREFUSED")], silent_for=("CON003",))
def con001_6(lab, out):
    return tcp_exchange(lab, out, (), (), addr=SERVER6, port=81, serve=False)


@sample("con002-syn-blackhole", "netns",
        "The router silently drops everything to the server (blackhole route): the SYN and its "
        "two retransmissions go unanswered and connect() times out.",
        expect=[fires("CON002", "client", "WSAETIMEDOUT")], silent_for=("CON003",))
def con002(lab, out):
    router("ip", "route", "add", "blackhole", SERVER4 + "/32")
    return tcp_exchange(lab, out, (), (), port=80, serve=False)


@sample("con002-silent-syn-retransmitted-then-answered", "netns",
        "The first SYN is dropped (blackhole route, removed after 1.5 s); the retransmitted SYN "
        "is answered and a normal exchange with FIN close follows.", silent_for=("CON002",))
def con002_silent(lab, out):
    import time
    router("ip", "route", "add", "blackhole", SERVER4 + "/32")

    def lift(lab_):
        time.sleep(1.5)
        router("ip", "route", "del", "blackhole", SERVER4 + "/32")
    return tcp_exchange(lab, out, HTTP_OK_SERVER, HTTP_OK_CLIENT, during=lift)


@sample("con003-host-unreachable", "netns",
        "The router has an `unreachable` route to the server and answers the SYN with ICMP host "
        "unreachable (twice: Linux retries the SYN once) and connect() fails.",
        expect=[fires("CON003", "client", "WSAEHOSTUNREACH")], silent_for=("UDP003",))
def con003(lab, out):
    router("ip", "route", "add", "unreachable", SERVER4 + "/32")
    return tcp_exchange(lab, out, (), (), port=80, serve=False)


@sample("con003-admin-prohibited-ipv6", "netns",
        "Over IPv6 the router has a `prohibit` route to the server and answers the SYN with "
        "ICMPv6 destination unreachable, administratively prohibited.",
        expect=[fires("CON003", "client")])
def con003_6(lab, out):
    router("ip", "-6", "route", "add", "prohibit", SERVER6 + "/128")
    return tcp_exchange(lab, out, (), (), addr=SERVER6, port=80, serve=False)


def reject_sql():
    router("iptables", "-I", "FORWARD", "-p", "tcp", "--dport", "1433", "--syn",
           "-j", "REJECT", "--reject-with", "tcp-reset")


def two_connections(lab, out):
    """A healthy HTTP exchange with the server, then a connection attempt to its port 1433."""
    logs = []
    with lab.capture(out):
        srv = lab.start(SERVER, "tcp-server", SERVER4, 80, *HTTP_OK_SERVER)
        logs.append("client80: " + lab.run(CLIENT, "tcp-client", SERVER4, 80, *HTTP_OK_CLIENT))
        logs.append("server80: " + lab.finish(srv))
        logs.append("client1433: " + lab.run(CLIENT, "tcp-client", SERVER4, 1433))
    logs = [line.strip().replace("\n", " | ") for line in logs]
    return logs


@sample("con004-forged-refusal", "netns",
        "A healthy exchange with the server on port 80 (its packets arrive with TTL 127), then a "
        "SYN to port 1433 that a firewall on the router refuses with a RST in the server's name "
        "(TTL 64).", expect=[fires("CON004", "client", "WSAECONNREFUSED")], silent_for=("CON001",))
def con004(lab, out):
    reject_sql()
    return two_connections(lab, out)


@sample("con004-silent-server-refusal", "netns",
        "The same two connections, but the server itself refuses port 1433 (nothing listens): "
        "the RST/ACK carries the server's TTL.",
        expect=[fires("CON001", "client", "WSAECONNREFUSED")], silent_for=("CON004",))
def con004_silent(lab, out):
    return two_connections(lab, out)


# ---------------------------------------------------------------------------------------------
# TMO001, TMO002
# ---------------------------------------------------------------------------------------------

def blackhole():
    router("ip", "route", "add", "blackhole", SERVER4 + "/32")


@sample("tmo001-data-blackhole", "netns",
        "After one exchange the path to the server goes dark (blackhole route): the client's "
        "second request is retransmitted with backoff, never acknowledged, and the client gives "
        "up (tcp_retries2=3).", expect=[fires("TMO001", "client", "WSAETIMEDOUT")])
def tmo001(lab, out):
    f1, f2 = lab.flag("f1"), lab.flag("f2")
    return tcp_exchange(lab, out, ("recvreq", "response:300", "recvreq"),
                        ("request:/a", "recv", "touch:" + f1, "await:" + f2, "request:/b", "recv"),
                        during=after_flag(f1, blackhole, f2))


@sample("tmo001-silent-retransmission-recovered", "netns",
        "The second request is lost once (blackhole for 0.5 s), its retransmission gets through "
        "and is answered; both sides then close with FIN.", silent_for=("TMO001",))
def tmo001_silent(lab, out):
    import time
    f1, f2 = lab.flag("f1"), lab.flag("f2")

    def during(lab_):
        lab_.wait_for(f1)
        blackhole()
        open(f2, "w").close()
        time.sleep(0.5)
        router("ip", "route", "del", "blackhole", SERVER4 + "/32")
    return tcp_exchange(lab, out, ("recvreq", "response:300", "recvreq", "response:300", "shutwr", "recvall",
                                   "close"),
                        ("request:/a", "recv", "touch:" + f1, "await:" + f2, "request:/b", "recv", "recvall",
                         "close"), during=during)


@sample("tmo002-keepalive-blackhole", "netns",
        "A client with keep-alive (idle 2 s, interval 1 s, 3 probes) waits in recv after one "
        "exchange; the path goes dark, the probes go unanswered and the client's stack drops the "
        "connection (Linux sends a last RST as it does).",
        expect=[fires("TMO002", "client", "WSAENETRESET")])
def tmo002(lab, out):
    f1 = lab.flag("f1")
    return tcp_exchange(lab, out, ("recvreq", "response:300", "recvreq"),
                        ("keepalive:2,1,3", "request:/a", "recv", "touch:" + f1, "recv"),
                        during=after_flag(f1, blackhole))


@sample("tmo002-silent-keepalive-answered", "netns",
        "Keep-alive probes (idle 1 s) during a 4 s wait are answered; the server then closes "
        "with FIN and the client too.", silent_for=("TMO002",))
def tmo002_silent(lab, out):
    return tcp_exchange(lab, out, ("recvreq", "response:300", "sleep:4", "shutwr", "recvall", "close"),
                        ("keepalive:1,1,3", "request:/a", "recv", "recvall", "close"))


# ---------------------------------------------------------------------------------------------
# UDP001 .. UDP003
# ---------------------------------------------------------------------------------------------

@sample("udp001-port-unreachable", "netns",
        "A UDP request to a server port nothing listens on; the server answers with ICMP port "
        "unreachable.", expect=[fires("UDP001", "client", "WSAECONNRESET")],
        silent_for=("UDP002", "UDP003"))
def udp001(lab, out):
    return udp_exchange(lab, out, ("sendto:40", "recvfrom:1"), port=5300, serve=False)


@sample("udp001-port-unreachable-ipv6", "netns",
        "A UDP request over IPv6 to a closed port, answered with ICMPv6 port unreachable.",
        expect=[fires("UDP001", "client", "WSAECONNRESET")], silent_for=("UDP003",))
def udp001_6(lab, out):
    return udp_exchange(lab, out, ("sendto:40", "recvfrom:1"), addr=SERVER6, port=5300, serve=False)


@sample("udp002-ttl-expired", "netns",
        "A UDP request sent with TTL 1 dies at the router, which answers ICMP time exceeded.",
        expect=[fires("UDP002", "client", "WSAENETRESET")], silent_for=("UDP001", "UDP003"))
def udp002(lab, out):
    return udp_exchange(lab, out, ("ttl:1", "sendto:40", "recvfrom:1"))


@sample("udp002-silent-ttl-enough", "netns",
        "The same request sent with TTL 2 reaches the server and is answered.",
        silent_for=("UDP002",))
def udp002_silent(lab, out):
    return udp_exchange(lab, out, ("ttl:2", "sendto:40", "recvfrom:2"))


@sample("udp003-host-unreachable", "netns",
        "The router has an `unreachable` route to the server and answers the UDP request with "
        "ICMP host unreachable.", expect=[fires("UDP003")], silent_for=("UDP001", "CON003"))  # no socket error
def udp003(lab, out):
    router("ip", "route", "add", "unreachable", SERVER4 + "/32")
    return udp_exchange(lab, out, ("sendto:40", "recvfrom:1"), serve=False)


@sample("udp003-admin-prohibited-ipv6", "netns",
        "Over IPv6 the router's `prohibit` route answers the UDP request with ICMPv6 "
        "administratively prohibited.", expect=[fires("UDP003", "client")], silent_for=("UDP001",))
def udp003_6(lab, out):
    router("ip", "-6", "route", "add", "prohibit", SERVER6 + "/128")
    return udp_exchange(lab, out, ("sendto:40", "recvfrom:1"), addr=SERVER6, serve=False)


# ---------------------------------------------------------------------------------------------
# issue 9: classes that went unreported or misexplained
# ---------------------------------------------------------------------------------------------

def server_drops_output(on: bool) -> None:
    """Nothing TCP leaves the server namespace while ON: as if the host died mid-close."""
    if on:
        nsx(SERVER, "iptables", "-A", "OUTPUT", "-p", "tcp", "-j", "DROP")
    else:
        nsx(SERVER, "iptables", "-F", "OUTPUT")


@sample("rst007-half-open-after-4s", "netns",
        "One request (GET /a) and a 300-byte response, acknowledged. The server's host then "
        "loses the connection without a packet leaving it (its socket is reset while an "
        "iptables OUTPUT DROP in the server namespace swallows the RST; the rule is removed "
        "right after, so the stack simply has no socket, as after a crash and restart). After "
        "4 s of silence the client sends GET /b (frame 8); the server's own stack answers it with "
        "a bare RST (frame 9: flags R only, no ACK; seq = the request's ack number; window 0; IP "
        "ID 0) carrying the server's TTL (127 at the capture point, like all its earlier packets). The client's "
        "recv fails with ECONNRESET. Captured on the client's interface.",
        expect=[fires("RST007", "client", "WSAECONNRESET")], silent_for=("RST009", "RST001"))
def rst007_4s(lab, out):
    f1, f2, f3 = lab.flag("f1"), lab.flag("f2"), lab.flag("f3")

    def during(lab_):
        lab_.wait_for(f1)
        server_drops_output(True)
        open(f2, "w").close()
        lab_.wait_for(f3)
        server_drops_output(False)
    return tcp_exchange(lab, out, ("recvreq", "response:300", "touch:" + f1, "await:" + f2, "linger0", "close",
                                   "touch:" + f3),
                        ("request:/a", "recv", "sleep:4", "request:/b", "recv"), during=during)


def backlog_burst(lab: Lab, out: Path, *, abort: bool, gap: float = 0.3, port: int = 8080):
    """Two captured clients meet a listener (backlog 2: three accept-queue slots) whose queue
    three other clients, outside the capture, have filled between the captured clients'
    handshakes and their requests.

    Linux drops a SYN while the accept queue is full, so an overflow is seen only by a
    handshake that began while there was room. TCP_DEFER_ACCEPT keeps a completed handshake
    out of the accept queue until its first data arrives: the captured clients connect first,
    then the other clients (in the router namespace, so their packets never cross the client's
    link) connect and send, taking the three slots, then the captured clients send GAP seconds
    apart. SYN cookies are off in the server namespace: every handshake waits in the SYN queue.
    With ABORT the server never accepts and resets an overflowing connection
    (tcp_abort_on_overflow=1); without it, it drops the request and starts accepting 1 s after
    the last captured request, serving all five.
    """
    nsx(SERVER, "sysctl", "-qw", "net.ipv4.tcp_syncookies=0", f"net.ipv4.tcp_abort_on_overflow={int(abort)}")
    last = lab.flag("last")
    listener_steps = ("sleep:60",) if abort else ("await:" + last, "sleep:1", "serve:5,400")
    client_steps = ("timeout:3", "recv") if abort else ("usertimeout:15000", "recvall", "close")
    logs = []
    with lab.capture(out):
        srv = lab.start(SERVER, "tcp-listener", SERVER4, port, "backlog:2", "deferaccept:5", *listener_steps)
        captured = []
        for i in range(2):
            conn, go = lab.flag(f"conn{i}"), lab.flag(f"go{i}")
            captured.append((go, lab.start(CLIENT, "tcp-client", SERVER4, port, "touch:" + conn, "await:" + go,
                                           f"request:/{i + 1}", *client_steps)))
            lab.wait_for(conn)
        others = []
        for i in range(3):
            sent = lab.flag(f"sent{i}")
            others.append(lab.start(ROUTER, "tcp-client", SERVER4, port, f"request:/other{i + 1}", "touch:" + sent,
                                    *client_steps))
            lab.wait_for(sent)
            time.sleep(0.1)
        for go, _ in captured:
            open(go, "w").close()
            time.sleep(gap)
        open(last, "w").close()
        for i, (_, cli) in enumerate(captured):
            logs.append(f"client{i + 1}: " + lab.finish(cli).strip().replace("\n", " | "))
    for i, cli in enumerate(others):
        logs.append(f"other{i + 1}: " + lab.finish(cli).strip().replace("\n", " | "))
    srv.kill()
    logs.append("listener: " + srv.communicate()[0].strip().replace("\n", " | "))
    return logs


@sample("rst011-accept-queue-overflow", "netns",
        "A server listens on port 8080 with backlog 2 (three accept-queue slots) and "
        "TCP_DEFER_ACCEPT, never calls accept(), and has net.ipv4.tcp_abort_on_overflow=1 (SYN "
        "cookies off). Two clients in the capture complete their handshakes (SYN, SYN-ACK, ACK: "
        "frames 1-3 and 4-6). Three other clients, not in the capture, then connect and send "
        "requests, which fill the accept queue. The captured clients send GET /1 (frame 7) and, "
        "0.3 s later, GET /2 (frame 9): each overflows the queue and is answered at once by a "
        "bare RST from the server's stack (frames 8 and 10: flags R only, seq = the request's "
        "ack number, the server's TTL 127, IP ID 0), with no server data and no ACK of the "
        "request before it. Both clients' recv fails with ECONNRESET. Captured on the client's "
        "interface.",
        expect=[fires("RST011", "client", "WSAECONNRESET"), fires("RST011", "client", "WSAECONNRESET")])
def rst011(lab, out):
    return backlog_burst(lab, out, abort=True)


@sample("rst011-silent-backlog-full-no-abort", "netns",
        "The same two captured clients and the same full three-slot accept queue "
        "(TCP_DEFER_ACCEPT, SYN cookies off), but with net.ipv4.tcp_abort_on_overflow=0 and a "
        "server that starts accepting 1 s after the second request: the overflowing requests "
        "(frames 7 and 9) are silently dropped (no ACK, no RST), their clients retransmit them "
        "with backoff (frames 8 to 15 and 22) until the server drains its queue, then each is "
        "ACKed and answered with 400 bytes (frames 16-17 and 23-24) and both connections end "
        "with FINs; no RST.",
        silent_for=("RST011", "RST007", "RST001"))
def rst011_silent(lab, out):
    return backlog_burst(lab, out, abort=False)


@sample("tmo001-user-timeout-then-reset", "netns",
        "The client connects (handshake passes) with TCP_USER_TIMEOUT 3000 ms and sends GET /a; "
        "the router drops everything from client to server from then on (iptables DROP), so the "
        "request (frame 4) is sent again 0.21 s later (a tail loss probe), then retransmitted on "
        "timeout with exponential backoff (frames 6 to 9, 0.21, 0.44, 0.83, 1.66 s apart), never "
        "acknowledged, and after the last one the client's stack gives up without sending anything "
        "(recv fails with ETIMEDOUT; Linux sends no RST on this give-up). The router then stops "
        "dropping; 6 s after the handshake the server, which never saw the request, closes its "
        "idle connection with FIN, and the client's stack, which no longer has a socket for it, "
        "answers the FIN (frame 10) with a bare RST (frame 11: flags R only, seq = the FIN's ack "
        "number, TTL 64 and IP ID 0). Captured "
        "on the client's interface.",
        expect=[fires("TMO001", "client", "WSAETIMEDOUT")], silent_for=("RST001", "RST005"))
def tmo001_user_timeout(lab, out):
    f1, f2 = lab.flag("f1"), lab.flag("f2")

    def during(lab_):
        lab_.wait_for(f1)
        router("iptables", "-A", "FORWARD", "-s", CLIENT4, "-d", SERVER4, "-p", "tcp", "-j", "DROP")
        open(f2, "w").close()
        time.sleep(4.5)
        router("iptables", "-F", "FORWARD")
    return tcp_exchange(lab, out, ("sleep:6", "close"),
                        ("usertimeout:3000", "touch:" + f1, "await:" + f2, "request:/a", "recv"), during=during)


def programs(lab: Lab, out: Path, server_cmd, client_cmd, *, port: int = 443):
    """A real server program and a real client program (openssl, curl) inside one capture.

    The server's stdin stays an open pipe: `openssl s_server` reads commands from it and
    shuts down at EOF. Only the lines that say how each side ended are kept in the log.
    """
    def ends(text: str) -> str:
        keep = [line.strip() for line in text.splitlines()
                if any(w in line for w in ("error", "alert", "Protocol", "Cipher is", "HTTP", "CLOSED"))]
        return " | ".join(keep[-4:])

    lab.one_segment_per_packet()
    with lab.capture(out):
        srv = subprocess.Popen(["ip", "netns", "exec", SERVER, *server_cmd], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lab.wait_listening(SERVER, port)
        cli = subprocess.run(["ip", "netns", "exec", CLIENT, *client_cmd], stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, timeout=30)
        try:
            srv_out, _ = srv.communicate(timeout=3)
        except subprocess.TimeoutExpired:
            srv.kill()
            srv_out, _ = srv.communicate()
    return [f"client: exit {cli.returncode} " + ends(cli.stdout + cli.stderr), "server: " + ends(srv_out)]


def s_server(lab: Lab, version: str, *extra: str) -> tuple:
    return ("openssl", "s_server", "-" + version, "-accept", "443", "-naccept", "1",
            "-cert", str(lab.cert), "-key", str(lab.key), *extra)


@sample("tls002-version-alert", "netns",
        "`openssl s_client -tls1_2` against `openssl s_server -tls1_3` (OpenSSL 3.0): after the "
        "TCP handshake the client sends its ClientHello (TLS 1.2 only, frame 4); the server ACKs "
        "it and answers with one TLS record (frame 6): a fatal alert, protocol_version (70), in a "
        "record whose version field says TLS 1.2; the client ACKs it; then the server closes with "
        "FIN (frame 8), the client with FIN (frame 9), and the server ACKs: an orderly TCP close, "
        "no RST anywhere. No socket error: "
        "the TLS library fails (s_client prints 'tlsv1 alert protocol version ... SSL alert "
        "number 70'). Captured on the client's interface.",
        expect=[fires("TLS002", "client")], silent_for=("TLS001",))
def tls002(lab, out):
    return programs(lab, out, s_server(lab, "tls1_3"),
                    ("openssl", "s_client", "-tls1_2", "-connect", f"{SERVER4}:443"))


@sample("tls002-silent-close-notify-tls13", "netns",
        "A healthy HTTPS request: `curl -k https://198.51.100.20/` against `openssl s_server "
        "-tls1_3 -www`. Full TLS 1.3 handshake, the request, the server's status page (about "
        "5 KB) and two session tickets, then the server sends close_notify (frame 18), the "
        "client answers with its own close_notify (frame 19; in TLS 1.3 both are encrypted: each "
        "is an application_data record of 19 bytes, 24 with its header), and both close with FIN "
        "(frames 20, 21); no RST.",
        silent_for=("TLS001", "TLS002"))
def tls002_silent13(lab, out):
    return programs(lab, out, s_server(lab, "tls1_3", "-www"), ("curl", "-sk", "-o", "/dev/null",
                                                                  "-w", "HTTP %{http_code}", f"https://{SERVER4}/"))


@sample("tls002-silent-close-notify-tls12", "netns",
        "The same healthy HTTPS request over TLS 1.2 (`openssl s_server -tls1_2 -www`): after "
        "the response the server sends close_notify (frame 17: an encrypted alert record, content "
        "type 21), the client answers with its own close_notify (frame 18), and both close with "
        "FIN (frames 19, 20); no RST.",
        silent_for=("TLS001", "TLS002"))
def tls002_silent12(lab, out):
    return programs(lab, out, s_server(lab, "tls1_2", "-www"), ("curl", "-sk", "-o", "/dev/null",
                                                                  "-w", "HTTP %{http_code}", f"https://{SERVER4}/"))


def stateful_router(established_timeout: int) -> None:
    """The router becomes a stateful firewall that forgets idle connections after
    ESTABLISHED_TIMEOUT seconds and resets any segment it no longer has state for.

    Loose pickup is off, so a mid-stream segment without state is INVALID, not a new entry.
    The sysctls exist only once the conntrack rule has loaded conntrack in the namespace.
    """
    router("iptables", "-A", "FORWARD", "-p", "tcp", "-m", "conntrack", "--ctstate", "INVALID,NEW", "!", "--syn",
           "-j", "REJECT", "--reject-with", "tcp-reset")
    router("sysctl", "-qw", f"net.netfilter.nf_conntrack_tcp_timeout_established={established_timeout}",
           "net.netfilter.nf_conntrack_tcp_loose=0")


@sample("rst012-middlebox-idle-timeout", "netns",
        "The router is a stateful firewall (conntrack established timeout 5 s, loose pickup off, "
        "iptables REJECT --reject-with tcp-reset for any non-SYN segment without state). The "
        "client sends GET /a and gets a 300-byte response; both are acknowledged. The client "
        "stays idle 8 s, then sends GET /b (frame 8); the router, which has forgotten the "
        "connection, answers it at once with a bare RST (frame 9: flags R only, IP ID 0, seq = "
        "the request's ack number) in the server's name: TTL 64 at the capture point, where all "
        "the server's packets arrive with 127. The server never sees the request; the client's "
        "recv fails with ECONNRESET. "
        "Captured on the client's interface.",
        expect=[fires("RST012", "client", "WSAECONNRESET")])
def rst012(lab, out):
    stateful_router(5)
    return tcp_exchange(lab, out, ("recvreq", "response:300", "recvreq"),
                        ("request:/a", "recv", "sleep:8", "request:/b", "recv"))


@sample("rst012-silent-idle-within-timeout", "netns",
        "The same stateful firewall (established timeout 5 s), but the client is idle only 2 s "
        "before GET /b: the router still has the connection, the server answers, and both "
        "close with FIN.", silent_for=("RST012", "RST009", "RST007"))
def rst012_silent(lab, out):
    stateful_router(5)
    return tcp_exchange(lab, out, ("recvreq", "response:300", "recvreq", "response:300", "recvall", "close"),
                        ("request:/a", "recv", "sleep:2", "request:/b", "recv", "close"))


# Only ICMP errors: what a capture filtered for ICMP (or one that missed the datagram) holds.
ICMP_ONLY = {"bpf": "icmp or (icmp6 and ip6[40] < 128)"}


@sample("udp001-icmp-only", "netns",
        "A connected UDP client sends a 40-byte datagram to port 5300 on the server, where "
        "nothing listens; the server answers with ICMP destination unreachable, port "
        "unreachable (type 3 code 3, TTL 127), quoting the whole datagram (IP and UDP headers, 40 "
        "payload bytes). The "
        "capture filter kept only ICMP (`icmp`), so the capture holds that one ICMP packet and "
        "not the datagram it quotes. The client's recv fails with ECONNREFUSED (Linux, connected "
        "socket). Captured on the client's interface.",
        expect=[fires("UDP001", "client")])
def udp001_icmp_only(lab, out):
    return udp_exchange(lab, out, ("sendto:40", "recvfrom:1"), port=5300, serve=False, capture_kw=ICMP_ONLY)


@sample("udp001-icmp-only-ipv6", "netns",
        "The same over IPv6: one ICMPv6 destination unreachable, port unreachable (type 1 code "
        "4, hop limit 127) quoting a UDP datagram to port 5300 that the capture (filter "
        "`icmp6`, neighbour discovery left out) does not hold.",
        expect=[fires("UDP001", "client")])
def udp001_icmp_only6(lab, out):
    return udp_exchange(lab, out, ("sendto:40", "recvfrom:1"), addr=SERVER6, port=5300, serve=False,
                        capture_kw=ICMP_ONLY)


@sample("rst001-linger0-then-peer-data", "netns",
        "The client sends GET /a, the server ACKs it; 0.2 s later the client closes with "
        "SO_LINGER 0, so its stack sends RST/ACK (frame 6: the real, abortive close). That RST is lost "
        "beyond the capture point (the router drops the client's RST/ACK segments), so the "
        "server's application, not knowing, sends its 300-byte response (frame 7) about 1 s after "
        "the request; the client's stack, which has no socket any more, answers that data with a "
        "second, bare RST (frame 8: flags R only, seq = the data's ack number, IP ID 0), which reaches "
        "the server: its recv fails with ECONNRESET. Captured on the client's interface.",
        expect=[fires("RST001", "server", "WSAECONNRESET")])
def rst001_then_data(lab, out):
    router("iptables", "-A", "FORWARD", "-s", CLIENT4, "-p", "tcp", "--tcp-flags", "ALL", "RST,ACK", "-j", "DROP")
    return tcp_exchange(lab, out, ("recvreq", "sleep:1", "response:300", "recv"),
                        ("request:/a", "sleep:0.2", "linger0", "close"))


@sample("rst002-capture-starts-at-synack", "netns",
        "The client's socket is bound to local port 80 and connects to a server on port 40000 "
        "(so port numbers suggest the opposite roles). The capture filter drops segments with "
        "SYN set and ACK clear, so the capture starts at the server's SYN-ACK (frame 1, sent by "
        "198.51.100.20:40000, the server), then the client's ACK and GET /big. The server "
        "sends a response head promising 100000 bytes and 3000 of them (three segments), waits "
        "0.3 s and closes with SO_LINGER 0: RST/ACK (frame 11) from the server while the client is still "
        "reading; the client's recv fails with ECONNRESET. Captured on the client's interface.",
        expect=[fires("RST002", "client", "WSAECONNRESET")], silent_for=("RST010", "RST009"))
def rst002_from_synack(lab, out):
    lab.one_segment_per_packet()
    no_syn = {"bpf": "(tcp or udp or icmp or (icmp6 and ip6[40] < 128)) "
                     "and not (tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn)"}
    return tcp_exchange(lab, out, ("recvreq", "partial:100000,3000", "sleep:0.3", "linger0", "close"),
                        ("bindport:80", "request:/big", "recvall"), port=40000, capture_kw=no_syn)


def narrow_client_link(drop_frag_needed: bool) -> None:
    """The router's route to the client's network gets MTU 1280 (the client's own link stays
    1500, so both ends announce MSS 1460). With DROP_FRAG_NEEDED the ICMP "fragmentation
    needed" the router would send back to the server is dropped: a path-MTU black hole."""
    router("ip", "route", "replace", "192.0.2.0/24", "dev", "r0", "proto", "kernel", "scope", "link",
           "src", ROUTER4_C, "mtu", "1280")
    if drop_frag_needed:
        router("iptables", "-A", "OUTPUT", "-p", "icmp", "--icmp-type", "fragmentation-needed", "-j", "DROP")


AT_SERVER = {"ns": SERVER, "iface": "s0"}


@sample("tmo003-pmtu-blackhole", "netns",
        "Captured on the SERVER's interface (the sender's side, where the lost segments are "
        "seen). The router's route toward the client has MTU 1280 and the router drops the ICMP "
        "fragmentation-needed it would send (iptables OUTPUT DROP), while both ends announced "
        "MSS 1460. The client sends GET /big; the server sends a 6000-byte response with DF set: "
        "four full-size segments (frames 6 to 9: 1448 bytes of payload, 1500-byte packets) and a "
        "small last one (frame 10, 275 bytes). Only the small one reaches the client, which "
        "answers with a duplicate ACK carrying a SACK block for it (frame 11; its ack stays at the "
        "end of the request). The server retransmits the first full-size segment at once (frame "
        "12, SACK-triggered) and then on timeout with exponential backoff (frames 13 to 16: "
        "0.20, 0.42, 0.84, 1.66 s apart), never acknowledged; no ICMP comes back. 4 s after its "
        "request the client's application gives up and closes (FIN, frame 17; the server's "
        "stack ACKs it, frame 18). The client's error is its own application timeout.",
        expect=[fires("TMO003", "server")])
def tmo003(lab, out):
    lab.one_segment_per_packet()
    narrow_client_link(drop_frag_needed=True)
    logs = tcp_exchange(lab, out, ("recvreq", "response:6000", "recvall"),
                        ("request:/big", "timeout:4", "recvall"), capture_kw=AT_SERVER)
    # The server's socket would go on retransmitting into the next sample: destroy it.
    nsx(SERVER, "ss", "-K", "sport = :80", check=False)
    return logs


@sample("tmo003-silent-pmtu-works", "netns",
        "Captured on the server's interface. The same 1280-byte MTU on the router's route toward "
        "the client, but path-MTU discovery works: the router answers each full-size segment with "
        "ICMP fragmentation needed (type 3 code 4, next-hop MTU 1280, from 198.51.100.1, TTL 64), "
        "the server resends the data in segments of 1228 and 220 bytes, the client acknowledges "
        "everything, and both close with FIN.", silent_for=("TMO003", "TMO001"))
def tmo003_silent(lab, out):
    lab.one_segment_per_packet()
    narrow_client_link(drop_frag_needed=False)
    return tcp_exchange(lab, out, ("recvreq", "response:6000", "shutwr", "recvall", "close"),
                        ("request:/big", "recvall", "close"), capture_kw=AT_SERVER)


def lossy_then_dark(f1: str, f2: str, lossy: float = 1.0, dark: bool = True):
    """A DURING callback: once the server has sent the first part of its response (F1), the
    router passes only every fourth data segment from the server for LOSSY seconds, then none
    (DARK) or all of them again.

    `statistic --mode nth` makes the choice of survivors a counter, not a coin.
    """
    data = ("-s", SERVER4, "-d", CLIENT4, "-p", "tcp", "-m", "length", "--length", "100:65535")

    def during(lab_):
        lab_.wait_for(f1)
        time.sleep(0.3)
        router("iptables", "-A", "FORWARD", *data, "-m", "statistic", "--mode", "nth", "--every", "4",
               "--packet", "3", "-j", "ACCEPT")
        router("iptables", "-A", "FORWARD", *data, "-j", "DROP")
        open(f2, "w").close()
        time.sleep(lossy)
        router("iptables", "-D", "FORWARD", "1")
        if not dark:
            router("iptables", "-D", "FORWARD", "1")
    return during


@sample("tmo004-stalled-download-reset", "netns",
        "The client sends GET /big; the server answers with a head promising 24000 bytes and "
        "sends the first 6000 (frames 6 to 14, each acknowledged). Then the router starts losing "
        "the server's data: for 1 s only every fourth data segment from the server gets through "
        "(frames 16 to 35 arrive out of order, beyond holes, and the client answers each with a "
        "duplicate ACK carrying SACK blocks), then none at all. Two retransmissions fill part of "
        "the first hole (frames 36 and 38); the client's last ACK (frame 39, 1.2 s) still leaves a "
        "1448-byte hole below data it has SACKed up to the end of the response, and the server's "
        "retransmissions of that hole never arrive. The client's application sees no progress "
        "for 3 s and closes with SO_LINGER 0: RST/ACK from the client (frame 40), 3.0 s after its "
        "last ACK, while the server still has unacknowledged data in flight. The server's recv "
        "fails with ECONNRESET. One failure, one finding: the client's stalled download, whose "
        "only socket error is the server's ECONNRESET (the client's own close is deliberate). "
        "Captured on the client's interface.",
        expect=[fires("TMO004", "server", "WSAECONNRESET")])
def tmo004(lab, out):
    lab.one_segment_per_packet()
    f1, f2 = lab.flag("f1"), lab.flag("f2")
    return tcp_exchange(lab, out, ("recvreq", "partial:24000,6000", "touch:" + f1, "await:" + f2, "send:18000",
                                   "recv"),
                        ("request:/big", "recvstall:3", "linger0", "close"), during=lossy_then_dark(f1, f2))


@sample("tmo004-silent-lossy-download-recovers", "netns",
        "The same download and the same 1 s of loss (only every fourth data segment from the "
        "server gets through; out-of-order arrivals, duplicate ACKs with SACK blocks, "
        "retransmissions), but then the router passes everything again: the retransmissions "
        "fill the holes, the client reads all 24000 bytes, and both close with FIN; no RST.",
        silent_for=("TMO004", "TMO001", "RST001"))
def tmo004_silent(lab, out):
    lab.one_segment_per_packet()
    f1, f2 = lab.flag("f1"), lab.flag("f2")
    return tcp_exchange(lab, out, ("recvreq", "partial:24000,6000", "touch:" + f1, "await:" + f2, "send:18000",
                                   "shutwr", "recvall", "close"),
                        ("request:/big", "recvall", "close"), during=lossy_then_dark(f1, f2, dark=False))


@sample("rst007-silent-4s-then-answered", "netns",
        "One request and response, then 4 s of silence (the same as rst007-half-open-after-4s), "
        "but the server still has the connection: GET /b is answered with 300 bytes and both "
        "close with FIN; no RST.", silent_for=("RST007", "RST008", "RST012"))
def rst007_silent_4s(lab, out):
    return tcp_exchange(lab, out, ("recvreq", "response:300", "recvreq", "response:300", "recvall", "close"),
                        ("request:/a", "recv", "sleep:4", "request:/b", "recv", "close"))


# ---------------------------------------------------------------------------------------------
# crafted samples
# ---------------------------------------------------------------------------------------------

from samples_lib import crafted  # noqa: E402  (registers the scapy samples)

crafted.register(sample, fires)

from samples_lib import windows  # noqa: E402  (registers the ETL and mirrored samples)

windows.register(sample, fires)


# ---------------------------------------------------------------------------------------------

def write_sidecar(s: Sample) -> None:
    s.path.with_suffix(".yaml").write_text(
        "# Generated by scripts/make_samples.py; edit the sample's entry there, not this file.\n"
        + yaml.safe_dump(s.sidecar(), sort_keys=False, width=100))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", metavar="NAME", help="make only these samples")
    ap.add_argument("--list", action="store_true", help="list the samples and exit")
    ap.add_argument("--sidecars-only", action="store_true", help="rewrite the YAML sidecars only")
    args = ap.parse_args(argv)
    chosen = REGISTRY
    if args.only:
        unknown = set(args.only) - {s.name for s in REGISTRY}
        if unknown:
            ap.error("unknown sample(s): " + ", ".join(sorted(unknown)))
        chosen = [s for s in REGISTRY if s.name in args.only]
    if args.list:
        for s in chosen:
            print(f"{s.name:50} {s.made_by}")
        return 0
    SAMPLES.mkdir(exist_ok=True)
    for s in chosen:
        write_sidecar(s)
    if args.sidecars_only:
        return 0
    crafted_ones = [s for s in chosen if s.made_by == "scapy"]
    real_ones = [s for s in chosen if s.made_by == "netns"]
    for s in crafted_ones:
        s.make(s.path)
        print(f"{s.name}: crafted")
    if real_ones:
        for tool in ("ip", "tcpdump", "iptables"):
            if not shutil.which(tool):
                print(f"make_samples: {tool} is needed for the netns samples", file=sys.stderr)
                return 2
        lab = Lab()
        try:
            lab.up()
            for s in real_ones:
                try:
                    logs = s.make(lab, s.path)
                finally:
                    reset_router()
                    lab.settle()
                print(f"{s.name}:")
                for line in logs or ():
                    print("   ", line)
        finally:
            lab.down()
            shutil.rmtree(lab.tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
