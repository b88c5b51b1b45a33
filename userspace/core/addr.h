/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Socket addresses as text: the one parser for "ip:port" strings a peer
 * sends (the HBONE CONNECT :authority) and the one formatter for logs.
 */
#ifndef AMBIENTD_ADDR_H
#define AMBIENTD_ADDR_H

#include <netinet/in.h>

/* Room for "a.b.c.d:ppppp" and its NUL. */
#define ADDR_STR_MAX 24

/*
 * Parse "a.b.c.d:port" strictly (dotted quad, port 1..65535 in decimal,
 * nothing before or after) into *out. 0 or -EINVAL (*out untouched).
 */
int addr_parse_ipport(const char *s, struct sockaddr_in *out);

#endif
