#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
#
# Interop: ambientd's HBONE against an independent HTTP/2 + TLS stack,
# Node.js's built-in `http2` and `tls` (hbone-client.js, hbone-server.js).
#
#   node 1 (ambientd): p1 enrolled (HBONE, sa-n1p1); p2 not in the mesh
#   node 2 (ambientd): p1 enrolled (HBONE, sa-n2p1), tcptool echo + whoami
#   node 3 (no ambientd): p1 runs the Node HBONE server on its own :15008;
#          in the config as an HBONE workload (sa interop-server) of node 3
#
# First the Node peers prove themselves against each other (n1p2 -> n3p1,
# nobody captures either), then:
#  (a) Node client in n1p2 -> ambientd's inbound HBONE at n2p1:15008;
#  (b) enrolled n1p1 -> n3p1:8080, carried by node 1's ambientd as HBONE to
#      the Node server at n3p1:15008.
# All certificates chain to one root in a directory handed to every daemon
# with --ca-dir; the Node side's leaves are minted here with openssl.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../integration/lib.sh
. "$HERE/../integration/lib.sh"

CLIENT_JS=$HERE/hbone-client.js
SERVER_JS=$HERE/hbone-server.js
TD=cluster.local
ID_CLIENT=spiffe://$TD/ns/default/sa/interop-client
ID_SERVER=spiffe://$TD/ns/default/sa/interop-server
BYTES=16M
BYTES_N=$((16 << 20))

amb_require jq openssl

# Node.js: whatever is installed, else Debian's package, else skip.
find_node() {
	NODE=${NODE:-}
	[ -n "$NODE" ] && [ -x "$NODE" ] && return 0
	NODE=$(command -v node || command -v nodejs) || NODE=""
	[ -n "$NODE" ]
}
if ! find_node; then
	if command -v apt-get >/dev/null 2>&1; then
		echo "# Node.js not found; installing Debian's nodejs package" >&2
		DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq nodejs >/dev/null 2>&1 ||
			{ timeout 300 apt-get update -qq >/dev/null 2>&1 &&
				DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq nodejs >/dev/null 2>&1; }
	fi
	find_node || skip_all "Node.js not installed and 'apt-get install nodejs' failed"
fi
"$NODE" -e 'require("http2"); require("tls"); if (!require("tls").DEFAULT_MAX_VERSION) process.exit(1)' \
	2>/dev/null || skip_all "$NODE lacks the http2/tls modules"

# The daemon half needs an ambientd that speaks HBONE; the Node half runs
# regardless, so the peers stay proven while the daemon is being built.
DAEMON_SKIP=""
if [ ! -x "$AMBIENTD" ]; then
	DAEMON_SKIP="ambientd not built ($AMBIENTD)"
elif ! "$AMBIENTD" --help 2>&1 | grep -q -- '--ca-dir'; then
	DAEMON_SKIP="this ambientd has no --ca-dir option yet (HBONE not implemented)"
fi

amb_init "io$$"

N1P1=$(amb_pod_ip 1 1) N1P2=$(amb_pod_ip 1 2) N2P1=$(amb_pod_ip 2 1) N3P1=$(amb_pod_ip 3 1)
CA_DIR=$AMB_WORK/ca
CERTS=$AMB_WORK/certs
SRV_LOG=$AMB_WORK/hbone-server.log
ECHO_PORT=7002
WHOAMI_PORT=7000
DEAD_PORT=7999   # nothing listens there
APP_PORT=8080    # what n1p1 dials at n3p1 (the Node server is on 15008)

# ---------------------------------------------------------------- certificates

# The mesh root, in the file names ambientd loads from --ca-dir. Created here
# (ECDSA P-256, self-signed CA) unless the directory already holds one.
make_root() {
	local dir=$1 org=$2
	mkdir -p "$dir"
	[ -s "$dir/ca-cert.pem" ] && [ -s "$dir/ca-key.pem" ] && return 0
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/ca-key.pem" &&
		openssl req -x509 -new -key "$dir/ca-key.pem" -sha256 -days 3650 \
			-subj "/O=$org" \
			-addext "basicConstraints=critical,CA:TRUE" \
			-addext "keyUsage=critical,keyCertSign,cRLSign" \
			-out "$dir/ca-cert.pem" 2>/dev/null
}

# mint CA-DIR NAME SPIFFE-ID: leaf $CERTS/NAME-{key,cert}.pem like a mesh
# workload certificate: ECDSA P-256, URI SAN only, EKU server+client, 1 day.
mint() {
	local ca=$1 name=$2 id=$3
	mkdir -p "$CERTS"
	printf '%s\n' \
		"basicConstraints=critical,CA:FALSE" \
		"keyUsage=critical,digitalSignature,keyEncipherment" \
		"extendedKeyUsage=serverAuth,clientAuth" \
		"subjectAltName=critical,URI:$id" >"$CERTS/$name.ext"
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$CERTS/$name-key.pem" &&
		openssl req -new -key "$CERTS/$name-key.pem" -subj "/O=$TD" \
			-out "$CERTS/$name.csr" 2>/dev/null &&
		openssl x509 -req -in "$CERTS/$name.csr" -CA "$ca/ca-cert.pem" -CAkey "$ca/ca-key.pem" \
			-set_serial "0x$(openssl rand -hex 16)" -days 1 -sha256 \
			-extfile "$CERTS/$name.ext" -out "$CERTS/$name-cert.pem" 2>/dev/null
}

make_certs() {
	make_root "$CA_DIR" "$TD" &&
		mint "$CA_DIR" client "$ID_CLIENT" &&
		mint "$CA_DIR" server "$ID_SERVER" &&
		mint "$CA_DIR" other-td "spiffe://other.domain/ns/default/sa/interop-client" &&
		make_root "$AMB_WORK/rogue-ca" "rogue" &&
		mint "$AMB_WORK/rogue-ca" rogue "$ID_CLIENT"
}

# ---------------------------------------------------------------- config

# One workload entry of the mesh config.
workload() {
	local name=$1 sa=$2 ip=$3 node=$4
	cat <<EOF
- uid: cluster1//v1/Pod/default/$name
  name: $name
  namespace: default
  serviceAccount: $sa
  workloadIps: ["$ip"]
  protocol: HBONE
  node: $node
EOF
}

write_config() {
	{
		echo "# generated by tests/interop/test_interop.sh"
		echo "workloads:"
		workload n1p1 sa-n1p1 "$N1P1" "$(amb_node_name 1)"
		workload n2p1 sa-n2p1 "$N2P1" "$(amb_node_name 2)"
		# Node 3 runs no ambientd: its pod terminates HBONE itself (Node).
		workload interop-server interop-server "$N3P1" "$(amb_node_name 3)"
	} >"$AMB_WORK/mesh.yaml"
}

# ---------------------------------------------------------------- helpers

# node_client N I ARGS...: hbone-client.js in pod N/I; its JSON result line is
# left in $RESULT (and shown as a diagnostic); returns its exit status.
RESULT=""
node_client() {
	local n=$1 i=$2 rc
	shift 2
	RESULT=$(amb_pod_run "$n" "$i" timeout 60 "$NODE" "$CLIENT_JS" --timeout 45000 "$@" 2>&1)
	rc=$?
	diag "client: $RESULT"
	return "$rc"
}

# hbone_client N I CERT-NAME ARGS...: with the CA and a client certificate
# from $CERTS (CERT-NAME "none": no certificate).
hbone_client() {
	local n=$1 i=$2 name=$3
	shift 3
	if [ "$name" = none ]; then
		node_client "$n" "$i" --ca "$CA_DIR/ca-cert.pem" "$@"
	else
		node_client "$n" "$i" --ca "$CA_DIR/ca-cert.pem" \
			--cert "$CERTS/$name-cert.pem" --key "$CERTS/$name-key.pem" "$@"
	fi
}

# jfield JQ-FILTER: applied to $RESULT.
jfield() {
	jq -r "$1" <<<"$RESULT" 2>/dev/null
}

# The TLS parameters DESIGN.md §3 fixes, as the client saw them.
check_tls_params() {
	local rc=0 cipher
	check_eq "TLS version" "$(jfield .tls.version)" TLSv1.3 || rc=1
	check_eq "ALPN" "$(jfield .tls.alpn)" h2 || rc=1
	cipher=$(jfield .tls.cipher)
	case $cipher in
	TLS_AES_128_GCM_SHA256 | TLS_AES_256_GCM_SHA384) ;;
	*) diag "cipher $cipher is not an AES-GCM TLS 1.3 suite"; rc=1 ;;
	esac
	return "$rc"
}

check_echo() {
	local rc=0
	check_eq "echo intact (sha256 both ways)" "$(jfield .match)" true || rc=1
	check_eq "bytes echoed" "$(jfield .received)" "$BYTES_N" || rc=1
	return "$rc"
}

# server_event_since FROM EVENT: the last EVENT line the Node server logged
# from line FROM on.
server_event_since() {
	tail -n "+$1" "$SRV_LOG" | jq -c "select(.event == \"$2\")" 2>/dev/null | tail -1
}

# Lines the Node server logged from line FROM on (to diagnose a case).
server_log_since() {
	tail -n "+$1" "$SRV_LOG" | diag
}

srv_lines() {
	wc -l <"$SRV_LOG"
}

# ---------------------------------------------------------------- setup

setup() {
	amb_node 1 && amb_node 2 && amb_node 3 &&
		amb_pod 1 1 && amb_pod 1 2 && amb_pod 2 1 && amb_pod 3 1 || return 1
	make_certs || {
		diag "openssl could not create the certificates"
		return 1
	}
	write_config
	amb_server 2 1 "$ECHO_PORT" echo && amb_server 2 1 "$WHOAMI_PORT" whoami || return 1
	# The Node HBONE server: accepts the Node client (self-test) and node 1's
	# enrolled pod (through ambientd).
	amb_pod_bg 3 1 "$SRV_LOG" "$NODE" "$SERVER_JS" --listen "$N3P1:15008" \
		--cert "$CERTS/server-cert.pem" --key "$CERTS/server-key.pem" \
		--ca "$CA_DIR/ca-cert.pem" \
		--expect-client-id "$ID_CLIENT" \
		--expect-client-id "spiffe://$TD/ns/default/sa/sa-n1p1"
	wait_log "$SRV_LOG" '"event":"listening"' 10 || {
		diag "Node HBONE server did not start:"
		diag "$(cat "$SRV_LOG")"
		return 1
	}
	diag "$(head -1 "$SRV_LOG")"
}

start_daemons() {
	local args=(--ca-dir "$CA_DIR")
	# cluster.local is the default; say it where the option exists.
	"$AMBIENTD" --help 2>&1 | grep -q -- '--trust-domain' && args+=(--trust-domain "$TD")
	amb_daemon_start 1 "$AMB_WORK/mesh.yaml" "${args[@]}" &&
		amb_daemon_start 2 "$AMB_WORK/mesh.yaml" "${args[@]}" &&
		amb_wait_listen "$(amb_node_ns 2)" 15008 10
}

# ---------------------------------------------------------------- Node <-> Node

# The two scripts against each other, nothing of ours in between: proves the
# peers before they judge ambientd.
case_self_echo() {
	local from rc=0 ev
	from=$(($(srv_lines) + 1))
	hbone_client 1 2 client --connect "$N3P1:15008" --authority "$N3P1:$APP_PORT" \
		--expect-server-id "$ID_SERVER" --bytes "$BYTES" --header "x-interop-unknown:tolerate-me" ||
		rc=1
	check_tls_params || rc=1
	check_echo || rc=1
	ev=$(server_event_since "$from" connect)
	if [ -z "$ev" ]; then
		diag "server logged no CONNECT"
		rc=1
	else
		check_eq "server saw client id" "$(jq -r '.clientIds | join(",")' <<<"$ev")" "$ID_CLIENT" || rc=1
		check_eq "server saw authority" "$(jq -r .authority <<<"$ev")" "$N3P1:$APP_PORT" || rc=1
		check_eq "server saw forwarded" "$(jq -r .forwarded <<<"$ev")" "$(jfield .forwarded)" || rc=1
		check_eq "server saw the unknown header" \
			"$(jq -r '.otherHeaders["x-interop-unknown"]' <<<"$ev")" tolerate-me || rc=1
		[ "$(jq -r '.baggage != null and .traceparent != null' <<<"$ev")" = true ] || {
			diag "baggage or traceparent missing"
			rc=1
		}
	fi
	[ "$rc" -eq 0 ] || server_log_since "$from"
	return "$rc"
}

case_self_bad_authority() {
	hbone_client 1 2 client --connect "$N3P1:15008" --authority "$N2P1:$APP_PORT" \
		--expect-status 400
}

case_self_refused() {
	local name=$1 rc=0 from
	shift
	from=$(($(srv_lines) + 1))
	hbone_client 1 2 "$name" --connect "$N3P1:15008" --authority "$N3P1:$APP_PORT" \
		--expect-refused "$@" || rc=1
	# The server must say why: its refusal, not a lost packet.
	wait_for 3 sh -c "tail -n +$from '$SRV_LOG' | grep -q '\"event\":\"tls-error\"'" || {
		diag "Node server logged no refused handshake"
		rc=1
	}
	[ "$rc" -eq 0 ] || server_log_since "$from"
	return "$rc"
}

# ---------------------------------------------------------------- (a) Node -> ambientd

# n1p2 is not enrolled, so node 1 leaves it alone; node 2 assigns its
# connection to n2p1:15008 to ambientd's HBONE listener.
case_a_echo() {
	local rc=0
	hbone_client 1 2 client --connect "$N2P1:15008" --authority "$N2P1:$ECHO_PORT" \
		--expect-server-id "spiffe://$TD/ns/default/sa/sa-n2p1" --bytes "$BYTES" \
		--header "x-interop-unknown:tolerate-me" || rc=1
	check_tls_params || rc=1
	check_echo || rc=1
	return "$rc"
}

# The pod's server sees the HBONE client's own address (DESIGN.md §2).
case_a_whoami() {
	local rc=0 seen
	hbone_client 1 2 client --connect "$N2P1:15008" --authority "$N2P1:$WHOAMI_PORT" \
		--expect-server-id "spiffe://$TD/ns/default/sa/sa-n2p1" || rc=1
	seen=$(jfield '.text // ""' | head -1)
	check_eq "address the whoami server saw" "${seen%%:*}" "$N1P2" || rc=1
	return "$rc"
}

case_a_status() {
	local authority=$1 status=$2
	hbone_client 1 2 client --connect "$N2P1:15008" --authority "$authority" \
		--expect-status "$status"
}

case_a_refused() {
	local name=$1
	shift
	hbone_client 1 2 "$name" --connect "$N2P1:15008" --authority "$N2P1:$ECHO_PORT" \
		--expect-refused "$@"
}

# ---------------------------------------------------------------- (b) ambientd -> Node

# Enrolled n1p1 dials n3p1:8080 in plain TCP; node 1's ambientd must carry it
# as HBONE to n3p1:15008, where the Node server checks and echoes it.
case_b_echo() {
	local rc=0 from ev done_ev
	from=$(($(srv_lines) + 1))
	node_client 1 1 --plain --connect "$N3P1:$APP_PORT" --bytes "$BYTES" || rc=1
	check_echo || rc=1
	ev=$(server_event_since "$from" connect)
	if [ -z "$ev" ]; then
		diag "the Node server logged no CONNECT"
		server_log_since "$from"
		return 1
	fi
	diag "server: $ev"
	check_eq "CONNECT :authority" "$(jq -r .authority <<<"$ev")" "$N3P1:$APP_PORT" || rc=1
	check_eq "no :scheme/:path" "$(jq -r '(.scheme // "") + (.path // "")' <<<"$ev")" "" || rc=1
	check_eq "client identity" "$(jq -r '.clientIds | join(",")' <<<"$ev")" \
		"spiffe://$TD/ns/default/sa/sa-n1p1" || rc=1
	case $(jq -r '.forwarded // ""' <<<"$ev") in
	"for=\"$N1P1:"*) ;;
	*) diag "forwarded header is not for=\"$N1P1:<port>\""; rc=1 ;;
	esac
	check_eq "server's status" "$(jq -r .status <<<"$ev")" 200 || rc=1
	check_eq "TLS on the wire" "$(jq -r '.tls.version + " " + .tls.alpn' <<<"$ev")" "TLSv1.3 h2" || rc=1
	# The source address of the HBONE connection is the pod's (transparent).
	case $(jq -r .peer <<<"$ev") in
	"$N1P1:"*) ;;
	*) diag "HBONE connection came from $(jq -r .peer <<<"$ev"), not $N1P1"; rc=1 ;;
	esac
	wait_for 5 sh -c "tail -n +$from '$SRV_LOG' | grep -q '\"event\":\"done\"'"
	done_ev=$(server_event_since "$from" "done")
	check_eq "bytes the Node server echoed" "$(jq -r '.bytes // 0' <<<"$done_ev")" "$BYTES_N" || rc=1
	[ "$rc" -eq 0 ] || server_log_since "$from"
	return "$rc"
}

# ---------------------------------------------------------------- run

if ! setup; then
	tap_fail "topology, certificates and Node HBONE server come up"
	tap_done
fi

tap_ok "Node<->Node: CONNECT, $BYTES echoed intact, headers and identities logged" case_self_echo
tap_ok "Node<->Node: authority of another pod -> 400" case_self_bad_authority
tap_ok "Node<->Node: client without certificate -> handshake refused" case_self_refused none
tap_ok "Node<->Node: TLS 1.2 only -> handshake refused" case_self_refused client --tls-max 1.2
tap_ok "Node<->Node: certificate from another root -> handshake refused" case_self_refused rogue

DAEMON_CASES=(
	"(a) Node client -> ambientd 15008: CONNECT 200, $BYTES echoed intact"
	"(a) the pod's server sees the HBONE client's address"
	"(a) authority naming a pod on another node -> 400"
	"(a) authority of an enrolled pod's closed port -> 503"
	"(a) client without certificate -> handshake refused"
	"(a) TLS 1.2 only -> handshake refused"
	"(a) certificate from another root -> handshake refused"
	"(a) certificate from another trust domain -> handshake refused"
	"(b) enrolled pod -> Node HBONE server via ambientd: bytes, authority, forwarded, identity"
	"ambientd still running on both nodes"
)
if [ -z "$DAEMON_SKIP" ] && ! start_daemons; then
	tap_fail "ambientd starts on nodes 1 and 2 with --ca-dir and listens on 15008"
	tap_done
fi
if [ -n "$DAEMON_SKIP" ]; then
	for c in "${DAEMON_CASES[@]}"; do
		tap_skip "$c" "$DAEMON_SKIP"
	done
	tap_done
fi

tap_ok "${DAEMON_CASES[0]}" case_a_echo
tap_ok "${DAEMON_CASES[1]}" case_a_whoami
tap_ok "${DAEMON_CASES[2]}" case_a_status "$N1P1:$ECHO_PORT" 400
tap_ok "${DAEMON_CASES[3]}" case_a_status "$N2P1:$DEAD_PORT" 503
tap_ok "${DAEMON_CASES[4]}" case_a_refused none
tap_ok "${DAEMON_CASES[5]}" case_a_refused client --tls-max 1.2
tap_ok "${DAEMON_CASES[6]}" case_a_refused rogue
tap_ok "${DAEMON_CASES[7]}" case_a_refused other-td
tap_ok "${DAEMON_CASES[8]}" case_b_echo
tap_ok "${DAEMON_CASES[9]}" kill -0 "${AMB_DAEMON_PID[1]}" "${AMB_DAEMON_PID[2]}"
tap_done
