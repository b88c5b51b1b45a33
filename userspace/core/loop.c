// SPDX-License-Identifier: Apache-2.0
/*
 * epoll event loop: level-triggered ios, a binary min-heap of timers, a
 * before-sleep hook, an eventfd for cross-thread stop/wake, and deferred
 * frees that run once a turn has been dispatched.
 *
 * One turn:
 *   before-sleep hook -> epoll_wait (timeout = nearest timer) -> refresh the
 *   clock -> dispatch io events -> fire due timers -> run deferred frees.
 *
 * Stale-event guard. epoll_wait hands back a batch of events whose data.ptr
 * points at owners' struct loop_io. A callback early in the batch may stop
 * (and free) an io whose event sits later in the same batch. Before
 * dispatching, every io in the batch is stamped with the turn number
 * (io->gen = l->turn). Whenever an io leaves epoll during dispatch
 * (loop_io_stop, or loop_io_update to 0 events) and carries this turn's
 * stamp, its not-yet-dispatched entry in the batch is cleared, so the loop
 * never looks at that memory again. Each io is registered at most once, so
 * it has at most one entry per batch; a stale stamp from an old turn only
 * costs a useless scan, never a missed one.
 */
#include "loop.h"

#include "log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define LOOP_MAX_EVENTS 256

struct loop_deferred {
	void *ptr;
	void (*fn)(void *);
};

struct loop {
	int epfd;
	struct loop_orphan *orphans;
	struct loop_io wake_io; /* eventfd shared by loop_stop/loop_wake */
	int stop; /* set from any thread, __atomic */
	uint64_t now_ms;
	uint32_t turn;

	/* The batch being dispatched; see the stale-event guard above. */
	struct epoll_event events[LOOP_MAX_EVENTS];
	int nevents;
	int cur;
	bool dispatching;

	struct loop_timer **heap;
	int heap_len;
	int heap_cap;

	struct loop_deferred *deferred;
	size_t ndeferred;
	size_t deferred_cap;

	loop_hook_cb before_sleep;
	void *before_sleep_arg;
	loop_hook_cb wake_hook;
	void *wake_arg;
};

static uint64_t clock_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t loop_now_ms(struct loop *l)
{
	return l->now_ms;
}

static void wake_io_cb(struct loop *l, struct loop_io *io, uint32_t events)
{
	uint64_t v;

	/* Drain the counter; several wakes coalesce into one hook call. */
	if (read(io->fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_warn("loop: eventfd read: %s", strerror(errno));
	if (l->wake_hook)
		l->wake_hook(l, l->wake_arg);
}

struct loop *loop_new(void)
{
	struct loop *l;
	int efd, err;

	l = calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epfd < 0) {
		err = errno;
		goto err_free;
	}
	efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (efd < 0) {
		err = errno;
		goto err_epoll;
	}
	loop_io_init(&l->wake_io, efd, wake_io_cb, NULL);
	err = -loop_io_update(l, &l->wake_io, EPOLLIN);
	if (err)
		goto err_efd;
	l->now_ms = clock_ms();
	return l;

err_efd:
	close(efd);
err_epoll:
	close(l->epfd);
err_free:
	free(l);
	errno = err;
	return NULL;
}

static void run_deferred(struct loop *l)
{
	/* A deferred fn may defer more; those run in this same pass. */
	for (size_t i = 0; i < l->ndeferred; i++)
		l->deferred[i].fn(l->deferred[i].ptr);
	l->ndeferred = 0;
}

void loop_orphan_add(struct loop *l, struct loop_orphan *o,
		     void (*end)(struct loop_orphan *o))
{
	o->end = end;
	o->prev = NULL;
	o->next = l->orphans;
	if (o->next)
		o->next->prev = o;
	l->orphans = o;
}

void loop_orphan_del(struct loop *l, struct loop_orphan *o)
{
	if (o->prev)
		o->prev->next = o->next;
	else if (l->orphans == o)
		l->orphans = o->next;
	if (o->next)
		o->next->prev = o->prev;
	o->prev = o->next = NULL;
}

void loop_free(struct loop *l)
{
	if (!l)
		return;
	while (l->orphans) {
		struct loop_orphan *o = l->orphans;

		loop_orphan_del(l, o);
		o->end(o);
	}
	run_deferred(l);
	loop_io_stop(l, &l->wake_io);
	close(l->wake_io.fd);
	close(l->epfd);
	free(l->deferred);
	free(l->heap);
	free(l);
}

void loop_io_init(struct loop_io *io, int fd, loop_io_cb cb, void *arg)
{
	io->fd = fd;
	io->events = 0;
	io->active = false;
	io->gen = 0;
	io->cb = cb;
	io->arg = arg;
}

/* Forget io's undelivered event of the batch being dispatched, if any. */
static void drop_pending(struct loop *l, struct loop_io *io)
{
	if (!l->dispatching || io->gen != l->turn)
		return;
	for (int i = l->cur + 1; i < l->nevents; i++) {
		if (l->events[i].data.ptr == io) {
			l->events[i].data.ptr = NULL;
			return;
		}
	}
}

/*
 * 0 events unregisters the fd: epoll always reports EPOLLHUP/EPOLLERR, so a
 * level-triggered registration with an empty mask could spin on a dead
 * socket that its owner is deliberately not looking at.
 */
int loop_io_update(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = io };
	int op;

	if (!events) {
		loop_io_stop(l, io);
		return 0;
	}
	if (io->active && io->events == events)
		return 0;
	op = io->active ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
	if (epoll_ctl(l->epfd, op, io->fd, &ev) < 0)
		return -errno;
	io->events = events;
	io->active = true;
	return 0;
}

void loop_io_stop(struct loop *l, struct loop_io *io)
{
	if (io->active) {
		/* Fails only if the fd was already closed, which also unregistered it. */
		if (epoll_ctl(l->epfd, EPOLL_CTL_DEL, io->fd, NULL) < 0 &&
		    errno != EBADF && errno != ENOENT)
			log_warn("loop: epoll_ctl(DEL, %d): %s", io->fd,
				 strerror(errno));
		io->active = false;
	}
	io->events = 0;
	drop_pending(l, io);
}

/* ---- timers: binary min-heap on deadline_ms, heap_idx kept in the timer ---- */

static void heap_set(struct loop *l, int i, struct loop_timer *t)
{
	l->heap[i] = t;
	t->heap_idx = i;
}

static void heap_up(struct loop *l, int i)
{
	struct loop_timer *t = l->heap[i];

	while (i > 0) {
		int parent = (i - 1) / 2;

		if (l->heap[parent]->deadline_ms <= t->deadline_ms)
			break;
		heap_set(l, i, l->heap[parent]);
		i = parent;
	}
	heap_set(l, i, t);
}

static void heap_down(struct loop *l, int i)
{
	struct loop_timer *t = l->heap[i];

	for (;;) {
		int child = 2 * i + 1;

		if (child >= l->heap_len)
			break;
		if (child + 1 < l->heap_len &&
		    l->heap[child + 1]->deadline_ms <
			    l->heap[child]->deadline_ms)
			child++;
		if (t->deadline_ms <= l->heap[child]->deadline_ms)
			break;
		heap_set(l, i, l->heap[child]);
		i = child;
	}
	heap_set(l, i, t);
}

void loop_timer_init(struct loop_timer *t, loop_timer_cb cb, void *arg)
{
	t->deadline_ms = 0;
	t->heap_idx = -1;
	t->cb = cb;
	t->arg = arg;
}

/*
 * Arming cannot report failure (void contract); the only failure is growing
 * the heap, which is treated like any other allocation failure on the data
 * path of a daemon: logged, and the timer stays disarmed.
 */
void loop_timer_arm(struct loop *l, struct loop_timer *t, uint64_t after_ms)
{
	t->deadline_ms = l->now_ms + after_ms;
	if (t->heap_idx >= 0) {
		heap_up(l, t->heap_idx);
		heap_down(l, t->heap_idx);
		return;
	}
	if (l->heap_len == l->heap_cap) {
		int cap = l->heap_cap ? l->heap_cap * 2 : 64;
		struct loop_timer **h = realloc(l->heap, cap * sizeof(*h));

		if (!h) {
			log_error("loop: out of memory arming a timer");
			return;
		}
		l->heap = h;
		l->heap_cap = cap;
	}
	heap_set(l, l->heap_len++, t);
	heap_up(l, t->heap_idx);
}

void loop_timer_disarm(struct loop *l, struct loop_timer *t)
{
	int i = t->heap_idx;
	struct loop_timer *last;

	if (i < 0)
		return;
	t->heap_idx = -1;
	last = l->heap[--l->heap_len];
	if (last == t)
		return;
	heap_set(l, i, last);
	heap_up(l, i);
	heap_down(l, last->heap_idx);
}

/*
 * Fires timers that were due at the start of this pass. A callback re-arming
 * with 0 ms would otherwise keep this loop busy forever; capping the pass at
 * the heap size it started with defers such timers to the next turn.
 */
static void run_timers(struct loop *l)
{
	int budget = l->heap_len;

	while (budget-- > 0 && l->heap_len > 0 &&
	       l->heap[0]->deadline_ms <= l->now_ms) {
		struct loop_timer *t = l->heap[0];

		loop_timer_disarm(l, t);
		t->cb(l, t); /* may free or re-arm t */
	}
}

static int next_timeout(struct loop *l)
{
	uint64_t d;

	if (l->heap_len == 0)
		return -1;
	d = l->heap[0]->deadline_ms;
	if (d <= l->now_ms)
		return 0;
	d -= l->now_ms;
	return d > 60000 ? 60000 : (int)d;
}

void loop_set_before_sleep(struct loop *l, loop_hook_cb cb, void *arg)
{
	l->before_sleep = cb;
	l->before_sleep_arg = arg;
}

void loop_set_wake_hook(struct loop *l, loop_hook_cb cb, void *arg)
{
	l->wake_hook = cb;
	l->wake_arg = arg;
}

void loop_defer_free(struct loop *l, void *ptr, void (*fn)(void *))
{
	if (l->ndeferred == l->deferred_cap) {
		size_t cap = l->deferred_cap ? l->deferred_cap * 2 : 32;
		struct loop_deferred *d =
			realloc(l->deferred, cap * sizeof(*d));

		if (!d) {
			/* Leaking beats freeing memory a caller may still touch. */
			log_error(
				"loop: out of memory deferring a free; leaking %p",
				ptr);
			return;
		}
		l->deferred = d;
		l->deferred_cap = cap;
	}
	l->deferred[l->ndeferred++] = (struct loop_deferred){ ptr, fn };
}

static void dispatch(struct loop *l)
{
	/* Stamp first: every io in the batch is alive before any callback runs. */
	l->turn++;
	for (int i = 0; i < l->nevents; i++)
		((struct loop_io *)l->events[i].data.ptr)->gen = l->turn;

	l->dispatching = true;
	for (l->cur = 0; l->cur < l->nevents; l->cur++) {
		struct loop_io *io = l->events[l->cur].data.ptr;
		uint32_t ev;

		if (!io)
			continue; /* stopped earlier in this turn */
		/* Interest may have shrunk since the batch was fetched. */
		ev = l->events[l->cur].events &
		     (io->events | EPOLLERR | EPOLLHUP);
		if (ev)
			io->cb(l, io, ev);
	}
	l->dispatching = false;
	l->nevents = 0;
}

int loop_run(struct loop *l)
{
	int err = 0;

	while (!__atomic_load_n(&l->stop, __ATOMIC_ACQUIRE)) {
		int n;

		l->now_ms = clock_ms();
		if (l->before_sleep)
			l->before_sleep(l, l->before_sleep_arg);
		if (__atomic_load_n(&l->stop, __ATOMIC_ACQUIRE))
			break;
		n = epoll_wait(l->epfd, l->events, LOOP_MAX_EVENTS,
			       next_timeout(l));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			err = -errno;
			log_error("loop: epoll_wait: %s", strerror(errno));
			break;
		}
		l->now_ms = clock_ms();
		l->nevents = n;
		dispatch(l);
		run_timers(l);
		run_deferred(l);
	}
	run_deferred(l);
	__atomic_store_n(&l->stop, 0, __ATOMIC_RELEASE);
	return err;
}

void loop_wake(struct loop *l)
{
	uint64_t one = 1;

	/* EAGAIN means the counter is saturated: a wake is pending anyway. */
	if (write(l->wake_io.fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("loop: eventfd write: %s", strerror(errno));
}

void loop_stop(struct loop *l)
{
	__atomic_store_n(&l->stop, 1, __ATOMIC_RELEASE);
	loop_wake(l);
}
