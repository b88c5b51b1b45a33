// SPDX-License-Identifier: Apache-2.0
#include "configdump.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ca.h"
#include "daemon.h"
#include "state.h"

/* Writes ,"key":"value" (or "key":... for the first member) when v set. */
struct obj {
	struct sbuf *b;
	int n;
};

static void key(struct obj *o, const char *k)
{
	sbuf_printf(o->b, "%s\"%s\":", o->n++ ? "," : "", k);
}

static void kstr(struct obj *o, const char *k, const char *v)
{
	if (!v)
		return;
	key(o, k);
	sbuf_json_str(o->b, v);
}

static void kint(struct obj *o, const char *k, long long v)
{
	key(o, k);
	sbuf_printf(o->b, "%lld", v);
}

static void kbool(struct obj *o, const char *k, bool v)
{
	key(o, k);
	sbuf_puts(o->b, v ? "true" : "false");
}

/* "key":[item,...] with fn writing each of the n items of size bytes. */
static void array(struct obj *o, const char *k, const void *items, size_t n,
		  size_t size, void (*fn)(struct sbuf *b, const void *item))
{
	key(o, k);
	sbuf_putc(o->b, '[');
	for (size_t i = 0; i < n; i++) {
		if (i)
			sbuf_putc(o->b, ',');
		fn(o->b, (const char *)items + i * size);
	}
	sbuf_putc(o->b, ']');
}

/* Like array(), but writes nothing when there are no items. */
static void opt_array(struct obj *o, const char *k, const void *items, size_t n,
		      size_t size, void (*fn)(struct sbuf *b, const void *item))
{
	if (n)
		array(o, k, items, n, size, fn);
}

static const char *ip4(uint32_t a, char *buf)
{
	return inet_ntop(AF_INET, &a, buf, INET_ADDRSTRLEN);
}

static void net_addr(struct sbuf *b, const struct net_addr *a)
{
	char ip[INET_ADDRSTRLEN], s[128];

	snprintf(s, sizeof(s), "%s/%s", a->network ? a->network : "",
		 ip4(a->addr_be, ip));
	sbuf_json_str(b, s);
}

static void cidr(struct sbuf *b, const struct ip_cidr *c)
{
	char ip[INET_ADDRSTRLEN];

	sbuf_printf(b, "\"%s/%u\"", ip4(c->addr_be, ip), c->prefix_len);
}

static void ports(struct sbuf *b, const struct port_pair *p, size_t n)
{
	sbuf_putc(b, '{');
	for (size_t i = 0; i < n; i++)
		sbuf_printf(b, "%s\"%u\":%u", i ? "," : "", p[i].service_port,
			    p[i].target_port);
	sbuf_putc(b, '}');
}

static void strs(struct sbuf *b, char *const *v, size_t n)
{
	sbuf_putc(b, '[');
	for (size_t i = 0; i < n; i++) {
		if (i)
			sbuf_putc(b, ',');
		sbuf_json_str(b, v[i]);
	}
	sbuf_putc(b, ']');
}

static void gateway(struct obj *o, const char *k, const struct gateway *g)
{
	struct obj in = {o->b, 0};

	if (g->kind == GW_NONE)
		return;
	key(o, k);
	sbuf_putc(o->b, '{');
	key(&in, "destination");
	if (g->kind == GW_ADDRESS) {
		net_addr(o->b, &g->address);
	} else {
		char s[512];

		snprintf(s, sizeof(s), "%s/%s",
			 g->namespace ? g->namespace : "",
			 g->hostname ? g->hostname : "");
		sbuf_json_str(o->b, s);
	}
	if (g->hbone_mtls_port)
		kint(&in, "hboneMtlsPort", g->hbone_mtls_port);
	sbuf_putc(o->b, '}');
}

static void workload(struct sbuf *b, const void *item)
{
	const struct workload *w = item;
	struct obj o = {b, 0};
	char ip[INET_ADDRSTRLEN];

	sbuf_putc(b, '{');
	kstr(&o, "uid", w->uid);
	key(&o, "workloadIps");
	sbuf_putc(b, '[');
	for (size_t i = 0; i < w->n_ips; i++)
		sbuf_printf(b, "%s\"%s\"", i ? "," : "", ip4(w->ips_be[i], ip));
	sbuf_putc(b, ']');
	kstr(&o, "protocol", wl_protocol_name(w->protocol));
	kstr(&o, "name", w->name);
	kstr(&o, "namespace", w->namespace);
	kstr(&o, "serviceAccount", w->service_account);
	kstr(&o, "workloadName", w->workload_name);
	kstr(&o, "workloadType", w->workload_type);
	kstr(&o, "canonicalName", w->canonical_name);
	kstr(&o, "canonicalRevision", w->canonical_revision);
	kstr(&o, "clusterId", w->cluster_id);
	kstr(&o, "trustDomain", w->trust_domain);
	if (w->locality.region || w->locality.zone || w->locality.subzone) {
		struct obj l = {b, 0};

		key(&o, "locality");
		sbuf_putc(b, '{');
		kstr(&l, "region", w->locality.region);
		kstr(&l, "zone", w->locality.zone);
		kstr(&l, "subzone", w->locality.subzone);
		sbuf_putc(b, '}');
	}
	kstr(&o, "node", w->node);
	kstr(&o, "network", w->network);
	kstr(&o, "status", wl_status_name(w->status));
	kstr(&o, "networkMode", wl_network_mode_name(w->network_mode));
	kstr(&o, "hostname", w->hostname);
	kint(&o, "capacity", w->capacity);
	kbool(&o, "nativeTunnel", w->native_tunnel);
	gateway(&o, "waypoint", &w->waypoint);
	gateway(&o, "networkGateway", &w->network_gateway);
	if (w->application_tunnel) {
		struct obj t = {b, 0};

		key(&o, "applicationTunnel");
		sbuf_putc(b, '{');
		kstr(&t, "protocol",
		     app_tunnel_protocol_name(w->application_tunnel->protocol));
		if (w->application_tunnel->port)
			kint(&t, "port", w->application_tunnel->port);
		sbuf_putc(b, '}');
	}
	key(&o, "services");
	sbuf_putc(b, '{');
	for (size_t i = 0; i < w->n_services; i++) {
		char k[600];

		snprintf(k, sizeof(k), "%s/%s", w->services[i].namespace,
			 w->services[i].hostname);
		if (i)
			sbuf_putc(b, ',');
		sbuf_json_str(b, k);
		sbuf_putc(b, ':');
		ports(b, w->services[i].ports, w->services[i].n_ports);
	}
	sbuf_putc(b, '}');
	key(&o, "authorizationPolicies");
	strs(b, w->authorization_policies, w->n_authorization_policies);
	sbuf_putc(b, '}');
}

static void service(struct sbuf *b, const void *item)
{
	const struct service *s = item;
	struct obj o = {b, 0};

	sbuf_putc(b, '{');
	kstr(&o, "name", s->name);
	kstr(&o, "namespace", s->namespace);
	kstr(&o, "hostname", s->hostname);
	key(&o, "vips");
	sbuf_putc(b, '[');
	for (size_t i = 0; i < s->n_vips; i++) {
		if (i)
			sbuf_putc(b, ',');
		net_addr(b, &s->vips[i]);
	}
	sbuf_putc(b, ']');
	key(&o, "ports");
	ports(b, s->ports, s->n_ports);
	key(&o, "endpoints");
	sbuf_putc(b, '{');
	for (size_t i = 0; i < s->n_endpoints; i++) {
		const struct endpoint *e = &s->endpoints[i];
		struct obj eo = {b, 0};
		char svc[600];

		if (i)
			sbuf_putc(b, ',');
		sbuf_json_str(b, e->workload_uid ? e->workload_uid : "");
		sbuf_puts(b, ":{");
		kstr(&eo, "workloadUid", e->workload_uid);
		snprintf(svc, sizeof(svc), "%s/%s", s->namespace, s->hostname);
		kstr(&eo, "service", svc);
		key(&eo, "port");
		ports(b, e->ports, e->n_ports);
		kstr(&eo, "status", wl_status_name(e->status));
		sbuf_putc(b, '}');
	}
	sbuf_putc(b, '}');
	key(&o, "subjectAltNames");
	strs(b, s->subject_alt_names, s->n_subject_alt_names);
	gateway(&o, "waypoint", &s->waypoint);
	if (s->load_balancer) {
		struct obj l = {b, 0};

		key(&o, "loadBalancer");
		sbuf_putc(b, '{');
		key(&l, "routingPreferences");
		sbuf_putc(b, '[');
		for (size_t i = 0; i < s->load_balancer->n_routing_preferences;
		     i++)
			sbuf_printf(
			    b, "%s\"%s\"", i ? "," : "",
			    lb_scope_name(
				s->load_balancer->routing_preferences[i]));
		sbuf_putc(b, ']');
		kstr(&l, "mode", lb_mode_name(s->load_balancer->mode));
		kstr(&l, "healthPolicy",
		     lb_health_policy_name(s->load_balancer->health_policy));
		sbuf_putc(b, '}');
	}
	kstr(&o, "ipFamilies", ip_families_name(s->ip_families));
	kstr(&o, "visibility", svc_visibility_name(s->visibility));
	sbuf_putc(b, '}');
}

static void str_match(struct sbuf *b, const void *item)
{
	const struct str_match *m = item;

	sbuf_printf(b, "{\"%s\":", str_match_kind_name(m->kind));
	if (m->kind == SM_PRESENCE)
		sbuf_puts(b, "{}");
	else
		sbuf_json_str(b, m->value);
	sbuf_putc(b, '}');
}

static void sa_match(struct sbuf *b, const void *item)
{
	const struct sa_match *m = item;
	struct obj s = {b, 0};

	sbuf_putc(b, '{');
	kstr(&s, "namespace", m->namespace);
	kstr(&s, "serviceAccount", m->service_account);
	sbuf_putc(b, '}');
}

static void cidr_item(struct sbuf *b, const void *item)
{
	cidr(b, item);
}

static void port_item(struct sbuf *b, const void *item)
{
	sbuf_printf(b, "%u", *(const uint16_t *)item);
}

/* One match: only the fields it sets, ztunnel's names. */
static void match(struct sbuf *b, const struct pol_match *mt)
{
	struct obj mo = {b, 0};
#define LIST(k, f, fn) opt_array(&mo, k, mt->f, mt->n_##f, sizeof(*mt->f), fn)
	sbuf_putc(b, '{');
	LIST("namespaces", namespaces, str_match);
	LIST("notNamespaces", not_namespaces, str_match);
	LIST("serviceAccounts", service_accounts, sa_match);
	LIST("notServiceAccounts", not_service_accounts, sa_match);
	LIST("principals", principals, str_match);
	LIST("notPrincipals", not_principals, str_match);
	LIST("sourceIps", source_ips, cidr_item);
	LIST("notSourceIps", not_source_ips, cidr_item);
	LIST("destinationIps", destination_ips, cidr_item);
	LIST("notDestinationIps", not_destination_ips, cidr_item);
	LIST("destinationPorts", destination_ports, port_item);
	LIST("notDestinationPorts", not_destination_ports, port_item);
#undef LIST
	sbuf_putc(b, '}');
}

static void policy(struct sbuf *b, const void *item)
{
	const struct policy *p = item;
	struct obj o = {b, 0};

	sbuf_putc(b, '{');
	kstr(&o, "name", p->name);
	kstr(&o, "namespace", p->namespace);
	kstr(&o, "scope", pol_scope_name(p->scope));
	kstr(&o, "action", pol_action_name(p->action));
	kbool(&o, "dryRun", p->dry_run);
	key(&o, "rules");
	sbuf_putc(b, '[');
	for (size_t r = 0; r < p->n_rules; r++) {
		const struct pol_rule *rule = &p->rules[r];

		sbuf_puts(b, r ? ",[" : "[");
		for (size_t c = 0; c < rule->n_clauses; c++) {
			const struct pol_clause *cl = &rule->clauses[c];

			sbuf_puts(b, c ? ",[" : "[");
			for (size_t m = 0; m < cl->n_matches; m++) {
				if (m)
					sbuf_putc(b, ',');
				match(b, &cl->matches[m]);
			}
			sbuf_putc(b, ']');
		}
		sbuf_putc(b, ']');
	}
	sbuf_putc(b, ']');
	sbuf_putc(b, '}');
}

static void rfc3339(char *buf, size_t len, time_t t)
{
	struct tm tm;

	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
}

/* {"pem":..., "serialNumber":..., "validFrom":..., "expirationTime":...} */
static void cert(struct sbuf *b, X509 *x, const char *serial, time_t nb,
		 time_t na)
{
	struct obj o = {b, 0};
	BIO *bio = BIO_new(BIO_s_mem());
	char *pem = NULL, t[40];
	long n = 0;

	sbuf_putc(b, '{');
	if (bio && PEM_write_bio_X509(bio, x))
		n = BIO_get_mem_data(bio, &pem);
	key(&o, "pem");
	if (n > 0) {
		char *s = strndup(pem, (size_t)n);

		sbuf_json_str(b, s ? s : "");
		free(s);
	} else {
		sbuf_puts(b, "\"\"");
	}
	BIO_free(bio);
	kstr(&o, "serialNumber", serial);
	rfc3339(t, sizeof(t), nb);
	kstr(&o, "validFrom", t);
	rfc3339(t, sizeof(t), na);
	kstr(&o, "expirationTime", t);
	sbuf_putc(b, '}');
}

struct cert_walk {
	struct sbuf *b;
	struct daemon *d;
	int n;
	time_t now;
};

static void root_certs(struct sbuf *b, struct daemon *d)
{
	X509 *root = ca_root_cert(d->ca);
	const ASN1_TIME *nb = X509_get0_notBefore(root),
			*na = X509_get0_notAfter(root);
	struct tm tb = {0}, ta = {0};
	ASN1_INTEGER *sn = X509_get_serialNumber(root);
	BIGNUM *bn = ASN1_INTEGER_to_BN(sn, NULL);
	char *hex = bn ? BN_bn2hex(bn) : NULL;

	ASN1_TIME_to_tm(nb, &tb);
	ASN1_TIME_to_tm(na, &ta);
	sbuf_putc(b, '[');
	cert(b, root, hex ? hex : "", timegm(&tb), timegm(&ta));
	sbuf_putc(b, ']');
	OPENSSL_free(hex);
	BN_free(bn);
}

static void cert_entry(const struct leaf *leaf, enum leaf_state st, void *arg)
{
	struct cert_walk *w = arg;
	struct obj o = {w->b, 0};

	/* One entry per identity (ztunnel's shape): the current leaf. */
	if (st == LEAF_ROTATED)
		return;
	sbuf_puts(w->b, w->n++ ? ",{" : "{");
	kstr(&o, "identity", leaf->identity);
	kstr(&o, "state",
	     st == LEAF_ACTIVE ? "Available" : "Unavailable: expired");
	key(&o, "certChain");
	sbuf_putc(w->b, '[');
	cert(w->b, leaf->cert, leaf->serial, leaf->not_before, leaf->not_after);
	sbuf_putc(w->b, ']');
	key(&o, "rootCerts");
	root_certs(w->b, w->d);
	sbuf_putc(w->b, '}');
}

/* Local mesh workloads without a usable identity, as Unavailable entries. */
struct missing {
	struct sbuf *b;
	struct cert_walk *cw;
	struct daemon *d;
};

static int missing_cert(const struct workload *wl, void *arg)
{
	struct missing *m = arg;
	char id[SPIFFE_ID_MAX];
	struct obj o = {m->b, 0};

	/* A valid identity is listed by the walk above once issued (the
	 * control thread issues them when the config arrives). */
	if (wl->protocol != WL_PROTO_HBONE ||
	    !workload_identity(wl, id, sizeof(id)))
		return 0;
	snprintf(id, sizeof(id), "spiffe://%s/ns/%s/sa/%s",
		 wl->trust_domain ? wl->trust_domain : "", wl->namespace,
		 wl->service_account ? wl->service_account : "");
	sbuf_puts(m->b, m->cw->n++ ? ",{" : "{");
	kstr(&o, "identity", id);
	kstr(&o, "state", "Unavailable: not a valid SPIFFE identity");
	key(&o, "certChain");
	sbuf_puts(m->b, "[]");
	key(&o, "rootCerts");
	sbuf_puts(m->b, "[]");
	sbuf_putc(m->b, '}');
	return 0;
}

static void peer_auth(struct sbuf *b, const void *item)
{
	const struct peer_auth *pa = item;
	struct obj po = {b, 0};

	sbuf_putc(b, '{');
	kstr(&po, "name", pa->name);
	kstr(&po, "namespace", pa->namespace);
	key(&po, "workloads");
	strs(b, pa->workloads, pa->n_workloads);
	kstr(&po, "mode", peer_auth_mode_name(pa->mode));
	sbuf_putc(b, '}');
}

void config_dump(struct daemon *d, const struct state *st, struct sbuf *b)
{
	struct cert_walk cw = {.b = b, .d = d, .now = time(NULL)};
	struct missing m = {.b = b, .cw = &cw, .d = d};
	struct obj o = {b, 0};

	sbuf_putc(b, '{');
	array(&o, "workloads", st->workloads, st->n_workloads,
	      sizeof(*st->workloads), workload);
	array(&o, "services", st->services, st->n_services,
	      sizeof(*st->services), service);
	/* Authorization policies in ztunnel's shape (DESIGN.md §5). */
	array(&o, "policies", st->policies, st->n_policies,
	      sizeof(*st->policies), policy);
	array(&o, "peerAuthentications", st->peer_auths, st->n_peer_auths,
	      sizeof(*st->peer_auths), peer_auth);
	key(&o, "certificates");
	sbuf_putc(b, '[');
	certstore_for_each(d->certs, cw.now, cert_entry, &cw);
	state_workloads_on_node(st, d->node, missing_cert, &m);
	sbuf_putc(b, ']');
	key(&o, "config");
	{
		struct obj c = {b, 0};

		sbuf_putc(b, '{');
		kstr(&c, "node", d->node);
		kstr(&c, "trustDomain", d->trust_domain);
		kint(&c, "generation", (long long)st->generation);
		kstr(&c, "version", AMBIENTD_VERSION);
		sbuf_putc(b, '}');
	}
	sbuf_putc(b, '}');
}

struct cert_check {
	struct daemon *d;
	char *why;
	size_t len;
	int err;
};

static int check_one(const struct workload *wl, void *arg)
{
	struct cert_check *c = arg;
	char id[SPIFFE_ID_MAX];
	struct leaf *leaf = NULL;
	int err;

	if (wl->protocol != WL_PROTO_HBONE)
		return 0;
	err = workload_identity(wl, id, sizeof(id));
	if (err) {
		snprintf(
		    c->why, c->len,
		    "no certificate for workload %s/%s: serviceAccount '%s' "
		    "and namespace do not form a valid SPIFFE identity",
		    wl->namespace, wl->name ? wl->name : "?",
		    wl->service_account ? wl->service_account : "");
		c->err = err;
		return 1;
	}
	err = certstore_get(c->d->certs, id, &leaf);
	if (!err && leaf->not_after <= time(NULL))
		err = -EKEYEXPIRED;
	leaf_unref(leaf);
	if (err) {
		snprintf(c->why, c->len, "no certificate for %s: %s", id,
			 strerror(-err));
		c->err = err;
		return 1;
	}
	return 0;
}

int config_check_certificates(struct daemon *d, const struct state *st,
			      char *why, size_t len)
{
	struct cert_check c = {.d = d, .why = why, .len = len};

	state_workloads_on_node(st, d->node, check_one, &c);
	return c.err;
}
