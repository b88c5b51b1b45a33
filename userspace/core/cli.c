// SPDX-License-Identifier: Apache-2.0
#include "cli.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

int cli_parse(int argc, char **argv, const struct cli_opt *opts,
	      int (*handle)(int key, const char *arg, void *ctx), void *ctx)
{
	struct option lopts[64];
	char shorts[128];
	size_t n = 0, s = 0;
	int c;

	shorts[s++] = '+'; /* stop at the first non-option (subcommands) */
	for (; opts[n].name && n < 63; n++) {
		lopts[n] = (struct option){ opts[n].name,
					    opts[n].arg ? required_argument : no_argument,
					    NULL, opts[n].key };
		if (opts[n].key < 256 && s + 3 < sizeof(shorts)) {
			shorts[s++] = (char)opts[n].key;
			if (opts[n].arg)
				shorts[s++] = ':';
		}
	}
	lopts[n] = (struct option){ 0 };
	shorts[s] = '\0';
	optind = 1;
	while ((c = getopt_long(argc, argv, shorts, lopts, NULL)) != -1) {
		if (c == '?' || c == ':')
			return -1;
		if (handle(c, optarg, ctx) < 0)
			return -1;
	}
	return optind;
}

void cli_print_options(FILE *f, const struct cli_opt *opts)
{
	for (; opts->name; opts++) {
		char left[64];

		if (opts->key < 256)
			snprintf(left, sizeof(left), "-%c, --%s%s%s", opts->key,
				 opts->name, opts->arg ? " " : "",
				 opts->arg ? opts->arg : "");
		else
			snprintf(left, sizeof(left), "    --%s%s%s", opts->name,
				 opts->arg ? " " : "", opts->arg ? opts->arg : "");
		fprintf(f, "  %-28s %s\n", left, opts->help);
	}
}

int cli_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!s || !*s || *s == '-' || *s == '+' || *s == ' ')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || *end)
		return -EINVAL;
	if (v < min || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

int cli_parse_cidr(const char *s, uint32_t *addr, uint8_t *prefixlen)
{
	char buf[INET_ADDRSTRLEN + 4];
	const char *slash = strchr(s, '/');
	struct in_addr in;
	uint64_t len = 32;

	if (strlen(s) >= sizeof(buf))
		return -EINVAL;
	snprintf(buf, sizeof(buf), "%.*s", slash ? (int)(slash - s) : (int)strlen(s), s);
	if (inet_pton(AF_INET, buf, &in) != 1)
		return -EINVAL;
	if (slash && cli_parse_u64(slash + 1, 0, 32, &len))
		return -EINVAL;
	*addr = in.s_addr;
	*prefixlen = (uint8_t)len;
	/* Keep the trie key canonical: zero the host bits. */
	if (len < 32)
		*addr &= htonl(len ? ~0u << (32 - len) : 0);
	return 0;
}

int cli_parse_hostport(const char *s, char *ip, uint16_t *port)
{
	const char *colon = strrchr(s, ':');
	struct in_addr a;
	uint64_t p;
	char buf[16];

	if (strcmp(s, "off") == 0) {
		ip[0] = '\0';
		*port = 0;
		return 0;
	}
	if (!colon || colon == s || (size_t)(colon - s) >= sizeof(buf) ||
	    cli_parse_u64(colon + 1, 1, 65535, &p))
		return -EINVAL;
	memcpy(buf, s, (size_t)(colon - s));
	buf[colon - s] = '\0';
	if (inet_pton(AF_INET, buf, &a) != 1)
		return -EINVAL;
	strcpy(ip, buf);
	*port = (uint16_t)p;
	return 0;
}
