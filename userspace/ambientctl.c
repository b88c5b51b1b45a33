// SPDX-License-Identifier: Apache-2.0
/*
 * ambientctl: inspect and steer one node's ambientd through its pinned BPF
 * state. Works whether or not the daemon is running; run it in the node's
 * network namespace (interface names and tc attachments live there).
 */
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <errno.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bpfctl.h"
#include "cli.h"
#include "ctlsock.h"
#include "log.h"
#include "rtnl.h"

enum { OPT_NODE = 'n', OPT_OUTPUT = 'o', OPT_HELP = 'h', OPT_BPFFS = 256,
       OPT_IFNAME, OPT_VERSION };

static const struct cli_opt options[] = {
	{ "node", OPT_NODE, "NAME", "node name (default $NODE_NAME, else the hostname)" },
	{ "output", OPT_OUTPUT, "FORMAT", "table (default) or json" },
	{ "bpffs", OPT_BPFFS, "DIR", "bpf filesystem (default /sys/fs/bpf)" },
	{ "ifname", OPT_IFNAME, "IFACE", "enroll: the pod's host-side veth (default: route lookup)" },
	{ "version", OPT_VERSION, NULL, "print the version" },
	{ "help", OPT_HELP, NULL, "this help" },
	{ 0 },
};

struct ctl {
	char node[64];
	const char *bpffs;
	const char *ifname;
	bool json;
	struct bpfctl b;
};

struct command {
	const char *name;
	const char *args;
	const char *help;
	int min_args;
	int (*run)(struct ctl *c, int argc, char **argv);
};

static const struct command commands[];

static void usage(FILE *f)
{
	fprintf(f, "Usage: ambientctl [OPTIONS] COMMAND [ARGS]\n\nCommands:\n");
	for (const struct command *c = commands; c->name; c++) {
		char left[48];

		snprintf(left, sizeof(left), "%s %s", c->name, c->args);
		fprintf(f, "  %-28s %s\n", left, c->help);
	}
	fprintf(f, "\nOptions:\n");
	cli_print_options(f, options);
	fprintf(f,
		"\nExamples:\n"
		"  ambientctl --node node1 pods\n"
		"  ambientctl -n node1 counters -o json\n"
		"  nsenter --net=/run/netns/node1 ambientctl -n node1 enroll 198.18.1.12\n"
		"  ambientctl -n node1 sockets\n"
		"  ambientctl -n node1 policies\n"
		"  ambientctl -n node2 check 198.18.1.10 198.18.2.10:8080\n");
}

static const char *ip4(uint32_t addr, char *buf)
{
	return inet_ntop(AF_INET, &addr, buf, INET_ADDRSTRLEN);
}

static int parse_ip(const char *s, uint32_t *addr)
{
	struct in_addr in;

	if (inet_pton(AF_INET, s, &in) != 1) {
		fprintf(stderr, "ambientctl: '%s' is not an IPv4 address\n", s);
		return -EINVAL;
	}
	*addr = in.s_addr;
	return 0;
}

static int open_node(struct ctl *c)
{
	int err = bpfctl_open_pinned(&c->b, c->bpffs, c->node);

	if (err == -ENOENT)
		fprintf(stderr, "ambientctl: node '%s' is not installed (no pins under "
			"%s/ambientd/%s); start ambientd --node %s first\n",
			c->node, c->bpffs, c->node, c->node);
	else if (err)
		fprintf(stderr, "ambientctl: opening pins of node '%s': %s\n",
			c->node, strerror(-err));
	return err;
}

struct pod_print {
	struct ctl *c;
	int n;
};

static int print_pod(uint32_t addr, const struct amb_pod *pod, void *arg)
{
	struct pod_print *p = arg;
	char ip[INET_ADDRSTRLEN], ifname[IF_NAMESIZE] = "?";
	char source[32];

	if (!if_indextoname(pod->ifindex, ifname))
		snprintf(ifname, sizeof(ifname), "(gone)");
	snprintf(source, sizeof(source), "%s%s%s",
		 pod->flags & AMB_POD_F_CONFIG ? "config" : "",
		 (pod->flags & AMB_POD_F_CONFIG) && (pod->flags & AMB_POD_F_MANUAL) ? "+" : "",
		 pod->flags & AMB_POD_F_MANUAL ? "manual" : "");
	if (p->c->json)
		printf("%s{\"address\":\"%s\",\"ifname\":\"%s\",\"ifindex\":%u,\"source\":\"%s\"}",
		       p->n ? "," : "", ip4(addr, ip), ifname, pod->ifindex, source);
	else
		printf("%-16s %-16s %-8u %s\n", ip4(addr, ip), ifname, pod->ifindex,
		       source);
	p->n++;
	return 0;
}

static int cmd_pods(struct ctl *c, int argc, char **argv)
{
	struct pod_print p = { .c = c };

	if (open_node(c))
		return 1;
	if (c->json)
		printf("[");
	else
		printf("%-16s %-16s %-8s %s\n", "ADDRESS", "IFNAME", "IFINDEX", "SOURCE");
	bpfctl_for_each_pod(&c->b, print_pod, &p);
	if (c->json)
		printf("]\n");
	return 0;
}

static int cmd_counters(struct ctl *c, int argc, char **argv)
{
	struct amb_counter cnt[AMB_R_MAX];

	if (open_node(c) || bpfctl_read_counters(&c->b, cnt))
		return 1;
	if (c->json) {
		printf("{");
		for (unsigned r = 0; r < AMB_R_MAX; r++)
			printf("%s\"%s\":{\"packets\":%llu,\"bytes\":%llu}", r ? "," : "",
			       bpfctl_reason_name(r), (unsigned long long)cnt[r].packets,
			       (unsigned long long)cnt[r].bytes);
		printf("}\n");
		return 0;
	}
	printf("%-22s %14s %16s\n", "REASON", "PACKETS", "BYTES");
	for (unsigned r = 0; r < AMB_R_MAX; r++)
		printf("%-22s %14llu %16llu\n", bpfctl_reason_name(r),
		       (unsigned long long)cnt[r].packets,
		       (unsigned long long)cnt[r].bytes);
	return 0;
}

static const char *tcp_state_name(unsigned s)
{
	static const char *const names[] = { "?", "ESTABLISHED", "SYN_SENT",
		"SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT", "CLOSE",
		"CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV" };

	return s < sizeof(names) / sizeof(names[0]) ? names[s] : "?";
}

static int cmd_sockets(struct ctl *c, int argc, char **argv)
{
	__u64 key, next, *prev = NULL;
	struct amb_sock_stat st;
	struct timespec now;
	int n = 0;

	if (open_node(c))
		return 1;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (c->json)
		printf("[");
	else
		printf("%-22s %-22s %-12s %-6s %9s %8s %8s\n", "LOCAL", "REMOTE",
		       "STATE", "DIR", "SRTT_US", "RETRANS", "AGE_S");
	while (bpf_map_get_next_key(c->b.socks_fd, prev, &next) == 0) {
		char l[INET_ADDRSTRLEN], r[INET_ADDRSTRLEN], la[32], ra[32];
		unsigned long long age;

		key = next;
		prev = &key;
		if (bpf_map_lookup_elem(c->b.socks_fd, &key, &st) < 0)
			continue;
		age = ((unsigned long long)now.tv_sec * 1000000000ull + now.tv_nsec -
		       st.opened_ns) / 1000000000ull;
		snprintf(la, sizeof(la), "%s:%u", ip4(st.saddr, l), st.sport);
		snprintf(ra, sizeof(ra), "%s:%u", ip4(st.daddr, r), st.dport);
		if (c->json)
			printf("%s{\"cookie\":%llu,\"local\":\"%s\",\"remote\":\"%s\",\"state\":\"%s\","
			       "\"direction\":\"%s\",\"srtt_us\":%u,\"retransmits\":%u,\"age_s\":%llu}",
			       n ? "," : "", (unsigned long long)key, la, ra,
			       tcp_state_name(st.state), st.active ? "out" : "in",
			       st.srtt_us, st.total_retrans, age);
		else
			printf("%-22s %-22s %-12s %-6s %9u %8u %8llu\n", la, ra,
			       tcp_state_name(st.state), st.active ? "out" : "in",
			       st.srtt_us, st.total_retrans, age);
		n++;
	}
	if (c->json)
		printf("]\n");
	return 0;
}

static int cmd_enroll(struct ctl *c, int argc, char **argv)
{
	struct rtnl_link link;
	char ip[INET_ADDRSTRLEN];
	uint32_t addr;
	int ifindex, err;

	if (parse_ip(argv[0], &addr) || open_node(c))
		return 1;
	if (c->ifname) {
		ifindex = (int)if_nametoindex(c->ifname);
		err = ifindex ? 0 : -ENODEV;
	} else {
		err = rtnl_route_oif(addr, &ifindex);
	}
	if (!err)
		err = rtnl_get_link(ifindex, &link);
	if (err) {
		fprintf(stderr, "ambientctl: no interface for %s in this network "
			"namespace: %s (run in the node netns, or pass --ifname)\n",
			argv[0], strerror(-err));
		return 1;
	}
	if (strcmp(link.kind, "veth") != 0) {
		fprintf(stderr, "ambientctl: %s is reached through %s (%s), not a pod "
			"veth; refusing to capture it\n", argv[0], link.name,
			link.kind[0] ? link.kind : "no kind");
		return 1;
	}
	err = bpfctl_enroll(&c->b, addr, ifindex, AMB_POD_F_MANUAL);
	if (err) {
		fprintf(stderr, "ambientctl: enrolling %s: %s\n", argv[0], strerror(-err));
		return 1;
	}
	printf("enrolled %s on %s (ifindex %d)\n", ip4(addr, ip), link.name, ifindex);
	return 0;
}

static int cmd_unenroll(struct ctl *c, int argc, char **argv)
{
	uint32_t addr;
	int err;

	if (parse_ip(argv[0], &addr) || open_node(c))
		return 1;
	err = bpfctl_unenroll(&c->b, addr);
	if (err == -ENOENT) {
		fprintf(stderr, "ambientctl: %s is not enrolled on node %s\n", argv[0],
			c->node);
		return 1;
	}
	if (err) {
		fprintf(stderr, "ambientctl: unenrolling %s: %s\n", argv[0], strerror(-err));
		return 1;
	}
	printf("unenrolled %s (a config workload is enrolled again at the next "
	       "config change)\n", argv[0]);
	return 0;
}

/* Ask the running daemon; explain clearly when there is none. */
static int daemon_request(struct ctl *c, const char *cmd, char **answer)
{
	int err = ctlsock_request(c->node, cmd, answer);

	if (err == -ENOENT || err == -ECONNREFUSED)
		fprintf(stderr, "ambientctl: no ambientd is running for node '%s' "
			"(no control socket at %s/%s.sock)\n", c->node,
			CTLSOCK_DIR, c->node);
	else if (err)
		fprintf(stderr, "ambientctl: asking the daemon of node '%s': %s\n",
			c->node, strerror(-err));
	return err;
}

static int cmd_status(struct ctl *c, int argc, char **argv)
{
	char *answer = NULL;

	if (daemon_request(c, "status", &answer))
		return 1;
	fputs(answer, stdout);
	free(answer);
	return 0;
}

static int cmd_certificates(struct ctl *c, int argc, char **argv)
{
	char *answer = NULL;

	if (daemon_request(c, c->json ? "certificates" : "certificates table", &answer))
		return 1;
	fputs(answer, stdout);
	free(answer);
	return 0;
}

/* The kernel's side alone (daemon down): refusals per policy slot. */
static int kernel_policies(struct ctl *c)
{
	int err = bpfctl_open_pinned(&c->b, c->bpffs, c->node);
	int n = 0;

	if (err) {
		fprintf(stderr, "ambientctl: node '%s' has no pinned BPF state under "
			"%s/ambientd: %s\n", c->node, c->bpffs, strerror(-err));
		return 1;
	}
	if (!c->json)
		printf("%-48s %10s\n", "KERNEL POLICY SLOT", "REFUSED");
	else
		printf("{\"kernel\":[");
	for (uint32_t id = 1; id < AMB_MAX_POL_IDS; id++) {
		struct amb_counter sum;
		char name[AMB_POL_NAME_LEN];

		if (bpfctl_pol_name(&c->b, id, name, sizeof(name)) ||
		    bpfctl_pol_hits(&c->b, id, &sum))
			continue;
		if (c->json)
			printf("%s{\"id\":%u,\"name\":\"%s\",\"refused\":%llu}",
			       n++ ? "," : "", id, name,
			       (unsigned long long)sum.packets);
		else
			printf("%-48s %10llu\n", name,
			       (unsigned long long)sum.packets);
	}
	if (c->json)
		printf("]}\n");
	bpfctl_close(&c->b);
	return 0;
}

static int cmd_services(struct ctl *c, int argc, char **argv)
{
	char *answer = NULL;

	if (daemon_request(c, c->json ? "services" : "services table", &answer))
		return 1;
	fputs(answer, stdout);
	free(answer);
	return 0;
}

static int cmd_policies(struct ctl *c, int argc, char **argv)
{
	char *answer = NULL;
	int err = ctlsock_request(c->node, c->json ? "policies" : "policies table",
				  &answer);

	if (err == -ENOENT || err == -ECONNREFUSED) {
		fprintf(stderr, "ambientctl: no ambientd is running for node '%s'; "
			"showing the kernel's policy counters only\n", c->node);
		return kernel_policies(c);
	}
	if (err) {
		fprintf(stderr, "ambientctl: asking the daemon of node '%s': %s\n",
			c->node, strerror(-err));
		return 1;
	}
	fputs(answer, stdout);
	free(answer);
	return 0;
}

static int cmd_check(struct ctl *c, int argc, char **argv)
{
	char req[1024], *answer = NULL;
	int rc;

	if (strlen(argv[0]) + strlen(argv[1]) + 8 > sizeof(req)) {
		fprintf(stderr, "ambientctl check: arguments too long\n");
		return 2;
	}
	snprintf(req, sizeof(req), "check %s %s", argv[0], argv[1]);
	if (daemon_request(c, req, &answer))
		return 1;
	fputs(answer, stdout);
	rc = strncmp(answer, "error:", 6) == 0 ? 2 : 0;
	free(answer);
	return rc;
}

static const struct command commands[] = {
	{ "pods", "", "enrolled pods: address, host veth, who enrolled it", 0, cmd_pods },
	{ "counters", "", "BPF verdict counters by reason (packets, bytes)", 0, cmd_counters },
	{ "sockets", "", "pod TCP sockets tracked by sockops (RTT, retransmits)", 0, cmd_sockets },
	{ "enroll", "POD_IP", "capture a pod ad hoc (its veth found by route lookup)", 1, cmd_enroll },
	{ "unenroll", "POD_IP", "stop capturing a pod", 1, cmd_unenroll },
	{ "certificates", "", "workload certificates: identity, serial, validity, state", 0, cmd_certificates },
	{ "status", "", "the running daemon: config generation, workers, connections (JSON)", 0, cmd_status },
	{ "services", "", "services: VIPs, ports, endpoints with health, ejection, active connections", 0, cmd_services },
	{ "policies", "", "authorization policies: scope, action, hits (userspace and kernel)", 0, cmd_policies },
	{ "check", "SRC DST_IP:PORT", "explain the policy decision (SRC: IP, spiffe://ID or ID@IP)", 2, cmd_check },
	{ 0 },
};

static int handle_opt(int key, const char *arg, void *ctx)
{
	struct ctl *c = ctx;

	switch (key) {
	case OPT_NODE:
		snprintf(c->node, sizeof(c->node), "%s", arg);
		return 0;
	case OPT_OUTPUT:
		if (strcmp(arg, "json") && strcmp(arg, "table")) {
			fprintf(stderr, "ambientctl: -o %s: expected table or json\n", arg);
			return -1;
		}
		c->json = strcmp(arg, "json") == 0;
		return 0;
	case OPT_BPFFS:
		c->bpffs = arg;
		return 0;
	case OPT_IFNAME:
		c->ifname = arg;
		return 0;
	case OPT_VERSION:
		printf("ambientctl %s\n", AMBIENTD_VERSION);
		exit(0);
	case OPT_HELP:
		usage(stdout);
		exit(0);
	}
	return -1;
}

int main(int argc, char **argv)
{
	struct ctl c = { .bpffs = BPFCTL_DEFAULT_BPFFS };
	const char *env_node = getenv("NODE_NAME");
	int idx, rest;

	if (env_node && *env_node)
		snprintf(c.node, sizeof(c.node), "%s", env_node);
	else
		gethostname(c.node, sizeof(c.node) - 1);
	log_threshold = LOG_WARN;
	log_route_libbpf();
	/* Options may come before or after the command. */
	idx = cli_parse(argc, argv, options, handle_opt, &c);
	if (idx < 0)
		return 2;
	if (idx >= argc) {
		usage(stderr);
		return 2;
	}
	for (const struct command *cmd = commands; cmd->name; cmd++) {
		if (strcmp(cmd->name, argv[idx]) != 0)
			continue;
		rest = cli_parse(argc - idx, argv + idx, options, handle_opt, &c);
		if (rest < 0)
			return 2;
		if (argc - idx - rest < cmd->min_args) {
			fprintf(stderr, "ambientctl %s: expected %s\n", cmd->name, cmd->args);
			return 2;
		}
		if (!bpfctl_node_name_valid(c.node)) {
			fprintf(stderr, "ambientctl: node name '%s' is not usable; pass --node\n", c.node);
			return 2;
		}
		return cmd->run(&c, argc - idx - rest, argv + idx + rest);
	}
	fprintf(stderr, "ambientctl: unknown command '%s'. Try 'ambientctl --help'.\n", argv[idx]);
	return 2;
}
