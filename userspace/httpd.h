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
 *  - bounded: the request head plus body must fit opts.max_request bytes
 *    (431 for a head, 413 for a body that cannot fit), at most
 *    HTTPD_MAX_HEADERS header lines, at most opts.max_conns connections
 *    (more are accepted and closed at once), idle connections closed after
 *    opts.idle_ms. Bodies need Content-Length (Transfer-Encoding: 501).
 *  - garbage gets a 400 and the connection is closed; an error response is
 *    followed by a lingering close (read and discard until the peer's FIN
 *    or a short timeout) so the peer reads the answer instead of a RST.
 *
 * Threading: a server and its connections belong to the thread of its loop.
 */
#ifndef AMBIENTD_HTTPD_H
#define AMBIENTD_HTTPD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

#define HTTPD_MAX_HEADERS	  64
#define HTTPD_DEFAULT_MAX_REQUEST 8192
#define HTTPD_DEFAULT_MAX_CONNS	  64
#define HTTPD_DEFAULT_IDLE_MS	  30000

/* A parsed request; every string is NUL-terminated and valid only during
 * the handler call. */
struct http_req {
	enum http_method method;
	const char *method_name;
	const char *path;  /* target up to '?' (not percent-decoded) */
	const char *query; /* after '?', "" when none */
	int minor;	   /* HTTP/1.<minor> */
	const char *body;  /* Content-Length bytes (NUL-terminated), or "" */
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
	uint32_t idle_ms;    /* 0: HTTPD_DEFAULT_IDLE_MS */
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
/* Connections open now (for tests). */
size_t httpd_conn_count(const struct httpd *h);

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
