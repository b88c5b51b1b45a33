#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
#
# Hostile HBONE peers against a live two-node mesh. The attacker is
# hostile_peer.py (python3-h2 / python3-hpack, frames built by hand) in pod
# n1p3, which is not enrolled, holding a valid mesh certificate minted from
# the mesh root; it talks mutual TLS 1.3 + h2 to n2p1:15008, where node 2's
# tc program hands it to the daemon's HBONE listener.
#
#   node 1: p1 enrolled (the legitimate client), p3 not in the mesh (attacker)
#   node 2: p1 enrolled: sink :7001, source :7003, a stalled listener :7009;
#           p2 enrolled (an address the CONNECTs must not reach)
#
# For every attack: while a legitimate transfer n1p1 -> n2p1 runs through
# both tunnels (started first, sha256 checked after), node 2's daemon stays
# up, its readiness (:15021) answers 200 during and after, its RSS stays
# bounded (VmRSS sampled before, during and after), the attacker gets the
# HTTP/2 error code RFC 9113 / nghttp2 give (as the peer reports it), and a
# counter of node 2's /metrics moves.
set -u
. "$(dirname "$0")/lib.sh"

PEER=$(cd "$(dirname "$0")" && pwd)/hostile_peer.py
PY=/usr/bin/python3 # Debian's, with python3-h2 (not the first on PATH)

amb_require daemon jq openssl curl
"$PY" -c 'import h2, hpack' 2>/dev/null ||
	skip_all "Debian's python3-h2 and python3-hpack are not installed (scripts/setup)"
amb_init "ho$$"

N2P1=$(amb_pod_ip 2 1) N2P2=$(amb_pod_ip 2 2)
N2=$(amb_node_ip 2)
SINK=$N2P1:7001
# The legitimate transfer of each case: 16 MiB at 8 MiB/s (2 s), so it
# runs through the whole attack (most take well under a second).
LEGIT_BYTES=16M LEGIT_RATE=8M
# RSS bounds (KiB) over the value before each attack: during it, and once
# it is over. A conn holds at most its 16 MiB receive window, nghttp2's
# queues and 512 KiB per open stream (send ring + relay buffer).
PEAK_KB=$((64 * 1024)) AFTER_KB=$((32 * 1024))
NODE2_ARGS=(--connect-timeout 3000)

setup() {
	amb_node 1 && amb_node 2 &&
		amb_pod 1 1 && amb_pod 1 3 && amb_pod 2 1 && amb_pod 2 2 || return 1
	AMB_PROTOCOL=HBONE amb_config "$AMB_WORK/mesh.yaml" 1:1 2:1 2:2
	amb_server 2 1 7001 sink &&
		amb_server 2 1 7003 source --bytes 64M --seed 5 || return 1
	amb_pod_bg 2 1 "$AMB_WORK/blackhole.log" "$PY" "$PEER" blackhole --port 7009
	amb_wait_listen "$(amb_pod_ns 2 1)" 7009 5 || return 1
	amb_daemon_start 1 "$AMB_WORK/mesh.yaml" &&
		amb_daemon_start 2 "$AMB_WORK/mesh.yaml" "${NODE2_ARGS[@]}" || return 1
	mint_client
}

# A mesh client certificate like the daemon's own leaves (ca.c): ECDSA
# P-256, URI SAN only, EKU client+server, from the mesh root of --ca-dir.
mint_client() {
	local ca=$AMB_WORK/ca c=$AMB_WORK/hostile
	printf '%s\n' "basicConstraints=critical,CA:FALSE" \
		"keyUsage=critical,digitalSignature" \
		"extendedKeyUsage=clientAuth,serverAuth" \
		"subjectAltName=critical,URI:spiffe://cluster.local/ns/default/sa/hostile" >"$c.ext"
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$c.key" 2>/dev/null &&
		openssl req -new -key "$c.key" -subj "/O=cluster.local" -out "$c.csr" 2>/dev/null &&
		openssl x509 -req -in "$c.csr" -CA "$ca/ca-cert.pem" -CAkey "$ca/ca-key.pem" \
			-set_serial "0x$(openssl rand -hex 16)" -days 1 -sha256 \
			-extfile "$c.ext" -out "$c.pem" 2>/dev/null
}

# peer CASE [ARGS...]: the attacker in n1p3 against n2p1:15008; its JSON
# result (last line) on stdout.
peer() {
	local c=$1
	shift
	amb_pod_run 1 3 timeout 90 "$PY" "$PEER" "$c" --host "$N2P1" \
		--ca "$AMB_WORK/ca/ca-cert.pem" --cert "$AMB_WORK/hostile.pem" \
		--key "$AMB_WORK/hostile.key" --target "$SINK" "$@" 2>&1 | tail -1
}

# jr FILTER: jq on the last peer result.
jr() { jq -r "$1" <<<"$RESULT" 2>/dev/null; }

metrics2() {
	amb_node_exec 2 curl -s --max-time 5 "http://$N2:15020/metrics"
}

# mval METRICS-TEXT NAME LABELS: one sample's value (0 if absent).
mval() {
	local k=$2
	[ -z "$3" ] || k="$2{$3}"
	awk -v k="$k" '$1 == k { v = $2 } END { print v + 0 }' <<<"$1"
}

# mdelta NAME LABELS: how far a sample of node 2 moved during the attack.
mdelta() {
	echo $(($(mval "$M_AFTER" "$1" "$2") - $(mval "$M_BEFORE" "$1" "$2")))
}

err_moved() { # CODE: GOAWAY/RST_STREAM with CODE sent by node 2 (server)
	local d
	d=$(mdelta ambientd_hbone_protocol_errors_total "code=\"$1\",side=\"server\"")
	[ "$d" -ge 1 ] && return 0
	diag "ambientd_hbone_protocol_errors_total{code=\"$1\",side=\"server\"} moved by $d"
	return 1
}

lim_moved() { # LIMIT
	local d
	d=$(mdelta ambientd_hbone_limits_total "limit=\"$1\",side=\"server\"")
	[ "$d" -ge 1 ] && return 0
	diag "ambientd_hbone_limits_total{limit=\"$1\",side=\"server\"} moved by $d"
	return 1
}

dl_moved() { # DEADLINE
	local d
	d=$(mdelta ambientd_hbone_deadlines_total "deadline=\"$1\",side=\"server\"")
	[ "$d" -ge 1 ] && return 0
	diag "ambientd_hbone_deadlines_total{deadline=\"$1\",side=\"server\"} moved by $d"
	return 1
}

rss_kb() {
	awk '/^VmRSS:/ { print $2 }' "/proc/${AMB_DAEMON_PID[2]}/status" 2>/dev/null || echo 0
}

ready_code() {
	amb_node_exec 2 curl -s -o /dev/null -w '%{http_code}' --max-time 2 \
		"http://$N2:15021/healthz/ready"
}

# sampler FILE: "<readiness status> <VmRSS KiB>" every 0.1 s until killed.
sampler() {
	while :; do
		echo "$(ready_code) $(rss_kb)" >>"$1"
		sleep 0.1
	done
}

# attack NAME CASE [ARGS...]: runs the peer while a legitimate transfer and
# the sampler run; the peer's JSON in $RESULT, the node's checks in
# $HELD_WHY (empty when everything held).
attack() {
	local name=$1 tpid spid
	shift
	LEGIT_LOG=$AMB_WORK/legit-$name.log SAMPLES=$AMB_WORK/samples-$name
	: >"$SAMPLES"
	M_BEFORE=$(metrics2)
	RSS_BEFORE=$(rss_kb)
	amb_pod_bg 1 1 "$LEGIT_LOG" timeout 60 "$TCPTOOL" client send "$N2P1" 7001 \
		--bytes "$LEGIT_BYTES" --rate "$LEGIT_RATE"
	tpid=$AMB_LAST_PID
	sampler "$SAMPLES" &
	spid=$!
	sleep 0.3 # the transfer is flowing before the attack starts
	RESULT=$(peer "$@")
	wait "$tpid"
	LEGIT_RC=$?
	kill "$spid" 2>/dev/null
	wait "$spid" 2>/dev/null
	M_AFTER=$(metrics2)
	held
}

# Did node 2 hold? Sets HELD_WHY; prints the numbers as diagnostics.
held() {
	local peak after n bad code
	HELD_WHY=""
	kill -0 "${AMB_DAEMON_PID[2]}" 2>/dev/null || HELD_WHY+=" daemon died;"
	code=$(ready_code)
	[ "$code" = 200 ] || HELD_WHY+=" readiness after: $code;"
	n=$(wc -l <"$SAMPLES")
	bad=$(awk '$1 != 200' "$SAMPLES" | wc -l)
	[ "$n" -ge 1 ] && [ "$bad" -eq 0 ] || HELD_WHY+=" readiness during: $bad of $n not 200;"
	peak=$(awk -v p="$RSS_BEFORE" '$2 > p { p = $2 } END { print p }' "$SAMPLES")
	after=$(rss_kb)
	# A sanitizer build's RSS is quarantine and shadow: no bounds there
	# (reported as one skipped case at the end).
	if ! amb_sanitized; then
		[ $((peak - RSS_BEFORE)) -le "$PEAK_KB" ] ||
			HELD_WHY+=" RSS peak +$(((peak - RSS_BEFORE) / 1024)) MiB;"
		[ $((after - RSS_BEFORE)) -le "$AFTER_KB" ] ||
			HELD_WHY+=" RSS after +$(((after - RSS_BEFORE) / 1024)) MiB;"
	fi
	if [ "$LEGIT_RC" -ne 0 ] || ! grep -q "matches" "$LEGIT_LOG"; then
		HELD_WHY+=" legitimate transfer failed: $(tail -1 "$LEGIT_LOG");"
	fi
	diag "peer: $RESULT"
	diag "node 2: readiness $((n - bad))/$n samples 200 and $code after; VmRSS $((RSS_BEFORE / 1024)) MiB before, peak $((peak / 1024)), after $((after / 1024)); parallel transfer: $(tail -1 "$LEGIT_LOG")"
	[ -z "$HELD_WHY" ] || diag "node 2 did not hold:$HELD_WHY"
}

# expect WHAT GOT WANT
expect() {
	[ "$2" = "$3" ] && return 0
	diag "$1: got '$2', expected '$3'"
	return 1
}

# ---------------------------------------------------------------- cases

case_rapid_reset() {
	local rc=0
	attack rapid-reset rapid-reset --count 5000
	[ -z "$HELD_WHY" ] || rc=1
	# nghttp2's reset limiter (CVE-2023-44487; 1000 at once, 33/s).
	expect "GOAWAY" "$(jr .goaway)" INTERNAL_ERROR || rc=1
	expect "connection" "$(jr '.closed != null')" true || rc=1
	err_moved INTERNAL_ERROR || rc=1
	return "$rc"
}

case_continuation_flood() {
	local rc=0
	attack continuation continuation-flood --count 5000
	[ -z "$HELD_WHY" ] || rc=1
	# nghttp2's limit (CVE-2024-28182; 8 per header block): we say why.
	expect "GOAWAY" "$(jr .goaway)" ENHANCE_YOUR_CALM || rc=1
	err_moved ENHANCE_YOUR_CALM && lim_moved continuations || rc=1
	return "$rc"
}

# flood_case CASE READ|NOREAD
flood_case() {
	local rc=0 args=()
	[ "$2" = NOREAD ] && args=(--no-read)
	attack "$1-$2" "$1" --count 20000 "${args[@]}"
	[ -z "$HELD_WHY" ] || rc=1
	expect "GOAWAY" "$(jr .goaway)" ENHANCE_YOUR_CALM || rc=1
	expect "connection" "$(jr '.closed != null')" true || rc=1
	err_moved ENHANCE_YOUR_CALM || rc=1
	if [ "$(mdelta ambientd_hbone_limits_total 'limit="control_frames",side="server"')" -lt 1 ] &&
		[ "$(mdelta ambientd_hbone_limits_total 'limit="outbound_queue",side="server"')" -lt 1 ]; then
		diag "neither limits_total{limit=control_frames} nor {limit=outbound_queue} moved"
		rc=1
	fi
	return "$rc"
}

case_window_overflow() {
	local rc=0
	attack window window-overflow
	[ -z "$HELD_WHY" ] || rc=1
	expect "connection window: GOAWAY" "$(jr .conn.goaway)" FLOW_CONTROL_ERROR || rc=1
	expect "stream window: RST_STREAM" "$(jr '.stream.rst.FLOW_CONTROL_ERROR')" 1 || rc=1
	expect "stream window: connection goes on" "$(jr '.stream.alive_after and .stream.goaway == null')" true || rc=1
	err_moved FLOW_CONTROL_ERROR || rc=1
	[ "$(mdelta ambientd_hbone_protocol_errors_total 'code="FLOW_CONTROL_ERROR",side="server"')" -ge 2 ] || {
		diag "FLOW_CONTROL_ERROR counted less than twice (GOAWAY + RST_STREAM)"
		rc=1
	}
	return "$rc"
}

case_big_header() {
	local rc=0
	attack big-header big-header
	[ -z "$HELD_WHY" ] || rc=1
	# One 1 MiB field: over nghttp2's 64 KiB per field.
	expect "one 1 MiB field: GOAWAY" "$(jr .one_field.goaway)" COMPRESSION_ERROR || rc=1
	# 1 MiB in 8 KiB fields: the header list is over what we advertised.
	expect "advertised SETTINGS_MAX_HEADER_LIST_SIZE" "$(jr .many_fields.max_header_list_size)" 16384 || rc=1
	expect "1 MiB of fields: status" "$(jr '.many_fields.status["431"]')" 1 || rc=1
	expect "1 MiB of fields: connection goes on" "$(jr '.many_fields.alive_after')" true || rc=1
	err_moved COMPRESSION_ERROR && lim_moved header_list || rc=1
	return "$rc"
}

case_too_many_streams() {
	local rc=0
	attack streams too-many-streams
	[ -z "$HELD_WHY" ] || rc=1
	expect "advertised SETTINGS_MAX_CONCURRENT_STREAMS" "$(jr .advertised)" 200 || rc=1
	expect "streams opened (200)" "$(jr .opened)" 200 || rc=1
	# Beyond an acknowledged limit: a connection error (RFC 9113 §5.1.2).
	expect "stream 201: GOAWAY" "$(jr .goaway)" PROTOCOL_ERROR || rc=1
	err_moved PROTOCOL_ERROR || rc=1
	return "$rc"
}

case_malformed() {
	local rc=0 n
	attack malformed malformed --source "$N2P1:7003"
	[ -z "$HELD_WHY" ] || rc=1
	n=$(jr '.cases | length')
	jq -r '.cases[] | "\(if .ok then "ok  " else "BAD " end) \(.case): \(.got) (expected \(.expect))"' \
		<<<"$RESULT" 2>/dev/null | diag
	expect "malformed frame cases that got the expected answer" \
		"$(jr '[.cases[] | select(.ok)] | length')" "$n" || rc=1
	[ "${n:-0}" -ge 30 ] || { diag "only ${n:-0} cases ran"; rc=1; }
	err_moved PROTOCOL_ERROR && err_moved FRAME_SIZE_ERROR || rc=1
	return "$rc"
}

case_authority_garbage() {
	local rc=0 n
	attack authority authority-garbage --other "$N2P2:7001"
	[ -z "$HELD_WHY" ] || rc=1
	n=$(jr '.cases | length')
	jq -r '.cases[] | "\(if .ok then "ok  " else "BAD " end) \(.case): \(.got)"' <<<"$RESULT" 2>/dev/null | diag
	expect "requests answered 400" "$(jr '[.cases[] | select(.ok)] | length')" "$n" || rc=1
	expect "a good CONNECT afterwards" "$(jr .good_connect_after)" 200 || rc=1
	expect "connection goes on" "$(jr '.alive_after and .goaway == null')" true || rc=1
	# Refused in the HTTP/2 layer, or by the tunnel (not this pod: 1).
	[ "$(mdelta ambientd_hbone_bad_requests_total "")" -ge $((n - 1)) ] || {
		diag "ambientd_hbone_bad_requests_total moved by $(mdelta ambientd_hbone_bad_requests_total "")"
		rc=1
	}
	return "$rc"
}

case_pending() {
	local rc=0
	attack pending pending --target "$N2P1:7009" --count 150 --hold 8
	[ -z "$HELD_WHY" ] || rc=1
	# 100 CONNECTs may wait for their upstream; the other 50 are refused
	# at once (give or take the one the stalled listener's queue took).
	[ "$(jr '.refused_at_once >= 45 and .refused_at_once <= 50')" = true ] || {
		diag "REFUSED_STREAM at once: $(jr .refused_at_once), expected 45..50"
		rc=1
	}
	# Each waiting one is answered (503) within the 3 s connect timeout.
	expect "CONNECTs answered" "$(jr .answered)" 150 || rc=1
	[ "$(jr '.answers_within_s <= 5')" = true ] || {
		diag "answers took $(jr .answers_within_s) s (connect timeout 3 s)"
		rc=1
	}
	[ "$(jr '.status["503"] >= 90')" = true ] || rc=1
	err_moved REFUSED_STREAM && lim_moved pending_connects || rc=1
	return "$rc"
}

case_silent() {
	local rc=0
	attack silent silent --hold 9
	[ -z "$HELD_WHY" ] || rc=1
	expect "GOAWAY" "$(jr .goaway)" SETTINGS_TIMEOUT || rc=1
	[ "$(jr '.closed != null and .closed_after_s >= 4.5 and .closed_after_s <= 7')" = true ] || {
		diag "closed: $(jr .closed) after $(jr .closed_after_s) s (deadline 5 s)"
		rc=1
	}
	err_moved SETTINGS_TIMEOUT && dl_moved settings || rc=1
	return "$rc"
}

# The zero-window peer runs in the background from here until its
# connection is cut by the keepalive deadline (PING unanswered: 10 s + 20 s).
ZW_OUT="" ZW_PID="" ZW_RSS0=0 ZW_START=0 ZW_M0=""
case_zero_window() {
	local rc=0 tpid spid
	ZW_OUT=$AMB_WORK/zero-window.json
	LEGIT_LOG=$AMB_WORK/legit-zero.log SAMPLES=$AMB_WORK/samples-zero
	: >"$SAMPLES"
	M_BEFORE=$(metrics2)
	ZW_M0=$M_BEFORE
	RSS_BEFORE=$(rss_kb)
	ZW_RSS0=$RSS_BEFORE
	amb_pod_bg 1 1 "$LEGIT_LOG" timeout 60 "$TCPTOOL" client send "$N2P1" 7001 \
		--bytes "$LEGIT_BYTES" --rate "$LEGIT_RATE"
	tpid=$AMB_LAST_PID
	sampler "$SAMPLES" &
	spid=$!
	ZW_START=$(date +%s)
	# Not through peer(): its "holding" line must show up at once.
	amb_pod_run 1 3 timeout 90 "$PY" "$PEER" zero-window --host "$N2P1" \
		--ca "$AMB_WORK/ca/ca-cert.pem" --cert "$AMB_WORK/hostile.pem" \
		--key "$AMB_WORK/hostile.key" --target "$N2P1:7003" --count 50 \
		--hold 36 >"$ZW_OUT" 2>&1 &
	ZW_PID=$!
	wait_for 10 grep -q holding "$ZW_OUT" || { diag "zero-window peer never held its streams"; rc=1; }
	sleep 2 # the pods' data piles up against the zero window
	wait "$tpid"
	LEGIT_RC=$?
	kill "$spid" 2>/dev/null
	wait "$spid" 2>/dev/null
	RESULT=$(tail -1 "$ZW_OUT")
	# 50 streams may hold 512 KiB each in the daemon.
	PEAK_KB=$((50 * 512 + 16 * 1024)) AFTER_KB=$((50 * 512 + 16 * 1024)) held
	PEAK_KB=$((64 * 1024)) AFTER_KB=$((32 * 1024))
	[ -z "$HELD_WHY" ] || rc=1
	expect "streams opened" "$(jr .opened)" 50 || rc=1
	return "$rc"
}

case_zero_window_cut() {
	local rc=0 left
	[ -n "$ZW_PID" ] || { diag "the zero-window case did not run"; return 1; }
	left=$((ZW_START + 38 - $(date +%s)))
	[ "$left" -le 0 ] || diag "waiting ${left} s more for the keepalive deadline"
	wait "$ZW_PID"
	RESULT=$(tail -1 "$ZW_OUT")
	M_BEFORE=$ZW_M0
	M_AFTER=$(metrics2)
	diag "peer: $RESULT"
	# It reads nothing, so no GOAWAY can reach it: the connection is
	# reset once a PING went unanswered (the peer finds it closed when it
	# reads again); no stream let a byte through the zero window.
	expect "connection closed" "$(jr '.closed != null')" true || rc=1
	expect "DATA bytes sent into a zero window" "$(jr .data_bytes)" 0 || rc=1
	dl_moved ping || rc=1
	grep -q "no PING ACK" "$(amb_daemon_log 2)" || { diag "node 2 logged no PING timeout"; rc=1; }
	kill -0 "${AMB_DAEMON_PID[2]}" || { diag "node 2 died"; rc=1; }
	local rss
	rss=$(rss_kb)
	diag "VmRSS $((ZW_RSS0 / 1024)) MiB before the zero-window peer, $((rss / 1024)) MiB after its connection was cut"
	amb_sanitized || [ $((rss - ZW_RSS0)) -le "$AFTER_KB" ] ||
		{ diag "memory not returned"; rc=1; }
	return "$rc"
}

case_idle() {
	local rc=0
	diag "node 2's abuse counters after the attacks above:"
	metrics2 | grep -E '^ambientd_hbone_(protocol_errors|deadlines|limits|bad_requests)_total' |
		grep -v ' 0$' | diag
	# A short idle deadline needs a restart (from the start, it would
	# drain node 1's pooled connections between the other cases too).
	amb_daemon_stop 2
	amb_daemon_start 2 "$AMB_WORK/mesh.yaml" "${NODE2_ARGS[@]}" --hbone-idle-timeout 2 || {
		diag "node 2 did not restart"
		return 1
	}
	attack idle idle --hold 10
	[ -z "$HELD_WHY" ] || rc=1
	# GOAWAY "no new streams" at the deadline, the final one (last stream
	# 0) a second later, then the connection closes.
	expect "GOAWAY" "$(jr .goaway)" NO_ERROR || rc=1
	expect "GOAWAYs" "$(jr .goaways)" 2 || rc=1
	expect "last stream" "$(jr .goaway_last_stream)" 0 || rc=1
	[ "$(jr '.goaway_after_s >= 1.5 and .goaway_after_s <= 3 and .closed == "eof"')" = true ] || {
		diag "first GOAWAY after $(jr .goaway_after_s) s, closed: $(jr .closed) (idle deadline 2 s)"
		rc=1
	}
	dl_moved idle || rc=1
	return "$rc"
}

# run DESCRIPTION FN [ARGS...]; HOSTILE_ONLY=REGEX runs only the matching
# cases (when chasing one), the others are reported as skipped.
run() {
	if [ -n "${HOSTILE_ONLY:-}" ] && ! grep -qE -- "$HOSTILE_ONLY" <<<"$*"; then
		tap_skip "$1" "not in HOSTILE_ONLY"
		return
	fi
	tap_ok "$@"
}

amb_setup_or_bail setup
run "zero window, never reading: 50 streams held, memory bounded, others unaffected" case_zero_window
run "rapid reset (HEADERS + RST_STREAM storm): GOAWAY INTERNAL_ERROR" case_rapid_reset
run "CONTINUATION flood: GOAWAY ENHANCE_YOUR_CALM" case_continuation_flood
run "SETTINGS flood, reading the ACKs: GOAWAY ENHANCE_YOUR_CALM" flood_case settings-flood READ
run "SETTINGS flood, not reading: GOAWAY ENHANCE_YOUR_CALM" flood_case settings-flood NOREAD
run "PING flood, reading the ACKs: GOAWAY ENHANCE_YOUR_CALM" flood_case ping-flood READ
run "PING flood, not reading: GOAWAY ENHANCE_YOUR_CALM" flood_case ping-flood NOREAD
run "WINDOW_UPDATE past 2^31-1: GOAWAY / RST_STREAM FLOW_CONTROL_ERROR" case_window_overflow
run "1 MiB header block: COMPRESSION_ERROR for one field, 431 for many" case_big_header
run "more streams than advertised: GOAWAY PROTOCOL_ERROR" case_too_many_streams
run "malformed frames of every type: the RFC 9113 error each" case_malformed
run "NUL and garbage in :authority and other pseudo-headers: 400 each" case_authority_garbage
run "CONNECT storm to a stalled upstream: 100 wait, REFUSED_STREAM beyond" case_pending
run "TLS then silence: GOAWAY SETTINGS_TIMEOUT after 5 s" case_silent
run "zero-window peer cut by the keepalive deadline, memory returned" case_zero_window_cut
run "HTTP/2 connection without streams: GOAWAY NO_ERROR at the idle deadline" case_idle
amb_sanitized && tap_skip "RSS bounds of the cases above" \
	"sanitizer build: its RSS is quarantine and shadow memory"
tap_done
