// SPDX-License-Identifier: Apache-2.0
/*
 * Prometheus text format 0.0.4 as the daemon writes it: HELP/TYPE lines,
 * label escaping, numbers, histograms, and a checker that a whole page is
 * grouped by family (every sample after its family's TYPE, no family twice,
 * label syntax that parses back to the values written).
 */
#include "prom.h"
#include "sbuf.h"
#include "tap.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Parse one `{...}` label set starting at p (just after '{'), unescaping
 * values into out ("k=v;" per label). Returns the char after '}' or NULL.
 */
static const char *parse_labels(const char *p, char *out, size_t len)
{
	size_t o = 0;

	out[0] = '\0';
	while (*p && *p != '}') {
		const char *eq = strchr(p, '=');

		if (!eq || eq[1] != '"')
			return NULL;
		o += (size_t)snprintf(out + o, len - o, "%.*s=", (int)(eq - p),
				      p);
		for (p = eq + 2; *p && *p != '"'; p++) {
			char c = *p;

			if (c == '\\') {
				p++;
				c = *p == 'n' ? '\n' : *p;
				if (*p != 'n' && *p != '\\' && *p != '"')
					return NULL;
			} else if (c == '\n') {
				return NULL;
			}
			if (o + 2 < len)
				out[o++] = c;
		}
		if (*p != '"')
			return NULL;
		p++;
		if (o + 2 < len)
			out[o++] = ';';
		out[o] = '\0';
		if (*p == ',')
			p++;
	}
	return *p == '}' ? p + 1 : NULL;
}

/* Base family of a sample name (histogram suffixes folded). */
static void family_of(const char *name, size_t n, const char *type, char *out)
{
	snprintf(out, 128, "%.*s", (int)n, name);
	if (strcmp(type, "histogram") == 0) {
		static const char *const suf[] = {"_bucket", "_sum", "_count"};

		for (int i = 0; i < 3; i++) {
			size_t l = strlen(out), s = strlen(suf[i]);

			if (l > s && strcmp(out + l - s, suf[i]) == 0) {
				out[l - s] = '\0';
				break;
			}
		}
	}
}

/*
 * Checks the exposition rules the daemon relies on. Returns NULL when the
 * page is well formed, else a description of the first problem.
 */
static const char *check_page(const char *page)
{
	static char why[256];
	char seen[64][128], cur[128] = "", type[32] = "";
	int n_seen = 0;
	const char *line = page;

	while (*line) {
		const char *eol = strchr(line, '\n');
		char name[128];

		if (!eol)
			return "last line not terminated";
		if (strncmp(line, "# HELP ", 7) == 0) {
			sscanf(line + 7, "%127s", name);
			for (int i = 0; i < n_seen; i++)
				if (strcmp(seen[i], name) == 0) {
					snprintf(why, sizeof(why),
						 "family %s appears twice",
						 name);
					return why;
				}
			snprintf(seen[n_seen++], 128, "%s", name);
			snprintf(cur, sizeof(cur), "%s", name);
			type[0] = '\0';
		} else if (strncmp(line, "# TYPE ", 7) == 0) {
			if (sscanf(line + 7, "%127s %31s", name, type) != 2 ||
			    strcmp(name, cur))
				return "TYPE without its HELP";
		} else {
			size_t nl = strcspn(line, "{ ");
			char fam[128], labels[512];
			const char *p = line + nl;

			if (!type[0])
				return "sample before any TYPE";
			family_of(line, nl, type, fam);
			if (strcmp(fam, cur)) {
				snprintf(why, sizeof(why),
					 "sample %s outside its family (in %s)",
					 fam, cur);
				return why;
			}
			if (*p == '{' &&
			    !(p = parse_labels(p + 1, labels, sizeof(labels))))
				return "bad label syntax";
			if (*p != ' ' ||
			    strtod(p + 1, NULL) != strtod(p + 1, NULL))
				return "bad value";
		}
		line = eol + 1;
	}
	return NULL;
}

int main(void)
{
	struct sbuf b;
	bool first = true;
	char labels[512];
	const char *p;

	sbuf_init(&b, 0);
	prom_family(&b, "istio_build", PROM_GAUGE,
		    "Istio component build info\\with a\nnewline");
	ok(strcmp(b.p, "# HELP istio_build Istio component build info\\\\with "
		       "a\\nnewline\n"
		       "# TYPE istio_build gauge\n") == 0,
	   "HELP escapes backslash and newline; TYPE follows");

	sbuf_reset(&b);
	prom_label(&b, &first, "a", "x\"y\\z\nw");
	prom_label(&b, &first, "b", NULL);
	prom_label(&b, &first, "c", "");
	ok(strcmp(b.p, "a=\"x\\\"y\\\\z\\nw\",b=\"unknown\",c=\"\"") == 0,
	   "label values: quote, backslash, newline escaped; NULL is unknown "
	   "(%s)",
	   b.p);
	p = parse_labels(b.p, labels, sizeof(labels));
	(void)p;
	{
		char wrapped[600];

		snprintf(wrapped, sizeof(wrapped), "%s}", b.p);
		ok(parse_labels(wrapped, labels, sizeof(labels)) &&
		       strcmp(labels, "a=x\"y\\z\nw;b=unknown;c=;") == 0,
		   "escaped labels parse back to the original values");
	}

	sbuf_reset(&b);
	prom_sample_u64(&b, "m_total", NULL, NULL, 18446744073709551615ull);
	prom_sample_u64(&b, "m_total", "a=\"1\"", "response_flags=\"-\"", 3);
	prom_sample_u64(&b, "m_total", NULL, "x=\"2\"", 4);
	prom_sample_f64(&b, "g", NULL, NULL, 0.1);
	prom_sample_f64(&b, "g", NULL, NULL, 1e-4);
	prom_sample_f64(&b, "g", NULL, NULL, 1.0 / 0.0);
	ok(strcmp(b.p, "m_total 18446744073709551615\n"
		       "m_total{a=\"1\",response_flags=\"-\"} 3\n"
		       "m_total{x=\"2\"} 4\n"
		       "g 0.1\n"
		       "g 0.0001\n"
		       "g +Inf\n") == 0,
	   "samples: u64 max, label fragments joined, shortest floats, +Inf");

	sbuf_reset(&b);
	{
		const double bounds[] = {0.001, 0.01, 0.1};
		const uint64_t counts[] = {2, 0, 5, 1};

		prom_family(&b, "rtt_seconds", PROM_HISTOGRAM, "rtt");
		prom_histogram(&b, "rtt_seconds", "w=\"a\"", bounds, counts, 3,
			       1.5);
	}
	ok(strstr(b.p, "rtt_seconds_bucket{w=\"a\",le=\"0.001\"} 2\n"
		       "rtt_seconds_bucket{w=\"a\",le=\"0.01\"} 2\n"
		       "rtt_seconds_bucket{w=\"a\",le=\"0.1\"} 7\n"
		       "rtt_seconds_bucket{w=\"a\",le=\"+Inf\"} 8\n"
		       "rtt_seconds_sum{w=\"a\"} 1.5\n"
		       "rtt_seconds_count{w=\"a\"} 8\n") != NULL,
	   "histogram buckets are cumulative, +Inf equals _count");
	ok(check_page(b.p) == NULL, "histogram page is well formed");

	/* A page the way the daemon writes one: two families, grouped. */
	sbuf_reset(&b);
	prom_family(&b, "a_total", PROM_COUNTER, "A");
	prom_sample_u64(&b, "a_total", "x=\"1\"", NULL, 1);
	prom_sample_u64(&b, "a_total", "x=\"2\"", NULL, 2);
	prom_family(&b, "b", PROM_GAUGE, "B");
	prom_sample_u64(&b, "b", NULL, NULL, 1);
	ok(check_page(b.p) == NULL, "grouped page passes the checker");
	/* The checker itself must catch what it claims to catch. */
	sbuf_puts(&b, "a_total{x=\"3\"} 3\n");
	ok(check_page(b.p) != NULL,
	   "checker rejects a sample outside its family (%s)",
	   check_page(b.p) ? check_page(b.p) : "accepted");
	sbuf_reset(&b);
	prom_family(&b, "a_total", PROM_COUNTER, "A");
	prom_family(&b, "a_total", PROM_COUNTER, "A");
	ok(check_page(b.p) != NULL, "checker rejects a family written twice");
	ok(check_page("x 1\n") != NULL,
	   "checker rejects a sample before any TYPE");
	ok(check_page("# HELP x x\n# TYPE x gauge\nx{a=\"unterminated} 1\n") !=
	       NULL,
	   "checker rejects bad label syntax");

	sbuf_free(&b);
	sbuf_init(&b, 64);
	for (int i = 0; i < 100; i++)
		sbuf_puts(&b, "0123456789");
	ok(sbuf_failed(&b) && b.len <= 64 && b.p[b.len] == '\0',
	   "sbuf stops at its bound, stays terminated and says it failed");
	sbuf_free(&b);
	sbuf_init(&b, 0);
	sbuf_json_str(&b, "a\"b\\c\n\x01");
	ok(strcmp(b.p, "\"a\\\"b\\\\c\\n\\u0001\"") == 0,
	   "JSON string escaping (%s)", b.p);
	sbuf_free(&b);
	return tap_done();
}
