#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
#
# Faults on a two-node HBONE mesh: a daemon killed with SIGKILL mid-transfer
# (source node, then destination node), the peer's daemon frozen with
# SIGSTOP (the pooled connection must die by the PING timeout), and an
# underlay with 5 % loss and 50 ms one-way delay (netimpair between the two
# nodes' bridge ports: this kernel has no netem).
#
#   node 1: p1, p2 enrolled (HBONE), the clients
#   node 2: p1 enrolled (HBONE), the servers: whoami 7000, sink 7001,
#           7003 sends 256 MiB paced at 32 MiB/s (still flowing when a
#           daemon dies), 7004 sends $LOSSY_BYTES as fast as it can
#
# About 70 s on the 2-CPU dev VM, 30 of them waiting for the PING timeout.
# AMB_FAULTS_LONG=1 runs the loss case with the issue's full 256 MiB in
# each direction (see lossy_size).
set -u
. "$(dirname "$0")/lib.sh"

NETIMPAIR=${NETIMPAIR:-$AMB_SRC_ROOT/build/tests/tools/netimpair}

amb_require daemon jq curl bpftool
[ -x "$NETIMPAIR" ] || skip_all "netimpair not built ($NETIMPAIR)"
[ -c /dev/net/tun ] || skip_all "no /dev/net/tun (TUN/TAP driver)"
amb_init "fa$$"

N1P1=$(amb_pod_ip 1 1) N1P2=$(amb_pod_ip 1 2) N2P1=$(amb_pod_ip 2 1)
UL="$P-ul"

setup() {
	amb_node 1 && amb_node 2 && amb_pod 1 1 && amb_pod 1 2 && amb_pod 2 1 || return 1
	lossy_size
	AMB_PROTOCOL=HBONE amb_config "$AMB_WORK/mesh.yaml" 1:1 1:2 2:1
	amb_server 2 1 7000 whoami &&
		amb_server 2 1 7001 sink &&
		amb_server 2 1 7003 source --bytes 256M --rate 32M --seed 3 &&
		amb_server 2 1 7004 source --bytes "$LOSSY_BYTES" --seed 4 || return 1
	amb_daemon_start 1 "$AMB_WORK/mesh.yaml" && amb_daemon_start 2 "$AMB_WORK/mesh.yaml"
}

# ---------------------------------------------------------------- helpers

# SIGKILL node N's daemon and reap it (lib.sh forgets it: amb_daemon_start
# starts a new one with the same node name, pins and state).
daemon_kill9() {
	local n=$1 pid=${AMB_DAEMON_PID[$1]}
	echo "=== $(date +%T) SIGKILL (test_faults)" >>"$(amb_daemon_log "$n")"
	kill -KILL "$pid"
	wait "$pid" 2>/dev/null
	unset "AMB_DAEMON_PID[$n]"
}

# Bytes node N's tunnel relayed so far on the connection from SRC to DST
# (ip:port), both directions summed; empty if there is no such connection.
conn_bytes() {
	amb_ctl "$1" connections -o json 2>/dev/null |
		jq -r --arg s "$2" --arg d "$3" \
			'[.[] | select((.src | startswith($s + ":")) and .dst == $d) |
			 (.bytes_sent + .bytes_recv)] | add // empty' 2>/dev/null
}

# conn_flowing N SRC DST: the connection has carried more than 4 MiB.
conn_flowing() {
	local b
	b=$(conn_bytes "$@")
	is_num "${b%.*}" && [ "${b%.*}" -gt 4194304 ]
}

# status N JQ-PATH: a field of `ambientctl status`.
status() {
	amb_ctl "$1" status | jq -r "$2"
}

# A client's output says it saw the connection reset (ECONNRESET, or EPIPE
# after the reset), and it ended by itself: no timeout, no clean end.
expect_reset() { # WHAT LOG
	local out
	out=$(cat "$2")
	diag "$1: $(tr "\n" " " <<<"$out")"
	if grep -qE "reset by peer|Broken pipe" <<<"$out"; then
		return 0
	fi
	if grep -q "timed out" <<<"$out"; then
		diag "$1: hung until its own timeout instead of seeing a reset"
	elif grep -q "received .* expected" <<<"$out"; then
		diag "$1: clean EOF with bytes missing instead of a reset"
	else
		diag "$1: expected 'Connection reset by peer'"
	fi
	return 1
}

# wait_exit SECONDS PID: until PID exited (then reaped); 1 if still running.
wait_exit() {
	local tries=$(($1 * 10))
	while kill -0 "$2" 2>/dev/null; do
		tries=$((tries - 1))
		[ "$tries" -gt 0 ] || return 1
		sleep 0.1
	done
	wait "$2" 2>/dev/null
	return 0
}

# Node 1's enrollment state: the tc filter on each enrolled pod's veth
# (slot and program, with the program's id when $1 is "ids"), the ids of the
# pinned maps that hold the pods and the counters, and `ambientctl pods`.
# A restarted daemon atomically replaces the programs (DESIGN §12: new ids,
# no gap), but the slots, maps and pods must be the very same objects.
enrollment() {
	local i f
	for i in 1 2; do
		tc -n "$(amb_node_ns 1)" filter show dev "$(amb_pod_veth 1 "$i")" ingress |
			grep -o 'pref [0-9]* bpf chain 0 handle [0-9a-fx]* [a-z_]*\(:\[[0-9]*\]\)\?' |
			if [ "${1:-}" = ids ]; then cat; else sed 's/:\[[0-9]*\]$//'; fi
	done
	for f in amb_pods amb_counters; do
		echo "$f map id $(bpftool -j map show pinned "$(amb_pin_dir 1)/$f" 2>/dev/null | jq -r .id)"
	done
	amb_ctl 1 pods -o json 2>/dev/null | jq -cS .
}

# ---------------------------------------------------------------- cases

case_baseline() {
	check_eq "address n2p1 saw" "$(amb_whoami 1 1 "$N2P1" 7000)" "$N1P1"
}

# Transfers that are running through both tunnels when a daemon dies: p1
# sends to the sink, p2 reads from 7003, both paced (8 s for all of it) and
# flowing (4 MiB moved) before this returns. A hang shows as their 10 s I/O
# timeout.
start_transfers() {
	rm -f "$AMB_WORK/send.log" "$AMB_WORK/recv.log"
	amb_pod_bg 1 1 "$AMB_WORK/send.log" timeout 60 "$TCPTOOL" client send \
		"$N2P1" 7001 --bytes 256M --rate 32M --timeout 10000
	SEND_PID=$AMB_LAST_PID
	amb_pod_bg 1 2 "$AMB_WORK/recv.log" timeout 60 "$TCPTOOL" client recv \
		"$N2P1" 7003 --bytes 256M --seed 3 --timeout 10000
	RECV_PID=$AMB_LAST_PID
	wait_for 10 conn_flowing 1 "$N1P1" "$N2P1:7001" &&
		wait_for 10 conn_flowing 1 "$N1P2" "$N2P1:7003" || {
		diag "transfers not flowing: node 1 connections:"
		amb_ctl 1 connections 2>&1 | diag
		return 1
	}
}

# The sink logged more than N verdicts ("sink PEER ..." lines).
sink_reported_after() {
	[ "$(grep -c '^sink ' "$(amb_server_log 2 1 7001)")" -gt "$1" ]
}

# kill -9 node K's daemon mid-transfer: both pods' connections are reset
# at once (no hang, no clean EOF with bytes missing), and so is the sink's
# (a FIN there would pass a truncated stream off as complete).
kill_mid_transfer() {
	local k=$1 rc=0 t0 dt sink_before
	sink_before=$(grep -c '^sink ' "$(amb_server_log 2 1 7001)")
	start_transfers || return 1
	t0=$(date +%s%N)
	daemon_kill9 "$k"
	wait_exit 5 "$SEND_PID" && wait_exit 5 "$RECV_PID" || {
		diag "a client was still running 5 s after the SIGKILL"
		rc=1
	}
	dt=$((($(date +%s%N) - t0) / 1000000))
	diag "clients ended ${dt} ms after the SIGKILL of node $k's daemon"
	expect_reset "sending pod" "$AMB_WORK/send.log" || rc=1
	expect_reset "receiving pod" "$AMB_WORK/recv.log" || rc=1
	# The sink's verdict on its half: a reset, never a clean end.
	wait_for 5 sink_reported_after "$sink_before"
	diag "sink: $(grep '^sink ' "$(amb_server_log 2 1 7001)" | tail -1)"
	grep '^sink ' "$(amb_server_log 2 1 7001)" | tail -1 | grep -q "FAIL: read error" || {
		diag "the sink did not see its connection reset"
		rc=1
	}
	return "$rc"
}

case_kill_source() {
	local rc=0
	ENROLLED=$(enrollment ids)
	kill_mid_transfer 1 || rc=1
	# Nothing of it went away with the daemon (programs included).
	check_eq "node 1 enrollment after the SIGKILL" "$(enrollment ids)" "$ENROLLED" || rc=1
	return "$rc"
}

# Node 1's daemon is down: the enrolled pod's connect is refused at once
# by the kernel (fail closed), counted as refused_no_listener.
case_down_refused() {
	local b a out rc=0 ms
	b=$(amb_counters_json 1)
	out=$(amb_tcp 1 1 connect "$N2P1" 7000 --timeout 3000 2>&1)
	a=$(amb_counters_json 1)
	diag "n1p1 -> n2p1 with node 1's daemon killed: $(tr "\n" " " <<<"$out")"
	grep -q "^refused:" <<<"$out" || {
		diag "expected 'connection refused'"
		rc=1
	}
	ms=$(sed -n 's/^elapsed_ms //p' <<<"$out")
	if ! is_num "$ms" || [ "$ms" -ge 1000 ]; then
		diag "refusal took ${ms:-?} ms, expected under 1000"
		rc=1
	fi
	expect_delta "node 1" "$b" "$a" refused_no_listener -ge 1 || rc=1
	return "$rc"
}

case_restart_source() {
	local rc=0 out
	amb_daemon_start 1 "$AMB_WORK/mesh.yaml" || return 1
	check_eq "node 1 enrollment after the restart" "$(enrollment)" \
		"$(sed 's/:\[[0-9]*\]$//' <<<"$ENROLLED")" || rc=1
	check_eq "address n2p1 saw" "$(amb_whoami 1 1 "$N2P1" 7000)" "$N1P1" || rc=1
	out=$(amb_tcp 1 1 send "$N2P1" 7001 --bytes 8M 2>&1) || rc=1
	diag "$out"
	return "$rc"
}

case_kill_destination() {
	kill_mid_transfer 2
}

# Node 2's daemon is down: node 1's tunnel still accepts the pod's
# connection, but the HBONE connect to 15008 is refused by node 2's kernel
# (no listener), so the pod's connection is reset at once.
case_destination_down() {
	local b a out st rc=0 t0 ms
	b=$(amb_counters_json 2)
	t0=$(date +%s%N)
	out=$(amb_tcp 1 1 whoami "$N2P1" 7000 --timeout 5000 2>&1)
	st=$?
	ms=$((($(date +%s%N) - t0) / 1000000))
	a=$(amb_counters_json 2)
	diag "n1p1 -> n2p1 with node 2's daemon killed ($ms ms): $(tr "\n" " " <<<"$out")"
	[ "$st" -ne 0 ] && grep -q "reset by peer" <<<"$out" || {
		diag "expected the connection reset"
		rc=1
	}
	[ "$ms" -lt 2000 ] || {
		diag "took $ms ms, expected under 2000"
		rc=1
	}
	expect_delta "node 2" "$b" "$a" refused_no_listener -ge 1 || rc=1
	return "$rc"
}

case_restart_destination() {
	local rc=0 out
	amb_daemon_start 2 "$AMB_WORK/mesh.yaml" || return 1
	check_eq "address n2p1 saw" "$(amb_whoami 1 1 "$N2P1" 7000)" "$N1P1" || rc=1
	out=$(amb_tcp 1 2 recv "$N2P1" 7004 --bytes "$LOSSY_BYTES" --seed 4 2>&1) || rc=1
	diag "$out"
	return "$rc"
}

# metric N NAME [LABEL-REGEX]: the sum of node N's samples of NAME (whose
# labels match LABEL-REGEX), or "none" if it has no such sample.
metric() {
	amb_node_exec "$1" curl -s --max-time 5 "http://127.0.0.1:15020/metrics" |
		awk -v n="$2" -v re="${3:-}" '
			$1 == n || (index($1, n "{") == 1 && $1 ~ re) { s += $2; found = 1 }
			END { if (found) printf "%d\n", s; else print "none" }'
}

# Pooled (client side) HBONE connections node N closed because a PING went
# unanswered.
ping_timeouts() {
	metric "$1" ambientd_hbone_deadlines_total \
		'deadline="ping".*side="client"|side="client".*deadline="ping"'
}

# Node 1's established TCP connections to an HBONE port: its pooled
# connections (nothing else on node 1 dials 15008).
pooled_tcp() {
	ip netns exec "$(amb_node_ns 1)" ss -Htn state established '( dport = :15008 )' | wc -l
}

# SIGSTOP of node 2's daemon while a transfer flows on one of node 1's
# pooled connections to it. Node 2's kernel still ACKs every segment, so
# only the HTTP/2 PING keepalive can find out that nobody answers: PING
# after 10 s without a frame, dead 20 s later without its ACK. Every pooled
# connection to node 2 (the busy one and any idle one) must be closed and
# counted within 30 s (+1 s for timers and this poll) of the stop, and the
# transfer on it reset, not left hanging.
case_sigstop() {
	local rc=0 t0 dt before n now=0 left
	before=$(ping_timeouts 1)
	is_num "$before" || {
		diag "node 1 /metrics has no PING timeout counter: $before"
		return 1
	}
	amb_pod_bg 1 2 "$AMB_WORK/stopped.log" timeout 60 "$TCPTOOL" client recv \
		"$N2P1" 7003 --bytes 256M --seed 3 --timeout 45000
	STOPPED_PID=$AMB_LAST_PID
	wait_for 10 conn_flowing 1 "$N1P2" "$N2P1:7003" || {
		diag "the transfer did not start"
		return 1
	}
	PC_BEFORE=$(status 1 .hbone.pool_connections)
	t0=$(date +%s%N)
	kill -STOP "${AMB_DAEMON_PID[2]}"
	n=$(pooled_tcp)
	while :; do
		now=$(ping_timeouts 1)
		dt=$((($(date +%s%N) - t0) / 1000000))
		is_num "$now" && [ $((now - before)) -ge "$n" ] && break
		[ "$dt" -lt 40000 ] || break
		sleep 0.1
	done
	diag "node 2's daemon stopped with $n pooled connections to it open;" \
		"node 1 counted $((now - before)) PING timeouts by $dt ms"
	if [ $((now - before)) -ne "$n" ] || [ "$dt" -gt 31000 ]; then
		diag "expected $n within 31000 ms (PING after 10 s of silence, dead 20 s later)"
		rc=1
	fi
	left=$(pooled_tcp)
	check_eq "pooled connections still established" "$left" 0 || rc=1
	wait_exit 3 "$STOPPED_PID" || {
		diag "the transfer on the dead connection still runs 3 s after it was closed"
		rc=1
	}
	expect_reset "pod reading through the frozen peer" "$AMB_WORK/stopped.log" || rc=1
	return "$rc"
}

# New connections get a fresh pooled connection: one started while node 2's
# daemon is still stopped completes once it resumes (the kernel completes
# its TCP handshake; TLS waits for the daemon), and so do later ones.
case_sigcont() {
	local rc=0 pc workers out
	amb_pod_bg 1 1 "$AMB_WORK/resume.log" "$TCPTOOL" client whoami "$N2P1" 7000 --timeout 15000
	sleep 1
	kill -CONT "${AMB_DAEMON_PID[2]}"
	wait_exit 15 "$AMB_LAST_PID" || rc=1
	out=$(cat "$AMB_WORK/resume.log")
	check_eq "address n2p1 saw (connection made while node 2 was stopped)" "${out%%:*}" "$N1P1" || rc=1
	check_eq "address n2p1 saw" "$(amb_whoami 1 1 "$N2P1" 7000)" "$N1P1" || rc=1
	out=$(amb_tcp 1 2 recv "$N2P1" 7004 --bytes "$LOSSY_BYTES" --seed 4 2>&1) || rc=1
	diag "$out"
	# Each worker has its own pool: one or two new connections.
	pc=$(($(status 1 .hbone.pool_connections) - PC_BEFORE))
	workers=$(status 1 .workers)
	if [ "$pc" -lt 1 ] || [ "$pc" -gt $((2 * workers)) ]; then
		diag "$pc new pooled connections, expected 1..$((2 * workers))"
		rc=1
	fi
	return "$rc"
}

# ---------------------------------------------------------------- underlay

IMPAIR_PID=""

# impair_start DELAY-MS LOSS-PCT: netimpair between the two nodes' bridge
# ports: every frame either node sends crosses it (its TAP devices ia/ib),
# the bridge sees none.
impair_start() {
	local log="$AMB_WORK/netimpair.log" pair
	nsenter --net="/run/netns/$UL" "$NETIMPAIR" --tap "ia$P" --tap "ib$P" \
		--delay-ms "$1" --loss "$2" --seed "$$" >"$log" 2>&1 &
	IMPAIR_PID=$!
	AMB_PIDS+=("$IMPAIR_PID")
	wait_log "$log" '^ready' 5 || {
		diag "netimpair did not start: $(cat "$log")"
		return 1
	}
	for pair in "u1$P ia$P" "u2$P ib$P"; do
		# shellcheck disable=SC2086
		set -- $pair
		tc -n "$UL" qdisc add dev "$1" clsact &&
			tc -n "$UL" qdisc add dev "$2" clsact &&
			tc -n "$UL" filter add dev "$1" ingress protocol all pref 1 \
				u32 match u32 0 0 action mirred egress redirect dev "$2" &&
			tc -n "$UL" filter add dev "$2" ingress protocol all pref 1 \
				u32 match u32 0 0 action mirred egress redirect dev "$1" || return 1
	done
}

# Back to the plain bridge; netimpair prints its counters as it exits (its
# TAP devices go with it).
impair_stop() {
	tc -n "$UL" qdisc del dev "u1$P" clsact 2>/dev/null
	tc -n "$UL" qdisc del dev "u2$P" clsact 2>/dev/null
	[ -n "$IMPAIR_PID" ] || return 0
	kill -TERM "$IMPAIR_PID" 2>/dev/null
	wait "$IMPAIR_PID" 2>/dev/null
	IMPAIR_PID=""
}

# Round trip node 1 -> node 2 in ms: the best of 5 TCP handshakes with
# node 2's metrics port (a lost SYN or SYN-ACK costs a 1 s retransmit, 10 %
# of the time; the best of 5 is the path's delay).
underlay_rtt() {
	local best="" ms i
	for i in 1 2 3 4 5; do
		ms=$(amb_node_exec 1 "$TCPTOOL" client connect "$(amb_node_ip 2)" 15020 --timeout 5000 |
			sed -n 's/^elapsed_ms //p')
		is_num "$ms" && { [ -z "$best" ] || [ "$ms" -lt "$best" ]; } && best=$ms
	done
	echo "${best:-none}"
}

# Both directions at once through both tunnels while the underlay drops 5 %
# of the IP frames and delays each by 50 ms: p1 sends $LOSSY_BYTES to the
# sink, p2 reads $LOSSY_BYTES from a source; both sha256-checked.
case_lossy() {
	local rc=0 rtt t0 dt stats d
	impair_start 50 5 || {
		impair_stop
		return 1
	}
	rtt=$(underlay_rtt)
	diag "underlay round trip with netimpair: ${rtt} ms (congestion control $LOSSY_CC)"
	if ! is_num "$rtt" || [ "$rtt" -lt 100 ] || [ "$rtt" -gt 300 ]; then
		diag "expected 100..300 ms (2 x 50 ms)"
		rc=1
	fi
	t0=$(date +%s%N)
	amb_pod_bg 1 1 "$AMB_WORK/lossy-send.log" timeout "$LOSSY_LIMIT" "$TCPTOOL" client send \
		"$N2P1" 7001 --bytes "$LOSSY_BYTES" --timeout $((LOSSY_LIMIT * 1000))
	SEND_PID=$AMB_LAST_PID
	amb_pod_bg 1 2 "$AMB_WORK/lossy-recv.log" timeout "$LOSSY_LIMIT" "$TCPTOOL" client recv \
		"$N2P1" 7004 --bytes "$LOSSY_BYTES" --seed 4 --timeout $((LOSSY_LIMIT * 1000))
	RECV_PID=$AMB_LAST_PID
	wait "$SEND_PID" || rc=1
	wait "$RECV_PID" || rc=1
	dt=$((($(date +%s%N) - t0) / 1000000))
	diag "send: $(cat "$AMB_WORK/lossy-send.log")"
	diag "recv: $(cat "$AMB_WORK/lossy-recv.log")"
	diag "both done in $dt ms"
	impair_stop
	stats=$(grep ': frames ' "$AMB_WORK/netimpair.log")
	diag "$stats"
	# Proof that the loss was real: thousands of frames each way, and
	# close to 5 % of them dropped ("A->B: frames N ip N dropped N ..."):
	# 2..8 % of >= 1000 frames is over 4 standard deviations either way.
	[ "$(wc -l <<<"$stats")" -eq 2 ] || rc=1
	while read -r d; do
		if ! awk '{ ip = $5 + 0; drop = $7 + 0
			ok = ip >= 1000 && drop * 100 >= 2 * ip && drop * 100 <= 8 * ip
			exit ok ? 0 : 1 }' <<<"$d"; then
			diag "expected >= 1000 IP frames with 2..8 % dropped: $d"
			rc=1
		fi
	done <<<"$stats"
	check_eq "address n2p1 saw after the impairment is gone" "$(amb_whoami 1 1 "$N2P1" 7000)" "$N1P1" || rc=1
	return "$rc"
}

# How much the loss case moves; set before any daemon socket exists.
# Through 5 % random loss at 100 ms RTT the congestion control decides the
# throughput: measured on the 2-CPU dev VM, Reno moved 16 MiB node to node
# in 250 s (67 KB/s), BBR 256 MiB in 27 s. So both nodes use BBR where the
# kernel lets a netns pick it, and 64 MiB cross each way (10-20 s through
# HBONE); otherwise the default stays and 2 MiB each way keep the case
# under a minute. AMB_FAULTS_LONG=1: the issue's 256 MiB each way (34 s
# with BBR on the dev VM; over an hour with Reno).
lossy_size() {
	local n
	LOSSY_CC=bbr
	for n in 1 2; do
		ns_sysctl "$(amb_node_ns "$n")" net.ipv4.tcp_congestion_control=bbr 2>/dev/null || LOSSY_CC=
	done
	[ -n "$LOSSY_CC" ] ||
		LOSSY_CC=$(ip netns exec "$(amb_node_ns 1)" sysctl -n net.ipv4.tcp_congestion_control)
	if [ -n "${AMB_FAULTS_LONG:-}" ]; then
		LOSSY_BYTES=256M LOSSY_LIMIT=3600
	elif [ "$LOSSY_CC" = bbr ]; then
		LOSSY_BYTES=64M LOSSY_LIMIT=120
	else
		LOSSY_BYTES=2M LOSSY_LIMIT=120
	fi
}

amb_setup_or_bail setup
tap_ok "baseline: n1p1 -> n2p1 through both tunnels (HBONE)" case_baseline
tap_ok "kill -9 of the source node's daemon mid-transfer: both pods' connections reset" case_kill_source
tap_ok "source daemon down: enrolled pod's connect refused at once, counted" case_down_refused
tap_ok "source daemon restarted: same tc slots, pinned maps and pods, traffic flows" case_restart_source
tap_ok "kill -9 of the destination node's daemon mid-transfer: both pods' connections reset" case_kill_destination
tap_ok "destination daemon down: connections to its pods reset at once, refused in its kernel" case_destination_down
tap_ok "destination daemon restarted: traffic flows again" case_restart_destination
tap_ok "SIGSTOP of the peer's daemon: pooled connection closed by the PING timeout, its transfer reset" case_sigstop
tap_ok "SIGCONT: new connections get a fresh pooled connection" case_sigcont
tap_ok "underlay with 5 % loss and 50 ms delay: $LOSSY_BYTES each way through HBONE ($LOSSY_CC), sha256 intact" case_lossy
tap_done
