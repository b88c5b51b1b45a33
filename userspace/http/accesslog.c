// SPDX-License-Identifier: Apache-2.0
#include "accesslog.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum access_log_format access_log_format = ACCESS_LOG_TEXT;
static char node_name[64];

#define LINE_MAX_BYTES 4096

int access_log_parse(const char *s, enum access_log_format *out)
{
	static const char *const names[] = {"off", "text", "json"};

	for (unsigned i = 0; i < 3; i++)
		if (strcmp(s, names[i]) == 0) {
			*out = (enum access_log_format)i;
			return 0;
		}
	return -EINVAL;
}

void access_log_set_node(const char *node)
{
	snprintf(node_name, sizeof(node_name), "%s", node ? node : "");
}

/* Bounded appender: keeps one byte for the final newline. */
struct line {
	char *p;
	size_t len, cap;
};

static void put(struct line *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void put(struct line *l, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (l->len + 1 >= l->cap)
		return;
	va_start(ap, fmt);
	n = vsnprintf(l->p + l->len, l->cap - l->len - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	l->len += (size_t)n;
	if (l->len > l->cap - 2)
		l->len = l->cap - 2;
}

/* "..." with \" and \\ (and control characters) escaped, JSON-compatible. */
static void put_quoted(struct line *l, const char *s)
{
	put(l, "\"");
	for (; *s && l->len + 8 < l->cap; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			put(l, "\\%c", c);
		else if (c < 0x20)
			put(l, "\\u%04x", c);
		else
			l->p[l->len++] = (char)c;
	}
	put(l, "\"");
}

static const char *addr(const struct sockaddr_in *a, char *buf)
{
	char ip[INET_ADDRSTRLEN];

	inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
	snprintf(buf, 32, "%s:%u", ip, ntohs(a->sin_port));
	return buf;
}

static void str_field(struct line *l, bool json, const char *key, const char *v)
{
	if (!v)
		return;
	if (json)
		put(l, ",\"%s\":", key);
	else
		put(l, " %s=", key);
	put_quoted(l, v);
}

static void addr_field(struct line *l, bool json, const char *key,
		       const char *v)
{
	if (json)
		put(l, ",\"%s\":\"%s\"", key, v);
	else
		put(l, " %s=%s", key, v);
}

/* Every field after the message, in ztunnel's order, in either format. */
static void fields(struct line *l, bool json, const struct access_rec *r,
		   const char *src, const char *dst, const char *hbone)
{
	const char *dir = r->outbound ? "outbound" : "inbound";
	unsigned long long sent = r->bytes_sent, recv = r->bytes_recv,
			   ms = r->duration_ms;

	addr_field(l, json, "src.addr", src);
	str_field(l, json, "src.workload", r->src_workload);
	str_field(l, json, "src.namespace", r->src_namespace);
	str_field(l, json, "src.identity", r->src_identity);
	addr_field(l, json, "dst.addr", dst);
	if (hbone)
		addr_field(l, json, "dst.hbone_addr", hbone);
	str_field(l, json, "dst.service", r->dst_service);
	str_field(l, json, "dst.workload", r->dst_workload);
	str_field(l, json, "dst.namespace", r->dst_namespace);
	str_field(l, json, "dst.identity", r->dst_identity);
	if (json)
		put(l,
		    ",\"direction\":\"%s\",\"bytes_sent\":%llu,"
		    "\"bytes_recv\":%llu,\"duration_ms\":%llu",
		    dir, sent, recv, ms);
	else
		put(l,
		    " direction=\"%s\" bytes_sent=%llu bytes_recv=%llu "
		    "duration=\"%llums\"",
		    dir, sent, recv, ms);
	str_field(l, json, "response_flags", r->response_flags);
	str_field(l, json, "error", r->error);
}

size_t access_log_format_line(enum access_log_format fmt,
			      const struct access_rec *r, char *buf, size_t len)
{
	struct line l = {.p = buf, .cap = len};
	char a[32], b[32], h[32], ts[64];
	struct timespec now;
	struct tm tm;

	if (len < 2)
		return 0;
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ",
		 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		 tm.tm_min, tm.tm_sec, now.tv_nsec / 1000000);
	addr(r->src, a);
	addr(r->dst, b);
	if (r->hbone_addr)
		addr(r->hbone_addr, h);
	if (fmt == ACCESS_LOG_JSON) {
		put(&l,
		    "{\"time\":\"%s\",\"level\":\"%s\",\"scope\":\"access\","
		    "\"node\":",
		    ts, r->error ? "error" : "info");
		put_quoted(&l, node_name);
		put(&l, ",\"message\":\"connection complete\"");
	} else {
		put(&l, "%s %-5s %s%saccess connection complete", ts,
		    r->error ? "error" : "info", node_name,
		    node_name[0] ? ": " : "");
	}
	fields(&l, fmt == ACCESS_LOG_JSON, r, a, b, r->hbone_addr ? h : NULL);
	if (fmt == ACCESS_LOG_JSON)
		put(&l, "}");
	l.p[l.len++] = '\n';
	l.p[l.len] = '\0';
	return l.len;
}

void access_log_write(const struct access_rec *rec)
{
	char line[LINE_MAX_BYTES];
	size_t n;

	if (access_log_format == ACCESS_LOG_OFF)
		return;
	n = access_log_format_line(access_log_format, rec, line, sizeof(line));
	/* One write per line keeps lines whole across threads. */
	if (write(STDERR_FILENO, line, n) < 0)
		return;
}
