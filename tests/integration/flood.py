#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Hostile clients for test_guard.sh (standard library only).

flood.py hold HOST PORT COUNT [--hello] [--seconds S]
    Opens COUNT TCP connections at once (non-blocking) and holds them for
    S seconds (default: until stdin closes). --hello: on each, send a TLS
    ClientHello (TLS 1.3, ALPN h2) and never continue the handshake.
    Prints "opened N failed M" once all connects settled (to stdout,
    flushed), then "reset R" when done (connections the server closed or
    reset meanwhile).
flood.py trickle HOST PORT DATA-HEX INTERVAL-MS
    Sends DATA one byte at a time; prints what came back and how long
    after the first byte it came.
"""
import os
import select
import socket
import ssl
import sys
import time


def client_hello():
    """The bytes of one TLS 1.3 ClientHello (ALPN h2), made in memory: sent
    as they are, nothing of the server's answer is ever read, so each
    connection stalls right after the server's first flight."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_alpn_protocols(["h2"])
    out = ssl.MemoryBIO()
    obj = ctx.wrap_bio(ssl.MemoryBIO(), out)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def hold(host, port, count, hello, seconds):
    socks = []
    failed = 0
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect((host, port))
        except BlockingIOError:
            pass
        except OSError:
            failed += 1
            s.close()
            continue
        socks.append(s)
    # Wait for every connect to settle.
    deadline = time.monotonic() + 10
    pending = {s.fileno(): s for s in socks}
    good = []
    poller = select.poll()
    for fd in pending:
        poller.register(fd, select.POLLOUT)
    while pending and time.monotonic() < deadline:
        for fd, _ in poller.poll(500):
            s = pending.pop(fd)
            poller.unregister(fd)
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                failed += 1
                s.close()
            else:
                good.append(s)
    failed += len(pending)
    for s in pending.values():
        s.close()
    if hello:
        msg = client_hello()
        for s in good:
            try:
                s.send(msg)
            except OSError:
                pass
    print(f"opened {len(good)} failed {failed}", flush=True)
    if seconds:
        time.sleep(seconds)
    else:
        sys.stdin.read()  # until EOF
    reset = 0
    for s in good:
        try:
            s.setblocking(False)
            if s.recv(1) == b"":
                reset += 1
        except BlockingIOError:
            pass
        except OSError:
            reset += 1
        s.close()
    print(f"reset {reset}", flush=True)


def trickle(host, port, data, interval_ms):
    s = socket.create_connection((host, port), timeout=5)
    t0 = time.monotonic()
    got = b""
    for b in data:
        try:
            s.send(bytes([b]))
        except OSError:
            break
        p = select.poll()
        p.register(s, select.POLLIN)
        if p.poll(interval_ms):
            break
    s.settimeout(5)
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
    except OSError:
        pass
    first = got.split(b"\r\n")[0].decode(errors="replace")
    print(f"after {int((time.monotonic() - t0) * 1000)} ms: {first}", flush=True)


def main():
    a = sys.argv[1:]
    if a and a[0] == "hold":
        hello = "--hello" in a
        seconds = 0.0
        if "--seconds" in a:
            seconds = float(a[a.index("--seconds") + 1])
        hold(a[1], int(a[2]), int(a[3]), hello, seconds)
    elif a and a[0] == "trickle":
        trickle(a[1], int(a[2]), bytes.fromhex(a[3]), int(a[4]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
