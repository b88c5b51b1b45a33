#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
#
# HBONE between nodes: mTLS with SPIFFE identities and HTTP/2 CONNECT on
# 15008, pooled. Both nodes share one mesh root (--ca-dir).
#
#   node 1: p1, p2 enrolled (HBONE); p3 not in the mesh
#   node 2: p1, p2 enrolled (HBONE); node 1 is told p2's service account is
#           "expected-sa" while node 2 gives p2 "sa-n2p2": identity mismatch
set -u
. "$(dirname "$0")/lib.sh"

amb_require daemon jq openssl socat
amb_init "h$$"

N1P1=$(amb_pod_ip 1 1) N1P2=$(amb_pod_ip 1 2) N1P3=$(amb_pod_ip 1 3)
N2P1=$(amb_pod_ip 2 1) N2P2=$(amb_pod_ip 2 2)
TD=cluster.local

setup() {
	amb_node 1 && amb_node 2 &&
		amb_pod 1 1 && amb_pod 1 2 && amb_pod 1 3 &&
		amb_pod 2 1 && amb_pod 2 2 || return 1
	AMB_PROTOCOL=HBONE amb_config "$AMB_WORK/mesh2.yaml" 1:1 1:2 2:1 2:2
	sed 's/serviceAccount: sa-n2p2/serviceAccount: expected-sa/' \
		"$AMB_WORK/mesh2.yaml" >"$AMB_WORK/mesh1.yaml"
	local pod
	for pod in "1 2" "2 1" "2 2"; do
		# shellcheck disable=SC2086
		amb_server $pod 7000 whoami || return 1
	done
	{
		amb_server 2 1 7001 sink &&
			amb_server 2 1 7002 echo &&
			amb_server 2 1 7003 source --bytes 8M --seed 3 &&
			amb_server 2 1 7004 reqresp --bytes 20 &&
			amb_server 1 2 7004 reqresp --bytes 20
	} || return 1
	amb_daemon_start 1 "$AMB_WORK/mesh1.yaml" &&
		amb_daemon_start 2 "$AMB_WORK/mesh2.yaml"
}

status() { # N JQ-PATH
	amb_ctl "$1" status | jq -r "$2"
}

case_real_ip_and_identity() {
	local seen rc=0
	seen=$(amb_whoami 1 1 "$N2P1" 7000)
	check_eq "address the server saw" "$seen" "$N1P1" || rc=1
	# The inbound side logged the caller's verified identity.
	wait_for 3 grep -qF "identity spiffe://$TD/ns/default/sa/sa-n1p1" "$(amb_daemon_log 2)" || {
		diag "node 2 did not log the caller's identity"
		rc=1
	}
	[ "$(status 2 .hbone.inbound_streams)" -ge 1 ] || {
		diag "node 2 counted no inbound HBONE stream"
		rc=1
	}
	return "$rc"
}

case_gib() {
	amb_tcp 1 1 send "$N2P1" 7001 --bytes 1G 2>&1 | diag
	return "${PIPESTATUS[0]}"
}

case_many_pooled() {
	local out rc=0 before after sbefore safter conns streams
	before=$(status 1 .hbone.pool_connections)
	sbefore=$(status 1 .hbone.outbound_streams)
	out=$(AMB_TCP_LIMIT=120 amb_tcp 1 1 many "$N2P1" 7002 --count 1000 --timeout 90000 2>&1) || rc=1
	diag "$out"
	after=$(status 1 .hbone.pool_connections)
	safter=$(status 1 .hbone.outbound_streams)
	conns=$((after - before))
	streams=$((safter - sbefore))
	diag "1000 connections: $streams CONNECT streams over $conns new pooled TLS connections"
	check_eq "CONNECT streams sent" "$streams" 1000 || rc=1
	# At most 100 streams share a connection, and each worker has its own
	# pool: 1000 open at once need 10 connections, more than 20 would mean
	# pooling does not work; connections from earlier cases are reused, at
	# most one per worker here.
	local lo=$((10 - $(status 1 .workers)))
	if [ "$conns" -lt "$lo" ] || [ "$conns" -gt 20 ]; then
		diag "expected $lo..20 new pooled connections for 1000 streams"
		rc=1
	fi
	return "$rc"
}

case_half_close_c2s() {
	amb_tcp 1 1 send "$N2P1" 7001 --bytes 8M 2>&1 | diag
	return "${PIPESTATUS[0]}"
}

case_half_close_s2c() {
	amb_tcp 1 1 recv "$N2P1" 7003 --bytes 8M --seed 3 2>&1 | diag
	return "${PIPESTATUS[0]}"
}

case_upstream_refused() {
	local out rc=0
	# Nothing listens on n2p1:7999: node 2 answers the CONNECT with 503.
	out=$(amb_tcp 1 1 whoami "$N2P1" 7999 --timeout 5000 2>&1) && {
		diag "connection to a closed port succeeded: $out"
		rc=1
	}
	diag "client: $out"
	wait_for 3 grep -q "7999.*503" "$(amb_daemon_log 2)" || {
		diag "node 2 did not log a 503 for the refused upstream"
		rc=1
	}
	return "$rc"
}

case_identity_mismatch() {
	local out rc=0 streams_before streams_after
	streams_before=$(status 2 .hbone.inbound_streams)
	out=$(amb_tcp 1 1 whoami "$N2P2" 7000 --timeout 5000 2>&1) && {
		diag "connection to a peer with the wrong identity succeeded: $out"
		rc=1
	}
	wait_for 3 grep -q "identity mismatch" "$(amb_daemon_log 1)" || {
		diag "node 1 did not log the identity mismatch"
		rc=1
	}
	streams_after=$(status 2 .hbone.inbound_streams)
	check_eq "CONNECT streams node 2 saw" "$streams_after" "$streams_before" || rc=1
	return "$rc"
}

case_same_node_shortcut() {
	local seen rc=0 before
	before=$(status 1 .hbone.pool_connections)
	seen=$(amb_whoami 1 1 "$N1P2" 7000)
	check_eq "address the server saw" "$seen" "$N1P1" || rc=1
	check_eq "pooled connections for a same-node call" \
		"$(status 1 .hbone.pool_connections)" "$before" || rc=1
	return "$rc"
}

case_certificates() {
	local json rc=0 id
	json=$(amb_ctl 1 certificates -o json)
	diag "$(amb_ctl 1 certificates)"
	id="spiffe://$TD/ns/default/sa/sa-n1p1"
	[ "$(jq -r --arg id "$id" '[.[] | select(.identity == $id)] | length' <<<"$json")" = 1 ] || {
		diag "no certificate for $id"
		rc=1
	}
	jq -e 'all(.[]; (.serial | length) > 0 and .not_after > .not_before)' <<<"$json" >/dev/null || rc=1
	return "$rc"
}

# --- handshakes from a client outside the mesh (openssl s_client) ----------

mint() { # NAME CA-DIR URI [DAYS-OFFSET-FLAGS...]: key+cert signed by CA-DIR
	local name=$1 ca=$2 uri=$3
	shift 3
	openssl ecparam -name prime256v1 -genkey -noout -out "$AMB_WORK/$name.key" 2>/dev/null &&
		openssl req -new -key "$AMB_WORK/$name.key" -subj "/O=test" -out "$AMB_WORK/$name.csr" 2>/dev/null &&
		printf 'subjectAltName=URI:%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$uri" >"$AMB_WORK/$name.ext" &&
		openssl x509 -req -in "$AMB_WORK/$name.csr" -CA "$ca/ca-cert.pem" -CAkey "$ca/ca-key.pem" \
			-CAcreateserial -extfile "$AMB_WORK/$name.ext" -out "$AMB_WORK/$name.pem" "$@" 2>/dev/null
}

# handshake [s_client args]: prints "ok" if the TLS 1.3 mTLS handshake to
# n2p1:15008 completed and the server accepted us. A TLS 1.3 server checks
# the client certificate after the client's Finished, so a refusal shows up
# as an alert once we send something: send the HTTP/2 preface and linger.
handshake() {
	local out
	out=$( (printf 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'; sleep 1) |
		amb_pod_run 1 3 timeout 5 openssl s_client -connect "$N2P1:15008" \
			-alpn h2 -CAfile "$AMB_WORK/ca/ca-cert.pem" "$@" 2>&1)
	if grep -q "Verify return code: 0" <<<"$out" && grep -q "ALPN protocol: h2" <<<"$out" &&
		! grep -qiE "alert|errno|error:" <<<"$out"; then
		echo ok
	else
		grep -iE "alert|error|return code" <<<"$out" | head -3
	fi
}

case_tls_good() {
	local r
	mint good "$AMB_WORK/ca" "spiffe://$TD/ns/default/sa/outsider" -days 1 || return 1
	r=$(handshake -cert "$AMB_WORK/good.pem" -key "$AMB_WORK/good.key")
	check_eq "mTLS with a mesh certificate" "$r" ok
}

case_tls_refused() { # what: refused handshakes
	local r rc=0
	mkdir -p "$AMB_WORK/other-ca"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
		-subj "/O=other/CN=other root" -keyout "$AMB_WORK/other-ca/ca-key.pem" \
		-out "$AMB_WORK/other-ca/ca-cert.pem" -addext basicConstraints=critical,CA:TRUE 2>/dev/null
	mint untrusted "$AMB_WORK/other-ca" "spiffe://$TD/ns/default/sa/outsider" -days 1 &&
		mint foreign "$AMB_WORK/ca" "spiffe://other.td/ns/default/sa/outsider" -days 1 &&
		mint expired "$AMB_WORK/ca" "spiffe://$TD/ns/default/sa/outsider" -days 1 \
			-not_after 20200101000000Z 2>/dev/null ||
		mint expired "$AMB_WORK/ca" "spiffe://$TD/ns/default/sa/outsider" -days -1 || return 1
	r=$(handshake)
	[ "$r" != ok ] || { diag "no client certificate: accepted"; rc=1; }
	r=$(handshake -cert "$AMB_WORK/untrusted.pem" -key "$AMB_WORK/untrusted.key")
	[ "$r" != ok ] || { diag "untrusted root: accepted"; rc=1; }
	r=$(handshake -cert "$AMB_WORK/foreign.pem" -key "$AMB_WORK/foreign.key")
	[ "$r" != ok ] || { diag "other trust domain: accepted"; rc=1; }
	r=$(handshake -cert "$AMB_WORK/expired.pem" -key "$AMB_WORK/expired.key")
	[ "$r" != ok ] || { diag "expired certificate: accepted"; rc=1; }
	r=$(handshake -cert "$AMB_WORK/good.pem" -key "$AMB_WORK/good.key" -tls1_2)
	[ "$r" != ok ] || { diag "TLS 1.2: accepted"; rc=1; }
	return "$rc"
}

case_garbage() {
	local seen rc=0
	# Random bytes and a plaintext HTTP/2 preface at 15008: dropped, and
	# the daemon goes on serving.
	head -c 65536 /dev/urandom | amb_pod_run 1 3 timeout 3 socat -u - "TCP:$N2P1:15008" 2>/dev/null
	printf 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n' | amb_pod_run 1 3 timeout 3 socat -u - "TCP:$N2P1:15008" 2>/dev/null
	kill -0 "${AMB_DAEMON_PID[2]}" || { diag "node 2 daemon died"; return 1; }
	seen=$(amb_whoami 1 1 "$N2P1" 7000)
	check_eq "address the server saw after the garbage" "$seen" "$N1P1" || rc=1
	return "$rc"
}

# A request written in two pieces (header, then body 1 ms later) must not
# wait for the server's delayed ACK: the tunnel's sockets towards pods must
# not hold the second piece back (Nagle), or each such request costs ~40 ms.
case_split_request() {
	local rc=0 from_to out p50
	for from_to in "1 1 $N2P1 HBONE" "1 1 $N1P2 same-node" "1 3 $N2P1 plaintext-inbound"; do
		# shellcheck disable=SC2086
		set -- $from_to
		out=$(amb_tcp "$1" "$2" split "$3" 7004 --bytes 20 --count 20 --timeout 5000) || {
			diag "$4: split client failed: $out"
			rc=1
			continue
		}
		p50=$(sed -n 's/.* p50 \([0-9.]*\) ms.*/\1/p' <<<"$out")
		if awk -v p="${p50:-999}" 'BEGIN { exit !(p < 10) }'; then
			diag "$4: $out"
		else
			diag "$4: two-write requests delayed: $out"
			rc=1
		fi
	done
	return "$rc"
}

amb_setup_or_bail setup
tap_ok "cross-node HBONE: real client IP, caller identity verified" case_real_ip_and_identity
tap_ok "1 GiB cross-node through HBONE, sha256 verified" case_gib
tap_ok "1000 concurrent connections over few pooled TLS connections" case_many_pooled
tap_ok "half-close client->server through HBONE" case_half_close_c2s
tap_ok "half-close server->client through HBONE" case_half_close_s2c
tap_ok "upstream refused: client sees a closed connection, daemon logs 503" case_upstream_refused
tap_ok "server identity mismatch: no CONNECT is sent" case_identity_mismatch
tap_ok "same-node HBONE pods are short-circuited (no pooled connection)" case_same_node_shortcut
tap_ok "ambientctl certificates lists the pods' identities" case_certificates
tap_ok "mTLS from outside the mesh with a mesh certificate is accepted" case_tls_good
tap_ok "handshake refused: no cert, untrusted root, other trust domain, expired, TLS 1.2" case_tls_refused
tap_ok "garbage on 15008: connection dropped, daemon keeps serving" case_garbage
tap_ok "a request written in two pieces is not held back (HBONE, same node, 15006)" case_split_request
tap_done
