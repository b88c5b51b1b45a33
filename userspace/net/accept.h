/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Accepting connections without letting fd exhaustion spin the loop.
 *
 * A level-triggered listener whose accept4() fails with EMFILE/ENFILE stays
 * readable: the loop would call it again at once, forever, and every pod of
 * the node would lose the mesh while the log fills. acceptor_accept() turns
 * that into back-off: it frees the process's reserve fd, accepts the oldest
 * waiting connection and resets it (so its client learns at once instead of
 * waiting in the backlog), takes the reserve back, and pauses the listener
 * for ACCEPT_PAUSE_MS. Each such event is counted and logged at a bounded
 * rate.
 *
 * Threading: an acceptor belongs to the thread of its loop; the reserve fd
 * is shared by the process under a lock (it is only touched on this rare
 * path).
 */
#ifndef AMBIENTD_ACCEPT_H
#define AMBIENTD_ACCEPT_H

#include <netinet/in.h>
#include <stdatomic.h>
#include <stdint.h>

#include "loop.h"

#define ACCEPT_PAUSE_MS 250

struct acceptor {
	struct loop_io io;	  /* the listening socket; cb/arg are the owner's */
	struct loop_timer resume; /* ends a pause */
	const char *name;	  /* for logs: "outbound", "metrics", ... */
	/* Accepts that failed for lack of fds (each paused the listener). */
	atomic_uint_fast64_t fd_exhausted;
};

/* Set up a on listening socket fd (not yet watched); cb runs when it is
 * readable. Opens the process's reserve fd the first time. */
void acceptor_init(struct acceptor *a, int fd, loop_io_cb cb, void *arg,
		   const char *name);
/* Watch (again) for connections. 0 or -errno. */
int acceptor_start(struct loop *l, struct acceptor *a);
/* Stop watching and close the socket (fd becomes -1). */
void acceptor_close(struct loop *l, struct acceptor *a);

/*
 * One accept4() (non-blocking, close-on-exec). Returns the new fd with the
 * peer in *peer (may be NULL), -EAGAIN when nobody waits, -EMFILE when fds
 * ran out (handled as above: stop accepting for now), or another -errno
 * (-EINVAL: the socket is not listening any more).
 */
int acceptor_accept(struct loop *l, struct acceptor *a, struct sockaddr_in *peer);

/* Abortive close: the peer sees a RST, not a clean end. */
void reset_close(int fd);

#endif
