#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
#
# The DaemonSet's capability set is exactly what ambientd needs: run as root
# with only the capabilities manifests/daemonset.yaml adds (the bounding set,
# as a container runtime sets it), the daemon starts and captures a pod's
# traffic; with any one of them removed, it does not start.
set -u
. "$(dirname "$0")/../integration/lib.sh"

amb_require daemon jq setpriv
DS=$AMB_SRC_ROOT/manifests/daemonset.yaml
# The `add:` list of the ambientd container (the only one that adds any).
mapfile -t CAPS < <(awk '/^ *add:$/ {on = 1; next} on && /^ *- [A-Z_]+$/ {print $2; next} on && !/^ *#/ {on = 0}' "$DS")
[ "${#CAPS[@]}" -gt 0 ] || skip_all "no capabilities found in $DS"
setpriv --bounding-set=-all,+bpf true 2>/dev/null || skip_all "setpriv does not know CAP_BPF"

amb_init "cap$$"
REAL=$AMBIENTD

# with_caps CAP...: AMBIENTD becomes a wrapper running the real daemon with
# only these capabilities (bounding set; root keeps uid 0 like a container).
with_caps() {
	local set="-all" c
	for c in "$@"; do set="$set,+${c,,}"; done
	printf '#!/bin/sh\nexec setpriv --bounding-set=%s --inh-caps=-all -- "%s" "$@"\n' "$set" "$REAL" >"$AMB_WORK/ambientd-caps"
	chmod +x "$AMB_WORK/ambientd-caps"
	AMBIENTD=$AMB_WORK/ambientd-caps
}

setup() {
	amb_node 1 && amb_pod 1 1 && amb_pod 1 2 || return 1
	AMB_PROTOCOL=TCP amb_config "$AMB_WORK/mesh.yaml" 1:1
	amb_server 1 2 7000 whoami
}

pod_enrolled() { amb_ctl 1 pods | grep -q "$(amb_pod_ip 1 1)"; }

fresh() { # full root: remove what an earlier run left
	AMBIENTD=$REAL amb_uninstall 1 >/dev/null 2>&1
	rm -rf "$(amb_pin_dir 1)"
}

case_exact_set() {
	local rc=0 pid eff want seen before after
	fresh
	with_caps "${CAPS[@]}"
	amb_daemon_start 1 "$AMB_WORK/mesh.yaml" || return 1
	pid=${AMB_DAEMON_PID[1]}
	eff=$(awk '/^CapEff:/ {print $2}' "/proc/$pid/status")
	want=$(setpriv --bounding-set="-all$(printf ',+%s' "${CAPS[@],,}")" -- awk '/^CapEff:/ {print $2}' /proc/self/status)
	check_eq "daemon's effective capabilities" "$eff" "$want" || rc=1
	wait_for 5 pod_enrolled || {
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
	grep -E "cannot set|Operation not permitted|EPERM" "$(amb_daemon_log 1)" | head -5 | diag
	! grep -qE "cannot set .*rp_filter" "$(amb_daemon_log 1)" || rc=1
	amb_daemon_stop 1 || rc=1
	return "$rc"
}
setup || { diag "setup failed"; tap_done; }
tap_ok "with exactly ${CAPS[*]}: starts, enrolls, captures" case_exact_set

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
AMBIENTD=$REAL
fresh
tap_done
