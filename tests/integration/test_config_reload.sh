#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
#
# Configuration: a bad file at startup is refused with the key's path; a bad
# file at runtime is rejected whole and the last good config keeps working;
# a good change enrolls and unenrolls pods; `ambientctl enroll|unenroll`
# handles ad-hoc pods and survives config reloads.
#
#   node 1 (ambientd): p1, p2, p3 (enrolled or not depending on the case)
#   node 2 (no daemon): p1, the server
set -u
. "$(dirname "$0")/lib.sh"

amb_require daemon jq
amb_init "r$$"

N1P1=$(amb_pod_ip 1 1) N1P2=$(amb_pod_ip 1 2) N1P3=$(amb_pod_ip 1 3)
N2P1=$(amb_pod_ip 2 1)
CONF="$AMB_WORK/mesh.yaml"

setup() {
	amb_node 1 && amb_node 2 &&
		amb_pod 1 1 && amb_pod 1 2 && amb_pod 1 3 && amb_pod 2 1 || return 1
	amb_server 2 1 7000 whoami
}

# A file with one unknown key in workloads[2] (n1p2's entry): valid YAML,
# invalid config. workloads[0] and [1] alone would be fine, so a daemon that
# applied the file partly would enroll n1p3.
write_bad_config() {
	amb_config "$1" 1:1 1:3 1:2
	sed -i "/name: n1p2/a\\  workloadIp: $N1P2" "$1"
}
BAD_PATH='workloads[2].workloadIp'

# captured N I: n<N>p<I> -> n2p1 shows the real IP and node 1's
# assign_outbound moved (or did not move, with "not").
captured() {
	local want=-ge b a seen rc=0
	if [ "$1" = not ]; then
		want=-eq
		shift
	fi
	b=$(amb_counters_json 1)
	seen=$(amb_whoami "$1" "$2" "$N2P1" 7000)
	a=$(amb_counters_json 1)
	check_eq "address the server saw" "$seen" "$(amb_pod_ip "$1" "$2")" || rc=1
	if [ "$want" = -ge ]; then
		expect_delta node1 "$b" "$a" assign_outbound -ge 1 || rc=1
	else
		expect_delta node1 "$b" "$a" assign_outbound -eq 0 || rc=1
	fi
	return "$rc"
}

pods_lists() {
	amb_ctl 1 pods 2>/dev/null | grep -Fw "$1" | grep -qi "${2:-.}"
}

pods_lacks() {
	! amb_ctl 1 pods 2>/dev/null | grep -qFw "$1"
}

show_pods() {
	diag "ambientctl pods:"
	amb_ctl 1 pods 2>&1 | diag
}

case_bad_at_start() {
	local err="$AMB_WORK/bad-start.err" st rc=0
	write_bad_config "$AMB_WORK/bad.yaml"
	amb_node_exec 1 timeout 10 "$AMBIENTD" --node "$(amb_node_name 1)" \
		--config "$AMB_WORK/bad.yaml" --cgroup "$CG" >/dev/null 2>"$err"
	st=$?
	diag "exit status $st; stderr:"
	head -5 "$err" | diag
	check_eq "exit status" "$st" 1 || rc=1
	grep -qF "$BAD_PATH" "$err" || {
		diag "stderr does not name $BAD_PATH"
		rc=1
	}
	grep -qF "config rejected" "$err" || {
		diag "stderr does not say 'config rejected'"
		rc=1
	}
	# Tidy whatever a refused start may have left (not part of the contract).
	amb_uninstall 1 >/dev/null 2>&1
	return "$rc"
}

case_good_start() {
	local rc=0
	amb_config "$CONF" 1:1
	amb_daemon_start 1 "$CONF" || return 1
	pods_lists "$N1P1" config || {
		show_pods
		rc=1
	}
	captured 1 1 || rc=1
	captured not 1 2 || rc=1
	return "$rc"
}

# log_rejection LOG PATH: a "config rejected" line naming PATH.
log_rejection() {
	grep -F "config rejected" "$1" | grep -qF "$2"
}

# status_field NAME: a field of `ambientctl status` (the running daemon's view).
status_field() {
	amb_ctl 1 status | jq -r ".$1"
}

case_bad_reload() {
	local log rc=0
	log=$(amb_daemon_log 1)
	GEN_BEFORE=$(status_field config_generation)
	write_bad_config "$AMB_WORK/next.yaml"
	amb_replace_file "$CONF" <"$AMB_WORK/next.yaml"
	if ! wait_for 5 log_rejection "$log" "$BAD_PATH"; then
		diag "no 'config rejected ... $BAD_PATH' line in the log within 5 s"
		rc=1
	fi
	grep -F "config rejected" "$log" | tail -2 | diag
	kill -0 "${AMB_DAEMON_PID[1]}" 2>/dev/null || {
		diag "the daemon died on a bad config"
		rc=1
	}
	return "$rc"
}

case_old_config_in_force() {
	local rc=0 gen
	gen=$(status_field config_generation)
	check_eq "config generation after the rejected file" "$gen" "$GEN_BEFORE" || rc=1
	pods_lists "$N1P1" || rc=1
	pods_lacks "$N1P3" || {
		diag "$N1P3 (valid part of the rejected file) got enrolled"
		rc=1
	}
	pods_lacks "$N1P2" || {
		diag "$N1P2 (bad part of the rejected file) got enrolled"
		rc=1
	}
	[ "$rc" -eq 0 ] || show_pods
	captured 1 1 || rc=1
	captured not 1 3 || rc=1
	return "$rc"
}

case_good_reload_enrolls() {
	local rc=0
	amb_config "$AMB_WORK/next.yaml" 1:1 1:2
	amb_replace_file "$CONF" <"$AMB_WORK/next.yaml"
	if ! wait_for 5 pods_lists "$N1P2" config; then
		diag "$N1P2 not listed (source config) 5 s after the change"
		show_pods
		rc=1
	fi
	captured 1 2 || rc=1
	captured 1 1 || rc=1
	# The daemon's own view moved on too.
	[ "$(status_field config_generation)" -gt "$GEN_BEFORE" ] || {
		diag "ambientctl status still reports generation $GEN_BEFORE"
		rc=1
	}
	check_eq "workloads in the daemon's config" "$(status_field workloads)" 2 || rc=1
	return "$rc"
}

case_good_reload_unenrolls() {
	local rc=0
	amb_config "$AMB_WORK/next.yaml" 1:2
	amb_replace_file "$CONF" <"$AMB_WORK/next.yaml"
	if ! wait_for 5 pods_lacks "$N1P1"; then
		diag "$N1P1 still listed 5 s after its removal from the config"
		show_pods
		rc=1
	fi
	captured not 1 1 || rc=1
	captured 1 2 || rc=1
	return "$rc"
}

case_enroll() {
	local out rc=0
	out=$(amb_ctl 1 enroll "$N1P3" 2>&1) || {
		diag "ambientctl enroll $N1P3 failed: $out"
		return 1
	}
	pods_lists "$N1P3" manual || {
		diag "$N1P3 not listed as manual"
		show_pods
		rc=1
	}
	captured 1 3 || rc=1
	return "$rc"
}

case_manual_survives_reload() {
	local rc=0
	amb_config "$AMB_WORK/next.yaml" 1:1 1:2
	amb_replace_file "$CONF" <"$AMB_WORK/next.yaml"
	if ! wait_for 5 pods_lists "$N1P1" config; then
		diag "$N1P1 not back 5 s after the change"
		rc=1
	fi
	pods_lists "$N1P3" manual || {
		diag "hand-enrolled $N1P3 lost on config reload"
		rc=1
	}
	[ "$rc" -eq 0 ] || show_pods
	captured 1 3 || rc=1
	return "$rc"
}

case_unenroll() {
	local out rc=0
	out=$(amb_ctl 1 unenroll "$N1P3" 2>&1) || {
		diag "ambientctl unenroll $N1P3 failed: $out"
		return 1
	}
	pods_lacks "$N1P3" || {
		diag "$N1P3 still listed after unenroll"
		show_pods
		rc=1
	}
	captured not 1 3 || rc=1
	return "$rc"
}

case_enroll_bad_input() {
	local out st
	out=$(amb_ctl 1 enroll 198.18.1.999 2>&1)
	st=$?
	diag "enroll 198.18.1.999: exit $st: $out"
	[ "$st" -ne 0 ] && [ -n "$out" ]
}

if ! setup; then
	tap_fail "topology comes up"
	tap_done
fi

tap_ok "bad config at startup: exit 1, error names the key path" case_bad_at_start
tap_ok "good config at startup: pod enrolled and captured" case_good_start
tap_ok "bad config on reload: rejected with the key path, daemon keeps running" case_bad_reload
tap_ok "bad config on reload: the old config stays in force (nothing partial)" case_old_config_in_force
tap_ok "good config change enrolls a new pod" case_good_reload_enrolls
tap_ok "good config change unenrolls a removed pod" case_good_reload_unenrolls
tap_ok "ambientctl enroll of an ad-hoc pod" case_enroll
tap_ok "hand-enrolled pod survives a config reload" case_manual_survives_reload
tap_ok "ambientctl unenroll of the ad-hoc pod" case_unenroll
tap_ok "ambientctl enroll rejects a malformed address" case_enroll_bad_input
tap_done
