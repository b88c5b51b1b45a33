// SPDX-License-Identifier: Apache-2.0
/* The JSON reader behind ambientctl, and the access log's two formats. */
#include "accesslog.h"
#include "json.h"
#include "sbuf.h"
#include "tap.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse(const char *s, struct json **j)
{
	char err[128];

	return json_parse(s, j, err, sizeof(err));
}

static void test_reader(void)
{
	struct json *j = NULL;
	const struct json *a;
	struct sbuf b;
	char err[128];
	char deep[200];

	ok(parse("{\"a\": [1, -2.5e1, true, false, null, "
		 "\"x\\\"y\\u00e9\\ud83d\\ude00\"],"
		 " \"b\": {\"c\": \"d\"}, \"e\": {}}",
		 &j) == 0,
	   "nested document parses");
	a = json_get(j, "a");
	ok(a && a->type == JSON_ARR && a->n == 6 && a->items[1].num == -25 &&
	       a->items[2].b && a->items[4].type == JSON_NULL,
	   "array members: numbers, booleans, null");
	ok(a && strcmp(a->items[5].str, "x\"y\xc3\xa9\xf0\x9f\x98\x80") == 0,
	   "escapes decoded: quote, \\u00e9, surrogate pair to UTF-8");
	ok(json_get_str(json_get(j, "b"), "c") &&
	       strcmp(json_get_str(json_get(j, "b"), "c"), "d") == 0,
	   "member lookup in a nested object");
	ok(json_get(j, "nope") == NULL && json_get_str(j, "a") == NULL &&
	       json_get_num(j, "a", 7) == 7,
	   "absent or wrongly typed members give NULL/default");
	sbuf_init(&b, 0);
	json_print(&b, j);
	ok(strcmp(b.p, "{\"a\":[1,-2.5e1,true,false,null,"
		       "\"x\\\"y\xc3\xa9\xf0\x9f\x98\x80\"],"
		       "\"b\":{\"c\":\"d\"},\"e\":{}}") == 0,
	   "printed back compactly (%s)", b.p);
	sbuf_free(&b);
	json_free(j);

	static const char *const bad[] = {
	    "",
	    "{",
	    "[1,]",
	    "{\"a\" 1}",
	    "{\"a\":1,}",
	    "\"abc",
	    "\"a\\x\"",
	    "01",
	    "1.",
	    "-",
	    "tru",
	    "[1] 2",
	    "\"\\ud800\"",
	    "{\"a\":\"\x01\"}",
	    "{1:2}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		j = NULL;
		ok(json_parse(bad[i], &j, err, sizeof(err)) == -EINVAL && !j &&
		       err[0],
		   "rejected: '%s' (%s)", bad[i], err);
	}
	memset(deep, '[', 100);
	memset(deep + 100, ']', 100);
	deep[199] = '\0';
	deep[99 + 100] = '\0';
	ok(parse(deep, &j) == -EINVAL, "nesting deeper than %d rejected",
	   JSON_MAX_DEPTH);
}

static void test_access_log(void)
{
	struct sockaddr_in src = {.sin_family = AF_INET,
				  .sin_port = htons(40000)};
	struct sockaddr_in dst = {.sin_family = AF_INET,
				  .sin_port = htons(15008)};
	struct sockaddr_in hb = {.sin_family = AF_INET,
				 .sin_port = htons(7000)};
	struct access_rec r = {
	    .outbound = true,
	    .src = &src,
	    .dst = &dst,
	    .hbone_addr = &hb,
	    .src_workload = "we\"ird\\name",
	    .src_namespace = "default",
	    .src_identity = "spiffe://cluster.local/ns/default/sa/a",
	    .dst_workload = "srv",
	    .dst_namespace = "default",
	    .bytes_sent = 5,
	    .bytes_recv = 12,
	    .duration_ms = 3,
	    .response_flags = "DENY",
	    .error = "denied by policy default/x",
	};
	char line[4096];
	struct json *j = NULL;
	size_t n;

	inet_pton(AF_INET, "198.18.1.11", &src.sin_addr);
	inet_pton(AF_INET, "198.18.2.11", &dst.sin_addr);
	hb.sin_addr = dst.sin_addr;
	access_log_set_node("node1");
	n = access_log_format_line(ACCESS_LOG_TEXT, &r, line, sizeof(line));
	ok(n == strlen(line) && line[n - 1] == '\n' &&
	       strstr(
		   line,
		   " error node1: access connection complete "
		   "src.addr=198.18.1.11:40000 "
		   "src.workload=\"we\\\"ird\\\\name\" "
		   "src.namespace=\"default\" "
		   "src.identity=\"spiffe://cluster.local/ns/default/sa/a\" "
		   "dst.addr=198.18.2.11:15008 dst.hbone_addr=198.18.2.11:7000 "
		   "dst.workload=\"srv\" dst.namespace=\"default\" "
		   "direction=\"outbound\" "
		   "bytes_sent=5 bytes_recv=12 duration=\"3ms\" "
		   "response_flags=\"DENY\" "
		   "error=\"denied by policy default/x\"\n"),
	   "text line: every field, quotes escaped, absent ones left out (%.*s)",
	   (int)(n ? n - 1 : 0), line); /* without its newline: one TAP line */
	n = access_log_format_line(ACCESS_LOG_JSON, &r, line, sizeof(line));
	ok(line[n - 1] == '\n' && parse(line, &j) == 0, "JSON line parses");
	ok(j && strcmp(json_get_str(j, "src.workload"), "we\"ird\\name") == 0 &&
	       json_get_num(j, "bytes_sent", 0) == 5 &&
	       json_get_num(j, "duration_ms", 0) == 3 &&
	       strcmp(json_get_str(j, "direction"), "outbound") == 0 &&
	       strcmp(json_get_str(j, "dst.hbone_addr"), "198.18.2.11:7000") ==
		   0 &&
	       strcmp(json_get_str(j, "level"), "error") == 0 &&
	       strcmp(json_get_str(j, "node"), "node1") == 0 &&
	       !json_get(j, "dst.service"),
	   "JSON fields round-trip");
	json_free(j);
	/* A line longer than the buffer is cut but stays one line. */
	n = access_log_format_line(ACCESS_LOG_TEXT, &r, line, 64);
	ok(n == 63 && line[62] == '\n' && strlen(line) == 63,
	   "truncated line still ends in a newline");
}

int main(void)
{
	test_reader();
	test_access_log();
	return tap_done();
}
