#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
#
# ambientd --kube against a local fake API server (fake_apiserver.py: TLS,
# bearer tokens, list/watch with bookmarks, 410, injected errors, recorded
# patches). Pods are real: the CNI reference plugins (ptp + host-local) make
# each pod's netns and veth, with ambientd-cni chained after them talking to
# the node's agent, as a runtime would. Two nodes, the mesh root made by
# manifests/create-ca-secret.sh.
#
#   node 1: demo/a (sa "alpha"), demo/b (labeled none), demo/side (sidecar),
#           kube-system/sys (in an "ambient" kube-system), plain/p, and a
#           hostNetwork pod
#   node 2: demo/e (sa "echo"), runs the servers
set -u
. "$(dirname "$0")/../integration/lib.sh"

HERE=$(cd "$(dirname "$0")" && pwd)
AMBIENTD_CNI=${AMBIENTD_CNI:-$AMB_SRC_ROOT/build/cni/ambientd-cni}
REF=/usr/lib/cni
amb_require daemon jq python3 openssl curl socat
[ -x "$AMBIENTD_CNI" ] || skip_all "ambientd-cni not built"
for p in ptp host-local; do
	[ -x "$REF/$p" ] || skip_all "CNI reference plugin $REF/$p missing (Debian containernetworking-plugins)"
done

amb_init "k$$"
API_IP=198.19.0.254
API=https://$API_IP:6443
W=$AMB_WORK
mkdir -p "$W/bin" "$W/cache" "$W/ipam"
ln -s "$REF/ptp" "$REF/host-local" "$W/bin/"
cp "$AMBIENTD_CNI" "$W/bin/ambientd-cni"
export CNI_PATH=$W/bin CNIRUN_CACHE=$W/cache
declare -A IP=() # pod name -> address

# ---- the fake API server ----------------------------------------------------

api_ca() {
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
		-subj "/CN=test apiserver CA" -keyout "$W/api-ca.key" -out "$W/api-ca.pem" \
		-addext basicConstraints=critical,CA:TRUE 2>/dev/null &&
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
			-subj "/CN=kubernetes" -keyout "$W/api.key" -out "$W/api.csr" 2>/dev/null &&
		printf 'subjectAltName=IP:%s,DNS:kubernetes.default.svc\n' "$API_IP" >"$W/api.ext" &&
		openssl x509 -req -in "$W/api.csr" -CA "$W/api-ca.pem" -CAkey "$W/api-ca.key" \
			-CAcreateserial -days 2 -extfile "$W/api.ext" -out "$W/api.pem" 2>/dev/null
}

ctl() { # PATH [JSON]: the fake server's control API
	if [ $# -gt 1 ]; then
		curl -sf --cacert "$W/api-ca.pem" -X POST -H 'Content-Type: application/json' \
			--data "$2" "$API$1" >/dev/null
	else
		curl -sf --cacert "$W/api-ca.pem" "$API$1"
	fi
}
# curl runs in the underlay netns, where the server is.
ctl_ns() { nsenter --net="/run/netns/$P-ul" bash -c "$(declare -f ctl); W=$W API=$API ctl \"\$@\"" ctl "$@"; }

namespace() { # NAME [MODE]
	ctl_ns /_test/apply "$(jq -nc --arg n "$1" --arg m "${2:-}" \
		'{kind:"Namespace",apiVersion:"v1",metadata:({name:$n} + (if $m == "" then {} else {labels:{"istio.io/dataplane-mode":$m}} end))}')"
}

# pod_object NS NAME NODE SA IP [extra jq filter]: the pod as the API has it.
pod_object() {
	jq -nc --arg ns "$1" --arg n "$2" --arg node "$3" --arg sa "$4" --arg ip "$5" \
		'{kind:"Pod",apiVersion:"v1",metadata:{namespace:$ns,name:$n,uid:("uid-"+$n),labels:{app:$n}},
		  spec:{nodeName:$node,serviceAccountName:$sa,containers:[{name:"c",image:"x"}]},
		  status:(if $ip == "" then {phase:"Pending"} else
		    {phase:"Running",podIP:$ip,podIPs:[{ip:$ip}],conditions:[{type:"Ready",status:"True"}]} end)}' |
		jq -c "${6:-.}"
}
pod_apply() { ctl_ns /_test/apply "$(pod_object "$@")"; }

# make_pod N NS NAME SA [jq filter]: scheduled (no IP), then the CNI chain on
# node N (ADD reaches the agent), then the kubelet's status with the IP.
conflist() {
	cat >"$W/net-n$1.conflist" <<JSON
{"cniVersion": "1.0.0", "name": "k8s-pod-network", "plugins": [
  {"type": "ptp", "ipMasq": false,
   "ipam": {"type": "host-local", "dataDir": "$W/ipam/n$1",
            "ranges": [[{"subnet": "198.18.$1.0/24", "rangeStart": "198.18.$1.20",
                         "rangeEnd": "198.18.$1.60", "gateway": "198.18.$1.1"}]],
            "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "ambientd-cni", "socket": "$W/cni-n$1.sock"}
]}
JSON
}
NEXT_POD=([1]=0 [2]=0)
make_pod() {
	local n=$1 ns=$2 name=$3 sa=$4 filter=${5:-.} i out ip
	i=$((NEXT_POD[n] + 1))
	NEXT_POD[n]=$i
	pod_apply "$ns" "$name" "$(amb_node_name "$n")" "$sa" "" "$filter" || return 1
	amb_netns_add "$(amb_pod_ns "$n" "$i")"
	out=$(CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=$ns;K8S_POD_NAME=$name" amb_node_exec "$n" \
		python3 "$HERE/cnirun.py" ADD "$W/net-n$n.conflist" "$name" \
		"/run/netns/$(amb_pod_ns "$n" "$i")" 2>>"$W/cni.err") || {
		diag "CNI ADD $ns/$name: $out"
		return 1
	}
	ip=$(jq -r '.ips[0].address' <<<"$out")
	ip=${ip%/*}
	IP[$name]=$ip
	POD_IDX[$name]="$n $i"
	[ -n "${NO_STATUS:-}" ] || pod_apply "$ns" "$name" "$(amb_node_name "$n")" "$sa" "$ip" "$filter"
}
declare -A POD_IDX=()

enrolled() { # N IP
	amb_ctl "$1" pods 2>/dev/null | grep -qw "$2"
}
not_enrolled() { ! enrolled "$@"; }
kstat() { # N JQ: the daemon's kube status
	echo kube | amb_node_exec "$1" socat -t 5 - "UNIX-CONNECT:/run/ambientd/$(amb_node_name "$1").sock" |
		jq -r "$2"
}
# kstat_ge N JQ MIN / kstat_is N JQ VALUE: for wait_for (re-evaluated each try).
kstat_ge() { local v; v=$(kstat "$1" "$2"); is_num "$v" && [ "$v" -ge "$3" ]; }
kstat_is() { [ "$(kstat "$1" "$2")" = "$3" ]; }
annotation_is() { [ "$(annotation "$1" "$2")" = "$3" ]; }
annotation() { # NS NAME: the redirection annotation the API has now
	ctl_ns /_test/objects | jq -r --arg k "$1/$2" '.["/api/v1/pods"][$k].metadata.annotations["ambient.istio.io/redirection"] // "none"'
}

setup() {
	ip -n "$P-ul" addr add "$API_IP/24" dev br0 || return 1
	api_ca || return 1
	echo tok-1 >"$W/tokens"
	echo tok-1 >"$W/token"
	nsenter --net="/run/netns/$P-ul" python3 "$HERE/fake_apiserver.py" --listen "$API_IP:6443" \
		--cert "$W/api.pem" --key "$W/api.key" --tokens "$W/tokens" >"$W/api.log" 2>&1 &
	AMB_PIDS+=("$!")
	wait_for 10 ctl_ns /_test/stats >/dev/null || { diag "fake API server did not start"; return 1; }
	# The mesh root as the user makes it for the Secret.
	"$AMB_SRC_ROOT/manifests/create-ca-secret.sh" --keep "$W/ca" >"$W/ca-secret.yaml" || return 1
	echo "policies: []" >"$W/policies.yaml"
	amb_node 1 && amb_node 2 && conflist 1 && conflist 2 || return 1
	namespace demo && namespace plain && namespace kube-system ambient || return 1
	local n
	for n in 1 2; do
		amb_daemon_start "$n" "$W/policies.yaml" --kube --kube-server "$API" \
			--kube-token "$W/token" --kube-ca "$W/api-ca.pem" --cni-socket "$W/cni-n$n.sock" ||
			return 1
	done
	wait_for 10 kstat_is 1 .synced true && wait_for 10 kstat_is 2 .synced true || {
		diag "not synced"
		return 1
	}
	make_pod 1 demo a alpha && make_pod 1 demo b beta '.metadata.labels["istio.io/dataplane-mode"]="none"' &&
		make_pod 1 demo side alpha '.metadata.annotations={"sidecar.istio.io/status":"{}"}' &&
		make_pod 1 kube-system sys default && make_pod 1 plain p default &&
		make_pod 2 demo e echo || return 1
	# A hostNetwork pod has the node's address and no veth.
	pod_apply demo hostnet "$(amb_node_name 1)" default "$(amb_node_ip 1)" '.spec.hostNetwork=true'
	amb_server 2 1 7000 whoami
}

case_synced() {
	local rc=0 k
	for k in pods namespaces services endpointslices; do
		[ "$(kstat 1 ".kinds.$k.lists")" -ge 1 ] || { diag "node 1 never listed $k"; rc=1; }
	done
	[ "$(kstat 1 .kinds.pods.token_reads)" -ge 1 ] || rc=1
	return "$rc"
}

case_nothing_before_label() {
	local rc=0 p
	for p in a b side sys p; do
		not_enrolled 1 "${IP[$p]}" || { diag "$p enrolled before any ambient label"; rc=1; }
	done
	return "$rc"
}

case_label_namespace() {
	local rc=0
	namespace demo ambient
	wait_for 10 enrolled 1 "${IP[a]}" || { diag "demo/a not enrolled on node 1"; rc=1; }
	wait_for 10 enrolled 2 "${IP[e]}" || { diag "demo/e not enrolled on node 2"; rc=1; }
	sleep 0.5
	not_enrolled 1 "${IP[b]}" || { diag "demo/b (labeled none) enrolled"; rc=1; }
	not_enrolled 1 "${IP[side]}" || { diag "demo/side (sidecar) enrolled"; rc=1; }
	not_enrolled 1 "${IP[sys]}" || { diag "kube-system pod enrolled"; rc=1; }
	not_enrolled 1 "${IP[p]}" || { diag "plain/p enrolled"; rc=1; }
	not_enrolled 1 "$(amb_node_ip 1)" || { diag "hostNetwork pod enrolled"; rc=1; }
	# Node 1 never enrolls node 2's pod and vice versa.
	not_enrolled 1 "${IP[e]}" && not_enrolled 2 "${IP[a]}" || { diag "a pod enrolled on the wrong node"; rc=1; }
	amb_ctl 1 pods | diag
	return "$rc"
}

case_annotation_set() {
	local rc=0
	wait_for 10 annotation_is demo a enabled || { diag "demo/a annotation: $(annotation demo a)"; rc=1; }
	wait_for 10 annotation_is demo e enabled || { diag "demo/e annotation: $(annotation demo e)"; rc=1; }
	check_eq "demo/b annotation" "$(annotation demo b)" none || rc=1
	ctl_ns /_test/patches | jq -e 'all(.[]; .contentType == "application/merge-patch+json" and (.path | endswith("/status")))' >/dev/null ||
		{ diag "patches: $(ctl_ns /_test/patches)"; rc=1; }
	return "$rc"
}

case_cross_node_hbone() {
	local rc=0 seen idx
	read -r -a idx <<<"${POD_IDX[a]}"
	seen=$(amb_whoami "${idx[0]}" "${idx[1]}" "${IP[e]}" 7000)
	check_eq "address the server saw" "$seen" "${IP[a]}" || rc=1
	wait_for 3 grep -qF "identity spiffe://cluster.local/ns/demo/sa/alpha" "$(amb_daemon_log 2)" || {
		diag "node 2 did not log demo/a's identity (service account alpha)"
		rc=1
	}
	[ "$(amb_ctl 2 status | jq -r .hbone.inbound_streams)" -ge 1 ] || { diag "no HBONE stream on node 2"; rc=1; }
	return "$rc"
}

case_pod_label_flip() {
	local rc=0
	# As `kubectl label`: only the label changes, the annotation stays.
	pod_apply demo a "$(amb_node_name 1)" alpha "${IP[a]}" \
		'.metadata.labels["istio.io/dataplane-mode"]="none" | .metadata.annotations={"ambient.istio.io/redirection":"enabled"}'
	wait_for 10 not_enrolled 1 "${IP[a]}" || { diag "demo/a still enrolled after label none"; rc=1; }
	wait_for 10 annotation_is demo a none || { diag "annotation not removed: $(annotation demo a)"; rc=1; }
	ctl_ns /_test/patches | jq -e 'any(.[]; .path == "/api/v1/namespaces/demo/pods/a/status" and .body.metadata.annotations["ambient.istio.io/redirection"] == null)' >/dev/null ||
		{ diag "no null patch for demo/a"; rc=1; }
	pod_apply demo a "$(amb_node_name 1)" alpha "${IP[a]}"
	wait_for 10 enrolled 1 "${IP[a]}" || { diag "demo/a not enrolled again"; rc=1; }
	# Idempotent: the same object again changes nothing.
	local before
	before=$(ctl_ns /_test/patches | jq length)
	pod_apply demo a "$(amb_node_name 1)" alpha "${IP[a]}" '.metadata.annotations={"ambient.istio.io/redirection":"enabled"}'
	sleep 1
	enrolled 1 "${IP[a]}" || rc=1
	check_eq "patches after a no-op update" "$(ctl_ns /_test/patches | jq length)" "$before" || rc=1
	return "$rc"
}

case_cni_add_enrolls() {
	local rc=0
	# The API has no address for the pod yet: only the CNI ADD tells it.
	NO_STATUS=1 make_pod 1 demo fresh alpha || return 1
	enrolled 1 "${IP[fresh]}" || { diag "demo/fresh not enrolled when CNI ADD returned"; rc=1; }
	grep -q "CNI ADD demo/fresh" "$(amb_daemon_log 1)" || rc=1
	return "$rc"
}

case_token_rotation() {
	local rc=0 reads
	reads=$(kstat 1 .kinds.pods.token_reads)
	echo tok-2 >"$W/tokens" # the old token stops working
	echo tok-2 >"$W/token.new" && mv "$W/token.new" "$W/token"
	ctl_ns /_test/close '{}' # every watch reconnects now
	namespace plain ambient
	wait_for 10 enrolled 1 "${IP[p]}" || { diag "plain/p not enrolled after rotation"; rc=1; }
	# The pods watch reconnects on its own schedule (back-off after the
	# forced close), possibly after the namespaces watch enrolled plain/p.
	wait_for 10 kstat_ge 1 .kinds.pods.token_reads $((reads + 1)) || {
		diag "token not re-read (pods: $(kstat 1 .kinds.pods.token_reads), before $reads)"
		rc=1
	}
	ctl_ns /_test/stats | jq -e '.tokens | index("tok-2")' >/dev/null || { diag "server never saw tok-2"; rc=1; }
	return "$rc"
}

case_gone_relist() {
	local rc=0 lists
	lists=$(kstat 1 .kinds.namespaces.lists)
	ctl_ns /_test/compact '{}'
	ctl_ns /_test/close '{}'
	wait_for 10 kstat_ge 1 .kinds.namespaces.gone 1 || { diag "no 410 seen"; rc=1; }
	wait_for 10 kstat_ge 1 .kinds.namespaces.lists $((lists + 1)) || { diag "no re-list"; rc=1; }
	namespace plain
	wait_for 10 not_enrolled 1 "${IP[p]}" || { diag "change after re-list not applied"; rc=1; }
	grep -q "is gone (410); re-listing" "$(amb_daemon_log 1)" || rc=1
	return "$rc"
}

case_bookmarks() {
	wait_for 5 kstat_ge 1 .kinds.pods.bookmarks 1
}

case_backoff() {
	local rc=0 errs
	errs=$(kstat 1 .kinds.services.errors)
	# 2.5 s of 500s: failures at about 0, 0.25, 0.75 and 1.75 s.
	ctl_ns /_test/fail '{"prefix":"/api/v1/services","seconds":2.5,"code":500}'
	ctl_ns /_test/close '{}'
	wait_for 15 kstat_ge 1 .kinds.services.errors $((errs + 3)) || { diag "errors not counted"; rc=1; }
	grep -E "services: .*retrying in (250|500|1000) ms" "$(amb_daemon_log 1)" | tail -3 | diag
	for ms in 250 500 1000; do
		grep -qE "services: .*HTTP 500.*retrying in $ms ms" "$(amb_daemon_log 1)" || { diag "no back-off step $ms ms"; rc=1; }
	done
	wait_for 10 kstat_is 1 .synced true || rc=1
	# Still following changes afterwards.
	namespace demo
	wait_for 10 not_enrolled 1 "${IP[a]}" || { diag "namespace label removal not applied"; rc=1; }
	wait_for 10 not_enrolled 2 "${IP[e]}" || { diag "node 2 kept demo/e"; rc=1; }
	wait_for 10 annotation_is demo a none || { diag "demo/a annotation left"; rc=1; }
	return "$rc"
}

if setup; then
	tap_ok "both agents list every kind (token read)" case_synced
	tap_ok "no ambient label: nothing enrolled" case_nothing_before_label
	tap_ok "namespace labeled ambient: its pods enrolled on their nodes; none/sidecar/kube-system/hostNetwork/other ns not" case_label_namespace
	tap_ok "redirection annotation set by merge patch on pods/status" case_annotation_set
	tap_ok "cross-node HBONE between API-server workloads, identity from the service account" case_cross_node_hbone
	tap_ok "pod label none on a live pod unenrolls and removes the annotation; back again; no-op is a no-op" case_pod_label_flip
	tap_ok "CNI ADD enrolls a pod before the API server has its address" case_cni_add_enrolls
	tap_ok "token rotated: re-read, requests go on" case_token_rotation
	tap_ok "410 Gone: re-list, changes keep applying" case_gone_relist
	tap_ok "watch bookmarks received" case_bookmarks
	tap_ok "API errors: exponential back-off 250/500/1000 ms, then recovery; label removal unenrolls" case_backoff
else
	tap_fail "setup"
	tail -20 "$W/api.log" | diag
fi
tap_done
