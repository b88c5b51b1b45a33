/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Connection telemetry: Istio's TCP metrics, the access log and the live
 * connection list, fed by the worker threads without a lock.
 *
 * Metrics model (ztunnel's): every connection the tunnel takes on is
 * reported by one or two "reporters" — `source` (this tunnel carries a
 * local pod's outbound connection) and/or `destination` (this tunnel
 * delivers to a local pod). Each reporter puts the connection into a
 * series: the full label set of DESIGN.md §6 except response_flags.
 *   opened_total{response_flags="-"}   when the tunnel takes it on
 *   received/sent_bytes_total{"-"}     as bytes flow (relay meters)
 *   sockets_open{"-"}                  connections open now
 *   closed_total{flag}                 when it ends, with how it ended
 *   failed_total{flag}                 same, for flags other than "-"
 * "received" counts client -> server bytes (the request side), "sent"
 * server -> client bytes (the response side), for both reporters, as
 * Istio defines them.
 *
 * Cardinality: one series per distinct label set (workload pair, not
 * connection), at most TEL_MAX_SERIES per worker; connections beyond that
 * are counted in ambientd_metrics_series_overflow_total only.
 *
 * Threading: a worker's series table is written only by that worker
 * (append-only; the count is published with release order) and read by
 * the control thread at scrape time with relaxed/acquire loads, so the
 * data path never waits. Series live until the daemon exits.
 *
 * ---- Marking how a connection ended (the API for policy and drain) ----
 *
 * Every struct conn (worker.h) carries a struct conn_tel. The worker calls
 * conn_tel_begin() once it knows who talks to whom, and the connection is
 * then recorded exactly once:
 *   - by conn_done() (relay finished): the flag is the one set with
 *     conn_tel_flag() if any, else derived from the relay's result;
 *   - or by conn_tel_fail() when it ends before a relay exists.
 * To report a policy denial:
 *   before a relay:   conn_tel_fail(c, AMB_F_DENY, EACCES, "policy ns/name");
 *   a live relay:     conn_tel_flag(c, AMB_F_DENY, "policy ns/name");
 *                     relay_abort(c->relay);
 * Both show up as response_flags="DENY" in closed/failed_total and as
 * response_flags=DENY with the detail as error in the access log.
 */
#ifndef AMBIENTD_TELEMETRY_H
#define AMBIENTD_TELEMETRY_H

#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "relay.h"
#include "sbuf.h"

struct conn;
struct daemon;
struct state;
struct worker;
struct workload;

/*
 * How a connection ended: the project's failure enum. Its string table
 * (amb_flag_name) is the response_flags metric label and the access log's
 * response_flags field. "-", DENY and CONNECT are ztunnel's; the others
 * say more about failures ztunnel folds into those or leaves unlabelled.
 */
enum amb_flag {
	AMB_F_NONE = 0,	   /* "-": completed normally (or still open) */
	AMB_F_DENY,	   /* authorization policy: here, or the peer's 401 */
	AMB_F_CONNECT,	   /* upstream refused/unreachable, or peer's 503 */
	AMB_F_TIMEOUT,	   /* connect, handshake or CONNECT timed out */
	AMB_F_TLS,	   /* mTLS handshake failed / wrong peer identity */
	AMB_F_NO_IDENTITY, /* source is no workload: nothing to present */
	AMB_F_NO_WORKLOAD, /* inbound: target is not a workload here */
	AMB_F_BAD_REQUEST, /* malformed CONNECT / authority (400) */
	AMB_F_PROTOCOL,	   /* HTTP/2 or unexpected CONNECT answer */
	AMB_F_DOWNSTREAM_RESET, /* the client reset the connection */
	AMB_F_UPSTREAM_RESET,	/* the server (or peer tunnel) reset it */
	AMB_F_IO_ERROR,		/* another socket error mid-connection */
	AMB_F_DRAIN,		/* cut at the /quitquitquit drain deadline */
	AMB_F_ABORTED,		/* aborted for another reason */
	AMB_F_INTERNAL,		/* out of memory or an internal error */
	AMB_F__COUNT,
};
const char *amb_flag_name(enum amb_flag f);
/* Flag for a relay result (errno: its summary's error). */
enum amb_flag amb_flag_from_relay(int result, int err);
/* Flag for a failure to reach the peer tunnel (TCP/TLS/pool), by errno. */
enum amb_flag amb_flag_from_dial(int err);

#define TEL_MAX_SERIES 4096 /* per worker */
#define TEL_CHUNK      256

/* One label set's counters (see top). Written by its worker only. */
struct tel_series {
	struct relay_meter bytes; /* up: received_bytes, down: sent_bytes */
	_Atomic uint64_t opened;
	_Atomic uint64_t live;
	_Atomic uint64_t closed[AMB_F__COUNT];
	uint32_t hash;
	bool mtls; /* connection_security_policy mutual_tls / unknown */
	bool reporter_dst;
	/* Rendered `reporter="..",...,request_protocol="tcp"` (escaped). */
	char *labels;
	/* Raw values for the access log (point into `strs`). */
	const char *src_workload, *src_namespace, *src_principal;
	const char *dst_service, *dst_workload, *dst_namespace, *dst_principal;
	char *strs;
};

/* Requests the control thread posts to workers (tel_ask_workers()). */
enum tel_req {
	TEL_REQ_NONE = 0,
	TEL_REQ_DUMP,  /* describe live connections (JSON objects) */
	TEL_REQ_DRAIN, /* stop accepting, GOAWAY on inbound HBONE */
	TEL_REQ_CUT,   /* abort every live relay with flag DRAIN */
};

/* A worker's telemetry. */
struct tel_worker {
	struct tel_series *chunks[TEL_MAX_SERIES / TEL_CHUNK];
	_Atomic uint32_t n_series; /* published count (release) */
	uint32_t *index;	   /* open addressing: series id + 1, 0 empty */
	_Atomic uint64_t overflow; /* connections without a series */
	struct conn_tel *live;	   /* worker-owned list */
	/* mailbox */
	_Atomic uint64_t req_seq;
	_Atomic int req_kind;
	_Atomic uint64_t done_seq;
	char *_Atomic answer;
	uint64_t seen_seq;
};

/* Per connection, embedded in struct conn. Zero-initialized = not begun. */
struct conn_tel {
	struct tel_series *series[2]; /* [0] reporter source, [1] destination */
	struct conn_tel *prev, *next; /* on tel_worker.live */
	uint64_t start_ms;	      /* CLOCK_MONOTONIC */
	time_t start_wall;
	uint8_t state; /* 0 not begun, 1 open, 2 recorded */
	uint8_t flag;  /* enum amb_flag set by conn_tel_flag(), else NONE */
	bool hbone;    /* carried over HBONE (dst.hbone_addr applies) */
	const char *detail; /* static text for the access log's error */
};

/* What the worker knows about a connection when it takes it on. */
struct tel_desc {
	const struct workload *src_wl; /* NULL: not a known workload */
	const struct workload *dst_wl;
	const char *src_principal; /* presented/verified identity, or NULL */
	bool mtls;		   /* HBONE (or shortcut between mesh pods) */
	bool hbone;		   /* rides an HBONE CONNECT stream */
	bool report_source;	   /* this tunnel is the source's */
	bool report_destination;   /* this tunnel is the destination's */
};

int tel_worker_init(struct worker *w);
void tel_worker_fini(struct worker *w);

/*
 * Start recording c (worker thread; c->w, c->src, c->dst set). Looks the
 * label sets up (creating them on first use), counts opened and live, and
 * links c into the live list. Call once.
 */
void conn_tel_begin(struct conn *c, const struct tel_desc *d);
/* Set how c is about to end (before relay_abort()); detail: static text. */
void conn_tel_flag(struct conn *c, enum amb_flag flag, const char *detail);
/*
 * c ends without (more) bytes: record it with flag (NONE is not allowed),
 * err (positive errno or 0) and detail (static text or NULL). Does not
 * free c. No-op if c was never begun or is already recorded.
 */
void conn_tel_fail(struct conn *c, enum amb_flag flag, int err,
		   const char *detail);
/* c's relay finished (from conn_done()). */
void conn_tel_end(struct conn *c, const struct relay_summary *s);
/* The relay meters c's bytes should count into (opts->meters). */
void conn_tel_meters(struct conn *c, struct relay_meter **meters);

/* Worker side of the mailbox: call from the worker's wake hook. */
void tel_worker_service(struct worker *w);

/*
 * Control thread: post `req` to every worker and wait up to timeout_ms for
 * all of them. For TEL_REQ_DUMP the answers (JSON objects, comma
 * separated) are appended to out (may be NULL otherwise). Returns how many
 * workers answered.
 */
int tel_ask_workers(struct daemon *d, enum tel_req req, int timeout_ms,
		    struct sbuf *out);

/* Control thread: Istio's TCP families, summed over the workers. */
void tel_render_istio(struct daemon *d, struct sbuf *out);

#endif
