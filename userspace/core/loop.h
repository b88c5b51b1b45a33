/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A small epoll event loop with a callback API (Redis ae / h2o evloop style).
 *
 * One loop per thread; nothing here is thread-safe except loop_stop() and
 * loop_wake(). Watched fds are described by a struct loop_io that the owner
 * embeds in its own object (no per-fd allocation). Level-triggered: the owner
 * says which events it wants right now with loop_io_update().
 *
 * Lifetime rule: an owner may free itself from inside any callback as long
 * as it called loop_io_stop() on its ios first, or hands the memory to
 * loop_defer_free(); events already fetched for a stopped io are skipped.
 */
#ifndef AMBIENTD_LOOP_H
#define AMBIENTD_LOOP_H

#include <stdbool.h>
#include <stdint.h>

struct loop;
struct loop_io;
struct loop_timer;

typedef void (*loop_io_cb)(struct loop *l, struct loop_io *io, uint32_t events);
typedef void (*loop_timer_cb)(struct loop *l, struct loop_timer *t);
typedef void (*loop_hook_cb)(struct loop *l, void *arg);

struct loop_io {
	int fd;
	uint32_t events; /* EPOLLIN/EPOLLOUT currently requested */
	bool active;     /* registered with epoll */
	uint32_t gen;    /* stale-event guard, see loop.c */
	loop_io_cb cb;
	void *arg;
};

struct loop_timer {
	uint64_t deadline_ms; /* CLOCK_MONOTONIC ms */
	int heap_idx;         /* -1 when not armed */
	loop_timer_cb cb;
	void *arg;
};

/* Returns a new loop or NULL (errno set). */
struct loop *loop_new(void);
void loop_free(struct loop *l);

void loop_io_init(struct loop_io *io, int fd, loop_io_cb cb, void *arg);
/*
 * Start/modify watching io->fd for `events` (0 allowed). 0 or -errno.
 * 0 events unregisters the fd like loop_io_stop() (so EPOLLHUP/EPOLLERR,
 * which epoll always reports, cannot spin); callbacks only ever see the
 * events currently asked for, plus EPOLLERR/EPOLLHUP.
 */
int loop_io_update(struct loop *l, struct loop_io *io, uint32_t events);
/* Stop watching; pending events for it in this turn are dropped. */
void loop_io_stop(struct loop *l, struct loop_io *io);

void loop_timer_init(struct loop_timer *t, loop_timer_cb cb, void *arg);
/* (Re)arm to fire once after `after_ms`. */
void loop_timer_arm(struct loop *l, struct loop_timer *t, uint64_t after_ms);
void loop_timer_disarm(struct loop *l, struct loop_timer *t);
static inline bool loop_timer_armed(const struct loop_timer *t)
{
	return t->heap_idx >= 0;
}

/* Called once per turn before epoll_wait (batching hook). */
void loop_set_before_sleep(struct loop *l, loop_hook_cb cb, void *arg);
/* Called on the loop thread after loop_wake() from any thread. */
void loop_set_wake_hook(struct loop *l, loop_hook_cb cb, void *arg);

/*
 * Free `ptr` with `fn` once the current turn dispatched its events and timers
 * (so code up the stack may still touch it; outside loop_run: at the end of
 * the next turn, or in loop_free()). It does not unregister anything: stop
 * the ios inside `ptr` first, which is what keeps their remaining events of
 * this turn from being dispatched.
 */
void loop_defer_free(struct loop *l, void *ptr, void (*fn)(void *));

/*
 * An object that outlives its owner on this loop for a while (a closed
 * connection still delivering its last bytes) registers here, so that a
 * loop freed before it is done ends it: loop_free() calls end() for every
 * one still registered, before it runs the deferred frees. end() must
 * loop_orphan_del() it (or free it through something that does).
 */
struct loop_orphan {
	struct loop_orphan *prev, *next;
	void (*end)(struct loop_orphan *o);
};
void loop_orphan_add(struct loop *l, struct loop_orphan *o,
		     void (*end)(struct loop_orphan *o));
void loop_orphan_del(struct loop *l, struct loop_orphan *o);

/* Run until loop_stop(). Returns 0, or -errno if epoll itself failed. */
int loop_run(struct loop *l);
/* Thread-safe. */
void loop_stop(struct loop *l);
void loop_wake(struct loop *l);

/* Cached monotonic time of the current turn, in ms. */
uint64_t loop_now_ms(struct loop *l);

#endif
