#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Writes the seed corpus of fuzz_hbone_server (tests/fuzz/corpus/hbone_server/).

Each seed is the target's 4-byte header (flags, three answer bytes; see
fuzz_hbone_server.c) followed by what an HBONE client sends: the HTTP/2
preface and frames, built with Debian's python3-h2/hyperframe/hpack
(run with /usr/bin/python3). Valid conversations and near-misses: bad
CONNECTs, flow-control abuse, resets, floods, odd settings.

  /usr/bin/python3 tests/fuzz/gen-hbone-corpus.py tests/fuzz/corpus/hbone_server
"""
import os
import sys

import hpack
from hyperframe import frame as hf

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SEP = b"\r\n--\r\n"  # where flags mode 1 cuts the input into reads
AUTH = "198.18.1.10:8080"

# flags bits (fuzz_hbone_server.c)
CUT_WHOLE, CUT_SEP, CUT_13, CUT_257 = 0, 1, 2, 3
W_ALL, W_1, W_100, W_4096 = 0 << 2, 1 << 2, 2 << 2, 3 << 2
EOF = 1 << 4
SMALL = 1 << 5
UP_ANSWER, UP_SILENT, UP_RESET, UP_SLOW = 0 << 6, 1 << 6, 2 << 6, 3 << 6
# answer bits
OK, R400, R401, R503 = 0, 1, 2, 3
LATER1, LATER3 = 2 << 2, 3 << 2
WRITEV = 1 << 4


class Client:
    def __init__(self):
        self.enc = hpack.Encoder()
        self.frames = [PREFACE]

    def add(self, f):
        self.frames.append(f.serialize() if hasattr(f, "serialize") else f)
        return self

    def settings(self, **kv):
        f = hf.SettingsFrame(0)
        for k, v in kv.items():
            f.settings[getattr(hf.SettingsFrame, k.replace("SETTINGS_", ""))] = v
        return self.add(f)

    def settings_ack(self):
        return self.add(hf.SettingsFrame(0, flags=["ACK"]))

    def block(self, headers):
        return self.enc.encode(headers)

    def headers(self, sid, headers, end_stream=False, end_headers=True):
        f = hf.HeadersFrame(sid)
        f.data = self.block(headers)
        if end_headers:
            f.flags.add("END_HEADERS")
        if end_stream:
            f.flags.add("END_STREAM")
        return self.add(f)

    def connect(self, sid, authority=AUTH, extra=(), end_stream=False):
        h = [(":method", "CONNECT"), (":authority", authority)] + list(extra)
        return self.headers(sid, h, end_stream)

    def data(self, sid, payload, end_stream=False):
        f = hf.DataFrame(sid, data=payload)
        if end_stream:
            f.flags.add("END_STREAM")
        return self.add(f)

    def rst(self, sid, code=8):
        return self.add(hf.RstStreamFrame(sid, error_code=code))

    def window(self, sid, inc):
        return self.add(hf.WindowUpdateFrame(sid, window_increment=inc))

    def ping(self, opaque=b"12345678", ack=False):
        return self.add(hf.PingFrame(0, opaque_data=opaque, flags=["ACK"] if ack else []))

    def goaway(self, last=0, code=0):
        return self.add(hf.GoAwayFrame(0, last_stream_id=last, error_code=code))

    def raw(self, ftype, flags, sid, payload):
        hdr = len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + sid.to_bytes(4, "big")
        return self.add(hdr + payload)

    def bytes(self, sep=False):
        return (SEP if sep else b"").join(self.frames)


def base():
    return Client().settings(SETTINGS_INITIAL_WINDOW_SIZE=65535, SETTINGS_MAX_FRAME_SIZE=16384)


seeds = {}


def seed(name, flags, answers, client, sep=None):
    if sep is None:
        sep = (flags & 3) == CUT_SEP
    a = bytes(answers if isinstance(answers, (list, tuple)) else [answers] * 3)
    seeds[name] = bytes([flags]) + a + client.bytes(sep)


# Valid conversations.
seed("connect-200-data-fin", EOF, OK,
     base().settings_ack().connect(1).data(1, b"GET / HTTP/1.0\r\n\r\n", end_stream=True))
seed("connect-200-writev-sep", EOF | CUT_SEP, OK | WRITEV,
     base().settings_ack().connect(1).data(1, b"hello").data(1, b"world", end_stream=True))
seed("connect-200-idle-peer", 0, OK, base().settings_ack().connect(1).data(1, b"x" * 3000))
seed("connect-200-later", EOF, OK | LATER3, base().connect(1).data(1, b"early data before the answer"))
seed("connect-400", EOF, R400, base().connect(1, end_stream=True))
seed("connect-401-503-later", EOF | CUT_13, [R401, R503 | LATER1, OK], base().connect(1).connect(3).connect(5))
seed("connect-headers-forwarded-baggage", EOF, OK,
     base().connect(1, extra=[("forwarded", "for=198.18.1.11;host=198.18.1.10:8080"),
                              ("baggage", "k8s.namespace.name=default,k8s.pod.name=a"),
                              ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")])
     .data(1, b"", end_stream=True))
seed("many-streams-mixed", EOF | CUT_257 | W_100, [OK, R503 | LATER1, OK | WRITEV],
     (lambda c: [c.connect(i).data(i, b"d" * 100, end_stream=(i % 4 == 1)) for i in range(1, 40, 2)] and c)(base()))
seed("small-limits-over-cap", EOF | SMALL, OK,
     (lambda c: [c.connect(i) for i in range(1, 21, 2)] and c)(base()).data(1, b"z" * 8000))
seed("upstream-silent", EOF | UP_SILENT, OK, base().connect(1).data(1, b"q"))
seed("upstream-reset", EOF | UP_RESET | CUT_SEP, OK, base().connect(1).data(1, b"q").data(1, b"r", end_stream=True))
seed("upstream-slow-write1", EOF | UP_SLOW | W_1, OK | WRITEV, base().connect(1).data(1, b"s" * 5000, end_stream=True))
seed("window-updates", EOF | W_4096, OK,
     base().connect(1).window(0, 1 << 20).window(1, 1 << 20).data(1, b"w" * 100))
seed("ping-settings-goaway", EOF | CUT_SEP, OK,
     base().ping().ping(ack=True).settings(SETTINGS_HEADER_TABLE_SIZE=0, SETTINGS_ENABLE_PUSH=0,
                                           SETTINGS_MAX_CONCURRENT_STREAMS=1).connect(1).goaway(1))
seed("client-reset-before-answer", EOF, OK | LATER3, base().connect(1).rst(1).connect(3).rst(3, 0))
seed("client-reset-after-data", EOF, OK | WRITEV, base().connect(1).data(1, b"abc").rst(1, 2))

# Malformed CONNECTs (the library answers 400; on_connect never sees them).
seed("bad-no-authority", EOF, OK, base().headers(1, [(":method", "CONNECT")], end_stream=True))
seed("bad-get-with-path", EOF, OK,
     base().headers(1, [(":method", "GET"), (":scheme", "https"), (":path", "/"), (":authority", AUTH)], True))
seed("bad-connect-with-path", EOF, OK,
     base().headers(1, [(":method", "CONNECT"), (":authority", AUTH), (":path", "/x")]))
seed("bad-pseudo-after-regular", EOF, OK,
     base().headers(1, [(":method", "CONNECT"), ("x-a", "b"), (":authority", AUTH)]))
seed("bad-two-authorities", EOF, OK,
     base().headers(1, [(":method", "CONNECT"), (":authority", AUTH), (":authority", "198.18.1.11:80")]))
for i, a in enumerate(["[::1]:8080", "[2001:2::1]:80", "198.18.1.10:0", "198.18.1.10:080",
                       "198.18.1.10:65536", "host.example:80", "198.18.1.10", ":80",
                       "198.18.1.10:8080\x00x", "198.18.1.010:80", " 198.18.1.10:80"]):
    seed("authority-%02d" % i, EOF, OK, base().connect(1, authority=a).data(1, b"a", end_stream=True))
seed("uppercase-and-odd-header-names", EOF, OK,
     base().connect(1, extra=[("Forwarded", "for=x"), ("bad name", "v"), ("x", "\r\nInjected: 1"), ("", "")]))
seed("many-headers", EOF, OK, base().connect(1, extra=[("x-h%d" % i, "v" * 40) for i in range(80)]))
seed("long-header-value", EOF | CUT_257, OK, base().connect(1, extra=[("x-long", "v" * 20000)]))

# Frames in the wrong place, floods, flow-control abuse.
c = base()
hb = c.block([(":method", "CONNECT"), (":authority", AUTH), ("x-pad", "p" * 3000)])
c.add(hf.HeadersFrame(1, data=hb[:100]))
for i in range(100, len(hb), 100):
    f = hf.ContinuationFrame(1, data=hb[i:i + 100])
    if i + 100 >= len(hb):
        f.flags.add("END_HEADERS")
    c.add(f)
seed("continuation", EOF | CUT_SEP, OK, c)
c = base().add(hf.HeadersFrame(1, data=c.block([(":method", "CONNECT")])))
for i in range(200):
    c.add(hf.ContinuationFrame(1, data=b"\x40\x01a\x01b"))
seed("continuation-flood-no-end", EOF, OK, c)
c = base()
for i in range(1, 400, 2):
    c.connect(i).rst(i)
seed("rapid-reset", EOF | CUT_257, OK, c)
seed("window-overflow", EOF, OK,
     base().connect(1).window(1, 0x7fffffff).window(1, 0x7fffffff).window(0, 0x7fffffff).window(0, 0x7fffffff))
seed("window-zero-increment", EOF, OK, base().connect(1).window(1, 0).window(0, 0))
seed("data-after-end-stream", EOF, OK, base().connect(1).data(1, b"a", end_stream=True).data(1, b"b"))
seed("data-on-idle-stream", EOF, OK, base().data(3, b"nobody"))
seed("data-beyond-window", EOF | SMALL, OK, base().connect(1).data(1, b"x" * 3000).data(1, b"y" * 3000))
seed("even-stream-id", EOF, OK, base().connect(2))
seed("stream-id-going-down", EOF, OK, base().connect(5).connect(3))
seed("settings-flood", EOF | W_1, OK, (lambda c: [c.settings() for _ in range(300)] and c)(base()))
seed("ping-flood-unread", W_1, OK, (lambda c: [c.ping() for _ in range(500)] and c)(base()))
seed("settings-bad-values", EOF, OK,
     base().settings(SETTINGS_INITIAL_WINDOW_SIZE=0x80000000).raw(4, 0, 0, b"\x00\x05\x00\x00\x00\x01"))
seed("bad-frame-sizes", EOF | CUT_SEP, OK,
     base().raw(4, 0, 0, b"\x00\x01\x00").raw(6, 0, 0, b"1234").raw(8, 0, 0, b"\x00\x00").raw(3, 0, 1, b"\x00"))
seed("unknown-frame-types", EOF, OK, base().raw(0x20, 0xff, 1, b"hello").raw(0xa, 0, 0, b"\x00\x00ab").connect(1))
seed("priority-frames", EOF, OK,
     base().add(hf.PriorityFrame(1, depends_on=3, stream_weight=200)).connect(1)
     .add(hf.PriorityFrame(1, depends_on=1)))
seed("push-promise-from-client", EOF, OK, base().raw(5, 4, 1, b"\x00\x00\x00\x02\x82"))
seed("goaway-then-connect", EOF, OK, base().goaway(0, 2).connect(1))
c = Client().settings().connect(1)
c.frames[0] = b""
seed("no-preface", EOF, OK, c)
seed("preface-only", EOF, OK, Client())
seeds["half-preface"] = bytes([EOF, OK, OK, OK]) + PREFACE[:10]
seed("hpack-garbage", EOF, OK, base().raw(1, 4, 1, bytes(range(256))))
seed("hpack-table-size-update-huge", EOF, OK, base().raw(1, 4, 1, b"\x3f\xe1\xff\xff\xff\x0f"))

out = sys.argv[1] if len(sys.argv) > 1 else "tests/fuzz/corpus/hbone_server"
os.makedirs(out, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
print("%d seeds, %d bytes" % (len(seeds), sum(len(d) for d in seeds.values())))
