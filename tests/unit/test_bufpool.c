// SPDX-License-Identifier: Apache-2.0
/* bufpool: reuse by exact size, the idle, depth and class bounds, threads. */
#include "bufpool.h"
#include "tap.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>

#define KiB 1024u

static void test_reuse(void)
{
	void *a = bufpool_get(128 * KiB), *b, *c;

	ok(a != NULL, "reuse: first get allocates");
	memset(a, 0xa5, 128 * KiB);
	bufpool_put(a, 128 * KiB);
	ok(bufpool_idle_bytes() == 128 * KiB, "reuse: put keeps it idle (%zu)",
	   bufpool_idle_bytes());
	b = bufpool_get(64 * KiB);
	ok(b != NULL && b != a, "reuse: another size does not take it");
	c = bufpool_get(128 * KiB);
	ok(c == a, "reuse: the same size gets the same buffer back");
	ok(bufpool_idle_bytes() == 0, "reuse: nothing idle after taking it");
	bufpool_put(b, 64 * KiB);
	bufpool_put(c, 128 * KiB);
	bufpool_put(NULL, 128 * KiB);
	ok(bufpool_idle_bytes() == 192 * KiB,
	   "reuse: two sizes idle, NULL ignored (%zu)", bufpool_idle_bytes());
	/* Last in, first out within a size. */
	a = bufpool_get(16);
	b = bufpool_get(16);
	bufpool_put(a, 16);
	bufpool_put(b, 16);
	ok(bufpool_get(16) == b && bufpool_get(16) == a,
	   "reuse: last given back, first taken");
	free(a);
	free(b);
	bufpool_trim();
	ok(bufpool_idle_bytes() == 0, "reuse: trim empties the pool");
}

static void test_bounds(void)
{
	enum { N = BUFPOOL_MAX_IDLE / (256 * KiB) + 3 };
	void *v[N];
	void *k[BUFPOOL_CLASSES + 1];
	size_t idle;

	for (int i = 0; i < N; i++)
		v[i] = bufpool_get(256 * KiB);
	for (int i = 0; i < N; i++)
		bufpool_put(v[i], 256 * KiB);
	ok(bufpool_idle_bytes() == BUFPOOL_MAX_IDLE,
	   "bounds: idle bytes stop at BUFPOOL_MAX_IDLE (%zu of %u given)",
	   bufpool_idle_bytes(), N * 256 * KiB);
	bufpool_trim();

	/* More of one size than a class holds. */
	{
		void *d[BUFPOOL_DEPTH + 1];

		for (int i = 0; i <= BUFPOOL_DEPTH; i++)
			d[i] = bufpool_get(64);
		for (int i = 0; i <= BUFPOOL_DEPTH; i++)
			bufpool_put(d[i], 64);
		ok(bufpool_idle_bytes() == BUFPOOL_DEPTH * 64,
		   "bounds: %d of one size kept, the next freed (%zu)",
		   BUFPOOL_DEPTH, bufpool_idle_bytes());
		bufpool_trim();
	}

	/* One buffer each of more sizes than there are classes. */
	for (int i = 0; i <= BUFPOOL_CLASSES; i++)
		k[i] = bufpool_get(1000 + i);
	for (int i = 0; i <= BUFPOOL_CLASSES; i++)
		bufpool_put(k[i], 1000 + i);
	idle = 0;
	for (int i = 0; i < BUFPOOL_CLASSES; i++)
		idle += 1000 + i;
	ok(bufpool_idle_bytes() == idle,
	   "bounds: %d sizes kept, the one beyond the classes freed (%zu)",
	   BUFPOOL_CLASSES, bufpool_idle_bytes());
	/* An emptied class is taken over by a new size. */
	free(bufpool_get(1000));
	k[0] = bufpool_get(5000);
	bufpool_put(k[0], 5000);
	ok(bufpool_get(5000) == k[0], "bounds: an empty class serves a new size");
	free(k[0]);
	bufpool_trim();
}

static void *other_thread(void *arg)
{
	void *mine = bufpool_get(32 * KiB);
	size_t *seen = arg;

	seen[0] = bufpool_idle_bytes(); /* the main thread's are not here */
	bufpool_put(mine, 32 * KiB);
	seen[1] = bufpool_idle_bytes();
	return NULL; /* the thread-exit hook frees `mine` */
}

static void test_threads(void)
{
	size_t seen[2] = {99, 99};
	pthread_t t;

	bufpool_put(bufpool_get(8 * KiB), 8 * KiB);
	ok(pthread_create(&t, NULL, other_thread, seen) == 0 &&
		   pthread_join(t, NULL) == 0,
	   "threads: second thread ran");
	ok(seen[0] == 0 && seen[1] == 32 * KiB,
	   "threads: each thread has its own pool (%zu, %zu)", seen[0],
	   seen[1]);
	ok(bufpool_idle_bytes() == 8 * KiB,
	   "threads: this thread's pool untouched (%zu)", bufpool_idle_bytes());
	bufpool_trim();
}

int main(void)
{
	test_reuse();
	test_bounds();
	test_threads();
	return tap_done();
}
