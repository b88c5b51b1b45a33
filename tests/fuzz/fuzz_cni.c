// SPDX-License-Identifier: Apache-2.0
/*
 * The CNI plugin's stdin (cni/cniconf.c), which the container runtime
 * writes from the cluster's CNI config and the previous plugins' result,
 * and the agent's side of the plugin's request (kube_cni_parse()).
 * Properties:
 *  - cni_conf_parse() never crashes and gives 0 with a supported
 *    cniVersion, a name, a type and a non-empty socket, or a CNI error code
 *    with a message;
 *  - prevResult goes out on stdout unchanged: printed the way the plugin
 *    prints it and parsed again, it equals what came in;
 *  - the request the plugin builds from it (cni_prev_ips() into the
 *    request JSON of cni.h) is one the agent accepts, with the first
 *    address the plugin sent (when it is short enough to be an address).
 */
#include <json-c/json.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cni.h"
#include "cniconf.h"
#include "kubesrc.h"

#define FUZZ_MAX_INPUT (64 * 1024)
#define JSON_FLAGS     (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

static const int codes[] = {CNI_ERR_VERSION, CNI_ERR_DECODE, CNI_ERR_CONFIG,
			    CNI_ERR_IO};

static void check_prev(struct json_object *prev)
{
	const char *out = json_object_to_json_string_ext(prev, JSON_FLAGS);
	struct json_tokener *tok = json_tokener_new();
	struct json_object *again;

	if (!tok)
		abort();
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT |
					JSON_TOKENER_VALIDATE_UTF8);
	again = json_tokener_parse_ex(tok, out, (int)strlen(out));
	/* Equal as printed: json_object_equal() would call NaN != NaN. */
	if (!again ||
	    (!json_object_equal(prev, again) &&
	     strcmp(out, json_object_to_json_string_ext(again, JSON_FLAGS)))) {
		fprintf(stderr, "prevResult changed on its way through: %s\n",
			out);
		abort();
	}
	json_object_put(again);
	json_tokener_free(tok);
}

static void check_request(struct json_object *prev)
{
	struct json_object *req = json_object_new_object();
	struct json_object *ips = cni_prev_ips(prev);
	struct kube_cni_req r;
	const char *line, *first = NULL;
	char *copy;
	size_t len;

	if (!req || !ips)
		abort();
	for (size_t i = 0; i < json_object_array_length(ips); i++) {
		struct json_object *ip = json_object_array_get_idx(ips, i);

		if (!json_object_is_type(ip, json_type_string) ||
		    strchr(json_object_get_string(ip), '/'))
			abort();
		if (!first)
			first = json_object_get_string(ip);
	}
	/* As make_request() in ambientd-cni.c, with fixed environment. */
	json_object_object_add(req, "command", json_object_new_string("ADD"));
	json_object_object_add(req, "containerId",
			       json_object_new_string("c1"));
	json_object_object_add(req, "netns",
			       json_object_new_string("/var/run/netns/p"));
	json_object_object_add(req, "ifname", json_object_new_string("eth0"));
	json_object_object_add(req, "podNamespace",
			       json_object_new_string("demo"));
	json_object_object_add(req, "podName", json_object_new_string("a"));
	json_object_object_add(req, "ips", ips);
	line = json_object_to_json_string_ext(req, JSON_FLAGS);
	len = strlen(line);
	copy = malloc(len ? len : 1);
	if (!copy)
		abort();
	memcpy(copy, line, len);
	if (kube_cni_parse(copy, len, &r) || strcmp(r.command, "ADD") ||
	    strcmp(r.ns, "demo") || strcmp(r.name, "a")) {
		fprintf(stderr, "the agent refuses the plugin's request: %s\n",
			line);
		abort();
	}
	/* An address that fits is passed on exactly; others are dropped. */
	if (first && strlen(first) < sizeof(r.ip) &&
	    strlen(first) == (size_t)json_object_get_string_len(
				 json_object_array_get_idx(ips, 0)) &&
	    strcmp(r.ip, first))
		abort();
	free(copy);
	json_object_put(req);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cni_conf c;
	const char *details;
	char msg[256], *buf;
	int rc;

	if (size > FUZZ_MAX_INPUT)
		return 0;
	buf = malloc(size ? size : 1);
	if (!buf)
		abort();
	memcpy(buf, data, size);
	memset(msg, 'x', sizeof(msg));
	rc = cni_conf_parse(buf, size, &c, msg, sizeof(msg), &details);
	if (rc) {
		bool known = false;

		for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
			known |= rc == codes[i];
		if (!known || !memchr(msg, 0, sizeof(msg)) || !msg[0])
			abort();
		if (details && !*details)
			abort();
	} else {
		if (!c.root || !c.version ||
		    !cni_version_supported(c.version) || !c.socket ||
		    !*c.socket)
			abort();
		(void)cni_version_cmp(c.version, "0.4.0");
		if (c.prev)
			check_prev(c.prev);
		check_request(c.prev);
	}
	cni_conf_free(&c);
	free(buf);
	return 0;
}
