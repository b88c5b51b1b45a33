# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
# Sourced by the scripts that need root (network namespaces, eBPF, packages):
# `amb_as_root "$@"` returns when we are root, re-runs the calling script
# through sudo when we are not and sudo exists, and says what to do
# otherwise. A fresh Debian root shell has no sudo; a user shell usually has.

amb_as_root() {
	[ "$(id -u)" -eq 0 ] && return 0
	if command -v sudo >/dev/null 2>&1; then
		exec sudo --preserve-env=AMBIENTD_BUILD_DIR,AMB_FAULTS_LONG "$0" "$@"
	fi
	echo "$(basename "$0"): needs root (network namespaces, eBPF, Debian packages)" \
		"and this system has no sudo: run it from a root shell" >&2
	exit 1
}
