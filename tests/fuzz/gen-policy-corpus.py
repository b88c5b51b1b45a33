#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Writes the seed corpus of fuzz_policy_diff (tests/fuzz/corpus/policy_diff/).

The target reads its input as a small byte code for a snapshot (see
build() in fuzz_policy_diff.c); this encoder writes the same byte code
from readable policies, so the seeds are the interesting shapes: a range
with a hole, ALLOW by port, identity-only rules, WorkloadSelector,
dryRun, STRICT peer authentication, nested and overlapping CIDRs.

  python3 tests/fuzz/gen-policy-corpus.py tests/fuzz/corpus/policy_diff
"""
import os
import sys

NS = ["shop", "bank", "istio-system"]
SCOPE = {"Global": 0, "Namespace": 1, "WorkloadSelector": 2}
STRINGS = ["", "shop", "bank", "cluster.local/ns/shop/sa/web", "cluster.local/ns/",
           "spiffe://cluster.local/ns/shop/sa/web", "web", "*"]
KIND = {"Exact": 0, "Prefix": 1, "Suffix": 2, "Presence": 3}
BASES = ["0.0.0.0", "198.18.0.0", "198.18.9.0", "198.18.9.20", "198.18.9.21",
         "198.19.66.0", "198.19.66.128", "255.255.255.255"]
PORTS = [80, 443, 8080, 9000, 22, 65535, 1]
FIELDS = ["namespaces", "notNamespaces", "serviceAccounts", "notServiceAccounts",
          "principals", "notPrincipals", "sourceIps", "notSourceIps", "destinationIps",
          "notDestinationIps", "destinationPorts", "notDestinationPorts"]
PA_MODE = {"UNSET": 0, "PERMISSIVE": 1, "STRICT": 2, "DISABLE": 3}


def byte(pred):
    """The first byte value the target's reader decodes as wanted."""
    return next(b for b in range(256) if pred(b))


def addr(a):
    for i, b in enumerate(BASES):
        if a == b:
            return [i]
    o = [int(x) for x in a.split(".")]
    return [0xe0, o[0], o[1], o[2], o[3]]


def cidr(c):
    a, _, plen = c.partition("/")
    return [int(plen or 32)] + addr(a)


def port(p):
    if p in PORTS:
        return [PORTS.index(p)]
    assert p & 1, "ports not in the table must be odd (the reader sets bit 0)"
    return [0xf0, p >> 8, p & 0xff]


def strm(m):
    (k, v), = m.items()
    return [KIND[k]] if k == "Presence" else [KIND[k], STRINGS.index(v)]


def match(m):
    f = 0
    body = []
    for i, name in enumerate(FIELDS):
        if name not in m:
            continue
        f |= 1 << i
        items = m[name]
        assert 1 <= len(items) <= 3
        body.append(len(items) - 1)
        for it in items:
            if name in ("namespaces", "notNamespaces", "principals", "notPrincipals"):
                body += strm(it)
            elif name in ("serviceAccounts", "notServiceAccounts"):
                body += [STRINGS.index(it[0]), STRINGS.index(it[1])]
            elif name.endswith("Ips"):
                body += cidr(it)
            else:
                body += port(it)
    return [f >> 8, f & 0xff] + body


def policy(ns, scope, action, rules, dry=False):
    b = byte(lambda b: b % 3 == NS.index(ns) and b // 3 % 3 == SCOPE[scope] and
             (b >> 4 & 1) == (action == "Deny") and ((b >> 5 & 3) == 3) == dry)
    out = [b, len(rules)]
    for clauses in rules:
        out.append(len(clauses))
        for matches in clauses:
            out.append(len(matches))
            for m in matches:
                out += match(m)
    return out


def snapshot(policies, peer_auths=(), workloads=(("shop", 1, ()),), extra=()):
    out = [len(policies)]
    for p in policies:
        out += policy(*p)
    out.append(len(peer_auths))
    for ns, mode, wl in peer_auths:
        out.append(byte(lambda b: b % 3 == NS.index(ns) and b // 3 % 4 == PA_MODE[mode] and
                        (b >> 6 & 1) == (wl is not None)))
        if wl is not None:
            out.append(wl)
    out.append(len(workloads) - 1)
    for ns, n_ips, refs in workloads:
        out += [byte(lambda b: b % 3 == NS.index(ns) and 1 + (b >> 2 & 1) == n_ips), len(refs)]
        for rns, idx in refs:
            out.append(byte(lambda k: k % 3 == NS.index(rns) and k // 3 % 7 == idx))
    for a in extra:
        out += addr(a)
    return bytes(out)


seeds = {
    "no-policies": snapshot([]),
    "deny-range-with-hole": snapshot([
        ("istio-system", "Global", "Deny",
         [[[{"sourceIps": ["198.19.66.0/24"], "notSourceIps": ["198.19.66.128/26"]}]]])],
        extra=["198.19.66.129", "198.19.66.200"]),
    "allow-clients-by-port": snapshot([
        ("shop", "Namespace", "Allow",
         [[[{"sourceIps": ["198.18.0.0/16", "198.18.9.0/25"], "destinationPorts": [8080, 443]}]]])]),
    "identity-only-allow": snapshot([
        ("shop", "Namespace", "Allow", [[[{"namespaces": [{"Exact": "shop"}]}]]]),
        ("shop", "Namespace", "Deny",
         [[[{"destinationPorts": [9000]}, {"notPrincipals": [{"Presence": None}], "destinationPorts": [9001]}]]])]),
    "workload-selector": snapshot(
        [("shop", "WorkloadSelector", "Allow",
          [[[{"notSourceIps": ["198.18.9.0/24"], "destinationIps": ["198.18.9.21/32"],
              "notDestinationPorts": [22]}],
            [{"notDestinationIps": ["198.18.9.20/32"]}]]])],
        workloads=[("shop", 2, [("shop", 0), ("bank", 3)]), ("bank", 1, [("shop", 0)])]),
    "dry-run-only": snapshot([("istio-system", "Global", "Deny", [[]], True)]),
    "strict-bank": snapshot(
        [("bank", "Namespace", "Allow", [[[{"sourceIps": ["0.0.0.0/0"]}]]])],
        peer_auths=[("istio-system", "PERMISSIVE", None), ("bank", "STRICT", None)],
        workloads=[("bank", 1, ()), ("shop", 1, ())]),
    "strict-mesh-workload-exception": snapshot(
        [], peer_auths=[("istio-system", "STRICT", None), ("shop", "PERMISSIVE", 0)],
        workloads=[("shop", 1, ()), ("shop", 2, ())]),
    "nested-overlapping": snapshot([
        ("shop", "Namespace", "Deny",
         [[[{"sourceIps": ["198.18.0.0/15", "198.18.9.0/24", "198.18.9.20/32"],
             "notSourceIps": ["198.18.9.0/28"]}]]]),
        ("shop", "Namespace", "Allow",
         [[[{"sourceIps": ["0.0.0.0/1", "198.19.66.128/25"]}], [{"notDestinationPorts": [80, 65535]}]]])]),
    "allow-all-deny-odd-ports": snapshot([
        ("shop", "Namespace", "Allow", [[]]),
        ("shop", "Namespace", "Deny",
         [[[{"notDestinationPorts": [80, 443], "sourceIps": ["198.18.0.0/16"]}]]])]),
    "empty-rules-and-matches": snapshot([
        ("shop", "Global", "Allow", []),
        ("shop", "Namespace", "Deny", [[[{}]]]),
        ("bank", "Global", "Allow", [[[{"principals": [{"Prefix": ""}]}]]])]),
    "host-addresses-and-edges": snapshot([
        ("istio-system", "Global", "Deny",
         [[[{"sourceIps": ["255.255.255.255/32", "0.0.0.0/32", "1.2.3.4/31"],
             "destinationPorts": [65535, 1, 12345]}]]])],
        extra=["1.2.3.5", "1.2.3.6", "255.255.255.254"]),
}

out = sys.argv[1] if len(sys.argv) > 1 else "tests/fuzz/corpus/policy_diff"
os.makedirs(out, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
print("%d seeds, %d bytes" % (len(seeds), sum(len(d) for d in seeds.values())))
