// SPDX-License-Identifier: Apache-2.0
/*
 * tcptool: the TCP client and server the integration tests drive through
 * ambientd. Every mode asserts what a user would check (the address the
 * server saw, bytes intact by sha256, FIN and RST seen where they belong) and
 * says so on stdout; the exit status is 0 only when the check held.
 *
 * The data streams are generated from a seed, so both ends can compute the
 * expected sha256 without shipping the data twice.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define IO_CHUNK (256 * 1024)
#define HELLO "hello\n"
#define READY "ready\n"
#define REQRESP_MAX 4096 /* request size limit of reqresp and split */

/* Exit codes of the client `connect` mode (the tests branch on them). */
enum {
	EXIT_OK = 0,
	EXIT_FAIL = 1,	  /* check failed, or connection refused/reset */
	EXIT_TIMEOUT = 2, /* nothing answered within --timeout */
	EXIT_USAGE = 64,
};

struct opts {
	const char *mode;
	const char *addr; /* client: destination; server: listen address */
	uint16_t port;
	const char *bind_addr; /* client: source address to bind */
	uint64_t bytes;
	unsigned int count;
	int timeout_ms;
	uint64_t seed;
	uint64_t rate; /* send: bytes per second, 0 = as fast as possible */
	bool once;
};

static struct opts o = {
	.addr = "0.0.0.0",
	.bytes = 0,
	.count = 100,
	.timeout_ms = 10000,
	.seed = 1,
};

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	va_list ap;

	/* One line per call, never interleaved between connection threads. */
	pthread_mutex_lock(&lock);
	va_start(ap, fmt);
	vfprintf(stdout, fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	fflush(stdout);
	pthread_mutex_unlock(&lock);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- deterministic data and its digest ---- */

struct gen {
	uint64_t s;
};

static void gen_init(struct gen *g, uint64_t seed)
{
	/* splitmix64 of the seed, so seeds 1, 2, 3 give unrelated streams */
	uint64_t z = seed + 0x9e3779b97f4a7c15ULL;

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	g->s = (z ^ (z >> 31)) | 1;
}

/* Fills @len bytes (a multiple of 8 except possibly the last call). */
static void gen_fill(struct gen *g, unsigned char *buf, size_t len)
{
	size_t i = 0;

	while (i < len) {
		uint64_t x = g->s;

		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		g->s = x;
		x *= 0x2545f4914f6cdd1dULL;
		size_t n = len - i < 8 ? len - i : 8;
		memcpy(buf + i, &x, n);
		i += n;
	}
}

struct digest {
	EVP_MD_CTX *ctx;
	uint64_t count;
};

static void digest_init(struct digest *d)
{
	d->ctx = EVP_MD_CTX_new();
	if (!d->ctx || !EVP_DigestInit_ex(d->ctx, EVP_sha256(), NULL)) {
		fprintf(stderr, "tcptool: cannot initialise sha256\n");
		exit(EXIT_FAIL);
	}
	d->count = 0;
}

static void digest_update(struct digest *d, const void *p, size_t len)
{
	EVP_DigestUpdate(d->ctx, p, len);
	d->count += len;
}

/* Writes the 64 hex digits and a NUL into @hex and frees the context. */
static void digest_final(struct digest *d, char hex[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;

	EVP_DigestFinal_ex(d->ctx, md, &n);
	EVP_MD_CTX_free(d->ctx);
	d->ctx = NULL;
	for (unsigned int i = 0; i < n && i < 32; i++)
		sprintf(hex + 2 * i, "%02x", md[i]);
	hex[64] = '\0';
}

/* sha256 of the first @bytes of the stream for @seed. */
static void expected_digest(uint64_t seed, uint64_t bytes, char hex[65])
{
	static unsigned char buf[IO_CHUNK];
	struct digest d;
	struct gen g;

	gen_init(&g, seed);
	digest_init(&d);
	while (bytes) {
		size_t n = bytes < sizeof(buf) ? bytes : sizeof(buf);

		gen_fill(&g, buf, n);
		digest_update(&d, buf, n);
		bytes -= n;
	}
	digest_final(&d, hex);
}

/* ---- socket helpers; all return 0 or a negative errno ---- */

static int parse_ip(const char *s, struct in_addr *a)
{
	return inet_pton(AF_INET, s, a) == 1 ? 0 : -EINVAL;
}

static void peer_str(int fd, bool local, char *out, size_t len)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	char ip[INET_ADDRSTRLEN] = "?";
	int r;

	r = local ? getsockname(fd, (struct sockaddr *)&sa, &sl)
		  : getpeername(fd, (struct sockaddr *)&sa, &sl);
	if (r == 0)
		inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof(ip));
	snprintf(out, len, "%s:%u", ip, r == 0 ? ntohs(sa.sin_port) : 0);
}

static void set_timeouts(int fd, int ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* Closes with SO_LINGER 0: the kernel sends RST instead of FIN. */
static void abort_close(int fd)
{
	struct linger l = { .l_onoff = 1, .l_linger = 0 };

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	close(fd);
}

static int write_all(int fd, const void *p, size_t len)
{
	const char *c = p;

	while (len) {
		ssize_t n = send(fd, c, len, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		}
		c += n;
		len -= n;
	}
	return 0;
}

/* Reads exactly @len bytes. Returns 0, -EPIPE on an early EOF, or -errno. */
static int read_exact(int fd, void *p, size_t len)
{
	char *c = p;

	while (len) {
		ssize_t n = recv(fd, c, len, 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		}
		if (n == 0)
			return -EPIPE;
		c += n;
		len -= n;
	}
	return 0;
}

/* Reads until '\n' or EOF (at most @len-1 bytes). Returns length or -errno. */
static ssize_t read_line(int fd, char *buf, size_t len)
{
	size_t got = 0;

	while (got + 1 < len) {
		ssize_t n = recv(fd, buf + got, 1, 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		}
		if (n == 0)
			break;
		got++;
		if (buf[got - 1] == '\n')
			break;
	}
	buf[got] = '\0';
	return got;
}

/* Reads into the digest until EOF. Returns 0 or -errno. */
static int read_to_eof(int fd, struct digest *d)
{
	static __thread unsigned char *buf;

	if (!buf && !(buf = malloc(IO_CHUNK)))
		return -ENOMEM;
	for (;;) {
		ssize_t n = recv(fd, buf, IO_CHUNK, 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		}
		if (n == 0)
			return 0;
		digest_update(d, buf, n);
	}
}

/* Writes @bytes of the @seed stream, hashing what it sends. */
static int write_stream(int fd, uint64_t seed, uint64_t bytes, struct digest *d)
{
	static __thread unsigned char *buf;
	struct gen g;
	int r;

	uint64_t sent = 0;
	double t0 = now_s();

	if (!buf && !(buf = malloc(IO_CHUNK)))
		return -ENOMEM;
	gen_init(&g, seed);
	while (bytes) {
		size_t n = bytes < IO_CHUNK ? bytes : IO_CHUNK;

		if (o.rate) {
			/* Paced: ten chunks a second, each after its time. */
			double due = t0 + (double)sent / (double)o.rate;

			if (n > o.rate / 10 + 1)
				n = o.rate / 10 + 1;
			if (due > now_s())
				usleep((useconds_t)((due - now_s()) * 1e6));
			sent += n;
		}

		gen_fill(&g, buf, n);
		digest_update(d, buf, n);
		r = write_all(fd, buf, n);
		if (r)
			return r;
		bytes -= n;
	}
	return 0;
}

/*
 * Connects to o.addr:o.port (from o.bind_addr if set) within o.timeout_ms.
 * Returns a blocking fd with o.timeout_ms read/write timeouts, or -errno
 * (-ETIMEDOUT when nothing answered).
 */
static int dial(void)
{
	struct sockaddr_in dst = { .sin_family = AF_INET, .sin_port = htons(o.port) };
	struct pollfd pfd;
	socklen_t sl;
	int fd, r, err = 0;

	if (parse_ip(o.addr, &dst.sin_addr))
		return -EINVAL;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (o.bind_addr) {
		struct sockaddr_in src = { .sin_family = AF_INET };

		if (parse_ip(o.bind_addr, &src.sin_addr) ||
		    bind(fd, (struct sockaddr *)&src, sizeof(src))) {
			r = errno ? -errno : -EINVAL;
			goto fail;
		}
	}
	if (connect(fd, (struct sockaddr *)&dst, sizeof(dst)) && errno != EINPROGRESS) {
		r = -errno;
		goto fail;
	}
	pfd = (struct pollfd){ .fd = fd, .events = POLLOUT };
	r = poll(&pfd, 1, o.timeout_ms);
	if (r == 0) {
		r = -ETIMEDOUT;
		goto fail;
	}
	sl = sizeof(err);
	getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &sl);
	if (err) {
		r = -err;
		goto fail;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	set_timeouts(fd, o.timeout_ms);
	return fd;
fail:
	close(fd);
	return r;
}

/* ---- server ---- */

static atomic_uint active, peak;

struct conn {
	int fd;
	char peer[64];
};

/* Each handler owns the fd, closes it, and returns 0 when its check held. */

static int srv_whoami(struct conn *c)
{
	char line[80];
	int r;

	snprintf(line, sizeof(line), "%s\n", c->peer);
	r = write_all(c->fd, line, strlen(line));
	close(c->fd);
	say("whoami %s%s", c->peer, r ? " (write failed)" : "");
	return r ? 1 : 0;
}

static int srv_echo(struct conn *c)
{
	static __thread char *buf;
	unsigned int now = atomic_fetch_add(&active, 1) + 1;
	unsigned int p = atomic_load(&peak);
	int r = 0;

	/* "peak N" lines let a test prove N connections were open at once. */
	while (now > p) {
		if (atomic_compare_exchange_weak(&peak, &p, now)) {
			say("peak %u", now);
			break;
		}
	}
	if (!buf && !(buf = malloc(IO_CHUNK)))
		r = -ENOMEM;
	while (!r) {
		ssize_t n = recv(c->fd, buf, IO_CHUNK, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			break;
		}
		if (n == 0) {
			shutdown(c->fd, SHUT_WR);
			break;
		}
		r = write_all(c->fd, buf, n);
	}
	atomic_fetch_sub(&active, 1);
	close(c->fd);
	if (r && !o.once)
		say("echo %s error: %s", c->peer, strerror(-r));
	return r ? 1 : 0;
}

/* Client→server half-close: digest everything up to FIN, then answer. */
static int srv_sink(struct conn *c)
{
	struct digest d;
	char hex[65], line[128];
	int r;

	digest_init(&d);
	r = read_to_eof(c->fd, &d);
	digest_final(&d, hex);
	if (r) {
		say("sink %s FAIL: read error after %" PRIu64 " bytes: %s", c->peer,
		    d.count, strerror(-r));
		close(c->fd);
		return 1;
	}
	snprintf(line, sizeof(line), "%" PRIu64 " %s\n", d.count, hex);
	r = write_all(c->fd, line, strlen(line));
	close(c->fd);
	say("sink %s %" PRIu64 " %s%s", c->peer, d.count, hex, r ? " (reply failed)" : "");
	return r ? 1 : 0;
}

/*
 * Server→client half-close: send o.bytes, shut down our side, then keep
 * reading: the client answers "<bytes> <sha256>" only after it saw our FIN.
 */
static int srv_source(struct conn *c)
{
	struct digest d;
	char hex[65], want[128], got[128];
	ssize_t n;
	int r;

	digest_init(&d);
	r = write_stream(c->fd, o.seed, o.bytes, &d);
	digest_final(&d, hex);
	if (r) {
		say("source %s FAIL: write: %s", c->peer, strerror(-r));
		close(c->fd);
		return 1;
	}
	shutdown(c->fd, SHUT_WR);
	snprintf(want, sizeof(want), "%" PRIu64 " %s\n", o.bytes, hex);
	n = read_line(c->fd, got, sizeof(got));
	close(c->fd);
	if (n < 0) {
		say("source %s FAIL: no report after our FIN: %s", c->peer, strerror(-n));
		return 1;
	}
	if (strcmp(got, want)) {
		say("source %s FAIL: client reported '%.*s', expected '%.*s'", c->peer,
		    (int)strcspn(got, "\n"), got, (int)strcspn(want, "\n"), want);
		return 1;
	}
	say("source %s ok: sent %" PRIu64 " bytes + FIN, client confirmed after FIN",
	    c->peer, o.bytes);
	return 0;
}

/*
 * Request/response with requests of exactly --bytes: answer each whole
 * request with as many bytes, never a partial one (like an RPC server), until
 * the client's EOF. With the split client this catches a relay that delays a
 * request's tail (Nagle against the server's delayed ACK).
 */
static int srv_reqresp(struct conn *c)
{
	char req[REQRESP_MAX], rsp[REQRESP_MAX];
	uint64_t rounds = 0;
	int r;

	memset(rsp, 'r', sizeof(rsp));
	while (!(r = read_exact(c->fd, req, o.bytes))) {
		if (write_all(c->fd, rsp, o.bytes))
			break;
		rounds++;
	}
	close(c->fd);
	say("reqresp %s %" PRIu64 " rounds%s", c->peer, rounds,
	    r == -EPIPE ? "" : " (ended by an error)");
	return r == -EPIPE ? 0 : 1;
}

/* Reads the client's hello, then resets the connection. */
static int srv_abort(struct conn *c)
{
	char line[32];
	ssize_t n = read_line(c->fd, line, sizeof(line));

	abort_close(c->fd);
	say("abort %s %s", c->peer, n > 0 ? "sent RST after hello" : "sent RST (no hello)");
	return n > 0 ? 0 : 1;
}

/* Says ready, then expects the client's RST to arrive as ECONNRESET. */
static int srv_expect_rst(struct conn *c)
{
	char line[32];
	ssize_t n = read_line(c->fd, line, sizeof(line));

	if (n <= 0 || write_all(c->fd, READY, strlen(READY))) {
		say("expect-rst %s FAIL: handshake (hello/ready) failed", c->peer);
		close(c->fd);
		return 1;
	}
	n = read_line(c->fd, line, sizeof(line));
	close(c->fd);
	if (n == -ECONNRESET) {
		say("expect-rst %s ok: connection reset by peer", c->peer);
		return 0;
	}
	if (n == 0)
		say("expect-rst %s FAIL: got FIN (EOF) instead of RST", c->peer);
	else if (n > 0)
		say("expect-rst %s FAIL: got data instead of RST", c->peer);
	else
		say("expect-rst %s FAIL: %s", c->peer, strerror(-n));
	return 1;
}

static const struct {
	const char *name;
	int (*fn)(struct conn *c);
	const char *help;
} server_modes[] = {
	{ "whoami", srv_whoami, "write \"<peer ip>:<port>\\n\" and close" },
	{ "echo", srv_echo, "echo until EOF, then FIN; prints \"peak N\" concurrency" },
	{ "sink", srv_sink, "read to EOF, reply \"<bytes> <sha256>\\n\" (client half-close)" },
	{ "source", srv_source, "send --bytes of --seed, FIN, then check client's report" },
	{ "reqresp", srv_reqresp, "answer each --bytes request with --bytes, until EOF" },
	{ "abort", srv_abort, "read hello, then close with RST" },
	{ "expect-rst", srv_expect_rst, "read hello, say ready, expect ECONNRESET" },
};

static void *conn_thread(void *arg)
{
	struct conn *c = arg;
	int (*fn)(struct conn *c) = NULL;

	for (size_t i = 0; i < sizeof(server_modes) / sizeof(server_modes[0]); i++)
		if (!strcmp(server_modes[i].name, o.mode))
			fn = server_modes[i].fn;
	fn(c);
	free(c);
	return NULL;
}

static int server(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(o.port) };
	int (*fn)(struct conn *c) = NULL;
	pthread_attr_t attr;
	int lfd, one = 1;

	for (size_t i = 0; i < sizeof(server_modes) / sizeof(server_modes[0]); i++)
		if (!strcmp(server_modes[i].name, o.mode))
			fn = server_modes[i].fn;
	if (!fn) {
		fprintf(stderr, "tcptool: unknown server mode '%s'\n", o.mode);
		return EXIT_USAGE;
	}
	if (parse_ip(o.addr, &sa.sin_addr)) {
		fprintf(stderr, "tcptool: bad listen address '%s'\n", o.addr);
		return EXIT_USAGE;
	}
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) || listen(lfd, 4096)) {
		fprintf(stderr, "tcptool: listen %s:%u: %s\n", o.addr, o.port, strerror(errno));
		return EXIT_FAIL;
	}
	say("listening %s:%u mode %s", o.addr, o.port, o.mode);

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 128 * 1024);
	for (;;) {
		struct conn *c = calloc(1, sizeof(*c));
		pthread_t t;

		if (!c)
			return EXIT_FAIL;
		c->fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (c->fd < 0) {
			free(c);
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			fprintf(stderr, "tcptool: accept: %s\n", strerror(errno));
			return EXIT_FAIL;
		}
		peer_str(c->fd, false, c->peer, sizeof(c->peer));
		/* Echo connections may idle while a test holds them open. */
		if (strcmp(o.mode, "echo"))
			set_timeouts(c->fd, o.timeout_ms);
		if (o.once) {
			int r = fn(c);

			free(c);
			return r ? EXIT_FAIL : EXIT_OK;
		}
		if (pthread_create(&t, &attr, conn_thread, c)) {
			say("%s %s FAIL: cannot start a thread", o.mode, c->peer);
			close(c->fd);
			free(c);
		}
	}
}

/* ---- client ---- */

static int report_dial_error(int r)
{
	if (r == -ETIMEDOUT) {
		say("timeout: no answer from %s:%u within %d ms", o.addr, o.port, o.timeout_ms);
		return EXIT_TIMEOUT;
	}
	say("%s: %s:%u: %s", r == -ECONNREFUSED ? "refused" : "error", o.addr, o.port,
	    strerror(-r));
	return EXIT_FAIL;
}

static int cli_connect(void)
{
	double t0 = now_s();
	int fd = dial();
	char local[64];

	if (fd < 0) {
		int rc = report_dial_error(fd);

		say("elapsed_ms %.0f", (now_s() - t0) * 1000);
		return rc;
	}
	peer_str(fd, true, local, sizeof(local));
	say("connected from %s", local);
	say("elapsed_ms %.0f", (now_s() - t0) * 1000);
	close(fd);
	return EXIT_OK;
}

/* Prints the line a whoami server sent: the address it saw us as. */
static int cli_whoami(void)
{
	char line[128];
	ssize_t n;
	int fd = dial();

	if (fd < 0)
		return report_dial_error(fd);
	n = read_line(fd, line, sizeof(line));
	close(fd);
	if (n <= 0) {
		say("error: no answer: %s", n ? strerror(-n) : "EOF");
		return EXIT_FAIL;
	}
	fputs(line, stdout);
	return EXIT_OK;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/*
 * --count requests of --bytes to a reqresp server, each written in two
 * halves 1 ms apart (a header, then a body); prints the round trips' p50 and
 * max in ms. The check on them is the caller's.
 */
static int cli_split(void)
{
	char req[REQRESP_MAX], rsp[REQRESP_MAX];
	size_t half = o.bytes / 2;
	double *rt = calloc(o.count, sizeof(*rt));
	int fd, r = 0;

	if (!rt)
		return EXIT_FAIL;
	memset(req, 'q', sizeof(req));
	fd = dial();
	if (fd < 0) {
		free(rt);
		return report_dial_error(fd);
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 }, sizeof(int));
	for (unsigned int i = 0; i < o.count && !r; i++) {
		double t0 = now_s();

		r = write_all(fd, req, half);
		if (!r) {
			nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);
			r = write_all(fd, req + half, o.bytes - half);
		}
		if (!r)
			r = read_exact(fd, rsp, o.bytes);
		rt[i] = (now_s() - t0) * 1000;
	}
	close(fd);
	if (r) {
		say("FAIL: request/response: %s", strerror(-r));
		free(rt);
		return EXIT_FAIL;
	}
	qsort(rt, o.count, sizeof(*rt), cmp_double);
	say("split: %u requests of %" PRIu64 " bytes in two writes: p50 %.2f ms, max %.2f ms",
	    o.count, o.bytes, rt[o.count / 2], rt[o.count - 1]);
	free(rt);
	return EXIT_OK;
}

static int cli_send(void)
{
	struct digest d;
	char hex[65], want[128], got[128];
	double t0 = now_s(), dt;
	ssize_t n;
	int r, fd = dial();

	if (fd < 0)
		return report_dial_error(fd);
	digest_init(&d);
	r = write_stream(fd, o.seed, o.bytes, &d);
	digest_final(&d, hex);
	if (r) {
		say("FAIL: write after %" PRIu64 " bytes: %s", d.count, strerror(-r));
		close(fd);
		return EXIT_FAIL;
	}
	/* Our FIN; the server answers on the still-open other direction. */
	shutdown(fd, SHUT_WR);
	n = read_line(fd, got, sizeof(got));
	close(fd);
	dt = now_s() - t0;
	snprintf(want, sizeof(want), "%" PRIu64 " %s\n", o.bytes, hex);
	if (n <= 0) {
		say("FAIL: no answer after our FIN: %s", n ? strerror(-n) : "EOF");
		return EXIT_FAIL;
	}
	if (strcmp(got, want)) {
		say("FAIL: server got '%.*s', we sent '%.*s'", (int)strcspn(got, "\n"), got,
		    (int)strcspn(want, "\n"), want);
		return EXIT_FAIL;
	}
	say("ok: sent %" PRIu64 " bytes in %.2f s (%.0f MiB/s), server sha256 %s matches",
	    o.bytes, dt, o.bytes / dt / 1048576.0, hex);
	return EXIT_OK;
}

static int cli_recv(void)
{
	struct digest d;
	char hex[65], want[65], line[128];
	int r, fd = dial();

	if (fd < 0)
		return report_dial_error(fd);
	digest_init(&d);
	r = read_to_eof(fd, &d);
	digest_final(&d, hex);
	if (r) {
		say("FAIL: read after %" PRIu64 " bytes: %s", d.count, strerror(-r));
		close(fd);
		return EXIT_FAIL;
	}
	/* We saw the server's FIN; answer on our still-open direction. */
	snprintf(line, sizeof(line), "%" PRIu64 " %s\n", d.count, hex);
	r = write_all(fd, line, strlen(line));
	shutdown(fd, SHUT_WR);
	if (!r) {
		char tail[8];

		/* Wait for the server's close so it surely read our report. */
		while (recv(fd, tail, sizeof(tail), 0) > 0)
			;
	}
	close(fd);
	expected_digest(o.seed, o.bytes, want);
	if (r) {
		say("FAIL: report after FIN: %s", strerror(-r));
		return EXIT_FAIL;
	}
	if (d.count != o.bytes || strcmp(hex, want)) {
		say("FAIL: received %" PRIu64 " bytes sha256 %s, expected %" PRIu64 " %s",
		    d.count, hex, o.bytes, want);
		return EXIT_FAIL;
	}
	say("ok: received %" PRIu64 " bytes + FIN, sha256 %s, reported back after FIN",
	    d.count, hex);
	return EXIT_OK;
}

static int cli_abort(void)
{
	char line[32];
	ssize_t n;
	int fd = dial();

	if (fd < 0)
		return report_dial_error(fd);
	if (write_all(fd, HELLO, strlen(HELLO)) ||
	    (n = read_line(fd, line, sizeof(line))) <= 0 || strcmp(line, READY)) {
		say("FAIL: no ready from the server");
		close(fd);
		return EXIT_FAIL;
	}
	abort_close(fd);
	say("ok: sent RST after ready");
	return EXIT_OK;
}

static int cli_expect_rst(void)
{
	char line[32];
	ssize_t n;
	int fd = dial();

	if (fd < 0)
		return report_dial_error(fd);
	if (write_all(fd, HELLO, strlen(HELLO))) {
		say("FAIL: cannot send hello");
		close(fd);
		return EXIT_FAIL;
	}
	n = read_line(fd, line, sizeof(line));
	close(fd);
	if (n == -ECONNRESET) {
		say("ok: connection reset by peer");
		return EXIT_OK;
	}
	if (n == 0)
		say("FAIL: got FIN (EOF) instead of RST");
	else if (n > 0)
		say("FAIL: got data instead of RST");
	else
		say("FAIL: %s", strerror(-n));
	return n == -ETIMEDOUT ? EXIT_TIMEOUT : EXIT_FAIL;
}

/* Connects to an echo server, proves the path works, then idles. */
static int cli_hold(void)
{
	char line[32], local[64];
	ssize_t n;
	int fd = dial();

	if (fd < 0)
		return report_dial_error(fd);
	if (write_all(fd, "hold\n", 5) || (n = read_line(fd, line, sizeof(line))) <= 0) {
		say("FAIL: no echo");
		close(fd);
		return EXIT_FAIL;
	}
	peer_str(fd, true, local, sizeof(local));
	say("connected from %s", local);
	/* Idle until the peer closes or the read timeout (--timeout) fires. */
	while (recv(fd, line, sizeof(line), 0) > 0)
		;
	close(fd);
	return EXIT_OK;
}

/*
 * o.count connections to an echo server, all established before any data
 * moves; then a unique payload (o.bytes, default 1 KiB) on each, and every
 * echo checked byte for byte while all connections are still open.
 */
struct mconn {
	int fd;
	size_t sent, got;
	bool done, failed;
	unsigned char *want;
	unsigned char *back;
};

static void mconn_fail(struct mconn *m, unsigned int *failures, unsigned int i,
		       const char *what, int err)
{
	if (m->failed)
		return;
	m->failed = true;
	if ((*failures)++ < 5)
		say("conn %u: %s%s%s", i, what, err ? ": " : "", err ? strerror(err) : "");
}

static int cli_many(void)
{
	unsigned int n = o.count, failures = 0, connected = 0, verified = 0;
	size_t plen = o.bytes ? o.bytes : 1024;
	struct mconn *m = calloc(n, sizeof(*m));
	struct pollfd *pfd = calloc(n, sizeof(*pfd));
	struct sockaddr_in dst = { .sin_family = AF_INET, .sin_port = htons(o.port) };
	double t0 = now_s(), deadline = t0 + o.timeout_ms / 1000.0;
	struct rlimit rl;

	if (!m || !pfd || parse_ip(o.addr, &dst.sin_addr))
		return EXIT_USAGE;
	/* One fd per connection: raise the soft limit as far as allowed. */
	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < n + 64) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	for (unsigned int i = 0; i < n; i++) {
		struct gen g;
		int len;

		m[i].want = malloc(plen);
		m[i].back = malloc(plen);
		if (!m[i].want || !m[i].back)
			return EXIT_FAIL;
		gen_init(&g, o.seed * 1000003 + i);
		gen_fill(&g, m[i].want, plen);
		len = snprintf((char *)m[i].want, plen, "conn %u of %u:", i, n);
		(void)len;
		m[i].fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (m[i].fd < 0) {
			mconn_fail(&m[i], &failures, i, "socket", errno);
			continue;
		}
		if (connect(m[i].fd, (struct sockaddr *)&dst, sizeof(dst)) &&
		    errno != EINPROGRESS)
			mconn_fail(&m[i], &failures, i, "connect", errno);
	}

	/* Phase 1: wait until every connect completed. */
	for (;;) {
		unsigned int waiting = 0;
		int r;

		for (unsigned int i = 0; i < n; i++) {
			pfd[i].fd = (m[i].failed || m[i].done) ? -1 : m[i].fd;
			pfd[i].events = POLLOUT;
			waiting += pfd[i].fd >= 0;
		}
		if (!waiting || now_s() > deadline)
			break;
		r = poll(pfd, n, 200);
		if (r < 0 && errno != EINTR)
			break;
		for (unsigned int i = 0; i < n; i++) {
			int err = 0;
			socklen_t sl = sizeof(err);

			if (pfd[i].fd < 0 || !pfd[i].revents)
				continue;
			getsockopt(m[i].fd, SOL_SOCKET, SO_ERROR, &err, &sl);
			if (err)
				mconn_fail(&m[i], &failures, i, "connect", err);
			else {
				m[i].done = true;
				connected++;
			}
		}
	}
	for (unsigned int i = 0; i < n; i++) {
		if (!m[i].done)
			mconn_fail(&m[i], &failures, i, "connect timed out", 0);
		m[i].done = false;
	}
	say("connected %u/%u in %.2f s", connected, n, now_s() - t0);

	/* Phase 2: payload out, echo back, on all connections at once. */
	for (;;) {
		unsigned int busy = 0;
		int r;

		for (unsigned int i = 0; i < n; i++) {
			pfd[i].fd = (m[i].failed || m[i].done) ? -1 : m[i].fd;
			pfd[i].events = POLLIN | (m[i].sent < plen ? POLLOUT : 0);
			busy += pfd[i].fd >= 0;
		}
		if (!busy || now_s() > deadline)
			break;
		r = poll(pfd, n, 200);
		if (r < 0 && errno != EINTR)
			break;
		for (unsigned int i = 0; i < n; i++) {
			struct mconn *c = &m[i];
			ssize_t k;

			if (pfd[i].fd < 0 || !pfd[i].revents)
				continue;
			if (c->sent < plen && (pfd[i].revents & (POLLOUT | POLLERR))) {
				k = send(c->fd, c->want + c->sent, plen - c->sent, MSG_NOSIGNAL);
				if (k < 0 && errno != EAGAIN) {
					mconn_fail(c, &failures, i, "send", errno);
					continue;
				}
				if (k > 0)
					c->sent += k;
			}
			if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR)) {
				k = recv(c->fd, c->back + c->got, plen - c->got, 0);
				if (k == 0) {
					mconn_fail(c, &failures, i, "EOF before the whole echo", 0);
					continue;
				}
				if (k < 0 && errno != EAGAIN) {
					mconn_fail(c, &failures, i, "recv", errno);
					continue;
				}
				if (k > 0)
					c->got += k;
				if (c->got == plen) {
					c->done = true;
					if (memcmp(c->want, c->back, plen))
						mconn_fail(c, &failures, i, "echo differs from payload", 0);
					else
						verified++;
				}
			}
		}
	}
	for (unsigned int i = 0; i < n; i++)
		if (!m[i].done && !m[i].failed)
			mconn_fail(&m[i], &failures, i, "echo timed out", 0);
	say("verified %u/%u connections (%zu-byte unique payload each, all open at once) in %.2f s",
	    verified, n, plen, now_s() - t0);
	for (unsigned int i = 0; i < n; i++) {
		if (m[i].fd >= 0)
			close(m[i].fd);
		free(m[i].want);
		free(m[i].back);
	}
	free(m);
	free(pfd);
	return verified == n ? EXIT_OK : EXIT_FAIL;
}

static const struct {
	const char *name;
	int (*fn)(void);
	const char *help;
} client_modes[] = {
	{ "connect", cli_connect, "connect only; exit 0 connected, 1 refused, 2 timeout" },
	{ "whoami", cli_whoami, "print the line a whoami server sent (our address as seen)" },
	{ "send", cli_send, "send --bytes to a sink, FIN, check its sha256 answer" },
	{ "recv", cli_recv, "read a source to FIN, check sha256, report back after FIN" },
	{ "abort", cli_abort, "hello, wait for ready, then RST (server: expect-rst)" },
	{ "expect-rst", cli_expect_rst, "hello, then expect ECONNRESET (server: abort)" },
	{ "hold", cli_hold, "connect to echo, print 'connected', idle until --timeout" },
	{ "split", cli_split, "--count requests of --bytes in two writes (server: reqresp)" },
	{ "many", cli_many, "--count concurrent echo connections, all verified" },
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: tcptool server MODE PORT [--listen ADDR] [--once] [--bytes N] [--seed S]\n"
		"                                [--timeout MS]\n"
		"       tcptool client MODE ADDR PORT [--bind ADDR] [--count N] [--bytes N]\n"
		"                                [--seed S] [--timeout MS] [--rate N/s]\n"
		"N accepts K, M, G suffixes (powers of 1024).\n\nserver modes:\n");
	for (size_t i = 0; i < sizeof(server_modes) / sizeof(server_modes[0]); i++)
		fprintf(f, "  %-11s %s\n", server_modes[i].name, server_modes[i].help);
	fprintf(f, "client modes:\n");
	for (size_t i = 0; i < sizeof(client_modes) / sizeof(client_modes[0]); i++)
		fprintf(f, "  %-11s %s\n", client_modes[i].name, client_modes[i].help);
	fprintf(f, "\nEXAMPLES\n"
		   "  tcptool server sink 7001 &\n"
		   "  tcptool client send 198.18.2.11 7001 --bytes 1G\n"
		   "  tcptool client many 198.18.2.11 7002 --count 500 --timeout 30000\n");
}

/* Strict unsigned parse with an optional K/M/G suffix; -1 on error. */
static int parse_u64(const char *s, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;
	uint64_t mul = 1;

	errno = 0;
	if (!s || !*s || *s == '-')
		return -1;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -1;
	if (*end) {
		switch (*end) {
		case 'K': case 'k': mul = 1ULL << 10; break;
		case 'M': case 'm': mul = 1ULL << 20; break;
		case 'G': case 'g': mul = 1ULL << 30; break;
		default: return -1;
		}
		if (end[1])
			return -1;
	}
	if (v > max / mul)
		return -1;
	*out = v * mul;
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "bind", required_argument, NULL, 'b' },
		{ "bytes", required_argument, NULL, 'n' },
		{ "count", required_argument, NULL, 'c' },
		{ "seed", required_argument, NULL, 's' },
		{ "timeout", required_argument, NULL, 't' },
		{ "once", no_argument, NULL, '1' },
		{ "rate", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	uint64_t v;
	bool is_server;
	int c, nargs;

	while ((c = getopt_long(argc, argv, "l:b:n:c:s:t:r:1h", lo, NULL)) != -1) {
		switch (c) {
		case 'r':
			if (parse_u64(optarg, UINT64_MAX, &o.rate) || !o.rate)
				goto bad_number;
			break;
		case 'l': o.addr = optarg; break;
		case 'b': o.bind_addr = optarg; break;
		case 'n':
			if (parse_u64(optarg, UINT64_MAX, &o.bytes))
				goto bad_number;
			break;
		case 'c':
			if (parse_u64(optarg, 60000, &v) || v == 0)
				goto bad_number;
			o.count = v;
			break;
		case 's':
			if (parse_u64(optarg, UINT64_MAX, &o.seed))
				goto bad_number;
			break;
		case 't':
			if (parse_u64(optarg, 3600000, &v) || v == 0)
				goto bad_number;
			o.timeout_ms = v;
			break;
		case '1': o.once = true; break;
		case 'h': usage(stdout); return EXIT_OK;
		default: usage(stderr); return EXIT_USAGE;
		}
	}
	nargs = argc - optind;
	if (nargs < 1)
		goto bad_usage;
	is_server = !strcmp(argv[optind], "server");
	if (!is_server && strcmp(argv[optind], "client"))
		goto bad_usage;
	if (nargs != (is_server ? 3 : 4))
		goto bad_usage;
	o.mode = argv[optind + 1];
	if (!is_server)
		o.addr = argv[optind + 2];
	if (parse_u64(argv[argc - 1], 65535, &v) || v == 0) {
		fprintf(stderr, "tcptool: bad port '%s'\n", argv[argc - 1]);
		return EXIT_USAGE;
	}
	o.port = v;
	if ((!strcmp(o.mode, "reqresp") || !strcmp(o.mode, "split")) &&
	    (o.bytes < 2 || o.bytes > REQRESP_MAX)) {
		fprintf(stderr, "tcptool: %s needs --bytes between 2 and %d\n", o.mode,
			REQRESP_MAX);
		return EXIT_USAGE;
	}
	signal(SIGPIPE, SIG_IGN);

	if (is_server)
		return server();
	for (size_t i = 0; i < sizeof(client_modes) / sizeof(client_modes[0]); i++)
		if (!strcmp(client_modes[i].name, o.mode))
			return client_modes[i].fn();
	fprintf(stderr, "tcptool: unknown client mode '%s'\n", o.mode);
	return EXIT_USAGE;

bad_number:
	fprintf(stderr, "tcptool: bad number '%s' for -%c\n", optarg, c);
	return EXIT_USAGE;
bad_usage:
	usage(stderr);
	return EXIT_USAGE;
}
