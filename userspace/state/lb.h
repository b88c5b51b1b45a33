/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Service load balancing at L4 (issue: services, DESIGN.md §4): endpoint
 * choice for a connection to VIP:port, locality preference, outlier
 * ejection and per-service connection limits.
 *
 * Runtime state lives beside the immutable snapshot: every service and
 * endpoint of a published snapshot points at a reference-counted counter
 * object (struct lb_svc / struct lb_ep). lb_attach() gives a new snapshot
 * the objects of the previous one for the same service (namespace/hostname)
 * and endpoint (workload uid), so active-connection counts and ejections
 * carry across config reloads; a connection holds references to the
 * objects it counted into and gives them back when it ends. All counters
 * are atomics: workers share them without locks.
 *
 * Choice (lb_pick): endpoints that map the service port, are Healthy (or
 * any, under healthPolicy AllowAll), are not the excluded one (a retry) and
 * are not ejected — unless every candidate is ejected, then the one whose
 * ejection ends first (an endpoint is always left). With a loadBalancer in
 * mode Strict or Failover, candidates are ranked like ztunnel: the number
 * of leading routingPreferences (Region, Zone, Subzone, Node, Cluster,
 * Network) they share with the caller; Failover keeps the best rank
 * present, Strict only those matching all. Among what is left: random of
 * two choices, fewer active connections wins (LB_P2C, default), or round
 * robin (LB_ROUND_ROBIN).
 */
#ifndef AMBIENTD_LB_H
#define AMBIENTD_LB_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "state.h"

struct lb_ep {
	atomic_uint refs;
	atomic_int active;	     /* connections using it now */
	atomic_uint fails;	     /* consecutive connect failures */
	atomic_uint ejections;	     /* times ejected (decays on success) */
	atomic_uint_fast64_t ejected_until_ms; /* loop clock; 0: not ejected */
	atomic_uint_fast64_t picks;
	atomic_uint_fast64_t connect_failures;
};

struct lb_svc {
	atomic_uint refs;
	atomic_int active;
	atomic_uint rr; /* round-robin cursor */
	atomic_uint_fast64_t connections;
	atomic_uint_fast64_t retries;
	atomic_uint_fast64_t ejections;
	atomic_uint_fast64_t refused_no_endpoint;
	atomic_uint_fast64_t refused_limit;
	atomic_uint_fast64_t failed;
};

enum lb_algo {
	LB_P2C = 0,	/* random of two choices, least connections */
	LB_ROUND_ROBIN,
};

struct lb_opts {
	enum lb_algo algo;
	unsigned outlier_failures;	/* consecutive failures that eject */
	uint64_t base_ejection_ms;	/* first ejection; doubles on repeat */
	uint64_t max_ejection_ms;
};

#define LB_DEFAULT_OUTLIER_FAILURES 5
#define LB_DEFAULT_BASE_EJECTION_MS 30000
#define LB_DEFAULT_MAX_EJECTION_MS 300000

/*
 * Give st (not yet published) its runtime objects, reusing old's (may be
 * NULL) by key, and arrange for their release when st is freed. 0 or
 * -ENOMEM (then st has none; lb_pick still works, without counting).
 */
int lb_attach(struct state *st, const struct state *old);

struct lb_pick {
	const struct endpoint *ep;
	const struct workload *wl; /* the endpoint's workload */
	uint32_t addr_be;	   /* its first address */
	uint16_t target_port;
	int rank;		   /* locality rank (0 without preferences) */
};

/*
 * Choose an endpoint of svc for a connection to svc_port from src (the
 * caller's workload, may be NULL: no locality). `exclude` (may be NULL) is
 * skipped (a retry goes elsewhere). rnd is a random number. Returns 0,
 * -ENOENT (no endpoint can take the port: none, all unhealthy, or Strict
 * locality left nothing) or -EPROTO (the service does not expose svc_port).
 */
int lb_pick(const struct service *svc, uint16_t svc_port,
	    const struct workload *src, const struct endpoint *exclude,
	    const struct lb_opts *o, uint64_t now_ms, uint32_t rnd,
	    struct lb_pick *out);

/*
 * A connect to ep finished (ok or failed). Failures count toward ejection:
 * at o->outlier_failures in a row the endpoint is ejected for
 * base * 2^(ejections so far), capped at max. Returns true when this call
 * ejected it.
 */
bool lb_report(const struct service *svc, const struct endpoint *ep, bool ok,
	       const struct lb_opts *o, uint64_t now_ms);

/* References for a connection's lifetime (NULL-safe). */
struct lb_ep *lb_ep_get(struct lb_ep *e);
void lb_ep_put(struct lb_ep *e);
struct lb_svc *lb_svc_get(struct lb_svc *s);
void lb_svc_put(struct lb_svc *s);

#endif
