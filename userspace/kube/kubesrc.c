// SPDX-License-Identifier: Apache-2.0
/*
 * ambientd --kube: the API server as a config source. See kubesrc.h for the
 * threads and what runs where.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <json-c/json.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cni.h"
#include "kubesrc.h"
#include "log.h"
#include "loop.h"

#define BACKOFF_MIN_MS 250
#define BACKOFF_MAX_MS 30000
#define WATCH_TIMEOUT_S 300 /* server ends a watch after this; we re-watch */
#define WATCH_IDLE_MS ((WATCH_TIMEOUT_S + 30) * 1000)
#define LIST_PAGE 500
#define PATCH_RETRIES 5
#define JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

static const struct {
	const char *name;
	const char *path;
} kinds[KUBE_KINDS] = {
	[KUBE_PODS] = { "pods", "/api/v1/pods" },
	[KUBE_NAMESPACES] = { "namespaces", "/api/v1/namespaces" },
	[KUBE_SERVICES] = { "services", "/api/v1/services" },
	[KUBE_SLICES] = { "endpointslices", "/apis/discovery.k8s.io/v1/endpointslices" },
};

/* One resource kind's list+watch loop and its counters. */
struct watcher {
	struct kube_source *ks;
	enum kube_kind kind;
	pthread_t thread;
	bool started;
	struct kube_client *kc;
	char rv[64]; /* resourceVersion to watch from */
	atomic_uint lists, watches, events, bookmarks, gone, errors;
	unsigned backoff_ms;
};

struct patch {
	struct patch *next;
	char ns[64], name[254];
	bool enable;
	int tries;
};

struct kube_source {
	struct kube_opts o;
	struct kube_hooks hooks;
	struct loop *loop;
	atomic_bool stop;

	/* Guarded by mu: the objects ("ns/name" or "name" -> object), the
	 * CNI hints and which kinds were listed. */
	pthread_mutex_t mu;
	struct json_object *objs[KUBE_KINDS];
	struct json_object *hints; /* "ns/name" -> "ip" */
	struct json_object *patched; /* "ns/name" -> bool asked for */
	bool listed[KUBE_KINDS];

	int efd; /* watchers -> control loop */
	struct loop_io efd_io;
	struct loop_timer debounce;
	struct watcher w[KUBE_KINDS];

	/* Patches: queue guarded by pmu, sent by the patch thread. */
	pthread_mutex_t pmu;
	pthread_cond_t pcond;
	struct patch *queue;
	pthread_t pthread;
	bool pstarted;
	struct kube_client *pkc;
	atomic_uint patches_ok, patches_failed;

	int cni_fd;
	struct loop_io cni_io;
	char cni_path[108];
	atomic_uint cni_requests;
};

/* ---- small JSON helpers --------------------------------------------------- */

static struct json_object *jget(struct json_object *o, const char *key)
{
	struct json_object *v = NULL;

	if (!o || !json_object_is_type(o, json_type_object) ||
	    !json_object_object_get_ex(o, key, &v))
		return NULL;
	return v;
}

/* o.a.b... as a string, or NULL. */
static const char *jstr_path(struct json_object *o, const char *a, const char *b,
			     const char *c)
{
	o = jget(o, a);
	if (b)
		o = jget(o, b);
	if (c)
		o = jget(o, c);
	return o && json_object_is_type(o, json_type_string) ? json_object_get_string(o) : NULL;
}

static bool jbool(struct json_object *o, const char *a, const char *b)
{
	o = jget(jget(o, a), b);
	return o && json_object_is_type(o, json_type_boolean) && json_object_get_boolean(o);
}

static const char *label(struct json_object *o, const char *key)
{
	return jstr_path(o, "metadata", "labels", key);
}

static const char *annotation(struct json_object *o, const char *key)
{
	return jstr_path(o, "metadata", "annotations", key);
}

static bool streq(const char *a, const char *b)
{
	return a && b && strcmp(a, b) == 0;
}

/* ---- enrollment (Istio ambient's rules) ----------------------------------- */

bool kube_pod_captured(struct json_object *pod, struct json_object *ns,
		       const char **why)
{
	const char *pmode = label(pod, KUBE_LABEL_MODE);
	const char *nsname = jstr_path(pod, "metadata", "namespace", NULL);
	const char *phase = jstr_path(pod, "status", "phase", NULL);
	const char *dummy;

	if (!why)
		why = &dummy;
	if (streq(nsname, "kube-system"))
		return *why = "kube-system", false;
	if (jbool(pod, "spec", "hostNetwork"))
		return *why = "hostNetwork", false;
	if (annotation(pod, KUBE_ANNOT_SIDECAR))
		return *why = "has a sidecar", false;
	if (streq(label(pod, KUBE_LABEL_SELF), "ambientd"))
		return *why = "ambientd itself", false;
	if (streq(phase, "Succeeded") || streq(phase, "Failed"))
		return *why = "terminated", false;
	if (streq(pmode, "none"))
		return *why = "pod labeled none", false;
	if (streq(pmode, "ambient"))
		return *why = "pod labeled ambient", true;
	if (streq(label(ns, KUBE_LABEL_MODE), "ambient"))
		return *why = "namespace labeled ambient", true;
	return *why = "not labeled ambient", false;
}

/* ---- the model as YAML ------------------------------------------------------ */

static bool ipv4(const char *s, uint32_t *out)
{
	struct in_addr a;

	if (!s || inet_pton(AF_INET, s, &a) != 1)
		return false;
	if (out)
		*out = a.s_addr;
	return true;
}

/* The pod's IPv4 address: status.podIP(s), else the CNI hint. */
static const char *pod_ip(struct json_object *pod, struct json_object *hints,
			  const char *key)
{
	struct json_object *ips = jget(jget(pod, "status"), "podIPs");
	const char *ip = jstr_path(pod, "status", "podIP", NULL);

	if (ipv4(ip, NULL))
		return ip;
	for (size_t i = 0; ips && json_object_is_type(ips, json_type_array) &&
			   i < json_object_array_length(ips); i++) {
		ip = jstr_path(json_object_array_get_idx(ips, i), "ip", NULL, NULL);
		if (ipv4(ip, NULL))
			return ip;
	}
	ip = jstr_path(hints, key, NULL, NULL);
	return ipv4(ip, NULL) ? ip : NULL;
}

static bool pod_ready(struct json_object *pod)
{
	struct json_object *conds = jget(jget(pod, "status"), "conditions");

	for (size_t i = 0; conds && json_object_is_type(conds, json_type_array) &&
			   i < json_object_array_length(conds); i++) {
		struct json_object *c = json_object_array_get_idx(conds, i);

		if (streq(jstr_path(c, "type", NULL, NULL), "Ready"))
			return streq(jstr_path(c, "status", NULL, NULL), "True");
	}
	return false;
}

/*
 * "key: <arr as JSON>": JSON is YAML flow style, except for characters
 * JSON leaves raw in strings that YAML refuses (DEL, C1 controls, U+FFFE,
 * U+FFFF: "control characters are not allowed"; one such string from the
 * API server would make the whole model unloadable) or reads as a line
 * break and folds (NEL, U+2028, U+2029). They only occur inside strings
 * (our strings are valid UTF-8: the parser checks), where \uXXXX means
 * the same to both.
 */
static void emit(FILE *out, const char *key, struct json_object *arr)
{
	const unsigned char *p =
		(const unsigned char *)json_object_to_json_string_ext(arr, JSON_FLAGS);

	fprintf(out, "%s: ", key);
	for (; *p; p++) {
		if (*p == 0x7f) {
			fputs("\\u007f", out);
		} else if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
			fprintf(out, "\\u00%02x", p[1]);
			p++;
		} else if (p[0] == 0xe2 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9)) {
			fprintf(out, "\\u20%02x", p[2] == 0xa8 ? 0x28 : 0x29);
			p += 2;
		} else if (p[0] == 0xef && p[1] == 0xbf && (p[2] == 0xbe || p[2] == 0xbf)) {
			fprintf(out, "\\uff%02x", p[2] == 0xbe ? 0xfe : 0xff);
			p += 2;
		} else {
			fputc(*p, out);
		}
	}
	fputc('\n', out);
}

/* Port number of a named port in an EndpointSlice, 0 if none. */
static int slice_port(struct json_object *slice, const char *name)
{
	struct json_object *ports = jget(slice, "ports");

	for (size_t i = 0; ports && json_object_is_type(ports, json_type_array) &&
			   i < json_object_array_length(ports); i++) {
		struct json_object *p = json_object_array_get_idx(ports, i);
		const char *n = jstr_path(p, "name", NULL, NULL);

		if (streq(n ? n : "", name ? name : ""))
			return json_object_get_int(jget(p, "port"));
	}
	return 0;
}

/*
 * Services: one entry per Service with an IPv4 ClusterIP. Endpoints: each
 * EndpointSlice endpoint whose targetRef is a known pod adds
 * "ns/hostname": {servicePort: targetPort} to that pod's workload, as
 * ztunnel's workload API has it.
 */
int kube_build_yaml(struct json_object *pods, struct json_object *namespaces,
		    struct json_object *services, struct json_object *slices,
		    struct json_object *hints, const struct kube_opts *o, FILE *out)
{
	struct json_object *wls = json_object_new_array();
	struct json_object *svcs = json_object_new_array();
	struct json_object *byname = json_object_new_object(); /* "ns/name" -> workload */
	struct json_object *seen_ip = json_object_new_object();
	char key[512], host[512];

	json_object_object_foreach(pods, pkey, pod) {
		const char *ns = jstr_path(pod, "metadata", "namespace", NULL);
		const char *name = jstr_path(pod, "metadata", "name", NULL);
		const char *ip = pod_ip(pod, hints, pkey);
		const char *sa = jstr_path(pod, "spec", "serviceAccountName", NULL);
		const char *node = jstr_path(pod, "spec", "nodeName", NULL);
		struct json_object *wl, *ips;
		bool captured;

		if (!ns || !name || !ip || jbool(pod, "spec", "hostNetwork"))
			continue;
		if (jget(seen_ip, ip)) {
			log_debug("kube: pod %s: address %s already taken by %s; skipped",
				  pkey, ip, json_object_get_string(jget(seen_ip, ip)));
			continue;
		}
		captured = kube_pod_captured(pod, jget(namespaces, ns), NULL);
		if (!captured && (streq(jstr_path(pod, "status", "phase", NULL), "Succeeded") ||
				  streq(jstr_path(pod, "status", "phase", NULL), "Failed")))
			continue;
		json_object_object_add(seen_ip, ip, json_object_new_string(pkey));
		wl = json_object_new_object();
		snprintf(key, sizeof(key), "Kubernetes//Pod/%s/%s", ns, name);
		json_object_object_add(wl, "uid", json_object_new_string(key));
		json_object_object_add(wl, "name", json_object_new_string(name));
		json_object_object_add(wl, "namespace", json_object_new_string(ns));
		json_object_object_add(wl, "serviceAccount",
				       json_object_new_string(sa && *sa ? sa : "default"));
		json_object_object_add(wl, "trustDomain", json_object_new_string(o->trust_domain));
		ips = json_object_new_array();
		json_object_array_add(ips, json_object_new_string(ip));
		json_object_object_add(wl, "workloadIps", ips);
		json_object_object_add(wl, "protocol",
				       json_object_new_string(captured ? "HBONE" : "TCP"));
		json_object_object_add(wl, "status", json_object_new_string(
							     pod_ready(pod) ? "Healthy" : "Unhealthy"));
		/* `node` only on captured pods: the daemon enrolls every
		 * workload of its node, and Istio leaves the others alone. */
		if (captured && node)
			json_object_object_add(wl, "node", json_object_new_string(node));
		json_object_object_add(wl, "services", json_object_new_object());
		json_object_array_add(wls, wl);
		json_object_object_add(byname, pkey, json_object_get(wl));
	}

	json_object_object_foreach(services, skey, svc) {
		const char *ns = jstr_path(svc, "metadata", "namespace", NULL);
		const char *name = jstr_path(svc, "metadata", "name", NULL);
		const char *vip = jstr_path(svc, "spec", "clusterIP", NULL);
		struct json_object *sports = jget(jget(svc, "spec"), "ports");
		struct json_object *s, *vips, *ports;
		char v[80];

		(void)skey;
		if (!ns || !name || !ipv4(vip, NULL) || jget(seen_ip, vip))
			continue;
		json_object_object_add(seen_ip, vip, json_object_new_string(skey));
		snprintf(host, sizeof(host), "%s.%s.svc.%s", name, ns, o->cluster_domain);
		s = json_object_new_object();
		json_object_object_add(s, "name", json_object_new_string(name));
		json_object_object_add(s, "namespace", json_object_new_string(ns));
		json_object_object_add(s, "hostname", json_object_new_string(host));
		vips = json_object_new_array();
		snprintf(v, sizeof(v), "/%s", vip);
		json_object_array_add(vips, json_object_new_string(v));
		json_object_object_add(s, "vips", vips);
		ports = json_object_new_object();
		for (size_t i = 0; sports && json_object_is_type(sports, json_type_array) &&
				   i < json_object_array_length(sports); i++) {
			struct json_object *p = json_object_array_get_idx(sports, i);
			struct json_object *tp = jget(p, "targetPort");
			int port = json_object_get_int(jget(p, "port")), target = port;
			char pk[8];

			if (!streq(jstr_path(p, "protocol", NULL, NULL) ?: "TCP", "TCP") ||
			    port <= 0 || port > 65535)
				continue;
			if (tp && json_object_is_type(tp, json_type_int))
				target = json_object_get_int(tp);
			snprintf(pk, sizeof(pk), "%d", port);
			if (target > 0 && target <= 65535)
				json_object_object_add(ports, pk, json_object_new_int(target));
		}
		json_object_object_add(s, "ports", ports);
		json_object_array_add(svcs, s);
	}

	json_object_object_foreach(slices, ekey, slice) {
		const char *ns = jstr_path(slice, "metadata", "namespace", NULL);
		const char *svcname = label(slice, "kubernetes.io/service-name");
		struct json_object *tsvc, *eps = jget(slice, "endpoints");
		struct json_object *sports;

		(void)ekey;
		if (!ns || !svcname)
			continue;
		snprintf(key, sizeof(key), "%s/%s", ns, svcname);
		tsvc = jget(services, key);
		sports = jget(jget(tsvc, "spec"), "ports");
		if (!tsvc || !ipv4(jstr_path(tsvc, "spec", "clusterIP", NULL), NULL))
			continue;
		snprintf(host, sizeof(host), "%s/%s.%s.svc.%s", ns, svcname, ns, o->cluster_domain);
		for (size_t i = 0; eps && json_object_is_type(eps, json_type_array) &&
				   i < json_object_array_length(eps); i++) {
			struct json_object *ep = json_object_array_get_idx(eps, i);
			const char *tkind = jstr_path(ep, "targetRef", "kind", NULL);
			const char *tname = jstr_path(ep, "targetRef", "name", NULL);
			struct json_object *wl, *map, *pm;
			char pk[600];

			if (!streq(tkind, "Pod") || !tname)
				continue;
			snprintf(pk, sizeof(pk), "%s/%s", ns, tname);
			wl = jget(byname, pk);
			if (!wl)
				continue;
			map = jget(wl, "services");
			pm = jget(map, host);
			if (!pm) {
				pm = json_object_new_object();
				json_object_object_add(map, host, pm);
			}
			for (size_t j = 0; sports && json_object_is_type(sports, json_type_array) &&
					   j < json_object_array_length(sports); j++) {
				struct json_object *p = json_object_array_get_idx(sports, j);
				int port = json_object_get_int(jget(p, "port"));
				int target = slice_port(slice, jstr_path(p, "name", NULL, NULL));
				char sp[8];

				if (port <= 0 || port > 65535 || target <= 0 || target > 65535)
					continue;
				snprintf(sp, sizeof(sp), "%d", port);
				json_object_object_add(pm, sp, json_object_new_int(target));
			}
		}
	}

	emit(out, "workloads", wls);
	emit(out, "services", svcs);
	json_object_put(wls);
	json_object_put(svcs);
	json_object_put(byname);
	json_object_put(seen_ip);
	return ferror(out) ? -EIO : 0;
}

/* ---- the cache ------------------------------------------------------------------ */

static void notify(struct kube_source *ks)
{
	uint64_t one = 1;

	if (write(ks->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("kube: eventfd: %s", strerror(errno));
}

static void obj_key(struct json_object *obj, enum kube_kind k, char *key, size_t len)
{
	const char *ns = jstr_path(obj, "metadata", "namespace", NULL);
	const char *name = jstr_path(obj, "metadata", "name", NULL);

	if (k == KUBE_NAMESPACES || !ns)
		snprintf(key, len, "%s", name ? name : "");
	else
		snprintf(key, len, "%s/%s", ns, name ? name : "");
}

/* Drop what we never read (managedFields is most of an object's size). */
static void trim(struct json_object *obj)
{
	struct json_object *md = jget(obj, "metadata");

	/* json-c asserts (aborts) on deleting from a non-object. */
	if (json_object_is_type(md, json_type_object))
		json_object_object_del(md, "managedFields");
}

/*
 * Exactly one JSON value in len bytes (blanks around it allowed), with
 * valid UTF-8 in its strings, or NULL. json_tokener_parse() would take the
 * first value of a NUL-terminated string and ignore what follows.
 */
static struct json_object *parse_whole(const char *buf, size_t len)
{
	struct json_tokener *tok;
	struct json_object *o = NULL;
	size_t end;

	if (len > INT_MAX || !(tok = json_tokener_new()))
		return NULL;
	json_tokener_set_flags(tok, JSON_TOKENER_VALIDATE_UTF8);
	o = json_tokener_parse_ex(tok, buf, (int)len);
	if (o && json_tokener_get_error(tok) == json_tokener_success) {
		end = json_tokener_get_parse_end(tok);
		while (end < len && strchr(" \t\r\n", buf[end]) && buf[end])
			end++;
		if (end != len) {
			json_object_put(o);
			o = NULL;
		}
	} else {
		json_object_put(o);
		o = NULL;
	}
	json_tokener_free(tok);
	return o;
}

int kube_list_page(enum kube_kind k, const char *body, size_t len,
		   struct json_object *objs, char *rv, size_t rvlen, char *cont,
		   size_t contlen)
{
	struct json_object *list = parse_whole(body, len);
	struct json_object *items = jget(list, "items");
	const char *s;

	if (!items || !json_object_is_type(items, json_type_array)) {
		json_object_put(list);
		return -EINVAL;
	}
	for (size_t i = 0; i < json_object_array_length(items); i++) {
		struct json_object *it = json_object_array_get_idx(items, i);
		char key[512];

		if (!json_object_is_type(it, json_type_object))
			continue;
		trim(it);
		obj_key(it, k, key, sizeof(key));
		json_object_object_add(objs, key, json_object_get(it));
	}
	s = jstr_path(list, "metadata", "resourceVersion", NULL);
	snprintf(rv, rvlen, "%s", s ? s : "");
	s = jstr_path(list, "metadata", "continue", NULL);
	snprintf(cont, contlen, "%s", s ? s : "");
	json_object_put(list);
	return 0;
}

int kube_event_parse(const char *line, size_t len, struct kube_event *ev)
{
	static const char *const types[] = {
		[KUBE_EV_ADDED] = "ADDED",	 [KUBE_EV_MODIFIED] = "MODIFIED",
		[KUBE_EV_DELETED] = "DELETED",	 [KUBE_EV_BOOKMARK] = "BOOKMARK",
		[KUBE_EV_ERROR] = "ERROR",
	};
	const char *type;
	size_t t;

	memset(ev, 0, sizeof(*ev));
	ev->root = parse_whole(line, len);
	type = jstr_path(ev->root, "type", NULL, NULL);
	ev->obj = jget(ev->root, "object");
	if (!type || !json_object_is_type(ev->obj, json_type_object))
		goto bad;
	for (t = 0; t < sizeof(types) / sizeof(types[0]); t++)
		if (strcmp(type, types[t]) == 0)
			break;
	if (t == sizeof(types) / sizeof(types[0]))
		goto bad;
	ev->type = (enum kube_event_type)t;
	if (ev->type == KUBE_EV_ERROR) {
		ev->code = json_object_get_int(jget(ev->obj, "code"));
		ev->message = jstr_path(ev->obj, "message", NULL, NULL);
	} else {
		ev->rv = jstr_path(ev->obj, "metadata", "resourceVersion", NULL);
	}
	return 0;
bad:
	kube_event_free(ev);
	return -EINVAL;
}

void kube_event_free(struct kube_event *ev)
{
	json_object_put(ev->root);
	memset(ev, 0, sizeof(*ev));
}

int kube_event_apply(enum kube_kind k, const struct kube_event *ev,
		     struct json_object *objs, struct json_object *hints)
{
	char key[512];

	if (ev->type > KUBE_EV_DELETED)
		return -EINVAL;
	trim(ev->obj);
	obj_key(ev->obj, k, key, sizeof(key));
	if (ev->type == KUBE_EV_DELETED) {
		json_object_object_del(objs, key);
		if (k == KUBE_PODS && hints)
			json_object_object_del(hints, key);
	} else {
		json_object_object_add(objs, key, json_object_get(ev->obj));
	}
	return 0;
}

/* A string field that fits in len bytes (with its NUL), copied; else false. */
static bool copy_str(struct json_object *o, char *out, size_t len)
{
	const char *s = json_object_is_type(o, json_type_string) ?
				json_object_get_string(o) : NULL;

	if (!s || (size_t)json_object_get_string_len(o) >= len ||
	    strlen(s) != (size_t)json_object_get_string_len(o))
		return false; /* absent, too long, or with a NUL inside */
	memcpy(out, s, strlen(s) + 1);
	return true;
}

int kube_cni_parse(const char *buf, size_t len, struct kube_cni_req *req)
{
	struct json_object *o = parse_whole(buf, len), *ips = jget(o, "ips");
	int err = 0;

	memset(req, 0, sizeof(*req));
	if (!copy_str(jget(o, "command"), req->command, sizeof(req->command)) ||
	    !copy_str(jget(o, "podNamespace"), req->ns, sizeof(req->ns)) ||
	    !copy_str(jget(o, "podName"), req->name, sizeof(req->name)))
		err = -EINVAL;
	else if (json_object_is_type(ips, json_type_array) &&
		 json_object_array_length(ips) &&
		 !copy_str(json_object_array_get_idx(ips, 0), req->ip, sizeof(req->ip)))
		req->ip[0] = '\0'; /* not an address: as if none was given */
	json_object_put(o);
	if (err)
		memset(req, 0, sizeof(*req));
	return err;
}

/* ---- watcher thread ---------------------------------------------------------- */

static void sleep_ms(struct kube_source *ks, unsigned ms)
{
	while (ms && !atomic_load(&ks->stop)) {
		unsigned step = ms > 100 ? 100 : ms;
		struct timespec ts = { .tv_nsec = step * 1000000L };

		nanosleep(&ts, NULL);
		ms -= step;
	}
}

static void backoff(struct watcher *w, const char *what)
{
	unsigned max = w->ks->o.backoff_max_ms ? w->ks->o.backoff_max_ms : BACKOFF_MAX_MS;

	atomic_fetch_add(&w->errors, 1);
	w->backoff_ms = w->backoff_ms ? w->backoff_ms * 2 : BACKOFF_MIN_MS;
	if (w->backoff_ms > max)
		w->backoff_ms = max;
	log_warn("kube: %s: %s; retrying in %u ms", kinds[w->kind].name, what, w->backoff_ms);
	sleep_ms(w->ks, w->backoff_ms);
}

/* Full list (paged); replaces the kind's cache. 0, -EAGAIN (logged). */
static int do_list(struct watcher *w)
{
	struct kube_source *ks = w->ks;
	struct json_object *fresh = json_object_new_object();
	char path[2048], cont[1024] = "", what[256];
	int status, err;

	do {
		char *body = NULL;
		size_t blen = 0;

		snprintf(path, sizeof(path), "%s?limit=%d%s%s", kinds[w->kind].path, LIST_PAGE,
			 cont[0] ? "&continue=" : "", cont);
		err = kube_request(w->kc, "GET", path, NULL, NULL, &status, &body, &blen);
		if (err || status != 200) {
			snprintf(what, sizeof(what), "list: %s",
				 err ? strerror(-err) : "HTTP error");
			if (!err)
				snprintf(what, sizeof(what), "list: HTTP %d: %.120s", status, body);
			free(body);
			json_object_put(fresh);
			backoff(w, what);
			return -EAGAIN;
		}
		err = kube_list_page(w->kind, body, blen, fresh, w->rv,
				     sizeof(w->rv), cont, sizeof(cont));
		free(body);
		if (err) {
			json_object_put(fresh);
			backoff(w, "list: not a JSON list");
			return -EAGAIN;
		}
	} while (cont[0] && !atomic_load(&ks->stop));

	pthread_mutex_lock(&ks->mu);
	json_object_put(ks->objs[w->kind]);
	ks->objs[w->kind] = fresh;
	ks->listed[w->kind] = true;
	pthread_mutex_unlock(&ks->mu);
	atomic_fetch_add(&w->lists, 1);
	w->backoff_ms = 0;
	log_info("kube: listed %d %s at resourceVersion %s",
		 json_object_object_length(fresh), kinds[w->kind].name, w->rv);
	notify(ks);
	return 0;
}

enum watch_end { W_AGAIN = 1, W_RELIST, W_ERROR };

static int on_event(char *line, size_t len, void *arg)
{
	static const char *const names[] = { "ADDED", "MODIFIED", "DELETED" };
	struct watcher *w = arg;
	struct kube_source *ks = w->ks;
	struct kube_event ev;
	int ret;

	if (kube_event_parse(line, len, &ev)) {
		log_warn_rl("kube: %s watch: not an event: %.200s", kinds[w->kind].name, line);
		return W_ERROR;
	}
	if (ev.type == KUBE_EV_ERROR) {
		log_info("kube: %s watch: error %d %s", kinds[w->kind].name, ev.code,
			 ev.message ?: "");
		ret = ev.code == 410 ? W_RELIST : W_ERROR;
		kube_event_free(&ev);
		return ret;
	}
	if (ev.rv)
		snprintf(w->rv, sizeof(w->rv), "%s", ev.rv);
	if (ev.type == KUBE_EV_BOOKMARK) {
		atomic_fetch_add(&w->bookmarks, 1);
		log_debug("kube: %s bookmark at %s", kinds[w->kind].name, w->rv);
		kube_event_free(&ev);
		return 0;
	}
	pthread_mutex_lock(&ks->mu);
	ret = kube_event_apply(w->kind, &ev, ks->objs[w->kind], ks->hints);
	pthread_mutex_unlock(&ks->mu);
	if (!ret) {
		atomic_fetch_add(&w->events, 1);
		log_debug("kube: %s %s %s", kinds[w->kind].name, names[ev.type],
			  jstr_path(ev.obj, "metadata", "name", NULL) ?: "?");
		notify(ks);
	}
	/* The cache holds its own reference to the object. */
	kube_event_free(&ev);
	return ret ? W_ERROR : 0;
}

static void *watch_thread(void *arg)
{
	struct watcher *w = arg;
	struct kube_source *ks = w->ks;
	bool need_list = true;

	while (!atomic_load(&ks->stop)) {
		char path[512], what[160];
		int status = 0, err;

		if (need_list) {
			if (do_list(w))
				continue;
			need_list = false;
		}
		snprintf(path, sizeof(path),
			 "%s?watch=1&allowWatchBookmarks=true&resourceVersion=%s&timeoutSeconds=%d",
			 kinds[w->kind].path, w->rv, WATCH_TIMEOUT_S);
		atomic_fetch_add(&w->watches, 1);
		err = kube_stream(w->kc, path, on_event, w, &status, &ks->stop, WATCH_IDLE_MS);
		if (atomic_load(&ks->stop))
			break;
		if (status == 410 || err == W_RELIST) {
			atomic_fetch_add(&w->gone, 1);
			log_info("kube: %s: resourceVersion %s is gone (410); re-listing",
				 kinds[w->kind].name, w->rv);
			need_list = true;
			continue;
		}
		if (err == 0 && status == 200) {
			w->backoff_ms = 0;
			continue; /* the server ended the watch: watch again from rv */
		}
		if (err < 0)
			snprintf(what, sizeof(what), "watch: %s", strerror(-err));
		else
			snprintf(what, sizeof(what), "watch: HTTP %d", status);
		/* After an error we may have missed events: list again. */
		need_list = true;
		backoff(w, what);
	}
	return NULL;
}

/* ---- annotation patches --------------------------------------------------------- */

static void *patch_thread(void *arg)
{
	struct kube_source *ks = arg;

	pthread_mutex_lock(&ks->pmu);
	while (!atomic_load(&ks->stop)) {
		struct patch *p = ks->queue;
		char path[512], body[256], *resp = NULL;
		int status = 0, err;

		if (!p) {
			pthread_cond_wait(&ks->pcond, &ks->pmu);
			continue;
		}
		ks->queue = p->next;
		pthread_mutex_unlock(&ks->pmu);

		snprintf(path, sizeof(path), "/api/v1/namespaces/%s/pods/%s/status", p->ns, p->name);
		snprintf(body, sizeof(body), "{\"metadata\":{\"annotations\":{\"%s\":%s}}}",
			 KUBE_ANNOT_REDIRECTION, p->enable ? "\"enabled\"" : "null");
		err = kube_request(ks->pkc, "PATCH", path, "application/merge-patch+json", body,
				   &status, &resp, NULL);
		if (!err && status / 100 == 2) {
			atomic_fetch_add(&ks->patches_ok, 1);
			log_info("kube: pod %s/%s: annotation %s %s", p->ns, p->name,
				 KUBE_ANNOT_REDIRECTION, p->enable ? "set" : "removed");
			free(p);
		} else if (status == 404 || ++p->tries >= PATCH_RETRIES) {
			atomic_fetch_add(&ks->patches_failed, 1);
			log_warn("kube: pod %s/%s: annotation patch failed: %s", p->ns, p->name,
				 err ? strerror(-err) : resp);
			/* Forget it was asked for: the next sync asks again. */
			pthread_mutex_lock(&ks->mu);
			snprintf(path, sizeof(path), "%s/%s", p->ns, p->name);
			json_object_object_del(ks->patched, path);
			pthread_mutex_unlock(&ks->mu);
			free(p);
		} else {
			sleep_ms(ks, BACKOFF_MIN_MS << p->tries);
			pthread_mutex_lock(&ks->pmu);
			p->next = ks->queue;
			ks->queue = p;
			pthread_mutex_unlock(&ks->pmu);
		}
		free(resp);
		pthread_mutex_lock(&ks->pmu);
	}
	pthread_mutex_unlock(&ks->pmu);
	return NULL;
}

static void queue_patch(struct kube_source *ks, const char *ns, const char *name, bool enable)
{
	struct patch *p = calloc(1, sizeof(*p)), **tail;

	if (!p)
		return;
	snprintf(p->ns, sizeof(p->ns), "%s", ns);
	snprintf(p->name, sizeof(p->name), "%s", name);
	p->enable = enable;
	pthread_mutex_lock(&ks->pmu);
	for (tail = &ks->queue; *tail; tail = &(*tail)->next)
		;
	*tail = p;
	pthread_cond_signal(&ks->pcond);
	pthread_mutex_unlock(&ks->pmu);
}

void kube_source_sync_annotations(struct kube_source *ks)
{
	pthread_mutex_lock(&ks->mu);
	json_object_object_foreach(ks->objs[KUBE_PODS], key, pod) {
		const char *ns = jstr_path(pod, "metadata", "namespace", NULL);
		const char *name = jstr_path(pod, "metadata", "name", NULL);
		const char *ip = pod_ip(pod, ks->hints, key);
		const char *have = annotation(pod, KUBE_ANNOT_REDIRECTION);
		struct json_object *asked = jget(ks->patched, key);
		uint32_t addr;
		bool want;

		if (!ns || !name || !streq(jstr_path(pod, "spec", "nodeName", NULL), ks->o.node))
			continue;
		want = kube_pod_captured(pod, jget(ks->objs[KUBE_NAMESPACES], ns), NULL) &&
		       ipv4(ip, &addr) && ks->hooks.enrolled(addr, ks->hooks.arg);
		if (want == streq(have, "enabled")) {
			json_object_object_del(ks->patched, key); /* done */
			continue;
		}
		if (asked && json_object_get_boolean(asked) == want)
			continue; /* already on its way */
		json_object_object_add(ks->patched, key, json_object_new_boolean(want));
		queue_patch(ks, ns, name, want);
	}
	pthread_mutex_unlock(&ks->mu);
}

/* ---- the CNI socket ----------------------------------------------------------- */

static void cni_reply(int fd, bool ok, bool captured, const char *error)
{
	struct json_object *r = json_object_new_object();
	const char *s;

	json_object_object_add(r, "ok", json_object_new_boolean(ok));
	if (ok)
		json_object_object_add(r, "captured", json_object_new_boolean(captured));
	else
		json_object_object_add(r, "error", json_object_new_string(error));
	s = json_object_to_json_string_ext(r, JSON_FLAGS);
	if (write(fd, s, strlen(s)) < 0 || write(fd, "\n", 1) < 0)
		log_debug("kube: CNI reply: %s", strerror(errno));
	json_object_put(r);
}

/*
 * One plugin request (bounded: 1 s timeouts, CNI_MAX_MESSAGE bytes). ADD
 * records the pod's address for a pod the API server does not have an IP
 * for yet and rebuilds at once, so the pod is enrolled before the runtime
 * starts its containers; the answer says whether it was.
 */
static void on_cni(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct kube_source *ks = io->arg;
	struct timeval tv = { .tv_sec = 1 };
	char *buf = malloc(CNI_MAX_MESSAGE + 1), *nl;
	struct kube_cni_req req;
	const char *cmd, *ns, *ip;
	size_t got = 0;
	char key[512];
	uint32_t addr = 0;
	bool captured = false;
	int fd;

	fd = accept4(io->fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0 || !buf)
		goto out;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	while (got < CNI_MAX_MESSAGE) {
		ssize_t n = read(fd, buf + got, CNI_MAX_MESSAGE - got);

		if (n <= 0)
			break;
		got += (size_t)n;
		if (memchr(buf, '\n', got))
			break;
	}
	buf[got] = '\0';
	atomic_fetch_add(&ks->cni_requests, 1);
	nl = memchr(buf, '\n', got);
	if (kube_cni_parse(buf, nl ? (size_t)(nl - buf) : got, &req)) {
		cni_reply(fd, false, false, "expected command, podNamespace, podName");
		goto out;
	}
	cmd = req.command;
	ns = req.ns;
	ip = req.ip[0] ? req.ip : NULL;
	snprintf(key, sizeof(key), "%s/%s", req.ns, req.name);
	log_info("kube: CNI %s %s (%s)", cmd, key, ip ? ip : "no address");
	if (strcmp(cmd, "DEL") == 0) {
		pthread_mutex_lock(&ks->mu);
		json_object_object_del(ks->hints, key);
		pthread_mutex_unlock(&ks->mu);
		cni_reply(fd, true, false, NULL);
		goto out;
	}
	if (strcmp(cmd, "ADD") == 0 && ipv4(ip, &addr)) {
		pthread_mutex_lock(&ks->mu);
		json_object_object_add(ks->hints, key, json_object_new_string(ip));
		pthread_mutex_unlock(&ks->mu);
		if (kube_source_synced(ks))
			ks->hooks.changed(ks->hooks.arg);
	}
	if (ipv4(ip, &addr))
		captured = ks->hooks.enrolled(addr, ks->hooks.arg);
	if (strcmp(cmd, "CHECK") == 0) {
		struct json_object *pod, *nso;
		bool want;

		pthread_mutex_lock(&ks->mu);
		pod = jget(ks->objs[KUBE_PODS], key);
		nso = jget(ks->objs[KUBE_NAMESPACES], ns);
		want = pod && kube_pod_captured(pod, nso, NULL);
		pthread_mutex_unlock(&ks->mu);
		if (pod && want != captured) {
			cni_reply(fd, false, false, want ? "pod should be captured but is not" :
							   "pod is captured but should not be");
			goto out;
		}
	}
	cni_reply(fd, true, captured, NULL);
out:
	free(buf);
	if (fd >= 0)
		close(fd);
}

static int cni_listen(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char dir[sizeof(sa.sun_path)], *slash;
	int fd, err;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		if (mkdir(dir, 0755) < 0 && errno != EEXIST)
			return -errno;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	unlink(path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(path, 0600) < 0 ||
	    listen(fd, 64) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

/* ---- lifecycle ------------------------------------------------------------------ */

static void on_debounce(struct loop *l, struct loop_timer *t)
{
	struct kube_source *ks = t->arg;

	if (kube_source_synced(ks))
		ks->hooks.changed(ks->hooks.arg);
}

static void on_efd(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct kube_source *ks = io->arg;
	uint64_t v;

	if (read(io->fd, &v, sizeof(v)) < 0)
		return;
	/* Bursts of events (a list, a rollout) become one rebuild. */
	if (!loop_timer_armed(&ks->debounce))
		loop_timer_arm(l, &ks->debounce, 50);
}

bool kube_source_synced(struct kube_source *ks)
{
	bool all = true;

	pthread_mutex_lock(&ks->mu);
	for (int k = 0; k < KUBE_KINDS; k++)
		all = all && ks->listed[k];
	pthread_mutex_unlock(&ks->mu);
	return all;
}

int kube_source_yaml(struct kube_source *ks, char **text, size_t *len)
{
	FILE *f = open_memstream(text, len);
	int err;

	if (!f)
		return -ENOMEM;
	pthread_mutex_lock(&ks->mu);
	err = kube_build_yaml(ks->objs[KUBE_PODS], ks->objs[KUBE_NAMESPACES], ks->objs[KUBE_SERVICES],
			      ks->objs[KUBE_SLICES], ks->hints, &ks->o, f);
	pthread_mutex_unlock(&ks->mu);
	if (fclose(f) && !err)
		err = -EIO;
	if (err) {
		free(*text);
		*text = NULL;
	}
	return err;
}

int kube_source_append_yaml(struct kube_source *ks, char **buf, size_t *len)
{
	char *model = NULL, *nb;
	size_t mlen = 0;
	int rc = kube_source_yaml(ks, &model, &mlen);

	if (rc)
		return rc;
	nb = realloc(*buf, *len + mlen + 2);
	if (!nb) {
		free(model);
		return -ENOMEM;
	}
	nb[(*len)++] = '\n';
	memcpy(nb + *len, model, mlen);
	*len += mlen;
	nb[*len] = '\0';
	*buf = nb;
	free(model);
	return 0;
}

void kube_source_status(struct kube_source *ks, FILE *out)
{
	fprintf(out, "{\"server\":\"%s:%u\",\"synced\":%s,\"kinds\":{", ks->o.conf.host,
		ks->o.conf.port, kube_source_synced(ks) ? "true" : "false");
	for (int k = 0; k < KUBE_KINDS; k++) {
		struct watcher *w = &ks->w[k];

		pthread_mutex_lock(&ks->mu);
		fprintf(out, "%s\"%s\":{\"objects\":%d,\"lists\":%u,\"watches\":%u,"
			"\"events\":%u,\"bookmarks\":%u,\"gone\":%u,\"errors\":%u,"
			"\"token_reads\":%u}",
			k ? "," : "", kinds[k].name, json_object_object_length(ks->objs[k]),
			atomic_load(&w->lists), atomic_load(&w->watches), atomic_load(&w->events),
			atomic_load(&w->bookmarks), atomic_load(&w->gone), atomic_load(&w->errors),
			kube_client_token_reads(w->kc));
		pthread_mutex_unlock(&ks->mu);
	}
	fprintf(out, "},\"patches\":{\"ok\":%u,\"failed\":%u},\"cni_requests\":%u}\n",
		atomic_load(&ks->patches_ok), atomic_load(&ks->patches_failed),
		atomic_load(&ks->cni_requests));
}

struct kube_source *kube_source_start(const struct kube_opts *o, struct loop *loop,
				      const struct kube_hooks *hooks, char *err,
				      size_t errlen)
{
	struct kube_source *ks = calloc(1, sizeof(*ks));
	int k;

	if (!ks) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	ks->o = *o;
	ks->hooks = *hooks;
	ks->loop = loop;
	ks->efd = -1;
	ks->cni_fd = -1;
	pthread_mutex_init(&ks->mu, NULL);
	pthread_mutex_init(&ks->pmu, NULL);
	pthread_cond_init(&ks->pcond, NULL);
	for (k = 0; k < KUBE_KINDS; k++)
		ks->objs[k] = json_object_new_object();
	ks->hints = json_object_new_object();
	ks->patched = json_object_new_object();
	for (k = 0; k < KUBE_KINDS; k++) {
		ks->w[k].ks = ks;
		ks->w[k].kind = (enum kube_kind)k;
		/* One client per thread: a client is not shared. */
		ks->w[k].kc = kube_client_new(&o->conf, err, errlen);
		if (!ks->w[k].kc)
			goto fail;
	}
	ks->pkc = kube_client_new(&o->conf, err, errlen);
	if (!ks->pkc)
		goto fail;
	ks->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (ks->efd < 0) {
		snprintf(err, errlen, "eventfd: %s", strerror(errno));
		goto fail;
	}
	loop_io_init(&ks->efd_io, ks->efd, on_efd, ks);
	loop_io_update(loop, &ks->efd_io, EPOLLIN);
	loop_timer_init(&ks->debounce, on_debounce, ks);
	if (o->cni_socket) {
		ks->cni_fd = cni_listen(o->cni_socket);
		if (ks->cni_fd < 0) {
			snprintf(err, errlen, "CNI socket %s: %s", o->cni_socket,
				 strerror(-ks->cni_fd));
			goto fail;
		}
		snprintf(ks->cni_path, sizeof(ks->cni_path), "%s", o->cni_socket);
		loop_io_init(&ks->cni_io, ks->cni_fd, on_cni, ks);
		loop_io_update(loop, &ks->cni_io, EPOLLIN);
	}
	for (k = 0; k < KUBE_KINDS; k++) {
		if (pthread_create(&ks->w[k].thread, NULL, watch_thread, &ks->w[k])) {
			snprintf(err, errlen, "cannot start a watcher thread");
			goto fail;
		}
		ks->w[k].started = true;
	}
	if (pthread_create(&ks->pthread, NULL, patch_thread, ks)) {
		snprintf(err, errlen, "cannot start the patch thread");
		goto fail;
	}
	ks->pstarted = true;
	log_info("kube: watching %s:%u as node %s (token %s, CA %s)", o->conf.host,
		 o->conf.port, o->node, o->conf.token_path, o->conf.ca_path);
	return ks;
fail:
	kube_source_stop(ks);
	return NULL;
}

void kube_source_stop(struct kube_source *ks)
{
	struct patch *p;

	if (!ks)
		return;
	atomic_store(&ks->stop, true);
	pthread_mutex_lock(&ks->pmu);
	pthread_cond_broadcast(&ks->pcond);
	pthread_mutex_unlock(&ks->pmu);
	for (int k = 0; k < KUBE_KINDS; k++) {
		if (ks->w[k].started)
			pthread_join(ks->w[k].thread, NULL);
		kube_client_free(ks->w[k].kc);
		json_object_put(ks->objs[k]);
	}
	if (ks->pstarted)
		pthread_join(ks->pthread, NULL);
	kube_client_free(ks->pkc);
	while ((p = ks->queue)) {
		ks->queue = p->next;
		free(p);
	}
	if (ks->efd >= 0) {
		loop_io_stop(ks->loop, &ks->efd_io);
		close(ks->efd);
	}
	if (loop_timer_armed(&ks->debounce))
		loop_timer_disarm(ks->loop, &ks->debounce);
	if (ks->cni_fd >= 0) {
		loop_io_stop(ks->loop, &ks->cni_io);
		close(ks->cni_fd);
		unlink(ks->cni_path);
	}
	json_object_put(ks->hints);
	json_object_put(ks->patched);
	pthread_mutex_destroy(&ks->mu);
	pthread_mutex_destroy(&ks->pmu);
	pthread_cond_destroy(&ks->pcond);
	free(ks);
}
