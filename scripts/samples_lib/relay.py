"""A TCP relay for the path samples: a reverse proxy that terminates each connection on the router.

Usage (run by make_path_samples.py in the router namespace, never by hand):
    python3 relay.py LISTEN_ADDR LISTEN_PORT TARGET_ADDR TARGET_PORT COUNT

Accepts COUNT connections; for each it opens its own connection to TARGET and copies the bytes
both ways, passing a half-close on (shutdown) as a proxy does. The two legs have their own ports,
initial sequence numbers, handshakes and acknowledgements: only the payload crosses, as through a
load balancer in full-proxy mode. Prints "listening" once it accepts connections.
"""

from __future__ import annotations

import socket
import sys
import threading


def pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while chunk := src.recv(65536):
            dst.sendall(chunk)
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def serve(conn: socket.socket, target: tuple[str, int]) -> None:
    with conn, socket.create_connection(target) as up:
        there = threading.Thread(target=pump, args=(conn, up))
        there.start()
        pump(up, conn)
        there.join()


def main(argv: list[str]) -> None:
    addr, port, taddr, tport, count = argv
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((addr, int(port)))
    lsock.listen(16)
    print("listening", flush=True)
    workers = []
    for _ in range(int(count)):
        conn, _ = lsock.accept()
        t = threading.Thread(target=serve, args=(conn, (taddr, int(tport))))
        t.start()
        workers.append(t)
    lsock.close()
    for t in workers:
        t.join()
    print("relayed", count, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
