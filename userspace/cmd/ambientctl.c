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
#include "bpfinfo.h"
#include "cli.h"
#include "ctlsock.h"
#include "httpd.h"
#include "json.h"
#include "log.h"
#include "rtnl.h"
#include "sbuf.h"

enum { OPT_NODE = 'n', OPT_OUTPUT = 'o', OPT_HELP = 'h', OPT_BPFFS = 256,
       OPT_IFNAME, OPT_VERSION, OPT_ADMIN };

static const struct cli_opt options[] = {
	{ "node", OPT_NODE, "NAME", "node name (default $NODE_NAME, else the hostname)" },
	{ "output", OPT_OUTPUT, "FORMAT", "table (default) or json" },
	{ "bpffs", OPT_BPFFS, "DIR", "bpf filesystem (default /sys/fs/bpf)" },
	{ "ifname", OPT_IFNAME, "IFACE", "enroll: the pod's host-side veth (default: route lookup)" },
	{ "admin", OPT_ADMIN, "IP:PORT", "the daemon's admin API in this netns (default 127.0.0.1:15000)" },
	{ "version", OPT_VERSION, NULL, "print the version" },
	{ "help", OPT_HELP, NULL, "this help" },
	{ 0 },
};

struct ctl {
	char node[64];
	const char *bpffs;
	const char *ifname;
	bool json;
	bool node_given; /* --node or $NODE_NAME: check the daemon serves it */
	char admin_ip[16];
	uint16_t admin_port;
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
		"  nsenter --net=/run/netns/node1 ambientctl -n node1 workloads\n"
		"  ambientctl -n node1 connections -o json\n"
		"  ambientctl -n node1 bpf            # works with the daemon down\n"
		"  ambientctl -n node1 log-level debug\n"
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

/* ---- the admin API ------------------------------------------------------- */

/*
 * method path on the daemon's admin API; on success *out is the parsed
 * JSON answer (json_free it) and, if raw is not NULL, its text.
 */
static int admin_call(struct ctl *c, const char *method, const char *path,
		      struct json **out, struct sbuf *raw)
{
	struct sbuf body;
	char err[128];
	int status = 0, rc;

	sbuf_init(&body, 256u << 20);
	rc = http_fetch(c->admin_ip, c->admin_port, method, path, 10000, &status, &body);
	if (rc == -ECONNREFUSED) {
		fprintf(stderr, "ambientctl: no ambientd admin API at %s:%u in this network "
			"namespace (is the daemon running? run ambientctl in the node's "
			"netns: nsenter --net=/run/netns/NODE)\n", c->admin_ip, c->admin_port);
		goto fail;
	}
	if (rc) {
		fprintf(stderr, "ambientctl: %s %s on %s:%u: %s\n", method, path,
			c->admin_ip, c->admin_port, strerror(-rc));
		goto fail;
	}
	if (status != 200) {
		fprintf(stderr, "ambientctl: %s %s: HTTP %d: %s", method, path, status,
			body.p ? body.p : "\n");
		goto fail;
	}
	rc = json_parse(body.p ? body.p : "", out, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "ambientctl: %s %s: answer is not JSON: %s\n", method,
			path, err);
		goto fail;
	}
	if (raw)
		sbuf_put(raw, body.p, body.len);
	sbuf_free(&body);
	return 0;
fail:
	sbuf_free(&body);
	return -1;
}

/* /config_dump, checked to come from the node we were asked about. */
static int config_dump(struct ctl *c, struct json **out)
{
	const char *node;

	if (admin_call(c, "GET", "/config_dump", out, NULL))
		return -1;
	node = json_get_str(json_get(*out, "config"), "node");
	if (c->node_given && node && strcmp(node, c->node) != 0) {
		fprintf(stderr, "ambientctl: the admin API at %s:%u serves node '%s', not '%s' "
			"(run in that node's netns)\n", c->admin_ip, c->admin_port, node, c->node);
		json_free(*out);
		return -1;
	}
	return 0;
}

static void print_json(const struct json *j)
{
	struct sbuf b;

	sbuf_init(&b, 0);
	if (j)
		json_print(&b, j);
	else
		sbuf_puts(&b, "null");
	puts(b.p ? b.p : "");
	sbuf_free(&b);
}

static const char *or_dash(const char *s)
{
	return s && *s ? s : "-";
}

/* The waypoint column: "destination" of a gateway object, or None. */
static const char *waypoint_of(const struct json *item)
{
	const char *d = json_get_str(json_get(item, "waypoint"), "destination");

	return d ? d : "None";
}

static int cmd_workloads(struct ctl *c, int argc, char **argv)
{
	const struct json *wls;
	struct json *dump;

	if (config_dump(c, &dump))
		return 1;
	wls = json_get(dump, "workloads");
	if (c->json) {
		print_json(wls);
		json_free(dump);
		return 0;
	}
	printf("%-16s %-32s %-16s %-20s %-16s %s\n", "NAMESPACE", "POD NAME", "ADDRESS",
	       "NODE", "WAYPOINT", "PROTOCOL");
	for (size_t i = 0; wls && i < wls->n; i++) {
		const struct json *w = &wls->items[i], *ips = json_get(w, "workloadIps");
		char addr[128] = "";

		for (size_t k = 0; ips && k < ips->n; k++)
			snprintf(addr + strlen(addr), sizeof(addr) - strlen(addr), "%s%s",
				 k ? "," : "", ips->items[k].str);
		printf("%-16s %-32s %-16s %-20s %-16s %s\n",
		       or_dash(json_get_str(w, "namespace")), or_dash(json_get_str(w, "name")),
		       or_dash(addr), or_dash(json_get_str(w, "node")), waypoint_of(w),
		       or_dash(json_get_str(w, "protocol")));
	}
	json_free(dump);
	return 0;
}

static int cmd_connections(struct ctl *c, int argc, char **argv)
{
	struct json *conns;

	if (admin_call(c, "GET", "/connections", &conns, NULL))
		return 1;
	if (c->json) {
		print_json(conns);
		json_free(conns);
		return 0;
	}
	printf("%-22s %-22s %-9s %-11s %-10s %-11s %12s %12s %8s %-16s %s\n", "SOURCE",
	       "DESTINATION", "DIRECTION", "ROUTE", "SECURITY", "STATE", "BYTES_SENT",
	       "BYTES_RECV", "AGE_S", "SRC_WORKLOAD", "DST_WORKLOAD");
	for (size_t i = 0; i < conns->n; i++) {
		const struct json *k = &conns->items[i];

		printf("%-22s %-22s %-9s %-11s %-10s %-11s %12.0f %12.0f %8.1f %-16s %s\n",
		       or_dash(json_get_str(k, "src")), or_dash(json_get_str(k, "dst")),
		       or_dash(json_get_str(k, "direction")), or_dash(json_get_str(k, "route")),
		       or_dash(json_get_str(k, "security")), or_dash(json_get_str(k, "state")),
		       json_get_num(k, "bytes_sent", 0), json_get_num(k, "bytes_recv", 0),
		       json_get_num(k, "duration_ms", 0) / 1000,
		       or_dash(json_get_str(k, "src_workload")),
		       or_dash(json_get_str(k, "dst_workload")));
	}
	json_free(conns);
	return 0;
}

static int cmd_log_level(struct ctl *c, int argc, char **argv)
{
	char path[96];
	struct json *ans;
	enum log_level lvl;

	if (argc > 0 && log_level_parse(argv[0], &lvl)) {
		fprintf(stderr, "ambientctl log-level %s: expected error|warn|info|debug\n",
			argv[0]);
		return 2;
	}
	snprintf(path, sizeof(path), "/logging%s%s", argc ? "?level=" : "",
		 argc ? argv[0] : "");
	if (admin_call(c, argc ? "POST" : "GET", path, &ans, NULL))
		return 1;
	if (c->json)
		print_json(ans);
	else
		printf("%s\n", or_dash(json_get_str(ans, "level")));
	json_free(ans);
	return 0;
}

/* Kernel state from the pins: works whether or not the daemon runs. */
static int cmd_bpf(struct ctl *c, int argc, char **argv)
{
	const struct json *progs, *maps, *cnts;
	struct json *info;
	struct sbuf b;
	char err[128];
	int rc;

	if (open_node(c))
		return 1;
	sbuf_init(&b, 0);
	rc = bpfinfo_json(&c->b, &b);
	bpfctl_close(&c->b);
	if (rc || json_parse(b.p, &info, err, sizeof(err))) {
		fprintf(stderr, "ambientctl: reading the BPF state of node '%s' failed\n",
			c->node);
		sbuf_free(&b);
		return 1;
	}
	if (c->json) {
		puts(b.p);
		sbuf_free(&b);
		json_free(info);
		return 0;
	}
	sbuf_free(&b);
	progs = json_get(info, "programs");
	maps = json_get(info, "maps");
	cnts = json_get(info, "counters");
	printf("Pins: %s\n\n%-16s %6s %-10s %-18s %s\n", json_get_str(info, "pinDir"),
	       "PROGRAM", "ID", "TYPE", "TAG", "ATTACHED TO");
	for (size_t i = 0; progs && i < progs->n; i++) {
		const struct json *p = &progs->items[i], *att = json_get(p, "attached");
		char where[512] = "";

		for (size_t k = 0; att && k < att->n; k++)
			snprintf(where + strlen(where), sizeof(where) - strlen(where), "%s%s %s",
				 k ? ", " : "", json_get_str(&att->items[k], "kind"),
				 json_get_str(&att->items[k], "target"));
		printf("%-16s %6.0f %-10s %-18s %s\n", json_get_str(p, "name"),
		       json_get_num(p, "id", 0), json_get_str(p, "type"),
		       json_get_str(p, "tag"), where[0] ? where : "(not attached)");
	}
	printf("\n%-16s %6s %-14s %10s %10s\n", "MAP", "ID", "TYPE", "ENTRIES", "MAX");
	for (size_t i = 0; maps && i < maps->n; i++) {
		const struct json *m = &maps->items[i];
		double e = json_get_num(m, "entries", -1);
		char ent[24];

		snprintf(ent, sizeof(ent), e < 0 ? "-" : "%.0f", e);
		printf("%-16s %6.0f %-14s %10s %10.0f\n", json_get_str(m, "name"),
		       json_get_num(m, "id", 0), json_get_str(m, "type"), ent,
		       json_get_num(m, "maxEntries", 0));
	}
	printf("\n%-22s %-8s %14s %16s\n", "REASON", "VERDICT", "PACKETS", "BYTES");
	for (size_t i = 0; cnts && i < cnts->n; i++) {
		const struct json *k = &cnts->items[i];

		printf("%-22s %-8s %14.0f %16.0f\n", json_get_str(k, "reason"),
		       json_get_str(k, "verdict"), json_get_num(k, "packets", 0),
		       json_get_num(k, "bytes", 0));
	}
	json_free(info);
	return 0;
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
	{ "workloads", "", "workloads of the config in force (admin API /config_dump)", 0, cmd_workloads },
	{ "connections", "", "live tunneled connections with bytes so far (admin API)", 0, cmd_connections },
	{ "bpf", "", "programs, attach points, maps, verdict counters (from the pins)", 0, cmd_bpf },
	{ "log-level", "[LEVEL]", "show or set the daemon's log level (error|warn|info|debug)", 0, cmd_log_level },
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
		c->node_given = true;
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
	case OPT_ADMIN:
		if (cli_parse_hostport(arg, c->admin_ip, &c->admin_port) || !c->admin_port) {
			fprintf(stderr, "ambientctl: --admin %s: expected IPv4:PORT\n", arg);
			return -1;
		}
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
	struct ctl c = { .bpffs = BPFCTL_DEFAULT_BPFFS, .admin_ip = "127.0.0.1",
			 .admin_port = 15000 };
	const char *env_node = getenv("NODE_NAME");
	int idx, rest;

	if (env_node && *env_node) {
		snprintf(c.node, sizeof(c.node), "%s", env_node);
		c.node_given = true;
	}
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
