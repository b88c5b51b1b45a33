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
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ambientd/bpf_shared.h"
#include "accesslog.h"
#include "authz.h"
#include "ca.h"
#include "lb.h"
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

const char *listener_name(enum listener_kind k)
{
	return k < LISTEN_KINDS ? listener_info[k].name : "?";
}

const char *listen_refusal_name(enum listen_refusal r)
{
	static const char *const names[LREF_MAX] = {
		[LREF_SELF_DIAL] = "self_dial",
		[LREF_PENDING_LIMIT] = "pending_limit",
		[LREF_SOURCE_LIMIT] = "source_limit",
		[LREF_NOT_WORKLOAD] = "not_a_workload",
	};

	return r < LREF_MAX ? names[r] : "?";
}

void listener_refuse(struct listener *ls, enum listen_refusal why,
		     const struct sockaddr_in *src, const struct sockaddr_in *dst)
{
	char a[32], b[32];

	atomic_fetch_add_explicit(&ls->refused[why], 1, memory_order_relaxed);
	log_info_rl("%s %s -> %s: refused: %s", listener_info[ls->kind].name,
		    ip_str(src, a), dst ? ip_str(dst, b) : "?",
		    listen_refusal_name(why));
}

int listener_admit(struct listener *ls, const struct sockaddr_in *src)
{
	const struct daemon *d = ls->w->d;
	int err;

	if (ls->pending >= d->pending_max)
		return LREF_PENDING_LIMIT;
	err = srctrack_take(&ls->by_source, src->sin_addr.s_addr,
			    d->pending_per_source);
	if (err)
		return LREF_SOURCE_LIMIT;
	ls->pending++;
	return 0;
}

void listener_done(struct listener *ls, const struct sockaddr_in *src)
{
	ls->pending--;
	srctrack_put(&ls->by_source, src->sin_addr.s_addr);
}

void conn_settle(struct conn *c)
{
	if (!c->admitted)
		return;
	c->admitted = false;
	listener_done(&c->w->lst[c->kind], &c->src);
}

void local_addrs_set(struct local_addrs *la, const uint32_t *addrs, size_t n)
{
	if (n > DAEMON_MAX_LOCAL_ADDRS)
		n = DAEMON_MAX_LOCAL_ADDRS;
	atomic_fetch_add(&la->seq, 1); /* odd: being rewritten */
	for (size_t i = 0; i < n; i++)
		atomic_store_explicit(&la->addr[i], addrs[i], memory_order_relaxed);
	atomic_store_explicit(&la->n, (unsigned)n, memory_order_relaxed);
	atomic_fetch_add(&la->seq, 1);
}

bool local_addrs_has(struct local_addrs *la, uint32_t addr)
{
	unsigned seq, n;
	bool found;

	if ((ntohl(addr) >> 24) == 127 || !addr)
		return true;
	do {
		seq = atomic_load(&la->seq);
		n = atomic_load_explicit(&la->n, memory_order_relaxed);
		found = false;
		for (unsigned i = 0; i < n && i < DAEMON_MAX_LOCAL_ADDRS; i++)
			if (atomic_load_explicit(&la->addr[i], memory_order_relaxed) == addr)
				found = true;
	} while ((seq & 1) || atomic_load(&la->seq) != seq);
	return found;
}

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

/* Give st its policy counters, carrying the counts of policies that were
 * already in old (by namespace/name). Increments that land on old after
 * this copy are lost: at most what the workers count before they pick up
 * st. */
static void attach_policy_hits(struct state *st, const struct state *old)
{
	if (st->policy_hits || !st->n_policies)
		return;
	st->policy_hits = state_zalloc(st, st->n_policies * sizeof(*st->policy_hits));
	if (!st->policy_hits || !old || !old->policy_hits)
		return;
	for (size_t i = 0; i < st->n_policies; i++) {
		const struct policy *p = &st->policies[i];
		const struct policy *q = state_policy_by_key(old, p->namespace, p->name);
		const struct policy_hits *from;
		struct policy_hits *to = &st->policy_hits[i];

		if (!q)
			continue;
		from = &old->policy_hits[q - old->policies];
		atomic_store(&to->allow, atomic_load(&from->allow));
		atomic_store(&to->deny, atomic_load(&from->deny));
		atomic_store(&to->dry_allow, atomic_load(&from->dry_allow));
		atomic_store(&to->dry_deny, atomic_load(&from->dry_deny));
	}
}

void daemon_state_publish(struct daemon *d, struct state *st)
{
	struct state *old;

	pthread_mutex_lock(&d->state_lock);
	attach_policy_hits(st, d->state);
	if (!st->finalize && lb_attach(st, d->state))
		log_warn("load balancing counters: out of memory; services "
			 "balance without connection counts");
	old = d->state;
	d->state = st;
	pthread_mutex_unlock(&d->state_lock);
	atomic_fetch_add(&d->state_gen, 1);
	for (int i = 0; i < d->n_workers; i++)
		if (d->workers[i])
			loop_wake(d->workers[i]->loop);
	state_unref(old);
}

static void worker_recheck(struct worker *w);

static void worker_refresh_state(struct loop *l, void *arg)
{
	struct worker *w = arg;
	uint64_t gen = atomic_load(&w->d->state_gen);
	struct state *old;

	tel_worker_service(w); /* requests from the control thread */
	if (gen == w->state_gen)
		return;
	old = w->state;
	w->state = daemon_state_get(w->d);
	w->state_gen = gen;
	state_unref(old);
	worker_recheck(w);
}

/* ---- policy ------------------------------------------------------------ */

static struct policy_hits *hits_of(const struct state *st,
				   const struct policy *p)
{
	return p && st->policy_hits ? &st->policy_hits[p - st->policies] : NULL;
}

static void count_decision(struct worker *w, const struct authz_result *r)
{
	struct authz_stats *s = &w->d->authz;
	struct policy_hits *h = hits_of(w->state, r->policy);

	if (r->verdict == AUTHZ_ALLOW) {
		atomic_fetch_add_explicit(&s->allowed, 1, memory_order_relaxed);
		if (h)
			atomic_fetch_add_explicit(&h->allow, 1,
						  memory_order_relaxed);
	} else {
		atomic_fetch_add_explicit(&s->denied, 1, memory_order_relaxed);
		if (h)
			atomic_fetch_add_explicit(&h->deny, 1,
						  memory_order_relaxed);
		else if (r->reason == AUTHZ_R_PEER_AUTH_STRICT)
			atomic_fetch_add_explicit(&s->denied_strict, 1,
						  memory_order_relaxed);
		else
			atomic_fetch_add_explicit(&s->denied_no_allow_match, 1,
						  memory_order_relaxed);
	}
	h = hits_of(w->state, r->dry_run_policy);
	if (r->dry_run_applies && h)
		atomic_fetch_add_explicit(r->dry_run_verdict == AUTHZ_ALLOW ?
						  &h->dry_allow :
						  &h->dry_deny,
					  1, memory_order_relaxed);
}

/* "ns/name" of the deciding policy or the reason, for logs. */
static const char *decided_by(const struct authz_result *r, char *buf,
			      size_t len)
{
	if (r->policy)
		snprintf(buf, len, "policy %s/%s", r->policy->namespace,
			 r->policy->name);
	else if (r->peer_auth)
		snprintf(buf, len, "peer authentication %s/%s STRICT",
			 r->peer_auth->namespace, r->peer_auth->name);
	else
		snprintf(buf, len, "%s", authz_reason_name(r->reason));
	return buf;
}

bool worker_authorize(struct worker *w, const struct workload *dst,
		      const char *identity, const struct sockaddr_in *src,
		      const struct sockaddr_in *to, const char *where,
		      struct authz_result *res)
{
	struct authz_conn c = {
		.identity = identity,
		.src_be = src->sin_addr.s_addr,
		.src_prefix_len = 32,
		.dst_be = to->sin_addr.s_addr,
		.dst_port = ntohs(to->sin_port),
	};
	struct authz_result local;
	char a[32], b[32], why[600];

	if (!res)
		res = &local;
	authz_evaluate(w->state, dst, &c, res);
	count_decision(w, res);
	if (res->dry_run_applies &&
	    (res->dry_run_policy || res->dry_run_verdict == AUTHZ_DENY)) {
		if (res->dry_run_policy)
			snprintf(why, sizeof(why), " by policy %s/%s",
				 res->dry_run_policy->namespace,
				 res->dry_run_policy->name);
		else
			snprintf(why, sizeof(why), " (no dryRun ALLOW matched)");
		log_info_rl("%s %s (%s) -> %s: dry run: would %s%s", where,
			 ip_str(src, a), identity ? identity : "plaintext",
			 ip_str(to, b),
			 res->dry_run_verdict == AUTHZ_ALLOW ? "allow" : "deny",
			 why);
	}
	if (res->verdict == AUTHZ_ALLOW)
		return true;
	/* A pod can try as often as it likes: bounded (the access log and
	 * the authz counters have every one). */
	log_info_rl("%s %s (%s) -> %s: denied by %s", where, ip_str(src, a),
		 identity ? identity : "plaintext", ip_str(to, b),
		 decided_by(res, why, sizeof(why)));
	return false;
}

int conn_police(struct conn *c, const char *identity)
{
	struct worker *w = c->w;

	if (identity && !(c->identity = strdup(identity)))
		return -ENOMEM;
	if (!c->target.sin_family)
		c->target = c->dst;
	c->policed = true;
	c->prev = NULL;
	c->next = w->policed;
	if (w->policed)
		w->policed->prev = c;
	w->policed = c;
	return 0;
}

void conn_unpolice(struct conn *c)
{
	if (!c->policed)
		return;
	if (c->prev)
		c->prev->next = c->next;
	else
		c->w->policed = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->policed = false;
	free(c->identity);
	c->identity = NULL;
}

/*
 * A new snapshot: re-check every live connection into a local pod and
 * reset those the new policy denies. A destination that left the config is
 * not a policy decision; its connections are left alone.
 */
static void worker_recheck(struct worker *w)
{
	struct conn *c, *next;
	char a[32], b[32], why[600];

	for (c = w->policed; c; c = next) {
		const struct workload *dwl;
		struct authz_conn q = {
			.identity = c->identity,
			.src_be = c->src.sin_addr.s_addr,
			.src_prefix_len = 32,
			.dst_be = c->target.sin_addr.s_addr,
			.dst_port = ntohs(c->target.sin_port),
		};
		struct authz_result r;

		next = c->next;
		if (!c->relay)
			continue;
		dwl = state_workload_by_ip(w->state, c->target.sin_addr.s_addr);
		if (!dwl)
			continue;
		authz_evaluate(w->state, dwl, &q, &r);
		if (r.verdict == AUTHZ_ALLOW)
			continue;
		count_decision(w, &r);
		atomic_fetch_add(&w->d->authz.closed_on_change, 1);
		log_info("%s %s (%s) -> %s: closing live connection, now denied "
			 "by %s",
			 listener_info[c->kind].name, ip_str(&c->src, a),
			 c->identity ? c->identity : "plaintext",
			 ip_str(&c->target, b), decided_by(&r, why, sizeof(why)));
		conn_tel_flag(c, AMB_F_DENY, why);
		relay_abort(c->relay); /* conn_done records and frees c */
	}
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

	conn_settle(c);
	conn_tel_end(c, s);
	atomic_fetch_sub(&c->w->live, 1);
	conn_unpolice(c);
	if (c->svc)
		service_conn_done(c, s->result == RELAY_CONNECT_FAILED);
	/* Failures are a peer's to cause at will: bounded (the access log
	 * has every connection). */
	if (lvl <= log_threshold)
		log_rl(lvl, "%s %s -> %s %s: %s%s%s up=%llu down=%llu ms=%llu",
			listener_info[c->kind].name, ip_str(&c->src, a),
			ip_str(&c->dst, b),
			route_name(c->route), relay_result_name(s->result), s->error ? ": " : "",
			s->error ? strerror(s->error) : "",
			(unsigned long long)s->bytes_up,
			(unsigned long long)s->bytes_down,
			(unsigned long long)(s->ended_ms - s->started_ms));
	free(c);
}

void conn_start_failed(struct conn *c, int err)
{
	log_warn("relay start failed: %s", strerror(-err));
	conn_settle(c);
	conn_tel_fail(c, AMB_F_INTERNAL, -err, "relay start failed");
	atomic_fetch_sub(&c->w->live, 1);
	conn_unpolice(c);
	if (c->svc)
		service_conn_done(c, true);
	free(c);
}

static bool in_service_range(const struct daemon *d, uint32_t addr)
{
	for (size_t i = 0; i < d->n_svc_nets; i++)
		if (ip_cidr_covers(&d->svc_nets[i], addr, 32))
			return true;
	return false;
}

/* The upstream of a local, passthrough or 15006 connection answered. */
static void plain_connected(int up, int err, void *arg)
{
	struct conn *c = arg;
	struct worker *w = c->w;
	struct relay_opts opts = { .buf_size = w->d->relay_buf_size,
				   .done = conn_done, .arg = c };
	char a[32], b[32];

	conn_settle(c);
	if (up < 0) {
		log_info_rl("%s %s -> %s: connect failed: %s",
			    listener_info[c->kind].name, ip_str(&c->src, a),
			    ip_str(&c->dst, b), strerror(err));
		conn_tel_fail(c, amb_flag_from_dial(err), err, NULL);
		conn_unpolice(c);
		reset_close(c->down_fd);
		free(c);
		return;
	}
	conn_tel_meters(c, opts.meters);
	atomic_fetch_add(&w->live, 1);
	/* c->relay is set before anything can finish the relay (and free c). */
	err = relay_start_tcp(w->loop, c->down_fd, up, false, &opts, &c->relay);
	if (err)
		conn_start_failed(c, err); /* the relay reset both fds */
}

/* src: the peer address accept4() returned. */
static void handle_accepted(struct listener *ls, int fd,
			    const struct sockaddr_in *src)
{
	struct worker *w = ls->w;
	enum listener_kind kind = ls->kind;
	socklen_t len = sizeof(struct sockaddr_in);
	char a[32], b[32], wa[128], wb[128], id[SPIFFE_ID_MAX], why[600];
	const struct workload *swl, *dwl;
	const char *caller = NULL;
	bool police = false;
	struct tel_desc td = { 0 };
	struct authz_result res;
	enum amb_flag flag = AMB_F_INTERNAL;
	const char *detail = NULL;
	struct sockaddr_in dst;
	struct conn *c;
	int err = 0, refused;

	/* The original destination is our local address: the tc program
	 * assigned the SYN to us without rewriting it. */
	if (getsockname(fd, (struct sockaddr *)&dst, &len) < 0 ||
	    src->sin_family != AF_INET || dst.sin_family != AF_INET) {
		log_warn_rl("%s: accepted socket without addresses: %s",
			    listener_info[kind].name, strerror(errno));
		reset_close(fd);
		return;
	}
	/* tc never captures towards the node's own addresses: this was dialed
	 * straight at the listener, and relaying it would dial it again. */
	if (kind != LISTEN_HBONE && local_addrs_has(&w->d->local, dst.sin_addr.s_addr)) {
		listener_refuse(ls, LREF_SELF_DIAL, src, &dst);
		reset_close(fd);
		return;
	}
	refused = listener_admit(ls, src);
	if (refused) {
		listener_refuse(ls, refused, src, &dst);
		reset_close(fd);
		return;
	}
	if (kind == LISTEN_HBONE) {
		tunnel_inbound(w, ls, fd, src, &dst);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		listener_done(ls, src);
		reset_close(fd);
		return;
	}
	c->w = w;
	c->kind = kind;
	c->src = *src;
	c->dst = dst;
	c->admitted = true;
	c->down_fd = fd;
	swl = state_workload_by_ip(w->state, c->src.sin_addr.s_addr);
	dwl = state_workload_by_ip(w->state, c->dst.sin_addr.s_addr);
	if (kind == LISTEN_OUTBOUND && !dwl) {
		const struct service *svc =
			state_service_by_vip(w->state, c->dst.sin_addr.s_addr);

		if (svc) {
			service_outbound(w, c, fd, swl, svc);
			return;
		}
		/* Inside a service range but no known VIP: nothing would
		 * ever answer (no kube-proxy DNAT for captured traffic), so
		 * refuse now instead of letting the client hang. */
		if (in_service_range(w->d, c->dst.sin_addr.s_addr)) {
			atomic_fetch_add(&w->d->unknown_vip_refused, 1);
			log_info_rl("outbound %s -> %s: refused: unknown service VIP",
				    ip_str(&c->src, a), ip_str(&c->dst, b));
			goto fail;
		}
	}
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

	/* Who reports it: the source's tunnel for a captured pod's egress,
	 * the destination's for delivery into a local mesh pod. */
	td.src_wl = swl;
	td.dst_wl = dwl;
	td.report_source = kind == LISTEN_OUTBOUND;
	td.report_destination = kind == LISTEN_INBOUND ||
				(c->route == ROUTE_LOCAL && dwl &&
				 dwl->protocol == WL_PROTO_HBONE);
	td.hbone = c->route == ROUTE_HBONE;
	td.mtls = td.hbone || (kind == LISTEN_OUTBOUND && c->route == ROUTE_LOCAL &&
			       swl && swl->protocol == WL_PROTO_HBONE && dwl &&
			       dwl->protocol == WL_PROTO_HBONE);
	if (kind == LISTEN_OUTBOUND && swl &&
	    !workload_identity(swl, id, sizeof(id)))
		caller = id;
	td.src_principal = td.mtls ? caller : NULL;
	conn_tel_begin(c, &td);

	if (c->route == ROUTE_HBONE) {
		tunnel_outbound(w, c, fd, swl, dwl);
		return;
	}
	/* Into a local mesh pod: the same policy decision its tunnel would
	 * make for a remote caller (plaintext on 15006; the source pod's
	 * identity on the same-node shortcut). */
	if (c->route == ROUTE_LOCAL && dwl && dwl->protocol == WL_PROTO_HBONE) {
		if (!worker_authorize(w, dwl, caller, &c->src, &c->dst,
				      kind == LISTEN_INBOUND ? "inbound" : "local",
				      &res)) {
			flag = AMB_F_DENY;
			err = EACCES;
			detail = decided_by(&res, why, sizeof(why));
			goto fail; /* the caller sees a reset */
		}
		police = true;
	}
	if (police && conn_police(c, caller)) {
		err = ENOMEM;
		goto fail;
	}
	/* Every upstream connect has a deadline: a destination that never
	 * answers must not hold the client (and two fds) forever. */
	err = -connector_start(w->loop, &c->src, &c->dst, w->d->connect_timeout_ms,
			       plain_connected, c, NULL);
	if (!err)
		return;
	log_info_rl("%s %s -> %s: connect failed: %s", listener_info[kind].name,
		    ip_str(&c->src, a), ip_str(&c->dst, b), strerror(err));
	flag = amb_flag_from_dial(err);
	conn_unpolice(c);
fail:
	conn_settle(c);
	conn_tel_fail(c, flag, err, detail);
	free(c);
	reset_close(fd);
}

static void on_listener(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct listener *ls = io->arg;

	worker_refresh_state(l, ls->w);
	for (int i = 0; i < ACCEPT_BATCH; i++) {
		struct sockaddr_in src;
		int fd = acceptor_accept(l, &ls->acc, &src);

		if (fd == -EINVAL) {
			/* Not listening anymore (destroyed from outside, e.g.
			 * `ss -K`): stop watching it, or its HUP would spin
			 * the loop. Readiness reports it. */
			log_error("%s listener on %u is not listening anymore; "
				  "restart ambientd to recover",
				  listener_info[ls->kind].name,
				  listener_info[ls->kind].port);
			loop_io_update(l, io, 0);
		}
		if (fd < 0)
			return;
		handle_accepted(ls, fd, &src);
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
	    /* Inherited by every accepted socket: see sock_connect_as(). */
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 ||
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
		acceptor_close(w->loop, &w->lst[k].acc);
		srctrack_free(&w->lst[k].by_source);
	}
	tunnel_worker_fini(w);
	loop_free(w->loop);
	state_unref(w->state);
	tel_worker_fini(w);
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
	/* Seeded per worker from the kernel; never 0 (xorshift's fixpoint). */
	if (getrandom(&w->rng, sizeof(w->rng), 0) != sizeof(w->rng) || !w->rng)
		w->rng = 0x9e3779b97f4a7c15ull ^ (uint64_t)(uintptr_t)w;
	for (int k = 0; k < LISTEN_KINDS; k++)
		w->lst[k].acc.io.fd = -1;
	w->loop = loop_new();
	if (!w->loop)
		goto fail;
	w->state = daemon_state_get(d);
	w->state_gen = atomic_load(&d->state_gen);
	loop_set_wake_hook(w->loop, worker_refresh_state, w);
	if (tel_worker_init(w) || tunnel_worker_init(w))
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
		acceptor_init(&w->lst[k].acc, fd, on_listener, &w->lst[k],
			      listener_info[k].name);
		err = acceptor_start(w->loop, &w->lst[k].acc);
		if (err)
			goto fail;
	}
	atomic_store(&w->listening, true);
	return w;
fail:
	worker_free(w);
	return NULL;
}

void worker_stop_listening(struct worker *w)
{
	/* First: the control thread stops looking at the fds. */
	atomic_store(&w->listening, false);
	for (int k = 0; k < LISTEN_KINDS; k++)
		acceptor_close(w->loop, &w->lst[k].acc);
}

int workers_check_listeners(struct daemon *d, char *why, size_t len)
{
	for (int i = 0; i < d->n_workers; i++) {
		struct worker *w = d->workers[i];

		if (!atomic_load(&w->listening)) {
			snprintf(why, len, "worker %d stopped listening (draining)", i);
			return -ESHUTDOWN;
		}
		for (int k = 0; k < LISTEN_KINDS; k++) {
			int on = 0;
			socklen_t sl = sizeof(on);

			/* The fds stay open while the worker runs; only the
			 * drain closes them, after clearing `listening`. */
			if (getsockopt(w->lst[k].acc.io.fd, SOL_SOCKET, SO_ACCEPTCONN,
				       &on, &sl) < 0 || !on) {
				snprintf(why, len, "listener %u (%s) of worker %d is "
					 "not listening", listener_info[k].port,
					 listener_info[k].name, i);
				return -ENOTCONN;
			}
		}
	}
	return 0;
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
