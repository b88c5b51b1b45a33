#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
#
# Daemon lifecycle: SIGTERM fails closed for enrolled pods (and only them),
# a restart resumes from the pinned state without re-enrolling, `ambientd
# uninstall` leaves nothing of its node behind while the other node keeps
# working, and --uninstall-on-exit cleans up on a clean shutdown.
#
#   node 1: p1 enrolled (config), p2 not in the mesh, p3 enrolled by hand
#   node 2: p1, p2 enrolled (config), p3 not in the mesh
# Node 1's eth0 carries a foreign tc filter (another CNI's) that must survive.
set -u
. "$(dirname "$0")/lib.sh"

amb_require daemon jq bpftool
amb_init "l$$"

N1P1=$(amb_pod_ip 1 1) N1P2=$(amb_pod_ip 1 2) N1P3=$(amb_pod_ip 1 3)
N2P1=$(amb_pod_ip 2 1) N2P3=$(amb_pod_ip 2 3)
FOREIGN_PREF=200
FOREIGN_HANDLE=0x77

setup() {
	amb_node 1 && amb_node 2 &&
		amb_pod 1 1 && amb_pod 1 2 && amb_pod 1 3 &&
		amb_pod 2 1 && amb_pod 2 2 && amb_pod 2 3 || return 1
	# Another CNI's clsact qdisc and filter (classic BPF "return 0": no
	# verdict, the packet goes on to the next filter).
	tc -n "$(amb_node_ns 1)" qdisc add dev eth0 clsact &&
		tc -n "$(amb_node_ns 1)" filter add dev eth0 ingress pref "$FOREIGN_PREF" \
			handle "$FOREIGN_HANDLE" bpf bytecode '1,6 0 0 0,' || return 1
	amb_config "$AMB_WORK/mesh.yaml" 1:1 2:1 2:2
	local pod
	for pod in "1 1" "1 2" "1 3" "2 1" "2 2" "2 3"; do
		# shellcheck disable=SC2086
		amb_server $pod 7000 whoami || return 1
	done
	amb_daemon_start 1 "$AMB_WORK/mesh.yaml" && amb_daemon_start 2 "$AMB_WORK/mesh.yaml"
}

# captured_whoami CN CI SN SI NODE REASON: the server sees the client's IP
# and NODE's counter REASON moved.
captured_whoami() {
	local b a seen rc=0
	b=$(amb_counters_json "$5")
	seen=$(amb_whoami "$1" "$2" "$(amb_pod_ip "$3" "$4")" 7000)
	a=$(amb_counters_json "$5")
	check_eq "address the server saw" "$seen" "$(amb_pod_ip "$1" "$2")" || rc=1
	expect_delta "node$5" "$b" "$a" "$6" -ge 1 || rc=1
	return "$rc"
}

pods_lists() {
	amb_ctl "$1" pods 2>/dev/null | grep -Fw "$2" | grep -qi "${3:-.}"
}

case_manual_enroll() {
	local out
	out=$(amb_ctl 1 enroll "$N1P3" 2>&1) || {
		diag "ambientctl enroll $N1P3 failed: $out"
		return 1
	}
	pods_lists 1 "$N1P3" manual || {
		diag "ambientctl pods does not list $N1P3 as manual:"
		amb_ctl 1 pods 2>&1 | diag
		return 1
	}
	captured_whoami 1 3 2 1 1 assign_outbound
}

case_sigterm() {
	local rc=0 st=0 veth
	amb_daemon_stop 1 || st=$?
	[ "$st" -eq 0 ] || {
		diag "ambientd exited with status $st on SIGTERM"
		rc=1
	}
	[ -d "$(amb_pin_dir 1)" ] || {
		diag "pin dir $(amb_pin_dir 1) gone after SIGTERM"
		rc=1
	}
	veth=$(amb_pod_veth 1 1)
	tc -n "$(amb_node_ns 1)" filter show dev "$veth" ingress | grep -q amb_tc_pod || {
		diag "amb_tc_pod no longer attached to $veth after SIGTERM:"
		tc -n "$(amb_node_ns 1)" filter show dev "$veth" ingress | diag
		rc=1
	}
	return "$rc"
}

# Enrolled pod, no daemon: connect is refused (or dropped: times out), never
# connected, and the fail-closed counter says why.
case_fail_closed() {
	local b a out st d1 d2 rc=0
	b=$(amb_counters_json 1)
	out=$(amb_tcp 1 1 connect "$N2P1" 7000 --timeout 3000 2>&1)
	st=$?
	a=$(amb_counters_json 1)
	diag "n1p1 -> n2p1 with node 1 down: $(echo $out)"
	if [ "$st" -eq 0 ]; then
		diag "enrolled pod connected while its node's daemon is down"
		rc=1
	fi
	if grep -qF "whoami $N1P1:" "$(amb_server_log 2 1 7000)" 2>/dev/null &&
		[ "$(grep -cF "whoami $N1P1:" "$(amb_server_log 2 1 7000)")" -gt "$SEEN_BEFORE_DOWN" ]; then
		diag "the server got a connection from $N1P1 while node 1 was down"
		rc=1
	fi
	d1=$(cdelta "$b" "$a" refused_no_listener)
	d2=$(cdelta "$b" "$a" drop_no_listener)
	diag "refused_no_listener +$d1, drop_no_listener +$d2 (ambientctl with the daemon down)"
	if ! is_num "$d1" || ! is_num "$d2" || [ $((d1 + d2)) -lt 1 ]; then
		diag "expected refused_no_listener or drop_no_listener to count the SYN"
		rc=1
	fi
	return "$rc"
}

case_non_enrolled_while_down() {
	local seen rc=0
	seen=$(amb_whoami 1 2 "$N2P3" 7000)
	check_eq "n1p2 -> n2p3 server saw" "$seen" "$N1P2" || rc=1
	seen=$(amb_whoami 2 3 "$N1P2" 7000)
	check_eq "n2p3 -> n1p2 server saw" "$seen" "$N2P3" || rc=1
	return "$rc"
}

case_restart() {
	amb_daemon_start 1 "$AMB_WORK/mesh.yaml" || return 1
	captured_whoami 1 1 2 1 1 assign_outbound
}

case_restart_keeps_manual() {
	pods_lists 1 "$N1P3" manual || {
		diag "after restart ambientctl pods does not list $N1P3 as manual:"
		amb_ctl 1 pods 2>&1 | diag
		return 1
	}
	captured_whoami 1 3 2 1 1 assign_outbound
}

# Prints "prog ID" / "map ID" for every BPF object node N owns: its pins
# (programs, maps, links -> program) and the tc programs in its netns.
node_bpf_ids() {
	local n=$1 f j id
	while IFS= read -r f; do
		if j=$(bpftool -j prog show pinned "$f" 2>/dev/null); then
			jq -r '"prog \(.id)", (.map_ids // [] | .[] | "map \(.)")' <<<"$j"
		elif j=$(bpftool -j map show pinned "$f" 2>/dev/null); then
			jq -r '"map \(.id)"' <<<"$j"
		elif j=$(bpftool -j link show pinned "$f" 2>/dev/null); then
			jq -r '"prog \(.prog_id)"' <<<"$j"
		fi
	done < <(find "$(amb_pin_dir "$n")" -mindepth 1 ! -type d 2>/dev/null)
	# tc programs attached in the node netns, ours by program name (the
	# foreign classic-BPF filter has none).
	for id in $(amb_node_exec "$n" bpftool -j net show 2>/dev/null |
		jq -r '.[] | (.tc // [])[] | (.id // .prog_id // empty)'); do
		bpftool -j prog show id "$id" 2>/dev/null |
			jq -r 'select(.name // "" | startswith("amb_")) | "prog \(.id)", (.map_ids // [] | .[] | "map \(.)")'
	done
}

# Which of the given "kind id" lines still exist.
alive_ids() {
	local kind id progs maps
	progs=$(bpftool -j prog show 2>/dev/null | jq -r '.[].id')
	maps=$(bpftool -j map show 2>/dev/null | jq -r '.[].id')
	while read -r kind id; do
		case $kind in
		prog) grep -qx "$id" <<<"$progs" && echo "prog $id" ;;
		map) grep -qx "$id" <<<"$maps" && echo "map $id" ;;
		esac
	done
}

no_ids_alive() {
	[ -z "$(alive_ids <<<"$1")" ]
}

case_uninstall() {
	local ns rc=0 ids n2ids left out st dev
	ns=$(amb_node_ns 1)
	ids=$(node_bpf_ids 1 | sort -u)
	N2_IDS=$(node_bpf_ids 2 | sort -u)
	diag "node 1 BPF objects before uninstall: $(echo $ids)"
	[ -n "$ids" ] || {
		diag "found no BPF objects of node 1 (pins in $(amb_pin_dir 1), tc in $ns)"
		rc=1
	}
	amb_daemon_stop 1
	out=$(amb_uninstall 1 2>&1)
	st=$?
	[ "$st" -eq 0 ] || {
		diag "ambientd uninstall exited $st: $out"
		rc=1
	}
	if [ -e "$(amb_pin_dir 1)" ]; then
		diag "pin dir still there: $(ls -A "$(amb_pin_dir 1)" | tr '\n' ' ')"
		rc=1
	fi
	for dev in $(ip -n "$ns" -o link show | awk -F': ' '{print $2}' | cut -d@ -f1); do
		out=$(tc -n "$ns" filter show dev "$dev" ingress 2>/dev/null; tc -n "$ns" filter show dev "$dev" egress 2>/dev/null)
		if grep -qE 'amb_|handle 0xa3b1' <<<"$out"; then
			diag "tc filter left on $dev: $out"
			rc=1
		fi
	done
	if ! tc -n "$ns" filter show dev eth0 ingress | grep -q "handle $FOREIGN_HANDLE"; then
		diag "the foreign tc filter on eth0 is gone"
		rc=1
	fi
	if ! tc -n "$ns" qdisc show dev eth0 | grep -q clsact; then
		diag "the clsact qdisc on eth0 is gone"
		rc=1
	fi
	out=$(ip -n "$ns" rule show | grep -iE 'fwmark 0x111|lookup 111')
	[ -z "$out" ] || {
		diag "ip rule left: $out"
		rc=1
	}
	out=$(ip -n "$ns" route show table 111 2>/dev/null)
	[ -z "$out" ] || {
		diag "table 111 left: $out"
		rc=1
	}
	# Programs and maps are freed once nothing refers to them (RCU: allow 5 s).
	if ! wait_for 5 no_ids_alive "$ids"; then
		left=$(alive_ids <<<"$ids")
		diag "node 1 BPF objects still loaded: $(echo $left)"
		bpftool prog show 2>/dev/null | grep -A1 -E "^($(awk '$1 == "prog" {print $2}' <<<"$left" | paste -sd'|')):" | diag
		rc=1
	fi
	out=$(bpftool cgroup show "$CG" 2>/dev/null)
	diag "sock_ops on the test cgroup after uninstall: $(echo $out)"
	return "$rc"
}

case_node1_pods_plain() {
	# Node 1 no longer captures; node 2 still captures inbound.
	captured_whoami 1 1 2 1 2 assign_inbound
}

case_isolation() {
	local rc=0 left
	kill -0 "${AMB_DAEMON_PID[2]}" 2>/dev/null || {
		diag "node 2's daemon died"
		rc=1
	}
	[ -d "$(amb_pin_dir 2)" ] || {
		diag "node 2's pin dir is gone"
		rc=1
	}
	left=$(alive_ids <<<"$N2_IDS")
	if [ "$left" != "$N2_IDS" ]; then
		diag "node 2 lost BPF objects: had $(echo $N2_IDS), now $(echo $left)"
		rc=1
	fi
	captured_whoami 2 2 2 1 2 assign_outbound || rc=1
	return "$rc"
}

case_uninstall_on_exit() {
	local rc=0 st=0
	amb_daemon_stop 2
	amb_daemon_start 2 "$AMB_WORK/mesh.yaml" --uninstall-on-exit || return 1
	captured_whoami 2 2 2 1 2 assign_outbound || rc=1
	amb_daemon_stop 2 || st=$?
	[ "$st" -eq 0 ] || {
		diag "ambientd exited $st on SIGTERM"
		rc=1
	}
	if [ -e "$(amb_pin_dir 2)" ]; then
		diag "pin dir still there after --uninstall-on-exit"
		rc=1
	fi
	if ip -n "$(amb_node_ns 2)" rule show | grep -qi 'fwmark 0x111'; then
		diag "ip rule left after --uninstall-on-exit"
		rc=1
	fi
	if tc -n "$(amb_node_ns 2)" filter show dev "$(amb_pod_veth 2 1)" ingress | grep -q amb_; then
		diag "tc filter left after --uninstall-on-exit"
		rc=1
	fi
	# Nothing captured: plain pod-to-pod traffic.
	check_eq "n2p2 -> n2p1 server saw" "$(amb_whoami 2 2 "$N2P1" 7000)" "$(amb_pod_ip 2 2)" || rc=1
	return "$rc"
}

if ! setup; then
	tap_fail "topology and daemons come up"
	tap_done
fi

tap_ok "cross-node capture works with both daemons up" captured_whoami 1 1 2 1 1 assign_outbound
tap_ok "ambientctl enroll: an ad-hoc pod is captured" case_manual_enroll
tap_ok "SIGTERM: daemon exits 0, programs and pins stay" case_sigterm
SEEN_BEFORE_DOWN=$(grep -cF "whoami $N1P1:" "$(amb_server_log 2 1 7000)")
tap_ok "daemon down: enrolled pod's new connection fails closed" case_fail_closed
tap_ok "daemon down: non-enrolled pods unaffected" case_non_enrolled_while_down
tap_ok "daemon down on node 1: node 2 same-node capture unaffected" captured_whoami 2 2 2 1 2 assign_outbound
tap_ok "restart: capture resumes from pinned state" case_restart
tap_ok "restart: hand-enrolled pod still enrolled and captured" case_restart_keeps_manual
tap_ok "uninstall leaves nothing of node 1 (pins, tc, rules, routes, programs, maps)" case_uninstall
tap_ok "after uninstall: node 1 pods talk plainly, node 2 still captures inbound" case_node1_pods_plain
tap_ok "isolation: node 2's daemon, pins and programs untouched" case_isolation
tap_ok "--uninstall-on-exit: SIGTERM removes node 2's state" case_uninstall_on_exit
tap_done
