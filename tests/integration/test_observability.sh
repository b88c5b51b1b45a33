#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
#
# Observability and operations (issue 5), checked the way an operator
# would: a real Prometheus (Debian's package) scrapes both node daemons
# during cross-node traffic and PromQL answers with the expected Istio
# metrics; /config_dump has ztunnel's shape; readiness flips for a real
# missing listener, certificate and program; access log lines are parsed
# field by field; ambientctl agrees with the live state; /quitquitquit
# lets a transfer finish inside the deadline and cuts what outlives it.
#
#   node 1: p1 "client" (canonical client/v1), p2 "intruder", p4 "streamer"
#           (all HBONE), p3 outside the mesh
#   node 2: p1 "server" (service server.default.svc.cluster.local :7001,
#           canonical server/v2), p2 "protected" (DENY from intruder)
# Prometheus runs in the underlay netns on 127.0.0.1:9090 and scrapes
# 198.19.0.1:15020/metrics and 198.19.0.2:15020/stats/prometheus every 1 s.
set -u
. "$(dirname "$0")/lib.sh"

amb_require daemon jq curl nc
command -v prometheus >/dev/null 2>&1 ||
	skip_all "prometheus not installed (Debian package prometheus; run scripts/setup)"
command -v promtool >/dev/null 2>&1 || skip_all "promtool not installed (Debian package prometheus)"
amb_init "ob$$"

N1P1=$(amb_pod_ip 1 1) N1P2=$(amb_pod_ip 1 2) N1P3=$(amb_pod_ip 1 3) N1P4=$(amb_pod_ip 1 4)
N2P1=$(amb_pod_ip 2 1) N2P2=$(amb_pod_ip 2 2)
TD=cluster.local
CONF="$AMB_WORK/mesh.yaml"
PROM_NS="$P-ul"
PROM_URL=http://127.0.0.1:9090

# workload N I NAME [extra yaml lines]: one HBONE workload entry.
workload() {
	cat <<EOF
- uid: cluster1//v1/Pod/default/n$1p$2
  name: n$1p$2
  namespace: default
  serviceAccount: sa-n$1p$2
  workloadName: $3
  workloadIps: ["$(amb_pod_ip "$1" "$2")"]
  protocol: HBONE
  node: $(amb_node_name "$1")
EOF
	shift 3
	[ $# -gt 0 ] && printf '%s\n' "$@"
}

# write_config [extra workload entries from stdin]
write_config() {
	{
		echo "workloads:"
		workload 1 1 client "  canonicalName: client" "  canonicalRevision: v1"
		workload 1 2 intruder
		workload 1 4 streamer
		workload 2 1 server "  canonicalName: server" "  canonicalRevision: v2" \
			"  services:" '    "default/server.default.svc.cluster.local":' "      7001: 7001"
		workload 2 2 protected
		cat
		cat <<EOF
services:
- name: server
  namespace: default
  hostname: server.default.svc.cluster.local
  vips: ["/198.18.100.10"]
  ports:
    7001: 7001
policies:
- name: deny-intruder
  namespace: default
  scope: Global
  action: Deny
  rules:
  - - - principals: [{Exact: $TD/ns/default/sa/sa-n1p2}]
EOF
	} | amb_replace_file "$CONF"
}

gen() { amb_ctl "$1" status 2>/dev/null | jq -r .config_generation; }
gen_changed() { [ "$(gen 1)" != "$1" ]; }

# apply_config: write_config from stdin; wait until node 1 took it.
apply_config() {
	local g
	g=$(gen 1)
	write_config
	wait_for 5 gen_changed "$g"
}

ready_code() { # N
	amb_node_exec "$1" curl -s --max-time 5 -o /dev/null -w '%{http_code}' \
		http://127.0.0.1:15021/healthz/ready
}
ready_is() { [ "$(ready_code "$1")" = "$2" ]; }

# The process is gone (or a zombie waiting for us).
gone() {
	! kill -0 "$1" 2>/dev/null || [ "$(ps -o stat= -p "$1" | cut -c1)" = Z ]
}

prom_start() {
	local cfg="$AMB_WORK/prometheus.yml"
	mkdir -p "$AMB_WORK/tsdb"
	ip -n "$PROM_NS" addr add 198.19.0.250/24 dev br0
	cat >"$cfg" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 900ms
scrape_configs:
- job_name: ambientd-node1
  metrics_path: /metrics
  static_configs: [{targets: ["$(amb_node_ip 1):15020"]}]
- job_name: ambientd-node2
  metrics_path: /stats/prometheus
  static_configs: [{targets: ["$(amb_node_ip 2):15020"]}]
EOF
	nsenter --net="/run/netns/$PROM_NS" prometheus --config.file="$cfg" \
		--storage.tsdb.path="$AMB_WORK/tsdb" --web.listen-address=127.0.0.1:9090 \
		--log.level=warn >"$AMB_WORK/prometheus.log" 2>&1 &
	AMB_PIDS+=("$!")
	wait_for 30 prom_ready
}

prom_ready() {
	nsenter --net="/run/netns/$PROM_NS" curl -sf "$PROM_URL/-/ready" >/dev/null 2>&1
}

# promq QUERY: the value of an instant query's single result ("" if none).
promq() {
	nsenter --net="/run/netns/$PROM_NS" curl -s --max-time 5 "$PROM_URL/api/v1/query" \
		--data-urlencode "query=$1" | jq -r '.data.result[0].value[1] // empty'
}

# prom_expect WHAT QUERY WANT: until Prometheus answers WANT (15 s).
prom_expect() {
	local got tries=150
	while [ "$tries" -gt 0 ]; do
		got=$(promq "$2")
		[ "$got" = "$3" ] && return 0
		sleep 0.1
		tries=$((tries - 1))
	done
	diag "$1: PromQL $2 = '$got', expected '$3'"
	return 1
}

metrics() { # N PATH
	amb_node_exec "$1" curl -s --max-time 5 "http://127.0.0.1:15020${2:-/metrics}"
}

admin() { # N PATH [curl args]
	local n=$1 path=$2
	shift 2
	amb_node_exec "$n" curl -s --max-time 10 "$@" "http://127.0.0.1:15000$path"
}

ready() { # N: "<status> <body>"
	amb_node_exec "$1" curl -s --max-time 5 -o /dev/stdout -w ' %{http_code}' \
		http://127.0.0.1:15021/healthz/ready
}

setup() {
	amb_node 1 && amb_node 2 &&
		amb_pod 1 1 && amb_pod 1 2 && amb_pod 1 3 && amb_pod 1 4 &&
		amb_pod 2 1 && amb_pod 2 2 || return 1
	write_config </dev/null
	amb_server 2 1 7001 sink && amb_server 2 1 7002 echo &&
		amb_server 2 1 7004 expect-rst && amb_server 2 2 7000 whoami || return 1
	amb_daemon_start 1 "$CONF" --access-log text &&
		amb_daemon_start 2 "$CONF" --access-log json --drain-timeout 6 || return 1
	prom_start || { diag "prometheus did not become ready"; tail -5 "$AMB_WORK/prometheus.log" | diag; return 1; }
}

case_ports() {
	local rc=0 l hdr
	l=$(amb_node_exec 1 ss -Hltn 'sport = :15000 or sport = :15020 or sport = :15021' | awk '{print $4}' | sort | tr '\n' ' ')
	check_eq "listening operator sockets" "$l" "0.0.0.0:15020 0.0.0.0:15021 127.0.0.1:15000 " || rc=1
	# From another netns: metrics yes, admin no.
	nsenter --net="/run/netns/$PROM_NS" curl -sf --max-time 3 "http://$(amb_node_ip 1):15020/metrics" >/dev/null ||
		{ diag "15020 not reachable from the underlay"; rc=1; }
	if nsenter --net="/run/netns/$PROM_NS" curl -s --max-time 3 "http://$(amb_node_ip 1):15000/config_dump" >/dev/null; then
		diag "admin API reachable from outside the node"
		rc=1
	fi
	hdr=$(amb_node_exec 1 curl -sI --max-time 5 http://127.0.0.1:15020/metrics | tr -d '\r' | grep -i '^content-type:')
	check_eq "metrics content type" "$hdr" "Content-Type: text/plain; version=0.0.4; charset=utf-8" || rc=1
	return "$rc"
}

case_targets_up() {
	prom_expect "scrape targets up" 'sum(up{job=~"ambientd-node.*"})' 2
}

case_promtool() {
	local rc=0 n out
	for n in 1 2; do
		out=$(metrics "$n" | promtool check metrics 2>&1) || {
			diag "node $n: promtool check metrics: $out"
			rc=1
		}
	done
	return "$rc"
}

SEL_CS='source_workload="client",destination_workload="server"'

case_traffic_metrics() {
	local rc=0 i
	for i in 1 2 3 4 5; do
		amb_tcp 1 1 send "$N2P1" 7001 --bytes 100000 >/dev/null 2>&1 || {
			diag "send $i failed"
			rc=1
		}
	done
	# Per reporter: node 1 reports as source, node 2 as destination.
	prom_expect "opened (source)" "sum(istio_tcp_connections_opened_total{reporter=\"source\",$SEL_CS})" 5 || rc=1
	prom_expect "opened (destination)" "sum(istio_tcp_connections_opened_total{reporter=\"destination\",$SEL_CS})" 5 || rc=1
	prom_expect "closed cleanly (source)" "sum(istio_tcp_connections_closed_total{reporter=\"source\",$SEL_CS,response_flags=\"-\"})" 5 || rc=1
	prom_expect "closed cleanly (destination)" "sum(istio_tcp_connections_closed_total{reporter=\"destination\",$SEL_CS,response_flags=\"-\"})" 5 || rc=1
	prom_expect "request bytes (destination)" "sum(istio_tcp_received_bytes_total{reporter=\"destination\",$SEL_CS})" 500000 || rc=1
	prom_expect "request bytes (source)" "sum(istio_tcp_received_bytes_total{reporter=\"source\",$SEL_CS})" 500000 || rc=1
	# The sink answers "<bytes> <sha256>\n": 72 bytes per connection.
	prom_expect "response bytes (destination)" "sum(istio_tcp_sent_bytes_total{reporter=\"destination\",$SEL_CS})" 360 || rc=1
	prom_expect "no failures" "sum(istio_tcp_connections_failed_total{$SEL_CS}) or vector(0)" 0 || rc=1
	prom_expect "open now" "sum(istio_tcp_sockets_open{$SEL_CS})" 0 || rc=1
	# Every label ztunnel sets, from the workload model.
	prom_expect "labels" "count(istio_tcp_connections_opened_total{reporter=\"destination\",$SEL_CS,source_canonical_service=\"client\",source_canonical_revision=\"v1\",source_app=\"client\",source_version=\"v1\",source_workload_namespace=\"default\",source_principal=\"spiffe://$TD/ns/default/sa/sa-n1p1\",source_cluster=\"Kubernetes\",destination_service=\"server.default.svc.cluster.local\",destination_service_name=\"server\",destination_service_namespace=\"default\",destination_canonical_service=\"server\",destination_canonical_revision=\"v2\",destination_app=\"server\",destination_version=\"v2\",destination_workload_namespace=\"default\",destination_principal=\"spiffe://$TD/ns/default/sa/sa-n2p1\",destination_cluster=\"Kubernetes\",request_protocol=\"tcp\",response_flags=\"-\",connection_security_policy=\"mutual_tls\"})" 1 || rc=1
	return "$rc"
}

case_label_order() {
	# ztunnel's label set, in ztunnel's order.
	local want got
	want="reporter source_workload source_canonical_service source_canonical_revision source_workload_namespace source_principal source_app source_version source_cluster destination_service destination_service_namespace destination_service_name destination_workload destination_canonical_service destination_canonical_revision destination_workload_namespace destination_principal destination_app destination_version destination_cluster request_protocol response_flags connection_security_policy"
	got=$(metrics 2 | grep -m1 '^istio_tcp_connections_opened_total{' |
		sed 's/^[^{]*{//; s/}.*//' | grep -o '[a-z_]*="' | tr -d '="' | tr '\n' ' ' | sed 's/ $//')
	check_eq "label names and order" "$got" "$want"
}

case_bytes_as_they_flow() {
	local rc=0 conns sent
	# 300000 bytes, then the connection stays open (no FIN yet).
	amb_pod_bg 1 4 "$AMB_WORK/stream.log" sh -c "(head -c 300000 /dev/zero; sleep 60) | nc $N2P1 7001"
	prom_expect "bytes of an open connection" "sum(istio_tcp_received_bytes_total{reporter=\"destination\",source_workload=\"streamer\"})" 300000 || rc=1
	prom_expect "it is open" "sum(istio_tcp_sockets_open{reporter=\"destination\",source_workload=\"streamer\"})" 1 || rc=1
	prom_expect "not closed yet" "sum(istio_tcp_connections_closed_total{source_workload=\"streamer\"}) or vector(0)" 0 || rc=1
	# ambientctl connections shows it live, with its bytes so far.
	conns=$(amb_ctl 1 connections -o json)
	sent=$(jq -r --arg s "$N1P4" '[.[] | select(.src | startswith($s + ":"))][0].bytes_sent // empty' <<<"$conns")
	check_eq "ambientctl connections: bytes sent so far" "$sent" 300000 || { diag "$conns"; rc=1; }
	amb_ctl 1 connections | diag
	amb_ctl 1 connections | grep -q "$N1P4:.*$N2P1:7001 *outbound *hbone *mutual_tls" || {
		diag "connections table lacks the streamer's connection"
		rc=1
	}
	return "$rc"
}

case_deny() {
	local rc=0 out
	out=$(amb_tcp 1 2 whoami "$N2P2" 7000 --timeout 5000 2>&1) && {
		diag "denied connection succeeded: $out"
		rc=1
	}
	prom_expect "DENY at the destination" "sum(istio_tcp_connections_closed_total{reporter=\"destination\",source_workload=\"intruder\",destination_workload=\"protected\",response_flags=\"DENY\"})" 1 || rc=1
	prom_expect "DENY failure counted" "sum(istio_tcp_connections_failed_total{reporter=\"destination\",source_workload=\"intruder\",response_flags=\"DENY\"})" 1 || rc=1
	prom_expect "DENY at the source (the peer's 401)" "sum(istio_tcp_connections_closed_total{reporter=\"source\",source_workload=\"intruder\",response_flags=\"DENY\"})" 1 || rc=1
	return "$rc"
}

case_tcp_health() {
	local rc=0
	amb_tcp 1 1 abort "$N2P1" 7004 >/dev/null 2>&1
	prom_expect "sockops saw the client's RST" "sum(ambientd_tcp_resets_total{job=\"ambientd-node1\",pod=\"n1p1\"}) >= bool 1" 1 || rc=1
	prom_expect "RTT observations of closed connections" "sum(ambientd_tcp_srtt_seconds_count{job=\"ambientd-node1\",pod=\"n1p1\"}) >= bool 5" 1 || rc=1
	prom_expect "per-pod labels" "count(ambientd_tcp_connections_closed_total{job=\"ambientd-node1\",pod=\"n1p1\",workload=\"client\",namespace=\"default\"})" 1 || rc=1
	prom_expect "BPF verdicts by reason" "sum(ambientd_bpf_verdict_packets_total{job=\"ambientd-node1\",verdict=\"assign\",reason=\"assign_outbound\"}) >= bool 5" 1 || rc=1
	prom_expect "process fds" "sum(process_open_fds{job=\"ambientd-node2\"}) > bool 0" 1 || rc=1
	prom_expect "resident memory" "sum(process_resident_memory_bytes{job=\"ambientd-node2\"}) > bool 1000000" 1 || rc=1
	prom_expect "istio_build" "count(istio_build{component=\"ztunnel\"})" 2 || rc=1
	return "$rc"
}

# field LINE KEY: value of key=value in a text access log line (quotes off).
field() {
	sed -n "s/.* $2=\\(\"\\([^\"\\\\]\\|\\\\.\\)*\"\\|[^ ]*\\).*/\\1/p" <<<"$1" | sed 's/^"//; s/"$//'
}

case_access_log_text() {
	local rc=0 lines line
	lines=$(grep ' access connection complete ' "$(amb_daemon_log 1)" | grep " dst.hbone_addr=$N2P1:7001 " | grep "src.addr=$N1P1:")
	check_eq "text lines for the client's 5 sends" "$(grep -c . <<<"$lines")" 5 || rc=1
	line=$(head -1 <<<"$lines")
	diag "$line"
	check_eq "src.workload" "$(field "$line" src.workload)" n1p1 || rc=1
	check_eq "src.namespace" "$(field "$line" src.namespace)" default || rc=1
	check_eq "src.identity" "$(field "$line" src.identity)" "spiffe://$TD/ns/default/sa/sa-n1p1" || rc=1
	check_eq "dst.addr (the peer tunnel)" "$(field "$line" dst.addr)" "$N2P1:15008" || rc=1
	check_eq "dst.service" "$(field "$line" dst.service)" server.default.svc.cluster.local || rc=1
	check_eq "dst.workload" "$(field "$line" dst.workload)" n2p1 || rc=1
	check_eq "dst.identity" "$(field "$line" dst.identity)" "spiffe://$TD/ns/default/sa/sa-n2p1" || rc=1
	check_eq "direction" "$(field "$line" direction)" outbound || rc=1
	check_eq "bytes_sent" "$(field "$line" bytes_sent)" 100000 || rc=1
	check_eq "bytes_recv" "$(field "$line" bytes_recv)" 72 || rc=1
	check_eq "response_flags" "$(field "$line" response_flags)" - || rc=1
	[[ $(field "$line" duration) =~ ^[0-9]+ms$ ]] || { diag "duration: $(field "$line" duration)"; rc=1; }
	# The denied attempt, logged as a failure with its flag.
	line=$(grep ' access connection complete ' "$(amb_daemon_log 1)" | grep "src.addr=$N1P2:" | tail -1)
	check_eq "denied: response_flags" "$(field "$line" response_flags)" DENY || { diag "$line"; rc=1; }
	return "$rc"
}

case_access_log_json() {
	local rc=0 lines one
	lines=$(grep '^{' "$(amb_daemon_log 2)" | jq -c --arg d "$N2P1:7001" \
		'select(.scope == "access" and .["dst.hbone_addr"] == $d and .bytes_sent == 100000)')
	check_eq "JSON lines for the client's 5 sends" "$(grep -c . <<<"$lines")" 5 || rc=1
	one=$(head -1 <<<"$lines")
	diag "$one"
	check_eq "JSON fields" "$(jq -r '[.direction, .["src.workload"], .["src.identity"], .["dst.addr"], .["dst.workload"], .["dst.service"], .bytes_recv, .response_flags, (.duration_ms | type), .message] | join(" ")' <<<"$one")" \
		"inbound n1p1 spiffe://$TD/ns/default/sa/sa-n1p1 $N2P1:7001 n2p1 server.default.svc.cluster.local 72 - number connection complete" || rc=1
	one=$(grep '^{' "$(amb_daemon_log 2)" | jq -c --arg s "$N1P2" 'select(.scope == "access" and (.["src.addr"] | startswith($s + ":")))' | tail -1)
	check_eq "denied: flag and error" "$(jq -r '[.response_flags, .level, (.error | contains("deny-intruder"))] | join(" ")' <<<"$one")" "DENY error true" || { diag "$one"; rc=1; }
	return "$rc"
}

case_config_dump() {
	local rc=0 d
	d=$(admin 1 /config_dump)
	jq -e 'type == "object" and (.workloads | type) == "array" and (.services | type) == "array"
		and (.policies | type) == "array" and (.certificates | type) == "array"' <<<"$d" >/dev/null ||
		{ diag "top level: $(jq -c 'keys' <<<"$d")"; rc=1; }
	check_eq "workloads" "$(jq -r '[.workloads[].name] | sort | join(",")' <<<"$d")" "n1p1,n1p2,n1p4,n2p1,n2p2" || rc=1
	jq -e --arg ip "$N2P1" '.workloads[] | select(.name == "n2p1") |
		.uid == "cluster1//v1/Pod/default/n2p1" and .namespace == "default" and
		.serviceAccount == "sa-n2p1" and .workloadIps == [$ip] and .protocol == "HBONE" and
		.workloadName == "server" and .canonicalName == "server" and .canonicalRevision == "v2" and
		.trustDomain == "cluster.local" and .clusterId == "Kubernetes" and .status == "Healthy" and
		(.node | endswith("-n2")) and .services["default/server.default.svc.cluster.local"] == {"7001": 7001}' \
		<<<"$d" >/dev/null || { diag "workload: $(jq -c '.workloads[] | select(.name == "n2p1")' <<<"$d")"; rc=1; }
	jq -e '.services[0] | .name == "server" and .namespace == "default" and
		.hostname == "server.default.svc.cluster.local" and .vips == ["/198.18.100.10"] and
		.ports == {"7001": 7001} and (.endpoints["cluster1//v1/Pod/default/n2p1"].workloadUid == "cluster1//v1/Pod/default/n2p1")' \
		<<<"$d" >/dev/null || { diag "service: $(jq -c '.services[0]' <<<"$d")"; rc=1; }
	jq -e --arg p "$TD/ns/default/sa/sa-n1p2" '.policies[0] | .name == "deny-intruder" and .namespace == "default" and
		.scope == "Global" and .action == "Deny" and .dryRun == false and
		.rules == [[[{"principals": [{"Exact": $p}]}]]]' <<<"$d" >/dev/null ||
		{ diag "policy: $(jq -c '.policies[0]' <<<"$d")"; rc=1; }
	jq -e --arg id "spiffe://$TD/ns/default/sa/sa-n1p1" '.certificates[] | select(.identity == $id) |
		.state == "Available" and (.certChain[0].pem | startswith("-----BEGIN CERTIFICATE-----")) and
		(.certChain[0].serialNumber | length) == 32 and
		(.certChain[0].validFrom | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z$")) and
		(.certChain[0].expirationTime > .certChain[0].validFrom) and
		(.rootCerts[0].pem | startswith("-----BEGIN CERTIFICATE-----"))' <<<"$d" >/dev/null ||
		{ diag "certificate: $(jq -c '.certificates[0] | del(.certChain[].pem, .rootCerts[].pem)' <<<"$d")"; rc=1; }
	# The same serial the control socket reports.
	check_eq "serial agrees with ambientctl certificates" \
		"$(jq -r --arg id "spiffe://$TD/ns/default/sa/sa-n1p1" '.certificates[] | select(.identity == $id) | .certChain[0].serialNumber' <<<"$d")" \
		"$(amb_ctl 1 certificates -o json | jq -r --arg id "spiffe://$TD/ns/default/sa/sa-n1p1" '.[] | select(.identity == $id and .state == "active") | .serial')" || rc=1
	return "$rc"
}

case_ambientctl() {
	local rc=0 out j
	out=$(amb_ctl 1 workloads)
	diag "$out"
	head -1 <<<"$out" | grep -q '^NAMESPACE *POD NAME *ADDRESS *NODE *WAYPOINT *PROTOCOL$' || { diag "header"; rc=1; }
	for w in "n1p1 $N1P1" "n1p2 $N1P2" "n1p4 $N1P4" "n2p1 $N2P1" "n2p2 $N2P2"; do
		set -- $w
		grep -Eq "^default +$1 +$2 +\S+ +None +HBONE$" <<<"$out" || { diag "workloads: no row for $1 $2"; rc=1; }
	done
	j=$(amb_ctl 1 workloads -o json)
	check_eq "workloads -o json" "$(jq -r 'length' <<<"$j")" 5 || rc=1
	out=$(amb_ctl 1 services)
	diag "$out"
	grep -Eq '^default/server.default.svc.cluster.local +198.18.100.10 +7001>7001 +\S+ +198.18.2.11 +Healthy ' <<<"$out" || { diag "services row"; rc=1; }
	out=$(amb_ctl 2 certificates)
	diag "$out"
	grep -Eq "^spiffe://$TD/ns/default/sa/sa-n2p1 +Leaf +Available +true +[0-9a-f]{32} " <<<"$out" || { diag "certificates row"; rc=1; }
	grep -Eq "Root +Available +true" <<<"$out" || { diag "certificates root row"; rc=1; }
	check_eq "log-level" "$(amb_ctl 1 log-level)" debug || rc=1
	check_eq "log-level info" "$(amb_ctl 1 log-level info)" info || rc=1
	check_eq "log-level after set" "$(admin 1 /logging | jq -r .level)" info || rc=1
	amb_ctl 1 log-level verbose >/dev/null 2>&1 && { diag "log-level verbose accepted"; rc=1; }
	check_eq "POST /logging?level=bogus" "$(admin 1 '/logging?level=bogus' -o /dev/null -w '%{http_code}' -XPOST)" 400 || rc=1
	check_eq "POST /logging?level=debug" "$(admin 1 '/logging?level=debug' -XPOST | jq -r .level)" debug || rc=1
	# bpf: programs and their attach points, as the kernel has them.
	out=$(amb_ctl 1 bpf)
	diag "$out"
	j=$(amb_ctl 1 bpf -o json)
	check_eq "amb_tc_pod attached to the pods' veths" \
		"$(jq -r '.programs[] | select(.name == "amb_tc_pod") | [.attached[].target] | sort | join(",")' <<<"$j")" \
		"$(printf '%s\n' "$(amb_pod_veth 1 1)" "$(amb_pod_veth 1 2)" "$(amb_pod_veth 1 4)" | sort | paste -sd,)" || rc=1
	check_eq "amb_tc_inbound on the uplink and the non-mesh pod" \
		"$(jq -r '.programs[] | select(.name == "amb_tc_inbound") | [.attached[].target] | sort | join(",")' <<<"$j")" \
		"$(printf '%s\n' eth0 "$(amb_pod_veth 1 3)" | sort | paste -sd,)" || rc=1
	check_eq "amb_pods entries" "$(jq -r '.maps[] | select(.name == "amb_pods") | .entries' <<<"$j")" 3 || rc=1
	check_eq "counters agree with ambientctl counters" \
		"$(jq -r '.counters[] | select(.reason == "drop_spoofed") | .packets' <<<"$j")" \
		"$(amb_counter 1 drop_spoofed)" || rc=1
	return "$rc"
}

case_http_garbage() {
	local rc=0 st
	st=$(head -c 4096 /dev/urandom | amb_node_exec 1 timeout 5 socat -t 2 - TCP:127.0.0.1:15020 2>/dev/null | head -1 | tr -d '\r')
	case $st in "HTTP/1.1 400"*) ;; *) diag "garbage on 15020: '$st'"; rc=1 ;; esac
	check_eq "unknown path" "$(amb_node_exec 1 curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:15020/nope)" 404 || rc=1
	check_eq "POST /metrics" "$(amb_node_exec 1 curl -s -o /dev/null -w '%{http_code}' -XPOST http://127.0.0.1:15020/metrics)" 405 || rc=1
	check_eq "GET /quitquitquit" "$(admin 1 /quitquitquit -o /dev/null -w '%{http_code}')" 405 || rc=1
	kill -0 "${AMB_DAEMON_PID[1]}" || { diag "daemon died"; return 1; }
	metrics 1 | grep -q '^istio_build' || { diag "metrics not served after garbage"; rc=1; }
	return "$rc"
}

case_ready_certificate() {
	local rc=0 r
	r=$(ready 1)
	check_eq "ready before" "$r" "ready
 200" || rc=1
	# A node-1 workload whose service account cannot form a SPIFFE ID:
	# no certificate can exist for it.
	apply_config <<EOF
- uid: cluster1//v1/Pod/default/broken
  name: broken
  namespace: default
  serviceAccount: "bad sa"
  workloadIps: ["$N1P3"]
  protocol: HBONE
  node: $(amb_node_name 1)
EOF
	wait_for 5 ready_is 1 503 || rc=1
	r=$(ready 1)
	diag "$r"
	grep -q "no certificate for workload default/broken" <<<"$r" || { diag "503 without the reason"; rc=1; }
	check_eq "config_dump marks it unavailable" \
		"$(admin 1 /config_dump | jq -r '.certificates[] | select(.identity | endswith("/sa/bad sa")) | .state')" \
		"Unavailable: not a valid SPIFFE identity" || rc=1
	apply_config </dev/null
	wait_for 5 ready_is 1 200 || { diag "not ready again after the fix: $(ready 1)"; rc=1; }
	return "$rc"
}

case_ready_program() {
	local rc=0 r veth
	veth=$(amb_pod_veth 1 1)
	amb_node_exec 1 tc filter del dev "$veth" ingress pref 7 || return 1
	r=$(ready 1)
	diag "$r"
	case $r in *"amb_tc_pod is not attached to $veth"*" 503") ;; *) rc=1 ;; esac
	# A reload re-attaches what is missing.
	kill -HUP "${AMB_DAEMON_PID[1]}"
	wait_for 5 ready_is 1 200 || { diag "not ready after SIGHUP: $(ready 1)"; rc=1; }
	return "$rc"
}

LISTENER_SKIP=""

case_ready_listener() {
	local rc=0 r
	# Destroy node 1's 15006 listener from outside (SOCK_DESTROY).
	local out left before i
	before=$(amb_node_exec 1 ss -Hltn 'sport = :15006' | grep -c LISTEN)
	# One dump may skip a SO_REUSEPORT sibling of a socket it destroyed.
	for i in 1 2 3 4 5; do
		out=$(amb_node_exec 1 ss -K -tl 'sport = :15006' 2>&1)
		left=$(amb_node_exec 1 ss -Hltn 'sport = :15006')
		[ -z "$left" ] && break
	done
	if [ "$(grep -c LISTEN <<<"$left")" -ge "$before" ]; then
		diag "ss -K: $out"
		diag "still listening: $left"
		LISTENER_SKIP=1
		return 0
	fi
	r=$(ready 1)
	diag "$r"
	case $r in *"listener 15006 (inbound) of worker "*" is not listening"*" 503") ;; *) rc=1 ;; esac
	kill -0 "${AMB_DAEMON_PID[1]}" || { diag "daemon died"; rc=1; }
	# The loop must not spin on the dead listener.
	sleep 1
	local cpu
	cpu=$(ps -o %cpu= -p "${AMB_DAEMON_PID[1]}" | tr -d ' ')
	diag "ambientd CPU after the listener died: $cpu%"
	# Restart: listeners back, ready again.
	amb_daemon_stop 1 && amb_daemon_start 1 "$CONF" --access-log text || rc=1
	wait_for 5 ready_is 1 200 || { diag "not ready after restart: $(ready 1)"; rc=1; }
	return "$rc"
}

case_quitquitquit() {
	local rc=0 pid held t0 out st line
	# A connection that will outlive the deadline (6 s): idle, never closed.
	amb_pod_bg 1 4 "$AMB_WORK/held.log" sh -c "sleep 60 | nc $N2P1 7002"
	held=$AMB_LAST_PID
	# A transfer of ~3 s (3 MiB at 1 MiB/s) that finishes inside it.
	amb_pod_bg 1 1 "$AMB_WORK/paced.log" timeout 30 "$TCPTOOL" client send "$N2P1" 7001 \
		--bytes 3M --rate 1M --timeout 20000
	pid=$AMB_LAST_PID
	sleep 1
	t0=$(date +%s.%N)
	out=$(admin 2 /quitquitquit -XPOST)
	check_eq "/quitquitquit answer" "$out" OK || rc=1
	st=$(ready 2)
	case $st in *"draining"*" 503") ;; *) diag "readiness while draining: $st"; rc=1 ;; esac
	# New connections are refused while it drains.
	amb_tcp 1 1 whoami "$N2P1" 7002 --timeout 3000 >/dev/null 2>&1 && { diag "new connection accepted while draining"; rc=1; }
	wait "$pid"
	st=$?
	diag "$(cat "$AMB_WORK/paced.log")"
	check_eq "transfer during the drain" "$st" 0 || rc=1
	grep -q '^ok: sent 3145728 bytes' "$AMB_WORK/paced.log" || rc=1
	# The daemon leaves by itself once the deadline cut the held one.
	wait_for 12 gone "${AMB_DAEMON_PID[2]}" || { diag "daemon still running"; rc=1; }
	wait "${AMB_DAEMON_PID[2]}"
	check_eq "daemon exit status" "$?" 0 || rc=1
	diag "drain took $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
	unset "AMB_DAEMON_PID[2]"
	line=$(grep '^{' "$(amb_daemon_log 2)" | jq -c 'select(.scope == "access" and .bytes_sent == 3145728)' | tail -1)
	check_eq "finished transfer's flag" "$(jq -r .response_flags <<<"$line")" - || { diag "$line"; rc=1; }
	line=$(grep '^{' "$(amb_daemon_log 2)" | jq -c --arg d "$N2P1:7002" --arg s "$N1P4" \
		'select(.scope == "access" and .["dst.addr"] == $d and (.["src.addr"] | startswith($s + ":")))' | tail -1)
	check_eq "held connection cut at the deadline" "$(jq -r .response_flags <<<"$line")" DRAIN || { diag "$line"; rc=1; }
	kill "$held" 2>/dev/null
	return "$rc"
}

case_bpf_daemon_down() {
	local j rc=0
	[ -z "${AMB_DAEMON_PID[2]:-}" ] || { diag "node 2 daemon still up"; return 1; }
	j=$(amb_ctl 2 bpf -o json) || { diag "ambientctl bpf failed with the daemon down"; return 1; }
	check_eq "programs still attached (fail closed)" \
		"$(jq -r '.programs[] | select(.name == "amb_tc_pod") | .attached | length' <<<"$j")" 2 || rc=1
	amb_ctl 2 bpf | diag
	amb_ctl 2 workloads >/dev/null 2>&1 && { diag "workloads answered without a daemon"; rc=1; }
	amb_ctl 2 workloads 2>&1 | grep -q "no ambientd admin API" || rc=1
	return "$rc"
}

if ! setup; then
	tap_fail "setup"
	tap_done
fi
tap_ok "operator ports: 15020/15021 on all addresses, 15000 on loopback only; 0.0.4 content type" case_ports
tap_ok "Prometheus scrapes both nodes (/metrics and /stats/prometheus)" case_targets_up
tap_ok "promtool check metrics accepts both pages" case_promtool
tap_ok "PromQL: opened/closed/bytes per source/destination workload and reporter, full label set" case_traffic_metrics
tap_ok "ztunnel's label names in ztunnel's order" case_label_order
tap_ok "bytes counted as they flow on an open connection; ambientctl connections shows it" case_bytes_as_they_flow
tap_ok "denied connection: response_flags DENY at both reporters" case_deny
tap_ok "sockops TCP health (resets, RTT histogram), BPF verdicts, process metrics, istio_build" case_tcp_health
tap_ok "text access log parsed field by field" case_access_log_text
tap_ok "JSON access log parsed field by field" case_access_log_json
tap_ok "/config_dump has ztunnel's shape and the live state" case_config_dump
tap_ok "ambientctl workloads/services/certificates/log-level/bpf agree with the live state" case_ambientctl
tap_ok "HTTP garbage and wrong methods get 400/404/405; the daemon keeps serving" case_http_garbage
tap_ok "readiness 503 while a local workload has no certificate, 200 once fixed" case_ready_certificate
tap_ok "readiness 503 while a pod veth lacks its program, 200 after re-attach" case_ready_program
if case_ready_listener; then lrc=0; else lrc=1; fi
if [ -n "$LISTENER_SKIP" ]; then
	tap_skip "readiness 503 when a listener is destroyed" "ss -K cannot destroy sockets here (kernel without CONFIG_INET_DIAG_DESTROY)"
elif [ "$lrc" -eq 0 ]; then
	tap_pass "readiness 503 when a listener is destroyed (ss -K), 200 after restart"
else
	tap_fail "readiness 503 when a listener is destroyed (ss -K), 200 after restart"
fi
tap_ok "/quitquitquit: a transfer inside the deadline completes, the rest is cut, the daemon exits" case_quitquitquit
tap_ok "ambientctl bpf works from the pins with the daemon down" case_bpf_daemon_down
tap_done
