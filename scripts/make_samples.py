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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # analyzer, for the ETL writer's facts

import yaml  # noqa: E402

from samples_lib.lab import (CLIENT, CLIENT4, CLIENT6, ROUTER, SERVER, SERVER4, SERVER6,  # noqa: E402
                             Lab, nsx)

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
    """Undo what a sample changed on the router: iptables rules and special routes."""
    nsx(ROUTER, "iptables", "-F", "FORWARD", check=False)
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


def udp_exchange(lab, out, client_steps, *, addr=SERVER4, port=53, serve=True, during=None):
    logs = []
    with lab.capture(out):
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


# ---------------------------------------------------------------------------------------------
# TLS001, TDS001
# ---------------------------------------------------------------------------------------------

@sample("tls001-version-alert", "netns",
        "A TLS client limited to TLS 1.2 meets a server that accepts only TLS 1.3: the server "
        "answers the ClientHello with a protocol_version alert and closes.",
        expect=[fires("TLS001", "client")])
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
        "ICMP host unreachable.", expect=[fires("UDP003", "client")], silent_for=("UDP001", "CON003"))
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
