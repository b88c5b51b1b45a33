/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The few rtnetlink operations ambientd needs in its node netns: policy
 * routing for delivery, route lookups to find a pod's veth, and the link
 * list (with change notifications). All functions return 0 or -errno.
 */
#ifndef AMBIENTD_RTNL_H
#define AMBIENTD_RTNL_H

#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rtnl_link {
	int ifindex;
	unsigned int flags;   /* IFF_* */
	unsigned short type;  /* ARPHRD_* */
	char name[IF_NAMESIZE];
	char kind[16];        /* IFLA_INFO_KIND ("veth", "bridge"), "" if none */
};

/* `ip rule add|del fwmark MARK/MASK lookup TABLE priority PRIO`.
 * Adding an existing rule or deleting a missing one is not an error. */
int rtnl_fwmark_rule(bool add, uint32_t mark, uint32_t mask, uint32_t table,
		     uint32_t prio);
/* `ip route add|del local 0.0.0.0/0 dev lo table TABLE` (same tolerance). */
int rtnl_local_default_route(bool add, uint32_t table);
/* Does the fwmark rule / local route exist? (for uninstall checks) */
int rtnl_fwmark_rule_exists(uint32_t mark, uint32_t table, bool *exists);

/* Output interface of the route to addr (network order). */
int rtnl_route_oif(uint32_t addr, int *ifindex);

/* All links of the current netns; *out is malloc'd, caller frees. */
int rtnl_list_links(struct rtnl_link **out, size_t *n);

/* The link with this ifindex (kind included). -ENODEV if there is none. */
int rtnl_get_link(int ifindex, struct rtnl_link *out);

/* A socket that becomes readable when links come or go; drain it with
 * rtnl_monitor_drain() and then re-list. Returns the fd or -errno. */
int rtnl_monitor_open(void);
void rtnl_monitor_drain(int fd);

/* Write a sysctl under /proc/sys/net/... (path relative to /proc/sys). */
int sysctl_write(const char *path, const char *value);
/* Where sysctl_write() finds /proc/sys (a container mounts the host's
 * elsewhere because its own is read-only). dir must outlive the calls. */
void sysctl_set_root(const char *dir);

#endif
