// SPDX-License-Identifier: Apache-2.0
/*
 * The Kubernetes config source, from API bytes to the snapshot: list
 * pages and watch event lines (kube_list_page(), kube_event_parse(),
 * kube_event_apply()) and CNI plugin requests (kube_cni_parse()) fill the
 * per-kind caches exactly as the watcher threads and the CNI socket do;
 * then kube_build_yaml() turns them into the mesh model, which goes
 * through config_load_buffer() like in the daemon.
 *
 * Input: sections separated by NUL bytes (API JSON never holds a raw NUL).
 * A section's first byte says what it is, its second byte the kind
 * ('0' pods, '1' namespaces, '2' services, '3' endpointslices; any byte,
 * modulo 4), the rest is the payload:
 *   L  a list response page        W  a watch event line
 *   C  a CNI request line (ADD records the pod's address hint, DEL drops it)
 *
 * Properties: no sanitizer report; the parsers keep their contracts
 * (parse -> 0 with a typed event, or -EINVAL with nothing held); the model
 * is always built; and whatever the API server sends, the YAML we make of
 * it is a config the loader accepts — one odd object must not stop the
 * whole node from following the cluster.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <json-c/json.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "kubesrc.h"
#include "log.h"
#include "state.h"

#define FUZZ_MAX_INPUT (64 * 1024)

static void section(struct json_object **objs, struct json_object *hints,
		    const char *p, size_t len)
{
	enum kube_kind k;
	char rv[64], cont[1024];
	struct kube_event ev;
	struct kube_cni_req req;
	struct in_addr a;

	if (len < 2)
		return;
	k = (enum kube_kind)((unsigned char)p[1] % KUBE_KINDS);
	switch (p[0]) {
	case 'L':
		memset(rv, 'x', sizeof(rv));
		memset(cont, 'x', sizeof(cont));
		if (kube_list_page(k, p + 2, len - 2, objs[k], rv, sizeof(rv),
				   cont, sizeof(cont)) == 0 &&
		    (!memchr(rv, 0, sizeof(rv)) ||
		     !memchr(cont, 0, sizeof(cont))))
			abort();
		break;
	case 'C':
		if (kube_cni_parse(p + 2, len - 2, &req)) {
			if (req.command[0] || req.ns[0] || req.name[0] ||
			    req.ip[0])
				abort(); /* refused, but something left behind
					  */
			break;
		}
		if (!memchr(req.command, 0, sizeof(req.command)) ||
		    !memchr(req.ns, 0, sizeof(req.ns)) ||
		    !memchr(req.name, 0, sizeof(req.name)) ||
		    !memchr(req.ip, 0, sizeof(req.ip)))
			abort();
		{
			char key[512];

			snprintf(key, sizeof(key), "%s/%s", req.ns, req.name);
			if (!strcmp(req.command, "ADD") &&
			    inet_pton(AF_INET, req.ip, &a) == 1)
				json_object_object_add(
				    hints, key, json_object_new_string(req.ip));
			else if (!strcmp(req.command, "DEL"))
				json_object_object_del(hints, key);
		}
		break;
	default:
		if (kube_event_parse(p + 2, len - 2, &ev)) {
			if (ev.root || ev.obj || ev.rv || ev.message)
				abort();
			break;
		}
		if (!ev.root ||
		    !json_object_is_type(ev.obj, json_type_object) ||
		    ev.type > KUBE_EV_ERROR)
			abort();
		if (kube_event_apply(k, &ev, objs[k], hints) !=
		    (ev.type <= KUBE_EV_DELETED ? 0 : -EINVAL))
			abort();
		kube_event_free(&ev);
		if (ev.root)
			abort();
		break;
	}
}

/* Every workload is a pod of the cache whose names came through the
 * JSON -> YAML -> snapshot trip unchanged. */
static void check_names(const struct state *st, struct json_object *pods)
{
	for (size_t i = 0; i < st->n_workloads; i++) {
		const struct workload *wl = &st->workloads[i];
		struct json_object *pod, *md, *v;
		char key[512];

		if (!wl->name ||
		    strlen(wl->namespace) + strlen(wl->name) + 2 > sizeof(key))
			abort();
		snprintf(key, sizeof(key), "%s/%s", wl->namespace, wl->name);
		if (!json_object_object_get_ex(pods, key, &pod) ||
		    !json_object_object_get_ex(pod, "metadata", &md) ||
		    !json_object_object_get_ex(md, "name", &v) ||
		    strcmp(json_object_get_string(v), wl->name) ||
		    !json_object_object_get_ex(md, "namespace", &v) ||
		    strcmp(json_object_get_string(v), wl->namespace)) {
			fprintf(stderr,
				"workload %s: no such pod in the cache\n", key);
			abort();
		}
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *lvl = getenv("AMBIENTD_FUZZ_LOG");

	if (!lvl || log_level_parse(lvl, &log_threshold))
		log_threshold = LOG_ERROR;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct kube_opts o = {.node = "n1",
				    .trust_domain = "cluster.local",
				    .cluster_domain = "cluster.local"};
	struct json_object *objs[KUBE_KINDS], *hints;
	const char *p = (const char *)data, *end = p + size;
	struct state *st = NULL;
	char *yaml = NULL, err[512];
	size_t ylen = 0;
	FILE *f;
	int rc;

	if (size > FUZZ_MAX_INPUT)
		return 0;
	for (int k = 0; k < KUBE_KINDS; k++)
		objs[k] = json_object_new_object();
	hints = json_object_new_object();

	while (p < end) {
		const char *nul = memchr(p, 0, (size_t)(end - p));
		size_t len = nul ? (size_t)(nul - p) : (size_t)(end - p);
		/* Each section in a buffer of its own size: reads past the
		 * payload are caught. */
		char *sec = malloc(len ? len : 1);

		if (!sec)
			abort();
		memcpy(sec, p, len);
		section(objs, hints, sec, len);
		free(sec);
		p += len + 1;
	}

	f = open_memstream(&yaml, &ylen);
	if (!f)
		abort();
	if (kube_build_yaml(objs[KUBE_PODS], objs[KUBE_NAMESPACES],
			    objs[KUBE_SERVICES], objs[KUBE_SLICES], hints, &o,
			    f))
		abort();
	if (fclose(f))
		abort();
	if (getenv("AMBIENTD_FUZZ_DUMP")) /* to look at what a seed makes */
		fprintf(stderr, "--- model:\n%s---\n", yaml);
	rc = config_load_buffer("kube", yaml, ylen, &st, err, sizeof(err));
	if (rc) {
		fprintf(stderr,
			"the model does not load: %s\n--- model:\n%s\n---\n",
			err, yaml);
		abort();
	}
	check_names(st, objs[KUBE_PODS]);
	state_unref(st);
	free(yaml);
	for (int k = 0; k < KUBE_KINDS; k++)
		json_object_put(objs[k]);
	json_object_put(hints);
	return 0;
}
