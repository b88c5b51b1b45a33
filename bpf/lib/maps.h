/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Maps shared by the programs of one node. Every map is pinned by name under
 * the node's pin directory (/sys/fs/bpf/ambientd/<node>/), so the tc and
 * sockops objects and a restarted daemon all see the same instances.
 */
#ifndef AMB_BPF_MAPS_H
#define AMB_BPF_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "ambientd/bpf_shared.h"

/* Enrolled pods of this node, by pod IP. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, AMB_MAX_PODS);
	__type(key, struct amb_pod_key);
	__type(value, struct amb_pod);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} amb_pods SEC(".maps");

/* Verdict counters, one slot per enum amb_reason. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, AMB_R_SLOTS);
	__type(key, __u32);
	__type(value, struct amb_counter);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} amb_counters SEC(".maps");

/* Destination CIDRs a pod may reach without capture. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, AMB_MAX_EXCL_NETS);
	__type(key, struct amb_lpm_key);
	__type(value, __u8);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} amb_excl_net SEC(".maps");

/* Destination ports a pod may reach without capture. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, AMB_MAX_EXCL_PORTS);
	__type(key, struct amb_excl_port_key);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} amb_excl_port SEC(".maps");

/* Plaintext-caller policy decisions (see struct amb_pol_key). */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, AMB_MAX_POL_ENTRIES);
	__type(key, struct amb_pol_key);
	__type(value, struct amb_pol_verdict);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} amb_pol SEC(".maps");

/* SYNs refused per policy_id. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, AMB_MAX_POL_IDS);
	__type(key, __u32);
	__type(value, struct amb_counter);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} amb_pol_hits SEC(".maps");

/* policy_id -> name, written by the daemon for bpftool and ambientctl. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, AMB_MAX_POL_IDS);
	__type(key, __u32);
	__type(value, struct amb_pol_name);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} amb_pol_names SEC(".maps");

#endif
