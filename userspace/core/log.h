/* SPDX-License-Identifier: Apache-2.0 */
/* A tiny levelled logger. Thread-safe: one write(2) per line. */
#ifndef AMBIENTD_LOG_H
#define AMBIENTD_LOG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

enum log_level { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG };

extern enum log_level log_threshold;

/* Parses "error|warn|info|debug"; returns 0 or -EINVAL. */
int log_level_parse(const char *s, enum log_level *out);
/* Prefix every line with this tag (e.g. the node name); copied. */
void log_set_tag(const char *tag);
void log_msg(enum log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Route libbpf's own messages into this logger. */
void log_route_libbpf(void);
/* Silence libbpf on this thread around calls whose failure is expected
 * (e.g. querying tc on an interface without a clsact qdisc). */
void log_libbpf_quiet(bool quiet);

/*
 * Rate-limited lines, for every event a peer can trigger at will (accept
 * errors, refused connections, protocol violations): at most
 * LOG_LIMIT_BURST lines per LOG_LIMIT_INTERVAL_MS per call site (the way
 * the kernel's printk_ratelimit does it); the first line of the next
 * interval says how many were held back ("... (and 41 more like it held
 * back)"). Thread-safe.
 */
#define LOG_LIMIT_INTERVAL_MS 5000
#define LOG_LIMIT_BURST 10
struct log_limit {
	atomic_uint_fast64_t start_ms; /* CLOCK_MONOTONIC start of the interval; 0: none */
	atomic_uint_fast64_t lines;    /* lines in this interval */
	atomic_uint_fast64_t held;     /* lines suppressed and not yet reported */
};
void log_limited(struct log_limit *ll, enum log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* One struct log_limit per call site. */
#define log_rl(lvl, ...)                                                       \
	do {                                                                   \
		static struct log_limit log_rl_site_;                          \
		if ((lvl) <= log_threshold)                                    \
			log_limited(&log_rl_site_, (lvl), __VA_ARGS__);        \
	} while (0)
#define log_warn_rl(...) log_rl(LOG_WARN, __VA_ARGS__)
#define log_info_rl(...) log_rl(LOG_INFO, __VA_ARGS__)

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...)                                                         \
	do {                                                                   \
		if (log_threshold >= LOG_DEBUG)                                \
			log_msg(LOG_DEBUG, __VA_ARGS__);                       \
	} while (0)

#endif
