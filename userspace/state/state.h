/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Immutable, reference-counted snapshots of the mesh model (DESIGN.md §4):
 * workloads, services and authorization policies, in the shape of Istio's
 * workload API as ztunnel holds it.
 *
 * Contract:
 *  - A snapshot never changes after its config source hands it out. Readers
 *    (worker threads) take a reference with state_ref(), use it for as long
 *    as they like without locks, and drop it with state_unref(). The last
 *    unref frees everything the snapshot owns.
 *  - Every pointer inside a snapshot (strings, arrays, cross references such
 *    as endpoint->workload) points into memory owned by that same snapshot;
 *    none of it outlives the snapshot and none of it is shared with another.
 *  - Optional strings are NULL when absent; "" when given as empty.
 *  - IPv4 addresses are uint32_t in network byte order ("_be"); ports and
 *    other numbers are host order.
 */
#ifndef AMBIENTD_STATE_H
#define AMBIENTD_STATE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Defaults applied when a workload omits the field (as istiod/ztunnel do). */
#define WL_DEFAULT_TRUST_DOMAIN "cluster.local"
#define WL_DEFAULT_SERVICE_ACCOUNT "default"
#define WL_DEFAULT_CLUSTER_ID "Kubernetes"

/* YAML `protocol`: how the workload expects inbound traffic. */
enum wl_protocol {
	WL_PROTO_TCP = 0, /* plain TCP (default; not in the mesh's tunnel) */
	WL_PROTO_HBONE, /* mTLS + HTTP/2 CONNECT on 15008 */
	WL_PROTO__COUNT,
};

/* YAML `status` of a workload or endpoint. */
enum wl_status {
	WL_STATUS_HEALTHY = 0, /* default */
	WL_STATUS_UNHEALTHY,
	WL_STATUS__COUNT,
};

/* YAML `networkMode`. */
enum wl_network_mode {
	WL_NETMODE_STANDARD = 0, /* default */
	WL_NETMODE_HOST_NETWORK,
	WL_NETMODE__COUNT,
};

/* YAML `applicationTunnel.protocol`. */
enum app_tunnel_protocol {
	APP_TUNNEL_NONE = 0,
	APP_TUNNEL_PROXY,
	APP_TUNNEL__COUNT,
};

/* What a gateway address (waypoint, networkGateway) points at. */
enum gw_kind {
	GW_NONE = 0, /* not configured */
	GW_ADDRESS, /* "network/ip" */
	GW_HOSTNAME, /* "namespace/hostname" */
};

/* YAML `loadBalancer.mode`. */
enum lb_mode {
	LB_MODE_STANDARD = 0,
	LB_MODE_STRICT,
	LB_MODE_FAILOVER,
	LB_MODE_PASSTHROUGH,
	LB_MODE__COUNT,
};

/* YAML `loadBalancer.healthPolicy`. */
enum lb_health_policy {
	LB_HEALTH_ONLY_HEALTHY = 0, /* default */
	LB_HEALTH_ALLOW_ALL,
	LB_HEALTH__COUNT,
};

/* YAML `loadBalancer.routingPreferences[]`. */
enum lb_scope {
	LB_SCOPE_REGION = 0,
	LB_SCOPE_ZONE,
	LB_SCOPE_SUBZONE,
	LB_SCOPE_NODE,
	LB_SCOPE_CLUSTER,
	LB_SCOPE_NETWORK,
	LB_SCOPE__COUNT,
};

/* YAML `ipFamilies`; absent means automatic. */
enum ip_families {
	IPF_AUTOMATIC = 0,
	IPF_DUAL,
	IPF_IPV4,
	IPF_IPV6,
	IPF__COUNT,
};

/* YAML `visibility` of a service. */
enum svc_visibility {
	SVC_VIS_PUBLIC = 0, /* default: visible to every client */
	SVC_VIS_NAMESPACE, /* only to clients in the service's namespace */
	SVC_VIS__COUNT,
};

/* YAML `scope` of an authorization policy. */
enum pol_scope {
	POL_SCOPE_GLOBAL = 0,
	POL_SCOPE_NAMESPACE,
	POL_SCOPE_WORKLOAD_SELECTOR,
	POL_SCOPE__COUNT,
};

/* YAML `action` of an authorization policy. */
enum pol_action {
	POL_ACTION_ALLOW = 0,
	POL_ACTION_DENY,
	POL_ACTION__COUNT,
};

/*
 * YAML `mode` of a peer authentication (Istio's PeerAuthentication
 * mtls.mode). DISABLE admits plaintext like PERMISSIVE does (ztunnel only
 * acts on STRICT).
 */
enum peer_auth_mode {
	PA_MODE_UNSET = 0, /* inherit from the wider scope */
	PA_MODE_PERMISSIVE,
	PA_MODE_STRICT,
	PA_MODE_DISABLE,
	PA_MODE__COUNT,
};

/* Istio's root namespace: a namespace-wide peer authentication here is the
 * mesh-wide default. */
#define PA_ROOT_NAMESPACE "istio-system"

/* Kind of a string match in a policy (YAML `{Exact: s}`, `!Prefix s`...). */
enum str_match_kind {
	SM_EXACT = 0,
	SM_PREFIX,
	SM_SUFFIX,
	SM_PRESENCE, /* non-empty value present; value is NULL */
	SM__COUNT,
};

/* String tables (YAML spelling); "?" for out-of-range values. */
const char *wl_protocol_name(enum wl_protocol p);
const char *wl_status_name(enum wl_status s);
const char *wl_network_mode_name(enum wl_network_mode m);
const char *app_tunnel_protocol_name(enum app_tunnel_protocol p);
const char *lb_mode_name(enum lb_mode m);
const char *lb_health_policy_name(enum lb_health_policy h);
const char *lb_scope_name(enum lb_scope s);
const char *ip_families_name(enum ip_families f);
const char *svc_visibility_name(enum svc_visibility v);
const char *pol_scope_name(enum pol_scope s);
const char *pol_action_name(enum pol_action a);
const char *str_match_kind_name(enum str_match_kind k);
const char *peer_auth_mode_name(enum peer_auth_mode m);

/* servicePort -> targetPort (both host order, 1..65535). */
struct port_pair {
	uint16_t service_port;
	uint16_t target_port;
};

/* "network/ip": an address qualified by its network ("" = default network). */
struct net_addr {
	char *network;
	uint32_t addr_be;
};

/* An IPv4 prefix; addr_be has the host bits cleared. A bare IP is a /32. */
struct ip_cidr {
	uint32_t addr_be;
	uint8_t prefix_len; /* 0..32 */
};

/* Service `cidrVips[]`: {network, cidr}. */
/* Network-order mask of a prefix length (0..32). */
uint32_t ip_cidr_mask(uint8_t prefix_len);
/* Does cidr contain every address of addr_be/len (len 32: one address)? */
bool ip_cidr_covers(const struct ip_cidr *cidr, uint32_t addr_be, uint8_t len);

struct net_cidr {
	char *network;
	struct ip_cidr cidr;
};

/* A waypoint or network gateway: {destination, hboneMtlsPort}. */
struct gateway {
	enum gw_kind kind;
	struct net_addr address; /* GW_ADDRESS */
	char *namespace; /* GW_HOSTNAME */
	char *hostname; /* GW_HOSTNAME */
	uint16_t hbone_mtls_port;
};

struct locality {
	char *region;
	char *zone;
	char *subzone;
};

struct app_tunnel {
	enum app_tunnel_protocol protocol;
	uint16_t port; /* 0 = not set */
};

/* One entry of a workload's `services` map ("namespace/hostname": ports). */
struct wl_service_ref {
	char *namespace;
	char *hostname;
	struct port_pair *ports;
	size_t n_ports;
};

struct workload {
	char *uid; /* unique within a snapshot when set; NULL if absent */
	char *name; /* NULL if absent */
	char *namespace; /* required */
	char *trust_domain; /* default WL_DEFAULT_TRUST_DOMAIN */
	char *service_account; /* default WL_DEFAULT_SERVICE_ACCOUNT */
	uint32_t *ips_be; /* workloadIps; each unique across the snapshot */
	size_t n_ips;
	enum wl_protocol protocol; /* default TCP */
	enum wl_status status; /* default Healthy */
	enum wl_network_mode network_mode; /* default Standard */
	char *node;
	char *network;
	char *cluster_id; /* default WL_DEFAULT_CLUSTER_ID */
	char *hostname;
	char *workload_name;
	char *workload_type;
	char *canonical_name;
	char *canonical_revision;
	struct locality locality; /* members NULL if absent */
	struct gateway waypoint; /* kind GW_NONE if absent */
	struct gateway network_gateway; /* kind GW_NONE if absent */
	bool native_tunnel;
	struct app_tunnel *application_tunnel; /* NULL if absent */
	uint32_t capacity; /* default 1 */
	char **authorization_policies; /* "namespace/name" keys, as given */
	size_t n_authorization_policies;
	struct wl_service_ref *services;
	size_t n_services;
};

struct lb_ep;
struct lb_svc;

/* A service endpoint; see struct service.endpoints. */
struct endpoint {
	char *workload_uid;
	const struct workload *workload; /* NULL if no workload has this uid */
	struct port_pair *ports;
	size_t n_ports;
	enum wl_status status;
	struct lb_ep *lb; /* runtime counters (lb.h), attached at publish */
};

struct weighted_waypoint {
	struct gateway destination;
	uint32_t weight;
};

struct load_balancer {
	enum lb_scope *routing_preferences;
	size_t n_routing_preferences;
	enum lb_mode mode; /* default Standard */
	enum lb_health_policy health_policy; /* default OnlyHealthy */
};

struct service {
	char *name;
	char *namespace;
	char *hostname; /* (namespace, hostname) is unique in a snapshot */
	struct net_addr *vips; /* each address unique across services */
	size_t n_vips;
	struct net_cidr *cidr_vips;
	size_t n_cidr_vips;
	struct port_pair *ports;
	size_t n_ports;
	char **subject_alt_names;
	size_t n_subject_alt_names;
	/*
	 * The service's `endpoints` map from the file, followed by one endpoint
	 * per workload whose `services` map names this service (ports from that
	 * map, status from the workload) unless the uid was already listed.
	 */
	struct endpoint *endpoints;
	size_t n_endpoints;
	struct gateway waypoint;
	struct weighted_waypoint *weighted_waypoints;
	size_t n_weighted_waypoints;
	struct load_balancer *load_balancer; /* NULL if absent */
	enum ip_families ip_families;
	bool canonical;
	enum svc_visibility visibility;
	/* Our extension: concurrent connections allowed (0: no limit), like
	 * a DestinationRule's connectionPool.tcp.maxConnections. */
	uint32_t max_connections;
	struct lb_svc *lb; /* runtime counters (lb.h), attached at publish */
};

struct str_match {
	enum str_match_kind kind;
	char *value; /* NULL for SM_PRESENCE */
};

struct sa_match {
	char *namespace;
	char *service_account;
};

/*
 * One match: every non-empty field must hold (positive lists: any element
 * matches; not_* lists: no element matches). Semantics live in authz.
 */
struct pol_match {
	struct str_match *namespaces;
	size_t n_namespaces;
	struct str_match *not_namespaces;
	size_t n_not_namespaces;
	struct sa_match *service_accounts;
	size_t n_service_accounts;
	struct sa_match *not_service_accounts;
	size_t n_not_service_accounts;
	struct str_match *principals;
	size_t n_principals;
	struct str_match *not_principals;
	size_t n_not_principals;
	struct ip_cidr *source_ips;
	size_t n_source_ips;
	struct ip_cidr *not_source_ips;
	size_t n_not_source_ips;
	struct ip_cidr *destination_ips;
	size_t n_destination_ips;
	struct ip_cidr *not_destination_ips;
	size_t n_not_destination_ips;
	uint16_t *destination_ports;
	size_t n_destination_ports;
	uint16_t *not_destination_ports;
	size_t n_not_destination_ports;
};

/* A clause matches if any of its matches does. */
struct pol_clause {
	struct pol_match *matches;
	size_t n_matches;
};

/* A rule matches if all of its clauses do. */
struct pol_rule {
	struct pol_clause *clauses;
	size_t n_clauses;
};

/* A policy matches if any rule does. ("namespace/name") is unique. */
struct policy {
	char *name;
	char *namespace;
	enum pol_scope scope;
	enum pol_action action;
	bool dry_run;
	struct pol_rule *rules;
	size_t n_rules;
};

/*
 * Peer authentication (our local-file extension, Istio's PeerAuthentication
 * reduced to L4): applies to the named workloads of its namespace, or to the
 * whole namespace when `workloads` is empty, or to the mesh when that
 * namespace is PA_ROOT_NAMESPACE. The most specific non-UNSET mode wins;
 * nothing set means PERMISSIVE.
 */
struct peer_auth {
	char *name;
	char *namespace;
	char **workloads; /* workload `name`s; empty: namespace-wide */
	size_t n_workloads;
	enum peer_auth_mode mode;
};

/*
 * Per-policy decision counters: the one mutable part of a snapshot. The
 * daemon attaches them (state_zalloc) before publishing; workers count into
 * them with relaxed atomics, never a lock.
 */
struct policy_hits {
	atomic_uint_fast64_t allow;	/* decided ALLOW by this policy */
	atomic_uint_fast64_t deny;	/* decided DENY by this policy */
	atomic_uint_fast64_t dry_allow; /* dryRun: would have allowed */
	atomic_uint_fast64_t dry_deny;	/* dryRun: would have denied */
};

struct state_priv;

struct state {
	atomic_uint refcnt;
	/* Strictly increasing per process across all snapshots (first is 1). */
	uint64_t generation;
	/* In file order. Iterate these directly; never modify them. */
	struct workload *workloads;
	size_t n_workloads;
	struct service *services;
	size_t n_services;
	struct policy *policies;
	size_t n_policies;
	struct peer_auth *peer_auths;
	size_t n_peer_auths;
	struct policy_hits *policy_hits; /* parallel to policies, or NULL */
	/* Runs once just before the snapshot is freed (releases runtime
	 * attachments such as the lb counters); NULL if none. */
	void (*finalize)(struct state *st);
	struct state_priv *priv; /* indexes and memory; private to state.c */
};

/* A snapshot with nothing in it (refcount 1), or NULL on ENOMEM. */
struct state *state_new_empty(void);

/* Takes one more reference; returns st for convenience. NULL-safe. */
struct state *state_ref(struct state *st);
/* Drops one reference; the last one frees the snapshot. NULL-safe. */
void state_unref(struct state *st);

/* O(1): the workload owning this IPv4 address, or NULL. */
const struct workload *state_workload_by_ip(const struct state *st,
					    uint32_t addr_be);
/* O(1): the workload with this uid, or NULL. */
const struct workload *state_workload_by_uid(const struct state *st,
					     const char *uid);
/* O(1): the service with this VIP (any network), or NULL. */
const struct service *state_service_by_vip(const struct state *st,
					   uint32_t addr_be);
/* O(1): the service "namespace/hostname", or NULL. */
const struct service *state_service_by_host(const struct state *st,
					    const char *ns, const char *host);

/*
 * Calls cb for each workload whose `node` equals node, in file order, until
 * cb returns non-zero (which is then returned). Returns 0 otherwise. O(n).
 */
int state_workloads_on_node(const struct state *st, const char *node,
			    int (*cb)(const struct workload *wl, void *arg),
			    void *arg);

/*
 * Building a snapshot — for config sources only (config.c, later xDS).
 * A builder allocates with state_alloc(), fills the arrays with memory from
 * state_zalloc()/state_strndup() (owned by the snapshot, freed with it; never
 * free() it), registers index keys, and publishes the snapshot only when all
 * of it is valid. On failure it just calls state_unref().
 */
struct state *state_alloc(void);
/* Zeroed memory owned by st; NULL on ENOMEM. n == 0 gives a valid pointer. */
void *state_zalloc(struct state *st, size_t n);
char *state_strndup(struct state *st, const char *s, size_t n);
char *state_strdup(struct state *st, const char *s);
/*
 * Index registration. Each returns 0, -ENOMEM, or -EEXIST when the key is
 * already taken, with *dup (if non-NULL) set to the holder. The registered
 * pointers must point into st's own arrays.
 */
int state_index_workload_ip(struct state *st, uint32_t addr_be,
			    const struct workload *wl,
			    const struct workload **dup);
int state_index_workload_uid(struct state *st, const struct workload *wl,
			     const struct workload **dup);
int state_index_service_vip(struct state *st, uint32_t addr_be,
			    const struct service *svc,
			    const struct service **dup);
int state_index_service_host(struct state *st, const struct service *svc,
			     const struct service **dup);
/* O(1): the policy ns/name, or NULL. */
const struct policy *state_policy_by_key(const struct state *st,
					 const char *ns, const char *name);

/* Policies by "namespace/name". */
int state_index_policy(struct state *st, const struct policy *pol,
		       const struct policy **dup);

#endif
