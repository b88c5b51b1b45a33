#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Writes the seed corpus of fuzz_kube (tests/fuzz/corpus/kube/).

A seed is NUL-separated sections (see fuzz_kube.c): "L<kind>" list pages,
"W<kind>" watch event lines, "C<kind>" CNI requests, shaped like what the
API server and the CNI plugin send (and like tests/k8s/fake_apiserver.py),
plus near-misses: wrong types, trailing bytes, bad UTF-8, odd names.

  python3 tests/fuzz/gen-kube-corpus.py tests/fuzz/corpus/kube
"""
import json
import os
import sys

PODS, NSS, SVCS, SLICES = "0", "1", "2", "3"


def ns(name, mode=None):
    md = {"name": name, "resourceVersion": "5"}
    if mode:
        md["labels"] = {"istio.io/dataplane-mode": mode}
    return {"kind": "Namespace", "apiVersion": "v1", "metadata": md}


def pod(ns_, name, ip, node="n1", sa="default", labels=None, ann=None, phase="Running",
        ready=True, host_network=False, managed=False):
    md = {"namespace": ns_, "name": name, "uid": "uid-" + name, "resourceVersion": "7",
          "labels": labels or {"app": name}}
    if ann:
        md["annotations"] = ann
    if managed:
        md["managedFields"] = [{"manager": "kubectl", "operation": "Update",
                                "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}}}]
    status = {"phase": phase}
    if ip:
        status.update(podIP=ip, podIPs=[{"ip": ip}])
    status["conditions"] = [{"type": "Ready", "status": "True" if ready else "False"}]
    spec = {"nodeName": node, "serviceAccountName": sa}
    if host_network:
        spec["hostNetwork"] = True
    return {"kind": "Pod", "apiVersion": "v1", "metadata": md, "spec": spec, "status": status}


def svc(ns_, name, vip, ports):
    return {"kind": "Service", "apiVersion": "v1",
            "metadata": {"namespace": ns_, "name": name, "resourceVersion": "9"},
            "spec": {"clusterIP": vip, "ports": ports}}


def eps(ns_, name, svcname, ports, targets):
    return {"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
            "metadata": {"namespace": ns_, "name": name,
                         "labels": {"kubernetes.io/service-name": svcname}},
            "ports": ports,
            "endpoints": [{"addresses": [a], "targetRef": {"kind": "Pod", "name": t}}
                          for t, a in targets]}


def lst(items, rv="10", cont=None):
    md = {"resourceVersion": rv}
    if cont:
        md["continue"] = cont
    return json.dumps({"kind": "List", "apiVersion": "v1", "metadata": md, "items": items})


def ev(typ, obj):
    return json.dumps({"type": typ, "object": obj})


def cni(cmd, ns_, name, ips):
    return json.dumps({"command": cmd, "containerId": "c1", "netns": "/var/run/netns/x",
                       "ifname": "eth0", "podNamespace": ns_, "podName": name, "ips": ips})


def sec(op, kind, payload):
    if isinstance(payload, str):
        payload = payload.encode()
    return op.encode() + kind.encode() + payload


seeds = {}


def seed(name, *sections):
    seeds[name] = b"\0".join(sections)


WEB = [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
       {"name": "dns", "port": 53, "targetPort": 53, "protocol": "UDP"}]
A = pod("demo", "a", "198.18.1.20", sa="alpha", managed=True)
B = pod("demo", "b", "198.18.1.21", labels={"istio.io/dataplane-mode": "none"})
P = pod("plain", "p", "198.18.1.22")
full = [sec("L", NSS, lst([ns("demo", "ambient"), ns("plain")])),
        sec("L", PODS, lst([A, B, P, pod("kube-system", "dns", "198.18.1.23")])),
        sec("L", SVCS, lst([svc("demo", "web", "198.18.100.10", WEB),
                            svc("demo", "headless", "None", WEB)])),
        sec("L", SLICES, lst([eps("demo", "web-abc", "web", [{"name": "http", "port": 8080}],
                                  [("a", "198.18.1.20"), ("b", "198.18.1.21")])]))]
seed("full-sync", *full)
seed("full-sync-then-events", *full,
     sec("W", PODS, ev("ADDED", pod("demo", "c", "198.18.1.24"))),
     sec("W", PODS, ev("MODIFIED", pod("demo", "a", "198.18.1.20", phase="Succeeded"))),
     sec("W", PODS, ev("DELETED", B)),
     sec("W", SVCS, ev("DELETED", svc("demo", "web", "198.18.100.10", WEB))),
     sec("W", NSS, ev("MODIFIED", ns("plain", "ambient"))),
     sec("W", PODS, ev("BOOKMARK", {"kind": "Pod", "metadata": {"resourceVersion": "99"}})),
     sec("W", PODS, ev("ERROR", {"kind": "Status", "code": 410, "message": "too old"})))
seed("cni-hints", sec("L", NSS, lst([ns("demo", "ambient")])),
     sec("L", PODS, lst([pod("demo", "new", None)])),
     sec("C", PODS, cni("ADD", "demo", "new", ["198.18.2.30"])),
     sec("C", PODS, cni("CHECK", "demo", "new", ["198.18.2.30"])),
     sec("C", PODS, cni("DEL", "demo", "gone", [])),
     sec("C", PODS, '{"command":"ADD"}'),
     sec("C", PODS, cni("ADD", "demo", "x", [123, "198.18.2.31"])))
seed("list-paged", sec("L", PODS, lst([A], cont="eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6MTAsInN0YXJ0IjoiYSJ9")),
     sec("L", PODS, lst([B], rv="x" * 100)))
seed("pods-odd", sec("L", NSS, lst([ns("demo", "ambient")])),
     sec("L", PODS, lst([pod("demo", "dup", "198.18.1.20"), pod("demo", "dup2", "198.18.1.20"),
                         pod("demo", "h", "198.19.0.1", host_network=True),
                         pod("demo", "side", "198.18.1.30", ann={"sidecar.istio.io/status": "{}"}),
                         pod("demo", "self", "198.18.1.31", labels={"app.kubernetes.io/name": "ambientd"}),
                         pod("demo", "v6", "2001:2::1"), pod("demo", "noip", ""),
                         pod("demo", "notready", "198.18.1.32", ready=False, sa=""),
                         pod("demo", "failed", "198.18.1.33", phase="Failed")])))
seed("services-odd", sec("L", SVCS, lst([
    svc("demo", "ports", "198.18.100.11",
        [{"port": 0}, {"port": 65536}, {"port": 80, "targetPort": 0}, {"port": 81, "targetPort": 70000},
         {"port": 82, "targetPort": "named"}, {"port": "83"}, {"port": 84, "protocol": "SCTP"}]),
    svc("demo", "dupvip", "198.18.100.11", WEB), svc("demo", "v6", "2001:2::10", WEB),
    svc("demo", "noports", "198.18.100.12", None)])),
    sec("L", SLICES, lst([eps("demo", "s1", "ports", [{"name": None, "port": 9}], [("a", "x")]),
                          {"metadata": {"namespace": "demo"}}])))
seed("wrong-types", sec("L", PODS, json.dumps({"items": [1, None, "x", [], {"metadata": 5},
                                                          {"metadata": {"name": 7, "namespace": []}}]})),
     sec("L", PODS, json.dumps({"items": {}})), sec("L", PODS, json.dumps([])),
     sec("W", PODS, json.dumps({"type": 5, "object": {}})),
     sec("W", PODS, json.dumps({"type": "ADDED", "object": []})),
     sec("W", PODS, json.dumps({"type": "WHATEVER", "object": {}})),
     sec("W", PODS, json.dumps({"type": "ERROR", "object": {"code": "410"}})))
seed("syntax-near-misses", sec("L", PODS, lst([A]) + " trailing"), sec("L", PODS, lst([A]) + "\n\t "),
     sec("W", PODS, ev("ADDED", A) + "{}"), sec("W", PODS, ev("ADDED", A)[:-5]),
     sec("W", PODS, "/* comment */" + ev("ADDED", A)), sec("W", PODS, "{'type': 'ADDED'}"),
     sec("W", PODS, '{"type":"ADDED","object":{"metadata":{"name":"NaN","namespace":Infinity}}}'),
     sec("W", PODS, "[" * 40 + "]" * 40), sec("W", PODS, '{"a":' * 40 + "1" + "}" * 40))
seed("strings-odd", sec("L", NSS, lst([ns("d\u00e9mo", "ambient"), ns("q\"uote", "ambient")])),
     sec("L", PODS, lst([pod("d\u00e9mo", "\u2028line", "198.18.1.40", sa="s\\a"),
                         pod("q\"uote", "a: b\n- c", "198.18.1.41", sa="\u0085"),
                         pod("demo", "ctl\u0001\u007f\u0080\u009f", "198.18.1.42"),
                         pod("demo", "nul\u0000x", "198.18.1.43"),
                         pod("demo", "\ud83d\ude00", "198.18.1.44"),
                         pod("a/b", "c", "198.18.1.45"), pod("a", "b/c", "198.18.1.46")])))
seeds["bad-utf8"] = (sec("L", NSS, lst([ns("demo", "ambient")])) + b"\0" +
                     sec("L", PODS, b'{"items":[{"metadata":{"namespace":"demo","name":"\xff\xfe"},'
                                    b'"status":{"podIP":"198.18.1.50"}}]}') + b"\0" +
                     sec("W", PODS, b'{"type":"ADDED","object":{"metadata":{"namespace":"demo",'
                                    b'"name":"\\ud800"},"status":{"podIP":"198.18.1.51"}}}'))

out = sys.argv[1] if len(sys.argv) > 1 else "tests/fuzz/corpus/kube"
os.makedirs(out, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
print("%d seeds, %d bytes" % (len(seeds), sum(len(d) for d in seeds.values())))
