/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Per-worker pool of client HBONE connections (DESIGN.md §3 "Pool key").
 *
 * Connections are shared by every outbound stream with the same key
 * (source identity, expected destination identities as a set, destination
 * ip:port, source IP). One worker, one loop, one pool: no locks.
 *
 * - pool_acquire() hands out a conn that can open a stream now (live, no
 *   GOAWAY, under the stream cap), or queues the caller.
 * - At most one connection per key is being created at a time
 *   (single-flight): the owner's connect callback does TCP + TLS +
 *   hb_conn_new_client() and answers with pool_conn_ready() or
 *   pool_conn_failed(); every queued caller is then answered.
 * - A new connection is made when all of a key's connections are at the
 *   stream cap.
 * - A connection without streams for opts.idle_ms is drained (GOAWAY) and
 *   forgotten; one that received or sent GOAWAY, or died, is forgotten at
 *   once and never handed out again.
 */
#ifndef AMBIENTD_POOL_H
#define AMBIENTD_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct loop;
struct hb_conn;
struct pool;
struct pool_waiter;

/*
 * The key. The pool copies what it keeps; the order of dst_identities does
 * not matter (they are compared as a sorted set). dst is the peer's HBONE
 * address (ip + port); src is the source IP to connect from (its port is
 * ignored; NULL = any). Only AF_INET/AF_INET6 addresses.
 */
struct pool_key {
	const char *src_identity;
	const char *const *dst_identities;
	size_t n_dst_identities;
	const struct sockaddr *dst;
	const struct sockaddr *src;
};

/*
 * Answer to a queued pool_acquire(): a conn that can open a stream (err 0),
 * or c NULL and a positive errno. The callee should open its stream before
 * returning: the room is only guaranteed at this moment.
 */
typedef void (*pool_ready_cb)(void *arg, struct hb_conn *c, int err);

struct pool_opts {
	uint32_t max_streams; /* streams per conn before another one (100) */
	uint64_t idle_ms;     /* drain a conn without streams after (5 min) */
	/*
	 * Start creating a connection for `key` (valid until answered). It
	 * must answer later, from a loop callback, with pool_conn_ready() or
	 * pool_conn_failed() -- never before returning. Returns 0, or -errno
	 * when it failed at once (then it must not answer).
	 */
	int (*connect)(void *arg, struct pool *p, const struct pool_key *key);
	void *arg;
};

struct pool_stats {
	uint64_t connects;	/* connect callbacks made */
	uint64_t created;	/* conns handed over by pool_conn_ready() */
	uint64_t failed;	/* pool_conn_failed() and immediate failures */
	uint64_t idle_released; /* conns drained for idleness */
	size_t live;		/* conns the pool holds now */
	size_t waiting;		/* queued acquires */
};

/* New pool on loop l, or NULL with errno set. opts is copied. */
struct pool *pool_new(struct loop *l, const struct pool_opts *opts);

/*
 * Queued acquires are answered with ECANCELED, held conns are closed
 * (hb_conn_close). Connects in flight must be abandoned by the owner
 * (never answered) before this.
 */
void pool_free(struct pool *p);

/*
 * A conn for `key`: returns 0 with *conn set when one can open a stream now
 * (cb is not called); -EINPROGRESS with *w set when the caller is queued (cb
 * is called exactly once later, unless pool_cancel(p, *w)); or -errno
 * (-EINVAL, -ENOMEM, or the connect callback's immediate failure; cb is not
 * called).
 */
int pool_acquire(struct pool *p, const struct pool_key *key, pool_ready_cb cb,
		 void *arg, struct hb_conn **conn, struct pool_waiter **w);

/* Withdraw a queued acquire (its cb will not be called). */
void pool_cancel(struct pool *p, struct pool_waiter *w);

/*
 * The connection for `key` is up (hb_conn_new_client() succeeded). The pool
 * owns c from here on (also on error: it is closed) and answers the queued
 * acquires. 0, or -ENOENT if no connect was in flight for key.
 */
int pool_conn_ready(struct pool *p, const struct pool_key *key,
		    struct hb_conn *c);

/* Creating the connection for `key` failed (positive errno): every queued
 * acquire gets it. */
void pool_conn_failed(struct pool *p, const struct pool_key *key, int err);

void pool_get_stats(const struct pool *p, struct pool_stats *st);

#endif
