#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
#
# ambientd-cni driven the way a container runtime drives a chain: Debian's
# reference plugins (ptp + host-local) make the pod's netns veth and address,
# ambientd-cni runs after them with their result as prevResult. A stand-in
# agent (fake_cni_agent.py) records what the plugin tells it; the real agent
# is exercised in test_kube.sh.
set -u
. "$(dirname "$0")/../integration/lib.sh"

HERE=$(cd "$(dirname "$0")" && pwd)
AMBIENTD_CNI=${AMBIENTD_CNI:-$AMB_SRC_ROOT/build/cni/ambientd-cni}
REF=/usr/lib/cni
amb_require jq python3
[ -x "$AMBIENTD_CNI" ] || skip_all "ambientd-cni not built ($AMBIENTD_CNI)"
for p in ptp host-local; do
	[ -x "$REF/$p" ] || skip_all "CNI reference plugin $REF/$p missing (Debian containernetworking-plugins)"
done

amb_init "cni$$"
BIN=$AMB_WORK/bin
mkdir -p "$BIN" "$AMB_WORK/cache" "$AMB_WORK/ipam"
ln -s "$REF/ptp" "$REF/host-local" "$BIN/"
cp "$AMBIENTD_CNI" "$BIN/ambientd-cni"
export CNI_PATH=$BIN CNIRUN_CACHE=$AMB_WORK/cache
SOCK=$AMB_WORK/agent.sock
AGENT_LOG=$AMB_WORK/agent.log
MODE=$AMB_WORK/agent.mode
echo ok >"$MODE"

conflist() { # FILE [extra json for our plugin]
	cat >"$1" <<JSON
{"cniVersion": "1.0.0", "name": "ambient-test", "plugins": [
  {"type": "ptp", "ipMasq": false, "mtu": 1500,
   "ipam": {"type": "host-local", "dataDir": "$AMB_WORK/ipam",
            "ranges": [[{"subnet": "198.18.1.0/24", "rangeStart": "198.18.1.20",
                         "rangeEnd": "198.18.1.60", "gateway": "198.18.1.1"}]]}},
  {"type": "ambientd-cni", "socket": "$SOCK"${2:+, $2}}
]}
JSON
}
conflist "$AMB_WORK/chain.conflist"
conflist "$AMB_WORK/closed.conflist" '"failClosed": true'

start_agent() {
	python3 "$HERE/fake_cni_agent.py" "$SOCK" "$AGENT_LOG" "$MODE" >>"$AMB_WORK/agent.out" 2>&1 &
	AGENT_PID=$!
	AMB_PIDS+=("$AGENT_PID")
	wait_for 5 test -S "$SOCK"
}
stop_agent() {
	kill "$AGENT_PID" 2>/dev/null
	wait "$AGENT_PID" 2>/dev/null
	rm -f "$SOCK"
}

# runtime CMD CONFLIST ID [CNI_ARGS]: the chain in node 1's netns; pod netns
# $P-<id>.
runtime() {
	CNI_ARGS=${4:-} amb_node_exec 1 python3 "$HERE/cnirun.py" "$1" "$2" "$3" "/run/netns/$P-$3" \
		2>>"$AMB_WORK/runtime.err"
}
# plugin CMD JSON [ENV...]: ambientd-cni alone with a given stdin.
plugin() {
	local cmd=$1 json=$2
	shift 2
	env CNI_COMMAND="$cmd" CNI_CONTAINERID=c0 CNI_NETNS=/run/netns/none CNI_IFNAME=eth0 \
		CNI_PATH="$BIN" "$@" "$BIN/ambientd-cni" <<<"$json" 2>"$AMB_WORK/plugin.err"
}
# err_code OUT: the "code" of a spec error object.
err_code() { jq -r '.code // "none"' <<<"$1" 2>/dev/null || echo "not-json"; }

amb_node 1
start_agent || { diag "stand-in agent did not start"; tap_done; }

case_version() {
	local out
	out=$(CNI_COMMAND=VERSION "$BIN/ambientd-cni" </dev/null) || return 1
	jq -e '.cniVersion == "1.1.0" and (.supportedVersions | index("1.0.0") and index("1.1.0") and index("0.4.0"))' \
		<<<"$out" >/dev/null || { diag "$out"; return 1; }
}
tap_ok "VERSION: 1.1.0, supports 1.0.0 and 0.4.0" case_version

case_add_chain() {
	local out steps ip rc=0
	amb_netns_add "$P-pod1"
	out=$(runtime ADD "$AMB_WORK/chain.conflist" pod1 "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=cart-7d9") || {
		diag "ADD failed: $out"
		return 1
	}
	steps=$(cat "$AMB_WORK/cache/pod1.steps.json")
	# Our result is ptp's result, unchanged.
	check_eq "ambientd-cni's result vs ptp's" "$(jq -cS '.[1]' <<<"$steps")" "$(jq -cS '.[0]' <<<"$steps")" || rc=1
	ip=$(jq -r '.ips[0].address' <<<"$out")
	ip=${ip%/*}
	# The network is real: the pod has the address, the node routes to it.
	ip -n "$P-pod1" -4 addr show dev eth0 | grep -q "inet $ip/" || { diag "pod has no $ip"; rc=1; }
	amb_node_exec 1 ip route get "$ip" | grep -q "dev veth" || { diag "node has no veth route to $ip"; rc=1; }
	# The agent heard of the pod, with what a runtime passes.
	local req
	req=$(grep '"ADD"' "$AGENT_LOG" | tail -1)
	jq -e --arg ip "$ip" --arg ns "/run/netns/$P-pod1" \
		'.containerId == "pod1" and .netns == $ns and .ifname == "eth0" and
		 .podNamespace == "shop" and .podName == "cart-7d9" and .ips == [$ip]' <<<"$req" >/dev/null || {
		diag "agent got: $req"
		rc=1
	}
	return "$rc"
}
tap_ok "ADD after ptp+host-local: prevResult passed through, agent told pod IP/name/netns" case_add_chain

case_check() {
	local out rc=0
	runtime CHECK "$AMB_WORK/chain.conflist" pod1 >/dev/null || { diag "CHECK failed"; rc=1; }
	grep -q '"CHECK"' "$AGENT_LOG" || rc=1
	echo refuse >"$MODE"
	out=$(runtime CHECK "$AMB_WORK/chain.conflist" pod1) && rc=1
	check_eq "CHECK error code when the agent disagrees" "$(err_code "$out")" 3 || rc=1
	echo ok >"$MODE"
	return "$rc"
}
tap_ok "CHECK: agent asked; its refusal is error 3" case_check

case_del_idempotent() {
	local rc=0 n
	runtime DEL "$AMB_WORK/chain.conflist" pod1 >/dev/null || { diag "DEL 1 failed"; rc=1; }
	n=$(grep -c '"DEL"' "$AGENT_LOG")
	[ "$n" -ge 1 ] || { diag "agent not told of DEL"; rc=1; }
	runtime DEL "$AMB_WORK/chain.conflist" pod1 >/dev/null || { diag "DEL 2 failed"; rc=1; }
	ip netns del "$P-pod1"
	stop_agent
	runtime DEL "$AMB_WORK/chain.conflist" pod1 >/dev/null || { diag "DEL 3 (netns gone, agent down) failed"; rc=1; }
	start_agent
	return "$rc"
}
tap_ok "DEL: repeated, netns gone, agent down: always succeeds" case_del_idempotent

case_agent_down() {
	local out rc=0
	stop_agent
	amb_netns_add "$P-pod2"
	out=$(runtime ADD "$AMB_WORK/chain.conflist" pod2) || { diag "ADD (fail open) failed: $out"; rc=1; }
	grep -q "not reachable.*captured once the agent lists it" "$AMB_WORK/runtime.err" || {
		diag "no warning on stderr"
		rc=1
	}
	runtime DEL "$AMB_WORK/chain.conflist" pod2 >/dev/null
	out=$(runtime ADD "$AMB_WORK/closed.conflist" pod2) && rc=1
	check_eq "failClosed ADD with no agent: error code" "$(err_code "$out")" 11 || rc=1
	runtime DEL "$AMB_WORK/closed.conflist" pod2 >/dev/null
	ip netns del "$P-pod2"
	start_agent
	return "$rc"
}
tap_ok "agent down: ADD passes (default) or fails with 11 (failClosed)" case_agent_down

PREV='{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/run/netns/x"}],"ips":[{"address":"198.18.1.77/24","interface":0}]}'
case_errors() {
	local rc=0 out
	expect() { # WHAT CODE OUT
		check_eq "$1" "$(err_code "$3")" "$2" || rc=1
		jq -e '.msg | length > 0' <<<"$3" >/dev/null 2>&1 || { diag "$1: no msg in $3"; rc=1; }
	}
	out=$(plugin ADD 'not json'); expect "garbage config" 6 "$out"
	out=$(plugin ADD '{"cniVersion":"9.9.9","name":"n","type":"ambientd-cni"}'); expect "unknown version" 1 "$out"
	out=$(plugin ADD '{"name":"n","type":"ambientd-cni"}'); expect "no cniVersion" 7 "$out"
	out=$(plugin ADD '{"cniVersion":"1.0.0","name":"n","type":"ambientd-cni"}'); expect "ADD without prevResult" 7 "$out"
	out=$(plugin ADD "{\"cniVersion\":\"1.0.0\",\"name\":\"n\",\"type\":\"ambientd-cni\",\"socket\":\"$SOCK\",\"prevResult\":$PREV}" CNI_NETNS=)
	expect "ADD without CNI_NETNS" 4 "$out"
	out=$(plugin FROB '{"cniVersion":"1.0.0","name":"n","type":"ambientd-cni"}'); expect "unknown command" 4 "$out"
	out=$(plugin CHECK "{\"cniVersion\":\"0.3.1\",\"name\":\"n\",\"type\":\"ambientd-cni\",\"prevResult\":$PREV}"); expect "CHECK on 0.3.1" 1 "$out"
	out=$(plugin ADD '{"cniVersion":"1.0.0","name":"n","type":"ambientd-cni","failClosed":"yes"}'); expect "bad failClosed" 7 "$out"
	echo garbage >"$MODE"
	out=$(plugin ADD "{\"cniVersion\":\"1.0.0\",\"name\":\"n\",\"type\":\"ambientd-cni\",\"socket\":\"$SOCK\",\"failClosed\":true,\"prevResult\":$PREV}")
	expect "agent answering garbage, failClosed" 11 "$out"
	echo refuse >"$MODE"
	out=$(plugin ADD "{\"cniVersion\":\"1.0.0\",\"name\":\"n\",\"type\":\"ambientd-cni\",\"socket\":\"$SOCK\",\"prevResult\":$PREV}")
	expect "agent refusing the pod" 11 "$out"
	echo ok >"$MODE"
	return "$rc"
}
tap_ok "bad input: spec error codes 1/4/6/7/11 with JSON msg" case_errors

case_agent_silent() {
	local out t0 t1
	echo silent >"$MODE"
	t0=$(date +%s)
	out=$(plugin ADD "{\"cniVersion\":\"1.1.0\",\"name\":\"n\",\"type\":\"ambientd-cni\",\"socket\":\"$SOCK\",\"failClosed\":true,\"prevResult\":$PREV}")
	t1=$(date +%s)
	echo ok >"$MODE"
	check_eq "silent agent, failClosed: code" "$(err_code "$out")" 11 &&
		[ $((t1 - t0)) -le 8 ] || { diag "took $((t1 - t0)) s"; return 1; }
}
tap_ok "agent that never answers: bounded wait, then error 11" case_agent_silent

case_status_gc() {
	local rc=0 out conf
	conf="{\"cniVersion\":\"1.1.0\",\"name\":\"n\",\"type\":\"ambientd-cni\",\"socket\":\"$SOCK\"}"
	plugin STATUS "$conf" >/dev/null || { diag "STATUS with agent up failed"; rc=1; }
	plugin GC "$conf" >/dev/null || { diag "GC failed"; rc=1; }
	stop_agent
	out=$(plugin STATUS "$conf") && rc=1
	check_eq "STATUS with agent down: code" "$(err_code "$out")" 50 || rc=1
	start_agent
	return "$rc"
}
tap_ok "STATUS: 0 with agent, 50 without; GC succeeds" case_status_gc

case_install() {
	local d=$AMB_WORK/inst rc=0 before after
	mkdir -p "$d/bin" "$d/net.d"
	# A runtime's primary network as a .conflist, plus a later one.
	printf '{"cniVersion":"1.0.0","name":"k8s","plugins":[{"type":"ptp","ipam":{"type":"host-local","subnet":"198.18.9.0/24"}},{"type":"portmap","capabilities":{"portMappings":true}}]}\n' >"$d/net.d/10-k8s.conflist"
	printf '{"cniVersion":"1.0.0","name":"other","type":"bridge"}\n' >"$d/net.d/20-other.conf"
	"$BIN/ambientd-cni" install --bin-dir="$d/bin" --conf-dir="$d/net.d" --socket=/run/ambientd/cni.sock 2>&1 | diag
	jq -e '.plugins | length == 3 and .[2].type == "ambientd-cni" and .[2].socket == "/run/ambientd/cni.sock" and .[0].type == "ptp" and .[1].type == "portmap"' \
		"$d/net.d/10-k8s.conflist" >/dev/null || { diag "$(cat "$d/net.d/10-k8s.conflist")"; rc=1; }
	[ -x "$d/bin/ambientd-cni" ] && CNI_COMMAND=VERSION "$d/bin/ambientd-cni" </dev/null | grep -q 1.1.0 || { diag "binary not installed"; rc=1; }
	before=$(md5sum "$d/net.d/10-k8s.conflist")
	"$BIN/ambientd-cni" install --bin-dir="$d/bin" --conf-dir="$d/net.d" --socket=/run/ambientd/cni.sock 2>/dev/null || rc=1
	after=$(md5sum "$d/net.d/10-k8s.conflist")
	check_eq "second install changed the config" "$after" "$before" || rc=1
	cmp -s "$d/net.d/20-other.conf" <(printf '{"cniVersion":"1.0.0","name":"other","type":"bridge"}\n') || { diag "touched a config the runtime does not use"; rc=1; }
	# A single-plugin .conf becomes a .conflist with it first.
	rm -f "$d/net.d/"*
	printf '{"cniVersion":"0.4.0","name":"solo","type":"ptp","ipam":{"type":"host-local","subnet":"198.18.9.0/24"}}\n' >"$d/net.d/05-solo.conf"
	"$BIN/ambientd-cni" install --bin-dir="$d/bin" --conf-dir="$d/net.d" 2>/dev/null || rc=1
	jq -e '.cniVersion == "0.4.0" and .name == "solo" and (.plugins | length == 2) and .plugins[0].type == "ptp" and (.plugins[0] | has("name") | not) and .plugins[1].type == "ambientd-cni"' \
		"$d/net.d/05-solo.conflist" >/dev/null && [ ! -e "$d/net.d/05-solo.conf" ] || { diag "$(ls "$d/net.d"; cat "$d/net.d/"*)"; rc=1; }
	# No config at all: a clear error, non-zero.
	rm -f "$d/net.d/"*
	! "$BIN/ambientd-cni" install --bin-dir="$d/bin" --conf-dir="$d/net.d" 2>"$AMB_WORK/inst.err" &&
		grep -q "no CNI config" "$AMB_WORK/inst.err" || { diag "empty conf dir accepted"; rc=1; }
	return "$rc"
}
tap_ok "install: copies the binary, chains into the first config, idempotent, converts .conf" case_install

stop_agent
tap_done
