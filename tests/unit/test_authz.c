// SPDX-License-Identifier: Apache-2.0
/*
 * L4 authorization (authz.h) as a truth table. Every expectation below is
 * derived from Istio's documented AuthorizationPolicy semantics and from
 * ztunnel's behaviour (src/rbac.rs, src/state/mod.rs assert_rbac), not from
 * our implementation:
 *
 *  - "If there are any DENY policies that match the request, deny. If there
 *    are no ALLOW policies for the workload, allow. If any of the ALLOW
 *    policies match, allow. Deny the request." (istio.io, reference/config/
 *    security/authorization-policy). No policies at all: allow.
 *  - Policy = any rule; rule = all clauses; clause = any match; match = all
 *    fields; a positive list holds when any element matches, a not* list
 *    when none does. An ALLOW policy without rules allows nothing; Istio's
 *    rule `{}` arrives as a rule with no clauses and matches everything; a
 *    clause with no matches holds; a match with no fields is skipped, so a
 *    clause made only of empty matches never holds (ztunnel's
 *    rbac_empty_policy test).
 *  - principals compare without "spiffe://"; a plaintext caller has no
 *    principal, no namespace and no service account, so every positive
 *    identity match fails for it and every not* identity list holds.
 *    serviceAccounts compare namespace and account, not the trust domain.
 *  - Scopes: Global applies everywhere, Namespace in its own namespace,
 *    any policy also through the workload's authorizationPolicies list;
 *    unknown names there are ignored.
 *  - dryRun policies are never enforced (istio.io tasks/security/
 *    authorization/authz-dry-run); they give a shadow decision of their own.
 *  - PeerAuthentication: workload-specific > namespace-wide > mesh-wide
 *    (root namespace istio-system) > PERMISSIVE; UNSET inherits; STRICT
 *    refuses plaintext before any authorization policy; DISABLE admits it.
 *
 * Only 198.18.0.0/15 addresses are used.
 */
#include <arpa/inet.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authz.h"
#include "config.h"
#include "state.h"
#include "tap.h"
#include "util.h"

/* ---- the mesh every case runs in ---- */

/*
 * app/web has two IPs and lists policies by name (one twice, one unknown,
 * one malformed); app/db lists its own; other/api lists nothing; the
 * istio-system workload is also named "web" (peer authentication selects
 * workloads by name within the PeerAuthentication's namespace).
 */
#define WORKLOADS                                                              \
	"workloads:\n"                                                         \
	"- uid: c//v1/Pod/app/web\n"                                           \
	"  name: web\n"                                                        \
	"  namespace: app\n"                                                   \
	"  serviceAccount: web\n"                                              \
	"  workloadIps: [198.18.10.1, 198.18.10.3]\n"                          \
	"  protocol: HBONE\n"                                                  \
	"  node: node1\n"                                                      \
	"  authorizationPolicies: [app/sel, other/cross, app/missing, noslash, app/sel, app/n-app]\n" \
	"- uid: c//v1/Pod/app/db\n"                                            \
	"  name: db\n"                                                         \
	"  namespace: app\n"                                                   \
	"  workloadIps: [198.18.10.2]\n"                                       \
	"  protocol: HBONE\n"                                                  \
	"  node: node1\n"                                                      \
	"  authorizationPolicies: [app/db-only]\n"                             \
	"- uid: c//v1/Pod/other/api\n"                                         \
	"  name: api\n"                                                        \
	"  namespace: other\n"                                                 \
	"  workloadIps: [198.18.20.1]\n"                                       \
	"  protocol: HBONE\n"                                                  \
	"  node: node2\n"                                                      \
	"- uid: c//v1/Pod/istio-system/web\n"                                  \
	"  name: web\n"                                                        \
	"  namespace: istio-system\n"                                          \
	"  workloadIps: [198.18.30.1]\n"                                       \
	"  node: node2\n"

#define WEB "198.18.10.1"
#define WEB2 "198.18.10.3"
#define DB "198.18.10.2"
#define API "198.18.20.1"
#define SYSWEB "198.18.30.1"

/* Callers. */
#define SLEEP "spiffe://cluster.local/ns/client/sa/sleep"
#define ADMIN "spiffe://cluster.local/ns/admin/sa/ops"
#define OTHERTD "spiffe://example.org/ns/client/sa/sleep"
#define KUBE "spiffe://cluster.local/ns/kube-system/sa/default"
#define CART "spiffe://cluster.local/ns/cart/sa/sleep"
#define PLAIN NULL

/* ---- YAML shorthands ---- */

#define POLICIES "policies:\n"
/* One policy; `extra` is ", rules: ..." and/or ", dryRun: ...". */
#define POL(name, ns, scope, action, extra)                                    \
	"- {name: " name ", namespace: " ns ", scope: " scope                  \
	", action: " action extra "}\n"
#define NSPOL(name, action, rules) POL(name, "app", "Namespace", action, ", rules: " rules)
/* A single Namespace-scoped policy app/allow or app/deny. */
#define Y_ALLOW(rules) POLICIES NSPOL("allow", "Allow", rules)
#define Y_DENY(rules) POLICIES NSPOL("deny", "Deny", rules)
/* One rule of one clause of one match. */
#define M1(m) "[[[{" m "}]]]"
#define PEERS "peerAuthentications:\n"
#define PA(name, ns, extra) "- {name: " name ", namespace: " ns extra "}\n"

/* ---- the table ---- */

enum shadow {
	SH_NONE = 0, /* no dryRun policy applies */
	SH_ALLOW,
	SH_DENY,
};

struct acase {
	const char *name;
	const char *yaml; /* appended to WORKLOADS */
	const char *id; /* caller identity, NULL = plaintext */
	const char *src; /* default 198.18.1.10 */
	const char *dst; /* default WEB */
	uint16_t port; /* default 8080 */
	enum authz_verdict verdict;
	enum authz_reason reason;
	const char *policy; /* deciding policy "ns/name", or NULL */
	enum shadow shadow;
	const char *shadow_policy; /* matching dryRun policy "ns/name" */
	const char *peer_auth; /* "ns/name" behind PEER_AUTH_STRICT */
};

#define ALLOWS(r, p) .verdict = AUTHZ_ALLOW, .reason = AUTHZ_R_##r, .policy = p
#define DENIES(r, p) .verdict = AUTHZ_DENY, .reason = AUTHZ_R_##r, .policy = p
#define SHADOW(v, p) .shadow = SH_##v, .shadow_policy = p
#define STRICT_BY(pa) DENIES(PEER_AUTH_STRICT, NULL), .peer_auth = pa

/* The full match used by the "every field at once" cases. */
#define EVERY_FIELD                                                            \
	M1("namespaces: [{Exact: client}], notNamespaces: [{Prefix: kube-}], " \
	   "serviceAccounts: [{namespace: client, serviceAccount: sleep}], "   \
	   "notServiceAccounts: [{namespace: client, serviceAccount: evil}], " \
	   "principals: [{Suffix: /sa/sleep}], "                               \
	   "notPrincipals: [{Exact: cluster.local/ns/client/sa/evil}], "       \
	   "sourceIps: [198.18.1.0/24], notSourceIps: [198.18.1.99], "         \
	   "destinationIps: [198.18.10.0/24], notDestinationIps: [198.18.10.3], " \
	   "destinationPorts: [8080], notDestinationPorts: [9090]")

static const struct acase cases[] = {
	/* -- evaluation order -- */
	{ "no policies at all: allow", "", SLEEP, ALLOWS(NO_POLICIES, NULL) },
	{ "no policies at all, plaintext: allow", "", PLAIN,
	  ALLOWS(NO_POLICIES, NULL) },
	{ "policies only for another workload: allow",
	  POLICIES POL("db-only", "app", "WorkloadSelector", "Deny", ", rules: [[]]"),
	  SLEEP, ALLOWS(NO_POLICIES, NULL) },
	{ "DENY not matching, no ALLOW policy: allow",
	  Y_DENY(M1("namespaces: [{Exact: admin}]")), SLEEP,
	  ALLOWS(NO_ALLOW_POLICIES, NULL) },
	{ "DENY matching: deny", Y_DENY(M1("namespaces: [{Exact: client}]")),
	  SLEEP, DENIES(DENY_MATCHED, "app/deny") },
	{ "ALLOW matching: allow", Y_ALLOW(M1("namespaces: [{Exact: client}]")),
	  SLEEP, ALLOWS(ALLOW_MATCHED, "app/allow") },
	{ "ALLOW not matching: deny",
	  Y_ALLOW(M1("namespaces: [{Exact: admin}]")), SLEEP,
	  DENIES(NO_ALLOW_MATCHED, NULL) },
	{ "DENY and ALLOW both match: DENY is evaluated first",
	  POLICIES NSPOL("allow", "Allow", M1("namespaces: [{Exact: client}]"))
		  NSPOL("deny", "Deny", M1("destinationPorts: [8080]")),
	  SLEEP, DENIES(DENY_MATCHED, "app/deny") },
	{ "DENY not matching, ALLOW matching: allow",
	  POLICIES NSPOL("deny", "Deny", M1("destinationPorts: [9090]"))
		  NSPOL("allow", "Allow", M1("namespaces: [{Exact: client}]")),
	  SLEEP, ALLOWS(ALLOW_MATCHED, "app/allow") },
	{ "DENY and ALLOW both not matching: deny",
	  POLICIES NSPOL("deny", "Deny", M1("destinationPorts: [9090]"))
		  NSPOL("allow", "Allow", M1("namespaces: [{Exact: admin}]")),
	  SLEEP, DENIES(NO_ALLOW_MATCHED, NULL) },
	{ "second of two ALLOW policies matches: allow",
	  POLICIES NSPOL("allow", "Allow", M1("namespaces: [{Exact: admin}]"))
		  NSPOL("allow2", "Allow", M1("namespaces: [{Exact: client}]")),
	  SLEEP, ALLOWS(ALLOW_MATCHED, "app/allow2") },
	{ "neither of two ALLOW policies matches: deny",
	  POLICIES NSPOL("allow", "Allow", M1("namespaces: [{Exact: admin}]"))
		  NSPOL("allow2", "Allow", M1("destinationPorts: [9090]")),
	  SLEEP, DENIES(NO_ALLOW_MATCHED, NULL) },
	{ "second of two DENY policies matches: deny",
	  POLICIES NSPOL("deny", "Deny", M1("namespaces: [{Exact: admin}]"))
		  NSPOL("deny2", "Deny", M1("destinationPorts: [8080]")),
	  SLEEP, DENIES(DENY_MATCHED, "app/deny2") },

	/* -- empty and edge shapes -- */
	{ "ALLOW with rules: [] is allow-nothing", Y_ALLOW("[]"), SLEEP,
	  DENIES(NO_ALLOW_MATCHED, NULL) },
	{ "ALLOW without a rules key is allow-nothing",
	  POLICIES POL("allow", "app", "Namespace", "Allow", ""), SLEEP,
	  DENIES(NO_ALLOW_MATCHED, NULL) },
	{ "allow-nothing also refuses plaintext", Y_ALLOW("[]"), PLAIN,
	  DENIES(NO_ALLOW_MATCHED, NULL) },
	{ "DENY with rules: [] never matches: allow", Y_DENY("[]"), SLEEP,
	  ALLOWS(NO_ALLOW_POLICIES, NULL) },
	{ "ALLOW rule {} (no clauses) allows everyone", Y_ALLOW("[[]]"), SLEEP,
	  ALLOWS(ALLOW_MATCHED, "app/allow") },
	{ "ALLOW rule {} allows plaintext too", Y_ALLOW("[[]]"), PLAIN,
	  ALLOWS(ALLOW_MATCHED, "app/allow") },
	{ "DENY rule {} denies everyone, plaintext too", Y_DENY("[[]]"), PLAIN,
	  DENIES(DENY_MATCHED, "app/deny") },
	{ "rule with one clause of no matches matches", Y_ALLOW("[[[]]]"),
	  SLEEP, ALLOWS(ALLOW_MATCHED, "app/allow") },
	{ "clause made only of an empty match never matches",
	  Y_ALLOW("[[[{}]]]"), SLEEP, DENIES(NO_ALLOW_MATCHED, NULL) },
	{ "empty match skipped, its sibling matches",
	  Y_ALLOW("[[[{}, {destinationPorts: [8080]}]]]"), SLEEP,
	  ALLOWS(ALLOW_MATCHED, "app/allow") },
	{ "empty match skipped, its sibling does not match",
	  Y_ALLOW("[[[{}, {destinationPorts: [8080]}]]]"), SLEEP, .port = 9090,
	  DENIES(NO_ALLOW_MATCHED, NULL) },
	{ "DENY made only of an empty match never denies", Y_DENY("[[[{}]]]"),
	  PLAIN, ALLOWS(NO_ALLOW_POLICIES, NULL) },
	{ "deny-all beats allow-all",
	  POLICIES NSPOL("allow", "Allow", "[[]]") NSPOL("deny", "Deny", "[[]]"),
	  SLEEP, DENIES(DENY_MATCHED, "app/deny") },
	{ "allow-nothing next to allow-all: allow",
	  POLICIES NSPOL("allow", "Allow", "[]") NSPOL("allow2", "Allow", "[[]]"),
	  SLEEP, ALLOWS(ALLOW_MATCHED, "app/allow2") },
	{ "non-matching rule then an empty rule: any rule matches",
	  Y_ALLOW("[[[{namespaces: [{Exact: admin}]}]], []]"), SLEEP,
	  ALLOWS(ALLOW_MATCHED, "app/allow") },

	/* -- namespaces / notNamespaces -- */
	{ "namespaces Exact: caller's namespace",
	  Y_ALLOW(M1("namespaces: [{Exact: client}]")), SLEEP,
	  ALLOWS(ALLOW_MATCHED, "app/allow") },
	{ "namespaces Exact: other namespace",
	  Y_ALLOW(M1("namespaces: [{Exact: client}]")), ADMIN,
	  DENIES(NO_ALLOW_MATCHED, NULL) },
	{ "namespaces Exact: plaintext has no namespace",
	  Y_ALLOW(M1("namespaces: [{Exact: client}]")), PLAIN,
	  DENIES(NO_ALLOW_MATCHED, NULL) },
	{ "namespaces Exact is not a prefix match",
	  Y_ALLOW(M1("namespaces: [{Exact: clien}]")), SLEEP,
	  DENIES(NO_ALLOW_MATCHED, NULL) },
	{ "namespaces Prefix", Y_ALLOW(M1("namespaces: [{Prefix: cli}]")),
	  SLEEP, ALLOWS(ALLOW_MATCHED, "app/allow") },
	{ "namespaces Suffix", Y_ALLOW(M1("namespaces: [{Suffix: ent}]")),
	  SLEEP, ALLOWS(ALLOW_MATCHED, "app/allow") },
	{ "namespaces Suffix not matching",
	  Y_ALLOW(M1("namespaces: [{Suffix: ent}]")), ADMIN,
	  DENIES(NO_ALLOW_MATCHED, NULL) },
	{ "namespaces Presence: any mTLS caller",
	  Y_ALLOW(M1("namespaces: [{Presence: []}]")), SLEEP,
	  ALLOWS(ALLOW_MATCHED, "app/allow") },
	{ "namespaces Presence: not plaintext",
	  Y_ALLOW(M1("namespaces: [{Presence: []}]")), PLAIN,
	  DENIES(NO_ALLOW_MATCHED, NULL) },
	{ "namespaces list is any-of",
	  Y_ALLOW(M1("namespaces: [{Exact: admin}, {Exact: client}]")), SLEEP,
	  ALLOWS(ALLOW_MATCHED, "app/allow") },
	{ "namespaces from an identity of another trust domain",
	  Y_ALLOW(M1("namespaces: [{Exact: client}]")), OTHERTD,
	  ALLOWS(ALLOW_MATCHED, "app/allow") },
	{ "notNamespaces Exact: caller's namespace excluded",
	  Y_ALLOW(M1("notNamespaces: [{Exact: client}]")), SLEEP,
	  DENIES(NO_ALLOW_MATCHED, NULL) },
	{ "notNamespaces Exact: other namespace passes",
	  Y_ALLOW(M1("notNamespaces: [{Exact: client}]")), ADMIN,
	  ALLOWS(ALLOW_MATCHED, "app/allow") },
	{ "notNamespaces Exact: plaintext passes",
	  Y_ALLOW(M1("notNamespaces: [{Exact: client}]")), PLAIN,
	  ALLOWS(ALLOW_MATCHED, "app/allow") },
	{ "notNamespaces Presence: plaintext passes",
	  Y_ALLOW(M1("notNamespaces: [{Presence: []}]")), PLAIN,
	  ALLOWS(ALLOW_MATCHED, "app/allow") },
	{ "notNamespaces Presence: mTLS caller excluded",
	  Y_ALLOW(M1("notNamespaces: [{Presence: []}]")), SLEEP,
	  DENIES(NO_ALLOW_MATCHED, NULL) },
	{ "notNamespaces list is none-of",
	  Y_ALLOW(M1("notNamespaces: [{Exact: admin}, {Exact: client}]")),
	  ADMIN, DENIES(NO_ALLOW_MATCHED, NULL) },
	{ "DENY notNamespaces Prefix kube-: kube-system caller not denied",
	  Y_DENY(M1("notNamespaces: [{Prefix: kube-}]")), KUBE,
	  ALLOWS(NO_ALLOW_POLICIES, NULL) },
	{ "DENY notNamespaces Prefix kube-: others denied",
	  Y_DENY(M1("notNamespaces: [{Prefix: kube-}]")), SLEEP,
	  DENIES(DENY_MATCHED, "app/deny") },
	{ "namespaces + notNamespaces: excluded by the not-list",
	  Y_ALLOW(M1("namespaces: [{Prefix: c}], notNamespaces: [{Exact: client}]")),
	  SLEEP, DENIES(NO_ALLOW_MATCHED, NULL) },
	{ "namespaces + notNamespaces: both hold",
	  Y_ALLOW(M1("namespaces: [{Prefix: c}], notNamespaces: [{Exact: client}]")),
	  CART, ALLOWS(ALLOW_MATCHED, "app/allow") },

	/* -- principals / notPrincipals -- */
	{ "principals Exact without spiffe://",
	  Y_ALLOW(M1("principals: [{Exact: cluster.local/ns/client/sa/sleep}]")),
	  SLEEP, ALLOWS(ALLOW_MATCHED, "app/allow") },
	{ "principals Exact with spiffe:// never matches",
	  Y_ALLOW(M1("principals: [{Exact: \"spiffe://cluster.local/ns/client/sa/sleep\"}]")),
	  SLEEP, DENIES(NO_ALLOW_MATCHED, NULL) },
	{ "principals Exact: trust domain is part of the principal",
	  Y_ALLOW(M1("principals: [{Exact: cluster.local/ns/client/sa/sleep}]")),
	  OTHERTD, DENIES(NO_ALLOW_MATCHED, NULL) },
	{ "principals Exact: plaintext has no principal",
	  Y_ALLOW(M1("principals: [{Exact: cluster.local/ns/client/sa/sleep}]")),
	  PLAIN, DENIES(NO_ALLOW_MATCHED, NULL) },
	{ "principals Prefix",
	  Y_ALLOW(M1("principals: [{Prefix: cluster.local/ns/client/}]")),
	  SLEEP, ALLOWS(ALLOW_MATCHED, "app/allow") },
	{ "principals Prefix spiffe:// never matches",
	  Y_ALLOW(M1("principals: [{Prefix: \"spiffe://\"}]")), SLEEP,
	  DENIES(NO_ALLOW_MATCHED, NULL) },
	{ "principals Suffix across trust domains",
	  Y_ALLOW(M1("principals: [{Suffix: /sa/sleep}]")), OTHERTD,
	  ALLOWS(ALLOW_MATCHED, "app/allow") },
	{ "principals Suffix not matching",
	  Y_ALLOW(M1("principals: [{Suffix: /sa/sleep}]")), ADMIN,
	  DENIES(NO_ALLOW_MATCHED, NULL) },
	{ "principals Presence: mTLS caller",
	  Y_ALLOW(M1("principals: [{Presence: []}]")), SLEEP,
	  ALLOWS(ALLOW_MATCHED, "app/allow") },
	{ "principals Presence: not plaintext",
	  Y_ALLOW(M1("principals: [{Presence: []}]")), PLAIN,
	  DENIES(NO_ALLOW_MATCHED, NULL) },
	{ "principals empty Prefix: still no principal for plaintext",
	  Y_ALLOW(M1("principals: [{Prefix: \"\"}]")), PLAIN,
	  DENIES(NO_ALLOW_MATCHED, NULL) },
	{ "principals empty Prefix: any mTLS caller",
	  Y_ALLOW(M1("principals: [{Prefix: \"\"}]")), SLEEP,
	  ALLOWS(ALLOW_MATCHED, "app/allow") },
	{ "notPrincipals Exact: caller excluded",
	  Y_ALLOW(M1("notPrincipals: [{Exact: cluster.local/ns/client/sa/sleep}]")),
	  SLEEP, DENIES(NO_ALLOW_MATCHED, NULL) },
	{ "notPrincipals Exact: other caller passes",
	  Y_ALLOW(M1("notPrincipals: [{Exact: cluster.local/ns/client/sa/sleep}]")),
	  ADMIN, ALLOWS(ALLOW_MATCHED, "app/allow") },
	{ "notPrincipals Exact: plaintext passes",
	  Y_ALLOW(M1("notPrincipals: [{Exact: cluster.local/ns/client/sa/sleep}]")),
	  PLAIN, ALLOWS(ALLOW_MATCHED, "app/allow") },
	{ "notPrincipals Presence: plaintext passes",
	  Y_ALLOW(M1("notPrincipals: [{Presence: []}]")), PLAIN,
	  ALLOWS(ALLOW_MATCHED, "app/allow") },
	{ "notPrincipals Presence: mTLS caller excluded",
	  Y_ALLOW(M1("notPrincipals: [{Presence: []}]")), SLEEP,
	  DENIES(NO_ALLOW_MATCHED, NULL) },
	{ "DENY notPrincipals Presence denies plaintext",
	  Y_DENY(M1("notPrincipals: [{Presence: []}]")), PLAIN,
	  DENIES(DENY_MATCHED, "app/deny") },
	{ "DENY notPrincipals Presence lets mTLS through",
	  Y_DENY(M1("notPrincipals: [{Presence: []}]")), SLEEP,
	  ALLOWS(NO_ALLOW_POLICIES, NULL) },

	/* -- serviceAccounts / notServiceAccounts -- */
	{ "serviceAccounts: namespace and account match",
	  Y_ALLOW(M1("serviceAccounts: [{namespace: client, serviceAccount: sleep}]")),
	  SLEEP, ALLOWS(ALLOW_MATCHED, "app/allow") },
	{ "serviceAccounts ignore the trust domain",
	  Y_ALLOW(M1("serviceAccounts: [{namespace: client, serviceAccount: sleep}]")),
	  OTHERTD, ALLOWS(ALLOW_MATCHED, "app/allow") },
	{ "serviceAccounts: other caller",
	  Y_ALLOW(M1("serviceAccounts: [{namespace: client, serviceAccount: sleep}]")),
	  ADMIN, DENIES(NO_ALLOW_MATCHED, NULL) },
	{ "serviceAccounts: same namespace, other account",
	  Y_ALLOW(M1("serviceAccounts: [{namespace: client, serviceAccount: other}]")),
	  SLEEP, DENIES(NO_ALLOW_MATCHED, NULL) },
	{ "serviceAccounts: same account, other namespace",
	  Y_ALLOW(M1("serviceAccounts: [{namespace: cart, serviceAccount: sleep}]")),
	  SLEEP, DENIES(NO_ALLOW_MATCHED, NULL) },
	{ "serviceAccounts: plaintext has none",
	  Y_ALLOW(M1("serviceAccounts: [{namespace: client, serviceAccount: sleep}]")),
	  PLAIN, DENIES(NO_ALLOW_MATCHED, NULL) },
	{ "serviceAccounts list is any-of",
	  Y_ALLOW(M1("serviceAccounts: [{namespace: admin, serviceAccount: ops}, "
		     "{namespace: client, serviceAccount: sleep}]")),
	  ADMIN, ALLOWS(ALLOW_MATCHED, "app/allow") },
	{ "notServiceAccounts: caller excluded",
	  Y_ALLOW(M1("notServiceAccounts: [{namespace: client, serviceAccount: sleep}]")),
	  SLEEP, DENIES(NO_ALLOW_MATCHED, NULL) },
	{ "notServiceAccounts: other caller passes",
	  Y_ALLOW(M1("notServiceAccounts: [{namespace: client, serviceAccount: sleep}]")),
	  ADMIN, ALLOWS(ALLOW_MATCHED, "app/allow") },
	{ "notServiceAccounts: plaintext passes",
	  Y_ALLOW(M1("notServiceAccounts: [{namespace: client, serviceAccount: sleep}]")),
	  PLAIN, ALLOWS(ALLOW_MATCHED, "app/allow") },
	{ "notServiceAccounts: same account in another namespace passes",
	  Y_ALLOW(M1("notServiceAccounts: [{namespace: client, serviceAccount: sleep}]")),
	  CART, ALLOWS(ALLOW_MATCHED, "app/allow") },

	/* -- sourceIps / notSourceIps -- */
	{ "sourceIps CIDR contains the caller",
	  Y_ALLOW(M1("sourceIps: [198.18.1.0/24]")), SLEEP,
	  ALLOWS(ALLOW_MATCHED, "app/allow") },
	{ "sourceIps CIDR does not contain the caller",
	  Y_ALLOW(M1("sourceIps: [198.18.2.0/24]")), SLEEP,
	  DENIES(NO_ALLOW_MATCHED, NULL) },
	{ "sourceIps bare IP is a /32 (equal)",
	  Y_ALLOW(M1("sourceIps: [198.18.1.10]")), SLEEP,
	  ALLOWS(ALLOW_MATCHED, "app/allow") },
	{ "sourceIps bare IP is a /32 (neighbour)",
	  Y_ALLOW(M1("sourceIps: [198.18.1.10]")), SLEEP, .src = "198.18.1.11",
	  DENIES(NO_ALLOW_MATCHED, NULL) },
	{ "sourceIps 0.0.0.0/0 holds for plaintext",
	  Y_ALLOW(M1("sourceIps: [0.0.0.0/0]")), PLAIN,
	  ALLOWS(ALLOW_MATCHED, "app/allow") },
	{ "sourceIps need no identity",
	  Y_ALLOW(M1("sourceIps: [198.18.1.0/24]")), PLAIN,
	  ALLOWS(ALLOW_MATCHED, "app/allow") },
	{ "sourceIps host bits of the CIDR are ignored",
	  Y_ALLOW(M1("sourceIps: [198.18.1.77/24]")), SLEEP,
	  ALLOWS(ALLOW_MATCHED, "app/allow") },
	{ "sourceIps list is any-of",
	  Y_ALLOW(M1("sourceIps: [198.18.2.0/24, 198.18.1.0/24]")), SLEEP,
	  ALLOWS(ALLOW_MATCHED, "app/allow") },
	{ "notSourceIps contains the caller",
	  Y_ALLOW(M1("notSourceIps: [198.18.1.0/24]")), SLEEP,
	  DENIES(NO_ALLOW_MATCHED, NULL) },
	{ "notSourceIps does not contain the caller",
	  Y_ALLOW(M1("notSourceIps: [198.18.1.0/24]")), SLEEP,
	  .src = "198.18.2.10", ALLOWS(ALLOW_MATCHED, "app/allow") },
	{ "sourceIps minus notSourceIps: the excluded host",
	  Y_ALLOW(M1("sourceIps: [198.18.1.0/24], notSourceIps: [198.18.1.10]")),
	  SLEEP, DENIES(NO_ALLOW_MATCHED, NULL) },
	{ "sourceIps minus notSourceIps: another host",
	  Y_ALLOW(M1("sourceIps: [198.18.1.0/24], notSourceIps: [198.18.1.10]")),
	  SLEEP, .src = "198.18.1.11", ALLOWS(ALLOW_MATCHED, "app/allow") },
	{ "DENY sourceIps denies a plaintext caller by address",
	  Y_DENY(M1("sourceIps: [198.19.0.0/16]")), PLAIN,
	  .src = "198.19.5.5", DENIES(DENY_MATCHED, "app/deny") },

	/* -- destinationIps / notDestinationIps -- */
	{ "destinationIps: the address dialled",
	  Y_ALLOW(M1("destinationIps: [198.18.10.1/32]")), SLEEP,
	  ALLOWS(ALLOW_MATCHED, "app/allow") },
	{ "destinationIps: the workload's other address is not listed",
	  Y_ALLOW(M1("destinationIps: [198.18.10.1/32]")), SLEEP, .dst = WEB2,
	  DENIES(NO_ALLOW_MATCHED, NULL) },
	{ "destinationIps CIDR",
	  Y_ALLOW(M1("destinationIps: [198.18.10.0/24]")), SLEEP, .dst = WEB2,
	  ALLOWS(ALLOW_MATCHED, "app/allow") },
	{ "notDestinationIps: another address passes",
	  Y_ALLOW(M1("notDestinationIps: [198.18.10.3]")), SLEEP,
	  ALLOWS(ALLOW_MATCHED, "app/allow") },
	{ "notDestinationIps: the excluded address",
	  Y_ALLOW(M1("notDestinationIps: [198.18.10.3]")), SLEEP, .dst = WEB2,
	  DENIES(NO_ALLOW_MATCHED, NULL) },

	/* -- destinationPorts / notDestinationPorts -- */
	{ "destinationPorts: listed port",
	  Y_ALLOW(M1("destinationPorts: [8080]")), SLEEP,
	  ALLOWS(ALLOW_MATCHED, "app/allow") },
	{ "destinationPorts: unlisted port",
	  Y_ALLOW(M1("destinationPorts: [8080]")), SLEEP, .port = 9090,
	  DENIES(NO_ALLOW_MATCHED, NULL) },
	{ "destinationPorts list is any-of",
	  Y_ALLOW(M1("destinationPorts: [80, 8080]")), SLEEP,
	  ALLOWS(ALLOW_MATCHED, "app/allow") },
	{ "notDestinationPorts: another port passes",
	  Y_ALLOW(M1("notDestinationPorts: [9090]")), SLEEP,
	  ALLOWS(ALLOW_MATCHED, "app/allow") },
	{ "notDestinationPorts: the excluded port",
	  Y_ALLOW(M1("notDestinationPorts: [9090]")), SLEEP, .port = 9090,
	  DENIES(NO_ALLOW_MATCHED, NULL) },
	{ "DENY notDestinationPorts: every other port denied",
	  Y_DENY(M1("notDestinationPorts: [8080]")), SLEEP, .port = 9090,
	  DENIES(DENY_MATCHED, "app/deny") },
	{ "DENY notDestinationPorts: the open port",
	  Y_DENY(M1("notDestinationPorts: [8080]")), PLAIN,
	  ALLOWS(NO_ALLOW_POLICIES, NULL) },

	/* -- combinations: match = AND, clause = OR, rule = AND, policy = OR -- */
	{ "match is AND: right namespace, wrong port",
	  Y_ALLOW(M1("namespaces: [{Exact: client}], destinationPorts: [8080]")),
	  SLEEP, .port = 9090, DENIES(NO_ALLOW_MATCHED, NULL) },
	{ "match is AND: wrong namespace, right port",
	  Y_ALLOW(M1("namespaces: [{Exact: client}], destinationPorts: [8080]")),
	  ADMIN, DENIES(NO_ALLOW_MATCHED, NULL) },
	{ "match is AND: both hold",
	  Y_ALLOW(M1("namespaces: [{Exact: client}], destinationPorts: [8080]")),
	  SLEEP, ALLOWS(ALLOW_MATCHED, "app/allow") },
	{ "clause is OR of its matches",
	  Y_ALLOW("[[[{namespaces: [{Exact: admin}]}, {destinationPorts: [9090]}]]]"),
	  SLEEP, .port = 9090, ALLOWS(ALLOW_MATCHED, "app/allow") },
	{ "rule is AND of its clauses: second clause fails",
	  Y_ALLOW("[[[{namespaces: [{Exact: client}]}], [{destinationPorts: [9090]}]]]"),
	  SLEEP, DENIES(NO_ALLOW_MATCHED, NULL) },
	{ "rule is AND of its clauses: both hold",
	  Y_ALLOW("[[[{namespaces: [{Exact: client}]}], [{destinationPorts: [9090]}]]]"),
	  SLEEP, .port = 9090, ALLOWS(ALLOW_MATCHED, "app/allow") },
	{ "policy is OR of its rules",
	  Y_ALLOW("[[[{namespaces: [{Exact: admin}]}]], [[{destinationPorts: [8080]}]]]"),
	  SLEEP, ALLOWS(ALLOW_MATCHED, "app/allow") },
	{ "every field in one match, all hold", Y_ALLOW(EVERY_FIELD), SLEEP,
	  ALLOWS(ALLOW_MATCHED, "app/allow") },
	{ "every field in one match, notSourceIps fails", Y_ALLOW(EVERY_FIELD),
	  SLEEP, .src = "198.18.1.99", DENIES(NO_ALLOW_MATCHED, NULL) },
	{ "every field in one match, notDestinationIps fails",
	  Y_ALLOW(EVERY_FIELD), SLEEP, .dst = WEB2,
	  DENIES(NO_ALLOW_MATCHED, NULL) },
	{ "every field in one match, plaintext fails", Y_ALLOW(EVERY_FIELD),
	  PLAIN, DENIES(NO_ALLOW_MATCHED, NULL) },

	/* -- scopes -- */
	{ "Namespace policy of another namespace does not apply",
	  POLICIES POL("deny-other", "other", "Namespace", "Deny", ", rules: [[]]"),
	  SLEEP, ALLOWS(NO_POLICIES, NULL) },
	{ "Namespace policy applies in its own namespace",
	  POLICIES POL("deny-other", "other", "Namespace", "Deny", ", rules: [[]]"),
	  SLEEP, .dst = API, DENIES(DENY_MATCHED, "other/deny-other") },
	{ "Global policy from istio-system applies",
	  POLICIES POL("global-deny", "istio-system", "Global", "Deny", ", rules: [[]]"),
	  SLEEP, DENIES(DENY_MATCHED, "istio-system/global-deny") },
	{ "Global policy from any namespace applies",
	  POLICIES POL("global-deny", "other", "Global", "Deny", ", rules: [[]]"),
	  SLEEP, .dst = DB, DENIES(DENY_MATCHED, "other/global-deny") },
	{ "WorkloadSelector policy listed by the workload applies",
	  POLICIES POL("sel", "app", "WorkloadSelector", "Deny", ", rules: [[]]"),
	  SLEEP, DENIES(DENY_MATCHED, "app/sel") },
	{ "WorkloadSelector policy does not apply to a workload not listing it",
	  POLICIES POL("sel", "app", "WorkloadSelector", "Deny", ", rules: [[]]"),
	  SLEEP, .dst = DB, ALLOWS(NO_POLICIES, NULL) },
	{ "WorkloadSelector policy nobody lists applies nowhere",
	  POLICIES POL("unlisted", "app", "WorkloadSelector", "Deny", ", rules: [[]]"),
	  SLEEP, ALLOWS(NO_POLICIES, NULL) },
	{ "listed policy of another namespace applies whatever its scope",
	  POLICIES POL("cross", "other", "Namespace", "Deny", ", rules: [[]]"),
	  SLEEP, DENIES(DENY_MATCHED, "other/cross") },
	{ "listed twice, unknown and malformed names beside it: ALLOW matches",
	  POLICIES POL("sel", "app", "WorkloadSelector", "Allow",
		       ", rules: " M1("namespaces: [{Exact: client}]")),
	  SLEEP, ALLOWS(ALLOW_MATCHED, "app/sel") },
	{ "listed twice, unknown and malformed names beside it: ALLOW misses",
	  POLICIES POL("sel", "app", "WorkloadSelector", "Allow",
		       ", rules: " M1("namespaces: [{Exact: client}]")),
	  ADMIN, DENIES(NO_ALLOW_MATCHED, NULL) },
	{ "Global ALLOW makes ALLOW policies apply everywhere",
	  POLICIES POL("global-allow", "istio-system", "Global", "Allow",
		       ", rules: " M1("namespaces: [{Exact: admin}]")),
	  SLEEP, .dst = DB, DENIES(NO_ALLOW_MATCHED, NULL) },
	{ "ALLOW selected for db leaves web open",
	  POLICIES POL("db-only", "app", "WorkloadSelector", "Allow",
		       ", rules: " M1("namespaces: [{Exact: admin}]")),
	  SLEEP, ALLOWS(NO_POLICIES, NULL) },
	{ "ALLOW selected for db closes db",
	  POLICIES POL("db-only", "app", "WorkloadSelector", "Allow",
		       ", rules: " M1("namespaces: [{Exact: admin}]")),
	  SLEEP, .dst = DB, DENIES(NO_ALLOW_MATCHED, NULL) },
	{ "DENY from a workload policy beats ALLOW from the namespace",
	  POLICIES NSPOL("allow", "Allow", "[[]]")
		  POL("sel", "app", "WorkloadSelector", "Deny",
		      ", rules: " M1("principals: [{Suffix: /sa/sleep}]")),
	  SLEEP, DENIES(DENY_MATCHED, "app/sel") },
	{ "Global DENY not matching, Namespace ALLOW matching",
	  POLICIES POL("global-deny", "istio-system", "Global", "Deny",
		       ", rules: " M1("namespaces: [{Exact: admin}]"))
		  NSPOL("allow", "Allow", M1("namespaces: [{Exact: client}]")),
	  SLEEP, ALLOWS(ALLOW_MATCHED, "app/allow") },
	{ "ALLOW policies of all scopes pool together",
	  POLICIES NSPOL("allow", "Allow", M1("namespaces: [{Exact: admin}]"))
		  POL("sel", "app", "WorkloadSelector", "Allow",
		      ", rules: " M1("namespaces: [{Exact: client}]")),
	  SLEEP, ALLOWS(ALLOW_MATCHED, "app/sel") },

	/* -- dryRun -- */
	{ "dryRun DENY alone is not enforced; shadow denies",
	  POLICIES POL("dr-deny", "app", "Namespace", "Deny", ", rules: [[]], dryRun: true"),
	  SLEEP, ALLOWS(NO_POLICIES, NULL), SHADOW(DENY, "app/dr-deny") },
	{ "dryRun ALLOW alone not matching; shadow denies (no policy)",
	  POLICIES POL("dr-allow", "app", "Namespace", "Allow",
		       ", dryRun: true, rules: " M1("namespaces: [{Exact: admin}]")),
	  SLEEP, ALLOWS(NO_POLICIES, NULL), SHADOW(DENY, NULL) },
	{ "dryRun ALLOW alone matching; shadow allows",
	  POLICIES POL("dr-allow", "app", "Namespace", "Allow",
		       ", dryRun: true, rules: " M1("namespaces: [{Exact: client}]")),
	  SLEEP, ALLOWS(NO_POLICIES, NULL), SHADOW(ALLOW, "app/dr-allow") },
	{ "dryRun DENY alone not matching; shadow allows",
	  POLICIES POL("dr-deny", "app", "Namespace", "Deny",
		       ", dryRun: true, rules: " M1("namespaces: [{Exact: admin}]")),
	  SLEEP, ALLOWS(NO_POLICIES, NULL), SHADOW(ALLOW, NULL) },
	{ "enforced ALLOW decides; dryRun DENY only in the shadow",
	  POLICIES NSPOL("allow", "Allow", "[[]]")
		  POL("dr-deny", "app", "Namespace", "Deny", ", rules: [[]], dryRun: true"),
	  SLEEP, ALLOWS(ALLOW_MATCHED, "app/allow"),
	  SHADOW(DENY, "app/dr-deny") },
	{ "enforced DENY decides; dryRun ALLOW only in the shadow",
	  POLICIES NSPOL("deny", "Deny", "[[]]")
		  POL("dr-allow", "app", "Namespace", "Allow", ", rules: [[]], dryRun: true"),
	  SLEEP, DENIES(DENY_MATCHED, "app/deny"),
	  SHADOW(ALLOW, "app/dr-allow") },
	{ "matching dryRun ALLOW does not rescue a denied caller",
	  POLICIES NSPOL("allow", "Allow", M1("namespaces: [{Exact: admin}]"))
		  POL("dr-allow", "app", "Namespace", "Allow", ", rules: [[]], dryRun: true"),
	  SLEEP, DENIES(NO_ALLOW_MATCHED, NULL),
	  SHADOW(ALLOW, "app/dr-allow") },
	{ "dryRun ALLOW does not count as an ALLOW policy",
	  POLICIES NSPOL("deny", "Deny", M1("destinationPorts: [9090]"))
		  POL("dr-allow", "app", "Namespace", "Allow", ", rules: [], dryRun: true"),
	  SLEEP, ALLOWS(NO_ALLOW_POLICIES, NULL), SHADOW(DENY, NULL) },
	{ "dryRun DENY and dryRun ALLOW both match: shadow denies",
	  POLICIES POL("dr-allow", "app", "Namespace", "Allow", ", rules: [[]], dryRun: true")
		  POL("dr-deny", "app", "Namespace", "Deny", ", rules: [[]], dryRun: true"),
	  SLEEP, ALLOWS(NO_POLICIES, NULL), SHADOW(DENY, "app/dr-deny") },
	{ "dryRun: false is enforced",
	  POLICIES POL("deny", "app", "Namespace", "Deny", ", rules: [[]], dryRun: false"),
	  SLEEP, DENIES(DENY_MATCHED, "app/deny") },
	{ "dryRun policy of another namespace does not apply",
	  POLICIES POL("dr-deny", "other", "Namespace", "Deny", ", rules: [[]], dryRun: true"),
	  SLEEP, ALLOWS(NO_POLICIES, NULL) },
	{ "dryRun WorkloadSelector policy through authorizationPolicies",
	  POLICIES POL("sel", "app", "WorkloadSelector", "Deny", ", rules: [[]], dryRun: true"),
	  PLAIN, ALLOWS(NO_POLICIES, NULL), SHADOW(DENY, "app/sel") },
	{ "dryRun allow-nothing; shadow denies",
	  POLICIES POL("dr-allow", "app", "Namespace", "Allow", ", rules: [], dryRun: true"),
	  SLEEP, ALLOWS(NO_POLICIES, NULL), SHADOW(DENY, NULL) },

	/* -- peer authentication -- */
	{ "mesh-wide STRICT refuses plaintext",
	  PEERS PA("mesh", "istio-system", ", mode: STRICT"), PLAIN,
	  STRICT_BY("istio-system/mesh") },
	{ "mesh-wide STRICT admits mTLS",
	  PEERS PA("mesh", "istio-system", ", mode: STRICT"), SLEEP,
	  ALLOWS(NO_POLICIES, NULL) },
	{ "namespace STRICT refuses plaintext",
	  PEERS PA("app-strict", "app", ", mode: STRICT"), PLAIN,
	  STRICT_BY("app/app-strict") },
	{ "STRICT of another namespace does not apply",
	  PEERS PA("other-strict", "other", ", mode: STRICT"), PLAIN,
	  ALLOWS(NO_POLICIES, NULL) },
	{ "STRICT applies in its own namespace",
	  PEERS PA("other-strict", "other", ", mode: STRICT"), PLAIN, .dst = API,
	  STRICT_BY("other/other-strict") },
	{ "workload PERMISSIVE overrides namespace STRICT",
	  PEERS PA("app-strict", "app", ", mode: STRICT")
		  PA("web-perm", "app", ", workloads: [web], mode: PERMISSIVE"),
	  PLAIN, ALLOWS(NO_POLICIES, NULL) },
	{ "workload DISABLE overrides mesh STRICT",
	  PEERS PA("mesh", "istio-system", ", mode: STRICT")
		  PA("web-off", "app", ", workloads: [web], mode: DISABLE"),
	  PLAIN, ALLOWS(NO_POLICIES, NULL) },
	{ "namespace UNSET inherits mesh STRICT",
	  PEERS PA("mesh", "istio-system", ", mode: STRICT")
		  PA("app-unset", "app", ", mode: UNSET"),
	  PLAIN, STRICT_BY("istio-system/mesh") },
	{ "workload UNSET inherits namespace STRICT",
	  PEERS PA("app-strict", "app", ", mode: STRICT")
		  PA("web-unset", "app", ", workloads: [web], mode: UNSET"),
	  PLAIN, STRICT_BY("app/app-strict") },
	{ "namespace STRICT overrides mesh PERMISSIVE",
	  PEERS PA("mesh", "istio-system", ", mode: PERMISSIVE")
		  PA("app-strict", "app", ", mode: STRICT"),
	  PLAIN, STRICT_BY("app/app-strict") },
	{ "namespace PERMISSIVE overrides mesh STRICT",
	  PEERS PA("mesh", "istio-system", ", mode: STRICT")
		  PA("app-perm", "app", ", mode: PERMISSIVE"),
	  PLAIN, ALLOWS(NO_POLICIES, NULL) },
	{ "workload STRICT for db leaves web permissive",
	  PEERS PA("db-strict", "app", ", workloads: [db], mode: STRICT"), PLAIN,
	  ALLOWS(NO_POLICIES, NULL) },
	{ "workload STRICT for db refuses plaintext to db",
	  PEERS PA("db-strict", "app", ", workloads: [db], mode: STRICT"), PLAIN,
	  .dst = DB, STRICT_BY("app/db-strict") },
	{ "istio-system PA with workloads is not mesh-wide",
	  PEERS PA("sys-web", "istio-system", ", workloads: [web], mode: STRICT"),
	  PLAIN, ALLOWS(NO_POLICIES, NULL) },
	{ "istio-system PA with workloads applies to its own workload",
	  PEERS PA("sys-web", "istio-system", ", workloads: [web], mode: STRICT"),
	  PLAIN, .dst = SYSWEB, STRICT_BY("istio-system/sys-web") },
	{ "workload PA of another namespace does not select a same-named workload",
	  PEERS PA("web-strict", "other", ", workloads: [web], mode: STRICT"),
	  PLAIN, ALLOWS(NO_POLICIES, NULL) },
	{ "STRICT is checked before a matching ALLOW policy",
	  Y_ALLOW(M1("sourceIps: [198.18.1.0/24]"))
		  PEERS PA("mesh", "istio-system", ", mode: STRICT"),
	  PLAIN, STRICT_BY("istio-system/mesh") },
	{ "STRICT is checked before a matching DENY policy",
	  Y_DENY(M1("sourceIps: [198.18.1.0/24]"))
		  PEERS PA("mesh", "istio-system", ", mode: STRICT"),
	  PLAIN, STRICT_BY("istio-system/mesh") },
	{ "STRICT with an mTLS caller leaves the decision to policies",
	  Y_DENY(M1("sourceIps: [198.18.1.0/24]"))
		  PEERS PA("mesh", "istio-system", ", mode: STRICT"),
	  SLEEP, DENIES(DENY_MATCHED, "app/deny") },
	{ "DISABLE admits plaintext, policies still apply",
	  Y_DENY(M1("notPrincipals: [{Presence: []}]"))
		  PEERS PA("app-off", "app", ", mode: DISABLE"),
	  PLAIN, DENIES(DENY_MATCHED, "app/deny") },
};

/* ---- helpers ---- */

/* "ns/name" of a policy or peer authentication into buf; "-" for none. */
static const char *key_of(const char *ns, const char *name, char *buf,
			  size_t len)
{
	if (!name)
		return "-";
	snprintf(buf, len, "%s/%s", ns, name);
	return buf;
}

static bool key_is(const char *ns, const char *name, const char *want)
{
	char buf[256];

	if (!want)
		return !name;
	return name && streq(key_of(ns, name, buf, sizeof(buf)), want);
}

/* WORKLOADS followed by extra, parsed; NULL (and a failed check) if not. */
static struct state *load(const char *what, const char *extra)
{
	static char yaml[16384];
	char err[512] = "";
	struct state *st = NULL;
	int n, ret;

	n = snprintf(yaml, sizeof(yaml), "%s%s", WORKLOADS, extra);
	if (n < 0 || (size_t)n >= sizeof(yaml))
		abort();
	ret = config_load_buffer("authz.yaml", yaml, (size_t)n, &st, err,
				 sizeof(err));
	if (ret) {
		ok(0, "%s: config does not load: %s", what, err);
		return NULL;
	}
	return st;
}

static struct authz_conn conn_of(const char *id, const char *src,
				 const char *dst, uint16_t port)
{
	struct authz_conn c = {
		.identity = id,
		.src_be = ip(src ? src : "198.18.1.10"),
		.src_prefix_len = 32,
		.dst_be = ip(dst ? dst : WEB),
		.dst_port = port ? port : 8080,
	};
	return c;
}

static const char *verdict_name(enum authz_verdict v)
{
	return v == AUTHZ_ALLOW ? "ALLOW" : v == AUTHZ_DENY ? "DENY" : "?";
}

static const char *shadow_name(enum shadow s)
{
	return s == SH_NONE ? "none" : s == SH_ALLOW ? "ALLOW" : "DENY";
}

/* ---- the table runner ---- */

static const struct policy unset_policy = { .name = "(unset)", .namespace = "" };
static const struct peer_auth unset_peer_auth = { .name = "(unset)", .namespace = "" };

static void run_case(const struct acase *tc)
{
	struct authz_result res;
	struct authz_conn c;
	const struct workload *dst;
	enum shadow got_shadow;
	char pbuf[256], sbuf[256], abuf[256];
	const char *got_pol, *got_spol, *got_pa;
	struct state *st;
	bool pass;

	st = load(tc->name, tc->yaml);
	if (!st)
		return;
	c = conn_of(tc->id, tc->src, tc->dst, tc->port);
	dst = state_workload_by_ip(st, c.dst_be);
	if (!dst) {
		ok(0, "%s: no destination workload", tc->name);
		state_unref(st);
		return;
	}
	/* Fields the evaluation fails to set would show up as "(unset)". */
	memset(&res, 0, sizeof(res));
	res.verdict = (enum authz_verdict)-1;
	res.reason = AUTHZ_R__COUNT;
	res.policy = res.dry_run_policy = &unset_policy;
	res.peer_auth = &unset_peer_auth;
	res.dry_run_applies = true;
	res.dry_run_verdict = (enum authz_verdict)-1;
	authz_evaluate(st, dst, &c, &res);

	got_pol = res.policy ? key_of(res.policy->namespace, res.policy->name,
				      pbuf, sizeof(pbuf)) :
			       "-";
	got_shadow = !res.dry_run_applies		  ? SH_NONE :
		     res.dry_run_verdict == AUTHZ_ALLOW ? SH_ALLOW :
							  SH_DENY;
	got_spol = res.dry_run_applies && res.dry_run_policy ?
			   key_of(res.dry_run_policy->namespace,
				  res.dry_run_policy->name, sbuf, sizeof(sbuf)) :
			   "-";
	got_pa = res.reason == AUTHZ_R_PEER_AUTH_STRICT && res.peer_auth ?
			 key_of(res.peer_auth->namespace, res.peer_auth->name,
				abuf, sizeof(abuf)) :
			 "-";

	pass = res.verdict == tc->verdict && res.reason == tc->reason &&
	       (tc->policy ? streq(got_pol, tc->policy) : !res.policy) &&
	       got_shadow == tc->shadow;
	if (tc->shadow != SH_NONE)
		pass = pass && (tc->shadow_policy ?
					streq(got_spol, tc->shadow_policy) :
					!res.dry_run_policy);
	if (tc->reason == AUTHZ_R_PEER_AUTH_STRICT)
		pass = pass && streq(got_pa, tc->peer_auth);
	/* The deciding policy must itself match the connection. */
	if (pass && res.policy)
		pass = authz_policy_matches(res.policy, &c);

	ok(pass, "%s", tc->name);
	if (!pass) {
		printf("#   expected %s / %s / policy %s / shadow %s %s / peer %s\n",
		       verdict_name(tc->verdict), authz_reason_name(tc->reason),
		       tc->policy ? tc->policy : "-", shadow_name(tc->shadow),
		       tc->shadow_policy ? tc->shadow_policy : "-",
		       tc->peer_auth ? tc->peer_auth : "-");
		printf("#   got      %s / %s / policy %s / shadow %s %s / peer %s\n",
		       verdict_name(res.verdict), authz_reason_name(res.reason),
		       got_pol, shadow_name(got_shadow), got_spol, got_pa);
	}
	state_unref(st);
}

/* ---- peer authentication inheritance, directly ---- */

struct pa_case {
	const char *name;
	const char *yaml;
	const char *dst;
	enum peer_auth_mode mode;
	const char *from; /* "ns/name" or NULL for the default */
};

#define PA_SET                                                                 \
	PEERS PA("mesh", "istio-system", ", mode: STRICT")                     \
	PA("sys-web", "istio-system", ", workloads: [web], mode: DISABLE")     \
	PA("app-unset", "app", ", mode: UNSET")                                \
	PA("db-perm", "app", ", workloads: [db], mode: PERMISSIVE")            \
	PA("other-off", "other", ", mode: DISABLE")

static const struct pa_case pa_cases[] = {
	{ "no peer authentication: PERMISSIVE by default", "", WEB,
	  PA_MODE_PERMISSIVE, NULL },
	{ "namespace UNSET falls through to the mesh", PA_SET, WEB,
	  PA_MODE_STRICT, "istio-system/mesh" },
	{ "workload PERMISSIVE beats the mesh", PA_SET, DB, PA_MODE_PERMISSIVE,
	  "app/db-perm" },
	{ "namespace DISABLE beats the mesh", PA_SET, API, PA_MODE_DISABLE,
	  "other/other-off" },
	{ "workload PA in the root namespace is workload-specific", PA_SET,
	  SYSWEB, PA_MODE_DISABLE, "istio-system/sys-web" },
	{ "only UNSET everywhere: PERMISSIVE by default",
	  PEERS PA("mesh", "istio-system", ", mode: UNSET")
		  PA("web-unset", "app", ", workloads: [web], mode: UNSET"),
	  WEB, PA_MODE_PERMISSIVE, NULL },
	{ "workload STRICT beats namespace DISABLE",
	  PEERS PA("app-off", "app", ", mode: DISABLE")
		  PA("web-strict", "app", ", workloads: [web], mode: STRICT"),
	  WEB, PA_MODE_STRICT, "app/web-strict" },
	{ "sibling without a workload PA takes the namespace mode",
	  PEERS PA("app-off", "app", ", mode: DISABLE")
		  PA("web-strict", "app", ", workloads: [web], mode: STRICT"),
	  DB, PA_MODE_DISABLE, "app/app-off" },
	{ "workload list naming several workloads",
	  PEERS PA("both", "app", ", workloads: [api, db], mode: STRICT"), DB,
	  PA_MODE_STRICT, "app/both" },
};

static void test_peer_auth_mode(void)
{
	size_t i;

	for (i = 0; i < sizeof(pa_cases) / sizeof(pa_cases[0]); i++) {
		const struct pa_case *pc = &pa_cases[i];
		const struct peer_auth *from = (const void *)&pa_cases;
		const struct workload *wl;
		enum peer_auth_mode mode;
		struct state *st;
		char buf[256];

		st = load(pc->name, pc->yaml);
		if (!st)
			continue;
		wl = state_workload_by_ip(st, ip(pc->dst));
		mode = authz_peer_auth_mode(st, wl, &from);
		ok(mode == pc->mode &&
			   (pc->from ? from && key_is(from->namespace,
						      from->name, pc->from) :
				       !from),
		   "peer auth: %s (got %s from %s)", pc->name,
		   peer_auth_mode_name(mode),
		   from == (const void *)&pa_cases ? "(unset)" :
		   from ? key_of(from->namespace, from->name, buf, sizeof(buf)) :
			  "default");
		state_unref(st);
	}
}

/* ---- which policies apply to a workload ---- */

#define SELECTION_SET                                                          \
	POLICIES                                                               \
	POL("g1", "istio-system", "Global", "Allow", ", rules: [[]]")          \
	POL("g2", "other", "Global", "Deny", ", rules: []")                    \
	POL("n-app", "app", "Namespace", "Allow", "")                          \
	POL("n-other", "other", "Namespace", "Allow", "")                      \
	POL("sel", "app", "WorkloadSelector", "Allow", "")                     \
	POL("unlisted", "app", "WorkloadSelector", "Deny", "")                 \
	POL("cross", "other", "Namespace", "Deny", "")                         \
	POL("db-only", "app", "WorkloadSelector", "Allow", "")

#define MAX_SEEN 16

struct seen {
	const struct policy *pol[MAX_SEEN];
	int n, stop_at, calls;
};

static int collect_cb(const struct policy *pol, void *arg)
{
	struct seen *s = arg;

	s->calls++;
	if (s->n < MAX_SEEN)
		s->pol[s->n++] = pol;
	return s->calls == s->stop_at ? 7 : 0;
}

/* Rank of how a policy reaches wl: 0 Global, 1 Namespace, 2 listed. */
static int rank_of(const struct policy *p, const struct workload *wl)
{
	if (p->scope == POL_SCOPE_GLOBAL)
		return 0;
	if (p->scope == POL_SCOPE_NAMESPACE && streq(p->namespace, wl->namespace))
		return 1;
	return 2;
}

/*
 * Visits must be exactly `want` (each once, any order within a rank) and
 * come Global first, then Namespace, then the workload's own list.
 */
static void check_selection(const struct state *st, const char *dst,
			    const char *const *want, const char *what)
{
	const struct workload *wl = state_workload_by_ip(st, ip(dst));
	struct seen s = { .stop_at = -1 };
	int i, j, n_want = 0, ret, found, order_ok = 1, exact = 1;
	char got[512] = "", buf[128];

	ret = authz_for_each_policy(st, wl, collect_cb, &s);
	while (want[n_want])
		n_want++;
	for (i = 0; i < s.n; i++) {
		size_t l = strlen(got);

		snprintf(got + l, sizeof(got) - l, "%s%s", i ? " " : "",
			 key_of(s.pol[i]->namespace, s.pol[i]->name, buf,
				sizeof(buf)));
		if (i && rank_of(s.pol[i], wl) < rank_of(s.pol[i - 1], wl))
			order_ok = 0;
	}
	for (j = 0; j < n_want; j++) {
		found = 0;
		for (i = 0; i < s.n; i++)
			found += key_is(s.pol[i]->namespace, s.pol[i]->name,
					want[j]);
		if (found != 1)
			exact = 0;
	}
	ok(ret == 0 && s.n == n_want && exact && order_ok,
	   "for_each_policy: %s (got: %s)", what, got);
}

static void test_selection(void)
{
	static const char *const web[] = { "istio-system/g1", "other/g2",
					   "app/n-app", "app/sel",
					   "other/cross", NULL };
	static const char *const db[] = { "istio-system/g1", "other/g2",
					  "app/n-app", "app/db-only", NULL };
	static const char *const api[] = { "istio-system/g1", "other/g2",
					   "other/n-other", "other/cross",
					   NULL };
	static const char *const sysweb[] = { "istio-system/g1", "other/g2",
					      NULL };
	static const char *const none[] = { NULL };
	struct seen s = { .stop_at = 2 };
	struct state *st;
	int ret;

	st = load("selection", SELECTION_SET);
	if (!st)
		return;
	check_selection(st, WEB,
			web, "app/web: Global, its Namespace, listed (dup once, unknown and malformed names ignored, n-app once)");
	check_selection(st, DB, db, "app/db: not web's selector policies");
	check_selection(st, API, api,
			"other/api: own Namespace policies, not app's");
	check_selection(st, SYSWEB, sysweb,
			"istio-system/web: Global ones once, though they live in its namespace");
	ret = authz_for_each_policy(st, state_workload_by_ip(st, ip(WEB)),
				    collect_cb, &s);
	ok(ret == 7 && s.calls == 2,
	   "for_each_policy stops at the callback's non-zero value (ret %d after %d calls)",
	   ret, s.calls);
	state_unref(st);

	st = load("selection, no policies", "");
	if (!st)
		return;
	check_selection(st, WEB, none,
			"no policies: nothing, listed names all unknown");
	state_unref(st);
}

/* ---- caller prefixes (the kernel-table compiler's question) ---- */

struct prefix_case {
	const char *name;
	const char *match;
	const char *src;
	uint8_t len;
	bool matches;
};

static const struct prefix_case prefix_cases[] = {
	{ "/24 caller inside sourceIps 198.18.0.0/16",
	  "sourceIps: [198.18.0.0/16]", "198.18.1.0", 24, true },
	{ "/24 caller not inside sourceIps 198.18.1.128/25",
	  "sourceIps: [198.18.1.128/25]", "198.18.1.0", 24, false },
	{ "/24 caller equal to sourceIps /24", "sourceIps: [198.18.1.0/24]",
	  "198.18.1.0", 24, true },
	{ "/16 caller not inside a /24 it contains",
	  "sourceIps: [198.18.1.0/24]", "198.18.0.0", 16, false },
	{ "/16 caller not inside the /24 at its start",
	  "sourceIps: [198.18.0.0/24]", "198.18.0.0", 16, false },
	{ "/24 caller disjoint from sourceIps", "sourceIps: [198.19.0.0/16]",
	  "198.18.1.0", 24, false },
	{ "/24 caller inside notSourceIps: excluded",
	  "notSourceIps: [198.18.0.0/16]", "198.18.1.0", 24, false },
	{ "/24 caller disjoint from notSourceIps: holds",
	  "notSourceIps: [198.19.0.0/16]", "198.18.1.0", 24, true },
	{ "/0 caller only inside sourceIps 0.0.0.0/0", "sourceIps: [0.0.0.0/0]",
	  "0.0.0.0", 0, true },
	{ "/32 caller inside its /25", "sourceIps: [198.18.1.128/25]",
	  "198.18.1.200", 32, true },
};

static void test_prefixes(void)
{
	size_t i;

	for (i = 0; i < sizeof(prefix_cases) / sizeof(prefix_cases[0]); i++) {
		const struct prefix_case *pc = &prefix_cases[i];
		struct authz_conn c = conn_of(NULL, pc->src, WEB, 8080);
		struct authz_result res;
		struct state *st;
		char yaml[512];
		bool m;

		snprintf(yaml, sizeof(yaml),
			 POLICIES NSPOL("allow", "Allow", "[[[{%s}]]]"),
			 pc->match);
		st = load(pc->name, yaml);
		if (!st)
			continue;
		c.src_prefix_len = pc->len;
		m = authz_policy_matches(&st->policies[0], &c);
		authz_evaluate(st, state_workload_by_ip(st, c.dst_be), &c, &res);
		ok(m == pc->matches &&
			   res.verdict == (pc->matches ? AUTHZ_ALLOW : AUTHZ_DENY),
		   "prefix: %s (matches %d, verdict %s)", pc->name, m,
		   verdict_name(res.verdict));
		state_unref(st);
	}
}

/* ---- authz_explain ---- */

/* Is there one line of text holding both a and b? */
static bool line_has(const char *text, const char *a, const char *b)
{
	while (text && *text) {
		const char *eol = strchr(text, '\n');
		size_t n = eol ? (size_t)(eol - text) : strlen(text);
		char line[512];

		snprintf(line, sizeof(line), "%.*s", (int)n, text);
		if (strstr(line, a) && strstr(line, b))
			return true;
		text = eol ? eol + 1 : NULL;
	}
	return false;
}

static void test_explain(void)
{
	const char *yaml =
		POLICIES NSPOL("block-legacy", "Deny",
			       M1("sourceIps: [198.18.5.0/24]"))
			NSPOL("let-clients", "Allow",
			      M1("namespaces: [{Exact: client}]"))
			POL("trial-deny", "app", "Namespace", "Deny",
			    ", rules: [[]], dryRun: true");
	struct authz_conn c;
	const struct workload *wl;
	char buf[4096], small[16];
	struct state *st;
	size_t n, n2;

	st = load("explain", yaml);
	if (!st)
		return;
	wl = state_workload_by_ip(st, ip(WEB));

	c = conn_of(NULL, "198.18.5.9", WEB, 8080);
	n = authz_explain(st, wl, &c, buf, sizeof(buf));
	ok(n == strlen(buf) && strstr(buf, "app/block-legacy") &&
		   strstr(buf, "app/let-clients") && strstr(buf, "app/trial-deny"),
	   "explain lists every applicable policy, the dry-run one included");
	ok(line_has(buf, "DENY", "app/block-legacy"),
	   "explain: DENY decided by app/block-legacy, named with the verdict");
	ok(line_has(buf, "DENY", "app/trial-deny"),
	   "explain: the dry-run shadow DENY names app/trial-deny");
	if (!line_has(buf, "DENY", "app/block-legacy"))
		printf("# %s", buf);

	c = conn_of(SLEEP, NULL, WEB, 8080);
	n = authz_explain(st, wl, &c, buf, sizeof(buf));
	ok(n == strlen(buf) && line_has(buf, "ALLOW", "app/let-clients") &&
		   !line_has(buf, "ALLOW", "app/block-legacy"),
	   "explain: ALLOW decided by app/let-clients, named with the verdict");

	memset(small, 'x', sizeof(small));
	n2 = authz_explain(st, wl, &c, small, sizeof(small));
	ok(n2 == n && strlen(small) == sizeof(small) - 1 &&
		   !strncmp(small, buf, sizeof(small) - 1),
	   "explain truncates to the buffer, terminates it, returns the full length (%zu)",
	   n2);
	state_unref(st);

	st = load("explain, strict",
		  PEERS PA("mesh", "istio-system", ", mode: STRICT"));
	if (!st)
		return;
	c = conn_of(NULL, NULL, WEB, 8080);
	authz_explain(st, state_workload_by_ip(st, ip(WEB)), &c, buf,
		      sizeof(buf));
	ok(line_has(buf, "DENY", "STRICT") && strstr(buf, "istio-system/mesh"),
	   "explain of a STRICT refusal says so and names the peer authentication");
	state_unref(st);
}

static void test_reason_names(void)
{
	int i, j, good = 1;

	for (i = 0; i < AUTHZ_R__COUNT; i++) {
		const char *a = authz_reason_name(i);

		if (!a || !*a)
			good = 0;
		for (j = 0; good && j < i; j++)
			if (streq(a, authz_reason_name(j)))
				good = 0;
	}
	ok(good && authz_reason_name(AUTHZ_R__COUNT),
	   "every reason has its own non-empty name");
}

int main(void)
{
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		run_case(&cases[i]);
	printf("# %zu table cases\n", sizeof(cases) / sizeof(cases[0]));
	test_peer_auth_mode();
	test_selection();
	test_prefixes();
	test_explain();
	test_reason_names();
	return tap_done();
}
