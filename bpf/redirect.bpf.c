// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Capture for one node: two tc ingress programs.
 *
 * amb_tc_pod     - on the host-side veth of every enrolled pod (pod egress).
 * amb_tc_inbound - on every other interface of the node netns (uplink,
 *                  non-enrolled pods): traffic towards enrolled pods.
 *
 * Both hand TCP to the node's tunnel: new flows (SYN) are assigned to the
 * right listener with bpf_sk_assign; packets of flows that already have a
 * tunnel socket (full 4-tuple) are only marked for local delivery, where
 * the stack's early demux finds that socket itself (see deliver()). Nothing
 * carrying the tunnel's SO_MARK is ever captured. Both drop packets that
 * claim an enrolled pod's address without coming from that pod's veth: the
 * tunnel takes the source address as the caller's identity.
 * amb_tc_inbound also refuses plaintext SYNs that the compiled policy
 * (amb_pol) denies, so a denied caller never reaches a socket.
 *
 * IPv6 is not tunneled yet, so an enrolled pod's IPv6 TCP fails closed in
 * amb_tc_pod (see pod_ipv6()); amb_ipv6_passthrough lets it through.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "lib/maps.h"
#include "lib/parse.h"
#include "lib/verdict.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/*
 * Load-time setting (rodata, set by bpfctl_load_opts() before load; the
 * verifier prunes the branch it rules out): 1 lets enrolled pods' IPv6 TCP
 * bypass the mesh, counted as AMB_R_PASS_IPV6, instead of failing closed.
 */
const volatile __u8 amb_ipv6_passthrough = 0;

/*
 * IPv6 out of an enrolled pod. This program runs only on enrolled pods'
 * veths, so the packet is the pod's whatever its source (amb_pods, keyed
 * by IPv4 address, cannot say more). Non-TCP (neighbour discovery, ICMPv6,
 * UDP) passes like IPv4's; TCP fails closed: a SYN is refused with a RST
 * back to the pod, so connect() fails at once with "connection refused";
 * every other TCP segment, fragment that may be TCP and unparseable header
 * chain is dropped. Excluded ports pass (excluded_ports6()).
 *
 * Inbound needs no rule of its own: amb_tc_inbound cannot match an IPv6
 * destination against amb_pods, but whatever reaches an enrolled pod over
 * IPv6 gets its answer only through this program. A SYN from outside the
 * mesh makes the pod send a SYN-ACK, dropped here, so no handshake ever
 * completes and the pod never sends a byte. (The one way bytes can still
 * reach a pod's socket is a TCP Fast Open SYN it accepts without a fresh
 * cookie: one issued before enrollment, or a server configured to need
 * none. Nothing comes back even then.)
 */
static __always_inline int pod_ipv6(struct __sk_buff *skb)
{
	struct pkt6 p = {};
	int kind = parse_ipv6(skb, &p);

	if (kind == PKT_IPV6)
		return pass(skb, AMB_R_PASS_NON_TCP);
	if (amb_ipv6_passthrough)
		return pass(skb, AMB_R_PASS_IPV6);
	if (kind == PKT_MALFORMED)
		return drop(skb, AMB_R_DROP_MALFORMED);
	if (kind == PKT_FRAG6)
		return drop(skb, AMB_R_DROP_IPV6_FRAG);
	if (excluded_ports6(&p))
		return pass(skb, AMB_R_PASS_EXCLUDED);
	if (tcp_flags_syn(p.flags))
		return refuse_syn6(skb, &p);
	return drop(skb, AMB_R_DROP_IPV6);
}

SEC("tc")
int amb_tc_pod(struct __sk_buff *skb)
{
	struct amb_pod_key key = {};
	struct amb_pod *pod;
	struct bpf_sock *sk;
	struct pkt p = {};
	int kind = parse_pkt(skb, &p);

	if (kind == PKT_OTHER)
		return TC_ACT_OK;
	if (kind == PKT_IPV6)
		return pod_ipv6(skb);
	if (kind == PKT_MALFORMED)
		return drop(skb, AMB_R_DROP_MALFORMED);

	/* The source address is the pod's identity downstream: enforce it. */
	key.addr = p.saddr;
	pod = bpf_map_lookup_elem(&amb_pods, &key);
	if (!pod || pod->ifindex != skb->ifindex)
		return drop(skb, AMB_R_DROP_SPOOFED);

	if (kind != PKT_TCP)
		return pass(skb, AMB_R_PASS_NON_TCP);

	/* Established first: a reply of a tunnel connection is never
	 * excluded, whatever port the tunnel happened to pick. */
	sk = lookup_flow(skb, &p);
	if (sk)
		return deliver_flow(skb, sk);
	if (excluded_outbound(&p))
		return pass(skb, AMB_R_PASS_EXCLUDED);
	if (!pkt_is_syn(&p))
		return pass(skb, AMB_R_PASS_NO_SOCKET);

	sk = lookup_listener(skb, &p, AMB_PORT_OUTBOUND);
	if (!sk)
		return refuse_syn(skb, &p);
	return assign(skb, sk, AMB_R_ASSIGN_OUTBOUND);
}

SEC("tc")
int amb_tc_inbound(struct __sk_buff *skb)
{
	struct amb_pod_key key = {};
	struct bpf_sock *sk;
	struct pkt p = {};
	__u16 port;

	/* Hot path for all node traffic: bail out uncounted unless this is
	 * TCP towards one of our enrolled pods. */
	if ((skb->mark & AMB_MARK_MASK) == AMB_MARK_TUNNEL)
		return TC_ACT_OK;
	if (parse_pkt(skb, &p) != PKT_TCP)
		return TC_ACT_OK;
	key.addr = p.daddr;
	if (!bpf_map_lookup_elem(&amb_pods, &key))
		return TC_ACT_OK;
	/* This node's pods only ever send through their own veth (and the
	 * pod program): their address arriving here is forged. */
	key.addr = p.saddr;
	if (bpf_map_lookup_elem(&amb_pods, &key))
		return drop(skb, AMB_R_DROP_SPOOFED);

	sk = lookup_flow(skb, &p);
	if (sk)
		return deliver_flow(skb, sk);
	if (excluded_inbound(&p))
		return pass(skb, AMB_R_PASS_EXCLUDED);
	if (!pkt_is_syn(&p))
		return pass(skb, AMB_R_PASS_NO_SOCKET);

	port = p.dport == bpf_htons(AMB_PORT_HBONE) ? AMB_PORT_HBONE :
						      AMB_PORT_INBOUND;
	/* A plaintext caller has no identity: when the policy denies it
	 * by address and port alone, refuse before any socket exists. */
	if (port == AMB_PORT_INBOUND) {
		struct amb_pol_verdict *v = policy_lookup(&p);

		if (v && v->deny)
			return refuse_by_policy(skb, &p, v->policy_id);
	}
	sk = lookup_listener(skb, &p, port);
	if (!sk)
		return refuse_syn(skb, &p);
	return assign(skb, sk, port == AMB_PORT_HBONE ? AMB_R_ASSIGN_HBONE :
							 AMB_R_ASSIGN_INBOUND);
}
