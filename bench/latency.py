#!/usr/bin/env python3
"""A latency front for the benchmarks: a TCP proxy that makes loopback look
like a network RTT_MS away. A new connection is held for one round trip
(the TCP handshake) before any byte passes; every byte then arrives half a
round trip after it was sent, in each direction, without limiting how many
bytes are in flight (so that a request costs a round trip, and a stream
only its latency, as on a real network). TLS passes through untouched.
It writes how many connections it accepted to COUNT_FILE after each one.

Usage: latency.py LISTEN_HOST LISTEN_PORT UPSTREAM_HOST UPSTREAM_PORT RTT_MS COUNT_FILE
"""
import collections
import socket
import sys
import threading
import time


def pipe(src, dst, delay):
    """Passes src's bytes to dst, each `delay` seconds after it was read."""
    queue = collections.deque()
    ready = threading.Condition()

    def writer():
        while True:
            with ready:
                while not queue:
                    ready.wait()
                due, data = queue.popleft()
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if data is None:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            try:
                dst.sendall(data)
            except OSError:
                return

    threading.Thread(target=writer, daemon=True).start()
    while True:
        try:
            data = src.recv(1 << 16)
        except OSError:
            data = b""
        with ready:
            queue.append((time.monotonic() + delay, data or None))
            ready.notify()
        if not data:
            return


def serve(client, upstream, rtt):
    time.sleep(rtt)  # the handshake
    try:
        server = socket.create_connection(upstream)
    except OSError:
        client.close()
        return
    for s in (client, server):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    threading.Thread(target=pipe, args=(client, server, rtt / 2), daemon=True).start()
    threading.Thread(target=pipe, args=(server, client, rtt / 2), daemon=True).start()


def main():
    host, port, up_host, up_port, rtt_ms, count_file = sys.argv[1:7]
    rtt = float(rtt_ms) / 1000
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, int(port)))
    listener.listen(128)
    accepted = 0
    while True:
        client, _ = listener.accept()
        accepted += 1
        with open(count_file, "w") as f:
            f.write(f"{accepted}\n")
        threading.Thread(
            target=serve, args=(client, (up_host, int(up_port)), rtt), daemon=True
        ).start()


if __name__ == "__main__":
    main()
