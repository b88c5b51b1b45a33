// SPDX-License-Identifier: Apache-2.0
/*
 * http_parse_request(), the one parser of the operator ports (15000,
 * 15020, 15021: any pod or host that routes to the node reaches the last
 * two). Input: byte 0 picks the size bound (8192 as the daemon, 100, 1000,
 * 65536); the rest is what a client sends on one connection.
 *
 * Requests are parsed one after another the way the server does
 * (pipelining: the next request starts where the previous one ended), each
 * in a buffer of exactly the bytes left, so reads past them are caught.
 * Properties of every call:
 *  - > 0: within the bytes given and the bound; the request's strings lie
 *    inside the request, NUL-terminated there, and hold only what the RFC
 *    allows (method and field names are tokens, no CR/LF/NUL/DEL in the
 *    target or values, the path starts with '/'); the body is the
 *    Content-Length bytes right after the head;
 *  - 0: nothing written; *need is 0 or the exact total length (> len);
 *  - < 0: one of the documented statuses, with a reason;
 *  - streaming: the server parses whatever has arrived, so a prefix of a
 *    complete request is never refused, and the same request parses to
 *    the same length once all of it is there.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "httpd.h"

#define FUZZ_MAX_INPUT (64 * 1024)

static bool tchars(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!strchr("!#$%&'*+-.^_`|~", *s) &&
		    !((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z') ||
		      (*s >= 'A' && *s <= 'Z')))
			return false;
	return true;
}

static bool no_controls(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 ? *s != '\t' : *s == 0x7f)
			return false;
	return true;
}

/* s is a NUL-terminated string that starts and ends inside [lo, hi). */
static bool inside(const char *s, const char *lo, const char *hi)
{
	return s >= lo && s < hi && memchr(s, '\0', (size_t)(hi - s));
}

static void check_request(const struct http_req *req, const char *buf, size_t n)
{
	const char *end = buf + n;
	char val[256];

	if (!inside(req->method_name, buf, end) || !tchars(req->method_name) ||
	    !inside(req->path, buf, end) || req->path[0] != '/' ||
	    !no_controls(req->path) || req->minor < 0 || req->minor > 9 ||
	    req->n_headers > HTTPD_MAX_HEADERS)
		abort();
	if (*req->query &&
	    (!inside(req->query, buf, end) || !no_controls(req->query)))
		abort();
	for (size_t i = 0; i < req->n_headers; i++) {
		const char *v = req->headers[i].value;

		if (!inside(req->headers[i].name, buf, end) ||
		    !tchars(req->headers[i].name) || !inside(v, buf, end) ||
		    !no_controls(v) ||
		    (*v &&
		     (v[0] == ' ' || v[0] == '\t' || v[strlen(v) - 1] == ' ' ||
		      v[strlen(v) - 1] == '\t')))
			abort();
	}
	if (req->body_len) {
		if (req->body < buf || req->body + req->body_len != end)
			abort(); /* the body ends the request */
		(void)((volatile const char *)req->body)[req->body_len - 1];
	}
	/* What the handlers use. */
	(void)http_req_header(req, "host");
	for (const char *name = "format"; name;
	     name = name[0] == 'f' ? "level" : NULL) {
		int rc;

		memset(val, 'x', sizeof(val));
		rc = http_query_param(req, name, val, sizeof(val));
		if ((rc && rc != -ENOENT && rc != -EINVAL) ||
		    !memchr(val, 0, sizeof(val)))
			abort();
	}
}

/* Parse a fresh copy of in[0, len): the result, and the request checked. */
static ssize_t parse(const char *in, size_t len, size_t max, size_t *need)
{
	char *buf = malloc(len + 1);
	struct http_req req;
	const char *why = NULL;
	ssize_t rc;

	if (!buf)
		abort();
	memcpy(buf, in, len);
	buf[len] = 'Z'; /* not ours to touch: a guard byte */
	rc = http_parse_request(buf, len, max, &req, need, &why);
	if (buf[len] != 'Z')
		abort();
	if (rc > 0) {
		if ((size_t)rc > len)
			abort();
		check_request(&req, buf, (size_t)rc);
	} else if (rc == 0) {
		if (memcmp(buf, in, len) || (*need && *need <= len))
			abort();
	} else if ((rc != -400 && rc != -413 && rc != -414 && rc != -431 &&
		    rc != -501 && rc != -505) ||
		   !why || !*why) {
		abort();
	}
	free(buf);
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t maxes[] = {HTTPD_DEFAULT_MAX_REQUEST, 100, 1000,
				       65536};
	const char *in = (const char *)data + 1;
	size_t len, max, need;
	ssize_t rc;

	if (size < 1 || size > FUZZ_MAX_INPUT)
		return 0;
	max = maxes[data[0] & 3];
	len = size - 1;
	for (int round = 0; round < 8 && len; round++) {
		rc = parse(in, len, max, &need);
		if (rc <= 0)
			break;
		/* A request whose bytes arrive in pieces: every prefix is
		 * incomplete (never an error), and more bytes after it do not
		 * change where it ends (checked by the next round). */
		{
			size_t cuts[3] = {(size_t)rc - 1, (size_t)rc / 2,
					  data[0] % (size_t)rc};

			for (int i = 0; i < 3; i++) {
				size_t pneed;

				if (parse(in, cuts[i], max, &pneed) != 0 ||
				    (pneed && pneed != (size_t)rc)) {
					fprintf(stderr,
						"a %zu-byte prefix of a "
						"%zd-byte request is not "
						"\"incomplete\"\n",
						cuts[i], rc);
					abort();
				}
			}
		}
		in += rc;
		len -= (size_t)rc;
	}
	return 0;
}
