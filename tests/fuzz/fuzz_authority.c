// SPDX-License-Identifier: Apache-2.0
/*
 * addr_parse_ipport(), the parser of the HBONE CONNECT :authority a peer
 * sends. Properties, for any bytes (cut at the first NUL, as the C string
 * the HTTP/2 layer hands over):
 *  - it accepts exactly the canonical "a.b.c.d:port" strings: decimal
 *    octets 0..255 without leading zeros, port 1..65535 without leading
 *    zeros, nothing before or after. Checked both ways against a reference
 *    grammar written here, and by formatting what it parsed
 *    (inet_ntop + port), which must give the input back byte for byte;
 *  - on refusal *out is untouched.
 */
#include <arpa/inet.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"

/* Decimal number without leading zeros ("0" itself is fine), at most max. */
static const char *dec(const char *p, unsigned long max, bool zero_ok,
		       unsigned long *v)
{
	const char *start = p;

	*v = 0;
	while (*p >= '0' && *p <= '9') {
		if (p - start >= 5)
			return NULL;
		*v = *v * 10 + (unsigned long)(*p - '0');
		p++;
	}
	if (p == start || (*start == '0' && p - start > 1) || *v > max ||
	    (!zero_ok && *v == 0))
		return NULL;
	return p;
}

/* The reference grammar: octet "." octet "." octet "." octet ":" port. */
static bool canonical(const char *s)
{
	unsigned long v;

	for (int i = 0; i < 4; i++) {
		s = dec(s, 255, true, &v);
		if (!s || *s != (i < 3 ? '.' : ':'))
			return false;
		s++;
	}
	s = dec(s, 65535, false, &v);
	return s && !*s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sockaddr_in a, before;
	char ip[INET_ADDRSTRLEN], back[ADDR_STR_MAX + 8];
	char *s;
	bool want;
	int rc;

	if (size > 4096)
		return 0;
	/* Exactly size + 1 bytes, so ASan sees any read past the string. */
	s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	memset(&a, 0xa5, sizeof(a));
	before = a;

	rc = addr_parse_ipport(s, &a);
	want = canonical(s);
	if ((rc == 0) != want) {
		fprintf(stderr,
			"addr_parse_ipport(\"%s\") = %d, but the string is "
			"%scanonical\n",
			s, rc, want ? "" : "not ");
		abort();
	}
	if (rc) {
		if (memcmp(&a, &before, sizeof(a)))
			abort(); /* *out written on refusal */
		free(s);
		return 0;
	}
	if (a.sin_family != AF_INET || !a.sin_port ||
	    !inet_ntop(AF_INET, &a.sin_addr, ip, sizeof(ip)))
		abort();
	snprintf(back, sizeof(back), "%s:%u", ip, ntohs(a.sin_port));
	if (strcmp(back, s)) {
		fprintf(stderr, "\"%s\" parsed, but formats back as \"%s\"\n",
			s, back);
		abort();
	}
	free(s);
	return 0;
}
