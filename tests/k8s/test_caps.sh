#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
#
# Capabilities, before and after start-up.
#
# Start-up: the DaemonSet's capability set is exactly what ambientd needs:
# run as root with only the capabilities manifests/daemonset.yaml adds (the
# bounding set, as a container runtime sets it, without CAP_SETPCAP), the
# daemon starts and captures a pod's traffic; with any one of them removed,
# it does not start.
#
# Run time (userspace/kernel/privs.c): once the programs are loaded and the
# routing is set, every thread keeps only RETAINED (effective = permitted),
# nothing inheritable or ambient, no_new_privs, and a bounding set shrunk to
# RETAINED when it was allowed to (full root) or left as the runtime set it
# (the DaemonSet). Everything the daemon does later still works with that:
# a pod enrolled after start is captured (tc filter, transparent upstream
# socket with SO_MARK), SIGHUP reloads, certificates rotate, and
# --uninstall-on-exit removes filters, pins, the cgroup link and the rule
# at SIGTERM.
set -u
. "$(dirname "$0")/../integration/lib.sh"

# privs.c's retained set. Changing it there means changing it here, on
# purpose: the test states what the daemon may keep.
RETAINED=(NET_ADMIN)

amb_require daemon jq setpriv
DS=$AMB_SRC_ROOT/manifests/daemonset.yaml
# The `add:` list of the ambientd container (the only one that adds any).
mapfile -t CAPS < <(awk '/^ *add:$/ {on = 1; next} on && /^ *- [A-Z_]+$/ {print $2; next} on && !/^ *#/ {on = 0}' "$DS")
[ "${#CAPS[@]}" -gt 0 ] || skip_all "no capabilities found in $DS"
setpriv --bounding-set=-all,+bpf true 2>/dev/null || skip_all "setpriv does not know CAP_BPF"

amb_init "cap$$"
REAL=$AMBIENTD

# cap_mask CAP...: the hex mask /proc/PID/status shows for exactly these.
cap_mask() {
	setpriv --bounding-set="-all$(printf ',+%s' "${@,,}")" -- awk '/^CapBnd:/ {print $2}' /proc/self/status
}

# with_caps CAP...: AMBIENTD becomes a wrapper running the real daemon with
# only these capabilities (bounding set; root keeps uid 0 like a container).
with_caps() {
	local set="-all" c
	for c in "$@"; do set="$set,+${c,,}"; done
	printf '#!/bin/sh\nexec setpriv --bounding-set=%s --inh-caps=-all -- "%s" "$@"\n' "$set" "$REAL" >"$AMB_WORK/ambientd-caps"
	chmod +x "$AMB_WORK/ambientd-caps"
	AMBIENTD=$AMB_WORK/ambientd-caps
}

# check_threads PID EFF BND: every thread of PID has CapEff = CapPrm = EFF,
# CapBnd = BND, no inheritable or ambient capabilities and NoNewPrivs 1;
# and there is more than one thread (workers inherit from the main thread).
check_threads() {
	local pid=$1 eff=$2 bnd=$3 rc=0 n=0 t line
	for t in /proc/"$pid"/task/*; do
		line=$(awk '/^(Name|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs):/ {printf "%s%s ", $1, $2}' "$t/status" 2>/dev/null) || continue
		[ -n "$line" ] || continue
		n=$((n + 1))
		[ "$line" = "$(printf 'Name:%s CapInh:0000000000000000 CapPrm:%s CapEff:%s CapBnd:%s CapAmb:0000000000000000 NoNewPrivs:1 ' \
			"$(awk '/^Name:/ {print $2}' "$t/status")" "$eff" "$eff" "$bnd")" ] && continue
		diag "thread ${t##*/}: $line(want CapPrm=CapEff=$eff CapBnd=$bnd, none inheritable/ambient, NoNewPrivs 1)"
		rc=1
	done
	[ "$n" -ge 2 ] || {
		diag "only $n thread(s) seen in /proc/$pid/task"
		rc=1
	}
	return "$rc"
}

setup() {
	amb_node 1 && amb_pod 1 1 && amb_pod 1 2 || return 1
	AMB_PROTOCOL=TCP amb_config "$AMB_WORK/mesh.yaml" 1:1
	amb_server 1 2 7000 whoami
}

pod_enrolled() { amb_ctl 1 pods | grep -q "$(amb_pod_ip "$1" "$2")"; }

fresh() { # full root: remove what an earlier run left
	AMBIENTD=$REAL amb_uninstall 1 >/dev/null 2>&1
	rm -rf "$(amb_pin_dir 1)"
}

case_exact_set() {
	local rc=0 pid seen before after
	fresh
	with_caps "${CAPS[@]}"
	amb_daemon_start 1 "$AMB_WORK/mesh.yaml" || return 1
	pid=${AMB_DAEMON_PID[1]}
	wait_for 5 pod_enrolled 1 1 || {
		diag "pod 1/1 not enrolled"
		rc=1
	}
	before=$(amb_counter 1 assign_outbound)
	seen=$(amb_whoami 1 1 "$(amb_pod_ip 1 2)" 7000)
	after=$(amb_counter 1 assign_outbound)
	check_eq "address the server saw" "$seen" "$(amb_pod_ip 1 1)" || rc=1
	[ "$after" != counter-unavailable ] && [ "$after" -gt "$before" ] || {
		diag "traffic not captured (assign_outbound $before -> $after)"
		rc=1
	}
	# No CAP_SETPCAP in a container: the runtime's bounding set stays.
	check_threads "$pid" "$(cap_mask "${RETAINED[@]}")" "$(cap_mask "${CAPS[@]}")" || rc=1
	grep -E "cannot set|Operation not permitted|EPERM" "$(amb_daemon_log 1)" | head -5 | diag
	! grep -qE "cannot set .*rp_filter" "$(amb_daemon_log 1)" || rc=1
	amb_daemon_stop 1 || rc=1
	return "$rc"
}

case_manifest_superset() {
	local c rc=0
	for c in "${RETAINED[@]}"; do
		case " ${CAPS[*]} " in *" $c "*) ;; *)
			diag "the daemon keeps $c at run time but $DS does not grant it"
			rc=1
			;;
		esac
	done
	return "$rc"
}

setup || { diag "setup failed"; tap_done; }
tap_ok "with exactly ${CAPS[*]}: starts, enrolls, captures; then every thread keeps only ${RETAINED[*]}, no_new_privs" case_exact_set
tap_ok "the DaemonSet grants every capability kept at run time (${RETAINED[*]})" case_manifest_superset

for cap in "${CAPS[@]}"; do
	case_without() {
		local others=() c
		for c in "${CAPS[@]}"; do [ "$c" = "$1" ] || others+=("$c"); done
		fresh
		with_caps "${others[@]}"
		echo "=== without $1" >>"$(amb_daemon_log 1)"
		if amb_daemon_start 1 "$AMB_WORK/mesh.yaml" 2>/dev/null; then
			diag "ambientd ran without $1: the manifest asks for more than it needs"
			amb_daemon_stop 1
			return 1
		fi
		wait "${AMB_DAEMON_PID[1]}" 2>/dev/null
		unset "AMB_DAEMON_PID[1]"
		tail -n 3 "$(amb_daemon_log 1)" | diag
	}
	tap_ok "without $cap: ambientd does not start" case_without "$cap"
done

# ---- full root: what the daemon does after dropping ----------------------

AMBIENTD=$REAL
fresh
LOG=$(amb_daemon_log 1)
PID=""

case_root_drop() {
	local rc=0
	echo "=== full root" >>"$LOG"
	# HBONE pods: certificates are issued (and rotate: --cert-ttl 10).
	AMB_PROTOCOL=HBONE amb_config "$AMB_WORK/mesh2.yaml" 1:1
	amb_daemon_start 1 "$AMB_WORK/mesh2.yaml" --cert-ttl 10 --uninstall-on-exit || return 1
	PID=${AMB_DAEMON_PID[1]}
	check_threads "$PID" "$(cap_mask "${RETAINED[@]}")" "$(cap_mask "${RETAINED[@]}")" || rc=1
	grep -q "privileges: kept only $(IFS=,; echo "${RETAINED[*]}"); bounding set reduced" "$LOG" || {
		diag "no startup line naming the retained set:"
		grep "privileges:" "$LOG" | tail -2 | diag
		rc=1
	}
	return "$rc"
}

case_enroll_later() {
	local rc=0 seen before after
	[ -n "$PID" ] || return 1
	amb_server 1 1 7001 whoami || return 1
	AMB_PROTOCOL=HBONE amb_config "$AMB_WORK/next.yaml" 1:1 1:2
	amb_replace_file "$AMB_WORK/mesh2.yaml" <"$AMB_WORK/next.yaml"
	wait_for 5 pod_enrolled 1 2 || {
		diag "pod 1/2 not enrolled after the config change"
		return 1
	}
	amb_node_exec 1 tc filter show dev "$(amb_pod_veth 1 2)" ingress | grep -q "amb_tc_pod" || {
		diag "no amb_tc_pod filter on $(amb_pod_veth 1 2)"
		rc=1
	}
	before=$(amb_counter 1 assign_outbound)
	seen=$(amb_whoami 1 2 "$(amb_pod_ip 1 1)" 7001)
	after=$(amb_counter 1 assign_outbound)
	check_eq "address the server saw (transparent upstream)" "$seen" "$(amb_pod_ip 1 2)" || rc=1
	[ "$after" != counter-unavailable ] && [ "$after" -gt "$before" ] || {
		diag "traffic of the new pod not captured (assign_outbound $before -> $after)"
		rc=1
	}
	return "$rc"
}

case_reload() {
	local before
	[ -n "$PID" ] || return 1
	before=$(grep -c "config reloaded" "$LOG")
	kill -HUP "$PID"
	wait_for 5 test "$(grep -c "config reloaded" "$LOG")" -gt "$before" || {
		diag "no 'config reloaded' line after SIGHUP"
		return 1
	}
}

case_rotate() {
	[ -n "$PID" ] || return 1
	# Issued at start with a 10 s lifetime: rotated at half-life.
	wait_log "$LOG" "ca: rotated spiffe://" 10 || {
		diag "no certificate rotated within 10 s"
		return 1
	}
}

case_uninstall_on_exit() {
	local rc=0 dev
	[ -n "$PID" ] || return 1
	amb_daemon_stop 1 || {
		diag "daemon exit status $?"
		rc=1
	}
	[ ! -e "$(amb_pin_dir 1)" ] || {
		diag "pins left: $(ls "$(amb_pin_dir 1)" | tr '\n' ' ')"
		rc=1
	}
	for dev in eth0 "$(amb_pod_veth 1 1)" "$(amb_pod_veth 1 2)"; do
		! amb_node_exec 1 tc filter show dev "$dev" ingress | grep -q "amb_tc_" || {
			diag "filter left on $dev"
			rc=1
		}
	done
	! amb_node_exec 1 ip rule show | grep -q "fwmark 0x111" || {
		diag "ip rule left: $(amb_node_exec 1 ip rule show | grep fwmark)"
		rc=1
	}
	grep -q "detached sockops from its cgroup" "$LOG" || {
		diag "sockops link not detached"
		rc=1
	}
	sed -n '/uninstalling node/,$p' "$LOG" | grep -E " (warn|error) " | diag
	! sed -n '/uninstalling node/,$p' "$LOG" | grep -qE " (warn|error) " || rc=1
	return "$rc"
}

tap_ok "full root: every thread keeps only ${RETAINED[*]} (effective, permitted, bounding), nothing inheritable or ambient, no_new_privs" case_root_drop
tap_ok "after the drop: a pod enrolled later gets its filter and is captured, source address kept" case_enroll_later
tap_ok "after the drop: SIGHUP reloads the config" case_reload
tap_ok "after the drop: certificates rotate" case_rotate
tap_ok "after the drop: --uninstall-on-exit removes filters, pins, cgroup link and rule at SIGTERM" case_uninstall_on_exit
fresh
tap_done
