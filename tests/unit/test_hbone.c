// SPDX-License-Identifier: Apache-2.0
/*
 * HBONE over real TCP sockets on 127.0.0.1, everything on one loop in this
 * thread (so the per-thread hb_* and relay counters see both sides):
 *
 *   app peer ==TCP== [client relay: tcp end <-> stream end] client hb_conn
 *       ==TCP (h2)== server hb_conn [server relay: stream end <-> tcp end]
 *       ==TCP== upstream peer
 *
 * The test's "daemon" is on_connect(): it connects the upstream socket,
 * then hb_stream_accept + hb_stream_respond(200) + relay_start, or refuses.
 */
#include "bufpool.h"
#include "hbone.h"
#include "log.h"
#include "loop.h"
#include "relay.h"
#include "tap.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <nghttp2/nghttp2.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MiB	  (1024 * 1024)
#define MAX_FLOWS 128

static struct loop *L;
static int hb_lfd, up_lfd, app_lfd, mute_lfd;
static struct sockaddr_in hb_addr, up_addr, app_addr, mute_addr;
static uint8_t *blob;
static const size_t blob_len = 40 * MiB;
static uint8_t scratch[256 * 1024];

/* ---- test case bookkeeping ---- */

struct tcase {
	int pending; /* peers + relays not finished; 0 stops the loop */
	bool timed_out;
	size_t peak_mem;
};

static struct tcase *cur;

static void tc_done_one(struct tcase *tc)
{
	if (--tc->pending == 0)
		loop_stop(L);
}

static void sample_mem(void)
{
	size_t m = hb_buffered_bytes() + relay_buffer_bytes();

	if (cur && m > cur->peak_mem)
		cur->peak_mem = m;
}

static void watchdog_cb(struct loop *l, struct loop_timer *t)
{
	struct tcase *tc = t->arg;

	tc->timed_out = true;
	loop_stop(l);
}

static void tc_run(struct tcase *tc, uint64_t timeout_ms)
{
	struct loop_timer wd;

	loop_timer_init(&wd, watchdog_cb, tc);
	loop_timer_arm(L, &wd, timeout_ms);
	if (tc->pending)
		loop_run(L);
	loop_timer_disarm(L, &wd);
}

/* Run the loop for ms (lets closes/frees settle). */
static void spin(uint64_t ms)
{
	loop_spin(L, ms);
}

/* Run until *flag or timeout. */
struct waitfor {
	struct loop_timer t;
	const bool *flag;
	uint64_t deadline;
};

static void waitfor_cb(struct loop *l, struct loop_timer *t)
{
	struct waitfor *w = t->arg;

	if (*w->flag || loop_now_ms(l) >= w->deadline)
		loop_stop(l);
	else
		loop_timer_arm(l, t, 5);
}

static bool wait_until(const bool *flag, uint64_t ms)
{
	struct waitfor w = {.flag = flag};

	w.deadline = loop_now_ms(L) + ms;
	loop_timer_init(&w.t, waitfor_cb, &w);
	loop_timer_arm(L, &w.t, 0);
	loop_run(L);
	loop_timer_disarm(L, &w.t);
	return *flag;
}

/* ---- peers: the app and the upstream server ---- */

struct peer {
	struct loop_io io;
	struct tcase *tc;
	bool active;
	const uint8_t *tx;
	size_t tx_len, tx_off;
	bool tx_wait_eof, shut_after_tx, tx_done;
	const uint8_t *expect;
	size_t expect_len, rx_off;
	bool mismatch, eof, paused;
	int err;
	struct peer *reset_at_rx_done;
	bool finished;
};

static void peer_finish(struct peer *p, bool reset)
{
	if (p->finished || !p->active)
		return;
	if (reset) {
		struct linger lg = {1, 0};

		setsockopt(p->io.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	loop_io_stop(L, &p->io);
	close(p->io.fd);
	p->finished = true;
	tc_done_one(p->tc);
}

static void peer_update(struct peer *p)
{
	uint32_t ev = 0;

	if (p->finished || !p->active)
		return;
	if (!p->paused && !p->eof)
		ev |= EPOLLIN;
	if (!p->tx_done && !(p->tx_wait_eof && !p->eof) &&
	    (p->tx_off < p->tx_len || p->shut_after_tx))
		ev |= EPOLLOUT;
	loop_io_update(L, &p->io, ev);
}

static void peer_rx(struct peer *p)
{
	for (;;) {
		ssize_t n = recv(p->io.fd, scratch, sizeof(scratch), 0);

		if (n < 0) {
			if (errno != EAGAIN)
				p->err = errno;
			return;
		}
		if (n == 0) {
			p->eof = true;
			return;
		}
		if (p->rx_off + n > p->expect_len ||
		    memcmp(scratch, p->expect + p->rx_off, n) != 0)
			p->mismatch = true;
		p->rx_off += n;
		if (p->rx_off == p->expect_len && p->reset_at_rx_done) {
			peer_finish(p->reset_at_rx_done, true);
			p->reset_at_rx_done = NULL;
		}
		if (p->paused)
			return;
	}
}

static void peer_tx(struct peer *p)
{
	while (p->tx_off < p->tx_len) {
		ssize_t n = send(p->io.fd, p->tx + p->tx_off,
				 p->tx_len - p->tx_off, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno != EAGAIN)
				p->err = errno;
			return;
		}
		p->tx_off += n;
	}
	if (p->shut_after_tx) {
		if (shutdown(p->io.fd, SHUT_WR) < 0)
			p->err = errno;
		p->tx_done = true;
	}
}

static void peer_cb(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct peer *p = io->arg;

	sample_mem();
	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
		peer_rx(p);
	if (!p->finished && !p->err && !p->tx_done &&
	    !(p->tx_wait_eof && !p->eof) &&
	    (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
		peer_tx(p);
	if (p->finished)
		return;
	if (p->err ||
	    (p->eof && (p->tx_done || !(p->shut_after_tx || p->tx_len))))
		peer_finish(p, false);
	else
		peer_update(p);
}

static void set_nonblock(int fd)
{
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static void peer_start(struct peer *p, struct tcase *tc, int fd)
{
	set_nonblock(fd);
	p->tc = tc;
	p->active = true;
	loop_io_init(&p->io, fd, peer_cb, p);
	tc->pending++;
	peer_update(p);
}

static bool peer_got_all(const struct peer *p)
{
	return !p->mismatch && p->rx_off == p->expect_len && p->eof && !p->err;
}

/* ---- flows ---- */

struct rslot {
	struct relay_summary s;
	int calls;
	struct tcase *tc;
};

static void relay_done(struct relay *r, const struct relay_summary *s,
		       void *arg)
{
	struct rslot *sl = arg;

	sl->s = *s;
	if (sl->calls++ == 0)
		tc_done_one(sl->tc);
}

enum srv_mode { SRV_OK, SRV_503, SRV_HOLD };

struct flow {
	struct peer app, up;
	struct rslot cr, sr;
	struct relay *crelay;
	bool up_small_buf;
	bool srv_respond_failed;
};

static struct flow *flows[MAX_FLOWS];

/* ---- the test's HBONE server ("daemon") ---- */

struct srv {
	struct loop_io lio;
	enum srv_mode mode;
	int accepted;
	struct hb_conn *last_conn;
	int on_connect_calls;
	size_t peak_live_streams;
	char authority[64];
	char forwarded[64];
	char tolerated[16];
	struct hb_stream_req *held[8];
	int nheld;
};

static struct srv S;

/* The server's options (zero: defaults) and the counters every server conn
 * shares; the limit cases change SO and put it back. */
static struct hb_stats ST;
static struct hb_conn_opts SO;
static bool srv_small_sndbuf;

static int tcp_connect(const struct sockaddr_in *to)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || connect(fd, (const struct sockaddr *)to, sizeof(*to))) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

static void on_connect(void *arg, struct hb_conn *c, struct hb_stream_req *req)
{
	const char *fl = hb_stream_req_header(req, "x-flow");
	const char *fw = hb_stream_req_header(req, "forwarded");
	const char *odd = hb_stream_req_header(req, "x-unknown");
	struct relay_opts ro = {.done = relay_done};
	struct relay_end *se, *ue;
	struct flow *f = NULL;
	int ufd, sfd, idx;

	S.on_connect_calls++;
	if (hb_conn_live_streams(c) > S.peak_live_streams)
		S.peak_live_streams = hb_conn_live_streams(c);
	snprintf(S.authority, sizeof(S.authority), "%s", req->authority);
	snprintf(S.forwarded, sizeof(S.forwarded), "%s", fw ? fw : "");
	snprintf(S.tolerated, sizeof(S.tolerated), "%s", odd ? odd : "");
	if (S.mode == SRV_503) {
		hb_stream_respond(req, 503);
		return;
	}
	if (S.mode == SRV_HOLD && S.nheld < 8) {
		S.held[S.nheld++] = req;
		return;
	}
	idx = fl ? atoi(fl) : -1;
	if (idx >= 0 && idx < MAX_FLOWS)
		f = flows[idx];
	if (!f) {
		hb_stream_respond(req, 503);
		return;
	}
	/* Upstream connect first; 200 only once it succeeded (DESIGN §3). */
	ufd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (f->up_small_buf) {
		int v = 32 * 1024;

		setsockopt(ufd, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v));
	}
	if (connect(ufd, (struct sockaddr *)&up_addr, sizeof(up_addr))) {
		close(ufd);
		hb_stream_respond(req, 503);
		return;
	}
	sfd = accept4(up_lfd, NULL, NULL, SOCK_CLOEXEC);
	if (f->up_small_buf) {
		int v = 32 * 1024;

		setsockopt(sfd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
	}
	set_nonblock(ufd);
	peer_start(&f->up, cur, sfd);
	if (hb_stream_accept(req, &se) || relay_end_tcp_new(L, ufd, &ue)) {
		f->srv_respond_failed = true;
		return;
	}
	if (hb_stream_respond(req, 200))
		f->srv_respond_failed = true;
	f->sr.tc = cur;
	cur->pending++;
	ro.arg = &f->sr;
	relay_start(L, se, ue, false, &ro, NULL);
}

static const struct hb_server_cbs srv_cbs = {.on_connect = on_connect};

static void srv_accept_cb(struct loop *l, struct loop_io *io, uint32_t ev)
{
	struct hb_transport *t;
	int fd = accept4(hb_lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (fd < 0)
		return;
	if (srv_small_sndbuf) {
		int v = 16 * 1024;

		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v));
	}
	if (hb_transport_tcp_new(L, fd, &t)) {
		close(fd);
		return;
	}
	SO.stats = &ST;
	if (hb_conn_new_server(L, t, &SO, &srv_cbs, &S.last_conn) == 0)
		S.accepted++;
}

/* ---- client side ---- */

static struct hb_conn *client_new(const struct hb_conn_opts *o,
				  const struct sockaddr_in *to)
{
	struct hb_transport *t;
	struct hb_conn *c;
	int fd = tcp_connect(to);

	if (fd < 0)
		return NULL;
	set_nonblock(fd);
	if (hb_transport_tcp_new(L, fd, &t)) {
		close(fd);
		return NULL;
	}
	if (hb_conn_new_client(L, t, o, &c))
		return NULL;
	return c;
}

static char up_authority[32];

/* App connects to the "captured" listener; its relay gets a CONNECT end. */
static int flow_start(struct flow *f, int idx, struct hb_conn *c,
		      struct tcase *tc)
{
	char fl[16], fw[64];
	struct hb_header hdrs[] = {
	    {"forwarded", fw},
	    {"baggage", "k8s.namespace.name=test"},
	    {"traceparent",
	     "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
	    {"x-unknown", "tolerated"},
	    {"x-flow", fl},
	};
	struct relay_opts ro = {.done = relay_done, .arg = &f->cr};
	struct relay_end *down, *up;
	int afd, dfd, err;

	flows[idx] = f;
	snprintf(fl, sizeof(fl), "%d", idx);
	afd = tcp_connect(&app_addr);
	dfd = accept4(app_lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (afd < 0 || dfd < 0)
		return -errno;
	snprintf(fw, sizeof(fw), "for=\"127.0.0.1:%d\"", 40000 + idx);
	err = hb_conn_open_stream(c, up_authority, hdrs, 5, &up);
	if (err) {
		close(afd);
		close(dfd);
		return err;
	}
	err = relay_end_tcp_new(L, dfd, &down);
	if (err)
		return err;
	f->cr.tc = tc;
	tc->pending++;
	err = relay_start(L, down, up, true, &ro, &f->crelay);
	if (err)
		return err;
	peer_start(&f->app, tc, afd);
	return 0;
}

static void flows_reset(void)
{
	memset(flows, 0, sizeof(flows));
}

/* Close any peers a failed case left behind. */
static void flow_cleanup(struct flow *f)
{
	peer_finish(&f->app, true);
	peer_finish(&f->up, true);
}

/* ---- cases ---- */

static void test_roundtrip(void)
{
	const size_t n = 8 * MiB;
	struct tcase tc = {0};
	struct flow f = {0};
	struct hb_conn *c;

	cur = &tc;
	S.mode = SRV_OK;
	c = client_new(NULL, &hb_addr);
	ok(c != NULL, "roundtrip: client conn");
	f.app.tx = blob;
	f.app.tx_len = n;
	f.app.shut_after_tx = true;
	f.up.expect = blob;
	f.up.expect_len = n;
	f.up.tx = blob + 13;
	f.up.tx_len = n;
	f.up.shut_after_tx = true;
	f.app.expect = blob + 13;
	f.app.expect_len = n;
	ok(flow_start(&f, 0, c, &tc) == 0, "roundtrip: stream opened");
	tc_run(&tc, 20000);
	ok(!tc.timed_out, "roundtrip: finished in time");
	ok(peer_got_all(&f.up),
	   "roundtrip: upstream got 8 MiB intact + FIN (%zu, mismatch %d)",
	   f.up.rx_off, f.up.mismatch);
	ok(peer_got_all(&f.app),
	   "roundtrip: app got 8 MiB intact + FIN (%zu, mismatch %d)",
	   f.app.rx_off, f.app.mismatch);
	ok(f.cr.calls == 1 && f.cr.s.result == RELAY_OK &&
	       f.cr.s.bytes_up == n && f.cr.s.bytes_down == n,
	   "roundtrip: client relay OK with exact counts (%s)",
	   relay_result_name(f.cr.s.result));
	ok(f.sr.calls == 1 && f.sr.s.result == RELAY_OK,
	   "roundtrip: server relay OK (%s)", relay_result_name(f.sr.s.result));
	ok(!strcmp(S.authority, up_authority),
	   "roundtrip: server saw :authority %s", S.authority);
	ok(!strcmp(S.forwarded, "for=\"127.0.0.1:40000\""),
	   "roundtrip: server saw forwarded: %s", S.forwarded);
	ok(!strcmp(S.tolerated, "tolerated"),
	   "roundtrip: unknown header tolerated and visible");
	ok(hb_conn_total_streams(c) == 1 && hb_conn_live_streams(c) == 0,
	   "roundtrip: one stream, closed (total %llu live %zu)",
	   (unsigned long long)hb_conn_total_streams(c),
	   hb_conn_live_streams(c));
	ok(hb_conn_get_state(c) == HB_CONN_OPEN,
	   "roundtrip: conn stays open for reuse (%s)",
	   hb_conn_state_name(hb_conn_get_state(c)));
	hb_conn_close(c);
	spin(50);
	ok(hb_live_streams() == 0 && hb_buffered_bytes() == 0,
	   "roundtrip: no stream object or buffer left (%zu, %zu)",
	   hb_live_streams(), hb_buffered_bytes());
	ok(hb_live_conns() == 0, "roundtrip: both conns gone (%zu)",
	   hb_live_conns());
	flow_cleanup(&f);
}

static void half_close(bool app_first)
{
	const char *what =
	    app_first ? "half-close app->up" : "half-close up->app";
	size_t req = 100 * 1024 + 3, resp = 50 * 1024 + 1;
	struct tcase tc = {0};
	struct flow f = {0};
	struct peer *first = app_first ? &f.app : &f.up;
	struct peer *second = app_first ? &f.up : &f.app;
	struct hb_conn *c;

	cur = &tc;
	S.mode = SRV_OK;
	c = client_new(NULL, &hb_addr);
	first->tx = blob;
	first->tx_len = req;
	first->shut_after_tx = true;
	second->expect = blob;
	second->expect_len = req;
	second->tx = blob + 1000;
	second->tx_len = resp;
	second->tx_wait_eof = true;
	second->shut_after_tx = true;
	first->expect = blob + 1000;
	first->expect_len = resp;
	ok(c && flow_start(&f, 0, c, &tc) == 0, "%s: setup", what);
	tc_run(&tc, 10000);
	ok(peer_got_all(second), "%s: data and FIN (END_STREAM) delivered",
	   what);
	ok(peer_got_all(first),
	   "%s: reply after own FIN arrives intact (%zu/%zu, err %d)", what,
	   first->rx_off, resp, first->err);
	ok(f.cr.s.result == RELAY_OK && f.sr.s.result == RELAY_OK,
	   "%s: both relays RELAY_OK (%s, %s)", what,
	   relay_result_name(f.cr.s.result), relay_result_name(f.sr.s.result));
	hb_conn_close(c);
	spin(20);
	flow_cleanup(&f);
}

static void reset_case(bool app_resets)
{
	const char *what = app_resets ? "RST app->up" : "RST up->app";
	struct tcase tc = {0};
	struct flow f = {0};
	struct peer *resetter = app_resets ? &f.app : &f.up;
	struct peer *victim = app_resets ? &f.up : &f.app;
	struct hb_conn *c;

	cur = &tc;
	S.mode = SRV_OK;
	c = client_new(NULL, &hb_addr);
	resetter->tx = blob;
	resetter->tx_len = 10 * 1024;
	victim->expect = blob;
	victim->expect_len = 10 * 1024;
	victim->reset_at_rx_done = resetter;
	ok(c && flow_start(&f, 0, c, &tc) == 0, "%s: setup", what);
	tc_run(&tc, 10000);
	ok(victim->rx_off == 10 * 1024 && !victim->mismatch,
	   "%s: data before the reset arrived", what);
	ok(victim->err == ECONNRESET && !victim->eof,
	   "%s: other side sees ECONNRESET (%s)", what, strerror(victim->err));
	ok(f.cr.s.result == (app_resets ? RELAY_DOWNSTREAM_RESET
					: RELAY_UPSTREAM_RESET) &&
	       f.sr.s.result ==
		   (app_resets ? RELAY_DOWNSTREAM_RESET : RELAY_UPSTREAM_RESET),
	   "%s: client relay %s, server relay %s", what,
	   relay_result_name(f.cr.s.result), relay_result_name(f.sr.s.result));
	spin(20);
	ok(hb_conn_get_state(c) == HB_CONN_OPEN && hb_conn_live_streams(c) == 0,
	   "%s: RST_STREAM ended only the stream (%s)", what,
	   hb_conn_state_name(hb_conn_get_state(c)));
	hb_conn_close(c);
	spin(20);
	flow_cleanup(&f);
}

static void test_refused(void)
{
	struct tcase tc = {0};
	struct flow f = {0};
	struct hb_conn *c;

	cur = &tc;
	S.mode = SRV_503;
	c = client_new(NULL, &hb_addr);
	f.app.tx = blob;
	f.app.tx_len = 1000; /* nothing may be relayed before the 200 */
	ok(c && flow_start(&f, 0, c, &tc) == 0, "503: setup");
	tc_run(&tc, 10000);
	ok(f.cr.calls == 1 && f.cr.s.result == RELAY_CONNECT_FAILED &&
	       f.cr.s.error == ECONNREFUSED,
	   "503: client relay CONNECT_FAILED / ECONNREFUSED (%s, %s)",
	   relay_result_name(f.cr.s.result), strerror(f.cr.s.error));
	ok(f.app.err == ECONNRESET, "503: app sees its connection reset (%s)",
	   strerror(f.app.err));
	ok(f.cr.s.bytes_up == 0, "503: nothing relayed");
	spin(50);
	ok(hb_conn_live_streams(c) == 0 && hb_conn_get_state(c) == HB_CONN_OPEN,
	   "503: stream ended with END_STREAM, conn still open (live %zu)",
	   hb_conn_live_streams(c));
	ok(hb_live_streams() == 0, "503: both stream objects freed (%zu)",
	   hb_live_streams());
	S.mode = SRV_OK;
	hb_conn_close(c);
	spin(20);
	flow_cleanup(&f);
}

/* An end used directly (no relay): poll its error. */
static void bad_authority(const char *auth, const struct hb_header *extra,
			  size_t n, const char *what)
{
	struct relay_end *e = NULL;
	struct hb_conn *c;
	bool dummy = false;
	int calls = S.on_connect_calls;

	c = client_new(NULL, &hb_addr);
	ok(c && hb_conn_open_stream(c, auth, extra, n, &e) == 0,
	   "400 %s: stream opened", what);
	for (int i = 0; i < 200 && e && hb_stream_status(e) == 0; i++)
		wait_until(&dummy, 5);
	ok(e && hb_stream_status(e) == 400, "400 %s: status %d", what,
	   e ? hb_stream_status(e) : -1);
	ok(e && e->ops->error(e) == -EINVAL, "400 %s: end error -EINVAL", what);
	ok(S.on_connect_calls == calls, "400 %s: never reached on_connect",
	   what);
	if (e)
		e->ops->abort(e);
	spin(20);
	ok(hb_live_streams() == 0, "400 %s: stream objects freed", what);
	hb_conn_close(c);
	spin(20);
}

/* ---- a raw nghttp2 client for requests our API cannot make ---- */

struct raw {
	nghttp2_session *ng;
	struct loop_io io;
	int status;
	bool done;
	uint32_t rst;
};

static ssize_t raw_send(nghttp2_session *ng, const uint8_t *d, size_t len,
			int flags, void *arg)
{
	struct raw *r = arg;
	ssize_t n = send(r->io.fd, d, len, MSG_NOSIGNAL);

	return n < 0 ? NGHTTP2_ERR_CALLBACK_FAILURE : n;
}

static int raw_header(nghttp2_session *ng, const nghttp2_frame *fr,
		      const uint8_t *name, size_t nl, const uint8_t *v,
		      size_t vl, uint8_t flags, void *arg)
{
	struct raw *r = arg;

	if (nl == 7 && !memcmp(name, ":status", 7))
		r->status = atoi((const char *)v);
	return 0;
}

static int raw_close(nghttp2_session *ng, int32_t id, uint32_t code, void *arg)
{
	struct raw *r = arg;

	r->rst = code;
	r->done = true;
	return 0;
}

static void raw_io(struct loop *l, struct loop_io *io, uint32_t ev)
{
	struct raw *r = io->arg;
	ssize_t n = recv(io->fd, scratch, sizeof(scratch), 0);

	if (n <= 0) {
		r->done = true;
		loop_io_stop(l, io);
		return;
	}
	nghttp2_session_mem_recv(r->ng, scratch, n);
	nghttp2_session_send(r->ng);
}

static void raw_request(const nghttp2_nv *nva, size_t n, const char *what)
{
	nghttp2_session_callbacks *cb;
	struct raw r = {0};
	int calls = S.on_connect_calls;
	int fd = tcp_connect(&hb_addr);

	nghttp2_session_callbacks_new(&cb);
	nghttp2_session_callbacks_set_send_callback(cb, raw_send);
	nghttp2_session_callbacks_set_on_header_callback(cb, raw_header);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, raw_close);
	nghttp2_session_client_new(&r.ng, cb, &r);
	nghttp2_session_callbacks_del(cb);
	loop_io_init(&r.io, fd, raw_io, &r);
	nghttp2_submit_settings(r.ng, NGHTTP2_FLAG_NONE, NULL, 0);
	nghttp2_submit_request(r.ng, NULL, nva, n, NULL, NULL);
	nghttp2_session_send(r.ng);
	loop_io_update(L, &r.io, EPOLLIN);
	wait_until(&r.done, 3000);
	ok(r.status == 400, "400 %s: status %d (stream error code %u)", what,
	   r.status, r.rst);
	ok(S.on_connect_calls == calls, "400 %s: never reached on_connect",
	   what);
	loop_io_stop(L, &r.io);
	close(fd);
	nghttp2_session_del(r.ng);
	spin(20);
}

#define NV(n, v)                                                               \
	{                                                                      \
		(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, sizeof(v) - 1,  \
		    NGHTTP2_NV_FLAG_NONE                                       \
	}

static void test_malformed(void)
{
	const struct hb_header path[] = {{":path", "/"}};
	nghttp2_nv no_auth[] = {NV(":method", "CONNECT")};
	nghttp2_nv get[] = {NV(":method", "GET"), NV(":scheme", "http"),
			    NV(":authority", "127.0.0.1:80"), NV(":path", "/")};

	bad_authority("not-an-ip:80", NULL, 0, "authority not ip:port");
	bad_authority("127.0.0.1", NULL, 0, "authority without port");
	bad_authority("127.0.0.1:99999", NULL, 0, "port out of range");
	bad_authority("127.0.0.1:80", path, 1, ":path present");
	raw_request(no_auth, 1, "missing authority");
	raw_request(get, 4, "GET instead of CONNECT");
}

static void test_multiplex(void)
{
	enum { N = 100 };
	static struct flow f[N];
	const size_t up = 64 * 1024, down = 32 * 1024;
	struct tcase tc = {0};
	struct hb_conn *c;
	int accepted = S.accepted, bad = 0, okc = 0;

	cur = &tc;
	S.mode = SRV_OK;
	S.peak_live_streams = 0;
	memset(f, 0, sizeof(f));
	flows_reset();
	c = client_new(NULL, &hb_addr);
	for (int i = 0; i < N && c; i++) {
		f[i].app.tx = blob + i;
		f[i].app.tx_len = up;
		f[i].app.shut_after_tx = true;
		f[i].up.expect = blob + i;
		f[i].up.expect_len = up;
		f[i].up.tx = blob + 7 * i;
		f[i].up.tx_len = down;
		f[i].up.tx_wait_eof = true;
		f[i].up.shut_after_tx = true;
		f[i].app.expect = blob + 7 * i;
		f[i].app.expect_len = down;
		okc += flow_start(&f[i], i, c, &tc) == 0;
	}
	ok(okc == N, "multiplex: %d streams opened", okc);
	ok(c && !hb_conn_can_open_stream(c),
	   "multiplex: stream 101 refused by the client cap");
	tc_run(&tc, 20000);
	for (int i = 0; i < N; i++)
		bad += !peer_got_all(&f[i].up) || !peer_got_all(&f[i].app) ||
		       f[i].cr.s.result != RELAY_OK ||
		       f[i].sr.s.result != RELAY_OK;
	ok(!tc.timed_out && bad == 0, "multiplex: all %d flows intact (%d bad)",
	   N, bad);
	ok(S.accepted - accepted == 1,
	   "multiplex: one TCP connection carried them (%d)",
	   S.accepted - accepted);
	ok(hb_conn_total_streams(c) == N &&
	       hb_conn_total_streams(S.last_conn) == N,
	   "multiplex: %llu streams on the client conn, %llu on the server's",
	   (unsigned long long)hb_conn_total_streams(c),
	   (unsigned long long)hb_conn_total_streams(S.last_conn));
	ok(S.peak_live_streams == N,
	   "multiplex: %zu streams were open at once on the server",
	   S.peak_live_streams);
	hb_conn_close(c);
	spin(30);
	for (int i = 0; i < N; i++)
		flow_cleanup(&f[i]);
	ok(hb_live_streams() == 0 && hb_live_conns() == 0,
	   "multiplex: everything freed");
}

/* ---- flow control ---- */

struct fc {
	struct flow f;
	struct loop_timer t;
	size_t peak_during_stall;
	size_t up_rx_at_resume;
	int ticks;
};

static void fc_tick(struct loop *l, struct loop_timer *t)
{
	struct fc *fc = t->arg;

	sample_mem();
	if (++fc->ticks == 300) { /* 1.5 s of a stalled upstream */
		fc->peak_during_stall = cur->peak_mem;
		fc->up_rx_at_resume = fc->f.up.rx_off;
		fc->f.up.paused = false;
		peer_update(&fc->f.up);
		return;
	}
	loop_timer_arm(l, t, 5);
}

static void test_flow_control(void)
{
	const size_t n = 32 * MiB;
	const size_t bound = 4 * MiB + 1 * MiB;
	struct tcase tc = {0};
	static struct fc fc;
	struct hb_conn *c;

	memset(&fc, 0, sizeof(fc));
	cur = &tc;
	S.mode = SRV_OK;
	c = client_new(NULL, &hb_addr);
	fc.f.up_small_buf = true;
	fc.f.up.paused = true;
	fc.f.app.tx = blob;
	fc.f.app.tx_len = n;
	fc.f.app.shut_after_tx = true;
	fc.f.up.expect = blob;
	fc.f.up.expect_len = n;
	fc.f.up.tx_wait_eof = true;
	fc.f.up.shut_after_tx = true;
	ok(c && flow_start(&fc.f, 0, c, &tc) == 0, "flow control: setup");
	loop_timer_init(&fc.t, fc_tick, &fc);
	loop_timer_arm(L, &fc.t, 5);
	tc_run(&tc, 25000);
	loop_timer_disarm(L, &fc.t);
	ok(fc.up_rx_at_resume < 2 * MiB,
	   "flow control: upstream stalled (had %zu bytes)",
	   fc.up_rx_at_resume);
	ok(fc.peak_during_stall >= 3 * MiB && fc.peak_during_stall <= bound,
	   "flow control: buffered memory filled the 4 MiB window and stayed "
	   "bounded (peak %zu <= %zu)",
	   fc.peak_during_stall, bound);
	ok(tc.peak_mem <= bound, "flow control: peak over the run %zu",
	   tc.peak_mem);
	ok(peer_got_all(&fc.f.up),
	   "flow control: all %zu bytes arrived after resuming (%zu, "
	   "mismatch %d)",
	   n, fc.f.up.rx_off, fc.f.up.mismatch);
	ok(fc.f.cr.s.result == RELAY_OK && fc.f.sr.s.result == RELAY_OK,
	   "flow control: relays OK");
	hb_conn_close(c);
	spin(20);
	flow_cleanup(&fc.f);
}

/* ---- protocol errors: the bad conn dies, others keep working ---- */

static size_t read_all(int fd, uint8_t *buf, size_t cap, int ms, bool *eof)
{
	size_t got = 0;
	struct timeval tv = {0, 20 * 1000};

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	*eof = false;
	for (int i = 0; i < ms / 20 && got < cap; i++) {
		ssize_t n;

		spin(1); /* the server runs on our loop */
		n = recv(fd, buf + got, cap - got, MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN)) {
			*eof = true;
			break;
		}
		if (n > 0)
			got += n;
	}
	return got;
}

/* Finds a GOAWAY frame in a server's output; returns its error code. */
static int find_goaway(const uint8_t *b, size_t len)
{
	size_t off = 0;

	while (off + 9 <= len) {
		uint32_t flen = b[off] << 16 | b[off + 1] << 8 | b[off + 2];

		if (b[off + 3] == 7 && off + 9 + 8 <= len)
			return b[off + 13] << 24 | b[off + 14] << 16 |
			       b[off + 15] << 8 | b[off + 16];
		off += 9 + flen;
	}
	return -1;
}

static void small_roundtrip(const char *what)
{
	struct tcase tc = {0};
	struct flow f = {0};
	struct hb_conn *c;

	cur = &tc;
	S.mode = SRV_OK;
	c = client_new(NULL, &hb_addr);
	f.app.tx = blob;
	f.app.tx_len = 5000;
	f.app.shut_after_tx = true;
	f.up.expect = blob;
	f.up.expect_len = 5000;
	f.up.tx = blob + 9;
	f.up.tx_len = 7000;
	f.up.shut_after_tx = true;
	f.up.tx_wait_eof = true;
	f.app.expect = blob + 9;
	f.app.expect_len = 7000;
	ok(c && flow_start(&f, 0, c, &tc) == 0, "%s: setup", what);
	tc_run(&tc, 5000);
	ok(peer_got_all(&f.up) && peer_got_all(&f.app),
	   "%s: round trip on a good conn intact", what);
	if (c)
		hb_conn_close(c);
	spin(10);
	flow_cleanup(&f);
}

static void test_garbage(void)
{
	static uint8_t rx[64 * 1024];
	uint8_t junk[256], hdr[9 + 9];
	size_t conns_before = hb_live_conns(), got;
	uint64_t fse = atomic_load(&ST.errors[1][NGHTTP2_FRAME_SIZE_ERROR]);
	int fd, fd2;
	bool eof;

	/* A second, healthy client conn stays open throughout. */
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)(i * 37 + 11);
	fd = tcp_connect(&hb_addr);
	spin(5);
	ok(hb_live_conns() == conns_before + 1, "garbage: server conn up");
	ok(send(fd, junk, sizeof(junk), 0) == (ssize_t)sizeof(junk),
	   "garbage: 256 junk bytes sent");
	got = read_all(fd, rx, sizeof(rx), 3000, &eof);
	ok(eof, "garbage: server closed that connection (%zu bytes before)",
	   got);
	ok(hb_live_conns() == conns_before, "garbage: its conn is gone");
	close(fd);
	small_roundtrip("garbage");

	/* Valid preface + SETTINGS, then a DATA frame of 2 MiB > our 1 MiB. */
	fd2 = tcp_connect(&hb_addr);
	send(fd2, NGHTTP2_CLIENT_MAGIC, NGHTTP2_CLIENT_MAGIC_LEN, 0);
	memset(hdr, 0, sizeof(hdr));
	hdr[3] = 4;	   /* SETTINGS, empty */
	hdr[9 + 0] = 0x20; /* length 2 MiB */
	hdr[9 + 3] = 0;	   /* DATA */
	hdr[9 + 8] = 1;	   /* stream 1 */
	send(fd2, hdr, sizeof(hdr), 0);
	send(fd2, junk, sizeof(junk), 0);
	got = read_all(fd2, rx, sizeof(rx), 3000, &eof);
	ok(find_goaway(rx, got) == NGHTTP2_FRAME_SIZE_ERROR,
	   "oversized frame: GOAWAY FRAME_SIZE_ERROR (%d)",
	   find_goaway(rx, got));
	ok(atomic_load(&ST.errors[1][NGHTTP2_FRAME_SIZE_ERROR]) == fse + 1,
	   "oversized frame: counted as FRAME_SIZE_ERROR sent (server)");
	ok(eof, "oversized frame: connection closed");
	close(fd2);
	spin(10);
	ok(hb_live_conns() == conns_before, "oversized frame: conn gone");
	small_roundtrip("oversized frame");
}

/* ---- keepalive ---- */

static int closed_err = -1;
static bool closed_flag;

static void obs_closed(void *arg, struct hb_conn *c, enum hb_conn_event ev)
{
	if (ev == HB_CONN_EV_CLOSED) {
		closed_err = hb_conn_error(c);
		closed_flag = true;
	}
}

static void test_ping(void)
{
	struct hb_conn_opts o = {.ping_interval_ms = 100,
				 .ping_timeout_ms = 200};
	struct hb_conn *c;
	bool never = false;
	int mfd;

	/* A live peer answers PINGs: 1 s idle keeps the conn open. */
	c = client_new(&o, &hb_addr);
	wait_until(&never, 1000);
	ok(c && hb_conn_get_state(c) == HB_CONN_OPEN,
	   "ping: idle conn with a live peer stays open (%s)",
	   c ? hb_conn_state_name(hb_conn_get_state(c)) : "-");
	if (c)
		hb_conn_close(c);
	spin(10);

	/* A peer that never answers: dead after interval + timeout. */
	closed_flag = false;
	c = client_new(&o, &mute_addr);
	mfd = accept4(mute_lfd, NULL, NULL, SOCK_CLOEXEC);
	if (c)
		hb_conn_set_observer(c, obs_closed, NULL);
	wait_until(&closed_flag, 3000);
	ok(c && closed_flag && closed_err == ETIMEDOUT,
	   "ping: silent peer -> conn closed with ETIMEDOUT (%s)",
	   closed_err > 0 ? strerror(closed_err) : "-");
	close(mfd);
	spin(10);
}

/* ---- drain (GOAWAY) with a stream in flight ---- */

static void test_drain(void)
{
	struct tcase tc = {0};
	struct flow f = {0};
	struct hb_conn *c;

	cur = &tc;
	S.mode = SRV_OK;
	c = client_new(NULL, &hb_addr);
	f.app.tx = blob;
	f.app.tx_len = 2 * MiB;
	f.app.shut_after_tx = true;
	f.up.expect = blob;
	f.up.expect_len = 2 * MiB;
	f.up.tx = blob + 5;
	f.up.tx_len = 1 * MiB;
	f.up.tx_wait_eof = true;
	f.up.shut_after_tx = true;
	f.app.expect = blob + 5;
	f.app.expect_len = 1 * MiB;
	/* The upstream does not read yet: the stream stays in flight. */
	f.up.paused = true;
	ok(c && flow_start(&f, 0, c, &tc) == 0, "drain: setup");
	closed_flag = false;
	hb_conn_set_observer(c, obs_closed, NULL);
	spin(50);
	ok(hb_conn_live_streams(c) == 1, "drain: stream in flight");
	hb_conn_drain(S.last_conn);
	spin(20);
	ok(!hb_conn_can_open_stream(c) &&
	       hb_conn_get_state(c) == HB_CONN_DRAINING &&
	       hb_conn_get_state(S.last_conn) == HB_CONN_DRAINING,
	   "drain: both sides DRAINING, client conn not reusable (%s)",
	   hb_conn_state_name(hb_conn_get_state(c)));
	{
		struct relay_end *e;

		ok(hb_conn_open_stream(c, up_authority, NULL, 0, &e) ==
		       -ESHUTDOWN,
		   "drain: open_stream -> -ESHUTDOWN");
	}
	f.up.paused = false;
	peer_update(&f.up);
	tc_run(&tc, 10000);
	ok(peer_got_all(&f.up) && peer_got_all(&f.app),
	   "drain: the stream in flight finished intact");
	wait_until(&closed_flag, 2000);
	ok(closed_flag && closed_err == 0,
	   "drain: conn closed cleanly afterwards (%s)",
	   closed_err > 0 ? strerror(closed_err) : "ok");
	spin(10);
	flow_cleanup(&f);
}

/* ---- hostile peers: limits and deadlines ---- */

/* Server-side counters (index 1 of struct hb_stats). */
#define ST_ERR(code) atomic_load(&ST.errors[1][code])
#define ST_DL(d)     atomic_load(&ST.deadlines[1][d])
#define ST_LIM(l)    atomic_load(&ST.limits[1][l])

static size_t frame(uint8_t *b, uint32_t len, uint8_t type, uint8_t flags,
		    uint32_t sid, const void *payload)
{
	b[0] = len >> 16;
	b[1] = len >> 8;
	b[2] = len;
	b[3] = type;
	b[4] = flags;
	b[5] = sid >> 24 & 0x7f;
	b[6] = sid >> 16;
	b[7] = sid >> 8;
	b[8] = sid;
	if (payload && len)
		memcpy(b + 9, payload, len);
	return 9 + len;
}

/* What a raw peer read from the server, parsed frame by frame. */
struct fscan {
	uint8_t hdr[9];
	size_t hlen;
	uint32_t left; /* payload bytes of the current frame still due */
	uint8_t pl[8]; /* its first payload bytes */
	size_t plen;
	int goaway;	/* error code of the last GOAWAY, -1 none */
	int rst;	/* error code of the last RST_STREAM, -1 none */
	uint32_t n[10]; /* frames by type */
	uint32_t ping_acks;
	uint8_t hdrs[8]; /* first payload bytes of the first HEADERS */
	size_t hdrs_len;
	size_t bytes;
	bool eof;
};

static void fscan_init(struct fscan *f)
{
	memset(f, 0, sizeof(*f));
	f->goaway = f->rst = -1;
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3];
}

static void fscan_end_frame(struct fscan *f)
{
	uint8_t type = f->hdr[3];

	if (type < 10)
		f->n[type]++;
	if (type == 7 && f->plen >= 8)
		f->goaway = (int)be32(f->pl + 4);
	if (type == 3 && f->plen >= 4)
		f->rst = (int)be32(f->pl);
	if (type == 6 && (f->hdr[4] & 1))
		f->ping_acks++;
	if (type == 1 && f->n[1] == 1) {
		memcpy(f->hdrs, f->pl, f->plen);
		f->hdrs_len = f->plen;
	}
	f->hlen = 0;
	f->plen = 0;
}

static void fscan_feed(struct fscan *f, const uint8_t *b, size_t len)
{
	f->bytes += len;
	while (len) {
		if (f->hlen < 9) {
			f->hdr[f->hlen++] = *b++;
			len--;
			if (f->hlen == 9) {
				f->left = f->hdr[0] << 16 | f->hdr[1] << 8 |
					  f->hdr[2];
				if (!f->left)
					fscan_end_frame(f);
			}
			continue;
		}
		size_t n = len < f->left ? len : f->left;

		for (size_t i = 0; i < n && f->plen < sizeof(f->pl); i++)
			f->pl[f->plen++] = b[i];
		b += n;
		len -= n;
		f->left -= n;
		if (!f->left)
			fscan_end_frame(f);
	}
}

/* Reads (running the server's loop) until EOF, ms, or `until` holds. */
static void fscan_read(int fd, struct fscan *f, int ms,
		       bool (*until)(const struct fscan *f))
{
	uint64_t end = loop_now_ms(L) + ms;

	while (!f->eof && loop_now_ms(L) < end && !(until && until(f))) {
		ssize_t n;

		spin(1);
		while ((n = recv(fd, scratch, sizeof(scratch), MSG_DONTWAIT)) >
		       0)
			fscan_feed(f, scratch, n);
		if (n == 0 || (n < 0 && errno != EAGAIN))
			f->eof = true;
	}
}

/* TCP to the server with the client preface and an empty SETTINGS. */
static int raw_open(bool preface)
{
	uint8_t b[9];
	int fd = tcp_connect(&hb_addr);

	if (fd < 0)
		return -1;
	set_nonblock(fd);
	if (preface) {
		send(fd, NGHTTP2_CLIENT_MAGIC, NGHTTP2_CLIENT_MAGIC_LEN,
		     MSG_NOSIGNAL);
		send(fd, b, frame(b, 0, NGHTTP2_SETTINGS, 0, 0, NULL),
		     MSG_NOSIGNAL);
	}
	return fd;
}

static void test_names(void)
{
	ok(!strcmp(hb_h2_error_name(NGHTTP2_ENHANCE_YOUR_CALM),
		   "ENHANCE_YOUR_CALM") &&
	       !strcmp(hb_h2_error_name(NGHTTP2_HTTP_1_1_REQUIRED),
		       "HTTP_1_1_REQUIRED") &&
	       !strcmp(hb_h2_error_name(0xe), "UNKNOWN") &&
	       !strcmp(hb_deadline_name(HB_DL_SETTINGS), "settings") &&
	       !strcmp(hb_limit_name(HB_LIM_PENDING), "pending_connects"),
	   "names: h2 error codes, deadlines and limits");
}

/* Connects and says nothing: our SETTINGS, then GOAWAY SETTINGS_TIMEOUT. */
static void test_settings_deadline(void)
{
	uint64_t dl = ST_DL(HB_DL_SETTINGS),
		 e = ST_ERR(NGHTTP2_SETTINGS_TIMEOUT);
	uint64_t t0;
	struct fscan f;
	int fd;

	SO.settings_timeout_ms = 300;
	fscan_init(&f);
	fd = raw_open(false);
	t0 = loop_now_ms(L);
	fscan_read(fd, &f, 150, NULL);
	ok(!f.eof && f.goaway < 0,
	   "settings deadline: silent peer still open after 150 ms");
	fscan_read(fd, &f, 2000, NULL);
	ok(f.n[NGHTTP2_SETTINGS] == 1 && f.goaway == NGHTTP2_SETTINGS_TIMEOUT &&
	       f.eof,
	   "settings deadline: our SETTINGS, GOAWAY SETTINGS_TIMEOUT (%d), "
	   "closed after %llu ms",
	   f.goaway, (unsigned long long)(loop_now_ms(L) - t0));
	ok(ST_DL(HB_DL_SETTINGS) == dl + 1 &&
	       ST_ERR(NGHTTP2_SETTINGS_TIMEOUT) == e + 1,
	   "settings deadline: counted (deadline and error code)");
	close(fd);
	/* The preface alone does not count: SETTINGS is due as well. */
	fscan_init(&f);
	fd = raw_open(false);
	send(fd, NGHTTP2_CLIENT_MAGIC, NGHTTP2_CLIENT_MAGIC_LEN, MSG_NOSIGNAL);
	fscan_read(fd, &f, 2000, NULL);
	ok(f.goaway == NGHTTP2_SETTINGS_TIMEOUT && f.eof,
	   "settings deadline: preface without SETTINGS -> SETTINGS_TIMEOUT");
	close(fd);
	SO.settings_timeout_ms = 0;
	spin(10);
	small_roundtrip("settings deadline");
}

/* Client side: a server that accepts TCP and never speaks HTTP/2. */
static void test_settings_deadline_client(void)
{
	static struct hb_stats cst;
	struct hb_conn_opts o = {.settings_timeout_ms = 200, .stats = &cst};
	struct hb_conn *c;
	uint64_t t0 = loop_now_ms(L);
	int mfd;

	closed_flag = false;
	c = client_new(&o, &mute_addr);
	mfd = accept4(mute_lfd, NULL, NULL, SOCK_CLOEXEC);
	if (c)
		hb_conn_set_observer(c, obs_closed, NULL);
	wait_until(&closed_flag, 3000);
	ok(c && closed_flag && closed_err == ETIMEDOUT &&
	       atomic_load(&cst.deadlines[0][HB_DL_SETTINGS]) == 1 &&
	       atomic_load(&cst.errors[0][NGHTTP2_SETTINGS_TIMEOUT]) == 1,
	   "settings deadline (client): mute server -> ETIMEDOUT after %llu "
	   "ms, GOAWAY SETTINGS_TIMEOUT counted client side",
	   (unsigned long long)(loop_now_ms(L) - t0));
	close(mfd);
	spin(10);
}

/* HEADERS without END_HEADERS, then nothing. */
static void test_header_deadline(void)
{
	/* :method CONNECT as a literal with an indexed name (static 2). */
	static const uint8_t block[] = {0x02, 7,   'C', 'O', 'N',
					'N',  'E', 'C', 'T'};
	uint64_t dl = ST_DL(HB_DL_HEADERS);
	uint8_t b[64];
	struct fscan f;
	int fd;

	SO.header_timeout_ms = 300;
	fscan_init(&f);
	fd = raw_open(true);
	send(fd, b, frame(b, sizeof(block), NGHTTP2_HEADERS, 0, 1, block),
	     MSG_NOSIGNAL);
	fscan_read(fd, &f, 150, NULL);
	ok(!f.eof && f.goaway < 0,
	   "header deadline: open header block, conn open after 150 ms");
	fscan_read(fd, &f, 2000, NULL);
	ok(f.goaway == NGHTTP2_ENHANCE_YOUR_CALM && f.eof,
	   "header deadline: GOAWAY ENHANCE_YOUR_CALM (%d), closed", f.goaway);
	ok(ST_DL(HB_DL_HEADERS) == dl + 1, "header deadline: counted");
	close(fd);
	SO.header_timeout_ms = 0;
	spin(10);
}

static bool saw_goaway;

static void obs_goaway(void *arg, struct hb_conn *c, enum hb_conn_event ev)
{
	if (ev == HB_CONN_EV_GOAWAY)
		saw_goaway = true;
	if (ev == HB_CONN_EV_CLOSED) {
		closed_err = hb_conn_error(c);
		closed_flag = true;
	}
}

static void test_idle_deadline(void)
{
	struct tcase tc = {0};
	struct flow f = {0};
	uint64_t dl = ST_DL(HB_DL_IDLE);
	struct hb_conn *c;
	bool never = false;

	SO.idle_timeout_ms = 300;
	/* A stream in flight for longer than the idle time keeps it. */
	cur = &tc;
	S.mode = SRV_OK;
	c = client_new(NULL, &hb_addr);
	closed_flag = saw_goaway = false;
	if (c)
		hb_conn_set_observer(c, obs_goaway, NULL);
	f.app.tx = blob;
	f.app.tx_len = 1000;
	f.app.shut_after_tx = true;
	f.up.expect = blob;
	f.up.expect_len = 1000;
	f.up.tx = blob + 3;
	f.up.tx_len = 1000;
	f.up.tx_wait_eof = true;
	f.up.shut_after_tx = true;
	f.app.expect = blob + 3;
	f.app.expect_len = 1000;
	f.up.paused = true;
	ok(c && flow_start(&f, 0, c, &tc) == 0, "idle deadline: setup");
	wait_until(&never, 700);
	ok(!saw_goaway && hb_conn_live_streams(c) == 1,
	   "idle deadline: a conn with a stream open is kept (700 ms)");
	f.up.paused = false;
	peer_update(&f.up);
	tc_run(&tc, 5000);
	ok(peer_got_all(&f.up) && peer_got_all(&f.app),
	   "idle deadline: that stream finished intact");
	/* Now no stream: GOAWAY NO_ERROR after the idle time, clean close. */
	wait_until(&closed_flag, 2000);
	ok(saw_goaway && closed_flag && closed_err == 0,
	   "idle deadline: then GOAWAY, both ends closed cleanly (%s)",
	   closed_err > 0 ? strerror(closed_err) : "ok");
	ok(ST_DL(HB_DL_IDLE) == dl + 1, "idle deadline: counted");
	SO.idle_timeout_ms = 0;
	spin(10);
	flow_cleanup(&f);
}

/* More CONNECTs awaiting their answer than max_pending: REFUSED_STREAM. */
static void test_pending_cap(void)
{
	uint64_t lim = ST_LIM(HB_LIM_PENDING),
		 e = ST_ERR(NGHTTP2_REFUSED_STREAM);
	struct relay_end *e5[6] = {0};
	struct hb_conn *c;
	bool never = false;
	int refused = 0, opened = 0;

	SO.max_pending = 3;
	S.mode = SRV_HOLD;
	S.nheld = 0;
	c = client_new(NULL, &hb_addr);
	for (int i = 0; i < 5 && c; i++)
		opened +=
		    hb_conn_open_stream(c, up_authority, NULL, 0, &e5[i]) == 0;
	wait_until(&never, 200);
	for (int i = 0; i < 5; i++)
		refused += e5[i] && e5[i]->ops->error(e5[i]) == -ECONNREFUSED;
	ok(opened == 5 && S.nheld == 3 && refused == 2,
	   "pending cap: 3 held by the app, 2 refused (held %d, refused %d)",
	   S.nheld, refused);
	ok(ST_LIM(HB_LIM_PENDING) == lim + 2 &&
	       ST_ERR(NGHTTP2_REFUSED_STREAM) == e + 2,
	   "pending cap: counted (limit and REFUSED_STREAM)");
	/* Answering one makes room for one more. */
	hb_stream_respond(S.held[0], 503);
	ok(c && hb_conn_open_stream(c, up_authority, NULL, 0, &e5[5]) == 0,
	   "pending cap: after an answer, another stream opens");
	wait_until(&never, 100);
	ok(S.nheld == 4 && e5[5]->ops->error(e5[5]) == 0,
	   "pending cap: and is held, not refused (held %d)", S.nheld);
	for (int i = 1; i < S.nheld; i++)
		hb_stream_respond(S.held[i], 503);
	S.nheld = 0;
	for (int i = 0; i < 6; i++)
		if (e5[i])
			e5[i]->ops->abort(e5[i]);
	S.mode = SRV_OK;
	SO.max_pending = 0;
	if (c)
		hb_conn_close(c);
	spin(20);
	ok(hb_live_streams() == 0, "pending cap: every stream freed (%zu)",
	   hb_live_streams());
}

/* A request header list over max_header_list: 431, conn fine. */
static void test_header_list(void)
{
	static char big[9000];
	struct hb_header h[2] = {{"x-a", big}, {"x-b", big}};
	uint64_t lim = ST_LIM(HB_LIM_HEADER_LIST);
	struct relay_end *e = NULL;
	struct hb_conn *c;
	bool dummy = false;
	int calls = S.on_connect_calls;

	memset(big, 'v', sizeof(big) - 1);
	c = client_new(NULL, &hb_addr);
	ok(c && hb_conn_open_stream(c, up_authority, h, 2, &e) == 0,
	   "431: stream with 18 KiB of header fields opened");
	for (int i = 0; i < 200 && e && hb_stream_status(e) == 0; i++)
		wait_until(&dummy, 5);
	ok(e && hb_stream_status(e) == 431 && S.on_connect_calls == calls,
	   "431: Request Header Fields Too Large, never reached on_connect "
	   "(%d)",
	   e ? hb_stream_status(e) : -1);
	ok(ST_LIM(HB_LIM_HEADER_LIST) == lim + 1, "431: counted");
	if (e)
		e->ops->abort(e);
	ok(c && hb_conn_get_state(c) == HB_CONN_OPEN,
	   "431: the conn stays open");
	if (c)
		hb_conn_close(c);
	spin(20);
}

/* :status of a response header block (nghttp2's inflater), or -1. */
static int block_status(const uint8_t *in, size_t len)
{
	nghttp2_hd_inflater *inf;
	int status = -1;

	if (nghttp2_hd_inflate_new(&inf))
		return -1;
	while (len) {
		nghttp2_nv nv;
		int fl = 0;
		ssize_t n = nghttp2_hd_inflate_hd2(inf, &nv, &fl, in, len, 1);

		if (n < 0)
			break;
		in += n;
		len -= n;
		if ((fl & NGHTTP2_HD_INFLATE_EMIT) && nv.namelen == 7 &&
		    !memcmp(nv.name, ":status", 7))
			status = atoi((const char *)nv.value);
		if (fl & NGHTTP2_HD_INFLATE_FINAL)
			break;
	}
	nghttp2_hd_inflate_del(inf);
	return status;
}

static bool got_headers(const struct fscan *f)
{
	return f->n[NGHTTP2_HEADERS] > 0;
}

/*
 * A request nghttp2's client cannot send (it lowercases names): three
 * literal fields in one HEADERS frame; expects a 400 that never reached
 * on_connect.
 */
static void raw_fields(const char *n1, const char *v1, const char *n2,
		       const char *v2, const char *n3, const char *v3,
		       const char *what)
{
	const char *f3[] = {n1, v1, n2, v2, n3, v3};
	uint8_t block[256], b[300];
	int calls = S.on_connect_calls;
	size_t bl = 0;
	struct fscan f;
	int fd;

	for (int i = 0; i < 6; i += 2) {
		block[bl++] = 0x00; /* literal, not indexed, new name */
		for (int k = 0; k < 2; k++) {
			size_t l = strlen(f3[i + k]);

			block[bl++] = (uint8_t)l; /* < 127, no Huffman */
			memcpy(block + bl, f3[i + k], l);
			bl += l;
		}
	}
	fscan_init(&f);
	fd = raw_open(true);
	send(fd, b,
	     frame(b, bl, NGHTTP2_HEADERS,
		   NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM, 1,
		   block),
	     MSG_NOSIGNAL);
	fscan_read(fd, &f, 2000, got_headers);
	ok(block_status(f.hdrs, f.hdrs_len) == 400 &&
	       S.on_connect_calls == calls,
	   "400 %s: status %d, never reached on_connect", what,
	   block_status(f.hdrs, f.hdrs_len));
	close(fd);
	spin(10);
}

/* NUL, CR/LF and other bytes no field may carry: 400, never forwarded. */
static void test_field_bytes(void)
{
	nghttp2_nv nul_auth[] = {NV(":method", "CONNECT"),
				 NV(":authority", "127.0.0.1:80\0.evil")};
	nghttp2_nv nul_method[] = {NV(":method", "CONNECT\0GET"),
				   NV(":authority", "127.0.0.1:80")};
	nghttp2_nv crlf[] = {NV(":method", "CONNECT"),
			     NV(":authority", "127.0.0.1:80"),
			     NV("x-a", "b\r\nx-injected: 1")};
	nghttp2_nv ws[] = {NV(":method", "CONNECT"),
			   NV(":authority", " 127.0.0.1:80")};
	nghttp2_nv junk[] = {NV(":method", "CONNECT"),
			     NV(":authority", "\xff\xfe:80")};

	raw_request(nul_auth, 2, "NUL inside :authority");
	raw_request(nul_method, 2, "NUL inside :method");
	raw_request(crlf, 3, "CR LF in a value");
	raw_fields(":method", "CONNECT", ":authority", "127.0.0.1:80",
		   "X-Upper", "b", "uppercase field name");
	raw_fields(":method", "CONNECT", ":authority", "127.0.0.1:80",
		   "x-sp ace", "b", "space in a field name");
	raw_request(ws, 2, "leading space in :authority");
	raw_request(junk, 2, "non-ASCII :authority");
}

/* PINGs beyond the control budget, from a peer that reads: GOAWAY. */
static void test_control_flood(void)
{
	static uint8_t b[200 * 17];
	uint64_t lim = ST_LIM(HB_LIM_CONTROL);
	uint8_t opaque[8] = {0};
	size_t len = 0;
	struct fscan f;
	int fd;

	SO.ctrl_burst = 50;
	SO.ctrl_rate = 10;
	for (int i = 0; i < 40; i++)
		len += frame(b + len, 8, NGHTTP2_PING, 0, 0, opaque);
	fscan_init(&f);
	fd = raw_open(true);
	send(fd, b, len, MSG_NOSIGNAL);
	fscan_read(fd, &f, 300, NULL);
	ok(f.ping_acks == 40 && f.goaway < 0 && !f.eof,
	   "control flood: 40 PINGs within the budget, 40 ACKs (%u)",
	   f.ping_acks);
	len = 0;
	for (int i = 0; i < 200; i++)
		len += frame(b + len, 8, NGHTTP2_PING, 0, 0, opaque);
	send(fd, b, len, MSG_NOSIGNAL);
	fscan_read(fd, &f, 2000, NULL);
	ok(f.goaway == NGHTTP2_ENHANCE_YOUR_CALM && f.eof,
	   "control flood: 200 more -> GOAWAY ENHANCE_YOUR_CALM (%d), closed "
	   "(%u ACKs)",
	   f.goaway, f.ping_acks);
	ok(ST_LIM(HB_LIM_CONTROL) == lim + 1, "control flood: counted");
	close(fd);
	SO.ctrl_burst = SO.ctrl_rate = 0;
	spin(10);
	small_roundtrip("control flood");
}

/*
 * PINGs from a peer that never reads, 64 at a time (never 1000 in one
 * read): once the socket buffers are full, the ACKs pile up in nghttp2
 * until NGHTTP2_ERR_FLOODED; then GOAWAY ENHANCE_YOUR_CALM.
 */
static void test_outbound_flood(void)
{
	static uint8_t b[64 * 17];
	uint64_t lim = ST_LIM(HB_LIM_OUTBOUND);
	uint8_t opaque[8] = {0}, s9[9];
	size_t len = 0, sent = 0;
	int v = 4096, fd;
	struct fscan f;
	uint64_t end;

	SO.ctrl_burst = 1000000; /* only nghttp2's limit in play */
	srv_small_sndbuf = true;
	for (int i = 0; i < 64; i++)
		len += frame(b + len, 8, NGHTTP2_PING, 0, 0, opaque);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
	connect(fd, (struct sockaddr *)&hb_addr, sizeof(hb_addr));
	set_nonblock(fd);
	send(fd, NGHTTP2_CLIENT_MAGIC, NGHTTP2_CLIENT_MAGIC_LEN, MSG_NOSIGNAL);
	send(fd, s9, frame(s9, 0, NGHTTP2_SETTINGS, 0, 0, NULL), MSG_NOSIGNAL);
	/* Send until the server gives up on us (or stops reading). */
	end = loop_now_ms(L) + 5000;
	for (int idle = 0; idle < 50 && loop_now_ms(L) < end &&
			   ST_LIM(HB_LIM_OUTBOUND) == lim;) {
		ssize_t n = send(fd, b, len, MSG_NOSIGNAL);

		if (n > 0) {
			sent += n;
			idle = 0;
		} else {
			idle++;
		}
		spin(1);
	}
	fscan_init(&f);
	fscan_read(fd, &f, 8000, NULL);
	ok(f.ping_acks > 0 && sent > 17 * (f.ping_acks + 1000) &&
	       f.goaway == NGHTTP2_ENHANCE_YOUR_CALM && f.eof,
	   "outbound flood: %zu bytes of PINGs unread-answered -> GOAWAY "
	   "ENHANCE_YOUR_CALM (%d) after %u ACKs, closed",
	   sent, f.goaway, f.ping_acks);
	ok(ST_LIM(HB_LIM_OUTBOUND) == lim + 1, "outbound flood: counted");
	close(fd);
	srv_small_sndbuf = false;
	SO.ctrl_burst = 0;
	spin(10);
	small_roundtrip("outbound flood");
}

/* A header block that never ends, CONTINUATION after CONTINUATION. */
static void test_continuation_flood(void)
{
	/* One literal field per fragment: "\0" new name "a", value "b". */
	static const uint8_t lit[] = {0x00, 1, 'a', 1, 'b'};
	static uint8_t b[64 * 16];
	uint64_t lim = ST_LIM(HB_LIM_CONTINUATIONS);
	size_t len = 0;
	struct fscan f;
	int fd;

	len += frame(b, sizeof(lit), NGHTTP2_HEADERS, 0, 1, lit);
	for (int i = 0; i < 50; i++)
		len += frame(b + len, sizeof(lit), NGHTTP2_CONTINUATION, 0, 1,
			     lit);
	fscan_init(&f);
	fd = raw_open(true);
	send(fd, b, len, MSG_NOSIGNAL);
	fscan_read(fd, &f, 2000, NULL);
	ok(f.goaway == NGHTTP2_ENHANCE_YOUR_CALM && f.eof,
	   "CONTINUATION flood: GOAWAY ENHANCE_YOUR_CALM (%d), closed",
	   f.goaway);
	ok(ST_LIM(HB_LIM_CONTINUATIONS) == lim + 1,
	   "CONTINUATION flood: counted");
	close(fd);
	spin(10);
	small_roundtrip("CONTINUATION flood");
}

/*
 * A CONNECT the client sent as the server began to drain (before the
 * client saw any GOAWAY) is served, not refused: the server's first GOAWAY
 * admits every stream id, the final one follows a second later.
 */
static void test_drain_race(void)
{
	struct tcase tc = {0};
	struct flow f = {0};
	struct hb_conn *c;

	cur = &tc;
	S.mode = SRV_OK;
	c = client_new(NULL, &hb_addr);
	spin(20); /* SETTINGS exchanged, server conn known */
	f.app.tx = blob;
	f.app.tx_len = 3000;
	f.app.shut_after_tx = true;
	f.up.expect = blob;
	f.up.expect_len = 3000;
	f.up.tx = blob + 1;
	f.up.tx_len = 2000;
	f.up.tx_wait_eof = true;
	f.up.shut_after_tx = true;
	f.app.expect = blob + 1;
	f.app.expect_len = 2000;
	closed_flag = false;
	if (c)
		hb_conn_set_observer(c, obs_closed, NULL);
	hb_conn_drain(S.last_conn); /* in the same turn as the CONNECT */
	ok(c && flow_start(&f, 0, c, &tc) == 0, "drain race: setup");
	tc_run(&tc, 5000);
	ok(peer_got_all(&f.up) && peer_got_all(&f.app) &&
	       f.cr.s.result == RELAY_OK,
	   "drain race: the CONNECT crossing the GOAWAY was served (%s)",
	   relay_result_name(f.cr.s.result));
	/* Once closed (the final GOAWAY may come before tc_run returns on a
	 * slow run, e.g. under ASan), c may be freed: do not look at it. */
	ok(closed_flag || hb_conn_get_state(c) >= HB_CONN_DRAINING,
	   "drain race: the client conn is not reused (%s)",
	   closed_flag ? "closed" : hb_conn_state_name(hb_conn_get_state(c)));
	wait_until(&closed_flag, 3000);
	ok(closed_flag && closed_err == 0,
	   "drain race: closed cleanly after the final GOAWAY (%s)",
	   closed_err > 0 ? strerror(closed_err) : "ok");
	spin(10);
	flow_cleanup(&f);
}

static int listen_on(struct sockaddr_in *a)
{
	socklen_t len = sizeof(*a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	a->sin_family = AF_INET;
	a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a->sin_port = 0;
	if (fd < 0 || bind(fd, (struct sockaddr *)a, sizeof(*a)) ||
	    listen(fd, 256) || getsockname(fd, (struct sockaddr *)a, &len))
		return -1;
	return fd;
}

int main(void)
{
	uint64_t x = 0x9e3779b97f4a7c15ull;

	L = loop_new();
	if (getenv("HB_DEBUG"))
		log_threshold = LOG_DEBUG;
	blob = malloc(blob_len);
	if (!L || !blob)
		tap_skip_all("out of memory");
	for (size_t i = 0; i < blob_len; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		blob[i] = (uint8_t)x;
	}
	hb_lfd = listen_on(&hb_addr);
	up_lfd = listen_on(&up_addr);
	app_lfd = listen_on(&app_addr);
	mute_lfd = listen_on(&mute_addr);
	if (hb_lfd < 0 || up_lfd < 0 || app_lfd < 0 || mute_lfd < 0)
		tap_skip_all("cannot listen on 127.0.0.1");
	snprintf(up_authority, sizeof(up_authority), "127.0.0.1:%d",
		 ntohs(up_addr.sin_port));
	set_nonblock(hb_lfd);
	loop_io_init(&S.lio, hb_lfd, srv_accept_cb, NULL);
	loop_io_update(L, &S.lio, EPOLLIN);

	test_roundtrip();
	half_close(true);
	half_close(false);
	reset_case(true);
	reset_case(false);
	test_refused();
	test_malformed();
	test_multiplex();
	test_flow_control();
	test_garbage();
	test_ping();
	test_drain();
	test_drain_race();
	test_names();
	test_settings_deadline();
	test_settings_deadline_client();
	test_header_deadline();
	test_idle_deadline();
	test_pending_cap();
	test_header_list();
	test_field_bytes();
	test_control_flood();
	test_outbound_flood();
	test_continuation_flood();

	spin(50);
	ok(hb_live_conns() == 0 && hb_live_streams() == 0 &&
	       hb_buffered_bytes() == 0,
	   "end: no conn, stream or buffer left (%zu, %zu, %zu)",
	   hb_live_conns(), hb_live_streams(), hb_buffered_bytes());
	loop_io_stop(L, &S.lio);
	close(hb_lfd);
	close(up_lfd);
	close(app_lfd);
	close(mute_lfd);
	loop_free(L);
	bufpool_trim();
	free(blob);
	return tap_done();
}
