#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
#
# L4 authorization across nodes (DESIGN.md §5): ALLOW/DENY by identity and
# port, dryRun, the same-node shortcut, STRICT vs PERMISSIVE, the kernel
# fast path for plaintext callers, live tightening that cuts an open
# connection, a malformed policy file, `ambientctl policies` and `check`.
# Every case rewrites the shared config file; both daemons reload it live.
#
#   node 1: p1 (sa-n1p1), p2 (sa-n1p2) in the mesh; p3 outside (plaintext)
#   node 2: p1 (sa-n2p1, the server), p2 (sa-n2p2) in the mesh; p3 outside
set -u
. "$(dirname "$0")/lib.sh"

amb_require daemon jq bpftool
amb_init "pl$$"

N1P1=$(amb_pod_ip 1 1) N1P3=$(amb_pod_ip 1 3)
N2P1=$(amb_pod_ip 2 1) N2P3=$(amb_pod_ip 2 3)
CONF="$AMB_WORK/mesh.yaml"
PIN2=""

# write_config: the four mesh pods, then stdin (policies etc.) verbatim.
write_config() {
	{
		AMB_PROTOCOL=HBONE amb_config /dev/stdout 1:1 1:2 2:1 2:2
		cat
	} | amb_replace_file "$CONF"
}

gen() { amb_ctl "$1" status 2>/dev/null | jq -r .config_generation; }

# apply: write_config from stdin, then wait until both daemons took it.
apply() {
	local g1 g2
	g1=$(gen 1)
	g2=$(gen 2)
	write_config
	local tries=50
	while [ "$tries" -gt 0 ]; do
		[ "$(gen 1)" != "$g1" ] && [ "$(gen 2)" != "$g2" ] && return 0
		sleep 0.1
		tries=$((tries - 1))
	done
	diag "daemons did not reload the config (generations $g1/$g2)"
	return 1
}

setup() {
	amb_node 1 && amb_node 2 &&
		amb_pod 1 1 && amb_pod 1 2 && amb_pod 1 3 &&
		amb_pod 2 1 && amb_pod 2 2 && amb_pod 2 3 || return 1
	write_config </dev/null
	amb_server 2 1 7000 whoami && amb_server 2 1 7001 whoami &&
		amb_server 2 1 7002 echo || return 1
	amb_daemon_start 1 "$CONF" && amb_daemon_start 2 "$CONF" || return 1
	PIN2=$(amb_pin_dir 2)
}

# reaches N I DST PORT: whoami succeeds and the server saw pod N/I.
reaches() {
	local seen
	seen=$(amb_whoami "$1" "$2" "$3" "$4")
	[ "$seen" = "$(amb_pod_ip "$1" "$2")" ] && return 0
	diag "n$1p$2 -> $3:$4 should succeed, got: $seen"
	return 1
}

# blocked N I DST PORT: whoami fails (reset or refused).
blocked() {
	local out
	out=$(amb_tcp "$1" "$2" whoami "$3" "$4" --timeout 5000 2>&1) || return 0
	diag "n$1p$2 -> $3:$4 should be denied, got: $out"
	return 1
}

# refused_by_kernel N I DST PORT: connect refused at once (RST from tc) and
# node 2's refused_policy counter moved while assign_inbound did not.
refused_by_kernel() {
	local b a rc=0 out
	b=$(amb_counters_json 2)
	out=$(amb_tcp "$1" "$2" connect "$3" "$4" --timeout 3000 2>&1)
	[ $? -eq 1 ] || { diag "n$1p$2 -> $3:$4: expected 'refused', got: $out"; rc=1; }
	a=$(amb_counters_json 2)
	expect_delta node2 "$b" "$a" refused_policy -eq 1 || rc=1
	expect_delta node2 "$b" "$a" assign_inbound -eq 0 || rc=1
	return "$rc"
}

policies_json() { amb_ctl 2 policies -o json; }

case_no_policies() {
	local rc=0
	reaches 1 1 "$N2P1" 7000 || rc=1
	reaches 1 3 "$N2P1" 7000 || rc=1 # plaintext via 15006
	reaches 2 2 "$N2P1" 7000 || rc=1 # same node
	[ "$(bpftool map dump pinned "$PIN2/amb_pol" -j | jq length)" = 0 ] || {
		diag "amb_pol not empty without policies"
		rc=1
	}
	return "$rc"
}

ALLOW_N1P1='policies:
- name: allow-n1p1
  namespace: default
  scope: Namespace
  action: Allow
  rules:
  - - - principals: [{Exact: cluster.local/ns/default/sa/sa-n1p1}]
'

case_allow_by_principal() {
	local rc=0 j
	apply <<<"$ALLOW_N1P1" || return 1
	reaches 1 1 "$N2P1" 7000 || rc=1
	blocked 1 2 "$N2P1" 7000 || rc=1
	wait_for 3 grep -q "hbone inbound.*$N2P1:7000: 401" "$(amb_daemon_log 2)" || {
		diag "node 2 did not log a 401 for n1p2"
		rc=1
	}
	grep -q "sa-n1p2) -> $N2P1:7000: denied by no ALLOW policy matched" "$(amb_daemon_log 2)" || {
		diag "node 2 did not log why n1p2 was denied"
		rc=1
	}
	j=$(policies_json)
	[ "$(jq '.policies[] | select(.name=="allow-n1p1") | .allowed' <<<"$j")" -ge 1 ] &&
		[ "$(jq .defaultDeny.denied <<<"$j")" -ge 1 ] || {
		diag "ambientctl policies: $j"
		rc=1
	}
	return "$rc"
}

case_plaintext_default_deny_in_kernel() {
	# ALLOW policies exist and a plaintext caller can match none of them
	# (no principal): refused in tc, before any socket.
	local rc=0 j
	refused_by_kernel 1 3 "$N2P1" 7000 || rc=1
	j=$(policies_json)
	[ "$(jq .defaultDeny.kernelRefused <<<"$j")" -ge 1 ] || {
		diag "kernel refusals not counted: $j"
		rc=1
	}
	return "$rc"
}

case_same_node_shortcut() {
	local rc=0
	blocked 2 2 "$N2P1" 7000 || rc=1
	grep -q "local $(amb_pod_ip 2 2):[0-9]* (spiffe://cluster.local/ns/default/sa/sa-n2p2) -> $N2P1:7000: denied" \
		"$(amb_daemon_log 2)" || {
		diag "node 2 did not log the same-node denial with the caller's identity"
		rc=1
	}
	return "$rc"
}

case_deny_wins() {
	local rc=0
	apply <<'EOF' || return 1
policies:
- name: allow-all
  namespace: default
  scope: Namespace
  action: Allow
  rules: [[]]
- name: deny-n1p1-7001
  namespace: default
  scope: Namespace
  action: Deny
  rules:
  - - - serviceAccounts: [{namespace: default, serviceAccount: sa-n1p1}]
        destinationPorts: [7001]
EOF
	reaches 1 1 "$N2P1" 7000 || rc=1
	blocked 1 1 "$N2P1" 7001 || rc=1
	reaches 1 2 "$N2P1" 7001 || rc=1
	wait_for 3 grep -q "$N2P1:7001: denied by policy default/deny-n1p1-7001" "$(amb_daemon_log 2)" || {
		diag "node 2 did not name the deciding policy"
		rc=1
	}
	return "$rc"
}

case_dry_run() {
	local rc=0
	apply <<'EOF' || return 1
policies:
- name: dry-deny-all
  namespace: default
  scope: Namespace
  action: Deny
  dryRun: true
  rules: [[]]
EOF
	reaches 1 1 "$N2P1" 7000 || rc=1
	reaches 1 3 "$N2P1" 7000 || rc=1
	wait_for 3 grep -q "$N2P1:7000: dry run: would deny by policy default/dry-deny-all" \
		"$(amb_daemon_log 2)" || {
		diag "node 2 did not log the dry-run outcome"
		rc=1
	}
	[ "$(policies_json | jq '.policies[0].dryRunDenied')" -ge 2 ] || rc=1
	return "$rc"
}

case_strict_vs_permissive() {
	local rc=0
	apply <<'EOF' || return 1
peerAuthentications:
- {name: strict, namespace: default, mode: STRICT}
EOF
	refused_by_kernel 1 3 "$N2P1" 7000 || rc=1
	refused_by_kernel 2 3 "$N2P1" 7000 || rc=1 # non-mesh pod, same node
	reaches 1 1 "$N2P1" 7000 || rc=1          # mTLS caller
	[ "$(policies_json | jq .strictDeny.kernelRefused)" -ge 2 ] || rc=1
	apply <<'EOF' || return 1
peerAuthentications:
- {name: strict, namespace: default, mode: PERMISSIVE}
EOF
	reaches 1 3 "$N2P1" 7000 || rc=1
	return "$rc"
}

case_kernel_deny_by_ip() {
	local rc=0 names
	apply <<EOF || return 1
policies:
- name: deny-n1p3
  namespace: default
  scope: Namespace
  action: Deny
  rules:
  - - - sourceIps: [$N1P3/32]
EOF
	refused_by_kernel 1 3 "$N2P1" 7000 || rc=1
	reaches 2 3 "$N2P1" 7000 || rc=1 # another plaintext caller
	reaches 1 1 "$N2P1" 7000 || rc=1
	[ "$(policies_json | jq '.policies[] | select(.name=="deny-n1p3") | .kernelRefused')" -ge 1 ] || rc=1
	# bpftool shows the same story: the slot's name and its counter.
	names=$(bpftool map dump pinned "$PIN2/amb_pol_names" 2>&1)
	grep -q '"default/deny-n1p3"' <<<"$names" || {
		diag "bpftool: amb_pol_names lacks default/deny-n1p3"
		rc=1
	}
	bpftool map dump pinned "$PIN2/amb_pol" | grep -q deny || {
		diag "bpftool: amb_pol has no deny field"
		rc=1
	}
	return "$rc"
}

case_userspace_without_kernel() {
	# Defense in depth: with amb_pol emptied behind the daemon's back, the
	# plaintext SYN reaches 15006 and userspace takes the same decision.
	local rc=0 b a key
	while read -r key; do
		# shellcheck disable=SC2086
		bpftool map delete pinned "$PIN2/amb_pol" key hex $key || rc=1
	done < <(bpftool map dump pinned "$PIN2/amb_pol" -j |
		jq -r '.[] | .key | map(ltrimstr("0x")) | join(" ")')
	[ "$(bpftool map dump pinned "$PIN2/amb_pol" -j | jq length)" = 0 ] || return 1
	b=$(amb_counters_json 2)
	blocked 1 3 "$N2P1" 7000 || rc=1
	a=$(amb_counters_json 2)
	expect_delta node2 "$b" "$a" assign_inbound -ge 1 || rc=1
	expect_delta node2 "$b" "$a" refused_policy -eq 0 || rc=1
	wait_for 3 grep -q "inbound $N1P3:[0-9]* (plaintext) -> $N2P1:7000: denied by policy default/deny-n1p3" \
		"$(amb_daemon_log 2)" || {
		diag "node 2 did not log the userspace denial on 15006"
		rc=1
	}
	return "$rc"
}

case_live_tightening() {
	local rc=0 h1 h2 tries
	apply </dev/null || return 1
	amb_pod_bg 1 1 "$AMB_WORK/hold1.log" timeout 60 "$TCPTOOL" client hold "$N2P1" 7002 --timeout 60000
	h1=$AMB_LAST_PID
	amb_pod_bg 1 2 "$AMB_WORK/hold2.log" timeout 60 "$TCPTOOL" client hold "$N2P1" 7002 --timeout 60000
	h2=$AMB_LAST_PID
	wait_for 5 grep -q connected "$AMB_WORK/hold1.log" &&
		wait_for 5 grep -q connected "$AMB_WORK/hold2.log" || {
		diag "hold connections did not come up"
		return 1
	}
	apply <<'EOF' || return 1
policies:
- name: deny-late
  namespace: default
  scope: Namespace
  action: Deny
  rules:
  - - - principals: [{Suffix: /sa/sa-n1p1}]
EOF
	tries=50
	while kill -0 "$h1" 2>/dev/null && [ "$tries" -gt 0 ]; do
		sleep 0.1
		tries=$((tries - 1))
	done
	kill -0 "$h1" 2>/dev/null && { diag "n1p1's open connection survived the new DENY"; rc=1; }
	kill -0 "$h2" 2>/dev/null || { diag "n1p2's open connection was cut too"; rc=1; }
	grep -q "closing live connection, now denied by policy default/deny-late" "$(amb_daemon_log 2)" || {
		diag "node 2 did not log the cut with the policy name"
		rc=1
	}
	kill "$h2" 2>/dev/null
	return "$rc"
}

case_malformed_rejected() {
	local rc=0 g
	apply <<<"$ALLOW_N1P1" || return 1
	g=$(gen 2)
	write_config <<'EOF'
policies:
- name: broken
  namespace: default
  scope: Namespace
  action: Maybe
EOF
	wait_for 5 grep -q "config rejected, keeping the previous one: $CONF:[0-9]*: policies\[0\].action" \
		"$(amb_daemon_log 2)" || {
		diag "node 2 did not reject the file with its path and the key"
		rc=1
	}
	check_eq "config generation after a bad file" "$(gen 2)" "$g" || rc=1
	reaches 1 1 "$N2P1" 7000 || rc=1
	blocked 1 2 "$N2P1" 7000 || rc=1
	return "$rc"
}

case_ctl_check_and_table() {
	local rc=0 out
	out=$(amb_ctl 2 check "$(amb_pod_ip 1 2)" "$N2P1:7000")
	grep -q "decision:    DENY (no ALLOW policy matched)" <<<"$out" &&
		grep -q "default/allow-n1p1 .* does not match" <<<"$out" || {
		diag "check n1p2: $out"
		rc=1
	}
	out=$(amb_ctl 2 check "$N1P1" "$N2P1:7000")
	grep -q "decision:    ALLOW (ALLOW policy matched: default/allow-n1p1)" <<<"$out" || {
		diag "check n1p1: $out"
		rc=1
	}
	out=$(amb_ctl 2 check "$N1P3" "$N2P1:7000")
	grep -q "caller:      plaintext" <<<"$out" && grep -q "DENY" <<<"$out" || {
		diag "check n1p3: $out"
		rc=1
	}
	out=$(amb_ctl 2 policies)
	grep -qE "^default/allow-n1p1 +Namespace +Allow +false +[1-9]" <<<"$out" || {
		diag "policies table: $out"
		rc=1
	}
	return "$rc"
}

amb_setup_or_bail setup
tap_ok "no policies: mesh, plaintext and same-node callers allowed" case_no_policies
tap_ok "ALLOW by principal: listed identity passes, others get 401" case_allow_by_principal
tap_ok "plaintext caller vs ALLOW-only policy: refused in the kernel" case_plaintext_default_deny_in_kernel
tap_ok "same-node shortcut gets the same decision as remote" case_same_node_shortcut
tap_ok "DENY wins over ALLOW; the deciding policy is logged" case_deny_wins
tap_ok "dryRun DENY is logged and counted, never enforced" case_dry_run
tap_ok "STRICT refuses plaintext in the kernel, PERMISSIVE admits it" case_strict_vs_permissive
tap_ok "plaintext denied by source IP: kernel refusal counted per policy (ambientctl, bpftool)" case_kernel_deny_by_ip
tap_ok "plaintext denial without kernel entries: 15006 decides the same" case_userspace_without_kernel
tap_ok "live tightening cuts the denied open connection, others survive" case_live_tightening
tap_ok "malformed policy file rejected with its path; old policy keeps working" case_malformed_rejected
tap_ok "ambientctl check explains; ambientctl policies lists hits" case_ctl_check_and_table
tap_done
