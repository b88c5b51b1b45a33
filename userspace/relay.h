/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Relay: copies bytes both ways between two stream ends with bounded
 * buffers, propagating half-close (FIN) and reset (RST).
 *
 * A relay has a downstream end (the captured client) and an upstream end
 * (towards the server). Ends are reached through struct relay_end_ops so the
 * HBONE issue can plug an HTTP/2 CONNECT stream in as an end; today both ends
 * are TCP sockets (relay_end_socket_ops).
 *
 * Memory: a direction's buffer is taken from a per-loop pool only while it
 * holds bytes and returned when drained, so an idle relay costs only its
 * struct. Reads from an end stop while the buffer towards the other end is
 * full (backpressure).
 */
#ifndef AMBIENTD_RELAY_H
#define AMBIENTD_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct loop;
struct relay;

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

struct relay_opts {
	size_t buf_size;       /* per-direction buffer bound, default 64 KiB */
	relay_done_cb done;    /* called exactly once, before the relay is freed */
	void *arg;
};

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

/* Reset both ends (RST) and finish with RELAY_ABORTED. */
void relay_abort(struct relay *r);

enum relay_state relay_get_state(const struct relay *r);
/* Live byte counts (for metrics that show progress). */
void relay_get_counts(const struct relay *r, uint64_t *up, uint64_t *down);

/* Number of relays alive on this thread, and pooled buffer memory. */
size_t relay_live_count(void);
size_t relay_buffer_bytes(void);

#endif
