// SPDX-License-Identifier: Apache-2.0
#include "srctrack.h"

#include <errno.h>
#include <stdlib.h>

static uint32_t key_of(uint32_t addr)
{
	return addr ? addr : 0xffffffffu;
}

static uint32_t hash(uint32_t k, uint32_t cap)
{
	k ^= k >> 16;
	k *= 0x7feb352du;
	k ^= k >> 15;
	return k & (cap - 1);
}

static struct srctrack_slot *find(const struct srctrack *t, uint32_t k)
{
	if (!t->cap)
		return NULL;
	for (uint32_t i = hash(k, t->cap);; i = (i + 1) & (t->cap - 1)) {
		if (t->slot[i].addr == k)
			return &t->slot[i];
		if (!t->slot[i].addr)
			return NULL;
	}
}

static int grow(struct srctrack *t)
{
	uint32_t cap = t->cap ? t->cap * 2 : 64;
	struct srctrack_slot *s = calloc(cap, sizeof(*s)), *old = t->slot;
	uint32_t old_cap = t->cap;

	if (!s)
		return -ENOMEM;
	t->slot = s;
	t->cap = cap;
	for (uint32_t i = 0; i < old_cap; i++) {
		uint32_t j;

		if (!old[i].addr)
			continue;
		for (j = hash(old[i].addr, cap); s[j].addr; j = (j + 1) & (cap - 1))
			;
		s[j] = old[i];
	}
	free(old);
	return 0;
}

int srctrack_take(struct srctrack *t, uint32_t addr, uint32_t limit)
{
	uint32_t k = key_of(addr), i;
	struct srctrack_slot *s = find(t, k);

	if (s) {
		if (s->n >= limit)
			return -EBUSY;
		s->n++;
		return 0;
	}
	if (!limit)
		return -EBUSY;
	/* At most half full: probes stay short. */
	if ((t->used + 1) * 2 > t->cap && grow(t))
		return -ENOMEM;
	for (i = hash(k, t->cap); t->slot[i].addr; i = (i + 1) & (t->cap - 1))
		;
	t->slot[i].addr = k;
	t->slot[i].n = 1;
	t->used++;
	return 0;
}

void srctrack_put(struct srctrack *t, uint32_t addr)
{
	struct srctrack_slot *s = find(t, key_of(addr));
	uint32_t i, j, mask = t->cap - 1;

	if (!s || --s->n)
		return;
	/* Backward-shift deletion keeps every probe chain unbroken. */
	i = (uint32_t)(s - t->slot);
	for (j = (i + 1) & mask; t->slot[j].addr; j = (j + 1) & mask) {
		uint32_t home = hash(t->slot[j].addr, t->cap);

		/* Move j into the hole at i unless its home lies in (i, j]. */
		if (((j - home) & mask) >= ((j - i) & mask)) {
			t->slot[i] = t->slot[j];
			i = j;
		}
	}
	t->slot[i].addr = 0;
	t->slot[i].n = 0;
	t->used--;
}

uint32_t srctrack_count(const struct srctrack *t, uint32_t addr)
{
	const struct srctrack_slot *s = find(t, key_of(addr));

	return s ? s->n : 0;
}

void srctrack_free(struct srctrack *t)
{
	free(t->slot);
	t->slot = NULL;
	t->cap = t->used = 0;
}
