// SPDX-License-Identifier: Apache-2.0
/*
 * Local config parser and state snapshot: a full ztunnel-style file parsed
 * into concrete values, defaults, lookups, every error class (message text
 * with path and line), and a 2,000-workload file.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "state.h"
#include "tap.h"
#include "util.h"

static int load(const char *yaml, struct state **st, char *err, size_t len)
{
	return config_load_buffer("cfg.yaml", yaml, strlen(yaml), st, err, len);
}

/* ---- the full file ---- */

static const char full_yaml[] =
	"# ztunnel local config shape\n" /* 1 */
	"workloads:\n"
	"- uid: cluster1//v1/Pod/default/client\n"
	"  name: client\n"
	"  namespace: default\n" /* 5 */
	"  serviceAccount: sleep\n"
	"  trustDomain: example.org\n"
	"  workloadIps: [\"198.18.1.10\"]\n"
	"  protocol: HBONE\n"
	"  node: node1\n" /* 10 */
	"  network: \"\"\n"
	"  clusterId: cluster1\n"
	"  canonicalName: sleep\n"
	"  canonicalRevision: v1\n"
	"  workloadName: sleep\n" /* 15 */
	"  workloadType: deployment\n"
	"  hostname: client.example\n"
	"  status: Healthy\n"
	"  locality: {region: r1, zone: z1, subzone: s1}\n"
	"  authorizationPolicies: [default/allow-sleep]\n" /* 20 */
	"  services:\n"
	"    \"default/echo.default.svc.cluster.local\":\n"
	"      80: 8080\n"
	"- uid: cluster1//v1/Pod/default/server\n"
	"  name: server\n" /* 25 */
	"  namespace: default\n"
	"  workloadIps: [198.18.2.20, 198.18.2.21]\n"
	"  protocol: TCP\n"
	"  node: node2\n"
	"  status: Unhealthy\n" /* 30 */
	"  networkMode: HostNetwork\n"
	"  nativeTunnel: true\n"
	"  capacity: 3\n"
	"  applicationTunnel: {protocol: PROXY, port: 15088}\n"
	"  waypoint: {destination: \"/198.18.3.3\", hboneMtlsPort: 15008}\n"
	"  networkGateway:\n"
	"    destination: istio-system/gw.istio-system.svc.cluster.local\n"
	"    hboneMtlsPort: 15009\n"
	"  services:\n"
	"    \"default/echo.default.svc.cluster.local\": {80: 8080, 443: 8443}\n"
	"- uid: cluster1//v1/Pod/other/minimal\n"
	"  namespace: other\n"
	"  workloadIps: [198.18.1.11]\n"
	"  node: node1\n"
	"services:\n"
	"- name: echo\n"
	"  namespace: default\n"
	"  hostname: echo.default.svc.cluster.local\n"
	"  vips: [\"/198.18.100.1\", \"net1/198.18.100.2\"]\n"
	"  cidrVips: [{network: \"\", cidr: 198.18.101.7/24}]\n"
	"  ports: {80: 8080, 443: 8443}\n"
	"  subjectAltNames: [spiffe://cluster.local/ns/default/sa/echo]\n"
	"  loadBalancer:\n"
	"    routingPreferences: [Zone, Network]\n"
	"    mode: Failover\n"
	"    healthPolicy: AllowAll\n"
	"  ipFamilies: IPv4\n"
	"  canonical: true\n"
	"  visibility: Namespace\n"
	"  waypoint: {destination: default/wp.default.svc.cluster.local, hboneMtlsPort: 15008}\n"
	"  weightedWaypoints:\n"
	"  - destination: {destination: \"/198.18.3.4\", hboneMtlsPort: 15008}\n"
	"    weight: 90\n"
	"  endpoints:\n"
	"    cluster1//v1/Pod/default/server:\n"
	"      workloadUid: cluster1//v1/Pod/default/server\n"
	"      port: {80: 9090}\n"
	"      status: Healthy\n"
	"- name: bare\n"
	"  namespace: default\n"
	"  hostname: bare.default.svc.cluster.local\n"
	"  vips: []\n"
	"  ports: {}\n"
	"policies:\n"
	"- name: allow-sleep\n"
	"  namespace: default\n"
	"  scope: WorkloadSelector\n"
	"  action: Allow\n"
	"  dryRun: true\n"
	"  rules:\n"
	"  - - - namespaces: [{Exact: default}]\n"
	"        notNamespaces: [{Prefix: kube-}]\n"
	"        principals: [{Suffix: /sa/sleep}, !Exact cluster.local/ns/a/sa/b]\n"
	"        notPrincipals: [{Presence: []}]\n"
	"        serviceAccounts: [{namespace: default, serviceAccount: sleep}]\n"
	"        notServiceAccounts: [{namespace: bad, serviceAccount: evil}]\n"
	"        sourceIps: [198.18.1.0/24]\n"
	"        notSourceIps: [198.18.1.99]\n"
	"        destinationIps: [198.18.2.20/32]\n"
	"        notDestinationIps: [198.18.9.0/24]\n"
	"        destinationPorts: [8080]\n"
	"        notDestinationPorts: [9999]\n"
	"      - destinationPorts: [80, 443]\n"
	"    - - sourceIps: [0.0.0.0/0]\n"
	"  - []\n"
	"- name: deny-9999\n"
	"  namespace: default\n"
	"  scope: Namespace\n"
	"  action: Deny\n"
	"  rules:\n"
	"  - - - notDestinationPorts:\n"
	"        - 9999\n"
	"  dryRun: false\n";

static const struct endpoint *find_ep(const struct service *svc,
				      const char *uid)
{
	size_t i;

	for (i = 0; i < svc->n_endpoints; i++)
		if (streq(svc->endpoints[i].workload_uid, uid))
			return &svc->endpoints[i];
	return NULL;
}

static void test_full(void)
{
	char err[512] = "";
	struct state *st = NULL;
	const struct workload *c, *s, *m;
	const struct service *echo, *bare;
	const struct policy *p, *d;
	const struct pol_match *pm;
	const struct endpoint *ep;
	int ret;

	ret = load(full_yaml, &st, err, sizeof(err));
	ok(ret == 0 && st, "full file loads (%s)", err);
	if (!st)
		return;
	ok(st->n_workloads == 3 && st->n_services == 2 && st->n_policies == 2,
	   "full: counts 3 workloads, 2 services, 2 policies");

	c = &st->workloads[0];
	ok(streq(c->uid, "cluster1//v1/Pod/default/client") &&
		   streq(c->name, "client") && streq(c->namespace, "default") &&
		   streq(c->service_account, "sleep") &&
		   streq(c->trust_domain, "example.org"),
	   "workload 0: identity fields");
	ok(c->n_ips == 1 && c->ips_be[0] == ip("198.18.1.10") &&
		   c->protocol == WL_PROTO_HBONE &&
		   streq(wl_protocol_name(c->protocol), "HBONE") &&
		   streq(c->node, "node1") && streq(c->network, "") &&
		   streq(c->cluster_id, "cluster1"),
	   "workload 0: ip, HBONE, node, empty network, clusterId");
	ok(streq(c->canonical_name, "sleep") &&
		   streq(c->canonical_revision, "v1") &&
		   streq(c->workload_name, "sleep") &&
		   streq(c->workload_type, "deployment") &&
		   streq(c->hostname, "client.example") &&
		   c->status == WL_STATUS_HEALTHY,
	   "workload 0: canonical names, type, hostname, status");
	ok(streq(c->locality.region, "r1") && streq(c->locality.zone, "z1") &&
		   streq(c->locality.subzone, "s1") &&
		   c->n_authorization_policies == 1 &&
		   streq(c->authorization_policies[0], "default/allow-sleep"),
	   "workload 0: locality, authorizationPolicies");
	ok(c->n_services == 1 && streq(c->services[0].namespace, "default") &&
		   streq(c->services[0].hostname,
			 "echo.default.svc.cluster.local") &&
		   c->services[0].n_ports == 1 &&
		   c->services[0].ports[0].service_port == 80 &&
		   c->services[0].ports[0].target_port == 8080,
	   "workload 0: services map \"ns/host\": {80: 8080}");

	s = &st->workloads[1];
	ok(s->n_ips == 2 && s->ips_be[1] == ip("198.18.2.21") &&
		   s->protocol == WL_PROTO_TCP &&
		   s->status == WL_STATUS_UNHEALTHY &&
		   streq(wl_status_name(s->status), "Unhealthy") &&
		   s->network_mode == WL_NETMODE_HOST_NETWORK &&
		   s->native_tunnel && s->capacity == 3,
	   "workload 1: TCP, Unhealthy, HostNetwork, nativeTunnel, capacity");
	ok(s->application_tunnel &&
		   s->application_tunnel->protocol == APP_TUNNEL_PROXY &&
		   s->application_tunnel->port == 15088,
	   "workload 1: applicationTunnel");
	ok(s->waypoint.kind == GW_ADDRESS &&
		   streq(s->waypoint.address.network, "") &&
		   s->waypoint.address.addr_be == ip("198.18.3.3") &&
		   s->waypoint.hbone_mtls_port == 15008 &&
		   s->network_gateway.kind == GW_HOSTNAME &&
		   streq(s->network_gateway.namespace, "istio-system") &&
		   streq(s->network_gateway.hostname,
			 "gw.istio-system.svc.cluster.local") &&
		   s->network_gateway.hbone_mtls_port == 15009,
	   "workload 1: waypoint by address, networkGateway by hostname");
	ok(s->n_services == 1 && s->services[0].n_ports == 2 &&
		   s->services[0].ports[1].service_port == 443 &&
		   s->services[0].ports[1].target_port == 8443,
	   "workload 1: flow-style services map");

	m = &st->workloads[2];
	ok(!m->name && !m->hostname && !m->network && !m->application_tunnel &&
		   m->waypoint.kind == GW_NONE && m->n_services == 0 &&
		   streq(m->trust_domain, "cluster.local") &&
		   streq(m->service_account, "default") &&
		   streq(m->cluster_id, "Kubernetes") &&
		   m->protocol == WL_PROTO_TCP &&
		   m->status == WL_STATUS_HEALTHY &&
		   m->network_mode == WL_NETMODE_STANDARD && m->capacity == 1 &&
		   !m->native_tunnel,
	   "workload 2: defaults (NULL strings, cluster.local, default, Kubernetes, TCP, Healthy, capacity 1)");

	echo = &st->services[0];
	ok(streq(echo->name, "echo") && streq(echo->namespace, "default") &&
		   streq(echo->hostname, "echo.default.svc.cluster.local") &&
		   echo->n_vips == 2 && streq(echo->vips[0].network, "") &&
		   echo->vips[0].addr_be == ip("198.18.100.1") &&
		   streq(echo->vips[1].network, "net1") &&
		   echo->vips[1].addr_be == ip("198.18.100.2"),
	   "service echo: names and network/ip vips");
	ok(echo->n_ports == 2 && echo->ports[0].service_port == 80 &&
		   echo->ports[0].target_port == 8080 &&
		   echo->n_subject_alt_names == 1 &&
		   streq(echo->subject_alt_names[0],
			 "spiffe://cluster.local/ns/default/sa/echo") &&
		   echo->n_cidr_vips == 1 &&
		   echo->cidr_vips[0].cidr.addr_be == ip("198.18.101.0") &&
		   echo->cidr_vips[0].cidr.prefix_len == 24,
	   "service echo: ports, subjectAltNames, cidrVips (host bits cleared)");
	ok(echo->load_balancer && echo->load_balancer->n_routing_preferences == 2 &&
		   echo->load_balancer->routing_preferences[1] ==
			   LB_SCOPE_NETWORK &&
		   echo->load_balancer->mode == LB_MODE_FAILOVER &&
		   echo->load_balancer->health_policy == LB_HEALTH_ALLOW_ALL &&
		   echo->ip_families == IPF_IPV4 && echo->canonical &&
		   echo->visibility == SVC_VIS_NAMESPACE &&
		   streq(lb_mode_name(echo->load_balancer->mode), "Failover"),
	   "service echo: loadBalancer, ipFamilies, canonical, visibility");
	ok(echo->waypoint.kind == GW_HOSTNAME &&
		   streq(echo->waypoint.hostname, "wp.default.svc.cluster.local") &&
		   echo->n_weighted_waypoints == 1 &&
		   echo->weighted_waypoints[0].weight == 90 &&
		   echo->weighted_waypoints[0].destination.address.addr_be ==
			   ip("198.18.3.4"),
	   "service echo: waypoint and weightedWaypoints");
	ep = find_ep(echo, "cluster1//v1/Pod/default/server");
	ok(echo->n_endpoints == 2 && ep && ep->workload == s &&
		   ep->n_ports == 1 && ep->ports[0].target_port == 9090,
	   "service echo: listed endpoint kept (port 9090), resolved to its workload");
	ep = find_ep(echo, "cluster1//v1/Pod/default/client");
	ok(ep && ep->workload == c && ep->n_ports == 1 &&
		   ep->ports[0].target_port == 8080 &&
		   ep->status == WL_STATUS_HEALTHY,
	   "service echo: endpoint derived from workload services map");
	bare = &st->services[1];
	ok(bare->n_vips == 0 && bare->n_ports == 0 && !bare->load_balancer &&
		   bare->ip_families == IPF_AUTOMATIC && !bare->canonical &&
		   bare->visibility == SVC_VIS_PUBLIC && bare->n_endpoints == 0,
	   "service bare: defaults");

	p = &st->policies[0];
	ok(streq(p->name, "allow-sleep") && streq(p->namespace, "default") &&
		   p->scope == POL_SCOPE_WORKLOAD_SELECTOR &&
		   p->action == POL_ACTION_ALLOW && p->dry_run &&
		   p->n_rules == 2 && p->rules[0].n_clauses == 2 &&
		   p->rules[0].clauses[0].n_matches == 2 &&
		   p->rules[0].clauses[1].n_matches == 1 &&
		   p->rules[1].n_clauses == 0,
	   "policy allow-sleep: header and rules -> clauses -> matches nesting");
	pm = &p->rules[0].clauses[0].matches[0];
	ok(pm->n_namespaces == 1 && pm->namespaces[0].kind == SM_EXACT &&
		   streq(pm->namespaces[0].value, "default") &&
		   pm->n_not_namespaces == 1 &&
		   pm->not_namespaces[0].kind == SM_PREFIX &&
		   streq(pm->not_namespaces[0].value, "kube-"),
	   "match: namespaces Exact, notNamespaces Prefix");
	ok(pm->n_principals == 2 && pm->principals[0].kind == SM_SUFFIX &&
		   streq(pm->principals[0].value, "/sa/sleep") &&
		   pm->principals[1].kind == SM_EXACT &&
		   streq(pm->principals[1].value, "cluster.local/ns/a/sa/b") &&
		   pm->n_not_principals == 1 &&
		   pm->not_principals[0].kind == SM_PRESENCE &&
		   !pm->not_principals[0].value,
	   "match: principals Suffix and !Exact tag, notPrincipals Presence");
	ok(pm->n_service_accounts == 1 &&
		   streq(pm->service_accounts[0].namespace, "default") &&
		   streq(pm->service_accounts[0].service_account, "sleep") &&
		   pm->n_not_service_accounts == 1 &&
		   streq(pm->not_service_accounts[0].service_account, "evil"),
	   "match: serviceAccounts, notServiceAccounts");
	ok(pm->n_source_ips == 1 && pm->source_ips[0].addr_be == ip("198.18.1.0") &&
		   pm->source_ips[0].prefix_len == 24 &&
		   pm->n_not_source_ips == 1 &&
		   pm->not_source_ips[0].prefix_len == 32 &&
		   pm->not_source_ips[0].addr_be == ip("198.18.1.99") &&
		   pm->n_destination_ips == 1 &&
		   pm->destination_ips[0].addr_be == ip("198.18.2.20") &&
		   pm->n_not_destination_ips == 1 &&
		   pm->not_destination_ips[0].prefix_len == 24,
	   "match: sourceIps, notSourceIps (bare IP = /32), destinationIps, notDestinationIps");
	ok(pm->n_destination_ports == 1 && pm->destination_ports[0] == 8080 &&
		   pm->n_not_destination_ports == 1 &&
		   pm->not_destination_ports[0] == 9999 &&
		   p->rules[0].clauses[0].matches[1].n_destination_ports == 2 &&
		   p->rules[0].clauses[0].matches[1].destination_ports[1] == 443 &&
		   p->rules[0].clauses[1].matches[0].source_ips[0].prefix_len == 0,
	   "match: destinationPorts, notDestinationPorts, /0");
	d = &st->policies[1];
	ok(streq(d->name, "deny-9999") && d->scope == POL_SCOPE_NAMESPACE &&
		   d->action == POL_ACTION_DENY && !d->dry_run &&
		   d->n_rules == 1 &&
		   d->rules[0].clauses[0].matches[0].n_not_destination_ports == 1 &&
		   streq(pol_action_name(d->action), "Deny"),
	   "policy deny-9999 (ztunnel example shape)");

	ok(state_workload_by_ip(st, ip("198.18.2.21")) == s &&
		   state_workload_by_ip(st, ip("198.18.1.10")) == c &&
		   !state_workload_by_ip(st, ip("198.18.1.12")),
	   "lookup by IP: second IP of a workload, miss");
	ok(state_workload_by_uid(st, "cluster1//v1/Pod/other/minimal") == m &&
		   !state_workload_by_uid(st, "nope") &&
		   state_service_by_vip(st, ip("198.18.100.2")) == echo &&
		   state_service_by_host(st, "default",
					 "bare.default.svc.cluster.local") ==
			   bare &&
		   !state_service_by_host(st, "other", "bare.default.svc.cluster.local"),
	   "lookup by uid, VIP, namespace/hostname");
	state_unref(st);
}

static int count_cb(const struct workload *wl, void *arg)
{
	(*(int *)arg)++;
	return 0;
}

static void test_node_and_refs(void)
{
	struct state *st = NULL, *e1, *e2;
	char err[256];
	int n = 0;

	load(full_yaml, &st, err, sizeof(err));
	if (!st) {
		ok(0, "node iteration: load failed: %s", err);
		return;
	}
	state_workloads_on_node(st, "node1", count_cb, &n);
	ok(n == 2, "state_workloads_on_node(node1) visits 2 workloads");
	ok(state_ref(st) == st && atomic_load(&st->refcnt) == 2,
	   "state_ref bumps the count");
	state_unref(st);
	ok(atomic_load(&st->refcnt) == 1, "state_unref drops it");
	state_unref(st);
	state_unref(NULL);

	e1 = state_new_empty();
	e2 = state_new_empty();
	ok(e1 && e2 && e1->n_workloads == 0 && e2->generation > e1->generation &&
		   !state_workload_by_ip(e1, ip("198.18.1.1")) &&
		   !state_workload_by_uid(e1, "x"),
	   "state_new_empty: empty, lookups miss, generations increase");
	state_unref(e1);
	state_unref(e2);
}

/* ---- valid edge cases ---- */

struct valid_case {
	const char *what;
	const char *yaml;
	size_t workloads, services, policies;
};

static const struct valid_case valid_cases[] = {
	{ "empty file", "", 0, 0, 0 },
	{ "comments only", "# nothing\n\n  # here\n", 0, 0, 0 },
	{ "lone document marker", "---\n", 0, 0, 0 },
	{ "null document", "~\n", 0, 0, 0 },
	{ "empty lists", "workloads: []\nservices: []\npolicies: []\n", 0, 0,
	  0 },
	{ "keys with null values are empty lists",
	  "workloads:\nservices: ~\npolicies: null\n", 0, 0, 0 },
	{ "minimal workload",
	  "workloads:\n- namespace: ns\n  workloadIps: []\n", 1, 0, 0 },
	{ "anchors and aliases for repeated maps",
	  "workloads:\n"
	  "- {namespace: a, workloadIps: [198.18.1.1], services: &s {\"a/h\": {80: 8080}}}\n"
	  "- {namespace: a, workloadIps: [198.18.1.2], services: *s}\n"
	  "services:\n"
	  "- {name: h, namespace: a, hostname: h, vips: [/198.18.100.9], ports: {80: 8080}}\n",
	  2, 1, 0 },
	{ "policy without rules and dryRun (defaults)",
	  "policies:\n- {name: p, namespace: n, scope: Global, action: Deny}\n",
	  0, 0, 1 },
	{ "string match as {Presence: } with null",
	  "policies:\n- name: p\n  namespace: n\n  scope: Global\n  action: Allow\n"
	  "  rules: [[[{principals: [{Presence: }]}]]]\n",
	  0, 0, 1 },
	{ "same uid-less workloads are fine",
	  "workloads:\n- {namespace: a, workloadIps: [198.18.1.1]}\n"
	  "- {namespace: a, workloadIps: [198.18.1.2]}\n",
	  2, 0, 0 },
};

static void test_valid(void)
{
	size_t i;

	for (i = 0; i < sizeof(valid_cases) / sizeof(valid_cases[0]); i++) {
		const struct valid_case *vc = &valid_cases[i];
		struct state *st = NULL;
		char err[512] = "";
		int ret = load(vc->yaml, &st, err, sizeof(err));

		ok(ret == 0 && st && st->n_workloads == vc->workloads &&
			   st->n_services == vc->services &&
			   st->n_policies == vc->policies,
		   "valid: %s %s", vc->what, err);
		if (st && vc->services == 1 && vc->workloads == 2)
			ok(st->services[0].n_endpoints == 2 &&
				   st->workloads[1].services[0].ports[0]
						   .target_port == 8080,
			   "valid: aliased services map reaches both workloads");
		state_unref(st);
	}
}

/* ---- errors: message must contain `expect` (file:line: path: what) ---- */

struct err_case {
	const char *what;
	const char *yaml;
	const char *expect;
};

#define WL0 "workloads:\n- uid: a\n  namespace: default\n  workloadIps: [198.18.1.1]\n"
#define SVC0                                                                   \
	"services:\n- name: s\n  namespace: default\n  hostname: s.default\n"  \
	"  vips: [/198.18.100.1]\n"
#define POL0                                                                   \
	"policies:\n- name: p\n  namespace: default\n  scope: Global\n"        \
	"  action: Allow\n"

static const struct err_case err_cases[] = {
	{ "unknown key with hint", WL0 "- uid: b\n  namespace: default\n  workloadIp: [198.18.1.2]\n",
	  "cfg.yaml:7: workloads[1].workloadIp: unknown key (did you mean workloadIps?)" },
	{ "unknown top-level key", "workload: []\n",
	  "cfg.yaml:1: workload: unknown key (did you mean workloads?)" },
	{ "snake_case key gets the camelCase hint", WL0 "  trust_domain: x\n",
	  "cfg.yaml:5: workloads[0].trust_domain: unknown key (did you mean trustDomain?)" },
	{ "unknown key without a hint", WL0 "  zzz: 1\n",
	  "cfg.yaml:5: workloads[0].zzz: unknown key" },
	{ "list expected, mapping given", "workloads: {a: b}\n",
	  "cfg.yaml:1: workloads: expected a list, got a mapping" },
	{ "list expected, scalar given",
	  "workloads:\n- namespace: a\n  workloadIps: 198.18.1.1\n",
	  "cfg.yaml:3: workloads[0].workloadIps: expected a list, got a scalar" },
	{ "string expected, null given", WL0 "  name:\n",
	  "cfg.yaml:5: workloads[0].name: expected a string, got null" },
	{ "mapping expected for a workload", "workloads: [x]\n",
	  "cfg.yaml:1: workloads[0]: expected a mapping, got a scalar" },
	{ "top level must be a mapping", "- a\n- b\n",
	  "cfg.yaml:1: expected a mapping with workloads, services, policies and peerAuthentications, got a list" },
	{ "bad protocol", WL0 "  protocol: HTTP\n",
	  "cfg.yaml:5: workloads[0].protocol: invalid value \"HTTP\" (allowed: TCP, HBONE)" },
	{ "enum is case-sensitive", WL0 "  protocol: hbone\n",
	  "workloads[0].protocol: invalid value \"hbone\" (allowed: TCP, HBONE)" },
	{ "bad status", WL0 "  status: Dead\n",
	  "cfg.yaml:5: workloads[0].status: invalid value \"Dead\" (allowed: Healthy, Unhealthy)" },
	{ "bad policy action", POL0 "- name: q\n  namespace: d\n  scope: Global\n  action: Audit\n",
	  "cfg.yaml:9: policies[1].action: invalid value \"Audit\" (allowed: Allow, Deny)" },
	{ "bad policy scope", POL0 "  rules: []\n- {name: q, namespace: d, scope: Cluster, action: Deny}\n",
	  "cfg.yaml:7: policies[1].scope: invalid value \"Cluster\" (allowed: Global, Namespace, WorkloadSelector)" },
	{ "bad bool", POL0 "  dryRun: yes\n",
	  "cfg.yaml:6: policies[0].dryRun: expected true or false, got \"yes\"" },
	{ "duplicate key in an object", WL0 "  namespace: again\n",
	  "cfg.yaml:5: workloads[0].namespace: duplicate key" },
	{ "duplicate top-level key", "workloads: []\nworkloads: []\n",
	  "cfg.yaml:2: workloads: duplicate key" },
	{ "duplicate key in a port map", SVC0 "  ports: {80: 8080, 80: 9090}\n",
	  "cfg.yaml:6: services[0].ports[\"80\"]: duplicate key" },
	{ "duplicate uid", WL0 "- uid: a\n  namespace: x\n  workloadIps: [198.18.1.2]\n",
	  "cfg.yaml:5: workloads[1].uid: duplicate uid \"a\" (also workloads[0])" },
	{ "duplicate IP across workloads",
	  WL0 "- uid: b\n  namespace: x\n  workloadIps:\n  - 198.18.1.9\n  - 198.18.1.1\n",
	  "cfg.yaml:9: workloads[1].workloadIps[1]: duplicate IP 198.18.1.1 (also workloads[0])" },
	{ "duplicate IP within a workload",
	  "workloads:\n- namespace: a\n  workloadIps: [198.18.1.1, 198.18.1.1]\n",
	  "cfg.yaml:3: workloads[0].workloadIps[1]: duplicate IP 198.18.1.1 (also workloads[0])" },
	{ "IPv6 workload IP", WL0 "- uid: b\n  namespace: x\n  workloadIps: [\"fd00::1\"]\n",
	  "cfg.yaml:7: workloads[1].workloadIps[0]: IPv6 not supported yet (\"fd00::1\")" },
	{ "invalid IPv4", "workloads:\n- namespace: a\n  workloadIps: [198.18.1.300]\n",
	  "cfg.yaml:3: workloads[0].workloadIps[0]: invalid IPv4 address \"198.18.1.300\"" },
	{ "IPv6 VIP", "services:\n- name: s\n  namespace: d\n  hostname: h\n  vips: [\"/fd00::1\"]\n",
	  "cfg.yaml:5: services[0].vips[0]: IPv6 not supported yet" },
	{ "VIP without network", "services:\n- name: s\n  namespace: d\n  hostname: h\n  vips: [198.18.100.1]\n",
	  "cfg.yaml:5: services[0].vips[0]: expected \"network/ip\", got \"198.18.100.1\"" },
	{ "port 0", SVC0 "  ports: {0: 8080}\n",
	  "cfg.yaml:6: services[0].ports[\"0\"]: invalid port \"0\" (expected 1..65535)" },
	{ "port 65536", SVC0 "  ports:\n    80: 65536\n",
	  "cfg.yaml:7: services[0].ports[\"80\"]: invalid port \"65536\" (expected 1..65535)" },
	{ "port with junk", SVC0 "  ports: {80x: 80}\n",
	  "services[0].ports[\"80x\"]: invalid port \"80x\"" },
	{ "negative port", SVC0 "  ports: {80: -1}\n", "invalid port \"-1\"" },
	{ "port with leading zero", POL0 "  rules: [[[destinationPorts: [080]]]]\n",
	  "cfg.yaml:6: policies[0].rules[0][0][0].destinationPorts[0]: invalid port \"080\"" },
	{ "missing required namespace", "workloads:\n- workloadIps: []\n  name: x\n",
	  "cfg.yaml:2: workloads[0]: missing required key \"namespace\"" },
	{ "missing required workloadIps", "workloads:\n- namespace: x\n",
	  "cfg.yaml:2: workloads[0]: missing required key \"workloadIps\"" },
	{ "missing required service ports", SVC0,
	  "cfg.yaml:2: services[0]: missing required key \"ports\"" },
	{ "malformed YAML: unclosed flow list", "workloads: [\n- a\n",
	  "cfg.yaml:2:1: YAML syntax error" },
	{ "malformed YAML: bad indentation", "workloads:\n- namespace: a\n   name: b\n",
	  "cfg.yaml:3:8: YAML syntax error: mapping values are not allowed in this context" },
	{ "undefined alias", "workloads: *nope\n", "cfg.yaml:1:12: YAML syntax error" },
	{ "two documents", "workloads: []\n---\nservices: []\n",
	  "cfg.yaml:3: only one YAML document is supported" },
	{ "bad string match", POL0 "  rules: [[[principals: [foo]]]]\n",
	  "cfg.yaml:6: policies[0].rules[0][0][0].principals[0]: expected a string match" },
	{ "unknown string match kind", POL0 "  rules: [[[namespaces: [{Regex: a.*}]]]]\n",
	  "policies[0].rules[0][0][0].namespaces[0]: unknown string match \"Regex\"" },
	{ "Presence with a value", POL0 "  rules: [[[namespaces: [{Presence: x}]]]]\n",
	  "policies[0].rules[0][0][0].namespaces[0]: Presence takes no value" },
	{ "unknown match key", POL0 "  rules:\n  - - - destinationPort: [80]\n",
	  "cfg.yaml:7: policies[0].rules[0][0][0].destinationPort: unknown key (did you mean destinationPorts?)" },
	{ "rule must be a list of clauses", POL0 "  rules: [a]\n",
	  "cfg.yaml:6: policies[0].rules[0]: expected a list, got a scalar" },
	{ "CIDR prefix too long", POL0 "  rules: [[[sourceIps: [198.18.0.0/33]]]]\n",
	  "policies[0].rules[0][0][0].sourceIps[0]: invalid CIDR \"198.18.0.0/33\"" },
	{ "IPv6 CIDR", POL0 "  rules: [[[sourceIps: [\"fd00::/8\"]]]]\n",
	  "policies[0].rules[0][0][0].sourceIps[0]: IPv6 not supported yet" },
	{ "duplicate service", SVC0 "  ports: {}\n- {name: t, namespace: default, hostname: s.default, vips: [], ports: {}}\n",
	  "cfg.yaml:7: services[1].hostname: duplicate service default/s.default (also services[0])" },
	{ "duplicate VIP", SVC0 "  ports: {}\n- {name: t, namespace: default, hostname: t, vips: [net/198.18.100.1], ports: {}}\n",
	  "cfg.yaml:7: services[1].vips[0]: duplicate VIP 198.18.100.1 (also services[0])" },
	{ "duplicate policy", POL0 "- {name: p, namespace: default, scope: Global, action: Deny}\n",
	  "cfg.yaml:6: policies[1].name: duplicate policy default/p (also policies[0])" },
	{ "workload services key without namespace", WL0 "  services: {example.com: {80: 8080}}\n",
	  "cfg.yaml:5: workloads[0].services[\"example.com\"]: expected a \"namespace/hostname\" key" },
	{ "capacity must be a number", WL0 "  capacity: -1\n",
	  "cfg.yaml:5: workloads[0].capacity: invalid number \"-1\"" },
	{ "gateway without port", WL0 "  waypoint: {destination: /198.18.3.3}\n",
	  "cfg.yaml:5: workloads[0].waypoint: missing required key \"hboneMtlsPort\"" },
	{ "gateway with IPv6", WL0 "  waypoint: {destination: \"/fd00::3\", hboneMtlsPort: 15008}\n",
	  "workloads[0].waypoint.destination: IPv6 not supported yet" },
	{ "endpoint missing status", SVC0 "  ports: {}\n  endpoints:\n    u: {workloadUid: u, port: {}}\n",
	  "cfg.yaml:8: services[0].endpoints[\"u\"]: missing required key \"status\"" },
	{ "non-string key", WL0 "  [a]: b\n",
	  "cfg.yaml:5: workloads[0]: expected a string key, got a list" },
	{ "NUL byte in a string", WL0 "  name: \"a\\0b\"\n",
	  "workloads[0].name: string contains a NUL byte" },
	{ "alias bomb",
	  "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
	  "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
	  "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
	  "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
	  "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
	  "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
	  "policies:\n- name: p\n  namespace: n\n  scope: Global\n  action: Allow\n"
	  "  rules: [[[{destinationPorts: *f}]]]\n",
	  "cfg.yaml:1: a: unknown key" },
};

static void test_errors(void)
{
	size_t i;

	for (i = 0; i < sizeof(err_cases) / sizeof(err_cases[0]); i++) {
		const struct err_case *ec = &err_cases[i];
		struct state *st = (struct state *)&err_cases; /* sentinel */
		char err[512] = "";
		int ret;

		ret = load(ec->yaml, &st, err, sizeof(err));
		ok(ret == -EINVAL && st == (struct state *)&err_cases &&
			   strstr(err, ec->expect),
		   "error: %s -> \"%s\"", ec->what, err);
	}
}

/*
 * Aliases through schema keys: each level lists one anchored node ten times,
 * so every policy aliasing the rules expands to ~10^4 nodes. Rejected for
 * the work, quickly, instead of being walked.
 */
static void test_alias_budget(void)
{
	char yaml[16384], err[512] = "";
	struct state *st = NULL;
	int len, i, ret;

	len = snprintf(
		yaml, sizeof(yaml),
		"policies:\n- name: p0\n  namespace: n\n  scope: Global\n"
		"  action: Allow\n"
		"  rules: &R [&r [&c [&m {destinationPorts: &P [1,2,3,4,5,6,7,8,9,10]},"
		" *m, *m, *m, *m, *m, *m, *m, *m, *m],"
		" *c, *c, *c, *c, *c, *c, *c, *c, *c],"
		" *r, *r, *r, *r, *r, *r, *r, *r, *r]\n");
	for (i = 1; i <= 200; i++)
		len += snprintf(yaml + len, sizeof(yaml) - len,
				"- {name: p%d, namespace: n, scope: Global, action: Allow, rules: *R}\n",
				i);
	ret = load(yaml, &st, err, sizeof(err));
	ok(ret == -EINVAL && !st && strstr(err, "document too complex"),
	   "error: alias expansion bomb is bounded -> \"%s\"", err);
	state_unref(st);
}

/* Issue 12: 200,000 `[` kept libyaml's loader busy for minutes. Refused by
 * the shape pass before any document is built, in a few milliseconds. */
static void test_nesting(void)
{
	static const struct {
		const char *what, *open, *close, *prefix;
		int levels;
	} cases[] = {
		{"flow lists", "[", "]", "workloads: ", 200000},
		{"flow mappings", "{a: ", "}", "", 100000},
		{"block lists", NULL, NULL, "workloads:\n", 100},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t cap = 64 + (size_t)cases[i].levels * 210, len = 0;
		char *yaml = malloc(cap), err[512] = "";
		struct state *st = NULL;
		struct timespec t0, t1;
		double ms;
		int ret;

		if (!yaml)
			abort();
		len += (size_t)snprintf(yaml, cap, "%s", cases[i].prefix);
		for (int k = 0; k < cases[i].levels; k++) {
			if (cases[i].open)
				len += (size_t)snprintf(yaml + len, cap - len, "%s", cases[i].open);
			else
				len += (size_t)snprintf(yaml + len, cap - len, "%*s- \n", 2 * (k + 1), "");
		}
		if (cases[i].open && !strcmp(cases[i].open, "{a: "))
			len += (size_t)snprintf(yaml + len, cap - len, "1");
		for (int k = 0; cases[i].close && k < cases[i].levels; k++)
			len += (size_t)snprintf(yaml + len, cap - len, "%s", cases[i].close);
		clock_gettime(CLOCK_MONOTONIC, &t0);
		ret = config_load_buffer("deep.yaml", yaml, len, &st, err, sizeof(err));
		clock_gettime(CLOCK_MONOTONIC, &t1);
		ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
		ok(ret == -EINVAL && !st && strstr(err, "nested deeper than 32 levels") &&
			   ms < 1000,
		   "%d nested %s: refused in %.1f ms -> \"%s\"", cases[i].levels,
		   cases[i].what, ms, err);
		free(yaml);
	}
	{
		char yaml[256] = "workloads: ";
		struct state *st = NULL;
		char err[512] = "";
		int ret;

		/* 31 levels below the root mapping still parse (then fail on
		 * the schema, not on depth). */
		for (int k = 0; k < 30; k++)
			strcat(yaml, "[");
		for (int k = 0; k < 30; k++)
			strcat(yaml, "]");
		ret = config_load_buffer("ok.yaml", yaml, strlen(yaml), &st, err, sizeof(err));
		ok(ret == -EINVAL && !strstr(err, "nested deeper"),
		   "31 levels pass the shape check (%s)", err);
		state_unref(st);
	}
}

static void test_err_buffers(void)
{
	struct state *st = NULL;
	char small[12];
	int ret;

	memset(small, 'x', sizeof(small));
	ret = load("workload: []\n", &st, small, sizeof(small));
	ok(ret == -EINVAL && !st && strlen(small) == sizeof(small) - 1 &&
		   !strncmp(small, "cfg.yaml:1:", 11),
	   "error text is truncated to the caller's buffer");
	ret = load("workload: []\n", &st, NULL, 0);
	ok(ret == -EINVAL && !st, "NULL error buffer is allowed");
}

static void test_files(void)
{
	char err[512] = "", dir[512], path[1024];
	struct state *st = NULL;
	int ret;

	ret = config_load_file("/nonexistent/ambientd.yaml", &st, err,
			       sizeof(err));
	ok(ret == -ENOENT && !st &&
		   strstr(err, "/nonexistent/ambientd.yaml: cannot open"),
	   "missing file: -ENOENT with path (%s)", err);

	/* Fixtures sit next to this source; meson runs us from the build dir. */
	snprintf(dir, sizeof(dir), "%s", __FILE__);
	snprintf(path, sizeof(path), "%s/configs/full.yaml", dirname(dir));
	ret = config_load_file(path, &st, err, sizeof(err));
	if (ret == -ENOENT) {
		tap_skip("fixture %s not reachable from here", path);
		tap_skip("fixture bad-key.yaml");
		return;
	}
	ok(ret == 0 && st && st->n_workloads == 2 && st->n_services == 1 &&
		   st->n_policies == 1 &&
		   state_workload_by_ip(st, ip("198.18.1.10")) ==
			   &st->workloads[0],
	   "fixture configs/full.yaml loads from disk (%s)", err);
	state_unref(st);
	st = NULL;
	snprintf(dir, sizeof(dir), "%s", __FILE__);
	snprintf(path, sizeof(path), "%s/configs/bad-key.yaml", dirname(dir));
	ret = config_load_file(path, &st, err, sizeof(err));
	ok(ret == -EINVAL && !st &&
		   strstr(err, "bad-key.yaml:12: workloads[1].workloadIp: unknown key (did you mean workloadIps?)"),
	   "fixture configs/bad-key.yaml: %s", err);
}

static void test_large(void)
{
	const int n = 2000;
	size_t cap = (size_t)n * 200 + 4096, len = 0;
	char *yaml = malloc(cap), err[512] = "";
	struct state *st = NULL;
	int i, hits = 0, on_node = 0, ret;

	if (!yaml)
		abort();
	len += snprintf(yaml + len, cap - len, "workloads:\n");
	for (i = 0; i < n; i++)
		len += snprintf(yaml + len, cap - len,
				"- uid: c//v1/Pod/ns/pod-%d\n"
				"  name: pod-%d\n"
				"  namespace: ns\n"
				"  node: node%d\n"
				"  protocol: HBONE\n"
				"  workloadIps: [198.18.%d.%d]\n"
				"  services: {\"ns/svc\": {80: 8080}}\n",
				i, i, i % 4, i / 250, i % 250 + 1);
	len += snprintf(yaml + len, cap - len,
			"services:\n- {name: svc, namespace: ns, hostname: svc, "
			"vips: [/198.18.100.1], ports: {80: 8080}}\n");
	ret = config_load_buffer("big.yaml", yaml, len, &st, err, sizeof(err));
	ok(ret == 0 && st && st->n_workloads == (size_t)n,
	   "2,000 workloads load (%s)", err);
	if (st) {
		char addr[32];

		for (i = 0; i < n; i++) {
			const struct workload *wl;

			snprintf(addr, sizeof(addr), "198.18.%d.%d", i / 250,
				 i % 250 + 1);
			wl = state_workload_by_ip(st, ip(addr));
			hits += wl == &st->workloads[i];
		}
		ok(hits == n, "every one of 2,000 IPs finds its workload (%d)",
		   hits);
		ok(!state_workload_by_ip(st, ip("198.18.9.1")) &&
			   state_workload_by_uid(st, "c//v1/Pod/ns/pod-1999") ==
				   &st->workloads[1999],
		   "large: miss, and lookup by uid");
		state_workloads_on_node(st, "node3", count_cb, &on_node);
		ok(on_node == n / 4 && st->services[0].n_endpoints == (size_t)n,
		   "large: 500 on node3, service has 2,000 derived endpoints");
	}
	state_unref(st);
	free(yaml);
}

static void test_names(void)
{
	ok(streq(wl_protocol_name(WL_PROTO_TCP), "TCP") &&
		   streq(wl_protocol_name(WL_PROTO__COUNT), "?") &&
		   streq(pol_scope_name(POL_SCOPE_WORKLOAD_SELECTOR),
			 "WorkloadSelector") &&
		   streq(str_match_kind_name(SM_PRESENCE), "Presence") &&
		   streq(ip_families_name(IPF_DUAL), "Dual") &&
		   streq(lb_scope_name(LB_SCOPE_SUBZONE), "Subzone") &&
		   streq(svc_visibility_name(SVC_VIS_PUBLIC), "Public") &&
		   streq(wl_network_mode_name(WL_NETMODE_HOST_NETWORK),
			 "HostNetwork") &&
		   streq(app_tunnel_protocol_name(APP_TUNNEL_NONE), "NONE") &&
		   streq(lb_health_policy_name(LB_HEALTH_ONLY_HEALTHY),
			 "OnlyHealthy"),
	   "string tables use the YAML spellings");
}

int main(void)
{
	test_full();
	test_node_and_refs();
	test_valid();
	test_errors();
	test_alias_budget();
	test_nesting();
	test_err_buffers();
	test_files();
	test_large();
	test_names();
	return tap_done();
}
