// SPDX-License-Identifier: Apache-2.0
/*
 * The operator ports' HTTP/1.1 server: routing (404/405/HEAD), keep-alive,
 * pipelined and byte-by-byte requests, garbage, oversized heads and bodies,
 * connection, per-source, idle and head-deadline limits, and the request
 * parser on its own as a table. The server runs its loop on a thread; the
 * test is a plain blocking client on 127.0.0.1.
 */
#include "httpd.h"
#include "log.h"
#include "loop.h"
#include "tap.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static uint16_t port;
static struct loop *loop;
static struct httpd *srv;
static atomic_int hits;

static void h_hello(void *arg, const struct http_req *req, struct http_rsp *rsp)
{
	atomic_fetch_add(&hits, 1);
	http_rsp_text(rsp, 200, "hello %s", req->method_name);
}

static void h_echo(void *arg, const struct http_req *req, struct http_rsp *rsp)
{
	char v[64];
	int err = http_query_param(req, "v", v, sizeof(v));

	http_rsp_status(rsp, 200, "text/plain");
	sbuf_printf(&rsp->body, "v=%s err=%d body=%zu:%s", err ? "" : v, err,
		    req->body_len, req->body);
}

static void h_big(void *arg, const struct http_req *req, struct http_rsp *rsp)
{
	for (int i = 0; i < 100000; i++)
		sbuf_puts(&rsp->body, "0123456789abcdef");
}

static const struct httpd_route routes[] = {
    {"/hello", HTTP_GET, h_hello},
    {"/echo", HTTP_GET | HTTP_POST, h_echo},
    {"/big", HTTP_GET, h_big},
    {NULL},
};

static void *loop_thread(void *arg)
{
	loop_run(loop);
	return NULL;
}

static int dial(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons(port)};
	struct timeval tv = {.tv_sec = 3};
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void send_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

/* Read until EOF (or timeout); returns the bytes (malloc'd) and length. */
static char *read_all(int fd, size_t *len)
{
	size_t cap = 1 << 16, n = 0;
	char *b = malloc(cap + 1);

	for (;;) {
		ssize_t r;

		if (n == cap) {
			cap *= 2;
			b = realloc(b, cap + 1);
		}
		r = recv(fd, b + n, cap - n, 0);
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	b[n] = '\0';
	*len = n;
	return b;
}

/* Read exactly one response (head + Content-Length body) into buf. */
static int read_response(int fd, char *buf, size_t len)
{
	size_t n = 0;
	char *hend;
	long clen;

	for (;;) {
		ssize_t r;

		buf[n] = '\0';
		hend = strstr(buf, "\r\n\r\n");
		if (hend) {
			char *cl = strcasestr(buf, "Content-Length: ");

			clen = cl ? strtol(cl + 16, NULL, 10) : 0;
			if (n >= (size_t)(hend + 4 - buf) + (size_t)clen)
				return (int)n;
		}
		if (n + 1 >= len)
			return -1;
		r = recv(fd, buf + n, len - n - 1, 0);
		if (r <= 0)
			return n ? (int)n : -1;
		n += (size_t)r;
	}
}

static int status_of(const char *resp)
{
	int st = 0;

	sscanf(resp, "HTTP/1.1 %d", &st);
	return st;
}

/* One request on a new connection; returns the whole response. */
static char *roundtrip(const char *req, size_t *len)
{
	int fd = dial();
	char *r;

	send_all(fd, req, strlen(req));
	shutdown(fd, SHUT_WR);
	r = read_all(fd, len);
	close(fd);
	return r;
}

static bool is_eof(int fd)
{
	char c;

	return recv(fd, &c, 1, 0) == 0;
}

/* The parser alone: input -> return value (>0: whole length). */
static void test_parser_table(void)
{
	static const struct {
		const char *in;
		size_t len; /* 0: strlen */
		ssize_t want; /* 1: the whole input */
		const char *what;
	} cases[] = {
	    {"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0, 1, "minimal"},
	    {"\r\n\r\nGET / HTTP/1.0\r\n\r\n", 0, 1, "blank lines first, 1.0 without Host"},
	    {"GET / HTTP/1.1\nHost: x\n\n", 0, 1, "bare LF line ends"},
	    {"GET /healthz/ready HTTP/1.1\r\nHost: x\r\nContent-Length\0: 100\r\n\r\n",
	     62, -400, "NUL in a header name (the readiness-port crash)"},
	    {"GET / HTTP/1.1\r\nHost: x\0y\r\n\r\n", 29, -400, "NUL in a header value"},
	    {"GET / HTTP/1.1\r\nHost: x\ry\r\n\r\n", 0, -400, "bare CR in a field"},
	    {"GET /\0 HTTP/1.1\r\n", 17, -400, "NUL in the target"},
	    {"G\x80T / HTTP/1.1\r\n", 0, -400, "high byte in the method"},
	    {"GET / HTTP/1.1\r\nHost: x\r\n", 0, 0, "head not complete"},
	    {"GET / HTTP/1.1\r\nHo", 0, 0, "half a header line"},
	    {"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab", 0, 0,
	     "body pending"},
	    {"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab", 0, 1,
	     "body complete"},
	    {"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1, 1\r\n\r\na", 0, -400,
	     "list-valued Content-Length"},
	    {"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\na", 0, -400,
	     "signed Content-Length"},
	    {"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
	     0, -413, "Content-Length beyond every integer"},
	    {"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\nab",
	     0, 1, "repeated equal Content-Length"},
	    {"GET / HTTP/2.0\r\n\r\n", 0, -505, "HTTP/2 version"},
	    {"GET / HTTP/1.10\r\n\r\n", 0, -505, "two-digit minor"},
	    {"GET / FTP/1.1\r\n\r\n", 0, -400, "not HTTP"},
	    {"GET  / HTTP/1.1\r\n\r\n", 0, -400, "double space"},
	    {"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 0, -400, "blank before the colon"},
	    {"GET / HTTP/1.1\r\n: x\r\n\r\n", 0, -400, "empty header name"},
	    {"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", 0, -501,
	     "chunked"},
	};
	char buf[512];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len = cases[i].len ? cases[i].len : strlen(cases[i].in);
		struct http_req req;
		const char *why = NULL;
		size_t need = 7;
		ssize_t want = cases[i].want == 1 ? (ssize_t)len : cases[i].want;
		ssize_t got;

		memcpy(buf, cases[i].in, len);
		got = http_parse_request(buf, len, 8192, &req, &need, &why);
		ok(got == want, "parser: %s: %zd (want %zd%s%s)", cases[i].what, got,
		   want, why && *why ? ", " : "", why ? why : "");
	}
	{
		char b[] = "POST /p?q=1 HTTP/1.1\r\nHost:  h \r\nContent-Length: 3\r\n\r\nxyzGET";
		struct http_req req;
		const char *why;
		size_t need;
		ssize_t got = http_parse_request(b, sizeof(b) - 1, 8192, &req, &need, &why);

		ok(got == (ssize_t)sizeof(b) - 4 && req.method == HTTP_POST &&
		       !strcmp(req.path, "/p") && !strcmp(req.query, "q=1") &&
		       req.n_headers == 2 && !strcmp(req.headers[0].name, "Host") &&
		       !strcmp(req.headers[0].value, "h") && req.body_len == 3 &&
		       !memcmp(req.body, "xyz", 3) && !strncmp(b + got, "GET", 3),
		   "parser: fields, query, trimmed value, body, next request untouched");
		static const char h9[] = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9\r\n\r\n";

		memcpy(b, h9, sizeof(h9) - 1);
		need = 0;
		got = http_parse_request(b, sizeof(h9) - 1, 8192, &req, &need, &why);
		ok(got == 0 && need == sizeof(h9) - 1 + 9,
		   "parser: waiting for a body says how much (%zu)", need);
		got = http_parse_request(b, sizeof(h9) - 1, 40, &req, &need, &why);
		ok(got == -431, "parser: head over max: 431 (%zd)", got);
	}
}

static void test_routing(void)
{
	size_t n;
	char *r;

	r = roundtrip("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", &n);
	ok(status_of(r) == 200 && strstr(r, "\r\n\r\nhello GET\n") &&
	       strstr(r, "Content-Length: 10\r\n") &&
	       !strstr(r + 1, "HTTP/1.1"),
	   "GET /hello then FIN: one 200 with the handler's body and its "
	   "length");
	free(r);
	r = roundtrip("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", &n);
	ok(status_of(r) == 404, "unknown path: 404");
	free(r);
	r = roundtrip(
	    "POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", &n);
	ok(status_of(r) == 405 && strstr(r, "Allow: GET, HEAD\r\n"),
	   "POST on a GET route: 405 with Allow: GET, HEAD");
	free(r);
	r = roundtrip("BREW /hello HTTP/1.1\r\nHost: x\r\n\r\n", &n);
	ok(status_of(r) == 405, "unknown method token: 405");
	free(r);
	r = roundtrip("HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\n", &n);
	ok(status_of(r) == 200 && strstr(r, "Content-Length: 10\r\n") &&
	       strstr(r, "\r\n\r\n")[4] == '\0',
	   "HEAD: GET's headers, no body");
	free(r);
	r = roundtrip("GET /echo?x=1&v=de%62ug+on HTTP/1.1\r\nHost: x\r\n\r\n",
		      &n);
	ok(strstr(r, "v=debug on err=0"), "query parameter percent-decoded");
	free(r);
	r = roundtrip("GET /echo?v=%zz HTTP/1.1\r\nHost: x\r\n\r\n", &n);
	ok(strstr(r, "err=-22"), "bad percent escape: -EINVAL to the handler");
	free(r);
	r = roundtrip(
	    "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nabcde",
	    &n);
	ok(strstr(r, "body=5:abcde"),
	   "POST body handed over by Content-Length");
	free(r);
	r = roundtrip("GET /big HTTP/1.1\r\nHost: x\r\n\r\n", &n);
	ok(status_of(r) == 500 && strstr(r, "too large"),
	   "response over max_response: 500, not a truncated body");
	free(r);
}

static void test_keepalive_pipeline(void)
{
	char buf[8192];
	int fd = dial(), before;
	const char *two =
	    "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
	    "HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\n"
	    "GET /echo?v=3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	size_t n;
	char *all;

	send_all(fd, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", 32);
	ok(read_response(fd, buf, sizeof(buf)) > 0 && status_of(buf) == 200,
	   "keep-alive: first response");
	send_all(fd, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", 32);
	ok(read_response(fd, buf, sizeof(buf)) > 0 && status_of(buf) == 200,
	   "keep-alive: second request on the same connection");
	close(fd);

	fd = dial();
	before = atomic_load(&hits);
	send_all(fd, two, strlen(two));
	all = read_all(fd, &n);
	{
		char *a = strstr(all, "hello GET");
		char *b = a ? strstr(a, "HTTP/1.1 200") : NULL;
		char *c = b ? strstr(b, "v=3") : NULL;

		ok(a && b && c && !strstr(b, "hello GET") &&
		       strstr(all, "Connection: close"),
		   "three pipelined requests answered in order, closed after "
		   "the last");
	}
	free(all);
	close(fd);
	ok(atomic_load(&hits) == before + 2,
	   "GET and HEAD ran the handler once each (%d)",
	   atomic_load(&hits) - before);

	/* HTTP/1.0 closes by default. */
	fd = dial();
	send_all(fd, "GET /hello HTTP/1.0\r\n\r\n", 23);
	ok(read_response(fd, buf, sizeof(buf)) > 0 && status_of(buf) == 200 &&
	       is_eof(fd),
	   "HTTP/1.0 without keep-alive: answered, then closed");
	close(fd);
}

static void test_partial(void)
{
	const char *req = "GET /echo?v=slow HTTP/1.1\r\nHost: "
			  "x\r\nContent-Length: 3\r\n\r\nxyz";
	char buf[4096];
	int fd = dial();

	for (const char *p = req; *p; p++) {
		send_all(fd, p, 1);
		usleep(2000);
	}
	ok(read_response(fd, buf, sizeof(buf)) > 0 &&
	       strstr(buf, "v=slow err=0 body=3:xyz"),
	   "request arriving byte by byte");
	close(fd);
}

static void test_garbage(void)
{
	char junk[3000], big[12000];
	size_t n;
	char *r;
	int fd;

	srand(7);
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (char)(rand() & 0xff);
	fd = dial();
	send_all(fd, junk, sizeof(junk));
	r = read_all(fd, &n);
	ok(status_of(r) == 400, "random bytes: 400 and closed");
	free(r);
	close(fd);

	r = roundtrip("c\xeb)\xb9oy\x7f\n\x15", &n);
	ok(status_of(r) == 400, "high bytes and DEL in the first line: 400");
	free(r);
	r = roundtrip("GET /hello HTTP/1.1\r\nHost: x\r\n", &n);
	ok(status_of(r) == 400 && strstr(r, "incomplete"),
	   "request cut short by the peer's FIN: 400, not silence");
	free(r);
	r = roundtrip("GET /hello\r\n\r\n", &n);
	ok(status_of(r) == 400, "request line without version: 400");
	free(r);
	r = roundtrip("GET http://x/hello HTTP/1.1\r\nHost: x\r\n\r\n", &n);
	ok(status_of(r) == 400, "absolute-form target: 400");
	free(r);
	r = roundtrip("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", &n);
	ok(status_of(r) == 400 || status_of(r) == 505,
	   "HTTP/2 preface: refused (%d)", status_of(r));
	free(r);
	r = roundtrip("GET /hello HTTP/1.1\r\n\r\n", &n);
	ok(status_of(r) == 400, "HTTP/1.1 without Host: 400");
	free(r);
	r = roundtrip("GET /hello HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n",
		      &n);
	ok(status_of(r) == 400, "space in a header name: 400");
	free(r);
	r = roundtrip("GET /hello HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", &n);
	ok(status_of(r) == 400, "obsolete line folding: 400");
	free(r);
	r = roundtrip(
	    "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n", &n);
	ok(status_of(r) == 400, "malformed Content-Length: 400");
	free(r);
	r = roundtrip("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: "
		      "2\r\nContent-Length: 3\r\n\r\nab",
		      &n);
	ok(status_of(r) == 400, "conflicting Content-Lengths: 400");
	free(r);
	r = roundtrip("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
		      "chunked\r\n\r\n0\r\n\r\n",
		      &n);
	ok(status_of(r) == 501, "chunked body: 501");
	free(r);

	/* Oversized head: no blank line within max_request bytes. */
	memset(big, 'a', sizeof(big));
	memcpy(big, "GET /hello HTTP/1.1\r\nHost: x\r\nX-Long: ", 38);
	fd = dial();
	send_all(fd, big, sizeof(big));
	r = read_all(fd, &n);
	ok(status_of(r) == 431, "head over max_request: 431 (%.12s)", r);
	free(r);
	close(fd);
	r = roundtrip(
	    "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n",
	    &n);
	ok(status_of(r) == 413, "body that cannot fit: 413");
	free(r);
	{
		char many[6000];
		size_t o = (size_t)snprintf(
		    many, sizeof(many), "GET /hello HTTP/1.1\r\nHost: x\r\n");

		for (int i = 0; i < 70; i++)
			o += (size_t)snprintf(many + o, sizeof(many) - o,
					      "X-%d: 1\r\n", i);
		snprintf(many + o, sizeof(many) - o, "\r\n");
		r = roundtrip(many, &n);
		ok(status_of(r) == 431, "more than %d header fields: 431",
		   HTTPD_MAX_HEADERS);
		free(r);
	}
	r = roundtrip("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", &n);
	ok(status_of(r) == 200, "still serving after all of the above");
	free(r);
}

/* Crash reproducer of issue 12 over a socket: answered 400, server lives. */
static void test_crash_inputs(void)
{
	static const char crash[] = "GET /hello HTTP/1.1\r\nHost: x\r\nContent-Length\0: 100\r\n\r\n";
	size_t n;
	char *r;
	int fd = dial();

	send_all(fd, crash, sizeof(crash) - 1);
	shutdown(fd, SHUT_WR);
	r = read_all(fd, &n);
	ok(status_of(r) == 400, "NUL before a header's colon: 400 (%.12s)", r);
	free(r);
	close(fd);
	r = roundtrip("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", &n);
	ok(status_of(r) == 200, "still serving after it");
	free(r);
}

/* Runs with head_ms 400, max_per_source 3. */
static void test_deadlines(void)
{
	struct timespec t0, t1;
	char buf[4096];
	int fd, fds[4], st;
	double ms;

	/* A trickle of one byte every 100 ms never extends the deadline. */
	fd = dial();
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (const char *p = "GET /hello HTTP/1.1\r\nHost: x\r\nX: "; *p; p++) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};

		if (send(fd, p, 1, MSG_NOSIGNAL) != 1 || poll(&pfd, 1, 100) > 0)
			break;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	st = read_response(fd, buf, sizeof(buf)) > 0 ? status_of(buf) : 0;
	ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
	ok(st == 408 && ms < 1500, "trickled head: 408 after the head deadline "
	   "(%d after %.0f ms)", st, ms);
	close(fd);

	/* Blank lines only: dropped as they come, the deadline still ends it. */
	fd = dial();
	{
		char blank[65536];

		for (size_t i = 0; i < sizeof(blank); i += 2)
			memcpy(blank + i, "\r\n", 2);
		for (int i = 0; i < 16; i++)
			send_all(fd, blank, sizeof(blank));
	}
	st = read_response(fd, buf, sizeof(buf)) > 0 ? status_of(buf) : 0;
	ok(st == 408, "1 MiB of blank lines: 408 (%d)", st);
	close(fd);

	for (int i = 0; i < 4; i++)
		fds[i] = dial();
	usleep(50000);
	ok(is_eof(fds[3]), "a 4th connection from one address (max 3): closed");
	send_all(fds[0], "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", 32);
	ok(read_response(fds[0], buf, sizeof(buf)) > 0 && status_of(buf) == 200,
	   "the first three are served");
	for (int i = 0; i < 4; i++)
		close(fds[i]);
	{
		uint64_t n[HTTPD_R_MAX];

		usleep(50000);
		httpd_refusals(srv, n);
		ok(n[HTTPD_R_HEAD_TIMEOUT] == 2 && n[HTTPD_R_SOURCE_LIMIT] == 1,
		   "counted: head_timeout %llu, source_limit %llu",
		   (unsigned long long)n[HTTPD_R_HEAD_TIMEOUT],
		   (unsigned long long)n[HTTPD_R_SOURCE_LIMIT]);
	}
}

static void test_limits(void)
{
	int a = dial(), b = dial(), c, i;
	char buf[4096];

	usleep(50000);
	c = dial();
	ok(c >= 0 && is_eof(c),
	   "connection over max_conns (2): closed at once");
	close(c);
	/* Idle connections go away after idle_ms (300 ms here). */
	usleep(600000);
	ok(is_eof(a) && is_eof(b), "idle connections closed after idle_ms");
	close(a);
	close(b);
	for (i = 0; i < 50 && httpd_conn_count(srv) != 0; i++)
		usleep(10000);
	ok(httpd_conn_count(srv) == 0, "no connection left on the server");
	c = dial();
	send_all(c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", 32);
	ok(read_response(c, buf, sizeof(buf)) > 0 && status_of(buf) == 200,
	   "a new connection is served again");
	close(c);
}

/* A new server with options o on a new port, its loop on a new thread. */
static void restart(pthread_t *th, const struct httpd_opts *o, const char *what)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	int lfd;

	loop_stop(loop);
	pthread_join(*th, NULL);
	httpd_free(srv);
	lfd = httpd_listen("127.0.0.1", 0);
	getsockname(lfd, (struct sockaddr *)&sa, &sl);
	port = ntohs(sa.sin_port);
	ok(httpd_new(loop, lfd, o, &srv) == 0, "server with %s", what);
	pthread_create(th, NULL, loop_thread, NULL);
}

int main(void)
{
	struct httpd_opts o = {.routes = routes,
			       .max_request = 8192,
			       .max_response = 1 << 20,
			       .name = "test"};
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	pthread_t th;
	int lfd;

	log_threshold = LOG_WARN;
	loop = loop_new();
	lfd = httpd_listen("127.0.0.1", 0);
	if (!loop || lfd < 0)
		tap_skip_all("cannot listen on 127.0.0.1");
	getsockname(lfd, (struct sockaddr *)&sa, &sl);
	port = ntohs(sa.sin_port);
	ok(httpd_new(loop, lfd, &o, &srv) == 0, "server on 127.0.0.1:%u", port);
	pthread_create(&th, NULL, loop_thread, NULL);

	test_parser_table();
	test_routing();
	test_keepalive_pipeline();
	test_partial();
	test_garbage();
	test_crash_inputs();

	o.head_ms = 400;
	o.max_per_source = 3;
	restart(&th, &o, "head_ms 400, max_per_source 3");
	test_deadlines();
	o.head_ms = 0;
	o.max_per_source = 0;
	o.max_conns = 2;
	o.idle_ms = 300;
	restart(&th, &o, "max_conns 2, idle 300 ms");
	test_limits();
	loop_stop(loop);
	pthread_join(th, NULL);
	httpd_free(srv);
	loop_free(loop);
	return tap_done();
}
