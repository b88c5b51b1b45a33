/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The access log: one line per connection when it is recorded (completed or
 * failed), on stderr next to the daemon's log, written with one write(2)
 * so lines from several workers never interleave. Independent of
 * --log-level; --access-log off silences it.
 *
 * text (default), ztunnel's field names:
 *   <time> info  <node>: access connection complete src.addr=198.18.1.11:40522
 *   src.workload="n1p1" src.namespace="default"
 *   src.identity="spiffe://cluster.local/ns/default/sa/sa-n1p1"
 *   dst.addr=198.18.2.11:15008 dst.hbone_addr=198.18.2.11:7000
 *   dst.service="unknown" dst.workload="n2p1" dst.namespace="default"
 *   dst.identity="spiffe://..." direction="outbound" bytes_sent=5
 *   bytes_recv=12 duration="3ms" response_flags="-" [error="..."]
 * (one line). Strings are quoted with \" and \\ escaped; addresses and
 * numbers are bare; identities appear only for mutual TLS connections.
 *
 * json: one object per line with the same keys, plus "time", "level",
 * "scope":"access", "node", "message"; numbers as numbers and
 * "duration_ms" instead of the "3ms" string.
 *
 * bytes_sent is what the client sent towards the server, bytes_recv what
 * came back, from either reporter's side.
 */
#ifndef AMBIENTD_ACCESSLOG_H
#define AMBIENTD_ACCESSLOG_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

enum access_log_format {
	ACCESS_LOG_OFF = 0,
	ACCESS_LOG_TEXT,
	ACCESS_LOG_JSON,
};

extern enum access_log_format access_log_format;

/* "off|text|json"; 0 or -EINVAL. */
int access_log_parse(const char *s, enum access_log_format *out);
/* The node name written into every line (copied). */
void access_log_set_node(const char *node);

struct access_rec {
	bool outbound; /* direction: outbound (source reporter) or inbound */
	const struct sockaddr_in *src;
	const struct sockaddr_in *dst;
	const struct sockaddr_in *hbone_addr; /* NULL: not HBONE */
	const char *src_workload, *src_namespace,
	    *src_identity; /* NULL: absent */
	const char *dst_service, *dst_workload, *dst_namespace, *dst_identity;
	uint64_t bytes_sent, bytes_recv;
	uint64_t duration_ms;
	const char *response_flags;
	const char *error; /* NULL: none */
};

/* Format rec into buf (text or JSON per fmt, ending in '\n'); returns the
 * length (truncated lines still end in '\n'). For tests and the writer. */
size_t access_log_format_line(enum access_log_format fmt,
			      const struct access_rec *rec, char *buf,
			      size_t len);
/* Write one line in the current format (nothing when off). */
void access_log_write(const struct access_rec *rec);

#endif
