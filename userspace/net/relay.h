/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Relay: copies bytes both ways between two stream ends with bounded
 * buffers, propagating half-close (FIN) and reset (RST).
 *
 * A relay has a downstream end (the captured client) and an upstream end
 * (towards the server). Ends are reached through struct relay_end_ops so the
 * HBONE issue can plug an HTTP/2 CONNECT stream in as an end; today both ends
 * are TCP sockets (relay_end_tcp_new()).
 *
 * Memory: a direction's buffer is taken (bufpool.h) only while it
 * holds bytes and returned when drained, so an idle relay costs only its
 * struct. Reads from an end stop while the buffer towards the other end is
 * full (backpressure).
 */
#ifndef AMBIENTD_RELAY_H
#define AMBIENTD_RELAY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

struct loop;
struct relay;
struct relay_end;

/* Lifecycle of a relay; relay.c changes state through one checked function. */
enum relay_state {
	RELAY_CONNECTING, /* waiting for the upstream connect to finish */
	RELAY_OPEN,       /* copying in both directions */
	RELAY_HALF_CLOSED,/* one direction finished (FIN passed on) */
	RELAY_CLOSED,     /* both directions finished or aborted; done cb ran */
};

/* Why a relay ended; doubles as a short label for logs/metrics. */
enum relay_result {
	RELAY_OK = 0,            /* both sides closed cleanly */
	RELAY_CONNECT_FAILED,    /* upstream connect failed (refused, unreachable) */
	RELAY_DOWNSTREAM_RESET,  /* client reset; RST passed upstream */
	RELAY_UPSTREAM_RESET,    /* server reset; RST passed downstream */
	RELAY_IO_ERROR,          /* other socket error */
	RELAY_ABORTED,           /* relay_abort() called (shutdown, policy) */
};
const char *relay_result_name(enum relay_result r);

struct relay_summary {
	enum relay_result result;
	int error;             /* errno behind result, 0 if none */
	uint64_t bytes_up;     /* downstream -> upstream */
	uint64_t bytes_down;   /* upstream -> downstream */
	uint64_t started_ms;
	uint64_t ended_ms;
};

typedef void (*relay_done_cb)(struct relay *r, const struct relay_summary *s,
			      void *arg);

/*
 * Byte counters a relay adds to after every successful write to an end, so
 * metrics show long connections progressing (up: downstream -> upstream,
 * down: upstream -> downstream). Only the relay's thread adds; any thread
 * may read them (relaxed atomics). The memory belongs to the caller and
 * must outlive the relay.
 */
struct relay_meter {
	_Atomic uint64_t up;
	_Atomic uint64_t down;
};
#define RELAY_METERS 2

struct relay_opts {
	size_t buf_size;       /* per-direction buffer bound, default 64 KiB */
	relay_done_cb done;    /* called exactly once, before the relay is freed */
	void *arg;
	/*
	 * Optional retry seam: the upstream end failed before it connected
	 * (err > 0); the relay has already released it. Return true to keep
	 * the relay waiting for another upstream, which the callback hands
	 * over (now or later, on the loop thread) with relay_retry_upstream()
	 * — or it ends the relay with relay_abort(). Nothing was read from
	 * downstream yet, so nothing is lost. false: fail as usual.
	 */
	bool (*connect_failed)(struct relay *r, int err, void *arg);
	/* Optional: the upstream connected (the relay is now OPEN). */
	void (*connected)(struct relay *r, void *arg);
	struct relay_meter *meters[RELAY_METERS]; /* NULL: unused slot */
};

/*
 * The end seam. An end is one side of a relay: a TCP socket today, an HTTP/2
 * CONNECT stream later. The relay drives an end only through its ops and
 * learns about readiness through relay_end_notify(); it never sees an fd.
 *
 * Ownership: the relay owns an end from relay_start() on and releases it
 * exactly once through close() or abort(); after that call the relay never
 * touches the end again. Neither op may call back into the relay.
 */
struct relay_end_ops {
	/* Bytes read (>0), 0 on EOF (peer's FIN / END_STREAM), -EAGAIN when
	 * nothing is ready, -ECONNRESET when the peer reset, other -errno.
	 * Fewer bytes than asked means the end has nothing more right now (a
	 * stream socket's short read): the relay does not read again before
	 * the end reports READABLE again. */
	ssize_t (*read)(struct relay_end *e, void *buf, size_t len);
	/* Bytes accepted (>0), -EAGAIN when full, -EPIPE/-ECONNRESET when the
	 * peer is gone, other -errno. Must never raise SIGPIPE. */
	ssize_t (*write)(struct relay_end *e, const void *buf, size_t len);
	/* Send FIN (END_STREAM) after everything written so far. 0 or -errno. */
	int (*shutdown_write)(struct relay_end *e);
	/* Pending asynchronous error (connect result, RST) as -errno, or 0. */
	int (*error)(struct relay_end *e);
	/* Which notifications the relay wants now (level-triggered). 0/-errno. */
	int (*set_interest)(struct relay_end *e, bool want_read,
			    bool want_write);
	/* Release gracefully: bytes already written are still delivered. */
	void (*close)(struct relay_end *e);
	/* Release with a reset (TCP RST / RST_STREAM); buffered bytes dropped. */
	void (*abort)(struct relay_end *e);

	/*
	 * Optional: moving bytes without the relay's buffer. A source that
	 * keeps its own buffer (an HTTP/2 stream's receive queue) lends it
	 * out with peek(); a sink that can gather (a socket) writes from it
	 * with writev(); then consume() takes what was written. The relay
	 * does this instead of read() + write() when both sides offer it,
	 * calling peek, writev and consume back to back.
	 */
	/* Like write(), from several buffers. */
	ssize_t (*writev)(struct relay_end *e, const struct iovec *iov,
			  int cnt);
	/* Up to max iovecs over the bytes ready to be read (count > 0), or
	 * what read() would say: 0 EOF, -EAGAIN, -errno. The bytes stay
	 * put until consume(n) takes the first n of them. */
	int (*peek)(struct relay_end *e, struct iovec *iov, int max);
	void (*consume)(struct relay_end *e, size_t n);
};

/* Embedded first in every end implementation. */
struct relay_end {
	const struct relay_end_ops *ops;
	struct relay *relay; /* set by relay_start(); NULL before */
};

/* What an end reports to its relay through relay_end_notify(). */
enum {
	RELAY_END_READABLE = 1 << 0,
	RELAY_END_WRITABLE = 1 << 1,
	/* The relay asks ops->error() for the errno. */
	RELAY_END_ERROR = 1 << 2,
};

/*
 * Called by an end implementation when it became readable/writable/failed,
 * from a loop callback of the relay's loop thread. The relay (and the end)
 * may be finished when this returns: the caller must not touch `e` after.
 */
void relay_end_notify(struct relay_end *e, unsigned int what);

/*
 * A TCP socket end (non-blocking fd, watched on loop `l`). Takes ownership of
 * fd only on success. 0 and *out, or -errno. The socket has zero linger
 * until a graceful close, so if the process dies the peer gets a RST.
 */
int relay_end_tcp_new(struct loop *l, int fd, struct relay_end **out);

/*
 * Start relaying between two ends on loop `l` (the ends must live on the same
 * loop). If up_connecting, the upstream end reports RELAY_END_WRITABLE once
 * its connect finished and ops->error() gives the result; nothing is read
 * from downstream before that. The relay owns both ends from here on, also on
 * error (then both are aborted). Returns 0 and sets *out (may be NULL), or
 * -errno.
 */
int relay_start(struct loop *l, struct relay_end *down, struct relay_end *up,
		bool up_connecting, const struct relay_opts *opts,
		struct relay **out);

/*
 * Start relaying between two connected/connecting TCP sockets.
 * down_fd: accepted client socket (non-blocking).
 * up_fd: upstream socket; if up_connecting, a non-blocking connect() is in
 *        progress and nothing is read from down_fd until it completes; on
 *        failure down_fd is reset (RST) so the client sees the failure.
 * The relay owns both fds from here on (also on error).
 * Returns 0 and sets *out (may be NULL), or -errno.
 */
int relay_start_tcp(struct loop *l, int down_fd, int up_fd, bool up_connecting,
		    const struct relay_opts *opts, struct relay **out);

/*
 * Reset both ends (RST) and finish with RELAY_ABORTED. Loop thread only. A
 * no-op on a relay that already finished (e.g. from its own done callback);
 * the relay is freed at the end of the loop turn its done callback ran in,
 * so drop the pointer there.
 */
void relay_abort(struct relay *r);

/*
 * Give a relay waiting after connect_failed a new upstream end (connecting;
 * it reports RELAY_END_WRITABLE when done). The relay owns `up` from here,
 * also on error. 0, or -EINVAL if the relay is not waiting for one.
 */
int relay_retry_upstream(struct relay *r, struct relay_end *up);

enum relay_state relay_get_state(const struct relay *r);
/* Live byte counts (for metrics that show progress). */
void relay_get_counts(const struct relay *r, uint64_t *up, uint64_t *down);

/* Number of relays alive on this thread, and buffer memory they hold now. */
size_t relay_live_count(void);
size_t relay_buffer_bytes(void);

#endif
