"""Socket peers that make the sample conversations: one script, run with `ip netns exec`.

Usage (run by make_samples.py, never by hand):
    python3 peers.py tcp-server ADDR PORT STEP...
    python3 peers.py tcp-client ADDR PORT STEP...
    python3 peers.py tcp-listener ADDR PORT STEP...
    python3 peers.py udp-server ADDR PORT STEP...
    python3 peers.py udp-client ADDR PORT STEP...

Each STEP is `name` or `name:arg`, run in order on the one socket (the accepted one for a
server). The script prints one line per step to stdout and, when a step fails, the errno name
it saw ("ERR recv ECONNRESET") and stops: that line is the socket error the sample stands for.
Steps:
    send:N          send N bytes of printable filler
    request:PATH    send an HTTP/1.1 GET request line and headers
    response:N      send an HTTP/1.1 200 response with an N-byte body
    partial:N,M     send a response head promising N body bytes, then only M of them
    post:PATH,N     send an HTTP/1.1 POST head announcing an N-byte body (send:N sends it)
    recvreq         receive until the end of an HTTP request head
    recv            one recv (up to 64 KiB)
    recvn:N         receive exactly N bytes (or EOF)
    recvall         receive until EOF
    sleep:S         sleep S seconds
    linger0         SO_LINGER on with a zero timeout: close() then resets the connection
    keepalive:I,V,C SO_KEEPALIVE with TCP_KEEPIDLE I, TCP_KEEPINTVL V, TCP_KEEPCNT C
    shutwr          shutdown(SHUT_WR): send our FIN
    close           close()
    touch:PATH      create PATH (tells the orchestrator a point was reached)
    await:PATH      wait until PATH exists (the orchestrator changed the network)
    tls-server:CERT,KEY,MIN   wrap the socket as a TLS server (MIN: 1.2 or 1.3)
    tls-client:MAX            wrap as a TLS client that allows at most MAX (1.2 or 1.3)
    prelogin        send a TDS PRELOGIN packet (MS-TDS 2.2.6.5)
    prelogin-reply  send a TDS PRELOGIN response (tabular result packet, MS-TDS 2.2.6.5)
    ttl:N           (udp) set the IP TTL / hop limit of what we send
    sendto:N        (udp) send an N-byte datagram to the peer
    recvfrom:S      (udp) wait up to S seconds for a datagram
    usertimeout:MS  TCP_USER_TIMEOUT: the stack gives up on unacknowledged data after MS ms
    timeout:S       socket timeout: a later recv that waits longer than S seconds fails
    recvstall:S     receive until EOF or S seconds pass without data, then go on (no error)

Options a role reads before it connects or listens (given first, among the steps):
    bindport:N      (tcp-client) bind the client socket to local port N before connect()
    backlog:N       (tcp-listener) listen(N)
    deferaccept:S   (tcp-listener) TCP_DEFER_ACCEPT: a connection joins the accept queue only
                    when its first data arrives, so several handshakes can complete at once
Steps of a tcp-listener (run on the listening socket; it never accepts unless told):
    serve:N,SIZE    accept N connections in turn; on each read a request, answer SIZE bytes, close
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import ssl
import struct
import sys
import time

FILLER = b"abcdefghijklmnopqrstuvwxyz0123456789"


def filler(n: int) -> bytes:
    """N printable bytes, so the payload reads as text in a packet viewer."""
    return (FILLER * (n // len(FILLER) + 1))[:n]


def tds_packet(ptype: int, options: list[tuple[int, bytes]]) -> bytes:
    """A TDS packet carrying PRELOGIN option tokens.

    MS-TDS 2.2.6.5: a list of (token, offset, length) entries (5 bytes each, big-endian
    offset/length counted from the start of the PRELOGIN data), a 0xFF terminator, then the
    option data. MS-TDS 2.2.3.1: 8-byte packet header, type 0x12 PRELOGIN from the client,
    0x04 tabular result for the server's answer; status 0x01 end of message.
    """
    table_len = 5 * len(options) + 1
    table = b""
    data = b""
    for token, value in options:
        table += struct.pack(">BHH", token, table_len + len(data), len(value))
        data += value
    body = table + b"\xff" + data
    return struct.pack(">BBHHBB", ptype, 0x01, 8 + len(body), 0, 1, 0) + body


# PRELOGIN option tokens, MS-TDS 2.2.6.5: VERSION 0x00, ENCRYPTION 0x01, INSTOPT 0x02,
# THREADID 0x03, MARS 0x04. ENCRYPTION 0x00 ENCRYPT_OFF, 0x02 ENCRYPT_NOT_SUP.
PRELOGIN = tds_packet(0x12, [
    (0x00, bytes([16, 0, 0x11, 0xA4, 0, 0])),   # client library 16.0.4516, sub-build 0
    (0x01, b"\x00"),                              # ENCRYPT_OFF
    (0x02, b"\x00"),                              # instance: default (empty, NUL-terminated)
    (0x03, struct.pack(">I", 0x00001234)),        # client thread id
    (0x04, b"\x00"),                              # MARS off
])
PRELOGIN_REPLY = tds_packet(0x04, [
    (0x00, bytes([15, 0, 0x07, 0xD0, 0, 0])),   # server 15.0.2000
    (0x01, b"\x02"),                              # ENCRYPT_NOT_SUP
    (0x02, b"\x00"),
    (0x03, b""),
    (0x04, b"\x00"),
])

TLS_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def say(*words: object) -> None:
    print(*words, flush=True)


def recv_until(sock, marker: bytes) -> bytes:
    got = b""
    while marker not in got:
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def recv_until_stall(sock, quiet: float) -> int:
    """Read until EOF or until QUIET seconds pass with no data: an application's own
    no-progress timeout, which then goes on to its next step instead of failing."""
    sock.settimeout(quiet)
    total = 0
    try:
        while chunk := sock.recv(65536):
            total += len(chunk)
    except TimeoutError:
        pass
    sock.settimeout(None)
    return total


def serve(lsock, arg: str) -> None:
    """Accept N connections in turn and answer each one's request with SIZE bytes."""
    count, size = (int(x) for x in arg.split(","))
    for _ in range(count):
        conn, _ = lsock.accept()
        run_steps(conn, ["recvreq", f"response:{size}", "close"])


# Steps about timeouts and accepting, kept apart from run_steps' chain so it stays readable.
TIMING_STEPS = {
    "usertimeout": lambda sock, arg: sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(arg)),
    "timeout": lambda sock, arg: sock.settimeout(float(arg)),
    "recvstall": lambda sock, arg: say("recvstall", recv_until_stall(sock, float(arg))),
    "serve": serve,
}


def options(steps: list[str], names: tuple[str, ...]) -> tuple[dict[str, str], list[str]]:
    """Split the role options (bindport:, backlog:, ...) from the steps that follow them."""
    opts = {}
    rest = []
    for step in steps:
        name, _, arg = step.partition(":")
        if name in names:
            opts[name] = arg
        else:
            rest.append(step)
    return opts, rest


def run_steps(sock, steps: list[str], udp_peer=None) -> None:
    """Run the steps in order; report the first socket error and stop there."""
    for step in steps:
        name, _, arg = step.partition(":")
        try:
            if name == "send":
                sock.sendall(filler(int(arg)))
            elif name == "request":
                sock.sendall(b"GET " + arg.encode() + b" HTTP/1.1\r\nHost: www.example.com\r\n"
                             b"User-Agent: wsadiag-sample\r\n\r\n")
            elif name == "post":
                path, length = arg.split(",")
                sock.sendall(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: www.example.com\r\n"
                             b"Content-Length: " + length.encode() + b"\r\n\r\n")
            elif name == "partial":
                promised, sent = (int(x) for x in arg.split(","))
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
                             + str(promised).encode() + b"\r\n\r\n" + filler(sent))
            elif name == "response":
                body = filler(int(arg))
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
                             + str(len(body)).encode() + b"\r\n\r\n" + body)
            elif name == "recvreq":
                say("recvreq", len(recv_until(sock, b"\r\n\r\n")))
            elif name == "recv":
                say("recv", len(sock.recv(65536)))
            elif name == "recvn":
                want, got = int(arg), 0
                while got < want:
                    chunk = sock.recv(want - got)
                    if not chunk:
                        break
                    got += len(chunk)
                say("recvn", got)
            elif name == "recvall":
                total = 0
                while chunk := sock.recv(65536):
                    total += len(chunk)
                say("recvall", total)
            elif name == "sleep":
                time.sleep(float(arg))
            elif name == "linger0":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif name == "keepalive":
                idle, intvl, cnt = (int(x) for x in arg.split(","))
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, intvl)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, cnt)
            elif name == "shutwr":
                sock.shutdown(socket.SHUT_WR)
            elif name == "close":
                sock.close()
            elif name == "sigkill":
                # the process dies at once: the kernel closes its sockets as close() would (RST if
                # data is unread, else FIN), and the program runs no code of its own to do it
                say("sigkill", 0)
                sys.stdout.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            elif name == "touch":
                open(arg, "w").close()
            elif name == "await":
                deadline = time.monotonic() + 30
                while not os.path.exists(arg) and time.monotonic() < deadline:
                    time.sleep(0.02)
            elif name == "tls-server":
                cert, key, minimum = arg.split(",")
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.minimum_version = TLS_VERSIONS[minimum]
                ctx.load_cert_chain(cert, key)
                sock = ctx.wrap_socket(sock, server_side=True)
                say("tls", sock.version())
            elif name == "tls-client":
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                ctx.maximum_version = TLS_VERSIONS[arg]
                sock = ctx.wrap_socket(sock, server_hostname="www.example.com")
                say("tls", sock.version())
            elif name == "prelogin":
                sock.sendall(PRELOGIN)
            elif name == "prelogin-reply":
                sock.sendall(PRELOGIN_REPLY)
            elif name == "ttl":
                if sock.family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, int(arg))
                else:
                    sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, int(arg))
            elif name == "sendto":
                sock.sendto(filler(int(arg)), udp_peer)
            elif name == "recvfrom":
                sock.settimeout(float(arg))
                data, peer = sock.recvfrom(65536)
                say("recvfrom", len(data))
                sock.settimeout(None)
            elif name == "echo":
                # udp server: answer the last datagram's sender
                sock.sendto(filler(int(arg)), udp_peer)
            elif name in TIMING_STEPS:
                TIMING_STEPS[name](sock, arg)
            elif name == "recvfrom-peer":
                data, udp_peer = sock.recvfrom(65536)
                say("recvfrom", len(data))
            else:
                raise SystemExit(f"unknown step {step!r}")
            say("ok", step)
        except TimeoutError as exc:
            # socket.timeout is TimeoutError, and so is a real ETIMEDOUT from the stack
            say("ERR", step, errno.errorcode.get(exc.errno, "timeout (no answer in time)"))
            return
        except ssl.SSLError as exc:
            say("ERR", step, "SSL", exc.reason)
            return
        except OSError as exc:
            say("ERR", step, errno.errorcode.get(exc.errno, str(exc.errno)))
            return


def main(argv: list[str]) -> None:
    role, addr, port, *steps = argv
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    peer = (addr, int(port))
    if role == "tcp-server":
        lsock = socket.socket(family, socket.SOCK_STREAM)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind(peer)
        lsock.listen(4)
        say("listening")
        conn, _ = lsock.accept()
        lsock.close()
        run_steps(conn, steps)
    elif role == "tcp-listener":
        opts, steps = options(steps, ("backlog", "deferaccept"))
        lsock = socket.socket(family, socket.SOCK_STREAM)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if "deferaccept" in opts:
            lsock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, int(opts["deferaccept"]))
        lsock.bind(peer)
        lsock.listen(int(opts.get("backlog", "4")))
        say("listening")
        run_steps(lsock, steps)
    elif role == "tcp-client":
        opts, steps = options(steps, ("bindport",))
        sock = socket.socket(family, socket.SOCK_STREAM)
        if "bindport" in opts:
            sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", int(opts["bindport"])))
        try:
            sock.connect(peer)
        except OSError as exc:
            say("ERR connect", errno.errorcode.get(exc.errno, str(exc.errno)))
            return
        say("connected")
        run_steps(sock, steps)
    elif role == "udp-server":
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.bind(peer)
        say("listening")
        run_steps(sock, steps)
    elif role == "udp-client":
        sock = socket.socket(family, socket.SOCK_DGRAM)
        # connected UDP socket: Linux then reports ICMP errors as ECONNREFUSED etc. on recv
        sock.connect(peer)
        run_steps(sock, steps, udp_peer=peer)
    else:
        raise SystemExit(f"unknown role {role!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
