#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
#
# Capture and relay: two nodes, one ambientd each. The server always sees the
# real client IP; bytes arrive intact (1 GiB sha256); 500 concurrent
# connections; FIN and RST cross the tunnel in both directions; pods outside
# the mesh move no counter; spoofed sources are dropped; excluded ports pass;
# sockops tracks live pod sockets.
#
#   node 1: p1, p2 enrolled; p3, p4 not in the mesh
#   node 2: p1 enrolled;     p2 not in the mesh
set -u
. "$(dirname "$0")/lib.sh"

amb_require daemon jq curl socat iperf3
amb_init "c$$"

N1P1=$(amb_pod_ip 1 1) N1P2=$(amb_pod_ip 1 2) N1P3=$(amb_pod_ip 1 3) N1P4=$(amb_pod_ip 1 4)
N2P1=$(amb_pod_ip 2 1) N2P2=$(amb_pod_ip 2 2)
EXCLUDED_PORT=9999

# The whoami server closes first, so the tunnel's side of each connection
# ends in TIME_WAIT (60 s) under the pod's 4-tuple. A second connection from
# the same source port must still get through: tc hands its SYN to the
# TIME_WAIT socket, the pod resets the ACK that socket answers with, and the
# SYN's retransmission finds the listener (bpf/lib/verdict.h lookup_flow()).
# Before that, the SYN was assigned to the listener, collided with the
# TIME_WAIT socket and vanished, every time, for a minute.
case_time_wait_reuse() {
	local rc=0 i out t0 ms tw
	tw=$(amb_counter 1 deliver_time_wait)
	for i in 1 2; do
		t0=$(date +%s%N)
		out=$(amb_pod_run 1 1 timeout 5 socat -u \
			"TCP:$N2P1:7000,sourceport=45123,reuseaddr,connect-timeout=5" - 2>&1)
		ms=$((($(date +%s%N) - t0) / 1000000))
		diag "connection $i from port 45123: '$out' after $ms ms"
		check_eq "connection $i: the server saw" "${out%%:*}" "$N1P1" || rc=1
		[ "$ms" -lt 3000 ] || rc=1
	done
	[ "$(amb_counter 1 deliver_time_wait)" -gt "$tw" ] ||
		{ diag "deliver_time_wait did not move"; rc=1; }
	return "$rc"
}

setup() {
	amb_node 1 && amb_node 2 &&
		amb_pod 1 1 && amb_pod 1 2 && amb_pod 1 3 && amb_pod 1 4 &&
		amb_pod 2 1 && amb_pod 2 2 || return 1
	amb_config "$AMB_WORK/mesh.yaml" 1:1 1:2 2:1
	# Servers: whoami everywhere; the rest on n2p1 (cross-node) and n1p2
	# (same node).
	local pod port
	for pod in "1 1" "1 2" "1 3" "1 4" "2 1" "2 2"; do
		# shellcheck disable=SC2086
		amb_server $pod 7000 whoami || return 1
	done
	for pod in "2 1" "1 2"; do
		# shellcheck disable=SC2086
		{
			amb_server $pod 7001 sink &&
				amb_server $pod 7003 source --bytes 8M --seed 7 &&
				amb_server $pod 7004 expect-rst &&
				amb_server $pod 7005 abort
		} || return 1
	done
	amb_server 2 1 7002 echo || return 1  # 500 concurrent
	amb_server 2 1 7010 echo || return 1  # held connection for `sockets`
	amb_server 2 1 "$EXCLUDED_PORT" whoami || return 1
	amb_server 2 2 7001 sink || return 1
	amb_server 2 2 "$EXCLUDED_PORT" whoami || return 1
	# A tiny HTTP responder for curl: reads the request, answers with the
	# address it saw (socat exports it as SOCAT_PEERADDR).
	cat >"$AMB_WORK/http.sh" <<'EOF2'
while read -r l; do [ "${#l}" -le 1 ] && break; done
printf 'HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello from n2p1, you are %s\n' "$SOCAT_PEERADDR"
EOF2
	amb_pod_bg 2 1 "$AMB_WORK/http.log" socat TCP-LISTEN:8080,reuseaddr,fork \
		EXEC:"/bin/sh $AMB_WORK/http.sh"
	amb_wait_listen "$(amb_pod_ns 2 1)" 8080 5 || return 1
	amb_daemon_start 1 "$AMB_WORK/mesh.yaml" --exclude-port "$EXCLUDED_PORT" \
		--exclude-inbound-port "$EXCLUDED_PORT" &&
		amb_daemon_start 2 "$AMB_WORK/mesh.yaml" --exclude-port "$EXCLUDED_PORT" \
			--exclude-inbound-port "$EXCLUDED_PORT"
}

# Waits until node N's counters stop moving (0.5 s apart), up to 5 s, and
# prints them.
quiet_counters() {
	local n=$1 prev cur tries=10
	prev=$(amb_counters_json "$n")
	while [ "$tries" -gt 0 ]; do
		sleep 0.5
		cur=$(amb_counters_json "$n")
		[ "$cur" = "$prev" ] && break
		prev=$cur
		tries=$((tries - 1))
	done
	echo "$cur"
}

# --- 1: real client IP -------------------------------------------------------

# whoami_case CLIENT-N CLIENT-I DST-N DST-I: the server sees the client's own
# IP, and the expected daemons captured the connection: the client's node
# on the way out (if the client is enrolled), the server's node on the way in
# (if the client is not enrolled or the nodes differ).
whoami_case() {
	local cn=$1 ci=$2 sn=$3 si=$4 out_node=$5 in_node=$6 rc=0 seen
	local -A before after
	before[1]=$(amb_counters_json 1)
	before[2]=$(amb_counters_json 2)
	seen=$(amb_whoami "$cn" "$ci" "$(amb_pod_ip "$sn" "$si")" 7000)
	after[1]=$(amb_counters_json 1)
	after[2]=$(amb_counters_json 2)
	check_eq "address the server saw" "$seen" "$(amb_pod_ip "$cn" "$ci")" || rc=1
	if [ -n "$out_node" ]; then
		expect_delta "node$out_node" "${before[$out_node]}" "${after[$out_node]}" \
			assign_outbound -ge 1 || rc=1
	fi
	if [ -n "$in_node" ]; then
		expect_delta "node$in_node" "${before[$in_node]}" "${after[$in_node]}" \
			assign_inbound -ge 1 || rc=1
	fi
	return "$rc"
}

# --- 6: pods outside the mesh -------------------------------------------------

# Cross-node and same-node traffic between non-enrolled pods (including bulk
# data) leaves every counter of both nodes exactly as it was.
case_non_mesh_untouched() {
	local b1 b2 a1 a2 rc=0 seen
	b1=$(quiet_counters 1)
	b2=$(quiet_counters 2)
	seen=$(amb_whoami 1 3 "$N2P2" 7000)
	check_eq "n1p3 -> n2p2 server saw" "$seen" "$N1P3" || rc=1
	seen=$(amb_whoami 2 2 "$N1P3" 7000)
	check_eq "n2p2 -> n1p3 server saw" "$seen" "$N2P2" || rc=1
	seen=$(amb_whoami 1 4 "$N1P3" 7000)
	check_eq "n1p4 -> n1p3 server saw" "$seen" "$N1P4" || rc=1
	amb_tcp 1 3 send "$N2P2" 7001 --bytes 16M | diag || rc=1
	sleep 1 # let FIN/ACKs of these connections pass too
	a1=$(amb_counters_json 1)
	a2=$(amb_counters_json 2)
	if [ -z "$b1" ] || [ -z "$b2" ]; then
		diag "counters unavailable (ambientctl counters -o json)"
		return 1
	fi
	if [ "$b1" != "$a1" ]; then
		diag "node 1 counters moved:"
		diag "before: $b1"
		diag "after:  $a1"
		rc=1
	fi
	if [ "$b2" != "$a2" ]; then
		diag "node 2 counters moved:"
		diag "before: $b2"
		diag "after:  $a2"
		rc=1
	fi
	return "$rc"
}

# --- natural user tools --------------------------------------------------------

case_curl() {
	local body b1 rc=0
	b1=$(amb_counters_json 1)
	body=$(amb_pod_run 1 1 curl -sS --max-time 10 "http://$N2P1:8080/" 2>&1) || {
		diag "curl failed: $body"
		return 1
	}
	diag "curl: $body"
	check_eq "HTTP body" "$body" "hello from n2p1, you are $N1P1" || rc=1
	expect_delta node1 "$b1" "$(amb_counters_json 1)" assign_outbound -ge 1 || rc=1
	return "$rc"
}

case_iperf3() {
	local json bps b1 rc=0
	amb_pod_bg 2 1 "$AMB_WORK/iperf3-server.log" iperf3 -s -1 -p 5201
	amb_wait_listen "$(amb_pod_ns 2 1)" 5201 5 || {
		diag "iperf3 server did not start"
		return 1
	}
	b1=$(amb_counters_json 1)
	json=$(amb_pod_run 1 1 timeout 30 iperf3 -c "$N2P1" -p 5201 -t 3 -J 2>&1)
	bps=$(jq -r '.end.sum_received.bits_per_second // 0 | floor' <<<"$json" 2>/dev/null)
	if ! is_num "$bps" || [ "$bps" -le 0 ]; then
		diag "iperf3 reported no throughput:"
		head -c 2000 <<<"$json" | diag
		return 1
	fi
	diag "iperf3 cross-node through ambientd: $((bps / 1000000)) Mbit/s"
	expect_delta node1 "$b1" "$(amb_counters_json 1)" assign_outbound -ge 2 || rc=1
	return "$rc"
}

# --- 2: bulk integrity ---------------------------------------------------------

case_gib() {
	local out rc=0 b1
	b1=$(amb_counters_json 1)
	out=$(AMB_TCP_LIMIT=240 amb_tcp 1 1 send "$N2P1" 7001 --bytes 1G --seed 42 --timeout 30000 2>&1) || rc=1
	diag "$out"
	# The sink logs the peer it saw and what it hashed.
	grep -F "sink $N1P1:" "$(amb_server_log 2 1 7001)" | tail -1 | diag
	grep -qF "sink $N1P1:" "$(amb_server_log 2 1 7001)" || {
		diag "sink did not see $N1P1"
		rc=1
	}
	expect_delta node1 "$b1" "$(amb_counters_json 1)" assign_outbound -ge 1 || rc=1
	return "$rc"
}

# --- 3: concurrency --------------------------------------------------------------

case_many() {
	local out rc=0 peak
	out=$(AMB_TCP_LIMIT=90 amb_tcp 1 1 many "$N2P1" 7002 --count 500 --timeout 60000 2>&1) || rc=1
	diag "$out"
	# Threads print "peak N" lines out of order: take the largest.
	peak=$(awk '$1 == "peak" && $2 > p {p = $2} END {print p + 0}' "$(amb_server_log 2 1 7002)")
	diag "echo server saw $peak connections open at once"
	[ "$peak" -ge 500 ] || {
		diag "expected 500 simultaneous connections at the server"
		rc=1
	}
	return "$rc"
}

# --- 4: half-close -----------------------------------------------------------------

# Client sends 8 MiB then FIN; the server answers after seeing EOF.
case_half_close_c2s() {
	local out
	out=$(amb_tcp 1 1 send "$(amb_pod_ip "$1" "$2")" 7001 --bytes 8M --seed 3 2>&1)
	local rc=$?
	diag "$out"
	return "$rc"
}

# Server sends 8 MiB then FIN; the client reports back after seeing EOF and
# the server checks the report.
case_half_close_s2c() {
	local out rc=0 log
	log=$(amb_server_log "$1" "$2" 7003)
	out=$(amb_tcp 1 1 recv "$(amb_pod_ip "$1" "$2")" 7003 --bytes 8M --seed 7 2>&1) || rc=1
	diag "client: $out"
	if ! wait_log "$log" "^source $N1P1:[0-9]+ (ok|FAIL)" 5; then
		diag "server logged no result"
		rc=1
	fi
	grep -E "^source $N1P1:" "$log" | tail -1 | diag
	grep -E "^source $N1P1:" "$log" | tail -1 | grep -q " ok:" || rc=1
	return "$rc"
}

# --- 5: RST -------------------------------------------------------------------------

# Client resets after the server said ready; the server must read ECONNRESET.
case_rst_c2s() {
	local out rc=0 log
	log=$(amb_server_log "$1" "$2" 7004)
	out=$(amb_tcp 1 1 abort "$(amb_pod_ip "$1" "$2")" 7004 2>&1) || rc=1
	diag "client: $out"
	if ! wait_log "$log" "^expect-rst $N1P1:[0-9]+ (ok|FAIL)" 10; then
		diag "server observed nothing within 10 s"
		rc=1
	fi
	grep -E "^expect-rst $N1P1:" "$log" | tail -1 | diag
	grep -E "^expect-rst $N1P1:" "$log" | tail -1 | grep -q " ok:" || rc=1
	return "$rc"
}

# The server resets after hello; the client must read ECONNRESET.
case_rst_s2c() {
	local out rc
	out=$(amb_tcp 1 1 expect-rst "$(amb_pod_ip "$1" "$2")" 7005 2>&1)
	rc=$?
	diag "client: $out"
	return "$rc"
}

# --- 7: spoofing ----------------------------------------------------------------------

case_spoofed() {
	local spoof=198.18.1.99 b1 a1 out rc=0 st
	ip -n "$(amb_pod_ns 1 1)" addr add "$spoof/32" dev eth0
	b1=$(amb_counters_json 1)
	out=$(amb_tcp 1 1 connect "$N2P1" 7000 --bind "$spoof" --timeout 3000 2>&1)
	st=$?
	a1=$(amb_counters_json 1)
	ip -n "$(amb_pod_ns 1 1)" addr del "$spoof/32" dev eth0
	diag "connect from $spoof: $(echo $out)"
	if [ "$st" -eq 0 ]; then
		diag "a connection with a spoofed source was established"
		rc=1
	fi
	if grep -qF "whoami $spoof:" "$(amb_server_log 2 1 7000)"; then
		diag "the server accepted a connection from $spoof"
		rc=1
	fi
	expect_delta node1 "$b1" "$a1" drop_spoofed -ge 1 || rc=1
	return "$rc"
}

# --- 13: excluded port -------------------------------------------------------------------

# Outbound: node 1 lets the pod's SYN to the excluded port pass.
case_excluded_port_out() {
	local b1 a1 seen rc=0
	b1=$(amb_counters_json 1)
	seen=$(amb_whoami 1 1 "$N2P2" "$EXCLUDED_PORT")
	a1=$(amb_counters_json 1)
	check_eq "address the server saw" "$seen" "$N1P1" || rc=1
	expect_delta node1 "$b1" "$a1" pass_excluded -ge 1 || rc=1
	expect_delta node1 "$b1" "$a1" assign_outbound -eq 0 || rc=1
	return "$rc"
}

# Inbound: node 2 does not capture a connection to its enrolled pod's
# --exclude-inbound-port (Istio's excludeInboundPorts, e.g. SSH into pods).
case_excluded_port_in() {
	local b2 a2 seen rc=0
	b2=$(amb_counters_json 2)
	seen=$(amb_whoami 1 3 "$N2P1" "$EXCLUDED_PORT")
	a2=$(amb_counters_json 2)
	check_eq "address the server saw" "$seen" "$N1P3" || rc=1
	expect_delta node2 "$b2" "$a2" assign_inbound -eq 0 || rc=1
	expect_delta node2 "$b2" "$a2" pass_excluded -ge 1 || rc=1
	return "$rc"
}

# --- 14: sockops ------------------------------------------------------------------------------

case_sockets() {
	local log="$AMB_WORK/hold.log" out rc=0 pid
	amb_pod_bg 1 1 "$log" timeout 30 "$TCPTOOL" client hold "$N2P1" 7010 --timeout 30000
	pid=$AMB_LAST_PID
	if ! wait_log "$log" '^connected from' 5; then
		diag "held connection did not come up: $(cat "$log")"
		kill "$pid" 2>/dev/null
		return 1
	fi
	sleep 0.3
	out=$(amb_ctl 1 sockets 2>&1)
	echo "$out" | head -20 | diag
	# The pod's own socket: local n1p1, remote n2p1:7010.
	if ! echo "$out" | grep -F "$N1P1" | grep -F "$N2P1" | grep -qw 7010; then
		diag "no tracked socket $N1P1 -> $N2P1:7010 in 'ambientctl sockets'"
		rc=1
	fi
	kill "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	return "$rc"
}

if ! setup; then
	tap_fail "topology and daemons come up"
	tap_done
fi

# Non-mesh first, while nothing else moves the counters.
tap_ok "non-enrolled pods (cross-node, same-node, 16 MiB) move no counter" case_non_mesh_untouched
tap_ok "cross-node: server sees the real client IP (both daemons captured)" whoami_case 1 1 2 1 1 2
tap_ok "same-node: server sees the real client IP (captured)" whoami_case 1 1 1 2 1 ""
tap_ok "non-mesh client on another node -> enrolled pod via 15006 sees real IP" whoami_case 2 2 1 1 "" 1
tap_ok "non-mesh client on the same node -> enrolled pod via 15006 sees real IP" whoami_case 1 3 1 1 "" 1
tap_ok "enrolled client -> non-mesh pod on another node sees real IP" whoami_case 1 2 2 2 1 ""
tap_ok "curl to an HTTP server across nodes" case_curl
tap_ok "iperf3 across nodes (3 s smoke)" case_iperf3
tap_ok "1 GiB cross-node, sha256 verified end to end" case_gib
tap_ok "500 concurrent cross-node connections, each verified" case_many
tap_ok "half-close client->server, cross-node" case_half_close_c2s 2 1
tap_ok "half-close server->client, cross-node" case_half_close_s2c 2 1
tap_ok "half-close client->server, same node" case_half_close_c2s 1 2
tap_ok "half-close server->client, same node" case_half_close_s2c 1 2
tap_ok "RST client->server reaches the server, cross-node" case_rst_c2s 2 1
tap_ok "RST server->client reaches the client, cross-node" case_rst_s2c 2 1
tap_ok "RST client->server reaches the server, same node" case_rst_c2s 1 2
tap_ok "RST server->client reaches the client, same node" case_rst_s2c 1 2
tap_ok "source port reused while the tunnel's side is in TIME_WAIT: connects within a second or two" case_time_wait_reuse
tap_ok "spoofed source from an enrolled pod is dropped and counted" case_spoofed
tap_ok "excluded port $EXCLUDED_PORT: enrolled pod's outbound passes untouched" case_excluded_port_out
tap_ok "excluded port $EXCLUDED_PORT: inbound to an enrolled pod passes untouched" case_excluded_port_in
tap_ok "ambientctl sockets shows a live pod connection" case_sockets
tap_ok "daemons still running after all cases" kill -0 "${AMB_DAEMON_PID[1]}" "${AMB_DAEMON_PID[2]}"
tap_done
