#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Runs a CNI plugin chain the way a container runtime (libcni) does.

  cnirun.py ADD|DEL|CHECK CONFLIST CONTAINER_ID NETNS [IFNAME]

ADD runs the plugins in order, each getting the list's cniVersion and name
and the previous plugin's result as prevResult; the final result is printed
and cached in $CNIRUN_CACHE/<container id>.json (with every intermediate
result in <id>.steps.json). DEL runs them in reverse with the cached result
as prevResult, CHECK in order with it. Env: CNI_PATH (plugin dirs),
CNI_ARGS (passed through). A plugin error is printed as the plugin wrote
it and ends the run with the plugin's exit status.
"""
import json
import os
import subprocess
import sys


def run(plugin, cmd, conf, cid, netns, ifname):
    env = dict(os.environ, CNI_COMMAND=cmd, CNI_CONTAINERID=cid, CNI_NETNS=netns,
               CNI_IFNAME=ifname, CNI_PATH=os.environ.get("CNI_PATH", "/usr/lib/cni"))
    exe = None
    for d in env["CNI_PATH"].split(":"):
        if os.access(os.path.join(d, plugin), os.X_OK):
            exe = os.path.join(d, plugin)
            break
    if exe is None:
        sys.stdout.write(json.dumps({"code": 999, "msg": f"plugin {plugin} not found"}) + "\n")
        sys.exit(1)
    p = subprocess.run([exe], input=json.dumps(conf).encode(), env=env,
                       capture_output=True, timeout=30)
    sys.stderr.write(p.stderr.decode(errors="replace"))
    if p.returncode != 0:
        sys.stdout.write(p.stdout.decode(errors="replace"))
        sys.exit(p.returncode)
    out = p.stdout.decode().strip()
    return json.loads(out) if out else None


def main():
    cmd, conflist, cid, netns = sys.argv[1:5]
    ifname = sys.argv[5] if len(sys.argv) > 5 else "eth0"
    lst = json.load(open(conflist))
    cache = os.environ.get("CNIRUN_CACHE", "/tmp")
    cache_file = os.path.join(cache, cid + ".json")
    plugins = lst["plugins"]
    base = {"cniVersion": lst["cniVersion"], "name": lst["name"]}
    if cmd == "ADD":
        prev, steps = None, []
        for pc in plugins:
            conf = dict(pc, **base)
            if prev is not None:
                conf["prevResult"] = prev
            prev = run(pc["type"], "ADD", conf, cid, netns, ifname)
            steps.append(prev)
        json.dump(prev, open(cache_file, "w"))
        json.dump(steps, open(os.path.join(cache, cid + ".steps.json"), "w"))
        print(json.dumps(prev))
        return
    try:
        prev = json.load(open(cache_file))
    except OSError:
        prev = None
    order = reversed(plugins) if cmd == "DEL" else plugins
    for pc in order:
        conf = dict(pc, **base)
        if prev is not None:
            conf["prevResult"] = prev
        run(pc["type"], cmd, conf, cid, netns, ifname)
    if cmd == "DEL" and os.path.exists(cache_file):
        os.unlink(cache_file)


main()
