/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Types and constants shared by the eBPF programs (bpf/) and userspace.
 * Only __u8..__u64 and explicit padding: this header is compiled both with
 * clang -target bpf and with the host compiler, and every struct here is a
 * BTF-typed map key or value that `bpftool map dump` prints by field name.
 */
#ifndef AMBIENTD_BPF_SHARED_H
#define AMBIENTD_BPF_SHARED_H

#include <linux/types.h>

/* Tunnel listener ports (same as ztunnel). */
#define AMB_PORT_OUTBOUND 15001 /* transparent outbound capture */
#define AMB_PORT_INBOUND 15006  /* plaintext inbound capture */
#define AMB_PORT_HBONE 15008    /* HBONE (mTLS + HTTP/2 CONNECT) */

/* SO_MARK carried by every tunnel socket; programs never capture it. */
#define AMB_MARK_TUNNEL 0x539
/* skb mark set on assigned packets; an ip rule routes it to the local table. */
#define AMB_MARK_DELIVER 0x111
#define AMB_MARK_MASK 0xfff
/* Routing table and rule priority installed in the node netns. */
#define AMB_ROUTE_TABLE 111
#define AMB_RULE_PRIORITY 111

/* tc filter handle/priority: ours alone, so detach never touches others. */
#define AMB_TC_HANDLE 0xa3b1
#define AMB_TC_PRIORITY 7

/*
 * Why a packet got its verdict. Index of the per-CPU counter array; the
 * string table in userspace (bpfctl_reason_name) must follow this order.
 */
enum amb_reason {
	AMB_R_ASSIGN_ESTABLISHED = 0, /* established tunnel flow, sent to its socket */
	AMB_R_ASSIGN_OUTBOUND,        /* pod SYN assigned to the 15001 listener */
	AMB_R_ASSIGN_INBOUND,         /* SYN to a pod assigned to 15006 */
	AMB_R_ASSIGN_HBONE,           /* SYN to pod:15008 assigned to 15008 */
	AMB_R_PASS_NON_TCP,           /* enrolled pod's non-TCP (IPv4 or IPv6) */
	AMB_R_PASS_EXCLUDED,          /* destination port/CIDR excluded */
	AMB_R_PASS_NO_SOCKET,         /* non-SYN without a tunnel socket */
	AMB_R_DROP_SPOOFED,           /* source IP is not the pod's own */
	AMB_R_DROP_NO_LISTENER,       /* fail closed: the tunnel does not listen */
	AMB_R_DROP_ASSIGN_FAILED,     /* bpf_sk_assign refused the socket */
	AMB_R_DROP_MALFORMED,         /* truncated or inconsistent headers; IPv6:
				       * also more extension headers than
				       * AMB_IPV6_MAX_EXT */
	AMB_R_REFUSED_NO_LISTENER,    /* fail closed with a RST back to the pod */
	AMB_R_REFUSED_POLICY,         /* plaintext SYN denied by policy: RST */
	AMB_R_DROP_POLICY,            /* denied by policy, RST not possible */
	/* IPv6 is not tunneled yet: an enrolled pod's IPv6 TCP fails closed
	 * (unless loaded with ipv6_passthrough). */
	AMB_R_REFUSED_IPV6,   /* pod's IPv6 SYN: RST back to the pod */
	AMB_R_DROP_IPV6,      /* its other IPv6 TCP (or a SYN no RST fits) */
	AMB_R_DROP_IPV6_FRAG, /* its IPv6 fragment that may carry TCP */
	AMB_R_PASS_IPV6,      /* its IPv6 TCP let through (passthrough) */
	AMB_R_DELIVER_TIME_WAIT, /* matches a tunnel socket in TIME_WAIT: to it */
	AMB_R_MAX,
};
/* Slots of amb_counters: room for new reasons without changing the pinned
 * map's shape. */
#define AMB_R_SLOTS 32

/* Extension headers the tc programs walk to find an IPv6 packet's TCP
 * header; a longer chain fails closed (AMB_R_DROP_MALFORMED). */
#define AMB_IPV6_MAX_EXT 4

/* Value of the per-CPU counter array amb_counters (key: enum amb_reason). */
struct amb_counter {
	__u64 packets;
	__u64 bytes;
};

/* Who enrolled a pod: the config file (reconciled) or an operator. */
#define AMB_POD_F_CONFIG 0x1
#define AMB_POD_F_MANUAL 0x2

/* amb_pods: key is the pod's IPv4 address (network order). */
struct amb_pod_key {
	__u32 addr;
};

struct amb_pod {
	__u32 ifindex; /* host-side veth in the node netns */
	__u32 flags;   /* AMB_POD_F_* */
};

/* amb_excl_net: LPM trie of destination CIDRs never captured. */
struct amb_lpm_key {
	__u32 prefixlen;
	__u32 addr; /* network order */
};

/* amb_excl_port: destination ports never captured, per direction. */
#define AMB_DIR_OUTBOUND 0 /* pod -> anywhere (pod's veth) */
#define AMB_DIR_INBOUND 1  /* anywhere -> pod (Istio's excludeInboundPorts) */

struct amb_excl_port_key {
	__u16 port;     /* host order */
	__u8 direction; /* AMB_DIR_* */
	__u8 pad;
};

/* amb_socks: live TCP sockets of enrolled pods, keyed by socket cookie. */
struct amb_sock_stat {
	__u32 saddr; /* local, network order */
	__u32 daddr; /* remote, network order */
	__u16 sport; /* host order */
	__u16 dport; /* host order */
	__u8 state;  /* TCP_* of the kernel */
	__u8 active; /* 1: the pod connected out; 0: accepted */
	__u16 pad;
	__u32 srtt_us;
	__u32 total_retrans;
	__u32 pad2;
	__u64 netns_cookie;
	__u64 opened_ns;
	__u64 updated_ns;
};

/* Ring buffer amb_sock_ev records. */
enum amb_sock_event_type {
	AMB_SE_OPEN = 1,    /* connection established (either side) */
	AMB_SE_STATE = 2,   /* TCP state change */
	AMB_SE_RETRANS = 3, /* a segment was retransmitted */
	AMB_SE_CLOSE = 4,   /* socket reached TCP_CLOSE */
};

struct amb_sock_event {
	__u64 cookie;
	__u64 ts_ns;
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
	__u8 type; /* enum amb_sock_event_type */
	__u8 old_state;
	__u8 new_state;
	__u8 pad;
	__u32 srtt_us;
	__u32 total_retrans;
};

/*
 * amb_pol: decisions for plaintext callers of enrolled pods, compiled by
 * the daemon from the policies (a plaintext caller has no identity, so its
 * verdict depends only on source address, pod address and port). LPM trie:
 * the first AMB_POL_FIXED_BITS bits (daddr, dport, pad) must match exactly,
 * then the longest source prefix wins. dport 0 holds the decision for every
 * port the policies do not name; the program looks up the real port first.
 * No entry: no policy concerns this caller (userspace still decides).
 */
struct amb_pol_key {
	__u32 prefixlen; /* AMB_POL_FIXED_BITS + source prefix length */
	__u32 daddr;	 /* pod, network order */
	__u16 dport;	 /* network order; 0: any port not listed */
	__u16 pad;	 /* always 0 */
	__u32 saddr;	 /* caller prefix, network order */
};
#define AMB_POL_FIXED_BITS 64

struct amb_pol_verdict {
	__u32 policy_id; /* slot in amb_pol_names / amb_pol_hits */
	__u8 deny;	 /* 1: refuse the SYN; 0: let it through */
	__u8 reason;	 /* userspace's enum authz_reason */
	__u16 pad;
};

/* amb_pol_names: what a policy_id stands for ("ns/name", or a reason). */
#define AMB_POL_NAME_LEN 128
struct amb_pol_name {
	char name[AMB_POL_NAME_LEN];
};

#define AMB_MAX_POL_ENTRIES 16384
#define AMB_MAX_POL_IDS 1024

#define AMB_MAX_PODS 4096
#define AMB_MAX_EXCL_NETS 256
#define AMB_MAX_EXCL_PORTS 256
#define AMB_MAX_SOCKS 65536
/* amb_sock_ev ring size, and the backlog that wakes the consumer at once
 * (below it, the daemon drains every AMB_SOCK_EV_DRAIN_MS). */
#define AMB_SOCK_EV_BYTES (256 * 1024)
#define AMB_SOCK_EV_WAKE_BYTES (AMB_SOCK_EV_BYTES / 4)
#define AMB_SOCK_EV_DRAIN_MS 100

#endif
