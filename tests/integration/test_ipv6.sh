#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
#
# IPv6 fails closed: the mesh tunnels IPv4 only, so on a dual-stack node an
# enrolled pod's IPv6 TCP must never reach anyone around both tunnels. Its
# connects are refused at once by amb_tc_pod's RST and counted
# (refused_ipv6), whatever the destination; the answer of an enrolled pod
# to an IPv6 SYN from outside the mesh is dropped (drop_ipv6), so no
# handshake completes. Pods outside the mesh, the pods' UDP over IPv6 and
# their IPv4 are unaffected. With --ipv6-passthrough the IPv6 connect goes
# through (pass_ipv6), and a daemon restarted without it refuses again.
#
#   node 1: p1 enrolled, p2 not in the mesh
#   node 2: p1 enrolled, p2 not in the mesh
#   IPv6: pods 2001:2:0:<n>::<10+i>/128 (default via fe80::1, the node's
#   side of the veth), nodes 2001:2:ff::<n>/64 on the underlay bridge.
set -u
. "$(dirname "$0")/lib.sh"

amb_require daemon jq socat curl
amb_init "v6$$"

PORT=7006

pod_ip6() { echo "2001:2:0:$1::$((10 + $2))"; }
# The same as socat's SOCAT_PEERADDR writes it: every group, zero-padded.
pod_ip6_full() { printf '[2001:0002:0000:%04d:0000:0000:0000:%04d]' "$1" "$((10 + $2))"; }
node_ip6() { echo "2001:2:ff::$1"; }

# IPv6 on every namespace of the topology, and the routes IPv4 has.
setup_ipv6() {
	local n m i ns veth
	amb_ipv6_enable "$P-ul" || return 1
	# No MLD querier on the underlay: let the bridge flood multicast (ND).
	ip -n "$P-ul" link set br0 type bridge mcast_snooping 0 || return 1
	for n in 1 2; do
		ns=$(amb_node_ns "$n")
		amb_ipv6_enable "$ns" || return 1
		ns_sysctl "$ns" net.ipv6.conf.all.forwarding=1 || return 1
		ip -n "$ns" -6 addr add "$(node_ip6 "$n")/64" dev eth0 nodad || return 1
		m=$((3 - n))
		ip -n "$ns" -6 route add "2001:2:0:$m::/64" via "$(node_ip6 "$m")" || return 1
		for i in 1 2; do
			veth=$(amb_pod_veth "$n" "$i")
			amb_ipv6_enable "$(amb_pod_ns "$n" "$i")" || return 1
			ip -n "$ns" -6 addr add fe80::1/64 dev "$veth" nodad || return 1
			ip -n "$ns" -6 route add "$(pod_ip6 "$n" "$i")/128" dev "$veth" || return 1
			ip -n "$(amb_pod_ns "$n" "$i")" -6 addr add "$(pod_ip6 "$n" "$i")/128" \
				dev eth0 nodad || return 1
			ip -n "$(amb_pod_ns "$n" "$i")" -6 route add default via fe80::1 dev eth0 ||
				return 1
		done
	done
}

# server6 N I: IPv6 TCP server on PORT in pod N/I; every accepted peer
# address is appended to $(srv6_log N I) and written back to the client.
server6() {
	local log
	log=$(srv6_log "$1" "$2")
	: >"$log"
	amb_pod_bg "$1" "$2" "$AMB_WORK/socat6-$1-$2.log" socat \
		"TCP6-LISTEN:$PORT,ipv6only=1,reuseaddr,fork" \
		EXEC:"/bin/sh $AMB_WORK/who6.sh $log"
	amb_wait_listen "$(amb_pod_ns "$1" "$2")" "$PORT" 5
}
srv6_log() { echo "$AMB_WORK/who6-$1-$2.log"; }

setup() {
	amb_node 1 && amb_node 2 &&
		amb_pod 1 1 && amb_pod 1 2 && amb_pod 2 1 && amb_pod 2 2 || return 1
	setup_ipv6 || return 1
	amb_config "$AMB_WORK/mesh.yaml" 1:1 2:1
	printf '%s\n' 'echo "$SOCAT_PEERADDR" >>"$1"' 'echo "you are $SOCAT_PEERADDR"' \
		>"$AMB_WORK/who6.sh"
	local pod
	for pod in "1 1" "1 2" "2 1" "2 2"; do
		# shellcheck disable=SC2086
		server6 $pod || return 1
	done
	amb_server 2 1 7000 whoami || return 1
	amb_daemon_start 1 "$AMB_WORK/mesh.yaml" && amb_daemon_start 2 "$AMB_WORK/mesh.yaml"
}

# connect6 N I DST-N DST-I [TIMEOUT-S]: one IPv6 connect from pod N/I to the
# server in pod DST-N/DST-I. Prints socat's output (the server's answer or
# the error) and, last, "ms=<elapsed>". Fails when the connect failed.
connect6() {
	local t0 out rc
	t0=$(date +%s%N)
	out=$(amb_pod_run "$1" "$2" timeout 10 socat -T 5 - \
		"TCP6:[$(pod_ip6 "$3" "$4")]:$PORT,connect-timeout=${5:-3}" </dev/null 2>&1)
	rc=$?
	echo "$out"
	echo "ms=$((($(date +%s%N) - t0) / 1000000))"
	return "$rc"
}

# refused6 N I DST-N DST-I: the connect fails at once with "Connection
# refused" and the server never saw the client.
refused6() {
	local out ms rc=0
	out=$(connect6 "$@") && {
		diag "IPv6 connect $1/$2 -> $3/$4 succeeded: $out"
		return 1
	}
	ms=$(sed -n 's/^ms=//p' <<<"$out")
	diag "$1/$2 -> [$(pod_ip6 "$3" "$4")]:$PORT: $(grep -v '^ms=' <<<"$out" | sed 's/.* E //') (${ms} ms)"
	grep -q "Connection refused" <<<"$out" || {
		diag "expected 'Connection refused'"
		rc=1
	}
	# The time includes starting nsenter and socat (0.1-0.5 s on a busy
	# 2-core machine); anything but the RST (a lost SYN, ND failing) would
	# take the full 3 s connect timeout.
	[ "$ms" -lt 2000 ] || {
		diag "refusal took $ms ms, expected at once (connect timeout 3 s)"
		rc=1
	}
	if grep -qF "$(pod_ip6_full "$1" "$2")" "$(srv6_log "$3" "$4")"; then
		diag "the server in pod $3/$4 accepted $(pod_ip6 "$1" "$2")"
		rc=1
	fi
	return "$rc"
}

# connected6 N I DST-N DST-I: the connect succeeds and the server saw the
# client's own IPv6 address.
connected6() {
	local out
	out=$(connect6 "$@") || {
		diag "IPv6 connect $1/$2 -> $3/$4 failed: $out"
		return 1
	}
	diag "$1/$2 -> $3/$4: $(head -1 <<<"$out")"
	grep -qxF "$(pod_ip6_full "$1" "$2")" "$(srv6_log "$3" "$4")" || {
		diag "server $3/$4 did not log $(pod_ip6_full "$1" "$2")"
		return 1
	}
}

# --- cases ------------------------------------------------------------------

case_enrolled_refused() {
	local b1 a1 rc=0 metrics
	b1=$(amb_counters_json 1)
	refused6 1 1 2 1 || rc=1 # enrolled, other node
	refused6 1 1 1 2 || rc=1 # outside the mesh, same node
	a1=$(amb_counters_json 1)
	expect_delta node1 "$b1" "$a1" refused_ipv6 -eq 2 || rc=1
	metrics=$(amb_node_exec 1 curl -sS --max-time 5 "http://$(amb_node_ip 1):15020/metrics" 2>&1 |
		grep -F 'ambientd_bpf_verdict_packets_total{verdict="refused",reason="refused_ipv6"}')
	diag "node1: $metrics"
	case $metrics in *'} '[1-9]*) ;; *)
		diag "no refused_ipv6 sample > 0 in /metrics"
		rc=1
		;;
	esac
	return "$rc"
}

# The IPv6 reasons' packet counts of node N, one line.
ipv6_counters() {
	amb_ctl "$1" counters -o json 2>/dev/null |
		jq -c '[.refused_ipv6, .drop_ipv6, .drop_ipv6_frag, .pass_ipv6] | map(.packets)'
}

# Between pods outside the mesh, IPv6 works, and no IPv6 reason moves.
case_non_mesh() {
	local b1 b2 rc=0
	b1=$(ipv6_counters 1)
	b2=$(ipv6_counters 2)
	connected6 1 2 2 2 || rc=1
	case $b1 in '['[0-9]*) ;; *)
		diag "IPv6 counters unavailable: '$b1'"
		rc=1
		;;
	esac
	check_eq "node1 refused/drop/frag/pass_ipv6" "$(ipv6_counters 1)" "$b1" || rc=1
	check_eq "node2 refused/drop/frag/pass_ipv6" "$(ipv6_counters 2)" "$b2" || rc=1
	return "$rc"
}

# From outside the mesh to an enrolled pod: the pod's SYN-ACK is dropped on
# its way out, so the connect never completes.
case_inbound_to_enrolled() {
	local b2 a2 out rc=0
	b2=$(amb_counters_json 2)
	if out=$(connect6 1 2 2 1 2); then
		diag "IPv6 connect to an enrolled pod succeeded: $out"
		rc=1
	fi
	a2=$(amb_counters_json 2)
	diag "1/2 -> 2/1: $(grep -v '^ms=' <<<"$out" | sed 's/.* E //')"
	if grep -qF "$(pod_ip6_full 1 2)" "$(srv6_log 2 1)"; then
		diag "the enrolled pod's server accepted $(pod_ip6 1 2)"
		rc=1
	fi
	expect_delta node2 "$b2" "$a2" drop_ipv6 -ge 1 || rc=1
	return "$rc"
}

udp_bound() {
	[ -n "$(ip netns exec "$(amb_pod_ns "$1" "$2")" ss -Hlun "sport = :$3" 2>/dev/null)" ]
}

# UDP (like ICMPv6 neighbour discovery, which every case here needs) is not
# captured in either family: it passes, counted as pass_non_tcp.
case_udp() {
	local b1 a1 rc=0 got
	amb_pod_bg 2 2 "$AMB_WORK/udp6.log" socat -u "UDP6-RECV:7007" "OPEN:$AMB_WORK/udp6.out,creat,append"
	wait_for 5 udp_bound 2 2 7007 || {
		diag "UDP receiver did not start"
		return 1
	}
	b1=$(amb_counters_json 1)
	echo "datagram from n1p1" | amb_pod_run 1 1 socat -u - "UDP6:[$(pod_ip6 2 2)]:7007"
	wait_for 3 grep -q "datagram from n1p1" "$AMB_WORK/udp6.out" || rc=1
	got=$(cat "$AMB_WORK/udp6.out" 2>/dev/null)
	diag "n2p2 received: $got"
	a1=$(amb_counters_json 1)
	expect_delta node1 "$b1" "$a1" pass_non_tcp -ge 1 || rc=1
	return "$rc"
}

# A dual-stack enrolled pod's IPv4 still goes through the mesh.
case_ipv4_captured() {
	local b1 seen rc=0
	b1=$(amb_counters_json 1)
	seen=$(amb_whoami 1 1 "$(amb_pod_ip 2 1)" 7000)
	check_eq "address the IPv4 server saw" "$seen" "$(amb_pod_ip 1 1)" || rc=1
	expect_delta node1 "$b1" "$(amb_counters_json 1)" assign_outbound -ge 1 || rc=1
	return "$rc"
}

restart() {
	local n=$1
	shift
	amb_daemon_stop "$n" && amb_daemon_start "$n" "$AMB_WORK/mesh.yaml" "$@"
}

case_passthrough() {
	local b1 b2 a1 a2 rc=0 n
	restart 1 --ipv6-passthrough && restart 2 --ipv6-passthrough || return 1
	for n in 1 2; do
		grep -q "warn.*IPv6 passthrough: enrolled pods' IPv6 TCP bypasses the mesh" \
			"$(amb_daemon_log "$n")" || {
			diag "node $n logged no IPv6 passthrough warning"
			rc=1
		}
	done
	b1=$(amb_counters_json 1)
	b2=$(amb_counters_json 2)
	connected6 1 1 2 1 || rc=1
	a1=$(amb_counters_json 1)
	a2=$(amb_counters_json 2)
	expect_delta node1 "$b1" "$a1" pass_ipv6 -ge 1 || rc=1
	expect_delta node2 "$b2" "$a2" pass_ipv6 -ge 1 || rc=1
	expect_delta node1 "$b1" "$a1" refused_ipv6 -eq 0 || rc=1
	return "$rc"
}

case_fail_closed_again() {
	local b1 rc=0
	restart 1 || return 1
	b1=$(amb_counters_json 1)
	refused6 1 1 2 2 || rc=1
	expect_delta node1 "$b1" "$(amb_counters_json 1)" refused_ipv6 -eq 1 || rc=1
	return "$rc"
}

if ! setup; then
	tap_fail "topology (IPv6 from 2001:2::/48) and daemons come up"
	tap_done
fi

tap_ok "enrolled pod's IPv6 connects are refused at once, counted, in /metrics" case_enrolled_refused
tap_ok "IPv6 between pods outside the mesh is unaffected, no IPv6 counter moves" case_non_mesh
tap_ok "IPv6 from outside the mesh to an enrolled pod: no handshake (drop_ipv6)" case_inbound_to_enrolled
tap_ok "an enrolled pod's UDP over IPv6 passes (pass_non_tcp)" case_udp
tap_ok "a dual-stack enrolled pod's IPv4 still goes through the mesh" case_ipv4_captured
tap_ok "--ipv6-passthrough: warned at start, IPv6 connect goes through (pass_ipv6)" case_passthrough
tap_ok "restarted without --ipv6-passthrough: refused again" case_fail_closed_again
tap_ok "daemons still running after all cases" kill -0 "${AMB_DAEMON_PID[1]}" "${AMB_DAEMON_PID[2]}"
tap_done
