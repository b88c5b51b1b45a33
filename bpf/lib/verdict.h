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
 * listener or TIME_WAIT (those must not swallow a new flow's packets).
 * Request sockets (NEW_SYN_RECV) are returned: the handshake-completing ACK
 * has to reach them.
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
	if (sk->state == TCP_STATE_LISTEN || sk->state == TCP_STATE_TIME_WAIT) {
		bpf_sk_release(sk);
		return NULL;
	}
	return sk;
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

/*
 * Fail closed with a real refusal: turn the SYN into a RST|ACK for it and
 * send it back out of the interface it came in on, so the caller sees
 * "connection refused" at once instead of a silent timeout. Addresses and
 * ports are swapped (sum-neutral for both checksums); seq, ack and flags
 * are patched with incremental checksum updates. Options stay as they are,
 * which receivers accept on a RST.
 */
static __always_inline int refuse_syn_as(struct __sk_buff *skb,
					 const struct pkt *p, __u32 refused,
					 __u32 dropped)
{
	__u8 mac[12], swapped[12];
	__u32 old_seq, new_seq = 0, old_ack, new_ack;
	__u16 old_word, new_word;
	__u32 csum_off = p->l4_off + offsetof(struct tcphdr, check);
	__u32 ip_off = sizeof(struct ethhdr);

	/* A SYN carrying data (TFO) would need its payload cut and the IP
	 * header rewritten; such callers get a silent drop instead. */
	if (p->payload_len)
		goto fail;
	if (bpf_skb_load_bytes(skb, 0, mac, sizeof(mac)) < 0)
		goto fail;
	__builtin_memcpy(swapped, mac + 6, 6);
	__builtin_memcpy(swapped + 6, mac, 6);
	if (bpf_skb_store_bytes(skb, 0, swapped, sizeof(swapped), 0) < 0)
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

	old_seq = bpf_htonl(p->seq);
	if (bpf_skb_load_bytes(skb, p->l4_off + offsetof(struct tcphdr, ack_seq),
			       &old_ack, 4) < 0)
		goto fail;
	new_ack = bpf_htonl(p->seq + 1);
	if (bpf_skb_load_bytes(skb, p->l4_off + 12, &old_word, 2) < 0)
		goto fail;
	/* Keep doff (high nibble of byte 12), set flags byte to RST|ACK. */
	new_word = old_word;
	((__u8 *)&new_word)[1] = TCP_FLAG_RST | TCP_FLAG_ACK;

	if (bpf_skb_store_bytes(skb, p->l4_off + offsetof(struct tcphdr, seq),
				&new_seq, 4, 0) < 0 ||
	    bpf_l4_csum_replace(skb, csum_off, old_seq, new_seq, 4) < 0 ||
	    bpf_skb_store_bytes(skb, p->l4_off + offsetof(struct tcphdr, ack_seq),
				&new_ack, 4, 0) < 0 ||
	    bpf_l4_csum_replace(skb, csum_off, old_ack, new_ack, 4) < 0 ||
	    bpf_skb_store_bytes(skb, p->l4_off + 12, &new_word, 2, 0) < 0 ||
	    bpf_l4_csum_replace(skb, csum_off, old_word, new_word, 2) < 0)
		goto fail;
	count(skb, refused);
	return bpf_redirect(skb->ifindex, 0);
fail:
	return drop(skb, dropped);
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
