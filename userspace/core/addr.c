// SPDX-License-Identifier: Apache-2.0
#include "addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

int addr_parse_ipport(const char *s, struct sockaddr_in *out)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	char ip[INET_ADDRSTRLEN];
	const char *colon = strrchr(s, ':');
	unsigned long port = 0;
	const char *p;

	/* A leading zero ("80" spelled "080") is refused: one address has
	 * one spelling, so what we log and match is what the peer sent. */
	if (!colon || colon == s || (size_t)(colon - s) >= sizeof(ip) ||
	    !colon[1] || colon[1] == '0')
		return -EINVAL;
	/* At most 5 digits: no overflow, no sign, no blanks (strtoul would
	 * take all three). */
	for (p = colon + 1; *p; p++) {
		if (*p < '0' || *p > '9' || p - colon > 5)
			return -EINVAL;
		port = port * 10 + (unsigned long)(*p - '0');
	}
	if (port == 0 || port > 65535)
		return -EINVAL;
	memcpy(ip, s, (size_t)(colon - s));
	ip[colon - s] = '\0';
	if (inet_pton(AF_INET, ip, &a.sin_addr) != 1)
		return -EINVAL;
	a.sin_port = htons((uint16_t)port);
	*out = a;
	return 0;
}
