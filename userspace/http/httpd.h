/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A small HTTP/1.1 server on the event loop (loop.h), for the daemon's
 * operator ports: 15020 metrics, 15021 readiness, 15000 admin. Not a web
 * server: requests are small, handlers answer synchronously, bodies are
 * short and responses are built whole in memory.
 *
 * What it does:
 *  - origin-form targets only ("/path?query"); routes match the path
 *    exactly; unknown path 404, known path with another method 405 (with
 *    an Allow header); HEAD is served wherever GET is.
 *  - keep-alive (HTTP/1.1 default, HTTP/1.0 with "Connection: keep-alive")
 *    and pipelining: requests are answered in order, the next one is parsed
 *    only once the previous response is fully written, so a connection
 *    holds at most one response.
 *  - one parser, http_parse_request(), a pure function over a buffer: the
 *    connection code never looks into a request itself.
 *  - bounded (every peer is hostile; these ports listen on node addresses):
 *    the request head plus body must fit opts.max_request bytes (431 for a
 *    head, 413 for a body that cannot fit), at most HTTPD_MAX_HEADERS header
 *    lines; at most opts.max_conns connections, of which opts.max_per_source
 *    from one address and the last opts.reserved_local only for local
 *    callers (loopback, or the node calling its own address: kubelet's
 *    probes), so remote abusers cannot lock out readiness; more are
 *    accepted and closed at once and counted.
 *  - deadlines, none of which a trickling peer can extend: a request must
 *    arrive whole within opts.head_ms of its first byte (408), a response
 *    must be taken within opts.write_ms, and a connection without a request
 *    in progress is closed after opts.idle_ms. Bodies need Content-Length
 *    (Transfer-Encoding: 501).
 *  - garbage gets a 400 and the connection is closed; an error response is
 *    followed by a lingering close (read and discard until the peer's FIN
 *    or a short timeout) so the peer reads the answer instead of a RST.
 *  - fd exhaustion on accept backs off (accept.h).
 *
 * Threading: a server and its connections belong to the thread of its loop.
 */
#ifndef AMBIENTD_HTTPD_H
#define AMBIENTD_HTTPD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "sbuf.h"

struct loop;
struct httpd;

enum http_method {
	HTTP_GET = 1 << 0,
	HTTP_HEAD = 1 << 1,
	HTTP_POST = 1 << 2,
	HTTP_PUT = 1 << 3,
	HTTP_DELETE = 1 << 4,
	HTTP_OPTIONS = 1 << 5,
	HTTP_PATCH = 1 << 6,
};

#define HTTPD_MAX_HEADERS	      64
#define HTTPD_DEFAULT_MAX_REQUEST     8192
#define HTTPD_DEFAULT_MAX_CONNS	      64
#define HTTPD_DEFAULT_MAX_PER_SOURCE  8
#define HTTPD_DEFAULT_RESERVED_LOCAL  8
#define HTTPD_DEFAULT_IDLE_MS	      30000
#define HTTPD_DEFAULT_HEAD_MS	      10000
#define HTTPD_DEFAULT_WRITE_MS	      30000

/* A parsed request; every string is NUL-terminated and valid only during
 * the handler call. */
struct http_req {
	enum http_method method;
	const char *method_name;
	const char *path;  /* target up to '?' (not percent-decoded) */
	const char *query; /* after '?', "" when none */
	int minor;	   /* HTTP/1.<minor> */
	const char *body;  /* Content-Length bytes, or "" (see httpd_handler) */
	size_t body_len;
	struct {
		const char *name;  /* as sent */
		const char *value; /* surrounding blanks trimmed */
	} headers[HTTPD_MAX_HEADERS];
	size_t n_headers;
};

/* A response under construction; the handler fills it. */
struct http_rsp {
	int status;	  /* default 200 */
	const char *type; /* Content-Type; default text/plain; charset=utf-8 */
	char extra[256];  /* more header lines, each ending in \r\n */
	struct sbuf body;
	bool close; /* close the connection after this response */
};

/* Handlers may read req->body as a NUL-terminated string too. */
typedef void (*httpd_handler)(void *arg, const struct http_req *req,
			      struct http_rsp *rsp);

struct httpd_route {
	const char *path; /* exact match; NULL ends the table */
	unsigned methods; /* enum http_method bits; GET implies HEAD */
	httpd_handler fn;
};

struct httpd_opts {
	const struct httpd_route
	    *routes;	     /* borrowed, must outlive the server */
	void *arg;	     /* passed to every handler */
	size_t max_request;  /* head + body; 0: HTTPD_DEFAULT_MAX_REQUEST */
	unsigned max_conns;  /* 0: HTTPD_DEFAULT_MAX_CONNS */
	unsigned max_per_source; /* 0: HTTPD_DEFAULT_MAX_PER_SOURCE */
	unsigned reserved_local; /* 0: HTTPD_DEFAULT_RESERVED_LOCAL (capped
				    at max_conns - 1) */
	uint32_t idle_ms;    /* 0: HTTPD_DEFAULT_IDLE_MS */
	uint32_t head_ms;    /* 0: HTTPD_DEFAULT_HEAD_MS */
	uint32_t write_ms;   /* 0: HTTPD_DEFAULT_WRITE_MS */
	size_t max_response; /* body bound; 0: SBUF_DEFAULT_MAX (500 if over) */
	const char *name;    /* for logs, e.g. "metrics" */
};

/*
 * A listening TCP socket on addr:port (IPv4 dotted quad), non-blocking,
 * close-on-exec, SO_REUSEADDR. Returns the fd or -errno.
 */
int httpd_listen(const char *addr, uint16_t port);

/*
 * Serve connections accepted on lfd (owned from here on, also on error) on
 * loop l. Returns 0 and *out, or -errno.
 */
int httpd_new(struct loop *l, int lfd, const struct httpd_opts *opts,
	      struct httpd **out);
/* Close the listener and every connection (responses in flight are lost). */
void httpd_free(struct httpd *h);
/* Connections open now (for tests; any thread may ask). */
size_t httpd_conn_count(const struct httpd *h);

/* Why a server turned a connection or request away (the metric's label). */
enum httpd_refusal {
	HTTPD_R_CONN_LIMIT,   /* max_conns (or all but the local reserve) in use */
	HTTPD_R_SOURCE_LIMIT, /* max_per_source from this address */
	HTTPD_R_FD_EXHAUSTED, /* accept failed: out of fds */
	HTTPD_R_HEAD_TIMEOUT, /* request not whole within head_ms */
	HTTPD_R_WRITE_TIMEOUT,/* response not taken within write_ms */
	HTTPD_R_BAD_REQUEST,  /* answered 4xx/5xx by the parser */
	HTTPD_R_MAX,
};
const char *httpd_refusal_name(enum httpd_refusal r);
/* Counts since start, indexed by enum httpd_refusal (same thread as the
 * server's loop, or a racy-but-harmless read from another). */
void httpd_refusals(const struct httpd *h, uint64_t out[HTTPD_R_MAX]);

/*
 * The request parser: one HTTP/1.x request at the start of buf[0, len),
 * considering at most `max` bytes of head and body. Leading CR/LF (blank
 * lines between pipelined requests) are skipped. Bytes that are not tokens
 * where RFC 9110/9112 want tokens, controls in the target or in field
 * values, obsolete folding, a bare CR, malformed or conflicting
 * Content-Length are refused; every length is checked against `max` before
 * use.
 *
 * Returns:
 *   > 0  the request is complete and occupies that many bytes (blank lines
 *        before it included): *req points into buf, where NULs were written
 *        into the head (the body is left as it is: body_len bytes);
 *   0    more bytes are needed; buf is untouched; *need (may be NULL) is
 *        the total length the request will have once that is known (head
 *        complete, body pending), else 0;
 *   < 0  -status (400, 413, 414, 431, 501, 505) with *why a short sentence;
 *        buf may have been modified.
 * A pure function: no allocation, no I/O; len may be 0.
 */
ssize_t http_parse_request(char *buf, size_t len, size_t max,
			   struct http_req *req, size_t *need,
			   const char **why);

/* ---- for handlers ---- */

/* Set status and (optionally, may be NULL) content type. */
void http_rsp_status(struct http_rsp *r, int status, const char *type);
/* Add a header line "name: value". Silently dropped when there is no room. */
void http_rsp_header(struct http_rsp *r, const char *name, const char *value);
/* Shorthand: status, text/plain, and a one-line body from fmt. */
void http_rsp_text(struct http_rsp *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Query parameter `name` of req, percent-decoded ('+' is a space) into
 * buf. 0, -ENOENT when absent, -EINVAL for a bad escape or when it does not
 * fit (buf is then empty).
 */
int http_query_param(const struct http_req *req, const char *name, char *buf,
		     size_t len);

/* First header `name` (case-insensitive), or NULL. */
const char *http_req_header(const struct http_req *req, const char *name);

/*
 * Client side, for ambientctl: one blocking request to ip:port with
 * "Connection: close"; reads the whole answer (bounded by body->max).
 * timeout_ms bounds the connect and every read. Returns 0 with *status and
 * the body, or -errno (-ECONNREFUSED when nothing listens, -EPROTO for an
 * answer that is not HTTP/1.x).
 */
int http_fetch(const char *ip, uint16_t port, const char *method,
	       const char *path, int timeout_ms, int *status,
	       struct sbuf *body);

/* Reason phrase of a status code ("OK", "Not Found", ...; "" if unknown). */
const char *http_reason(int status);

#endif
