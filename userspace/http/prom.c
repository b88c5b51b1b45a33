// SPDX-License-Identifier: Apache-2.0
#include "prom.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>

static const char *const type_names[] = {
    [PROM_COUNTER] = "counter",
    [PROM_GAUGE] = "gauge",
    [PROM_HISTOGRAM] = "histogram",
    [PROM_UNTYPED] = "untyped",
};

void prom_family(struct sbuf *b, const char *name, enum prom_type type,
		 const char *help)
{
	sbuf_printf(b, "# HELP %s ", name);
	for (const char *s = help; *s; s++) {
		if (*s == '\\')
			sbuf_puts(b, "\\\\");
		else if (*s == '\n')
			sbuf_puts(b, "\\n");
		else
			sbuf_putc(b, *s);
	}
	sbuf_printf(b, "\n# TYPE %s %s\n", name,
		    (unsigned)type <= PROM_UNTYPED ? type_names[type]
						   : "untyped");
}

void prom_escape_value(struct sbuf *b, const char *v)
{
	const char *run = v;

	for (; *v; v++) {
		if (*v != '\\' && *v != '"' && *v != '\n')
			continue;
		sbuf_put(b, run, (size_t)(v - run));
		sbuf_puts(b, *v == '\n' ? "\\n" : *v == '"' ? "\\\"" : "\\\\");
		run = v + 1;
	}
	sbuf_put(b, run, (size_t)(v - run));
}

void prom_label(struct sbuf *b, bool *first, const char *name,
		const char *value)
{
	if (!*first)
		sbuf_putc(b, ',');
	*first = false;
	sbuf_printf(b, "%s=\"", name);
	prom_escape_value(b, value ? value : "unknown");
	sbuf_putc(b, '"');
}

/* Shortest %g spelling that reads back as the same double. */
static void fmt_double(char *buf, size_t len, double v)
{
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(buf, len, "%.*g", prec, v);
		if (strtod(buf, NULL) == v)
			return;
	}
}

static void sample_head(struct sbuf *b, const char *name, const char *labels,
			const char *extra)
{
	bool has_l = labels && *labels, has_e = extra && *extra;

	sbuf_puts(b, name);
	if (!has_l && !has_e)
		return;
	sbuf_putc(b, '{');
	if (has_l)
		sbuf_puts(b, labels);
	if (has_l && has_e)
		sbuf_putc(b, ',');
	if (has_e)
		sbuf_puts(b, extra);
	sbuf_putc(b, '}');
}

void prom_sample_u64(struct sbuf *b, const char *name, const char *labels,
		     const char *extra, uint64_t v)
{
	sample_head(b, name, labels, extra);
	sbuf_printf(b, " %llu\n", (unsigned long long)v);
}

void prom_sample_f64(struct sbuf *b, const char *name, const char *labels,
		     const char *extra, double v)
{
	sample_head(b, name, labels, extra);
	if (isnan(v))
		sbuf_puts(b, " NaN\n");
	else if (isinf(v))
		sbuf_puts(b, v > 0 ? " +Inf\n" : " -Inf\n");
	else {
		char num[40];

		fmt_double(num, sizeof(num), v);
		sbuf_printf(b, " %s\n", num);
	}
}

void prom_histogram(struct sbuf *b, const char *name, const char *labels,
		    const double *bounds, const uint64_t *counts,
		    unsigned n_bounds, double sum)
{
	char series[128], le[48], num[40];
	uint64_t cum = 0;

	snprintf(series, sizeof(series), "%s_bucket", name);
	for (unsigned i = 0; i < n_bounds; i++) {
		cum += counts[i];
		fmt_double(num, sizeof(num), bounds[i]);
		snprintf(le, sizeof(le), "le=\"%s\"", num);
		prom_sample_u64(b, series, labels, le, cum);
	}
	cum += counts[n_bounds];
	prom_sample_u64(b, series, labels, "le=\"+Inf\"", cum);
	snprintf(series, sizeof(series), "%s_sum", name);
	prom_sample_f64(b, series, labels, NULL, sum);
	snprintf(series, sizeof(series), "%s_count", name);
	prom_sample_u64(b, series, labels, NULL, cum);
}
