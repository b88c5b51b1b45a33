// SPDX-License-Identifier: Apache-2.0
/*
 * Connection telemetry (see telemetry.h): per-worker series tables, the
 * per-connection record, the access log line, the control thread's
 * aggregation at scrape time and the worker mailbox.
 */
#include "telemetry.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "accesslog.h"
#include "ca.h"
#include "daemon.h"
#include "log.h"
#include "loop.h"
#include "prom.h"
#include "state.h"
#include "worker.h"

#define INDEX_SLOTS (2 * TEL_MAX_SERIES) /* power of two */
#define LABELS_MAX  8192

static const char *const flag_names[AMB_F__COUNT] = {
    [AMB_F_NONE] = "-",
    [AMB_F_DENY] = "DENY",
    [AMB_F_CONNECT] = "CONNECT",
    [AMB_F_TIMEOUT] = "TIMEOUT",
    [AMB_F_TLS] = "TLS",
    [AMB_F_NO_IDENTITY] = "NO_IDENTITY",
    [AMB_F_NO_WORKLOAD] = "NO_WORKLOAD",
    [AMB_F_BAD_REQUEST] = "BAD_REQUEST",
    [AMB_F_PROTOCOL] = "PROTOCOL",
    [AMB_F_DOWNSTREAM_RESET] = "DOWNSTREAM_RESET",
    [AMB_F_UPSTREAM_RESET] = "UPSTREAM_RESET",
    [AMB_F_IO_ERROR] = "IO_ERROR",
    [AMB_F_DRAIN] = "DRAIN",
    [AMB_F_ABORTED] = "ABORTED",
    [AMB_F_INTERNAL] = "INTERNAL",
};

const char *amb_flag_name(enum amb_flag f)
{
	return (unsigned)f < AMB_F__COUNT ? flag_names[f] : "UNKNOWN";
}

enum amb_flag amb_flag_from_relay(int result, int err)
{
	switch ((enum relay_result)result) {
	case RELAY_OK:
		return AMB_F_NONE;
	case RELAY_CONNECT_FAILED:
		/* The upstream end is a TCP connect or a CONNECT stream whose
		 * non-200 answer hb_status_to_errno() mapped. */
		switch (err) {
		case EACCES:
			return AMB_F_DENY;
		case EINVAL:
			return AMB_F_BAD_REQUEST;
		case ETIMEDOUT:
			return AMB_F_TIMEOUT;
		case EPROTO:
			return AMB_F_PROTOCOL;
		default:
			return AMB_F_CONNECT;
		}
	case RELAY_DOWNSTREAM_RESET:
		return AMB_F_DOWNSTREAM_RESET;
	case RELAY_UPSTREAM_RESET:
		return AMB_F_UPSTREAM_RESET;
	case RELAY_IO_ERROR:
		return err == ENOMEM ? AMB_F_INTERNAL : AMB_F_IO_ERROR;
	case RELAY_ABORTED:
		return AMB_F_ABORTED;
	}
	return AMB_F_INTERNAL;
}

enum amb_flag amb_flag_from_dial(int err)
{
	switch (err) {
	case ETIMEDOUT:
		return AMB_F_TIMEOUT;
	case EACCES: /* the server was not who we expected */
	case EPROTO: /* TLS handshake failed */
		return AMB_F_TLS;
	case ENOMEM:
	case EIO:
	case EINVAL:
		return AMB_F_INTERNAL;
	default:
		return AMB_F_CONNECT;
	}
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- label sets ---------------------------------------------------------- */

/* Bounded label-list builder on the stack (escapes values). */
struct lbuf {
	char p[LABELS_MAX];
	size_t len;
	bool overflow;
};

static void lb_label(struct lbuf *b, const char *name, const char *v)
{
	size_t need = strlen(name) + 4;

	if (!v || !*v)
		v = "unknown";
	if (b->overflow || b->len + need >= sizeof(b->p)) {
		b->overflow = true;
		return;
	}
	b->len +=
	    (size_t)sprintf(b->p + b->len, "%s%s=\"", b->len ? "," : "", name);
	for (; *v; v++) {
		const char *esc = *v == '\\'   ? "\\\\"
				  : *v == '"'  ? "\\\""
				  : *v == '\n' ? "\\n"
					       : NULL;
		size_t n = esc ? 2 : 1;

		if (b->len + n + 2 >= sizeof(b->p)) {
			b->overflow = true;
			return;
		}
		if (esc)
			memcpy(b->p + b->len, esc, 2);
		else
			b->p[b->len] = *v;
		b->len += n;
	}
	b->p[b->len++] = '"';
	b->p[b->len] = '\0';
}

/* The label values of one side (workload or unknown). */
struct side {
	const char *workload, *canonical, *revision, *ns, *principal, *app,
	    *version, *cluster;
};

static void side_of(const struct workload *wl, const char *principal,
		    struct side *s)
{
	memset(s, 0, sizeof(*s));
	s->principal = principal;
	if (!wl)
		return;
	/* workloadName as istiod sets it; a local config may give only the
	 * pod name, which is still better than "unknown". */
	s->workload = wl->workload_name ? wl->workload_name : wl->name;
	s->canonical = wl->canonical_name;
	s->revision = wl->canonical_revision;
	s->ns = wl->namespace;
	s->app = wl->canonical_name;
	s->version = wl->canonical_revision;
	s->cluster = wl->cluster_id;
}

/*
 * The destination service: the VIP the client dialed, else the service of
 * the destination workload that exposes the port it was reached on.
 */
static const struct service *dest_service(const struct state *st,
					  const struct sockaddr_in *dst,
					  const struct workload *wl)
{
	const struct service *svc =
	    state_service_by_vip(st, dst->sin_addr.s_addr);
	uint16_t port = ntohs(dst->sin_port);

	if (svc || !wl)
		return svc;
	for (size_t i = 0; i < wl->n_services; i++) {
		const struct wl_service_ref *r = &wl->services[i];

		for (size_t j = 0; j < r->n_ports; j++)
			if (r->ports[j].target_port == port)
				return state_service_by_host(st, r->namespace,
							     r->hostname);
	}
	return NULL;
}

static uint32_t fnv1a(const char *s, bool mtls)
{
	uint32_t h = 2166136261u;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return (h ^ mtls) * 16777619u;
}

static const char *dup_into(char **cursor, const char *s)
{
	char *p = *cursor;

	if (!s || !*s)
		s = "unknown";
	strcpy(p, s);
	*cursor = p + strlen(s) + 1;
	return p;
}

/* Find or create the series for these labels. NULL when the table is full
 * or memory ran out (the connection is then counted as overflow). */
static struct tel_series *series_get(struct tel_worker *t, const char *labels,
				     bool mtls, bool rdst,
				     const char *const vals[7])
{
	uint32_t h = fnv1a(labels, mtls), n, slot;
	struct tel_series *s, *chunk;
	size_t strs_len = 0;
	char *cur;

	for (slot = h & (INDEX_SLOTS - 1); t->index[slot];
	     slot = (slot + 1) & (INDEX_SLOTS - 1)) {
		uint32_t id = t->index[slot] - 1;

		s = &t->chunks[id / TEL_CHUNK][id % TEL_CHUNK];
		if (s->hash == h && s->mtls == mtls &&
		    strcmp(s->labels, labels) == 0)
			return s;
	}
	n = atomic_load_explicit(&t->n_series, memory_order_relaxed);
	if (n == TEL_MAX_SERIES)
		return NULL;
	chunk = t->chunks[n / TEL_CHUNK];
	if (!chunk) {
		chunk = calloc(TEL_CHUNK, sizeof(*chunk));
		if (!chunk)
			return NULL;
		t->chunks[n / TEL_CHUNK] = chunk;
	}
	s = &chunk[n % TEL_CHUNK];
	for (int i = 0; i < 7; i++)
		strs_len +=
		    strlen(vals[i] && *vals[i] ? vals[i] : "unknown") + 1;
	s->labels = strdup(labels);
	s->strs = malloc(strs_len);
	if (!s->labels || !s->strs) {
		free(s->labels);
		free(s->strs);
		s->labels = s->strs = NULL;
		return NULL;
	}
	cur = s->strs;
	s->src_workload = dup_into(&cur, vals[0]);
	s->src_namespace = dup_into(&cur, vals[1]);
	s->src_principal = dup_into(&cur, vals[2]);
	s->dst_service = dup_into(&cur, vals[3]);
	s->dst_workload = dup_into(&cur, vals[4]);
	s->dst_namespace = dup_into(&cur, vals[5]);
	s->dst_principal = dup_into(&cur, vals[6]);
	s->hash = h;
	s->mtls = mtls;
	s->reporter_dst = rdst;
	t->index[slot] = n + 1;
	/* Everything above is visible to a scraper that sees the new count. */
	atomic_store_explicit(&t->n_series, n + 1, memory_order_release);
	return s;
}

/* The eight labels of one side, `<who>_workload` ... `<who>_cluster`. */
static void lb_side(struct lbuf *b, const char *who, const struct side *s)
{
	const struct {
		const char *name, *v;
	} l[] = {
	    {"workload", s->workload},	 {"canonical_service", s->canonical},
	    {"canonical_revision", s->revision},
	    {"workload_namespace", s->ns}, {"principal", s->principal},
	    {"app", s->app},		 {"version", s->version},
	    {"cluster", s->cluster},
	};
	char name[64];

	for (size_t i = 0; i < sizeof(l) / sizeof(l[0]); i++) {
		snprintf(name, sizeof(name), "%s_%s", who, l[i].name);
		lb_label(b, name, l[i].v);
	}
}

static struct tel_series *series_for(struct worker *w, bool rdst,
				     const struct tel_desc *d,
				     const struct service *svc,
				     const char *dst_principal)
{
	struct lbuf *b = malloc(sizeof(*b));
	struct side src, dst;
	struct tel_series *s;
	const char *vals[7];

	if (!b)
		return NULL;
	b->len = 0;
	b->overflow = false;
	side_of(d->src_wl, d->src_principal, &src);
	side_of(d->dst_wl, dst_principal, &dst);
	lb_label(b, "reporter", rdst ? "destination" : "source");
	lb_side(b, "source", &src);
	lb_label(b, "destination_service", svc ? svc->hostname : NULL);
	lb_label(b, "destination_service_namespace",
		 svc ? svc->namespace : NULL);
	lb_label(b, "destination_service_name", svc ? svc->name : NULL);
	lb_side(b, "destination", &dst);
	lb_label(b, "request_protocol", "tcp");
	vals[0] = src.workload;
	vals[1] = src.ns;
	vals[2] = src.principal;
	vals[3] = svc ? svc->hostname : NULL;
	vals[4] = dst.workload;
	vals[5] = dst.ns;
	vals[6] = dst.principal;
	s = b->overflow ? NULL : series_get(w->tel, b->p, d->mtls, rdst, vals);
	free(b);
	return s;
}

/* ---- per connection ------------------------------------------------------ */

static void live_link(struct tel_worker *t, struct conn_tel *ct)
{
	ct->prev = NULL;
	ct->next = t->live;
	if (t->live)
		t->live->prev = ct;
	t->live = ct;
}

static void live_unlink(struct tel_worker *t, struct conn_tel *ct)
{
	if (ct->prev)
		ct->prev->next = ct->next;
	else if (t->live == ct)
		t->live = ct->next;
	if (ct->next)
		ct->next->prev = ct->prev;
	ct->prev = ct->next = NULL;
}

void conn_tel_begin(struct conn *c, const struct tel_desc *d)
{
	struct conn_tel *ct = &c->tel;
	struct worker *w = c->w;
	const struct service *svc;
	char dst_id[SPIFFE_ID_MAX];
	const char *dst_principal = NULL;

	if (ct->state)
		return;
	ct->state = 1;
	ct->start_ms = mono_ms();
	ct->start_wall = time(NULL);
	ct->hbone = d->hbone;
	svc = dest_service(w->state, &c->dst, d->dst_wl);
	if (d->dst_wl && !workload_identity(d->dst_wl, dst_id, sizeof(dst_id)))
		dst_principal = dst_id;
	if (d->report_source)
		ct->series[0] = series_for(w, false, d, svc, dst_principal);
	if (d->report_destination)
		ct->series[1] = series_for(w, true, d, svc, dst_principal);
	for (int i = 0; i < 2; i++) {
		struct tel_series *s = ct->series[i];

		if (!s) {
			if (i ? d->report_destination : d->report_source)
				atomic_fetch_add_explicit(&w->tel->overflow, 1,
							  memory_order_relaxed);
			continue;
		}
		atomic_fetch_add_explicit(&s->opened, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&s->live, 1, memory_order_relaxed);
	}
	live_link(w->tel, ct);
}

void conn_tel_flag(struct conn *c, enum amb_flag flag, const char *detail)
{
	c->tel.flag = (uint8_t)flag;
	c->tel.detail = detail;
}

void conn_tel_meters(struct conn *c, struct relay_meter **meters)
{
	int n = 0;

	meters[0] = meters[1] = NULL;
	for (int i = 0; i < 2; i++)
		if (c->tel.series[i])
			meters[n++] = &c->tel.series[i]->bytes;
}

static const char *known(const char *v)
{
	return v && strcmp(v, "unknown") != 0 ? v : NULL;
}

static void log_one(struct conn *c, const struct tel_series *s, bool outbound,
		    enum amb_flag flag, uint64_t up, uint64_t down,
		    uint64_t dur, const char *error)
{
	const struct state *st = c->w->state;
	const struct workload *swl =
	    state_workload_by_ip(st, c->src.sin_addr.s_addr);
	const struct workload *dwl =
	    state_workload_by_ip(st, c->dst.sin_addr.s_addr);
	struct sockaddr_in tunnel = c->dst;
	struct access_rec r = {
	    .outbound = outbound,
	    .src = &c->src,
	    .dst = &c->dst,
	    .src_workload =
		swl && swl->name ? swl->name : known(s->src_workload),
	    .src_namespace = swl ? swl->namespace : known(s->src_namespace),
	    .src_identity = s->mtls ? known(s->src_principal) : NULL,
	    .dst_service = known(s->dst_service),
	    .dst_workload =
		dwl && dwl->name ? dwl->name : known(s->dst_workload),
	    .dst_namespace = dwl ? dwl->namespace : known(s->dst_namespace),
	    .dst_identity = s->mtls ? known(s->dst_principal) : NULL,
	    .bytes_sent = up,
	    .bytes_recv = down,
	    .duration_ms = dur,
	    .response_flags = amb_flag_name(flag),
	    .error = error,
	};

	if (c->tel.hbone) {
		/* Outbound: the L4 peer is the destination's tunnel; the
		 * CONNECT names the real target. */
		r.hbone_addr = &c->dst;
		if (outbound) {
			tunnel.sin_port = htons(15008);
			r.dst = &tunnel;
		}
	}
	access_log_write(&r);
}

static void record(struct conn *c, enum amb_flag flag, uint64_t up,
		   uint64_t down, int err, const char *detail)
{
	struct conn_tel *ct = &c->tel;
	uint64_t dur;
	char ebuf[96];
	const char *error = detail;

	if (ct->state != 1)
		return;
	ct->state = 2;
	live_unlink(c->w->tel, ct);
	dur = mono_ms() - ct->start_ms;
	if (!error && err) {
		snprintf(ebuf, sizeof(ebuf), "%s", strerror(err));
		error = ebuf;
	} else if (!error && flag != AMB_F_NONE) {
		error = amb_flag_name(flag);
	}
	for (int i = 0; i < 2; i++) {
		struct tel_series *s = ct->series[i];

		if (!s)
			continue;
		atomic_fetch_add_explicit(&s->closed[flag], 1,
					  memory_order_relaxed);
		atomic_fetch_sub_explicit(&s->live, 1, memory_order_relaxed);
		log_one(c, s, i == 0, flag, up, down, dur, error);
	}
}

void conn_tel_fail(struct conn *c, enum amb_flag flag, int err,
		   const char *detail)
{
	if (flag == AMB_F_NONE)
		flag = AMB_F_INTERNAL;
	if (c->tel.flag != AMB_F_NONE) {
		flag = (enum amb_flag)c->tel.flag;
		detail = c->tel.detail ? c->tel.detail : detail;
	}
	record(c, flag, 0, 0, err, detail);
}

void conn_tel_end(struct conn *c, const struct relay_summary *s)
{
	enum amb_flag flag = (enum amb_flag)c->tel.flag;
	const char *detail = c->tel.detail;

	if (flag == AMB_F_NONE)
		flag = amb_flag_from_relay(s->result, s->error);
	record(c, flag, s->bytes_up, s->bytes_down,
	       flag == AMB_F_NONE ? 0 : s->error, detail);
}

/* ---- worker lifecycle and mailbox ---------------------------------------- */

int tel_worker_init(struct worker *w)
{
	struct tel_worker *t = calloc(1, sizeof(*t));

	if (!t)
		return -ENOMEM;
	t->index = calloc(INDEX_SLOTS, sizeof(*t->index));
	if (!t->index) {
		free(t);
		return -ENOMEM;
	}
	w->tel = t;
	return 0;
}

void tel_worker_fini(struct worker *w)
{
	struct tel_worker *t = w->tel;
	uint32_t n;

	if (!t)
		return;
	n = atomic_load(&t->n_series);
	for (uint32_t i = 0; i < n; i++) {
		struct tel_series *s = &t->chunks[i / TEL_CHUNK][i % TEL_CHUNK];

		free(s->labels);
		free(s->strs);
	}
	for (size_t i = 0; i < TEL_MAX_SERIES / TEL_CHUNK; i++)
		free(t->chunks[i]);
	free(atomic_load(&t->answer));
	free(t->index);
	free(t);
	w->tel = NULL;
}

/* Label values /connections shows for each connection. */
static const struct {
	const char *key;
	size_t off;
} dump_fields[] = {
    {"src_workload", offsetof(struct tel_series, src_workload)},
    {"src_namespace", offsetof(struct tel_series, src_namespace)},
    {"src_identity", offsetof(struct tel_series, src_principal)},
    {"dst_workload", offsetof(struct tel_series, dst_workload)},
    {"dst_namespace", offsetof(struct tel_series, dst_namespace)},
    {"dst_identity", offsetof(struct tel_series, dst_principal)},
    {"dst_service", offsetof(struct tel_series, dst_service)},
};

static void dump_live(struct worker *w, struct sbuf *b)
{
	uint64_t now = mono_ms();
	int n = 0;

	for (struct conn_tel *ct = w->tel->live; ct; ct = ct->next) {
		struct conn *c =
		    (struct conn *)((char *)ct - offsetof(struct conn, tel));
		const struct tel_series *s =
		    ct->series[0] ? ct->series[0] : ct->series[1];
		uint64_t up = 0, down = 0;
		char a[32], d[32];

		if (c->relay)
			relay_get_counts(c->relay, &up, &down);
		sbuf_printf(
		    b,
		    "%s{\"worker\":%d,\"src\":\"%s\",\"dst\":\"%s\","
		    "\"direction\":\"%s\",\"route\":\"%s\",\"hbone\":%s,"
		    "\"state\":\"%s\",\"bytes_sent\":%llu,\"bytes_recv\":%llu,"
		    "\"duration_ms\":%llu,\"security\":\"%s\"",
		    n++ ? "," : "", w->id, ip_str(&c->src, a),
		    ip_str(&c->dst, d),
		    ct->series[0] && ct->series[1] ? "local"
		    : ct->series[1]		   ? "inbound"
						   : "outbound",
		    route_name(c->route), ct->hbone ? "true" : "false",
		    !c->relay ? "connecting"
		    : relay_get_state(c->relay) == RELAY_CONNECTING
			? "connecting"
		    : relay_get_state(c->relay) == RELAY_HALF_CLOSED
			? "half_closed"
			: "open",
		    (unsigned long long)up, (unsigned long long)down,
		    (unsigned long long)(now - ct->start_ms),
		    s && s->mtls ? "mutual_tls" : "unknown");
		for (size_t k = 0;
		     s && k < sizeof(dump_fields) / sizeof(dump_fields[0]);
		     k++) {
			sbuf_printf(b, ",\"%s\":", dump_fields[k].key);
			sbuf_json_str(
			    b, *(const char *const *)((const char *)s +
						      dump_fields[k].off));
		}
		sbuf_putc(b, '}');
	}
}

/*
 * Abort every live relay, recording it as DRAIN. Aborting one relay can end
 * others (streams of the same HBONE connection) and free their conns, so
 * the walk starts over from the head each time instead of keeping a next
 * pointer; ended connections have left the list.
 */
static void cut_live(struct worker *w)
{
	size_t budget = 0;

	for (struct conn_tel *ct = w->tel->live; ct; ct = ct->next)
		budget++;
	while (budget--) {
		struct conn *victim = NULL;

		for (struct conn_tel *ct = w->tel->live; ct && !victim;
		     ct = ct->next) {
			struct conn *c =
			    (struct conn *)((char *)ct -
					    offsetof(struct conn, tel));

			if (c->relay) /* still connecting: ends with the process
				       */
				victim = c;
		}
		if (!victim)
			break;
		conn_tel_flag(victim, AMB_F_DRAIN, "drain deadline reached");
		relay_abort(
		    victim->relay); /* conn_done() records and frees it */
	}
}

void tel_worker_service(struct worker *w)
{
	struct tel_worker *t = w->tel;
	uint64_t seq;
	struct sbuf b;
	char *old;

	if (!t)
		return;
	seq = atomic_load_explicit(&t->req_seq, memory_order_acquire);
	if (seq == t->seen_seq)
		return;
	t->seen_seq = seq;
	sbuf_init(&b, 16u << 20);
	switch (atomic_load(&t->req_kind)) {
	case TEL_REQ_DUMP:
		dump_live(w, &b);
		break;
	case TEL_REQ_DRAIN:
		worker_stop_listening(w);
		tunnel_worker_drain(w);
		break;
	case TEL_REQ_CUT:
		cut_live(w);
		break;
	default:
		break;
	}
	if (sbuf_failed(&b)) {
		sbuf_free(&b);
		sbuf_init(&b, 0);
	}
	old = atomic_exchange(&t->answer, b.p ? b.p : strdup(""));
	free(old);
	atomic_store_explicit(&t->done_seq, seq, memory_order_release);
}

int tel_ask_workers(struct daemon *d, enum tel_req req, int timeout_ms,
		    struct sbuf *out)
{
	static uint64_t seq; /* control thread only */
	uint64_t deadline = mono_ms() + (uint64_t)timeout_ms;
	int answered = 0, n = 0;

	seq++;
	for (int i = 0; i < d->n_workers; i++) {
		struct tel_worker *t = d->workers[i]->tel;

		free(atomic_exchange(&t->answer, NULL)); /* a late one */
		atomic_store(&t->req_kind, (int)req);
		atomic_store_explicit(&t->req_seq, seq, memory_order_release);
		loop_wake(d->workers[i]->loop);
	}
	for (;;) {
		answered = 0;
		for (int i = 0; i < d->n_workers; i++)
			answered +=
			    atomic_load_explicit(&d->workers[i]->tel->done_seq,
						 memory_order_acquire) == seq;
		if (answered == d->n_workers || mono_ms() >= deadline)
			break;
		usleep(1000);
	}
	for (int i = 0; i < d->n_workers && out; i++) {
		struct tel_worker *t = d->workers[i]->tel;
		char *a;

		if (atomic_load_explicit(&t->done_seq, memory_order_acquire) !=
		    seq)
			continue;
		a = atomic_exchange(&t->answer, NULL);
		if (a && *a) {
			if (n++)
				sbuf_putc(out, ',');
			sbuf_puts(out, a);
		}
		free(a);
	}
	return answered;
}

/* ---- scrape ------------------------------------------------------------- */

struct agg {
	const struct tel_series *rep; /* labels, mtls */
	uint64_t opened, live, up, down;
	uint64_t closed[AMB_F__COUNT];
};

static void agg_add(struct agg *a, const struct tel_series *s)
{
	a->opened += atomic_load_explicit(&s->opened, memory_order_relaxed);
	a->live += atomic_load_explicit(&s->live, memory_order_relaxed);
	a->up += atomic_load_explicit(&s->bytes.up, memory_order_relaxed);
	a->down += atomic_load_explicit(&s->bytes.down, memory_order_relaxed);
	for (int f = 0; f < AMB_F__COUNT; f++)
		a->closed[f] +=
		    atomic_load_explicit(&s->closed[f], memory_order_relaxed);
}

static void tail(char *buf, size_t len, enum amb_flag f, bool mtls)
{
	snprintf(buf, len,
		 "response_flags=\"%s\",connection_security_policy=\"%s\"",
		 amb_flag_name(f), mtls ? "mutual_tls" : "unknown");
}

/* The Istio families and which aggregate each one shows. */
enum fam_value { FV_OPENED, FV_CLOSED, FV_FAILED, FV_RECV, FV_SENT, FV_LIVE };

static const struct family {
	const char *name;
	enum prom_type type;
	const char *help;
	enum fam_value v;
} families[] = {
    {"istio_tcp_connections_opened_total", PROM_COUNTER,
     "The total number of TCP connections opened", FV_OPENED},
    {"istio_tcp_connections_closed_total", PROM_COUNTER,
     "The total number of TCP connections closed", FV_CLOSED},
    {"istio_tcp_connections_failed_total", PROM_COUNTER,
     "The total number of TCP connections that ended with a response "
     "flag other than \"-\" (failed to connect, denied, reset, cut)",
     FV_FAILED},
    {"istio_tcp_received_bytes_total", PROM_COUNTER,
     "The size of total bytes received during request in case of a TCP "
     "connection",
     FV_RECV},
    {"istio_tcp_sent_bytes_total", PROM_COUNTER,
     "The size of total bytes sent during response in case of a TCP "
     "connection",
     FV_SENT},
    {"istio_tcp_sockets_open", PROM_GAUGE,
     "The number of TCP connections open now through this tunnel", FV_LIVE},
};

/* One label set's samples of one family: per flag for closed/failed (only
 * the flags that occurred), else one sample with response_flags "-". */
static void agg_samples(struct sbuf *out, const struct family *fam,
			const struct agg *a)
{
	uint64_t v = fam->v == FV_OPENED ? a->opened
		     : fam->v == FV_RECV ? a->up
		     : fam->v == FV_SENT ? a->down
					 : a->live;
	char t[128];

	if (fam->v != FV_CLOSED && fam->v != FV_FAILED) {
		tail(t, sizeof(t), AMB_F_NONE, a->rep->mtls);
		prom_sample_u64(out, fam->name, a->rep->labels, t, v);
		return;
	}
	for (int f = fam->v == FV_FAILED ? 1 : 0; f < AMB_F__COUNT; f++) {
		if (!a->closed[f])
			continue;
		tail(t, sizeof(t), f, a->rep->mtls);
		prom_sample_u64(out, fam->name, a->rep->labels, t,
				a->closed[f]);
	}
}

void tel_render_istio(struct daemon *d, struct sbuf *out)
{
	size_t total = 0, n_agg = 0, slots = 16;
	struct agg *aggs;
	uint32_t *idx;
	uint64_t overflow = 0;

	for (int i = 0; i < d->n_workers; i++)
		total += atomic_load_explicit(&d->workers[i]->tel->n_series,
					      memory_order_acquire);
	while (slots < 2 * total)
		slots *= 2;
	aggs = calloc(total ? total : 1, sizeof(*aggs));
	idx = calloc(slots, sizeof(*idx));
	if (!aggs || !idx) {
		free(aggs);
		free(idx);
		out->failed = true;
		return;
	}
	/* Sum the same label set over the workers. */
	for (int i = 0; i < d->n_workers; i++) {
		struct tel_worker *tw = d->workers[i]->tel;
		uint32_t n =
		    atomic_load_explicit(&tw->n_series, memory_order_acquire);

		overflow +=
		    atomic_load_explicit(&tw->overflow, memory_order_relaxed);
		for (uint32_t j = 0; j < n && n_agg < total; j++) {
			const struct tel_series *s =
			    &tw->chunks[j / TEL_CHUNK][j % TEL_CHUNK];
			size_t slot = s->hash & (slots - 1);

			while (idx[slot]) {
				const struct tel_series *r =
				    aggs[idx[slot] - 1].rep;

				if (r->hash == s->hash && r->mtls == s->mtls &&
				    strcmp(r->labels, s->labels) == 0)
					break;
				slot = (slot + 1) & (slots - 1);
			}
			if (!idx[slot]) {
				aggs[n_agg].rep = s;
				idx[slot] = (uint32_t)++n_agg;
			}
			agg_add(&aggs[idx[slot] - 1], s);
		}
	}

	for (size_t f = 0; f < sizeof(families) / sizeof(families[0]); f++) {
		prom_family(out, families[f].name, families[f].type,
			    families[f].help);
		for (size_t i = 0; i < n_agg; i++)
			agg_samples(out, &families[f], &aggs[i]);
	}
	prom_family(out, "ambientd_metrics_series_overflow_total", PROM_COUNTER,
		    "Connection reports not counted in the istio_tcp_* "
		    "families because a worker's label-set table was full");
	prom_sample_u64(out, "ambientd_metrics_series_overflow_total", NULL,
			NULL, overflow);
	free(aggs);
	free(idx);
}
