/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The local config file: YAML in the schema of Istio ztunnel's local config
 * (`--local-xds-path`): optional top-level lists `workloads`, `services` and
 * `policies`, camelCase keys. Parsing is strict: unknown keys, wrong types,
 * bad enum values, out-of-range numbers, duplicate keys, duplicate workload
 * uids / IPs / service VIPs / hosts / policy names are errors. A file with
 * any error yields no state at all; an empty file is a valid, empty config.
 *
 * Bounded before anything is built: one pass over libyaml's event stream
 * refuses input over CONFIG_MAX_FILE_SIZE bytes, CONFIG_MAX_DEPTH levels
 * or CONFIG_MAX_EVENTS events; alias-heavy input has a node-visit budget.
 * A large valid file still takes seconds (50,000 workloads: ~2 s), so the
 * daemon loads on a thread of its own.
 *
 * Errors are one line, "<name>:<line>: <path>: <what>", e.g.
 *   config.yaml:12: workloads[1].workloadIp: unknown key (did you mean workloadIps?)
 * and for YAML syntax errors "<name>:<line>:<column>: YAML syntax error: ...".
 */
#ifndef AMBIENTD_CONFIG_H
#define AMBIENTD_CONFIG_H

#include <stddef.h>

#include "state.h"

/* Files larger than this are refused (-EFBIG). */
#define CONFIG_MAX_FILE_SIZE (64u << 20)
/*
 * Collections nested deeper than this are refused before any document is
 * built (the schema needs 10 levels; libyaml's loader is quadratic in the
 * nesting depth: 200,000 `[` kept a thread busy for minutes).
 */
#define CONFIG_MAX_DEPTH 32
/* Parser events (scalars, collection starts and ends) at most. */
#define CONFIG_MAX_EVENTS (16u << 20)

/*
 * Parses len bytes of YAML at buf; name is only used in messages.
 * Returns 0 and a new snapshot (refcount 1, caller owns it) in *out, or a
 * negative errno (-EINVAL for a bad config, -ENOMEM) with *out untouched and
 * a NUL-terminated message in err (truncated to errlen; err may be NULL).
 */
int config_load_buffer(const char *name, const char *buf, size_t len,
		       struct state **out, char *err, size_t errlen);

/* Like config_load_buffer() on the contents of path (-errno if unreadable). */
int config_load_file(const char *path, struct state **out, char *err,
		     size_t errlen);

#endif
