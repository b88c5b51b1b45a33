// SPDX-License-Identifier: Apache-2.0
/*
 * Worker threads: each has its own event loop and its own SO_REUSEPORT
 * listeners on 15001/15006/15008 (the kernel picks a group member when the
 * tc program assigns a SYN to the listener), and relays every connection it
 * accepts from accept to close.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ambientd/bpf_shared.h"
#include "connector.h"
#include "daemon.h"
#include "log.h"
#include "loop.h"
#include "relay.h"
#include "state.h"
#include "worker.h"

#define LISTEN_BACKLOG 4096
#define ACCEPT_BATCH 64

static const struct {
	uint16_t port;
	const char *name;
} listener_info[LISTEN_KINDS] = {
	[LISTEN_OUTBOUND] = { AMB_PORT_OUTBOUND, "outbound" },
	[LISTEN_INBOUND] = { AMB_PORT_INBOUND, "inbound" },
	[LISTEN_HBONE] = { AMB_PORT_HBONE, "hbone" },
};

const char *route_name(enum route_kind r)
{
	return r == ROUTE_LOCAL ? "local" : r == ROUTE_HBONE ? "hbone" : "passthrough";
}

struct state *daemon_state_get(struct daemon *d)
{
	struct state *st;

	pthread_mutex_lock(&d->state_lock);
	st = state_ref(d->state);
	pthread_mutex_unlock(&d->state_lock);
	return st;
}

void daemon_state_publish(struct daemon *d, struct state *st)
{
	struct state *old;

	pthread_mutex_lock(&d->state_lock);
	old = d->state;
	d->state = st;
	pthread_mutex_unlock(&d->state_lock);
	atomic_fetch_add(&d->state_gen, 1);
	for (int i = 0; i < d->n_workers; i++)
		if (d->workers[i])
			loop_wake(d->workers[i]->loop);
	state_unref(old);
}

static void worker_refresh_state(struct loop *l, void *arg)
{
	struct worker *w = arg;
	uint64_t gen = atomic_load(&w->d->state_gen);
	struct state *old;

	if (gen == w->state_gen)
		return;
	old = w->state;
	w->state = daemon_state_get(w->d);
	w->state_gen = gen;
	state_unref(old);
}

const char *ip_str(const struct sockaddr_in *a, char *buf)
{
	char ip[INET_ADDRSTRLEN];

	inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
	sprintf(buf, "%s:%u", ip, ntohs(a->sin_port));
	return buf;
}

static const char *workload_label(const struct state *st, uint32_t addr,
				  char *buf, size_t len)
{
	const struct workload *wl = state_workload_by_ip(st, addr);

	if (!wl)
		return "unknown";
	snprintf(buf, len, "%s/%s", wl->namespace,
		 wl->name ? wl->name : wl->uid ? wl->uid : "?");
	return buf;
}

void conn_done(struct relay *r, const struct relay_summary *s, void *arg)
{
	struct conn *c = arg;
	char a[32], b[32];
	enum log_level lvl = s->result == RELAY_OK ? LOG_DEBUG : LOG_INFO;

	atomic_fetch_sub(&c->w->live, 1);
	if (lvl <= log_threshold)
		log_msg(lvl, "%s %s -> %s %s: %s%s%s up=%llu down=%llu ms=%llu",
			listener_info[c->kind].name, ip_str(&c->src, a),
			ip_str(&c->dst, b),
			route_name(c->route), relay_result_name(s->result), s->error ? ": " : "",
			s->error ? strerror(s->error) : "",
			(unsigned long long)s->bytes_up,
			(unsigned long long)s->bytes_down,
			(unsigned long long)(s->ended_ms - s->started_ms));
	free(c);
}

void reset_close(int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

/* src: the peer address accept4() returned. */
static void handle_accepted(struct worker *w, enum listener_kind kind, int fd,
			    const struct sockaddr_in *src)
{
	struct relay_opts opts = { .buf_size = w->d->relay_buf_size, .done = conn_done };
	socklen_t len = sizeof(struct sockaddr_in);
	char a[32], b[32], wa[128], wb[128];
	const struct workload *swl, *dwl;
	struct conn *c;
	int up, err;

	c = calloc(1, sizeof(*c));
	if (!c) {
		reset_close(fd);
		return;
	}
	c->w = w;
	c->kind = kind;
	c->src = *src;
	/* The original destination is our local address: the tc program
	 * assigned the SYN to us without rewriting it. */
	if (getsockname(fd, (struct sockaddr *)&c->dst, &len) < 0 ||
	    c->src.sin_family != AF_INET || c->dst.sin_family != AF_INET) {
		log_warn("%s: accepted socket without addresses: %s",
			 listener_info[kind].name, strerror(errno));
		goto fail;
	}
	if (kind == LISTEN_HBONE) {
		tunnel_inbound(w, fd, &c->src, &c->dst);
		free(c);
		return;
	}
	swl = state_workload_by_ip(w->state, c->src.sin_addr.s_addr);
	dwl = state_workload_by_ip(w->state, c->dst.sin_addr.s_addr);
	if (kind == LISTEN_INBOUND ||
	    (dwl && dwl->node && strcmp(dwl->node, w->d->node) == 0))
		/* Same node: in-process, no TLS on the wire. */
		c->route = ROUTE_LOCAL;
	else if (dwl && dwl->protocol == WL_PROTO_HBONE)
		c->route = ROUTE_HBONE;
	else
		c->route = ROUTE_PASSTHROUGH;
	log_debug("%s %s (%s) -> %s (%s) via %s", listener_info[kind].name,
		  ip_str(&c->src, a),
		  workload_label(w->state, c->src.sin_addr.s_addr, wa, sizeof(wa)),
		  ip_str(&c->dst, b),
		  workload_label(w->state, c->dst.sin_addr.s_addr, wb, sizeof(wb)),
		  route_name(c->route));

	if (c->route == ROUTE_HBONE) {
		tunnel_outbound(w, c, fd, swl, dwl);
		return;
	}
	up = sock_connect_as(&c->src, &c->dst);
	if (up < 0) {
		log_info("%s %s -> %s: connect failed: %s", listener_info[kind].name,
			 ip_str(&c->src, a), ip_str(&c->dst, b), strerror(-up));
		goto fail;
	}
	opts.arg = c;
	atomic_fetch_add(&w->live, 1);
	err = relay_start_tcp(w->loop, fd, up, true, &opts, NULL);
	if (err)
		/* The relay owns both fds and has called conn_done. */
		log_warn("relay start failed: %s", strerror(-err));
	return;
fail:
	free(c);
	reset_close(fd);
}

static void on_listener(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct listener *ls = io->arg;

	worker_refresh_state(l, ls->w);
	for (int i = 0; i < ACCEPT_BATCH; i++) {
		struct sockaddr_in src = { 0 };
		socklen_t sl = sizeof(src);
		int fd = accept4(io->fd, (struct sockaddr *)&src, &sl,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE)
				log_warn("%s: accept: %s",
					 listener_info[ls->kind].name,
					 strerror(errno));
			return;
		}
		handle_accepted(ls->w, ls->kind, fd, &src);
	}
}

/* Transparent, marked (SO_REUSEPORT when allowed) listener on 0.0.0.0:port. */
static int listen_transparent(uint16_t port, bool reuseport)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	int one = 1, mark = AMB_MARK_TUNNEL, fd, err;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* IP_TRANSPARENT: accept connections for foreign destination
	 * addresses and route our SYN-ACKs from them. */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    (reuseport &&
	     setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) ||
	    setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) < 0 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(fd, LISTEN_BACKLOG) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	char name[16];

	snprintf(name, sizeof(name), "amb-worker-%d", w->id);
	pthread_setname_np(pthread_self(), name);
	loop_run(w->loop);
	return NULL;
}

static void worker_free(struct worker *w)
{
	for (int k = 0; k < LISTEN_KINDS; k++) {
		if (w->lst[k].io.fd >= 0) {
			loop_io_stop(w->loop, &w->lst[k].io);
			close(w->lst[k].io.fd);
		}
	}
	tunnel_worker_fini(w);
	loop_free(w->loop);
	state_unref(w->state);
	free(w);
}

static struct worker *worker_new(struct daemon *d, int id)
{
	struct worker *w = calloc(1, sizeof(*w));
	int fd, err;

	if (!w)
		return NULL;
	w->id = id;
	w->d = d;
	for (int k = 0; k < LISTEN_KINDS; k++)
		w->lst[k].io.fd = -1;
	w->loop = loop_new();
	if (!w->loop)
		goto fail;
	w->state = daemon_state_get(d);
	w->state_gen = atomic_load(&d->state_gen);
	loop_set_wake_hook(w->loop, worker_refresh_state, w);
	if (tunnel_worker_init(w))
		goto fail;
	for (int k = 0; k < LISTEN_KINDS; k++) {
		fd = listen_transparent(listener_info[k].port, d->reuseport);
		if (fd < 0) {
			log_error("cannot listen on %u (%s): %s",
				  listener_info[k].port, listener_info[k].name,
				  strerror(-fd));
			goto fail;
		}
		w->lst[k].w = w;
		w->lst[k].kind = k;
		loop_io_init(&w->lst[k].io, fd, on_listener, &w->lst[k]);
		err = loop_io_update(w->loop, &w->lst[k].io, EPOLLIN);
		if (err) {
			close(fd);
			w->lst[k].io.fd = -1;
			goto fail;
		}
	}
	return w;
fail:
	worker_free(w);
	return NULL;
}

/*
 * The data path takes and gives back buffers of 16 KiB to a few hundred KiB
 * per message (stream send rings, TLS ciphertext, relay buffers). With
 * glibc's defaults the first of those are mmap()ed, and every free() that
 * leaves more than 128 KiB at the top of a worker's heap is trimmed with
 * madvise(), so the next message faults the pages back in: on the
 * connection-rate run that was ~5% of the daemons' CPU. Keep such buffers
 * on the heap and trim only above 1 MiB of free space (per arena): that
 * run then makes 60% fewer madvise() calls and 40% fewer page faults, and
 * idle memory per held connection does not change.
 */
#define DATA_PATH_MALLOC_KEEP (1024 * 1024)

int workers_start(struct daemon *d, int n)
{
	if (!mallopt(M_MMAP_THRESHOLD, DATA_PATH_MALLOC_KEEP) ||
	    !mallopt(M_TRIM_THRESHOLD, DATA_PATH_MALLOC_KEEP))
		log_warn("malloc: cannot set thresholds; buffers will churn");
	d->workers = calloc(n, sizeof(*d->workers));
	if (!d->workers)
		return -ENOMEM;
	for (int i = 0; i < n; i++) {
		struct worker *w = worker_new(d, i);

		if (!w)
			return -EIO;
		d->workers[i] = w;
		d->n_workers = i + 1;
		if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
			log_error("cannot start worker %d", i);
			d->workers[i] = NULL;
			d->n_workers = i;
			worker_free(w);
			return -EAGAIN;
		}
	}
	return 0;
}

void workers_stop(struct daemon *d)
{
	for (int i = 0; i < d->n_workers; i++)
		loop_stop(d->workers[i]->loop);
	for (int i = 0; i < d->n_workers; i++) {
		pthread_join(d->workers[i]->thread, NULL);
		worker_free(d->workers[i]);
	}
	free(d->workers);
	d->workers = NULL;
	d->n_workers = 0;
}

size_t workers_live_connections(struct daemon *d)
{
	size_t n = 0;

	for (int i = 0; i < d->n_workers; i++)
		n += atomic_load(&d->workers[i]->live);
	return n;
}
