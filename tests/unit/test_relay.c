// SPDX-License-Identifier: Apache-2.0
/*
 * Relay over real TCP sockets on 127.0.0.1. Everything runs on one loop in
 * this thread: the test's client and server are loop ios too ("peers"), so the
 * relay's per-thread counters are observable from the test.
 *
 *   client peer ==TCP== down_fd [relay] up_fd ==TCP== server peer
 */
#include "bufpool.h"
#include "loop.h"
#include "relay.h"
#include "tap.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define MiB (1024 * 1024)

static int tun_lfd, srv_lfd;
static struct sockaddr_in tun_addr, srv_addr;
static uint8_t *blob; /* random bytes every case sends slices of */
static size_t blob_len;

struct tcase {
	struct loop *l;
	int pending; /* peers + relays not finished yet; 0 stops the loop */
	bool timed_out;
	size_t max_buffer_bytes;
};

struct peer {
	struct loop_io io;
	struct tcase *tc;
	const char *name;
	/* sending */
	const uint8_t *tx;
	size_t tx_len, tx_off;
	bool tx_wait_eof; /* start sending only after EOF was received */
	bool shut_after_tx; /* shutdown(SHUT_WR) once everything was sent */
	bool close_after_tx; /* close() (no shutdown) once everything was sent */
	bool tx_done;
	/* receiving */
	const uint8_t *expect;
	size_t expect_len, rx_off;
	bool mismatch, eof, paused;
	int err;
	/* hooks */
	struct peer *
		reset_at_rx_done; /* reset this peer once all expected arrived */
	struct relay *relay; /* to sample state at EOF ... */
	const int *relay_done_calls; /* ... while it is still alive */
	int state_at_eof;
	bool finished;
};

static uint8_t scratch[256 * 1024];

static void tc_sample(struct tcase *tc)
{
	if (relay_buffer_bytes() > tc->max_buffer_bytes)
		tc->max_buffer_bytes = relay_buffer_bytes();
}

static void tc_done_one(struct tcase *tc)
{
	if (--tc->pending == 0)
		loop_stop(tc->l);
}

static void peer_finish(struct peer *p, bool reset)
{
	if (p->finished)
		return;
	if (reset) {
		struct linger lg = { 1, 0 };

		setsockopt(p->io.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	loop_io_stop(p->tc->l, &p->io);
	close(p->io.fd);
	p->finished = true;
	tc_done_one(p->tc);
}

static void peer_update(struct peer *p)
{
	uint32_t ev = 0;

	if (p->finished)
		return;
	if (!p->paused && !p->eof)
		ev |= EPOLLIN;
	if (!p->tx_done && !(p->tx_wait_eof && !p->eof) &&
	    (p->tx_off < p->tx_len || p->shut_after_tx || p->close_after_tx))
		ev |= EPOLLOUT;
	if (loop_io_update(p->tc->l, &p->io, ev))
		ok(0, "peer %s: loop_io_update", p->name);
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
			if (p->relay && !*p->relay_done_calls)
				p->state_at_eof =
					(int)relay_get_state(p->relay);
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
	if (p->close_after_tx) {
		p->tx_done = p->eof = true;
		peer_finish(p, false);
	} else if (p->shut_after_tx) {
		if (shutdown(p->io.fd, SHUT_WR) < 0)
			p->err = errno;
		p->tx_done = true;
	}
}

static void peer_cb(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct peer *p = io->arg;

	tc_sample(p->tc);
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

static void peer_init(struct peer *p, struct tcase *tc, const char *name,
		      int fd)
{
	memset(p, 0, sizeof(*p));
	p->tc = tc;
	p->name = name;
	p->state_at_eof = -1;
	loop_io_init(&p->io, fd, peer_cb, p);
	tc->pending++;
}

struct slot {
	struct relay_summary s;
	int done_calls;
	struct tcase *tc;
};

static void relay_done(struct relay *r, const struct relay_summary *s,
		       void *arg)
{
	struct slot *sl = arg;

	sl->s = *s;
	if (sl->done_calls++ == 0)
		tc_done_one(sl->tc);
}

static void set_nonblock(int fd)
{
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/*
 * client <-> down_fd, up_fd <-> srv (unless refused: up_fd connects to a
 * port that is bound but not listening, so the connect gets refused).
 */
static int dead_holder = -1;

static int make_conn(int *client, int *down, int *up, int *srv, bool refused,
		     int small_buf)
{
	struct sockaddr_in dead = { 0 };
	socklen_t alen = sizeof(dead);
	int holder;

	*client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (small_buf)
		setsockopt(*client, SOL_SOCKET, SO_SNDBUF, &small_buf,
			   sizeof(small_buf));
	if (connect(*client, (struct sockaddr *)&tun_addr, sizeof(tun_addr)) <
	    0)
		return -errno;
	*down = accept4(tun_lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	*up = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (*down < 0 || *up < 0)
		return -errno;
	if (small_buf) {
		setsockopt(*down, SOL_SOCKET, SO_RCVBUF, &small_buf,
			   sizeof(small_buf));
		setsockopt(*up, SOL_SOCKET, SO_SNDBUF, &small_buf,
			   sizeof(small_buf));
	}
	if (refused) {
		holder = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		dead.sin_family = AF_INET;
		dead.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		bind(holder, (struct sockaddr *)&dead, sizeof(dead));
		getsockname(holder, (struct sockaddr *)&dead, &alen);
		if (connect(*up, (struct sockaddr *)&dead, sizeof(dead)) < 0 &&
		    errno != EINPROGRESS)
			return -errno;
		dead_holder =
			holder; /* closed by the case once the relay is done */
		*srv = -1;
	} else {
		if (connect(*up, (struct sockaddr *)&srv_addr,
			    sizeof(srv_addr)) < 0 &&
		    errno != EINPROGRESS)
			return -errno;
		/* The loopback handshake completes in the kernel; accept is immediate. */
		*srv = accept4(srv_lfd, NULL, NULL, SOCK_CLOEXEC);
		if (*srv < 0)
			return -errno;
		if (small_buf)
			setsockopt(*srv, SOL_SOCKET, SO_RCVBUF, &small_buf,
				   sizeof(small_buf));
		set_nonblock(*srv);
	}
	set_nonblock(*client);
	return 0;
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int n = 0;

	if (!d)
		return -1;
	while ((de = readdir(d)))
		n += de->d_name[0] != '.';
	closedir(d);
	return n - 1;
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
	loop_timer_arm(tc->l, &wd, timeout_ms);
	if (tc->pending)
		loop_run(tc->l);
	loop_timer_disarm(tc->l, &wd);
}

/* One relay between one client and one server. */
struct one {
	struct tcase tc;
	struct peer c, s;
	struct slot slot;
	struct relay *r;
	bool has_server;
};

/* Byte meters every `one` relay counts into (reset by one_setup()). */
static struct relay_meter meter_a, meter_b;

static int one_setup(struct one *o, bool refused, int small_buf,
		     size_t buf_size)
{
	struct relay_opts opts = { .buf_size = buf_size,
				   .done = relay_done,
				   .arg = &o->slot,
				   .meters = { &meter_a, &meter_b } };
	int cfd, dfd, ufd, sfd, err;

	memset(o, 0, sizeof(*o));
	atomic_store(&meter_a.up, 0);
	atomic_store(&meter_a.down, 0);
	atomic_store(&meter_b.up, 0);
	atomic_store(&meter_b.down, 0);
	o->tc.l = loop_new();
	err = make_conn(&cfd, &dfd, &ufd, &sfd, refused, small_buf);
	if (err)
		return err;
	peer_init(&o->c, &o->tc, "client", cfd);
	if (!refused) {
		peer_init(&o->s, &o->tc, "server", sfd);
		o->has_server = true;
	}
	o->slot.tc = &o->tc;
	o->tc.pending++;
	err = relay_start_tcp(o->tc.l, dfd, ufd, true, &opts, &o->r);
	if (err)
		return err;
	o->c.relay = o->s.relay = o->r;
	o->c.relay_done_calls = o->s.relay_done_calls = &o->slot.done_calls;
	return 0;
}

static void one_go(struct one *o, uint64_t timeout_ms)
{
	peer_update(&o->c);
	if (o->has_server)
		peer_update(&o->s);
	tc_run(&o->tc, timeout_ms);
}

static void one_cleanup(struct one *o)
{
	if (o->c.io.cb)
		peer_finish(&o->c, true);
	if (o->has_server)
		peer_finish(&o->s, true);
	if (o->r && !o->slot.done_calls)
		relay_abort(o->r);
	loop_free(o->tc.l); /* runs the relay's deferred frees */
	if (dead_holder >= 0)
		close(dead_holder);
	dead_holder = -1;
}

static bool peer_got_all(const struct peer *p)
{
	return !p->mismatch && p->rx_off == p->expect_len && p->eof && !p->err;
}

static void test_integrity(void)
{
	const size_t n = 16 * MiB;
	struct one o;

	ok(one_setup(&o, false, 0, 0) == 0, "integrity: setup");
	o.c.tx = blob;
	o.c.tx_len = n;
	o.c.shut_after_tx = true;
	o.s.expect = blob;
	o.s.expect_len = n;
	o.s.tx = blob + 7; /* a different stream the other way */
	o.s.tx_len = n;
	o.s.shut_after_tx = true;
	o.c.expect = blob + 7;
	o.c.expect_len = n;
	one_go(&o, 20000);
	ok(!o.tc.timed_out, "integrity: finished in time");
	ok(peer_got_all(&o.s),
	   "integrity: server got 16 MiB intact + EOF (%zu, mismatch=%d)",
	   o.s.rx_off, o.s.mismatch);
	ok(peer_got_all(&o.c),
	   "integrity: client got 16 MiB intact + EOF (%zu, mismatch=%d)",
	   o.c.rx_off, o.c.mismatch);
	ok(o.slot.done_calls == 1 && o.slot.s.result == RELAY_OK &&
		   o.slot.s.error == 0,
	   "integrity: done once with RELAY_OK (%s)",
	   relay_result_name(o.slot.s.result));
	ok(o.slot.s.bytes_up == n && o.slot.s.bytes_down == n,
	   "integrity: summary bytes up=%llu down=%llu",
	   (unsigned long long)o.slot.s.bytes_up,
	   (unsigned long long)o.slot.s.bytes_down);
	ok(atomic_load(&meter_a.up) == n && atomic_load(&meter_a.down) == n &&
		   atomic_load(&meter_b.up) == n && atomic_load(&meter_b.down) == n,
	   "integrity: both meters counted every byte written (up=%llu down=%llu)",
	   (unsigned long long)atomic_load(&meter_a.up),
	   (unsigned long long)atomic_load(&meter_a.down));
	ok(o.slot.s.ended_ms >= o.slot.s.started_ms, "integrity: times");
	ok(o.tc.max_buffer_bytes <= 2 * 64 * 1024,
	   "integrity: buffer memory bounded by 2 x 64 KiB (peak %zu)",
	   o.tc.max_buffer_bytes);
	ok(relay_live_count() == 0 && relay_buffer_bytes() == 0,
	   "integrity: no live relay or held buffer afterwards");
	one_cleanup(&o);
}

/* first sends and shuts its write side; second replies only after the EOF. */
static void half_close(bool client_first)
{
	const char *what = client_first ? "half-close c->s" : "half-close s->c";
	size_t req = 100 * 1024 + 3, resp = 50 * 1024 + 1;
	struct peer *first, *second;
	struct one o;

	ok(one_setup(&o, false, 0, 0) == 0, "%s: setup", what);
	first = client_first ? &o.c : &o.s;
	second = client_first ? &o.s : &o.c;
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
	one_go(&o, 10000);
	ok(peer_got_all(second), "%s: request and FIN delivered", what);
	ok(second->state_at_eof == RELAY_HALF_CLOSED,
	   "%s: relay half-closed at the FIN (%d)", what, second->state_at_eof);
	ok(peer_got_all(first),
	   "%s: reply after own FIN arrives intact (%zu/%zu, err %d)", what,
	   first->rx_off, resp, first->err);
	ok(o.slot.s.result == RELAY_OK &&
		   o.slot.s.bytes_up == (client_first ? req : resp) &&
		   o.slot.s.bytes_down == (client_first ? resp : req),
	   "%s: RELAY_OK with exact counts", what);
	one_cleanup(&o);
}

/*
 * The request and its FIN are queued before the relay's first read, sized so
 * that the EOF is read in the last round of one pump() call: the FIN must
 * still be passed on although no further event comes for that direction.
 */
static void test_eof_in_last_round(void)
{
	const size_t bufsz = 16 * 1024, n = 7 * bufsz;
	struct one o;

	ok(one_setup(&o, false, 0, bufsz) == 0, "eof in last round: setup");
	ok(send(o.c.io.fd, blob, n, 0) == (ssize_t)n &&
		   shutdown(o.c.io.fd, SHUT_WR) == 0,
	   "eof in last round: %zu bytes + FIN queued before the relay reads", n);
	o.s.expect = blob;
	o.s.expect_len = n;
	o.s.tx_wait_eof = true;
	o.s.shut_after_tx = true;
	o.c.expect_len = 0;
	one_go(&o, 5000);
	ok(!o.tc.timed_out && peer_got_all(&o.s),
	   "eof in last round: server got %zu/%zu bytes and the FIN", o.s.rx_off, n);
	ok(o.slot.done_calls == 1 && o.slot.s.result == RELAY_OK,
	   "eof in last round: relay finished RELAY_OK (%s)",
	   relay_result_name(o.slot.s.result));
	one_cleanup(&o);
}

/* The server writes and closes at once: nothing written before close is lost. */
static void test_write_then_close(void)
{
	const size_t n = 1 * MiB;
	struct one o;

	ok(one_setup(&o, false, 0, 0) == 0, "write+close: setup");
	o.s.tx = blob + 5;
	o.s.tx_len = n;
	o.s.close_after_tx = true;
	o.c.expect = blob + 5;
	o.c.expect_len = n;
	o.c.tx_wait_eof = true;
	o.c.shut_after_tx = true;
	one_go(&o, 10000);
	ok(peer_got_all(&o.c),
	   "write+close: client got every byte and a FIN (%zu, err %d)",
	   o.c.rx_off, o.c.err);
	ok(o.slot.s.result == RELAY_OK, "write+close: RELAY_OK (%s)",
	   relay_result_name(o.slot.s.result));
	one_cleanup(&o);
}

/*
 * The relay closes while bytes are still queued towards a client that is not
 * reading yet: a graceful close must still deliver them (an abort would not).
 */
struct slow {
	struct one o;
	struct loop_timer t;
	int relay_done_before_read;
};

static void slow_unpause(struct loop *l, struct loop_timer *t)
{
	struct slow *sw = t->arg;

	sw->relay_done_before_read = sw->o.slot.done_calls;
	sw->o.c.paused = false;
	peer_update(&sw->o.c);
}

static void test_close_with_queued_bytes(void)
{
	const size_t n = 2 * MiB;
	struct slow sw;

	ok(one_setup(&sw.o, false, 0, 0) == 0, "slow reader: setup");
	sw.o.c.tx = blob;
	sw.o.c.tx_len = 100;
	sw.o.c.shut_after_tx = true;
	sw.o.c.paused = true;
	sw.o.c.expect = blob + 11;
	sw.o.c.expect_len = n;
	sw.o.s.expect = blob;
	sw.o.s.expect_len = 100;
	sw.o.s.tx = blob + 11;
	sw.o.s.tx_len = n;
	sw.o.s.tx_wait_eof = true;
	sw.o.s.close_after_tx = true;
	loop_timer_init(&sw.t, slow_unpause, &sw);
	loop_timer_arm(sw.o.tc.l, &sw.t, 300);
	one_go(&sw.o, 10000);
	ok(sw.relay_done_before_read == 1 && sw.o.slot.s.result == RELAY_OK,
	   "slow reader: relay closed (OK) before the client read anything");
	ok(peer_got_all(&sw.o.c),
	   "slow reader: client still got all %zu bytes and a FIN (%zu)", n,
	   sw.o.c.rx_off);
	one_cleanup(&sw.o);
}

static void reset_case(bool client_resets)
{
	const char *what = client_resets ? "RST c->s" : "RST s->c";
	struct peer *resetter, *victim;
	struct one o;

	ok(one_setup(&o, false, 0, 0) == 0, "%s: setup", what);
	resetter = client_resets ? &o.c : &o.s;
	victim = client_resets ? &o.s : &o.c;
	/* resetter sends 10 KiB; once the victim has it all, resetter RSTs. */
	resetter->tx = blob;
	resetter->tx_len = 10 * 1024;
	victim->expect = blob;
	victim->expect_len = 10 * 1024;
	victim->reset_at_rx_done = resetter;
	one_go(&o, 10000);
	ok(victim->rx_off == 10 * 1024 && !victim->mismatch,
	   "%s: data before the reset arrived", what);
	ok(victim->err == ECONNRESET && !victim->eof,
	   "%s: other side sees ECONNRESET (%s)", what, strerror(victim->err));
	ok(o.slot.s.result == (client_resets ? RELAY_DOWNSTREAM_RESET :
					       RELAY_UPSTREAM_RESET) &&
		   o.slot.s.error == ECONNRESET,
	   "%s: result %s, error %s", what, relay_result_name(o.slot.s.result),
	   strerror(o.slot.s.error));
	one_cleanup(&o);
}

static void test_connect_refused(void)
{
	struct one o;

	ok(one_setup(&o, true, 0, 0) == 0, "refused: setup");
	/* The client talks first; none of it may be read before the connect. */
	o.c.tx = blob;
	o.c.tx_len = 1000;
	one_go(&o, 10000);
	ok(o.slot.done_calls == 1 && o.slot.s.result == RELAY_CONNECT_FAILED,
	   "refused: RELAY_CONNECT_FAILED (%s)",
	   relay_result_name(o.slot.s.result));
	ok(o.slot.s.error == ECONNREFUSED, "refused: error ECONNREFUSED (%s)",
	   strerror(o.slot.s.error));
	ok(o.c.err == ECONNRESET, "refused: client sees a reset (%s)",
	   strerror(o.c.err));
	ok(o.slot.s.bytes_up == 0, "refused: nothing relayed before connect");
	one_cleanup(&o);
}

/* ---- backpressure ---- */

struct bp {
	struct one o;
	struct loop_timer tick;
	size_t last_tx_off;
	int still_ticks;
	size_t stalled_at, buffer_at_stall, buf_size;
};

static void bp_tick(struct loop *l, struct loop_timer *t)
{
	struct bp *b = t->arg;

	tc_sample(&b->o.tc);
	if (b->o.s.paused) {
		/* The client stalled for 200 ms: backpressure reached it. */
		b->still_ticks = b->o.c.tx_off == b->last_tx_off ?
					 b->still_ticks + 1 :
					 0;
		b->last_tx_off = b->o.c.tx_off;
		if (b->still_ticks == 20) {
			b->stalled_at = b->o.c.tx_off;
			b->buffer_at_stall = relay_buffer_bytes();
			b->o.s.paused = false;
			peer_update(&b->o.s);
		}
	}
	if (b->o.tc.pending)
		loop_timer_arm(l, t, 10);
}

static void test_backpressure(void)
{
	const size_t n = 8 * MiB, bs = 16 * 1024;
	struct bp b = { .buf_size = bs };

	ok(one_setup(&b.o, false, 256 * 1024, bs) == 0, "backpressure: setup");
	b.o.c.tx = blob;
	b.o.c.tx_len = n;
	b.o.c.shut_after_tx = true;
	b.o.s.expect = blob;
	b.o.s.expect_len = n;
	b.o.s.shut_after_tx = true; /* nothing to send; FIN right away */
	b.o.s.paused = true;
	loop_timer_init(&b.tick, bp_tick, &b);
	loop_timer_arm(b.o.tc.l, &b.tick, 10);
	one_go(&b.o, 20000);
	loop_timer_disarm(b.o.tc.l, &b.tick);
	ok(b.stalled_at > 0 && b.stalled_at < n,
	   "backpressure: client blocked while server did not read (%zu of %zu sent)",
	   b.stalled_at, n);
	ok(b.buffer_at_stall <= 2 * bs && b.o.tc.max_buffer_bytes <= 2 * bs,
	   "backpressure: relay_buffer_bytes <= 2 x buf_size (at stall %zu, peak %zu)",
	   b.buffer_at_stall, b.o.tc.max_buffer_bytes);
	ok(peer_got_all(&b.o.s),
	   "backpressure: reading resumed, all %zu bytes intact (%zu)", n,
	   b.o.s.rx_off);
	ok(b.o.slot.s.result == RELAY_OK && b.o.slot.s.bytes_up == n,
	   "backpressure: RELAY_OK");
	one_cleanup(&b.o);
}

/* ---- idle relay holds no buffer ---- */

struct idle {
	struct one o;
	struct loop_timer t;
	size_t live, bufs;
	int state;
};

static void idle_check(struct loop *l, struct loop_timer *t)
{
	struct idle *i = t->arg;

	if (i->o.s.rx_off < i->o.s.expect_len ||
	    i->o.c.rx_off < i->o.c.expect_len) {
		loop_timer_arm(l, t, 10);
		return;
	}
	/* Both directions drained; the relay is idle and open. */
	i->live = relay_live_count();
	i->bufs = relay_buffer_bytes();
	i->state = relay_get_state(i->o.r);
	i->o.c.shut_after_tx = true;
	i->o.s.shut_after_tx = true;
	peer_update(&i->o.c);
	peer_update(&i->o.s);
}

static void test_idle_no_buffer(void)
{
	struct idle i;

	ok(one_setup(&i.o, false, 0, 0) == 0, "idle: setup");
	i.o.c.tx = blob;
	i.o.c.tx_len = 300 * 1024;
	i.o.s.expect = blob;
	i.o.s.expect_len = 300 * 1024;
	i.o.s.tx = blob + 9;
	i.o.s.tx_len = 200 * 1024;
	i.o.c.expect = blob + 9;
	i.o.c.expect_len = 200 * 1024;
	loop_timer_init(&i.t, idle_check, &i);
	loop_timer_arm(i.o.tc.l, &i.t, 10);
	one_go(&i.o, 10000);
	ok(i.live == 1 && i.state == RELAY_OPEN,
	   "idle: relay alive and open after traffic");
	ok(i.bufs == 0, "idle: drained relay holds no buffer (%zu bytes)",
	   i.bufs);
	ok(bufpool_idle_bytes() > 0 && bufpool_idle_bytes() <= BUFPOOL_MAX_IDLE,
	   "idle: drained buffers cached in the bounded pool (%zu)",
	   bufpool_idle_bytes());
	ok(i.o.slot.s.result == RELAY_OK && peer_got_all(&i.o.s) &&
		   peer_got_all(&i.o.c),
	   "idle: then closes cleanly with all bytes");
	one_cleanup(&i.o);
	bufpool_trim();
	ok(bufpool_idle_bytes() == 0, "idle: bufpool_trim empties the pool");
}

static void test_abort(void)
{
	struct one o;

	ok(one_setup(&o, false, 0, 0) == 0, "abort: setup");
	/* Nothing to do: run one short while, then abort the open relay. */
	tc_run(&o.tc, 50);
	ok(relay_get_state(o.r) == RELAY_OPEN, "abort: relay open");
	relay_abort(o.r);
	relay_abort(o.r); /* idempotent */
	o.tc.timed_out = false;
	one_go(&o, 5000);
	ok(o.slot.done_calls == 1 && o.slot.s.result == RELAY_ABORTED,
	   "abort: done once with RELAY_ABORTED");
	ok(o.c.err == ECONNRESET && o.s.err == ECONNRESET,
	   "abort: both ends see a reset (%s, %s)", strerror(o.c.err),
	   strerror(o.s.err));
	ok(relay_live_count() == 0, "abort: no relay left");
	one_cleanup(&o);
}


/* ---- scripted ends: what the relay asks of an end, call by call ---- */

/*
 * A source that hands out queued chunks (one per read, cut to the room the
 * relay offers) and a sink that takes everything; both count their calls.
 * The lending variants (peek_ops/gather_ops) lend a byte buffer and take
 * a bounded amount per writev, recording what arrived.
 */
struct mock_end {
	struct relay_end base;
	size_t chunks[8];
	int nchunks, next;
	size_t chunk_off;
	int reads, eagains;
	size_t written;
	bool released;
	/* lending source */
	const uint8_t *data;
	size_t data_len, data_off, piece;
	bool eof_after;
	int peeks;
	/* gathering sink */
	uint8_t *got;
	size_t got_len, take; /* take: bytes accepted per writev, 0: full */
	int writevs;
	bool shut;
	/* last interest the relay set */
	bool want_rd, want_wr;
};

static struct mock_end *mock_of(struct relay_end *e)
{
	return (struct mock_end *)e;
}

static ssize_t mock_read(struct relay_end *e, void *buf, size_t len)
{
	struct mock_end *m = mock_of(e);
	size_t n;

	m->reads++;
	if (m->next == m->nchunks) {
		m->eagains++;
		return -EAGAIN;
	}
	n = m->chunks[m->next] - m->chunk_off;
	if (n > len)
		n = len;
	memset(buf, 'm', n);
	m->chunk_off += n;
	if (m->chunk_off == m->chunks[m->next]) {
		m->next++;
		m->chunk_off = 0;
	}
	return n;
}

static ssize_t mock_write(struct relay_end *e, const void *buf, size_t len)
{
	mock_of(e)->written += len;
	return len;
}

static int mock_zero(struct relay_end *e)
{
	return 0;
}

static int mock_shut(struct relay_end *e)
{
	mock_of(e)->shut = true;
	return 0;
}

static int mock_interest(struct relay_end *e, bool rd, bool wr)
{
	mock_of(e)->want_rd = rd;
	mock_of(e)->want_wr = wr;
	return 0;
}

static int mock_peek(struct relay_end *e, struct iovec *iov, int max)
{
	struct mock_end *m = mock_of(e);
	size_t off = m->data_off;
	int n = 0;

	m->peeks++;
	while (off < m->data_len && n < max) {
		size_t k = m->data_len - off < m->piece ? m->data_len - off
							: m->piece;

		iov[n++] = (struct iovec){ (void *)(m->data + off), k };
		off += k;
	}
	if (n)
		return n;
	return m->eof_after ? 0 : -EAGAIN;
}

static void mock_consume(struct relay_end *e, size_t n)
{
	mock_of(e)->data_off += n;
}

static ssize_t mock_writev(struct relay_end *e, const struct iovec *iov,
			   int cnt)
{
	struct mock_end *m = mock_of(e);
	size_t done = 0;

	m->writevs++;
	if (!m->take)
		return -EAGAIN;
	for (int i = 0; i < cnt && done < m->take; i++) {
		size_t k = iov[i].iov_len < m->take - done ? iov[i].iov_len
							   : m->take - done;

		memcpy(m->got + m->got_len, iov[i].iov_base, k);
		m->got_len += k;
		done += k;
	}
	return done;
}

static void mock_release(struct relay_end *e)
{
	mock_of(e)->released = true;
}

/* What every scripted end has; the tables below add their own ops. */
#define MOCK_OPS                                                               \
	.read = mock_read, .write = mock_write, .error = mock_zero,            \
	.set_interest = mock_interest, .close = mock_release,                  \
	.abort = mock_release

static const struct relay_end_ops mock_ops = {
	MOCK_OPS,
	.shutdown_write = mock_zero,
};

static const struct relay_end_ops peek_ops = {
	MOCK_OPS,
	.shutdown_write = mock_shut,
	.peek = mock_peek,
	.consume = mock_consume,
};

static const struct relay_end_ops gather_ops = {
	MOCK_OPS,
	.shutdown_write = mock_shut,
	.writev = mock_writev,
};

static void mock_push(struct mock_end *m, size_t len)
{
	m->chunks[m->nchunks++] = len;
}

/* A short read means "drained": no read that would only say EAGAIN. */
static void test_short_read(void)
{
	struct mock_end src = { .base.ops = &mock_ops };
	struct mock_end dst = { .base.ops = &mock_ops };
	struct relay_opts opts = { .buf_size = 4096 };
	struct loop *l = loop_new();
	struct relay *r;

	ok(relay_start(l, &src.base, &dst.base, false, &opts, &r) == 0,
	   "short read: relay on scripted ends");
	mock_push(&src, 100);
	relay_end_notify(&src.base, RELAY_END_READABLE);
	ok(src.reads == 1 && src.eagains == 0 && dst.written == 100,
	   "short read: 100 of 4096 bytes in one read, no EAGAIN read "
	   "(%d reads, %d EAGAIN)", src.reads, src.eagains);
	mock_push(&src, 4096);
	relay_end_notify(&src.base, RELAY_END_READABLE);
	ok(src.reads == 3 && src.eagains == 1 && dst.written == 4196,
	   "short read: a read that filled the buffer is followed by "
	   "another (%d reads, %d EAGAIN)", src.reads, src.eagains);
	relay_abort(r);
	ok(src.released && dst.released, "short read: both ends released");
	loop_free(l);
}

/*
 * A lending source and a gathering sink: bytes go from the source's buffer
 * to the sink without the relay's buffer; what the sink refuses stays in
 * the source, which is not asked again until the sink is writable.
 */
static void test_lend(void)
{
	enum { LEN = 10000 };
	struct mock_end src = { .base.ops = &peek_ops, .data = blob,
				.data_len = LEN, .piece = 1000 };
	struct mock_end dst = { .base.ops = &gather_ops, .take = 3000 };
	struct relay_opts opts = { .buf_size = 4096 };
	struct loop *l = loop_new();
	struct relay *r;
	int rounds = 0, peeks;

	dst.got = malloc(LEN);
	ok(relay_start(l, &src.base, &dst.base, false, &opts, &r) == 0 &&
		   src.want_rd,
	   "lend: relay on a lending source and a gathering sink");
	relay_end_notify(&src.base, RELAY_END_READABLE);
	ok(dst.got_len == 3000 && src.data_off == 3000 &&
		   relay_buffer_bytes() == 0,
	   "lend: a short writev consumes only what the sink took (%zu, %zu), "
	   "no relay buffer (%zu)",
	   dst.got_len, src.data_off, relay_buffer_bytes());
	ok(!src.want_rd && dst.want_wr,
	   "lend: while the sink is full the source is not read, the sink "
	   "is watched");
	peeks = src.peeks;
	relay_end_notify(&src.base, RELAY_END_READABLE);
	ok(src.peeks == peeks && dst.got_len == 3000,
	   "lend: a stray READABLE does not retry the full sink");
	dst.take = 0;
	relay_end_notify(&dst.base, RELAY_END_WRITABLE);
	ok(dst.got_len == 3000 && !src.want_rd && dst.want_wr,
	   "lend: EAGAIN from the sink keeps the bytes in the source");
	dst.take = 3000;
	src.eof_after = true;
	while (!dst.shut && rounds++ < 10)
		relay_end_notify(&dst.base, RELAY_END_WRITABLE);
	ok(dst.got_len == LEN && !memcmp(dst.got, blob, LEN),
	   "lend: all %d bytes arrive in order (%zu)", LEN, dst.got_len);
	ok(dst.shut && src.data_off == LEN,
	   "lend: EOF from the drained source becomes the sink's FIN");
	relay_abort(r);
	loop_free(l);
	free(dst.got);
}

/* ---- many relays on one loop ---- */

static void test_many(void)
{
	enum { N = 200 };
	const size_t n = 128 * 1024;
	static struct peer c[N], s[N];
	static struct slot sl[N];
	struct tcase tc = { .l = loop_new() };
	int setup_failed = 0, bad = 0, not_ok = 0, once = 0;
	size_t peak_live = 0;

	for (int i = 0; i < N; i++) {
		struct relay_opts opts = { .done = relay_done, .arg = &sl[i] };
		int cfd, dfd, ufd, sfd;

		memset(&sl[i], 0, sizeof(sl[i]));
		if (make_conn(&cfd, &dfd, &ufd, &sfd, false, 0)) {
			setup_failed++;
			break;
		}
		peer_init(&c[i], &tc, "client", cfd);
		peer_init(&s[i], &tc, "server", sfd);
		c[i].tx = blob + i;
		c[i].tx_len = n;
		c[i].shut_after_tx = true;
		s[i].expect = blob + i;
		s[i].expect_len = n;
		s[i].tx = blob + 1000 + i;
		s[i].tx_len = n;
		s[i].shut_after_tx = true;
		c[i].expect = blob + 1000 + i;
		c[i].expect_len = n;
		sl[i].tc = &tc;
		tc.pending++;
		if (relay_start_tcp(tc.l, dfd, ufd, true, &opts, NULL))
			setup_failed++;
		peer_update(&c[i]);
		peer_update(&s[i]);
	}
	peak_live = relay_live_count();
	ok(!setup_failed && peak_live == N,
	   "many: %d relays started on one loop (%zu live)", N, peak_live);
	tc_run(&tc, 20000);
	for (int i = 0; i < N; i++) {
		bad += !peer_got_all(&c[i]) || !peer_got_all(&s[i]);
		not_ok += sl[i].s.result != RELAY_OK || sl[i].s.bytes_up != n ||
			  sl[i].s.bytes_down != n;
		once += sl[i].done_calls == 1;
	}
	ok(!tc.timed_out, "many: all finished in time");
	ok(bad == 0, "many: every stream intact both ways (%d bad)", bad);
	ok(not_ok == 0 && once == N,
	   "many: %d summaries RELAY_OK with exact counts (%d not)", once,
	   not_ok);
	ok(relay_live_count() == 0 && relay_buffer_bytes() == 0,
	   "many: no live relay or held buffer afterwards");
	for (int i = 0; i < N; i++) {
		if (c[i].io.cb)
			peer_finish(&c[i], true);
		if (s[i].io.cb)
			peer_finish(&s[i], true);
	}
	loop_free(tc.l);
}

static int listen_on(struct sockaddr_in *a)
{
	socklen_t alen = sizeof(*a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	memset(a, 0, sizeof(*a));
	a->sin_family = AF_INET;
	a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)a, sizeof(*a)) < 0 ||
	    listen(fd, 1024) < 0 ||
	    getsockname(fd, (struct sockaddr *)a, &alen) < 0)
		return -1;
	return fd;
}

int main(void)
{
	struct rlimit rl;
	int fds0;

	/* 200 relays need 800 fds. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 2048) {
		rl.rlim_cur = rl.rlim_max < 2048 ? rl.rlim_max : 2048;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	fds0 = count_fds();
	tun_lfd = listen_on(&tun_addr);
	srv_lfd = listen_on(&srv_addr);
	if (tun_lfd < 0 || srv_lfd < 0)
		tap_skip_all("cannot listen on 127.0.0.1");
	blob_len = 16 * MiB + 4096;
	blob = malloc(blob_len);
	srand(42);
	for (size_t i = 0; i < blob_len; i++)
		blob[i] = (uint8_t)(rand() >> 7);

	test_integrity();
	half_close(true);
	half_close(false);
	test_eof_in_last_round();
	test_write_then_close();
	test_close_with_queued_bytes();
	reset_case(true);
	reset_case(false);
	test_connect_refused();
	test_backpressure();
	test_idle_no_buffer();
	test_abort();
	test_short_read();
	test_lend();
	test_many();

	close(tun_lfd);
	close(srv_lfd);
	free(blob);
	bufpool_trim();
	ok(count_fds() == fds0, "no fd leaked (%d -> %d)", fds0, count_fds());
	return tap_done();
}
