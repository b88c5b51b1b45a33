/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Writer for the Prometheus text exposition format, version 0.0.4.
 *
 * Contract with the caller: every family is written as one group — its
 * `# HELP` and `# TYPE` lines (prom_family()) first, then all of its
 * samples, before the next family starts. Label values are escaped here
 * (backslash, double quote, newline); metric and label names must already
 * be valid ([a-zA-Z_:][a-zA-Z0-9_:]*, which is what the callers pass as
 * string literals).
 */
#ifndef AMBIENTD_PROM_H
#define AMBIENTD_PROM_H

#include <stdbool.h>
#include <stdint.h>

#include "sbuf.h"

#define PROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

enum prom_type {
	PROM_COUNTER,
	PROM_GAUGE,
	PROM_HISTOGRAM,
	PROM_UNTYPED,
};

/* "# HELP name help\n# TYPE name type\n" (help escaped: \\ and \n). */
void prom_family(struct sbuf *b, const char *name, enum prom_type type,
		 const char *help);

/* A label value, escaped, without the quotes. */
void prom_escape_value(struct sbuf *b, const char *v);

/*
 * Appends `,name="value"` (or `name="value"` when it is the first label of
 * the set, i.e. when *first is true; it is cleared). NULL value: "unknown".
 */
void prom_label(struct sbuf *b, bool *first, const char *name,
		const char *value);

/*
 * One sample. `labels` is a pre-rendered label list without braces
 * (`a="x",b="y"`, escaped already) or NULL/"" for none; `extra`, if not
 * NULL, is appended after it (another pre-rendered fragment).
 */
void prom_sample_u64(struct sbuf *b, const char *name, const char *labels,
		     const char *extra, uint64_t v);
void prom_sample_f64(struct sbuf *b, const char *name, const char *labels,
		     const char *extra, double v);

/*
 * A histogram's samples: name_bucket{labels,le="..."} for each bound
 * (cumulative counts: counts[i] observations <= bounds[i]), le="+Inf",
 * name_sum and name_count. counts has n_bounds + 1 entries (the last is
 * the overflow bucket); they are per-bucket, not cumulative.
 */
void prom_histogram(struct sbuf *b, const char *name, const char *labels,
		    const double *bounds, const uint64_t *counts,
		    unsigned n_bounds, double sum);

#endif
