// SPDX-License-Identifier: Apache-2.0
/* Event loop: timers, stale-event guard, deferred frees, cross-thread stop/wake. */
#include "loop.h"
#include "tap.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

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
	return n - 1; /* the DIR's own fd */
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- timers ---- */

struct rec_timer {
	struct loop_timer t;
	int id;
	uint64_t fired_at;
};

static int order[64];
static int norder;

static void rec_cb(struct loop *l, struct loop_timer *t)
{
	struct rec_timer *rt = t->arg;

	rt->fired_at = loop_now_ms(l);
	order[norder++] = rt->id;
}

static void stop_cb(struct loop *l, struct loop_timer *t)
{
	loop_stop(l);
}

static void test_timers_order(void)
{
	struct loop *l = loop_new();
	struct rec_timer rt[5];
	struct loop_timer stop;
	uint64_t t0;

	ok(l != NULL, "loop_new");
	norder = 0;
	for (int i = 0; i < 5; i++) {
		rt[i].id = i;
		rt[i].fired_at = 0;
		loop_timer_init(&rt[i].t, rec_cb, &rt[i]);
	}
	t0 = loop_now_ms(l);
	loop_timer_arm(l, &rt[0].t, 60);
	loop_timer_arm(l, &rt[1].t, 20);
	loop_timer_arm(l, &rt[2].t, 40);
	loop_timer_arm(l, &rt[3].t, 30); /* disarmed below */
	loop_timer_arm(l, &rt[4].t, 5);
	loop_timer_arm(l, &rt[4].t, 50); /* re-arm moves it later */
	loop_timer_disarm(l, &rt[3].t);
	ok(!loop_timer_armed(&rt[3].t) && loop_timer_armed(&rt[0].t),
	   "armed flags");
	loop_timer_init(&stop, stop_cb, NULL);
	loop_timer_arm(l, &stop, 100);
	ok(loop_run(l) == 0, "loop_run returns 0 after loop_stop");
	ok(norder == 4 && order[0] == 1 && order[1] == 2 && order[2] == 4 &&
		   order[3] == 0,
	   "timers fire in deadline order, disarmed one never (got %d: %d %d %d %d)",
	   norder, order[0], order[1], order[2], order[3]);
	ok(rt[1].fired_at >= t0 + 20 && rt[0].fired_at >= t0 + 60,
	   "timers do not fire early (%llu, %llu after start)",
	   (unsigned long long)(rt[1].fired_at - t0),
	   (unsigned long long)(rt[0].fired_at - t0));
	ok(loop_now_ms(l) - t0 < 1000, "and not very late");
	ok(!loop_timer_armed(&rt[0].t), "a fired timer is disarmed");
	loop_free(l);
}

/* Many timers with random deadlines, a third disarmed: order is by deadline. */
struct heap_timer {
	struct loop_timer t;
	uint64_t deadline;
	bool disarmed;
	bool fired;
};

static uint64_t last_deadline;
static bool heap_in_order = true;
static int heap_fired;

static void heap_cb(struct loop *l, struct loop_timer *t)
{
	struct heap_timer *h = t->arg;

	if (h->deadline < last_deadline)
		heap_in_order = false;
	last_deadline = h->deadline;
	h->fired = true;
	heap_fired++;
}

static void test_timers_heap(void)
{
	enum { N = 1000 };
	struct loop *l = loop_new();
	static struct heap_timer h[N];
	struct loop_timer stop;
	int expect = 0, wrong = 0;

	srand(7);
	for (int i = 0; i < N; i++) {
		loop_timer_init(&h[i].t, heap_cb, &h[i]);
		loop_timer_arm(l, &h[i].t, rand() % 40);
		h[i].deadline = h[i].t.deadline_ms;
		h[i].disarmed = h[i].fired = false;
	}
	for (int i = 0; i < N; i += 3) {
		loop_timer_disarm(l, &h[i].t);
		h[i].disarmed = true;
	}
	loop_timer_init(&stop, stop_cb, NULL);
	loop_timer_arm(l, &stop, 80);
	loop_run(l);
	for (int i = 0; i < N; i++) {
		expect += !h[i].disarmed;
		wrong += h[i].fired == h[i].disarmed;
	}
	ok(heap_fired == expect && wrong == 0,
	   "heap: %d of %d armed timers fired, %d wrong", heap_fired, expect,
	   wrong);
	ok(heap_in_order, "heap: fired in nondecreasing deadline order");
	loop_free(l);
}

/* ---- stale-event guard ---- */

struct sio {
	struct loop_io io;
	struct sio *other;
	int calls;
	bool free_other; /* free the other's memory right after stopping it */
	bool restart_other; /* stop and immediately re-register the other */
};

static int stale_calls;
static struct sio *first_called;

static void sio_cb(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct sio *s = io->arg;

	if (!stale_calls)
		first_called = s;
	stale_calls++;
	s->calls++;
	if (s->other) {
		struct sio *o = s->other;

		o->other = NULL;
		loop_io_stop(l, &o->io);
		if (s->restart_other)
			loop_io_update(l, &o->io, EPOLLIN);
		if (s->free_other) {
			close(o->io.fd);
			memset(o, 0xab,
			       sizeof(*o)); /* a use after this would crash */
			free(o);
		}
		s->other = NULL;
	}
	loop_stop(l); /* exactly one turn */
}

/*
 * Two readable ios in one epoll batch; whichever is dispatched first stops
 * (and maybe frees) the other. The other must not be called in that turn.
 */
static void test_stale_guard(bool free_other, bool restart_other,
			     const char *what)
{
	struct loop *l = loop_new();
	int a[2], b[2];
	struct sio *sa = calloc(1, sizeof(*sa)), *sb = calloc(1, sizeof(*sb));

	socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, a);
	socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, b);
	write(a[1], "x", 1);
	write(b[1], "x", 1);
	loop_io_init(&sa->io, a[0], sio_cb, sa);
	loop_io_init(&sb->io, b[0], sio_cb, sb);
	sa->other = sb;
	sb->other = sa;
	sa->free_other = sb->free_other = free_other;
	sa->restart_other = sb->restart_other = restart_other;
	ok(loop_io_update(l, &sa->io, EPOLLIN) == 0 &&
		   loop_io_update(l, &sb->io, EPOLLIN) == 0,
	   "%s: register two readable ios", what);
	stale_calls = 0;
	first_called = NULL;
	loop_run(l);
	ok(stale_calls == 1,
	   "%s: stopped io not dispatched in the same turn (%d calls)", what,
	   stale_calls);
	if (!free_other && restart_other) {
		/* The re-registered one still gets its event, in the next turn. */
		struct sio *second = first_called == sa ? sb : sa;

		loop_run(l);
		ok(second->calls == 1,
		   "%s: re-registered io dispatched next turn", what);
	}
	if (free_other) {
		struct sio *alive = first_called;

		loop_io_stop(l, &alive->io);
		close(alive->io.fd);
		free(alive);
	} else {
		loop_io_stop(l, &sa->io);
		loop_io_stop(l, &sb->io);
		close(a[0]);
		close(b[0]);
		free(sa);
		free(sb);
	}
	close(a[1]);
	close(b[1]);
	loop_free(l);
}

/* ---- interest 0 and level-triggered redelivery ---- */

struct cnt_io {
	struct loop_io io;
	int calls;
	uint32_t last;
};

static void cnt_cb(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct cnt_io *c = io->arg;

	c->calls++;
	c->last = events;
}

static void test_interest(void)
{
	struct loop *l = loop_new();
	struct loop_timer stop;
	struct cnt_io c = { 0 };
	int sp[2];

	socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sp);
	write(sp[1], "x", 1);
	close(sp[1]); /* HUP too */
	loop_io_init(&c.io, sp[0], cnt_cb, &c);
	loop_timer_init(&stop, stop_cb, NULL);

	ok(loop_io_update(l, &c.io, EPOLLIN) == 0 && c.io.active, "register");
	ok(loop_io_update(l, &c.io, 0) == 0 && !c.io.active,
	   "interest 0 unregisters");
	loop_timer_arm(l, &stop, 20);
	loop_run(l);
	ok(c.calls == 0, "no callbacks (not even HUP) with interest 0 (%d)",
	   c.calls);

	loop_io_update(l, &c.io, EPOLLIN);
	loop_timer_arm(l, &stop, 20);
	loop_run(l);
	ok(c.calls >= 2 && (c.last & EPOLLIN),
	   "level-triggered: unread data redelivered (%d)", c.calls);
	loop_io_stop(l, &c.io);
	close(sp[0]);
	loop_free(l);
}

/* ---- deferred free ---- */

struct dfr {
	struct loop_io io;
	int *freed_flag;
};

static int deferred_freed;
static int freed_seen_in_turn = -1;
static int turns_seen;

static void dfr_free(void *p)
{
	deferred_freed++;
	free(p);
}

static void dfr_cb(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct dfr *d = io->arg;

	loop_io_stop(l, io);
	close(io->fd);
	loop_defer_free(l, d, dfr_free);
	/* Still ours for the rest of the turn. */
	freed_seen_in_turn = deferred_freed;
	d->io.fd = -1;
}

static void dfr_hook(struct loop *l, void *arg)
{
	if (turns_seen++ == 1)
		loop_stop(l);
}

static void test_defer_free(void)
{
	struct loop *l = loop_new();
	struct dfr *d = calloc(1, sizeof(*d));
	int sp[2];

	socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sp);
	write(sp[1], "x", 1);
	loop_io_init(&d->io, sp[0], dfr_cb, d);
	loop_io_update(l, &d->io, EPOLLIN);
	loop_set_before_sleep(l, dfr_hook, NULL);
	loop_run(l);
	ok(freed_seen_in_turn == 0, "deferred free not run inside the turn");
	ok(deferred_freed == 1, "deferred free ran after the turn");
	ok(turns_seen == 2, "before-sleep hook runs once per turn (%d)",
	   turns_seen);
	close(sp[1]);
	loop_free(l);
}

/* ---- cross-thread stop and wake ---- */

static pthread_t loop_thread;
static int wake_hook_calls;
static bool wake_on_loop_thread;

static void wake_hook(struct loop *l, void *arg)
{
	/* Published by the release below: the test thread reads both after
	 * an acquire load of the count (ThreadSanitizer checks this). */
	wake_on_loop_thread = pthread_equal(pthread_self(), loop_thread);
	__atomic_fetch_add(&wake_hook_calls, 1, __ATOMIC_RELEASE);
}

static void *run_thread(void *arg)
{
	struct loop *l = arg;

	loop_run(l);
	return NULL;
}

static void test_cross_thread(void)
{
	struct loop *l = loop_new();
	uint64_t t0;

	loop_set_wake_hook(l, wake_hook, NULL);
	pthread_create(&loop_thread, NULL, run_thread, l);
	usleep(30000);
	loop_wake(l);
	for (int i = 0;
	     i < 200 && !__atomic_load_n(&wake_hook_calls, __ATOMIC_ACQUIRE);
	     i++)
		usleep(5000);
	ok(__atomic_load_n(&wake_hook_calls, __ATOMIC_ACQUIRE) >= 1 &&
	   wake_on_loop_thread,
	   "loop_wake from another thread runs the wake hook on the loop thread");
	t0 = mono_ms();
	loop_stop(l);
	pthread_join(loop_thread, NULL);
	ok(mono_ms() - t0 < 1000,
	   "loop_stop from another thread ends loop_run (%llu ms)",
	   (unsigned long long)(mono_ms() - t0));
	/* A stop issued before loop_run is not lost. */
	loop_stop(l);
	ok(loop_run(l) == 0, "stop before run: run returns at once");
	loop_free(l);
}

static int orphans_ended;

static void orphan_end(struct loop_orphan *o)
{
	orphans_ended++;
	free(o);
}

/* What outlives its owner is ended by loop_free(); what was taken back
 * (loop_orphan_del) is not. */
static void test_orphans(void)
{
	struct loop *l = loop_new();
	struct loop_orphan *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b)),
			   *c = calloc(1, sizeof(*c));

	loop_orphan_add(l, a, orphan_end);
	loop_orphan_add(l, b, orphan_end);
	loop_orphan_add(l, c, orphan_end);
	loop_orphan_del(l, b);
	free(b);
	loop_free(l);
	ok(orphans_ended == 2, "loop_free ends the orphans still registered (%d of 2)",
	   orphans_ended);
}

int main(void)
{
	int fds0 = count_fds();

	test_timers_order();
	test_timers_heap();
	test_stale_guard(false, false, "stop");
	test_stale_guard(true, false, "stop+free");
	test_stale_guard(false, true, "stop+restart");
	test_interest();
	test_defer_free();
	test_cross_thread();
	test_orphans();
	ok(count_fds() == fds0, "no fd leaked (%d -> %d)", fds0, count_fds());
	return tap_done();
}
