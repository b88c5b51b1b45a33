// SPDX-License-Identifier: Apache-2.0
#include "bpfinfo.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rtnl.h"

static const char *const prog_pins[] = {"amb_tc_pod", "amb_tc_inbound",
					"amb_sockops"};
static const char *const map_pins[] = {
    "amb_pods",	   "amb_counters", "amb_excl_net", "amb_excl_port", "amb_socks",
    "amb_sock_ev", "amb_pol",	   "amb_pol_hits", "amb_pol_names"};

const char *bpfinfo_verdict_of(const char *reason)
{
	static const char *const verdicts[] = {"assign", "deliver", "pass",
					       "drop", "refused"};

	for (size_t i = 0; i < sizeof(verdicts) / sizeof(verdicts[0]); i++) {
		size_t n = strlen(verdicts[i]);

		if (strncmp(reason, verdicts[i], n) == 0 && reason[n] == '_')
			return verdicts[i];
	}
	return "other";
}

static int pin_get(const struct bpfctl *b, const char *name)
{
	char path[PATH_MAX + 64];

	snprintf(path, sizeof(path), "%s/%s", b->pin_dir, name);
	return bpf_obj_get(path);
}

/* Entries of a map: counted by iteration for hash-like maps. */
static long long map_entries(int fd, const struct bpf_map_info *mi)
{
	char key[256], next[256];
	long long n = 0;

	if (mi->type == BPF_MAP_TYPE_ARRAY ||
	    mi->type == BPF_MAP_TYPE_PERCPU_ARRAY)
		return mi->max_entries;
	if (mi->type == BPF_MAP_TYPE_RINGBUF || mi->key_size > sizeof(key))
		return -1;
	for (void *prev = NULL; bpf_map_get_next_key(fd, prev, next) == 0 &&
				n < (long long)mi->max_entries + 1;
	     prev = key, n++)
		memcpy(key, next, mi->key_size);
	return n;
}

static const char *map_type_name(unsigned t)
{
	const char *s = libbpf_bpf_map_type_str(t);

	return s ? s : "unknown";
}

static const char *prog_type_name(unsigned t)
{
	const char *s = libbpf_bpf_prog_type_str(t);

	return s ? s : "unknown";
}

struct ifset {
	int *v;
	size_t n, cap;
};

static int collect(uint32_t addr, const struct amb_pod *pod, void *arg)
{
	struct ifset *s = arg;

	if (s->n < s->cap)
		s->v[s->n++] = (int)pod->ifindex;
	return 0;
}

static bool in_set(const struct ifset *s, int ifindex)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->v[i] == ifindex)
			return true;
	return false;
}

/* Cgroup id and program id of the pinned sockops link; 0 when detached. */
static int link_info(struct bpfctl *b, uint64_t *cgroup_id, uint32_t *prog_id)
{
	struct bpf_link_info info = {};
	__u32 len = sizeof(info);
	int fd = pin_get(b, BPFCTL_LINK_PIN), err = 0;

	*cgroup_id = 0;
	*prog_id = 0;
	if (fd < 0)
		return -errno;
	if (bpf_obj_get_info_by_fd(fd, &info, &len) < 0)
		err = -errno;
	else {
		*cgroup_id = info.cgroup.cgroup_id;
		*prog_id = info.prog_id;
	}
	close(fd);
	return err;
}

int bpfinfo_check_attached(struct bpfctl *b, char *why, size_t len)
{
	uint32_t pod_id = bpfctl_prog_id(b->prog_pod_fd);
	uint32_t in_id = bpfctl_prog_id(b->prog_inbound_fd), lprog;
	struct ifset pods = {.cap = AMB_MAX_PODS};
	struct rtnl_link *links = NULL;
	uint64_t cg;
	size_t n = 0;
	int err;

	err = link_info(b, &cg, &lprog);
	if (err || !cg || !lprog) {
		snprintf(why, len, "sockops is not attached to a cgroup (%s)",
			 err ? strerror(-err) : "link detached");
		return err ? err : -ENOLINK;
	}
	pods.v = calloc(pods.cap, sizeof(*pods.v));
	if (!pods.v)
		return -ENOMEM;
	bpfctl_for_each_pod(b, collect, &pods);
	err = rtnl_list_links(&links, &n);
	for (size_t i = 0; !err && i < n; i++) {
		bool pod = in_set(&pods, links[i].ifindex);
		uint32_t want = pod ? pod_id : in_id;

		if (!pod && ((links[i].flags & IFF_LOOPBACK) ||
			     links[i].type != ARPHRD_ETHER))
			continue;
		if (bpfctl_tc_prog_id(links[i].ifindex) != want) {
			snprintf(why, len, "%s is not attached to %s",
				 pod ? "amb_tc_pod" : "amb_tc_inbound",
				 links[i].name);
			err = -ENOLINK;
		}
	}
	/* A pod veth that is gone has no link to check: the enrollment
	 * retry reports that one. */
	free(links);
	free(pods.v);
	return err;
}

struct attach_walk {
	struct sbuf *o;
	int n;
};

static void attached_tc(struct sbuf *o, uint32_t prog_id,
			const struct rtnl_link *links, size_t n_links,
			int *count)
{
	for (size_t i = 0; i < n_links; i++) {
		if (!prog_id || bpfctl_tc_prog_id(links[i].ifindex) != prog_id)
			continue;
		sbuf_printf(o, "%s{\"kind\":\"tc ingress\",\"target\":",
			    (*count)++ ? "," : "");
		sbuf_json_str(o, links[i].name);
		sbuf_printf(o, ",\"handle\":\"0x%x\",\"priority\":%d}",
			    AMB_TC_HANDLE, AMB_TC_PRIORITY);
	}
}

int bpfinfo_json(struct bpfctl *b, struct sbuf *o)
{
	struct amb_counter cnt[AMB_R_MAX];
	struct rtnl_link *links = NULL;
	size_t n_links = 0;
	uint64_t cg = 0;
	uint32_t lprog = 0;

	if (rtnl_list_links(&links, &n_links))
		n_links = 0;
	link_info(b, &cg, &lprog);
	sbuf_puts(o, "{\"node\":");
	sbuf_json_str(o, b->node);
	sbuf_puts(o, ",\"pinDir\":");
	sbuf_json_str(o, b->pin_dir);
	sbuf_puts(o, ",\"programs\":[");
	for (size_t i = 0; i < sizeof(prog_pins) / sizeof(prog_pins[0]); i++) {
		struct bpf_prog_info pi = {};
		__u32 len = sizeof(pi);
		int fd = pin_get(b, prog_pins[i]), count = 0;
		char tag[2 * BPF_TAG_SIZE + 1];

		if (fd < 0)
			continue;
		if (bpf_obj_get_info_by_fd(fd, &pi, &len) < 0) {
			close(fd);
			continue;
		}
		for (int k = 0; k < BPF_TAG_SIZE; k++)
			sprintf(tag + 2 * k, "%02x", pi.tag[k]);
		sbuf_printf(
		    o,
		    "%s{\"name\":\"%s\",\"id\":%u,\"type\":\"%s\",\"tag\":\"%"
		    "s\","
		    "\"runCount\":%llu,\"runTimeNs\":%llu,\"attached\":[",
		    i ? "," : "", prog_pins[i], pi.id, prog_type_name(pi.type),
		    tag, (unsigned long long)pi.run_cnt,
		    (unsigned long long)pi.run_time_ns);
		if (pi.type == BPF_PROG_TYPE_SOCK_OPS) {
			if (lprog == pi.id && cg)
				sbuf_printf(
				    o,
				    "{\"kind\":\"cgroup sock_ops\",\"target\":"
				    "\"cgroup id %llu\",\"link\":\"%s\"}",
				    (unsigned long long)cg, BPFCTL_LINK_PIN);
		} else {
			attached_tc(o, pi.id, links, n_links, &count);
		}
		sbuf_puts(o, "]}");
		close(fd);
	}
	sbuf_puts(o, "],\"maps\":[");
	for (size_t i = 0, n = 0; i < sizeof(map_pins) / sizeof(map_pins[0]);
	     i++) {
		struct bpf_map_info mi = {};
		__u32 len = sizeof(mi);
		int fd = pin_get(b, map_pins[i]);

		if (fd < 0)
			continue;
		if (bpf_obj_get_info_by_fd(fd, &mi, &len) == 0) {
			sbuf_printf(
			    o,
			    "%s{\"name\":\"%s\",\"id\":%u,\"type\":\"%s\","
			    "\"keySize\":%u,\"valueSize\":%u,\"maxEntries\":%u,"
			    "\"entries\":%lld}",
			    n++ ? "," : "", map_pins[i], mi.id,
			    map_type_name(mi.type), mi.key_size, mi.value_size,
			    mi.max_entries, map_entries(fd, &mi));
		}
		close(fd);
	}
	sbuf_puts(o, "],\"counters\":[");
	if (bpfctl_read_counters(b, cnt) == 0)
		for (unsigned r = 0; r < AMB_R_MAX; r++) {
			const char *name = bpfctl_reason_name(r);

			sbuf_printf(o,
				    "%s{\"reason\":\"%s\",\"verdict\":\"%s\","
				    "\"packets\":%llu,\"bytes\":%llu}",
				    r ? "," : "", name,
				    bpfinfo_verdict_of(name),
				    (unsigned long long)cnt[r].packets,
				    (unsigned long long)cnt[r].bytes);
		}
	sbuf_puts(o, "]}");
	free(links);
	return sbuf_failed(o) ? -ENOMEM : 0;
}
