// SPDX-License-Identifier: Apache-2.0
/*
 * Relay between a downstream and an upstream end (see relay.h).
 *
 * Two directions, each with its own bounded buffer:
 *   DIR_UP   reads end[END_DOWN], writes end[END_UP]   (bytes_up)
 *   DIR_DOWN reads end[END_UP],   writes end[END_DOWN] (bytes_down)
 *
 * A direction's buffer is a linear window [off, len) of pending bytes. Reads
 * append at len while there is room; writes consume from off; once off
 * catches up with len the buffer goes back to the pool. A full tail (len ==
 * size) stops reads from the source until the window drained, which is the
 * backpressure: at most buf_size bytes per direction are held here.
 *
 * Without a copy: when the source lends out its own buffer (peek/consume,
 * an HTTP/2 stream's receive queue) and the sink can gather (writev), the
 * bytes go from there to the sink in one syscall and the direction's
 * buffer is never taken. Unsent bytes wait in the source; d->sink_wait
 * says the sink refused some and stands for "buffer full": no reads from
 * the source until the sink reports WRITABLE.
 *
 * Direction progress: DIR_OPEN -> DIR_EOF (source said EOF, draining) ->
 * DIR_FIN_SENT (drained and shutdown_write() done on the destination).
 * Relay state: CONNECTING -> OPEN -> HALF_CLOSED (one direction FIN_SENT) ->
 * CLOSED (both FIN_SENT, or any reset/error/abort from any earlier state).
 *
 * Lifetime: finish() releases both ends, calls the done callback and hands
 * the relay to loop_defer_free(), because finish() usually runs deep inside
 * this file's own handlers, which check r->state == RELAY_CLOSED after every
 * step that can finish and then return without touching the ends.
 */
#include "relay.h"

#include "bufpool.h"

#include "log.h"
#include "loop.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define RELAY_DEFAULT_BUF (64 * 1024)
/* Read+write rounds per direction per notification; bounds one relay's turn. */
#define RELAY_PUMP_ROUNDS 8

enum { END_DOWN = 0, END_UP = 1 };
enum { DIR_UP = 0, DIR_DOWN = 1 };

enum relay_dir_state {
	DIR_OPEN, /* reading from the source */
	DIR_EOF, /* source sent EOF; draining what is buffered */
	DIR_FIN_SENT, /* drained and FIN passed on; this direction is done */
};

struct relay_buf {
	size_t size;
	unsigned char data[];
};

struct relay_dir {
	struct relay_buf *buf; /* NULL while empty */
	uint32_t off; /* first byte not yet written */
	uint32_t len; /* end of bytes read */
	uint8_t state; /* enum relay_dir_state */
	bool sink_wait; /* direct move blocked on the sink (see above) */
	uint64_t bytes; /* bytes written to the destination */
};

struct relay {
	struct loop *loop;
	struct relay_end *end[2];
	struct relay_dir dir[2];
	uint8_t state; /* enum relay_state */
	uint8_t interest
		[2]; /* last interest set on each end, bit0 read bit1 write */
	uint32_t buf_size;
	uint64_t started_ms;
	relay_done_cb done;
	void *arg;
	bool (*connect_failed)(struct relay *r, int err, void *arg);
	void (*connected)(struct relay *r, void *arg);
	struct relay_meter *meters[RELAY_METERS];
};

/* ---- buffers (bufpool.h) ---- */

static __thread size_t buf_bytes;
static __thread size_t live_relays;

static struct relay_buf *buf_get(size_t size)
{
	struct relay_buf *b = bufpool_get(sizeof(*b) + size);

	if (!b)
		return NULL;
	b->size = size;
	buf_bytes += size;
	return b;
}

static void buf_put(struct relay_buf *b)
{
	buf_bytes -= b->size;
	bufpool_put(b, sizeof(*b) + b->size);
}

size_t relay_buffer_bytes(void)
{
	return buf_bytes;
}

size_t relay_live_count(void)
{
	return live_relays;
}

/* ---- state ---- */

static const char *const result_names[] = {
	[RELAY_OK] = "ok",
	[RELAY_CONNECT_FAILED] = "connect_failed",
	[RELAY_DOWNSTREAM_RESET] = "downstream_reset",
	[RELAY_UPSTREAM_RESET] = "upstream_reset",
	[RELAY_IO_ERROR] = "io_error",
	[RELAY_ABORTED] = "aborted",
};

const char *relay_result_name(enum relay_result r)
{
	if ((unsigned int)r >= sizeof(result_names) / sizeof(result_names[0]))
		return "unknown";
	return result_names[r];
}

static const char *const state_names[] = {
	[RELAY_CONNECTING] = "connecting",
	[RELAY_OPEN] = "open",
	[RELAY_HALF_CLOSED] = "half_closed",
	[RELAY_CLOSED] = "closed",
};

/* The only place r->state changes. */
static void set_state(struct relay *r, enum relay_state to)
{
	enum relay_state from = r->state;
	bool legal;

	switch (from) {
	case RELAY_CONNECTING:
		legal = to == RELAY_OPEN || to == RELAY_CLOSED;
		break;
	case RELAY_OPEN:
		legal = to == RELAY_HALF_CLOSED || to == RELAY_CLOSED;
		break;
	case RELAY_HALF_CLOSED:
		legal = to == RELAY_CLOSED;
		break;
	default:
		legal = false;
		break;
	}
	if (!legal)
		log_error("relay %p: illegal transition %s -> %s", (void *)r,
			  state_names[from], state_names[to]);
	assert(legal);
	log_debug("relay %p: %s -> %s", (void *)r, state_names[from],
		  state_names[to]);
	r->state = to;
}

enum relay_state relay_get_state(const struct relay *r)
{
	return r->state;
}

void relay_get_counts(const struct relay *r, uint64_t *up, uint64_t *down)
{
	if (up)
		*up = r->dir[DIR_UP].bytes;
	if (down)
		*down = r->dir[DIR_DOWN].bytes;
}

static void dir_drop(struct relay_dir *d)
{
	if (d->buf)
		buf_put(d->buf);
	d->buf = NULL;
	d->off = d->len = 0;
}

/*
 * Ends the relay exactly once: releases the ends (graceful close only when
 * result is RELAY_OK, otherwise a reset so the peers see the failure), returns
 * the buffers, reports, and schedules the free.
 */
static void finish(struct relay *r, enum relay_result result, int err)
{
	struct relay_summary s;

	if (r->state == RELAY_CLOSED)
		return;
	set_state(r, RELAY_CLOSED);
	for (int i = 0; i < 2; i++) {
		struct relay_end *e = r->end[i];

		r->end[i] = NULL;
		if (!e)
			; /* upstream between a failed connect and its retry */
		else if (result == RELAY_OK)
			e->ops->close(e);
		else
			e->ops->abort(e);
		dir_drop(&r->dir[i]);
	}
	live_relays--;

	s = (struct relay_summary){
		.result = result,
		.error = err,
		.bytes_up = r->dir[DIR_UP].bytes,
		.bytes_down = r->dir[DIR_DOWN].bytes,
		.started_ms = r->started_ms,
		.ended_ms = loop_now_ms(r->loop),
	};
	log_debug("relay %p: done %s (%s) up=%llu down=%llu", (void *)r,
		  relay_result_name(result), err ? strerror(err) : "-",
		  (unsigned long long)s.bytes_up,
		  (unsigned long long)s.bytes_down);
	if (r->done)
		r->done(r, &s, r->arg);
	loop_defer_free(r->loop, r, free);
}

static bool is_reset(int err)
{
	return err == ECONNRESET || err == EPIPE || err == ECONNABORTED;
}

/* End `idx` failed with positive errno `err`; the other end gets a RST. */
static void fail_end(struct relay *r, int idx, int err)
{
	enum relay_result res;

	if (r->state == RELAY_CONNECTING && idx == END_UP && r->connect_failed) {
		struct relay_end *old = r->end[END_UP];

		/* Released before asking, so the callback may hand over the
		 * next upstream at once. */
		r->end[END_UP] = NULL;
		r->interest[END_UP] = 0;
		old->relay = NULL;
		old->ops->abort(old);
		if (r->connect_failed(r, err, r->arg))
			return;
		finish(r, RELAY_CONNECT_FAILED, err);
		return;
	}
	if (r->state == RELAY_CONNECTING)
		res = RELAY_CONNECT_FAILED;
	else if (is_reset(err))
		res = idx == END_DOWN ? RELAY_DOWNSTREAM_RESET :
					RELAY_UPSTREAM_RESET;
	else
		res = RELAY_IO_ERROR;
	log_debug("relay %p: %s end: %s", (void *)r,
		  idx == END_DOWN ? "down" : "up", strerror(err));
	finish(r, res, err);
}

void relay_abort(struct relay *r)
{
	finish(r, RELAY_ABORTED, 0);
}

static void update_interest(struct relay *r);

int relay_retry_upstream(struct relay *r, struct relay_end *up)
{
	if (r->state != RELAY_CONNECTING || r->end[END_UP]) {
		up->ops->abort(up);
		return -EINVAL;
	}
	r->end[END_UP] = up;
	up->relay = r;
	r->interest[END_UP] = 0;
	update_interest(r);
	return 0;
}

/* ---- copying ---- */

static bool dir_can_read(const struct relay *r, const struct relay_dir *d)
{
	return r->state != RELAY_CONNECTING && d->state == DIR_OPEN &&
	       !d->sink_wait && (!d->buf || d->len < r->buf_size);
}

/* Level-triggered interest follows directly from the two directions. */
static void update_interest(struct relay *r)
{
	for (int i = 0; i < 2 && r->state != RELAY_CLOSED; i++) {
		/* End i is the source of dir[i] and the sink of dir[1 - i]. */
		if (!r->end[i])
			continue; /* upstream awaiting a retry */
		const struct relay_dir *from = &r->dir[i];
		const struct relay_dir *to = &r->dir[1 - i];
		bool rd = dir_can_read(r, from);
		bool wr = to->len > to->off || to->sink_wait ||
			  (r->state == RELAY_CONNECTING && i == END_UP);
		uint8_t want = rd | wr << 1;
		int err;

		if (want == r->interest[i])
			continue;
		err = r->end[i]->ops->set_interest(r->end[i], rd, wr);
		if (err) {
			log_warn("relay %p: set_interest: %s", (void *)r,
				 strerror(-err));
			finish(r, RELAY_IO_ERROR, -err);
			return;
		}
		r->interest[i] = want;
	}
}

/* Direction d passed its FIN on; once both did, the relay is done. */
static void dir_fin_sent(struct relay *r, struct relay_dir *d)
{
	d->state = DIR_FIN_SENT;
	if (r->dir[0].state == DIR_FIN_SENT && r->dir[1].state == DIR_FIN_SENT)
		finish(r, RELAY_OK, 0);
	else
		set_state(r, RELAY_HALF_CLOSED);
}

/*
 * Direction d saw EOF and has written everything: shut the sink's write
 * side (FIN). Returns true when the direction is done or the relay ended.
 */
static bool dir_try_fin(struct relay *r, struct relay_dir *d, int dst_idx)
{
	int err;

	if (d->state != DIR_EOF || d->len != d->off)
		return false;
	err = r->end[dst_idx]->ops->shutdown_write(r->end[dst_idx]);
	if (err) {
		fail_end(r, dst_idx, -err);
		return true;
	}
	dir_fin_sent(r, d);
	return true;
}

static void meter_add(struct relay *r, int di, size_t n)
{
	for (int i = 0; i < RELAY_METERS && r->meters[i]; i++)
		atomic_fetch_add_explicit(di == DIR_UP ? &r->meters[i]->up :
							 &r->meters[i]->down,
					  n, memory_order_relaxed);
}

/* Iovecs handed from source to sink in one direct move. */
#define RELAY_IOV 64

static size_t iov_total(const struct iovec *iov, int cnt)
{
	size_t t = 0;

	for (int i = 0; i < cnt; i++)
		t += iov[i].iov_len;
	return t;
}

/*
 * One move from the source's own buffer into the sink (relay_direct()).
 * Returns 1 on progress (bytes or EOF), 0 when blocked (*read_blocked, or
 * *write_blocked and d->sink_wait), -1 when the relay finished.
 */
static int move_direct(struct relay *r, struct relay_dir *d, int src_idx,
		       bool *read_blocked, bool *write_blocked)
{
	int dst_idx = 1 - src_idx;
	struct relay_end *src = r->end[src_idx], *dst = r->end[dst_idx];
	struct iovec iov[RELAY_IOV];
	ssize_t n;
	size_t want;
	int cnt;

	cnt = src->ops->peek(src, iov, RELAY_IOV);
	if (cnt == -EAGAIN) {
		*read_blocked = true;
		return 0;
	}
	if (cnt < 0) {
		fail_end(r, src_idx, -cnt);
		return -1;
	}
	if (cnt == 0) {
		d->state = DIR_EOF;
		return 1;
	}
	want = iov_total(iov, cnt);
	n = dst->ops->writev(dst, iov, cnt);
	if (n == -EAGAIN) {
		d->sink_wait = *write_blocked = true;
		return 0;
	}
	if (n < 0) {
		fail_end(r, dst_idx, (int)-n);
		return -1;
	}
	src->ops->consume(src, n);
	d->bytes += n;
	meter_add(r, (int)(d - r->dir), (size_t)n);
	/* A short write means the sink is full; skip the EAGAIN. */
	if ((size_t)n < want)
		d->sink_wait = *write_blocked = true;
	return 1;
}

/* Bytes of this direction can move without the relay's buffer. */
static bool relay_direct(const struct relay_end *src,
			 const struct relay_end *dst)
{
	return src->ops->peek && dst->ops->writev;
}

/*
 * Moves bytes of direction `di` until neither reading nor writing makes
 * progress (or RELAY_PUMP_ROUNDS). Each read asks for all free room in the
 * buffer (or in the sink, moving directly). May finish the relay.
 */
static void pump(struct relay *r, int di)
{
	struct relay_dir *d = &r->dir[di];
	int src_idx = di == DIR_UP ? END_DOWN : END_UP;
	int dst_idx = 1 - src_idx;
	struct relay_end *src = r->end[src_idx];
	struct relay_end *dst = r->end[dst_idx];
	bool read_blocked = false, write_blocked = d->sink_wait;

	if (relay_direct(src, dst)) {
		for (int round = 0; round < RELAY_PUMP_ROUNDS; round++) {
			int m;

			if (!dir_can_read(r, d) || read_blocked ||
			    write_blocked)
				break;
			m = move_direct(r, d, src_idx, &read_blocked,
					&write_blocked);
			if (m < 0)
				return;
			if (!m)
				break;
		}
		dir_try_fin(r, d, dst_idx);
		return;
	}
	for (int round = 0; round < RELAY_PUMP_ROUNDS; round++) {
		bool progress = false;
		ssize_t n;

		if (d->len > d->off && !write_blocked) {
			size_t want = d->len - d->off;

			n = dst->ops->write(dst, d->buf->data + d->off, want);
			if (n == -EAGAIN) {
				write_blocked = true;
			} else if (n < 0) {
				fail_end(r, dst_idx, (int)-n);
				return;
			} else {
				d->off += n;
				d->bytes += n;
				meter_add(r, di, (size_t)n);
				progress = true;
				/* A short write means the sink is full; skip the EAGAIN. */
				write_blocked = (size_t)n < want;
				if (d->off == d->len)
					dir_drop(d);
			}
		}
		if (dir_try_fin(r, d, dst_idx))
			return;
		if (dir_can_read(r, d) && !read_blocked) {
			if (!d->buf) {
				d->buf = buf_get(r->buf_size);
				if (!d->buf) {
					finish(r, RELAY_IO_ERROR, ENOMEM);
					return;
				}
			}
			size_t want = r->buf_size - d->len;

			n = src->ops->read(src, d->buf->data + d->len, want);
			if (n == -EAGAIN) {
				read_blocked = true;
			} else if (n < 0) {
				fail_end(r, src_idx, (int)-n);
				return;
			} else if (n == 0) {
				d->state = DIR_EOF;
				progress = true;
			} else {
				d->len += n;
				progress = true;
				/* A short read took all there was (relay_end_ops
				 * contract): skip the read that would say EAGAIN. */
				read_blocked = (size_t)n < want;
			}
			/* Only take memory while it holds bytes. */
			if (d->len == d->off)
				dir_drop(d);
		}
		if (!progress)
			break;
	}
	/* EOF read in the last round with nothing left to write: no event
	 * will come back for this direction, so pass the FIN on now. */
	dir_try_fin(r, d, dst_idx);
}

static void on_connected(struct relay *r)
{
	struct relay_end *up = r->end[END_UP];
	int err = up->ops->error(up);

	if (err) {
		fail_end(r, END_UP, -err);
		return;
	}
	set_state(r, RELAY_OPEN);
	if (r->connected)
		r->connected(r, r->arg);
	/* Level-triggered: the reads will be reported next turn if data waits. */
}

void relay_end_notify(struct relay_end *e, unsigned int what)
{
	struct relay *r = e->relay;
	int idx;

	if (!r || r->state == RELAY_CLOSED)
		return;
	idx = e == r->end[END_UP] ? END_UP : END_DOWN;
	if (what & RELAY_END_ERROR) {
		int err = e->ops->error(e);

		if (err) {
			fail_end(r, idx, -err);
			return;
		}
	}
	if (r->state == RELAY_CONNECTING) {
		if (idx == END_UP &&
		    (what & (RELAY_END_WRITABLE | RELAY_END_ERROR)))
			on_connected(r);
	} else {
		/* idx is the source of direction idx and the sink of 1 - idx. */
		if (what & RELAY_END_READABLE)
			pump(r, idx);
		if ((what & RELAY_END_WRITABLE) && r->state != RELAY_CLOSED) {
			r->dir[1 - idx].sink_wait = false;
			pump(r, 1 - idx);
		}
	}
	update_interest(r);
}

int relay_start(struct loop *l, struct relay_end *down, struct relay_end *up,
		bool up_connecting, const struct relay_opts *opts,
		struct relay **out)
{
	struct relay *r;
	size_t buf_size = opts && opts->buf_size ? opts->buf_size :
						   RELAY_DEFAULT_BUF;

	if (buf_size > UINT32_MAX) {
		down->ops->abort(down);
		up->ops->abort(up);
		return -EINVAL;
	}
	r = calloc(1, sizeof(*r));
	if (!r) {
		down->ops->abort(down);
		up->ops->abort(up);
		return -ENOMEM;
	}
	r->loop = l;
	r->end[END_DOWN] = down;
	r->end[END_UP] = up;
	r->state = up_connecting ? RELAY_CONNECTING : RELAY_OPEN;
	r->buf_size = (uint32_t)buf_size;
	r->started_ms = loop_now_ms(l);
	if (opts) {
		r->done = opts->done;
		r->arg = opts->arg;
		r->connect_failed = opts->connect_failed;
		r->connected = opts->connected;
		memcpy(r->meters, opts->meters, sizeof(r->meters));
	}
	down->relay = r;
	up->relay = r;
	live_relays++;
	if (out)
		*out = r;
	/*
	 * Errors from here on are reported through the done callback, like any
	 * later failure: the caller already has the relay.
	 */
	update_interest(r);
	return 0;
}

/* ---- TCP socket end ---- */

struct tcp_end {
	struct relay_end base;
	struct loop *loop;
	struct loop_io io;
};

static struct tcp_end *tcp_of(struct relay_end *e)
{
	return (struct tcp_end *)e;
}

static ssize_t tcp_read(struct relay_end *e, void *buf, size_t len)
{
	ssize_t n;

	do
		n = recv(tcp_of(e)->io.fd, buf, len, 0);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return n;
}

static ssize_t tcp_write(struct relay_end *e, const void *buf, size_t len)
{
	ssize_t n;

	do
		n = send(tcp_of(e)->io.fd, buf, len, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return n;
}

static ssize_t tcp_writev(struct relay_end *e, const struct iovec *iov,
			  int cnt)
{
	struct msghdr mh = { .msg_iov = (struct iovec *)iov,
			     .msg_iovlen = cnt };
	ssize_t n;

	do
		n = sendmsg(tcp_of(e)->io.fd, &mh, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return n;
}

static int tcp_shutdown_write(struct relay_end *e)
{
	if (shutdown(tcp_of(e)->io.fd, SHUT_WR) < 0)
		return errno == ENOTCONN ? -ECONNRESET : -errno;
	return 0;
}

static int tcp_error(struct relay_end *e)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(tcp_of(e)->io.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		return -errno;
	return -err;
}

static int tcp_set_interest(struct relay_end *e, bool want_read,
			    bool want_write)
{
	struct tcp_end *t = tcp_of(e);

	return loop_io_update(t->loop, &t->io,
			      (want_read ? EPOLLIN : 0) |
				      (want_write ? EPOLLOUT : 0));
}

/* The end may be released from inside its own io callback: free deferred. */
static void tcp_release(struct tcp_end *t)
{
	loop_io_stop(t->loop, &t->io);
	close(t->io.fd);
	t->io.fd = -1;
	loop_defer_free(t->loop, t, free);
}

static void tcp_close(struct relay_end *e)
{
	/* Graceful: undo relay_end_tcp_new()'s zero linger, so close() sends
	 * what is still queued and then a FIN. */
	struct linger lg = { 0 };

	setsockopt(tcp_of(e)->io.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	tcp_release(tcp_of(e));
}

static void tcp_abort(struct relay_end *e)
{
	/* Zero linger turns close() into a RST instead of a FIN. */
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	if (setsockopt(tcp_of(e)->io.fd, SOL_SOCKET, SO_LINGER, &lg,
		       sizeof(lg)) < 0)
		log_debug("relay: SO_LINGER: %s", strerror(errno));
	tcp_release(tcp_of(e));
}

static const struct relay_end_ops tcp_end_ops = {
	.read = tcp_read,
	.write = tcp_write,
	.shutdown_write = tcp_shutdown_write,
	.error = tcp_error,
	.set_interest = tcp_set_interest,
	.close = tcp_close,
	.abort = tcp_abort,
	.writev = tcp_writev,
};

static void tcp_io_cb(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct tcp_end *t = io->arg;
	unsigned int what = 0;

	if (events & EPOLLIN)
		what |= RELAY_END_READABLE;
	if (events & EPOLLOUT)
		what |= RELAY_END_WRITABLE;
	if (events & EPOLLERR)
		what |= RELAY_END_ERROR;
	/* HUP alone: let the read/write that was asked for discover EOF/EPIPE. */
	if (events & EPOLLHUP) {
		if (io->events & EPOLLIN)
			what |= RELAY_END_READABLE;
		if (io->events & EPOLLOUT)
			what |= RELAY_END_WRITABLE;
	}
	relay_end_notify(&t->base, what);
}

int relay_end_tcp_new(struct loop *l, int fd, struct relay_end **out)
{
	struct tcp_end *t = calloc(1, sizeof(*t));
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	if (!t)
		return -ENOMEM;
	/*
	 * Zero linger until a graceful tcp_close(): if the daemon dies (kill
	 * -9, a crash) the kernel closes this fd with a RST, so the pod sees
	 * its connection fail instead of a clean FIN after a truncated stream.
	 */
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	t->base.ops = &tcp_end_ops;
	t->loop = l;
	loop_io_init(&t->io, fd, tcp_io_cb, t);
	*out = &t->base;
	return 0;
}

static void abort_fd(int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

int relay_start_tcp(struct loop *l, int down_fd, int up_fd, bool up_connecting,
		    const struct relay_opts *opts, struct relay **out)
{
	struct relay_end *down, *up;
	int err;

	err = relay_end_tcp_new(l, down_fd, &down);
	if (err)
		goto err_fds;
	err = relay_end_tcp_new(l, up_fd, &up);
	if (err)
		goto err_down;
	return relay_start(l, down, up, up_connecting, opts, out);

err_down:
	free(down);
err_fds:
	abort_fd(down_fd);
	abort_fd(up_fd);
	return err;
}
