// SPDX-License-Identifier: Apache-2.0
/* L4 authorization (see authz.h for the semantics). */
#include "authz.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *authz_reason_name(enum authz_reason r)
{
	static const char *const names[AUTHZ_R__COUNT] = {
		[AUTHZ_R_NO_POLICIES] = "no policies",
		[AUTHZ_R_NO_ALLOW_POLICIES] = "no ALLOW policies",
		[AUTHZ_R_ALLOW_MATCHED] = "ALLOW policy matched",
		[AUTHZ_R_DENY_MATCHED] = "DENY policy matched",
		[AUTHZ_R_NO_ALLOW_MATCHED] = "no ALLOW policy matched",
		[AUTHZ_R_PEER_AUTH_STRICT] = "STRICT mTLS, plaintext caller",
	};

	return (unsigned)r < AUTHZ_R__COUNT ? names[r] : "?";
}

/* ---- the caller's identity, taken apart once per evaluation ---- */

struct caller {
	const struct authz_conn *c;
	const char *principal; /* identity without "spiffe://", "" if none */
	char ns[254];	       /* "" for plaintext */
	char sa[254];
	bool has_identity;
};

/* Copy the path segment after `tag` ("/ns/", "/sa/") up to the next '/'. */
static bool segment(const char *s, const char *tag, char *out, size_t len)
{
	const char *p = strstr(s, tag), *end;

	if (!p)
		return false;
	p += strlen(tag);
	end = strchr(p, '/');
	if (!end)
		end = p + strlen(p);
	if ((size_t)(end - p) >= len)
		return false;
	memcpy(out, p, end - p);
	out[end - p] = '\0';
	return true;
}

static void caller_init(struct caller *k, const struct authz_conn *c)
{
	static const char scheme[] = "spiffe://";
	const char *path;

	memset(k, 0, sizeof(*k));
	k->c = c;
	k->principal = "";
	if (!c->identity || strncmp(c->identity, scheme, strlen(scheme)))
		return;
	k->principal = c->identity + strlen(scheme);
	k->has_identity = true;
	path = strchr(k->principal, '/');
	if (!path || !segment(path, "/ns/", k->ns, sizeof(k->ns)) ||
	    !segment(path, "/sa/", k->sa, sizeof(k->sa)))
		k->ns[0] = k->sa[0] = '\0';
}

/* ---- one match ---- */

static bool str_matches(const struct str_match *m, const char *v)
{
	size_t lv = strlen(v), lm;

	switch (m->kind) {
	case SM_EXACT:
		return strcmp(m->value, v) == 0;
	case SM_PREFIX:
		return strncmp(v, m->value, strlen(m->value)) == 0;
	case SM_SUFFIX:
		lm = strlen(m->value);
		return lv >= lm && strcmp(v + lv - lm, m->value) == 0;
	case SM_PRESENCE:
		return lv > 0;
	default:
		return false;
	}
}

static bool any_str(const struct str_match *list, size_t n, const char *v)
{
	for (size_t i = 0; i < n; i++)
		if (str_matches(&list[i], v))
			return true;
	return false;
}

/* Principals only ever match a caller that has a SPIFFE identity. */
static bool any_principal(const struct str_match *list, size_t n,
			  const struct caller *k)
{
	return k->has_identity && any_str(list, n, k->principal);
}

static bool any_sa(const struct sa_match *list, size_t n,
		   const struct caller *k)
{
	if (!k->has_identity)
		return false;
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i].namespace, k->ns) == 0 &&
		    strcmp(list[i].service_account, k->sa) == 0)
			return true;
	return false;
}

static bool any_cidr(const struct ip_cidr *list, size_t n, uint32_t addr,
		     uint8_t len)
{
	for (size_t i = 0; i < n; i++)
		if (ip_cidr_covers(&list[i], addr, len))
			return true;
	return false;
}

static bool any_port(const uint16_t *list, size_t n, uint16_t port)
{
	for (size_t i = 0; i < n; i++)
		if (list[i] == port)
			return true;
	return false;
}

/* A positive list holds when empty or any matches; a not* list when empty
 * or none matches. */
#define HOLDS(n, test) (!(n) || (test))
#define HOLDS_NOT(n, test) (!(n) || !(test))

static bool match_empty(const struct pol_match *m)
{
	return !m->n_namespaces && !m->n_not_namespaces &&
	       !m->n_service_accounts && !m->n_not_service_accounts &&
	       !m->n_principals && !m->n_not_principals && !m->n_source_ips &&
	       !m->n_not_source_ips && !m->n_destination_ips &&
	       !m->n_not_destination_ips && !m->n_destination_ports &&
	       !m->n_not_destination_ports;
}

static bool match_holds(const struct pol_match *m, const struct caller *k)
{
	const struct authz_conn *c = k->c;

	return HOLDS(m->n_destination_ips,
		     any_cidr(m->destination_ips, m->n_destination_ips,
			      c->dst_be, 32)) &&
	       HOLDS_NOT(m->n_not_destination_ips,
			 any_cidr(m->not_destination_ips,
				  m->n_not_destination_ips, c->dst_be, 32)) &&
	       HOLDS(m->n_source_ips,
		     any_cidr(m->source_ips, m->n_source_ips, c->src_be,
			      c->src_prefix_len)) &&
	       /* Under a prefix, "no element matches" must hold for every
		* address: no not-CIDR may even overlap it. The compiler only
		* passes prefixes that are never split by a listed CIDR, so
		* overlap and cover coincide. */
	       HOLDS_NOT(m->n_not_source_ips,
			 any_cidr(m->not_source_ips, m->n_not_source_ips,
				  c->src_be, c->src_prefix_len)) &&
	       HOLDS(m->n_destination_ports,
		     any_port(m->destination_ports, m->n_destination_ports,
			      c->dst_port)) &&
	       HOLDS_NOT(m->n_not_destination_ports,
			 any_port(m->not_destination_ports,
				  m->n_not_destination_ports, c->dst_port)) &&
	       HOLDS(m->n_service_accounts,
		     any_sa(m->service_accounts, m->n_service_accounts, k)) &&
	       HOLDS_NOT(m->n_not_service_accounts,
			 any_sa(m->not_service_accounts,
				m->n_not_service_accounts, k)) &&
	       HOLDS(m->n_principals,
		     any_principal(m->principals, m->n_principals, k)) &&
	       HOLDS_NOT(m->n_not_principals,
			 any_principal(m->not_principals, m->n_not_principals,
				       k)) &&
	       HOLDS(m->n_namespaces,
		     any_str(m->namespaces, m->n_namespaces, k->ns)) &&
	       HOLDS_NOT(m->n_not_namespaces,
			 any_str(m->not_namespaces, m->n_not_namespaces,
				 k->ns));
}

static bool clause_holds(const struct pol_clause *cl, const struct caller *k)
{
	if (!cl->n_matches)
		return true;
	for (size_t i = 0; i < cl->n_matches; i++)
		if (!match_empty(&cl->matches[i]) &&
		    match_holds(&cl->matches[i], k))
			return true;
	return false;
}

static bool policy_matches(const struct policy *pol, const struct caller *k)
{
	for (size_t r = 0; r < pol->n_rules; r++) {
		const struct pol_rule *rule = &pol->rules[r];
		bool all = true;

		for (size_t i = 0; i < rule->n_clauses && all; i++)
			all = clause_holds(&rule->clauses[i], k);
		if (all)
			return true;
	}
	return false; /* also: no rules at all */
}

bool authz_policy_matches(const struct policy *pol, const struct authz_conn *c)
{
	struct caller k;

	caller_init(&k, c);
	return policy_matches(pol, &k);
}

/* ---- which policies apply ---- */

int authz_for_each_policy(const struct state *st, const struct workload *wl,
			  int (*cb)(const struct policy *pol, void *arg),
			  void *arg)
{
	int ret;

	for (size_t i = 0; i < st->n_policies; i++) {
		const struct policy *p = &st->policies[i];

		if (p->scope == POL_SCOPE_GLOBAL ||
		    (p->scope == POL_SCOPE_NAMESPACE &&
		     strcmp(p->namespace, wl->namespace) == 0))
			if ((ret = cb(p, arg)))
				return ret;
	}
	for (size_t i = 0; i < wl->n_authorization_policies; i++) {
		const char *key = wl->authorization_policies[i];
		const char *slash = strchr(key, '/');
		const struct policy *p;
		char ns[254];
		bool dup = false;

		if (!slash || (size_t)(slash - key) >= sizeof(ns))
			continue;
		memcpy(ns, key, slash - key);
		ns[slash - key] = '\0';
		p = state_policy_by_key(st, ns, slash + 1);
		if (!p)
			continue;
		/* Already visited as Global/Namespace, or listed twice. */
		if (p->scope == POL_SCOPE_GLOBAL ||
		    (p->scope == POL_SCOPE_NAMESPACE &&
		     strcmp(p->namespace, wl->namespace) == 0))
			continue;
		for (size_t j = 0; j < i && !dup; j++)
			dup = strcmp(wl->authorization_policies[j], key) == 0;
		if (!dup && (ret = cb(p, arg)))
			return ret;
	}
	return 0;
}

/* ---- peer authentication ---- */

static bool names_workload(const struct peer_auth *pa, const struct workload *wl)
{
	for (size_t i = 0; i < pa->n_workloads; i++)
		if (wl->name && strcmp(pa->workloads[i], wl->name) == 0)
			return true;
	return false;
}

enum peer_auth_mode authz_peer_auth_mode(const struct state *st,
					 const struct workload *wl,
					 const struct peer_auth **from)
{
	/* 0: workload, 1: namespace, 2: mesh (root namespace) */
	const struct peer_auth *best[3] = { 0 };

	for (size_t i = 0; i < st->n_peer_auths; i++) {
		const struct peer_auth *pa = &st->peer_auths[i];
		int level;

		if (pa->mode == PA_MODE_UNSET)
			continue;
		if (pa->n_workloads)
			level = strcmp(pa->namespace, wl->namespace) == 0 &&
					names_workload(pa, wl) ?
				0 :
				-1;
		else if (strcmp(pa->namespace, wl->namespace) == 0)
			level = 1;
		else if (strcmp(pa->namespace, PA_ROOT_NAMESPACE) == 0)
			level = 2;
		else
			level = -1;
		if (level >= 0 && !best[level])
			best[level] = pa;
	}
	for (int l = 0; l < 3; l++) {
		if (best[l]) {
			if (from)
				*from = best[l];
			return best[l]->mode;
		}
	}
	if (from)
		*from = NULL;
	return PA_MODE_PERMISSIVE;
}

/* ---- the decision ---- */

struct eval {
	const struct caller *k;
	bool dry; /* evaluate dryRun policies instead of the enforced ones */
	bool any, any_allow;
	const struct policy *deny, *allow;
};

static int eval_one(const struct policy *p, void *arg)
{
	struct eval *e = arg;

	if (p->dry_run != e->dry)
		return 0;
	e->any = true;
	if (p->action == POL_ACTION_DENY) {
		if (!e->deny && policy_matches(p, e->k))
			e->deny = p;
	} else {
		e->any_allow = true;
		if (!e->allow && policy_matches(p, e->k))
			e->allow = p;
	}
	return 0;
}

static void decide(const struct eval *e, enum authz_verdict *v,
		   enum authz_reason *r, const struct policy **pol)
{
	*pol = NULL;
	if (e->deny) {
		*v = AUTHZ_DENY;
		*r = AUTHZ_R_DENY_MATCHED;
		*pol = e->deny;
	} else if (!e->any) {
		*v = AUTHZ_ALLOW;
		*r = AUTHZ_R_NO_POLICIES;
	} else if (!e->any_allow) {
		*v = AUTHZ_ALLOW;
		*r = AUTHZ_R_NO_ALLOW_POLICIES;
	} else if (e->allow) {
		*v = AUTHZ_ALLOW;
		*r = AUTHZ_R_ALLOW_MATCHED;
		*pol = e->allow;
	} else {
		*v = AUTHZ_DENY;
		*r = AUTHZ_R_NO_ALLOW_MATCHED;
	}
}

void authz_evaluate(const struct state *st, const struct workload *dst,
		    const struct authz_conn *c, struct authz_result *res)
{
	struct caller k;
	struct eval e = { .k = &k }, shadow = { .k = &k, .dry = true };
	enum authz_reason unused;

	memset(res, 0, sizeof(*res));
	caller_init(&k, c);
	authz_for_each_policy(st, dst, eval_one, &e);
	authz_for_each_policy(st, dst, eval_one, &shadow);
	if (shadow.any) {
		res->dry_run_applies = true;
		decide(&shadow, &res->dry_run_verdict, &unused,
		       &res->dry_run_policy);
	}
	if (!k.has_identity &&
	    authz_peer_auth_mode(st, dst, &res->peer_auth) == PA_MODE_STRICT) {
		res->verdict = AUTHZ_DENY;
		res->reason = AUTHZ_R_PEER_AUTH_STRICT;
		return;
	}
	res->peer_auth = NULL;
	decide(&e, &res->verdict, &res->reason, &res->policy);
}

/* ---- explanation ---- */

struct out {
	char *buf;
	size_t len, used;
};

static void put(struct out *o, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void put(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(o->used < o->len ? o->buf + o->used : NULL,
		      o->used < o->len ? o->len - o->used : 0, fmt, ap);
	va_end(ap);
	if (n > 0)
		o->used += (size_t)n;
}

struct explain {
	struct out *o;
	const struct caller *k;
	int n;
};

static int explain_one(const struct policy *p, void *arg)
{
	struct explain *x = arg;
	char key[512];

	x->n++;
	snprintf(key, sizeof(key), "%s/%s", p->namespace, p->name);
	put(x->o, "  %-32s %-16s %-5s %-8s %s\n", key, pol_scope_name(p->scope),
	    pol_action_name(p->action), p->dry_run ? "dryRun" : "enforced",
	    policy_matches(p, x->k) ? "matches" : "does not match");
	return 0;
}

static void put_policy(struct out *o, const char *before,
		       const struct policy *p, const char *after)
{
	if (p)
		put(o, "%s%s/%s%s", before, p->namespace, p->name, after);
}

size_t authz_explain(const struct state *st, const struct workload *dst,
		     const struct authz_conn *c, char *buf, size_t len)
{
	struct out o = { buf, len, 0 };
	struct authz_result res;
	struct caller k;
	struct explain x = { &o, &k, 0 };
	const struct peer_auth *pa;
	enum peer_auth_mode mode;

	if (len)
		buf[0] = '\0';
	caller_init(&k, c);
	authz_evaluate(st, dst, c, &res);
	mode = authz_peer_auth_mode(st, dst, &pa);
	put(&o, "caller:      %s\n",
	    c->identity ? c->identity : "plaintext (no identity)");
	put(&o, "destination: %s/%s port %u\n", dst->namespace,
	    dst->name ? dst->name : dst->uid ? dst->uid : "?", c->dst_port);
	put(&o, "peer authentication: %s", peer_auth_mode_name(mode));
	if (pa)
		put(&o, " (from %s/%s)\n", pa->namespace, pa->name);
	else
		put(&o, " (default)\n");
	put(&o, "policies:\n");
	authz_for_each_policy(st, dst, explain_one, &x);
	if (!x.n)
		put(&o, "  (none apply)\n");
	put(&o, "decision:    %s (%s",
	    res.verdict == AUTHZ_ALLOW ? "ALLOW" : "DENY",
	    authz_reason_name(res.reason));
	put_policy(&o, ": ", res.policy, "");
	put(&o, ")\n");
	if (res.dry_run_applies) {
		put(&o, "dry run:     would %s",
		    res.dry_run_verdict == AUTHZ_ALLOW ? "ALLOW" : "DENY");
		put_policy(&o, " (", res.dry_run_policy, ")");
		put(&o, "\n");
	}
	return o.used;
}
