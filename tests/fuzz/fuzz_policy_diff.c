// SPDX-License-Identifier: Apache-2.0
/*
 * Differential: the kernel's policy fast path against the userspace
 * evaluator, for plaintext callers.
 *
 * The input bytes build a random snapshot (userspace/state/state.h) directly:
 * a few pods with one or two addresses, policies of every scope and action
 * (dryRun too) whose matches use every field (the address and port fields
 * a plaintext caller is judged by, and the identity fields it never has),
 * workloads naming policies (known or not), peer authentications. For each
 * pod address polmap_compile() produces the amb_pol entries; an emulation
 * of amb_tc_inbound's lookup (bpf/lib/verdict.h policy_lookup(): exact
 * port, else port 0; longest source prefix; no entry: allow) decides each
 * connection, and authz_evaluate() decides it for a caller without
 * identity. Connections: every port the policies name plus unnamed ones,
 * from sources at the edges of every CIDR the policies name (first and
 * last address, one outside each end) and a few drawn from the input.
 *
 * Any disagreement (deny vs allow, or a different deciding policy or
 * reason) aborts with both answers. The compiled entries are also checked
 * for what the LPM trie needs: prefix lengths 64..96, zero padding, host
 * bits cleared, no two entries with the same key.
 */
#include <arpa/inet.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authz.h"
#include "polmap.h"
#include "state.h"

#define MAX_WL	  4
#define MAX_POL	  6
#define MAX_LIST  3
#define MAX_PORTS 24
#define MAX_SRCS  256

/* ---- reading the input ---- */

struct rd {
	const uint8_t *p, *end;
};

/* Next byte, 0 once the input is used up (so every input is a model). */
static uint8_t u8(struct rd *r)
{
	return r->p < r->end ? *r->p++ : 0;
}

static uint16_t u16(struct rd *r)
{
	uint16_t hi = u8(r);

	return (uint16_t)(hi << 8 | u8(r));
}

static unsigned upto(struct rd *r, unsigned n)
{
	return u8(r) % (n + 1);
}

static const char *const namespaces[] = {"shop", "bank", "istio-system"};
static const char *const strings[] = {
    "",
    "shop",
    "bank",
    "cluster.local/ns/shop/sa/web",
    "cluster.local/ns/",
    "spiffe://cluster.local/ns/shop/sa/web",
    "web",
    "*",
};

/* Addresses near each other, so prefixes nest and overlap. */
static uint32_t addr(struct rd *r)
{
	static const char *const bases[] = {
	    "0.0.0.0",	   "198.18.0.0",  "198.18.9.0",	   "198.18.9.20",
	    "198.18.9.21", "198.19.66.0", "198.19.66.128", "255.255.255.255",
	};
	uint8_t b = u8(r);
	uint32_t hi;

	if (b < 0xe0)
		return inet_addr(bases[b % 8]) ^ htonl(b >> 3 & 0x3);
	hi = u16(r);
	return hi << 16 | u16(r);
}

static struct ip_cidr cidr(struct rd *r)
{
	struct ip_cidr c;

	c.prefix_len = (uint8_t)upto(r, 32);
	c.addr_be = addr(r) & ip_cidr_mask(c.prefix_len);
	return c;
}

static uint16_t port(struct rd *r)
{
	static const uint16_t ports[] = {80, 443, 8080, 9000, 22, 65535, 1};
	uint8_t b = u8(r);

	if (b < 0xf0)
		return ports[b % 7];
	return (uint16_t)(u16(r) | 1);
}

/* ---- building a snapshot ---- */

#define ALLOC(st, n, type) ((type *)state_zalloc((st), (n) * sizeof(type)))

static void str_list(struct state *st, struct rd *r, struct str_match **out,
		     size_t *n)
{
	*n = 1 + upto(r, MAX_LIST - 1);
	*out = ALLOC(st, *n, struct str_match);
	for (size_t i = 0; i < *n; i++) {
		(*out)[i].kind = (enum str_match_kind)(u8(r) % SM__COUNT);
		if ((*out)[i].kind != SM_PRESENCE)
			(*out)[i].value = state_strdup(st, strings[u8(r) % 8]);
	}
}

static void sa_list(struct state *st, struct rd *r, struct sa_match **out,
		    size_t *n)
{
	*n = 1 + upto(r, MAX_LIST - 1);
	*out = ALLOC(st, *n, struct sa_match);
	for (size_t i = 0; i < *n; i++) {
		(*out)[i].namespace = state_strdup(st, strings[u8(r) % 8]);
		(*out)[i].service_account =
		    state_strdup(st, strings[u8(r) % 8]);
	}
}

static void cidr_list(struct state *st, struct rd *r, struct ip_cidr **out,
		      size_t *n)
{
	*n = 1 + upto(r, MAX_LIST - 1);
	*out = ALLOC(st, *n, struct ip_cidr);
	for (size_t i = 0; i < *n; i++)
		(*out)[i] = cidr(r);
}

static void port_list(struct state *st, struct rd *r, uint16_t **out, size_t *n)
{
	*n = 1 + upto(r, MAX_LIST - 1);
	*out = ALLOC(st, *n, uint16_t);
	for (size_t i = 0; i < *n; i++)
		(*out)[i] = port(r);
}

static void match(struct state *st, struct rd *r, struct pol_match *m)
{
	uint16_t f = u16(r);

	if (f & 1 << 0)
		str_list(st, r, &m->namespaces, &m->n_namespaces);
	if (f & 1 << 1)
		str_list(st, r, &m->not_namespaces, &m->n_not_namespaces);
	if (f & 1 << 2)
		sa_list(st, r, &m->service_accounts, &m->n_service_accounts);
	if (f & 1 << 3)
		sa_list(st, r, &m->not_service_accounts,
			&m->n_not_service_accounts);
	if (f & 1 << 4)
		str_list(st, r, &m->principals, &m->n_principals);
	if (f & 1 << 5)
		str_list(st, r, &m->not_principals, &m->n_not_principals);
	if (f & 1 << 6)
		cidr_list(st, r, &m->source_ips, &m->n_source_ips);
	if (f & 1 << 7)
		cidr_list(st, r, &m->not_source_ips, &m->n_not_source_ips);
	if (f & 1 << 8)
		cidr_list(st, r, &m->destination_ips, &m->n_destination_ips);
	if (f & 1 << 9)
		cidr_list(st, r, &m->not_destination_ips,
			  &m->n_not_destination_ips);
	if (f & 1 << 10)
		port_list(st, r, &m->destination_ports,
			  &m->n_destination_ports);
	if (f & 1 << 11)
		port_list(st, r, &m->not_destination_ports,
			  &m->n_not_destination_ports);
}

static struct state *build(struct rd *r)
{
	struct state *st = state_alloc();
	char name[32];

	if (!st)
		abort();
	st->n_policies = upto(r, MAX_POL);
	st->policies = ALLOC(st, st->n_policies, struct policy);
	for (size_t i = 0; i < st->n_policies; i++) {
		struct policy *p = &st->policies[i];
		uint8_t b = u8(r);

		snprintf(name, sizeof(name), "p%zu", i);
		p->name = state_strdup(st, name);
		p->namespace = state_strdup(st, namespaces[b % 3]);
		p->scope = (enum pol_scope)(b / 3 % 3);
		p->action = (enum pol_action)(b >> 4 & 1);
		p->dry_run = (b >> 5 & 3) == 3;
		p->n_rules = upto(r, 3);
		p->rules = ALLOC(st, p->n_rules, struct pol_rule);
		for (size_t j = 0; j < p->n_rules; j++) {
			struct pol_rule *ru = &p->rules[j];

			ru->n_clauses = upto(r, 3);
			ru->clauses =
			    ALLOC(st, ru->n_clauses, struct pol_clause);
			for (size_t k = 0; k < ru->n_clauses; k++) {
				struct pol_clause *cl = &ru->clauses[k];

				cl->n_matches = upto(r, 3);
				cl->matches =
				    ALLOC(st, cl->n_matches, struct pol_match);
				for (size_t m = 0; m < cl->n_matches; m++)
					match(st, r, &cl->matches[m]);
			}
		}
		if (state_index_policy(st, p, NULL))
			abort();
	}

	st->n_peer_auths = upto(r, 3);
	st->peer_auths = ALLOC(st, st->n_peer_auths, struct peer_auth);
	for (size_t i = 0; i < st->n_peer_auths; i++) {
		struct peer_auth *pa = &st->peer_auths[i];
		uint8_t b = u8(r);

		snprintf(name, sizeof(name), "pa%zu", i);
		pa->name = state_strdup(st, name);
		pa->namespace = state_strdup(st, namespaces[b % 3]);
		pa->mode = (enum peer_auth_mode)(b / 3 % PA_MODE__COUNT);
		pa->n_workloads = b >> 6 & 1;
		pa->workloads = ALLOC(st, pa->n_workloads, char *);
		for (size_t j = 0; j < pa->n_workloads; j++) {
			snprintf(name, sizeof(name), "w%u", u8(r) % MAX_WL);
			pa->workloads[j] = state_strdup(st, name);
		}
	}

	st->n_workloads = 1 + upto(r, MAX_WL - 1);
	st->workloads = ALLOC(st, st->n_workloads, struct workload);
	for (size_t i = 0; i < st->n_workloads; i++) {
		struct workload *wl = &st->workloads[i];
		uint8_t b = u8(r);

		snprintf(name, sizeof(name), "w%zu", i);
		wl->name = state_strdup(st, name);
		wl->namespace = state_strdup(st, namespaces[b % 3]);
		wl->trust_domain = state_strdup(st, WL_DEFAULT_TRUST_DOMAIN);
		wl->service_account =
		    state_strdup(st, WL_DEFAULT_SERVICE_ACCOUNT);
		wl->cluster_id = state_strdup(st, WL_DEFAULT_CLUSTER_ID);
		wl->protocol = WL_PROTO_HBONE;
		wl->capacity = 1;
		/* 198.18.9.20 + 2i (+1): distinct across workloads. */
		wl->n_ips = 1 + (b >> 2 & 1);
		wl->ips_be = ALLOC(st, wl->n_ips, uint32_t);
		for (size_t j = 0; j < wl->n_ips; j++) {
			wl->ips_be[j] =
			    htonl(ntohl(inet_addr("198.18.9.20")) + 2 * i + j);
			if (state_index_workload_ip(st, wl->ips_be[j], wl,
						    NULL))
				abort();
		}
		wl->n_authorization_policies = upto(r, 2);
		wl->authorization_policies =
		    ALLOC(st, wl->n_authorization_policies, char *);
		for (size_t j = 0; j < wl->n_authorization_policies; j++) {
			uint8_t k = u8(r);

			snprintf(name, sizeof(name), "%s/p%u",
				 namespaces[k % 3], k / 3 % (MAX_POL + 1));
			wl->authorization_policies[j] = state_strdup(st, name);
		}
	}
	return st;
}

/* ---- the kernel's side ---- */

static const struct polmap_entry *lpm(const struct polmap *pm, uint32_t daddr,
				      uint16_t dport, uint32_t saddr)
{
	const struct polmap_entry *best = NULL;

	for (size_t i = 0; i < pm->n; i++) {
		const struct polmap_entry *e = &pm->e[i];
		uint8_t len = (uint8_t)(e->key.prefixlen - AMB_POL_FIXED_BITS);

		if (e->key.daddr != daddr || e->key.dport != htons(dport) ||
		    (saddr & ip_cidr_mask(len)) != e->key.saddr)
			continue;
		if (!best || e->key.prefixlen > best->key.prefixlen)
			best = e;
	}
	return best;
}

/* policy_lookup() of bpf/lib/verdict.h. */
static const struct amb_pol_verdict *
kernel(const struct polmap *pm, uint32_t daddr, uint16_t dport, uint32_t saddr)
{
	const struct polmap_entry *e = lpm(pm, daddr, dport, saddr);

	if (!e)
		e = lpm(pm, daddr, 0, saddr);
	return e ? &e->val : NULL;
}

static void check_entries(const struct polmap *pm, size_t from)
{
	for (size_t i = from; i < pm->n; i++) {
		const struct amb_pol_key *k = &pm->e[i].key;
		uint8_t len;

		if (k->prefixlen < AMB_POL_FIXED_BITS ||
		    k->prefixlen > AMB_POL_FIXED_BITS + 32 || k->pad)
			abort();
		len = (uint8_t)(k->prefixlen - AMB_POL_FIXED_BITS);
		if (k->saddr & ~ip_cidr_mask(len))
			abort(); /* host bits set */
		for (size_t j = from; j < i; j++)
			if (!memcmp(&pm->e[j].key, k, sizeof(*k)))
				abort(); /* two entries, one key */
	}
}

/* ---- the comparison ---- */

/* The amb_pol_names name polmap.c gives a userspace decision. */
static void expected_name(const struct authz_result *r, char *buf, size_t len)
{
	if (r->policy)
		snprintf(buf, len, "%s/%s", r->policy->namespace,
			 r->policy->name);
	else if (r->peer_auth)
		snprintf(buf, len, "(STRICT) %s/%s", r->peer_auth->namespace,
			 r->peer_auth->name);
	else
		snprintf(buf, len, "(%s)", authz_reason_name(r->reason));
}

static void compare(const struct state *st, const struct workload *wl,
		    uint32_t daddr, uint16_t dport, uint32_t saddr,
		    const struct polmap *pm, const struct polmap_ids *ids)
{
	const struct amb_pol_verdict *v = kernel(pm, daddr, dport, saddr);
	struct authz_conn c = {.identity = NULL,
			       .src_be = saddr,
			       .src_prefix_len = 32,
			       .dst_be = daddr,
			       .dst_port = dport};
	struct authz_result r;
	char want[AMB_POL_NAME_LEN], src[INET_ADDRSTRLEN], dst[INET_ADDRSTRLEN],
	    why[4096];
	const char *got;

	authz_evaluate(st, wl, &c, &r);
	if (!v || !v->deny) {
		if (r.verdict == AUTHZ_ALLOW)
			return;
		expected_name(&r, want, sizeof(want));
		got = v ? "allow entry" : "no entry (allow)";
	} else {
		expected_name(&r, want, sizeof(want));
		got = polmap_id_name(ids, v->policy_id);
		if (r.verdict == AUTHZ_DENY && got && v->reason == r.reason &&
		    strncmp(got, want, AMB_POL_NAME_LEN - 1) == 0)
			return;
	}
	inet_ntop(AF_INET, &saddr, src, sizeof(src));
	inet_ntop(AF_INET, &daddr, dst, sizeof(dst));
	authz_explain(st, wl, &c, why, sizeof(why));
	fprintf(stderr,
		"policy fast path disagrees for %s -> %s:%u (workload %s/%s):\n"
		"  kernel:    %s%s (reason %u)\n"
		"  userspace: %s by %s (reason %s)\n%s\n",
		src, dst, dport, wl->namespace, wl->name,
		v && v->deny ? "deny by " : "", got ? got : "(unnamed id)",
		v ? v->reason : 0, r.verdict == AUTHZ_DENY ? "deny" : "allow",
		want, authz_reason_name(r.reason), why);
	abort();
}

/* Every CIDR and port the snapshot's policies name. */
struct grid {
	struct ip_cidr nets[MAX_SRCS];
	size_t n_nets;
	uint16_t ports[MAX_PORTS];
	size_t n_ports;
};

static void grid_port(struct grid *g, uint16_t p)
{
	for (size_t i = 0; i < g->n_ports; i++)
		if (g->ports[i] == p)
			return;
	if (g->n_ports < MAX_PORTS)
		g->ports[g->n_ports++] = p;
}

static void grid_net(struct grid *g, const struct ip_cidr *c, size_t n)
{
	for (size_t i = 0; i < n && g->n_nets < MAX_SRCS; i++)
		g->nets[g->n_nets++] = c[i];
}

static void grid_fill(struct grid *g, const struct state *st)
{
	for (size_t i = 0; i < st->n_policies; i++) {
		const struct policy *p = &st->policies[i];

		for (size_t j = 0; j < p->n_rules; j++)
			for (size_t k = 0; k < p->rules[j].n_clauses; k++) {
				const struct pol_clause *cl =
				    &p->rules[j].clauses[k];

				for (size_t m = 0; m < cl->n_matches; m++) {
					const struct pol_match *x =
					    &cl->matches[m];

					grid_net(g, x->source_ips,
						 x->n_source_ips);
					grid_net(g, x->not_source_ips,
						 x->n_not_source_ips);
					for (size_t q = 0;
					     q < x->n_destination_ports; q++)
						grid_port(
						    g, x->destination_ports[q]);
					for (size_t q = 0;
					     q < x->n_not_destination_ports;
					     q++)
						grid_port(
						    g, x->not_destination_ports
							   [q]);
				}
			}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rd r = {data, data + size};
	struct polmap pm = {0};
	struct polmap_ids *ids;
	struct grid *g;
	struct state *st;
	uint32_t extra[8];

	if (size > 4096)
		return 0;
	st = build(&r);
	g = calloc(1, sizeof(*g));
	ids = polmap_ids_new(-1);
	if (!g || !ids)
		abort();
	grid_fill(g, st);
	grid_port(g, 7);     /* a port no policy names */
	grid_port(g, 15006); /* and the one the kernel looks at */
	for (size_t i = 0; i < 8; i++)
		extra[i] = addr(&r);

	for (size_t w = 0; w < st->n_workloads; w++) {
		const struct workload *wl = &st->workloads[w];

		for (size_t a = 0; a < wl->n_ips; a++) {
			uint32_t daddr = wl->ips_be[a];
			size_t from = pm.n;

			if (polmap_compile(st, wl, daddr, ids, &pm))
				abort(); /* -ENOMEM, or ids full: not with 6
					    policies */
			check_entries(&pm, from);
			if (getenv("AMBIENTD_FUZZ_DUMP")) { /* to look at what a
							       seed makes */
				struct authz_conn c = {.src_be = extra[0],
						       .src_prefix_len = 32,
						       .dst_be = daddr,
						       .dst_port = 8080};
				char why[4096];

				authz_explain(st, wl, &c, why, sizeof(why));
				fprintf(stderr, "%zu amb_pol entries; %s\n",
					pm.n - from, why);
			}
			for (size_t p = 0; p < g->n_ports; p++) {
				for (size_t n = 0; n < g->n_nets; n++) {
					uint32_t lo = ntohl(g->nets[n].addr_be);
					uint32_t hi =
					    lo | ~ntohl(ip_cidr_mask(
						     g->nets[n].prefix_len));
					uint32_t edges[4] = {lo, hi, lo - 1,
							     hi + 1};

					for (int e = 0; e < 4; e++)
						compare(
						    st, wl, daddr, g->ports[p],
						    htonl(edges[e]), &pm, ids);
				}
				for (size_t i = 0; i < 8; i++)
					compare(st, wl, daddr, g->ports[p],
						extra[i], &pm, ids);
			}
		}
	}
	polmap_free(&pm);
	polmap_ids_free(ids);
	free(g);
	state_unref(st);
	return 0;
}
