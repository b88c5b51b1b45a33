// SPDX-License-Identifier: Apache-2.0
/* Policy fast path compiler and map sync (see polmap.h). */
#include "polmap.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authz.h"

/* ---- ids ---- */

struct polmap_ids {
	char names[AMB_MAX_POL_IDS][AMB_POL_NAME_LEN];
};

#define ALLOWED_NAME "(allowed)"

struct polmap_ids *polmap_ids_new(int names_fd)
{
	struct polmap_ids *ids = calloc(1, sizeof(*ids));

	if (!ids)
		return NULL;
	if (names_fd >= 0) {
		for (uint32_t i = 0; i < AMB_MAX_POL_IDS; i++) {
			struct amb_pol_name n;

			if (bpf_map_lookup_elem(names_fd, &i, &n) == 0) {
				n.name[AMB_POL_NAME_LEN - 1] = '\0';
				memcpy(ids->names[i], n.name, sizeof(n.name));
			}
		}
	}
	snprintf(ids->names[0], AMB_POL_NAME_LEN, "%s", ALLOWED_NAME);
	return ids;
}

void polmap_ids_free(struct polmap_ids *ids)
{
	free(ids);
}

const char *polmap_id_name(const struct polmap_ids *ids, uint32_t id)
{
	return id < AMB_MAX_POL_IDS && ids->names[id][0] ? ids->names[id] : NULL;
}

/* The slot for name, allocated if new. 0 or -ENOSPC. */
static int id_for(struct polmap_ids *ids, const char *name, uint32_t *id)
{
	uint32_t free_slot = 0;

	for (uint32_t i = 1; i < AMB_MAX_POL_IDS; i++) {
		if (!ids->names[i][0]) {
			if (!free_slot)
				free_slot = i;
			continue;
		}
		if (strncmp(ids->names[i], name, AMB_POL_NAME_LEN - 1) == 0) {
			*id = i;
			return 0;
		}
	}
	if (!free_slot)
		return -ENOSPC;
	snprintf(ids->names[free_slot], AMB_POL_NAME_LEN, "%.*s",
		 AMB_POL_NAME_LEN - 1, name);
	*id = free_slot;
	return 0;
}

/* ---- compiling ---- */

void polmap_free(struct polmap *pm)
{
	free(pm->e);
	*pm = (struct polmap){ 0 };
}

static int push(struct polmap *pm, const struct polmap_entry *e)
{
	if (pm->n == pm->cap) {
		size_t cap = pm->cap ? pm->cap * 2 : 64;
		struct polmap_entry *ne = realloc(pm->e, cap * sizeof(*ne));

		if (!ne)
			return -ENOMEM;
		pm->e = ne;
		pm->cap = cap;
	}
	pm->e[pm->n++] = *e;
	return 0;
}

/* Small growable sets of ports and prefixes. */
struct vec {
	void *v;
	size_t n, cap, size;
};

static int vec_add(struct vec *x, const void *item)
{
	for (size_t i = 0; i < x->n; i++)
		if (!memcmp((char *)x->v + i * x->size, item, x->size))
			return 0;
	if (x->n == x->cap) {
		size_t cap = x->cap ? x->cap * 2 : 16;
		void *nv = realloc(x->v, cap * x->size);

		if (!nv)
			return -ENOMEM;
		x->v = nv;
		x->cap = cap;
	}
	memcpy((char *)x->v + x->n++ * x->size, item, x->size);
	return 0;
}

static struct ip_cidr norm(struct ip_cidr c)
{
	c.addr_be &= ip_cidr_mask(c.prefix_len);
	return c;
}

struct collect {
	struct vec ports, nets;
	bool any;
	int err;
};

static int collect_one(const struct policy *p, void *arg)
{
	struct collect *k = arg;

	if (p->dry_run)
		return 0;
	k->any = true;
	for (size_t r = 0; r < p->n_rules; r++)
		for (size_t c = 0; c < p->rules[r].n_clauses; c++) {
			const struct pol_clause *cl = &p->rules[r].clauses[c];

			for (size_t m = 0; m < cl->n_matches; m++) {
				const struct pol_match *x = &cl->matches[m];
				struct ip_cidr n;

				for (size_t i = 0; i < x->n_destination_ports; i++)
					k->err |= vec_add(&k->ports, &x->destination_ports[i]);
				for (size_t i = 0; i < x->n_not_destination_ports; i++)
					k->err |= vec_add(&k->ports, &x->not_destination_ports[i]);
				for (size_t i = 0; i < x->n_source_ips; i++) {
					n = norm(x->source_ips[i]);
					k->err |= vec_add(&k->nets, &n);
				}
				for (size_t i = 0; i < x->n_not_source_ips; i++) {
					n = norm(x->not_source_ips[i]);
					k->err |= vec_add(&k->nets, &n);
				}
			}
		}
	return 0;
}

static int by_prefix_len(const void *a, const void *b)
{
	const struct ip_cidr *x = a, *y = b;

	if (x->prefix_len != y->prefix_len)
		return x->prefix_len - y->prefix_len;
	return memcmp(&x->addr_be, &y->addr_be, 4);
}

static bool same(const struct amb_pol_verdict *a, const struct amb_pol_verdict *b)
{
	return a->deny == b->deny && a->policy_id == b->policy_id &&
	       a->reason == b->reason;
}

/* The kernel value for one decision; allow values are all alike. */
static int verdict_of(const struct authz_result *r, struct polmap_ids *ids,
		      struct amb_pol_verdict *v)
{
	char name[AMB_POL_NAME_LEN * 2];

	memset(v, 0, sizeof(*v));
	if (r->verdict == AUTHZ_ALLOW)
		return 0;
	v->deny = 1;
	v->reason = (uint8_t)r->reason;
	if (r->policy)
		snprintf(name, sizeof(name), "%s/%s", r->policy->namespace,
			 r->policy->name);
	else if (r->peer_auth)
		snprintf(name, sizeof(name), "(STRICT) %s/%s",
			 r->peer_auth->namespace, r->peer_auth->name);
	else
		snprintf(name, sizeof(name), "(%s)", authz_reason_name(r->reason));
	name[AMB_POL_NAME_LEN - 1] = '\0';
	return id_for(ids, name, &v->policy_id);
}

int polmap_compile(const struct state *st, const struct workload *wl,
		   uint32_t addr, struct polmap_ids *ids, struct polmap *out)
{
	struct collect k = { .ports = { .size = sizeof(uint16_t) },
			     .nets = { .size = sizeof(struct ip_cidr) } };
	struct amb_pol_verdict *vals = NULL, *base;
	const struct ip_cidr root = { 0, 0 };
	const uint16_t any_port = 0;
	size_t saved = out->n, np, nn;
	bool base_emitted = false;
	int err = 0;

	authz_for_each_policy(st, wl, collect_one, &k);
	if (!k.any && authz_peer_auth_mode(st, wl, NULL) != PA_MODE_STRICT)
		goto done; /* nothing to decide: every plaintext caller passes */
	/* Port 0 first: the fallback the others are compared with. */
	if (vec_add(&k.nets, &root) || k.err) {
		err = -ENOMEM;
		goto done;
	}
	{
		struct vec ports = { .size = sizeof(uint16_t) };

		err = vec_add(&ports, &any_port);
		for (size_t i = 0; i < k.ports.n && !err; i++)
			err = vec_add(&ports, (uint16_t *)k.ports.v + i);
		free(k.ports.v);
		k.ports = ports;
		if (err)
			goto done;
	}
	np = k.ports.n;
	nn = k.nets.n;
	qsort(k.nets.v, nn, sizeof(struct ip_cidr), by_prefix_len);
	vals = calloc(np * nn, sizeof(*vals));
	if (!vals) {
		err = -ENOMEM;
		goto done;
	}
	for (size_t p = 0; p < np; p++) {
		for (size_t i = 0; i < nn; i++) {
			const struct ip_cidr *n = (struct ip_cidr *)k.nets.v + i;
			struct authz_conn c = {
				.identity = NULL,
				.src_be = n->addr_be,
				.src_prefix_len = n->prefix_len,
				.dst_be = addr,
				.dst_port = ((uint16_t *)k.ports.v)[p],
			};
			struct authz_result r;

			authz_evaluate(st, wl, &c, &r);
			err = verdict_of(&r, ids, &vals[p * nn + i]);
			if (err)
				goto done;
		}
	}
	base = vals;
	for (size_t p = 0; p < np; p++) {
		struct amb_pol_verdict *row = vals + p * nn;
		bool any_deny = false, differs = false;

		for (size_t i = 0; i < nn; i++) {
			any_deny |= row[i].deny;
			differs |= !same(&row[i], &base[i]);
		}
		/* Port 0 is needed only if it denies someone; another port
		 * only where it differs from what port 0 (or no entry at
		 * all, i.e. allow) would give. */
		if (p == 0 ? !any_deny : !differs || (!base_emitted && !any_deny))
			continue;
		if (p == 0)
			base_emitted = true;
		for (size_t i = 0; i < nn; i++) {
			const struct ip_cidr *n = (struct ip_cidr *)k.nets.v + i;
			const struct amb_pol_verdict *parent = NULL;
			struct polmap_entry e = { 0 };

			/* Nearest listed ancestor: the entry the lookup
			 * would find if this one were left out. */
			for (size_t j = i; j-- > 0;) {
				if (ip_cidr_covers((struct ip_cidr *)k.nets.v + j, n->addr_be, n->prefix_len)) {
					parent = &row[j];
					break;
				}
			}
			if (parent && same(parent, &row[i]))
				continue;
			e.key.prefixlen = AMB_POL_FIXED_BITS + n->prefix_len;
			e.key.daddr = addr;
			e.key.dport = htons(((uint16_t *)k.ports.v)[p]);
			e.key.saddr = n->addr_be;
			e.val = row[i];
			err = push(out, &e);
			if (err)
				goto done;
		}
	}
done:
	if (err)
		out->n = saved;
	free(vals);
	free(k.ports.v);
	free(k.nets.v);
	return err;
}

/* ---- syncing ---- */

static int key_cmp(const void *a, const void *b)
{
	return memcmp(a, b, sizeof(struct amb_pol_key));
}

int polmap_sync(int pol_fd, int names_fd, const struct polmap_ids *ids,
		const struct polmap *pm)
{
	struct amb_pol_key *want = NULL, cur, next, *stale = NULL;
	size_t n_stale = 0, cap_stale = 0;
	int err = 0;

	for (uint32_t i = 0; i < AMB_MAX_POL_IDS; i++) {
		struct amb_pol_name n = { 0 };

		if (!ids->names[i][0])
			continue;
		memcpy(n.name, ids->names[i], sizeof(n.name));
		if (bpf_map_update_elem(names_fd, &i, &n, BPF_ANY) < 0)
			return -errno;
	}
	for (size_t i = 0; i < pm->n; i++)
		if (bpf_map_update_elem(pol_fd, &pm->e[i].key, &pm->e[i].val,
					BPF_ANY) < 0)
			return -errno;

	want = malloc((pm->n ? pm->n : 1) * sizeof(*want));
	if (!want)
		return -ENOMEM;
	for (size_t i = 0; i < pm->n; i++)
		want[i] = pm->e[i].key;
	qsort(want, pm->n, sizeof(*want), key_cmp);
	/* Collect first, delete after: deleting while walking would make
	 * get_next_key restart. */
	for (int r = bpf_map_get_next_key(pol_fd, NULL, &next); r == 0;
	     r = bpf_map_get_next_key(pol_fd, &cur, &next)) {
		cur = next;
		if (bsearch(&cur, want, pm->n, sizeof(*want), key_cmp))
			continue;
		if (n_stale == cap_stale) {
			size_t cap = cap_stale ? cap_stale * 2 : 64;
			struct amb_pol_key *ns = realloc(stale, cap * sizeof(*ns));

			if (!ns) {
				err = -ENOMEM;
				goto out;
			}
			stale = ns;
			cap_stale = cap;
		}
		stale[n_stale++] = cur;
	}
	for (size_t i = 0; i < n_stale; i++)
		if (bpf_map_delete_elem(pol_fd, &stale[i]) < 0 && errno != ENOENT &&
		    !err)
			err = -errno;
out:
	free(stale);
	free(want);
	return err;
}
