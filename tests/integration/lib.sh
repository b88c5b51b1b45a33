# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
#
# Shared helpers for the integration tests and scripts/demo: a netns topology
# of "nodes" and "pods" (DESIGN.md §7), the daemons running in it, TAP output,
# and a cleanup that removes everything, also when a test fails.
#
# Topology for prefix P (all addresses inside 198.18.0.0/15):
#   $P-ul       underlay netns with bridge "br0"
#   $P-n<n>     node n: eth0 198.19.0.<n>/24 on the bridge, ip_forward=1,
#               198.18.<m>.0/24 via 198.19.0.<m> for every other node m
#   $P-n<n>p<i> pod i on node n: eth0 198.18.<n>.<10+i>/32, default dev eth0;
#               host side "v<n>p<i>$P" in the node netns, proxy_arp=1
#               (proxy_delay=0),
#               198.18.<n>.<10+i>/32 dev v<n>p<i>$P
# Pod processes run in the cgroup $CG so a node's sockops program sees them.
#
# Use: source lib.sh; amb_init <short prefix>; amb_node 1; amb_pod 1 1; ...
# amb_init installs an EXIT trap that calls amb_cleanup.

AMB_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
AMB_SRC_ROOT=$(cd "$AMB_LIB_DIR/../.." && pwd)
AMBIENTD=${AMBIENTD:-$AMB_SRC_ROOT/build/userspace/ambientd}
AMBIENTCTL=${AMBIENTCTL:-$AMB_SRC_ROOT/build/userspace/ambientctl}
TCPTOOL=${TCPTOOL:-$AMB_SRC_ROOT/build/tests/tools/tcptool}
AMB_PIN_ROOT=/sys/fs/bpf/ambientd

P=""            # topology prefix
CG=""           # per-test cgroup directory
AMB_WORK=""     # temp dir: configs, logs
AMB_NODES=()    # node numbers created
AMB_PIDS=()     # background processes we started
declare -A AMB_DAEMON_PID=()  # node number -> ambientd pid
declare -A AMB_DAEMON_ARGS=() # node number -> extra args of the last start

# ---------------------------------------------------------------- TAP

TAP_N=0
TAP_FAILED=0

# tap_ok NAME CMD...: runs CMD; "ok" if it exits 0.
tap_ok() {
	local name=$1
	shift
	if "$@"; then
		tap_pass "$name"
	else
		tap_fail "$name"
	fi
}

tap_pass() {
	TAP_N=$((TAP_N + 1))
	echo "ok $TAP_N - $1"
}

tap_fail() {
	TAP_N=$((TAP_N + 1))
	TAP_FAILED=$((TAP_FAILED + 1))
	echo "not ok $TAP_N - $1"
}

tap_skip() {
	TAP_N=$((TAP_N + 1))
	echo "ok $TAP_N - $1 # SKIP $2"
}

# Diagnostics: every line prefixed "# " so TAP parsers show, not parse, it.
diag() {
	local line
	if [ $# -gt 0 ]; then
		printf '%s\n' "$*" | sed 's/^/# /'
	else
		while IFS= read -r line; do printf '# %s\n' "$line"; done
	fi
}

# Prints the plan and exits 0 if every case passed, 1 otherwise (then with
# the tail of every daemon log as diagnostics).
tap_done() {
	local n
	amb_sanitizer_case
	echo "1..$TAP_N"
	[ "$TAP_FAILED" -eq 0 ] && exit 0
	diag "$TAP_FAILED of $TAP_N cases failed"
	for n in "${AMB_NODES[@]}"; do
		amb_daemon_diag "$n" 30
	done
	exit 1
}

# Whole suite cannot run here: TAP skip plan + exit 77 (tap-run maps it).
skip_all() {
	echo "1..0 # SKIP $*"
	exit 77
}

# ---------------------------------------------------------------- checks

is_num() {
	case $1 in '' | *[!0-9]*) return 1 ;; esac
}

# wait_for SECONDS CMD...: polls CMD every 0.1 s until it succeeds.
wait_for() {
	local tries=$(($1 * 10))
	shift
	until "$@"; do
		tries=$((tries - 1))
		[ "$tries" -gt 0 ] || return 1
		sleep 0.1
	done
}

# check_eq WHAT GOT WANT: equality with a diagnostic on mismatch.
check_eq() {
	[ "$2" = "$3" ] && return 0
	diag "$1: got '$2', expected '$3'"
	return 1
}

# wait_log FILE PATTERN [SECONDS]: until FILE has a line matching PATTERN
# (grep -E).
wait_log() {
	wait_for "${3:-5}" grep -qE -- "$2" "$1" 2>/dev/null
}

cgroup2_root() {
	findmnt -t cgroup2 -n -o TARGET 2>/dev/null | head -1
}

# Skips the whole script unless root, netns, veth, bpffs, cgroup2 and the
# tools are available. Pass "daemon" to also require ambientd/ambientctl.
amb_require() {
	local t
	[ "$(id -u)" -eq 0 ] || skip_all "needs root (network namespaces, eBPF)"
	for t in ip tc ss nsenter findmnt timeout "$@"; do
		[ "$t" = daemon ] && continue
		command -v "$t" >/dev/null 2>&1 || skip_all "$t not installed"
	done
	[ -x "$TCPTOOL" ] || skip_all "tcptool not built ($TCPTOOL)"
	mountpoint -q /sys/fs/bpf 2>/dev/null || mount -t bpf bpf /sys/fs/bpf 2>/dev/null ||
		skip_all "bpffs not mounted at /sys/fs/bpf"
	[ -n "$(cgroup2_root)" ] || skip_all "cgroup v2 not mounted"
	ip netns add "amb-probe-$$" 2>/dev/null || skip_all "cannot create network namespaces"
	if ! ip -n "amb-probe-$$" link add name pa type veth peer name pb 2>/dev/null; then
		ip netns del "amb-probe-$$"
		skip_all "veth not available"
	fi
	ip netns del "amb-probe-$$"
	case " $* " in
	*" daemon "*)
		[ -x "$AMBIENTD" ] || skip_all "ambientd not built ($AMBIENTD)"
		[ -x "$AMBIENTCTL" ] || skip_all "ambientctl not built ($AMBIENTCTL)"
		;;
	esac
}

# ---------------------------------------------------------------- names

amb_node_ns() { echo "$P-n$1"; }
amb_node_name() { amb_node_ns "$1"; }        # --node NAME of the daemon
amb_pod_ns() { echo "$P-n$1p$2"; }
amb_pod_ip() { echo "198.18.$1.$((10 + $2))"; }
amb_node_ip() { echo "198.19.0.$1"; }
amb_pod_veth() { echo "v$1p$2$P"; }         # host side, in the node netns
amb_pin_dir() { echo "$AMB_PIN_ROOT/$(amb_node_name "$1")"; }

# ---------------------------------------------------------------- topology

# amb_init PREFIX: PREFIX must be unique per run and at most 10 characters
# (host veth names "v<n>p<i>PREFIX" must fit 15).
amb_init() {
	P=$1
	if [ ${#P} -gt 10 ]; then
		echo "amb_init: prefix '$P' too long" >&2
		exit 1
	fi
	AMB_WORK=$(mktemp -d "/tmp/amb-$P.XXXXXX")
	CG="$(cgroup2_root)/amb-$P"
	mkdir -p "$CG"
	amb_sanitizer_env
	trap amb_exit_trap EXIT
	trap 'exit 130' INT TERM
	amb_netns_add "$P-ul"
	ip -n "$P-ul" link add br0 type bridge
	ip -n "$P-ul" link set br0 up
}

# IPv4-only namespaces: IPv6 off before any link exists, so no router
# solicitations, MLD or DAD packets move BPF counters behind a test's back.
amb_netns_add() {
	ip netns add "$1"
	ns_sysctl "$1" net.ipv6.conf.all.disable_ipv6=1
	ns_sysctl "$1" net.ipv6.conf.default.disable_ipv6=1
	ip -n "$1" link set lo up
}

ns_sysctl() {
	ip netns exec "$1" sysctl -qw "$2" >/dev/null
}

# amb_ipv6_enable NS: IPv6 back on in a namespace of amb_netns_add, its
# interfaces included, for the cases that need it (addresses from
# 2001:2::/48 only). Duplicate address detection goes off first, on every
# interface, so addresses (link-local ones too) are usable at once.
amb_ipv6_enable() {
	ip netns exec "$1" sh -c 'for f in /proc/sys/net/ipv6/conf/*/accept_dad; do
		echo 0 >"$f"; done' &&
		ns_sysctl "$1" net.ipv6.conf.all.disable_ipv6=0
}

# amb_node N: node netns with its uplink; routes to all nodes created so far
# (and they to it).
amb_node() {
	local n=$1 ns m
	ns=$(amb_node_ns "$n")
	amb_netns_add "$ns"
	ip link add "u$n$P" netns "$P-ul" type veth peer name eth0 netns "$ns"
	ip -n "$P-ul" link set "u$n$P" master br0 up
	ip -n "$ns" addr add "$(amb_node_ip "$n")/24" dev eth0
	ip -n "$ns" link set eth0 up
	ns_sysctl "$ns" net.ipv4.ip_forward=1
	for m in "${AMB_NODES[@]}"; do
		ip -n "$ns" route add "198.18.$m.0/24" via "$(amb_node_ip "$m")"
		ip -n "$(amb_node_ns "$m")" route add "198.18.$n.0/24" via "$(amb_node_ip "$n")"
	done
	AMB_NODES+=("$n")
}

# amb_pod N I: pod I on node N.
amb_pod() {
	local n=$1 i=$2 ns node veth ip
	ns=$(amb_pod_ns "$n" "$i")
	node=$(amb_node_ns "$n")
	veth=$(amb_pod_veth "$n" "$i")
	ip=$(amb_pod_ip "$n" "$i")
	amb_netns_add "$ns"
	ip link add "$veth" netns "$node" type veth peer name eth0 netns "$ns"
	ip -n "$ns" addr add "$ip/32" dev eth0
	ip -n "$ns" link set eth0 up
	ip -n "$ns" route add default dev eth0
	ip -n "$node" link set "$veth" up
	ns_sysctl "$node" "net.ipv4.conf.$veth.proxy_arp=1"
	# Answer the pod's ARP at once: by default a proxy reply waits a
	# random 0-0.8 s (neigh proxy_delay), and the pod ARPs for every new
	# peer address (default dev eth0), e.g. a first upstream connection.
	ns_sysctl "$node" "net.ipv4.neigh.$veth.proxy_delay=0"
	ip -n "$node" route add "$ip/32" dev "$veth"
}

# amb_pod_run N I CMD...: runs CMD in the pod (and in $CG), foreground.
# nsenter, not `ip netns exec`: the latter remounts /sys and hides cgroupfs.
amb_pod_run() {
	local ns
	ns=$(amb_pod_ns "$1" "$2")
	shift 2
	sh -c 'echo $$ > "$1/cgroup.procs" && ns=$2 && shift 2 && exec nsenter --net="/run/netns/$ns" "$@"' \
		sh "$CG" "$ns" "$@"
}

# amb_pod_bg N I LOG CMD...: like amb_pod_run, in the background, output to
# LOG; the pid is remembered for cleanup and left in $AMB_LAST_PID.
amb_pod_bg() {
	local n=$1 i=$2 log=$3 ns
	ns=$(amb_pod_ns "$n" "$i")
	shift 3
	# Not via amb_pod_run: a backgrounded function is a subshell, and $! must
	# be the process itself (sh execs nsenter, which execs the command).
	sh -c 'echo $$ > "$1/cgroup.procs" && ns=$2 && shift 2 && exec nsenter --net="/run/netns/$ns" "$@"' \
		sh "$CG" "$ns" "$@" >"$log" 2>&1 &
	AMB_LAST_PID=$!
	AMB_PIDS+=("$AMB_LAST_PID")
}

# amb_wait_listen NS PORT [SECONDS]: until something listens on TCP PORT.
amb_wait_listen() {
	local ns=$1 port=$2 tries=$((${3:-10} * 10))
	while [ "$tries" -gt 0 ]; do
		[ -n "$(ip netns exec "$ns" ss -Hltn "sport = :$port" 2>/dev/null)" ] && return 0
		sleep 0.1
		tries=$((tries - 1))
	done
	return 1
}

# amb_server N I PORT MODE [tcptool args]: tcptool server in pod N/I, log in
# $AMB_WORK/srv-<n>-<i>-<port>.log; waits until it listens.
amb_server() {
	local n=$1 i=$2 port=$3 mode=$4
	shift 4
	amb_pod_bg "$n" "$i" "$AMB_WORK/srv-$n-$i-$port.log" "$TCPTOOL" server "$mode" "$port" "$@"
	amb_wait_listen "$(amb_pod_ns "$n" "$i")" "$port" 5
}

amb_server_log() { echo "$AMB_WORK/srv-$1-$2-$3.log"; }

# amb_tcp N I CMD-ARGS...: tcptool client in pod N/I (60 s hard limit unless
# AMB_TCP_LIMIT is set).
amb_tcp() {
	local n=$1 i=$2
	shift 2
	amb_pod_run "$n" "$i" timeout "${AMB_TCP_LIMIT:-60}" "$TCPTOOL" client "$@"
}

# amb_whoami N I DST-IP PORT: prints the IP the whoami server saw us as.
amb_whoami() {
	local out
	out=$(amb_tcp "$1" "$2" whoami "$3" "$4" --timeout 5000 2>&1) || {
		echo "FAILED: $out"
		return 1
	}
	echo "${out%%:*}"
}

# ---------------------------------------------------------------- config

# amb_config FILE N:I...: ztunnel-style local config enrolling pods N/I on
# their nodes (protocol TCP).
amb_config() {
	local file=$1 pod n i
	shift
	{
		echo "# generated by tests/integration/lib.sh"
		if [ $# -eq 0 ]; then
			echo "workloads: []"
		else
			echo "workloads:"
		fi
		for pod in "$@"; do
			n=${pod%%:*}
			i=${pod##*:}
			cat <<EOF
- uid: cluster1//v1/Pod/default/n${n}p${i}
  name: n${n}p${i}
  namespace: default
  serviceAccount: sa-n${n}p${i}
  workloadIps: ["$(amb_pod_ip "$n" "$i")"]
  protocol: ${AMB_PROTOCOL:-TCP}
  node: $(amb_node_name "$n")
EOF
		done
	} >"$file"
}

# Replaces FILE atomically (write + rename), as a config manager would.
amb_replace_file() {
	local file=$1 tmp
	tmp="$file.tmp.$$"
	cat >"$tmp"
	mv -f "$tmp" "$file"
}

# ---------------------------------------------------------------- daemon

amb_node_exec() {
	local n=$1
	shift
	nsenter --net="/run/netns/$(amb_node_ns "$n")" "$@"
}

amb_daemon_log() { echo "$AMB_WORK/ambientd-n$1.log"; }

# amb_daemon_start N CONFIG [ambientd args...]: starts ambientd for node N
# (logs appended to $(amb_daemon_log N)); waits until 15001 listens.
amb_daemon_start() {
	local n=$1 config=$2 log
	shift 2
	log=$(amb_daemon_log "$n")
	AMB_DAEMON_ARGS[$n]="$config $*"
	echo "=== $(date +%T) start: ambientd --node $(amb_node_name "$n") --config $config --cgroup $CG $*" >>"$log"
	# nsenter directly (not amb_node_exec): a backgrounded function runs in a
	# subshell and $! would be that subshell, not the daemon.
	nsenter --net="/run/netns/$(amb_node_ns "$n")" "$AMBIENTD" --node "$(amb_node_name "$n")" \
		--config "$config" --cgroup "$CG" --log-level "${AMB_LOG_LEVEL:-debug}" \
		--ca-dir "$AMB_WORK/ca" --state-dir "$AMB_WORK/state-n$n" "$@" >>"$log" 2>&1 &
	AMB_DAEMON_PID[$n]=$!
	AMB_PIDS+=("$!")
	amb_daemon_wait_ready "$n"
}

amb_daemon_wait_ready() {
	local n=$1 tries=100
	while [ "$tries" -gt 0 ]; do
		[ -n "$(ip netns exec "$(amb_node_ns "$n")" ss -Hltn 'sport = :15001' 2>/dev/null)" ] && return 0
		if ! kill -0 "${AMB_DAEMON_PID[$n]}" 2>/dev/null; then
			echo "ambientd for node $n exited early" >&2
			return 1
		fi
		sleep 0.1
		tries=$((tries - 1))
	done
	echo "ambientd for node $n: 15001 not listening after 10 s" >&2
	return 1
}

# amb_daemon_stop N: SIGTERM, wait up to 10 s (then SIGKILL). Returns the
# daemon's exit status (137 if it had to be killed).
amb_daemon_stop() {
	local n=$1 pid=${AMB_DAEMON_PID[$1]:-} tries=100 rc=0
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null
	while kill -0 "$pid" 2>/dev/null && [ "$tries" -gt 0 ]; do
		sleep 0.1
		tries=$((tries - 1))
	done
	if kill -0 "$pid" 2>/dev/null; then
		echo "ambientd for node $n ignored SIGTERM for 10 s; killing" >&2
		kill -KILL "$pid" 2>/dev/null
	fi
	wait "$pid" 2>/dev/null || rc=$?
	unset "AMB_DAEMON_PID[$n]"
	return "$rc"
}

# amb_ctl N ARGS...: ambientctl for node N (in its netns).
amb_ctl() {
	local n=$1
	shift
	amb_node_exec "$n" timeout 20 "$AMBIENTCTL" --node "$(amb_node_name "$n")" "$@"
}

# amb_counter N REASON [packets|bytes]: one BPF counter of node N.
amb_counter() {
	local v
	v=$(amb_ctl "$1" counters -o json 2>/dev/null | jq -r ".$2.${3:-packets} // 0" 2>/dev/null)
	case $v in
	'' | *[!0-9]*) echo "counter-unavailable" ;;
	*) echo "$v" ;;
	esac
}

# All counters of node N as sorted, compact JSON (empty if unavailable).
amb_counters_json() {
	amb_ctl "$1" counters -o json 2>/dev/null | jq -cS . 2>/dev/null
}

# cdelta BEFORE-JSON AFTER-JSON REASON: packets delta, or "?" if unknown.
cdelta() {
	local b a
	b=$(jq -r ".$3.packets // empty" <<<"$1" 2>/dev/null)
	a=$(jq -r ".$3.packets // empty" <<<"$2" 2>/dev/null)
	if is_num "$a" && is_num "$b"; then
		echo $((a - b))
	else
		echo "?"
	fi
}

# expect_delta LABEL BEFORE AFTER REASON OP N: e.g. "-ge 1" or "-eq 0".
expect_delta() {
	local d
	d=$(cdelta "$2" "$3" "$4")
	if [ "$d" = "?" ]; then
		diag "$1: counter $4 unavailable (ambientctl counters -o json)"
		return 1
	fi
	[ "$d" "$5" "$6" ] && return 0
	diag "$1: counter $4 moved by $d packets, expected $5 $6"
	return 1
}

amb_uninstall() {
	amb_node_exec "$1" timeout 30 "$AMBIENTD" uninstall --node "$(amb_node_name "$1")"
}

# amb_setup_or_bail FN: run the suite's setup function; on failure report
# it as a failed case and end the suite (cleanup runs from the EXIT trap).
amb_setup_or_bail() {
	"$1" && return 0
	tap_fail "setup"
	tap_done
	exit 1
}

# Prints the last lines of node N's daemon log as TAP diagnostics.
amb_daemon_diag() {
	local log
	log=$(amb_daemon_log "$1")
	[ -s "$log" ] || return 0
	diag "--- last lines of ambientd node $1 log ($log):"
	tail -n "${2:-15}" "$log" | diag
}

# ---------------------------------------------------------------- sanitizers

# With a sanitizer build (scripts/test's second pass) every process we
# start (daemons, ambientctl, the CNI plugin) writes its ASan/UBSan/LSan/TSan
# report to $AMB_WORK/sanitizer.<pid> instead of stderr, where a daemon's
# report would drown in its log and a client's in a command substitution.
# A report there fails the suite: a daemon ASan killed would otherwise look
# like no more than "connection refused". Without sanitizers the options
# are ignored.
amb_sanitizer_env() {
	local o
	for o in ASAN_OPTIONS UBSAN_OPTIONS TSAN_OPTIONS; do
		export "$o=${!o:+${!o}:}log_path=$AMB_WORK/sanitizer"
	done
}

# amb_sanitized: true when $AMBIENTD is a sanitizer build. ASan keeps freed
# memory in quarantine and both ASan and TSan map shadow memory, so RSS
# bounds say nothing about the daemon there: skip such checks (tap_skip)
# and keep the rest of the case.
amb_sanitized() {
	grep -qaE '__(asan|tsan)_init' "$AMBIENTD" 2>/dev/null
}

# Prints new sanitizer reports as diagnostics (at most 60 lines each) and
# marks them seen; returns 1 if there was one.
amb_sanitizer_reports() {
	local f rc=0
	[ -n "$AMB_WORK" ] || return 0
	for f in "$AMB_WORK"/sanitizer.*; do
		[ -f "$f" ] || continue
		case $f in *.seen) continue ;; esac
		rc=1
		diag "--- sanitizer report $(basename "$f"):"
		head -n 60 "$f" | diag
		mv -f "$f" "$f.seen"
	done
	return "$rc"
}

# From tap_done: stop the daemons (a leak is reported at exit) and turn any
# report into a failing case. Adds no case when there is none.
amb_sanitizer_case() {
	local n
	[ -n "$AMB_WORK" ] || return 0
	for n in "${!AMB_DAEMON_PID[@]}"; do
		amb_daemon_stop "$n" 2>/dev/null
	done
	amb_sanitizer_reports || tap_fail "no sanitizer (ASan/UBSan/LSan/TSan) reports"
}

# ---------------------------------------------------------------- cleanup

# The EXIT trap: cleanup's status (non-zero also when a sanitizer reported
# during cleanup) becomes the script's.
amb_exit_trap() {
	amb_cleanup
	exit $?
}

# Removes everything of prefix P: processes, daemons (then uninstall), netns,
# pins, cgroup, temp dir. Safe to call more than once and on a half-built
# topology. Set AMB_KEEP_WORK=1 to keep $AMB_WORK (logs) for inspection.
amb_cleanup() {
	local rc=$? pid ns n tries
	# Cleanup must run to the end whatever fails on the way (the demo runs
	# with errexit, which would otherwise stay on inside this EXIT trap).
	set +e
	[ -n "$P" ] || return "$rc"
	trap - EXIT
	# Pod processes first (they are ours: they live in our cgroup/netns).
	for pid in "${AMB_PIDS[@]}"; do
		case " ${AMB_DAEMON_PID[*]} " in *" $pid "*) continue ;; esac
		kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	if [ -n "$CG" ] && [ -e "$CG/cgroup.kill" ]; then
		echo 1 >"$CG/cgroup.kill" 2>/dev/null
	fi
	# Daemons: SIGTERM, then uninstall while the node netns still exists.
	for n in "${!AMB_DAEMON_PID[@]}"; do
		amb_daemon_stop "$n" 2>/dev/null
	done
	# Anything else still running in our namespaces (e.g. from a --keep demo).
	for ns in $(ip netns list 2>/dev/null | awk -v p="$P-" 'index($1, p) == 1 {print $1}'); do
		for pid in $(ip netns pids "$ns" 2>/dev/null); do
			kill -TERM "$pid" 2>/dev/null
		done
	done
	sleep 0.2
	for ns in $(ip netns list 2>/dev/null | awk -v p="$P-" 'index($1, p) == 1 {print $1}'); do
		for pid in $(ip netns pids "$ns" 2>/dev/null); do
			kill -KILL "$pid" 2>/dev/null
		done
	done
	for n in "${AMB_NODES[@]}"; do
		if [ -x "$AMBIENTD" ] && [ -e "/run/netns/$(amb_node_ns "$n")" ]; then
			amb_uninstall "$n" >/dev/null 2>&1
		fi
	done
	for ns in $(ip netns list 2>/dev/null | awk -v p="$P-" 'index($1, p) == 1 {print $1}'); do
		ip netns del "$ns" 2>/dev/null
	done
	for n in "${AMB_NODES[@]}"; do
		rm -rf "$(amb_pin_dir "$n")"
	done
	if ! amb_sanitizer_reports; then
		diag "sanitizer reports during cleanup: failing the suite"
		rc=1
	fi
	if [ -n "$CG" ] && [ -d "$CG" ]; then
		tries=50
		while ! rmdir "$CG" 2>/dev/null && [ "$tries" -gt 0 ]; do
			sleep 0.1
			tries=$((tries - 1))
		done
	fi
	# (killed children are reaped when the shell exits)
	if [ -n "$AMB_WORK" ] && [ -z "${AMB_KEEP_WORK:-}" ]; then
		rm -rf "$AMB_WORK"
	fi
	P=""
	return "$rc"
}
