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

/* ---- pure parts, for tests and fuzzers ------------------------------------ */

/* The resource kinds the source lists and watches. */
enum kube_kind { KUBE_PODS, KUBE_NAMESPACES, KUBE_SERVICES, KUBE_SLICES, KUBE_KINDS };

/*
 * API bytes into the cache. The watcher threads get bytes from the HTTP
 * client and hand them here; nothing below does I/O or takes a lock. A
 * kind's cache is a JSON object mapping each object's key ("ns/name", or
 * "name" for namespaces) to the object.
 */

/*
 * One page of a list response: body is len bytes of JSON (no NUL needed).
 * Adds every item to objs under its key (managedFields dropped) and copies
 * metadata.resourceVersion into rv and metadata.continue into cont ("" when
 * absent; truncated to rvlen/contlen). 0, or -EINVAL when the body is not
 * exactly one JSON object with an "items" array (then nothing was added).
 */
int kube_list_page(enum kube_kind k, const char *body, size_t len,
		   struct json_object *objs, char *rv, size_t rvlen, char *cont,
		   size_t contlen);

enum kube_event_type {
	KUBE_EV_ADDED,
	KUBE_EV_MODIFIED,
	KUBE_EV_DELETED,
	KUBE_EV_BOOKMARK,
	KUBE_EV_ERROR, /* the server's Status object: code 410 means re-list */
};

/* One parsed watch event; root owns everything the pointers point into. */
struct kube_event {
	enum kube_event_type type;
	struct json_object *root;
	struct json_object *obj; /* event.object (ERROR: the Status) */
	const char *rv;		 /* obj's metadata.resourceVersion, or NULL */
	int code;		 /* ERROR: Status code */
	const char *message;	 /* ERROR: Status message, or NULL */
};

/*
 * One line of a watch stream (len bytes of JSON, no NUL needed). 0 with ev
 * filled (free with kube_event_free()), or -EINVAL for anything that is not
 * a watch event of a known type (ev->root is NULL then).
 */
int kube_event_parse(const char *line, size_t len, struct kube_event *ev);
void kube_event_free(struct kube_event *ev);

/*
 * Apply an ADDED, MODIFIED or DELETED event of kind k to that kind's cache
 * objs (a deleted pod also loses its CNI hint in hints, which may be NULL).
 * Takes its own references. Other types: nothing to apply (-EINVAL).
 */
int kube_event_apply(enum kube_kind k, const struct kube_event *ev,
		     struct json_object *objs, struct json_object *hints);

/*
 * A CNI plugin's request line (cni.h) as the agent reads it: command,
 * podNamespace and podName are required strings; ip is the first of "ips"
 * ("" when none). 0 or -EINVAL. Strings are truncated to the fields' sizes.
 */
struct kube_cni_req {
	char command[16];
	char ns[254];
	char name[254];
	char ip[64];
};
int kube_cni_parse(const char *buf, size_t len, struct kube_cni_req *req);

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
