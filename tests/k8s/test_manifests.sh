#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
#
# manifests/ against the Kubernetes API schemas (npm kubernetes-models,
# installed by this test into a cache directory) and against the code: every
# hostPath and option the DaemonSet gives ambientd is one the code uses, and
# nothing the code needs from the host is missing. (That the capability set
# is exactly what the daemon needs is checked by running it: test_caps.sh.)
set -u
. "$(dirname "$0")/../integration/lib.sh"

TOP=$AMB_SRC_ROOT
M=$TOP/manifests
DS=$M/daemonset.yaml
AMBIENTD_CNI=${AMBIENTD_CNI:-$TOP/build/cni/ambientd-cni}
CACHE=${AMBIENTD_TEST_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/ambientd-tests}
NPM_DIR=$CACHE/npm-k8s-models-5.1.0
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

command -v node >/dev/null && command -v npm >/dev/null || skip_all "node/npm not installed (needed for the kubernetes-models validators)"
[ -x "$AMBIENTD" ] || skip_all "ambientd not built ($AMBIENTD)"

# ---- schemas ---------------------------------------------------------------

npm_ready() { [ -f "$NPM_DIR/node_modules/kubernetes-models/package.json" ] && [ -f "$NPM_DIR/node_modules/yaml/package.json" ]; }
if ! npm_ready; then
	mkdir -p "$NPM_DIR"
	(cd "$NPM_DIR" && echo '{"name":"ambientd-manifest-check","private":true}' >package.json &&
		npm install --no-audit --no-fund --loglevel=error kubernetes-models@5.1.0 yaml@2 >"$WORK/npm.log" 2>&1) ||
		true
fi
npm_ready || { diag <"$WORK/npm.log"; skip_all "cannot install kubernetes-models from the npm registry"; }

"$M/create-ca-secret.sh" >"$WORK/ca-secret.yaml" 2>"$WORK/ca.err" || diag <"$WORK/ca.err"
# The pieces as a user applies them: the kustomization, the Secret from the
# script, the example app.
node "$(dirname "$0")/validate-manifests.mjs" "$NPM_DIR" "$M"/*.yaml "$M/examples/app.yaml" \
	"$WORK/ca-secret.yaml" >"$WORK/validate.out" 2>&1
while IFS= read -r line; do
	case $line in
	PASS\ *) tap_pass "${line#PASS }" ;;
	FAIL\ *) tap_fail "${line#FAIL }" ;;
	*) diag "$line" ;;
	esac
done <"$WORK/validate.out"

# The validator must be able to fail: a DaemonSet with a type error and
# without a capability comment.
sed -e 's/- NET_ADMIN$/- NET_ADMIN\n            - SYS_ADMIN/' -e 's/hostNetwork: true$/hostNetwork: "yes"/' "$DS" >"$WORK/bad-ds.yaml"
out=$(node "$(dirname "$0")/validate-manifests.mjs" "$NPM_DIR" "$WORK/bad-ds.yaml" 2>&1)
if grep -q "FAIL .*schema" <<<"$out" && grep -q "FAIL capability SYS_ADMIN has a comment" <<<"$out"; then
	tap_pass "validator rejects a broken DaemonSet"
else
	diag "$out"
	tap_fail "validator rejects a broken DaemonSet"
fi

# Secret data is the CA the daemon accepts (decoded back, same files).
case_secret_roundtrip() {
	local d=$WORK/ca-rt
	"$M/create-ca-secret.sh" --keep "$d" >"$WORK/s1.yaml" || return 1
	"$M/create-ca-secret.sh" --from "$d" >"$WORK/s2.yaml" || return 1
	check_eq "Secret from --keep and --from the same dir" "$(md5sum <"$WORK/s1.yaml")" "$(md5sum <"$WORK/s2.yaml")" &&
		[ "$(grep -c 'ca-.*\.pem: ' "$WORK/s1.yaml")" = 2 ] &&
		openssl x509 -in "$d/ca-cert.pem" -noout -text | grep -q "CA:TRUE" &&
		! "$M/create-ca-secret.sh" --from "$WORK/nonexistent" >/dev/null 2>&1
}
tap_ok "create-ca-secret.sh: --keep/--from round trip, CA:TRUE, missing dir refused" case_secret_roundtrip

# ---- kubectl ---------------------------------------------------------------

if command -v kubectl >/dev/null; then
	if out=$(kubectl kustomize "$M" 2>&1) && [ "$(grep -c '^kind: ' <<<"$out")" = 7 ]; then
		tap_pass "kubectl kustomize manifests/ renders the 7 objects"
	else
		diag "$out" | head -20
		tap_fail "kubectl kustomize manifests/ renders the 7 objects"
	fi
else
	tap_skip "kubectl kustomize manifests/" "kubectl not installed"
fi
# Without a cluster, kubectl apply --dry-run=client still asks an API server
# for discovery and the OpenAPI schema (Debian's kubernetes-client included),
# so it cannot run offline; the schemas above do that part.
tap_skip "kubectl apply --dry-run=client" "needs an API server for discovery/OpenAPI; no cluster here"

# ---- the DaemonSet against the code ---------------------------------------

# ds_arg NAME: value of --NAME=... in the ambientd container's args.
ds_arg() { sed -n "s/^ *- --$1=\(.*\)$/\1/p" "$DS" | head -1; }
# mount_path VOLUME: first mountPath of that volume.
mount_path() { grep -A1 -- "- name: $1$" "$DS" | sed -n 's/^ *mountPath: //p' | head -1; }
# host_path VOLUME: its hostPath path.
host_path() {
	awk -v n="- name: $1" '$0 ~ n"$" { getline; if ($0 ~ /hostPath:/) { sub(/.*path: /, ""); sub(/[,}].*/, ""); print; exit } }' "$DS"
}
# define FILE NAME: the string value of a #define (FILE relative to the top).
define() { sed -n "s/^#define $2 \"\(.*\)\"/\1/p" "$TOP/$1" | head -1; }

case_options_exist() {
	local help opt rc=0
	help=$("$AMBIENTD" --help)
	for opt in $(sed -n 's/^ *- --\([a-z-]*\).*/\1/p' "$DS" | sort -u); do
		grep -q -- "--$opt" <<<"$help" || { diag "ambientd has no --$opt"; rc=1; }
	done
	return "$rc"
}
tap_ok "every ambientd option in the DaemonSet exists" case_options_exist

case_bpffs() {
	check_eq "bpffs mount vs BPFCTL_DEFAULT_BPFFS" "$(mount_path bpffs)" "$(define userspace/kernel/bpfctl.h BPFCTL_DEFAULT_BPFFS)" &&
		check_eq "bpffs hostPath" "$(host_path bpffs)" "$(define userspace/kernel/bpfctl.h BPFCTL_DEFAULT_BPFFS)"
}
tap_ok "bpffs: the pin root the code uses is the host's" case_bpffs

case_run_dir() {
	local dir
	dir=$(define userspace/core/ctlsock.h CTLSOCK_DIR)
	check_eq "control socket dir mount" "$(mount_path run)" "$dir" &&
		check_eq "control socket dir hostPath" "$(host_path run)" "$dir" &&
		check_eq "--cni-socket dir" "$(dirname "$(ds_arg cni-socket)")" "$dir" &&
		check_eq "CNI plugin default socket" "$(define cni/cni.h CNI_DEFAULT_SOCKET)" "$(ds_arg cni-socket)" &&
		grep -q -- "--socket=$(ds_arg cni-socket)\"" "$DS"
}
tap_ok "/run/ambientd: control socket and CNI socket shared with the host" case_run_dir

case_cgroup() {
	local arg
	arg=$(ds_arg cgroup)
	check_eq "--cgroup is the cgroup volume's mount" "$arg" "$(mount_path cgroup)" &&
		check_eq "cgroup hostPath" "$(host_path cgroup)" /sys/fs/cgroup
}
tap_ok "cgroup v2: sockops attaches to the host's root" case_cgroup

case_proc_sys() {
	local rc=0 arg calls
	arg=$(ds_arg proc-sys)
	check_eq "proc-sys-net mount" "$(mount_path proc-sys-net)" "$arg/net" || rc=1
	check_eq "proc-sys-net hostPath" "$(host_path proc-sys-net)" /proc/sys/net || rc=1
	# Only net/ sysctls are written, so /proc/sys/net is all that is mounted.
	calls=$(grep -ho 'sysctl_write([^,]*' "$TOP"/userspace/*/*.c | grep -v 'const char \*path' | sort -u)
	grep -q 'net/' "$TOP/userspace/kernel/bpfctl.c" || rc=1
	if grep -rn '"/proc/sys/\|"kernel/\|"vm/' "$TOP"/userspace/kernel/bpfctl.c | grep -v 'net/' | grep -q .; then
		diag "code writes sysctls outside net/"
		rc=1
	fi
	diag "sysctl writers: $(tr '\n' ' ' <<<"$calls")"
	return "$rc"
}
tap_ok "sysctls: only /proc/sys/net is written, and it is mounted writable" case_proc_sys

case_no_netns() {
	# The daemon finds pod veths from the host side (route lookup); it never
	# enters a pod's network namespace, so no netns mount is needed.
	if grep -qn 'setns(' "$TOP"/userspace/*/*.c; then
		grep -q '/var/run/netns\|/run/netns' "$DS" || { diag "code calls setns but no netns mount"; return 1; }
	else
		! grep -q 'path: /var/run/netns\|path: /run/netns' "$DS" || { diag "netns mounted but unused"; return 1; }
	fi
}
tap_ok "netns: mounted only if the code enters pod namespaces" case_no_netns

case_ca_dir() {
	check_eq "--ca-dir is the Secret's mount" "$(ds_arg ca-dir)" "$(mount_path ca)" &&
		grep -q 'secretName: ambientd-ca' "$DS" &&
		grep -q '"ca-cert.pem"\|ca-cert.pem' "$TOP/userspace/tls/ca.c" && grep -q 'ca-key.pem' "$TOP/userspace/tls/ca.c" &&
		grep -q 'ca-cert.pem: ' "$WORK/ca-secret.yaml" && grep -q 'ca-key.pem: ' "$WORK/ca-secret.yaml"
}
tap_ok "mesh root: Secret keys are the file names ca.c reads" case_ca_dir

case_policies() {
	check_eq "--config dir is the policies ConfigMap mount" "$(dirname "$(ds_arg config)")" "$(mount_path policies)" &&
		grep -q "policies.yaml: |" "$M/configmap.yaml" && [ "$(basename "$(ds_arg config)")" = policies.yaml ]
}
tap_ok "policies: the ConfigMap key is the file --config names" case_policies

if [ -x "$AMBIENTD_CNI" ]; then
	case_cni_install_args() {
		local help opt rc=0
		help=$("$AMBIENTD_CNI" install --help 2>&1)
		for opt in $(grep -o '"--[a-z-]*=' "$DS" | tr -d '"=' | sort -u); do
			grep -q -- "$opt" <<<"$help" || { diag "ambientd-cni install has no $opt"; rc=1; }
		done
		return "$rc"
	}
	tap_ok "CNI install options in the init container exist" case_cni_install_args
else
	tap_skip "CNI install options in the init container exist" "ambientd-cni not built"
fi

tap_done
