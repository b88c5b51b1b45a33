#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A stand-in for ambientd's CNI socket (cni/cni.h protocol) for the plugin's
own tests: appends every request line to LOG and answers according to the
content of MODE_FILE: "ok" (captured), "refuse" ({"ok":false}), "silent"
(never answers; the plugin must time out), "garbage" (not JSON).

  fake_cni_agent.py SOCKET LOG MODE_FILE
"""
import os
import socket
import sys
import threading

path, log, mode_file = sys.argv[1:4]
try:
    os.unlink(path)
except FileNotFoundError:
    pass
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(path)
srv.listen(16)


def serve(conn):
    with conn:
        data = b""
        while not data.endswith(b"\n"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
        with open(log, "ab") as f:
            f.write(data if data.endswith(b"\n") else data + b"\n")
        mode = open(mode_file).read().strip()
        if mode == "ok":
            conn.sendall(b'{"ok":true,"captured":true}\n')
        elif mode == "refuse":
            conn.sendall(b'{"ok":false,"error":"pod not wanted"}\n')
        elif mode == "garbage":
            conn.sendall(b"hello\n")
        elif mode == "silent":
            threading.Event().wait(30)


while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
