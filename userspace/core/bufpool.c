// SPDX-License-Identifier: Apache-2.0
#include "bufpool.h"

#include "log.h"

#include <pthread.h>
#include <stdlib.h>

/*
 * The idle buffers of one size, as a stack of pointers kept here rather
 * than a list threaded through the buffers: taking and giving back touch
 * only this (hot) array, never a buffer's cold first cache line.
 */
struct class {
	size_t size; /* meaningful while n > 0 */
	unsigned int n;
	void *idle[BUFPOOL_DEPTH];
};

static __thread struct class classes[BUFPOOL_CLASSES];
static __thread size_t idle_bytes;

static pthread_key_t exit_key;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;

static void thread_exit(void *unused)
{
	(void)unused;
	bufpool_trim();
}

static void exit_key_create(void)
{
	if (pthread_key_create(&exit_key, thread_exit))
		log_warn("bufpool: no thread-exit hook; idle buffers of "
			 "exiting threads are not freed");
}

void *bufpool_get(size_t size)
{
	for (int i = 0; i < BUFPOOL_CLASSES; i++) {
		struct class *k = &classes[i];

		if (k->n && k->size == size) {
			idle_bytes -= size;
			return k->idle[--k->n];
		}
	}
	return malloc(size ? size : 1);
}

void bufpool_put(void *p, size_t size)
{
	struct class *k = NULL;

	if (!p)
		return;
	if (idle_bytes + size > BUFPOOL_MAX_IDLE)
		goto release;
	for (int i = 0; i < BUFPOOL_CLASSES; i++) {
		if (classes[i].n && classes[i].size == size) {
			k = &classes[i];
			break;
		}
		if (!k && !classes[i].n)
			k = &classes[i]; /* an empty slot, if no class has the size */
	}
	if (!k || k->n == BUFPOOL_DEPTH)
		goto release;
	if (!k->n) {
		pthread_once(&exit_once, exit_key_create);
		/* Any non-NULL value makes the thread-exit hook run. */
		pthread_setspecific(exit_key, classes);
		k->size = size;
	}
	k->idle[k->n++] = p;
	idle_bytes += size;
	return;
release:
	free(p);
}

void bufpool_trim(void)
{
	for (int i = 0; i < BUFPOOL_CLASSES; i++) {
		struct class *k = &classes[i];

		while (k->n)
			free(k->idle[--k->n]);
	}
	idle_bytes = 0;
}

size_t bufpool_idle_bytes(void)
{
	return idle_bytes;
}
