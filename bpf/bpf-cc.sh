#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# bpf-cc.sh CLANG LLVM_STRIP IN OUT CFLAGS...: compile one BPF object and
# strip DWARF while keeping .BTF/.BTF.ext (libbpf needs them, bpftool shows
# map fields by them).
set -e
clang=$1 strip=$2 in=$3 out=$4
shift 4
"$clang" "$@" -c "$in" -o "$out.tmp"
"$strip" -g "$out.tmp" -o "$out"
rm -f "$out.tmp"
