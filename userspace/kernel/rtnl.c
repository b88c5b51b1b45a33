// SPDX-License-Identifier: Apache-2.0
#include "rtnl.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fib_rules.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define NL_BUF 16384

struct nl_req {
	struct nlmsghdr nh;
	union {
		struct rtmsg rt;
		struct fib_rule_hdr fr;
		struct ifinfomsg ifi;
	};
	char attrs[256];
};

static void nl_put_attr(struct nlmsghdr *nh, unsigned short type,
			const void *data, unsigned short len)
{
	struct rtattr *rta = (struct rtattr *)((char *)nh + NLMSG_ALIGN(nh->nlmsg_len));

	rta->rta_type = type;
	rta->rta_len = RTA_LENGTH(len);
	memcpy(RTA_DATA(rta), data, len);
	nh->nlmsg_len = NLMSG_ALIGN(nh->nlmsg_len) + RTA_ALIGN(rta->rta_len);
}

static void nl_put_u32(struct nlmsghdr *nh, unsigned short type, uint32_t v)
{
	nl_put_attr(nh, type, &v, sizeof(v));
}

static int nl_open(void)
{
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);

	return fd < 0 ? -errno : fd;
}

/*
 * Send one request and read replies until the ack (or the end of a dump).
 * each() sees every non-control message; it may be NULL. Returns 0 or the
 * kernel's -errno.
 */
static int nl_transact(struct nlmsghdr *req,
		       int (*each)(struct nlmsghdr *nh, void *arg), void *arg)
{
	static __thread uint32_t seq;
	char *buf = NULL;
	int fd, err = 0;
	bool done = false;

	fd = nl_open();
	if (fd < 0)
		return fd;
	buf = malloc(NL_BUF);
	if (!buf) {
		err = -ENOMEM;
		goto cleanup;
	}
	req->nlmsg_seq = ++seq;
	req->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
	if (send(fd, req, req->nlmsg_len, 0) < 0) {
		err = -errno;
		goto cleanup;
	}
	while (!done) {
		ssize_t n = recv(fd, buf, NL_BUF, 0);
		struct nlmsghdr *nh;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			err = -errno;
			goto cleanup;
		}
		for (nh = (struct nlmsghdr *)buf; NLMSG_OK(nh, (size_t)n);
		     nh = NLMSG_NEXT(nh, n)) {
			if (nh->nlmsg_seq != req->nlmsg_seq)
				continue;
			if (nh->nlmsg_type == NLMSG_ERROR) {
				struct nlmsgerr *e = NLMSG_DATA(nh);

				err = e->error;
				done = true;
				break;
			}
			if (nh->nlmsg_type == NLMSG_DONE) {
				done = true;
				break;
			}
			if (each && !err)
				err = each(nh, arg);
		}
	}
cleanup:
	free(buf);
	close(fd);
	return err;
}

static void rule_msg(struct nl_req *r, bool add, uint32_t table)
{
	memset(r, 0, sizeof(*r));
	r->nh.nlmsg_len = NLMSG_LENGTH(sizeof(r->fr));
	r->nh.nlmsg_type = add ? RTM_NEWRULE : RTM_DELRULE;
	r->nh.nlmsg_flags = add ? NLM_F_CREATE | NLM_F_EXCL : 0;
	r->fr.family = AF_INET;
	r->fr.action = FR_ACT_TO_TBL;
	r->fr.table = table < 256 ? table : RT_TABLE_UNSPEC;
}

int rtnl_fwmark_rule(bool add, uint32_t mark, uint32_t mask, uint32_t table,
		     uint32_t prio)
{
	struct nl_req r;
	int err;

	rule_msg(&r, add, table);
	nl_put_u32(&r.nh, FRA_FWMARK, mark);
	nl_put_u32(&r.nh, FRA_FWMASK, mask);
	nl_put_u32(&r.nh, FRA_TABLE, table);
	nl_put_u32(&r.nh, FRA_PRIORITY, prio);
	err = nl_transact(&r.nh, NULL, NULL);
	if ((add && err == -EEXIST) || (!add && err == -ENOENT))
		return 0;
	return err;
}

struct rule_match {
	uint32_t mark, table;
	bool found;
};

static int rule_each(struct nlmsghdr *nh, void *arg)
{
	struct rule_match *m = arg;
	struct fib_rule_hdr *fr = NLMSG_DATA(nh);
	struct rtattr *rta = (struct rtattr *)((char *)fr + NLMSG_ALIGN(sizeof(*fr)));
	int len = nh->nlmsg_len - NLMSG_LENGTH(sizeof(*fr));
	uint32_t mark = 0, table = fr->table;

	if (nh->nlmsg_type != RTM_NEWRULE)
		return 0;
	for (; RTA_OK(rta, len); rta = RTA_NEXT(rta, len)) {
		if (rta->rta_type == FRA_FWMARK)
			mark = *(uint32_t *)RTA_DATA(rta);
		else if (rta->rta_type == FRA_TABLE)
			table = *(uint32_t *)RTA_DATA(rta);
	}
	if (mark == m->mark && table == m->table)
		m->found = true;
	return 0;
}

int rtnl_fwmark_rule_exists(uint32_t mark, uint32_t table, bool *exists)
{
	struct rule_match m = { .mark = mark, .table = table };
	struct nl_req r;
	int err;

	memset(&r, 0, sizeof(r));
	r.nh.nlmsg_len = NLMSG_LENGTH(sizeof(r.fr));
	r.nh.nlmsg_type = RTM_GETRULE;
	r.nh.nlmsg_flags = NLM_F_DUMP;
	r.fr.family = AF_INET;
	err = nl_transact(&r.nh, rule_each, &m);
	*exists = m.found;
	return err;
}

int rtnl_local_default_route(bool add, uint32_t table)
{
	struct nl_req r;
	unsigned int lo = if_nametoindex("lo");
	int err;

	if (!lo)
		return -ENODEV;
	memset(&r, 0, sizeof(r));
	r.nh.nlmsg_len = NLMSG_LENGTH(sizeof(r.rt));
	r.nh.nlmsg_type = add ? RTM_NEWROUTE : RTM_DELROUTE;
	r.nh.nlmsg_flags = add ? NLM_F_CREATE | NLM_F_EXCL : 0;
	r.rt.rtm_family = AF_INET;
	r.rt.rtm_dst_len = 0;
	r.rt.rtm_table = table < 256 ? table : RT_TABLE_UNSPEC;
	r.rt.rtm_protocol = RTPROT_BOOT;
	r.rt.rtm_scope = RT_SCOPE_HOST;
	r.rt.rtm_type = RTN_LOCAL;
	nl_put_u32(&r.nh, RTA_TABLE, table);
	nl_put_u32(&r.nh, RTA_OIF, lo);
	err = nl_transact(&r.nh, NULL, NULL);
	if ((add && err == -EEXIST) || (!add && (err == -ENOENT || err == -ESRCH)))
		return 0;
	return err;
}

static int route_each(struct nlmsghdr *nh, void *arg)
{
	struct rtmsg *rt = NLMSG_DATA(nh);
	struct rtattr *rta = RTM_RTA(rt);
	int len = RTM_PAYLOAD(nh);

	if (nh->nlmsg_type != RTM_NEWROUTE)
		return 0;
	for (; RTA_OK(rta, len); rta = RTA_NEXT(rta, len))
		if (rta->rta_type == RTA_OIF)
			*(int *)arg = *(int *)RTA_DATA(rta);
	return 0;
}

int rtnl_route_oif(uint32_t addr, int *ifindex)
{
	struct nl_req r;
	int err;

	memset(&r, 0, sizeof(r));
	r.nh.nlmsg_len = NLMSG_LENGTH(sizeof(r.rt));
	r.nh.nlmsg_type = RTM_GETROUTE;
	r.rt.rtm_family = AF_INET;
	r.rt.rtm_dst_len = 32;
	nl_put_attr(&r.nh, RTA_DST, &addr, sizeof(addr));
	*ifindex = 0;
	err = nl_transact(&r.nh, route_each, ifindex);
	if (!err && *ifindex == 0)
		err = -ENETUNREACH;
	return err;
}

struct link_list {
	struct rtnl_link *v;
	size_t n, cap;
};

static int link_each(struct nlmsghdr *nh, void *arg)
{
	struct link_list *l = arg;
	struct ifinfomsg *ifi = NLMSG_DATA(nh);
	struct rtattr *rta = IFLA_RTA(ifi);
	int len = IFLA_PAYLOAD(nh);
	struct rtnl_link *k;

	if (nh->nlmsg_type != RTM_NEWLINK)
		return 0;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		struct rtnl_link *v = realloc(l->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	k = &l->v[l->n++];
	memset(k, 0, sizeof(*k));
	k->ifindex = ifi->ifi_index;
	k->flags = ifi->ifi_flags;
	k->type = ifi->ifi_type;
	for (; RTA_OK(rta, len); rta = RTA_NEXT(rta, len)) {
		if (rta->rta_type == IFLA_IFNAME) {
			snprintf(k->name, sizeof(k->name), "%s", (char *)RTA_DATA(rta));
		} else if (rta->rta_type == IFLA_LINKINFO) {
			struct rtattr *in = RTA_DATA(rta);
			int inlen = RTA_PAYLOAD(rta);

			for (; RTA_OK(in, inlen); in = RTA_NEXT(in, inlen))
				if (in->rta_type == IFLA_INFO_KIND)
					snprintf(k->kind, sizeof(k->kind), "%.*s",
						 (int)RTA_PAYLOAD(in),
						 (char *)RTA_DATA(in));
		}
	}
	return 0;
}

int rtnl_list_links(struct rtnl_link **out, size_t *n)
{
	struct link_list l = { 0 };
	struct nl_req r;
	int err;

	memset(&r, 0, sizeof(r));
	r.nh.nlmsg_len = NLMSG_LENGTH(sizeof(r.ifi));
	r.nh.nlmsg_type = RTM_GETLINK;
	r.nh.nlmsg_flags = NLM_F_DUMP;
	r.ifi.ifi_family = AF_UNSPEC;
	err = nl_transact(&r.nh, link_each, &l);
	if (err) {
		free(l.v);
		return err;
	}
	*out = l.v;
	*n = l.n;
	return 0;
}

int rtnl_get_link(int ifindex, struct rtnl_link *out)
{
	struct rtnl_link *links = NULL;
	size_t n = 0;
	int err = rtnl_list_links(&links, &n);

	if (err)
		return err;
	err = -ENODEV;
	for (size_t i = 0; i < n; i++) {
		if (links[i].ifindex == ifindex) {
			*out = links[i];
			err = 0;
			break;
		}
	}
	free(links);
	return err;
}

int rtnl_monitor_open(void)
{
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK, .nl_groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR };
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK,
			NETLINK_ROUTE);

	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

void rtnl_monitor_drain(int fd)
{
	char buf[8192];

	while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
		;
}

static const char *sysctl_root = "/proc/sys";

void sysctl_set_root(const char *dir)
{
	sysctl_root = dir;
}

int sysctl_write(const char *path, const char *value)
{
	char full[512];
	int fd, err = 0;
	size_t len = strlen(value);

	snprintf(full, sizeof(full), "%s/%s", sysctl_root, path);
	fd = open(full, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (write(fd, value, len) != (ssize_t)len)
		err = -errno;
	close(fd);
	return err;
}
