// SPDX-License-Identifier: Apache-2.0
/*
 * Connection pool over real HBONE conns on 127.0.0.1 (plain-TCP transport),
 * client and server on one loop in this thread. The test plays the pool's
 * owner: its connect callback only records the request; the test completes
 * it later (TCP connect + hb_conn_new_client + pool_conn_ready) or fails it,
 * like a real TCP+TLS connect that takes a few turns.
 */
#include "hbone.h"
#include "loop.h"
#include "pool.h"
#include "relay.h"
#include "tap.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static struct loop *L;
static int hb_lfd;
static struct sockaddr_in hb_addr;
static struct loop_io lio;
static struct hb_conn *srv_last;
static int srv_accepted;

/* ---- loop helpers ---- */

/* Run the loop for ms (lets closes/frees settle). */
static void spin(uint64_t ms)
{
	loop_spin(L, ms);
}

/* ---- server: refuses every CONNECT (the pool only needs streams) ---- */

static void on_connect(void *arg, struct hb_conn *c, struct hb_stream_req *req)
{
	hb_stream_respond(req, 503);
}

static const struct hb_server_cbs srv_cbs = {.on_connect = on_connect};

static void accept_cb(struct loop *l, struct loop_io *io, uint32_t ev)
{
	struct hb_transport *t;
	int fd = accept4(hb_lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (fd < 0)
		return;
	if (hb_transport_tcp_new(L, fd, &t)) {
		close(fd);
		return;
	}
	if (!hb_conn_new_server(L, t, NULL, &srv_cbs, &srv_last))
		srv_accepted++;
}

/* ---- the owner ---- */

struct owner {
	int connects;
	const struct pool_key *pending; /* pool-owned until answered */
	char last_ids[128];
};

static struct owner O;

static int owner_connect(void *arg, struct pool *p, const struct pool_key *k)
{
	O.connects++;
	O.pending = k;
	O.last_ids[0] = '\0';
	for (size_t i = 0; i < k->n_dst_identities; i++) {
		strncat(O.last_ids, k->dst_identities[i],
			sizeof(O.last_ids) - strlen(O.last_ids) - 2);
		strcat(O.last_ids, ",");
	}
	return 0;
}

static struct hb_conn *client_conn(void)
{
	struct hb_transport *t;
	struct hb_conn *c;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (connect(fd, (struct sockaddr *)&hb_addr, sizeof(hb_addr))) {
		close(fd);
		return NULL;
	}
	fcntl(fd, F_SETFL, O_NONBLOCK);
	if (hb_transport_tcp_new(L, fd, &t)) {
		close(fd);
		return NULL;
	}
	if (hb_conn_new_client(L, t, NULL, &c))
		return NULL;
	return c;
}

/* Finish the connect in flight: the owner's TCP (+TLS) is "up". */
static struct hb_conn *complete(struct pool *p)
{
	const struct pool_key *k = O.pending;
	struct hb_conn *c = client_conn();

	O.pending = NULL;
	if (!c || !k)
		return NULL;
	return pool_conn_ready(p, k, c) ? NULL : c;
}

/* ---- acquirers: each opens a stream in its callback, as documented ---- */

#define MAX_ENDS 256
static struct relay_end *ends[MAX_ENDS];
static int nends;

struct acq {
	int calls;
	struct hb_conn *c;
	int err;
	bool open_stream;
};

static void open_on(struct hb_conn *c)
{
	struct relay_end *e;

	if (nends < MAX_ENDS &&
	    !hb_conn_open_stream(c, "127.0.0.1:80", NULL, 0, &e))
		ends[nends++] = e;
}

static void ready_cb(void *arg, struct hb_conn *c, int err)
{
	struct acq *a = arg;

	a->calls++;
	a->c = c;
	a->err = err;
	if (c && a->open_stream)
		open_on(c);
}

static void ends_release(void)
{
	for (int i = 0; i < nends; i++)
		ends[i]->ops->abort(ends[i]);
	nends = 0;
}

static const char *const ids_ba[] = {"spiffe://td/ns/b/sa/b",
				     "spiffe://td/ns/a/sa/a"};
static const char *const ids_aba[] = {
    "spiffe://td/ns/a/sa/a", "spiffe://td/ns/b/sa/b", "spiffe://td/ns/a/sa/a"};

static struct sockaddr_in dst_addr, src1, src2;

static void key_init(struct pool_key *k, const char *const *ids, size_t n,
		     const struct sockaddr_in *src)
{
	k->src_identity = "spiffe://td/ns/client/sa/client";
	k->dst_identities = ids;
	k->n_dst_identities = n;
	k->dst = (const struct sockaddr *)&dst_addr;
	k->src = (const struct sockaddr *)src;
}

static struct pool *pool_make(uint64_t idle_ms)
{
	struct pool_opts o = {.connect = owner_connect, .idle_ms = idle_ms};

	memset(&O, 0, sizeof(O));
	return pool_new(L, &o);
}

static void test_single_flight(void)
{
	struct pool *p = pool_make(0);
	struct acq a[10];
	struct pool_key k;
	struct pool_stats st;
	struct hb_conn *c, *got;
	struct pool_waiter *w;
	int queued = 0, same = 0;

	memset(a, 0, sizeof(a));
	for (int i = 0; i < 10; i++) {
		/* Same set of identities in another order is the same key. */
		key_init(&k, i % 2 ? ids_ba : ids_aba, i % 2 ? 2 : 3, &src1);
		a[i].open_stream = true;
		queued += pool_acquire(p, &k, ready_cb, &a[i], &got, &w) ==
			      -EINPROGRESS &&
			  w && !got;
	}
	pool_get_stats(p, &st);
	ok(queued == 10 && O.connects == 1 && st.waiting == 10,
	   "single-flight: 10 acquires queued, 1 connect (%d, %d)", queued,
	   O.connects);
	ok(!strcmp(O.last_ids, "spiffe://td/ns/a/sa/a,spiffe://td/ns/b/sa/b,"),
	   "single-flight: connect sees the sorted, de-duplicated ids (%s)",
	   O.last_ids);
	c = complete(p);
	for (int i = 0; i < 10; i++)
		same += a[i].calls == 1 && a[i].c == c && !a[i].err;
	pool_get_stats(p, &st);
	ok(c && same == 10, "single-flight: all 10 answered with the new conn");
	ok(st.created == 1 && st.live == 1 && st.waiting == 0 &&
	       hb_conn_live_streams(c) == 10,
	   "single-flight: created 1, live 1, 10 streams (%zu)",
	   c ? hb_conn_live_streams(c) : 0);

	/* Another source IP is another key: its own connect; failure. */
	{
		struct acq f = {0};

		key_init(&k, ids_ba, 2, &src2);
		ok(pool_acquire(p, &k, ready_cb, &f, &got, &w) ==
			   -EINPROGRESS &&
		       O.connects == 2,
		   "failure: other source IP -> a second connect");
		pool_conn_failed(p, O.pending, ECONNREFUSED);
		O.pending = NULL;
		ok(f.calls == 1 && !f.c && f.err == ECONNREFUSED,
		   "failure: waiter told ECONNREFUSED");
	}
	/* Cancelled waiter: no callback, the conn is still pooled. */
	{
		struct acq x = {0};

		key_init(&k, ids_ba, 2, &src2);
		ok(pool_acquire(p, &k, ready_cb, &x, &got, &w) == -EINPROGRESS,
		   "cancel: queued");
		pool_cancel(p, w);
		complete(p);
		pool_get_stats(p, &st);
		ok(x.calls == 0 && st.live == 2,
		   "cancel: no callback, conn pooled (live %zu)", st.live);
	}
	ends_release();
	pool_free(p);
	spin(30);
	ok(hb_live_conns() == 0 && hb_live_streams() == 0,
	   "single-flight: pool_free closed everything (%zu, %zu)",
	   hb_live_conns(), hb_live_streams());
}

static void test_cap(void)
{
	struct pool *p = pool_make(0);
	struct acq a = {.open_stream = true}, b = {.open_stream = true};
	struct hb_conn *first = NULL, *got;
	struct pool_waiter *w;
	struct pool_key k;
	struct pool_stats st;
	int immediate = 0, rc;

	key_init(&k, ids_ba, 2, NULL);
	pool_acquire(p, &k, ready_cb, &a, &got, &w);
	first = complete(p);
	for (int i = 1; i < 100; i++) {
		if (pool_acquire(p, &k, ready_cb, &a, &got, &w) == 0 &&
		    got == first) {
			immediate++;
			open_on(got);
		}
	}
	ok(first && immediate == 99 && hb_conn_live_streams(first) == 100,
	   "cap: 99 more acquires served at once by the same conn (%d, %zu "
	   "streams)",
	   immediate, first ? hb_conn_live_streams(first) : 0);
	rc = pool_acquire(p, &k, ready_cb, &b, &got, &w);
	ok(rc == -EINPROGRESS && O.connects == 2,
	   "cap: acquire at 100 streams starts a second connection (%d)",
	   O.connects);
	got = complete(p);
	pool_get_stats(p, &st);
	ok(b.calls == 1 && b.c == got && got != first && st.live == 2,
	   "cap: the waiter got the new conn (live %zu)", st.live);
	ends_release();
	spin(50);
	ok(hb_conn_live_streams(first) == 0,
	   "cap: streams ended (aborted ends after 503)");
	ok(pool_acquire(p, &k, ready_cb, &b, &got, &w) == 0 && got,
	   "cap: room again -> immediate");
	pool_free(p);
	spin(30);
}

static void test_idle(void)
{
	struct pool *p = pool_make(200);
	struct acq a = {.open_stream = true};
	struct hb_conn *c, *got;
	struct pool_waiter *w;
	struct pool_key k;
	struct pool_stats st;
	size_t conns;

	key_init(&k, ids_ba, 2, NULL);
	conns = hb_live_conns();
	pool_acquire(p, &k, ready_cb, &a, &got, &w);
	c = complete(p);
	spin(100);
	ends_release(); /* the stream ends; the idle clock starts */
	spin(100);
	pool_get_stats(p, &st);
	ok(c && st.live == 1 && st.idle_released == 0,
	   "idle: not released before the idle time");
	spin(400);
	pool_get_stats(p, &st);
	ok(st.live == 0 && st.idle_released == 1,
	   "idle: released after 200 ms without streams (%llu)",
	   (unsigned long long)st.idle_released);
	ok(hb_live_conns() == conns,
	   "idle: drained with GOAWAY, both ends of the conn closed (%zu)",
	   hb_live_conns());
	ok(pool_acquire(p, &k, ready_cb, &a, &got, &w) == -EINPROGRESS &&
	       O.connects == 2,
	   "idle: next acquire connects again");
	complete(p);
	ends_release();
	pool_free(p);
	spin(30);
}

static void test_goaway(void)
{
	struct pool *p = pool_make(0);
	struct acq a = {.open_stream = false};
	struct hb_conn *c1, *c2, *got;
	struct pool_waiter *w;
	struct pool_key k;
	struct pool_stats st;

	key_init(&k, ids_ba, 2, NULL);
	pool_acquire(p, &k, ready_cb, &a, &got, &w);
	c1 = complete(p);
	spin(30);
	ok(c1 && pool_acquire(p, &k, ready_cb, &a, &got, &w) == 0 && got == c1,
	   "goaway: conn reused while healthy");
	hb_conn_drain(srv_last); /* the server sends GOAWAY */
	spin(30);
	pool_get_stats(p, &st);
	ok(st.live == 0, "goaway: the pool forgot the GOAWAY'd conn");
	ok(pool_acquire(p, &k, ready_cb, &a, &got, &w) == -EINPROGRESS &&
	       O.connects == 2,
	   "goaway: next acquire creates a new connection");
	c2 = complete(p);
	pool_get_stats(p, &st);
	/* (c1 is freed by now; c2 may even reuse its address.) */
	ok(c2 && a.c == c2 && st.created == 2 && st.live == 1,
	   "goaway: waiter got the new conn (created %llu)",
	   (unsigned long long)st.created);

	/* A conn that died is never handed out again either. */
	hb_conn_close(c2);
	spin(10);
	ok(pool_acquire(p, &k, ready_cb, &a, &got, &w) == -EINPROGRESS &&
	       O.connects == 3,
	   "dead: a closed conn is replaced, not reused");
	complete(p);
	pool_free(p);
	spin(30);
}

static void test_free_waiters(void)
{
	struct pool *p = pool_make(0);
	struct acq a = {0};
	struct hb_conn *got;
	struct pool_waiter *w;
	struct pool_key k;

	key_init(&k, ids_ba, 2, NULL);
	pool_acquire(p, &k, ready_cb, &a, &got, &w);
	pool_free(p); /* the owner abandons its connect first (O.pending) */
	ok(a.calls == 1 && a.err == ECANCELED,
	   "free: queued acquire answered ECANCELED");
}

static int immediate_fail(void *arg, struct pool *p, const struct pool_key *k)
{
	return -ENETUNREACH;
}

static void test_immediate_failure(void)
{
	struct pool_opts o = {.connect = immediate_fail};
	struct pool *p = pool_new(L, &o);
	struct acq a = {0};
	struct hb_conn *got;
	struct pool_waiter *w;
	struct pool_key k;

	key_init(&k, ids_ba, 2, NULL);
	ok(pool_acquire(p, &k, ready_cb, &a, &got, &w) == -ENETUNREACH &&
	       !got && !w && a.calls == 0,
	   "immediate connect failure is returned, cb not called");
	pool_free(p);
}

int main(void)
{
	socklen_t len = sizeof(hb_addr);

	L = loop_new();
	hb_lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	hb_addr.sin_family = AF_INET;
	hb_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (!L || hb_lfd < 0 ||
	    bind(hb_lfd, (struct sockaddr *)&hb_addr, sizeof(hb_addr)) ||
	    listen(hb_lfd, 64) ||
	    getsockname(hb_lfd, (struct sockaddr *)&hb_addr, &len))
		tap_skip_all("cannot listen on 127.0.0.1");
	loop_io_init(&lio, hb_lfd, accept_cb, NULL);
	loop_io_update(L, &lio, EPOLLIN);
	dst_addr.sin_family = AF_INET;
	dst_addr.sin_port = htons(15008);
	inet_pton(AF_INET, "198.18.1.10", &dst_addr.sin_addr);
	src1.sin_family = src2.sin_family = AF_INET;
	inet_pton(AF_INET, "198.18.0.10", &src1.sin_addr);
	inet_pton(AF_INET, "198.18.0.11", &src2.sin_addr);
	src2.sin_port = htons(1234); /* ignored for the source */

	test_immediate_failure();
	test_single_flight();
	test_cap();
	test_idle();
	test_goaway();
	test_free_waiters();

	spin(50);
	ok(hb_live_conns() == 0 && hb_live_streams() == 0 &&
	       hb_buffered_bytes() == 0,
	   "end: nothing left (%zu conns, %zu streams, %zu bytes)",
	   hb_live_conns(), hb_live_streams(), hb_buffered_bytes());
	loop_io_stop(L, &lio);
	close(hb_lfd);
	loop_free(L);
	return tap_done();
}
