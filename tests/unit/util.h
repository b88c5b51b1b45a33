/* SPDX-License-Identifier: Apache-2.0 */
/* Small helpers shared by the unit tests that handle addresses and names. */
#ifndef AMBIENTD_TEST_UTIL_H
#define AMBIENTD_TEST_UTIL_H

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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

#endif
