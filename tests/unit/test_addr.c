// SPDX-License-Identifier: Apache-2.0
/*
 * addr_parse_ipport(), the parser of the HBONE CONNECT :authority: a truth
 * table of what it accepts (exactly the canonical "a.b.c.d:port") and what
 * it refuses, with *out untouched on refusal.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

#include "addr.h"
#include "tap.h"

static const struct {
	const char *s;
	const char *ip; /* NULL: refused */
	unsigned port;
} table[] = {
	{ "198.18.1.10:8080", "198.18.1.10", 8080 },
	{ "0.0.0.0:1", "0.0.0.0", 1 },
	{ "255.255.255.255:65535", "255.255.255.255", 65535 },
	{ "1.2.3.4:0", NULL, 0 },
	{ "1.2.3.4:65536", NULL, 0 },
	{ "1.2.3.4:123456", NULL, 0 },
	{ "1.2.3.4:", NULL, 0 },
	{ ":80", NULL, 0 },
	{ "1.2.3.4", NULL, 0 },
	{ "01.2.3.4:80", NULL, 0 },
	{ "256.1.1.1:80", NULL, 0 },
	{ "1.2.3:80", NULL, 0 },
	{ "[::1]:80", NULL, 0 },
	{ "1.2.3.4:+80", NULL, 0 },
	{ "1.2.3.4: 80", NULL, 0 },
	{ " 1.2.3.4:80", NULL, 0 },
	{ "1.2.3.4:80 ", NULL, 0 },
	{ "host.example:80", NULL, 0 },
	{ "1.2.3.4::80", NULL, 0 },
	/* Found by fuzz_authority (corpus/authority/crash-leading-zero-port*):
	 * a port with a leading zero was taken, so one address had many
	 * spellings. */
	{ "1.2.3.48:01", NULL, 0 },
	{ "198.18.1.10:080", NULL, 0 },
	{ "198.18.1.10:00080", NULL, 0 },
};

int main(void)
{
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		struct sockaddr_in a, before;
		char ip[INET_ADDRSTRLEN] = "";
		int rc;

		memset(&a, 0xa5, sizeof(a));
		before = a;
		rc = addr_parse_ipport(table[i].s, &a);
		if (table[i].ip) {
			inet_ntop(AF_INET, &a.sin_addr, ip, sizeof(ip));
			ok(rc == 0 && a.sin_family == AF_INET && strcmp(ip, table[i].ip) == 0 &&
				   ntohs(a.sin_port) == table[i].port,
			   "\"%s\" -> %s port %u", table[i].s, table[i].ip, table[i].port);
		} else {
			ok(rc == -EINVAL && memcmp(&a, &before, sizeof(a)) == 0,
			   "\"%s\" refused, *out untouched", table[i].s);
		}
	}
	return tap_done();
}
