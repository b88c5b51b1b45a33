// SPDX-License-Identifier: Apache-2.0
/*
 * Service load balancing (lb.h): candidates (port, health, exclusion),
 * locality ranking in Failover and Strict modes, random-of-two least
 * connections and round robin, outlier ejection with growing back-off that
 * always leaves one endpoint, and counters carried across snapshots.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "lb.h"
#include "state.h"
#include "tap.h"

static const struct lb_opts P2C = { .algo = LB_P2C,
				    .outlier_failures = 3,
				    .base_ejection_ms = 1000,
				    .max_ejection_ms = 5000 };

/* Three endpoints: a on node n1 (zone z1), b on n2 (z1), c on n3 (z2),
 * all in region r1; d is Unhealthy; client on n1/z1. */
static const char base_yaml[] =
	"workloads:\n"
	"- {uid: client, name: client, namespace: ns, workloadIps: [198.18.1.10],\n"
	"   node: n1, locality: {region: r1, zone: z1}}\n"
	"- {uid: a, name: a, namespace: ns, workloadIps: [198.18.1.11], node: n1,\n"
	"   protocol: HBONE, locality: {region: r1, zone: z1},\n"
	"   services: {ns/svc.ns: {80: 8080}}}\n"
	"- {uid: b, name: b, namespace: ns, workloadIps: [198.18.2.11], node: n2,\n"
	"   protocol: HBONE, locality: {region: r1, zone: z1},\n"
	"   services: {ns/svc.ns: {80: 8080}}}\n"
	"- {uid: c, name: c, namespace: ns, workloadIps: [198.18.3.11], node: n3,\n"
	"   protocol: HBONE, locality: {region: r1, zone: z2},\n"
	"   services: {ns/svc.ns: {80: 9090}}}\n"
	"- {uid: d, name: d, namespace: ns, workloadIps: [198.18.3.12], node: n3,\n"
	"   status: Unhealthy, services: {ns/svc.ns: {80: 8080}}}\n"
	"services:\n"
	"- name: svc\n"
	"  namespace: ns\n"
	"  hostname: svc.ns\n"
	"  vips: [\"/198.18.100.1\"]\n"
	"  ports: {80: 8080, 443: 8443}\n"
	"%s";

static struct state *load(const char *extra)
{
	char yaml[4096], err[512];
	struct state *st = NULL;

	snprintf(yaml, sizeof(yaml), base_yaml, extra);
	if (config_load_buffer("lb.yaml", yaml, strlen(yaml), &st, err, sizeof(err))) {
		printf("# config: %s\n", err);
		return NULL;
	}
	if (lb_attach(st, NULL)) {
		state_unref(st);
		return NULL;
	}
	return st;
}

static const struct service *svc_of(const struct state *st)
{
	return &st->services[0];
}

static const struct workload *client(const struct state *st)
{
	return state_workload_by_uid(st, "client");
}

static const struct endpoint *ep_of(const struct service *svc, const char *uid)
{
	for (size_t i = 0; i < svc->n_endpoints; i++)
		if (!strcmp(svc->endpoints[i].workload_uid, uid))
			return &svc->endpoints[i];
	return NULL;
}

/* Counts of picks per endpoint uid over n tries ("a b c d"). */
static void spread(const struct service *svc, const struct workload *src,
		   const struct lb_opts *o, int n, int counts[4])
{
	struct lb_pick p;

	memset(counts, 0, 4 * sizeof(int));
	for (int i = 0; i < n; i++) {
		if (lb_pick(svc, 80, src, NULL, o, 0, (uint32_t)random(), &p))
			continue;
		counts[p.ep->workload_uid[0] - 'a']++;
	}
}

static void test_candidates(void)
{
	struct state *st = load("");
	const struct service *svc;
	struct lb_pick p;
	int counts[4], rc;

	if (!ok(st != NULL, "standard service loads"))
		return;
	svc = svc_of(st);
	ok(svc->n_endpoints == 4, "four endpoints from the workloads' services maps (%zu)",
	   svc->n_endpoints);
	spread(svc, client(st), &P2C, 3000, counts);
	ok(counts[3] == 0, "Unhealthy endpoint d never chosen (%d)", counts[3]);
	ok(counts[0] > 800 && counts[1] > 800 && counts[2] > 800,
	   "no locality preference: spread over a/b/c (%d/%d/%d of 3000)",
	   counts[0], counts[1], counts[2]);
	memset(&p, 0, sizeof(p));
	rc = lb_pick(svc, 443, client(st), NULL, &P2C, 0, 1, &p);
	ok(rc == 0 && p.target_port == 8443,
	   "port 443 translates to the service's target 8443 (%u)", p.target_port);
	ok(lb_pick(svc, 22, client(st), NULL, &P2C, 0, 1, &p) == -EPROTO,
	   "a port the service does not expose: -EPROTO");
	for (int i = 0; i < 50; i++) {
		lb_pick(svc, 80, client(st), NULL, &P2C, 0, (uint32_t)random(), &p);
		if (p.ep == ep_of(svc, "c") && p.target_port != 9090)
			break;
		if (p.ep != ep_of(svc, "c") && p.target_port != 8080)
			break;
	}
	ok((p.ep == ep_of(svc, "c")) == (p.target_port == 9090),
	   "endpoint port maps win over the service's (c -> 9090, others 8080)");
	ok(lb_pick(svc, 80, client(st), ep_of(svc, "a"), &P2C, 0, 7, &p) == 0 &&
		   p.ep != ep_of(svc, "a"),
	   "exclude skips the endpoint that just failed");
	ok(p.addr_be == p.wl->ips_be[0], "pick carries the endpoint's address");
	state_unref(st);

	st = load("  loadBalancer: {healthPolicy: AllowAll}\n");
	if (ok(st != NULL, "AllowAll service loads")) {
		spread(svc_of(st), client(st), &P2C, 4000, counts);
		ok(counts[3] > 0, "healthPolicy AllowAll includes the Unhealthy endpoint (%d)",
		   counts[3]);
		state_unref(st);
	}

	{
		char err[256] = "";
		struct state *s2 = NULL;
		static const char y[] =
			"workloads:\n"
			"- {uid: x, namespace: ns, workloadIps: [198.18.1.20], status: Unhealthy,\n"
			"   services: {ns/lonely.ns: {80: 80}}}\n"
			"services:\n"
			"- {name: lonely, namespace: ns, hostname: lonely.ns,\n"
			"   vips: [\"/198.18.100.2\"], ports: {80: 80}}\n"
			"- {name: empty, namespace: ns, hostname: empty.ns,\n"
			"   vips: [\"/198.18.100.3\"], ports: {80: 80}}\n";

		if (ok(!config_load_buffer("l.yaml", y, strlen(y), &s2, err, sizeof(err)),
		       "two services without usable endpoints load%s%s", *err ? ": " : "", err)) {
			ok(lb_pick(&s2->services[0], 80, NULL, NULL, &P2C, 0, 1, &p) == -ENOENT,
			   "only an Unhealthy endpoint: -ENOENT");
			ok(lb_pick(&s2->services[1], 80, NULL, NULL, &P2C, 0, 1, &p) == -ENOENT,
			   "no endpoints at all: -ENOENT");
			state_unref(s2);
		}
	}
}

static void test_least_connections(void)
{
	struct state *st = load("");
	const struct service *svc;
	int counts[4];

	if (!st)
		return;
	svc = svc_of(st);
	/* a is busy: random-of-two must avoid it whenever it is compared. */
	atomic_store(&ep_of(svc, "a")->lb->active, 50);
	spread(svc, client(st), &P2C, 3000, counts);
	ok(counts[0] < counts[1] / 2 && counts[0] < counts[2] / 2,
	   "p2c: the endpoint with 50 active gets few picks (%d vs %d/%d)",
	   counts[0], counts[1], counts[2]);
	atomic_store(&ep_of(svc, "a")->lb->active, 0);
	{
		struct lb_opts rr = P2C;
		struct lb_pick p;
		const struct endpoint *seq[6];

		rr.algo = LB_ROUND_ROBIN;
		for (int i = 0; i < 6; i++) {
			lb_pick(svc, 80, client(st), NULL, &rr, 0, 0, &p);
			seq[i] = p.ep;
		}
		ok(seq[0] != seq[1] && seq[1] != seq[2] && seq[0] != seq[2] &&
			   seq[3] == seq[0] && seq[4] == seq[1] && seq[5] == seq[2],
		   "round robin cycles through the three healthy endpoints");
	}
	ok(atomic_load(&ep_of(svc, "b")->lb->picks) > 0, "picks are counted per endpoint");
	state_unref(st);
}

static void test_locality(void)
{
	struct state *st;
	int counts[4];
	struct lb_pick p;

	st = load("  loadBalancer: {routingPreferences: [Region, Zone, Node], mode: Failover}\n");
	if (!ok(st != NULL, "Failover service loads"))
		return;
	spread(svc_of(st), client(st), &P2C, 500, counts);
	ok(counts[0] == 500, "Failover: same node (rank 3) always wins (%d/%d/%d)",
	   counts[0], counts[1], counts[2]);
	ok(lb_pick(svc_of(st), 80, client(st), ep_of(svc_of(st), "a"), &P2C, 0, 3, &p) == 0 &&
		   p.ep == ep_of(svc_of(st), "b") && p.rank == 2,
	   "Failover: without a, the same zone (b, rank 2) is next");
	/* a ejected: falls over to b. */
	for (int i = 0; i < 3; i++)
		lb_report(svc_of(st), ep_of(svc_of(st), "a"), false, &P2C, 100);
	spread(svc_of(st), client(st), &P2C, 300, counts);
	ok(counts[0] == 0 && counts[1] == 300,
	   "Failover: local endpoint ejected -> all to the same zone (%d/%d/%d)",
	   counts[0], counts[1], counts[2]);
	state_unref(st);

	st = load("  loadBalancer: {routingPreferences: [Region, Zone, Node], mode: Strict}\n");
	if (!ok(st != NULL, "Strict service loads"))
		return;
	spread(svc_of(st), client(st), &P2C, 300, counts);
	ok(counts[0] == 300, "Strict: only the endpoint matching every preference");
	ok(lb_pick(svc_of(st), 80, client(st), ep_of(svc_of(st), "a"), &P2C, 0, 3, &p) == -ENOENT,
	   "Strict: never leaves the node, even when its endpoint is out");
	state_unref(st);

	st = load("  loadBalancer: {routingPreferences: [Region, Zone], mode: Strict}\n");
	if (st) {
		spread(svc_of(st), client(st), &P2C, 600, counts);
		ok(counts[0] + counts[1] == 600 && counts[0] && counts[1] && !counts[2],
		   "Strict [Region, Zone]: the zone's two endpoints share, the other "
		   "zone never (%d/%d/%d)",
		   counts[0], counts[1], counts[2]);
		state_unref(st);
	}
	st = load("  loadBalancer: {routingPreferences: [Region, Zone, Node]}\n");
	if (st) {
		spread(svc_of(st), client(st), &P2C, 900, counts);
		ok(counts[0] && counts[1] && counts[2],
		   "mode Standard ignores routing preferences (%d/%d/%d)", counts[0],
		   counts[1], counts[2]);
		state_unref(st);
	}
}

static void test_outlier(void)
{
	struct state *st = load("");
	const struct service *svc;
	const struct endpoint *a, *b, *c;
	struct lb_pick p;
	int counts[4];
	bool ej;

	if (!st)
		return;
	svc = svc_of(st);
	a = ep_of(svc, "a");
	b = ep_of(svc, "b");
	c = ep_of(svc, "c");
	ok(!lb_report(svc, a, false, &P2C, 1000) && !lb_report(svc, a, false, &P2C, 1000),
	   "two failures: not ejected yet");
	lb_report(svc, a, true, &P2C, 1000);
	ok(!lb_report(svc, a, false, &P2C, 1000) && !lb_report(svc, a, false, &P2C, 1000),
	   "a success resets the consecutive count");
	ej = lb_report(svc, a, false, &P2C, 1000);
	ok(ej && atomic_load(&a->lb->ejected_until_ms) == 2000,
	   "third consecutive failure ejects for the base time (until %llu)",
	   (unsigned long long)atomic_load(&a->lb->ejected_until_ms));
	ok(atomic_load(&svc->lb->ejections) == 1, "service counts the ejection");
	spread(svc, client(st), &P2C, 300, counts);
	/* spread uses now=0 < 2000: a is ejected. */
	ok(counts[0] == 0 && counts[1] && counts[2], "an ejected endpoint is not chosen");
	ok(lb_pick(svc, 80, NULL, NULL, &P2C, 2000, 5, &p) == 0,
	   "back-off over: the endpoint is a candidate again");
	for (int i = 0; i < 3; i++)
		ej = lb_report(svc, a, false, &P2C, 3000);
	ok(ej && atomic_load(&a->lb->ejected_until_ms) == 5000,
	   "second ejection lasts twice as long (until %llu)",
	   (unsigned long long)atomic_load(&a->lb->ejected_until_ms));
	for (int k = 0; k < 3; k++)
		for (int i = 0; i < 3; i++)
			ej = lb_report(svc, a, false, &P2C, 10000);
	ok(atomic_load(&a->lb->ejected_until_ms) == 15000,
	   "back-off capped at max (5000 ms)");
	/* Eject everyone: one endpoint is always left, the soonest back. */
	for (int i = 0; i < 3; i++) {
		lb_report(svc, b, false, &P2C, 10500);
		lb_report(svc, c, false, &P2C, 10200);
	}
	ok(lb_pick(svc, 80, NULL, NULL, &P2C, 10600, 9, &p) == 0 && p.ep == c,
	   "all ejected: the one whose ejection ends first is used (c)");
	state_unref(st);
}

static void test_carry_over(void)
{
	struct state *v1 = load(""), *v2 = NULL;
	const struct endpoint *a1, *a2;
	struct lb_ep *held;
	char err[256];
	static const char y2[] =
		"workloads:\n"
		"- {uid: a, namespace: ns, workloadIps: [198.18.1.11],\n"
		"   services: {ns/svc.ns: {80: 8080}}}\n"
		"- {uid: e, namespace: ns, workloadIps: [198.18.1.15],\n"
		"   services: {ns/svc.ns: {80: 8080}}}\n"
		"services:\n"
		"- {name: svc, namespace: ns, hostname: svc.ns, vips: [\"/198.18.100.1\"],\n"
		"   ports: {80: 8080}}\n";

	if (!v1)
		return;
	a1 = ep_of(svc_of(v1), "a");
	atomic_store(&a1->lb->active, 7);
	held = lb_ep_get(a1->lb); /* a live connection's reference */
	if (!ok(!config_load_buffer("v2.yaml", y2, strlen(y2), &v2, err, sizeof(err)) &&
		    !lb_attach(v2, v1),
		"reloaded config attached to the old one's counters"))
		goto out;
	a2 = ep_of(svc_of(v2), "a");
	ok(a2->lb == a1->lb && atomic_load(&a2->lb->active) == 7,
	   "same endpoint (uid a): same counters, 7 active connections kept");
	ok(svc_of(v2)->lb == svc_of(v1)->lb, "same service (ns/host): same counters");
	ok(ep_of(svc_of(v2), "e")->lb && ep_of(svc_of(v2), "e")->lb != a1->lb,
	   "a new endpoint gets fresh counters");
	state_unref(v1);
	v1 = NULL;
	ok(atomic_load(&held->refs) == 2,
	   "old snapshot freed: the counters live on for v2 and the connection (%u refs)",
	   atomic_load(&held->refs));
out:
	lb_ep_put(held);
	state_unref(v1);
	state_unref(v2);
}

int main(void)
{
	srandom(42);
	test_candidates();
	test_least_connections();
	test_locality();
	test_outlier();
	test_carry_over();
	return tap_done();
}
