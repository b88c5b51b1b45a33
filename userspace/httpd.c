// SPDX-License-Identifier: Apache-2.0
/*
 * HTTP/1.1 server (see httpd.h).
 *
 * Connection states (one function, set_state(), changes them):
 *   HC_READ    waiting for a complete request in `in`
 *   HC_WRITE   a response is in `out`; writing it (no parsing meanwhile)
 *   HC_LINGER  error answered and write side shut: read and discard until
 *              the peer's FIN or the linger timeout, then close
 *   HC_CLOSED  released (only seen by code up the stack in this turn)
 * READ -> WRITE (request parsed and answered) -> READ (keep-alive) ...
 * WRITE -> LINGER (response said close) ; any -> CLOSED (error, timeout).
 */
#include "httpd.h"

#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "loop.h"

#define LINGER_MS  2000
#define READ_CHUNK 4096
/* Content-Length cannot exceed this even when max_request is larger. */
#define MAX_BODY (1u << 20)

enum hc_state { HC_READ, HC_WRITE, HC_LINGER, HC_CLOSED };

struct hconn {
	struct httpd *h;
	struct hconn *prev, *next;
	struct loop_io io;
	struct loop_timer timer;
	enum hc_state state;
	char *in; /* max_request + 1 bytes (room for a NUL) */
	size_t in_len;
	struct sbuf out; /* the response being written */
	size_t out_off;
	bool close_after; /* after `out` is written */
	bool eof;	  /* the peer ended its side mid-request */
};

struct httpd {
	struct loop *loop;
	struct loop_io lio;
	struct httpd_opts o;
	struct hconn *conns;
	size_t n_conns;
};

static const char *const state_names[] = {"read", "write", "linger", "closed"};

static void set_state(struct hconn *c, enum hc_state to)
{
	enum hc_state from = c->state;
	bool legal;

	switch (from) {
	case HC_READ:
		legal = to == HC_WRITE || to == HC_CLOSED;
		break;
	case HC_WRITE:
		legal = to == HC_READ || to == HC_LINGER || to == HC_CLOSED;
		break;
	case HC_LINGER:
		legal = to == HC_CLOSED;
		break;
	default:
		legal = false;
	}
	if (!legal)
		log_error("httpd: illegal transition %s -> %s",
			  state_names[from], state_names[to]);
	assert(legal);
	c->state = to;
}

const char *http_reason(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 204:
		return "No Content";
	case 400:
		return "Bad Request";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 408:
		return "Request Timeout";
	case 411:
		return "Length Required";
	case 413:
		return "Content Too Large";
	case 414:
		return "URI Too Long";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 503:
		return "Service Unavailable";
	case 505:
		return "HTTP Version Not Supported";
	default:
		return "";
	}
}

/* ---- response helpers ---- */

void http_rsp_status(struct http_rsp *r, int status, const char *type)
{
	r->status = status;
	if (type)
		r->type = type;
}

void http_rsp_header(struct http_rsp *r, const char *name, const char *value)
{
	size_t used = strlen(r->extra);

	snprintf(r->extra + used, sizeof(r->extra) - used, "%s: %s\r\n", name,
		 value);
	if (!strstr(r->extra + used, "\r\n"))
		r->extra[used] = '\0'; /* did not fit whole: drop it */
}

void http_rsp_text(struct http_rsp *r, int status, const char *fmt, ...)
{
	va_list ap;

	http_rsp_status(r, status, "text/plain; charset=utf-8");
	sbuf_reset(&r->body);
	va_start(ap, fmt);
	sbuf_vprintf(&r->body, fmt, ap);
	va_end(ap);
	sbuf_putc(&r->body, '\n');
}

const char *http_req_header(const struct http_req *req, const char *name)
{
	for (size_t i = 0; i < req->n_headers; i++)
		if (strcasecmp(req->headers[i].name, name) == 0)
			return req->headers[i].value;
	return NULL;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)tolower((unsigned char)c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Percent-decode [s, s+n) into buf; 0 or -EINVAL. */
static int url_decode(const char *s, size_t n, char *buf, size_t len)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (c == '+') {
			c = ' ';
		} else if (c == '%') {
			int hi, lo;

			if (i + 2 >= n)
				return -EINVAL;
			hi = hexval(s[i + 1]);
			lo = hexval(s[i + 2]);
			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
				return -EINVAL;
			c = (char)(hi << 4 | lo);
			i += 2;
		}
		if (o + 1 >= len)
			return -EINVAL;
		buf[o++] = c;
	}
	buf[o] = '\0';
	return 0;
}

int http_query_param(const struct http_req *req, const char *name, char *buf,
		     size_t len)
{
	size_t nlen = strlen(name);
	const char *p = req->query;

	if (len)
		buf[0] = '\0';
	while (p && *p) {
		const char *amp = strchr(p, '&');
		size_t plen = amp ? (size_t)(amp - p) : strlen(p);
		const char *eq = memchr(p, '=', plen);
		size_t klen = eq ? (size_t)(eq - p) : plen;

		if (klen == nlen && memcmp(p, name, nlen) == 0) {
			int err =
			    eq ? url_decode(eq + 1, plen - klen - 1, buf, len)
			       : url_decode("", 0, buf, len);

			if (err && len)
				buf[0] = '\0';
			return err;
		}
		p = amp ? amp + 1 : NULL;
	}
	return -ENOENT;
}

/* ---- connections ---- */

static void conn_io(struct loop *l, struct loop_io *io, uint32_t events);
static void conn_timer(struct loop *l, struct loop_timer *t);
static void conn_release(void *p);

static void conn_close(struct hconn *c)
{
	struct httpd *h = c->h;

	if (c->state == HC_CLOSED)
		return;
	set_state(c, HC_CLOSED);
	loop_io_stop(h->loop, &c->io);
	loop_timer_disarm(h->loop, &c->timer);
	close(c->io.fd);
	c->io.fd = -1;
	if (c->prev)
		c->prev->next = c->next;
	else
		h->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	h->n_conns--;
	/* Code up the stack may still look at c in this turn. */
	loop_defer_free(h->loop, c, conn_release);
}

static void conn_release(void *p)
{
	struct hconn *c = p;

	sbuf_free(&c->out);
	free(c->in);
	free(c);
}

static void touch(struct hconn *c, uint32_t ms)
{
	loop_timer_arm(c->h->loop, &c->timer, ms);
}

static bool is_tchar(unsigned char c)
{
	return isalnum(c) || strchr("!#$%&'*+-.^_`|~", c);
}

static const struct {
	const char *name;
	enum http_method m;
} methods[] = {
    {"GET", HTTP_GET},	   {"HEAD", HTTP_HEAD},	    {"POST", HTTP_POST},
    {"PUT", HTTP_PUT},	   {"DELETE", HTTP_DELETE}, {"OPTIONS", HTTP_OPTIONS},
    {"PATCH", HTTP_PATCH},
};

/* Render rsp into c->out (status line, headers, body unless HEAD). */
static void queue_response(struct hconn *c, struct http_rsp *rsp, bool head)
{
	struct sbuf *o = &c->out;

	if (sbuf_failed(&rsp->body)) {
		rsp->status = 500;
		rsp->type = "text/plain; charset=utf-8";
		sbuf_free(&rsp->body);
		sbuf_init(&rsp->body, 0);
		sbuf_puts(&rsp->body, "response too large\n");
	}
	sbuf_reset(o);
	c->out_off = 0;
	sbuf_printf(o, "HTTP/1.1 %d %s\r\n", rsp->status,
		    http_reason(rsp->status));
	sbuf_printf(o, "Content-Type: %s\r\nContent-Length: %zu\r\n",
		    rsp->type ? rsp->type : "text/plain; charset=utf-8",
		    rsp->body.len);
	sbuf_puts(o, rsp->extra);
	if (rsp->close)
		sbuf_puts(o, "Connection: close\r\n");
	sbuf_puts(o, "\r\n");
	if (!head && rsp->body.len)
		sbuf_put(o, rsp->body.p, rsp->body.len);
	c->close_after = rsp->close || sbuf_failed(o);
}

static void rsp_init(struct http_rsp *r, size_t max)
{
	memset(r, 0, sizeof(*r));
	r->status = 200;
	sbuf_init(&r->body, max);
}

/* An error answer; the connection closes after it. */
static void queue_error(struct hconn *c, int status, const char *why)
{
	struct http_rsp rsp;

	rsp_init(&rsp, 4096);
	http_rsp_text(&rsp, status, "%s", why);
	rsp.close = true;
	queue_response(c, &rsp, false);
	sbuf_free(&rsp.body);
	log_debug("httpd %s: %d %s", c->h->o.name, status, why);
}

/*
 * Split one header line [s, e) (no CR/LF) into name and value. 0 or -EINVAL
 * (no colon, empty or non-token name, whitespace before the colon, obsolete
 * line folding).
 */
static int parse_header(char *s, char *e, struct http_req *req)
{
	char *colon = memchr(s, ':', (size_t)(e - s));
	char *v;

	if (!colon || colon == s || *s == ' ' || *s == '\t')
		return -EINVAL;
	for (char *p = s; p < colon; p++)
		if (!is_tchar((unsigned char)*p))
			return -EINVAL;
	if (req->n_headers == HTTPD_MAX_HEADERS)
		return -E2BIG;
	*colon = '\0';
	v = colon + 1;
	while (v < e && (*v == ' ' || *v == '\t'))
		v++;
	while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
		e--;
	*e = '\0';
	for (char *p = v; p < e; p++)
		if ((unsigned char)*p < 0x20 && *p != '\t')
			return -EINVAL;
	req->headers[req->n_headers].name = s;
	req->headers[req->n_headers].value = v;
	req->n_headers++;
	return 0;
}

/* End of the head: index just past the blank line, or 0 if not there. */
static size_t head_end(const char *p, size_t n)
{
	for (size_t i = 0; i + 1 < n; i++) {
		if (p[i] != '\n')
			continue;
		if (p[i + 1] == '\n')
			return i + 2;
		if (p[i + 1] == '\r' && i + 2 < n && p[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

/*
 * Content-Length of the head [p, p+hend) without modifying it, or 0 when
 * there is none or it is malformed or conflicting (the full parse then
 * answers the error instead of waiting for a body).
 */
static unsigned long long peek_content_length(const char *p, size_t hend)
{
	static const char key[] = "content-length:";
	unsigned long long v = 0;
	bool seen = false;

	for (size_t i = 0; i + sizeof(key) < hend; i++) {
		const char *q;
		unsigned long long n = 0;

		if ((i && p[i - 1] != '\n') ||
		    strncasecmp(p + i, key, sizeof(key) - 1) != 0)
			continue;
		q = p + i + sizeof(key) - 1;
		while (*q == ' ' || *q == '\t')
			q++;
		if (!isdigit((unsigned char)*q))
			return 0;
		for (; isdigit((unsigned char)*q); q++) {
			if (n > MAX_BODY)
				return 0;
			n = n * 10 + (unsigned)(*q - '0');
		}
		while (*q == ' ' || *q == '\t')
			q++;
		if ((*q != '\r' && *q != '\n') || (seen && n != v))
			return 0;
		v = n;
		seen = true;
	}
	return v;
}

static const struct httpd_route *find_route(const struct httpd *h,
					    const char *path)
{
	for (const struct httpd_route *r = h->o.routes; r && r->path; r++)
		if (strcmp(r->path, path) == 0)
			return r;
	return NULL;
}

static void allow_header(struct http_rsp *rsp, unsigned m)
{
	char allow[96] = "";

	if (m & HTTP_GET)
		m |= HTTP_HEAD;
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		if (!(m & methods[i].m))
			continue;
		if (allow[0])
			strcat(allow, ", ");
		strcat(allow, methods[i].name);
	}
	http_rsp_header(rsp, "Allow", allow);
}

/*
 * Try to take one request from c->in. Returns 1 when a response was queued
 * (state WRITE), 0 when more bytes are needed.
 */
static int process(struct hconn *c)
{
	struct httpd *h = c->h;
	struct http_req req;
	struct http_rsp rsp;
	const struct httpd_route *route;
	char *line, *eol, *sp1, *sp2, *p, *end;
	const char *v;
	size_t hend, consumed;
	unsigned long long clen = 0;
	bool keep, head = false;

	/* Tolerate blank lines between pipelined requests (RFC 9112 2.2). */
	while (c->in_len && (c->in[0] == '\r' || c->in[0] == '\n'))
		memmove(c->in, c->in + 1, --c->in_len);
	hend = head_end(c->in, c->in_len);
	if (!hend) {
		if (c->in_len >= h->o.max_request) {
			queue_error(c, 431, "request head too large");
			goto queued;
		}
		/* A first line that cannot be HTTP (only printable ASCII
		 * belongs there): no need to wait for more. */
		for (size_t i = 0; i < c->in_len && c->in[i] != '\n'; i++)
			if (((unsigned char)c->in[i] < 0x20 &&
			     c->in[i] != '\r') ||
			    (unsigned char)c->in[i] >= 0x7f) {
				queue_error(c, 400, "malformed request line");
				goto queued;
			}
		return 0;
	}
	/* Parsing writes NULs into the head: wait for the whole body first. */
	clen = peek_content_length(c->in, hend);
	if (clen <= MAX_BODY && hend + clen <= h->o.max_request &&
	    c->in_len < hend + clen)
		return 0;
	clen = 0;
	memset(&req, 0, sizeof(req));
	req.query = "";
	req.body = "";

	/* Request line: METHOD SP target SP HTTP/1.x */
	line = c->in;
	eol = memchr(line, '\n', hend);
	end = eol > line && eol[-1] == '\r' ? eol - 1 : eol;
	*end = '\0';
	sp1 = strchr(line, ' ');
	sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
	if (!sp1 || !sp2 || strchr(sp2 + 1, ' ') || sp1 == line ||
	    sp2 == sp1 + 1) {
		queue_error(c, 400, "malformed request line");
		goto queued;
	}
	*sp1 = *sp2 = '\0';
	for (p = line; *p; p++)
		if (!is_tchar((unsigned char)*p)) {
			queue_error(c, 400, "malformed method");
			goto queued;
		}
	if (strncmp(sp2 + 1, "HTTP/1.", 7) != 0 ||
	    !isdigit((unsigned char)sp2[8]) || sp2[9]) {
		if (strncmp(sp2 + 1, "HTTP/", 5) == 0)
			queue_error(c, 505, "only HTTP/1.x is served here");
		else
			queue_error(c, 400, "malformed protocol version");
		goto queued;
	}
	req.minor = sp2[8] - '0';
	req.method_name = line;
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
		if (strcmp(line, methods[i].name) == 0)
			req.method = methods[i].m;
	req.path = sp1 + 1;
	if (req.path[0] != '/') {
		queue_error(c, 400, "request target must be a path");
		goto queued;
	}
	for (p = sp1 + 1; *p; p++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) {
			queue_error(c, 400, "malformed request target");
			goto queued;
		}
	p = strchr(sp1 + 1, '?');
	if (p) {
		*p = '\0';
		req.query = p + 1;
	}

	/* Header lines up to the blank line. */
	for (line = eol + 1; line < c->in + hend; line = eol + 1) {
		int err;

		eol = memchr(line, '\n', (size_t)(c->in + hend - line));
		end = eol > line && eol[-1] == '\r' ? eol - 1 : eol;
		if (end == line)
			break; /* the blank line */
		err = parse_header(line, end, &req);
		if (err) {
			queue_error(c, err == -E2BIG ? 431 : 400,
				    err == -E2BIG ? "too many header fields"
						  : "malformed header field");
			goto queued;
		}
	}
	if (req.minor >= 1 && !http_req_header(&req, "Host")) {
		queue_error(c, 400, "HTTP/1.1 request without Host");
		goto queued;
	}
	if (http_req_header(&req, "Transfer-Encoding")) {
		queue_error(
		    c, 501,
		    "Transfer-Encoding is not supported; send Content-Length");
		goto queued;
	}
	for (size_t i = 0; i < req.n_headers; i++) {
		char *e2;
		unsigned long long n;

		if (strcasecmp(req.headers[i].name, "Content-Length") != 0)
			continue;
		v = req.headers[i].value;
		errno = 0;
		n = strtoull(v, &e2, 10);
		if (!*v || *e2 || errno || !isdigit((unsigned char)*v) ||
		    (clen && n != clen)) {
			queue_error(c, 400, "malformed Content-Length");
			goto queued;
		}
		clen = n;
	}
	if (clen > MAX_BODY || hend + clen > h->o.max_request) {
		queue_error(c, 413, "request body too large");
		goto queued;
	}
	req.body = c->in + hend;
	req.body_len = (size_t)clen;
	/* Room for this NUL was reserved (in holds max_request + 1). Its byte
	 * belongs to the next request, so keep it aside. */
	{
		char saved = c->in[hend + clen];

		c->in[hend + clen] = '\0';
		consumed = hend + clen;

		v = http_req_header(&req, "Connection");
		keep = req.minor >= 1 ? !(v && strcasecmp(v, "close") == 0)
				      : (v && strcasecmp(v, "keep-alive") == 0);
		rsp_init(&rsp, h->o.max_response);
		route = find_route(h, req.path);
		if (req.method == HTTP_HEAD && route &&
		    (route->methods & HTTP_GET))
			head = true;
		if (!route) {
			http_rsp_text(&rsp, 404, "no such path: %.200s",
				      req.path);
		} else if (!(req.method & route->methods) && !head) {
			http_rsp_text(&rsp, 405,
				      "method %.16s not allowed here",
				      req.method_name);
			allow_header(&rsp, route->methods);
		} else {
			struct http_req hreq = req;

			if (head) { /* handlers answer GET */
				hreq.method = HTTP_GET;
				hreq.method_name = "GET";
			}
			route->fn(h->o.arg, &hreq, &rsp);
		}
		rsp.close = rsp.close || !keep;
		queue_response(c, &rsp, head);
		sbuf_free(&rsp.body);
		c->in[hend + clen] = saved;
	}
	memmove(c->in, c->in + consumed, c->in_len - consumed);
	c->in_len -= consumed;
	set_state(c, HC_WRITE);
	return 1;
queued:
	/* Error: nothing more is read from this connection. */
	c->in_len = 0;
	c->close_after = true;
	set_state(c, HC_WRITE);
	return 1;
}

/* Write what we can of c->out. Returns -1 if c was closed. */
static int flush(struct hconn *c)
{
	while (c->out_off < c->out.len) {
		ssize_t n = send(c->io.fd, c->out.p + c->out_off,
				 c->out.len - c->out_off, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n <= 0) {
			conn_close(c);
			return -1;
		}
		c->out_off += (size_t)n;
	}
	return 0;
}

/* Drive the connection as far as it goes now; sets epoll interest. */
static void advance(struct hconn *c)
{
	for (;;) {
		if (c->state == HC_READ) {
			if (!process(c)) {
				if (!c->eof)
					break;
				if (!c->in_len) { /* FIN between requests */
					conn_close(c);
					return;
				}
				/* The peer will send no more: answer the
				 * truncated request instead of vanishing. */
				queue_error(c, 400, "incomplete request");
				c->in_len = 0;
				set_state(c, HC_WRITE);
			}
			touch(c, c->h->o.idle_ms);
		}
		if (c->state == HC_WRITE) {
			if (flush(c))
				return;
			if (c->out_off < c->out.len)
				break;
			sbuf_reset(&c->out);
			c->out_off = 0;
			if (c->close_after) {
				shutdown(c->io.fd, SHUT_WR);
				set_state(c, HC_LINGER);
				touch(c, LINGER_MS);
				break;
			}
			set_state(c, HC_READ);
			continue;
		}
		break;
	}
	if (loop_io_update(c->h->loop, &c->io,
			   c->state == HC_WRITE ? EPOLLOUT : EPOLLIN))
		conn_close(c);
}

static void conn_read(struct hconn *c)
{
	struct httpd *h = c->h;

	for (;;) {
		char sink[READ_CHUNK];
		size_t room = h->o.max_request - c->in_len;
		char *dst =
		    c->state == HC_LINGER || !room ? sink : c->in + c->in_len;
		size_t want = dst == sink ? sizeof(sink) : room;
		ssize_t n;

		if (c->state == HC_READ && !room)
			break; /* full: process() answers 431/413 */
		n = recv(c->io.fd, dst, want, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n == 0 && c->state == HC_READ && c->in_len) {
			c->eof = true; /* advance() answers what we have */
			return;
		}
		if (n <= 0) {
			conn_close(c);
			return;
		}
		if (dst != sink) {
			c->in_len += (size_t)n;
			if ((size_t)n < want)
				return;
		}
	}
}

static void conn_io(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct hconn *c = io->arg;

	if (c->state == HC_READ || c->state == HC_LINGER) {
		size_t before = c->in_len;

		conn_read(c);
		if (c->state == HC_CLOSED)
			return;
		if (c->state == HC_LINGER)
			return;
		if (c->in_len != before)
			touch(c, c->h->o.idle_ms);
	} else if (events & (EPOLLERR | EPOLLHUP) && !(events & EPOLLOUT)) {
		conn_close(c);
		return;
	}
	advance(c);
}

static void conn_timer(struct loop *l, struct loop_timer *t)
{
	struct hconn *c = t->arg;

	log_debug("httpd %s: closing %s connection", c->h->o.name,
		  c->state == HC_LINGER ? "lingering" : "idle");
	conn_close(c);
}

static void on_accept(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct httpd *h = io->arg;

	for (int i = 0; i < 16; i++) {
		int fd =
		    accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct hconn *c;

		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE)
				log_warn("httpd %s: accept: %s", h->o.name,
					 strerror(errno));
			return;
		}
		if (h->n_conns >= h->o.max_conns) {
			log_debug(
			    "httpd %s: %zu connections open; refusing one",
			    h->o.name, h->n_conns);
			close(fd);
			continue;
		}
		c = calloc(1, sizeof(*c));
		if (c)
			c->in = malloc(h->o.max_request + 1);
		if (!c || !c->in) {
			if (c)
				free(c);
			close(fd);
			continue;
		}
		c->h = h;
		c->state = HC_READ;
		sbuf_init(&c->out, 0);
		loop_io_init(&c->io, fd, conn_io, c);
		loop_timer_init(&c->timer, conn_timer, c);
		c->next = h->conns;
		if (h->conns)
			h->conns->prev = c;
		h->conns = c;
		h->n_conns++;
		touch(c, h->o.idle_ms);
		if (loop_io_update(l, &c->io, EPOLLIN))
			conn_close(c);
	}
}

int httpd_listen(const char *addr, uint16_t port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons(port)};
	int one = 1, fd, err;

	if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1)
		return -EINVAL;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(fd, 64) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

int httpd_new(struct loop *l, int lfd, const struct httpd_opts *opts,
	      struct httpd **out)
{
	struct httpd *h = calloc(1, sizeof(*h));
	int err;

	if (!h) {
		close(lfd);
		return -ENOMEM;
	}
	h->loop = l;
	h->o = *opts;
	if (!h->o.max_request)
		h->o.max_request = HTTPD_DEFAULT_MAX_REQUEST;
	if (!h->o.max_conns)
		h->o.max_conns = HTTPD_DEFAULT_MAX_CONNS;
	if (!h->o.idle_ms)
		h->o.idle_ms = HTTPD_DEFAULT_IDLE_MS;
	if (!h->o.name)
		h->o.name = "http";
	loop_io_init(&h->lio, lfd, on_accept, h);
	err = loop_io_update(l, &h->lio, EPOLLIN);
	if (err) {
		close(lfd);
		free(h);
		return err;
	}
	*out = h;
	return 0;
}

void httpd_free(struct httpd *h)
{
	if (!h)
		return;
	while (h->conns)
		conn_close(h->conns);
	loop_io_stop(h->loop, &h->lio);
	close(h->lio.fd);
	loop_defer_free(h->loop, h, free);
}

size_t httpd_conn_count(const struct httpd *h)
{
	return h->n_conns;
}
