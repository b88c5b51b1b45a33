// SPDX-License-Identifier: Apache-2.0
/*
 * Connections to service VIPs (captured before any kube-proxy DNAT, so the
 * tunnel resolves them itself, like ztunnel): port translation, endpoint
 * choice (lb.h), connection limit, connect timeout and one retry on another
 * endpoint when the first connect fails or the peer tunnel answers 503.
 *
 * Life of one connection:
 *
 *   service_outbound: limit? pick endpoint --none--> reset + log
 *        |
 *     attempt(): HBONE stream (remote mesh endpoint), or a timed TCP
 *        |       connect (local pod after policy, or outside the mesh)
 *        v
 *   relay CONNECTING --connected--> relay OPEN (lb_report ok; the snapshot
 *        |                                      reference is dropped)
 *   connect failed: lb_report fail (maybe ejects); first time and not a
 *        policy denial -> pick another endpoint, attempt() again, the relay
 *        waits (relay_opts.connect_failed); else the client is reset.
 *
 * The conn record holds references to the service's and the endpoint's
 * counters for its whole life (active connection counts), and the snapshot
 * only until it is connected (the endpoint pointers live there).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ca.h"
#include "connector.h"
#include "daemon.h"
#include "lb.h"
#include "log.h"
#include "relay.h"
#include "state.h"
#include "telemetry.h"
#include "worker.h"

#define MAX_IDS 8

struct svc_conn {
	struct worker *w;
	struct conn *c;
	int down_fd;	    /* the client, until the relay owns it (c->relay) */
	struct state *st;   /* until connected: svc and ep point into it */
	const struct service *svc;
	const struct workload *src_wl;
	struct lb_pick pick;
	struct lb_svc *lbs; /* counted into while the conn lives */
	struct lb_ep *lbe;
	uint16_t svc_port;
	bool retried;
	bool connected;
};

static void svc_name(const struct service *svc, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", svc->namespace, svc->hostname);
}

/* Count the connection into (or out of) the picked endpoint. */
static void ep_hold(struct svc_conn *sc)
{
	sc->lbe = lb_ep_get(sc->pick.ep->lb);
	if (sc->lbe)
		atomic_fetch_add(&sc->lbe->active, 1);
}

static void ep_release(struct svc_conn *sc)
{
	if (sc->lbe) {
		atomic_fetch_sub(&sc->lbe->active, 1);
		lb_ep_put(sc->lbe);
		sc->lbe = NULL;
	}
}

void service_conn_done(struct conn *c, bool connect_failed)
{
	struct svc_conn *sc = c->svc;

	if (connect_failed && sc->lbs)
		atomic_fetch_add(&sc->lbs->failed, 1);
	ep_release(sc);
	if (sc->lbs) {
		atomic_fetch_sub(&sc->lbs->active, 1);
		lb_svc_put(sc->lbs);
	}
	state_unref(sc->st);
	c->svc = NULL;
	free(sc);
}

static void svc_connected(struct relay *r, void *arg)
{
	struct conn *c = arg;
	struct svc_conn *sc = c->svc;

	if (!sc || sc->connected)
		return;
	sc->connected = true;
	lb_report(sc->svc, sc->pick.ep, true, &sc->w->d->lb, loop_now_ms(sc->w->loop));
	/* Nothing below needs the snapshot any more. */
	sc->svc = NULL;
	sc->pick.ep = NULL;
	sc->pick.wl = NULL;
	state_unref(sc->st);
	sc->st = NULL;
}

static bool svc_connect_failed(struct relay *r, int err, void *arg);

/* Give up before a relay exists: reset the client, record, count out,
 * free. err: positive errno (EACCES here is a policy denial). */
static void abandon(struct svc_conn *sc, int err)
{
	struct conn *c = sc->c;

	conn_settle(c);
	conn_tel_fail(c, err == EACCES ? AMB_F_DENY : amb_flag_from_dial(err), err,
		      err == EACCES ? "policy denied the service endpoint" : NULL);
	conn_unpolice(c);
	reset_close(sc->down_fd);
	service_conn_done(c, true);
	free(c);
}

/* The upstream end for this attempt exists, or the attempt failed (err). */
static void up_ready(struct svc_conn *sc, struct relay_end *up, int err)
{
	struct worker *w = sc->w;
	struct relay_opts opts = { .buf_size = w->d->relay_buf_size,
				   .done = conn_done,
				   .arg = sc->c,
				   .connect_failed = svc_connect_failed,
				   .connected = svc_connected };
	struct relay_end *down;

	if (sc->c->relay) {
		/* A retry the relay is waiting for. */
		if (err) {
			char name[600];

			svc_name(sc->svc, name, sizeof(name));
			log_info_rl("service %s: retry failed too: %s", name,
				 strerror(err));
			lb_report(sc->svc, sc->pick.ep, false, &w->d->lb,
				  loop_now_ms(w->loop));
			relay_abort(sc->c->relay); /* conn_done frees sc */
			return;
		}
		relay_retry_upstream(sc->c->relay, up);
		return;
	}
	if (err) {
		/* No relay yet (the connect ran before it): retry from here
		 * the way the relay would have asked. */
		if (!svc_connect_failed(NULL, err, sc->c))
			abandon(sc, err);
		return;
	}
	err = -relay_end_tcp_new(w->loop, sc->down_fd, &down);
	if (err) {
		up->ops->abort(up);
		abandon(sc, err);
		return;
	}
	conn_tel_meters(sc->c, opts.meters);
	atomic_fetch_add(&w->live, 1);
	conn_settle(sc->c);
	/* The out pointer is written before the relay can run: nothing of
	 * sc may be touched after this call. */
	err = relay_start(w->loop, down, up, true, &opts, &sc->c->relay);
	if (err)
		conn_start_failed(sc->c, err);
}

static void stream_ready(void *arg, struct relay_end *up, int err)
{
	up_ready(arg, up, err);
}

static void tcp_connected(int fd, int err, void *arg)
{
	struct svc_conn *sc = arg;
	struct relay_end *up = NULL;

	if (fd >= 0) {
		err = -relay_end_tcp_new(sc->w->loop, fd, &up);
		if (err)
			close(fd);
	}
	up_ready(sc, up, err);
}

/*
 * Start connecting to sc->pick. 0 when a callback will follow, else -errno
 * (policy denial: -EACCES).
 */
static int attempt(struct svc_conn *sc)
{
	struct worker *w = sc->w;
	const struct workload *wl = sc->pick.wl;
	struct sockaddr_in to = { .sin_family = AF_INET,
				  .sin_addr.s_addr = sc->pick.addr_be,
				  .sin_port = htons(sc->pick.target_port) };
	char idbuf[SPIFFE_ID_MAX], *caller = NULL;
	bool local = wl->node && strcmp(wl->node, w->d->node) == 0;

	if (wl->protocol == WL_PROTO_HBONE && !local) {
		char id[SPIFFE_ID_MAX];
		const char *ids[MAX_IDS] = { id };
		size_t n = 1;

		sc->c->route = ROUTE_HBONE;
		if (workload_identity(wl, id, sizeof(id)))
			return -EINVAL;
		/* A service endpoint may also prove one of the service's
		 * subjectAltNames (DESIGN.md §3). */
		for (size_t i = 0; i < sc->svc->n_subject_alt_names && n < MAX_IDS; i++)
			ids[n++] = sc->svc->subject_alt_names[i];
		return tunnel_stream(w, &sc->c->src, &to, sc->src_wl, ids, n,
				     stream_ready, sc);
	}
	sc->c->route = local ? ROUTE_LOCAL : ROUTE_PASSTHROUGH;
	if (local && wl->protocol == WL_PROTO_HBONE) {
		/* Same-node shortcut: the decision the pod's tunnel makes. */
		if (sc->src_wl && !workload_identity(sc->src_wl, idbuf, sizeof(idbuf)))
			caller = idbuf;
		if (!worker_authorize(w, wl, caller, &sc->c->src, &to, "local", NULL))
			return -EACCES;
		/* A policy change re-checks it against this endpoint. */
		sc->c->target = to;
		if (conn_police(sc->c, caller))
			return -ENOMEM;
	}
	return connector_start(w->loop, &sc->c->src, &to, w->d->connect_timeout_ms,
			       tcp_connected, sc, NULL);
}

/* Retryable: the endpoint did not take the connection. A policy denial
 * (401 -> EACCES) is an answer, not a failure. */
static bool retryable(int err)
{
	return err != EACCES && err != ENOMEM && err != EINVAL;
}

static bool svc_connect_failed(struct relay *r, int err, void *arg)
{
	struct conn *c = arg;
	struct svc_conn *sc = c->svc;
	struct worker *w = sc->w;
	uint64_t now = loop_now_ms(w->loop);
	const struct endpoint *failed = sc->pick.ep;
	char name[600], a[32], b[32];
	struct lb_pick next;
	int rc;

	svc_name(sc->svc, name, sizeof(name));
	if (retryable(err) &&
	    lb_report(sc->svc, failed, false, &w->d->lb, now))
		log_warn("service %s: endpoint %s ejected after %u consecutive "
			 "connect failures",
			 name, failed->workload_uid ? failed->workload_uid : "?",
			 w->d->lb.outlier_failures);
	if (!retryable(err) || sc->retried) {
		log_info_rl("service %s %s -> %s: %s", name, ip_str(&c->src, a),
			 ip_str(&c->dst, b), strerror(err));
		return false;
	}
	sc->retried = true;
	rc = lb_pick(sc->svc, sc->svc_port, sc->src_wl, failed, &w->d->lb, now,
		     worker_rand(w), &next);
	if (rc) {
		log_info_rl("service %s %s -> %s: %s; no other endpoint to retry on",
			 name, ip_str(&c->src, a), ip_str(&c->dst, b),
			 strerror(err));
		return false;
	}
	ep_release(sc);
	conn_unpolice(c); /* judged again where the retry goes */
	memset(&c->target, 0, sizeof(c->target));
	sc->pick = next;
	ep_hold(sc);
	if (sc->lbs)
		atomic_fetch_add(&sc->lbs->retries, 1);
	log_info_rl("service %s %s -> %s: %s; retrying on %s", name,
		 ip_str(&c->src, a), ip_str(&c->dst, b), strerror(err),
		 next.ep->workload_uid ? next.ep->workload_uid : "?");
	rc = attempt(sc);
	if (rc) {
		log_info_rl("service %s: retry could not start: %s", name, strerror(-rc));
		return false;
	}
	return true;
}

/* Refuse the client (reset) with a logged reason; what: static text. */
static void refuse(struct worker *w, struct conn *c, int fd,
		   const struct workload *src_wl, const struct service *svc,
		   const char *why, const char *what)
{
	struct tel_desc td = { .src_wl = src_wl, .report_source = true };
	char name[600], a[32], b[32];

	svc_name(svc, name, sizeof(name));
	log_info_rl("service %s %s -> %s: refused: %s", name, ip_str(&c->src, a),
		    ip_str(&c->dst, b), why);
	conn_settle(c);
	conn_tel_begin(c, &td);
	conn_tel_fail(c, AMB_F_CONNECT, ECONNREFUSED, what);
	reset_close(fd);
	free(c);
}

/* Telemetry as the source's tunnel; the chosen endpoint is the peer. */
static void tel_begin(struct svc_conn *sc)
{
	const struct workload *wl = sc->pick.wl;
	bool local = wl->node && strcmp(wl->node, sc->w->d->node) == 0;
	bool mesh = wl->protocol == WL_PROTO_HBONE;
	struct tel_desc td = {
		.src_wl = sc->src_wl,
		.dst_wl = wl,
		.hbone = mesh && !local,
		.report_source = true,
		.report_destination = mesh && local,
	};
	char id[SPIFFE_ID_MAX];

	td.mtls = td.hbone || (td.report_destination && sc->src_wl &&
			       sc->src_wl->protocol == WL_PROTO_HBONE);
	if (td.mtls && sc->src_wl && !workload_identity(sc->src_wl, id, sizeof(id)))
		td.src_principal = id;
	conn_tel_begin(sc->c, &td);
}

void service_outbound(struct worker *w, struct conn *c, int fd,
		      const struct workload *src_wl, const struct service *svc)
{
	uint16_t port = ntohs(c->dst.sin_port);
	struct svc_conn *sc;
	struct lb_pick pick;
	int rc;

	rc = lb_pick(svc, port, src_wl, NULL, &w->d->lb, loop_now_ms(w->loop),
		     worker_rand(w), &pick);
	if (rc == -EPROTO) {
		refuse(w, c, fd, src_wl, svc, "port not exposed by the service",
		       "service port not exposed");
		return;
	}
	if (rc) {
		if (svc->lb)
			atomic_fetch_add(&svc->lb->refused_no_endpoint, 1);
		refuse(w, c, fd, src_wl, svc, "no healthy endpoint",
		       "no healthy service endpoint");
		return;
	}
	if (svc->max_connections && svc->lb &&
	    atomic_load(&svc->lb->active) >= (int)svc->max_connections) {
		char why[96];

		atomic_fetch_add(&svc->lb->refused_limit, 1);
		snprintf(why, sizeof(why), "connection limit (%u) reached",
			 svc->max_connections);
		refuse(w, c, fd, src_wl, svc, why, "service connection limit");
		return;
	}
	sc = calloc(1, sizeof(*sc));
	if (!sc) {
		conn_settle(c);
		reset_close(fd);
		free(c);
		return;
	}
	if (log_threshold >= LOG_DEBUG) {
		char name[600], a[32], b[32], ip[INET_ADDRSTRLEN];

		svc_name(svc, name, sizeof(name));
		log_debug("service %s %s -> %s: endpoint %s (%s:%u, locality rank %d)",
			  name, ip_str(&c->src, a), ip_str(&c->dst, b),
			  pick.ep->workload_uid ? pick.ep->workload_uid : "?",
			  inet_ntop(AF_INET, &pick.addr_be, ip, sizeof(ip)),
			  pick.target_port, pick.rank);
	}
	sc->w = w;
	sc->c = c;
	sc->down_fd = fd;
	sc->st = state_ref(w->state);
	sc->svc = svc;
	sc->src_wl = src_wl;
	sc->svc_port = port;
	sc->pick = pick;
	sc->lbs = lb_svc_get(svc->lb);
	if (sc->lbs) {
		atomic_fetch_add(&sc->lbs->active, 1);
		atomic_fetch_add(&sc->lbs->connections, 1);
	}
	ep_hold(sc);
	c->svc = sc;
	tel_begin(sc);
	rc = attempt(sc);
	if (rc == 0)
		return;
	if (rc != -EACCES && svc_connect_failed(NULL, -rc, c))
		return; /* retrying on another endpoint */
	abandon(sc, -rc);
}
