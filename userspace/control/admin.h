/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The operator ports of one node's daemon (DESIGN.md §6), all served by the
 * control thread on its own loop; the workers are only ever read
 * (telemetry series, atomic counters) or asked through their mailbox, so
 * nothing here puts a lock on the data path.
 *
 *   15020  GET /metrics, /stats/prometheus   Prometheus text 0.0.4
 *   15021  GET /healthz/ready                200 "ready", or 503 + reason
 *   15000  (127.0.0.1 only)
 *          GET  /config_dump                 configdump.h
 *          GET  /logging                     current level
 *          POST /logging?level=LEVEL         change it (error|warn|info|debug)
 *          POST /quitquitquit                graceful drain, then exit
 *          GET  /connections                 live tunneled connections (JSON)
 *          GET  /bpf                         bpfinfo.h JSON
 *          GET  /                            this list
 *
 * Drain (/quitquitquit): readiness turns 503 "draining", every worker
 * closes its listeners (new connections are refused by the kernel program,
 * fail closed) and sends GOAWAY on its inbound HBONE connections; the
 * daemon exits as soon as no relayed connection is left, or at the drain
 * deadline after cutting the rest (recorded with response flag DRAIN).
 */
#ifndef AMBIENTD_ADMIN_H
#define AMBIENTD_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ambientd/bpf_shared.h"

struct admin;
struct bpfctl;
struct daemon;
struct loop;

struct admin_opts {
	/* IPv4 address and port of each server; port 0: that server is off. */
	char metrics_ip[16];
	uint16_t metrics_port;
	char ready_ip[16];
	uint16_t ready_port;
	char admin_ip[16];
	uint16_t admin_port;
	unsigned drain_ms; /* /quitquitquit deadline */
};

/* What the control thread shares with the admin servers (all borrowed). */
struct admin_ctx {
	struct daemon *d;
	struct bpfctl *b;
	struct loop *loop;	 /* the control thread's */
	const int *pending;	 /* workloads still waiting to be enrolled */
	void (*stop)(void *arg); /* end the daemon (after a drain) */
	void *stop_arg;
};

#define ADMIN_DEFAULT_DRAIN_MS 5000

/*
 * Bind and serve the configured ports on ctx->loop. Returns 0 and *out, or
 * -errno (logged, naming the address that failed).
 */
int admin_start(const struct admin_ctx *ctx, const struct admin_opts *o,
		struct admin **out);
void admin_free(struct admin *a);

/* A sockops ring-buffer event: feeds the per-pod TCP health metrics. */
void admin_sock_event(struct admin *a, const struct amb_sock_event *ev);

/*
 * Readiness as /healthz/ready reports it: 0 when ready, else -errno and a
 * sentence in why.
 */
int admin_ready(struct admin *a, char *why, size_t len);

#endif
