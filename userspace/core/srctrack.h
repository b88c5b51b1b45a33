/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Counting what each source address holds open (pending connects, TLS
 * handshakes), so one caller cannot take a listener's whole budget. An
 * exact hash table (linear probing, backward-shift deletion) owned by one
 * thread; memory grows with the number of distinct sources holding
 * something, up to the owner's overall cap.
 */
#ifndef AMBIENTD_SRCTRACK_H
#define AMBIENTD_SRCTRACK_H

#include <stdint.h>

struct srctrack {
	struct srctrack_slot {
		uint32_t addr; /* network order; 0 marks a free slot */
		uint32_t n;
	} *slot;
	uint32_t cap; /* slots, a power of two */
	uint32_t used;
};

/*
 * One more for addr if it holds fewer than `limit`: 0, or -EBUSY (at the
 * limit), -ENOMEM. addr 0 (no address) is counted under 0.0.0.0's stand-in
 * 0xffffffff.
 */
int srctrack_take(struct srctrack *t, uint32_t addr, uint32_t limit);
/* One less for addr (which must have been taken). */
void srctrack_put(struct srctrack *t, uint32_t addr);
/* How many addr holds now. */
uint32_t srctrack_count(const struct srctrack *t, uint32_t addr);
void srctrack_free(struct srctrack *t);

#endif
