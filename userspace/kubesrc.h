/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Kubernetes config source (ambientd --kube): pods, namespaces,
 * services and endpointslices from the API server, turned into the mesh
 * model in the local config's schema (so they go through the same strict
 * parser and snapshot swap as the file), enrollment as Istio ambient does
 * it, the `ambient.istio.io/redirection` annotation on captured pods, and
 * the CNI plugin's socket.
 *
 * Threads: one watcher thread per resource kind (list, then watch from the
 * list's resourceVersion with bookmarks; re-list on 410 Gone; exponential
 * back-off on errors) and one thread that sends the pods/status patches.
 * They only fill a mutex-protected cache and wake the control loop through
 * an eventfd; everything else runs on the control loop, which is never
 * blocked by the network.
 */
#ifndef AMBIENTD_KUBESRC_H
#define AMBIENTD_KUBESRC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kubeclient.h"

struct json_object;
struct loop;

#define KUBE_LABEL_MODE "istio.io/dataplane-mode"
#define KUBE_ANNOT_REDIRECTION "ambient.istio.io/redirection"
#define KUBE_ANNOT_SIDECAR "sidecar.istio.io/status"
#define KUBE_LABEL_SELF "app.kubernetes.io/name" /* = "ambientd" on our pods */

struct kube_opts {
	struct kube_conf conf;
	const char *node; /* this node: spec.nodeName of the pods we capture */
	const char *trust_domain;
	const char *cluster_domain; /* service hostnames: NAME.NS.svc.DOMAIN */
	const char *cni_socket; /* NULL: no CNI socket */
	unsigned backoff_max_ms; /* cap of the error back-off */
};

/* What the daemon does for the source, on the control loop. */
struct kube_hooks {
	/* The cache changed (or a CNI ADD wants it now): rebuild the
	 * snapshot and reconcile enrollment before returning. */
	void (*changed)(void *arg);
	/* Is this pod address (network order) enrolled in the kernel? */
	bool (*enrolled)(uint32_t addr_be, void *arg);
	void *arg;
};

struct kube_source;

/* Starts the threads and registers the eventfd (and the CNI socket) on
 * loop. NULL with a message in err. */
struct kube_source *kube_source_start(const struct kube_opts *o, struct loop *loop,
				      const struct kube_hooks *hooks, char *err,
				      size_t errlen);
/* Stops and joins the threads; frees everything. NULL-safe. */
void kube_source_stop(struct kube_source *ks);

/* Every kind listed at least once: until then the model is incomplete
 * and must not replace what the kernel has. */
bool kube_source_synced(struct kube_source *ks);

/* The mesh as YAML (`workloads:` and `services:` keys), malloc'd. */
int kube_source_yaml(struct kube_source *ks, char **text, size_t *len);

/* Appends "\n" + that YAML to the malloc'd buffer *buf of *len bytes
 * (NUL-terminated after). The policies file comes first so its line
 * numbers in errors stay right. */
int kube_source_append_yaml(struct kube_source *ks, char **buf, size_t *len);

/* After a reconcile: queue annotation patches for this node's pods whose
 * `ambient.istio.io/redirection` does not say what the kernel does. */
void kube_source_sync_annotations(struct kube_source *ks);

/* JSON status (per kind: lists, watches, events, bookmarks, 410 re-lists,
 * errors; token reads; patches) for the control socket's "kube". */
void kube_source_status(struct kube_source *ks, FILE *out);

/* ---- pure parts, for tests ---------------------------------------------- */

/*
 * Would Istio ambient capture this pod? pod and ns are API objects (ns may
 * be NULL when unknown). Ignores the node; the caller checks spec.nodeName.
 * why (optional) gets a short reason.
 */
bool kube_pod_captured(struct json_object *pod, struct json_object *ns,
		       const char **why);

/*
 * The mesh model from API objects: maps "ns/name" -> object for pods,
 * namespaces ("name" -> object), services and endpointslices; hints maps
 * "ns/name" -> "ip" for pods whose address the CNI plugin told us before
 * the API server knew it. Appends YAML to out (open_memstream).
 */
int kube_build_yaml(struct json_object *pods, struct json_object *namespaces,
		    struct json_object *services, struct json_object *slices,
		    struct json_object *hints, const struct kube_opts *o, FILE *out);

#endif
