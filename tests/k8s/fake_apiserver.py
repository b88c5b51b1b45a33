#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A small Kubernetes API server for tests: HTTPS with a test CA, bearer
tokens, list and watch (chunked JSON event stream with BOOKMARKs, 410 Gone
after a compaction) of pods, namespaces, services and endpointslices, merge
patches on pods/status (recorded), and a control API for the test:

  POST /_test/apply    {object}            create or replace (ADDED/MODIFIED)
  POST /_test/delete   {"kind","namespace","name"}           (DELETED)
  POST /_test/compact                      older resourceVersions -> 410 Gone
  POST /_test/close                        end every open watch now
  POST /_test/fail     {"prefix","seconds","code"}  requests -> CODE for a while
  GET  /_test/patches                      PATCH requests received
  GET  /_test/stats                        requests per kind/verb, tokens seen

  fake_apiserver.py --listen IP:PORT --cert C --key K --tokens FILE

FILE holds the accepted tokens, one per line; it is re-read on every
request, so a test rotates tokens by rewriting it.
"""
import argparse
import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

KINDS = {
    "/api/v1/pods": ("Pod", "v1", True),
    "/api/v1/namespaces": ("Namespace", "v1", False),
    "/api/v1/services": ("Service", "v1", True),
    "/apis/discovery.k8s.io/v1/endpointslices": ("EndpointSlice", "discovery.k8s.io/v1", True),
}
BY_KIND = {v[0]: k for k, v in KINDS.items()}

lock = threading.Condition()
rv = 100
compacted = 0  # watches from a resourceVersion below this get 410
close_gen = 0
store = {p: {} for p in KINDS}  # path -> key -> object
events = []  # (rv, path, type, object)
patches = []
fail_rules = []  # [prefix, until, code]
stats = {"requests": {}, "tokens": []}


def key_of(obj, namespaced):
    md = obj["metadata"]
    return f'{md.get("namespace", "")}/{md["name"]}' if namespaced else md["name"]


def record(path, typ, obj):
    """Caller holds lock. Bumps rv, stores, logs the event."""
    global rv
    rv += 1
    obj["metadata"]["resourceVersion"] = str(rv)
    k = key_of(obj, KINDS[path][2])
    if typ == "DELETED":
        store[path].pop(k, None)
    else:
        store[path][k] = obj
    events.append((rv, path, typ, json.loads(json.dumps(obj))))
    lock.notify_all()


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def send_json(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def status(self, code, reason, msg):
        self.send_json(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                              "message": msg, "reason": reason, "code": code})

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(n) or b"null")

    def authorized(self):
        tok = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
        try:
            good = [t.strip() for t in open(self.server.tokens).read().split() if t.strip()]
        except OSError:
            good = []
        with lock:
            if tok and tok not in stats["tokens"]:
                stats["tokens"].append(tok)
        return tok in good

    def injected(self, path):
        with lock:
            for r in fail_rules:
                if path.startswith(r[0]) and time.time() < r[1]:
                    return r[2]
        return None

    def count(self, what):
        with lock:
            stats["requests"][what] = stats["requests"].get(what, 0) + 1

    # ---- control
    def control(self, method, path):
        global compacted, close_gen
        if method == "GET" and path == "/_test/patches":
            with lock:
                return self.send_json(200, patches)
        if method == "GET" and path == "/_test/stats":
            with lock:
                return self.send_json(200, stats)
        if method == "GET" and path == "/_test/objects":
            with lock:
                return self.send_json(200, {p: store[p] for p in store})
        body = self.body()
        with lock:
            if path == "/_test/apply":
                p = BY_KIND[body["kind"]]
                k = key_of(body, KINDS[p][2])
                record(p, "MODIFIED" if k in store[p] else "ADDED", body)
            elif path == "/_test/delete":
                p = BY_KIND[body["kind"]]
                md = {"name": body["name"]}
                if body.get("namespace"):
                    md["namespace"] = body["namespace"]
                k = key_of({"metadata": md}, KINDS[p][2])
                if k in store[p]:
                    record(p, "DELETED", store[p][k])
            elif path == "/_test/compact":
                compacted = rv + 1
            elif path == "/_test/close":
                close_gen += 1
                lock.notify_all()
            elif path == "/_test/fail":
                fail_rules.append([body["prefix"], time.time() + body["seconds"], body["code"]])
            else:
                return self.send_json(404, {})
        self.send_json(200, {"ok": True})

    # ---- API
    def do_GET(self):
        u = urlparse(self.path)
        if u.path.startswith("/_test/"):
            return self.control("GET", u.path)
        if not self.authorized():
            self.count("unauthorized")
            return self.status(401, "Unauthorized", "bad token")
        code = self.injected(u.path)
        if code:
            self.count("injected")
            return self.status(code, "InternalError", "injected failure")
        if u.path not in KINDS:
            return self.status(404, "NotFound", u.path)
        q = parse_qs(u.query)
        if q.get("watch", ["0"])[0] in ("1", "true"):
            self.count(f"watch {KINDS[u.path][0]}")
            return self.watch(u.path, q)
        self.count(f"list {KINDS[u.path][0]}")
        kind, api, _ = KINDS[u.path]
        with lock:
            items = list(store[u.path].values())
            self.send_json(200, {"kind": kind + "List", "apiVersion": api,
                                 "metadata": {"resourceVersion": str(rv)}, "items": items})

    def chunk(self, obj):
        data = (json.dumps(obj) + "\n").encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def watch(self, path, q):
        since = int(q.get("resourceVersion", ["0"])[0] or 0)
        bookmarks = q.get("allowWatchBookmarks", ["false"])[0] == "true"
        timeout = int(q.get("timeoutSeconds", ["300"])[0])
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        with lock:
            gone = since < compacted
        if gone:
            self.chunk({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1",
                        "status": "Failure", "reason": "Expired", "code": 410,
                        "message": f"too old resource version: {since} ({compacted})"}})
            self.wfile.write(b"0\r\n\r\n")
            return
        deadline = time.time() + timeout
        my_close = close_gen
        sent = since
        last_bookmark = time.time()
        try:
            while time.time() < deadline:
                with lock:
                    lock.wait(0.2)
                    if close_gen != my_close:
                        break
                    todo = [e for e in events if e[0] > sent and e[1] == path]
                    cur = rv
                for (erv, _, typ, obj) in todo:
                    self.chunk({"type": typ, "object": obj})
                    sent = erv
                if bookmarks and time.time() - last_bookmark > 1:
                    kind, api, _ = KINDS[path]
                    self.chunk({"type": "BOOKMARK", "object": {
                        "kind": kind, "apiVersion": api,
                        "metadata": {"resourceVersion": str(max(sent, cur))}}})
                    sent = max(sent, cur)
                    last_bookmark = time.time()
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass
        self.close_connection = True

    def do_POST(self):
        u = urlparse(self.path)
        if u.path.startswith("/_test/"):
            return self.control("POST", u.path)
        self.status(405, "MethodNotAllowed", "read-only fake")

    def do_PATCH(self):
        u = urlparse(self.path)
        if not self.authorized():
            return self.status(401, "Unauthorized", "bad token")
        parts = u.path.strip("/").split("/")
        # api/v1/namespaces/NS/pods/NAME/status
        if len(parts) != 7 or parts[:3] != ["api", "v1", "namespaces"] or parts[4] != "pods" \
                or parts[6] != "status":
            return self.status(404, "NotFound", u.path)
        ctype = self.headers.get("Content-Type", "")
        body = self.body()
        with lock:
            patches.append({"path": u.path, "contentType": ctype, "body": body})
        if ctype != "application/merge-patch+json":
            return self.status(415, "UnsupportedMediaType", ctype)
        with lock:
            k = f"{parts[3]}/{parts[5]}"
            pod = store["/api/v1/pods"].get(k)
            if pod is None:
                return self.status(404, "NotFound", k)
            pod = json.loads(json.dumps(pod))
            ann = pod["metadata"].setdefault("annotations", {})
            for a, v in (body.get("metadata", {}).get("annotations") or {}).items():
                if v is None:
                    ann.pop(a, None)
                else:
                    ann[a] = v
            record("/api/v1/pods", "MODIFIED", pod)
            self.send_json(200, pod)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--tokens", required=True)
    a = ap.parse_args()
    host, port = a.listen.rsplit(":", 1)
    srv = ThreadingHTTPServer((host, int(port)), H)
    srv.daemon_threads = True
    srv.tokens = a.tokens
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(a.cert, a.key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    print(f"listening on {a.listen}", flush=True)
    srv.serve_forever()


main()
