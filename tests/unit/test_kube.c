// SPDX-License-Identifier: Apache-2.0
/*
 * kube_pod_captured() as a truth table (Istio ambient's enrollment rules)
 * and kube_build_yaml() through config.c's parser: API objects become the
 * same snapshot a local file would.
 */
#include <arpa/inet.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "kubesrc.h"
#include "state.h"
#include "tap.h"

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

int main(void)
{
	test_captured();
	test_model();
	return tap_done();
}
