/* SPDX-License-Identifier: Apache-2.0 */
/* Internal to the worker threads: worker.c (listeners, plain relays) and
 * tunnel.c (HBONE both ways). */
#ifndef AMBIENTD_WORKER_H
#define AMBIENTD_WORKER_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "accept.h"
#include "srctrack.h"
#include "loop.h"
#include "telemetry.h"

struct daemon;
struct relay;
struct relay_end;
struct relay_summary;
struct state;
struct workload;
struct tls_ctx_entry;
struct pool;
struct authz_result;
struct service;
struct svc_conn;
struct inbound;

enum listener_kind {
	LISTEN_OUTBOUND, /* 15001: captured pod egress */
	LISTEN_INBOUND,  /* 15006: plaintext towards a local pod */
	LISTEN_HBONE,    /* 15008: mTLS + HTTP/2 CONNECT */
	LISTEN_KINDS,
};

/* Where a captured connection goes. */
enum route_kind {
	ROUTE_LOCAL,       /* destination pod on this node: deliver directly */
	ROUTE_PASSTHROUGH, /* not in the mesh: plain TCP to the original destination */
	ROUTE_HBONE,       /* mesh workload elsewhere: CONNECT over pooled mTLS */
};

struct worker;

/* Why a capture listener turned a connection away
 * (ambientd_listener_refused_total{listener, reason}). */
enum listen_refusal {
	LREF_SELF_DIAL,	     /* destination is the node itself (not captured) */
	LREF_PENDING_LIMIT,  /* pending_max connections still pending */
	LREF_SOURCE_LIMIT,   /* pending_per_source from this address */
	LREF_NOT_WORKLOAD,   /* 15008: destination is no workload of this node */
	LREF_MAX,
};
const char *listen_refusal_name(enum listen_refusal r);
const char *listener_name(enum listener_kind k);

struct listener {
	struct acceptor acc;
	struct worker *w;
	enum listener_kind kind;
	/* Pending: 15001/15006 connecting upstream, 15008 handshaking. */
	uint32_t pending;
	struct srctrack by_source;
	atomic_uint_fast64_t refused[LREF_MAX];
};

/*
 * Admission of a pending connection from src on listener ls: 0, or the
 * refusal (counted, logged at a bounded rate) after which the caller resets
 * the connection. Every 0 is matched by one listener_done().
 */
int listener_admit(struct listener *ls, const struct sockaddr_in *src);
void listener_done(struct listener *ls, const struct sockaddr_in *src);
/* Count and log a refusal. */
void listener_refuse(struct listener *ls, enum listen_refusal why,
		     const struct sockaddr_in *src, const struct sockaddr_in *dst);

struct worker {
	int id;
	pthread_t thread;
	struct daemon *d;
	struct loop *loop;
	struct listener lst[LISTEN_KINDS];
	struct state *state; /* this thread's reference */
	uint64_t state_gen;
	atomic_size_t live;
	/* HBONE: pooled client connections and TLS contexts per identity. */
	struct pool *pool;
	struct tls_ctx_entry *ctxs;
	uint64_t ctx_gen;
	/* Live connections into local pods that policy governs; re-checked
	 * when a new snapshot arrives. */
	struct conn *policed;
	uint64_t rng; /* xorshift state: lock-free randomness for balancing */
	/* Telemetry: label-set counters, live connections, mailbox. */
	struct tel_worker *tel;
	/* Accepted HBONE connections (tunnel.c), for GOAWAY on drain. */
	struct inbound *inbounds;
	/* Inbound TLS handshakes running and waiting (tunnel.c). */
	struct hs_budget *hs;
	/* Listeners open (cleared by worker_stop_listening()). */
	atomic_bool listening;
};

/* A pseudo-random number from the worker's own generator. */
static inline uint32_t worker_rand(struct worker *w)
{
	uint64_t x = w->rng;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	w->rng = x;
	return (uint32_t)(x >> 32);
}

/* Per-connection record for logs; freed by the relay's done callback. */
struct conn {
	struct worker *w;
	enum listener_kind kind;
	enum route_kind route;
	/* Holds one of its listener's pending slots (listener_admit) until
	 * the upstream is there or the connection failed: conn_settle(). */
	bool admitted;
	int down_fd; /* the client's socket while the upstream connects */
	struct sockaddr_in src, dst;
	/* Policy: set for connections delivered to a local mesh pod. */
	bool policed;
	char *identity;	     /* caller's SPIFFE ID (malloc'd), NULL: plaintext */
	/* The pod address policy judges: dst, or a VIP's chosen endpoint. */
	struct sockaddr_in target;
	struct relay *relay; /* once started */
	struct conn *prev, *next; /* on w->policed */
	/* Service connections: the balancing context (service.c), freed
	 * with the conn. */
	struct svc_conn *svc;
	struct conn_tel tel; /* metrics and access log (telemetry.h) */
};

/*
 * Authorize a connection from src (identity NULL: plaintext) to local mesh
 * workload dst at `to` (DESIGN.md §5); counts and logs the decision and any
 * dryRun outcome. Returns true when allowed; *res (may be NULL) gets the
 * details.
 */
bool worker_authorize(struct worker *w, const struct workload *dst,
		      const char *identity, const struct sockaddr_in *src,
		      const struct sockaddr_in *to, const char *where,
		      struct authz_result *res);
/*
 * Put c on the worker's policed list (c->identity: a copy of identity) so a
 * policy change re-checks it against c->target (c->dst unless set). 0 or -ENOMEM. The relay's done callback takes
 * it off again.
 */
int conn_police(struct conn *c, const char *identity);
/* Off the policed list again (e.g. a service retry goes elsewhere). */
void conn_unpolice(struct conn *c);

/* The connection stopped being pending (relaying, or failed): give its
 * listener's pending slot back. Idempotent. */
void conn_settle(struct conn *c);

/* relay_start() failed (it reset both ends; no done callback comes): undo
 * the live count and the policed entry, free c. */
void conn_start_failed(struct conn *c, int err);

/* Relay done callback for every kind of connection: logs, frees c. */
void conn_done(struct relay *r, const struct relay_summary *s, void *arg);
/* "a.b.c.d:port" into buf (at least 24 bytes); returns buf. */
const char *ip_str(const struct sockaddr_in *a, char *buf);
const char *route_name(enum route_kind r);

/* Close this worker's listeners (drain): new connections are refused.
 * Worker thread only. */
void worker_stop_listening(struct worker *w);
/* Control thread: 0 when every worker's listeners are listening, else
 * -errno and a sentence in why. */
int workers_check_listeners(struct daemon *d, char *why, size_t len);

/* tunnel.c */
int tunnel_worker_init(struct worker *w);
void tunnel_worker_fini(struct worker *w);
/* GOAWAY on every accepted HBONE connection: peers open no new streams. */
void tunnel_worker_drain(struct worker *w);
/* Outbound to a remote HBONE workload; takes fd and c. */
void tunnel_outbound(struct worker *w, struct conn *c, int fd,
		     const struct workload *src_wl, const struct workload *dst_wl);
/*
 * A CONNECT stream from src (its workload's identity, certificate and
 * address) to dst (the :authority; the pooled connection goes to
 * dst_ip:15008), on a connection whose server proves one of ids. cb gets
 * the stream end (not yet answered: it reports "connected" on 200) or a
 * positive errno; it may run before tunnel_stream() returns. Returns 0
 * (cb will run) or -errno (it will not).
 */
typedef void (*tunnel_stream_cb)(void *arg, struct relay_end *up, int err);
int tunnel_stream(struct worker *w, const struct sockaddr_in *src,
		  const struct sockaddr_in *dst, const struct workload *src_wl,
		  const char *const *ids, size_t n_ids, tunnel_stream_cb cb,
		  void *arg);

/* service.c: a captured connection to a service VIP; takes fd and c. */
void service_outbound(struct worker *w, struct conn *c, int fd,
		      const struct workload *src_wl, const struct service *svc);
/* Release c->svc (active counts, references); from conn_done. */
void service_conn_done(struct conn *c, bool connect_failed);

/* A connection accepted on 15008 and admitted on ls (listener_admit);
 * takes fd and calls listener_done() when the handshake ended. */
void tunnel_inbound(struct worker *w, struct listener *ls, int fd,
		    const struct sockaddr_in *src, const struct sockaddr_in *dst);

#endif
