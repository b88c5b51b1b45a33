// SPDX-License-Identifier: Apache-2.0
/*
 * HBONE connection pool (see pool.h).
 *
 * Keys are reduced to a canonical byte string (source identity, the sorted
 * and de-duplicated destination identities, destination family/address/
 * port, source family/address) that is hashed (FNV-1a) into a chained hash
 * table of entries. An entry holds the key's connections, its queue of
 * waiters and whether a connect is in flight.
 *
 * Entry lifetime: an entry exists while it has a connection, a waiter or a
 * connect in flight. Callbacks we make (waiters, connect) may re-enter the
 * pool; `busy` keeps the entry alive until the caller up the stack is done.
 */
#include "pool.h"

#include "hbone.h"
#include "log.h"
#include "loop.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#define POOL_DEF_MAX_STREAMS 100
#define POOL_DEF_IDLE_MS     (5 * 60 * 1000)

struct pool_entry;

struct pool_conn {
	struct pool_conn *next;
	struct pool_entry *e;
	struct hb_conn *c;
	struct loop_timer idle;
};

struct pool_waiter {
	struct pool_waiter *next;
	struct pool_entry *e;
	pool_ready_cb cb;
	void *arg;
};

struct pool_entry {
	struct pool_entry *hnext;
	uint64_t hash;
	struct pool *p;
	struct pool_conn *conns;
	struct pool_waiter *wait_head, *wait_tail;
	bool connecting;
	int busy;
	/* The key as handed to the connect callback; points into this. */
	struct pool_key key;
	struct sockaddr_storage dst, src;
	const char **ids;
	size_t klen;
	uint8_t kbytes[]; /* canonical key, then the id strings' storage */
};

struct pool {
	struct loop *loop;
	struct pool_opts o;
	struct pool_entry **buckets;
	size_t nbuckets, nentries;
	struct pool_stats st;
};

/* ---- keys ---- */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* family(1) addr(16) port(2) of an AF_INET/AF_INET6 address, or zeros. */
static int addr_put(const struct sockaddr *sa, bool port, uint8_t *out)
{
	memset(out, 0, 19);
	if (!sa)
		return 0;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;

		out[0] = 4;
		memcpy(out + 1, &in->sin_addr, 4);
		if (port)
			memcpy(out + 17, &in->sin_port, 2);
		return 0;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;

		out[0] = 6;
		memcpy(out + 1, &in6->sin6_addr, 16);
		if (port)
			memcpy(out + 17, &in6->sin6_port, 2);
		return 0;
	}
	return -EINVAL;
}

static size_t sa_len(const struct sockaddr *sa)
{
	return sa->sa_family == AF_INET ? sizeof(struct sockaddr_in)
					: sizeof(struct sockaddr_in6);
}

/*
 * Canonical bytes of key into a new buffer (*out, *len). Sorted ids are
 * returned in *sorted (an array into key's strings; caller frees).
 */
static int key_canon(const struct pool_key *key, uint8_t **out, size_t *len,
		     const char ***sorted, size_t *nsorted)
{
	const char **ids = NULL;
	size_t n = 0, total;
	uint8_t *b, *p;
	int err = -EINVAL;

	if (!key || !key->src_identity || !key->dst ||
	    (key->n_dst_identities && !key->dst_identities))
		return -EINVAL;
	if (key->n_dst_identities) {
		ids = malloc(key->n_dst_identities * sizeof(*ids));
		if (!ids)
			return -ENOMEM;
		for (size_t i = 0; i < key->n_dst_identities; i++)
			if (key->dst_identities[i])
				ids[n++] = key->dst_identities[i];
		qsort(ids, n, sizeof(*ids), cmp_str);
		if (n) {
			size_t j = 1;

			for (size_t i = 1; i < n; i++)
				if (strcmp(ids[i], ids[j - 1]))
					ids[j++] = ids[i];
			n = j;
		}
	}
	total = strlen(key->src_identity) + 1 + 1 + 2 * 19;
	for (size_t i = 0; i < n; i++)
		total += strlen(ids[i]) + 1;
	b = malloc(total);
	if (!b) {
		err = -ENOMEM;
		goto cleanup;
	}
	p = b;
	p = (uint8_t *)stpcpy((char *)p, key->src_identity) + 1;
	for (size_t i = 0; i < n; i++)
		p = (uint8_t *)stpcpy((char *)p, ids[i]) + 1;
	*p++ = 0x01; /* ends the id list: "a","b" differs from "a\0b" */
	if (addr_put(key->dst, true, p) || addr_put(key->src, false, p + 19)) {
		free(b);
		goto cleanup;
	}
	p += 2 * 19;
	*out = b;
	*len = (size_t)(p - b);
	*sorted = ids;
	*nsorted = n;
	return 0;

cleanup:
	free(ids);
	return err;
}

static uint64_t fnv1a(const uint8_t *b, size_t len)
{
	uint64_t h = 1469598103934665603ull;

	for (size_t i = 0; i < len; i++) {
		h ^= b[i];
		h *= 1099511628211ull;
	}
	return h;
}

static struct pool_entry *entry_find(struct pool *p, const uint8_t *kb,
				     size_t klen, uint64_t h)
{
	struct pool_entry *e;

	if (!p->nbuckets)
		return NULL;
	for (e = p->buckets[h & (p->nbuckets - 1)]; e; e = e->hnext)
		if (e->hash == h && e->klen == klen &&
		    !memcmp(e->kbytes, kb, klen))
			return e;
	return NULL;
}

static int table_grow(struct pool *p)
{
	size_t n = p->nbuckets ? p->nbuckets * 2 : 16;
	struct pool_entry **b = calloc(n, sizeof(*b));

	if (!b)
		return -ENOMEM;
	for (size_t i = 0; i < p->nbuckets; i++) {
		struct pool_entry *e = p->buckets[i], *next;

		for (; e; e = next) {
			next = e->hnext;
			e->hnext = b[e->hash & (n - 1)];
			b[e->hash & (n - 1)] = e;
		}
	}
	free(p->buckets);
	p->buckets = b;
	p->nbuckets = n;
	return 0;
}

/* Looks key up; with `create`, makes the entry if missing. */
static int entry_get(struct pool *p, const struct pool_key *key, bool create,
		     struct pool_entry **out)
{
	const char **ids = NULL;
	size_t klen, nids, slen = 0;
	struct pool_entry *e;
	uint8_t *kb = NULL;
	uint64_t h;
	char *str;
	int err;

	err = key_canon(key, &kb, &klen, &ids, &nids);
	if (err)
		return err;
	h = fnv1a(kb, klen);
	e = entry_find(p, kb, klen, h);
	if (e || !create) {
		err = e ? 0 : -ENOENT;
		goto cleanup;
	}
	if (p->nentries >= p->nbuckets && (err = table_grow(p)))
		goto cleanup;
	slen = strlen(key->src_identity) + 1;
	for (size_t i = 0; i < nids; i++)
		slen += strlen(ids[i]) + 1;
	e = calloc(1, sizeof(*e) + klen + slen);
	if (!e || (nids && !(e->ids = calloc(nids, sizeof(*e->ids))))) {
		free(e);
		e = NULL;
		err = -ENOMEM;
		goto cleanup;
	}
	e->p = p;
	e->hash = h;
	e->klen = klen;
	memcpy(e->kbytes, kb, klen);
	str = (char *)e->kbytes + klen;
	e->key.src_identity = str;
	str = stpcpy(str, key->src_identity) + 1;
	for (size_t i = 0; i < nids; i++) {
		e->ids[i] = str;
		str = stpcpy(str, ids[i]) + 1;
	}
	e->key.dst_identities = (const char *const *)e->ids;
	e->key.n_dst_identities = nids;
	memcpy(&e->dst, key->dst, sa_len(key->dst));
	e->key.dst = (struct sockaddr *)&e->dst;
	if (key->src) {
		memcpy(&e->src, key->src, sa_len(key->src));
		e->key.src = (struct sockaddr *)&e->src;
	}
	e->hnext = p->buckets[h & (p->nbuckets - 1)];
	p->buckets[h & (p->nbuckets - 1)] = e;
	p->nentries++;
	err = 0;
cleanup:
	free(kb);
	free(ids);
	if (!err)
		*out = e;
	return err;
}

static void entry_maybe_free(struct pool_entry *e)
{
	struct pool *p = e->p;
	struct pool_entry **pp;

	if (e->conns || e->wait_head || e->connecting || e->busy)
		return;
	for (pp = &p->buckets[e->hash & (p->nbuckets - 1)]; *pp;
	     pp = &(*pp)->hnext) {
		if (*pp == e) {
			*pp = e->hnext;
			break;
		}
	}
	p->nentries--;
	free(e->ids);
	free(e);
}

/* ---- conns ---- */

static bool pc_usable(const struct pool_conn *pc)
{
	return hb_conn_can_open_stream(pc->c) &&
	       hb_conn_live_streams(pc->c) < pc->e->p->o.max_streams;
}

static struct pool_conn *entry_usable(struct pool_entry *e)
{
	for (struct pool_conn *pc = e->conns; pc; pc = pc->next)
		if (pc_usable(pc))
			return pc;
	return NULL;
}

/* Forget pc (the conn goes on by itself, or was closed). */
static void pc_remove(struct pool_conn *pc)
{
	struct pool_entry *e = pc->e;
	struct pool_conn **pp;

	for (pp = &e->conns; *pp; pp = &(*pp)->next) {
		if (*pp == pc) {
			*pp = pc->next;
			break;
		}
	}
	hb_conn_set_observer(pc->c, NULL, NULL);
	loop_timer_disarm(e->p->loop, &pc->idle);
	e->p->st.live--;
	free(pc);
	entry_maybe_free(e);
}

static void idle_cb(struct loop *l, struct loop_timer *t)
{
	struct pool_conn *pc = t->arg;
	struct hb_conn *c = pc->c;

	if (hb_conn_live_streams(c))
		return; /* the next stream close re-arms */
	pc->e->p->st.idle_released++;
	pc_remove(pc);
	hb_conn_drain(c);
}

static void entry_serve(struct pool_entry *e);

static void conn_observer(void *arg, struct hb_conn *c, enum hb_conn_event ev)
{
	struct pool_conn *pc = arg;
	struct pool_entry *e = pc->e;

	switch (ev) {
	case HB_CONN_EV_STREAM_CLOSED:
		if (!hb_conn_live_streams(c))
			loop_timer_arm(e->p->loop, &pc->idle, e->p->o.idle_ms);
		if (e->wait_head) {
			e->busy++;
			entry_serve(e);
			e->busy--;
			entry_maybe_free(e);
		}
		break;
	case HB_CONN_EV_GOAWAY:
	case HB_CONN_EV_CLOSED:
		/* Never handed out again; it finishes its streams alone. */
		pc_remove(pc);
		break;
	}
}

/* ---- waiters ---- */

static struct pool_waiter *waiter_pop(struct pool_entry *e)
{
	struct pool_waiter *w = e->wait_head;

	if (w) {
		e->wait_head = w->next;
		if (!e->wait_head)
			e->wait_tail = NULL;
		e->p->st.waiting--;
	}
	return w;
}

static void entry_fail(struct pool_entry *e, int err)
{
	struct pool_waiter *w;

	while ((w = waiter_pop(e))) {
		pool_ready_cb cb = w->cb;
		void *arg = w->arg;

		free(w);
		cb(arg, NULL, err);
	}
}

/* Starts the single connect of e. 0 or -errno (nobody was answered). */
static int entry_connect(struct pool_entry *e)
{
	struct pool *p = e->p;
	int err;

	e->connecting = true;
	p->st.connects++;
	err = p->o.connect(p->o.arg, p, &e->key);
	if (err) {
		e->connecting = false;
		p->st.failed++;
	}
	return err;
}

/* Answer waiters while a conn has room; connect again for the rest. */
static void entry_serve(struct pool_entry *e)
{
	struct pool_conn *pc;
	int err;

	while (e->wait_head && (pc = entry_usable(e))) {
		struct pool_waiter *w = waiter_pop(e);
		pool_ready_cb cb = w->cb;
		void *arg = w->arg;

		free(w);
		loop_timer_arm(e->p->loop, &pc->idle, e->p->o.idle_ms);
		cb(arg, pc->c, 0);
	}
	if (e->wait_head && !e->connecting) {
		err = entry_connect(e);
		if (err)
			entry_fail(e, -err);
	}
}

/* ---- API ---- */

struct pool *pool_new(struct loop *l, const struct pool_opts *opts)
{
	struct pool *p;

	if (!opts || !opts->connect) {
		errno = EINVAL;
		return NULL;
	}
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->loop = l;
	p->o = *opts;
	if (!p->o.max_streams)
		p->o.max_streams = POOL_DEF_MAX_STREAMS;
	if (!p->o.idle_ms)
		p->o.idle_ms = POOL_DEF_IDLE_MS;
	return p;
}

void pool_free(struct pool *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->nbuckets; i++) {
		struct pool_entry *e;

		while ((e = p->buckets[i])) {
			e->busy++;
			entry_fail(e, ECANCELED);
			while (e->conns) {
				struct hb_conn *c = e->conns->c;

				pc_remove(e->conns);
				hb_conn_close(c);
			}
			e->connecting = false;
			e->busy--;
			entry_maybe_free(e);
		}
	}
	free(p->buckets);
	free(p);
}

int pool_acquire(struct pool *p, const struct pool_key *key, pool_ready_cb cb,
		 void *arg, struct hb_conn **conn, struct pool_waiter **w)
{
	struct pool_entry *e;
	struct pool_conn *pc;
	struct pool_waiter *wt;
	int err;

	*conn = NULL;
	*w = NULL;
	if (!cb)
		return -EINVAL;
	err = entry_get(p, key, true, &e);
	if (err)
		return err;
	pc = entry_usable(e);
	if (pc) {
		/* Re-armed: a conn handed out but left unused still goes. */
		loop_timer_arm(p->loop, &pc->idle, p->o.idle_ms);
		*conn = pc->c;
		return 0;
	}
	wt = calloc(1, sizeof(*wt));
	if (!wt) {
		entry_maybe_free(e);
		return -ENOMEM;
	}
	wt->e = e;
	wt->cb = cb;
	wt->arg = arg;
	if (e->wait_tail)
		e->wait_tail->next = wt;
	else
		e->wait_head = wt;
	e->wait_tail = wt;
	p->st.waiting++;
	if (!e->connecting) {
		err = entry_connect(e);
		if (err) {
			/* Our cb is not called: the error is the answer. */
			e->busy++;
			pool_cancel(p, wt);
			entry_fail(e, -err);
			e->busy--;
			entry_maybe_free(e);
			return err;
		}
	}
	*w = wt;
	return -EINPROGRESS;
}

void pool_cancel(struct pool *p, struct pool_waiter *w)
{
	struct pool_entry *e = w->e;
	struct pool_waiter **pp, *prev = NULL;

	for (pp = &e->wait_head; *pp; prev = *pp, pp = &(*pp)->next) {
		if (*pp == w) {
			*pp = w->next;
			if (e->wait_tail == w)
				e->wait_tail = prev;
			p->st.waiting--;
			free(w);
			break;
		}
	}
	entry_maybe_free(e);
}

int pool_conn_ready(struct pool *p, const struct pool_key *key,
		    struct hb_conn *c)
{
	struct pool_entry *e;
	struct pool_conn *pc;
	int err;

	err = entry_get(p, key, false, &e);
	if (!err && !e->connecting)
		err = -ENOENT;
	if (err) {
		log_warn("pool: a connection nobody waits for; closing it");
		hb_conn_close(c);
		return err;
	}
	e->connecting = false;
	pc = calloc(1, sizeof(*pc));
	if (!pc) {
		hb_conn_close(c);
		e->busy++;
		entry_fail(e, ENOMEM);
		e->busy--;
		entry_maybe_free(e);
		return -ENOMEM;
	}
	pc->e = e;
	pc->c = c;
	loop_timer_init(&pc->idle, idle_cb, pc);
	loop_timer_arm(p->loop, &pc->idle, p->o.idle_ms);
	pc->next = e->conns;
	e->conns = pc;
	p->st.created++;
	p->st.live++;
	hb_conn_set_observer(c, conn_observer, pc);
	e->busy++;
	entry_serve(e);
	e->busy--;
	entry_maybe_free(e);
	return 0;
}

void pool_conn_failed(struct pool *p, const struct pool_key *key, int err)
{
	struct pool_entry *e;

	if (entry_get(p, key, false, &e) || !e->connecting)
		return;
	e->connecting = false;
	p->st.failed++;
	e->busy++;
	entry_fail(e, err);
	e->busy--;
	entry_maybe_free(e);
}

void pool_get_stats(const struct pool *p, struct pool_stats *st)
{
	*st = p->st;
}
