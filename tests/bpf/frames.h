/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Synthetic Ethernet frames for the bpf suites (test_run input). The
 * includer defines POD_IP and REMOTE (default source and destination) and
 * the F_* TCP flag values before including this file; POD6_IP and
 * REMOTE6_IP (IPv6 defaults) may be defined too.
 *
 * Frames are byte arrays with no alignment: every multi-byte field is
 * written with put16/put32/memcpy, never through a cast pointer (UBSan
 * reports misaligned stores).
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

#ifndef POD6_IP
#define POD6_IP "2001:2:0:9::5"
#endif
#ifndef REMOTE6_IP
#define REMOTE6_IP "2001:2:0:2::3"
#endif

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

/* The same over the IPv6 pseudo-header (RFC 8200 8.1): addresses from
 * the IPv6 header at ip, upper-layer length and next header `proto`. */
static uint16_t l4_csum6(const uint8_t *ip, const uint8_t *l4, size_t l4_len,
			 uint8_t proto)
{
	/* Upper-layer length (32 bits; frames here stay below 64 KiB). */
	uint8_t ph[8] = {0, 0, (uint8_t)(l4_len >> 8), (uint8_t)l4_len,
			 0, 0, 0, proto};
	uint32_t sum = sum16(0, ip + 8, 32);

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

/* An IPv4 address (network order, as ip4() returns it) into a frame. */
static void put_ip4(uint8_t *p, uint32_t addr)
{
	memcpy(p, &addr, sizeof(addr));
}

static void put_ip6(uint8_t *p, const char *s)
{
	if (inet_pton(AF_INET6, s, p) != 1)
		abort();
}

enum frame_kind { FR_IPV4 = 0, FR_ARP, FR_IPV6 };

/*
 * An IPv4 or IPv6 TCP/UDP (ICMPv6) frame; zero fields take the usual
 * value. For FR_IPV6: src6/dst6, ext[] (extension headers, in order),
 * version (0: 6), frag_off (the fragment header's offset+M field, when
 * ext[] has one) and tot_len (the payload_len field) apply.
 */
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
	const char *src6, *dst6; /* FR_IPV6: 0: POD6_IP, REMOTE6_IP */
	uint8_t n_ext;		 /* FR_IPV6: extension headers in ext[] */
	uint8_t ext[8];		 /* their types (IPPROTO_HOPOPTS, ...) */
};

/*
 * Bytes extension header `type` takes in build_ipv6() frames. Sizes differ
 * per type so that a walk using the wrong length unit ends up off the TCP
 * header: destination options 16 (length field 1, 8-octet units), AH 16
 * (length field 2, 4-octet units minus 2), the others 8 (length field 0).
 */
static size_t ext6_len(uint8_t type)
{
	return type == IPPROTO_DSTOPTS || type == IPPROTO_AH ? 16 : 8;
}

/* Offset of the upper-layer header from the start of the IPv6 header. */
static size_t l4_off6(const struct spec *s)
{
	size_t off = 40;

	for (size_t i = 0; i < s->n_ext; i++)
		off += ext6_len(s->ext[i]);
	return off;
}

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
	put_ip4(a + 14, ip4(POD_IP));
	memset(a + 18, 0, 6);
	put_ip4(a + 24, ip4(REMOTE));
	return ETH_HLEN + 28;
}

/* Fills the TCP header (and its MSS option) of an IPv4 or IPv6 frame. */
static void put_tcp(uint8_t *l4, size_t doff, const struct spec *s)
{
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
}

static size_t build_ipv6(uint8_t *f, const struct spec *s)
{
	uint8_t proto = s->proto ? s->proto : IPPROTO_TCP;
	uint8_t *ip = f + ETH_HLEN, *h = ip + 40, *l4;
	size_t ext = l4_off6(s) - 40, doff, l4_len, i;

	if (proto == IPPROTO_TCP)
		doff = (s->doff ? s->doff : (s->mss ? 6 : 5)) * 4;
	else if (proto == IPPROTO_UDP || proto == IPPROTO_ICMPV6)
		doff = 8;
	else
		doff = 0;
	/* A non-first fragment carries no upper-layer header. */
	if (s->frag_off & 0xfff8)
		doff = 0;
	l4_len = doff + s->payload;

	memcpy(f, mac_node, 6);
	memcpy(f + 6, mac_pod, 6);
	put16(f + 12, ETH_P_IPV6);
	memset(ip, 0, 40 + ext + l4_len);
	ip[0] = (uint8_t)((s->version ? s->version : 6) << 4);
	put16(ip + 4, (uint16_t)(s->tot_len ? s->tot_len : (int)(ext + l4_len)));
	ip[6] = s->n_ext ? s->ext[0] : proto;
	ip[7] = 64;
	put_ip6(ip + 8, s->src6 ? s->src6 : POD6_IP);
	put_ip6(ip + 24, s->dst6 ? s->dst6 : REMOTE6_IP);
	for (i = 0; i < s->n_ext; i++) {
		uint8_t type = s->ext[i];
		size_t len = ext6_len(type);

		h[0] = i + 1 < s->n_ext ? s->ext[i + 1] : proto;
		if (type == IPPROTO_FRAGMENT) {
			put16(h + 2, s->frag_off);
			put32(h + 4, 0x1234); /* identification */
		} else if (type == IPPROTO_AH) {
			h[1] = (uint8_t)(len / 4 - 2);
			put32(h + 4, 0x100); /* SPI */
		} else {
			h[1] = (uint8_t)(len / 8 - 1);
			if (type != IPPROTO_ROUTING) {
				h[2] = 1; /* PadN over the rest */
				h[3] = (uint8_t)(len - 4);
			} /* else routing type 0, segments left 0 */
		}
		h += len;
	}
	l4 = h;
	for (i = doff; i < l4_len; i++)
		l4[i] = (uint8_t)('a' + i % 26);
	if (doff && proto == IPPROTO_TCP) {
		put_tcp(l4, doff, s);
		put16(l4 + 16, l4_csum6(ip, l4, l4_len, proto));
	} else if (doff && proto == IPPROTO_UDP) {
		put16(l4, s->sport);
		put16(l4 + 2, s->dport);
		put16(l4 + 4, (uint16_t)l4_len);
		put16(l4 + 6, l4_csum6(ip, l4, l4_len, proto));
	} else if (doff) {
		l4[0] = 135; /* ICMPv6 neighbour solicitation */
		put16(l4 + 2, l4_csum6(ip, l4, l4_len, proto));
	}
	return s->cut ? (size_t)s->cut : ETH_HLEN + 40 + ext + l4_len;
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
		return build_ipv6(f, s);

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
	put_ip4(ip + 12, ip4(s->src ? s->src : POD_IP));
	put_ip4(ip + 16, ip4(s->dst ? s->dst : REMOTE));
	/* Options: NOPs ending in EOL. Read as ports they would say 257/256. */
	for (i = 20; i < ihl; i++)
		ip[i] = i + 1 < ihl ? 1 : 0;
	put16(ip + 10, fold(sum16(0, ip, ihl)));

	l4 = ip + ihl;
	for (i = doff; i < l4_len; i++)
		l4[i] = (uint8_t)('a' + i % 26);
	if (doff && proto == IPPROTO_TCP) {
		put_tcp(l4, doff, s);
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
