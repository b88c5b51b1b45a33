// SPDX-License-Identifier: Apache-2.0
/*
 * Snapshot memory and indexes. All memory of a snapshot comes from one arena
 * (a list of chunks) so that a snapshot is freed in one sweep and a builder
 * that fails half-way cannot leak: it drops its only reference.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "state.h"

#include <arpa/inet.h>

#define ARENA_CHUNK (64u * 1024)
#define ARENA_ALIGN 16u

struct chunk {
	struct chunk *next;
	size_t size; /* usable bytes after the header */
	size_t used;
	_Alignas(16) unsigned char data[];
};

/* Open addressing, linear probing; val == NULL marks a free slot. */
struct imap_ent {
	uint32_t key;
	const void *val;
};

struct imap {
	struct imap_ent *ents;
	size_t cap; /* power of two or 0 */
	size_t n;
};

struct smap_ent {
	uint64_t hash;
	const char *key; /* arena-owned */
	const void *val;
};

struct smap {
	struct smap_ent *ents;
	size_t cap;
	size_t n;
};

struct state_priv {
	struct chunk *chunks;
	struct imap wl_by_ip;
	struct imap svc_by_vip;
	struct smap wl_by_uid;
	struct smap svc_by_host;
	struct smap pol_by_key;
};

static atomic_uint_fast64_t next_generation = 1;

#define NAME_TABLE(fn, type, ...)                                              \
	const char *fn(type v)                                                 \
	{                                                                      \
		static const char *const names[] = { __VA_ARGS__ };            \
		if ((unsigned)v >= sizeof(names) / sizeof(names[0]))           \
			return "?";                                            \
		return names[v];                                               \
	}

/* Spellings are the YAML ones (and ztunnel's config_dump's). */
NAME_TABLE(wl_protocol_name, enum wl_protocol, "TCP", "HBONE")
NAME_TABLE(wl_status_name, enum wl_status, "Healthy", "Unhealthy")
NAME_TABLE(wl_network_mode_name, enum wl_network_mode, "Standard",
	   "HostNetwork")
NAME_TABLE(app_tunnel_protocol_name, enum app_tunnel_protocol, "NONE", "PROXY")
NAME_TABLE(lb_mode_name, enum lb_mode, "Standard", "Strict", "Failover",
	   "Passthrough")
NAME_TABLE(lb_health_policy_name, enum lb_health_policy, "OnlyHealthy",
	   "AllowAll")
NAME_TABLE(lb_scope_name, enum lb_scope, "Region", "Zone", "Subzone", "Node",
	   "Cluster", "Network")
NAME_TABLE(ip_families_name, enum ip_families, "Automatic", "Dual", "IPv4",
	   "IPv6")
NAME_TABLE(svc_visibility_name, enum svc_visibility, "Public", "Namespace")
NAME_TABLE(pol_scope_name, enum pol_scope, "Global", "Namespace",
	   "WorkloadSelector")
NAME_TABLE(pol_action_name, enum pol_action, "Allow", "Deny")
NAME_TABLE(str_match_kind_name, enum str_match_kind, "Exact", "Prefix",
	   "Suffix", "Presence")
NAME_TABLE(peer_auth_mode_name, enum peer_auth_mode, "UNSET", "PERMISSIVE",
	   "STRICT", "DISABLE")

uint32_t ip_cidr_mask(uint8_t prefix_len)
{
	return prefix_len ? htonl(~0u << (32 - prefix_len)) : 0;
}

bool ip_cidr_covers(const struct ip_cidr *cidr, uint32_t addr_be, uint8_t len)
{
	uint32_t m = ip_cidr_mask(cidr->prefix_len);

	return cidr->prefix_len <= len && (addr_be & m) == (cidr->addr_be & m);
}

static void arena_free(struct chunk *c)
{
	while (c) {
		struct chunk *next = c->next;

		free(c);
		c = next;
	}
}

void *state_zalloc(struct state *st, size_t n)
{
	struct state_priv *p = st->priv;
	struct chunk *c = p->chunks;
	size_t need = (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
	void *mem;

	if (need < n)
		return NULL;
	if (!need)
		need = ARENA_ALIGN;
	if (!c || c->size - c->used < need) {
		size_t size = need > ARENA_CHUNK / 4 ? need : ARENA_CHUNK;

		c = malloc(sizeof(*c) + size);
		if (!c)
			return NULL;
		c->size = size;
		c->used = 0;
		if (size == ARENA_CHUNK || !p->chunks) {
			c->next = p->chunks;
			p->chunks = c;
		} else {
			/* Keep the partly used chunk in front for small ones. */
			c->next = p->chunks->next;
			p->chunks->next = c;
		}
	}
	mem = c->data + c->used;
	c->used += need;
	memset(mem, 0, need);
	return mem;
}

char *state_strndup(struct state *st, const char *s, size_t n)
{
	char *d = state_zalloc(st, n + 1);

	if (d)
		memcpy(d, s, n);
	return d;
}

char *state_strdup(struct state *st, const char *s)
{
	return state_strndup(st, s, strlen(s));
}

struct state *state_alloc(void)
{
	struct state *st = calloc(1, sizeof(*st));

	if (!st)
		return NULL;
	st->priv = calloc(1, sizeof(*st->priv));
	if (!st->priv) {
		free(st);
		return NULL;
	}
	atomic_init(&st->refcnt, 1);
	st->generation = atomic_fetch_add(&next_generation, 1);
	return st;
}

struct state *state_new_empty(void)
{
	return state_alloc();
}

struct state *state_ref(struct state *st)
{
	if (st)
		atomic_fetch_add_explicit(&st->refcnt, 1, memory_order_relaxed);
	return st;
}

void state_unref(struct state *st)
{
	struct state_priv *p;

	if (!st)
		return;
	/* acq_rel: everything other holders did happens before the free. */
	if (atomic_fetch_sub_explicit(&st->refcnt, 1, memory_order_acq_rel) != 1)
		return;
	if (st->finalize)
		st->finalize(st);
	p = st->priv;
	free(p->wl_by_ip.ents);
	free(p->svc_by_vip.ents);
	free(p->wl_by_uid.ents);
	free(p->svc_by_host.ents);
	free(p->pol_by_key.ents);
	arena_free(p->chunks);
	free(p);
	free(st);
}

/* ---- IPv4-keyed map ---- */

static size_t imap_slot(uint32_t key, size_t cap)
{
	return (size_t)(((uint64_t)key * 0x9E3779B97F4A7C15ull) >> 32) &
	       (cap - 1);
}

static const void *imap_get(const struct imap *m, uint32_t key)
{
	size_t i;

	if (!m->cap)
		return NULL;
	for (i = imap_slot(key, m->cap); m->ents[i].val;
	     i = (i + 1) & (m->cap - 1)) {
		if (m->ents[i].key == key)
			return m->ents[i].val;
	}
	return NULL;
}

static int imap_grow(struct imap *m)
{
	size_t cap = m->cap ? m->cap * 2 : 16, i, j;
	struct imap_ent *ents = calloc(cap, sizeof(*ents));

	if (!ents)
		return -ENOMEM;
	for (i = 0; i < m->cap; i++) {
		if (!m->ents[i].val)
			continue;
		for (j = imap_slot(m->ents[i].key, cap); ents[j].val;
		     j = (j + 1) & (cap - 1))
			;
		ents[j] = m->ents[i];
	}
	free(m->ents);
	m->ents = ents;
	m->cap = cap;
	return 0;
}

static int imap_put(struct imap *m, uint32_t key, const void *val,
		    const void **dup)
{
	const void *old = imap_get(m, key);
	size_t i;

	if (old) {
		if (dup)
			*dup = old;
		return -EEXIST;
	}
	/* Load factor <= 1/2 keeps probe sequences short. */
	if ((m->n + 1) * 2 > m->cap && imap_grow(m))
		return -ENOMEM;
	for (i = imap_slot(key, m->cap); m->ents[i].val;
	     i = (i + 1) & (m->cap - 1))
		;
	m->ents[i].key = key;
	m->ents[i].val = val;
	m->n++;
	return 0;
}

/* ---- string-keyed map; a key is "a" or "a/b" (compared without copying) */

static uint64_t hash_parts(const char *a, const char *b)
{
	uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
	const char *s;

	for (s = a; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
	if (b) {
		h = (h ^ '/') * 0x100000001b3ull;
		for (s = b; *s; s++)
			h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
	}
	return h;
}

static bool key_eq(const char *key, const char *a, const char *b)
{
	size_t la = strlen(a);

	if (strncmp(key, a, la))
		return false;
	if (!b)
		return key[la] == '\0';
	return key[la] == '/' && !strcmp(key + la + 1, b);
}

static const void *smap_get(const struct smap *m, const char *a, const char *b)
{
	uint64_t h;
	size_t i;

	if (!m->cap || !a)
		return NULL;
	h = hash_parts(a, b);
	for (i = h & (m->cap - 1); m->ents[i].val; i = (i + 1) & (m->cap - 1)) {
		if (m->ents[i].hash == h && key_eq(m->ents[i].key, a, b))
			return m->ents[i].val;
	}
	return NULL;
}

static int smap_grow(struct smap *m)
{
	size_t cap = m->cap ? m->cap * 2 : 16, i, j;
	struct smap_ent *ents = calloc(cap, sizeof(*ents));

	if (!ents)
		return -ENOMEM;
	for (i = 0; i < m->cap; i++) {
		if (!m->ents[i].val)
			continue;
		for (j = m->ents[i].hash & (cap - 1); ents[j].val;
		     j = (j + 1) & (cap - 1))
			;
		ents[j] = m->ents[i];
	}
	free(m->ents);
	m->ents = ents;
	m->cap = cap;
	return 0;
}

static int smap_put(struct state *st, struct smap *m, const char *a,
		    const char *b, const void *val, const void **dup)
{
	const void *old = smap_get(m, a, b);
	size_t la = strlen(a), lb = b ? strlen(b) : 0, i;
	uint64_t h = hash_parts(a, b);
	char *key;

	if (old) {
		if (dup)
			*dup = old;
		return -EEXIST;
	}
	key = state_zalloc(st, la + lb + 2);
	if (!key)
		return -ENOMEM;
	memcpy(key, a, la);
	if (b) {
		key[la] = '/';
		memcpy(key + la + 1, b, lb);
	}
	if ((m->n + 1) * 2 > m->cap && smap_grow(m))
		return -ENOMEM;
	for (i = h & (m->cap - 1); m->ents[i].val; i = (i + 1) & (m->cap - 1))
		;
	m->ents[i].hash = h;
	m->ents[i].key = key;
	m->ents[i].val = val;
	m->n++;
	return 0;
}

int state_index_workload_ip(struct state *st, uint32_t addr_be,
			    const struct workload *wl,
			    const struct workload **dup)
{
	return imap_put(&st->priv->wl_by_ip, addr_be, wl, (const void **)dup);
}

int state_index_workload_uid(struct state *st, const struct workload *wl,
			     const struct workload **dup)
{
	return smap_put(st, &st->priv->wl_by_uid, wl->uid, NULL, wl,
			(const void **)dup);
}

int state_index_service_vip(struct state *st, uint32_t addr_be,
			    const struct service *svc,
			    const struct service **dup)
{
	return imap_put(&st->priv->svc_by_vip, addr_be, svc,
			(const void **)dup);
}

int state_index_service_host(struct state *st, const struct service *svc,
			     const struct service **dup)
{
	return smap_put(st, &st->priv->svc_by_host, svc->namespace,
			svc->hostname, svc, (const void **)dup);
}

int state_index_policy(struct state *st, const struct policy *pol,
		       const struct policy **dup)
{
	return smap_put(st, &st->priv->pol_by_key, pol->namespace, pol->name,
			pol, (const void **)dup);
}

const struct policy *state_policy_by_key(const struct state *st,
					 const char *ns, const char *name)
{
	return smap_get(&st->priv->pol_by_key, ns, name);
}

const struct workload *state_workload_by_ip(const struct state *st,
					    uint32_t addr_be)
{
	return imap_get(&st->priv->wl_by_ip, addr_be);
}

const struct workload *state_workload_by_uid(const struct state *st,
					     const char *uid)
{
	return smap_get(&st->priv->wl_by_uid, uid, NULL);
}

const struct service *state_service_by_vip(const struct state *st,
					   uint32_t addr_be)
{
	return imap_get(&st->priv->svc_by_vip, addr_be);
}

const struct service *state_service_by_host(const struct state *st,
					    const char *ns, const char *host)
{
	if (!ns || !host)
		return NULL;
	return smap_get(&st->priv->svc_by_host, ns, host);
}

int state_workloads_on_node(const struct state *st, const char *node,
			    int (*cb)(const struct workload *wl, void *arg),
			    void *arg)
{
	size_t i;
	int ret;

	for (i = 0; i < st->n_workloads; i++) {
		const struct workload *wl = &st->workloads[i];

		if (!wl->node || !node || strcmp(wl->node, node))
			continue;
		ret = cb(wl, arg);
		if (ret)
			return ret;
	}
	return 0;
}
