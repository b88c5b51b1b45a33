// SPDX-License-Identifier: Apache-2.0
/*
 * benchtool: the small-message side of scripts/bench (iperf3 does the bulk
 * throughput). One server and three client modes:
 *
 *   server PORT            echo server: epoll, one thread per CPU, each with
 *                          its own SO_REUSEPORT listener. A chunk that ends
 *                          in '!' is echoed and then the server closes, so
 *                          TIME_WAIT lands on the server side of every hop
 *                          and connection-rate runs never run out of ports.
 *   latency ADDR PORT      ping-pong of --size bytes for --seconds, on
 *                          --connections connections one after the other
 *                          (each gets an equal share of the time); prints
 *                          p50/p99 round trip in us over all of them.
 *   connrate ADDR PORT     --concurrency threads, each looping connect,
 *                          1-byte request, 1-byte answer, close, for
 *                          --seconds; prints connections/s. --close client
 *                          (default): the client closes first; --close
 *                          server: the request is "!" and the client waits
 *                          for the server's FIN before closing.
 *   hold ADDR PORT         opens --count connections, proves each with one
 *                          echo, prints a line and idles until killed.
 *
 * Client results are one JSON object on stdout; errors go to stderr.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define ECHO_BUF 4096
#define MAX_SIZE 4096
#define MAX_EVENTS 256
#define IO_TIMEOUT_MS 10000
#define QUIT_BYTE '!'

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 64 };

static struct {
	struct sockaddr_in dst;
	uint16_t port;
	unsigned int size;
	double seconds;
	unsigned int concurrency;
	unsigned int count;
	unsigned int threads;
	unsigned int warmup;
	unsigned int connections;
	bool server_closes;
} o = {
	.size = 64,
	.seconds = 3,
	.concurrency = 8,
	.count = 1000,
	.warmup = 1000,
	.connections = 1,
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "benchtool: %s: %s\n", what, strerror(errno));
	exit(EXIT_FAIL);
}

/* 10k connections need more than the usual 1024 descriptors. */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* ---- server ---- */

struct echo_conn {
	int fd;
	uint16_t off, len; /* pending echo bytes [off, len) */
	bool quit;	   /* close once the pending bytes are written */
	char buf[ECHO_BUF];
};

struct echo_thread {
	pthread_t thread;
	int lfd, ep;
};

static void echo_close(struct echo_thread *t, struct echo_conn *c)
{
	epoll_ctl(t->ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c);
}

/* Writes what is pending; false when the connection is gone. */
static bool echo_flush(struct echo_thread *t, struct echo_conn *c)
{
	struct epoll_event ev = { .data.ptr = c };

	while (c->off < c->len) {
		ssize_t n = write(c->fd, c->buf + c->off, c->len - c->off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			/* Stop reading until the echo drained: bounded memory. */
			ev.events = EPOLLOUT;
			epoll_ctl(t->ep, EPOLL_CTL_MOD, c->fd, &ev);
			return true;
		}
		if (n < 0) {
			echo_close(t, c);
			return false;
		}
		c->off += n;
	}
	c->off = c->len = 0;
	if (c->quit) {
		echo_close(t, c);
		return false;
	}
	ev.events = EPOLLIN;
	epoll_ctl(t->ep, EPOLL_CTL_MOD, c->fd, &ev);
	return true;
}

static void echo_event(struct echo_thread *t, struct echo_conn *c, uint32_t events)
{
	if (c->len) {
		echo_flush(t, c);
		return;
	}
	for (;;) {
		ssize_t n = read(c->fd, c->buf, sizeof(c->buf));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			echo_close(t, c);
			return;
		}
		c->len = n;
		c->quit = c->buf[n - 1] == QUIT_BYTE;
		if (!echo_flush(t, c) || c->len)
			return;
	}
}

static void echo_accept(struct echo_thread *t)
{
	for (;;) {
		struct epoll_event ev = { .events = EPOLLIN };
		struct echo_conn *c;
		int one = 1;
		int fd = accept4(t->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE)
				fprintf(stderr, "benchtool: accept: %s\n", strerror(errno));
			return;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c = malloc(sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		c->fd = fd;
		c->off = c->len = 0;
		c->quit = false;
		ev.data.ptr = c;
		if (epoll_ctl(t->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
			close(fd);
			free(c);
		}
	}
}

static void *echo_thread_main(void *arg)
{
	struct echo_thread *t = arg;
	struct epoll_event evs[MAX_EVENTS];

	for (;;) {
		int n = epoll_wait(t->ep, evs, MAX_EVENTS, -1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("epoll_wait");
		for (int i = 0; i < n; i++) {
			if (evs[i].data.ptr == NULL)
				echo_accept(t);
			else
				echo_event(t, evs[i].data.ptr, evs[i].events);
		}
	}
	return NULL;
}

static int echo_listener(void)
{
	struct sockaddr_in sa = {
		.sin_family = AF_INET,
		.sin_port = htons(o.port),
		.sin_addr.s_addr = htonl(INADDR_ANY),
	};
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		die("socket");
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
		die("setsockopt");
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("bind");
	/* The kernel clamps the backlog to net.core.somaxconn. */
	if (listen(fd, 65535) < 0)
		die("listen");
	return fd;
}

static int run_server(void)
{
	unsigned int n = o.threads;
	struct echo_thread *t;

	if (!n) {
		long cpus = sysconf(_SC_NPROCESSORS_ONLN);

		n = cpus > 0 ? (unsigned int)cpus : 1;
	}
	t = calloc(n, sizeof(*t));
	if (!t)
		die("calloc");
	for (unsigned int i = 0; i < n; i++) {
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };

		t[i].lfd = echo_listener();
		t[i].ep = epoll_create1(EPOLL_CLOEXEC);
		if (t[i].ep < 0 || epoll_ctl(t[i].ep, EPOLL_CTL_ADD, t[i].lfd, &ev) < 0)
			die("epoll");
	}
	/* Listening on every socket before the first accept: ready now. */
	printf("{\"listening\": %u, \"threads\": %u}\n", o.port, n);
	fflush(stdout);
	for (unsigned int i = 1; i < n; i++)
		if (pthread_create(&t[i].thread, NULL, echo_thread_main, &t[i]))
			die("pthread_create");
	echo_thread_main(&t[0]);
	return EXIT_OK;
}

/* ---- client helpers (blocking sockets with timeouts) ---- */

static int dial(void)
{
	struct timeval tv = { .tv_sec = IO_TIMEOUT_MS / 1000 };
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&o.dst, sizeof(o.dst)) < 0) {
		int err = errno == EINPROGRESS ? ETIMEDOUT : errno;

		close(fd);
		return -err;
	}
	return fd;
}

/* 0, or a negative errno (-EPIPE for an early EOF). */
static int write_all(int fd, const char *p, size_t len)
{
	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		p += n;
		len -= n;
	}
	return 0;
}

static int read_all(int fd, char *p, size_t len)
{
	while (len) {
		ssize_t n = read(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		if (n == 0)
			return -EPIPE;
		p += n;
		len -= n;
	}
	return 0;
}

/* ---- latency ---- */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * One connection's share: warm up, then ping-pong until `deadline`,
 * appending round trips to *s (grown as needed). 0 or -errno.
 */
static int latency_conn(uint64_t deadline, uint64_t **s, size_t *n,
			size_t *cap, uint64_t *sum)
{
	char out[MAX_SIZE], in[MAX_SIZE];
	int fd, err = 0;

	memset(out, 'x', sizeof(out));
	fd = dial();
	if (fd < 0) {
		fprintf(stderr, "benchtool: connect: %s\n", strerror(-fd));
		return fd;
	}
	for (unsigned int i = 0; i < o.warmup && !err; i++) {
		err = write_all(fd, out, o.size);
		if (!err)
			err = read_all(fd, in, o.size);
	}
	for (uint64_t t = now_ns(); !err && t < deadline;) {
		uint64_t t1;

		err = write_all(fd, out, o.size);
		if (!err)
			err = read_all(fd, in, o.size);
		if (err)
			break;
		t1 = now_ns();
		if (*n == *cap) {
			*cap *= 2;
			*s = realloc(*s, *cap * sizeof(**s));
			if (!*s)
				die("realloc");
		}
		(*s)[(*n)++] = t1 - t;
		*sum += t1 - t;
		t = t1;
	}
	if (err)
		fprintf(stderr, "benchtool: latency after %zu samples: %s\n", *n,
			err == -EPIPE ? "connection closed" : strerror(-err));
	close(fd);
	return err;
}

/*
 * Several connections in turn rather than one: where the scheduler puts
 * the processes of a round trip is drawn again for each connection (and on
 * a small VM it moves p50 by tens of percent), so the figure is a typical
 * placement's rather than one draw's.
 */
static int run_latency(void)
{
	size_t cap = 1 << 16, n = 0;
	uint64_t *s = malloc(cap * sizeof(*s));
	uint64_t t0 = now_ns(), sum = 0;
	double share = o.seconds / o.connections;

	if (!s)
		die("malloc");
	for (unsigned int c = 1; c <= o.connections; c++) {
		if (latency_conn(t0 + (uint64_t)(share * c * 1e9), &s, &n, &cap,
				 &sum)) {
			free(s);
			return EXIT_FAIL;
		}
	}
	if (!n) {
		fprintf(stderr, "benchtool: latency: no round trip completed\n");
		free(s);
		return EXIT_FAIL;
	}
	qsort(s, n, sizeof(*s), cmp_u64);
	printf("{\"samples\": %zu, \"connections\": %u, \"size\": %u, "
	       "\"p50_us\": %.1f, \"p99_us\": %.1f, \"mean_us\": %.1f, "
	       "\"max_us\": %.1f}\n",
	       n, o.connections, o.size, s[n / 2] / 1e3, s[n * 99 / 100] / 1e3,
	       sum / 1e3 / n, s[n - 1] / 1e3);
	free(s);
	return EXIT_OK;
}

/* ---- connection rate ---- */

static atomic_ulong cr_ok, cr_err;
static _Atomic int cr_first_err;
static uint64_t cr_deadline;

/* One connection: connect, request, answer, close. 0 or -errno. */
static int one_conn(void)
{
	char c = o.server_closes ? QUIT_BYTE : 'c', r;
	int fd = dial(), err;
	ssize_t n;

	if (fd < 0)
		return fd;
	err = write_all(fd, &c, 1);
	if (!err)
		err = read_all(fd, &r, 1);
	if (!err && o.server_closes) {
		/* The server closes first; wait for its FIN. */
		do
			n = read(fd, &r, 1);
		while (n < 0 && errno == EINTR);
		if (n != 0)
			err = n < 0 ? -errno : -EPROTO;
	}
	close(fd);
	return err;
}

static void *connrate_thread(void *arg)
{
	while (now_ns() < cr_deadline) {
		int err = one_conn();

		if (!err) {
			atomic_fetch_add(&cr_ok, 1);
			continue;
		}
		atomic_fetch_add(&cr_err, 1);
		int zero = 0;

		atomic_compare_exchange_strong(&cr_first_err, &zero, -err);
		/* Do not spin on a refusing path. */
		usleep(1000);
	}
	return NULL;
}

static int run_connrate(void)
{
	pthread_t *t = calloc(o.concurrency, sizeof(*t));
	uint64_t t0;
	double secs;

	if (!t)
		die("calloc");
	t0 = now_ns();
	cr_deadline = t0 + (uint64_t)(o.seconds * 1e9);
	for (unsigned int i = 0; i < o.concurrency; i++)
		if (pthread_create(&t[i], NULL, connrate_thread, NULL))
			die("pthread_create");
	for (unsigned int i = 0; i < o.concurrency; i++)
		pthread_join(t[i], NULL);
	secs = (now_ns() - t0) / 1e9;
	printf("{\"connections\": %lu, \"errors\": %lu, \"first_error\": \"%s\", "
	       "\"seconds\": %.3f, \"concurrency\": %u, \"close\": \"%s\", "
	       "\"conn_per_s\": %.1f}\n",
	       atomic_load(&cr_ok), atomic_load(&cr_err),
	       cr_first_err ? strerror(cr_first_err) : "", secs, o.concurrency,
	       o.server_closes ? "server" : "client", atomic_load(&cr_ok) / secs);
	free(t);
	if (atomic_load(&cr_ok) == 0 || atomic_load(&cr_err) > atomic_load(&cr_ok) / 100) {
		fprintf(stderr, "benchtool: connrate: %lu of %lu connections failed (%s)\n",
			atomic_load(&cr_err), atomic_load(&cr_err) + atomic_load(&cr_ok),
			strerror(cr_first_err));
		return EXIT_FAIL;
	}
	return EXIT_OK;
}

/* ---- hold ---- */

static atomic_uint hold_next, hold_ok, hold_err;
static _Atomic int hold_first_err;

static void *hold_thread(void *arg)
{
	for (;;) {
		unsigned int i = atomic_fetch_add(&hold_next, 1);
		char c = 'h', r;
		int fd, err;

		if (i >= o.count)
			return NULL;
		fd = dial();
		err = fd < 0 ? fd : write_all(fd, &c, 1);
		if (!err)
			err = read_all(fd, &r, 1);
		if (!err) {
			/* Kept open on purpose until the process is killed. */
			atomic_fetch_add(&hold_ok, 1);
			continue;
		}
		if (fd >= 0)
			close(fd);
		atomic_fetch_add(&hold_err, 1);
		int zero = 0;

		atomic_compare_exchange_strong(&hold_first_err, &zero, -err);
	}
}

static int run_hold(void)
{
	pthread_t *t = calloc(o.concurrency, sizeof(*t));
	uint64_t t0 = now_ns();

	if (!t)
		die("calloc");
	for (unsigned int i = 0; i < o.concurrency; i++)
		if (pthread_create(&t[i], NULL, hold_thread, NULL))
			die("pthread_create");
	for (unsigned int i = 0; i < o.concurrency; i++)
		pthread_join(t[i], NULL);
	printf("{\"held\": %u, \"failed\": %u, \"first_error\": \"%s\", \"seconds\": %.3f}\n",
	       atomic_load(&hold_ok), atomic_load(&hold_err),
	       hold_first_err ? strerror(hold_first_err) : "", (now_ns() - t0) / 1e9);
	fflush(stdout);
	free(t);
	for (;;)
		pause();
	return EXIT_OK;
}

/* ---- command line ---- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: benchtool server PORT [--threads N]\n"
		"       benchtool latency ADDR PORT [--size BYTES] [--seconds S] [--warmup N]\n"
		"                                       [--connections N]\n"
		"       benchtool connrate ADDR PORT [--seconds S] [--concurrency N]\n"
		"                                        [--close client|server]\n"
		"       benchtool hold ADDR PORT [--count N] [--concurrency N]\n"
		"\n"
		"server   echo server (a chunk ending in '!' is echoed, then closed)\n"
		"latency  ping-pong of --size bytes (default 64) for --seconds\n"
		"         (default 3) on --connections (default 1) connections in\n"
		"         turn; prints p50/p99 in us over all of them as JSON\n"
		"connrate connect, 1-byte request/response, close, in a loop on\n"
		"         --concurrency threads (default 8); prints conn_per_s. Who\n"
		"         closes first: --close client (default) or server\n"
		"hold     opens --count connections (default 1000), each proven by one\n"
		"         echo, prints {\"held\": N, ...} and idles until killed\n"
		"\nEXAMPLES\n"
		"  benchtool server 7100 &\n"
		"  benchtool latency 198.18.2.11 7100 --seconds 2\n"
		"  benchtool hold 198.18.2.11 7100 --count 10000\n");
}

static int parse_uint(const char *s, unsigned int min, unsigned int max, unsigned int *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	if (!s || *s < '0' || *s > '9')
		return -1;
	v = strtoul(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "size", required_argument, NULL, 's' },
		{ "seconds", required_argument, NULL, 't' },
		{ "concurrency", required_argument, NULL, 'c' },
		{ "count", required_argument, NULL, 'n' },
		{ "threads", required_argument, NULL, 'T' },
		{ "warmup", required_argument, NULL, 'w' },
		{ "close", required_argument, NULL, 'C' },
		{ "connections", required_argument, NULL, 'N' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *mode;
	unsigned int port;
	char *end;
	int c, nargs;

	while ((c = getopt_long(argc, argv, "s:t:c:n:T:w:C:N:h", lo, NULL)) != -1) {
		int bad = 0;

		switch (c) {
		case 's': bad = parse_uint(optarg, 1, MAX_SIZE, &o.size); break;
		case 'c': bad = parse_uint(optarg, 1, 4096, &o.concurrency); break;
		case 'n': bad = parse_uint(optarg, 1, 1000000, &o.count); break;
		case 'T': bad = parse_uint(optarg, 1, 256, &o.threads); break;
		case 'w': bad = parse_uint(optarg, 0, 10000000, &o.warmup); break;
		case 'N': bad = parse_uint(optarg, 1, 1000, &o.connections); break;
		case 'C':
			o.server_closes = !strcmp(optarg, "server");
			bad = !o.server_closes && strcmp(optarg, "client");
			break;
		case 't':
			o.seconds = strtod(optarg, &end);
			bad = *end || !(o.seconds > 0 && o.seconds <= 3600);
			break;
		case 'h': usage(stdout); return EXIT_OK;
		default: usage(stderr); return EXIT_USAGE;
		}
		if (bad) {
			const char *name = "?";

			for (const struct option *l = lo; l->name; l++)
				if (l->val == c)
					name = l->name;
			fprintf(stderr, "benchtool: bad value '%s' for --%s\n", optarg, name);
			return EXIT_USAGE;
		}
	}
	nargs = argc - optind;
	if (nargs < 2)
		goto bad_usage;
	mode = argv[optind];
	if (nargs != (strcmp(mode, "server") ? 3 : 2))
		goto bad_usage;
	if (parse_uint(argv[argc - 1], 1, 65535, &port)) {
		fprintf(stderr, "benchtool: bad port '%s'\n", argv[argc - 1]);
		return EXIT_USAGE;
	}
	o.port = port;
	signal(SIGPIPE, SIG_IGN);
	raise_nofile();
	if (!strcmp(mode, "server"))
		return run_server();

	o.dst.sin_family = AF_INET;
	o.dst.sin_port = htons(o.port);
	if (inet_pton(AF_INET, argv[optind + 1], &o.dst.sin_addr) != 1) {
		fprintf(stderr, "benchtool: bad IPv4 address '%s'\n", argv[optind + 1]);
		return EXIT_USAGE;
	}
	if (!strcmp(mode, "latency"))
		return run_latency();
	if (!strcmp(mode, "connrate"))
		return run_connrate();
	if (!strcmp(mode, "hold"))
		return run_hold();
bad_usage:
	usage(stderr);
	return EXIT_USAGE;
}
