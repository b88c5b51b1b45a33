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

#include "accept.h"
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
	struct loop_timer timer; /* idle, head, write or linger deadline */
	enum hc_state state;
	struct in_addr peer;
	char *in; /* max_request + 1 bytes once something arrived, else NULL */
	size_t in_len;
	size_t need;	  /* the parser's total once a body is pending, else 0 */
	bool line_seen;	  /* a '\n' is in `in`: parse only when lines end */
	bool in_request;  /* bytes of a request arrived: the head deadline runs */
	struct sbuf out;  /* the response being written */
	size_t out_off;
	bool close_after; /* after `out` is written */
	bool eof;	  /* the peer ended its side mid-request */
};

struct httpd {
	struct loop *loop;
	struct acceptor acc;
	struct httpd_opts o;
	struct hconn *conns;
	size_t n_conns;
	uint64_t refused[HTTPD_R_MAX];
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

/* ---- the request parser ---- */

/* RFC 9110 §5.6.2 tchar. Written out: isalnum() and strchr() would both
 * take bytes they should not (a NUL matches strchr's terminator). */
static bool is_tchar(unsigned char c)
{
	if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
	    (c >= 'A' && c <= 'Z'))
		return true;
	switch (c) {
	case '!': case '#': case '$': case '%': case '&': case '\'':
	case '*': case '+': case '-': case '.': case '^': case '_':
	case '`': case '|': case '~':
		return true;
	default:
		return false;
	}
}

/* A field value byte: HTAB, SP, VCHAR, obs-text (RFC 9110 §5.5). */
static bool is_field_byte(unsigned char c)
{
	return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static const struct {
	const char *name;
	enum http_method m;
} methods[] = {
    {"GET", HTTP_GET},	   {"HEAD", HTTP_HEAD},	    {"POST", HTTP_POST},
    {"PUT", HTTP_PUT},	   {"DELETE", HTTP_DELETE}, {"OPTIONS", HTTP_OPTIONS},
    {"PATCH", HTTP_PATCH},
};

static bool name_is(const char *p, size_t n, const char *name)
{
	return strlen(name) == n && strncasecmp(p, name, n) == 0;
}

#define PARSE_ERR(st, w)                                                       \
	do {                                                                   \
		*why = (w);                                                    \
		return -(st);                                                  \
	} while (0)

/* Where the pieces of a head are, found before anything is written. */
struct head_layout {
	size_t sp1, sp2, line_end;		 /* request line */
	size_t name[HTTPD_MAX_HEADERS];		 /* line start */
	size_t name_end[HTTPD_MAX_HEADERS];	 /* the ':' */
	size_t val[HTTPD_MAX_HEADERS][2];	 /* value, blanks trimmed */
	size_t n;
};

/*
 * The end of the line starting at p[i] within lim: index of its '\n', or
 * lim when it does not end there. *end gets the content end (before an
 * optional CR). A CR anywhere else is an error (-1).
 */
static ssize_t line_at(const char *p, size_t i, size_t lim, size_t *end)
{
	const char *nl = memchr(p + i, '\n', lim - i);
	size_t e;

	if (!nl)
		return (ssize_t)lim;
	e = (size_t)(nl - p);
	*end = e > i && p[e - 1] == '\r' ? e - 1 : e;
	if (memchr(p + i, '\r', *end - i))
		return -1;
	return (ssize_t)e;
}

ssize_t http_parse_request(char *buf, size_t len, size_t max,
			   struct http_req *req, size_t *need,
			   const char **why)
{
	struct head_layout L;
	size_t skip = 0, n, lim, i, e, hend = 0, clen = 0;
	bool have_clen = false, have_host = false, have_te = false;
	char *p;
	ssize_t nl;
	int minor;

	if (need)
		*need = 0;
	*why = "";
	while (skip < len && (buf[skip] == '\r' || buf[skip] == '\n'))
		skip++;
	p = buf + skip;
	n = len - skip;
	lim = n < max ? n : max;

	/* Request line: printable ASCII only, so garbage is refused before
	 * its line ends. */
	for (i = 0; i < lim && p[i] != '\n'; i++) {
		unsigned char c = (unsigned char)p[i];

		if (c == '\r' && i + 1 < lim && p[i + 1] != '\n')
			PARSE_ERR(400, "malformed request line");
		if ((c < 0x20 && c != '\r') || c >= 0x7f)
			PARSE_ERR(400, "malformed request line");
	}
	if (i == lim) {
		if (n >= max)
			PARSE_ERR(431, "request head too large");
		return 0;
	}
	L.line_end = i > 0 && p[i - 1] == '\r' ? i - 1 : i;
	{
		const char *s1 = memchr(p, ' ', L.line_end);
		const char *s2 = s1 ? memchr(s1 + 1, ' ', L.line_end - (size_t)(s1 + 1 - p)) : NULL;

		if (!s1 || !s2 || s1 == p || s2 == s1 + 1 ||
		    memchr(s2 + 1, ' ', L.line_end - (size_t)(s2 + 1 - p)))
			PARSE_ERR(400, "malformed request line");
		L.sp1 = (size_t)(s1 - p);
		L.sp2 = (size_t)(s2 - p);
	}
	for (size_t k = 0; k < L.sp1; k++)
		if (!is_tchar((unsigned char)p[k]))
			PARSE_ERR(400, "malformed method");
	if (p[L.sp1 + 1] != '/')
		PARSE_ERR(400, "request target must be a path");
	if (L.line_end - L.sp2 - 1 != 8 || memcmp(p + L.sp2 + 1, "HTTP/1.", 7) ||
	    p[L.sp2 + 8] < '0' || p[L.sp2 + 8] > '9') {
		if (L.line_end - L.sp2 - 1 >= 5 && !memcmp(p + L.sp2 + 1, "HTTP/", 5))
			PARSE_ERR(505, "only HTTP/1.x is served here");
		PARSE_ERR(400, "malformed protocol version");
	}
	minor = p[L.sp2 + 8] - '0';

	/* Header lines up to the blank line; each checked as soon as it is
	 * whole. */
	L.n = 0;
	for (i = i + 1;; i = (size_t)nl + 1) {
		size_t colon, v, ve;

		nl = line_at(p, i, lim, &e);
		if (nl < 0)
			PARSE_ERR(400, "malformed header field");
		if ((size_t)nl == lim) {
			if (n >= max)
				PARSE_ERR(431, "request head too large");
			return 0;
		}
		if (e == i) {
			hend = (size_t)nl + 1;
			break;
		}
		if (L.n == HTTPD_MAX_HEADERS)
			PARSE_ERR(431, "too many header fields");
		for (colon = i; colon < e && p[colon] != ':'; colon++)
			if (!is_tchar((unsigned char)p[colon]))
				PARSE_ERR(400, "malformed header field");
		if (colon == e || colon == i)
			PARSE_ERR(400, "malformed header field");
		for (v = colon + 1; v < e && (p[v] == ' ' || p[v] == '\t'); v++)
			;
		for (ve = e; ve > v && (p[ve - 1] == ' ' || p[ve - 1] == '\t'); ve--)
			;
		for (size_t k = v; k < ve; k++)
			if (!is_field_byte((unsigned char)p[k]))
				PARSE_ERR(400, "malformed header field");
		L.name[L.n] = i;
		L.name_end[L.n] = colon;
		L.val[L.n][0] = v;
		L.val[L.n][1] = ve;
		if (name_is(p + i, colon - i, "Host")) {
			have_host = true;
		} else if (name_is(p + i, colon - i, "Transfer-Encoding")) {
			have_te = true;
		} else if (name_is(p + i, colon - i, "Content-Length")) {
			size_t cl = 0;

			if (v == ve)
				PARSE_ERR(400, "malformed Content-Length");
			for (size_t k = v; k < ve; k++) {
				if (p[k] < '0' || p[k] > '9')
					PARSE_ERR(400, "malformed Content-Length");
				if (cl <= MAX_BODY)
					cl = cl * 10 + (size_t)(p[k] - '0');
			}
			if (have_clen && cl != clen)
				PARSE_ERR(400, "malformed Content-Length");
			clen = cl; /* > MAX_BODY stays > MAX_BODY */
			have_clen = true;
		}
		L.n++;
	}
	if (minor >= 1 && !have_host)
		PARSE_ERR(400, "HTTP/1.1 request without Host");
	if (have_te)
		PARSE_ERR(501, "Transfer-Encoding is not supported; send Content-Length");
	if (clen > MAX_BODY || clen > max || hend > max - clen)
		PARSE_ERR(413, "request body too large");
	if (n < hend + clen) {
		if (need)
			*need = skip + hend + clen;
		return 0;
	}

	/* Complete: cut the head into strings. */
	memset(req, 0, sizeof(*req));
	p[L.sp1] = '\0';
	p[L.sp2] = '\0';
	p[L.line_end] = '\0';
	req->method_name = p;
	for (size_t k = 0; k < sizeof(methods) / sizeof(methods[0]); k++)
		if (strcmp(p, methods[k].name) == 0)
			req->method = methods[k].m;
	req->path = p + L.sp1 + 1;
	req->query = "";
	{
		char *q = strchr(p + L.sp1 + 1, '?');

		if (q) {
			*q = '\0';
			req->query = q + 1;
		}
	}
	req->minor = minor;
	for (size_t k = 0; k < L.n; k++) {
		p[L.name_end[k]] = '\0';
		p[L.val[k][1]] = '\0';
		req->headers[k].name = p + L.name[k];
		req->headers[k].value = p + L.val[k][0];
	}
	req->n_headers = L.n;
	req->body = clen ? p + hend : "";
	req->body_len = clen;
	return (ssize_t)(skip + hend + clen);
}

/* ---- connections ---- */

static void conn_io(struct loop *l, struct loop_io *io, uint32_t events);
static void conn_timer(struct loop *l, struct loop_timer *t);
static void conn_release(void *p);

const char *httpd_refusal_name(enum httpd_refusal r)
{
	static const char *const names[HTTPD_R_MAX] = {
		[HTTPD_R_CONN_LIMIT] = "conn_limit",
		[HTTPD_R_SOURCE_LIMIT] = "source_limit",
		[HTTPD_R_FD_EXHAUSTED] = "fd_exhausted",
		[HTTPD_R_HEAD_TIMEOUT] = "head_timeout",
		[HTTPD_R_WRITE_TIMEOUT] = "write_timeout",
		[HTTPD_R_BAD_REQUEST] = "bad_request",
	};

	return r < HTTPD_R_MAX ? names[r] : "?";
}

void httpd_refusals(const struct httpd *h, uint64_t out[HTTPD_R_MAX])
{
	for (int i = 0; i < HTTPD_R_MAX; i++)
		out[i] = __atomic_load_n(&h->refused[i], __ATOMIC_RELAXED);
	out[HTTPD_R_FD_EXHAUSTED] = atomic_load(&h->acc.fd_exhausted);
}

static void refuse(struct httpd *h, enum httpd_refusal r)
{
	__atomic_fetch_add(&h->refused[r], 1, __ATOMIC_RELAXED);
}

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
	/* Atomic stores: httpd_conn_count() may read from another thread. */
	__atomic_store_n(&h->n_conns, h->n_conns - 1, __ATOMIC_RELAXED);
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

static void arm(struct hconn *c, uint32_t ms)
{
	loop_timer_arm(c->h->loop, &c->timer, ms);
}

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

/* Answer with an error and close after it: nothing more is read. */
static void queue_error(struct hconn *c, int status, const char *why)
{
	struct http_rsp rsp;
	char a[INET_ADDRSTRLEN];

	rsp_init(&rsp, 4096);
	http_rsp_text(&rsp, status, "%s", why);
	rsp.close = true;
	queue_response(c, &rsp, false);
	sbuf_free(&rsp.body);
	c->in_len = 0;
	c->need = 0;
	c->close_after = true;
	refuse(c->h, status == 408 ? HTTPD_R_HEAD_TIMEOUT : HTTPD_R_BAD_REQUEST);
	log_info_rl("httpd %s: %s: %d %s", c->h->o.name,
		    inet_ntop(AF_INET, &c->peer, a, sizeof(a)), status, why);
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

/* Route a parsed request to its handler and queue the answer. */
static void dispatch(struct hconn *c, const struct http_req *req)
{
	struct httpd *h = c->h;
	const struct httpd_route *route = find_route(h, req->path);
	const char *v = http_req_header(req, "Connection");
	bool head = req->method == HTTP_HEAD && route && (route->methods & HTTP_GET);
	bool keep = req->minor >= 1 ? !(v && strcasecmp(v, "close") == 0)
				    : (v && strcasecmp(v, "keep-alive") == 0);
	struct http_rsp rsp;

	rsp_init(&rsp, h->o.max_response);
	if (!route) {
		http_rsp_text(&rsp, 404, "no such path: %.200s", req->path);
	} else if (!(req->method & route->methods) && !head) {
		http_rsp_text(&rsp, 405, "method %.16s not allowed here",
			      req->method_name);
		allow_header(&rsp, route->methods);
	} else {
		struct http_req hreq = *req;

		if (head) { /* handlers answer GET */
			hreq.method = HTTP_GET;
			hreq.method_name = "GET";
		}
		route->fn(h->o.arg, &hreq, &rsp);
	}
	rsp.close = rsp.close || !keep;
	queue_response(c, &rsp, head);
	sbuf_free(&rsp.body);
}

/*
 * Try to take one request from c->in. Returns 1 when a response was queued
 * (state WRITE), 0 when more bytes are needed.
 */
static int process(struct hconn *c)
{
	struct http_req req;
	const char *why;
	size_t skip = 0;
	ssize_t n;

	/* Blank lines between requests go at once, in one move, so they
	 * never pile up in the buffer. */
	while (skip < c->in_len && (c->in[skip] == '\r' || c->in[skip] == '\n'))
		skip++;
	if (skip) {
		memmove(c->in, c->in + skip, c->in_len - skip);
		c->in_len -= skip;
	}
	n = http_parse_request(c->in, c->in_len, c->h->o.max_request, &req,
			       &c->need, &why);
	if (n < 0) {
		queue_error(c, (int)-n, why);
		set_state(c, HC_WRITE);
		return 1;
	}
	if (n == 0)
		return 0;
	/* Room for this NUL was reserved (in holds max_request + 1). Its byte
	 * belongs to the next request, so keep it aside. */
	{
		char saved = c->in[n];

		c->in[n] = '\0';
		dispatch(c, &req);
		c->in[n] = saved;
	}
	memmove(c->in, c->in + n, c->in_len - (size_t)n);
	c->in_len -= (size_t)n;
	c->need = 0;
	c->line_seen = memchr(c->in, '\n', c->in_len) != NULL;
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

/* Between requests: nothing buffered, the idle timer runs. */
static void go_idle(struct hconn *c)
{
	c->in_request = c->in_len > 0;
	if (c->in_request) {
		arm(c, c->h->o.head_ms); /* a pipelined request is already here */
		return;
	}
	free(c->in);
	c->in = NULL;
	arm(c, c->h->o.idle_ms);
}

/* Drive the connection as far as it goes now; sets epoll interest. */
static void advance(struct hconn *c, bool parse)
{
	for (;;) {
		if (c->state == HC_READ) {
			if (!parse || !process(c)) {
				if (!c->eof)
					break;
				if (!c->in_len) { /* FIN between requests */
					conn_close(c);
					return;
				}
				/* The peer will send no more: answer the
				 * truncated request instead of vanishing. */
				queue_error(c, 400, "incomplete request");
				set_state(c, HC_WRITE);
			}
			arm(c, c->h->o.write_ms);
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
				arm(c, LINGER_MS);
				break;
			}
			set_state(c, HC_READ);
			go_idle(c);
			parse = c->line_seen;
			continue;
		}
		break;
	}
	if (loop_io_update(c->h->loop, &c->io,
			   c->state == HC_WRITE ? EPOLLOUT : EPOLLIN))
		conn_close(c);
}

/*
 * Read what is there. Returns whether the parser should look again: a line
 * ended, the first line holds a byte no request line may hold (refused at
 * once), the body it waits for is complete, or the buffer is full.
 */
static bool conn_read(struct hconn *c)
{
	struct httpd *h = c->h;
	bool parse = false;

	for (;;) {
		char sink[READ_CHUNK];
		size_t room = h->o.max_request - c->in_len;
		char *dst;
		size_t want;
		ssize_t n;

		if (c->state == HC_READ && !room)
			return true; /* full: the parser answers 431/413 */
		if (c->state == HC_READ && !c->in) {
			c->in = malloc(h->o.max_request + 1);
			if (!c->in) {
				conn_close(c);
				return false;
			}
		}
		dst = c->state == HC_LINGER ? sink : c->in + c->in_len;
		want = dst == sink ? sizeof(sink) : room;
		n = recv(c->io.fd, dst, want, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return parse;
		if (n == 0 && c->state == HC_READ && c->in_len) {
			c->eof = true; /* advance() answers what we have */
			return true;
		}
		if (n <= 0) {
			conn_close(c);
			return false;
		}
		if (dst == sink)
			continue;
		if (!c->in_request) {
			/* The head deadline starts with the first byte and no
			 * later byte moves it. */
			c->in_request = true;
			arm(c, h->o.head_ms);
		}
		for (ssize_t i = 0; i < n && !parse; i++) {
			unsigned char b = (unsigned char)dst[i];

			if (b == '\n')
				c->line_seen = parse = true;
			else if (!c->line_seen && ((b < 0x20 && b != '\r') || b >= 0x7f))
				parse = true;
		}
		c->in_len += (size_t)n;
		if (c->need && c->in_len >= c->need)
			parse = true;
		if ((size_t)n < want)
			return parse;
	}
}

static void conn_io(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct hconn *c = io->arg;
	bool parse = false;

	if (c->state == HC_READ || c->state == HC_LINGER) {
		parse = conn_read(c);
		if (c->state == HC_CLOSED || c->state == HC_LINGER)
			return;
	} else if (events & (EPOLLERR | EPOLLHUP) && !(events & EPOLLOUT)) {
		conn_close(c);
		return;
	}
	advance(c, parse);
}

static void conn_timer(struct loop *l, struct loop_timer *t)
{
	struct hconn *c = t->arg;

	switch (c->state) {
	case HC_READ:
		if (c->in_request) {
			queue_error(c, 408, "request not complete in time");
			set_state(c, HC_WRITE);
			advance(c, false);
			return;
		}
		break;
	case HC_WRITE:
		refuse(c->h, HTTPD_R_WRITE_TIMEOUT);
		log_info_rl("httpd %s: response not taken in %u ms; closing",
			    c->h->o.name, c->h->o.write_ms);
		break;
	default:
		break;
	}
	conn_close(c);
}

/* A caller on this node: loopback, or the node dialing its own address
 * (kubelet's probes of a hostNetwork pod). */
static bool is_local(int fd, const struct sockaddr_in *peer)
{
	struct sockaddr_in me;
	socklen_t sl = sizeof(me);

	if ((ntohl(peer->sin_addr.s_addr) >> 24) == 127)
		return true;
	return getsockname(fd, (struct sockaddr *)&me, &sl) == 0 &&
	       me.sin_family == AF_INET &&
	       me.sin_addr.s_addr == peer->sin_addr.s_addr;
}

/* Admit fd from peer, or say why not. */
static int admit(struct httpd *h, int fd, const struct sockaddr_in *peer)
{
	unsigned from_peer = 0;
	size_t cap = h->o.max_conns;

	if (!is_local(fd, peer))
		cap -= h->o.reserved_local;
	if (h->n_conns >= cap)
		return HTTPD_R_CONN_LIMIT;
	for (struct hconn *c = h->conns; c; c = c->next)
		if (c->peer.s_addr == peer->sin_addr.s_addr)
			from_peer++;
	if (from_peer >= h->o.max_per_source)
		return HTTPD_R_SOURCE_LIMIT;
	return -1;
}

static void on_accept(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct httpd *h = io->arg;

	for (int i = 0; i < 16; i++) {
		struct sockaddr_in peer;
		char a[INET_ADDRSTRLEN];
		struct hconn *c;
		int fd = acceptor_accept(l, &h->acc, &peer), why;

		if (fd < 0)
			return;
		why = admit(h, fd, &peer);
		if (why >= 0) {
			refuse(h, why);
			log_info_rl("httpd %s: refusing a connection from %s: %s "
				    "(%zu open)", h->o.name,
				    inet_ntop(AF_INET, &peer.sin_addr, a, sizeof(a)),
				    httpd_refusal_name(why), h->n_conns);
			close(fd);
			continue;
		}
		c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		c->h = h;
		c->state = HC_READ;
		c->peer = peer.sin_addr;
		sbuf_init(&c->out, 0);
		loop_io_init(&c->io, fd, conn_io, c);
		loop_timer_init(&c->timer, conn_timer, c);
		c->next = h->conns;
		if (h->conns)
			h->conns->prev = c;
		h->conns = c;
		__atomic_store_n(&h->n_conns, h->n_conns + 1, __ATOMIC_RELAXED);
		arm(c, h->o.idle_ms);
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
	if (!h->o.max_per_source)
		h->o.max_per_source = HTTPD_DEFAULT_MAX_PER_SOURCE;
	if (!h->o.reserved_local)
		h->o.reserved_local = HTTPD_DEFAULT_RESERVED_LOCAL;
	if (h->o.reserved_local >= h->o.max_conns)
		h->o.reserved_local = h->o.max_conns - 1;
	if (!h->o.idle_ms)
		h->o.idle_ms = HTTPD_DEFAULT_IDLE_MS;
	if (!h->o.head_ms)
		h->o.head_ms = HTTPD_DEFAULT_HEAD_MS;
	if (!h->o.write_ms)
		h->o.write_ms = HTTPD_DEFAULT_WRITE_MS;
	if (!h->o.name)
		h->o.name = "http";
	acceptor_init(&h->acc, lfd, on_accept, h, h->o.name);
	err = acceptor_start(l, &h->acc);
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
	acceptor_close(h->loop, &h->acc);
	loop_defer_free(h->loop, h, free);
}

size_t httpd_conn_count(const struct httpd *h)
{
	return __atomic_load_n(&h->n_conns, __ATOMIC_RELAXED);
}
