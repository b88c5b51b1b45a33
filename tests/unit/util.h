/* SPDX-License-Identifier: Apache-2.0 */
/* Small helpers shared by the unit tests. */
#ifndef AMBIENTD_TEST_UTIL_H
#define AMBIENTD_TEST_UTIL_H

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "loop.h"

/* Dotted IPv4 to network order; aborts on a typo in the test itself. */
static inline uint32_t ip(const char *s)
{
	struct in_addr a;

	if (inet_pton(AF_INET, s, &a) != 1)
		abort();
	return a.s_addr;
}

/* Both non-NULL and equal. */
static inline bool streq(const char *a, const char *b)
{
	return a && b && !strcmp(a, b);
}

static inline void util_stop_cb(struct loop *l, struct loop_timer *t)
{
	loop_stop(l);
}

/* Run loop l for ms (lets closes and deferred frees settle). */
static inline void loop_spin(struct loop *l, uint64_t ms)
{
	struct loop_timer t;

	loop_timer_init(&t, util_stop_cb, NULL);
	loop_timer_arm(l, &t, ms);
	loop_run(l);
	loop_timer_disarm(l, &t);
}

#endif
