/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Counting verdicts, socket assignment and fail-closed refusal. */
#ifndef AMB_BPF_VERDICT_H
#define AMB_BPF_VERDICT_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_packet.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include "maps.h"
#include "parse.h"

#define TCP_STATE_ESTABLISHED 1
#define TCP_STATE_TIME_WAIT 6
#define TCP_STATE_LISTEN 10

static __always_inline void count(struct __sk_buff *skb, __u32 reason)
{
	struct amb_counter *c = bpf_map_lookup_elem(&amb_counters, &reason);

	if (c) {
		c->packets++;
		c->bytes += skb->len;
	}
}

static __always_inline int pass(struct __sk_buff *skb, __u32 reason)
{
	count(skb, reason);
	return TC_ACT_OK;
}

static __always_inline int drop(struct __sk_buff *skb, __u32 reason)
{
	count(skb, reason);
	return TC_ACT_SHOT;
}

/* Pod egress to an excluded destination port or CIDR? */
static __always_inline int excluded_outbound(const struct pkt *p)
{
	struct amb_lpm_key k = { .prefixlen = 32, .addr = p->daddr };
	struct amb_excl_port_key pk = { .port = bpf_ntohs(p->dport),
					.direction = AMB_DIR_OUTBOUND };

	return bpf_map_lookup_elem(&amb_excl_port, &pk) ||
	       bpf_map_lookup_elem(&amb_excl_net, &k);
}

/* Traffic towards a pod on an excluded inbound port? */
static __always_inline int excluded_inbound(const struct pkt *p)
{
	struct amb_excl_port_key pk = { .port = bpf_ntohs(p->dport),
					.direction = AMB_DIR_INBOUND };

	return bpf_map_lookup_elem(&amb_excl_port, &pk) != NULL;
}

/*
 * An enrolled pod's IPv6 TCP on an excluded port: its connections to an
 * excluded destination port, and its answers (never a SYN) from a port
 * excluded inbound. Exclusions mean "never captured" in either family.
 */
static __always_inline int excluded_ports6(const struct pkt6 *p)
{
	struct amb_excl_port_key pk = { .port = bpf_ntohs(p->dport),
					.direction = AMB_DIR_OUTBOUND };

	if (bpf_map_lookup_elem(&amb_excl_port, &pk))
		return 1;
	if (tcp_flags_syn(p->flags))
		return 0;
	pk.port = bpf_ntohs(p->sport);
	pk.direction = AMB_DIR_INBOUND;
	return bpf_map_lookup_elem(&amb_excl_port, &pk) != NULL;
}

/*
 * Assign the packet to sk and make routing deliver it locally: the mark
 * selects the node's `local 0.0.0.0/0` table (installed by the daemon), and
 * PACKET_HOST keeps the stack from treating it as someone else's frame.
 * Consumes the socket reference.
 */
static __always_inline int assign(struct __sk_buff *skb, struct bpf_sock *sk,
				  __u32 reason)
{
	long err = bpf_sk_assign(skb, sk, 0);

	bpf_sk_release(sk);
	if (err)
		return drop(skb, AMB_R_DROP_ASSIGN_FAILED);
	skb->mark = AMB_MARK_DELIVER;
	if (skb->pkt_type != PACKET_HOST)
		bpf_skb_change_type(skb, PACKET_HOST);
	return pass(skb, reason);
}

/*
 * Deliver a packet of an established tunnel flow without assigning it: the
 * mark makes routing deliver it locally, and the stack's own early demux
 * finds the socket by the same 4-tuple and takes the input route that
 * socket cached, so the packet skips the policy-routing lookup that an
 * assigned skb (early demux skipped) would pay every time.
 */
static __always_inline int deliver(struct __sk_buff *skb, struct bpf_sock *sk,
				   __u32 reason)
{
	bpf_sk_release(sk);
	skb->mark = AMB_MARK_DELIVER;
	if (skb->pkt_type != PACKET_HOST)
		bpf_skb_change_type(skb, PACKET_HOST);
	return pass(skb, reason);
}

/*
 * Established-socket lookup on the full 4-tuple as the node sees the packet.
 * Returns a referenced socket, or NULL when there is none or it is a
 * listener (which must not swallow a new flow's packets). Request sockets
 * (NEW_SYN_RECV) are returned: the handshake-completing ACK has to reach
 * them.
 *
 * TIME_WAIT sockets are returned too (callers tell them apart with
 * is_time_wait()). The tunnel's side of a connection the server closed first
 * stays in TIME_WAIT for 60 s under the pod's 4-tuple. When the pod reuses
 * that source port for the same destination, its SYN must go to the
 * TIME_WAIT socket, not the listener. Assigned to the listener, the new
 * request socket collides with the TIME_WAIT one in the established hash and
 * the kernel drops the SYN silently, again on every retransmission, for 60
 * s. Delivered instead, the stack does what it does without us: the
 * TIME_WAIT socket answers with an ACK, the pod resets it (RFC 793: a SYN-SENT
 * socket resets an unacceptable ACK), and that RST removes the TIME_WAIT
 * socket (RFC 1337 assassination, the kernel default). The pod's next SYN,
 * a retransmission one RTO later, finds the listener.
 */
static __always_inline struct bpf_sock *lookup_flow(struct __sk_buff *skb,
						     const struct pkt *p)
{
	struct bpf_sock_tuple t = {};
	struct bpf_sock *sk;

	t.ipv4.saddr = p->saddr;
	t.ipv4.daddr = p->daddr;
	t.ipv4.sport = p->sport;
	t.ipv4.dport = p->dport;
	sk = bpf_skc_lookup_tcp(skb, &t, sizeof(t.ipv4), BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return NULL;
	if (sk->state == TCP_STATE_LISTEN) {
		bpf_sk_release(sk);
		return NULL;
	}
	return sk;
}

/* The flow's socket is a TIME_WAIT one (see lookup_flow()). */
static __always_inline int is_time_wait(const struct bpf_sock *sk)
{
	return sk->state == TCP_STATE_TIME_WAIT;
}

/* Deliver to the flow's socket, counting TIME_WAIT deliveries apart. */
static __always_inline int deliver_flow(struct __sk_buff *skb, struct bpf_sock *sk)
{
	__u32 reason = is_time_wait(sk) ? AMB_R_DELIVER_TIME_WAIT :
					  AMB_R_ASSIGN_ESTABLISHED;

	return deliver(skb, sk, reason);
}

/* The tunnel's listener on `port` (bound to the wildcard address), or NULL. */
static __always_inline struct bpf_sock *
lookup_listener(struct __sk_buff *skb, const struct pkt *p, __u16 port)
{
	struct bpf_sock_tuple t = {};
	struct bpf_sock *sk;

	t.ipv4.saddr = p->saddr;
	t.ipv4.daddr = p->daddr;
	t.ipv4.sport = p->sport;
	t.ipv4.dport = bpf_htons(port);
	sk = bpf_skc_lookup_tcp(skb, &t, sizeof(t.ipv4), BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return NULL;
	if (sk->state != TCP_STATE_LISTEN) {
		bpf_sk_release(sk);
		return NULL;
	}
	return sk;
}

/* Swap the Ethernet addresses: the frame goes back where it came from. */
static __always_inline int swap_macs(struct __sk_buff *skb)
{
	__u8 mac[12], swapped[12];

	if (bpf_skb_load_bytes(skb, 0, mac, sizeof(mac)) < 0)
		return -1;
	__builtin_memcpy(swapped, mac + 6, 6);
	__builtin_memcpy(swapped + 6, mac, 6);
	if (bpf_skb_store_bytes(skb, 0, swapped, sizeof(swapped), 0) < 0)
		return -1;
	return 0;
}

/*
 * Turn the TCP header at l4_off, a SYN with sequence number seq, into the
 * RST|ACK that refuses it: seq 0, ack seq+1, flags RST|ACK, doff and
 * options kept (receivers accept options on a RST). Each field is patched
 * with an incremental update of the TCP checksum; none of them is in the
 * pseudo-header, so this is the same for IPv4 and IPv6. 0 or -1.
 */
static __always_inline int tcp_syn_to_rst(struct __sk_buff *skb, __u32 l4_off,
					  __u32 seq)
{
	__u32 old_seq, new_seq = 0, old_ack, new_ack;
	__u16 old_word, new_word;
	__u32 csum_off = l4_off + offsetof(struct tcphdr, check);

	old_seq = bpf_htonl(seq);
	if (bpf_skb_load_bytes(skb, l4_off + offsetof(struct tcphdr, ack_seq),
			       &old_ack, 4) < 0)
		return -1;
	new_ack = bpf_htonl(seq + 1);
	if (bpf_skb_load_bytes(skb, l4_off + 12, &old_word, 2) < 0)
		return -1;
	/* Keep doff (high nibble of byte 12), set flags byte to RST|ACK. */
	new_word = old_word;
	((__u8 *)&new_word)[1] = TCP_FLAG_RST | TCP_FLAG_ACK;

	if (bpf_skb_store_bytes(skb, l4_off + offsetof(struct tcphdr, seq),
				&new_seq, 4, 0) < 0 ||
	    bpf_l4_csum_replace(skb, csum_off, old_seq, new_seq, 4) < 0 ||
	    bpf_skb_store_bytes(skb, l4_off + offsetof(struct tcphdr, ack_seq),
				&new_ack, 4, 0) < 0 ||
	    bpf_l4_csum_replace(skb, csum_off, old_ack, new_ack, 4) < 0 ||
	    bpf_skb_store_bytes(skb, l4_off + 12, &new_word, 2, 0) < 0 ||
	    bpf_l4_csum_replace(skb, csum_off, old_word, new_word, 2) < 0)
		return -1;
	return 0;
}

/*
 * Fail closed with a real refusal: turn the SYN into a RST|ACK for it and
 * send it back out of the interface it came in on, so the caller sees
 * "connection refused" at once instead of a silent timeout. Addresses and
 * ports are swapped (sum-neutral for both checksums); seq, ack and flags
 * are patched by tcp_syn_to_rst().
 */
static __always_inline int refuse_syn_as(struct __sk_buff *skb,
					 const struct pkt *p, __u32 refused,
					 __u32 dropped)
{
	__u32 ip_off = sizeof(struct ethhdr);

	/* A SYN carrying data (TFO) would need its payload cut and the IP
	 * header rewritten; such callers get a silent drop instead. */
	if (p->payload_len)
		goto fail;
	if (swap_macs(skb) < 0)
		goto fail;
	if (bpf_skb_store_bytes(skb, ip_off + offsetof(struct iphdr, saddr),
				&p->daddr, 4, 0) < 0 ||
	    bpf_skb_store_bytes(skb, ip_off + offsetof(struct iphdr, daddr),
				&p->saddr, 4, 0) < 0 ||
	    bpf_skb_store_bytes(skb, p->l4_off + offsetof(struct tcphdr, source),
				&p->dport, 2, 0) < 0 ||
	    bpf_skb_store_bytes(skb, p->l4_off + offsetof(struct tcphdr, dest),
				&p->sport, 2, 0) < 0)
		goto fail;
	if (tcp_syn_to_rst(skb, p->l4_off, p->seq) < 0)
		goto fail;
	count(skb, refused);
	return bpf_redirect(skb->ifindex, 0);
fail:
	return drop(skb, dropped);
}

/*
 * refuse_syn_as() for IPv6: the two 16-byte addresses swapped in place
 * (the pseudo-header sum is the same either way), extension headers kept
 * as they are (hop-by-hop and destination options mean the same on the way
 * back). A SYN with data or behind a routing header (its path would have
 * to be reversed too) is dropped instead: connect() sends neither.
 */
static __always_inline int refuse_syn6(struct __sk_buff *skb,
				       const struct pkt6 *p)
{
	__u32 addr_off = sizeof(struct ethhdr) + offsetof(struct ipv6hdr, saddr);
	__u8 addrs[32], swapped[32];

	if (p->payload_len || p->routed)
		goto fail;
	if (swap_macs(skb) < 0 ||
	    bpf_skb_load_bytes(skb, addr_off, addrs, sizeof(addrs)) < 0)
		goto fail;
	__builtin_memcpy(swapped, addrs + 16, 16);
	__builtin_memcpy(swapped + 16, addrs, 16);
	if (bpf_skb_store_bytes(skb, addr_off, swapped, 32, 0) < 0 ||
	    bpf_skb_store_bytes(skb, p->l4_off + offsetof(struct tcphdr, source),
				&p->dport, 2, 0) < 0 ||
	    bpf_skb_store_bytes(skb, p->l4_off + offsetof(struct tcphdr, dest),
				&p->sport, 2, 0) < 0)
		goto fail;
	if (tcp_syn_to_rst(skb, p->l4_off, p->seq) < 0)
		goto fail;
	count(skb, AMB_R_REFUSED_IPV6);
	return bpf_redirect(skb->ifindex, 0);
fail:
	return drop(skb, AMB_R_DROP_IPV6);
}

static __always_inline int refuse_syn(struct __sk_buff *skb, const struct pkt *p)
{
	return refuse_syn_as(skb, p, AMB_R_REFUSED_NO_LISTENER,
			     AMB_R_DROP_NO_LISTENER);
}

/*
 * The compiled policy decision for a plaintext SYN (see struct amb_pol_key):
 * the entry for the exact port, else the one for "any other port", else
 * NULL (no policy concerns this caller).
 */
static __always_inline struct amb_pol_verdict *
policy_lookup(const struct pkt *p)
{
	struct amb_pol_key k = { .prefixlen = AMB_POL_FIXED_BITS + 32,
				 .daddr = p->daddr,
				 .dport = p->dport,
				 .saddr = p->saddr };
	struct amb_pol_verdict *v = bpf_map_lookup_elem(&amb_pol, &k);

	if (v)
		return v;
	k.dport = 0;
	return bpf_map_lookup_elem(&amb_pol, &k);
}

/* Refuse a SYN the policy denies, counting it for its policy too. */
static __always_inline int refuse_by_policy(struct __sk_buff *skb,
					    const struct pkt *p, __u32 id)
{
	struct amb_counter *c = bpf_map_lookup_elem(&amb_pol_hits, &id);

	if (c) {
		c->packets++;
		c->bytes += skb->len;
	}
	return refuse_syn_as(skb, p, AMB_R_REFUSED_POLICY, AMB_R_DROP_POLICY);
}

#endif
