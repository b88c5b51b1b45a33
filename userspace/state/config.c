// SPDX-License-Identifier: Apache-2.0
/*
 * Local config file → state snapshot.
 *
 * libyaml's document API builds the node tree (with line numbers); a small
 * table-driven walker then fills the snapshot in place: every object kind has
 * a schema (key → field parser), so strictness (unknown keys, duplicates,
 * required keys, types) is enforced in one place. Lists are sized from the
 * node tree before their elements are parsed, so elements never move and
 * the snapshot's indexes can be filled (and duplicates caught, with the
 * offending line) while parsing.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "config.h"

struct pctx {
	const char *name;
	yaml_document_t *doc;
	struct state *st;
	char *err;
	size_t errlen;
	/* Node visits left; bounds work on alias-heavy ("billion laughs") input. */
	size_t budget;
	char path[1024];
	size_t plen;
};

/* How to parse one value into memory of `size` bytes. */
struct vtype {
	size_t size;
	int (*parse)(struct pctx *c, yaml_node_t *n, void *out, const void *arg);
	const void *arg;
};

struct field {
	const char *key; /* NULL ends a table */
	/* Parses the value node n into the object at base. */
	int (*parse)(struct pctx *c, yaml_node_t *n, void *base,
		     const struct field *f);
	size_t off;
	size_t n_off; /* lists and maps: offset of the size_t count */
	const struct vtype *type;
	bool required;
};

struct schema {
	const struct field *fields;
	/* Before the keys: defaults that are not zero. */
	void (*init)(void *obj);
	/* After the keys: remaining defaults and cross-checks. */
	int (*finish)(struct pctx *c, yaml_node_t *n, void *obj);
};

struct enum_desc {
	const char *const *names;
	unsigned count;
};

_Static_assert(sizeof(enum wl_protocol) == sizeof(unsigned) &&
		       sizeof(enum lb_scope) == sizeof(unsigned) &&
		       sizeof(enum pol_action) == sizeof(unsigned),
	       "enums are stored as unsigned");

/* ---- errors and paths ---- */

static __attribute__((format(printf, 3, 4))) int
fail(struct pctx *c, const yaml_node_t *n, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (c->err && c->errlen)
		snprintf(c->err, c->errlen, "%s:%lu: %s%s%s", c->name,
			 n ? (unsigned long)n->start_mark.line + 1 : 1UL,
			 c->path, c->plen ? ": " : "", msg);
	return -EINVAL;
}

static int oom(struct pctx *c)
{
	if (c->err && c->errlen)
		snprintf(c->err, c->errlen, "%s: out of memory", c->name);
	return -ENOMEM;
}

static __attribute__((format(printf, 2, 3))) size_t
path_push(struct pctx *c, const char *fmt, ...)
{
	size_t saved = c->plen;
	va_list ap;
	int w;

	if (c->plen >= sizeof(c->path) - 1)
		return saved;
	va_start(ap, fmt);
	w = vsnprintf(c->path + c->plen, sizeof(c->path) - c->plen, fmt, ap);
	va_end(ap);
	if (w > 0)
		c->plen += (size_t)w < sizeof(c->path) - c->plen ?
				   (size_t)w :
				   sizeof(c->path) - c->plen - 1;
	return saved;
}

static size_t path_key(struct pctx *c, const char *key)
{
	return path_push(c, c->plen ? ".%s" : "%s", key);
}

static void path_restore(struct pctx *c, size_t saved)
{
	c->plen = saved;
	c->path[saved] = '\0';
}

/* ---- node helpers ---- */

static yaml_node_t *node(struct pctx *c, int id)
{
	return yaml_document_get_node(c->doc, id);
}

static const char *sval(const yaml_node_t *n)
{
	return (const char *)n->data.scalar.value;
}

static bool is_null(const yaml_node_t *n)
{
	static const char *const nulls[] = { "", "~", "null", "Null", "NULL" };
	size_t i;

	if (n->type != YAML_SCALAR_NODE ||
	    n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	for (i = 0; i < sizeof(nulls) / sizeof(nulls[0]); i++)
		if (!strcmp(sval(n), nulls[i]))
			return true;
	return false;
}

static const char *kind(const yaml_node_t *n)
{
	if (n->type == YAML_MAPPING_NODE)
		return "a mapping";
	if (n->type == YAML_SEQUENCE_NODE)
		return "a list";
	return is_null(n) ? "null" : "a scalar";
}

/*
 * Every parser starts with this: checks the node kind and spends budget.
 * Scalars must not be null and must not hold NUL bytes.
 */
static int spend(struct pctx *c, yaml_node_t *n)
{
	if (!c->budget)
		return fail(c, n, "document too complex (alias expansion?)");
	c->budget--;
	return 0;
}

static int want(struct pctx *c, yaml_node_t *n, yaml_node_type_t t,
		const char *what)
{
	if (spend(c, n))
		return -EINVAL;
	if (n->type != t || (t == YAML_SCALAR_NODE && is_null(n)))
		return fail(c, n, "expected %s, got %s", what, kind(n));
	if (t == YAML_SCALAR_NODE &&
	    memchr(n->data.scalar.value, 0, n->data.scalar.length))
		return fail(c, n, "string contains a NUL byte");
	return 0;
}

static size_t seq_len(const yaml_node_t *n)
{
	return n->data.sequence.items.top - n->data.sequence.items.start;
}

static size_t map_len(const yaml_node_t *n)
{
	return n->data.mapping.pairs.top - n->data.mapping.pairs.start;
}

/* Value node of key in mapping n, or NULL. */
static yaml_node_t *map_get(struct pctx *c, yaml_node_t *n, const char *key)
{
	yaml_node_pair_t *p;

	for (p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = node(c, p->key);

		if (k->type == YAML_SCALAR_NODE && !strcmp(sval(k), key))
			return node(c, p->value);
	}
	return NULL;
}

/* Keys of a data map (ports, services, endpoints): scalars, no duplicates. */
static int map_key_check(struct pctx *c, yaml_node_t *map, yaml_node_pair_t *p)
{
	yaml_node_t *k = node(c, p->key);
	yaml_node_pair_t *q;
	int ret;

	ret = want(c, k, YAML_SCALAR_NODE, "a string key");
	if (ret)
		return ret;
	for (q = map->data.mapping.pairs.start; q < p; q++) {
		if (!strcmp(sval(node(c, q->key)), sval(k)))
			return fail(c, k, "duplicate key");
	}
	return 0;
}

/* ---- "did you mean" ---- */

static bool same_loosely(const char *a, const char *b)
{
	for (;;) {
		while (*a == '_' || *a == '-')
			a++;
		while (*b == '_' || *b == '-')
			b++;
		if (!*a || !*b)
			return !*a && !*b;
		if ((*a | 0x20) != (*b | 0x20))
			return false;
		a++;
		b++;
	}
}

/* Levenshtein distance, capped: strings over 63 bytes compare as far. */
static unsigned edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), i, j;
	unsigned row[64], prev, tmp;

	if (la > 63 || lb > 63)
		return 99;
	for (j = 0; j <= lb; j++)
		row[j] = j;
	for (i = 1; i <= la; i++) {
		prev = row[0];
		row[0] = i;
		for (j = 1; j <= lb; j++) {
			unsigned best = prev + (a[i - 1] != b[j - 1]);

			tmp = row[j];
			if (row[j] + 1 < best)
				best = row[j] + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			prev = tmp;
		}
	}
	return row[lb];
}

static const char *suggest(const struct field *fields, const char *key)
{
	const struct field *f, *best = NULL;
	unsigned d, best_d = 3;

	for (f = fields; f->key; f++) {
		if (same_loosely(f->key, key))
			return f->key;
		d = edit_distance(f->key, key);
		if (d < best_d && strlen(key) > d + 2) {
			best_d = d;
			best = f;
		}
	}
	return best ? best->key : NULL;
}

/* ---- scalar values ---- */

static int v_str(struct pctx *c, yaml_node_t *n, void *out, const void *arg)
{
	char *s;
	int ret;

	ret = want(c, n, YAML_SCALAR_NODE, "a string");
	if (ret)
		return ret;
	s = state_strndup(c->st, sval(n), n->data.scalar.length);
	if (!s)
		return oom(c);
	*(char **)out = s;
	return 0;
}

static int v_bool(struct pctx *c, yaml_node_t *n, void *out, const void *arg)
{
	static const char *const t[] = { "true", "True", "TRUE" };
	static const char *const f[] = { "false", "False", "FALSE" };
	int ret, i;

	ret = want(c, n, YAML_SCALAR_NODE, "true or false");
	if (ret)
		return ret;
	for (i = 0; i < 3; i++) {
		if (!strcmp(sval(n), t[i])) {
			*(bool *)out = true;
			return 0;
		}
		if (!strcmp(sval(n), f[i])) {
			*(bool *)out = false;
			return 0;
		}
	}
	return fail(c, n, "expected true or false, got \"%s\"", sval(n));
}

/* Plain decimal, no sign, no leading zeros, <= max. */
static int parse_uint(const char *s, unsigned long max, unsigned long *out)
{
	unsigned long v = 0;
	const char *p;

	if (!*s || (s[0] == '0' && s[1]))
		return -EINVAL;
	for (p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		v = v * 10 + (unsigned long)(*p - '0');
		if (v > max)
			return -ERANGE;
	}
	*out = v;
	return 0;
}

static int v_u32(struct pctx *c, yaml_node_t *n, void *out, const void *arg)
{
	unsigned long v;
	int ret;

	ret = want(c, n, YAML_SCALAR_NODE, "a number");
	if (ret)
		return ret;
	if (parse_uint(sval(n), 0xffffffffUL, &v))
		return fail(c, n, "invalid number \"%s\" (expected 0..4294967295)",
			    sval(n));
	*(uint32_t *)out = (uint32_t)v;
	return 0;
}

static int v_port(struct pctx *c, yaml_node_t *n, void *out, const void *arg)
{
	unsigned long v;
	int ret;

	ret = want(c, n, YAML_SCALAR_NODE, "a port number");
	if (ret)
		return ret;
	if (parse_uint(sval(n), 65535, &v) || v == 0)
		return fail(c, n, "invalid port \"%s\" (expected 1..65535)",
			    sval(n));
	*(uint16_t *)out = (uint16_t)v;
	return 0;
}

static int v_enum(struct pctx *c, yaml_node_t *n, void *out, const void *arg)
{
	const struct enum_desc *e = arg;
	char allowed[256];
	size_t len = 0;
	unsigned i;
	int ret;

	ret = want(c, n, YAML_SCALAR_NODE, "a string");
	if (ret)
		return ret;
	for (i = 0; i < e->count; i++) {
		if (!strcmp(sval(n), e->names[i])) {
			*(unsigned *)out = i;
			return 0;
		}
	}
	allowed[0] = '\0';
	for (i = 0; i < e->count && len < sizeof(allowed); i++)
		len += snprintf(allowed + len, sizeof(allowed) - len, "%s%s",
				i ? ", " : "", e->names[i]);
	return fail(c, n, "invalid value \"%s\" (allowed: %s)", sval(n),
		    allowed);
}

/* "a.b.c.d" → network order; IPv6 is recognised to say it is unsupported. */
static int ip4(struct pctx *c, yaml_node_t *n, const char *s, uint32_t *out)
{
	struct in6_addr a6;
	struct in_addr a4;

	if (inet_pton(AF_INET, s, &a4) == 1) {
		*out = a4.s_addr;
		return 0;
	}
	if (inet_pton(AF_INET6, s, &a6) == 1)
		return fail(c, n, "IPv6 not supported yet (\"%s\")", s);
	return fail(c, n, "invalid IPv4 address \"%s\"", sval(n));
}

static int v_ip4(struct pctx *c, yaml_node_t *n, void *out, const void *arg)
{
	int ret = want(c, n, YAML_SCALAR_NODE, "an IPv4 address");

	return ret ? ret : ip4(c, n, sval(n), out);
}

/* "ip" (a /32) or "ip/len"; host bits are cleared. */
static int v_cidr(struct pctx *c, yaml_node_t *n, void *out, const void *arg)
{
	struct ip_cidr *cidr = out;
	const char *slash;
	unsigned long len = 32;
	char ip[64];
	int ret;

	ret = want(c, n, YAML_SCALAR_NODE, "an IPv4 address or CIDR");
	if (ret)
		return ret;
	slash = strchr(sval(n), '/');
	if (slash) {
		if ((size_t)(slash - sval(n)) >= sizeof(ip))
			return fail(c, n, "invalid CIDR \"%s\"", sval(n));
		memcpy(ip, sval(n), slash - sval(n));
		ip[slash - sval(n)] = '\0';
		if (parse_uint(slash + 1, 128, &len))
			return fail(c, n, "invalid CIDR \"%s\"", sval(n));
	} else {
		snprintf(ip, sizeof(ip), "%s", sval(n));
	}
	ret = ip4(c, n, ip, &cidr->addr_be);
	if (ret)
		return ret;
	if (len > 32)
		return fail(c, n, "invalid CIDR \"%s\" (prefix length 0..32)",
			    sval(n));
	cidr->prefix_len = (uint8_t)len;
	cidr->addr_be &= len ? htonl(~0u << (32 - len)) : 0;
	return 0;
}

/* "network/ip"; the network may be empty ("/198.18.100.1"). */
static int v_netaddr(struct pctx *c, yaml_node_t *n, void *out,
		     const void *arg)
{
	struct net_addr *na = out;
	const char *slash;
	int ret;

	ret = want(c, n, YAML_SCALAR_NODE, "a \"network/ip\" string");
	if (ret)
		return ret;
	slash = strchr(sval(n), '/');
	if (!slash)
		return fail(c, n,
			    "expected \"network/ip\", got \"%s\" (the network may be empty: \"/%s\")",
			    sval(n), sval(n));
	ret = ip4(c, n, slash + 1, &na->addr_be);
	if (ret)
		return ret;
	na->network = state_strndup(c->st, sval(n), slash - sval(n));
	return na->network ? 0 : oom(c);
}

/* {Exact: s} | {Prefix: s} | {Suffix: s} | {Presence: []} or !Exact s... */
static int v_strmatch(struct pctx *c, yaml_node_t *n, void *out,
		      const void *arg)
{
	static const char *const hint =
		"expected a string match: {Exact: s}, {Prefix: s}, {Suffix: s} or {Presence: []}";
	struct str_match *m = out;
	yaml_node_t *k = NULL, *v = n;
	const char *tag = NULL;
	unsigned i;
	int ret;

	if (spend(c, n))
		return -EINVAL;
	if (n->type == YAML_MAPPING_NODE && map_len(n) == 1) {
		k = node(c, n->data.mapping.pairs.start->key);
		v = node(c, n->data.mapping.pairs.start->value);
		if (k->type == YAML_SCALAR_NODE)
			tag = sval(k);
	} else if (n->tag && n->tag[0] == '!' && n->tag[1] != '!') {
		tag = (const char *)n->tag + 1;
	}
	if (!tag)
		return fail(c, n, "%s", hint);
	for (i = 0; i < SM__COUNT; i++)
		if (!strcmp(tag, str_match_kind_name(i)))
			break;
	if (i == SM__COUNT)
		return fail(c, k ? k : n, "unknown string match \"%s\" (%s)",
			    tag, hint);
	m->kind = i;
	if (i == SM_PRESENCE) {
		if (is_null(v) || (v->type == YAML_SEQUENCE_NODE && !seq_len(v)))
			return 0;
		return fail(c, v, "Presence takes no value (write {Presence: []})");
	}
	ret = v_str(c, v, &m->value, NULL);
	return ret;
}

/* ---- composite values ---- */

static int parse_obj(struct pctx *c, yaml_node_t *n, const struct schema *s,
		     void *obj);

static int v_obj(struct pctx *c, yaml_node_t *n, void *out, const void *arg)
{
	return parse_obj(c, n, arg, out);
}

/* An optional sub-object held by pointer; arg is a struct vtype of it. */
static int v_objptr(struct pctx *c, yaml_node_t *n, void *out, const void *arg)
{
	const struct vtype *t = arg;
	void *obj = state_zalloc(c->st, t->size);

	if (!obj)
		return oom(c);
	*(void **)out = obj;
	return parse_obj(c, n, t->arg, obj);
}

/* Lists accept null as empty (a key with everything below commented out). */
static int parse_seq(struct pctx *c, yaml_node_t *n, const struct vtype *t,
		     void **arr, size_t *count)
{
	yaml_node_item_t *it;
	size_t i = 0, saved;
	int ret;

	if (is_null(n))
		return spend(c, n);
	ret = want(c, n, YAML_SEQUENCE_NODE, "a list");
	if (ret)
		return ret;
	*arr = state_zalloc(c->st, seq_len(n) * t->size);
	if (!*arr)
		return oom(c);
	*count = seq_len(n);
	for (it = n->data.sequence.items.start; it < n->data.sequence.items.top;
	     it++, i++) {
		saved = path_push(c, "[%zu]", i);
		ret = t->parse(c, node(c, *it), (char *)*arr + i * t->size,
			       t->arg);
		if (ret)
			return ret;
		path_restore(c, saved);
	}
	return 0;
}

static int fld_value(struct pctx *c, yaml_node_t *n, void *base,
		     const struct field *f)
{
	return f->type->parse(c, n, (char *)base + f->off, f->type->arg);
}

static int fld_list(struct pctx *c, yaml_node_t *n, void *base,
		    const struct field *f)
{
	return parse_seq(c, n, f->type, (void **)((char *)base + f->off),
			 (size_t *)((char *)base + f->n_off));
}

/* {servicePort: targetPort}; null is empty. */
static int parse_portmap(struct pctx *c, yaml_node_t *n,
			 struct port_pair **out, size_t *count)
{
	yaml_node_pair_t *p;
	struct port_pair *pp;
	size_t saved;
	int ret;

	if (is_null(n))
		return spend(c, n);
	ret = want(c, n, YAML_MAPPING_NODE,
		   "a mapping of servicePort: targetPort");
	if (ret)
		return ret;
	pp = state_zalloc(c->st, map_len(n) * sizeof(*pp));
	if (!pp)
		return oom(c);
	*out = pp;
	*count = map_len(n);
	for (p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
	     p++, pp++) {
		yaml_node_t *k = node(c, p->key);

		if (k->type == YAML_SCALAR_NODE)
			saved = path_push(c, "[\"%s\"]", sval(k));
		else
			saved = path_push(c, "[?]");
		ret = map_key_check(c, n, p);
		if (!ret)
			ret = v_port(c, k, &pp->service_port, NULL);
		if (!ret)
			ret = v_port(c, node(c, p->value), &pp->target_port,
				     NULL);
		if (ret)
			return ret;
		path_restore(c, saved);
	}
	return 0;
}

static int fld_portmap(struct pctx *c, yaml_node_t *n, void *base,
		       const struct field *f)
{
	return parse_portmap(c, n, (struct port_pair **)((char *)base + f->off),
			     (size_t *)((char *)base + f->n_off));
}

/* Workload `services`: {"namespace/hostname": {servicePort: targetPort}}. */
static int fld_wl_services(struct pctx *c, yaml_node_t *n, void *base,
			   const struct field *f)
{
	struct workload *wl = base;
	yaml_node_pair_t *p;
	size_t saved;
	int ret;

	if (is_null(n))
		return spend(c, n);
	ret = want(c, n, YAML_MAPPING_NODE,
		   "a mapping of \"namespace/hostname\": ports");
	if (ret)
		return ret;
	wl->services = state_zalloc(c->st, map_len(n) * sizeof(*wl->services));
	if (!wl->services)
		return oom(c);
	wl->n_services = map_len(n);
	for (p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
	     p++) {
		struct wl_service_ref *ref =
			&wl->services[p - n->data.mapping.pairs.start];
		yaml_node_t *k = node(c, p->key);
		const char *slash;

		saved = path_push(c, "[\"%s\"]", k->type == YAML_SCALAR_NODE ?
							 sval(k) :
							 "?");
		ret = map_key_check(c, n, p);
		if (ret)
			return ret;
		slash = strchr(sval(k), '/');
		if (!slash || slash == sval(k) || !slash[1])
			return fail(c, k,
				    "expected a \"namespace/hostname\" key, got \"%s\"",
				    sval(k));
		ref->namespace =
			state_strndup(c->st, sval(k), slash - sval(k));
		ref->hostname = state_strdup(c->st, slash + 1);
		if (!ref->namespace || !ref->hostname)
			return oom(c);
		ret = parse_portmap(c, node(c, p->value), &ref->ports,
				    &ref->n_ports);
		if (ret)
			return ret;
		path_restore(c, saved);
	}
	return 0;
}

static const struct schema endpoint_schema;

/* Service `endpoints`: {uid: {workloadUid, port, status}}. */
static int fld_endpoints(struct pctx *c, yaml_node_t *n, void *base,
			 const struct field *f)
{
	struct service *svc = base;
	yaml_node_pair_t *p;
	size_t saved;
	int ret;

	if (is_null(n))
		return spend(c, n);
	ret = want(c, n, YAML_MAPPING_NODE, "a mapping of uid: endpoint");
	if (ret)
		return ret;
	svc->endpoints =
		state_zalloc(c->st, map_len(n) * sizeof(*svc->endpoints));
	if (!svc->endpoints)
		return oom(c);
	svc->n_endpoints = map_len(n);
	for (p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = node(c, p->key);

		saved = path_push(c, "[\"%s\"]", k->type == YAML_SCALAR_NODE ?
							 sval(k) :
							 "?");
		ret = map_key_check(c, n, p);
		if (!ret)
			ret = parse_obj(
				c, node(c, p->value), &endpoint_schema,
				&svc->endpoints[p - n->data.mapping.pairs.start]);
		if (ret)
			return ret;
		path_restore(c, saved);
	}
	return 0;
}

/* {destination: "network/ip" | "namespace/hostname", hboneMtlsPort}. */
static int fld_gw_destination(struct pctx *c, yaml_node_t *n, void *base,
			      const struct field *f)
{
	struct gateway *gw = base;
	struct in6_addr a6;
	const char *s, *slash;
	int ret;

	ret = want(c, n, YAML_SCALAR_NODE,
		   "a \"network/ip\" or \"namespace/hostname\" string");
	if (ret)
		return ret;
	s = sval(n);
	slash = strchr(s, '/');
	if (!slash)
		return fail(c, n,
			    "expected \"network/ip\" or \"namespace/hostname\", got \"%s\"",
			    s);
	if (inet_pton(AF_INET6, slash + 1, &a6) == 1)
		return fail(c, n, "IPv6 not supported yet (\"%s\")", slash + 1);
	if (inet_pton(AF_INET, slash + 1, &gw->address.addr_be) == 1) {
		gw->kind = GW_ADDRESS;
		gw->address.network = state_strndup(c->st, s, slash - s);
		return gw->address.network ? 0 : oom(c);
	}
	if (slash == s || !slash[1])
		return fail(c, n, "expected \"namespace/hostname\", got \"%s\"",
			    s);
	gw->kind = GW_HOSTNAME;
	gw->namespace = state_strndup(c->st, s, slash - s);
	gw->hostname = state_strdup(c->st, slash + 1);
	return gw->namespace && gw->hostname ? 0 : oom(c);
}

/* ---- schemas ---- */

#define ENUM_TYPE(var, ...)                                                    \
	static const char *const var##_names[] = { __VA_ARGS__ };              \
	static const struct enum_desc var##_desc = {                           \
		var##_names, sizeof(var##_names) / sizeof(var##_names[0])      \
	};                                                                     \
	static const struct vtype var = { sizeof(unsigned), v_enum,            \
					  &var##_desc }

static const struct vtype t_str = { sizeof(char *), v_str, NULL };
static const struct vtype t_bool = { sizeof(bool), v_bool, NULL };
static const struct vtype t_u32 = { sizeof(uint32_t), v_u32, NULL };
static const struct vtype t_port = { sizeof(uint16_t), v_port, NULL };
static const struct vtype t_ip4 = { sizeof(uint32_t), v_ip4, NULL };
static const struct vtype t_cidr = { sizeof(struct ip_cidr), v_cidr, NULL };
static const struct vtype t_netaddr = { sizeof(struct net_addr), v_netaddr, NULL };
static const struct vtype t_strmatch = { sizeof(struct str_match), v_strmatch, NULL };

/* Spellings must stay in enum order (and agree with state.c's tables). */
ENUM_TYPE(t_protocol, "TCP", "HBONE");
ENUM_TYPE(t_status, "Healthy", "Unhealthy");
ENUM_TYPE(t_netmode, "Standard", "HostNetwork");
ENUM_TYPE(t_app_proto, "NONE", "PROXY");
ENUM_TYPE(t_lb_mode, "Standard", "Strict", "Failover", "Passthrough");
ENUM_TYPE(t_lb_health, "OnlyHealthy", "AllowAll");
ENUM_TYPE(t_lb_scope, "Region", "Zone", "Subzone", "Node", "Cluster",
	  "Network");
/* IPF_AUTOMATIC (0) has no spelling: the file expresses it by omission. */
static const char *const ipf_names[] = { "Dual", "IPv4", "IPv6" };
static const struct enum_desc ipf_desc = { ipf_names, 3 };
static int v_ipf(struct pctx *c, yaml_node_t *n, void *out, const void *arg)
{
	int ret = v_enum(c, n, out, &ipf_desc);

	if (!ret)
		*(unsigned *)out += 1;
	return ret;
}
static const struct vtype t_ipf = { sizeof(unsigned), v_ipf, NULL };
ENUM_TYPE(t_visibility, "Public", "Namespace");
ENUM_TYPE(t_pol_scope, "Global", "Namespace", "WorkloadSelector");
ENUM_TYPE(t_pol_action, "Allow", "Deny");
ENUM_TYPE(t_pa_mode, "UNSET", "PERMISSIVE", "STRICT", "DISABLE");

#define VAL(k, T, m, ty, req)                                                  \
	{                                                                      \
		.key = k, .parse = fld_value, .off = offsetof(T, m),           \
		.type = &ty, .required = req                                   \
	}
#define LIST(k, T, m, nm, ty, req)                                             \
	{                                                                      \
		.key = k, .parse = fld_list, .off = offsetof(T, m),            \
		.n_off = offsetof(T, nm), .type = &ty, .required = req         \
	}
#define CUSTOM(k, T, m, nm, fn, req)                                           \
	{                                                                      \
		.key = k, .parse = fn, .off = offsetof(T, m),                  \
		.n_off = offsetof(T, nm), .required = req                      \
	}

static const struct field gateway_fields[] = {
	{ .key = "destination", .parse = fld_gw_destination, .required = true },
	VAL("hboneMtlsPort", struct gateway, hbone_mtls_port, t_port, true),
	{ 0 },
};
static const struct schema gateway_schema = { gateway_fields };
static const struct vtype t_gateway = { sizeof(struct gateway), v_obj, &gateway_schema };

static const struct field locality_fields[] = {
	VAL("region", struct locality, region, t_str, false),
	VAL("zone", struct locality, zone, t_str, false),
	VAL("subzone", struct locality, subzone, t_str, false),
	{ 0 },
};
static const struct schema locality_schema = { locality_fields };
static const struct vtype t_locality = { sizeof(struct locality), v_obj, &locality_schema };

static const struct field app_tunnel_fields[] = {
	VAL("protocol", struct app_tunnel, protocol, t_app_proto, true),
	VAL("port", struct app_tunnel, port, t_port, false),
	{ 0 },
};
static const struct schema app_tunnel_schema = { app_tunnel_fields };
static const struct vtype t_app_tunnel_obj = { sizeof(struct app_tunnel), v_obj, &app_tunnel_schema };
static const struct vtype t_app_tunnel = { sizeof(void *), v_objptr, &t_app_tunnel_obj };

static void workload_init(void *obj)
{
	struct workload *wl = obj;

	wl->capacity = 1;
}

static int workload_finish(struct pctx *c, yaml_node_t *n, void *obj);

static const struct field workload_fields[] = {
	VAL("uid", struct workload, uid, t_str, false),
	VAL("name", struct workload, name, t_str, false),
	VAL("namespace", struct workload, namespace, t_str, true),
	VAL("trustDomain", struct workload, trust_domain, t_str, false),
	VAL("serviceAccount", struct workload, service_account, t_str, false),
	LIST("workloadIps", struct workload, ips_be, n_ips, t_ip4, true),
	VAL("waypoint", struct workload, waypoint, t_gateway, false),
	VAL("networkGateway", struct workload, network_gateway, t_gateway,
	    false),
	VAL("protocol", struct workload, protocol, t_protocol, false),
	VAL("networkMode", struct workload, network_mode, t_netmode, false),
	VAL("network", struct workload, network, t_str, false),
	VAL("workloadName", struct workload, workload_name, t_str, false),
	VAL("workloadType", struct workload, workload_type, t_str, false),
	VAL("canonicalName", struct workload, canonical_name, t_str, false),
	VAL("canonicalRevision", struct workload, canonical_revision, t_str,
	    false),
	VAL("hostname", struct workload, hostname, t_str, false),
	VAL("node", struct workload, node, t_str, false),
	VAL("nativeTunnel", struct workload, native_tunnel, t_bool, false),
	VAL("applicationTunnel", struct workload, application_tunnel,
	    t_app_tunnel, false),
	LIST("authorizationPolicies", struct workload, authorization_policies,
	     n_authorization_policies, t_str, false),
	VAL("status", struct workload, status, t_status, false),
	VAL("clusterId", struct workload, cluster_id, t_str, false),
	VAL("locality", struct workload, locality, t_locality, false),
	CUSTOM("services", struct workload, services, n_services,
	       fld_wl_services, false),
	VAL("capacity", struct workload, capacity, t_u32, false),
	{ 0 },
};
static const struct schema workload_schema = { workload_fields, workload_init,
					       workload_finish };
static const struct vtype t_workload = { sizeof(struct workload), v_obj, &workload_schema };

static const struct field endpoint_fields[] = {
	VAL("workloadUid", struct endpoint, workload_uid, t_str, true),
	CUSTOM("port", struct endpoint, ports, n_ports, fld_portmap, true),
	VAL("status", struct endpoint, status, t_status, true),
	{ 0 },
};
static const struct schema endpoint_schema = { endpoint_fields };

static const struct field net_cidr_fields[] = {
	VAL("network", struct net_cidr, network, t_str, true),
	VAL("cidr", struct net_cidr, cidr, t_cidr, true),
	{ 0 },
};
static const struct schema net_cidr_schema = { net_cidr_fields };
static const struct vtype t_net_cidr = { sizeof(struct net_cidr), v_obj, &net_cidr_schema };

static const struct field weighted_wp_fields[] = {
	VAL("destination", struct weighted_waypoint, destination, t_gateway,
	    true),
	VAL("weight", struct weighted_waypoint, weight, t_u32, true),
	{ 0 },
};
static const struct schema weighted_wp_schema = { weighted_wp_fields };
static const struct vtype t_weighted_wp = { sizeof(struct weighted_waypoint), v_obj, &weighted_wp_schema };

static const struct field lb_fields[] = {
	LIST("routingPreferences", struct load_balancer, routing_preferences,
	     n_routing_preferences, t_lb_scope, false),
	VAL("mode", struct load_balancer, mode, t_lb_mode, false),
	VAL("healthPolicy", struct load_balancer, health_policy, t_lb_health,
	    false),
	{ 0 },
};
static const struct schema lb_schema = { lb_fields };
static const struct vtype t_lb_obj = { sizeof(struct load_balancer), v_obj, &lb_schema };
static const struct vtype t_lb = { sizeof(void *), v_objptr, &t_lb_obj };

static int service_finish(struct pctx *c, yaml_node_t *n, void *obj);

static const struct field service_fields[] = {
	VAL("name", struct service, name, t_str, true),
	VAL("namespace", struct service, namespace, t_str, true),
	VAL("hostname", struct service, hostname, t_str, true),
	LIST("vips", struct service, vips, n_vips, t_netaddr, true),
	LIST("cidrVips", struct service, cidr_vips, n_cidr_vips, t_net_cidr,
	     false),
	CUSTOM("ports", struct service, ports, n_ports, fld_portmap, true),
	CUSTOM("endpoints", struct service, endpoints, n_endpoints,
	       fld_endpoints, false),
	LIST("subjectAltNames", struct service, subject_alt_names,
	     n_subject_alt_names, t_str, false),
	VAL("waypoint", struct service, waypoint, t_gateway, false),
	LIST("weightedWaypoints", struct service, weighted_waypoints,
	     n_weighted_waypoints, t_weighted_wp, false),
	VAL("loadBalancer", struct service, load_balancer, t_lb, false),
	VAL("ipFamilies", struct service, ip_families, t_ipf, false),
	VAL("canonical", struct service, canonical, t_bool, false),
	VAL("visibility", struct service, visibility, t_visibility, false),
	VAL("maxConnections", struct service, max_connections, t_u32, false),
	{ 0 },
};
static const struct schema service_schema = { service_fields, NULL,
					      service_finish };
static const struct vtype t_service = { sizeof(struct service), v_obj, &service_schema };

static const struct field sa_match_fields[] = {
	VAL("namespace", struct sa_match, namespace, t_str, true),
	VAL("serviceAccount", struct sa_match, service_account, t_str, true),
	{ 0 },
};
static const struct schema sa_match_schema = { sa_match_fields };
static const struct vtype t_sa_match = { sizeof(struct sa_match), v_obj, &sa_match_schema };

#define MLIST(k, m, ty) LIST(k, struct pol_match, m, n_##m, ty, false)
static const struct field match_fields[] = {
	MLIST("namespaces", namespaces, t_strmatch),
	MLIST("notNamespaces", not_namespaces, t_strmatch),
	MLIST("serviceAccounts", service_accounts, t_sa_match),
	MLIST("notServiceAccounts", not_service_accounts, t_sa_match),
	MLIST("principals", principals, t_strmatch),
	MLIST("notPrincipals", not_principals, t_strmatch),
	MLIST("sourceIps", source_ips, t_cidr),
	MLIST("notSourceIps", not_source_ips, t_cidr),
	MLIST("destinationIps", destination_ips, t_cidr),
	MLIST("notDestinationIps", not_destination_ips, t_cidr),
	MLIST("destinationPorts", destination_ports, t_port),
	MLIST("notDestinationPorts", not_destination_ports, t_port),
	{ 0 },
};
static const struct schema match_schema = { match_fields };
static const struct vtype t_match = { sizeof(struct pol_match), v_obj, &match_schema };

/* rules: [[[match...] clause...] rule...] */
static int v_clause(struct pctx *c, yaml_node_t *n, void *out, const void *arg)
{
	struct pol_clause *cl = out;

	return parse_seq(c, n, &t_match, (void **)&cl->matches,
			 &cl->n_matches);
}
static const struct vtype t_clause = { sizeof(struct pol_clause), v_clause, NULL };
static int v_rule(struct pctx *c, yaml_node_t *n, void *out, const void *arg)
{
	struct pol_rule *r = out;

	return parse_seq(c, n, &t_clause, (void **)&r->clauses, &r->n_clauses);
}
static const struct vtype t_rule = { sizeof(struct pol_rule), v_rule, NULL };

static int policy_finish(struct pctx *c, yaml_node_t *n, void *obj);

static const struct field policy_fields[] = {
	VAL("name", struct policy, name, t_str, true),
	VAL("namespace", struct policy, namespace, t_str, true),
	VAL("scope", struct policy, scope, t_pol_scope, true),
	VAL("action", struct policy, action, t_pol_action, true),
	LIST("rules", struct policy, rules, n_rules, t_rule, false),
	VAL("dryRun", struct policy, dry_run, t_bool, false),
	{ 0 },
};
static const struct schema policy_schema = { policy_fields, NULL,
					     policy_finish };
static const struct vtype t_policy = { sizeof(struct policy), v_obj, &policy_schema };

static const struct field peer_auth_fields[] = {
	VAL("name", struct peer_auth, name, t_str, true),
	VAL("namespace", struct peer_auth, namespace, t_str, true),
	LIST("workloads", struct peer_auth, workloads, n_workloads, t_str,
	     false),
	VAL("mode", struct peer_auth, mode, t_pa_mode, true),
	{ 0 },
};
static const struct schema peer_auth_schema = { peer_auth_fields };
static const struct vtype t_peer_auth = { sizeof(struct peer_auth), v_obj,
					  &peer_auth_schema };

static const struct field root_fields[] = {
	LIST("workloads", struct state, workloads, n_workloads, t_workload,
	     false),
	LIST("services", struct state, services, n_services, t_service, false),
	LIST("policies", struct state, policies, n_policies, t_policy, false),
	LIST("peerAuthentications", struct state, peer_auths, n_peer_auths,
	     t_peer_auth, false),
	{ 0 },
};
static const struct schema root_schema = { root_fields };

/* ---- the object walker ---- */

static int parse_obj(struct pctx *c, yaml_node_t *n, const struct schema *s,
		     void *obj)
{
	const struct field *f;
	yaml_node_pair_t *p;
	uint64_t seen = 0;
	size_t saved;
	int ret;

	ret = want(c, n, YAML_MAPPING_NODE, "a mapping");
	if (ret)
		return ret;
	if (s->init)
		s->init(obj);
	for (p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = node(c, p->key);
		const char *hint;

		ret = want(c, k, YAML_SCALAR_NODE, "a string key");
		if (ret)
			return ret;
		for (f = s->fields; f->key; f++)
			if (!strcmp(f->key, sval(k)))
				break;
		saved = path_key(c, sval(k));
		if (!f->key) {
			hint = suggest(s->fields, sval(k));
			if (hint)
				return fail(c, k,
					    "unknown key (did you mean %s?)",
					    hint);
			return fail(c, k, "unknown key");
		}
		if (seen & (1ull << (f - s->fields)))
			return fail(c, k, "duplicate key");
		seen |= 1ull << (f - s->fields);
		ret = f->parse(c, node(c, p->value), obj, f);
		if (ret)
			return ret;
		path_restore(c, saved);
	}
	for (f = s->fields; f->key; f++) {
		if (f->required && !(seen & (1ull << (f - s->fields))))
			return fail(c, n, "missing required key \"%s\"",
				    f->key);
	}
	return s->finish ? s->finish(c, n, obj) : 0;
}

/* ---- cross-object checks (run as each object completes) ---- */

static int default_str(struct pctx *c, char **s, const char *def)
{
	if (*s && **s)
		return 0;
	*s = state_strdup(c->st, def);
	return *s ? 0 : oom(c);
}

static int workload_finish(struct pctx *c, yaml_node_t *n, void *obj)
{
	struct workload *wl = obj;
	const struct workload *dup;
	yaml_node_t *v;
	size_t saved, i;
	int ret;

	/* What istiod leaves empty, ztunnel's xDS conversion defaults. */
	if (default_str(c, &wl->trust_domain, WL_DEFAULT_TRUST_DOMAIN) ||
	    default_str(c, &wl->service_account, WL_DEFAULT_SERVICE_ACCOUNT) ||
	    default_str(c, &wl->cluster_id, WL_DEFAULT_CLUSTER_ID))
		return oom(c);
	if (wl->uid) {
		ret = state_index_workload_uid(c->st, wl, &dup);
		if (ret == -EEXIST) {
			saved = path_key(c, "uid");
			ret = fail(c, map_get(c, n, "uid"),
				   "duplicate uid \"%s\" (also workloads[%zu])",
				   wl->uid, (size_t)(dup - c->st->workloads));
			path_restore(c, saved);
		}
		if (ret)
			return ret == -ENOMEM ? oom(c) : ret;
	}
	v = map_get(c, n, "workloadIps");
	for (i = 0; i < wl->n_ips; i++) {
		ret = state_index_workload_ip(c->st, wl->ips_be[i], wl, &dup);
		if (ret == -ENOMEM)
			return oom(c);
		if (ret) {
			char ip[INET_ADDRSTRLEN];

			inet_ntop(AF_INET, &wl->ips_be[i], ip, sizeof(ip));
			saved = path_push(c, ".workloadIps[%zu]", i);
			ret = fail(c,
				   node(c, v->data.sequence.items.start[i]),
				   "duplicate IP %s (also workloads[%zu])", ip,
				   (size_t)(dup - c->st->workloads));
			path_restore(c, saved);
			return ret;
		}
	}
	return 0;
}

static int service_finish(struct pctx *c, yaml_node_t *n, void *obj)
{
	struct service *svc = obj;
	const struct service *dup;
	yaml_node_t *v;
	size_t saved, i;
	int ret;

	ret = state_index_service_host(c->st, svc, &dup);
	if (ret == -EEXIST) {
		saved = path_key(c, "hostname");
		ret = fail(c, map_get(c, n, "hostname"),
			   "duplicate service %s/%s (also services[%zu])",
			   svc->namespace, svc->hostname,
			   (size_t)(dup - c->st->services));
		path_restore(c, saved);
	}
	if (ret)
		return ret == -ENOMEM ? oom(c) : ret;
	v = map_get(c, n, "vips");
	for (i = 0; i < svc->n_vips; i++) {
		ret = state_index_service_vip(c->st, svc->vips[i].addr_be, svc,
					      &dup);
		if (ret == -ENOMEM)
			return oom(c);
		if (ret) {
			char ip[INET_ADDRSTRLEN];

			inet_ntop(AF_INET, &svc->vips[i].addr_be, ip,
				  sizeof(ip));
			saved = path_push(c, ".vips[%zu]", i);
			ret = fail(c,
				   node(c, v->data.sequence.items.start[i]),
				   "duplicate VIP %s (also services[%zu])", ip,
				   (size_t)(dup - c->st->services));
			path_restore(c, saved);
			return ret;
		}
	}
	return 0;
}

static int policy_finish(struct pctx *c, yaml_node_t *n, void *obj)
{
	struct policy *pol = obj;
	const struct policy *dup;
	size_t saved;
	int ret;

	ret = state_index_policy(c->st, pol, &dup);
	if (ret == -EEXIST) {
		saved = path_key(c, "name");
		ret = fail(c, map_get(c, n, "name"),
			   "duplicate policy %s/%s (also policies[%zu])",
			   pol->namespace, pol->name,
			   (size_t)(dup - c->st->policies));
		path_restore(c, saved);
	}
	return ret == -ENOMEM ? oom(c) : ret;
}

/*
 * Service endpoints: resolve the listed ones to workloads, then add one per
 * workload whose `services` map names the service (as ztunnel does when it
 * loads a local file) unless its uid is listed already. References to
 * services that do not exist are not errors.
 */
static int link_endpoints(struct pctx *c)
{
	struct state *st = c->st;
	size_t *extra, *listed, i, j, k;
	int ret = 0;

	if (!st->n_services)
		return 0;
	extra = calloc(2 * st->n_services, sizeof(*extra));
	if (!extra)
		return oom(c);
	listed = extra + st->n_services;
	for (i = 0; i < st->n_workloads; i++) {
		for (j = 0; j < st->workloads[i].n_services; j++) {
			const struct wl_service_ref *r =
				&st->workloads[i].services[j];
			const struct service *svc = state_service_by_host(
				st, r->namespace, r->hostname);

			if (svc)
				extra[svc - st->services]++;
		}
	}
	for (k = 0; k < st->n_services; k++) {
		struct service *svc = &st->services[k];
		struct endpoint *eps;

		listed[k] = svc->n_endpoints;
		for (j = 0; j < svc->n_endpoints; j++)
			svc->endpoints[j].workload = state_workload_by_uid(
				st, svc->endpoints[j].workload_uid);
		if (!extra[k])
			continue;
		eps = state_zalloc(st, (svc->n_endpoints + extra[k]) *
					       sizeof(*eps));
		if (!eps) {
			ret = oom(c);
			goto cleanup;
		}
		if (svc->n_endpoints)
			memcpy(eps, svc->endpoints,
			       svc->n_endpoints * sizeof(*eps));
		svc->endpoints = eps;
	}
	for (i = 0; i < st->n_workloads; i++) {
		const struct workload *wl = &st->workloads[i];

		for (j = 0; j < wl->n_services; j++) {
			const struct wl_service_ref *r = &wl->services[j];
			const struct service *found = state_service_by_host(
				st, r->namespace, r->hostname);
			struct service *svc;
			struct endpoint *ep;

			if (!found)
				continue;
			svc = &st->services[found - st->services];
			for (k = 0; k < listed[svc - st->services]; k++)
				if (svc->endpoints[k].workload == wl)
					break;
			if (k < listed[svc - st->services])
				continue;
			ep = &svc->endpoints[svc->n_endpoints++];
			ep->workload_uid = wl->uid;
			ep->workload = wl;
			ep->ports = r->ports;
			ep->n_ports = r->n_ports;
			ep->status = wl->status;
		}
	}
cleanup:
	free(extra);
	return ret;
}

/* ---- entry points ---- */

static int yaml_fail(struct pctx *c, yaml_parser_t *p)
{
	if (p->error == YAML_MEMORY_ERROR)
		return oom(c);
	if (!c->err || !c->errlen)
		return -EINVAL;
	if (p->error == YAML_READER_ERROR) {
		snprintf(c->err, c->errlen,
			 "%s: YAML error: %s (at byte offset %zu)", c->name,
			 p->problem ? p->problem : "unreadable input",
			 p->problem_offset);
	} else if (p->context) {
		snprintf(c->err, c->errlen,
			 "%s:%zu:%zu: YAML syntax error: %s (%s started at line %zu, column %zu)",
			 c->name, p->problem_mark.line + 1,
			 p->problem_mark.column + 1,
			 p->problem ? p->problem : "invalid YAML", p->context,
			 p->context_mark.line + 1, p->context_mark.column + 1);
	} else {
		snprintf(c->err, c->errlen, "%s:%zu:%zu: YAML syntax error: %s",
			 c->name, p->problem_mark.line + 1,
			 p->problem_mark.column + 1,
			 p->problem ? p->problem : "invalid YAML");
	}
	return -EINVAL;
}

/*
 * Shape check: one pass over the event stream (no nodes built), so input
 * that is too deep or too large is refused in time linear in what was read
 * up to the point of refusal.
 */
static int shape_check(struct pctx *c, const char *buf, size_t len)
{
	yaml_parser_t p;
	yaml_event_t ev;
	size_t events = 0;
	int depth = 0, ret = 0;

	if (len > CONFIG_MAX_FILE_SIZE) {
		if (c->err && c->errlen)
			snprintf(c->err, c->errlen, "%s: %zu bytes: larger than %u",
				 c->name, len, CONFIG_MAX_FILE_SIZE);
		return -EFBIG;
	}
	if (!yaml_parser_initialize(&p))
		return oom(c);
	yaml_parser_set_input_string(&p, (const unsigned char *)buf, len);
	for (;;) {
		if (!yaml_parser_parse(&p, &ev)) {
			ret = yaml_fail(c, &p);
			break;
		}
		if (ev.type == YAML_SEQUENCE_START_EVENT ||
		    ev.type == YAML_MAPPING_START_EVENT) {
			if (++depth > CONFIG_MAX_DEPTH) {
				if (c->err && c->errlen)
					snprintf(c->err, c->errlen,
						 "%s:%zu:%zu: nested deeper than %d levels",
						 c->name, ev.start_mark.line + 1,
						 ev.start_mark.column + 1,
						 CONFIG_MAX_DEPTH);
				ret = -EINVAL;
			}
		} else if (ev.type == YAML_SEQUENCE_END_EVENT ||
			   ev.type == YAML_MAPPING_END_EVENT) {
			depth--;
		}
		if (!ret && ++events > CONFIG_MAX_EVENTS) {
			if (c->err && c->errlen)
				snprintf(c->err, c->errlen,
					 "%s:%zu: more than %u YAML events",
					 c->name, ev.start_mark.line + 1,
					 CONFIG_MAX_EVENTS);
			ret = -E2BIG;
		}
		if (ev.type == YAML_STREAM_END_EVENT || ret) {
			yaml_event_delete(&ev);
			break;
		}
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&p);
	return ret;
}

int config_load_buffer(const char *name, const char *buf, size_t len,
		       struct state **out, char *err, size_t errlen)
{
	struct pctx c = { .name = name ? name : "<config>",
			  .err = err,
			  .errlen = errlen };
	yaml_document_t doc, extra;
	bool have_doc = false, have_extra = false;
	yaml_parser_t parser;
	yaml_node_t *root;
	int ret;

	if (err && errlen)
		err[0] = '\0';
	ret = shape_check(&c, buf, len);
	if (ret)
		return ret;
	if (!yaml_parser_initialize(&parser))
		return oom(&c);
	yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
	c.st = state_alloc();
	if (!c.st) {
		ret = oom(&c);
		goto cleanup;
	}
	if (!yaml_parser_load(&parser, &doc)) {
		ret = yaml_fail(&c, &parser);
		goto cleanup;
	}
	have_doc = true;
	if (!yaml_parser_load(&parser, &extra)) {
		ret = yaml_fail(&c, &parser);
		goto cleanup;
	}
	have_extra = true;
	if (yaml_document_get_root_node(&extra)) {
		ret = fail(&c, yaml_document_get_root_node(&extra),
			   "only one YAML document is supported");
		goto cleanup;
	}
	c.doc = &doc;
	c.budget = 16 * (size_t)(doc.nodes.top - doc.nodes.start) + 100000;
	root = yaml_document_get_root_node(&doc);
	if (root && !is_null(root)) {
		if (root->type != YAML_MAPPING_NODE) {
			ret = fail(&c, root,
				   "expected a mapping with workloads, services, policies and peerAuthentications, got %s",
				   kind(root));
			goto cleanup;
		}
		ret = parse_obj(&c, root, &root_schema, c.st);
		if (ret)
			goto cleanup;
		ret = link_endpoints(&c);
		if (ret)
			goto cleanup;
	}
	*out = c.st;
	c.st = NULL;
	ret = 0;
cleanup:
	state_unref(c.st);
	if (have_extra)
		yaml_document_delete(&extra);
	if (have_doc)
		yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	return ret;
}

int config_load_file(const char *path, struct state **out, char *err,
		     size_t errlen)
{
	const char *what = "cannot read";
	char *buf = NULL;
	size_t len = 0;
	struct stat sb;
	ssize_t r;
	int fd, ret;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		what = "cannot open";
		goto cleanup;
	}
	if (fstat(fd, &sb)) {
		ret = -errno;
		goto cleanup;
	}
	if (!S_ISREG(sb.st_mode)) {
		ret = -EINVAL;
		what = "not a regular file";
		goto cleanup;
	}
	if (sb.st_size > CONFIG_MAX_FILE_SIZE) {
		ret = -EFBIG;
		what = "file too large";
		goto cleanup;
	}
	buf = malloc((size_t)sb.st_size + 1);
	if (!buf) {
		ret = -ENOMEM;
		goto cleanup;
	}
	/* Read to EOF; a file that grows meanwhile is being rewritten. */
	for (;;) {
		r = read(fd, buf + len, (size_t)sb.st_size + 1 - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			ret = -errno;
			goto cleanup;
		}
		if (r == 0)
			break;
		len += (size_t)r;
		if (len > (size_t)sb.st_size) {
			ret = -EAGAIN;
			what = "file changed while reading";
			goto cleanup;
		}
	}
	ret = config_load_buffer(path, buf, len, out, err, errlen);
	what = NULL; /* config_load_buffer() wrote the message */
cleanup:
	if (ret && what && err && errlen)
		snprintf(err, errlen, "%s: %s: %s", path, what, strerror(-ret));
	free(buf);
	if (fd >= 0)
		close(fd);
	return ret;
}
