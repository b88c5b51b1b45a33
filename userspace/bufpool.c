// SPDX-License-Identifier: Apache-2.0
#include "bufpool.h"

#include "log.h"

#include <pthread.h>
#include <stdlib.h>

struct idle {
	struct idle *next; /* stored in the idle buffer itself */
};

struct class {
	size_t size; /* 0: slot unused */
	struct idle *head;
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
		struct idle *b = k->head;

		if (k->size != size || !b)
			continue;
		k->head = b->next;
		idle_bytes -= size;
		return b;
	}
	return malloc(size < sizeof(struct idle) ? sizeof(struct idle) : size);
}

void bufpool_put(void *p, size_t size)
{
	struct class *k = NULL;
	struct idle *b = p;

	if (!p)
		return;
	if (idle_bytes + size > BUFPOOL_MAX_IDLE)
		goto release;
	for (int i = 0; i < BUFPOOL_CLASSES; i++) {
		if (classes[i].size == size) {
			k = &classes[i];
			break;
		}
		if (!k && !classes[i].head)
			k = &classes[i]; /* a free (or empty) slot to reuse */
	}
	if (!k)
		goto release;
	if (k->size != size && !k->head) {
		pthread_once(&exit_once, exit_key_create);
		/* Any non-NULL value makes the thread-exit hook run. */
		pthread_setspecific(exit_key, classes);
		k->size = size;
	}
	b->next = k->head;
	k->head = b;
	idle_bytes += size;
	return;
release:
	free(p);
}

void bufpool_trim(void)
{
	for (int i = 0; i < BUFPOOL_CLASSES; i++) {
		struct class *k = &classes[i];

		while (k->head) {
			struct idle *b = k->head;

			k->head = b->next;
			free(b);
		}
		k->size = 0;
	}
	idle_bytes = 0;
}

size_t bufpool_idle_bytes(void)
{
	return idle_bytes;
}
