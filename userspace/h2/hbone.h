/* SPDX-License-Identifier: Apache-2.0 */
/*
 * HBONE: one HTTP/2 CONNECT stream per proxied TCP connection, multiplexed
 * over one byte transport (mutual TLS in production, plain TCP in tests),
 * built on nghttp2 and driven by this thread's struct loop. DESIGN.md §3 is
 * the wire contract; this header is the code contract.
 *
 * Three layers:
 *  - struct hb_transport: a non-blocking byte pipe (plain TCP here, TLS in
 *    tls.c) reached only through its ops; it reports readiness with
 *    hb_transport_notify().
 *  - struct hb_conn: one HTTP/2 session (client or server side) on one
 *    transport, with the settings of DESIGN §3, PING keepalive, GOAWAY
 *    handling and an explicit lifecycle (enum hb_conn_state).
 *  - streams: each CONNECT stream is a struct relay_end, so relay_start()
 *    relays between a TCP socket and a stream as between two sockets; a
 *    stream also lends its receive queue (relay_end_ops.peek), so received
 *    payload goes from there to the socket without another copy.
 *
 * Threading: everything here belongs to the thread of its loop. Counters
 * named hb_* without a conn are per thread.
 *
 * Hostile peers: every limit and deadline a peer can run into is a field of
 * struct hb_conn_opts (defaults there); each time one is hit it is counted
 * in struct hb_stats and logged at a bounded rate, and the peer is told
 * with the GOAWAY/RST_STREAM code RFC 9113 gives. What nghttp2 enforces
 * itself (ACKs piling up unread, rapid reset, CONTINUATION floods, frame
 * sizes, flow-control windows) is configured explicitly in hbone.c.
 *
 * Memory bounds: a stream buffers at most its send buffer (opts.send_buf)
 * towards the peer and at most the receive window we granted (opts.
 * stream_window, and all streams of a conn together at most opts.
 * conn_window) from the peer. Window updates are sent only as the relay reads
 * the bytes out of a stream (nghttp2 automatic window updates are off).
 */
#ifndef AMBIENTD_HBONE_H
#define AMBIENTD_HBONE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

struct loop;
struct relay_end;
struct hb_transport;
struct hb_conn;

/* ---- transport ---- */

/* What a transport reports through hb_transport_notify(). */
enum {
	HB_TRANSPORT_READABLE = 1 << 0,
	HB_TRANSPORT_WRITABLE = 1 << 1,
	/* Fatal condition; the owner learns the errno from its next read. */
	HB_TRANSPORT_ERROR = 1 << 2,
};

/*
 * A transport carries plaintext bytes of one HTTP/2 connection. All ops are
 * non-blocking and called on the loop thread; none may call back into the
 * owner (readiness is reported only from loop callbacks, through
 * hb_transport_notify()). Level-triggered like struct loop: while the owner
 * wants reading/writing and the condition holds, the transport keeps
 * reporting it.
 *
 * Ownership: the hb_conn owns its transport from hb_conn_new_*() on and
 * releases it exactly once through close() or abort(); after that it never
 * touches it again.
 */
struct hb_transport_ops {
	/* Plaintext bytes read (>0), 0 on orderly EOF, -EAGAIN when nothing
	 * is ready, other -errno (-ECONNRESET on reset). */
	ssize_t (*read)(struct hb_transport *t, void *buf, size_t len);
	/*
	 * Gather write: bytes accepted (>0, possibly fewer than the total),
	 * -EAGAIN when nothing could be taken, other -errno. Accepted bytes
	 * will be delivered in order (a TLS transport may batch them into
	 * records). Must never raise SIGPIPE.
	 */
	ssize_t (*writev)(struct hb_transport *t, const struct iovec *iov,
			  int iovcnt);
	/* Which readiness the owner wants now. 0 or -errno. */
	int (*set_interest)(struct hb_transport *t, bool want_read,
			    bool want_write);
	/* End the write side after everything accepted so far (TCP FIN, TLS
	 * close_notify). 0, -EAGAIN (call again when writable), or -errno. */
	int (*shutdown)(struct hb_transport *t);
	/* Release gracefully: accepted bytes are still delivered. */
	void (*close)(struct hb_transport *t);
	/* Release with a reset (TCP RST); pending bytes dropped. */
	void (*abort)(struct hb_transport *t);
};

typedef void (*hb_transport_cb)(void *arg, unsigned int what);

/* Embedded first in every transport implementation. */
struct hb_transport {
	const struct hb_transport_ops *ops;
	hb_transport_cb cb; /* set by the owner; NULL before */
	void *cb_arg;
};

/*
 * Called by a transport implementation, from a loop callback, when it became
 * readable/writable/failed (HB_TRANSPORT_* bits). The owner may release the
 * transport inside: the caller must not touch `t` after this returns, and
 * should free its memory with loop_defer_free() in close()/abort().
 */
void hb_transport_notify(struct hb_transport *t, unsigned int what);

/*
 * Plain TCP transport on a connected (or connecting) non-blocking socket.
 * Takes ownership of fd only on success. 0 and *out, or -errno.
 */
int hb_transport_tcp_new(struct loop *l, int fd, struct hb_transport **out);

/* ---- connection ---- */

/* Lifecycle of a conn; hbone.c changes it through one checked function. */
enum hb_conn_state {
	HB_CONN_HANDSHAKING, /* our SETTINGS queued, peer's not seen yet */
	HB_CONN_OPEN,	     /* peer's SETTINGS received; streams come and go */
	HB_CONN_DRAINING,    /* GOAWAY sent or received: no new streams, those
				in flight finish */
	HB_CONN_CLOSING,     /* nothing more to read: flushing the last frames
				(GOAWAY) before the transport closes */
	HB_CONN_CLOSED,	     /* transport released; remaining stream ends only
				report errors/EOF to their owners */
};
const char *hb_conn_state_name(enum hb_conn_state s);

/* What an observer hears about (see hb_conn_set_observer()). */
enum hb_conn_event {
	HB_CONN_EV_STREAM_CLOSED, /* a stream ended; live count dropped */
	HB_CONN_EV_GOAWAY,	  /* GOAWAY sent or received: never reuse */
	HB_CONN_EV_CLOSED,	  /* the conn is finished; forget the pointer */
};
typedef void (*hb_conn_observer)(void *arg, struct hb_conn *c,
				 enum hb_conn_event ev);

/* ---- abuse counters ---- */

/* HTTP/2 error codes are 0x0..0xd (RFC 9113 §7). */
#define HB_H2_ERROR_CODES 14
/* "PROTOCOL_ERROR" etc.; "UNKNOWN" beyond 0xd. */
const char *hb_h2_error_name(uint32_t code);
/* Whether struct hb_stats counts this code (see there). */
bool hb_h2_error_counted(uint32_t code);

/* Deadlines that close a conn (each counted when it fires). */
enum hb_deadline {
	HB_DL_SETTINGS, /* no client preface + SETTINGS in time */
	HB_DL_HEADERS,	/* a header block (HEADERS..END_HEADERS) not finished */
	HB_DL_IDLE,	/* server conn without any stream for too long */
	HB_DL_PING,	/* keepalive PING not acknowledged */
	HB_DL_FLUSH,	/* closing conn whose peer never took its last frames */
	HB_DL__COUNT,
};
const char *hb_deadline_name(enum hb_deadline d);

/* Limits a peer ran into (each counted when it is hit). */
enum hb_limit {
	HB_LIM_PENDING,	 /* CONNECTs awaiting an answer -> REFUSED_STREAM */
	HB_LIM_CONTROL,	 /* PING/SETTINGS/PRIORITY rate -> GOAWAY */
	HB_LIM_OUTBOUND, /* peer does not read our ACKs (nghttp2 flood) */
	HB_LIM_CONTINUATIONS, /* too many CONTINUATION frames (nghttp2) */
	HB_LIM_HEADER_LIST,   /* request header list too large -> 431 */
	HB_LIM__COUNT,
};
const char *hb_limit_name(enum hb_limit l);

/*
 * Counters shared by every conn that points at them (opts.stats), from any
 * thread: relaxed atomics. [0] client side (our pooled conns), [1] server
 * side (15008). errors[][code] counts GOAWAY and RST_STREAM frames we sent
 * with that code, except NO_ERROR, and CANCEL and CONNECT_ERROR, which end
 * streams in normal operation (a request given up, a pod's connection
 * reset) and say nothing about the peer.
 */
struct hb_stats {
	atomic_uint_fast64_t errors[2][HB_H2_ERROR_CODES];
	atomic_uint_fast64_t deadlines[2][HB_DL__COUNT];
	atomic_uint_fast64_t limits[2][HB_LIM__COUNT];
	/* Server: requests answered 400 (malformed CONNECT, bad bytes). */
	atomic_uint_fast64_t bad_requests;
};

/* Zero means the DESIGN §3 default for every field. */
struct hb_conn_opts {
	/* Client: streams this side keeps open at most (100). Server:
	 * SETTINGS_MAX_CONCURRENT_STREAMS advertised (200). */
	uint32_t max_streams;
	uint32_t stream_window; /* initial stream receive window (4 MiB) */
	uint32_t conn_window;	/* connection receive window (16 MiB) */
	uint32_t max_frame;	/* SETTINGS_MAX_FRAME_SIZE advertised (1 MiB) */
	uint32_t send_buf; /* per-stream send buffer, power of 2 (256 KiB) */
	uint32_t ping_interval_ms; /* PING after this much silence (10 s) */
	uint32_t ping_timeout_ms;  /* dead without PING ACK after (20 s) */
	/*
	 * Deadlines. Each closes the conn with a GOAWAY and is counted in
	 * stats->deadlines.
	 *  settings: the peer's preface + SETTINGS must arrive within this
	 *    long of the conn's start (5 s); GOAWAY SETTINGS_TIMEOUT.
	 *  header: a header block, once begun, must end (END_HEADERS) within
	 *    this long (10 s); GOAWAY ENHANCE_YOUR_CALM.
	 *  idle (server only): a conn without any open stream for this long
	 *    is drained, GOAWAY NO_ERROR (10 min: longer than a client
	 *    pool's 5 min, so clients normally let go first).
	 */
	uint32_t settings_timeout_ms;
	uint32_t header_timeout_ms;
	uint32_t idle_timeout_ms;
	/* Server: requests handed to on_connect and not answered yet, per
	 * conn (100); more are refused with RST_STREAM REFUSED_STREAM. A
	 * stream the client reset still counts until the app answers it, so
	 * this bounds the upstream connects one conn can have in flight. */
	uint32_t max_pending;
	/* Server: SETTINGS_MAX_HEADER_LIST_SIZE advertised; a larger request
	 * (RFC 9113 accounting: name + value + 32 per field) is answered 431
	 * (16 KiB). */
	uint32_t max_header_list;
	/* PING, SETTINGS and PRIORITY frames from the peer, a token bucket:
	 * ctrl_burst at once (1000), refilled at ctrl_rate per second (100);
	 * beyond it GOAWAY ENHANCE_YOUR_CALM. */
	uint32_t ctrl_burst;
	uint32_t ctrl_rate;
	struct hb_stats *stats; /* shared counters, or NULL */
};

/* A header field; both strings NUL-terminated, names lowercase. */
struct hb_header {
	const char *name;
	const char *value;
};

/*
 * A validated CONNECT request handed to the server's on_connect. Fields are
 * read-only and valid until the request is answered (hb_stream_respond()).
 * Every field passed the byte checks (RFC 9113 §8.2.1, stricter): names are
 * lowercase token characters, values hold no control character but HTAB
 * (no NUL, CR or LF) and no leading or trailing blank; at most 64 regular
 * fields and opts.max_header_list bytes in all. Anything else was answered
 * 400 (431 when too large) and never shows up here.
 */
struct hb_stream_req {
	const char *authority; /* "ip:port" ("[v6]:port"), already checked */
	const struct hb_header *headers; /* regular fields, arrival order */
	size_t n_headers;
};

struct hb_server_cbs {
	/*
	 * A well-formed CONNECT arrived on conn c (malformed ones were
	 * answered 400 by the library and never show up here). The callee
	 * owns `req` until it answers it exactly once, now or later, with
	 * either hb_stream_respond(req, non-200) (refuse), or
	 * hb_stream_accept(req, &end) followed by hb_stream_respond(req, 200)
	 * once the upstream connect succeeded. May be called from inside the
	 * conn's processing: it may call hb_stream_* and relay_start(), and
	 * hb_conn_close()/hb_conn_drain() (applied after it returns).
	 */
	void (*on_connect)(void *arg, struct hb_conn *c,
			   struct hb_stream_req *req);
	void *arg;
};

/*
 * New client/server conn on transport t (owned from here on, also on error:
 * then it is aborted). The client queues its SETTINGS and connection window
 * at once; the server expects the client preface. 0 and *out, or -errno.
 * The conn frees itself once CLOSED and all its stream ends are released.
 */
int hb_conn_new_client(struct loop *l, struct hb_transport *t,
		       const struct hb_conn_opts *opts, struct hb_conn **out);
int hb_conn_new_server(struct loop *l, struct hb_transport *t,
		       const struct hb_conn_opts *opts,
		       const struct hb_server_cbs *cbs, struct hb_conn **out);

/*
 * One observer per conn (the pool uses it); fn NULL removes it. Called from
 * loop callbacks, never from inside nghttp2; fn may call any hb_conn_* on c.
 * After HB_CONN_EV_CLOSED the observer is dropped.
 */
void hb_conn_set_observer(struct hb_conn *c, hb_conn_observer fn, void *arg);

/*
 * Client: open a CONNECT stream to `authority` ("ip:port") with `extra`
 * header fields (lowercase names; e.g. forwarded, baggage, traceparent).
 * Returns 0 and an end for relay_start(l, down, *out, true, ...): it reports
 * WRITABLE once a 2xx arrived, or ERROR with ops->error() = the mapped errno
 * of another status (hb_status_to_errno()) or -ECONNRESET (RST_STREAM,
 * connection loss). -EBUSY at the stream cap, -ESHUTDOWN when the conn is
 * draining or closed (never reuse it), -EINVAL, -ENOMEM.
 */
int hb_conn_open_stream(struct hb_conn *c, const char *authority,
			const struct hb_header *extra, size_t n_extra,
			struct relay_end **out);

/* Client: a stream can be opened now (live, no GOAWAY, under the cap). */
bool hb_conn_can_open_stream(const struct hb_conn *c);

/*
 * Graceful: send GOAWAY, accept no new streams, close once the streams in
 * flight finished. Idempotent. The server sends two (RFC 9113 §6.8): one
 * that still admits every stream id at once, the one with the last stream
 * it processed a second later, so a CONNECT already on its way when the
 * drain began is served rather than refused. Client: GOAWAY 0.
 */
void hb_conn_drain(struct hb_conn *c);
/* Abortive: reset the transport now; every stream end sees -ECONNRESET. */
void hb_conn_close(struct hb_conn *c);

enum hb_conn_state hb_conn_get_state(const struct hb_conn *c);
bool hb_conn_is_server(const struct hb_conn *c);
/* Why a CLOSED conn ended (positive errno), 0 if it ended cleanly. */
int hb_conn_error(const struct hb_conn *c);
/* Streams nghttp2 has open now, and streams ever opened on this conn. */
size_t hb_conn_live_streams(const struct hb_conn *c);
uint64_t hb_conn_total_streams(const struct hb_conn *c);
/* Bytes of memory held for this conn's send/receive buffers now. */
size_t hb_conn_buffered_bytes(const struct hb_conn *c);

/* ---- server side of a stream ---- */

/* First value of header `name` (lowercase) in req, or NULL. */
const char *hb_stream_req_header(const struct hb_stream_req *req,
				 const char *name);

/*
 * Take the stream as a relay end (for relay_start(l, *out, up, ...)). Call
 * at most once, then answer with hb_stream_respond(req, 200). 0 and *out,
 * or -EINVAL (already accepted/answered). If the client went away meanwhile
 * the end still comes back and reports -ECONNRESET on first use.
 */
int hb_stream_accept(struct hb_stream_req *req, struct relay_end **out);

/*
 * Answer the request: 200 (after hb_stream_accept(); the tunnel opens) or
 * another final status (without accept; the response ends the stream and
 * req is gone). 0, -ECONNRESET if the client is already gone (req is still
 * consumed), -EINVAL for a misuse.
 */
int hb_stream_respond(struct hb_stream_req *req, int status);

/* ---- any stream end ---- */

/* HTTP status received (client) or sent (server), 0 while none. */
int hb_stream_status(struct relay_end *e);
/* Positive errno for a CONNECT answer: 2xx -> 0, 400 -> EINVAL, 401/403 ->
 * EACCES, 502/503 -> ECONNREFUSED, 504 -> ETIMEDOUT, else EPROTO. */
int hb_status_to_errno(int status);

/* ---- per-thread counters ---- */

size_t hb_live_conns(void);	/* hb_conn objects alive on this thread */
size_t hb_live_streams(void);	/* stream objects alive on this thread */
size_t hb_buffered_bytes(void); /* stream + conn buffer memory held */

#endif
