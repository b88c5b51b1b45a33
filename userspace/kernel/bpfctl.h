/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Loading, pinning, attaching and enrolling: everything ambientd does to
 * the kernel's BPF state of one node. Shared by the daemon (which loads the
 * programs) and ambientctl (which works on the pins, daemon up or down).
 *
 * Pin layout under <bpffs>/ambientd/<node>/:
 *   amb_pods amb_counters amb_excl_net amb_excl_port amb_socks amb_sock_ev
 *   amb_pol amb_pol_hits amb_pol_names       (policy fast path)
 *   amb_tc_pod amb_tc_inbound amb_sockops   (programs)
 *   amb_sockops_lnk                          (cgroup link)
 * All functions return 0 or -errno unless said otherwise.
 */
#ifndef AMBIENTD_BPFCTL_H
#define AMBIENTD_BPFCTL_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ambientd/bpf_shared.h"

struct amb_redirect;
struct amb_sockops;

struct bpfctl {
	char node[64];
	char pin_dir[PATH_MAX];
	struct amb_redirect *redir; /* only when loaded by the daemon */
	struct amb_sockops *sockops;
	int pods_fd;
	int counters_fd;
	int excl_net_fd;
	int excl_port_fd;
	int socks_fd;
	int sock_ev_fd;
	int prog_pod_fd;
	int prog_inbound_fd;
	int pol_fd;	  /* amb_pol */
	int pol_hits_fd;  /* amb_pol_hits */
	int pol_names_fd; /* amb_pol_names */
};

#define BPFCTL_DEFAULT_BPFFS "/sys/fs/bpf"
/* Pin of the sockops program's cgroup link. */
#define BPFCTL_LINK_PIN "amb_sockops_lnk"

/* Node names become directory names: [A-Za-z0-9._-], 1..63 chars. */
bool bpfctl_node_name_valid(const char *node);

/* Make sure <bpffs> is a bpf filesystem (mounting one if needed). */
int bpfctl_ensure_bpffs(const char *bpffs);

/* Daemon: load both objects, reusing pinned maps, pin the programs. */
int bpfctl_load(struct bpfctl *b, const char *bpffs, const char *node);

/* Settings fixed when the programs are loaded (their rodata); zero is the
 * default of each. */
struct bpfctl_load_opts {
	/* Let enrolled pods' IPv6 TCP bypass the mesh (pass_ipv6) instead of
	 * failing closed (refused_ipv6, drop_ipv6): only for clusters that
	 * accept IPv6 without mTLS or policy until dual-stack capture exists.
	 * Logged as a warning. */
	bool ipv6_passthrough;
};
/* bpfctl_load() with settings; lo may be NULL (all defaults). */
int bpfctl_load_opts(struct bpfctl *b, const char *bpffs, const char *node,
		     const struct bpfctl_load_opts *lo);
/* ambientctl: open the pinned maps and programs. -ENOENT when not installed. */
int bpfctl_open_pinned(struct bpfctl *b, const char *bpffs, const char *node);
void bpfctl_close(struct bpfctl *b);

/* Attach prog_fd as our tc ingress filter on ifindex (replacing ours). */
int bpfctl_tc_attach(int ifindex, int prog_fd);
/* Remove our tc ingress filter from ifindex; never the qdisc. */
int bpfctl_tc_detach(int ifindex);
/* The kernel's id of a program fd, 0 if it is none. */
uint32_t bpfctl_prog_id(int fd);
/* id of the program in our filter slot on ifindex, 0 if none. */
uint32_t bpfctl_tc_prog_id(int ifindex);

/* Enroll pod addr (network order) behind host veth ifindex. */
int bpfctl_enroll(struct bpfctl *b, uint32_t addr, int ifindex, uint32_t flags);
/* Unenroll: drop from amb_pods, put the inbound program back on its veth. */
int bpfctl_unenroll(struct bpfctl *b, uint32_t addr);
/* Iterate amb_pods; cb returns non-zero to stop. */
int bpfctl_for_each_pod(struct bpfctl *b,
			int (*cb)(uint32_t addr, const struct amb_pod *pod, void *arg),
			void *arg);

/* Attach the inbound program to every interface of the netns that is not
 * loopback and not an enrolled pod's veth. */
int bpfctl_attach_inbound_all(struct bpfctl *b);

/* Attach (or re-point the pinned link of) sockops to a cgroup v2 dir. */
int bpfctl_attach_cgroup(struct bpfctl *b, const char *cgroup_dir);

/* Replace the exclusion maps' contents: outbound destination ports and
 * CIDRs (pod egress), inbound ports (towards pods). Ports in host order,
 * CIDRs in network order with prefix lengths. */
struct bpfctl_cidr {
	uint32_t addr;
	uint8_t prefixlen;
};
int bpfctl_set_exclusions(struct bpfctl *b, const uint16_t *ports, size_t n_ports,
			  const struct bpfctl_cidr *nets, size_t n_nets,
			  const uint16_t *in_ports, size_t n_in_ports);

/* Sum the per-CPU counters into out[AMB_R_MAX]. */
int bpfctl_read_counters(struct bpfctl *b, struct amb_counter *out);
const char *bpfctl_reason_name(unsigned reason);
/* SYNs the kernel refused for policy slot id (amb_pol_hits, summed). */
int bpfctl_pol_hits(struct bpfctl *b, uint32_t id, struct amb_counter *out);
/* Name of policy slot id (amb_pol_names); -ENOENT if unused. */
int bpfctl_pol_name(struct bpfctl *b, uint32_t id, char *buf, size_t len);

/* Remove every filter, link, pin, rule and route of this node (run in the
 * node netns). Idempotent; reports what it removed through log_info. */
int bpfctl_uninstall(const char *bpffs, const char *node);

/* Delivery routing for assigned packets and the sysctls it needs. */
int bpfctl_setup_routing(void);
int bpfctl_teardown_routing(void);

#endif
