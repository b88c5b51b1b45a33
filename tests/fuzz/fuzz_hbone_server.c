// SPDX-License-Identifier: Apache-2.0
/*
 * The server side of HBONE: raw HTTP/2 bytes from a peer (what comes out
 * of the mTLS layer on :15008) into an hb_conn, over an in-memory
 * transport, with an on_connect that answers the way the tunnel does
 * (authority parsed with addr_parse_ipport(); 200 and a relay to a mock
 * upstream, or 400/401/503, now or a few turns later), so nghttp2, our
 * CONNECT validation, the stream ends, the relay and the teardown all run.
 *
 * Input layout:
 *   byte 0      flags: bits 0-1 how the stream is cut into reads (whole,
 *               at each "\r\n--\r\n", 13-byte pieces, 257-byte pieces);
 *               bits 2-3 what the transport accepts per turn (all, 1,
 *               100, 4096 bytes); bit 4 EOF a few turns after the input
 *               (else the peer stays idle and the conn is drained, then
 *               closed);
 *               bit 5 small limits (4 streams, 4 KiB windows, 4 KiB send
 *               buffers, 1 KiB relay buffers); bits 6-7 the upstream (answers
 *               200 bytes then FIN, says nothing, resets, reads slowly)
 *   bytes 1-3   answers, cycled per CONNECT: bits 0-1 200/400/401/503,
 *               bits 2-3 delay in turns (0, 0, 1, 3), bit 4 whether the
 *               upstream end offers writev (the relay's direct path)
 *   the rest    HTTP/2 bytes from the client, starting with its preface
 *
 * Properties: no sanitizer report; the request handed to on_connect holds
 * its contract (hbone.h: lowercase token names, values without controls or
 * surrounding blanks, a bounded count); and once
 * the peer is gone and every request answered, nothing is left: no conn,
 * no stream, no relay alive, the transport and every upstream end released
 * exactly once. Everything runs on one loop created per input; no state
 * is carried from one input to the next.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "hbone.h"
#include "log.h"
#include "loop.h"
#include "relay.h"

#define FUZZ_MAX_INPUT (64 * 1024)
#define MAX_PENDING    64
#define MAX_UPS	       256
#define SEP	       "\r\n--\r\n"

/* ---- the peer's side of the transport ---- */

struct mock_t {
	struct hb_transport base;
	const uint8_t *in;
	size_t len, off, arrived; /* [off, arrived) readable now */
	bool eof;		  /* the peer closed: EOF after the input */
	bool want_read, want_write;
	int released;		 /* close/abort calls: exactly 1 at the end */
	size_t budget, per_turn; /* writable bytes this turn / per turn */
	uint64_t written;
};

static ssize_t t_read(struct hb_transport *t, void *buf, size_t len)
{
	struct mock_t *m = (struct mock_t *)t;
	size_t n = m->arrived - m->off;

	if (m->released)
		abort();
	if (!n)
		return m->off == m->len && m->eof ? 0 : -EAGAIN;
	if (n > len)
		n = len;
	memcpy(buf, m->in + m->off, n);
	m->off += n;
	return (ssize_t)n;
}

static ssize_t t_writev(struct hb_transport *t, const struct iovec *iov,
			int cnt)
{
	struct mock_t *m = (struct mock_t *)t;
	size_t total = 0;

	if (m->released || cnt <= 0)
		abort();
	for (int i = 0; i < cnt; i++) {
		/* Touch every byte offered, so ASan checks the iovecs. */
		volatile uint8_t sink = 0;

		for (size_t j = 0; j < iov[i].iov_len; j += 509)
			sink ^= ((const uint8_t *)iov[i].iov_base)[j];
		if (iov[i].iov_len)
			sink ^= ((const uint8_t *)iov[i]
				     .iov_base)[iov[i].iov_len - 1];
		(void)sink;
		total += iov[i].iov_len;
	}
	if (!m->budget)
		return -EAGAIN;
	if (total > m->budget)
		total = m->budget;
	m->budget -= total;
	m->written += total;
	return (ssize_t)total;
}

static int t_set_interest(struct hb_transport *t, bool rd, bool wr)
{
	struct mock_t *m = (struct mock_t *)t;

	if (m->released)
		abort();
	m->want_read = rd;
	m->want_write = wr;
	return 0;
}

static int t_shutdown(struct hb_transport *t)
{
	if (((struct mock_t *)t)->released)
		abort();
	return 0;
}

static void t_release(struct hb_transport *t)
{
	struct mock_t *m = (struct mock_t *)t;

	m->released++;
	m->base.cb = NULL;
	m->want_read = m->want_write = false;
}

static const struct hb_transport_ops mock_t_ops = {
    .read = t_read,
    .writev = t_writev,
    .set_interest = t_set_interest,
    .shutdown = t_shutdown,
    .close = t_release,
    .abort = t_release,
};

/* ---- the upstream (the pod's socket) ---- */

enum up_mode { UP_ANSWER, UP_SILENT, UP_RESET, UP_SLOW };

struct mock_up {
	struct relay_end base;
	enum up_mode mode;
	size_t out_left; /* bytes still to answer */
	bool want_read, want_write, shut;
	int released;
	size_t budget; /* writable bytes this turn (UP_SLOW) */
	uint64_t got;
};

static ssize_t up_read(struct relay_end *e, void *buf, size_t len)
{
	struct mock_up *u = (struct mock_up *)e;

	if (u->released)
		abort();
	if (u->mode == UP_RESET)
		return -ECONNRESET;
	if (!u->out_left)
		return u->mode == UP_SILENT ? -EAGAIN : 0;
	if (len > u->out_left)
		len = u->out_left;
	memset(buf, 'u', len);
	u->out_left -= len;
	return (ssize_t)len;
}

static ssize_t up_take(struct mock_up *u, size_t len)
{
	if (u->released || u->shut)
		abort(); /* write after close or after FIN */
	if (u->mode == UP_RESET)
		return -ECONNRESET;
	if (u->mode == UP_SLOW) {
		if (!u->budget)
			return -EAGAIN;
		if (len > u->budget)
			len = u->budget;
		u->budget -= len;
	}
	u->got += len;
	return (ssize_t)len;
}

static ssize_t up_write(struct relay_end *e, const void *buf, size_t len)
{
	if (!len)
		abort();
	((volatile const uint8_t *)buf)[len - 1];
	return up_take((struct mock_up *)e, len);
}

static ssize_t up_writev(struct relay_end *e, const struct iovec *iov, int cnt)
{
	size_t total = 0;

	for (int i = 0; i < cnt; i++) {
		if (iov[i].iov_len)
			((volatile const uint8_t *)iov[i]
			     .iov_base)[iov[i].iov_len - 1];
		total += iov[i].iov_len;
	}
	if (!total)
		abort();
	return up_take((struct mock_up *)e, total);
}

static int up_shutdown(struct relay_end *e)
{
	struct mock_up *u = (struct mock_up *)e;

	if (u->released)
		abort();
	u->shut = true;
	return 0;
}

static int up_error(struct relay_end *e)
{
	return ((struct mock_up *)e)->mode == UP_RESET ? -ECONNRESET : 0;
}

static int up_set_interest(struct relay_end *e, bool rd, bool wr)
{
	struct mock_up *u = (struct mock_up *)e;

	if (u->released)
		abort();
	u->want_read = rd;
	u->want_write = wr;
	return 0;
}

static void up_release(struct relay_end *e)
{
	struct mock_up *u = (struct mock_up *)e;

	u->released++;
	u->want_read = u->want_write = false;
}

static const struct relay_end_ops up_ops = {
    .read = up_read,
    .write = up_write,
    .shutdown_write = up_shutdown,
    .error = up_error,
    .set_interest = up_set_interest,
    .close = up_release,
    .abort = up_release,
};

/* The same with a gather write: the relay then writes straight from the
 * stream's receive queue (peek/writev/consume). */
static const struct relay_end_ops up_ops_writev = {
    .read = up_read,
    .write = up_write,
    .writev = up_writev,
    .shutdown_write = up_shutdown,
    .error = up_error,
    .set_interest = up_set_interest,
    .close = up_release,
    .abort = up_release,
};

/* ---- one input ---- */

struct pending {
	struct hb_stream_req *req;
	unsigned turn;	/* answer at this turn */
	uint8_t answer; /* decision bits */
};

struct run {
	struct loop *l;
	struct loop_timer step;
	struct mock_t t;
	struct hb_conn *c; /* NULL once CLOSED */
	uint8_t flags;
	const uint8_t *answers; /* 3 bytes, cycled */
	unsigned n_connects;
	unsigned turn;
	/* Cut points of the input into reads. */
	size_t *cuts;
	size_t n_cuts, next_cut;
	struct pending pend[MAX_PENDING];
	size_t n_pend;
	struct mock_up *ups[MAX_UPS];
	size_t n_ups;
	size_t relay_buf;
	bool eof_later; /* flags bit 4: EOF at turn eof_turn */
	unsigned eof_turn;
	bool ending; /* teardown: everything unblocked */
};

static void relay_done(struct relay *r, const struct relay_summary *s,
		       void *arg)
{
	if (s->result > RELAY_ABORTED)
		abort();
}

static int respond(struct hb_stream_req *req, int status)
{
	int rc = hb_stream_respond(req, status);

	if (rc && rc != -ECONNRESET)
		abort(); /* our use is right, so only "client gone" may fail */
	return rc;
}

static void answer(struct run *r, struct hb_stream_req *req, uint8_t a)
{
	static const int refusals[] = {400, 401, 503};
	struct sockaddr_in target;
	struct relay_end *end;
	struct relay_opts o = {.buf_size = r->relay_buf, .done = relay_done};
	struct mock_up *u;

	if (addr_parse_ipport(req->authority, &target) || (a & 3) ||
	    r->n_ups == MAX_UPS || r->ending) {
		respond(req, (a & 3) ? refusals[(a & 3) - 1] : 400);
		return;
	}
	u = calloc(1, sizeof(*u));
	if (!u)
		abort();
	u->base.ops = (a & 0x10) ? &up_ops_writev : &up_ops;
	u->mode = (enum up_mode)(r->flags >> 6);
	u->out_left = u->mode == UP_ANSWER ? 200 : 0;
	r->ups[r->n_ups++] = u;
	if (hb_stream_accept(req, &end))
		abort();
	respond(req, 200);
	/* The relay owns both ends from here, also when it fails. */
	relay_start(r->l, end, &u->base, false, &o, NULL);
}

/*
 * hbone.h: names are lowercase (tokens), values hold no control character
 * but HTAB (so no NUL, CR or LF that would cut or split them in a log line)
 * and no surrounding blanks.
 */
static bool field_ok(const char *name, const char *value)
{
	size_t vlen = strlen(value);

	if (!*name)
		return false;
	for (const char *p = name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
		      strchr("!#$%&'*+-.^_`|~", *p)))
			return false;
	for (const char *p = value; *p; p++)
		if (((unsigned char)*p < 0x20 && *p != '\t') || *p == 0x7f)
			return false;
	return !vlen || (value[0] != ' ' && value[0] != '\t' &&
			 value[vlen - 1] != ' ' && value[vlen - 1] != '\t');
}

static void on_connect(void *arg, struct hb_conn *c, struct hb_stream_req *req)
{
	struct run *r = arg;
	uint8_t a = r->answers[r->n_connects++ % 3];
	static const unsigned delays[] = {0, 0, 1, 3};
	size_t total = 0;

	/* The request's contract. */
	if (!req->authority || !*req->authority || req->n_headers > 64 ||
	    (req->n_headers && !req->headers))
		abort();
	for (size_t i = 0; i < req->n_headers; i++) {
		if (!req->headers[i].name || !req->headers[i].value ||
		    !field_ok(req->headers[i].name, req->headers[i].value)) {
			fprintf(stderr, "header \"%s\" reaches on_connect\n",
				req->headers[i].name ? req->headers[i].name
						     : "(null)");
			abort();
		}
		total += strlen(req->headers[i].name) +
			 strlen(req->headers[i].value);
	}
	if (!field_ok("authority", req->authority))
		abort();
	total += strlen(req->authority);
	if (total > 1024 * 1024)
		abort();
	/* What the tunnel would look up (it reads none of them today). */
	(void)hb_stream_req_header(req, "forwarded");
	(void)hb_stream_req_header(req, "baggage");
	(void)hb_stream_req_header(req, "traceparent");

	if (!delays[(a >> 2) & 3] || r->n_pend == MAX_PENDING || r->ending) {
		answer(r, req, a);
		return;
	}
	r->pend[r->n_pend++] = (struct pending){
	    .req = req, .turn = r->turn + delays[(a >> 2) & 3], .answer = a};
}

static void on_conn_event(void *arg, struct hb_conn *c, enum hb_conn_event ev)
{
	struct run *r = arg;

	if (ev == HB_CONN_EV_CLOSED)
		r->c = NULL;
}

static void answer_due(struct run *r, bool all)
{
	size_t keep = 0;

	for (size_t i = 0; i < r->n_pend; i++) {
		struct pending p = r->pend[i];

		if (all || p.turn <= r->turn)
			answer(r, p.req, all ? 3 : p.answer); /* 3: 503 */
		else
			r->pend[keep++] = p;
	}
	r->n_pend = keep;
}

/* One turn of the peer and the upstreams, from a loop timer. */
static void step_cb(struct loop *l, struct loop_timer *tm)
{
	struct run *r = tm->arg;
	unsigned what = 0;

	r->turn++;
	/* More bytes arrive: the next piece of the input. */
	if (r->next_cut < r->n_cuts)
		r->t.arrived = r->cuts[r->next_cut++];
	if (r->eof_later && (r->turn >= r->eof_turn || r->ending)) {
		r->t.eof = true;
		r->t.arrived = r->t.len;
	}
	r->t.budget = r->ending ? SIZE_MAX : r->t.per_turn;
	if (!r->t.released) {
		bool readable = r->t.arrived > r->t.off ||
				(r->t.off == r->t.len && r->t.eof);

		if (r->t.want_read && readable)
			what |= HB_TRANSPORT_READABLE;
		if (r->t.want_write)
			what |= HB_TRANSPORT_WRITABLE;
		if (what)
			hb_transport_notify(&r->t.base, what);
	}
	for (size_t i = 0; i < r->n_ups; i++) {
		struct mock_up *u = r->ups[i];

		u->budget = r->ending ? SIZE_MAX : 333;
		what = 0;
		if (u->released)
			continue;
		if (u->want_read && u->mode != UP_SILENT)
			what |= RELAY_END_READABLE;
		if (u->want_read && u->mode == UP_SILENT && r->ending)
			u->mode = UP_ANSWER; /* goes quiet: FIN */
		if (u->want_write)
			what |= RELAY_END_WRITABLE;
		if (what)
			relay_end_notify(&u->base, what);
	}
	answer_due(r, r->ending);
	loop_stop(l);
}

/* One loop turn: the step timer, what it triggered, deferred frees. */
static void turn(struct run *r)
{
	loop_timer_arm(r->l, &r->step, 0);
	loop_run(r->l);
}

static bool all_gone(const struct run *r)
{
	if (r->c || r->n_pend || !r->t.released || relay_live_count() ||
	    hb_live_conns() || hb_live_streams())
		return false;
	for (size_t i = 0; i < r->n_ups; i++)
		if (!r->ups[i]->released)
			return false;
	return true;
}

static void cut_input(struct run *r)
{
	const uint8_t *p = r->t.in, *end = r->t.in + r->t.len;
	size_t step = (r->flags & 3) == 2 ? 13 : 257;

	/* At most one cut per separator (or 13-byte step), and the end. */
	r->cuts = malloc(sizeof(*r->cuts) * (r->t.len / (sizeof(SEP) - 1) + 2));
	if (!r->cuts)
		abort();
	switch (r->flags & 3) {
	case 0:
		r->cuts[r->n_cuts++] = r->t.len;
		break;
	case 1:
		while (p < end) {
			const uint8_t *s =
			    memmem(p, (size_t)(end - p), SEP, sizeof(SEP) - 1);

			if (!s)
				break;
			r->cuts[r->n_cuts++] = (size_t)(s - r->t.in);
			p = s + sizeof(SEP) - 1;
		}
		r->cuts[r->n_cuts++] = r->t.len;
		break;
	default:
		for (size_t o = step; o < r->t.len; o += step)
			r->cuts[r->n_cuts++] = o;
		r->cuts[r->n_cuts++] = r->t.len;
		break;
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *lvl = getenv("AMBIENTD_FUZZ_LOG");

	if (!lvl || log_level_parse(lvl, &log_threshold))
		log_threshold = LOG_ERROR;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t per_turn[] = {SIZE_MAX, 1, 100, 4096};
	struct hb_conn_opts small = {.max_streams = 4,
				     .stream_window = 4096,
				     .conn_window = 4096,
				     .max_frame = 16384,
				     .send_buf = 4096};
	struct hb_server_cbs cbs = {.on_connect = on_connect};
	struct run *r;
	unsigned max_turns;

	if (size < 4 || size > FUZZ_MAX_INPUT)
		return 0;
	if (hb_live_conns() || hb_live_streams() || relay_live_count())
		abort(); /* a previous input leaked */
	r = calloc(1, sizeof(*r));
	if (!r)
		abort();
	r->flags = data[0];
	r->answers = data + 1;
	r->t.base.ops = &mock_t_ops;
	r->t.in = data + 4;
	r->t.len = size - 4;
	r->eof_later = r->flags & 0x10;
	r->t.per_turn = per_turn[(r->flags >> 2) & 3];
	r->relay_buf = (r->flags & 0x20) ? 1024 : 0;
	cut_input(r);
	cbs.arg = r;
	r->l = loop_new();
	if (!r->l)
		abort();
	loop_timer_init(&r->step, step_cb, r);

	if (hb_conn_new_server(r->l, &r->t.base,
			       (r->flags & 0x20) ? &small : NULL, &cbs, &r->c))
		abort();
	hb_conn_set_observer(r->c, on_conn_event, r);

	/* The peer's bytes, piece by piece, then some turns to settle. */
	r->eof_turn = (unsigned)r->n_cuts + 8;
	max_turns = (unsigned)r->n_cuts + 16;
	while (r->turn < max_turns && !all_gone(r))
		turn(r);
	/* The peer goes away: graceful first, then abortive. */
	r->ending = true;
	if (r->c)
		hb_conn_drain(r->c);
	for (int i = 0; i < 16 && !all_gone(r); i++)
		turn(r);
	if (r->c)
		hb_conn_close(r->c);
	for (int i = 0; i < 16 && !all_gone(r); i++)
		turn(r);
	if (!all_gone(r)) {
		fprintf(stderr,
			"left behind: conn %p, %zu unanswered, transport "
			"released %d, "
			"%zu relays, %zu conns, %zu streams\n",
			(void *)r->c, r->n_pend, r->t.released,
			relay_live_count(), hb_live_conns(), hb_live_streams());
		abort();
	}
	if (r->t.released != 1)
		abort();
	for (size_t i = 0; i < r->n_ups; i++) {
		if (r->ups[i]->released != 1)
			abort();
		free(r->ups[i]);
	}
	loop_timer_disarm(r->l, &r->step);
	loop_free(r->l);
	free(r->cuts);
	free(r);
	return 0;
}
