// SPDX-License-Identifier: Apache-2.0
/*
 * HBONE over nghttp2 (see hbone.h for the contracts).
 *
 * Processing follows nghttp2's libevent-server flow on our loop: transport
 * readable -> read into a per-thread scratch buffer -> nghttp2_session_mem_recv
 * -> nghttp2_session_send -> flush. conn_run() is the one driver; it runs from
 * the transport's notification, from the kick timer (0 ms, armed by stream
 * ops so work happens after the current io dispatch, never re-entrantly) and
 * from the PING timer.
 *
 * Output. Control frames reach on_send() and are copied into a small
 * per-conn output buffer (obuf, at most HB_OBUF_MAX bytes; beyond that
 * NGHTTP2_ERR_WOULDBLOCK). DATA uses NGHTTP2_DATA_FLAG_NO_COPY: on_send_data()
 * writes [obuf][9-byte frame header][payload straight from the stream's send
 * ring] with one writev. If the transport takes only part of a frame, the
 * rest stays where it is (header copy + ring bytes, "pend") and is flushed
 * before anything else; the ring bytes stay pinned until then. So the
 * payload is copied once (relay buffer -> send ring) before the transport.
 * Invariant: obuf and pend are never both non-empty (on_send refuses while a
 * frame is pending; pend is only set after obuf was fully written).
 *
 * Input. on_data_chunk_recv() appends DATA payload to the stream's receive
 * queue (a list of chunks). nghttp2 does no automatic WINDOW_UPDATE; bytes
 * are handed to nghttp2_session_consume() only when the relay takes them
 * (reads them out, or writes them to its socket straight from the queue)
 * or when they are discarded, so a stream never buffers more than the
 * window we granted.
 *
 * Notifications to relays are level-triggered and never delivered from
 * inside a relay op or an nghttp2 callback: readiness changes put the stream
 * on the conn's ready list, and deliver() reports what is ready and wanted
 * at the end of conn_run(). A stream still ready after its notification goes
 * back on the list for the next turn.
 *
 * Lifetime. A conn frees itself once CLOSED and every stream object is gone
 * (refs == 0). A stream object lives while nghttp2 knows it (!ng_closed),
 * while someone owns it (the relay end, or the server app holding an
 * unanswered request) and while a partially written frame pins its ring.
 * Both are freed with loop_defer_free(), so code up the stack in the same
 * turn may still look at them.
 */
#include "hbone.h"

#include "bufpool.h"

#include "log.h"
#include "loop.h"
#include "relay.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define container_of(ptr, type, member)                                        \
	((type *)((char *)(ptr)-offsetof(type, member)))

#define MiB (1024u * 1024u)
#define KiB 1024u

#define HB_DEF_CLIENT_STREAMS  100
#define HB_DEF_SERVER_STREAMS  200
#define HB_DEF_STREAM_WINDOW   (4 * MiB)
#define HB_DEF_CONN_WINDOW     (16 * MiB)
#define HB_DEF_MAX_FRAME       (1 * MiB)
#define HB_DEF_SEND_BUF	       (256 * KiB)
#define HB_DEF_PING_MS	       10000
#define HB_DEF_PING_TIMEOUT_MS 20000
#define HB_DEF_SETTINGS_MS     5000
#define HB_DEF_HEADER_MS       10000
#define HB_DEF_IDLE_MS	       (10 * 60 * 1000)
#define HB_DEF_MAX_PENDING     100
#define HB_DEF_MAX_HDR_LIST    (16 * KiB)
#define HB_DEF_CTRL_BURST      1000
#define HB_DEF_CTRL_RATE       100
/*
 * nghttp2's own limits, set explicitly so a library update cannot move
 * them. Outbound ACKs: SETTINGS/PING ACKs queued because the peer does not
 * read (NGHTTP2_ERR_FLOODED beyond). SETTINGS entries per frame (7 are
 * defined). Incoming RST_STREAM token bucket (CVE-2023-44487, rapid reset;
 * Debian's 1.52.0-1+deb12u1 carries it): a GOAWAY beyond. CONTINUATION
 * frames per header block (CVE-2024-28182; deb12u2).
 */
#define HB_NG_MAX_OUTBOUND_ACK 1000
#define HB_NG_MAX_SETTINGS     16
#define HB_NG_RST_BURST	       1000
#define HB_NG_RST_RATE	       33
#define HB_NG_MAX_CONTINUATION 8
/* Control frames buffered before on_send() says WOULDBLOCK. */
#define HB_OBUF_MAX (64 * KiB)
/* Receive-queue chunk size (a bigger piece of payload gets its own chunk). */
#define HB_CHUNK (16 * KiB)
/* Transport reads per conn_run(): bounds one conn's share of a turn. */
#define HB_READ_ROUNDS 16
#define HB_READ_BUF    (64 * KiB)
/* Send+deliver passes per conn_run(). */
#define HB_RUN_PASSES 4
/* Server drain: between the shutdown notice and the final GOAWAY. */
#define HB_DRAIN_GRACE_MS 1000
/* How long CLOSING may take to flush its last frames. */
#define HB_CLOSE_LINGER_MS 5000
/* Regular request header fields a server keeps (more: 431). */
#define HB_MAX_REQ_HEADERS 64

/* ---- per-thread counters ---- */

static __thread size_t t_live_conns;
static __thread size_t t_live_streams;
static __thread size_t t_buffered;
static __thread uint8_t t_rbuf[HB_READ_BUF];

size_t hb_live_conns(void)
{
	return t_live_conns;
}

size_t hb_live_streams(void)
{
	return t_live_streams;
}

size_t hb_buffered_bytes(void)
{
	return t_buffered;
}

/* ---- transport ---- */

void hb_transport_notify(struct hb_transport *t, unsigned int what)
{
	if (t->cb)
		t->cb(t->cb_arg, what);
}

struct tcp_transport {
	struct hb_transport base;
	struct loop *loop;
	struct loop_io io;
	struct loop_timer linger; /* graceful close: waiting for the FIN */
};

static struct tcp_transport *tcp_of(struct hb_transport *t)
{
	return container_of(t, struct tcp_transport, base);
}

static ssize_t tcp_t_read(struct hb_transport *t, void *buf, size_t len)
{
	ssize_t n;

	do
		n = recv(tcp_of(t)->io.fd, buf, len, 0);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return n;
}

static ssize_t tcp_t_writev(struct hb_transport *t, const struct iovec *iov,
			    int iovcnt)
{
	struct msghdr mh = {.msg_iov = (struct iovec *)iov,
			    .msg_iovlen = iovcnt};
	ssize_t n;

	do
		n = sendmsg(tcp_of(t)->io.fd, &mh, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return n;
}

static int tcp_t_set_interest(struct hb_transport *t, bool rd, bool wr)
{
	struct tcp_transport *tt = tcp_of(t);

	return loop_io_update(tt->loop, &tt->io,
			      (rd ? EPOLLIN : 0) | (wr ? EPOLLOUT : 0));
}

static int tcp_t_shutdown(struct hb_transport *t)
{
	if (shutdown(tcp_of(t)->io.fd, SHUT_WR) < 0)
		return errno == ENOTCONN ? -ECONNRESET : -errno;
	return 0;
}

static void tcp_t_release(struct tcp_transport *tt, bool reset)
{
	if (reset) {
		/* Zero linger turns close() into a RST. */
		struct linger lg = {.l_onoff = 1, .l_linger = 0};

		setsockopt(tt->io.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	loop_io_stop(tt->loop, &tt->io);
	loop_timer_disarm(tt->loop, &tt->linger);
	close(tt->io.fd);
	tt->io.fd = -1;
	tt->base.cb = NULL;
	loop_defer_free(tt->loop, tt, free);
}

/* Lingering: throw away what the peer still sends, until its FIN. */
static void tcp_t_linger_io(struct loop *l, struct loop_io *io, uint32_t ev)
{
	struct tcp_transport *tt = io->arg;
	static __thread uint8_t junk[16 * KiB];

	for (int i = 0; i < HB_READ_ROUNDS; i++) {
		ssize_t n = recv(io->fd, junk, sizeof(junk), 0);

		if (n > 0)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		tcp_t_release(tt, false); /* EOF or error */
		return;
	}
}

static void tcp_t_linger_cb(struct loop *l, struct loop_timer *t)
{
	tcp_t_release(t->arg, false);
}

/*
 * Like tls.c's TLS_LINGER: FIN after the bytes accepted so far, then read
 * and discard until the peer's FIN (bounded in time). close() with unread
 * input would answer with a RST, and a RST can destroy our last frames
 * (a GOAWAY saying why) before the peer read them.
 */
static void tcp_t_close(struct hb_transport *t)
{
	struct tcp_transport *tt = tcp_of(t);

	tt->base.cb = NULL;
	if (shutdown(tt->io.fd, SHUT_WR) < 0) {
		tcp_t_release(tt, false);
		return;
	}
	tt->io.cb = tcp_t_linger_io;
	if (loop_io_update(tt->loop, &tt->io, EPOLLIN) < 0) {
		tcp_t_release(tt, false);
		return;
	}
	loop_timer_arm(tt->loop, &tt->linger, HB_CLOSE_LINGER_MS);
}

static void tcp_t_abort(struct hb_transport *t)
{
	tcp_t_release(tcp_of(t), true);
}

static const struct hb_transport_ops tcp_transport_ops = {
    .read = tcp_t_read,
    .writev = tcp_t_writev,
    .set_interest = tcp_t_set_interest,
    .shutdown = tcp_t_shutdown,
    .close = tcp_t_close,
    .abort = tcp_t_abort,
};

static void tcp_t_io_cb(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct tcp_transport *tt = io->arg;
	unsigned int what = 0;

	if (events & EPOLLIN)
		what |= HB_TRANSPORT_READABLE;
	if (events & EPOLLOUT)
		what |= HB_TRANSPORT_WRITABLE;
	if (events & EPOLLERR)
		what |= HB_TRANSPORT_ERROR;
	/* HUP: let the read/write that was asked for find EOF/the error. */
	if (events & EPOLLHUP) {
		if (io->events & EPOLLIN)
			what |= HB_TRANSPORT_READABLE;
		if (io->events & EPOLLOUT)
			what |= HB_TRANSPORT_WRITABLE;
	}
	hb_transport_notify(&tt->base, what);
}

int hb_transport_tcp_new(struct loop *l, int fd, struct hb_transport **out)
{
	struct tcp_transport *tt = calloc(1, sizeof(*tt));

	if (!tt)
		return -ENOMEM;
	tt->base.ops = &tcp_transport_ops;
	tt->loop = l;
	loop_io_init(&tt->io, fd, tcp_t_io_cb, tt);
	loop_timer_init(&tt->linger, tcp_t_linger_cb, tt);
	*out = &tt->base;
	return 0;
}

/* ---- objects ---- */

/* Stream state; stream_set_state() is the only place it changes. */
enum hb_stream_state {
	HB_ST_REQUESTED, /* client: CONNECT sent, no final response yet;
			    server: request being read or waiting for the
			    app's answer */
	HB_ST_OPEN,	 /* 2xx sent/received: DATA both ways until the
			    END_STREAMs (half-close tracked by the fin flags) */
	HB_ST_REFUSED,	 /* non-2xx final response sent/received; no tunnel */
	HB_ST_RESET,	 /* RST_STREAM either way or the conn was lost (err) */
};

static const char *const stream_state_names[] = {
    [HB_ST_REQUESTED] = "requested",
    [HB_ST_OPEN] = "open",
    [HB_ST_REFUSED] = "refused",
    [HB_ST_RESET] = "reset",
};

/* Who holds the stream object besides nghttp2. */
enum hb_owner {
	HB_OWN_LIB,	/* nobody: freed once nghttp2 is done with it */
	HB_OWN_APP_REQ, /* server app holds the unanswered request */
	HB_OWN_END,	/* a relay end (client, or server after accept) */
};

struct hb_chunk {
	struct hb_chunk *next;
	uint32_t off, len, cap;
	uint8_t data[];
};

struct hb_stream {
	struct relay_end base; /* first: the relay sees only this */
	struct hb_conn *c;
	int32_t id;
	uint8_t state;	 /* enum hb_stream_state */
	uint8_t owner;	 /* enum hb_owner */
	bool ng_closed;	 /* nghttp2 forgot the stream, or the conn is gone */
	bool fin_queued; /* END_STREAM goes out after the send ring drains */
	bool remote_fin; /* END_STREAM received */
	bool deferred;	 /* the data provider returned NGHTTP2_ERR_DEFERRED */
	bool want_read, want_write; /* relay interest */
	bool in_ready;
	bool accepted; /* server: end handed out */
	bool bad_req;  /* server: request failed validation */
	int err;       /* positive errno once failed/refused, else 0 */
	int status;    /* HTTP status received (client) / sent (server) */

	/* Send ring: [srd, swr) pending; sframed of them handed to nghttp2
	 * for the DATA frame being written. Allocated only while non-empty. */
	uint8_t *sbuf;
	uint64_t srd, swr;
	uint32_t sframed;

	/* Receive queue. */
	struct hb_chunk *rq_head, *rq_tail;
	size_t rq_bytes;

	struct hb_stream *prev, *next; /* conn's stream list */
	struct hb_stream *next_ready;

	/* Server: the request as parsed. Header strings live in hmem at
	 * offsets in hoff until the request is complete. */
	struct hb_stream_req req;
	char *hmem;
	size_t hlen, hcap;
	uint32_t (*hoff)[2];
	struct hb_header *hdrs;
	size_t nh;
	char method[16];
	int32_t auth_off; /* -1 none */
	uint32_t hsize;	  /* header list size, RFC 9113 accounting */
	bool has_path, has_scheme, has_other_pseudo, regular_seen;
	bool too_big; /* server: request over max_header_list (431) */
};

/* Conn state; conn_set_state() is the only place it changes. */
static const char *const conn_state_names[] = {
    [HB_CONN_HANDSHAKING] = "handshaking", [HB_CONN_OPEN] = "open",
    [HB_CONN_DRAINING] = "draining",	   [HB_CONN_CLOSING] = "closing",
    [HB_CONN_CLOSED] = "closed",
};

struct hb_conn {
	struct loop *loop;
	struct hb_transport *t;
	nghttp2_session *ng;
	uint8_t state; /* enum hb_conn_state */
	bool server;
	bool in_run;		/* conn_run() on the stack */
	int in_ng;		/* inside an nghttp2 call: defer closing */
	bool need_send;		/* something new for nghttp2_session_send() */
	bool write_blocked;	/* the transport took less than offered */
	bool io_read, io_write; /* interest set on the transport */
	bool freed;
	int fail_err;	/* fatal error found inside a callback */
	bool close_req; /* hb_conn_close() from inside a callback */
	int err;	/* why it closed */
	uint8_t events; /* pending observer events, 1 << enum */
	struct hb_conn_opts o;
	struct hb_server_cbs srv;
	hb_conn_observer obs;
	void *obs_arg;

	/* Output: copied control frames, then at most one partial DATA
	 * frame whose payload is still in its stream's ring. */
	uint8_t *obuf;
	size_t olen, ooff, ocap;
	struct {
		struct hb_stream *s;
		uint8_t hdr[9];
		uint8_t hdr_off;
		uint32_t data_left;
	} pend;

	struct loop_timer kick, ping, linger;
	uint64_t last_rx_ms, ping_sent_ms;
	bool ping_out;

	/* Deadlines (one timer, armed for the earliest; see hbone.h). Times
	 * are loop_now_ms() values; 0 means "not running". */
	struct loop_timer dl;
	uint64_t start_ms;	 /* settings deadline, while HANDSHAKING */
	uint64_t hdr_since_ms;	 /* a header block began and has not ended */
	uint64_t idle_since_ms;	 /* server: no stream open since then */
	uint64_t drain_final_ms; /* server: the final GOAWAY of a drain */
	/* Control-frame budget in 1/1000 frames, refilled up to ctrl_burst. */
	uint64_t ctrl_tokens, ctrl_ms;
	size_t pending; /* server: requests the app holds unanswered */

	struct hb_stream *streams;
	struct hb_stream *ready_head, *ready_tail;
	size_t nready;
	size_t live; /* nghttp2-open streams */
	size_t refs; /* stream objects not yet freed */
	uint64_t total;
	size_t buffered;
};

const char *hb_conn_state_name(enum hb_conn_state s)
{
	if ((unsigned int)s > HB_CONN_CLOSED)
		return "unknown";
	return conn_state_names[s];
}

static void conn_set_state(struct hb_conn *c, enum hb_conn_state to)
{
	enum hb_conn_state from = c->state;
	bool legal;

	switch (from) {
	case HB_CONN_HANDSHAKING:
	case HB_CONN_OPEN:
		legal = to > from;
		break;
	case HB_CONN_DRAINING:
		legal = to == HB_CONN_CLOSING || to == HB_CONN_CLOSED;
		break;
	case HB_CONN_CLOSING:
		legal = to == HB_CONN_CLOSED;
		break;
	default:
		legal = false;
		break;
	}
	if (!legal)
		log_error("hbone conn %p: illegal transition %s -> %s",
			  (void *)c, conn_state_names[from],
			  conn_state_names[to]);
	assert(legal);
	log_debug("hbone conn %p (%s): %s -> %s", (void *)c,
		  c->server ? "server" : "client", conn_state_names[from],
		  conn_state_names[to]);
	c->state = to;
}

static void stream_set_state(struct hb_stream *s, enum hb_stream_state to)
{
	enum hb_stream_state from = s->state;
	bool legal;

	switch (from) {
	case HB_ST_REQUESTED:
		legal = to != HB_ST_REQUESTED;
		break;
	case HB_ST_OPEN:
	case HB_ST_REFUSED:
		legal = to == HB_ST_RESET;
		break;
	default:
		legal = false;
		break;
	}
	if (!legal)
		log_error("hbone stream %d: illegal transition %s -> %s", s->id,
			  stream_state_names[from], stream_state_names[to]);
	assert(legal);
	s->state = to;
}

static void buffered_add(struct hb_conn *c, ssize_t delta)
{
	c->buffered += delta;
	t_buffered += delta;
}

/* ---- abuse counters ---- */

static const char *const h2_error_names[HB_H2_ERROR_CODES] = {
    "NO_ERROR",
    "PROTOCOL_ERROR",
    "INTERNAL_ERROR",
    "FLOW_CONTROL_ERROR",
    "SETTINGS_TIMEOUT",
    "STREAM_CLOSED",
    "FRAME_SIZE_ERROR",
    "REFUSED_STREAM",
    "CANCEL",
    "COMPRESSION_ERROR",
    "CONNECT_ERROR",
    "ENHANCE_YOUR_CALM",
    "INADEQUATE_SECURITY",
    "HTTP_1_1_REQUIRED",
};

static const char *const deadline_names[HB_DL__COUNT] = {
    [HB_DL_SETTINGS] = "settings", [HB_DL_HEADERS] = "header_block",
    [HB_DL_IDLE] = "idle",	   [HB_DL_PING] = "ping",
    [HB_DL_FLUSH] = "flush",
};

static const char *const limit_names[HB_LIM__COUNT] = {
    [HB_LIM_PENDING] = "pending_connects",
    [HB_LIM_CONTROL] = "control_frames",
    [HB_LIM_OUTBOUND] = "outbound_queue",
    [HB_LIM_CONTINUATIONS] = "continuations",
    [HB_LIM_HEADER_LIST] = "header_list",
};

const char *hb_h2_error_name(uint32_t code)
{
	return code < HB_H2_ERROR_CODES ? h2_error_names[code] : "UNKNOWN";
}

const char *hb_deadline_name(enum hb_deadline d)
{
	return (unsigned int)d < HB_DL__COUNT ? deadline_names[d] : "unknown";
}

const char *hb_limit_name(enum hb_limit l)
{
	return (unsigned int)l < HB_LIM__COUNT ? limit_names[l] : "unknown";
}

static const char *side_name(const struct hb_conn *c)
{
	return c->server ? "server" : "client";
}

bool hb_h2_error_counted(uint32_t code)
{
	return code < HB_H2_ERROR_CODES && code != NGHTTP2_NO_ERROR &&
	       code != NGHTTP2_CANCEL && code != NGHTTP2_CONNECT_ERROR;
}

/* A GOAWAY/RST_STREAM we sent (see struct hb_stats for what counts). */
static void count_error_sent(struct hb_conn *c, uint32_t code)
{
	if (!c->o.stats || !hb_h2_error_counted(code))
		return;
	atomic_fetch_add_explicit(&c->o.stats->errors[c->server][code], 1,
				  memory_order_relaxed);
}

static void count_deadline(struct hb_conn *c, enum hb_deadline d)
{
	if (c->o.stats)
		atomic_fetch_add_explicit(&c->o.stats->deadlines[c->server][d],
					  1, memory_order_relaxed);
}

static void count_limit(struct hb_conn *c, enum hb_limit l)
{
	if (c->o.stats)
		atomic_fetch_add_explicit(&c->o.stats->limits[c->server][l], 1,
					  memory_order_relaxed);
}

/* ---- conn plumbing declarations ---- */

static void conn_run(struct hb_conn *c, unsigned int what);
static void conn_kick(struct hb_conn *c);
static void conn_maybe_free(struct hb_conn *c);
static void conn_deadline_update(struct hb_conn *c);
static void stream_maybe_free(struct hb_stream *s);

static bool conn_alive(const struct hb_conn *c)
{
	return c->state < HB_CONN_CLOSED;
}

/* nghttp2 session exists and still processes frames. */
static bool conn_ng_usable(const struct hb_conn *c)
{
	return c->state < HB_CONN_CLOSING;
}

static void conn_want_send(struct hb_conn *c)
{
	c->need_send = true;
	conn_kick(c);
}

static void conn_event(struct hb_conn *c, enum hb_conn_event ev)
{
	c->events |= 1u << ev;
	conn_kick(c);
}

/* ---- stream buffers ---- */

static uint32_t ring_used(const struct hb_stream *s)
{
	return (uint32_t)(s->swr - s->srd);
}

/* Up to two iovecs for `len` bytes starting `skip` bytes after srd. */
static int ring_iov(const struct hb_stream *s, size_t skip, size_t len,
		    struct iovec *iov)
{
	uint32_t cap = s->c->o.send_buf;
	uint32_t pos = (uint32_t)((s->srd + skip) & (cap - 1));
	size_t first = cap - pos < len ? cap - pos : len;
	int n = 0;

	if (!len)
		return 0;
	iov[n++] = (struct iovec){s->sbuf + pos, first};
	if (first < len)
		iov[n++] = (struct iovec){s->sbuf, len - first};
	return n;
}

static void ring_free(struct hb_stream *s)
{
	if (!s->sbuf)
		return;
	bufpool_put(s->sbuf, s->c->o.send_buf);
	s->sbuf = NULL;
	buffered_add(s->c, -(ssize_t)s->c->o.send_buf);
	s->srd = s->swr = 0;
	s->sframed = 0;
}

static bool stream_pinned(const struct hb_stream *s)
{
	return s->c->pend.s == s;
}

/*
 * Drops unsent bytes (reset/abort). Bytes already handed to nghttp2 for a
 * DATA frame it may still send (sframed, while the stream is open in
 * nghttp2) and a partly written frame (pinned) must stay; the ring goes once
 * they are out.
 */
static void ring_drop(struct hb_stream *s)
{
	if (stream_pinned(s))
		return;
	if (s->sframed && !s->ng_closed) {
		s->swr = s->srd + s->sframed;
		return;
	}
	ring_free(s);
}

/* n bytes at srd were written to the transport. */
static void ring_consumed(struct hb_stream *s, uint32_t n)
{
	s->srd += n;
	s->sframed -= n;
	if (s->srd == s->swr && !stream_pinned(s))
		ring_free(s);
}

/* Gives nghttp2 back the window of bytes we will never hand to a relay. */
static void rq_consume(struct hb_stream *s, size_t n)
{
	struct hb_conn *c = s->c;

	if (!n || !conn_ng_usable(c))
		return;
	nghttp2_session_consume(c->ng, s->id, n);
	/* Usually below the WINDOW_UPDATE threshold: then nothing to send
	 * (a small message does not cost another pass over the session). */
	if (nghttp2_session_want_write(c->ng))
		conn_want_send(c);
}

static void chunk_free(struct hb_chunk *k)
{
	bufpool_put(k, sizeof(*k) + k->cap);
}

static void rq_drop(struct hb_stream *s, bool consume)
{
	struct hb_chunk *k;
	size_t n = s->rq_bytes;

	while ((k = s->rq_head)) {
		s->rq_head = k->next;
		buffered_add(s->c, -(ssize_t)k->cap);
		chunk_free(k);
	}
	s->rq_tail = NULL;
	s->rq_bytes = 0;
	if (consume)
		rq_consume(s, n);
}

static int rq_append(struct hb_stream *s, const uint8_t *data, size_t len)
{
	while (len) {
		struct hb_chunk *k = s->rq_tail;
		size_t n;

		if (!k || k->len == k->cap) {
			size_t cap = len > HB_CHUNK ? len : HB_CHUNK;

			k = bufpool_get(sizeof(*k) + cap);
			if (!k)
				return -ENOMEM;
			k->next = NULL;
			k->off = k->len = 0;
			k->cap = (uint32_t)cap;
			buffered_add(s->c, (ssize_t)cap);
			if (s->rq_tail)
				s->rq_tail->next = k;
			else
				s->rq_head = k;
			s->rq_tail = k;
		}
		n = k->cap - k->len < len ? k->cap - k->len : len;
		memcpy(k->data + k->len, data, n);
		k->len += n;
		data += n;
		len -= n;
		s->rq_bytes += n;
	}
	return 0;
}

/* ---- ready list and notifications ---- */

static void ready_add(struct hb_stream *s)
{
	struct hb_conn *c = s->c;

	if (s->in_ready)
		return;
	s->in_ready = true;
	s->next_ready = NULL;
	if (c->ready_tail)
		c->ready_tail->next_ready = s;
	else
		c->ready_head = s;
	c->ready_tail = s;
	c->nready++;
	conn_kick(c);
}

static void ready_remove(struct hb_stream *s)
{
	struct hb_conn *c = s->c;
	struct hb_stream **pp = &c->ready_head, *prev = NULL;

	if (!s->in_ready)
		return;
	while (*pp && *pp != s) {
		prev = *pp;
		pp = &(*pp)->next_ready;
	}
	assert(*pp);
	*pp = s->next_ready;
	if (c->ready_tail == s)
		c->ready_tail = prev;
	c->nready--;
	s->in_ready = false;
}

/* What the relay owning s should hear now (level-triggered). */
static unsigned int stream_what(const struct hb_stream *s)
{
	unsigned int w = 0;

	if (s->owner != HB_OWN_END || !s->base.relay)
		return 0;
	if (s->err)
		return RELAY_END_ERROR;
	if (s->want_read && (s->rq_bytes || s->remote_fin))
		w |= RELAY_END_READABLE;
	if (s->want_write && s->state == HB_ST_OPEN &&
	    (ring_used(s) < s->c->o.send_buf || s->fin_queued || s->ng_closed))
		w |= RELAY_END_WRITABLE;
	return w;
}

/*
 * Pops at most the streams that were ready when it started; a stream made
 * ready again by what we deliver is appended and waits for the next pass.
 */
static void deliver(struct hb_conn *c)
{
	size_t budget = c->nready;
	struct hb_stream *s;

	while (budget-- && (s = c->ready_head)) {
		unsigned int what;

		c->ready_head = s->next_ready;
		if (!c->ready_head)
			c->ready_tail = NULL;
		c->nready--;
		s->in_ready = false;
		what = stream_what(s);
		if (!what)
			continue;
		/* The relay may release (and we may free) s in here. */
		relay_end_notify(&s->base, what);
		if (stream_what(s))
			ready_add(s);
	}
}

/* ---- stream lifecycle ---- */

static void stream_reset(struct hb_stream *s, int err)
{
	if (s->state != HB_ST_RESET)
		stream_set_state(s, HB_ST_RESET);
	if (!s->err)
		s->err = err;
	rq_drop(s, true);
	ring_drop(s);
	ready_add(s);
}

/* A stream nghttp2 knows was opened (either side). */
static void conn_stream_opened(struct hb_conn *c)
{
	c->live++;
	c->total++;
	c->idle_since_ms = 0;
}

/* nghttp2 is done with s (closed, or the whole session is going away). */
static void stream_ng_closed(struct hb_stream *s, uint32_t error_code)
{
	struct hb_conn *c = s->c;

	if (s->ng_closed)
		return;
	s->ng_closed = true;
	/* nghttp2 cancels a DATA frame it had not sent for a closed stream. */
	if (!stream_pinned(s))
		s->sframed = 0;
	if (c->live && !--c->live)
		c->idle_since_ms = loop_now_ms(c->loop);
	conn_event(c, HB_CONN_EV_STREAM_CLOSED);
	switch (s->state) {
	case HB_ST_OPEN:
		if (error_code == NGHTTP2_NO_ERROR && s->remote_fin)
			break; /* both END_STREAMs: rq stays readable */
		stream_reset(s, ECONNRESET);
		break;
	case HB_ST_REQUESTED:
		stream_reset(s, error_code == NGHTTP2_REFUSED_STREAM
				    ? ECONNREFUSED
				    : ECONNRESET);
		break;
	default:
		break;
	}
	ring_drop(s);
	if (s->owner == HB_OWN_LIB)
		rq_drop(s, true);
	ready_add(s);
	stream_maybe_free(s);
}

static void stream_free(void *p)
{
	struct hb_stream *s = p;

	free(s->hmem);
	free(s->hoff);
	free(s->hdrs);
	free(s);
}

static void stream_maybe_free(struct hb_stream *s)
{
	struct hb_conn *c = s->c;

	if (s->owner != HB_OWN_LIB || !s->ng_closed || stream_pinned(s))
		return;
	if (s->in_ready)
		ready_remove(s);
	rq_drop(s, true);
	ring_free(s);
	if (s->prev)
		s->prev->next = s->next;
	else
		c->streams = s->next;
	if (s->next)
		s->next->prev = s->prev;
	if (conn_ng_usable(c) && s->id > 0)
		nghttp2_session_set_stream_user_data(c->ng, s->id, NULL);
	s->owner = 0xff; /* freed: never again */
	t_live_streams--;
	c->refs--;
	loop_defer_free(c->loop, s, stream_free);
	conn_maybe_free(c);
}

static struct hb_stream *stream_new(struct hb_conn *c)
{
	struct hb_stream *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->c = c;
	s->auth_off = -1;
	s->state = HB_ST_REQUESTED;
	s->owner = HB_OWN_LIB;
	s->next = c->streams;
	if (c->streams)
		c->streams->prev = s;
	c->streams = s;
	c->refs++;
	t_live_streams++;
	return s;
}

static struct hb_stream *stream_of(struct relay_end *e)
{
	return (struct hb_stream *)e;
}

/* Queue data (or END_STREAM) for a stream nghttp2 deferred. */
static void stream_resume(struct hb_stream *s)
{
	struct hb_conn *c = s->c;

	if (!s->deferred || s->ng_closed || !conn_ng_usable(c))
		return;
	s->deferred = false;
	nghttp2_session_resume_data(c->ng, s->id);
	conn_want_send(c);
}

/* ---- relay_end ops ---- */

/* What a read of an empty receive queue says: EOF, reset, or EAGAIN. */
static int rq_empty_result(const struct hb_stream *s)
{
	if (s->remote_fin)
		return 0;
	if (s->ng_closed)
		return -ECONNRESET;
	return -EAGAIN;
}

/*
 * The first n queued bytes were taken: free the chunks they emptied and
 * give the window back (only now that the TCP side has the bytes).
 */
static void rq_take(struct hb_stream *s, size_t n)
{
	size_t left = n;

	while (left) {
		struct hb_chunk *k = s->rq_head;
		size_t m = k->len - k->off;

		if (m > left)
			m = left;
		k->off += m;
		left -= m;
		if (k->off == k->len) {
			s->rq_head = k->next;
			if (!s->rq_head)
				s->rq_tail = NULL;
			buffered_add(s->c, -(ssize_t)k->cap);
			chunk_free(k);
		}
	}
	s->rq_bytes -= n;
	rq_consume(s, n);
}

static ssize_t st_read(struct relay_end *e, void *buf, size_t len)
{
	struct hb_stream *s = stream_of(e);
	size_t done = 0;

	if (s->err)
		return -s->err;
	for (struct hb_chunk *k = s->rq_head; k && done < len; k = k->next) {
		size_t n = k->len - k->off;

		if (n > len - done)
			n = len - done;
		memcpy((uint8_t *)buf + done, k->data + k->off, n);
		done += n;
	}
	if (!done)
		return rq_empty_result(s);
	rq_take(s, done);
	return done;
}

/* Lends the receive queue (relay_end_ops.peek); consume = rq_take. */
static int st_peek(struct relay_end *e, struct iovec *iov, int max)
{
	struct hb_stream *s = stream_of(e);
	int n = 0;

	if (s->err)
		return -s->err;
	for (struct hb_chunk *k = s->rq_head; k && n < max; k = k->next)
		iov[n++] = (struct iovec){k->data + k->off, k->len - k->off};
	return n ? n : rq_empty_result(s);
}

static void st_consume(struct relay_end *e, size_t n)
{
	if (n)
		rq_take(stream_of(e), n);
}

static ssize_t st_write(struct relay_end *e, const void *buf, size_t len)
{
	struct hb_stream *s = stream_of(e);
	struct hb_conn *c = s->c;
	uint32_t room;
	struct iovec iov[2];
	int n;

	if (s->err)
		return -s->err;
	if (s->fin_queued || s->ng_closed)
		return -EPIPE;
	if (s->state != HB_ST_OPEN)
		return -EAGAIN; /* not connected yet */
	if (!len)
		return 0;
	if (!s->sbuf) {
		s->sbuf = bufpool_get(c->o.send_buf);
		if (!s->sbuf)
			return -ENOMEM;
		buffered_add(c, (ssize_t)c->o.send_buf);
	}
	room = c->o.send_buf - ring_used(s);
	if (!room)
		return -EAGAIN;
	if (len > room)
		len = room;
	/* Free space starts at swr: same arithmetic as ring_iov from srd. */
	n = ring_iov(s, ring_used(s), len, iov);
	memcpy(iov[0].iov_base, buf, iov[0].iov_len);
	if (n > 1)
		memcpy(iov[1].iov_base, (const uint8_t *)buf + iov[0].iov_len,
		       iov[1].iov_len);
	s->swr += len;
	stream_resume(s);
	return len;
}

static int st_shutdown_write(struct relay_end *e)
{
	struct hb_stream *s = stream_of(e);

	if (s->err)
		return -s->err;
	if (s->ng_closed)
		return -ECONNRESET;
	s->fin_queued = true;
	stream_resume(s);
	return 0;
}

static int st_error(struct relay_end *e)
{
	return -stream_of(e)->err;
}

static int st_set_interest(struct relay_end *e, bool rd, bool wr)
{
	struct hb_stream *s = stream_of(e);

	s->want_read = rd;
	s->want_write = wr;
	if (stream_what(s))
		ready_add(s);
	return 0;
}

static void stream_rst(struct hb_stream *s, uint32_t code)
{
	nghttp2_submit_rst_stream(s->c->ng, NGHTTP2_FLAG_NONE, s->id, code);
	ring_drop(s);
	conn_want_send(s->c);
}

/*
 * The owner lets go of the end. Graceful (close): END_STREAM after the bytes
 * written so far. Abort: RST_STREAM (CONNECT_ERROR for a tunnel, CANCEL for
 * a request still waiting), except after a refusal: the peer already ended
 * its side, so we end ours with END_STREAM and the server's rapid-reset
 * accounting never sees ordinary connect failures.
 */
static void st_release(struct hb_stream *s, bool reset)
{
	struct hb_conn *c = s->c;

	s->owner = HB_OWN_LIB;
	s->base.relay = NULL;
	if (s->in_ready)
		ready_remove(s);
	if (!s->ng_closed && conn_ng_usable(c)) {
		switch (s->state) {
		case HB_ST_OPEN:
			if (reset) {
				stream_rst(s, NGHTTP2_CONNECT_ERROR);
			} else if (!s->fin_queued) {
				s->fin_queued = true;
				stream_resume(s);
			}
			break;
		case HB_ST_REFUSED:
			if (!c->server && !s->fin_queued) {
				s->fin_queued = true;
				stream_resume(s);
			}
			break;
		case HB_ST_REQUESTED:
			stream_rst(s, NGHTTP2_CANCEL);
			break;
		default:
			break;
		}
	}
	if (reset)
		ring_drop(s);
	rq_drop(s, true);
	stream_maybe_free(s);
}

static void st_close(struct relay_end *e)
{
	st_release(stream_of(e), false);
}

static void st_abort(struct relay_end *e)
{
	st_release(stream_of(e), true);
}

static const struct relay_end_ops stream_end_ops = {
    .read = st_read,
    .write = st_write,
    .shutdown_write = st_shutdown_write,
    .error = st_error,
    .set_interest = st_set_interest,
    .close = st_close,
    .abort = st_abort,
    .peek = st_peek,
    .consume = st_consume,
};

int hb_stream_status(struct relay_end *e)
{
	return e->ops == &stream_end_ops ? stream_of(e)->status : 0;
}

int hb_status_to_errno(int status)
{
	if (status >= 200 && status < 300)
		return 0;
	switch (status) {
	case 400:
		return EINVAL;
	case 401:
	case 403:
		return EACCES;
	case 502:
	case 503:
		return ECONNREFUSED;
	case 504:
		return ETIMEDOUT;
	default:
		return EPROTO;
	}
}

/* ---- nghttp2 output callbacks ---- */

static void obuf_reset_if_empty(struct hb_conn *c)
{
	if (c->ooff == c->olen) {
		c->ooff = c->olen = 0;
		/* Idle conns keep no output memory. */
		if (c->obuf) {
			free(c->obuf);
			buffered_add(c, -(ssize_t)c->ocap);
			c->obuf = NULL;
			c->ocap = 0;
		}
	}
}

static int obuf_append(struct hb_conn *c, const uint8_t *data, size_t len)
{
	if (c->olen + len > c->ocap) {
		size_t cap = c->ocap ? c->ocap : 4 * KiB;
		uint8_t *b;

		while (cap < c->olen + len)
			cap *= 2;
		b = realloc(c->obuf, cap);
		if (!b)
			return -ENOMEM;
		buffered_add(c, (ssize_t)(cap - c->ocap));
		c->obuf = b;
		c->ocap = cap;
	}
	memcpy(c->obuf + c->olen, data, len);
	c->olen += len;
	return 0;
}

/* The partially written frame is out: unpin its stream. */
static void pend_done(struct hb_conn *c)
{
	struct hb_stream *s = c->pend.s;

	c->pend.s = NULL;
	if (s->srd == s->swr)
		ring_free(s);
	ready_add(s);
	stream_maybe_free(s);
}

/*
 * Write out obuf, then the rest of a partial DATA frame. 0 (maybe still
 * blocked, see write_blocked) or -errno.
 */
static int conn_flush(struct hb_conn *c)
{
	while (c->olen > c->ooff || c->pend.s) {
		struct iovec iov[3];
		int n = 0;
		ssize_t w;
		size_t want;

		if (c->olen > c->ooff) {
			iov[n++] = (struct iovec){c->obuf + c->ooff,
						  c->olen - c->ooff};
		} else {
			struct hb_stream *s = c->pend.s;

			if (c->pend.hdr_off < 9)
				iov[n++] = (struct iovec){c->pend.hdr +
							      c->pend.hdr_off,
							  9u - c->pend.hdr_off};
			n += ring_iov(s, 0, c->pend.data_left, iov + n);
		}
		want = 0;
		for (int i = 0; i < n; i++)
			want += iov[i].iov_len;
		w = c->t->ops->writev(c->t, iov, n);
		if (w == -EAGAIN) {
			c->write_blocked = true;
			return 0;
		}
		if (w < 0)
			return (int)w;
		if (c->olen > c->ooff) {
			c->ooff += w;
			obuf_reset_if_empty(c);
		} else {
			size_t h = 9u - c->pend.hdr_off;

			if ((size_t)w < h) {
				c->pend.hdr_off += w;
			} else {
				c->pend.hdr_off = 9;
				c->pend.data_left -= (uint32_t)(w - h);
				ring_consumed(c->pend.s, (uint32_t)(w - h));
				if (!c->pend.data_left)
					pend_done(c);
			}
		}
		if ((size_t)w < want) {
			c->write_blocked = true;
			return 0;
		}
	}
	return 0;
}

static ssize_t on_send(nghttp2_session *ng, const uint8_t *data, size_t len,
		       int flags, void *arg)
{
	struct hb_conn *c = arg;
	ssize_t w;
	int err;

	if (c->pend.s)
		return NGHTTP2_ERR_WOULDBLOCK;
	if (c->olen - c->ooff + len > HB_OBUF_MAX) {
		err = conn_flush(c);
		if (err) {
			c->fail_err = -err;
			return NGHTTP2_ERR_CALLBACK_FAILURE;
		}
		if (c->olen > c->ooff)
			return NGHTTP2_ERR_WOULDBLOCK;
		/* Alone and big (a large HEADERS): straight through. */
		if (len > HB_OBUF_MAX) {
			struct iovec iov = {(void *)data, len};

			w = c->t->ops->writev(c->t, &iov, 1);
			if (w == -EAGAIN) {
				c->write_blocked = true;
				return NGHTTP2_ERR_WOULDBLOCK;
			}
			if (w < 0) {
				c->fail_err = (int)-w;
				return NGHTTP2_ERR_CALLBACK_FAILURE;
			}
			if ((size_t)w < len)
				c->write_blocked = true;
			return w; /* nghttp2 offers the rest again */
		}
	}
	if (obuf_append(c, data, len)) {
		c->fail_err = ENOMEM;
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	}
	return (ssize_t)len;
}

/*
 * NO_COPY DATA: [pending control bytes][frame header][payload from the ring]
 * in one writev. A frame the transport took only partly is finished later
 * from c->pend (nghttp2 requires the whole frame once we return 0).
 */
static int on_send_data(nghttp2_session *ng, nghttp2_frame *frame,
			const uint8_t *framehd, size_t length,
			nghttp2_data_source *source, void *arg)
{
	struct hb_conn *c = arg;
	struct hb_stream *s = source->ptr;
	struct iovec iov[4];
	size_t pre = c->olen - c->ooff, w;
	ssize_t n;
	int cnt = 0;

	if (c->pend.s || c->write_blocked)
		return NGHTTP2_ERR_WOULDBLOCK;
	assert(frame->data.padlen == 0);
	if (length > s->sframed || (length && !s->sbuf))
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* cannot happen
							       */
	if (pre)
		iov[cnt++] = (struct iovec){c->obuf + c->ooff, pre};
	iov[cnt++] = (struct iovec){(void *)framehd, 9};
	cnt += ring_iov(s, 0, length, iov + cnt);
	n = c->t->ops->writev(c->t, iov, cnt);
	if (n == -EAGAIN) {
		c->write_blocked = true;
		return NGHTTP2_ERR_WOULDBLOCK;
	}
	if (n < 0) {
		c->fail_err = (int)-n;
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	}
	w = (size_t)n;
	if (w < pre) {
		c->ooff += w;
		c->write_blocked = true;
		return NGHTTP2_ERR_WOULDBLOCK; /* frame not started */
	}
	c->ooff += pre;
	obuf_reset_if_empty(c);
	w -= pre;
	if (w < 9 + length) {
		/* Partial frame: the rest is flushed before anything else. */
		c->write_blocked = true;
		c->pend.s = s;
		memcpy(c->pend.hdr, framehd, 9);
		c->pend.hdr_off = (uint8_t)(w < 9 ? w : 9);
		w = w > 9 ? w - 9 : 0;
		c->pend.data_left = (uint32_t)(length - w);
		ring_consumed(s, (uint32_t)w);
		return 0;
	}
	ring_consumed(s, (uint32_t)length);
	ready_add(s); /* room in the ring: maybe writable again */
	return 0;
}

static ssize_t on_data_read(nghttp2_session *ng, int32_t stream_id,
			    uint8_t *buf, size_t length, uint32_t *flags,
			    nghttp2_data_source *source, void *arg)
{
	struct hb_stream *s = source->ptr;
	uint32_t avail = ring_used(s) - s->sframed;
	uint32_t n = avail < length ? avail : (uint32_t)length;

	if (!n && !s->fin_queued) {
		s->deferred = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	s->sframed += n;
	*flags |= NGHTTP2_DATA_FLAG_NO_COPY;
	if (s->fin_queued && n == avail)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return n;
}

/* Frames as large as the peer allows, but never bigger than what waits. */
static ssize_t on_read_length(nghttp2_session *ng, uint8_t type, int32_t id,
			      int32_t conn_win, int32_t stream_win,
			      uint32_t peer_max_frame, void *arg)
{
	struct hb_stream *s = nghttp2_session_get_stream_user_data(ng, id);
	ssize_t n = peer_max_frame;

	if (conn_win < n)
		n = conn_win;
	if (stream_win < n)
		n = stream_win;
	if (s && s->owner != 0xff) {
		ssize_t avail = ring_used(s) - s->sframed;

		if (avail > 0 && avail < n)
			n = avail;
	}
	return n > 0 ? n : 1;
}

/* ---- nghttp2 input callbacks ---- */

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *frame,
			    void *arg)
{
	struct hb_conn *c = arg;
	struct hb_stream *s;

	if (!c->server || frame->hd.type != NGHTTP2_HEADERS ||
	    frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	s = stream_new(c);
	if (!s)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	s->id = frame->hd.stream_id;
	conn_stream_opened(c);
	nghttp2_session_set_stream_user_data(ng, s->id, s);
	return 0;
}

static int hmem_put(struct hb_stream *s, const uint8_t *p, size_t len,
		    uint32_t *off)
{
	if (s->hlen + len + 1 > s->c->o.max_header_list)
		return -E2BIG;
	if (s->hlen + len + 1 > s->hcap) {
		size_t cap = s->hcap ? s->hcap * 2 : 512;
		char *m;

		while (cap < s->hlen + len + 1)
			cap *= 2;
		m = realloc(s->hmem, cap);
		if (!m)
			return -ENOMEM;
		s->hmem = m;
		s->hcap = cap;
	}
	memcpy(s->hmem + s->hlen, p, len);
	s->hmem[s->hlen + len] = '\0';
	*off = (uint32_t)s->hlen;
	s->hlen += len + 1;
	return 0;
}

static bool name_is(const uint8_t *name, size_t len, const char *lit)
{
	return len == strlen(lit) && memcmp(name, lit, len) == 0;
}

/* A token character (RFC 9110 §5.6.2), lowercase only (RFC 9113 §8.2.1). */
static bool lower_tchar(uint8_t ch)
{
	if ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9'))
		return true;
	/* ch != 0: strchr() would find the terminator. */
	return ch && strchr("!#$%&'*+-.^_`|~", ch);
}

/*
 * nghttp2 checks no field when HTTP messaging is off (see conn_new), so
 * we do: a name is lowercase token characters after an optional ':'; a
 * value has no control character but HTAB (so no NUL, CR, LF: a NUL
 * would cut the C string that the checks below and the app see) and no
 * leading or trailing whitespace.
 */
static bool field_ok(const uint8_t *name, size_t nlen, const uint8_t *value,
		     size_t vlen)
{
	size_t i = nlen && name[0] == ':';

	if (nlen == i)
		return false;
	for (; i < nlen; i++)
		if (!lower_tchar(name[i]))
			return false;
	if (vlen && (value[0] == ' ' || value[0] == '\t' ||
		     value[vlen - 1] == ' ' || value[vlen - 1] == '\t'))
		return false;
	for (i = 0; i < vlen; i++)
		if ((value[i] < 0x20 && value[i] != '\t') || value[i] == 0x7f)
			return false;
	return true;
}

/* Server: collect one request field; anything odd marks the request bad. */
static void req_header(struct hb_stream *s, const uint8_t *name, size_t nlen,
		       const uint8_t *value, size_t vlen)
{
	uint32_t noff, voff;

	if (s->bad_req)
		return;
	s->hsize += nlen + vlen + 32; /* each bounded by nghttp2 (64 KiB) */
	if (s->hsize > s->c->o.max_header_list) {
		s->too_big = true;
		s->bad_req = true;
		return;
	}
	if (!field_ok(name, nlen, value, vlen)) {
		s->bad_req = true;
		return;
	}
	if (nlen && name[0] == ':') {
		if (s->regular_seen) {
			s->bad_req = true;
		} else if (name_is(name, nlen, ":method")) {
			if (vlen >= sizeof(s->method) || s->method[0])
				s->bad_req = true;
			else
				memcpy(s->method, value, vlen);
		} else if (name_is(name, nlen, ":authority")) {
			if (s->auth_off >= 0 || hmem_put(s, value, vlen, &voff))
				s->bad_req = true;
			else
				s->auth_off = (int32_t)voff;
		} else if (name_is(name, nlen, ":path")) {
			s->has_path = true;
		} else if (name_is(name, nlen, ":scheme")) {
			s->has_scheme = true;
		} else {
			s->has_other_pseudo = true;
		}
		return;
	}
	s->regular_seen = true;
	if (s->nh == HB_MAX_REQ_HEADERS) {
		s->too_big = true;
		s->bad_req = true;
		return;
	}
	if (!s->hoff) {
		s->hoff = calloc(HB_MAX_REQ_HEADERS, sizeof(*s->hoff));
		if (!s->hoff) {
			s->bad_req = true;
			return;
		}
	}
	if (hmem_put(s, name, nlen, &noff) || hmem_put(s, value, vlen, &voff)) {
		s->bad_req = true;
		return;
	}
	s->hoff[s->nh][0] = noff;
	s->hoff[s->nh][1] = voff;
	s->nh++;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *frame,
		     const uint8_t *name, size_t nlen, const uint8_t *value,
		     size_t vlen, uint8_t flags, void *arg)
{
	struct hb_conn *c = arg;
	struct hb_stream *s;

	if (frame->hd.type != NGHTTP2_HEADERS)
		return 0;
	s = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
	if (!s)
		return 0;
	if (c->server) {
		if (frame->headers.cat == NGHTTP2_HCAT_REQUEST)
			req_header(s, name, nlen, value, vlen);
		return 0;
	}
	if (s->state == HB_ST_REQUESTED && name_is(name, nlen, ":status")) {
		int st = 0;

		for (size_t i = 0; i < vlen && i < 3; i++)
			st = st * 10 + (value[i] - '0');
		s->status = st;
	}
	return 0;
}

/* "a.b.c.d:port" or "[v6]:port", port 1..65535. */
static bool authority_ok(const char *a)
{
	const char *colon = strrchr(a, ':');
	char host[INET6_ADDRSTRLEN + 2];
	unsigned char addr[16];
	size_t hl;
	long port = 0;

	if (!colon || !colon[1] || colon - a == 0)
		return false;
	for (const char *p = colon + 1; *p; p++) {
		if (*p < '0' || *p > '9' || p - colon > 5)
			return false;
		port = port * 10 + (*p - '0');
	}
	if (port < 1 || port > 65535)
		return false;
	hl = colon - a;
	if (hl >= sizeof(host))
		return false;
	if (a[0] == '[') {
		if (hl < 3 || a[hl - 1] != ']')
			return false;
		memcpy(host, a + 1, hl - 2);
		host[hl - 2] = '\0';
		return inet_pton(AF_INET6, host, addr) == 1;
	}
	memcpy(host, a, hl);
	host[hl] = '\0';
	return inet_pton(AF_INET, host, addr) == 1;
}

static int submit_status(struct hb_stream *s, int status,
			 const nghttp2_data_provider *prd)
{
	char v[4];
	nghttp2_nv nv = {(uint8_t *)":status", (uint8_t *)v, 7, 3,
			 NGHTTP2_NV_FLAG_NONE};
	int rv;

	if (status < 100 || status > 999)
		return -EINVAL;
	snprintf(v, sizeof(v), "%03d", status);
	rv = nghttp2_submit_response(s->c->ng, s->id, &nv, 1, prd);
	if (rv)
		return -EIO;
	s->status = status;
	conn_want_send(s->c);
	return 0;
}

/* Server: the request's header block is complete. */
static void server_request(struct hb_conn *c, struct hb_stream *s)
{
	if (s->state != HB_ST_REQUESTED || s->owner != HB_OWN_LIB)
		return;
	if (!s->bad_req &&
	    (strcmp(s->method, "CONNECT") || s->auth_off < 0 || s->has_path ||
	     s->has_scheme || s->has_other_pseudo ||
	     !authority_ok(s->hmem + s->auth_off)))
		s->bad_req = true;
	if (s->bad_req || !c->srv.on_connect || !conn_ng_usable(c)) {
		int status = s->too_big ? 431 : 400;

		if (s->too_big) {
			count_limit(c, HB_LIM_HEADER_LIST);
			log_info_rl("hbone conn %p: stream %d: request header "
				    "list over %u bytes -> 431",
				    (void *)c, s->id, c->o.max_header_list);
		} else {
			if (c->o.stats)
				atomic_fetch_add_explicit(
				    &c->o.stats->bad_requests, 1,
				    memory_order_relaxed);
			log_debug("hbone: stream %d: malformed CONNECT -> 400",
				  s->id);
		}
		stream_set_state(s, HB_ST_REFUSED);
		s->err = EINVAL;
		submit_status(s, status, NULL);
		return;
	}
	if (c->pending >= c->o.max_pending) {
		/* Not processed, safe to retry (RFC 9113 §8.7). */
		count_limit(c, HB_LIM_PENDING);
		log_info_rl("hbone conn %p: %zu CONNECTs await their answer: "
			    "stream %d refused (REFUSED_STREAM)",
			    (void *)c, c->pending, s->id);
		stream_set_state(s, HB_ST_RESET);
		s->err = ECONNREFUSED;
		nghttp2_submit_rst_stream(c->ng, NGHTTP2_FLAG_NONE, s->id,
					  NGHTTP2_REFUSED_STREAM);
		conn_want_send(c);
		return;
	}
	if (s->nh) {
		s->hdrs = calloc(s->nh, sizeof(*s->hdrs));
		if (!s->hdrs) {
			stream_set_state(s, HB_ST_REFUSED);
			submit_status(s, 503, NULL);
			return;
		}
	}
	for (size_t i = 0; i < s->nh; i++) {
		s->hdrs[i].name = s->hmem + s->hoff[i][0];
		s->hdrs[i].value = s->hmem + s->hoff[i][1];
	}
	s->req.authority = s->hmem + s->auth_off;
	s->req.headers = s->hdrs;
	s->req.n_headers = s->nh;
	s->owner = HB_OWN_APP_REQ;
	c->pending++;
	c->srv.on_connect(c->srv.arg, c, &s->req);
}

/* Client: final response to our CONNECT. */
static void client_response(struct hb_stream *s)
{
	int err;

	if (s->state != HB_ST_REQUESTED || s->status < 200)
		return; /* 1xx or a trailer */
	err = hb_status_to_errno(s->status);
	if (!err) {
		stream_set_state(s, HB_ST_OPEN);
	} else {
		stream_set_state(s, HB_ST_REFUSED);
		s->err = err;
	}
	ready_add(s);
}

/*
 * PING, SETTINGS and PRIORITY cost work (PING and SETTINGS an ACK each)
 * and carry no payload: a peer gets a budget of them (opts.ctrl_*).
 * nghttp2 only notices a flood once the peer stops reading the ACKs.
 */
static void ctrl_charge(struct hb_conn *c)
{
	uint64_t now = loop_now_ms(c->loop);
	uint64_t cap = (uint64_t)c->o.ctrl_burst * 1000;

	/* Tokens are 1/1000 frames: rate/s = the same number per ms. */
	c->ctrl_tokens += (now - c->ctrl_ms) * c->o.ctrl_rate;
	if (c->ctrl_tokens > cap)
		c->ctrl_tokens = cap;
	c->ctrl_ms = now;
	if (c->ctrl_tokens >= 1000) {
		c->ctrl_tokens -= 1000;
		return;
	}
	count_limit(c, HB_LIM_CONTROL);
	log_info_rl("hbone conn %p (%s): control frame flood (over %u at once "
		    "or %u/s): GOAWAY ENHANCE_YOUR_CALM",
		    (void *)c, side_name(c), c->o.ctrl_burst, c->o.ctrl_rate);
	/* nghttp2 ignores all after this frame; the GOAWAY ends it. */
	nghttp2_session_terminate_session(c->ng, NGHTTP2_ENHANCE_YOUR_CALM);
}

/*
 * Every frame header the session reads: keeps the header-block
 * deadline. CONTINUATION frames follow their HEADERS back to back (RFC
 * 9113 §6.10), so any other frame means no block is open. (nghttp2 does
 * not report the CONTINUATIONs of a block it ignores; the next frame
 * clears the mark.)
 */
static int on_begin_frame(nghttp2_session *ng, const nghttp2_frame_hd *hd,
			  void *arg)
{
	struct hb_conn *c = arg;

	switch (hd->type) {
	case NGHTTP2_HEADERS:
		c->hdr_since_ms = hd->flags & NGHTTP2_FLAG_END_HEADERS
				      ? 0
				      : loop_now_ms(c->loop);
		break;
	case NGHTTP2_CONTINUATION:
		if (hd->flags & NGHTTP2_FLAG_END_HEADERS)
			c->hdr_since_ms = 0;
		break;
	default:
		c->hdr_since_ms = 0;
		break;
	}
	return 0;
}

/* A frame went to the transport: count what misbehaving peers got. */
static int on_frame_sent(nghttp2_session *ng, const nghttp2_frame *frame,
			 void *arg)
{
	struct hb_conn *c = arg;

	switch (frame->hd.type) {
	case NGHTTP2_GOAWAY:
		count_error_sent(c, frame->goaway.error_code);
		if (frame->goaway.error_code != NGHTTP2_NO_ERROR)
			log_info_rl("hbone conn %p (%s): GOAWAY %s sent",
				    (void *)c, side_name(c),
				    hb_h2_error_name(frame->goaway.error_code));
		/* Also nghttp2's own (a protocol error, the rapid-reset
		 * limiter): no new streams from here on. */
		if (c->state < HB_CONN_DRAINING) {
			conn_set_state(c, HB_CONN_DRAINING);
			conn_event(c, HB_CONN_EV_GOAWAY);
		}
		break;
	case NGHTTP2_RST_STREAM:
		count_error_sent(c, frame->rst_stream.error_code);
		break;
	default:
		break;
	}
	return 0;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *frame,
			 void *arg)
{
	struct hb_conn *c = arg;
	struct hb_stream *s = NULL;

	if (frame->hd.stream_id)
		s = nghttp2_session_get_stream_user_data(ng,
							 frame->hd.stream_id);
	switch (frame->hd.type) {
	case NGHTTP2_SETTINGS:
		if (frame->hd.flags & NGHTTP2_FLAG_ACK)
			break;
		ctrl_charge(c);
		if (c->state == HB_CONN_HANDSHAKING)
			conn_set_state(c, HB_CONN_OPEN);
		break;
	case NGHTTP2_PING:
		if (frame->hd.flags & NGHTTP2_FLAG_ACK)
			c->ping_out = false;
		else
			ctrl_charge(c);
		break;
	case NGHTTP2_PRIORITY:
		ctrl_charge(c);
		break;
	case NGHTTP2_GOAWAY:
		if (c->state < HB_CONN_DRAINING)
			conn_set_state(c, HB_CONN_DRAINING);
		conn_event(c, HB_CONN_EV_GOAWAY);
		break;
	case NGHTTP2_HEADERS:
		c->hdr_since_ms = 0;
		if (!s)
			break;
		if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
			s->remote_fin = true;
		if (c->server)
			server_request(c, s);
		else
			client_response(s);
		break;
	case NGHTTP2_DATA:
		if (s && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
			s->remote_fin = true;
			ready_add(s);
		}
		break;
	default:
		break;
	}
	return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id,
			 const uint8_t *data, size_t len, void *arg)
{
	struct hb_stream *s = nghttp2_session_get_stream_user_data(ng, id);

	/* Nobody will read it: give the window back at once. */
	if (!s || s->owner == HB_OWN_LIB ||
	    (s->state != HB_ST_OPEN && s->state != HB_ST_REQUESTED) ||
	    (s->state == HB_ST_REQUESTED && !s->c->server)) {
		nghttp2_session_consume(ng, id, len);
		return 0;
	}
	if (rq_append(s, data, len)) {
		nghttp2_session_consume(ng, id, len);
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* RST */
	}
	ready_add(s);
	return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t code,
			   void *arg)
{
	struct hb_stream *s = nghttp2_session_get_stream_user_data(ng, id);

	if (s)
		stream_ng_closed(s, code);
	return 0;
}

static int on_error(nghttp2_session *ng, int code, const char *msg, size_t len,
		    void *arg)
{
	log_debug("hbone conn %p: nghttp2: %.*s", arg, (int)len, msg);
	return 0;
}

/* ---- conn driver ---- */

static void conn_free(void *p)
{
	struct hb_conn *c = p;

	free(c->obuf);
	free(c);
}

static void conn_maybe_free(struct hb_conn *c)
{
	if (c->state != HB_CONN_CLOSED || c->refs || c->in_run || c->freed)
		return;
	c->freed = true;
	loop_timer_disarm(c->loop, &c->kick);
	loop_timer_disarm(c->loop, &c->ping);
	loop_timer_disarm(c->loop, &c->linger);
	loop_timer_disarm(c->loop, &c->dl);
	c->olen = c->ooff = 0;
	obuf_reset_if_empty(c);
	t_live_conns--;
	loop_defer_free(c->loop, c, conn_free);
}

static void conn_kick(struct hb_conn *c)
{
	if (!c->in_run && !c->freed && !loop_timer_armed(&c->kick))
		loop_timer_arm(c->loop, &c->kick, 0);
}

/* Every stream nghttp2 still knows loses its connection. */
static void conn_detach_streams(struct hb_conn *c)
{
	struct hb_stream *s = c->streams, *next;

	for (; s; s = next) {
		next = s->next; /* s may be freed (deferred) below */
		if (!s->ng_closed)
			stream_ng_closed(s, NGHTTP2_INTERNAL_ERROR);
	}
}

/* The end: release the transport and the session. */
static void conn_closed(struct hb_conn *c, bool graceful, int err)
{
	struct hb_stream *pinned = c->pend.s;
	int rv;

	if (!conn_alive(c))
		return;
	if (!c->err)
		c->err = err;
	log_debug("hbone conn %p (%s): closed%s: %s", (void *)c,
		  c->server ? "server" : "client", graceful ? "" : " (abort)",
		  c->err ? strerror(c->err) : "ok");
	if (c->state < HB_CONN_CLOSING) {
		conn_set_state(c, HB_CONN_CLOSING);
		conn_detach_streams(c);
	}
	conn_set_state(c, HB_CONN_CLOSED);
	c->pend.s = NULL;
	if (pinned) {
		ring_free(pinned);
		stream_maybe_free(pinned);
	}
	conn_detach_streams(c);
	loop_timer_disarm(c->loop, &c->ping);
	loop_timer_disarm(c->loop, &c->linger);
	loop_timer_disarm(c->loop, &c->dl);
	if (graceful) {
		rv = c->t->ops->shutdown(c->t);
		(void)rv; /* close() delivers what was accepted either way */
		c->t->ops->close(c->t);
	} else {
		c->t->ops->abort(c->t);
	}
	c->t = NULL;
	nghttp2_session_del(c->ng);
	c->ng = NULL;
	c->olen = c->ooff = 0;
	obuf_reset_if_empty(c);
	conn_event(c, HB_CONN_EV_CLOSED);
}

/* Stop reading; flush the last frames, then close (bounded in time). */
static void conn_closing(struct hb_conn *c)
{
	if (c->state >= HB_CONN_CLOSING)
		return;
	conn_set_state(c, HB_CONN_CLOSING);
	/* After a fatal GOAWAY nghttp2 keeps its streams but never says. */
	conn_detach_streams(c);
	loop_timer_arm(c->loop, &c->linger, HB_CLOSE_LINGER_MS);
}

/*
 * nghttp2_session_mem_recv() failed: the session reads nothing more.
 * Most errors come with nghttp2's own GOAWAY already queued; for those
 * that do not (floods, a bad preface) we queue one, so the peer learns
 * why. Then CLOSING flushes it, bounded by the linger timer.
 */
static void conn_recv_failed(struct hb_conn *c, int rv)
{
	uint32_t code = NGHTTP2_PROTOCOL_ERROR;

	switch (rv) {
	case NGHTTP2_ERR_FLOODED:
		/* Its ACKs pile up unread: it keeps sending, never
		 * reads. */
		code = NGHTTP2_ENHANCE_YOUR_CALM;
		count_limit(c, HB_LIM_OUTBOUND);
		break;
	case NGHTTP2_ERR_TOO_MANY_CONTINUATIONS:
		code = NGHTTP2_ENHANCE_YOUR_CALM;
		count_limit(c, HB_LIM_CONTINUATIONS);
		break;
	case NGHTTP2_ERR_NOMEM:
	case NGHTTP2_ERR_CALLBACK_FAILURE:
		code = NGHTTP2_INTERNAL_ERROR;
		break;
	default:
		break;
	}
	log_info_rl("hbone conn %p (%s): dropped: %s", (void *)c, side_name(c),
		    nghttp2_strerror(rv));
	c->err = EPROTO;
	/* A no-op when nghttp2 already queued its own terminating
	 * GOAWAY. */
	nghttp2_session_terminate_session(c->ng, code);
	conn_want_send(c);
	conn_closing(c);
}

static void conn_read(struct hb_conn *c)
{
	for (int i = 0; i < HB_READ_ROUNDS && conn_ng_usable(c); i++) {
		ssize_t n = c->t->ops->read(c->t, t_rbuf, sizeof(t_rbuf));
		ssize_t rv;

		if (n == -EAGAIN)
			return;
		if (n < 0) {
			conn_closed(c, false, (int)-n);
			return;
		}
		if (n == 0) {
			/* Peer closed: fine when nothing was in flight. */
			conn_closed(c, true, c->live ? ECONNRESET : 0);
			return;
		}
		c->last_rx_ms = loop_now_ms(c->loop);
		c->in_ng++;
		rv = nghttp2_session_mem_recv(c->ng, t_rbuf, n);
		c->in_ng--;
		if (rv < 0) {
			conn_recv_failed(c, (int)rv);
			return;
		}
		if (c->fail_err || c->close_req)
			return;
		if (!nghttp2_session_want_read(c->ng))
			return;
		/* A short read is not "drained": TLS hands over one record
		 * (<= 16 KiB) per read. Keep going until -EAGAIN so the
		 * relays see one large batch per turn, not one record each. */
	}
}

static void conn_send(struct hb_conn *c)
{
	int err;

	c->need_send = false;
	err = conn_flush(c);
	if (!err && !c->write_blocked && c->state < HB_CONN_CLOSED && c->ng) {
		c->in_ng++;
		err = nghttp2_session_send(c->ng);
		c->in_ng--;
		if (err) {
			log_info_rl("hbone conn %p: send: %s", (void *)c,
				 nghttp2_strerror(err));
			err = c->fail_err ? -c->fail_err : -EPROTO;
		} else {
			err = conn_flush(c);
		}
	}
	if (err)
		conn_closed(c, false, -err);
}

static bool output_drained(const struct hb_conn *c)
{
	return c->olen == c->ooff && !c->pend.s;
}

static void conn_check_done(struct hb_conn *c)
{
	if (!conn_alive(c))
		return;
	if (c->fail_err || c->close_req) {
		conn_closed(c, false, c->fail_err ? c->fail_err : ECONNABORTED);
		return;
	}
	if (c->state < HB_CONN_CLOSING && !nghttp2_session_want_read(c->ng))
		conn_closing(c);
	if (c->state == HB_CONN_CLOSING && !nghttp2_session_want_write(c->ng) &&
	    output_drained(c))
		conn_closed(c, true, 0);
}

static void conn_update_io(struct hb_conn *c)
{
	bool rd, wr;
	int err;

	if (!conn_alive(c))
		return;
	rd = conn_ng_usable(c);
	wr = c->write_blocked;
	if (rd == c->io_read && wr == c->io_write)
		return;
	err = c->t->ops->set_interest(c->t, rd, wr);
	if (err) {
		conn_closed(c, false, -err);
		return;
	}
	c->io_read = rd;
	c->io_write = wr;
}

static void conn_events(struct hb_conn *c)
{
	while (c->events) {
		unsigned int ev = __builtin_ctz(c->events);

		c->events &= ~(1u << ev);
		if (c->obs)
			c->obs(c->obs_arg, c, (enum hb_conn_event)ev);
		if (ev == HB_CONN_EV_CLOSED)
			c->obs = NULL;
	}
}

static void conn_run(struct hb_conn *c, unsigned int what)
{
	if (c->in_run || c->freed)
		return;
	c->in_run = true;
	if (what & HB_TRANSPORT_WRITABLE)
		c->write_blocked = false;
	if (conn_ng_usable(c) && !c->fail_err && !c->close_req &&
	    (what & (HB_TRANSPORT_READABLE | HB_TRANSPORT_ERROR)))
		conn_read(c);
	for (int pass = 0; pass < HB_RUN_PASSES; pass++) {
		if (conn_alive(c) && !c->fail_err && !c->close_req)
			conn_send(c);
		conn_check_done(c);
		deliver(c);
		conn_events(c);
		conn_check_done(c);
		if (!c->need_send || c->write_blocked || !conn_alive(c))
			break;
	}
	conn_update_io(c);
	conn_deadline_update(c);
	c->in_run = false;
	if (c->ready_head || (c->need_send && conn_alive(c)) || c->events)
		conn_kick(c);
	conn_maybe_free(c);
}

static void conn_transport_cb(void *arg, unsigned int what)
{
	conn_run(arg, what);
}

static void conn_kick_cb(struct loop *l, struct loop_timer *t)
{
	conn_run(t->arg, 0);
}

static void conn_linger_cb(struct loop *l, struct loop_timer *t)
{
	struct hb_conn *c = t->arg;

	count_deadline(c, HB_DL_FLUSH);
	log_info_rl("hbone conn %p (%s): peer took not its last frames in %u "
		    "ms: reset",
		    (void *)c, side_name(c), HB_CLOSE_LINGER_MS);
	c->fail_err = c->err ? c->err : ETIMEDOUT;
	conn_run(c, 0);
}

/* Re-arm the deadline timer for the earliest deadline running. */
static void conn_deadline_update(struct hb_conn *c)
{
	uint64_t at = UINT64_MAX, now;

	if (conn_ng_usable(c)) {
		if (c->state == HB_CONN_HANDSHAKING)
			at = c->start_ms + c->o.settings_timeout_ms;
		if (c->hdr_since_ms &&
		    c->hdr_since_ms + c->o.header_timeout_ms < at)
			at = c->hdr_since_ms + c->o.header_timeout_ms;
		if (c->server && c->state == HB_CONN_OPEN && c->idle_since_ms &&
		    c->idle_since_ms + c->o.idle_timeout_ms < at)
			at = c->idle_since_ms + c->o.idle_timeout_ms;
		if (c->drain_final_ms && c->drain_final_ms < at)
			at = c->drain_final_ms;
	}
	if (at == UINT64_MAX) {
		loop_timer_disarm(c->loop, &c->dl);
		return;
	}
	if (loop_timer_armed(&c->dl) && c->dl.deadline_ms == at)
		return;
	now = loop_now_ms(c->loop);
	loop_timer_arm(c->loop, &c->dl, at > now ? at - now : 0);
}

/* A deadline the peer missed: GOAWAY code, then the conn closes. */
static void conn_deadline_fail(struct hb_conn *c, enum hb_deadline d,
			       uint32_t code)
{
	count_deadline(c, d);
	log_info_rl("hbone conn %p (%s): %s deadline passed: GOAWAY %s",
		    (void *)c, side_name(c), hb_deadline_name(d),
		    hb_h2_error_name(code));
	if (!c->err)
		c->err = ETIMEDOUT;
	nghttp2_session_terminate_session(c->ng, code);
	conn_want_send(c);
}

static void conn_deadline_cb(struct loop *l, struct loop_timer *t)
{
	struct hb_conn *c = t->arg;
	uint64_t now = loop_now_ms(l);

	if (!conn_ng_usable(c))
		return;
	if (c->drain_final_ms && now >= c->drain_final_ms) {
		c->drain_final_ms = 0;
		nghttp2_submit_goaway(
		    c->ng, NGHTTP2_FLAG_NONE,
		    nghttp2_session_get_last_proc_stream_id(c->ng),
		    NGHTTP2_NO_ERROR, NULL, 0);
		conn_want_send(c);
	}
	if (c->state == HB_CONN_HANDSHAKING &&
	    now >= c->start_ms + c->o.settings_timeout_ms) {
		conn_deadline_fail(c, HB_DL_SETTINGS, NGHTTP2_SETTINGS_TIMEOUT);
	} else if (c->hdr_since_ms &&
		   now >= c->hdr_since_ms + c->o.header_timeout_ms) {
		conn_deadline_fail(c, HB_DL_HEADERS, NGHTTP2_ENHANCE_YOUR_CALM);
	} else if (c->server && c->state == HB_CONN_OPEN && c->idle_since_ms &&
		   now >= c->idle_since_ms + c->o.idle_timeout_ms) {
		count_deadline(c, HB_DL_IDLE);
		log_debug("hbone conn %p (server): no stream for %u ms: "
			  "GOAWAY",
			  (void *)c, c->o.idle_timeout_ms);
		hb_conn_drain(c);
	}
	conn_run(c, 0); /* sends the GOAWAY, re-arms for what is left */
}

/* Keepalive: PING after ping_interval of silence; dead without its ACK. */
static void conn_ping_cb(struct loop *l, struct loop_timer *t)
{
	struct hb_conn *c = t->arg;
	uint64_t now = loop_now_ms(l), idle = now - c->last_rx_ms;

	if (!conn_ng_usable(c))
		return;
	if (c->ping_out) {
		if (now - c->ping_sent_ms >= c->o.ping_timeout_ms) {
			count_deadline(c, HB_DL_PING);
			log_info_rl("hbone conn %p (%s): no PING ACK in %u ms",
				    (void *)c, side_name(c),
				    c->o.ping_timeout_ms);
			c->fail_err = ETIMEDOUT;
			conn_run(c, 0);
			return;
		}
		loop_timer_arm(l, t,
			       c->ping_sent_ms + c->o.ping_timeout_ms - now);
		return;
	}
	if (idle >= c->o.ping_interval_ms) {
		if (nghttp2_submit_ping(c->ng, NGHTTP2_FLAG_NONE, NULL)) {
			c->fail_err = ENOMEM;
			conn_run(c, 0);
			return;
		}
		c->ping_out = true;
		c->ping_sent_ms = now;
		loop_timer_arm(l, t, c->o.ping_timeout_ms);
		conn_want_send(c);
		return;
	}
	loop_timer_arm(l, t, c->o.ping_interval_ms - idle);
}

static void opts_fill(struct hb_conn_opts *o, const struct hb_conn_opts *in,
		      bool server)
{
	*o = in ? *in : (struct hb_conn_opts){0};
	if (!o->max_streams)
		o->max_streams =
		    server ? HB_DEF_SERVER_STREAMS : HB_DEF_CLIENT_STREAMS;
	if (!o->stream_window)
		o->stream_window = HB_DEF_STREAM_WINDOW;
	if (!o->conn_window)
		o->conn_window = HB_DEF_CONN_WINDOW;
	if (!o->max_frame)
		o->max_frame = HB_DEF_MAX_FRAME;
	if (!o->send_buf || (o->send_buf & (o->send_buf - 1)))
		o->send_buf = HB_DEF_SEND_BUF;
	if (!o->ping_interval_ms)
		o->ping_interval_ms = HB_DEF_PING_MS;
	if (!o->ping_timeout_ms)
		o->ping_timeout_ms = HB_DEF_PING_TIMEOUT_MS;
	if (!o->settings_timeout_ms)
		o->settings_timeout_ms = HB_DEF_SETTINGS_MS;
	if (!o->header_timeout_ms)
		o->header_timeout_ms = HB_DEF_HEADER_MS;
	if (!o->idle_timeout_ms)
		o->idle_timeout_ms = HB_DEF_IDLE_MS;
	if (!o->max_pending)
		o->max_pending = HB_DEF_MAX_PENDING;
	if (!o->max_header_list)
		o->max_header_list = HB_DEF_MAX_HDR_LIST;
	if (!o->ctrl_burst)
		o->ctrl_burst = HB_DEF_CTRL_BURST;
	if (!o->ctrl_rate)
		o->ctrl_rate = HB_DEF_CTRL_RATE;
}

static int conn_new(struct loop *l, struct hb_transport *t,
		    const struct hb_conn_opts *opts, bool server,
		    const struct hb_server_cbs *cbs, struct hb_conn **out)
{
	nghttp2_session_callbacks *cb = NULL;
	nghttp2_option *opt = NULL;
	struct hb_conn *c;
	nghttp2_settings_entry iv[5];
	int niv = 0, rv, err = -ENOMEM;

	c = calloc(1, sizeof(*c));
	if (!c)
		goto cleanup;
	c->loop = l;
	c->t = t;
	c->server = server;
	opts_fill(&c->o, opts, server);
	if (cbs)
		c->srv = *cbs;
	if (nghttp2_session_callbacks_new(&cb) || nghttp2_option_new(&opt))
		goto cleanup;
	nghttp2_session_callbacks_set_send_callback(cb, on_send);
	nghttp2_session_callbacks_set_send_data_callback(cb, on_send_data);
	nghttp2_session_callbacks_set_data_source_read_length_callback(
	    cb, on_read_length);
	nghttp2_session_callbacks_set_on_begin_headers_callback(
	    cb, on_begin_headers);
	nghttp2_session_callbacks_set_on_begin_frame_callback(cb,
							      on_begin_frame);
	nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_sent);
	nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
	    cb, on_data_chunk);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb,
							       on_stream_close);
	nghttp2_session_callbacks_set_error_callback2(cb, on_error);

	/* Window updates only as the relay drains (nghttp2_session_consume). */
	nghttp2_option_set_no_auto_window_update(opt, 1);
	nghttp2_option_set_no_closed_streams(opt, 1);
	nghttp2_option_set_max_outbound_ack(opt, HB_NG_MAX_OUTBOUND_ACK);
	nghttp2_option_set_max_settings(opt, HB_NG_MAX_SETTINGS);
	nghttp2_option_set_max_continuations(opt, HB_NG_MAX_CONTINUATION);
	if (server) {
		/*
		 * We validate CONNECT ourselves so that a malformed
		 * request gets a 400 (DESIGN §3) instead of nghttp2's
		 * RST_STREAM (req_header(): that includes every field's
		 * bytes).
		 */
		nghttp2_option_set_no_http_messaging(opt, 1);
		nghttp2_option_set_stream_reset_rate_limit(opt, HB_NG_RST_BURST,
							   HB_NG_RST_RATE);
		rv = nghttp2_session_server_new2(&c->ng, cb, c, opt);
	} else {
		nghttp2_option_set_peer_max_concurrent_streams(
		    opt, c->o.max_streams);
		rv = nghttp2_session_client_new2(&c->ng, cb, c, opt);
	}
	if (rv)
		goto cleanup;

	iv[niv++] = (nghttp2_settings_entry){
	    NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, c->o.stream_window};
	iv[niv++] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_MAX_FRAME_SIZE,
					     c->o.max_frame};
	if (server) {
		iv[niv++] = (nghttp2_settings_entry){
		    NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, c->o.max_streams};
		iv[niv++] = (nghttp2_settings_entry){
		    NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE,
		    c->o.max_header_list};
	} else {
		iv[niv++] =
		    (nghttp2_settings_entry){NGHTTP2_SETTINGS_ENABLE_PUSH, 0};
	}
	if (nghttp2_submit_settings(c->ng, NGHTTP2_FLAG_NONE, iv, niv) ||
	    nghttp2_session_set_local_window_size(c->ng, NGHTTP2_FLAG_NONE, 0,
						  (int32_t)c->o.conn_window)) {
		err = -EIO;
		goto cleanup;
	}

	loop_timer_init(&c->kick, conn_kick_cb, c);
	loop_timer_init(&c->ping, conn_ping_cb, c);
	loop_timer_init(&c->linger, conn_linger_cb, c);
	loop_timer_init(&c->dl, conn_deadline_cb, c);
	c->last_rx_ms = loop_now_ms(l);
	c->start_ms = c->idle_since_ms = c->ctrl_ms = loop_now_ms(l);
	c->ctrl_tokens = (uint64_t)c->o.ctrl_burst * 1000;
	loop_timer_arm(l, &c->ping, c->o.ping_interval_ms);
	t->cb = conn_transport_cb;
	t->cb_arg = c;
	t_live_conns++;
	/* SETTINGS out and read interest on from the kick, later this turn:
	 * the caller always gets a live conn. */
	conn_want_send(c);
	*out = c;
	err = 0;
	c = NULL;

cleanup:
	if (c) {
		if (c->ng)
			nghttp2_session_del(c->ng);
		free(c);
		t->ops->abort(t);
	} else if (err) {
		t->ops->abort(t);
	}
	nghttp2_option_del(opt);
	nghttp2_session_callbacks_del(cb);
	return err;
}

int hb_conn_new_client(struct loop *l, struct hb_transport *t,
		       const struct hb_conn_opts *opts, struct hb_conn **out)
{
	return conn_new(l, t, opts, false, NULL, out);
}

int hb_conn_new_server(struct loop *l, struct hb_transport *t,
		       const struct hb_conn_opts *opts,
		       const struct hb_server_cbs *cbs, struct hb_conn **out)
{
	if (!cbs || !cbs->on_connect) {
		t->ops->abort(t);
		return -EINVAL;
	}
	return conn_new(l, t, opts, true, cbs, out);
}

void hb_conn_set_observer(struct hb_conn *c, hb_conn_observer fn, void *arg)
{
	c->obs = fn;
	c->obs_arg = arg;
}

/*
 * Our cap and the peer's SETTINGS_MAX_CONCURRENT_STREAMS both count: beyond
 * the peer's, nghttp2 would queue requests silently instead of sending them.
 */
bool hb_conn_can_open_stream(const struct hb_conn *c)
{
	return !c->server && c->state <= HB_CONN_OPEN &&
	       c->live < c->o.max_streams &&
	       c->live < nghttp2_session_get_remote_settings(
			     c->ng, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS) &&
	       nghttp2_session_check_request_allowed(c->ng) &&
	       nghttp2_session_get_next_stream_id(c->ng) <= INT32_MAX;
}

int hb_conn_open_stream(struct hb_conn *c, const char *authority,
			const struct hb_header *extra, size_t n_extra,
			struct relay_end **out)
{
	nghttp2_data_provider prd;
	nghttp2_nv *nva;
	struct hb_stream *s;
	int32_t id;
	int err;

	if (c->server || !authority || !authority[0])
		return -EINVAL;
	if (c->state > HB_CONN_OPEN ||
	    !nghttp2_session_check_request_allowed(c->ng))
		return -ESHUTDOWN;
	if (!hb_conn_can_open_stream(c))
		return -EBUSY;
	nva = calloc(2 + n_extra, sizeof(*nva));
	if (!nva)
		return -ENOMEM;
	nva[0] = (nghttp2_nv){(uint8_t *)":method", (uint8_t *)"CONNECT", 7, 7,
			      NGHTTP2_NV_FLAG_NONE};
	nva[1] = (nghttp2_nv){(uint8_t *)":authority", (uint8_t *)authority, 10,
			      strlen(authority), NGHTTP2_NV_FLAG_NONE};
	for (size_t i = 0; i < n_extra; i++)
		nva[2 + i] = (nghttp2_nv){
		    (uint8_t *)extra[i].name, (uint8_t *)extra[i].value,
		    strlen(extra[i].name), strlen(extra[i].value),
		    NGHTTP2_NV_FLAG_NONE};
	s = stream_new(c);
	if (!s) {
		err = -ENOMEM;
		goto cleanup;
	}
	prd.source.ptr = s;
	prd.read_callback = on_data_read;
	id = nghttp2_submit_request(c->ng, NULL, nva, 2 + n_extra, &prd, s);
	if (id < 0) {
		err = id == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE ? -EBUSY
								: -EINVAL;
		s->ng_closed = true;
		stream_maybe_free(s);
		goto cleanup;
	}
	s->id = id;
	s->base.ops = &stream_end_ops;
	s->owner = HB_OWN_END;
	conn_stream_opened(c);
	conn_want_send(c);
	*out = &s->base;
	err = 0;
cleanup:
	free(nva);
	return err;
}

void hb_conn_drain(struct hb_conn *c)
{
	if (c->state > HB_CONN_OPEN)
		return;
	if (c->server) {
		/*
		 * Two steps (RFC 9113 §6.8): a GOAWAY naming the highest
		 * stream id first, so a CONNECT the client sent meanwhile is
		 * still served, not refused; the real last stream id once
		 * it had time to arrive (conn_deadline_cb()).
		 */
		nghttp2_submit_shutdown_notice(c->ng);
		c->drain_final_ms = loop_now_ms(c->loop) + HB_DRAIN_GRACE_MS;
	} else {
		nghttp2_submit_goaway(c->ng, NGHTTP2_FLAG_NONE, 0,
				      NGHTTP2_NO_ERROR, NULL, 0);
	}
	conn_set_state(c, HB_CONN_DRAINING);
	conn_event(c, HB_CONN_EV_GOAWAY);
	conn_want_send(c);
}

void hb_conn_close(struct hb_conn *c)
{
	if (!conn_alive(c))
		return;
	c->close_req = true;
	if (c->in_ng)
		conn_kick(c); /* from inside a callback: after it returns */
	else
		conn_run(c, 0);
}

enum hb_conn_state hb_conn_get_state(const struct hb_conn *c)
{
	return c->state;
}

bool hb_conn_is_server(const struct hb_conn *c)
{
	return c->server;
}

int hb_conn_error(const struct hb_conn *c)
{
	return c->err;
}

size_t hb_conn_live_streams(const struct hb_conn *c)
{
	return c->live;
}

uint64_t hb_conn_total_streams(const struct hb_conn *c)
{
	return c->total;
}

size_t hb_conn_buffered_bytes(const struct hb_conn *c)
{
	return c->buffered;
}

/* ---- server request API ---- */

static struct hb_stream *req_stream(struct hb_stream_req *req)
{
	return container_of(req, struct hb_stream, req);
}

const char *hb_stream_req_header(const struct hb_stream_req *req,
				 const char *name)
{
	for (size_t i = 0; i < req->n_headers; i++)
		if (!strcasecmp(req->headers[i].name, name))
			return req->headers[i].value;
	return NULL;
}

int hb_stream_accept(struct hb_stream_req *req, struct relay_end **out)
{
	struct hb_stream *s = req_stream(req);

	if (s->owner != HB_OWN_APP_REQ || s->accepted)
		return -EINVAL;
	s->accepted = true;
	s->c->pending--;
	s->owner = HB_OWN_END; /* the end owns s from now on */
	s->base.ops = &stream_end_ops;
	*out = &s->base;
	if (stream_what(s))
		ready_add(s);
	return 0;
}

int hb_stream_respond(struct hb_stream_req *req, int status)
{
	struct hb_stream *s = req_stream(req);
	struct hb_conn *c = s->c;
	bool gone =
	    s->ng_closed || s->state != HB_ST_REQUESTED || !conn_ng_usable(c);
	int err;

	if (status >= 200 && status < 300) {
		nghttp2_data_provider prd = {.source.ptr = s,
					     .read_callback = on_data_read};

		if (!s->accepted || s->owner != HB_OWN_END || s->status)
			return -EINVAL;
		s->status = status;
		if (gone)
			return -ECONNRESET; /* the end reports it too */
		err = submit_status(s, status, &prd);
		if (!err)
			stream_set_state(s, HB_ST_OPEN);
		else
			stream_reset(s, ECONNRESET);
		ready_add(s);
		return err;
	}
	if (s->owner != HB_OWN_APP_REQ)
		return -EINVAL;
	/* Refusal: the response ends the stream; the library keeps s. */
	c->pending--;
	s->owner = HB_OWN_LIB;
	if (gone) {
		stream_maybe_free(s);
		return -ECONNRESET;
	}
	stream_set_state(s, HB_ST_REFUSED);
	err = submit_status(s, status, NULL);
	rq_drop(s, true);
	stream_maybe_free(s);
	return err;
}
