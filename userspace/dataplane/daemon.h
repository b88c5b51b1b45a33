/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The daemon's shared pieces: the control thread owns config, BPF and the
 * current state snapshot; worker threads own listeners and connections and
 * pick up new snapshots at their next loop turn (no locks on the data path).
 */
#ifndef AMBIENTD_DAEMON_H
#define AMBIENTD_DAEMON_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hbone.h"
#include "lb.h"
#include "state.h"

struct state;
struct worker;
struct ca;
struct certstore;
struct workload;

/* HBONE counters, summed over workers (relaxed atomics, for status/tests). */
struct hbone_stats {
	atomic_uint_fast64_t pool_connections; /* outbound TLS conns created */
	atomic_uint_fast64_t outbound_streams; /* CONNECTs sent */
	atomic_uint_fast64_t inbound_connections; /* 15008 handshakes passed */
	atomic_uint_fast64_t inbound_streams;  /* CONNECTs received */
	atomic_uint_fast64_t handshake_failures;
	atomic_uint_fast64_t handshake_timeouts; /* no TLS bytes (or slot) in time */
	atomic_uint_fast64_t handshake_slot_timeouts; /* of those: waited for a slot */
	/* Every HBONE conn's abuse counters (hb_conn_opts.stats): HTTP/2
	 * error codes sent, deadlines, limits; client and server side. */
	struct hb_stats h2;
};

/* Authorization outcomes that no single policy owns. */
struct authz_stats {
	atomic_uint_fast64_t allowed;
	atomic_uint_fast64_t denied;
	atomic_uint_fast64_t denied_no_allow_match; /* "default deny" */
	atomic_uint_fast64_t denied_strict;	    /* STRICT, plaintext */
	atomic_uint_fast64_t closed_on_change;	    /* live conns re-denied */
};

#define DAEMON_MAX_SVC_NETS 64

/*
 * The node's own IPv4 addresses, kept by the control thread (at start and
 * on every address change) for the capture listeners: a connection whose
 * original destination is one of them was not captured by tc but dialed
 * straight at a listener, and relaying it would dial ourselves again, and
 * again, until the fds run out. A seqlock: the writer bumps seq to odd,
 * rewrites, bumps to even; readers retry while it moves.
 */
#define DAEMON_MAX_LOCAL_ADDRS 64
struct local_addrs {
	atomic_uint seq;
	atomic_uint n;
	_Atomic uint32_t addr[DAEMON_MAX_LOCAL_ADDRS]; /* network order */
};
/* Control thread: replace the set. */
void local_addrs_set(struct local_addrs *la, const uint32_t *addrs, size_t n);
/* Any thread: is addr (network order) the node's own, or loopback? */
bool local_addrs_has(struct local_addrs *la, uint32_t addr);

/* Budgets of the capture listeners (per worker and listener): connections
 * still connecting upstream (15001/15006) or in their TLS handshake
 * (15008), in all and per source address. */
#define DAEMON_DEFAULT_PENDING_MAX 8192
#define DAEMON_DEFAULT_PENDING_PER_SOURCE 1024
/* 15008 handshakes with TLS state at once, per worker (tunnel.c). */
#define DAEMON_DEFAULT_HS_MAX 256
#define DAEMON_DEFAULT_HS_PER_SOURCE 32

struct daemon {
	const char *node;
	size_t relay_buf_size;
	unsigned connect_timeout_ms; /* TCP connects towards upstreams */
	/* Inbound HBONE conns without a stream are drained after this long
	 * (--hbone-idle-timeout; 0: hbone.c's default). */
	unsigned hbone_idle_timeout_ms;
	unsigned pending_max;	     /* DAEMON_DEFAULT_PENDING_MAX */
	unsigned pending_per_source; /* DAEMON_DEFAULT_PENDING_PER_SOURCE */
	unsigned hs_max;	     /* DAEMON_DEFAULT_HS_MAX */
	unsigned hs_per_source;	     /* DAEMON_DEFAULT_HS_PER_SOURCE */
	struct local_addrs local;
	struct lb_opts lb;
	/* --service-cidr: VIP ranges; an unknown VIP in them is refused. */
	struct ip_cidr svc_nets[DAEMON_MAX_SVC_NETS];
	size_t n_svc_nets;
	atomic_uint_fast64_t unknown_vip_refused;
	atomic_uint_fast64_t config_rejected; /* reloads refused (old config kept) */
	/* bpf_sk_assign accepts SO_REUSEPORT listeners only from Linux 6.5;
	 * before that there is one listener per port (and one worker). */
	bool reuseport;

	/* Published snapshot: replaced under state_lock, generation bumped
	 * after; workers compare generations lock-free every turn. */
	pthread_mutex_t state_lock;
	struct state *state;
	atomic_uint_fast64_t state_gen;

	struct worker **workers;
	int n_workers;

	/* Identity: the mesh root and the workloads' leaf certificates. */
	const char *trust_domain;
	struct ca *ca;
	struct certstore *certs;
	struct hbone_stats hbone;
	struct authz_stats authz;
};

/* spiffe://<td>/ns/<ns>/sa/<sa> of a workload into buf; 0 or -errno. */
int workload_identity(const struct workload *wl, char *buf, size_t len);

/* A new reference to the current snapshot (never NULL once started). */
struct state *daemon_state_get(struct daemon *d);
/* Publish st (takes over the caller's reference). */
void daemon_state_publish(struct daemon *d, struct state *st);

/* Start n worker threads with their listeners. 0 or -errno (logged). */
int workers_start(struct daemon *d, int n);
/* Stop the workers' loops, join and free them. Relays still open are not
 * drained: their sockets close when the process exits (no graceful drain
 * yet; that is the admin API's /quitquitquit, a later issue). */
void workers_stop(struct daemon *d);
/* Live relays across all workers (approximate, for logs). */
size_t workers_live_connections(struct daemon *d);

#endif
