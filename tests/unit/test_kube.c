// SPDX-License-Identifier: Apache-2.0
/*
 * kube_pod_captured() as a truth table (Istio ambient's enrollment rules)
 * and kube_build_yaml() through config.c's parser: API objects become the
 * same snapshot a local file would.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "kubesrc.h"
#include "state.h"
#include "tap.h"

/* A string literal and its length (the parsers take bytes, not C strings). */
#define LIT(s) (s), sizeof(s) - 1

static struct json_object *J(const char *s)
{
	struct json_object *o = json_tokener_parse(s);

	if (!o) {
		fprintf(stderr, "bad JSON in test: %s\n", s);
		exit(1);
	}
	return o;
}

static const struct {
	const char *what, *pod, *ns;
	bool want;
} table[] = {
	{ "namespace ambient", "{\"metadata\":{\"namespace\":\"demo\"}}",
	  "{\"metadata\":{\"labels\":{\"istio.io/dataplane-mode\":\"ambient\"}}}", true },
	{ "namespace unlabeled", "{\"metadata\":{\"namespace\":\"demo\"}}", "{\"metadata\":{}}", false },
	{ "namespace unknown", "{\"metadata\":{\"namespace\":\"demo\"}}", NULL, false },
	{ "pod ambient, namespace not", "{\"metadata\":{\"namespace\":\"demo\",\"labels\":{\"istio.io/dataplane-mode\":\"ambient\"}}}",
	  "{\"metadata\":{}}", true },
	{ "pod none in ambient namespace", "{\"metadata\":{\"namespace\":\"demo\",\"labels\":{\"istio.io/dataplane-mode\":\"none\"}}}",
	  "{\"metadata\":{\"labels\":{\"istio.io/dataplane-mode\":\"ambient\"}}}", false },
	{ "kube-system even if labeled", "{\"metadata\":{\"namespace\":\"kube-system\",\"labels\":{\"istio.io/dataplane-mode\":\"ambient\"}}}",
	  "{\"metadata\":{\"labels\":{\"istio.io/dataplane-mode\":\"ambient\"}}}", false },
	{ "hostNetwork", "{\"metadata\":{\"namespace\":\"demo\"},\"spec\":{\"hostNetwork\":true}}",
	  "{\"metadata\":{\"labels\":{\"istio.io/dataplane-mode\":\"ambient\"}}}", false },
	{ "sidecar", "{\"metadata\":{\"namespace\":\"demo\",\"annotations\":{\"sidecar.istio.io/status\":\"{}\"}}}",
	  "{\"metadata\":{\"labels\":{\"istio.io/dataplane-mode\":\"ambient\"}}}", false },
	{ "ambientd itself", "{\"metadata\":{\"namespace\":\"demo\",\"labels\":{\"app.kubernetes.io/name\":\"ambientd\",\"istio.io/dataplane-mode\":\"ambient\"}}}",
	  NULL, false },
	{ "terminated", "{\"metadata\":{\"namespace\":\"demo\"},\"status\":{\"phase\":\"Succeeded\"}}",
	  "{\"metadata\":{\"labels\":{\"istio.io/dataplane-mode\":\"ambient\"}}}", false },
	{ "other label value", "{\"metadata\":{\"namespace\":\"demo\",\"labels\":{\"istio.io/dataplane-mode\":\"sidecar\"}}}",
	  "{\"metadata\":{\"labels\":{\"istio.io/dataplane-mode\":\"ambient\"}}}", true },
};

static void test_captured(void)
{
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		struct json_object *pod = J(table[i].pod), *ns = table[i].ns ? J(table[i].ns) : NULL;
		const char *why = NULL;
		bool got = kube_pod_captured(pod, ns, &why);

		ok(got == table[i].want && why,
		   "captured(%s) == %d (%s)", table[i].what, table[i].want, why ? why : "?");
		json_object_put(pod);
		json_object_put(ns);
	}
}

static void test_model(void)
{
	struct kube_opts o = { .node = "n1", .trust_domain = "td.example", .cluster_domain = "cluster.local" };
	struct json_object *pods = J("{"
		"\"demo/a\":{\"metadata\":{\"namespace\":\"demo\",\"name\":\"a\"},\"spec\":{\"nodeName\":\"n1\",\"serviceAccountName\":\"alpha\"},"
		"  \"status\":{\"phase\":\"Running\",\"podIP\":\"198.18.1.20\",\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\"}]}},"
		"\"plain/p\":{\"metadata\":{\"namespace\":\"plain\",\"name\":\"p\"},\"spec\":{\"nodeName\":\"n1\"},\"status\":{\"podIP\":\"198.18.1.21\"}},"
		"\"demo/dup\":{\"metadata\":{\"namespace\":\"demo\",\"name\":\"dup\"},\"spec\":{\"nodeName\":\"n1\"},\"status\":{\"podIP\":\"198.18.1.20\"}},"
		"\"demo/h\":{\"metadata\":{\"namespace\":\"demo\",\"name\":\"h\"},\"spec\":{\"nodeName\":\"n1\",\"hostNetwork\":true},\"status\":{\"podIP\":\"198.19.0.1\"}},"
		"\"demo/new\":{\"metadata\":{\"namespace\":\"demo\",\"name\":\"new\"},\"spec\":{\"nodeName\":\"n2\"},\"status\":{\"phase\":\"Pending\"}}}");
	struct json_object *nss = J("{\"demo\":{\"metadata\":{\"name\":\"demo\",\"labels\":{\"istio.io/dataplane-mode\":\"ambient\"}}},"
				    "\"plain\":{\"metadata\":{\"name\":\"plain\"}}}");
	struct json_object *svcs = J("{\"demo/web\":{\"metadata\":{\"namespace\":\"demo\",\"name\":\"web\"},"
		"\"spec\":{\"clusterIP\":\"198.18.100.10\",\"ports\":[{\"name\":\"http\",\"port\":80,\"targetPort\":\"http\",\"protocol\":\"TCP\"},"
		"{\"name\":\"dns\",\"port\":53,\"targetPort\":53,\"protocol\":\"UDP\"}]}},"
		"\"demo/headless\":{\"metadata\":{\"namespace\":\"demo\",\"name\":\"headless\"},\"spec\":{\"clusterIP\":\"None\"}}}");
	struct json_object *slices = J("{\"demo/web-abc\":{\"metadata\":{\"namespace\":\"demo\",\"name\":\"web-abc\","
		"\"labels\":{\"kubernetes.io/service-name\":\"web\"}},\"ports\":[{\"name\":\"http\",\"port\":8080}],"
		"\"endpoints\":[{\"addresses\":[\"198.18.1.20\"],\"targetRef\":{\"kind\":\"Pod\",\"name\":\"a\"}}]}}");
	struct json_object *hints = J("{\"demo/new\":\"198.18.2.30\"}");
	const struct workload *a, *p, *n;
	const struct service *web;
	struct state *st = NULL;
	char *text = NULL, err[512] = "";
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	int rc;

	ok(kube_build_yaml(pods, nss, svcs, slices, hints, &o, f) == 0, "model built");
	fclose(f);
	rc = config_load_buffer("kube", text, len, &st, err, sizeof(err));
	ok(rc == 0, "config.c accepts the model (%s)", err);
	if (rc) {
		fprintf(stderr, "%s\n", text);
		goto out;
	}
	a = state_workload_by_ip(st, inet_addr("198.18.1.20"));
	p = state_workload_by_ip(st, inet_addr("198.18.1.21"));
	n = state_workload_by_ip(st, inet_addr("198.18.2.30"));
	ok(a && strcmp(a->namespace, "demo") == 0 && strcmp(a->name, "a") == 0,
	   "demo/a owns its IP (the duplicate-IP pod is skipped)");
	ok(a && a->protocol == WL_PROTO_HBONE && a->node && strcmp(a->node, "n1") == 0 &&
	   strcmp(a->service_account, "alpha") == 0 && strcmp(a->trust_domain, "td.example") == 0 &&
	   a->status == WL_STATUS_HEALTHY, "captured pod: HBONE, node, service account, trust domain");
	ok(p && p->protocol == WL_PROTO_TCP && !p->node &&
	   strcmp(p->service_account, "default") == 0 && p->status == WL_STATUS_UNHEALTHY,
	   "uncaptured pod: TCP, no node (never enrolled), default account");
	ok(n && n->protocol == WL_PROTO_HBONE, "pod with only a CNI address hint is a workload");
	ok(!state_workload_by_ip(st, inet_addr("198.19.0.1")), "hostNetwork pod is no workload");
	web = state_service_by_vip(st, inet_addr("198.18.100.10"));
	ok(web && strcmp(web->hostname, "web.demo.svc.cluster.local") == 0 && web->n_ports == 1 &&
	   web->ports[0].service_port == 80, "service: ClusterIP VIP, TCP ports only");
	ok(web && web->n_endpoints == 1 && web->endpoints[0].workload == a &&
	   web->endpoints[0].n_ports == 1 && web->endpoints[0].ports[0].target_port == 8080,
	   "EndpointSlice: endpoint demo/a with 80 -> 8080 (named port resolved)");
	ok(st->n_services == 1, "headless service left out");
out:
	state_unref(st);
	free(text);
	json_object_put(pods);
	json_object_put(nss);
	json_object_put(svcs);
	json_object_put(slices);
	json_object_put(hints);
}

/* API bytes into the cache: what the watcher threads do with a response. */
static void test_list_and_watch(void)
{
	static const char page[] =
		"{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":\"42\",\"continue\":\"tok\"},"
		"\"items\":[{\"metadata\":{\"namespace\":\"demo\",\"name\":\"a\","
		"\"managedFields\":[{\"manager\":\"x\"}]}},7,null,"
		"{\"metadata\":{\"name\":\"cluster-scoped\"}}]}\n";
	struct json_object *objs = json_object_new_object(), *hints = J("{\"demo/a\":\"198.18.1.9\"}");
	struct json_object *a;
	struct kube_event ev;
	char rv[64], cont[64];
	int rc;

	rc = kube_list_page(KUBE_PODS, page, sizeof(page) - 1, objs, rv, sizeof(rv), cont, sizeof(cont));
	ok(rc == 0 && strcmp(rv, "42") == 0 && strcmp(cont, "tok") == 0,
	   "list page: resourceVersion and continue token");
	a = json_object_object_get(objs, "demo/a");
	ok(a && json_object_object_length(objs) == 2 && json_object_object_get(objs, "cluster-scoped") &&
	   !json_object_object_get(json_object_object_get(a, "metadata"), "managedFields"),
	   "list page: objects keyed ns/name (or name), managedFields dropped, non-objects skipped");
	ok(kube_list_page(KUBE_PODS, page, 20, objs, rv, sizeof(rv), cont, sizeof(cont)) == -EINVAL &&
	   kube_list_page(KUBE_PODS, LIT("{\"items\":[]} x"), objs, rv, sizeof(rv), cont, sizeof(cont)) == -EINVAL &&
	   kube_list_page(KUBE_PODS, LIT("{\"items\":{}}"), objs, rv, sizeof(rv), cont, sizeof(cont)) == -EINVAL &&
	   kube_list_page(KUBE_PODS, LIT("{\"items\":[{\"metadata\":{\"name\":\"\xff\"}}]}"), objs, rv,
			  sizeof(rv), cont, sizeof(cont)) == -EINVAL,
	   "list page: cut, trailing bytes, items not a list and bad UTF-8 are refused");
	/* Found by fuzz_kube (corpus/kube/crash-metadata-not-an-object): json-c
	 * aborts on deleting a key from a non-object. */
	rc = kube_list_page(KUBE_PODS, LIT("{\"items\":[{\"metadata\":5}]}"), objs, rv, sizeof(rv), cont,
			    sizeof(cont));
	ok(rc == 0, "list page: an item whose metadata is not an object does not abort");

	rc = kube_event_parse(LIT("{\"type\":\"DELETED\",\"object\":{\"metadata\":{\"namespace\":\"demo\","
			      "\"name\":\"a\",\"resourceVersion\":\"43\"}}}"), &ev);
	ok(rc == 0 && ev.type == KUBE_EV_DELETED && ev.rv && strcmp(ev.rv, "43") == 0,
	   "watch: DELETED event with its resourceVersion");
	ok(rc == 0 && kube_event_apply(KUBE_PODS, &ev, objs, hints) == 0 &&
	   !json_object_object_get(objs, "demo/a") && !json_object_object_get(hints, "demo/a"),
	   "watch: DELETED drops the pod and its CNI hint");
	kube_event_free(&ev);
	rc = kube_event_parse(LIT("{\"type\":\"ERROR\",\"object\":{\"code\":410,\"message\":\"gone\"}}"), &ev);
	ok(rc == 0 && ev.type == KUBE_EV_ERROR && ev.code == 410 && ev.message &&
	   kube_event_apply(KUBE_PODS, &ev, objs, hints) == -EINVAL,
	   "watch: ERROR carries the Status code and applies nothing");
	kube_event_free(&ev);
	ok(kube_event_parse(LIT("{\"type\":\"ADDED\",\"object\":[]}"), &ev) == -EINVAL && !ev.root &&
	   kube_event_parse(LIT("{\"type\":\"NOPE\",\"object\":{}}"), &ev) == -EINVAL &&
	   kube_event_parse(LIT("{\"type\":\"ADDED\",\"object\":{}}{}"), &ev) == -EINVAL,
	   "watch: object not an object, unknown type, trailing bytes are not events");
	rc = kube_event_parse(LIT("{\"type\":\"ADDED\",\"object\":{\"metadata\":[]}}"), &ev);
	ok(rc == 0 && kube_event_apply(KUBE_PODS, &ev, objs, hints) == 0,
	   "watch: an object whose metadata is not an object does not abort");
	kube_event_free(&ev);
	json_object_put(objs);
	json_object_put(hints);
}

static void test_cni_request(void)
{
	static const char line[] = "{\"command\":\"ADD\",\"podNamespace\":\"demo\",\"podName\":\"a\","
				   "\"ips\":[\"198.18.1.9\",\"198.18.1.10\"]}";
	struct kube_cni_req r;

	ok(kube_cni_parse(line, sizeof(line) - 1, &r) == 0 && strcmp(r.command, "ADD") == 0 &&
	   strcmp(r.ns, "demo") == 0 && strcmp(r.name, "a") == 0 && strcmp(r.ip, "198.18.1.9") == 0,
	   "CNI request: command, pod and its first address");
	ok(kube_cni_parse(LIT("{\"command\":\"DEL\",\"podNamespace\":\"d\",\"podName\":\"a\",\"ips\":[5]}"),
			  &r) == 0 && r.ip[0] == '\0',
	   "CNI request: an address that is not a string is no address");
	ok(kube_cni_parse(LIT("{\"command\":\"ADD\",\"podNamespace\":\"d\"}"), &r) == -EINVAL &&
	   !r.command[0] &&
	   kube_cni_parse(LIT("{\"command\":\"ADD\",\"podNamespace\":\"d\",\"podName\":\"a\\u0000b\"}"), &r) ==
		   -EINVAL,
	   "CNI request: missing podName, or a NUL inside a name, is refused");
}

/* Found by fuzz_kube (corpus/kube/crash-yaml-control-characters): YAML
 * refuses DEL, C1 controls and U+FFFE/U+FFFF that JSON leaves raw (one pod
 * named so made the whole model unloadable) and folds NEL and U+2028 as
 * line breaks. */
static void test_model_odd_strings(void)
{
	struct kube_opts o = { .node = "n1", .trust_domain = "cluster.local", .cluster_domain = "cluster.local" };
	struct json_object *pods = J("{\"demo/x\":{\"metadata\":{\"namespace\":\"demo\","
				     "\"name\":\"del\\u007f c1\\u0080\\u009f nel\\u0085 ls\\u2028 nonchar\\uffff\"},"
				     "\"status\":{\"podIP\":\"198.18.1.9\"}}}");
	struct json_object *empty = J("{}");
	const struct workload *wl;
	struct state *st = NULL;
	char *text = NULL, err[512] = "";
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	int rc;

	kube_build_yaml(pods, empty, empty, empty, empty, &o, f);
	fclose(f);
	rc = config_load_buffer("kube", text, len, &st, err, sizeof(err));
	wl = st ? state_workload_by_ip(st, inet_addr("198.18.1.9")) : NULL;
	ok(rc == 0 && wl && wl->name &&
	   strcmp(wl->name, "del\x7f c1\xc2\x80\xc2\x9f nel\xc2\x85 ls\xe2\x80\xa8 nonchar\xef\xbf\xbf") == 0,
	   "model: names with characters YAML does not allow raw load, unchanged (%s)", err);
	state_unref(st);
	free(text);
	json_object_put(pods);
	json_object_put(empty);
}

int main(void)
{
	test_captured();
	test_model();
	test_list_and_watch();
	test_cni_request();
	test_model_odd_strings();
	return tap_done();
}
