// SPDX-License-Identifier: Apache-2.0
/*
 * HBONE on a worker thread, both ways (DESIGN.md §3).
 *
 * Outbound: a captured connection to a remote HBONE workload gets a CONNECT
 * stream on a pooled mTLS connection to <dst pod IP>:15008, made from the
 * source pod's address and presenting the source workload's certificate;
 * the connection is used only if the server proves one of the expected
 * identities.
 *
 * Inbound: a connection on 15008 is addressed to one of our pods (the tc
 * program assigned it); we present that pod's certificate, require a client
 * certificate of our trust domain, and for each CONNECT connect to the pod
 * from the client's address, answering 200 only once that succeeded.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <sys/epoll.h>
#include <openssl/bn.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ambientd/bpf_shared.h"
#include "addr.h"
#include "authz.h"
#include "ca.h"
#include "connector.h"
#include "daemon.h"
#include "hbone.h"
#include "hbtls.h"
#include "log.h"
#include "pool.h"
#include "relay.h"
#include "state.h"
#include "tls.h"
#include "worker.h"


int workload_identity(const struct workload *wl, char *buf, size_t len)
{
	return spiffe_identity(buf, len, wl->trust_domain, wl->namespace,
			       wl->service_account);
}

/* ---- TLS contexts, per worker, per identity -------------------------- */

struct tls_ctx_entry {
	struct tls_ctx_entry *next;
	char *identity;
	SSL_CTX *server;
	SSL_CTX *client;
	char client_serial[33]; /* leaf the client context presents */
};

static void ctx_cache_clear(struct worker *w)
{
	struct tls_ctx_entry *e, *next;

	for (e = w->ctxs; e; e = next) {
		next = e->next;
		SSL_CTX_free(e->server);
		SSL_CTX_free(e->client);
		free(e->identity);
		free(e);
	}
	w->ctxs = NULL;
}

/*
 * The context presenting `identity`'s current leaf. Contexts are rebuilt
 * when the certificate store changed (rotation), so new handshakes use the
 * new leaf while live connections keep the one they started with. Called
 * once per handshake, never per byte.
 */
static SSL_CTX *worker_ctx_serial(struct worker *w, const char *identity,
				  bool server, const char **serial)
{
	struct daemon *d = w->d;
	uint64_t gen = certstore_generation(d->certs);
	struct tls_ctx_entry *e;
	struct leaf *leaf = NULL;
	SSL_CTX **slot;

	if (gen != w->ctx_gen) {
		ctx_cache_clear(w);
		w->ctx_gen = gen;
	}
	for (e = w->ctxs; e; e = e->next)
		if (strcmp(e->identity, identity) == 0)
			break;
	if (!e) {
		e = calloc(1, sizeof(*e));
		if (!e || !(e->identity = strdup(identity))) {
			free(e);
			return NULL;
		}
		e->next = w->ctxs;
		w->ctxs = e;
	}
	slot = server ? &e->server : &e->client;
	if (serial)
		*serial = e->client_serial;
	if (*slot)
		return *slot;
	if (certstore_get(d->certs, identity, &leaf)) {
		log_warn("no certificate for %s", identity);
		return NULL;
	}
	*slot = server ? tls_ctx_server(leaf, ca_trust_store(d->ca), d->trust_domain) :
			 tls_ctx_client(leaf, ca_trust_store(d->ca));
	if (!server)
		snprintf(e->client_serial, sizeof(e->client_serial), "%s", leaf->serial);
	leaf_unref(leaf); /* the context holds its own references */
	/* Issuing may have bumped the generation: we are current with it. */
	w->ctx_gen = certstore_generation(d->certs);
	return *slot;
}

static SSL_CTX *worker_ctx(struct worker *w, const char *identity, bool server)
{
	return worker_ctx_serial(w, identity, server, NULL);
}

/* ---- outbound: pooled client connections ----------------------------- */

/*
 * Pool keys carry the serial of the source leaf after the identity
 * ("<identity>\n<serial>"): after a rotation new streams go to connections
 * made with the new certificate, while streams on the old ones finish and
 * the old connections idle out.
 */
#define KEY_SEP '\n'

/* Expected server identities of one destination (workload + the service's
 * subjectAltNames). */
#define MAX_DST_IDS 8

/* A pool connect in flight: TCP, then TLS, then HTTP/2. */
struct dial {
	struct worker *w;
	char src_key[SPIFFE_ID_MAX + 40]; /* pool key: identity + serial */
	char src_id[SPIFFE_ID_MAX];
	char *ids_buf; /* the expected identities, back to back */
	const char *dst_ids[MAX_DST_IDS];
	size_t n_dst_ids;
	struct sockaddr_in src, dst;
	struct pool_key key;
};

/* Copy ids into d (at most MAX_DST_IDS); 0 or -ENOMEM. */
static int dial_set_ids(struct dial *d, const char *const *ids, size_t n)
{
	size_t len = 0, off = 0;

	if (n > MAX_DST_IDS)
		n = MAX_DST_IDS;
	for (size_t i = 0; i < n; i++)
		len += strlen(ids[i]) + 1;
	d->ids_buf = malloc(len ? len : 1);
	if (!d->ids_buf)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(ids[i]) + 1;

		memcpy(d->ids_buf + off, ids[i], l);
		d->dst_ids[i] = d->ids_buf + off;
		off += l;
	}
	d->n_dst_ids = n;
	return 0;
}

static void dial_free(struct dial *d)
{
	free(d->ids_buf);
	free(d);
}

static void dial_key(struct dial *d)
{
	d->key = (struct pool_key){
		.src_identity = d->src_key,
		.dst_identities = d->dst_ids,
		.n_dst_identities = d->n_dst_ids,
		.dst = (const struct sockaddr *)&d->dst,
		.src = (const struct sockaddr *)&d->src,
	};
}

static void dial_fail(struct dial *d, int err, const char *what, const char *detail)
{
	char a[32];

	log_info_rl("hbone to %s as %s: %s%s%s", ip_str(&d->dst, a), d->src_id, what,
		 detail ? ": " : "", detail ? detail : "");
	pool_conn_failed(d->w->pool, &d->key, err);
	dial_free(d);
}

static void dial_handshake(struct tls_conn *tc, bool ok, const char *err, void *arg)
{
	struct dial *d = arg;
	struct hb_conn_opts opts = { 0 };
	struct hb_transport *t;
	struct hb_conn *hc;
	char peer[SPIFFE_ID_MAX] = "none";

	if (!ok) {
		atomic_fetch_add(&d->w->d->hbone.handshake_failures, 1);
		tls_conn_close(tc);
		dial_fail(d, EPROTO, "TLS handshake failed", err);
		return;
	}
	/* The server proves who it is before any CONNECT leaves us. */
	if (!tls_peer_matches(tls_conn_ssl(tc), d->dst_ids, d->n_dst_ids)) {
		char why[2 * SPIFFE_ID_MAX + 64];

		tls_peer_identity(tls_conn_ssl(tc), peer, sizeof(peer));
		snprintf(why, sizeof(why), "server is %s, expected %s%s", peer,
			 d->dst_ids[0], d->n_dst_ids > 1 ? " (or a service SAN)" : "");
		atomic_fetch_add(&d->w->d->hbone.handshake_failures, 1);
		tls_conn_abort(tc);
		dial_fail(d, EACCES, "server identity mismatch", why);
		return;
	}
	if (hb_transport_tls_new(tc, &t)) {
		tls_conn_abort(tc);
		dial_fail(d, ENOMEM, "out of memory", NULL);
		return;
	}
	opts.stats = &d->w->d->hbone.h2;
	if (hb_conn_new_client(d->w->loop, t, &opts, &hc)) {
		dial_fail(d, ENOMEM, "HTTP/2 session failed", NULL);
		return;
	}
	atomic_fetch_add(&d->w->d->hbone.pool_connections, 1);
	pool_conn_ready(d->w->pool, &d->key, hc);
	dial_free(d);
}

static void dial_connected(int fd, int err, void *arg)
{
	struct dial *d = arg;
	static const struct tls_conn_cbs cbs = { .on_handshake = dial_handshake };
	struct tls_conn *tc;
	SSL_CTX *ctx;

	if (fd < 0) {
		dial_fail(d, err, "connect failed", strerror(err));
		return;
	}
	ctx = worker_ctx(d->w, d->src_id, false);
	if (!ctx) {
		close(fd);
		dial_fail(d, EIO, "no client TLS context", NULL);
		return;
	}
	err = tls_conn_new(d->w->loop, fd, ctx, false, &cbs, d, &tc);
	if (err) {
		close(fd);
		dial_fail(d, -err, "TLS setup failed", strerror(-err));
	}
}

/* pool_opts.connect: start TCP + TLS + HTTP/2 towards key->dst. */
static int pool_dial(void *arg, struct pool *p, const struct pool_key *key)
{
	struct worker *w = arg;
	struct dial *d = calloc(1, sizeof(*d));
	int err;

	if (!d)
		return -ENOMEM;
	d->w = w;
	snprintf(d->src_key, sizeof(d->src_key), "%s", key->src_identity);
	snprintf(d->src_id, sizeof(d->src_id), "%.*s",
		 (int)strcspn(key->src_identity, (char[]){ KEY_SEP, 0 }),
		 key->src_identity);
	if (dial_set_ids(d, key->dst_identities, key->n_dst_identities)) {
		free(d);
		return -ENOMEM;
	}
	memcpy(&d->dst, key->dst, sizeof(d->dst));
	memcpy(&d->src, key->src, sizeof(d->src));
	dial_key(d);
	/* From the source pod's address, like ztunnel's in-pod mode: the
	 * underlay still sees pods. */
	err = connector_start(w->loop, &d->src, &d->dst, w->d->connect_timeout_ms,
			      dial_connected, d, NULL);
	if (err)
		dial_free(d);
	return err;
}

/*
 * nbytes (<= 16) random bytes as hex for a W3C traceparent. Drawn from a
 * per-thread pool refilled with one RAND_bytes() per 1 KiB: two calls per
 * connection (each with locks and a getpid() fork check inside OpenSSL's
 * DRBG) were ~6% of the daemons' user CPU on the connection-rate run.
 */
static void rand_hex(char *out, size_t nbytes)
{
	static const char hex[] = "0123456789abcdef";
	static __thread unsigned char pool[1024];
	static __thread size_t pool_left;
	const unsigned char *b;

	if (nbytes > 16)
		nbytes = 16;
	if (pool_left < nbytes) {
		if (RAND_bytes(pool, sizeof(pool)) != 1)
			memset(pool, 0x5a, sizeof(pool));
		pool_left = sizeof(pool);
	}
	b = pool + sizeof(pool) - pool_left;
	pool_left -= nbytes;
	for (size_t i = 0; i < nbytes; i++) {
		out[2 * i] = hex[b[i] >> 4];
		out[2 * i + 1] = hex[b[i] & 15];
	}
	out[2 * nbytes] = '\0';
}

/* A CONNECT waiting for its pooled connection. */
struct stream_req {
	struct worker *w;
	struct sockaddr_in src, dst;
	tunnel_stream_cb cb;
	void *arg;
};

static void stream_req_ready(void *arg, struct hb_conn *hc, int err)
{
	struct stream_req *q = arg;
	struct worker *w = q->w;
	char authority[32], fwd[48], trace[64], tid[33], sid[17], baggage[512];
	const struct workload *swl;
	struct relay_end *up = NULL;
	struct hb_header hdrs[3];

	if (!err) {
		ip_str(&q->dst, authority);
		snprintf(fwd, sizeof(fwd), "for=\"%s\"", ip_str(&q->src, trace));
		rand_hex(tid, 16);
		rand_hex(sid, 8);
		snprintf(trace, sizeof(trace), "00-%s-%s-01", tid, sid);
		swl = state_workload_by_ip(w->state, q->src.sin_addr.s_addr);
		snprintf(baggage, sizeof(baggage),
			 "k8s.cluster.name=%s,k8s.namespace.name=%s,k8s.pod.name=%s",
			 swl && swl->cluster_id ? swl->cluster_id : "Kubernetes",
			 swl && swl->namespace ? swl->namespace : "unknown",
			 swl && swl->name ? swl->name : "unknown");
		hdrs[0] = (struct hb_header){ "forwarded", fwd };
		hdrs[1] = (struct hb_header){ "baggage", baggage };
		hdrs[2] = (struct hb_header){ "traceparent", trace };
		err = -hb_conn_open_stream(hc, authority, hdrs, 3, &up);
		if (!err)
			atomic_fetch_add(&w->d->hbone.outbound_streams, 1);
	}
	q->cb(q->arg, err ? NULL : up, err);
	free(q);
}

int tunnel_stream(struct worker *w, const struct sockaddr_in *src,
		  const struct sockaddr_in *dst, const struct workload *src_wl,
		  const char *const *ids, size_t n_ids, tunnel_stream_cb cb,
		  void *arg)
{
	struct stream_req *q;
	struct dial key_holder = { 0 };
	const char *serial = "";
	struct pool_waiter *waiter;
	struct hb_conn *hc;
	int err;

	/* A source without a workload has no identity to present. */
	if (!src_wl)
		return -EACCES;
	if (workload_identity(src_wl, key_holder.src_id, sizeof(key_holder.src_id)) ||
	    !worker_ctx_serial(w, key_holder.src_id, false, &serial))
		return -EINVAL;
	q = calloc(1, sizeof(*q));
	if (!q || dial_set_ids(&key_holder, ids, n_ids)) {
		free(q);
		return -ENOMEM;
	}
	q->w = w;
	q->src = *src;
	q->dst = *dst;
	q->cb = cb;
	q->arg = arg;
	snprintf(key_holder.src_key, sizeof(key_holder.src_key), "%s%c%s",
		 key_holder.src_id, KEY_SEP, serial);
	key_holder.dst = *dst;
	key_holder.dst.sin_port = htons(AMB_PORT_HBONE);
	key_holder.src = *src;
	key_holder.src.sin_port = 0;
	dial_key(&key_holder);
	err = pool_acquire(w->pool, &key_holder.key, stream_req_ready, q, &hc, &waiter);
	free(key_holder.ids_buf);
	if (err == 0)
		stream_req_ready(q, hc, 0);
	else if (err != -EINPROGRESS)
		free(q);
	return err == -EINPROGRESS ? 0 : err;
}

/* ---- outbound to a workload ------------------------------------------- */

/* A captured connection waiting for its CONNECT stream. */
struct outbound {
	struct worker *w;
	struct conn *c;
	int fd;
};

static void outbound_fail(struct outbound *o, int err)
{
	char a[32], b[32];

	log_info_rl("hbone %s -> %s: %s", ip_str(&o->c->src, a),
		    ip_str(&o->c->dst, b), strerror(err));
	conn_settle(o->c);
	conn_tel_fail(o->c, amb_flag_from_dial(err), err, NULL);
	reset_close(o->fd);
	free(o->c);
	free(o);
}

static void outbound_stream(void *arg, struct relay_end *up, int err)
{
	struct outbound *o = arg;
	struct worker *w = o->w;
	struct relay_opts opts = { .buf_size = w->d->relay_buf_size,
				   .done = conn_done, .arg = o->c };
	struct relay_end *down;

	if (err) {
		outbound_fail(o, err);
		return;
	}
	err = relay_end_tcp_new(w->loop, o->fd, &down);
	if (err) {
		up->ops->abort(up);
		outbound_fail(o, -err);
		return;
	}
	atomic_fetch_add(&w->live, 1);
	conn_tel_meters(o->c, opts.meters);
	conn_settle(o->c);
	/* The stream end reports "connected" on 200 and the mapped error
	 * otherwise; the relay resets the client then. */
	err = relay_start(w->loop, down, up, true, &opts, &o->c->relay);
	if (err)
		conn_start_failed(o->c, err);
	free(o);
}

void tunnel_outbound(struct worker *w, struct conn *c, int fd,
		     const struct workload *src_wl, const struct workload *dst_wl)
{
	struct outbound *o = calloc(1, sizeof(*o));
	char id[SPIFFE_ID_MAX];
	const char *ids[1] = { id };
	int err;

	if (!o) {
		conn_settle(c);
		conn_tel_fail(c, AMB_F_INTERNAL, ENOMEM, NULL);
		reset_close(fd);
		free(c);
		return;
	}
	o->w = w;
	o->c = c;
	o->fd = fd;
	/* A source without a workload has no identity to present. */
	if (!src_wl) {
		conn_tel_flag(c, AMB_F_NO_IDENTITY, "source is not a workload");
		outbound_fail(o, EACCES);
		return;
	}
	if (workload_identity(dst_wl, id, sizeof(id))) {
		outbound_fail(o, EINVAL);
		return;
	}
	err = tunnel_stream(w, &c->src, &c->dst, src_wl, ids, 1, outbound_stream, o);
	if (err)
		outbound_fail(o, -err);
}

/* ---- inbound: 15008 ----------------------------------------------------- */

/* A client that connected must start TLS within this long. */
#define HBONE_FIRST_BYTE_MS 5000

/* One accepted HBONE connection, from handshake to its end. */
struct inbound {
	struct worker *w;
	struct sockaddr_in src, dst; /* the TLS connection's peer and local */
	char peer_id[SPIFFE_ID_MAX];
	struct hb_conn *hc;
	/* Freed when the conn closed and no upstream connect still refers
	 * to it. */
	unsigned pending;
	bool closed;
	struct inbound *prev, *next; /* on w->inbounds while hc is live */
	/* Until its handshake ended the connection holds a pending slot of
	 * the 15008 listener (listener_admit) and, once TLS started, a
	 * handshake slot (struct hs_budget). */
	struct listener *ls;
	bool hs_slot;
	struct tls_conn *tc; /* during the handshake (on hs_budget.shaking) */
};

/*
 * An accepted 15008 connection without TLS state: it has sent nothing yet,
 * or it waits for a handshake slot. Only this and the socket exist (about
 * 5 KiB with the kernel's bookkeeping in the daemon's RSS), until the
 * first-byte deadline.
 */
struct inbound_wait {
	struct inbound *in;
	struct loop_io io;
	struct loop_timer deadline;
	struct inbound_wait *prev, *next; /* in the slot queue */
	bool queued;
	/* On hs_budget.waiters: everything a stopping worker must free. */
	struct inbound_wait *wprev, *wnext;
};

/*
 * Handshakes in progress cost what OpenSSL keeps for them, ~40 KiB each
 * (the SSL object, a zero-filled 16 KiB message buffer, key exchange and
 * transcript state): more than a pending connection should. So each worker
 * runs at most hs_max at once and hs_per_source from one address; clients
 * past that wait, without TLS state, in arrival order, and are reset if no
 * slot frees before their first-byte deadline. Memory in handshakes is then
 * bounded by hs_max x 40 KiB per worker whatever a peer does.
 */
struct hs_budget {
	uint32_t active;
	struct srctrack by_source;
	struct inbound_wait *head, *tail; /* waiting for a slot */
	/* Every waiter, and every inbound in its TLS handshake (linked by
	 * its prev/next, which w->inbounds uses only after the handshake):
	 * only the loop refers to them, so a stopping worker frees them
	 * from here. */
	struct inbound_wait *waiters;
	struct inbound *shaking;
	bool kicking; /* hs_kick() runs: a slot freed inside it is seen there */
};

static void waiter_unlink(struct inbound_wait *wt)
{
	struct hs_budget *hs = wt->in->w->hs;

	if (wt->wprev)
		wt->wprev->wnext = wt->wnext;
	else
		hs->waiters = wt->wnext;
	if (wt->wnext)
		wt->wnext->wprev = wt->wprev;
	wt->wprev = wt->wnext = NULL;
}

static void shaking_unlink(struct inbound *in)
{
	struct hs_budget *hs = in->w->hs;

	if (!in->tc)
		return;
	if (in->prev)
		in->prev->next = in->next;
	else
		hs->shaking = in->next;
	if (in->next)
		in->next->prev = in->prev;
	in->prev = in->next = NULL;
	in->tc = NULL;
}

static void hs_start(struct inbound_wait *wt);

static bool hs_take(struct worker *w, struct inbound *in)
{
	struct hs_budget *hs = w->hs;

	if (hs->active >= w->d->hs_max ||
	    srctrack_take(&hs->by_source, in->src.sin_addr.s_addr, w->d->hs_per_source))
		return false;
	hs->active++;
	in->hs_slot = true;
	return true;
}

static void hs_enqueue(struct worker *w, struct inbound_wait *wt)
{
	struct hs_budget *hs = w->hs;

	wt->queued = true;
	wt->next = NULL;
	wt->prev = hs->tail;
	if (hs->tail)
		hs->tail->next = wt;
	else
		hs->head = wt;
	hs->tail = wt;
}

static void hs_dequeue(struct worker *w, struct inbound_wait *wt)
{
	struct hs_budget *hs = w->hs;

	if (wt->prev)
		wt->prev->next = wt->next;
	else
		hs->head = wt->next;
	if (wt->next)
		wt->next->prev = wt->prev;
	else
		hs->tail = wt->prev;
	wt->queued = false;
	wt->prev = wt->next = NULL;
}

/* How far one freed slot looks down the queue past clients whose source
 * is at its cap (bounded work per handshake; those expire in time). */
#define HS_KICK_SCAN 64

/* A slot freed: start the oldest waiting client that may have one. */
static void hs_kick(struct worker *w)
{
	struct hs_budget *hs = w->hs;
	struct inbound_wait *wt, *next;
	int n = 0;

	if (hs->kicking)
		return;
	hs->kicking = true;
	for (wt = hs->head; wt && n < HS_KICK_SCAN && hs->active < w->d->hs_max;
	     wt = next, n++) {
		if (!hs_take(w, wt->in)) {
			next = wt->next; /* its source is at its cap: the next one */
			continue;
		}
		hs_dequeue(w, wt);
		hs_start(wt);
		next = hs->head; /* starting may have changed the queue */
	}
	hs->kicking = false;
}

/* The handshake ended (either way): give the pending and handshake slots
 * back. */
static void inbound_settle(struct inbound *in)
{
	struct worker *w = in->w;

	if (in->ls) {
		listener_done(in->ls, &in->src);
		in->ls = NULL;
	}
	if (in->hs_slot) {
		in->hs_slot = false;
		w->hs->active--;
		srctrack_put(&w->hs->by_source, in->src.sin_addr.s_addr);
		hs_kick(w);
	}
}

static void inbound_link(struct inbound *in)
{
	struct worker *w = in->w;

	in->prev = NULL;
	in->next = w->inbounds;
	if (w->inbounds)
		w->inbounds->prev = in;
	w->inbounds = in;
}

static void inbound_unlink(struct inbound *in)
{
	if (in->prev)
		in->prev->next = in->next;
	else if (in->w->inbounds == in)
		in->w->inbounds = in->next;
	if (in->next)
		in->next->prev = in->prev;
	in->prev = in->next = NULL;
}

/* Telemetry for one CONNECT on this inbound connection (reporter
 * destination; the caller's verified identity is the source principal). */
static void inbound_tel_begin(struct inbound *in, struct conn *c,
			      const struct workload *dst_wl)
{
	struct tel_desc d = {
		.src_wl = state_workload_by_ip(in->w->state, in->src.sin_addr.s_addr),
		.dst_wl = dst_wl,
		.src_principal = in->peer_id[0] ? in->peer_id : NULL,
		.mtls = true,
		.hbone = true,
		.report_destination = true,
	};

	conn_tel_begin(c, &d);
}

/* A CONNECT refused before any relay: count and log it. */
static void inbound_tel_reject(struct inbound *in, const struct sockaddr_in *target,
			       const struct workload *dst_wl, enum amb_flag flag,
			       int err, const char *why)
{
	struct conn c = { .w = in->w, .kind = LISTEN_HBONE, .route = ROUTE_LOCAL,
			  .src = in->src, .dst = target ? *target : in->dst };

	inbound_tel_begin(in, &c, dst_wl);
	conn_tel_fail(&c, flag, err, why);
}

static void inbound_put(struct inbound *in)
{
	if (in->closed && in->pending == 0)
		free(in);
}

/* One CONNECT waiting for its upstream connect. */
struct pending {
	struct inbound *in;
	struct hb_stream_req *req;
	struct sockaddr_in target;
};

static void inbound_log(struct inbound *in, const struct sockaddr_in *target,
			int status, const char *why)
{
	char a[32], b[32];

	/* Refusals are a peer's to cause at will: bounded. */
	if (status == 200)
		log_debug("hbone inbound %s identity %s -> %s: 200", ip_str(&in->src, a),
			  in->peer_id, target ? ip_str(target, b) : "?");
	else
		log_info_rl("hbone inbound %s identity %s -> %s: %d%s%s",
			    ip_str(&in->src, a), in->peer_id,
			    target ? ip_str(target, b) : "?", status,
			    why ? " " : "", why ? why : "");
}

static void pending_connected(int fd, int err, void *arg)
{
	struct pending *p = arg;
	struct inbound *in = p->in;
	struct worker *w = in->w;
	struct relay_end *down, *up;
	struct conn *c;
	struct relay_opts opts = { .buf_size = w->d->relay_buf_size, .done = conn_done };

	in->pending--;
	if (fd < 0) {
		char why[96];

		snprintf(why, sizeof(why), "(upstream connect: %s)", strerror(err));
		inbound_log(in, &p->target, 503, why);
		inbound_tel_reject(in, &p->target,
				   state_workload_by_ip(w->state, p->target.sin_addr.s_addr),
				   amb_flag_from_dial(err), err, NULL);
		hb_stream_respond(p->req, 503);
		free(p);
		inbound_put(in);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c || hb_stream_accept(p->req, &down)) {
		close(fd);
		hb_stream_respond(p->req, 503);
		inbound_tel_reject(in, &p->target, NULL, AMB_F_INTERNAL, ENOMEM, NULL);
		goto out;
	}
	c->w = w;
	c->kind = LISTEN_HBONE;
	c->route = ROUTE_LOCAL;
	c->src = in->src;
	c->dst = p->target;
	inbound_tel_begin(in, c, state_workload_by_ip(w->state, p->target.sin_addr.s_addr));
	if (relay_end_tcp_new(w->loop, fd, &up)) {
		close(fd);
		down->ops->abort(down);
		conn_tel_fail(c, AMB_F_INTERNAL, ENOMEM, NULL);
		goto out;
	}
	opts.arg = c;
	if (conn_police(c, in->peer_id)) {
		up->ops->abort(up);
		down->ops->abort(down);
		conn_tel_fail(c, AMB_F_INTERNAL, ENOMEM, NULL);
		goto out;
	}
	inbound_log(in, &p->target, 200, NULL);
	/* 200 only now that the pod accepted the connection. */
	hb_stream_respond(p->req, 200);
	atomic_fetch_add(&w->live, 1);
	conn_tel_meters(c, opts.meters);
	/* c->relay is set before anything can finish the relay (and free c). */
	err = relay_start(w->loop, down, up, false, &opts, &c->relay);
	if (err)
		conn_start_failed(c, err);
	c = NULL;
out:
	free(c);
	free(p);
	inbound_put(in);
}

static void inbound_on_connect(void *arg, struct hb_conn *hc, struct hb_stream_req *req)
{
	struct authz_result res;
	char why[600];
	struct inbound *in = arg;
	struct worker *w = in->w;
	const struct workload *wl;
	struct sockaddr_in target;
	struct pending *p;
	int err;

	atomic_fetch_add(&w->d->hbone.inbound_streams, 1);
	/* The authority must name the pod this connection was addressed to:
	 * a tunnel only delivers to its own pods. */
	if (addr_parse_ipport(req->authority, &target) ||
	    target.sin_addr.s_addr != in->dst.sin_addr.s_addr) {
		inbound_log(in, NULL, 400, req->authority);
		inbound_tel_reject(in, NULL, NULL, AMB_F_BAD_REQUEST, EINVAL,
				   "CONNECT authority is not this pod");
		hb_stream_respond(req, 400);
		return;
	}
	wl = state_workload_by_ip(w->state, target.sin_addr.s_addr);
	if (!wl || !wl->node || strcmp(wl->node, w->d->node) != 0) {
		inbound_log(in, &target, 503, "(unknown workload)");
		inbound_tel_reject(in, &target, wl, AMB_F_NO_WORKLOAD, 0,
				   "not a workload of this node");
		hb_stream_respond(req, 503);
		return;
	}
	if (!worker_authorize(w, wl, in->peer_id, &in->src, &target,
			      "hbone inbound", &res)) {
		inbound_log(in, &target, 401, "(denied by policy)");
		if (res.policy)
			snprintf(why, sizeof(why), "denied by policy %s/%s",
				 res.policy->namespace, res.policy->name);
		else
			snprintf(why, sizeof(why), "denied: %s",
				 authz_reason_name(res.reason));
		inbound_tel_reject(in, &target, wl, AMB_F_DENY, EACCES, why);
		hb_stream_respond(req, 401);
		return;
	}
	p = calloc(1, sizeof(*p));
	if (!p) {
		hb_stream_respond(req, 503);
		inbound_tel_reject(in, &target, wl, AMB_F_INTERNAL, ENOMEM, NULL);
		return;
	}
	p->in = in;
	p->req = req;
	p->target = target;
	/* As the client: the pod sees the caller's real address. */
	err = connector_start(w->loop, &in->src, &target, w->d->connect_timeout_ms,
			      pending_connected, p, NULL);
	if (!err)
		in->pending++;
	else {
		inbound_log(in, &target, 503, strerror(-err));
		inbound_tel_reject(in, &target, wl, amb_flag_from_dial(-err), -err, NULL);
		hb_stream_respond(req, 503);
		free(p);
	}
}

static void inbound_observe(void *arg, struct hb_conn *hc, enum hb_conn_event ev)
{
	struct inbound *in = arg;

	if (ev == HB_CONN_EV_CLOSED) {
		inbound_unlink(in);
		in->closed = true;
		in->hc = NULL;
		inbound_put(in);
	}
}

static void inbound_handshake(struct tls_conn *tc, bool ok, const char *err, void *arg)
{
	struct inbound *in = arg;
	struct hb_server_cbs cbs = { .on_connect = inbound_on_connect, .arg = in };
	struct hb_conn_opts opts = { 0 };
	struct hb_transport *t;
	char a[32];

	shaking_unlink(in);
	inbound_settle(in);
	if (!ok) {
		atomic_fetch_add(&in->w->d->hbone.handshake_failures, 1);
		log_info_rl("hbone inbound %s: TLS handshake refused: %s",
			 ip_str(&in->src, a), err ? err : "?");
		tls_conn_close(tc);
		free(in);
		return;
	}
	tls_peer_identity(tls_conn_ssl(tc), in->peer_id, sizeof(in->peer_id));
	if (hb_transport_tls_new(tc, &t)) {
		tls_conn_abort(tc);
		free(in);
		return;
	}
	opts.stats = &in->w->d->hbone.h2;
	opts.idle_timeout_ms = in->w->d->hbone_idle_timeout_ms;
	if (hb_conn_new_server(in->w->loop, t, &opts, &cbs, &in->hc)) {
		free(in);
		return;
	}
	atomic_fetch_add(&in->w->d->hbone.inbound_connections, 1);
	if (log_threshold >= LOG_DEBUG) {
		X509 *peer = SSL_get0_peer_certificate(tls_conn_ssl(tc));
		BIGNUM *bn = peer ? ASN1_INTEGER_to_BN(X509_get0_serialNumber(peer), NULL) : NULL;
		char *hex = bn ? BN_bn2hex(bn) : NULL;

		log_debug("hbone inbound %s: identity %s serial %s", ip_str(&in->src, a),
			  in->peer_id, hex ? hex : "?");
		OPENSSL_free(hex);
		BN_free(bn);
	}
	hb_conn_set_observer(in->hc, inbound_observe, in);
	inbound_link(in);
}

static void wait_end(struct inbound_wait *wt)
{
	struct loop *l = wt->in->w->loop;

	waiter_unlink(wt);
	if (wt->queued)
		hs_dequeue(wt->in->w, wt);
	loop_io_stop(l, &wt->io);
	loop_timer_disarm(l, &wt->deadline);
	loop_defer_free(l, wt, free);
}

/* Nothing arrived in time: the client never started TLS. */
static void wait_timeout(struct loop *l, struct loop_timer *t)
{
	struct inbound_wait *wt = t->arg;
	struct inbound *in = wt->in;
	int fd = wt->io.fd;
	char a[32];

	atomic_fetch_add(&in->w->d->hbone.handshake_failures, 1);
	atomic_fetch_add(&in->w->d->hbone.handshake_timeouts, 1);
	if (wt->queued)
		atomic_fetch_add(&in->w->d->hbone.handshake_slot_timeouts, 1);
	log_info_rl("hbone inbound %s: %s in %d ms; reset", ip_str(&in->src, a),
		    wt->queued ? "no handshake slot free" : "no TLS bytes",
		    HBONE_FIRST_BYTE_MS);
	wait_end(wt);
	inbound_settle(in);
	reset_close(fd);
	free(in);
}

/* Build the TLS state (the handshake slot is taken). */
static void hs_start(struct inbound_wait *wt)
{
	static const struct tls_conn_cbs cbs = { .on_handshake = inbound_handshake };
	struct inbound *in = wt->in;
	struct worker *w = in->w;
	const struct workload *wl;
	char id[SPIFFE_ID_MAX];
	struct tls_conn *tc;
	SSL_CTX *ctx = NULL;
	int fd = wt->io.fd;

	wait_end(wt);
	/* We answer as the pod the client dialed, with its certificate (the
	 * current one: it may have rotated while we waited). */
	wl = state_workload_by_ip(w->state, in->dst.sin_addr.s_addr);
	if (wl && !workload_identity(wl, id, sizeof(id)))
		ctx = worker_ctx(w, id, true);
	if (!ctx || tls_conn_new(w->loop, fd, ctx, true, &cbs, in, &tc)) {
		inbound_settle(in);
		reset_close(fd);
		free(in);
		return;
	}
	in->tc = tc;
	in->prev = NULL;
	in->next = w->hs->shaking;
	if (in->next)
		in->next->prev = in;
	w->hs->shaking = in;
}

/* The first bytes are there: now the TLS state is worth building, if a
 * handshake slot is free; else wait for one, not reading. */
static void wait_readable(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct inbound_wait *wt = io->arg;

	if (hs_take(wt->in->w, wt->in)) {
		hs_start(wt);
		return;
	}
	loop_io_update(l, io, 0);
	hs_enqueue(wt->in->w, wt);
}

void tunnel_inbound(struct worker *w, struct listener *ls, int fd,
		    const struct sockaddr_in *src, const struct sockaddr_in *dst)
{
	const struct workload *wl;
	struct inbound_wait *wt;
	struct inbound *in;

	wl = state_workload_by_ip(w->state, dst->sin_addr.s_addr);
	if (!wl || !wl->node || strcmp(wl->node, w->d->node) != 0) {
		listener_done(ls, src);
		listener_refuse(ls, LREF_NOT_WORKLOAD, src, dst);
		reset_close(fd);
		return;
	}
	in = calloc(1, sizeof(*in));
	wt = in ? calloc(1, sizeof(*wt)) : NULL;
	if (!wt) {
		free(in);
		listener_done(ls, src);
		reset_close(fd);
		return;
	}
	in->w = w;
	in->src = *src;
	in->dst = *dst;
	in->ls = ls;
	wt->in = in;
	loop_io_init(&wt->io, fd, wait_readable, wt);
	loop_timer_init(&wt->deadline, wait_timeout, wt);
	loop_timer_arm(w->loop, &wt->deadline, HBONE_FIRST_BYTE_MS);
	if (loop_io_update(w->loop, &wt->io, EPOLLIN)) {
		loop_timer_disarm(w->loop, &wt->deadline);
		free(wt);
		inbound_settle(in);
		reset_close(fd);
		free(in);
		return;
	}
	wt->wnext = w->hs->waiters;
	if (wt->wnext)
		wt->wnext->wprev = wt;
	w->hs->waiters = wt;
}

int tunnel_worker_init(struct worker *w)
{
	struct pool_opts opts = { .connect = pool_dial, .arg = w };

	w->hs = calloc(1, sizeof(*w->hs));
	if (!w->hs)
		return -ENOMEM;
	w->pool = pool_new(w->loop, &opts);
	return w->pool ? 0 : -ENOMEM;
}

void tunnel_worker_drain(struct worker *w)
{
	for (struct inbound *in = w->inbounds; in; in = in->next)
		if (in->hc)
			hb_conn_drain(in->hc);
}

void tunnel_worker_fini(struct worker *w)
{
	struct inbound *in, *next;

	/* Accepted HBONE connections still open are reset like the pool's
	 * below; closing one unlinks (and frees) it, and loop_free() runs
	 * the deferred frees, so a stopped worker leaves nothing behind. */
	for (in = w->inbounds; in; in = next) {
		next = in->next;
		if (in->hc)
			hb_conn_close(in->hc);
	}
	/* Not yet HTTP/2: waiting for bytes or a slot, or in the handshake. */
	while (w->hs && w->hs->waiters) {
		struct inbound_wait *wt = w->hs->waiters;
		int fd = wt->io.fd;

		in = wt->in;
		wait_end(wt);
		inbound_settle(in);
		reset_close(fd);
		free(in);
	}
	while (w->hs && (in = w->hs->shaking)) {
		struct tls_conn *tc = in->tc;

		shaking_unlink(in);
		tls_conn_abort(tc);
		inbound_settle(in);
		free(in);
	}
	if (w->pool)
		pool_free(w->pool);
	w->pool = NULL;
	ctx_cache_clear(w);
	if (w->hs)
		srctrack_free(&w->hs->by_source);
	free(w->hs);
	w->hs = NULL;
}
