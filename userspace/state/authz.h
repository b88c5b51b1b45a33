/* SPDX-License-Identifier: Apache-2.0 */
/*
 * L4 authorization with Istio/ztunnel semantics (DESIGN.md §5), evaluated on
 * the destination side against one state snapshot.
 *
 * Which policies apply to a destination workload: every policy with scope
 * Global, every policy with scope Namespace in the workload's namespace, and
 * every policy the workload names in `authorizationPolicies` ("ns/name",
 * whatever its scope; unknown names are ignored).
 *
 * Decision (dryRun policies never take part in it):
 *   1. peer authentication STRICT and a plaintext caller -> deny
 *   2. any matching DENY policy                          -> deny
 *   3. no ALLOW policy applies                           -> allow
 *   4. any matching ALLOW policy                         -> allow
 *   5. otherwise                                         -> deny
 * dryRun policies are evaluated the same way on their own (a "shadow"
 * decision) so the caller can log what they would have done.
 *
 * Matching: a policy matches if any rule does (no rules: never); a rule if
 * all of its clauses do (no clauses: always); a clause if any of its matches
 * does (no matches: always; a match with every field empty is skipped); a
 * match if every field holds: a positive list holds when empty or when any
 * element matches, a not* list when empty or when no element matches.
 * Principals compare against the caller's SPIFFE ID without "spiffe://";
 * a plaintext caller has no principal (no principal match ever succeeds for
 * it, so every notPrincipals list holds), its namespace is "" and it has no
 * service account.
 */
#ifndef AMBIENTD_AUTHZ_H
#define AMBIENTD_AUTHZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "state.h"

/* The connection being authorized, as the destination tunnel sees it. */
struct authz_conn {
	/* Caller's SPIFFE ID ("spiffe://td/ns/N/sa/S"), NULL for plaintext. */
	const char *identity;
	/*
	 * Caller address. src_prefix_len is 32 for a real connection; the
	 * kernel-table compiler passes shorter prefixes to ask "what is the
	 * decision for every address of this prefix" (a sourceIps CIDR then
	 * holds iff it contains the whole prefix).
	 */
	uint32_t src_be;
	uint8_t src_prefix_len;
	uint32_t dst_be;   /* destination (pod) address */
	uint16_t dst_port; /* destination port, host order (0: none listed) */
};

enum authz_verdict {
	AUTHZ_ALLOW = 0,
	AUTHZ_DENY,
};

/* Why the decision came out as it did; doubles as a log/metric label. */
enum authz_reason {
	AUTHZ_R_NO_POLICIES = 0, /* allow: no policy applies */
	AUTHZ_R_NO_ALLOW_POLICIES, /* allow: policies apply, none is ALLOW */
	AUTHZ_R_ALLOW_MATCHED,	   /* allow: an ALLOW policy matched */
	AUTHZ_R_DENY_MATCHED,	   /* deny: a DENY policy matched */
	AUTHZ_R_NO_ALLOW_MATCHED,  /* deny: ALLOW policies apply, none matched */
	AUTHZ_R_PEER_AUTH_STRICT,  /* deny: STRICT mTLS and a plaintext caller */
	AUTHZ_R__COUNT,
};
const char *authz_reason_name(enum authz_reason r);

/* Mode of peer authentication for a workload after inheritance. */
enum peer_auth_mode authz_peer_auth_mode(const struct state *st,
					 const struct workload *wl,
					 const struct peer_auth **from);

struct authz_result {
	enum authz_verdict verdict;
	enum authz_reason reason;
	/* The policy that decided (ALLOW/DENY matched), else NULL. */
	const struct policy *policy;
	/* The peer authentication that made it STRICT (reason PEER_AUTH). */
	const struct peer_auth *peer_auth;
	/* Shadow decision of the dryRun policies alone; dry_run_applies is
	 * false when no dryRun policy applies (then the rest is unset). */
	bool dry_run_applies;
	enum authz_verdict dry_run_verdict;
	const struct policy *dry_run_policy; /* the dryRun policy that matched */
};

/*
 * Decide for connection `c` towards workload `dst` (which must belong to
 * st). Never fails; pure function of its arguments.
 */
void authz_evaluate(const struct state *st, const struct workload *dst,
		    const struct authz_conn *c, struct authz_result *res);

/* Does this one policy match `c`? (The building block, exposed for tests
 * and for `ambientctl check`.) */
bool authz_policy_matches(const struct policy *pol, const struct authz_conn *c);

/*
 * Calls cb for every policy that applies to wl (see top), each once, in
 * this order: Global, Namespace, then the workload's own list. Stops and
 * returns cb's value when non-zero.
 */
int authz_for_each_policy(const struct state *st, const struct workload *wl,
			  int (*cb)(const struct policy *pol, void *arg),
			  void *arg);

/*
 * Human explanation of a decision for `ambientctl check`: one line per
 * applicable policy (matched or not, dry run or not) and the verdict.
 * Writes at most len bytes (always terminated); returns the length it
 * needed.
 */
size_t authz_explain(const struct state *st, const struct workload *dst,
		     const struct authz_conn *c, char *buf, size_t len);

#endif
