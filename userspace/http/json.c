// SPDX-License-Identifier: Apache-2.0
#include "json.h"
#include "sbuf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct parser {
	const char *s, *p;
	char *err;
	size_t errlen;
	int rc;
};

static int fail(struct parser *ps, const char *what)
{
	if (!ps->rc) {
		snprintf(ps->err, ps->errlen, "%s at byte %zu", what,
			 (size_t)(ps->p - ps->s));
		ps->rc = -EINVAL;
	}
	return ps->rc;
}

static void ws(struct parser *ps)
{
	while (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' ||
	       *ps->p == '\r')
		ps->p++;
}

static int hex4(const char *p, unsigned *out)
{
	unsigned v = 0;

	for (int i = 0; i < 4; i++) {
		char c = p[i];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return -1;
	}
	*out = v;
	return 0;
}

static size_t utf8(unsigned cp, char *o)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xc0 | cp >> 6);
		o[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xe0 | cp >> 12);
		o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		o[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	o[0] = (char)(0xf0 | cp >> 18);
	o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	o[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* At the opening quote; returns a malloc'd decoded string or NULL. */
static char *string(struct parser *ps)
{
	const char *q = ps->p + 1;
	size_t cap = 16, n = 0;
	char *o = malloc(cap);

	if (!o) {
		ps->rc = -ENOMEM;
		return NULL;
	}
	for (;;) {
		unsigned char c = (unsigned char)*q;

		if (n + 5 >= cap) {
			char *no = realloc(o, cap *= 2);

			if (!no) {
				free(o);
				ps->rc = -ENOMEM;
				return NULL;
			}
			o = no;
		}
		if (c == '"')
			break;
		if (c < 0x20) {
			ps->p = q;
			free(o);
			fail(ps, c ? "control character in string"
				   : "unterminated string");
			return NULL;
		}
		if (c != '\\') {
			o[n++] = (char)c;
			q++;
			continue;
		}
		q++;
		switch (*q) {
		case '"':
		case '\\':
		case '/':
			o[n++] = *q;
			break;
		case 'b':
			o[n++] = '\b';
			break;
		case 'f':
			o[n++] = '\f';
			break;
		case 'n':
			o[n++] = '\n';
			break;
		case 'r':
			o[n++] = '\r';
			break;
		case 't':
			o[n++] = '\t';
			break;
		case 'u': {
			unsigned cp, lo;

			if (hex4(q + 1, &cp))
				goto bad;
			q += 4;
			if (cp >= 0xd800 && cp < 0xdc00) {
				if (q[1] != '\\' || q[2] != 'u' ||
				    hex4(q + 3, &lo) || lo < 0xdc00 ||
				    lo >= 0xe000)
					goto bad;
				cp = 0x10000 + ((cp - 0xd800) << 10) +
				     (lo - 0xdc00);
				q += 6;
			} else if (cp >= 0xdc00 && cp < 0xe000) {
				goto bad;
			}
			n += utf8(cp, o + n);
			break;
		}
		default:
			goto bad;
		}
		q++;
	}
	o[n] = '\0';
	ps->p = q + 1;
	return o;
bad:
	ps->p = q;
	free(o);
	fail(ps, "bad escape in string");
	return NULL;
}

static int value(struct parser *ps, struct json *j, int depth);

static int push(struct parser *ps, struct json *j, size_t *cap)
{
	if (j->n < *cap)
		return 0;
	*cap = *cap ? *cap * 2 : 4;
	struct json *ni = realloc(j->items, *cap * sizeof(*ni));

	if (!ni)
		return ps->rc = -ENOMEM;
	j->items = ni;
	if (j->type == JSON_OBJ) {
		char **nk = realloc(j->keys, *cap * sizeof(*nk));

		if (!nk)
			return ps->rc = -ENOMEM;
		j->keys = nk;
	}
	return 0;
}

static int container(struct parser *ps, struct json *j, int depth)
{
	bool obj = *ps->p == '{';
	char close = obj ? '}' : ']';
	size_t cap = 0;

	if (depth >= JSON_MAX_DEPTH)
		return fail(ps, "nested too deeply");
	j->type = obj ? JSON_OBJ : JSON_ARR;
	ps->p++;
	ws(ps);
	if (*ps->p == close) {
		ps->p++;
		return 0;
	}
	for (;;) {
		char *k = NULL;

		ws(ps);
		if (obj) {
			if (*ps->p != '"')
				return fail(ps, "expected a member name");
			k = string(ps);
			if (!k)
				return ps->rc;
			ws(ps);
			if (*ps->p != ':') {
				free(k);
				return fail(ps, "expected ':'");
			}
			ps->p++;
		}
		if (push(ps, j, &cap)) {
			free(k);
			return ps->rc;
		}
		memset(&j->items[j->n], 0, sizeof(j->items[0]));
		if (obj)
			j->keys[j->n] = k;
		j->n++;
		if (value(ps, &j->items[j->n - 1], depth + 1))
			return ps->rc;
		ws(ps);
		if (*ps->p == ',') {
			ps->p++;
			continue;
		}
		if (*ps->p == close) {
			ps->p++;
			return 0;
		}
		return fail(ps, obj ? "expected ',' or '}'"
				    : "expected ',' or ']'");
	}
}

static int number(struct parser *ps, struct json *j)
{
	const char *q = ps->p;
	char *end;

	if (*q == '-')
		q++;
	if (*q == '0')
		q++;
	else if (*q >= '1' && *q <= '9')
		while (*q >= '0' && *q <= '9')
			q++;
	else
		return fail(ps, "unexpected character");
	if (*q == '.') {
		q++;
		if (*q < '0' || *q > '9')
			return fail(ps, "bad number");
		while (*q >= '0' && *q <= '9')
			q++;
	}
	if (*q == 'e' || *q == 'E') {
		q++;
		if (*q == '+' || *q == '-')
			q++;
		if (*q < '0' || *q > '9')
			return fail(ps, "bad number");
		while (*q >= '0' && *q <= '9')
			q++;
	}
	j->type = JSON_NUM;
	j->str = strndup(ps->p, (size_t)(q - ps->p));
	if (!j->str)
		return ps->rc = -ENOMEM;
	j->num = strtod(j->str, &end);
	ps->p = q;
	return 0;
}

static int value(struct parser *ps, struct json *j, int depth)
{
	ws(ps);
	switch (*ps->p) {
	case '{':
	case '[':
		return container(ps, j, depth);
	case '"':
		j->type = JSON_STR;
		j->str = string(ps);
		return j->str ? 0 : ps->rc;
	case 't':
		if (strncmp(ps->p, "true", 4))
			return fail(ps, "unexpected character");
		j->type = JSON_BOOL;
		j->b = true;
		ps->p += 4;
		return 0;
	case 'f':
		if (strncmp(ps->p, "false", 5))
			return fail(ps, "unexpected character");
		j->type = JSON_BOOL;
		ps->p += 5;
		return 0;
	case 'n':
		if (strncmp(ps->p, "null", 4))
			return fail(ps, "unexpected character");
		j->type = JSON_NULL;
		ps->p += 4;
		return 0;
	case '\0':
		return fail(ps, "unexpected end of input");
	default:
		return number(ps, j);
	}
}

static void release(struct json *j)
{
	for (size_t i = 0; i < j->n; i++) {
		release(&j->items[i]);
		if (j->keys)
			free(j->keys[i]);
	}
	free(j->items);
	free(j->keys);
	free(j->str);
}

void json_free(struct json *j)
{
	if (!j)
		return;
	release(j);
	free(j);
}

int json_parse(const char *text, struct json **out, char *err, size_t errlen)
{
	struct parser ps = {.s = text, .p = text, .err = err, .errlen = errlen};
	struct json *j = calloc(1, sizeof(*j));

	if (!j)
		return -ENOMEM;
	if (!value(&ps, j, 0)) {
		ws(&ps);
		if (*ps.p)
			fail(&ps, "trailing characters");
	}
	if (ps.rc) {
		json_free(j);
		return ps.rc;
	}
	*out = j;
	return 0;
}

const struct json *json_get(const struct json *j, const char *key)
{
	if (!j || j->type != JSON_OBJ)
		return NULL;
	for (size_t i = 0; i < j->n; i++)
		if (strcmp(j->keys[i], key) == 0)
			return &j->items[i];
	return NULL;
}

const char *json_get_str(const struct json *j, const char *key)
{
	const struct json *v = json_get(j, key);

	return v && v->type == JSON_STR ? v->str : NULL;
}

double json_get_num(const struct json *j, const char *key, double dflt)
{
	const struct json *v = json_get(j, key);

	return v && v->type == JSON_NUM ? v->num : dflt;
}

void json_print(struct sbuf *b, const struct json *j)
{
	switch (j->type) {
	case JSON_NULL:
		sbuf_puts(b, "null");
		return;
	case JSON_BOOL:
		sbuf_puts(b, j->b ? "true" : "false");
		return;
	case JSON_NUM:
		sbuf_puts(b, j->str);
		return;
	case JSON_STR:
		sbuf_json_str(b, j->str);
		return;
	case JSON_ARR:
	case JSON_OBJ:
		sbuf_putc(b, j->type == JSON_ARR ? '[' : '{');
		for (size_t i = 0; i < j->n; i++) {
			if (i)
				sbuf_putc(b, ',');
			if (j->type == JSON_OBJ) {
				sbuf_json_str(b, j->keys[i]);
				sbuf_putc(b, ':');
			}
			json_print(b, &j->items[i]);
		}
		sbuf_putc(b, j->type == JSON_ARR ? ']' : '}');
		return;
	}
}
