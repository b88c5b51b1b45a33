/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Header parsing into a stack tuple (never pointers into packet memory). */
#ifndef AMB_BPF_PARSE_H
#define AMB_BPF_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04
#define TCP_FLAG_ACK 0x10

enum pkt_kind {
	PKT_OTHER = 0, /* neither IPv4 nor IPv6 (ARP, ...) */
	PKT_IPV4,      /* IPv4 but not (first-fragment) TCP */
	PKT_TCP,       /* IPv4 + TCP, tuple valid */
	PKT_MALFORMED, /* claims IPv4/IPv6/TCP but headers are inconsistent */
	PKT_IPV6,      /* parse_pkt: IPv6, not looked into (see parse_ipv6);
			* parse_ipv6: IPv6 that carries no TCP */
	PKT_TCP6,      /* parse_ipv6: IPv6 + TCP, struct pkt6 valid */
	PKT_FRAG6,     /* parse_ipv6: an IPv6 fragment that may be TCP */
};

struct pkt {
	__u32 saddr; /* network order */
	__u32 daddr;
	__u16 sport; /* network order */
	__u16 dport;
	__u32 seq;   /* host order */
	__u32 l4_off;
	__u16 payload_len;
	__u8 flags; /* TCP flags byte (FIN..CWR) */
	__u8 doff;  /* TCP header length in bytes */
};

/*
 * Fills *p from the skb; returns enum pkt_kind. Honours IHL. IPv6 frames
 * only get PKT_IPV6: the extension-header walk (parse_ipv6) is for the
 * callers that need it, not for every packet of the node.
 */
static __always_inline int parse_pkt(struct __sk_buff *skb, struct pkt *p)
{
	struct iphdr ip;
	struct tcphdr th;
	__u16 proto = 0;
	__u32 ihl;

	if (bpf_skb_load_bytes(skb, offsetof(struct ethhdr, h_proto), &proto,
			       sizeof(proto)) < 0)
		return PKT_OTHER;
	if (proto != bpf_htons(ETH_P_IP))
		return proto == bpf_htons(ETH_P_IPV6) ? PKT_IPV6 : PKT_OTHER;
	if (bpf_skb_load_bytes(skb, sizeof(struct ethhdr), &ip, sizeof(ip)) < 0)
		return PKT_MALFORMED;
	ihl = ip.ihl * 4;
	if (ip.version != 4 || ihl < sizeof(ip) ||
	    bpf_ntohs(ip.tot_len) < ihl)
		return PKT_MALFORMED;
	p->saddr = ip.saddr;
	p->daddr = ip.daddr;
	/* Non-first fragments carry no TCP header: not ours to parse. */
	if (ip.protocol != IPPROTO_TCP || (ip.frag_off & bpf_htons(0x1fff)))
		return PKT_IPV4;
	p->l4_off = sizeof(struct ethhdr) + ihl;
	if (bpf_skb_load_bytes(skb, p->l4_off, &th, sizeof(th)) < 0)
		return PKT_MALFORMED;
	p->doff = th.doff * 4;
	if (p->doff < sizeof(th) || bpf_ntohs(ip.tot_len) < ihl + p->doff)
		return PKT_MALFORMED;
	p->payload_len = bpf_ntohs(ip.tot_len) - ihl - p->doff;
	p->sport = th.source;
	p->dport = th.dest;
	p->seq = bpf_ntohl(th.seq);
	/* The flags byte follows doff/res1 at offset 13. */
	p->flags = ((__u8 *)&th)[13];
	return PKT_TCP;
}

/* A connection's first segment: SYN without ACK or RST. */
static __always_inline int tcp_flags_syn(__u8 flags)
{
	return (flags & (TCP_FLAG_SYN | TCP_FLAG_ACK | TCP_FLAG_RST)) ==
	       TCP_FLAG_SYN;
}

static __always_inline int pkt_is_syn(const struct pkt *p)
{
	return tcp_flags_syn(p->flags);
}

/*
 * An IPv6 packet's TCP header, found behind at most AMB_IPV6_MAX_EXT
 * extension headers. The addresses stay in the packet (nothing needs them
 * on the stack yet: IPv6 is refused, not tunneled).
 */
struct pkt6 {
	__u16 sport; /* network order */
	__u16 dport;
	__u32 seq;   /* host order */
	__u32 l4_off;
	__u16 payload_len; /* TCP payload bytes */
	__u8 flags;	   /* TCP flags byte (FIN..CWR) */
	__u8 doff;	   /* TCP header length in bytes */
	__u8 n_ext;	   /* extension headers before the TCP header */
	__u8 routed;	   /* one of them is a routing header */
	__u16 pad;
};

/*
 * Next-header values that are IPv6 extension headers, i.e. may have TCP
 * behind them: RFC 8200's list plus those registered since (RFC 7045).
 * ESP (50) is not among them: what it carries is encrypted, so like IPv4's
 * ESP, IP-in-IP or GRE it can only bypass the mesh between two pods that
 * both set it up.
 */
static __always_inline int ipv6_ext_hdr(__u8 nh)
{
	switch (nh) {
	case IPPROTO_HOPOPTS:
	case IPPROTO_ROUTING:
	case IPPROTO_FRAGMENT:
	case IPPROTO_DSTOPTS:
	case IPPROTO_AH:
	case IPPROTO_MH:
	case 139: /* HIP */
	case 140: /* Shim6 */
	case 253: /* experiments (RFC 3692) */
	case 254:
		return 1;
	}
	return 0;
}

/*
 * Walks an IPv6 packet's extension headers to its upper-layer header;
 * fills *p (zeroed by the caller) and returns PKT_TCP6, PKT_IPV6 (no TCP),
 * PKT_FRAG6 or PKT_MALFORMED (truncated, inconsistent, or a chain longer
 * than AMB_IPV6_MAX_EXT: whatever the walk cannot see through must not be
 * taken for "not TCP").
 *
 * A fragment header names the first header of the fragmented part, in
 * every fragment alike, and the receiver's reassembly takes the first
 * fragment's: so a fragment that names a non-TCP upper layer can never
 * become TCP and is PKT_IPV6; one that names TCP or another extension
 * header (which the walk cannot follow into a later fragment) is PKT_FRAG6.
 */
static __always_inline int parse_ipv6(struct __sk_buff *skb, struct pkt6 *p)
{
	__u32 off = sizeof(struct ethhdr) + sizeof(struct ipv6hdr), end;
	struct ipv6hdr ip6;
	struct tcphdr th;
	__u8 nh, h[2];
	int i;

	if (bpf_skb_load_bytes(skb, sizeof(struct ethhdr), &ip6,
			       sizeof(ip6)) < 0 ||
	    ip6.version != 6)
		return PKT_MALFORMED;
	/* payload_len 0: a jumbogram or a BIG TCP (GSO) skb; the skb's own
	 * length is the packet's then. */
	end = ip6.payload_len ? off + bpf_ntohs(ip6.payload_len) : skb->len;
	nh = ip6.nexthdr;
	/* A fixed, small number of steps, unrolled: the verifier sees
	 * straight-line code with a bounded offset. */
#pragma unroll
	for (i = 0; i < AMB_IPV6_MAX_EXT; i++) {
		if (!ipv6_ext_hdr(nh))
			break;
		/* Every extension header starts with next header + length. */
		if (bpf_skb_load_bytes(skb, off, h, sizeof(h)) < 0)
			return PKT_MALFORMED;
		if (nh == IPPROTO_FRAGMENT)
			return h[0] == IPPROTO_TCP || ipv6_ext_hdr(h[0]) ?
				       PKT_FRAG6 :
				       PKT_IPV6;
		if (nh == IPPROTO_ROUTING)
			p->routed = 1;
		/* AH counts its length in 4-octet units, the others in 8. */
		off += nh == IPPROTO_AH ? (h[1] + 2) * 4 : (h[1] + 1) * 8;
		p->n_ext++;
		nh = h[0];
	}
	if (ipv6_ext_hdr(nh))
		return PKT_MALFORMED;
	if (nh != IPPROTO_TCP)
		return PKT_IPV6;
	p->l4_off = off;
	if (off + sizeof(th) > end ||
	    bpf_skb_load_bytes(skb, off, &th, sizeof(th)) < 0)
		return PKT_MALFORMED;
	p->doff = th.doff * 4;
	if (p->doff < sizeof(th) || off + p->doff > end)
		return PKT_MALFORMED;
	p->payload_len = end - off - p->doff;
	p->sport = th.source;
	p->dport = th.dest;
	p->seq = bpf_ntohl(th.seq);
	p->flags = ((__u8 *)&th)[13];
	return PKT_TCP6;
}

#endif
