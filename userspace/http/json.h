/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A small JSON reader for ambientctl (answers of the admin API): parses a
 * whole document into a tree. Strict RFC 8259 syntax, nesting at most
 * JSON_MAX_DEPTH, \uXXXX escapes decoded to UTF-8 (surrogate pairs
 * combined). Numbers keep their text and a double.
 */
#ifndef AMBIENTD_JSON_H
#define AMBIENTD_JSON_H

#include <stdbool.h>
#include <stddef.h>

#define JSON_MAX_DEPTH 64

enum json_type { JSON_NULL, JSON_BOOL, JSON_NUM, JSON_STR, JSON_ARR, JSON_OBJ };

struct json {
	enum json_type type;
	bool b;
	double num;
	char *str; /* JSON_STR: the value; JSON_NUM: the number's text */
	struct json *items; /* JSON_ARR elements / JSON_OBJ values */
	char **keys;	    /* JSON_OBJ keys, parallel to items */
	size_t n;
};

/* Parse text (NUL-terminated). 0 and *out (json_free it), or -EINVAL with
 * a message naming the byte offset in err, or -ENOMEM. */
int json_parse(const char *text, struct json **out, char *err, size_t errlen);
void json_free(struct json *j);

/* Write j back as compact JSON (strings re-escaped). */
struct sbuf;
void json_print(struct sbuf *b, const struct json *j);

/* Member `key` of an object (NULL if j is not an object or has none). */
const struct json *json_get(const struct json *j, const char *key);
/* String member, or NULL (also when it is not a string). */
const char *json_get_str(const struct json *j, const char *key);
/* Number member, or dflt. */
double json_get_num(const struct json *j, const char *key, double dflt);

#endif
