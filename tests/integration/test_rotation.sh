#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
#
# Certificate rotation under traffic: workload certificates live 16 s and
# rotate at half-life. A connection opened before the rotation keeps
# working across it, and connections made afterwards present the new
# certificate.
set -u
. "$(dirname "$0")/lib.sh"

amb_require daemon jq socat
amb_init "r$$"

N1P1=$(amb_pod_ip 1 1) N2P1=$(amb_pod_ip 2 1)
TTL=16
ID="spiffe://cluster.local/ns/default/sa/sa-n1p1"

setup() {
	amb_node 1 && amb_node 2 && amb_pod 1 1 && amb_pod 2 1 || return 1
	AMB_PROTOCOL=HBONE amb_config "$AMB_WORK/mesh.yaml" 1:1 2:1
	amb_server 2 1 7000 whoami && amb_server 2 1 7002 echo || return 1
	amb_daemon_start 1 "$AMB_WORK/mesh.yaml" --cert-ttl "$TTL" &&
		amb_daemon_start 2 "$AMB_WORK/mesh.yaml" --cert-ttl "$TTL"
}

# serial STATE: node 1's serial of sa-n1p1's certificate in that state.
serial() {
	amb_ctl 1 certificates -o json |
		jq -r --arg id "$ID" --arg st "$1" '.[] | select(.identity == $id and .state == $st) | .serial' |
		head -1
}

# Hex serials as node 2 logs them (OpenSSL, upper case, no leading zeros).
norm() {
	tr 'A-F' 'a-f' | sed 's/^0*//'
}

OLD="" HELD_LOG=""

case_span() {
	local rc=0 t0 new
	# Opens the HBONE connection (and issues the first certificate).
	check_eq "address the server saw" "$(amb_whoami 1 1 "$N2P1" 7000)" "$N1P1" || return 1
	OLD=$(serial active)
	[ -n "$OLD" ] || { diag "no active certificate for $ID"; return 1; }
	t0=$(date +%s)
	HELD_LOG=$AMB_WORK/held.out
	# One connection that writes before and after the rotation.
	amb_pod_bg 1 1 "$HELD_LOG" sh -c \
		"(echo before-rotation; sleep $((TTL / 2 + 4)); echo after-rotation) |
			socat -t 5 - TCP:$N2P1:7002"
	wait "$AMB_LAST_PID" 2>/dev/null
	new=$(serial active)
	diag "serial $OLD -> $new after $(($(date +%s) - t0)) s"
	[ -n "$new" ] && [ "$new" != "$OLD" ] || {
		diag "the certificate was not rotated"
		rc=1
	}
	grep -qx before-rotation "$HELD_LOG" && grep -qx after-rotation "$HELD_LOG" || {
		diag "held connection lost data across the rotation: $(tr '\n' ' ' <"$HELD_LOG")"
		rc=1
	}
	NEW=$new
	return "$rc"
}

case_new_cert_used() {
	local rc=0 want
	[ -n "${NEW:-}" ] || return 1
	check_eq "address the server saw" "$(amb_whoami 1 1 "$N2P1" 7000)" "$N1P1" || rc=1
	want=$(norm <<<"$NEW")
	if ! wait_for 3 sh -c 'grep "identity $1 serial" "$2" | sed "s/.* serial //" | tr A-F a-f | sed "s/^0*//" | grep -qx "$3"' \
		sh "$ID" "$(amb_daemon_log 2)" "$want"; then
		diag "node 2 saw no handshake from $ID with serial $NEW"
		grep "identity $ID serial" "$(amb_daemon_log 2)" | tail -3 | diag
		rc=1
	fi
	return "$rc"
}

amb_setup_or_bail setup
tap_ok "a connection spanning a certificate rotation completes intact" case_span
tap_ok "connections after the rotation present the new certificate" case_new_cert_used
tap_done
