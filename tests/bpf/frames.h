/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Synthetic Ethernet frames for the bpf suites (test_run input). The
 * includer defines POD_IP and REMOTE (default source and destination) and
 * the F_* TCP flag values before including this file.
 */
#ifndef AMBIENTD_FRAMES_H
#define AMBIENTD_FRAMES_H

#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t mac_pod[6] = {0x02, 0xaa, 0, 0, 0, 0x05};
static const uint8_t mac_node[6] = {0x02, 0xbb, 0, 0, 0, 0x01};

/* ---- packet building ---------------------------------------------------- */

static uint32_t sum16(uint32_t sum, const void *data, size_t len)
{
	const uint8_t *p = data;
	size_t i;

	for (i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)p[i] << 8 | p[i + 1];
	if (len & 1)
		sum += (uint32_t)p[len - 1] << 8;
	return sum;
}

static uint16_t fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

/* Sum of the IPv4 pseudo-header + segment: 0 when the checksum in it is right.
 */
static uint16_t l4_csum(const uint8_t *ip, const uint8_t *l4, size_t l4_len)
{
	uint8_t ph[4] = {0, ip[9], (uint8_t)(l4_len >> 8), (uint8_t)l4_len};
	uint32_t sum = sum16(0, ip + 12, 8);

	sum = sum16(sum, ph, sizeof(ph));
	return fold(sum16(sum, l4, l4_len));
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = v >> 8;
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, v >> 16);
	put16(p + 2, (uint16_t)v);
}

static inline uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t get32(const uint8_t *p)
{
	return (uint32_t)get16(p) << 16 | get16(p + 2);
}

static uint32_t ip4(const char *s)
{
	struct in_addr a;

	if (inet_pton(AF_INET, s, &a) != 1)
		abort();
	return a.s_addr;
}

enum frame_kind { FR_IPV4 = 0, FR_ARP, FR_IPV6 };

/* An IPv4 TCP/UDP frame; zero fields take the usual value. */
struct spec {
	enum frame_kind kind;
	uint8_t proto; /* IPPROTO_TCP unless set */
	const char *src, *dst;
	uint16_t sport, dport;
	uint8_t flags;
	uint32_t seq;
	uint8_t ihl;	   /* words; 0: 5 */
	uint8_t doff;	   /* words; 0: 5, or 6 with mss */
	bool mss;	   /* add an MSS option */
	uint8_t version;   /* 0: 4 */
	uint16_t frag_off; /* host order, flags + offset */
	uint16_t payload;  /* bytes after the L4 header */
	int tot_len;	   /* 0: computed */
	int cut;	   /* 0: whole frame; else the frame's length */
};

static size_t build_arp(uint8_t *f)
{
	uint8_t *a = f + ETH_HLEN;

	memset(f, 0xff, 6);
	memcpy(f + 6, mac_pod, 6);
	put16(f + 12, ETH_P_ARP);
	put16(a, 1); /* Ethernet */
	put16(a + 2, ETH_P_IP);
	a[4] = 6;
	a[5] = 4;
	put16(a + 6, 1); /* request */
	memcpy(a + 8, mac_pod, 6);
	*(uint32_t *)(a + 14) = ip4(POD_IP);
	memset(a + 18, 0, 6);
	*(uint32_t *)(a + 24) = ip4(REMOTE);
	return ETH_HLEN + 28;
}

static size_t build_ipv6(uint8_t *f)
{
	uint8_t *ip = f + ETH_HLEN, *th = ip + 40;
	uint8_t ph[40] = {0};
	uint32_t sum;

	memcpy(f, mac_node, 6);
	memcpy(f + 6, mac_pod, 6);
	put16(f + 12, ETH_P_IPV6);
	memset(ip, 0, 40 + 20);
	ip[0] = 0x60;
	put16(ip + 4, 20);
	ip[6] = IPPROTO_TCP;
	ip[7] = 64;
	inet_pton(AF_INET6, "fd00::5", ip + 8);
	inet_pton(AF_INET6, "fd00:1::3", ip + 24);
	put16(th, 40000);
	put16(th + 2, 80);
	put32(th + 4, 1000);
	th[12] = 5 << 4;
	th[13] = F_SYN;
	put16(th + 14, 65535);
	memcpy(ph, ip + 8, 32);
	put32(ph + 32, 20);
	ph[39] = IPPROTO_TCP;
	sum = sum16(sum16(0, ph, sizeof(ph)), th, 20);
	put16(th + 16, fold(sum));
	return ETH_HLEN + 40 + 20;
}

static size_t build(uint8_t *f, const struct spec *s)
{
	uint8_t proto = s->proto ? s->proto : IPPROTO_TCP;
	size_t ihl = (s->ihl ? s->ihl : 5) * 4;
	size_t doff, l4_len, tot;
	uint8_t *ip = f + ETH_HLEN, *l4;
	size_t i;

	if (s->kind == FR_ARP)
		return build_arp(f);
	if (s->kind == FR_IPV6)
		return build_ipv6(f);

	if (proto == IPPROTO_TCP)
		doff = (s->doff ? s->doff : (s->mss ? 6 : 5)) * 4;
	else
		doff = 8;
	/* A non-first fragment carries no L4 header: just its payload. */
	if (s->frag_off & 0x1fff)
		doff = 0;
	l4_len = doff + s->payload;
	tot = ihl + l4_len;

	memcpy(f, mac_node, 6);
	memcpy(f + 6, mac_pod, 6);
	put16(f + 12, ETH_P_IP);
	memset(ip, 0, tot);
	ip[0] = (uint8_t)((s->version ? s->version : 4) << 4 | ihl / 4);
	put16(ip + 2, (uint16_t)(s->tot_len ? s->tot_len : (int)tot));
	put16(ip + 4, 0x1234);
	put16(ip + 6, s->frag_off);
	ip[8] = 64;
	ip[9] = proto;
	*(uint32_t *)(ip + 12) = ip4(s->src ? s->src : POD_IP);
	*(uint32_t *)(ip + 16) = ip4(s->dst ? s->dst : REMOTE);
	/* Options: NOPs ending in EOL. Read as ports they would say 257/256. */
	for (i = 20; i < ihl; i++)
		ip[i] = i + 1 < ihl ? 1 : 0;
	put16(ip + 10, fold(sum16(0, ip, ihl)));

	l4 = ip + ihl;
	for (i = doff; i < l4_len; i++)
		l4[i] = (uint8_t)('a' + i % 26);
	if (doff && proto == IPPROTO_TCP) {
		put16(l4, s->sport);
		put16(l4 + 2, s->dport);
		put32(l4 + 4, s->seq);
		put32(l4 + 8, s->flags & F_ACK ? 777 : 0);
		l4[12] = (uint8_t)(doff / 4 << 4);
		l4[13] = s->flags;
		put16(l4 + 14, 64240);
		if (s->mss && doff >= 24) {
			l4[20] = 2; /* MSS */
			l4[21] = 4;
			put16(l4 + 22, 1460);
		}
		put16(l4 + 16, l4_csum(ip, l4, l4_len));
	} else if (doff) {
		put16(l4, s->sport);
		put16(l4 + 2, s->dport);
		put16(l4 + 4, (uint16_t)l4_len);
		put16(l4 + 6, l4_csum(ip, l4, l4_len));
	}
	return s->cut ? (size_t)s->cut : ETH_HLEN + tot;
}

#endif
