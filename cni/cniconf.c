// SPDX-License-Identifier: Apache-2.0
/* The plugin's stdin, parsed (see cniconf.h). */
#include "cniconf.h"

#include <json-c/json.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cni.h"

const char *const cni_versions[] = {"0.3.0", "0.3.1", "0.4.0", "1.0.0",
				    "1.1.0"};
const size_t cni_n_versions = sizeof(cni_versions) / sizeof(cni_versions[0]);

int cni_version_cmp(const char *a, const char *b)
{
	unsigned x[3] = {0}, y[3] = {0};

	sscanf(a, "%u.%u.%u", &x[0], &x[1], &x[2]);
	sscanf(b, "%u.%u.%u", &y[0], &y[1], &y[2]);
	for (int i = 0; i < 3; i++)
		if (x[i] != y[i])
			return x[i] < y[i] ? -1 : 1;
	return 0;
}

bool cni_version_supported(const char *v)
{
	for (size_t i = 0; i < cni_n_versions; i++)
		if (strcmp(v, cni_versions[i]) == 0)
			return true;
	return false;
}

const char *cni_jstr(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!o || !json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

/* msg, and the code to return. */
static int __attribute__((format(printf, 4, 5)))
err(enum cni_err code, char *msg, size_t msglen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, msglen, fmt, ap);
	va_end(ap);
	return (int)code;
}

int cni_conf_parse(const char *buf, size_t len, struct cni_conf *c, char *msg,
		   size_t msglen, const char **details)
{
	struct json_tokener *tok;
	struct json_object *v;
	enum json_tokener_error jerr;
	size_t end;

	memset(c, 0, sizeof(*c));
	*details = NULL;
	if (len > INT_MAX)
		return err(CNI_ERR_DECODE, msg, msglen,
			   "network configuration too large");
	tok = json_tokener_new();
	if (!tok)
		return err(CNI_ERR_IO, msg, msglen, "out of memory");
	/* What runtimes send is standard JSON; strict mode refuses the
	 * extensions (comments, NaN, single quotes) that we would otherwise
	 * pass on in prevResult to a runtime that cannot read them. */
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT |
					JSON_TOKENER_VALIDATE_UTF8);
	c->root = json_tokener_parse_ex(tok, buf, (int)len);
	jerr = json_tokener_get_error(tok);
	end = c->root ? json_tokener_get_parse_end(tok) : 0;
	json_tokener_free(tok);
	if (!c->root) {
		/* Input that ends inside a value is "continue", not an error.
		 */
		*details = jerr == json_tokener_continue
			       ? "unexpected end of input"
			       : json_tokener_error_desc(jerr);
		return err(CNI_ERR_DECODE, msg, msglen,
			   "cannot decode the network configuration");
	}
	while (end < len && buf[end] && strchr(" \t\r\n", buf[end]))
		end++;
	if (end != len || !json_object_is_type(c->root, json_type_object)) {
		*details = end != len ? "bytes after the JSON object"
				      : "expected a JSON object";
		return err(CNI_ERR_DECODE, msg, msglen,
			   "cannot decode the network configuration");
	}
	c->version = cni_jstr(c->root, "cniVersion");
	if (!c->version)
		return err(CNI_ERR_CONFIG, msg, msglen,
			   "network configuration has no cniVersion");
	if (!cni_version_supported(c->version))
		return err(CNI_ERR_VERSION, msg, msglen,
			   "CNI version %.32s is not supported (1.1.0, 1.0.0, "
			   "0.4.0, 0.3.1, 0.3.0 are)",
			   c->version);
	if (!cni_jstr(c->root, "name") || !cni_jstr(c->root, "type"))
		return err(CNI_ERR_CONFIG, msg, msglen,
			   "network configuration needs \"name\" and \"type\"");
	c->socket = CNI_DEFAULT_SOCKET;
	if (json_object_object_get_ex(c->root, "socket", &v)) {
		if (!json_object_is_type(v, json_type_string) ||
		    !*json_object_get_string(v))
			return err(CNI_ERR_CONFIG, msg, msglen,
				   "\"socket\" must be a non-empty string");
		c->socket = json_object_get_string(v);
	}
	if (json_object_object_get_ex(c->root, "failClosed", &v)) {
		if (!json_object_is_type(v, json_type_boolean))
			return err(CNI_ERR_CONFIG, msg, msglen,
				   "\"failClosed\" must be true or false");
		c->fail_closed = json_object_get_boolean(v);
	}
	if (json_object_object_get_ex(c->root, "prevResult", &v) &&
	    json_object_is_type(v, json_type_object))
		c->prev = v;
	return 0;
}

void cni_conf_free(struct cni_conf *c)
{
	json_object_put(c->root);
	memset(c, 0, sizeof(*c));
}

struct json_object *cni_prev_ips(struct json_object *prev)
{
	struct json_object *ips, *out = json_object_new_array();

	if (!out || !prev || !json_object_object_get_ex(prev, "ips", &ips) ||
	    !json_object_is_type(ips, json_type_array))
		return out;
	for (size_t i = 0; i < json_object_array_length(ips); i++) {
		const char *a =
		    cni_jstr(json_object_array_get_idx(ips, i), "address");
		const char *slash;

		if (!a)
			continue;
		slash = strchr(a, '/');
		json_object_array_add(
		    out, json_object_new_string_len(a, slash ? (int)(slash - a)
							     : (int)strlen(a)));
	}
	return out;
}
