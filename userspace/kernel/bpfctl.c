// SPDX-License-Identifier: Apache-2.0
#include "bpfctl.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if_arp.h>
#include <linux/magic.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "fsutil.h"
#include "log.h"
#include "redirect.skel.h"
#include "rtnl.h"
#include "sockops.skel.h"

#define LINK_PIN BPFCTL_LINK_PIN

static const char *const reason_names[AMB_R_MAX] = {
	[AMB_R_ASSIGN_ESTABLISHED] = "assign_established",
	[AMB_R_ASSIGN_OUTBOUND] = "assign_outbound",
	[AMB_R_ASSIGN_INBOUND] = "assign_inbound",
	[AMB_R_ASSIGN_HBONE] = "assign_hbone",
	[AMB_R_PASS_NON_TCP] = "pass_non_tcp",
	[AMB_R_PASS_EXCLUDED] = "pass_excluded",
	[AMB_R_PASS_NO_SOCKET] = "pass_no_socket",
	[AMB_R_DROP_SPOOFED] = "drop_spoofed",
	[AMB_R_DROP_NO_LISTENER] = "drop_no_listener",
	[AMB_R_DROP_ASSIGN_FAILED] = "drop_assign_failed",
	[AMB_R_DROP_MALFORMED] = "drop_malformed",
	[AMB_R_REFUSED_NO_LISTENER] = "refused_no_listener",
	[AMB_R_REFUSED_POLICY] = "refused_policy",
	[AMB_R_DROP_POLICY] = "drop_policy",
	[AMB_R_REFUSED_IPV6] = "refused_ipv6",
	[AMB_R_DROP_IPV6] = "drop_ipv6",
	[AMB_R_DROP_IPV6_FRAG] = "drop_ipv6_frag",
	[AMB_R_PASS_IPV6] = "pass_ipv6",
	[AMB_R_DELIVER_TIME_WAIT] = "deliver_time_wait",
};

const char *bpfctl_reason_name(unsigned reason)
{
	return reason < AMB_R_MAX && reason_names[reason] ? reason_names[reason] :
							     "unknown";
}

bool bpfctl_node_name_valid(const char *node)
{
	size_t n = strlen(node);

	if (n == 0 || n > 63 || strcmp(node, ".") == 0 || strcmp(node, "..") == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = node[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

static void bpfctl_init(struct bpfctl *b, const char *bpffs, const char *node)
{
	memset(b, 0, sizeof(*b));
	snprintf(b->node, sizeof(b->node), "%s", node);
	snprintf(b->pin_dir, sizeof(b->pin_dir), "%.*s/ambientd/%s",
		 (int)(sizeof(b->pin_dir) - 80), bpffs, node);
	b->pods_fd = b->counters_fd = b->excl_net_fd = b->excl_port_fd = -1;
	b->pol_fd = b->pol_hits_fd = b->pol_names_fd = -1;
	b->socks_fd = b->sock_ev_fd = b->prog_pod_fd = b->prog_inbound_fd = -1;
}

int bpfctl_ensure_bpffs(const char *bpffs)
{
	struct statfs st;

	if (statfs(bpffs, &st) == 0 && st.f_type == BPF_FS_MAGIC)
		return 0;
	if (mkdir(bpffs, 0700) < 0 && errno != EEXIST)
		return -errno;
	if (mount("bpf", bpffs, "bpf", 0, "mode=0700") < 0) {
		int err = -errno;

		log_error("%s is not a bpf filesystem and mounting one failed: %s",
			  bpffs, strerror(-err));
		return err;
	}
	log_info("mounted a bpf filesystem at %s", bpffs);
	return 0;
}

/* Pin fd at dir/name, atomically replacing an older pin of that name. */
static int pin_replace(const char *dir, const char *name, int fd)
{
	char path[PATH_MAX + 64], tmp[PATH_MAX + 64];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	/* bpffs refuses dots in object names. */
	snprintf(tmp, sizeof(tmp), "%s/new_%s", dir, name);
	unlink(tmp);
	if (bpf_obj_pin(fd, tmp) < 0)
		return -errno;
	if (rename(tmp, path) < 0) {
		int err = -errno;

		unlink(tmp);
		return err;
	}
	return 0;
}

static int pinned_fd(const struct bpfctl *b, const char *name)
{
	char path[PATH_MAX + 64];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", b->pin_dir, name);
	fd = bpf_obj_get(path);
	return fd < 0 ? -errno : fd;
}

int bpfctl_load(struct bpfctl *b, const char *bpffs, const char *node)
{
	return bpfctl_load_opts(b, bpffs, node, NULL);
}

int bpfctl_load_opts(struct bpfctl *b, const char *bpffs, const char *node,
		     const struct bpfctl_load_opts *lo)
{
	LIBBPF_OPTS(bpf_object_open_opts, opts);
	int err;

	bpfctl_init(b, bpffs, node);
	err = mkdir_p(b->pin_dir, 0700);
	if (err) {
		log_error("cannot create pin directory %s: %s", b->pin_dir,
			  strerror(-err));
		return err;
	}
	/* Maps declared with LIBBPF_PIN_BY_NAME are reused from here. */
	opts.pin_root_path = b->pin_dir;

	b->redir = amb_redirect__open_opts(&opts);
	if (!b->redir) {
		err = -errno;
		goto fail;
	}
	/* Load-time settings live in the programs' rodata. */
	if (lo && lo->ipv6_passthrough) {
		b->redir->rodata->amb_ipv6_passthrough = 1;
		log_warn("IPv6 passthrough: enrolled pods' IPv6 TCP bypasses the "
			 "mesh (no mTLS, no policy), counted as pass_ipv6");
	}
	err = amb_redirect__load(b->redir);
	if (err)
		goto fail;
	b->sockops = amb_sockops__open_opts(&opts);
	if (!b->sockops) {
		err = -errno;
		goto fail;
	}
	err = amb_sockops__load(b->sockops);
	if (err)
		goto fail;

	b->pods_fd = dup(bpf_map__fd(b->redir->maps.amb_pods));
	b->counters_fd = dup(bpf_map__fd(b->redir->maps.amb_counters));
	b->excl_net_fd = dup(bpf_map__fd(b->redir->maps.amb_excl_net));
	b->excl_port_fd = dup(bpf_map__fd(b->redir->maps.amb_excl_port));
	b->socks_fd = dup(bpf_map__fd(b->sockops->maps.amb_socks));
	b->sock_ev_fd = dup(bpf_map__fd(b->sockops->maps.amb_sock_ev));
	b->prog_pod_fd = dup(bpf_program__fd(b->redir->progs.amb_tc_pod));
	b->prog_inbound_fd = dup(bpf_program__fd(b->redir->progs.amb_tc_inbound));
	b->pol_fd = dup(bpf_map__fd(b->redir->maps.amb_pol));
	b->pol_hits_fd = dup(bpf_map__fd(b->redir->maps.amb_pol_hits));
	b->pol_names_fd = dup(bpf_map__fd(b->redir->maps.amb_pol_names));

	err = pin_replace(b->pin_dir, "amb_tc_pod", b->prog_pod_fd);
	if (!err)
		err = pin_replace(b->pin_dir, "amb_tc_inbound", b->prog_inbound_fd);
	if (!err)
		err = pin_replace(b->pin_dir, "amb_sockops",
				  bpf_program__fd(b->sockops->progs.amb_sockops));
	if (err) {
		log_error("cannot pin programs under %s: %s", b->pin_dir,
			  strerror(-err));
		goto fail;
	}
	return 0;
fail:
	if (err == -EINVAL || err == -EEXIST)
		log_error("loading BPF for node %s failed (%s); if the pinned maps "
			  "under %s come from an incompatible version, run "
			  "`ambientd uninstall --node %s` first",
			  node, strerror(-err), b->pin_dir, node);
	else
		log_error("loading BPF for node %s failed: %s", node, strerror(-err));
	bpfctl_close(b);
	return err;
}

int bpfctl_open_pinned(struct bpfctl *b, const char *bpffs, const char *node)
{
	struct { int *fd; const char *name; } pins[] = {
		{ &b->pods_fd, "amb_pods" },
		{ &b->counters_fd, "amb_counters" },
		{ &b->excl_net_fd, "amb_excl_net" },
		{ &b->excl_port_fd, "amb_excl_port" },
		{ &b->socks_fd, "amb_socks" },
		{ &b->prog_pod_fd, "amb_tc_pod" },
		{ &b->prog_inbound_fd, "amb_tc_inbound" },
		{ &b->pol_fd, "amb_pol" },
		{ &b->pol_hits_fd, "amb_pol_hits" },
		{ &b->pol_names_fd, "amb_pol_names" },
	};

	bpfctl_init(b, bpffs, node);
	for (size_t i = 0; i < sizeof(pins) / sizeof(pins[0]); i++) {
		int fd = pinned_fd(b, pins[i].name);

		if (fd < 0) {
			bpfctl_close(b);
			return fd;
		}
		*pins[i].fd = fd;
	}
	return 0;
}

void bpfctl_close(struct bpfctl *b)
{
	int *fds[] = { &b->pods_fd, &b->counters_fd, &b->excl_net_fd,
		       &b->excl_port_fd, &b->socks_fd, &b->sock_ev_fd,
		       &b->prog_pod_fd, &b->prog_inbound_fd, &b->pol_fd,
		       &b->pol_hits_fd, &b->pol_names_fd };

	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++) {
		if (*fds[i] >= 0)
			close(*fds[i]);
		*fds[i] = -1;
	}
	amb_sockops__destroy(b->sockops);
	amb_redirect__destroy(b->redir);
	b->sockops = NULL;
	b->redir = NULL;
}

uint32_t bpfctl_prog_id(int fd)
{
	struct bpf_prog_info info = {};
	__u32 len = sizeof(info);

	if (fd < 0 || bpf_obj_get_info_by_fd(fd, &info, &len) < 0)
		return 0;
	return info.id;
}

/* Our filter slot: ingress of ifindex, our handle and priority. */
#define OUR_TC_SLOT(hook, opts, ...)                                           \
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex,                     \
		    .attach_point = BPF_TC_INGRESS);                           \
	LIBBPF_OPTS(bpf_tc_opts, opts, .handle = AMB_TC_HANDLE,                \
		    .priority = AMB_TC_PRIORITY, ##__VA_ARGS__)

int bpfctl_tc_attach(int ifindex, int prog_fd)
{
	OUR_TC_SLOT(hook, opts, .prog_fd = prog_fd, .flags = BPF_TC_F_REPLACE);
	int err;

	/* clsact may already be there (another CNI): share it. */
	log_libbpf_quiet(true);
	err = bpf_tc_hook_create(&hook);
	log_libbpf_quiet(false);
	if (err && err != -EEXIST)
		return err;
	return bpf_tc_attach(&hook, &opts);
}

int bpfctl_tc_detach(int ifindex)
{
	OUR_TC_SLOT(hook, opts);
	int err;

	log_libbpf_quiet(true);
	err = bpf_tc_detach(&hook, &opts);
	log_libbpf_quiet(false);
	return err == -ENOENT || err == -EINVAL ? 0 : err;
}

uint32_t bpfctl_tc_prog_id(int ifindex)
{
	OUR_TC_SLOT(hook, opts);
	int err;

	log_libbpf_quiet(true);
	err = bpf_tc_query(&hook, &opts);
	log_libbpf_quiet(false);
	return err ? 0 : opts.prog_id;
}

/* Attach prog_fd on ifindex unless it is already what our slot runs. */
static int tc_ensure(int ifindex, int prog_fd)
{
	uint32_t want = bpfctl_prog_id(prog_fd);

	if (want && bpfctl_tc_prog_id(ifindex) == want)
		return 0;
	return bpfctl_tc_attach(ifindex, prog_fd);
}

int bpfctl_enroll(struct bpfctl *b, uint32_t addr, int ifindex, uint32_t flags)
{
	struct amb_pod_key key = { .addr = addr };
	struct amb_pod pod = { 0 }, old;
	int err;

	if (bpf_map_lookup_elem(b->pods_fd, &key, &old) == 0) {
		if (old.ifindex != (uint32_t)ifindex)
			log_info("pod %u.%u.%u.%u moved from ifindex %u to %d",
				 addr & 0xff, (addr >> 8) & 0xff,
				 (addr >> 16) & 0xff, addr >> 24, old.ifindex,
				 ifindex);
		else
			pod.flags = old.flags;
	}
	pod.ifindex = ifindex;
	pod.flags |= flags;
	/* The map entry first: the pod program drops every source it does
	 * not find there. */
	if (bpf_map_update_elem(b->pods_fd, &key, &pod, BPF_ANY) < 0)
		return -errno;
	err = tc_ensure(ifindex, b->prog_pod_fd);
	if (err) {
		bpf_map_delete_elem(b->pods_fd, &key);
		return err;
	}
	return 0;
}

int bpfctl_unenroll(struct bpfctl *b, uint32_t addr)
{
	struct amb_pod_key key = { .addr = addr };
	struct amb_pod pod;
	int err = 0;

	if (bpf_map_lookup_elem(b->pods_fd, &key, &pod) < 0)
		return -ENOENT;
	/* Program first, entry second: the other order would let the pod
	 * program drop the pod's traffic as spoofed in between. A veth that
	 * is gone has taken its filter with it. */
	if (if_indextoname(pod.ifindex, (char[IF_NAMESIZE]){ 0 }))
		err = tc_ensure(pod.ifindex, b->prog_inbound_fd);
	if (bpf_map_delete_elem(b->pods_fd, &key) < 0 && !err)
		err = -errno;
	return err;
}

int bpfctl_for_each_pod(struct bpfctl *b,
			int (*cb)(uint32_t addr, const struct amb_pod *pod, void *arg),
			void *arg)
{
	struct amb_pod_key key, next;
	struct amb_pod pod;
	void *prev = NULL;

	while (bpf_map_get_next_key(b->pods_fd, prev, &next) == 0) {
		key = next;
		prev = &key;
		if (bpf_map_lookup_elem(b->pods_fd, &key, &pod) < 0)
			continue; /* deleted under us */
		if (cb(key.addr, &pod, arg))
			break;
	}
	return 0;
}

struct ifset {
	int v[AMB_MAX_PODS];
	size_t n;
};

static int collect_ifindex(uint32_t addr, const struct amb_pod *pod, void *arg)
{
	struct ifset *s = arg;

	if (s->n < AMB_MAX_PODS)
		s->v[s->n++] = pod->ifindex;
	return 0;
}

/* Assigned packets carry foreign destination addresses and replies to
 * spoofed-source sockets arrive where the source is not routed back. */
static void relax_rp_filter(const char *ifname)
{
	char path[128];

	snprintf(path, sizeof(path), "net/ipv4/conf/%s/rp_filter", ifname);
	sysctl_write(path, "0");
}

int bpfctl_attach_inbound_all(struct bpfctl *b)
{
	struct rtnl_link *links = NULL;
	struct ifset *pods = calloc(1, sizeof(*pods));
	size_t n = 0;
	int err, first_err = 0;

	if (!pods)
		return -ENOMEM;
	bpfctl_for_each_pod(b, collect_ifindex, pods);
	err = rtnl_list_links(&links, &n);
	if (err)
		goto cleanup;
	for (size_t i = 0; i < n; i++) {
		bool is_pod = false;

		if ((links[i].flags & IFF_LOOPBACK) || links[i].type != ARPHRD_ETHER)
			continue;
		for (size_t j = 0; j < pods->n && !is_pod; j++)
			is_pod = pods->v[j] == links[i].ifindex;
		relax_rp_filter(links[i].name);
		err = tc_ensure(links[i].ifindex,
				is_pod ? b->prog_pod_fd : b->prog_inbound_fd);
		if (err) {
			log_warn("attaching to %s failed: %s", links[i].name,
				 strerror(-err));
			if (!first_err)
				first_err = err;
		}
	}
	err = first_err;
cleanup:
	free(links);
	free(pods);
	return err;
}

static uint64_t cgroup_id_of(const char *dir)
{
	struct stat st;

	/* On cgroup v2 the directory's inode number is the cgroup id. */
	return stat(dir, &st) == 0 ? (uint64_t)st.st_ino : 0;
}

int bpfctl_attach_cgroup(struct bpfctl *b, const char *cgroup_dir)
{
	struct bpf_program *prog = b->sockops->progs.amb_sockops;
	char path[PATH_MAX + 64];
	struct bpf_link *link;
	struct statfs sfs;
	int fd, cg, err;

	if (statfs(cgroup_dir, &sfs) < 0 || sfs.f_type != CGROUP2_SUPER_MAGIC) {
		log_error("%s is not a cgroup v2 directory (use --cgroup with "
			  "the cgroup2 mount, e.g. /sys/fs/cgroup/unified)",
			  cgroup_dir);
		return -ENOTDIR;
	}
	snprintf(path, sizeof(path), "%s/%s", b->pin_dir, LINK_PIN);
	fd = bpf_obj_get(path);
	if (fd >= 0) {
		struct bpf_link_info info = {};
		__u32 len = sizeof(info);

		if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0 &&
		    info.cgroup.cgroup_id == cgroup_id_of(cgroup_dir)) {
			/* Same cgroup: swing the live link to the new program. */
			err = bpf_link_update(fd, bpf_program__fd(prog), NULL);
			close(fd);
			return err ? -errno : 0;
		}
		bpf_link_detach(fd);
		close(fd);
		unlink(path);
	}
	cg = open(cgroup_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cg < 0)
		return -errno;
	link = bpf_program__attach_cgroup(prog, cg);
	err = libbpf_get_error(link);
	close(cg);
	if (err)
		return err;
	err = bpf_link__pin(link, path);
	/* The pin keeps the attachment alive after this process exits. */
	bpf_link__disconnect(link);
	bpf_link__destroy(link);
	return err;
}

static int map_clear(int fd, size_t key_size)
{
	char key[64], next[64];

	if (key_size > sizeof(key))
		return -EINVAL;
	while (bpf_map_get_next_key(fd, NULL, next) == 0) {
		memcpy(key, next, key_size);
		if (bpf_map_delete_elem(fd, key) < 0)
			return -errno;
	}
	return 0;
}

int bpfctl_set_exclusions(struct bpfctl *b, const uint16_t *ports, size_t n_ports,
			  const struct bpfctl_cidr *nets, size_t n_nets,
			  const uint16_t *in_ports, size_t n_in_ports)
{
	__u8 one = 1;
	int err;

	err = map_clear(b->excl_port_fd, sizeof(struct amb_excl_port_key));
	if (!err)
		err = map_clear(b->excl_net_fd, sizeof(struct amb_lpm_key));
	for (size_t i = 0; !err && i < n_ports + n_in_ports; i++) {
		struct amb_excl_port_key k = {
			.port = i < n_ports ? ports[i] : in_ports[i - n_ports],
			.direction = i < n_ports ? AMB_DIR_OUTBOUND : AMB_DIR_INBOUND,
		};

		if (bpf_map_update_elem(b->excl_port_fd, &k, &one, BPF_ANY) < 0)
			err = -errno;
	}
	for (size_t i = 0; !err && i < n_nets; i++) {
		struct amb_lpm_key k = { .prefixlen = nets[i].prefixlen,
					 .addr = nets[i].addr };

		if (bpf_map_update_elem(b->excl_net_fd, &k, &one, BPF_ANY) < 0)
			err = -errno;
	}
	return err;
}

/* Sum slot `key` of a per-CPU amb_counter array over the CPUs. */
static int sum_percpu(int fd, __u32 key, struct amb_counter *out)
{
	int ncpu = libbpf_num_possible_cpus();
	struct amb_counter *per;
	int err = 0;

	out->packets = out->bytes = 0;
	if (ncpu <= 0)
		return ncpu ? ncpu : -EINVAL;
	per = calloc(ncpu, sizeof(*per));
	if (!per)
		return -ENOMEM;
	if (bpf_map_lookup_elem(fd, &key, per) < 0)
		err = -errno;
	for (int c = 0; !err && c < ncpu; c++) {
		out->packets += per[c].packets;
		out->bytes += per[c].bytes;
	}
	free(per);
	return err;
}

int bpfctl_read_counters(struct bpfctl *b, struct amb_counter *out)
{
	for (__u32 r = 0; r < AMB_R_MAX; r++) {
		int err = sum_percpu(b->counters_fd, r, &out[r]);

		if (err && err != -ENOENT)
			return err;
	}
	return 0;
}

int bpfctl_pol_hits(struct bpfctl *b, uint32_t id, struct amb_counter *out)
{
	return sum_percpu(b->pol_hits_fd, id, out);
}

int bpfctl_pol_name(struct bpfctl *b, uint32_t id, char *buf, size_t len)
{
	struct amb_pol_name n;

	if (bpf_map_lookup_elem(b->pol_names_fd, &id, &n) < 0)
		return -errno;
	n.name[AMB_POL_NAME_LEN - 1] = '\0';
	if (!n.name[0])
		return -ENOENT;
	snprintf(buf, len, "%s", n.name);
	return 0;
}

int bpfctl_setup_routing(void)
{
	static const char *const zero[] = {
		"net/ipv4/conf/all/rp_filter",
		"net/ipv4/conf/default/rp_filter",
	};
	int err;

	/* rp_filter is the max of "all" and the interface's own value, so
	 * bpfctl_attach_inbound_all() clears each interface's too. */
	for (size_t i = 0; i < sizeof(zero) / sizeof(zero[0]); i++) {
		err = sysctl_write(zero[i], "0");
		if (err)
			log_warn("cannot set %s=0: %s", zero[i], strerror(-err));
	}
	err = rtnl_fwmark_rule(true, AMB_MARK_DELIVER, AMB_MARK_MASK,
			       AMB_ROUTE_TABLE, AMB_RULE_PRIORITY);
	if (err) {
		log_error("adding ip rule fwmark %#x lookup %d failed: %s",
			  AMB_MARK_DELIVER, AMB_ROUTE_TABLE, strerror(-err));
		return err;
	}
	err = rtnl_local_default_route(true, AMB_ROUTE_TABLE);
	if (err)
		log_error("adding local route to table %d failed: %s",
			  AMB_ROUTE_TABLE, strerror(-err));
	return err;
}

int bpfctl_teardown_routing(void)
{
	int err = rtnl_fwmark_rule(false, AMB_MARK_DELIVER, AMB_MARK_MASK,
				   AMB_ROUTE_TABLE, AMB_RULE_PRIORITY);
	int err2 = rtnl_local_default_route(false, AMB_ROUTE_TABLE);

	return err ? err : err2;
}

int bpfctl_uninstall(const char *bpffs, const char *node)
{
	struct rtnl_link *links = NULL;
	char dir[PATH_MAX], path[PATH_MAX + 256];
	size_t n = 0;
	struct dirent *de;
	DIR *d;
	int fd, err, first_err = 0;

	snprintf(dir, sizeof(dir), "%s/ambientd/%s", bpffs, node);

	/* 1. Our tc filters, wherever they are in this netns. */
	err = rtnl_list_links(&links, &n);
	if (err)
		first_err = err;
	for (size_t i = 0; i < n; i++) {
		if (!bpfctl_tc_prog_id(links[i].ifindex))
			continue;
		err = bpfctl_tc_detach(links[i].ifindex);
		if (err) {
			log_warn("removing filter from %s: %s", links[i].name,
				 strerror(-err));
			first_err = first_err ? first_err : err;
		} else {
			log_info("removed tc filter from %s", links[i].name);
		}
	}
	free(links);

	/* 2. The cgroup link (detach explicitly: other holders may exist). */
	snprintf(path, sizeof(path), "%s/%s", dir, LINK_PIN);
	fd = bpf_obj_get(path);
	if (fd >= 0) {
		if (bpf_link_detach(fd) < 0)
			log_warn("detaching sockops link: %s", strerror(errno));
		else
			log_info("detached sockops from its cgroup");
		close(fd);
	}

	/* 3. Every pin, then the directories. */
	d = opendir(dir);
	if (d) {
		while ((de = readdir(d))) {
			if (de->d_name[0] == '.' &&
			    (!de->d_name[1] || (de->d_name[1] == '.' && !de->d_name[2])))
				continue;
			snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
			if (unlink(path) < 0) {
				log_warn("unpinning %s: %s", path, strerror(errno));
				first_err = first_err ? first_err : -errno;
			}
		}
		closedir(d);
		if (rmdir(dir) < 0) {
			log_warn("removing %s: %s", dir, strerror(errno));
			first_err = first_err ? first_err : -errno;
		} else {
			log_info("removed pins under %s", dir);
		}
	}
	snprintf(path, sizeof(path), "%s/ambientd", bpffs);
	rmdir(path); /* only succeeds when no other node is left */

	/* 4. Delivery routing. */
	err = bpfctl_teardown_routing();
	if (err) {
		log_warn("removing ip rule/route: %s", strerror(-err));
		first_err = first_err ? first_err : err;
	}
	return first_err;
}
