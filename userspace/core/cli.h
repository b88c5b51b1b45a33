/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Declarative command lines: an option table drives getopt_long and --help,
 * numbers are parsed strictly with range checks (xdp-tools params.h idea).
 */
#ifndef AMBIENTD_CLI_H
#define AMBIENTD_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct cli_opt {
	const char *name;  /* long name, without "--" */
	int key;           /* short letter or a value >= 256 */
	const char *arg;   /* argument name, NULL for a flag */
	const char *help;
};

/* Parse argv with the table; calls handle(key, optarg, ctx) per option.
 * handle returns 0 or a negative value to stop with an error. Returns the
 * index of the first non-option argument, or -1 on an error (printed). */
int cli_parse(int argc, char **argv, const struct cli_opt *opts,
	      int (*handle)(int key, const char *arg, void *ctx), void *ctx);
void cli_print_options(FILE *f, const struct cli_opt *opts);

/* Strict unsigned parse: whole string, base 10 (0x for hex), in [min,max]. */
int cli_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);
/*
 * "a.b.c.d:port" into ip (at least 16 bytes, dotted quad) and port
 * (1..65535), or "off" into ip "" and port 0. 0 or -EINVAL.
 */
int cli_parse_hostport(const char *s, char *ip, uint16_t *port);
/* "a.b.c.d" or "a.b.c.d/len" into network-order addr and prefix length. */
int cli_parse_cidr(const char *s, uint32_t *addr, uint8_t *prefixlen);

#endif
