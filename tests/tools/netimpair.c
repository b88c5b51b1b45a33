// SPDX-License-Identifier: Apache-2.0
/*
 * netimpair: a delay line with random loss between two TAP devices, for the
 * fault tests (this kernel has no netem qdisc).
 *
 *   netimpair --tap A --tap B [--delay-ms D] [--loss PCT] [--seed S]
 *             [--limit FRAMES]
 *
 * It creates TAP devices A and B in its network namespace (non-persistent:
 * they vanish when it exits, however it exits), sets them up, prints "ready"
 * and then forwards every Ethernet frame that the kernel transmits on A to B
 * (written into B's fd, the kernel receives it on B) and vice versa, each
 * frame held D ms and dropped with probability PCT %. The caller splices it
 * into a link with tc, e.g. for a bridge port u1 facing node 1 and u2
 * facing node 2 (tests/integration/test_faults.sh):
 *
 *   u1 ingress  -> mirred egress redirect A    (node 1's frames to us)
 *   A  ingress  -> mirred egress redirect u1   (what we pass back to node 1)
 *   u2 ingress  -> mirred egress redirect B
 *   B  ingress  -> mirred egress redirect u2
 *
 * What it models, and its limits:
 *  - Loss is independent per frame (uniform, from a seeded xorshift64*, so a
 *    seed replays the same drop pattern for the same frame sequence). Only
 *    IPv4 and IPv6 frames are dropped; ARP and other frames are delayed but
 *    never lost, so neighbour resolution does not add seconds of retries.
 *  - The delay is constant: frames leave in arrival order (no reordering,
 *    no jitter), D ms after the kernel handed them to us (+ the scheduling
 *    latency of this process, well under 1 ms when idle).
 *  - No bandwidth limit. Each direction holds at most --limit frames (8192)
 *    in flight; more are dropped and counted as "overflow" (tail drop). At
 *    the default that allows 8192 * 1514 B / D of throughput, e.g. 248 MB/s
 *    at 50 ms: far above what TCP gets through 5 % loss.
 *  - The TAP devices have no offloads, so the kernel segments GSO packets
 *    and completes checksums before a frame reaches us: loss hits real
 *    wire-size frames, as on a real link. Frames over 2048 bytes (only
 *    possible with a larger MTU) are dropped and counted as "oversize".
 *  - One thread, one read() and one write() per frame: about 50,000 frames
 *    (60 MiB) per second on the 2-CPU dev VM without delay or loss, far
 *    more than TCP gets through 5 % loss.
 *
 * Counters per direction go to stdout at exit (SIGTERM/SIGINT) and on
 * SIGUSR1: "A->B: frames N ip N dropped N (x.xx %) overflow N oversize N
 * sent N write_errors N" (dropped: by the loss draw; ip: IP frames, those
 * the draw applies to).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SLOT_BYTES 2048
#define DEF_LIMIT  8192
#define READ_BATCH 64 /* frames read per device per turn (fairness) */

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 64 };

struct frame {
	uint64_t due_ns;
	uint16_t len;
	unsigned char data[SLOT_BYTES];
};

/* Frames read from one device, waiting to be written to the other. */
struct dir {
	const char *from, *to;
	int in_fd, out_fd;
	struct frame *ring; /* FIFO: constant delay keeps it in due order */
	size_t head, count;
	uint64_t frames, ip, dropped, overflow, oversize, sent, write_errors;
};

static struct {
	const char *tap[2];
	unsigned int ntap;
	uint64_t delay_ns;
	uint32_t loss_ppm; /* drop probability in parts per million */
	uint64_t seed;
	size_t limit;
} o = {
    .delay_ns = 50 * 1000000ULL,
    .limit = DEF_LIMIT,
};

static volatile sig_atomic_t quit, report;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* xorshift64*: plenty for a drop decision, and reproducible from --seed. */
static uint64_t rng_state;

static uint64_t rng_next(void)
{
	uint64_t x = rng_state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	rng_state = x;
	return x * 0x2545f4914f6cdd1dULL;
}

static bool lose(void)
{
	if (!o.loss_ppm)
		return false;
	/* Top 32 bits scaled to [0, 1e6): uniform enough for ppm. */
	return ((rng_next() >> 32) * 1000000ULL >> 32) < o.loss_ppm;
}

/*
 * Opens a new non-persistent TAP device `name` (no packet info header, so
 * a read is exactly one Ethernet frame) and sets it up. Returns the
 * non-blocking fd or -errno.
 */
static int tap_open(const char *name)
{
	struct ifreq ifr = {0};
	int fd, s, err;

	if (strlen(name) >= IFNAMSIZ)
		return -ENAMETOOLONG;
	fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(fd, TUNSETIFF, &ifr)) {
		err = -errno;
		goto fail;
	}
	s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0) {
		err = -errno;
		goto fail;
	}
	if (ioctl(s, SIOCGIFFLAGS, &ifr)) {
		err = -errno;
		close(s);
		goto fail;
	}
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(s, SIOCSIFFLAGS, &ifr)) {
		err = -errno;
		close(s);
		goto fail;
	}
	close(s);
	return fd;
fail:
	close(fd);
	return err;
}

static bool is_ip(const unsigned char *f, size_t len)
{
	uint16_t type;

	if (len < 14)
		return false;
	type = (uint16_t)(f[12] << 8 | f[13]);
	if (type == 0x8100 && len >= 18) /* one VLAN tag */
		type = (uint16_t)(f[16] << 8 | f[17]);
	return type == 0x0800 || type == 0x86dd;
}

/* Reads up to READ_BATCH frames from d->in_fd into the delay line. */
static int dir_read(struct dir *d, uint64_t now)
{
	static unsigned char buf[65536];

	for (int i = 0; i < READ_BATCH; i++) {
		ssize_t n = read(d->in_fd, buf, sizeof(buf));
		struct frame *f;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return 0;
			return -errno;
		}
		d->frames++;
		if (n > SLOT_BYTES) {
			d->oversize++;
			continue;
		}
		if (is_ip(buf, (size_t)n)) {
			d->ip++;
			if (lose()) {
				d->dropped++;
				continue;
			}
		}
		if (d->count == o.limit) {
			d->overflow++;
			continue;
		}
		f = &d->ring[(d->head + d->count) % o.limit];
		f->due_ns = now + o.delay_ns;
		f->len = (uint16_t)n;
		memcpy(f->data, buf, (size_t)n);
		d->count++;
	}
	return 0;
}

/* Writes every frame that is due; returns the next due time or 0. */
static uint64_t dir_flush(struct dir *d, uint64_t now)
{
	while (d->count) {
		struct frame *f = &d->ring[d->head];

		if (f->due_ns > now)
			return f->due_ns;
		/* A TAP write is the kernel receiving the frame: it does not
		 * block; an error (device going away) only loses this one. */
		if (write(d->out_fd, f->data, f->len) == f->len)
			d->sent++;
		else
			d->write_errors++;
		d->head = (d->head + 1) % o.limit;
		d->count--;
	}
	return 0;
}

static void dir_report(const struct dir *d)
{
	printf("%s->%s: frames %" PRIu64 " ip %" PRIu64 " dropped %" PRIu64
	       " (%.2f %%) overflow %" PRIu64 " oversize %" PRIu64
	       " sent %" PRIu64 " write_errors %" PRIu64 "\n",
	       d->from, d->to, d->frames, d->ip, d->dropped,
	       d->ip ? 100.0 * (double)d->dropped / (double)d->ip : 0.0,
	       d->overflow, d->oversize, d->sent, d->write_errors);
	fflush(stdout);
}

static void on_signal(int sig)
{
	if (sig == SIGUSR1)
		report = 1;
	else
		quit = 1;
}

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: netimpair --tap A --tap B [--delay-ms D] [--loss PCT] "
	    "[--seed S] [--limit FRAMES]\n"
	    "Creates TAP devices A and B and forwards frames between them,\n"
	    "each held D ms (default 50) and IP frames dropped with\n"
	    "probability PCT %% (default 0, 0..100, e.g. 5 or 0.5).\n"
	    "Prints \"ready\" once both are up; counters on SIGUSR1 and at "
	    "exit.\n\n"
	    "example (in the netns of a bridge with ports u1, u2):\n"
	    "  netimpair --tap ia --tap ib --delay-ms 50 --loss 5 &\n"
	    "  tc qdisc add dev u1 clsact\n"
	    "  tc filter add dev u1 ingress protocol all u32 match u32 0 0 \\\n"
	    "     action mirred egress redirect dev ia\n"
	    "  (and ia -> u1, u2 -> ib, ib -> u2 the same way)\n");
}

/*
 * Strict decimal with at most 4 fractional digits ("5", "0.5", "12.25"),
 * scaled by 10^4 into *out if it is at most max_scaled. 0 or -EINVAL.
 */
static int parse_fixed4(const char *s, uint64_t max_scaled, uint64_t *out)
{
	uint64_t v = 0;
	int frac = -1;

	if (*s < '0' || *s > '9') /* a digit first: no "", ".", ".5" */
		return -EINVAL;
	for (; *s; s++) {
		if (*s == '.' && frac < 0) {
			frac = 0;
			continue;
		}
		if (*s < '0' || *s > '9' || frac == 4)
			return -EINVAL;
		v = v * 10 + (uint64_t)(*s - '0');
		if (frac >= 0)
			frac++;
		if (v > max_scaled) /* already too big before scaling */
			return -EINVAL;
	}
	for (frac = frac < 0 ? 0 : frac; frac < 4; frac++)
		v *= 10;
	if (v > max_scaled)
		return -EINVAL;
	*out = v;
	return 0;
}

/* Strict unsigned decimal in [min, max]. 0 or -EINVAL. */
static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"tap", required_argument, NULL, 't'},
	    {"delay-ms", required_argument, NULL, 'd'},
	    {"loss", required_argument, NULL, 'l'},
	    {"seed", required_argument, NULL, 's'},
	    {"limit", required_argument, NULL, 'L'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	struct sigaction sa = {.sa_handler = on_signal};
	sigset_t block, waitmask;
	struct dir d[2] = {0};
	int fd[2] = {-1, -1}, c, rc = EXIT_FAIL;
	bool started = false;
	uint64_t v;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 't':
			if (o.ntap == 2)
				goto bad_usage;
			o.tap[o.ntap++] = optarg;
			break;
		case 'd': /* ms, up to 10 s, fractions allowed (0.5) */
			if (parse_fixed4(optarg, 10000 * 10000ULL, &v))
				goto bad_usage;
			o.delay_ns = v * 100; /* 1e-4 ms = 100 ns */
			break;
		case 'l':
			if (parse_fixed4(optarg, 100 * 10000ULL, &v))
				goto bad_usage;
			o.loss_ppm = (uint32_t)v; /* 1e-4 % = 1 ppm */
			break;
		case 's':
			if (parse_u64(optarg, 1, UINT64_MAX, &o.seed))
				goto bad_usage;
			break;
		case 'L':
			if (parse_u64(optarg, 1, 1 << 20, &v))
				goto bad_usage;
			o.limit = (size_t)v;
			break;
		case 'h':
			usage(stdout);
			return EXIT_OK;
		default:
			goto bad_usage;
		}
	}
	if (optind != argc || o.ntap != 2 || !strcmp(o.tap[0], o.tap[1]))
		goto bad_usage;
	if (!o.seed)
		o.seed = now_ns() ^ ((uint64_t)getpid() << 32);
	rng_state = o.seed | 1;

	/* Signals only land inside ppoll(), so none is missed between the
	 * flag checks and the sleep. */
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGUSR1);
	sigprocmask(SIG_BLOCK, &block, &waitmask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	for (int i = 0; i < 2; i++) {
		fd[i] = tap_open(o.tap[i]);
		if (fd[i] < 0) {
			fprintf(stderr, "netimpair: tap %s: %s\n", o.tap[i],
				strerror(-fd[i]));
			goto out;
		}
	}
	for (int i = 0; i < 2; i++) {
		d[i] = (struct dir){
		    .from = o.tap[i],
		    .to = o.tap[!i],
		    .in_fd = fd[i],
		    .out_fd = fd[!i],
		    /* Pages are touched only as frames fill them. */
		    .ring = malloc(o.limit * sizeof(struct frame)),
		};
		if (!d[i].ring) {
			fprintf(stderr, "netimpair: out of memory\n");
			goto out;
		}
	}
	started = true;
	printf("ready: %s <-> %s, delay %.4g ms, loss %.4g %%, seed %" PRIu64
	       ", limit %zu frames per direction\n",
	       o.tap[0], o.tap[1], (double)o.delay_ns / 1e6,
	       (double)o.loss_ppm / 1e4, o.seed, o.limit);
	fflush(stdout);

	while (!quit) {
		struct pollfd pfd[2] = {
		    {.fd = fd[0], .events = POLLIN},
		    {.fd = fd[1], .events = POLLIN},
		};
		uint64_t now = now_ns(), next = 0;
		struct timespec ts, *tsp = NULL;

		for (int i = 0; i < 2; i++) {
			uint64_t due = dir_flush(&d[i], now);

			if (due && (!next || due < next))
				next = due;
		}
		if (report) {
			report = 0;
			dir_report(&d[0]);
			dir_report(&d[1]);
		}
		if (next) {
			uint64_t wait = next - now;

			ts = (struct timespec){
			    .tv_sec = (time_t)(wait / 1000000000ULL),
			    .tv_nsec = (long)(wait % 1000000000ULL)};
			tsp = &ts;
		}
		if (ppoll(pfd, 2, tsp, &waitmask) < 0) {
			if (errno == EINTR)
				continue;
			perror("netimpair: ppoll");
			goto out;
		}
		now = now_ns();
		for (int i = 0; i < 2; i++) {
			if (!(pfd[i].revents & POLLIN))
				continue;
			c = dir_read(&d[i], now);
			if (c) {
				fprintf(stderr, "netimpair: read %s: %s\n",
					d[i].from, strerror(-c));
				goto out;
			}
		}
	}
	rc = EXIT_OK;
out:
	if (started) {
		dir_report(&d[0]);
		dir_report(&d[1]);
	}
	for (int i = 0; i < 2; i++) {
		free(d[i].ring);
		if (fd[i] >= 0)
			close(fd[i]);
	}
	return rc;

bad_usage:
	usage(stderr);
	return EXIT_USAGE;
}
