// SPDX-License-Identifier: Apache-2.0
#include "log.h"

#include <bpf/libbpf.h>
#include <errno.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum log_level log_threshold = LOG_INFO;
static char log_tag[64];

static const char *const level_names[] = { "error", "warn", "info", "debug" };

int log_level_parse(const char *s, enum log_level *out)
{
	for (unsigned i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcmp(s, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

void log_set_tag(const char *tag)
{
	snprintf(log_tag, sizeof(log_tag), "%s", tag ? tag : "");
}

static __attribute__((format(printf, 2, 0))) void
log_vmsg(enum log_level lvl, const char *fmt, va_list ap)
{
	char line[2048];
	struct timespec ts;
	struct tm tm;
	int n;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s %s%s",
		     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		     tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, level_names[lvl],
		     log_tag, log_tag[0] ? ": " : "");
	if (n < 0 || (size_t)n >= sizeof(line))
		return;
	n += vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	if ((size_t)n >= sizeof(line) - 1)
		n = sizeof(line) - 2;
	while (n > 0 && line[n - 1] == '\n')
		n--;
	line[n++] = '\n';
	/* One write per line keeps lines whole across threads. */
	if (write(STDERR_FILENO, line, n) < 0)
		return;
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	va_list ap;

	if (lvl > log_threshold)
		return;
	va_start(ap, fmt);
	log_vmsg(lvl, fmt, ap);
	va_end(ap);
}

void log_limited(struct log_limit *ll, enum log_level lvl, const char *fmt, ...)
{
	struct timespec ts;
	uint64_t now, start, held = 0;
	char msg[1536];
	va_list ap;

	if (lvl > log_threshold)
		return;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000 + 1;
	start = atomic_load_explicit(&ll->start_ms, memory_order_relaxed);
	/* A new interval: one thread wins the reset, the others count in it. */
	if ((!start || now - start >= LOG_LIMIT_INTERVAL_MS) &&
	    atomic_compare_exchange_strong(&ll->start_ms, &start, now)) {
		atomic_store(&ll->lines, 0);
		held = atomic_exchange(&ll->held, 0);
	}
	if (atomic_fetch_add(&ll->lines, 1) >= LOG_LIMIT_BURST) {
		atomic_fetch_add_explicit(&ll->held, 1, memory_order_relaxed);
		return;
	}
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (held)
		log_msg(lvl, "%s (and %llu more like it held back)", msg,
			(unsigned long long)held);
	else
		log_msg(lvl, "%s", msg);
}

static __thread bool libbpf_quiet;

void log_libbpf_quiet(bool quiet)
{
	libbpf_quiet = quiet;
}

/* fmt is libbpf's own printf format. */
static __attribute__((format(printf, 2, 0))) int
libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	enum log_level lvl = level == LIBBPF_WARN ? LOG_WARN : LOG_DEBUG;

	/* libbpf's debug level narrates every relocation: too much even for
	 * our debug level. */
	if (level == LIBBPF_DEBUG || libbpf_quiet || lvl > log_threshold)
		return 0;
	log_vmsg(lvl, fmt, ap);
	return 0;
}

void log_route_libbpf(void)
{
	libbpf_set_print(libbpf_print);
}
