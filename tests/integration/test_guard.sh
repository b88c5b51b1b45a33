#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
#
# What a pod or the node can throw at a node's listeners without taking the
# mesh down (issue 12, items 1-3 and 6): the readiness-port crash request,
# one connection dialed straight at a capture port, a handshake flood and
# the memory it leaves, per-source budgets, fd exhaustion, upstream connect
# deadlines, and config files that are too deep or just large.
#
#   node 1: p1 enrolled (HBONE); p3 not in the mesh (the attacker)
#   node 2: p1 enrolled (HBONE), servers on 7000 (whoami) and 7001 (sink)
set -u
. "$(dirname "$0")/lib.sh"

amb_require daemon jq curl nc python3 prlimit
amb_init "gd$$"

N1P1=$(amb_pod_ip 1 1) N2P1=$(amb_pod_ip 2 1)
NODE1=$(amb_node_ip 1) NODE2=$(amb_node_ip 2)
FLOOD="python3 $(dirname "$0")/flood.py"
# Somewhere that swallows SYNs: routed into pod 3's netns, which does not
# forward (an address no namespace owns, so no RST and no ICMP comes back).
BLACKHOLE=198.18.1.99

setup() {
	amb_node 1 && amb_node 2 && amb_pod 1 1 && amb_pod 1 3 && amb_pod 2 1 || return 1
	AMB_PROTOCOL=HBONE amb_config "$AMB_WORK/mesh.yaml" 1:1 2:1
	amb_server 2 1 7000 whoami && amb_server 2 1 7001 sink || return 1
	amb_node_exec 1 ip route add "$BLACKHOLE/32" via "$(amb_pod_ip 1 3)" \
		dev "$(amb_pod_veth 1 3)" onlink || return 1
	ns_sysctl "$(amb_pod_ns 1 3)" net.ipv4.ip_forward=0
	amb_daemon_start 1 "$AMB_WORK/mesh.yaml" --connect-timeout 800 --access-log text &&
		amb_daemon_start 2 "$AMB_WORK/mesh.yaml"
}

# metric N NAME LABELS: one sample from node N's /metrics (0 when absent).
metric() {
	local v want="$2{$3} "
	[ -n "$3" ] || want="$2 "
	v=$(amb_node_exec "$1" curl -s --max-time 5 "http://127.0.0.1:15020/metrics" |
		grep -F "$want" | grep -v '^#' | awk '{print $2}' | head -1)
	echo "${v:-0}"
}

refused() { # N LISTENER REASON
	metric "$1" ambientd_listener_refused_total "listener=\"$2\",reason=\"$3\""
}

ready() { # N: readiness status code asked from the node itself
	amb_node_exec "$1" curl -s -o /dev/null -w '%{http_code}' --max-time 3 \
		"http://$(amb_node_ip "$1"):15021/healthz/ready"
}

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/${AMB_DAEMON_PID[$1]}/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/${AMB_DAEMON_PID[$1]}/stat"; }
nfds() { find "/proc/${AMB_DAEMON_PID[$1]}/fd" -mindepth 1 | wc -l; }
alive() { kill -0 "${AMB_DAEMON_PID[$1]}" 2>/dev/null; }

# A real transfer through both tunnels still works.
mesh_ok() {
	amb_tcp 1 1 send "$N2P1" 7001 --bytes 1M >/dev/null 2>&1
}

restart2() { # ambientd args for node 2
	amb_daemon_stop 2 && amb_daemon_start 2 "$AMB_WORK/mesh.yaml" "$@"
}

case_readiness_crash() {
	local out rc=0
	out=$(amb_pod_run 1 3 sh -c "printf 'GET /healthz/ready HTTP/1.1\r\nHost: x\r\nContent-Length\0: 100\r\n\r\n' |
		nc -w 3 $NODE2 15021" | head -1 | tr -d '\r')
	check_eq "answer to a NUL in a header name" "$out" "HTTP/1.1 400 Bad Request" || rc=1
	alive 2 || { diag "node 2's daemon died"; return 1; }
	check_eq "readiness afterwards" "$(ready 2)" 200 || rc=1
	[ "$(refused 2 readiness bad_request)" -ge 1 ] || { diag "bad_request not counted"; rc=1; }
	return "$rc"
}

# 40 connections held from one pod: 8 get in (per source), the rest are
# closed and counted; the node's own probe still gets its answer.
case_readiness_abuse() {
	local log="$AMB_WORK/abuse.log" rc=0 n
	amb_pod_bg 1 3 "$log" $FLOOD hold "$NODE2" 15021 40 --seconds 4
	wait_log "$log" '^opened' 5 || { diag "flood did not start"; return 1; }
	check_eq "readiness from the node while a pod holds 40 connections" "$(ready 2)" 200 || rc=1
	wait_for 3 test "$(refused 2 readiness source_limit)" -ge 32
	n=$(refused 2 readiness source_limit)
	[ "$n" -ge 32 ] || { diag "source_limit refusals: $n (want >= 32)"; rc=1; }
	wait_log "$log" '^reset' 8
	return "$rc"
}

# nc in the node's netns straight at 15001 and at the node address on
# 15006: each is reset once, nothing loops.
case_self_dial() {
	local rc=0 before after fds log_before log_after
	before=$(refused 1 outbound self_dial)
	log_before=$(stat -c %s "$(amb_daemon_log 1)")
	echo x | amb_node_exec 1 nc -w 2 127.0.0.1 15001 >/dev/null 2>&1
	echo x | amb_node_exec 1 nc -w 2 "$NODE1" 15001 >/dev/null 2>&1
	echo x | amb_node_exec 1 nc -w 2 "$NODE1" 15006 >/dev/null 2>&1
	sleep 0.5
	alive 1 || { diag "node 1's daemon died"; return 1; }
	after=$(refused 1 outbound self_dial)
	check_eq "outbound self_dial refusals" "$((after - before))" 2 || rc=1
	check_eq "inbound self_dial refusals" "$(refused 1 inbound self_dial)" 1 || rc=1
	fds=$(nfds 1)
	[ "$fds" -lt 200 ] || { diag "node 1's daemon holds $fds fds"; rc=1; }
	log_after=$(stat -c %s "$(amb_daemon_log 1)")
	[ $((log_after - log_before)) -lt 20000 ] ||
		{ diag "log grew by $((log_after - log_before)) bytes"; rc=1; }
	mesh_ok || { diag "mesh traffic failed afterwards"; rc=1; }
	return "$rc"
}

# Idle and mid-handshake connections to a pod's 15008: what each costs,
# that handshakes with TLS state stay within their per-source slots (so
# another client still gets through), and that the memory comes back once
# the deadlines closed them.
case_handshake_memory() {
	local rc=0 idle a b per log="$AMB_WORK/hs.log" n=4000 m=2000 i slot0
	restart2 --pending-max 20000 --pending-per-source 20000 || return 1
	sleep 1
	idle=$(rss_kib 2)
	amb_pod_bg 1 3 "$log" sh -c "ulimit -n 20000; exec $FLOOD hold $N2P1 15008 $n --seconds 2"
	wait_log "$log" '^opened' 15 || { diag "flood did not start"; return 1; }
	a=$(rss_kib 2)
	per=$(((a - idle) * 1024 / n))
	diag "$(head -1 "$log"); RSS idle ${idle} KiB, with $n silent connections ${a} KiB: $per bytes each"
	# A sanitizer build's RSS is quarantine and shadow: no bounds there
	# (reported as one skipped case at the end).
	amb_sanitized || [ "$per" -le 8192 ] ||
		{ diag "silent connection costs $per bytes (> 8 KiB)"; rc=1; }
	wait_log "$log" '^reset' 15
	slot0=$(metric 2 ambientd_hbone_handshake_slot_timeouts_total "")
	log="$AMB_WORK/hs2.log"
	amb_pod_bg 1 3 "$log" sh -c "ulimit -n 20000; exec $FLOOD hold $N2P1 15008 $m --hello --seconds 7"
	wait_log "$log" '^opened' 20 || { diag "hello flood did not start"; return 1; }
	sleep 1
	b=$(rss_kib 2)
	per=$(((b - idle) * 1024 / m))
	diag "$(head -1 "$log"); with $m ClientHellos from one pod: ${b} KiB: $per bytes each"
	amb_sanitized || [ "$per" -le 16384 ] ||
		{ diag "mid-handshake connection costs $per bytes (> 16 KiB)"; rc=1; }
	mesh_ok || { diag "another pod's HBONE connection failed during the flood"; rc=1; }
	wait_log "$log" '^reset' 20
	a=$(($(metric 2 ambientd_hbone_handshake_slot_timeouts_total "") - slot0))
	diag "reset after waiting for a handshake slot in vain: $a"
	[ "$a" -ge $((m / 2)) ] || rc=1
	if ! amb_sanitized; then
		for i in $(seq 1 30); do
			[ "$(rss_kib 2)" -le $((idle + 32768)) ] && break
			sleep 1
		done
		diag "RSS ${i} s after the flood: $(rss_kib 2) KiB (idle $idle)"
		[ "$(rss_kib 2)" -le $((idle + 32768)) ] || { diag "memory did not come back"; rc=1; }
	fi
	mesh_ok || { diag "mesh traffic failed afterwards"; rc=1; }
	return "$rc"
}

# One source past its pending budget is reset and counted; others are not
# affected. The budget is per worker (each has its own listeners).
case_source_budget() {
	local rc=0 log="$AMB_WORK/budget.log" n workers
	restart2 --pending-per-source 20 || return 1
	workers=$(metric 2 ambientd_workers "")
	amb_pod_bg 1 3 "$log" $FLOOD hold "$N2P1" 15008 120 --seconds 1
	wait_log "$log" '^reset' 15 || { diag "flood did not finish"; return 1; }
	wait_for 3 test "$(refused 2 hbone source_limit)" -ge $((120 - 20 * workers))
	n=$(refused 2 hbone source_limit)
	diag "$(tr '\n' ' ' <"$log"); $workers workers; hbone source_limit refusals: $n"
	[ "$n" -ge $((120 - 20 * workers)) ] || rc=1
	mesh_ok || { diag "another source's traffic failed meanwhile"; rc=1; }
	return "$rc"
}

# Out of fds: the listener backs off (no spinning, no log flood) and works
# again once the flood is gone.
case_fd_exhaustion() {
	local rc=0 log="$AMB_WORK/emfile.log" t0 t1 lines n
	restart2 --pending-max 20000 --pending-per-source 20000 || return 1
	prlimit --pid "${AMB_DAEMON_PID[2]}" --nofile=256:256 || return 1
	lines=$(grep -c 'accept: ' "$(amb_daemon_log 2)")
	amb_pod_bg 1 3 "$log" sh -c "ulimit -n 4000; exec $FLOOD hold $N2P1 15008 600 --seconds 4"
	wait_log "$log" '^opened' 15 || { diag "flood did not start"; return 1; }
	t0=$(cpu_ticks 2)
	sleep 2
	t1=$(cpu_ticks 2)
	diag "$(head -1 "$log"); daemon CPU over 2 s out of fds: $((t1 - t0)) ticks"
	[ $((t1 - t0)) -le 40 ] || { diag "daemon burned $((t1 - t0)) ticks in 2 s"; rc=1; }
	wait_log "$log" '^reset' 15
	alive 2 || { diag "node 2's daemon died"; return 1; }
	sleep 6 # the first-byte deadline frees what the flood held
	# Even /metrics needs an fd: read the counter once there are some.
	n=$(refused 2 hbone fd_exhausted)
	lines=$(($(grep -c 'accept: ' "$(amb_daemon_log 2)") - lines))
	diag "fd_exhausted $n; $lines accept log lines"
	[ "$n" -ge 1 ] || { diag "fd exhaustion not counted"; rc=1; }
	[ "$lines" -le 25 ] || rc=1
	check_eq "readiness afterwards" "$(ready 2)" 200 || rc=1
	mesh_ok || { diag "mesh traffic failed afterwards"; rc=1; }
	restart2
	return "$rc"
}

# A destination that never answers: the pod is reset after the connect
# deadline (800 ms here), with a TIMEOUT flag in the access log.
case_connect_timeout() {
	local rc=0 t0 t1 ms line
	t0=$(date +%s%N)
	amb_tcp 1 1 expect-rst "$BLACKHOLE" 80 --timeout 5000 >/dev/null 2>&1 ||
		{ diag "the client was not reset"; rc=1; }
	t1=$(date +%s%N)
	ms=$(((t1 - t0) / 1000000))
	diag "reset after $ms ms"
	[ "$ms" -ge 700 ] && [ "$ms" -lt 3000 ] || rc=1
	wait_for 3 grep -q "dst.addr=$BLACKHOLE:80 .*response_flags=\"TIMEOUT\"" "$(amb_daemon_log 1)" || {
		diag "no access-log line with TIMEOUT: $(grep "$BLACKHOLE" "$(amb_daemon_log 1)" | tail -1)"
		rc=1
	}
	return "$rc"
}

# Too deep: refused at once, old config kept. Large: parsed off the
# control thread, which keeps answering meanwhile.
case_config_depth_and_size() {
	local rc=0 cfg="$AMB_WORK/mesh.yaml" before worst=0 t code i
	cp "$cfg" "$AMB_WORK/mesh.good"
	before=$(metric 2 ambientd_config_rejected_total "")
	python3 -c "print('workloads: ' + '[' * 200000 + ']' * 200000)" | amb_replace_file "$cfg"
	wait_log "$(amb_daemon_log 2)" 'config rejected.*nested deeper than 32 levels' 5 ||
		{ diag "no rejection logged"; rc=1; }
	check_eq "rejections counted" "$(($(metric 2 ambientd_config_rejected_total "") - before))" 1 || rc=1
	mesh_ok || { diag "traffic failed with the old config"; rc=1; }
	# 40,000 more workloads elsewhere (~6 MB): seconds to parse.
	python3 - "$AMB_WORK/mesh.good" >"$AMB_WORK/big.yaml" <<'PY'
import sys
print(open(sys.argv[1]).read().rstrip())
for i in range(40000):
    print(f"- {{uid: c//v1/Pod/big/p{i}, name: p{i}, namespace: big, "
          f"workloadIps: [10.{i // 62500}.{i // 250 % 250}.{i % 250}], node: elsewhere}}")
PY
	amb_replace_file "$cfg" <"$AMB_WORK/big.yaml"
	for i in $(seq 1 40); do
		t=$(date +%s%N)
		code=$(ready 2)
		t=$((($(date +%s%N) - t) / 1000000))
		[ "$t" -gt "$worst" ] && worst=$t
		[ "$code" = 200 ] || { diag "readiness answered $code during the load"; rc=1; }
		grep -q 'config reloaded.*generation' <(tail -3 "$(amb_daemon_log 2)") && break
		sleep 0.1
	done
	diag "slowest readiness answer during the large reload: $worst ms"
	# Parsing it takes seconds; the control thread is not the one doing it.
	[ "$worst" -lt 1000 ] || rc=1
	wait_log "$(amb_daemon_log 2)" 'config reloaded' 20 || { diag "large config not loaded"; rc=1; }
	amb_replace_file "$cfg" <"$AMB_WORK/mesh.good"
	sleep 1
	mesh_ok || { diag "traffic failed after restoring the config"; rc=1; }
	return "$rc"
}

amb_setup_or_bail setup
tap_ok "readiness port: NUL in a header name gets 400, the daemon lives" case_readiness_crash
tap_ok "readiness port: one pod holding 40 connections does not lock out the node's probe" case_readiness_abuse
tap_ok "capture ports dialed from the node itself: reset once, counted, no loop" case_self_dial
tap_ok "15008 flood: silent <= 8 KiB, ClientHello flood <= 16 KiB each, others served; memory back" case_handshake_memory
tap_ok "15008: one source over its pending budget is reset and counted" case_source_budget
tap_ok "out of fds: the listener backs off, then serves again" case_fd_exhaustion
tap_ok "passthrough to a silent destination: reset after the connect deadline" case_connect_timeout
tap_ok "config: too deep refused at once; a large one loads while readiness answers" case_config_depth_and_size
amb_sanitized && tap_skip "15008 flood: memory per connection and memory back" \
	"sanitizer build: its RSS is quarantine and shadow memory"
tap_done
