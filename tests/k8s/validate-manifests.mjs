// SPDX-License-Identifier: Apache-2.0
// Validates Kubernetes manifests against the API schemas of the npm package
// kubernetes-models, then checks what the issue asks of ambientd's own
// objects. Usage: node validate-manifests.mjs MODULES_DIR FILE...
// Prints one line per check: "PASS what" or "FAIL what: why".
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [modDir, ...files] = process.argv.slice(2);
const req = createRequire(path.join(modDir, "node_modules", "x.js"));
const YAML = req("yaml");
let failed = 0;
const pass = (what) => console.log(`PASS ${what}`);
const fail = (what, why) => { failed++; console.log(`FAIL ${what}: ${why}`); };
const check = (what, cond, why) => (cond ? pass(what) : fail(what, why));

async function modelFor(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  const rel = group ? `${group}/${version}/${kind}.js` : `${version}/${kind}.js`;
  const file = path.join(modDir, "node_modules", "kubernetes-models", rel);
  return (await import(pathToFileURL(file).href))[kind];
}

const objects = []; // {file, obj, text}
for (const file of files) {
  const text = readFileSync(file, "utf8");
  const docs = YAML.parseAllDocuments(text);
  for (const d of docs) {
    if (d.errors.length) { fail(`${file}: YAML`, d.errors[0].message); continue; }
    const obj = d.toJS();
    if (obj === null || obj === undefined) continue;
    objects.push({ file, obj, text });
  }
}

for (const { file, obj } of objects) {
  const name = `${path.basename(file)}: ${obj.kind}/${obj.metadata?.name ?? obj.resources ?? "?"}`;
  if (obj.kind === "Kustomization") {
    const dir = path.dirname(file);
    const missing = (obj.resources || []).filter((r) => {
      try { readFileSync(path.join(dir, r)); return false; } catch { return true; }
    });
    check(`${name} resources exist`, missing.length === 0, `missing ${missing.join(", ")}`);
    continue;
  }
  let Model;
  try {
    Model = await modelFor(obj.apiVersion, obj.kind);
  } catch (e) {
    fail(`${name} schema`, `no schema for ${obj.apiVersion} ${obj.kind}`);
    continue;
  }
  try {
    new Model(obj).validate();
    pass(`${name} schema`);
  } catch (e) {
    fail(`${name} schema`, e.message);
  }
}

// ---- what the issue asks of the DaemonSet and RBAC ---------------------
const find = (kind, name) => objects.find((o) => o.obj.kind === kind && (!name || o.obj.metadata.name === name));
const ds = find("DaemonSet", "ambientd");
if (ds) {
  const s = ds.obj.spec, pod = s.template.spec;
  const c = pod.containers.find((x) => x.name === "ambientd");
  const env = Object.fromEntries((c.env || []).map((e) => [e.name, e]));
  const ann = s.template.metadata.annotations || {};
  check("DaemonSet hostNetwork", pod.hostNetwork === true, "hostNetwork not true");
  check("DaemonSet priority system-node-critical", pod.priorityClassName === "system-node-critical", pod.priorityClassName);
  check("DaemonSet tolerates every taint",
    (pod.tolerations || []).some((t) => t.operator === "Exists" && !t.key && !t.effect), "no {operator: Exists}");
  check("DaemonSet RollingUpdate 0/1",
    s.updateStrategy?.type === "RollingUpdate" && s.updateStrategy.rollingUpdate?.maxUnavailable === 0 &&
    s.updateStrategy.rollingUpdate?.maxSurge === 1, JSON.stringify(s.updateStrategy));
  check("DaemonSet readiness 15021 /healthz/ready",
    c.readinessProbe?.httpGet?.port === 15021 && c.readinessProbe.httpGet.path === "/healthz/ready",
    JSON.stringify(c.readinessProbe));
  check("DaemonSet Prometheus annotations on 15020",
    ann["prometheus.io/scrape"] === "true" && ann["prometheus.io/port"] === "15020", JSON.stringify(ann));
  check("DaemonSet downward API NODE_NAME, POD_IP",
    env.NODE_NAME?.valueFrom?.fieldRef?.fieldPath === "spec.nodeName" &&
    env.POD_IP?.valueFrom?.fieldRef?.fieldPath === "status.podIP", "env missing");
  const all = [...pod.containers, ...(pod.initContainers || [])];
  check("DaemonSet resources on every container",
    all.every((x) => x.resources?.requests?.cpu && x.resources?.requests?.memory && x.resources?.limits?.memory),
    "a container lacks requests/limits");
  const caps = c.securityContext?.capabilities || {};
  check("ambientd drops ALL, not privileged",
    (caps.drop || []).includes("ALL") && !c.securityContext.privileged, JSON.stringify(c.securityContext));
  for (const cap of caps.add || []) {
    // Each added capability has a comment saying why: "# CAP: ..." in the file.
    check(`capability ${cap} has a comment why`, new RegExp(`#\\s*${cap}:`).test(ds.text), "no '# " + cap + ": why' comment");
  }
  const mounts = Object.fromEntries(all.flatMap((x) => x.volumeMounts || []).map((m) => [m.name, m]));
  check("bpffs mounted Bidirectional somewhere (init)",
    all.some((x) => (x.volumeMounts || []).some((m) => m.name === "bpffs" && m.mountPropagation === "Bidirectional" && x.securityContext?.privileged)),
    "Bidirectional needs a privileged container");
  check("every volume is mounted", pod.volumes.every((v) => mounts[v.name]), "unused volume");
}
const role = find("ClusterRole", "ambientd");
if (role) {
  const granted = new Set();
  for (const r of role.obj.rules)
    for (const g of r.apiGroups) for (const res of r.resources) for (const v of r.verbs) granted.add(`${g}/${res}/${v}`);
  const want = new Set([
    ...["pods", "namespaces", "nodes", "services"].flatMap((r) => ["get", "list", "watch"].map((v) => `/${r}/${v}`)),
    ...["get", "list", "watch"].map((v) => `discovery.k8s.io/endpointslices/${v}`),
    "/pods/status/patch",
  ]);
  const extra = [...granted].filter((x) => !want.has(x)), missing = [...want].filter((x) => !granted.has(x));
  check("ClusterRole grants exactly what the agent needs", !extra.length && !missing.length,
    `extra ${extra.join(",")} missing ${missing.join(",")}`);
}
process.exit(failed ? 1 : 0);
