/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A growable, bounded text buffer for building responses (metrics pages,
 * JSON, HTTP replies). Appends never fail loudly: past `max` bytes or on
 * ENOMEM the buffer stops growing and remembers it (sbuf_failed()), so a
 * writer can emit everything and check once at the end.
 *
 * The content is always NUL-terminated when p != NULL; len excludes the NUL.
 */
#ifndef AMBIENTD_SBUF_H
#define AMBIENTD_SBUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

struct sbuf {
	char *p;
	size_t len;
	size_t cap;
	size_t max;  /* 0: SBUF_DEFAULT_MAX */
	bool failed; /* an append was dropped (over max or out of memory) */
};

#define SBUF_DEFAULT_MAX (64u << 20)

void sbuf_init(struct sbuf *b, size_t max);
void sbuf_free(struct sbuf *b);
/* Forget the content, keep the memory. */
void sbuf_reset(struct sbuf *b);
static inline bool sbuf_failed(const struct sbuf *b)
{
	return b->failed;
}

void sbuf_put(struct sbuf *b, const void *p, size_t n);
void sbuf_puts(struct sbuf *b, const char *s);
void sbuf_putc(struct sbuf *b, char c);
void sbuf_printf(struct sbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void sbuf_vprintf(struct sbuf *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/*
 * JSON string literal of s (with the quotes): escapes ", \ and control
 * characters; other bytes pass through (the daemon's strings are UTF-8 or
 * ASCII). NULL is written as null.
 */
void sbuf_json_str(struct sbuf *b, const char *s);

#endif
