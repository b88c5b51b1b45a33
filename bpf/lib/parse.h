/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Header parsing into a stack tuple (never pointers into packet memory). */
#ifndef AMB_BPF_PARSE_H
#define AMB_BPF_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04
#define TCP_FLAG_ACK 0x10

enum pkt_kind {
	PKT_OTHER = 0, /* not IPv4 (ARP, IPv6, ...) */
	PKT_IPV4,      /* IPv4 but not (first-fragment) TCP */
	PKT_TCP,       /* IPv4 + TCP, tuple valid */
	PKT_MALFORMED, /* claims IPv4/TCP but headers are inconsistent */
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

/* Fills *p from the skb; returns enum pkt_kind. Honours IHL. */
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
		return PKT_OTHER;
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

static __always_inline int pkt_is_syn(const struct pkt *p)
{
	return (p->flags & (TCP_FLAG_SYN | TCP_FLAG_ACK | TCP_FLAG_RST)) ==
	       TCP_FLAG_SYN;
}

#endif
