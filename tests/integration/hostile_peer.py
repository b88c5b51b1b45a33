#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""A hostile HBONE client for tests/integration/test_hostile.sh.

It holds a valid mesh certificate, completes mutual TLS 1.3 with ALPN h2 on
a pod's 15008 and then misbehaves in one of the ways listed by
`hostile_peer.py --help`. Frames are built here byte by byte (so they can
be wrong on purpose) and header blocks are encoded and decoded with hpack;
the well-behaved idle client is python3-h2's H2Connection. What the server
answered is printed as one JSON object on stdout: the GOAWAY code, the
RST_STREAM codes and :status values by stream, whether and how the
connection ended. The shell script decides what is right.

Run with Debian's /usr/bin/python3 (python3-h2, python3-hpack).
"""
import argparse
import collections
import json
import socket
import ssl
import struct
import sys
import time

import h2.config
import h2.connection
import h2.events
import hpack

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, \
    WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM = ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIO = 0x20
ERRORS = ["NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR",
          "FLOW_CONTROL_ERROR", "SETTINGS_TIMEOUT", "STREAM_CLOSED",
          "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL",
          "COMPRESSION_ERROR", "CONNECT_ERROR", "ENHANCE_YOUR_CALM",
          "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED"]
S_HEADER_TABLE_SIZE, S_ENABLE_PUSH, S_MAX_CONCURRENT_STREAMS, \
    S_INITIAL_WINDOW_SIZE, S_MAX_FRAME_SIZE, S_MAX_HEADER_LIST_SIZE = \
    range(1, 7)
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def err_name(code):
    return ERRORS[code] if code < len(ERRORS) else "0x%x" % code


def frame(ftype, flags, sid, payload=b"", length=None):
    """One frame; `length` overrides the real payload length."""
    n = len(payload) if length is None else length
    return (struct.pack(">I", n)[1:] + bytes([ftype, flags]) +
            struct.pack(">I", sid & 0x7fffffff) + payload)


def settings(*pairs):
    return frame(SETTINGS, 0, 0, b"".join(struct.pack(">HI", k, v)
                                          for k, v in pairs))


def tls_context(args):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False  # the server proves a SPIFFE URI, no name
    ctx.load_verify_locations(args.ca)
    ctx.load_cert_chain(args.cert, args.key)
    ctx.set_alpn_protocols(["h2"])
    return ctx


class Peer:
    """One TLS connection to the server and what came back on it."""

    def __init__(self, args, rcvbuf=None):
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        raw.settimeout(5)
        raw.connect((args.host, args.port))
        self.s = tls_context(args).wrap_socket(raw)
        if self.s.selected_alpn_protocol() != "h2":
            raise RuntimeError("ALPN: %r" % self.s.selected_alpn_protocol())
        self.enc = hpack.Encoder()
        self.dec = hpack.Decoder()
        self.dec.max_header_list_size = 1 << 20
        self.buf = b""
        self.block = None  # (stream, bytes) of a header block in progress
        self.server_settings = {}
        self.settings_seen = False
        self.auto_ack = True  # answer SETTINGS and PING like a client does
        self.goaway = None
        self.goaway_last = None
        self.goaway_debug = ""
        self.rst = {}
        self.status = {}
        self.data = collections.Counter()
        self.frames = collections.Counter()
        self.ping_acks = 0
        self.closed = None
        self.send_error = None
        self.t0 = time.monotonic()
        self.closed_after = None

    # ---- output

    def send(self, b, timeout=5):
        """All of b, or False once the server stopped taking bytes."""
        self.s.settimeout(timeout)
        try:
            self.s.sendall(b)
            return True
        except (socket.timeout, ssl.SSLWantWriteError):
            return False
        except OSError as e:
            # The server is gone for writing; what it sent before (a
            # GOAWAY) may still wait to be read.
            self.send_error = e.__class__.__name__
            return False

    def open(self, *pairs):
        """Client preface + SETTINGS, then the server's SETTINGS."""
        self.send(PREFACE + settings(*pairs))
        self.read_until(lambda: self.settings_seen, 5)
        return self

    def headers(self, sid, fields, end_stream=False, flags=None):
        block = self.enc.encode(fields, huffman=False)
        if flags is None:
            flags = END_HEADERS | (END_STREAM if end_stream else 0)
        return frame(HEADERS, flags, sid, block)

    # ---- input

    def _closed(self, how):
        if self.closed is None:
            self.closed = how
            self.closed_after = round(time.monotonic() - self.t0, 2)

    def read_until(self, pred, secs):
        """Reads until pred() holds, the connection ends or secs passed;
        returns pred()."""
        end = time.monotonic() + secs
        while self.closed is None and not pred():
            left = end - time.monotonic()
            if left <= 0:
                break
            self.s.settimeout(min(left, 0.5))
            try:
                d = self.s.recv(1 << 16)
            except (socket.timeout, ssl.SSLWantReadError):
                continue
            except ConnectionResetError:
                self._closed("reset")
                break
            except ssl.SSLError as e:
                self._closed("tls: %s" % (e.reason or e))
                break
            except OSError as e:
                self._closed("error: %s" % e)
                break
            if not d:
                self._closed("eof")
                break
            self.feed(d)
        return pred()

    def drain(self, secs=0.0):
        """Reads what is there (for at most secs)."""
        self.read_until(lambda: False, secs)

    def wait_close(self, secs):
        return self.read_until(lambda: False, secs) or self.closed

    def feed(self, d):
        self.buf += d
        while len(self.buf) >= 9:
            n = int.from_bytes(self.buf[:3], "big")
            if len(self.buf) < 9 + n:
                break
            ftype, flags = self.buf[3], self.buf[4]
            sid = int.from_bytes(self.buf[5:9], "big") & 0x7fffffff
            pl = self.buf[9:9 + n]
            self.buf = self.buf[9 + n:]
            self.on_frame(ftype, flags, sid, pl)

    def on_frame(self, ftype, flags, sid, pl):
        self.frames[ftype] += 1
        if ftype == SETTINGS and not flags & ACK:
            for i in range(0, len(pl) - 5, 6):
                k, v = struct.unpack(">HI", pl[i:i + 6])
                self.server_settings[k] = v
            self.settings_seen = True
            if self.auto_ack:
                self.send(frame(SETTINGS, ACK, 0))
        elif ftype == PING:
            if flags & ACK:
                self.ping_acks += 1
            elif self.auto_ack:
                self.send(frame(PING, ACK, 0, pl))
        elif ftype == GOAWAY:
            self.goaway_last, code = struct.unpack(">II", pl[:8])
            self.goaway = err_name(code)
            self.goaway_debug = pl[8:].decode("utf-8", "replace")
        elif ftype == RST_STREAM:
            self.rst[sid] = err_name(struct.unpack(">I", pl)[0])
        elif ftype == DATA:
            self.data[sid] += len(pl)
        elif ftype in (HEADERS, CONTINUATION):
            if ftype == HEADERS:
                if flags & PADDED:
                    pl = pl[1:len(pl) - pl[0]]
                if flags & PRIO:
                    pl = pl[5:]
                self.block = (sid, pl)
            elif self.block:
                self.block = (sid, self.block[1] + pl)
            if flags & END_HEADERS and self.block:
                for name, value in self.dec.decode(self.block[1], raw=True):
                    if name == b":status":
                        self.status[sid] = int(value)
                self.block = None

    def ping_probe(self, secs=2):
        """True if the connection still answers a PING."""
        before = self.ping_acks
        self.send(frame(PING, 0, 0, b"probe..."))
        return self.read_until(lambda: self.ping_acks > before, secs)

    def result(self, **extra):
        r = {
            "goaway": self.goaway,
            "goaway_last_stream": self.goaway_last,
            "goaway_debug": self.goaway_debug,
            "rst": dict(collections.Counter(self.rst.values())),
            "status": {str(k): v for k, v in
                       collections.Counter(self.status.values()).items()},
            "closed": self.closed,
            "closed_after_s": self.closed_after,
            "send_error": self.send_error,
            "max_concurrent_streams":
                self.server_settings.get(S_MAX_CONCURRENT_STREAMS),
            "max_header_list_size":
                self.server_settings.get(S_MAX_HEADER_LIST_SIZE),
        }
        r.update(extra)
        return r


def connect_fields(authority):
    return [(b":method", b"CONNECT"), (b":authority", authority.encode())]


# ---------------------------------------------------------------- cases

def case_rapid_reset(args):
    """HEADERS + RST_STREAM(CANCEL) pairs as fast as the socket takes."""
    p = Peer(args).open()
    sid, pairs = 1, 0
    while pairs < args.count and p.closed is None and p.goaway is None:
        batch = b""
        for _ in range(50):
            batch += p.headers(sid, connect_fields(args.target))
            batch += frame(RST_STREAM, 0, sid, struct.pack(">I", 8))
            sid += 2
        if not p.send(batch):
            break
        pairs += 50
        p.drain(0.001)
    p.wait_close(5)
    return p.result(pairs=pairs)


def case_continuation_flood(args):
    """A header block that never ends: CONTINUATION after CONTINUATION."""
    p = Peer(args).open()
    p.send(p.headers(1, connect_fields(args.target), flags=0))
    n = 0
    while n < args.count and p.closed is None and p.goaway is None:
        pad = p.enc.encode([(b"x-pad-%d" % n, b"v" * 1000)], huffman=False)
        if not p.send(frame(CONTINUATION, 0, 1, pad)):
            break
        n += 1
        if n % 10 == 0:
            p.drain(0.001)
    p.wait_close(5)
    return p.result(continuations=n)


def flood(args, one):
    """Control frames in batches; reading replies between them, or never
    (then with a small receive buffer) until the server stops taking them;
    then everything it sent is read."""
    p = Peer(args, rcvbuf=None if args.read else 4096)
    p.open()
    batch = one * 100
    sent = 0
    while sent < args.count and p.closed is None and p.goaway is None:
        if not p.send(batch, timeout=2):
            break
        sent += 100
        if args.read:
            p.drain(0.001)
    stalled = round(time.monotonic() - p.t0, 2)
    p.wait_close(8)
    return p.result(frames_sent=sent, sent_for_s=stalled,
                    ping_acks=p.ping_acks, read=args.read)


def case_settings_flood(args):
    return flood(args, settings((S_MAX_HEADER_LIST_SIZE, 65536)))


def case_ping_flood(args):
    return flood(args, frame(PING, 0, 0, b"flooding"))


def case_window_overflow(args):
    """WINDOW_UPDATE past 2^31-1: the connection's window (GOAWAY), then a
    stream's (RST_STREAM, the connection goes on)."""
    p = Peer(args).open()
    p.send(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 0x7fffffff)))
    p.wait_close(5)
    conn = p.result()
    q = Peer(args).open()
    q.send(q.headers(1, connect_fields(args.target)))
    q.read_until(lambda: 1 in q.status, 5)
    q.send(frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 0x7fffffff)))
    q.read_until(lambda: 1 in q.rst or q.goaway, 5)
    alive = q.ping_probe()
    stream = q.result(alive_after=alive)
    return {"conn": conn, "stream": stream}


def case_big_header(args):
    """A 1 MiB header block: one 1 MiB field (over nghttp2's 64 KiB per
    field: COMPRESSION_ERROR), then 128 fields of 8 KiB (a header list far
    over the advertised limit: 431, the connection goes on)."""
    out = {}
    for name, fields in (
            ("one_field", [(b"x-big", b"a" * (1 << 20))]),
            ("many_fields", [(b"x-f%03d" % i, b"b" * 8000)
                             for i in range(128)])):
        p = Peer(args).open()
        block = p.enc.encode(connect_fields(args.target) + fields,
                             huffman=False)
        mf = p.server_settings.get(S_MAX_FRAME_SIZE, 16384)
        chunks = [block[i:i + mf] for i in range(0, len(block), mf)]
        b = b""
        for i, c in enumerate(chunks):
            last = END_HEADERS if i == len(chunks) - 1 else 0
            b += frame(HEADERS if i == 0 else CONTINUATION, last, 1, c)
        p.send(b, timeout=10)
        p.read_until(lambda: p.goaway or 1 in p.status or 1 in p.rst, 5)
        alive = p.ping_probe() if not p.goaway else False
        out[name] = p.result(block_bytes=len(block), frames=len(chunks),
                             alive_after=alive)
    return out


def case_too_many_streams(args):
    """Open as many CONNECTs as the server allows (in batches, so each is
    answered), then one more."""
    p = Peer(args).open()
    limit = p.server_settings.get(S_MAX_CONCURRENT_STREAMS, 100)
    sid = 1
    while sid // 2 < limit and p.closed is None and p.goaway is None:
        want = min(20, limit - sid // 2)
        b = b""
        for _ in range(want):
            b += p.headers(sid, connect_fields(args.target))
            sid += 2
        p.send(b)
        p.read_until(lambda: len(p.status) + len(p.rst) >= sid // 2, 5)
    opened = sum(1 for v in p.status.values() if v == 200)
    p.send(p.headers(sid, connect_fields(args.target)))
    p.read_until(lambda: p.goaway or sid in p.rst, 5)
    p.wait_close(5)
    return p.result(advertised=limit, opened=opened, extra_stream=sid)


def u32(v):
    return struct.pack(">I", v)


def case_malformed(args):
    """One bad frame per connection, for every frame type; then a PING
    shows whether the connection survived. expect: the GOAWAY code
    ("goaway:X"), RST_STREAM code ("rst:X"), or "ignored"."""
    tgt = connect_fields(args.target)

    def opened(p):  # stream 1 open (CONNECT answered 200)
        p.send(p.headers(1, tgt))
        p.read_until(lambda: 1 in p.status, 5)

    def half_closed(p):  # stream 1 open (200), our side ended; the
        # source keeps it open (sending into our window, never closing)
        p.send(p.headers(1, connect_fields(args.source), end_stream=True))
        p.read_until(lambda: 1 in p.status, 5)

    def closed1(p):  # stream 1 done: refused (400) after our END_STREAM
        p.send(p.headers(1, [(b":method", b"GET")], end_stream=True))
        p.read_until(lambda: 1 in p.status, 5)

    F = frame
    cases = [
        # name, setup, bad bytes (callable for encoder state), expected
        ("DATA on stream 0", None, F(DATA, 0, 0, b"x"),
         "goaway:PROTOCOL_ERROR"),
        ("DATA on an idle stream", None, F(DATA, 0, 5, b"x"),
         "goaway:PROTOCOL_ERROR"),
        # nghttp2 forgets closed streams (no_closed_streams): a frame on
        # one is dropped (its bytes still count as consumed), as RFC 9113
        # §5.1 allows for frames in flight when a stream closed.
        ("DATA after END_STREAM", closed1, F(DATA, 0, 1, b"x"), "ignored"),
        ("DATA padding longer than the frame", opened,
         F(DATA, PADDED, 1, b"\x09abc"), "goaway:PROTOCOL_ERROR"),
        ("DATA over SETTINGS_MAX_FRAME_SIZE", opened,
         F(DATA, 0, 1, b"", length=(1 << 20) + 1) + b"z" * 64,
         "goaway:FRAME_SIZE_ERROR"),
        ("HEADERS on stream 0", None,
         lambda p: p.headers(0, tgt), "goaway:PROTOCOL_ERROR"),
        ("HEADERS on an even (server) stream id", None,
         lambda p: p.headers(2, tgt), "goaway:PROTOCOL_ERROR"),
        # Below the highest id opened: nghttp2 keeps no closed streams and
        # cannot tell this from a trailer racing our RST_STREAM, so it
        # ignores it rather than fail a peer that did nothing wrong.
        ("HEADERS opening a lower stream id than before", None,
         lambda p: p.headers(3, tgt) + p.headers(1, tgt), "ignored"),
        ("HEADERS on a half-closed (remote) stream", half_closed,
         lambda p: p.headers(1, [(b"x-trailer", b"1")], end_stream=True),
         "goaway:STREAM_CLOSED"),
        ("DATA on a half-closed (remote) stream", half_closed,
         F(DATA, 0, 1, b"x"), "goaway:STREAM_CLOSED"),
        ("HEADERS padding longer than the frame", None,
         F(HEADERS, END_HEADERS | PADDED, 1, b"\x20\x82"),
         "goaway:PROTOCOL_ERROR"),
        ("HEADERS with an undecodable block", None,
         F(HEADERS, END_HEADERS, 1, b"\xff\xff\xff\xff\xff\xff"),
         "goaway:COMPRESSION_ERROR"),
        # RFC 9113 makes the next three stream errors; nghttp2 ends the
        # connection, which §5.4.1 allows ("an endpoint can end a
        # connection at any time"): stricter, not wrong.
        ("PRIORITY of 4 bytes", None, F(PRIORITY, 0, 1, b"\0\0\0\0"),
         "goaway:FRAME_SIZE_ERROR"),
        ("PRIORITY on stream 0", None, F(PRIORITY, 0, 0, b"\0\0\0\3\x10"),
         "goaway:PROTOCOL_ERROR"),
        ("PRIORITY depending on itself", None,
         F(PRIORITY, 0, 1, b"\0\0\0\1\x10"), "goaway:PROTOCOL_ERROR"),
        ("RST_STREAM of 3 bytes", opened, F(RST_STREAM, 0, 1, b"\0\0\0"),
         "goaway:FRAME_SIZE_ERROR"),
        ("RST_STREAM on stream 0", None, F(RST_STREAM, 0, 0, u32(8)),
         "goaway:PROTOCOL_ERROR"),
        ("RST_STREAM on an idle stream", None, F(RST_STREAM, 0, 9, u32(8)),
         "goaway:PROTOCOL_ERROR"),
        ("SETTINGS of 5 bytes", None, F(SETTINGS, 0, 0, b"\0\3\0\0\0"),
         "goaway:FRAME_SIZE_ERROR"),
        ("SETTINGS on stream 1", None, F(SETTINGS, 0, 1),
         "goaway:PROTOCOL_ERROR"),
        ("SETTINGS ACK with a payload", None,
         F(SETTINGS, ACK, 0, b"\0\3\0\0\0\1"), "goaway:FRAME_SIZE_ERROR"),
        ("SETTINGS with 17 entries", None,
         settings(*[(S_MAX_HEADER_LIST_SIZE, 65536)] * 17),
         "goaway:ENHANCE_YOUR_CALM"),
        ("SETTINGS_ENABLE_PUSH = 2", None, settings((S_ENABLE_PUSH, 2)),
         "goaway:PROTOCOL_ERROR"),
        ("SETTINGS_INITIAL_WINDOW_SIZE = 2^31", None,
         settings((S_INITIAL_WINDOW_SIZE, 1 << 31)),
         "goaway:FLOW_CONTROL_ERROR"),
        ("SETTINGS_MAX_FRAME_SIZE = 100", None,
         settings((S_MAX_FRAME_SIZE, 100)), "goaway:PROTOCOL_ERROR"),
        ("PUSH_PROMISE from a client", opened,
         F(PUSH_PROMISE, END_HEADERS, 1, u32(2) + b"\x82"),
         "goaway:PROTOCOL_ERROR"),
        ("PING of 7 bytes", None, F(PING, 0, 0, b"1234567"),
         "goaway:FRAME_SIZE_ERROR"),
        ("PING on stream 1", None, F(PING, 0, 1, b"12345678"),
         "goaway:PROTOCOL_ERROR"),
        ("GOAWAY on stream 1", None, F(GOAWAY, 0, 1, u32(0) + u32(0)),
         "goaway:PROTOCOL_ERROR"),
        ("GOAWAY of 4 bytes", None, F(GOAWAY, 0, 0, u32(0)),
         "goaway:FRAME_SIZE_ERROR"),
        ("WINDOW_UPDATE of 3 bytes", None, F(WINDOW_UPDATE, 0, 0, b"\0\0\1"),
         "goaway:FRAME_SIZE_ERROR"),
        ("WINDOW_UPDATE of 0 on the connection", None,
         F(WINDOW_UPDATE, 0, 0, u32(0)), "goaway:PROTOCOL_ERROR"),
        ("WINDOW_UPDATE of 0 on a stream", opened,
         F(WINDOW_UPDATE, 0, 1, u32(0)), "goaway:PROTOCOL_ERROR"),
        ("WINDOW_UPDATE on an idle stream", None,
         F(WINDOW_UPDATE, 0, 7, u32(1)), "goaway:PROTOCOL_ERROR"),
        ("CONTINUATION without HEADERS", None,
         F(CONTINUATION, END_HEADERS, 1, b"\x82"), "goaway:PROTOCOL_ERROR"),
        ("CONTINUATION on another stream", None,
         lambda p: F(HEADERS, 0, 1, p.enc.encode(tgt)) +
         F(CONTINUATION, END_HEADERS, 3, b""), "goaway:PROTOCOL_ERROR"),
        ("unknown frame type 0xfa on stream 0", None,
         F(0xfa, 0xff, 0, b"\xde\xad" * 100), "ignored"),
        ("unknown frame type 0x0b on an idle stream", None,
         F(0x0b, 0, 11, b"\xbe\xef" * 100), "ignored"),
    ]
    out = []
    for name, setup, bad, expect in cases:
        p = Peer(args).open()
        if setup:
            setup(p)
        p.send(bad(p) if callable(bad) else bad)
        if not p.ping_probe(3):
            p.wait_close(3)
        if p.goaway and p.goaway != "NO_ERROR":
            got = "goaway:" + p.goaway
        elif p.rst:
            got = "rst:" + list(p.rst.values())[-1]
        elif p.closed:
            got = "closed:" + p.closed
        else:
            got = "ignored"
        out.append({"case": name, "expect": expect, "got": got,
                    "ok": got == expect})
        p.s.close()
    return {"cases": out, "failed": [c["case"] for c in out if not c["ok"]]}


def case_authority_garbage(args):
    """On one connection, CONNECTs with NUL and garbage in :authority and
    the other pseudo-headers: each is answered 400 and goes nowhere; the
    connection goes on and a good CONNECT still works."""
    good = args.target.encode()
    host = good.rsplit(b":", 1)[0]
    m = (b":method", b"CONNECT")
    bad = [
        ("NUL inside :authority", [m, (b":authority", good + b"\0.evil")]),
        ("NUL before the port", [m, (b":authority", host + b"\0:80")]),
        ("binary garbage :authority", [m, (b":authority", b"\xff\xfe\x00\x01:9")]),
        ("CR LF in :authority", [m, (b":authority", good + b"\r\nx: y")]),
        ("empty :authority", [m, (b":authority", b"")]),
        ("host name :authority", [m, (b":authority", b"example.com:7001")]),
        ("no port in :authority", [m, (b":authority", host)]),
        ("port 0", [m, (b":authority", host + b":0")]),
        ("port 65536", [m, (b":authority", host + b":65536")]),
        ("another pod's address", [m, (b":authority",
                                       args.other.encode())]),
        ("NUL inside :method", [(b":method", b"CONNECT\0GET"),
                                (b":authority", good)]),
        ("lowercase method", [(b":method", b"connect"),
                              (b":authority", good)]),
        ("no :method", [(b":authority", good)]),
        ("no :authority", [m]),
        ("two :authority", [m, (b":authority", good), (b":authority", good)]),
        (":path with CONNECT", [m, (b":authority", good), (b":path", b"/")]),
        (":scheme with CONNECT", [m, (b":authority", good),
                                  (b":scheme", b"https")]),
        ("unknown pseudo-header", [m, (b":authority", good),
                                   (b":bogus", b"1")]),
        (":protocol (extended CONNECT)", [m, (b":authority", good),
                                          (b":protocol", b"websocket")]),
        ("pseudo-header after a field", [m, (b"x-a", b"1"),
                                         (b":authority", good)]),
        ("uppercase field name", [m, (b":authority", good),
                                  (b"X-Upper", b"1")]),
        ("NUL in a field value", [m, (b":authority", good),
                                  (b"forwarded", b"for=\0")]),
        ("control byte in a field name", [m, (b":authority", good),
                                          (b"x-\x01", b"1")]),
    ]
    p = Peer(args).open()
    sid, out = 1, []
    for name, fields in bad:
        p.send(p.headers(sid, fields, end_stream=False))
        p.read_until(lambda: sid in p.status or sid in p.rst or p.goaway, 3)
        got = p.status.get(sid, p.rst.get(sid, p.goaway or p.closed))
        out.append({"case": name, "got": got, "ok": got == 400})
        sid += 2
    p.send(p.headers(sid, connect_fields(args.target)))
    p.read_until(lambda: sid in p.status, 5)
    last = p.status.get(sid)
    p.send(frame(RST_STREAM, 0, sid, u32(8)))
    alive = p.ping_probe()
    return p.result(cases=out, good_connect_after=last, alive_after=alive,
                    failed=[c["case"] for c in out if not c["ok"]])


def case_zero_window(args):
    """SETTINGS_INITIAL_WINDOW_SIZE 0, CONNECTs to a server that sends,
    then never read again: not the data, not the server's PINGs."""
    p = Peer(args, rcvbuf=4096).open((S_INITIAL_WINDOW_SIZE, 0))
    sid = 1
    while sid // 2 < args.count and p.closed is None and p.goaway is None:
        b = b""
        for _ in range(min(25, args.count - sid // 2)):
            b += p.headers(sid, connect_fields(args.target))
            sid += 2
        p.send(b)
        p.read_until(lambda: len(p.status) + len(p.rst) >= sid // 2, 5)
    opened = sum(1 for v in p.status.values() if v == 200)
    print(json.dumps({"holding": True, "opened": opened}), flush=True)
    time.sleep(args.hold)
    p.auto_ack = False  # too late to answer PINGs now
    p.wait_close(3)
    return p.result(opened=opened, data_bytes=sum(p.data.values()),
                    held_s=args.hold, pings=p.frames[PING])


def case_silent(args):
    """Mutual TLS, then not a byte."""
    p = Peer(args)
    p.auto_ack = False
    p.wait_close(args.hold)
    return p.result()


def case_idle(args):
    """A well-behaved python3-h2 client that opens no stream, ever."""
    raw = socket.create_connection((args.host, args.port), timeout=5)
    s = tls_context(args).wrap_socket(raw)
    c = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True))
    c.initiate_connection()
    s.sendall(c.data_to_send())
    t0, out = time.monotonic(), {"goaway": None, "closed": None, "pings": 0}
    while time.monotonic() - t0 < args.hold:
        s.settimeout(1)
        try:
            d = s.recv(1 << 16)
        except socket.timeout:
            continue
        except OSError as e:
            out["closed"] = "error: %s" % e
            break
        if not d:
            out["closed"] = "eof"
            break
        for ev in c.receive_data(d):
            if isinstance(ev, h2.events.PingReceived):
                out["pings"] += 1
            if isinstance(ev, h2.events.ConnectionTerminated):
                # A draining server sends two: "no new streams", then
                # the last stream it took (RFC 9113 §6.8).
                out["goaway"] = err_name(int(ev.error_code))
                out["goaway_last_stream"] = ev.last_stream_id
                out.setdefault("goaway_after_s",
                               round(time.monotonic() - t0, 2))
                out["goaways"] = out.get("goaways", 0) + 1
        s.sendall(c.data_to_send())
    out["closed_after_s"] = round(time.monotonic() - t0, 2)
    return out


def case_pending(args):
    """CONNECT storm to an upstream that never answers a SYN: at most the
    server's cap of CONNECTs wait (the rest: REFUSED_STREAM), and each that
    waits is answered within the connect timeout."""
    p = Peer(args).open()
    b = b""
    for i in range(args.count):
        b += p.headers(1 + 2 * i, connect_fields(args.target))
    p.send(b)
    p.read_until(lambda: len(p.rst) + len(p.status) >= args.count, 1)
    refused_at_once = list(p.rst.values()).count("REFUSED_STREAM")
    t = time.monotonic()
    p.read_until(lambda: len(p.rst) + len(p.status) >= args.count,
                 args.hold)
    return p.result(refused_at_once=refused_at_once,
                    answered=len(p.rst) + len(p.status),
                    answers_within_s=round(time.monotonic() - t, 2))


def blackhole(args):
    """A listener whose accept queue is full after one connection (backlog
    0, never accepting): further SYNs are dropped, connects hang."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", args.port))
    s.listen(0)
    print("listening", flush=True)
    time.sleep(3600)


CASES = {
    "rapid-reset": case_rapid_reset,
    "continuation-flood": case_continuation_flood,
    "settings-flood": case_settings_flood,
    "ping-flood": case_ping_flood,
    "window-overflow": case_window_overflow,
    "big-header": case_big_header,
    "too-many-streams": case_too_many_streams,
    "malformed": case_malformed,
    "authority-garbage": case_authority_garbage,
    "zero-window": case_zero_window,
    "silent": case_silent,
    "idle": case_idle,
    "pending": case_pending,
}


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter,
        epilog="cases: " + ", ".join(CASES) + "; blackhole (a stalled "
        "upstream, no TLS)")
    ap.add_argument("case", choices=list(CASES) + ["blackhole"])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=15008)
    ap.add_argument("--ca", help="mesh root (PEM)")
    ap.add_argument("--cert", help="client certificate (PEM)")
    ap.add_argument("--key", help="its key (PEM)")
    ap.add_argument("--target", help="CONNECT authority ip:port")
    ap.add_argument("--other", default="198.18.255.1:1",
                    help="authority of a pod the server must refuse")
    ap.add_argument("--source", help="CONNECT authority of a server that "
                    "sends and never closes first (malformed)")
    ap.add_argument("--count", type=int, default=3000)
    ap.add_argument("--hold", type=float, default=8)
    ap.add_argument("--no-read", dest="read", action="store_false",
                    help="floods: never read while sending")
    args = ap.parse_args()
    if args.case == "blackhole":
        blackhole(args)
        return 0
    try:
        r = CASES[args.case](args)
    except (OSError, RuntimeError) as e:
        print(json.dumps({"error": "%s: %s" % (e.__class__.__name__, e)}))
        return 2
    print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
