// SPDX-License-Identifier: Apache-2.0
/* Service load balancing (see lb.h). */
#include "lb.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- runtime objects ---- */

struct lb_ep *lb_ep_get(struct lb_ep *e)
{
	if (e)
		atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
	return e;
}

void lb_ep_put(struct lb_ep *e)
{
	if (e && atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1)
		free(e);
}

struct lb_svc *lb_svc_get(struct lb_svc *s)
{
	if (s)
		atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
	return s;
}

void lb_svc_put(struct lb_svc *s)
{
	if (s && atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1)
		free(s);
}

static void lb_finalize(struct state *st)
{
	for (size_t i = 0; i < st->n_services; i++) {
		struct service *svc = &st->services[i];

		for (size_t j = 0; j < svc->n_endpoints; j++) {
			lb_ep_put(svc->endpoints[j].lb);
			svc->endpoints[j].lb = NULL;
		}
		lb_svc_put(svc->lb);
		svc->lb = NULL;
	}
}

static bool same_str(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

int lb_attach(struct state *st, const struct state *old)
{
	st->finalize = lb_finalize;
	for (size_t i = 0; i < st->n_services; i++) {
		struct service *svc = &st->services[i];
		const struct service *prev =
			old ? state_service_by_host(old, svc->namespace,
						    svc->hostname) :
			      NULL;

		svc->lb = prev && prev->lb ? lb_svc_get(prev->lb) :
					     calloc(1, sizeof(*svc->lb));
		if (!svc->lb)
			goto oom;
		if (!prev || !prev->lb)
			atomic_init(&svc->lb->refs, 1);
		for (size_t j = 0; j < svc->n_endpoints; j++) {
			struct endpoint *ep = &svc->endpoints[j];
			struct lb_ep *found = NULL;

			for (size_t k = 0; prev && k < prev->n_endpoints; k++)
				if (prev->endpoints[k].lb &&
				    same_str(prev->endpoints[k].workload_uid,
					     ep->workload_uid)) {
					found = prev->endpoints[k].lb;
					break;
				}
			if (found) {
				ep->lb = lb_ep_get(found);
				continue;
			}
			ep->lb = calloc(1, sizeof(*ep->lb));
			if (!ep->lb)
				goto oom;
			atomic_init(&ep->lb->refs, 1);
		}
	}
	return 0;
oom:
	lb_finalize(st);
	return -ENOMEM;
}

/* ---- choosing ---- */

/* The endpoint's target port for svc_port, or 0 if it does not take it. */
static uint16_t target_port(const struct service *svc, const struct endpoint *ep,
			    uint16_t svc_port)
{
	uint16_t t = 0;
	bool exposed = false;

	for (size_t i = 0; i < svc->n_ports; i++)
		if (svc->ports[i].service_port == svc_port) {
			exposed = true;
			t = svc->ports[i].target_port;
		}
	if (!exposed)
		return 0;
	for (size_t i = 0; i < ep->n_ports; i++)
		if (ep->ports[i].service_port == svc_port &&
		    ep->ports[i].target_port)
			return ep->ports[i].target_port;
	return t ? t : svc_port;
}

static bool scope_matches(enum lb_scope s, const struct workload *a,
			  const struct workload *b)
{
	switch (s) {
	case LB_SCOPE_REGION:
		return same_str(a->locality.region, b->locality.region);
	case LB_SCOPE_ZONE:
		return same_str(a->locality.zone, b->locality.zone);
	case LB_SCOPE_SUBZONE:
		return same_str(a->locality.subzone, b->locality.subzone);
	case LB_SCOPE_NODE:
		return same_str(a->node, b->node);
	case LB_SCOPE_CLUSTER:
		return same_str(a->cluster_id, b->cluster_id);
	case LB_SCOPE_NETWORK:
		return same_str(a->network, b->network);
	default:
		return false;
	}
}

/* Locality rank of wl for src, or -1 when Strict rules it out. */
static int rank_of(const struct service *svc, const struct workload *src,
		   const struct workload *wl)
{
	const struct load_balancer *lb = svc->load_balancer;
	int rank = 0;

	if (!lb || !src ||
	    (lb->mode != LB_MODE_STRICT && lb->mode != LB_MODE_FAILOVER))
		return 0;
	for (size_t i = 0; i < lb->n_routing_preferences; i++) {
		if (!scope_matches(lb->routing_preferences[i], src, wl))
			break;
		rank++;
	}
	if (lb->mode == LB_MODE_STRICT && (size_t)rank != lb->n_routing_preferences)
		return -1;
	return rank;
}

static bool ejected(const struct endpoint *ep, uint64_t now_ms)
{
	return ep->lb && atomic_load(&ep->lb->ejected_until_ms) > now_ms;
}

static int active_of(const struct endpoint *ep)
{
	return ep->lb ? atomic_load(&ep->lb->active) : 0;
}

#define LB_MAX_CANDIDATES 1024

int lb_pick(const struct service *svc, uint16_t svc_port,
	    const struct workload *src, const struct endpoint *exclude,
	    const struct lb_opts *o, uint64_t now_ms, uint32_t rnd,
	    struct lb_pick *out)
{
	uint16_t cand[LB_MAX_CANDIDATES], port[LB_MAX_CANDIDATES];
	int rank[LB_MAX_CANDIDATES];
	size_t n = 0, live = 0, exposed = 0;
	int best = -1;
	bool allow_all = svc->load_balancer &&
			 svc->load_balancer->health_policy == LB_HEALTH_ALLOW_ALL;
	size_t pick, a, b;
	uint64_t soonest = UINT64_MAX;

	for (size_t i = 0; i < svc->n_ports; i++)
		exposed += svc->ports[i].service_port == svc_port;
	if (!exposed)
		return -EPROTO;
	for (size_t i = 0; i < svc->n_endpoints && n < LB_MAX_CANDIDATES; i++) {
		const struct endpoint *ep = &svc->endpoints[i];
		uint16_t t;
		int r;

		if (ep == exclude || !ep->workload || !ep->workload->n_ips)
			continue;
		if (!allow_all && (ep->status != WL_STATUS_HEALTHY ||
				   ep->workload->status != WL_STATUS_HEALTHY))
			continue;
		t = target_port(svc, ep, svc_port);
		r = rank_of(svc, src, ep->workload);
		if (!t || r < 0)
			continue;
		cand[n] = (uint16_t)i;
		port[n] = t;
		rank[n] = r;
		live += !ejected(ep, now_ms);
		n++;
	}
	if (!n)
		return -ENOENT;
	/* Keep the best rank present (Failover; Strict already filtered). Only
	 * endpoints that are not ejected count, unless all are. */
	for (size_t i = 0; i < n; i++) {
		const struct endpoint *ep = &svc->endpoints[cand[i]];

		if ((!live || !ejected(ep, now_ms)) && rank[i] > best)
			best = rank[i];
	}
	{
		size_t m = 0;

		for (size_t i = 0; i < n; i++) {
			const struct endpoint *ep = &svc->endpoints[cand[i]];
			bool usable = !live || !ejected(ep, now_ms);

			if (rank[i] != best || !usable)
				continue;
			cand[m] = cand[i];
			port[m] = port[i];
			rank[m] = rank[i];
			m++;
		}
		n = m;
	}
	if (!live) {
		/* Every candidate is ejected: keep the one back soonest. */
		for (size_t i = 0; i < n; i++) {
			uint64_t u = atomic_load(&svc->endpoints[cand[i]].lb->ejected_until_ms);

			if (u < soonest) {
				soonest = u;
				cand[0] = cand[i];
				port[0] = port[i];
				rank[0] = rank[i];
			}
		}
		n = 1;
	}
	if (o->algo == LB_ROUND_ROBIN) {
		unsigned c = svc->lb ? atomic_fetch_add(&svc->lb->rr, 1) : rnd;

		pick = c % n;
	} else {
		a = rnd % n;
		b = n > 1 ? (a + 1 + (rnd >> 16) % (n - 1)) % n : a;
		pick = active_of(&svc->endpoints[cand[b]]) <
				       active_of(&svc->endpoints[cand[a]]) ?
			       b :
			       a;
	}
	out->ep = &svc->endpoints[cand[pick]];
	out->wl = out->ep->workload;
	out->addr_be = out->wl->ips_be[0];
	out->target_port = port[pick];
	out->rank = rank[pick];
	if (out->ep->lb)
		atomic_fetch_add_explicit(&out->ep->lb->picks, 1, memory_order_relaxed);
	return 0;
}

bool lb_report(const struct service *svc, const struct endpoint *ep, bool ok,
	       const struct lb_opts *o, uint64_t now_ms)
{
	struct lb_ep *e = ep->lb;
	unsigned fails, ej;
	uint64_t t;

	if (!e)
		return false;
	if (ok) {
		atomic_store(&e->fails, 0);
		ej = atomic_load(&e->ejections);
		/* A healthy answer after an ejection ran out: forgive one. */
		if (ej && atomic_load(&e->ejected_until_ms) <= now_ms)
			atomic_compare_exchange_strong(&e->ejections, &ej, ej - 1);
		return false;
	}
	atomic_fetch_add_explicit(&e->connect_failures, 1, memory_order_relaxed);
	fails = atomic_fetch_add(&e->fails, 1) + 1;
	if (!o->outlier_failures || fails < o->outlier_failures)
		return false;
	atomic_store(&e->fails, 0);
	ej = atomic_fetch_add(&e->ejections, 1);
	t = o->base_ejection_ms << (ej < 16 ? ej : 16);
	if (t > o->max_ejection_ms || t < o->base_ejection_ms)
		t = o->max_ejection_ms;
	atomic_store(&e->ejected_until_ms, now_ms + t);
	if (svc->lb)
		atomic_fetch_add_explicit(&svc->lb->ejections, 1, memory_order_relaxed);
	return true;
}
