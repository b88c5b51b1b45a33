// SPDX-License-Identifier: Apache-2.0
/*
 * ambientd: the per-node tunnel. The main thread is the control thread: it
 * owns the config file, the BPF state and enrollment, and publishes state
 * snapshots to the worker threads (worker.c) that carry the traffic.
 */
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <malloc.h>
#include <ifaddrs.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>
#include <zlib.h>

#include "accesslog.h"
#include "admin.h"
#include "authz.h"
#include "bpfctl.h"
#include "cli.h"
#include "ca.h"
#include "config.h"
#include "configdump.h"
#include "ctlsock.h"
#include "daemon.h"
#include "fsutil.h"
#include "kubesrc.h"
#include "log.h"
#include "lb.h"
#include "loop.h"
#include "polmap.h"
#include "privs.h"
#include "relay.h"
#include "rtnl.h"
#include "state.h"

#define MAX_EXCLUDES 64
#define RELOAD_DEBOUNCE_MS 100
#define RETRY_ENROLL_MS 2000

enum opt_key {
	OPT_NODE = 'n',
	OPT_CONFIG = 'c',
	OPT_WORKERS = 'w',
	OPT_LOG = 'l',
	OPT_HELP = 'h',
	OPT_BPFFS = 256,
	OPT_CGROUP,
	OPT_EXCL_PORT,
	OPT_EXCL_CIDR,
	OPT_EXCL_IN_PORT,
	OPT_BUF,
	OPT_UNINSTALL_ON_EXIT,
	OPT_VERSION,
	OPT_CA_DIR,
	OPT_STATE_DIR,
	OPT_TRUST_DOMAIN,
	OPT_CERT_TTL,
	OPT_CONNECT_TIMEOUT,
	OPT_PENDING_MAX,
	OPT_PENDING_PER_SOURCE,
	OPT_HS_MAX,
	OPT_HS_PER_SOURCE,
	OPT_LB,
	OPT_OUTLIER_FAILURES,
	OPT_OUTLIER_EJECTION,
	OPT_SERVICE_CIDR,
	OPT_KUBE,
	OPT_KUBE_SERVER,
	OPT_KUBE_TOKEN,
	OPT_KUBE_CA,
	OPT_CNI_SOCKET,
	OPT_PROC_SYS,
	OPT_METRICS_ADDR,
	OPT_READY_ADDR,
	OPT_ADMIN_ADDR,
	OPT_ACCESS_LOG,
	OPT_DRAIN_TIMEOUT,
	OPT_HBONE_IDLE,
	OPT_IPV6_PASSTHROUGH,
};

static const struct cli_opt options[] = {
	{ "node", OPT_NODE, "NAME", "node name (default $NODE_NAME, else the hostname)" },
	{ "config", OPT_CONFIG, "FILE", "local config file (ztunnel schema); watched for changes" },
	{ "bpffs", OPT_BPFFS, "DIR", "bpf filesystem (default /sys/fs/bpf); pins go to DIR/ambientd/NODE" },
	{ "cgroup", OPT_CGROUP, "DIR", "cgroup v2 directory for sockops (default: the cgroup2 mount)" },
	{ "exclude-port", OPT_EXCL_PORT, "PORT", "never capture pod traffic to this destination port (repeatable)" },
	{ "exclude-cidr", OPT_EXCL_CIDR, "CIDR", "never capture pod traffic to this network (repeatable)" },
	{ "exclude-inbound-port", OPT_EXCL_IN_PORT, "PORT", "never capture traffic to pods on this port (repeatable)" },
	{ "workers", OPT_WORKERS, "N", "worker threads (default: CPUs available, 1..64)" },
	{ "buffer-size", OPT_BUF, "BYTES", "relay buffer per direction (default 262144; held only while bytes are in flight)" },
	{ "ca-dir", OPT_CA_DIR, "DIR", "mesh root CA (ca-cert.pem, ca-key.pem; created if absent); share it between nodes (default STATE_DIR/ca)" },
	{ "state-dir", OPT_STATE_DIR, "DIR", "state directory (default /var/lib/ambientd/NODE)" },
	{ "trust-domain", OPT_TRUST_DOMAIN, "TD", "the mesh's trust domain; peers must be in it (default cluster.local)" },
	{ "cert-ttl", OPT_CERT_TTL, "SECONDS", "workload certificate lifetime, rotated at half-life (default 86400)" },
	{ "connect-timeout", OPT_CONNECT_TIMEOUT, "MS", "TCP connect timeout towards upstreams and peer tunnels (default 10000)" },
	{ "pending-max", OPT_PENDING_MAX, "N", "connections each worker's listener holds before they are relayed (connecting upstream, or in the TLS handshake on 15008); more are reset (default 8192)" },
	{ "pending-per-source", OPT_PENDING_PER_SOURCE, "N", "of those, at most N from one source address (default 1024)" },
	{ "handshake-max", OPT_HS_MAX, "N", "15008 TLS handshakes each worker runs at once (~40 KiB each); later clients wait for a slot (default 256)" },
	{ "handshake-per-source", OPT_HS_PER_SOURCE, "N", "of those, at most N from one source address (default 32)" },
	{ "load-balancing", OPT_LB, "ALGO", "service endpoint choice: least-request (random of two, fewer connections; default) or round-robin" },
	{ "outlier-failures", OPT_OUTLIER_FAILURES, "N", "consecutive connect failures that eject an endpoint (default 5; 0 disables)" },
	{ "outlier-ejection", OPT_OUTLIER_EJECTION, "MS", "first ejection time, doubled on each repeat, capped at 300000 (default 30000)" },
	{ "service-cidr", OPT_SERVICE_CIDR, "CIDR", "service VIP range: a captured connection to an address in it that is no known VIP is refused (repeatable)" },
	{ "kube", OPT_KUBE, NULL, "Kubernetes mode: pods, namespaces, services, endpointslices from the API server; --config then holds only policies" },
	{ "kube-server", OPT_KUBE_SERVER, "URL", "API server (default: in-cluster $KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT)" },
	{ "kube-token", OPT_KUBE_TOKEN, "FILE", "service-account token, re-read when it changes (default " KUBE_SA_DIR "/token)" },
	{ "kube-ca", OPT_KUBE_CA, "FILE", "CA of the API server (default " KUBE_SA_DIR "/ca.crt)" },
	{ "cni-socket", OPT_CNI_SOCKET, "PATH", "with --kube: where the CNI plugin reports new pods (e.g. /run/ambientd/cni.sock)" },
	{ "proc-sys", OPT_PROC_SYS, "DIR", "where /proc/sys of the node's network namespace is (default /proc/sys)" },
	{ "log-level", OPT_LOG, "LEVEL", "error|warn|info|debug (default info)" },
	{ "access-log", OPT_ACCESS_LOG, "FORMAT", "one line per connection on stderr: text (default), json or off" },
	{ "metrics-addr", OPT_METRICS_ADDR, "IP:PORT", "Prometheus /metrics and /stats/prometheus (default 0.0.0.0:15020; off)" },
	{ "readiness-addr", OPT_READY_ADDR, "IP:PORT", "GET /healthz/ready (default 0.0.0.0:15021; off)" },
	{ "admin-addr", OPT_ADMIN_ADDR, "IP:PORT", "admin API, loopback only (default 127.0.0.1:15000; off)" },
	{ "drain-timeout", OPT_DRAIN_TIMEOUT, "SECONDS", "how long /quitquitquit lets connections finish (default 5)" },
	{ "hbone-idle-timeout", OPT_HBONE_IDLE, "SECONDS", "an inbound HBONE connection (15008) without any stream is closed (GOAWAY) after this long (default 600)" },
	{ "uninstall-on-exit", OPT_UNINSTALL_ON_EXIT, NULL, "remove programs, pins, rules on SIGTERM (default: keep them, fail closed)" },
	{ "ipv6-passthrough", OPT_IPV6_PASSTHROUGH, NULL, "let enrolled pods' IPv6 TCP bypass the mesh (no mTLS, no policy) instead of refusing it; only for clusters that accept that (default: off, fail closed)" },
	{ "version", OPT_VERSION, NULL, "print the version" },
	{ "help", OPT_HELP, NULL, "this help" },
	{ 0 },
};

struct opts {
	char node[64];
	const char *config;
	const char *bpffs;
	char cgroup[PATH_MAX];
	uint16_t excl_ports[MAX_EXCLUDES];
	size_t n_excl_ports;
	uint16_t excl_in_ports[MAX_EXCLUDES];
	size_t n_excl_in_ports;
	struct bpfctl_cidr excl_nets[MAX_EXCLUDES];
	size_t n_excl_nets;
	int workers;
	size_t buf_size;
	bool uninstall_on_exit;
	bool ipv6_passthrough;
	const char *ca_dir;
	char state_dir[PATH_MAX];
	const char *trust_domain;
	unsigned cert_ttl;
	unsigned connect_timeout_ms;
	unsigned hbone_idle_ms;
	unsigned pending_max, pending_per_source, hs_max, hs_per_source;
	struct lb_opts lb;
	struct bpfctl_cidr svc_nets[MAX_EXCLUDES];
	size_t n_svc_nets;
	bool kube;
	const char *kube_server, *kube_token, *kube_ca, *cni_socket;
	struct admin_opts admin;
};

struct control {
	struct opts o;
	struct daemon d;
	struct bpfctl b;
	struct loop *loop;
	struct loop_io sig_io, ino_io, rtnl_io, ring_io, ctl_io;
	struct loop_timer reload_timer, retry_timer, rotate_timer, ring_timer, trim_timer;
	/* Config reloads (start_reload): the loader thread and its job. */
	int cfg_efd;
	struct loop_io cfg_io;
	pthread_t cfg_thread;
	struct cfg_job *cfg_job;
	bool cfg_again;
	struct ring_buffer *ring;
	int ino_fd;
	char cfg_dir[PATH_MAX];
	char cfg_base[PATH_MAX];
	uLong cfg_crc; /* of the file content now in force */
	uLong cfg_bad_crc; /* of the last content refused (when cfg_bad) */
	bool cfg_bad;
	char ctl_path[128];
	uint64_t sock_events[AMB_SE_CLOSE + 1];
	struct polmap_ids *pol_ids; /* policy slots of the kernel fast path */
	bool pol_full_warned;
	struct kube_source *kube; /* --kube */
	struct admin *admin; /* operator ports (admin.h) */
	int pending;	     /* workload addresses not enrolled yet */
	char cert_problem[512]; /* last certificate problem logged */
};

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: ambientd [OPTIONS]              run the node tunnel\n"
		"       ambientd uninstall [OPTIONS]    remove everything ambientd installed for NODE\n"
		"\n"
		"Runs in the node's network namespace: captures the TCP traffic of the\n"
		"node's enrolled pods with eBPF (tc + sockops) and relays it through\n"
		"listeners on 15001 (outbound), 15006 (inbound) and 15008 (HBONE).\n"
		"Enrolled pods are the config's workloads whose `node` is NODE.\n"
		"Operator ports like ztunnel's: 15020 metrics, 15021 readiness,\n"
		"15000 admin (localhost; /config_dump, /logging, /quitquitquit,\n"
		"/connections). See docs/operations.md.\n"
		"\nOptions:\n");
	cli_print_options(f, options);
	fprintf(f,
		"\nExamples:\n"
		"  ambientd --node node1 --config /etc/ambientd/config.yaml\n"
		"  nsenter --net=/run/netns/node1 ambientd -n node1 -c mesh.yaml --exclude-inbound-port 22\n"
		"  ambientd --node node1 --config mesh.yaml --access-log json --drain-timeout 30\n"
		"  curl -s http://127.0.0.1:15020/metrics | grep istio_tcp\n"
		"  curl -s -XPOST http://127.0.0.1:15000/quitquitquit\n"
		"  ambientd uninstall --node node1\n"
		"  bpftool map dump pinned /sys/fs/bpf/ambientd/node1/amb_pods\n");
}

static int find_cgroup2(char *out, size_t len)
{
	FILE *f = fopen("/proc/self/mounts", "re");
	char dev[256], dir[PATH_MAX], type[64];
	int err = -ENOENT;

	if (!f)
		return -errno;
	while (fscanf(f, "%255s %4095s %63s %*s %*d %*d\n", dev, dir, type) == 3) {
		if (strcmp(type, "cgroup2") == 0) {
			snprintf(out, len, "%s", dir);
			err = 0;
			break;
		}
	}
	fclose(f);
	return err;
}

static int handle_opt(int key, const char *arg, void *ctx)
{
	struct opts *o = ctx;
	uint64_t v;

	switch (key) {
	case OPT_NODE:
		if (!bpfctl_node_name_valid(arg)) {
			fprintf(stderr, "ambientd: --node %s: use 1-63 of [A-Za-z0-9._-]\n", arg);
			return -1;
		}
		snprintf(o->node, sizeof(o->node), "%s", arg);
		return 0;
	case OPT_CONFIG:
		o->config = arg;
		return 0;
	case OPT_BPFFS:
		o->bpffs = arg;
		return 0;
	case OPT_CGROUP:
		snprintf(o->cgroup, sizeof(o->cgroup), "%s", arg);
		return 0;
	case OPT_EXCL_PORT:
		if (o->n_excl_ports == MAX_EXCLUDES || cli_parse_u64(arg, 1, 65535, &v)) {
			fprintf(stderr, "ambientd: --exclude-port %s: expected a port 1..65535 (at most %d)\n",
				arg, MAX_EXCLUDES);
			return -1;
		}
		o->excl_ports[o->n_excl_ports++] = (uint16_t)v;
		return 0;
	case OPT_EXCL_IN_PORT:
		if (o->n_excl_in_ports == MAX_EXCLUDES || cli_parse_u64(arg, 1, 65535, &v)) {
			fprintf(stderr, "ambientd: --exclude-inbound-port %s: expected a port 1..65535 (at most %d)\n",
				arg, MAX_EXCLUDES);
			return -1;
		}
		o->excl_in_ports[o->n_excl_in_ports++] = (uint16_t)v;
		return 0;
	case OPT_EXCL_CIDR: {
		struct bpfctl_cidr *c = &o->excl_nets[o->n_excl_nets];

		if (o->n_excl_nets == MAX_EXCLUDES ||
		    cli_parse_cidr(arg, &c->addr, &c->prefixlen)) {
			fprintf(stderr, "ambientd: --exclude-cidr %s: expected an IPv4 CIDR like 198.18.0.0/15\n", arg);
			return -1;
		}
		o->n_excl_nets++;
		return 0;
	}
	case OPT_WORKERS:
		if (cli_parse_u64(arg, 1, 64, &v)) {
			fprintf(stderr, "ambientd: --workers %s: expected 1..64\n", arg);
			return -1;
		}
		o->workers = (int)v;
		return 0;
	case OPT_BUF:
		if (cli_parse_u64(arg, 4096, 16 << 20, &v)) {
			fprintf(stderr, "ambientd: --buffer-size %s: expected 4096..16777216\n", arg);
			return -1;
		}
		o->buf_size = v;
		return 0;
	case OPT_LOG:
		if (log_level_parse(arg, &log_threshold)) {
			fprintf(stderr, "ambientd: --log-level %s: expected error|warn|info|debug\n", arg);
			return -1;
		}
		return 0;
	case OPT_CA_DIR:
		o->ca_dir = arg;
		return 0;
	case OPT_STATE_DIR:
		snprintf(o->state_dir, sizeof(o->state_dir), "%s", arg);
		return 0;
	case OPT_TRUST_DOMAIN:
		if (!*arg || strchr(arg, '/')) {
			fprintf(stderr, "ambientd: --trust-domain %s: expected a name like cluster.local\n", arg);
			return -1;
		}
		o->trust_domain = arg;
		return 0;
	case OPT_CERT_TTL:
		if (cli_parse_u64(arg, 10, 366 * 86400, &v)) {
			fprintf(stderr, "ambientd: --cert-ttl %s: expected 10..31622400 seconds\n", arg);
			return -1;
		}
		o->cert_ttl = (unsigned)v;
		return 0;
	case OPT_CONNECT_TIMEOUT:
		if (cli_parse_u64(arg, 100, 600000, &v)) {
			fprintf(stderr, "ambientd: --connect-timeout %s: expected 100..600000 ms\n", arg);
			return -1;
		}
		o->connect_timeout_ms = (unsigned)v;
		return 0;
	case OPT_PENDING_MAX:
	case OPT_PENDING_PER_SOURCE:
	case OPT_HS_MAX:
	case OPT_HS_PER_SOURCE: {
		static const struct {
			int key;
			const char *name;
			size_t off;
		} budgets[] = {
			{ OPT_PENDING_MAX, "pending-max", offsetof(struct opts, pending_max) },
			{ OPT_PENDING_PER_SOURCE, "pending-per-source", offsetof(struct opts, pending_per_source) },
			{ OPT_HS_MAX, "handshake-max", offsetof(struct opts, hs_max) },
			{ OPT_HS_PER_SOURCE, "handshake-per-source", offsetof(struct opts, hs_per_source) },
		};

		for (size_t i = 0; i < sizeof(budgets) / sizeof(budgets[0]); i++) {
			if (budgets[i].key != key)
				continue;
			if (cli_parse_u64(arg, 1, 1000000, &v)) {
				fprintf(stderr, "ambientd: --%s %s: expected 1..1000000\n",
					budgets[i].name, arg);
				return -1;
			}
			*(unsigned *)((char *)o + budgets[i].off) = (unsigned)v;
		}
		return 0;
	}
	case OPT_LB:
		if (strcmp(arg, "least-request") == 0) {
			o->lb.algo = LB_P2C;
		} else if (strcmp(arg, "round-robin") == 0) {
			o->lb.algo = LB_ROUND_ROBIN;
		} else {
			fprintf(stderr, "ambientd: --load-balancing %s: expected least-request or round-robin\n", arg);
			return -1;
		}
		return 0;
	case OPT_OUTLIER_FAILURES:
		if (cli_parse_u64(arg, 0, 1000, &v)) {
			fprintf(stderr, "ambientd: --outlier-failures %s: expected 0..1000\n", arg);
			return -1;
		}
		o->lb.outlier_failures = (unsigned)v;
		return 0;
	case OPT_OUTLIER_EJECTION:
		if (cli_parse_u64(arg, 100, LB_DEFAULT_MAX_EJECTION_MS, &v)) {
			fprintf(stderr, "ambientd: --outlier-ejection %s: expected 100..%d ms\n", arg,
				LB_DEFAULT_MAX_EJECTION_MS);
			return -1;
		}
		o->lb.base_ejection_ms = v;
		return 0;
	case OPT_SERVICE_CIDR: {
		struct bpfctl_cidr *c = &o->svc_nets[o->n_svc_nets];

		if (o->n_svc_nets == MAX_EXCLUDES ||
		    cli_parse_cidr(arg, &c->addr, &c->prefixlen)) {
			fprintf(stderr, "ambientd: --service-cidr %s: expected an IPv4 CIDR like 198.18.100.0/24\n", arg);
			return -1;
		}
		o->n_svc_nets++;
		return 0;
	}
	case OPT_KUBE:
		o->kube = true;
		return 0;
	case OPT_KUBE_SERVER:
		o->kube_server = arg;
		return 0;
	case OPT_KUBE_TOKEN:
		o->kube_token = arg;
		return 0;
	case OPT_KUBE_CA:
		o->kube_ca = arg;
		return 0;
	case OPT_CNI_SOCKET:
		o->cni_socket = arg;
		return 0;
	case OPT_PROC_SYS:
		sysctl_set_root(arg);
		return 0;
	case OPT_METRICS_ADDR:
	case OPT_READY_ADDR:
	case OPT_ADMIN_ADDR: {
		char *ip = key == OPT_METRICS_ADDR ? o->admin.metrics_ip :
			   key == OPT_READY_ADDR ? o->admin.ready_ip : o->admin.admin_ip;
		uint16_t *port = key == OPT_METRICS_ADDR ? &o->admin.metrics_port :
				 key == OPT_READY_ADDR ? &o->admin.ready_port :
							 &o->admin.admin_port;

		if (cli_parse_hostport(arg, ip, port)) {
			fprintf(stderr, "ambientd: %s: expected IPv4:PORT (like 127.0.0.1:15000) or off\n",
				arg);
			return -1;
		}
		/* The admin API can stop the daemon: never off the node. */
		if (key == OPT_ADMIN_ADDR && *port && strncmp(ip, "127.", 4) != 0) {
			fprintf(stderr, "ambientd: --admin-addr %s: the admin API binds to a "
				"loopback address (127.0.0.0/8) only\n", arg);
			return -1;
		}
		return 0;
	}
	case OPT_ACCESS_LOG:
		if (access_log_parse(arg, &access_log_format)) {
			fprintf(stderr, "ambientd: --access-log %s: expected text, json or off\n", arg);
			return -1;
		}
		return 0;
	case OPT_DRAIN_TIMEOUT:
		if (cli_parse_u64(arg, 0, 3600, &v)) {
			fprintf(stderr, "ambientd: --drain-timeout %s: expected 0..3600 seconds\n", arg);
			return -1;
		}
		o->admin.drain_ms = (unsigned)v * 1000;
		return 0;
	case OPT_HBONE_IDLE:
		if (cli_parse_u64(arg, 1, 86400, &v)) {
			fprintf(stderr, "ambientd: --hbone-idle-timeout %s: expected 1..86400 seconds\n", arg);
			return -1;
		}
		o->hbone_idle_ms = (unsigned)v * 1000;
		return 0;
	case OPT_UNINSTALL_ON_EXIT:
		o->uninstall_on_exit = true;
		return 0;
	case OPT_IPV6_PASSTHROUGH:
		o->ipv6_passthrough = true;
		return 0;
	case OPT_VERSION:
		printf("ambientd %s\n", AMBIENTD_VERSION);
		exit(0);
	case OPT_HELP:
		usage(stdout);
		exit(0);
	}
	return -1;
}

/* ---- config ---------------------------------------------------------- */

static int read_file(const char *path, char **buf, size_t *len)
{
	FILE *f = fopen(path, "re");
	size_t cap = 65536, n = 0;
	char *b;

	if (!f)
		return -errno;
	b = malloc(cap);
	while (b) {
		size_t r = fread(b + n, 1, cap - n, f);

		n += r;
		if (n < cap)
			break;
		if (cap >= (64u << 20)) { /* a config this big is a mistake */
			free(b);
			fclose(f);
			return -EFBIG;
		}
		char *nb = realloc(b, cap * 2);

		if (!nb) {
			free(b);
			b = NULL;
			break;
		}
		b = nb;
		cap *= 2;
	}
	fclose(f);
	if (!b)
		return -ENOMEM;
	*buf = b;
	*len = n;
	return 0;
}

/*
 * The config file's bytes (and, with --kube, the API model appended) with
 * their checksum. Returns 1 when they are what is in force already (buf
 * freed), 0 with *buf to parse, or -errno with a sentence in err.
 */
static int read_config(struct control *c, char **buf, size_t *len, uLong *crc,
		       char *err, size_t errlen)
{
	int rc;

	*buf = NULL;
	*len = 0;
	if (c->kube && !kube_source_synced(c->kube))
		return 1; /* an incomplete model never replaces the last one */
	rc = c->o.config ? read_file(c->o.config, buf, len) : 0;
	if (rc) {
		snprintf(err, errlen, "%s: %s", c->o.config, strerror(-rc));
		return rc;
	}
	if (!*buf && !(*buf = strdup("")))
		return -ENOMEM;
	if (c->kube) {
		rc = kube_source_append_yaml(c->kube, buf, len);
		if (rc) {
			free(*buf);
			snprintf(err, errlen, "kube model: %s", strerror(-rc));
			return rc;
		}
	}
	*crc = crc32(crc32(0L, Z_NULL, 0), (const Bytef *)*buf, *len);
	/* In force already, or refused already (one file rewrite comes as
	 * several inotify events: parse and complain once). */
	if ((c->d.state && *crc == c->cfg_crc) || (c->cfg_bad && *crc == c->cfg_bad_crc)) {
		free(*buf);
		return 1;
	}
	return 0;
}

static const char *config_name(const struct control *c)
{
	return c->o.config ? c->o.config : "kube";
}

/* Load the config at start, on this thread; on success publish it. */
static int load_config(struct control *c, char *err, size_t errlen)
{
	struct state *st = NULL;
	char *buf;
	size_t len;
	uLong crc;
	int rc = read_config(c, &buf, &len, &crc, err, errlen);

	if (rc)
		return rc < 0 ? rc : 0;
	rc = config_load_buffer(config_name(c), buf, len, &st, err, errlen);
	free(buf);
	if (rc)
		return rc;
	c->cfg_crc = crc;
	daemon_state_publish(&c->d, st);
	return 0;
}

/* ---- enrollment ------------------------------------------------------- */

struct reconcile {
	struct control *c;
	const struct state *st;
	int pending; /* workloads we could not enroll yet */
	uint32_t stale[AMB_MAX_PODS];
	size_t n_stale;
};

static const char *ip4(uint32_t addr, char *buf)
{
	return inet_ntop(AF_INET, &addr, buf, INET_ADDRSTRLEN);
}

static int enroll_workload(const struct workload *wl, void *arg)
{
	struct reconcile *r = arg;
	char ip[INET_ADDRSTRLEN];

	for (size_t i = 0; i < wl->n_ips; i++) {
		struct rtnl_link link;
		int ifindex, err;

		err = rtnl_route_oif(wl->ips_be[i], &ifindex);
		if (!err)
			err = rtnl_get_link(ifindex, &link);
		if (!err && strcmp(link.kind, "veth") != 0) {
			/* A pod address routed out of the uplink is not on this
			 * node: capturing that interface would take the node
			 * down with it. */
			log_warn("workload %s/%s (%s): route leads to %s, not a "
				 "pod veth; not enrolled", wl->namespace,
				 wl->name ? wl->name : "?", ip4(wl->ips_be[i], ip),
				 link.name);
			r->pending++;
			continue;
		}
		if (!err)
			err = bpfctl_enroll(&r->c->b, wl->ips_be[i], ifindex,
					    AMB_POD_F_CONFIG);
		if (err) {
			log_warn("workload %s/%s (%s): not enrolled yet: %s",
				 wl->namespace, wl->name ? wl->name : "?",
				 ip4(wl->ips_be[i], ip), strerror(-err));
			r->pending++;
		}
	}
	return 0;
}

static bool wanted_here(const struct state *st, const char *node, uint32_t addr)
{
	const struct workload *wl = state_workload_by_ip(st, addr);

	return wl && wl->node && strcmp(wl->node, node) == 0;
}

static int find_stale(uint32_t addr, const struct amb_pod *pod, void *arg)
{
	struct reconcile *r = arg;

	if ((pod->flags & AMB_POD_F_CONFIG) &&
	    !wanted_here(r->st, r->c->o.node, addr) && r->n_stale < AMB_MAX_PODS)
		r->stale[r->n_stale++] = addr;
	return 0;
}

/* ---- policy fast path ------------------------------------------------- */

struct polsync {
	struct control *c;
	const struct state *st;
	struct polmap pm;
	int err;
};

static int polsync_pod(uint32_t addr, const struct amb_pod *pod, void *arg)
{
	struct polsync *s = arg;
	const struct workload *wl = state_workload_by_ip(s->st, addr);
	char ip[INET_ADDRSTRLEN];
	int err;

	/* Policy governs mesh workloads of this node only (as in worker.c). */
	if (!wl || wl->protocol != WL_PROTO_HBONE || !wl->node ||
	    strcmp(wl->node, s->c->o.node) != 0)
		return 0;
	err = polmap_compile(s->st, wl, addr, s->c->pol_ids, &s->pm);
	if (err == -ENOSPC && !s->c->pol_full_warned) {
		s->c->pol_full_warned = true;
		log_warn("policy fast path: all %d policy slots used; %s is "
			 "enforced in userspace only", AMB_MAX_POL_IDS,
			 ip4(addr, ip));
	} else if (err && err != -ENOSPC) {
		s->err = err;
		return 1;
	}
	return 0;
}

/*
 * Compile the plaintext-caller decisions of every enrolled pod into amb_pol
 * (polmap.h). Userspace decides the same way on 15006 whatever happens
 * here, so a failure only costs the kernel shortcut.
 */
static void policy_sync(struct control *c, const struct state *st)
{
	struct polsync s = { .c = c, .st = st };
	int err;

	if (!c->pol_ids)
		return;
	bpfctl_for_each_pod(&c->b, polsync_pod, &s);
	err = s.err ? s.err :
		      polmap_sync(c->b.pol_fd, c->b.pol_names_fd, c->pol_ids,
				  &s.pm);
	if (err && s.pm.n <= AMB_MAX_POL_ENTRIES)
		log_warn("policy fast path: updating amb_pol: %s", strerror(-err));
	else if (err)
		log_warn("policy fast path: %zu entries exceed amb_pol's %d; "
			 "some plaintext denials happen in userspace only",
			 s.pm.n, AMB_MAX_POL_ENTRIES);
	else
		log_debug("policy fast path: %zu amb_pol entries", s.pm.n);
	polmap_free(&s.pm);
}

/*
 * Local mesh workloads get their certificates when the config arrives (as
 * ztunnel fetches them), not at their first connection; a problem is logged
 * once and reported by readiness until it is fixed.
 */
static void issue_certificates(struct control *c, const struct state *st)
{
	char why[sizeof(c->cert_problem)];

	if (!config_check_certificates(&c->d, st, why, sizeof(why))) {
		c->cert_problem[0] = '\0';
		return;
	}
	if (strcmp(why, c->cert_problem) != 0)
		log_warn("%s", why);
	snprintf(c->cert_problem, sizeof(c->cert_problem), "%s", why);
}

/* Make the kernel's enrollment match the snapshot; returns pending count. */
static int reconcile(struct control *c)
{
	struct reconcile *r = calloc(1, sizeof(*r));
	struct state *st = daemon_state_get(&c->d);
	char ip[INET_ADDRSTRLEN];
	int pending;

	if (c->kube && !kube_source_synced(c->kube)) {
		/* Until the API server is listed, keep what the kernel has
		 * (pods enrolled by the previous run stay captured). */
		free(r);
		state_unref(st);
		return 0;
	}
	if (!r) {
		state_unref(st);
		return 1;
	}
	r->c = c;
	r->st = st;
	bpfctl_for_each_pod(&c->b, find_stale, r);
	for (size_t i = 0; i < r->n_stale; i++) {
		struct amb_pod_key key = { .addr = r->stale[i] };
		struct amb_pod pod;

		if (bpf_map_lookup_elem(c->b.pods_fd, &key, &pod) < 0)
			continue;
		if (pod.flags & AMB_POD_F_MANUAL) {
			pod.flags &= ~AMB_POD_F_CONFIG;
			bpf_map_update_elem(c->b.pods_fd, &key, &pod, BPF_EXIST);
			continue;
		}
		if (bpfctl_unenroll(&c->b, r->stale[i]) == 0)
			log_info("unenrolled %s (no longer a workload of %s)",
				 ip4(r->stale[i], ip), c->o.node);
	}
	state_workloads_on_node(st, c->o.node, enroll_workload, r);
	bpfctl_attach_inbound_all(&c->b);
	policy_sync(c, st);
	pending = r->pending;
	c->pending = pending;
	issue_certificates(c, st);
	free(r);
	state_unref(st);
	if (c->kube)
		kube_source_sync_annotations(c->kube);
	return pending;
}

static void schedule_retry(struct control *c, int pending)
{
	if (pending && !loop_timer_armed(&c->retry_timer))
		loop_timer_arm(c->loop, &c->retry_timer, RETRY_ENROLL_MS);
}

static void on_retry(struct loop *l, struct loop_timer *t)
{
	struct control *c = t->arg;

	schedule_retry(c, reconcile(c));
}

/*
 * Reloads parse on a thread of their own: a large file takes seconds
 * (50,000 workloads: ~2 s), and the control thread must keep answering
 * readiness, metrics, ambientctl and certificate rotation meanwhile. One
 * load at a time; a change that arrives during a load is read after it.
 */
struct cfg_job {
	struct control *c;
	char *buf;
	size_t len;
	uLong crc;
	struct state *st; /* result */
	int rc;
	char err[1024];
};

static void *cfg_thread(void *arg)
{
	struct cfg_job *j = arg;
	uint64_t one = 1;

	j->rc = config_load_buffer(config_name(j->c), j->buf, j->len, &j->st,
				   j->err, sizeof(j->err));
	free(j->buf);
	j->buf = NULL;
	if (write(j->c->cfg_efd, &one, sizeof(one)) < 0)
		log_error("config loader: cannot wake the control thread: %s",
			  strerror(errno));
	return NULL;
}

static void on_reload(struct loop *l, struct loop_timer *t);

/* The loader thread finished: publish its result or keep the old config. */
static void on_config_loaded(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct control *c = io->arg;
	struct cfg_job *j = c->cfg_job;
	uint64_t n;

	if (read(io->fd, &n, sizeof(n)) != sizeof(n) || !j)
		return;
	pthread_join(c->cfg_thread, NULL);
	c->cfg_job = NULL;
	if (j->rc) {
		atomic_fetch_add(&c->d.config_rejected, 1);
		log_warn("config rejected, keeping the previous one: %s", j->err);
		c->cfg_bad = true;
		c->cfg_bad_crc = j->crc;
	} else {
		c->cfg_bad = false;
		c->cfg_crc = j->crc;
		daemon_state_publish(&c->d, j->st);
		log_info("config reloaded from %s (generation %llu)", config_name(c),
			 (unsigned long long)atomic_load(&c->d.state_gen));
		schedule_retry(c, reconcile(c));
	}
	free(j);
	if (c->cfg_again) {
		c->cfg_again = false;
		on_reload(l, &c->reload_timer);
	}
}

/* Start loading the current file on the loader thread, unless unchanged. */
static void start_reload(struct control *c)
{
	struct cfg_job *j;
	int rc;

	if (c->cfg_job) {
		c->cfg_again = true;
		return;
	}
	j = calloc(1, sizeof(*j));
	if (!j) {
		log_warn("config reload: out of memory; keeping the previous one");
		return;
	}
	j->c = c;
	rc = read_config(c, &j->buf, &j->len, &j->crc, j->err, sizeof(j->err));
	if (rc) {
		if (rc < 0) {
			atomic_fetch_add(&c->d.config_rejected, 1);
			log_warn("config rejected, keeping the previous one: %s", j->err);
		}
		free(j);
		return;
	}
	c->cfg_job = j;
	if (pthread_create(&c->cfg_thread, NULL, cfg_thread, j)) {
		log_warn("config reload: cannot start the loader thread; keeping the previous one");
		free(j->buf);
		free(j);
		c->cfg_job = NULL;
	}
}

static void on_reload(struct loop *l, struct loop_timer *t)
{
	start_reload(t->arg);
}

static void on_inotify(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct control *c = io->arg;
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));

	/* Any change in the directory may be ours (editors and ConfigMaps
	 * swap files by rename); the content check skips no-ops. */
	while (read(io->fd, buf, sizeof(buf)) > 0)
		;
	loop_timer_arm(l, &c->reload_timer, RELOAD_DEBOUNCE_MS);
}

/* The node's own addresses: pods reach them (health probes, DNS on the
 * node) without the tunnel in between. */
static size_t node_addresses(struct bpfctl_cidr *out, size_t max)
{
	struct ifaddrs *ifa, *i;
	size_t n = 0;

	if (getifaddrs(&ifa) < 0)
		return 0;
	for (i = ifa; i && n < max; i = i->ifa_next) {
		if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET)
			continue;
		out[n].addr = ((struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr;
		out[n].prefixlen = 32;
		n++;
	}
	freeifaddrs(ifa);
	return n;
}

/* What the capture listeners must never dial (daemon.h local_addrs). */
static void refresh_local_addrs(struct control *c)
{
	struct bpfctl_cidr nets[DAEMON_MAX_LOCAL_ADDRS];
	uint32_t addrs[DAEMON_MAX_LOCAL_ADDRS];
	size_t n = node_addresses(nets, DAEMON_MAX_LOCAL_ADDRS);

	for (size_t i = 0; i < n; i++)
		addrs[i] = nets[i].addr;
	local_addrs_set(&c->d.local, addrs, n);
}

static void on_links(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct control *c = io->arg;

	rtnl_monitor_drain(io->fd);
	refresh_local_addrs(c);
	/* New veths or an uplink: attach; pods waiting for their veth: enroll. */
	if (!loop_timer_armed(&c->retry_timer))
		loop_timer_arm(l, &c->retry_timer, 50);
}

static int on_sock_event(void *ctx, void *data, size_t len)
{
	struct control *c = ctx;
	const struct amb_sock_event *ev = data;
	char a[INET_ADDRSTRLEN], b[INET_ADDRSTRLEN];

	if (len < sizeof(*ev) || ev->type > AMB_SE_CLOSE)
		return 0;
	c->sock_events[ev->type]++;
	admin_sock_event(c->admin, ev);
	log_debug("sockops: %s %s:%u -> %s:%u state %u->%u srtt=%uus retrans=%u",
		  ev->type == AMB_SE_OPEN ? "open" :
		  ev->type == AMB_SE_STATE ? "state" :
		  ev->type == AMB_SE_RETRANS ? "retrans" : "close",
		  ip4(ev->saddr, a), ev->sport, ip4(ev->daddr, b), ev->dport,
		  ev->old_state, ev->new_state, ev->srtt_us, ev->total_retrans);
	return 0;
}

static void on_ring(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct control *c = io->arg;

	ring_buffer__consume(c->ring);
}

/* sockops submits without waking us (bpf_shared.h): drain on a timer. */
static void on_ring_timer(struct loop *l, struct loop_timer *t)
{
	struct control *c = t->arg;

	ring_buffer__consume(c->ring);
	loop_timer_arm(l, t, AMB_SOCK_EV_DRAIN_MS);
}

/*
 * Hand memory back after a burst. Freed data-path buffers and connection
 * state stay in the workers' malloc arenas (glibc only trims the top of a
 * heap, and the workers keep up to 1 MiB there on purpose): after 9,000
 * pending handshakes closed, RSS stayed at 400 MB. When the arenas hold
 * more than TRIM_SLACK free, malloc_trim() returns every free page to the
 * kernel; below it, nothing is done (mallinfo2 is a cheap walk).
 */
#define TRIM_EVERY_MS 5000
#define TRIM_SLACK (16u << 20)

static void on_trim(struct loop *l, struct loop_timer *t)
{
	struct mallinfo2 mi = mallinfo2();

	if (mi.fordblks > TRIM_SLACK) {
		malloc_trim(0);
		log_debug("memory: returned free heap (%zu KiB free in arenas)",
			  mi.fordblks >> 10);
	}
	loop_timer_arm(l, t, TRIM_EVERY_MS);
}

/* Re-issue leaves past half their lifetime; live connections keep theirs. */
static void on_rotate(struct loop *l, struct loop_timer *t)
{
	struct control *c = t->arg;
	int n = certstore_rotate_due(c->d.certs, time(NULL));

	if (n > 0)
		log_info("rotated %d workload certificate%s", n, n == 1 ? "" : "s");
	loop_timer_arm(l, t, 1000);
}

/* The mesh root (created on first start) and the leaf store. */
static int setup_identity(struct control *c)
{
	char dir[PATH_MAX], err[512];
	const char *ca_dir = c->o.ca_dir;
	int rc;

	if (!ca_dir) {
		snprintf(dir, sizeof(dir), "%.*s/ca", PATH_MAX - 8, c->o.state_dir);
		ca_dir = dir;
	}
	rc = mkdir_p(ca_dir, 0700);
	if (rc) {
		log_error("cannot create the CA directory %s: %s", ca_dir, strerror(-rc));
		return rc;
	}
	rc = ca_open(ca_dir, true, &c->d.ca, err, sizeof(err));
	if (rc) {
		log_error("mesh root CA: %s", err);
		return rc;
	}
	c->d.certs = certstore_new(c->d.ca, c->o.cert_ttl);
	if (!c->d.certs)
		return -ENOMEM;
	log_info("mesh root CA from %s; trust domain %s; certificates live %u s",
		 ca_dir, c->d.trust_domain, c->o.cert_ttl);
	return 0;
}

static void on_signal(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct control *c = io->arg;
	struct signalfd_siginfo si;

	while (read(io->fd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGHUP) {
			c->cfg_crc ^= 1; /* force: reload even if unchanged */
			c->cfg_bad = false;
			loop_timer_arm(l, &c->reload_timer, 0);
			continue;
		}
		log_info("signal %u: shutting down", si.ssi_signo);
		loop_stop(l);
	}
}

/* ---- control socket -------------------------------------------------- */

struct cert_list {
	FILE *out;
	int n;
	bool table;
};

static void list_cert(const struct leaf *leaf, enum leaf_state st, void *arg)
{
	struct cert_list *l = arg;
	char nb[32], na[32];
	struct tm tm;

	if (l->table) {
		strftime(nb, sizeof(nb), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&leaf->not_before, &tm));
		strftime(na, sizeof(na), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&leaf->not_after, &tm));
		/* istioctl ztunnel-config certificates' columns. */
		fprintf(l->out, "%-52s %-5s %-10s %-10s %-32s %-20s %s\n", leaf->identity,
			"Leaf", st == LEAF_ACTIVE ? "Available" : st == LEAF_ROTATED ?
			"Rotated" : "Expired", st == LEAF_EXPIRED ? "false" : "true",
			leaf->serial, na, nb);
		return;
	}
	fprintf(l->out, "%s{\"identity\":\"%s\",\"serial\":\"%s\","
		"\"not_before\":%lld,\"not_after\":%lld,\"state\":\"%s\"}",
		l->n++ ? "," : "", leaf->identity, leaf->serial,
		(long long)leaf->not_before, (long long)leaf->not_after,
		leaf_state_name(st));
}

/* SYNs the kernel refused under this slot name (0 if it never did). */
static uint64_t kernel_refused(struct control *c, const char *name)
{
	struct amb_counter sum;

	for (uint32_t id = 1; id < AMB_MAX_POL_IDS; id++) {
		const char *n = polmap_id_name(c->pol_ids, id);

		if (n && strcmp(n, name) == 0)
			return bpfctl_pol_hits(&c->b, id, &sum) ? 0 : sum.packets;
	}
	return 0;
}

/* JSON string body: escapes quotes, backslashes and control characters. */
static void json_str(FILE *out, const char *s)
{
	fputc('"', out);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fprintf(out, "\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			fprintf(out, "\\u%04x", *s);
		else
			fputc(*s, out);
	}
	fputc('"', out);
}

/*
 * `policies`: every policy with scope, action and hits (userspace decisions
 * and kernel refusals), then the decisions no single policy owns.
 */
static void ctl_policies(struct control *c, FILE *out, bool table)
{
	struct state *st = daemon_state_get(&c->d);
	struct authz_stats *a = &c->d.authz;
	char key[600], strict[700];

	if (table)
		fprintf(out, "%-40s %-16s %-6s %-7s %8s %8s %8s %8s %8s\n",
			"POLICY", "SCOPE", "ACTION", "DRYRUN", "ALLOWED",
			"DENIED", "DRY_ALLOW", "DRY_DENY", "KERNEL");
	else
		fputs("{\"policies\":[", out);
	for (size_t i = 0; i < st->n_policies; i++) {
		const struct policy *p = &st->policies[i];
		const struct policy_hits *h = st->policy_hits ? &st->policy_hits[i] : NULL;
		unsigned long long al = h ? atomic_load(&h->allow) : 0,
				   de = h ? atomic_load(&h->deny) : 0,
				   da = h ? atomic_load(&h->dry_allow) : 0,
				   dd = h ? atomic_load(&h->dry_deny) : 0,
				   kr;

		snprintf(key, sizeof(key), "%s/%s", p->namespace, p->name);
		kr = kernel_refused(c, key);
		if (table) {
			fprintf(out, "%-40s %-16s %-6s %-7s %8llu %8llu %8llu %8llu %8llu\n",
				key, pol_scope_name(p->scope),
				pol_action_name(p->action),
				p->dry_run ? "true" : "false", al, de, da, dd, kr);
			continue;
		}
		fputs(i ? ",{\"name\":" : "{\"name\":", out);
		json_str(out, p->name);
		fputs(",\"namespace\":", out);
		json_str(out, p->namespace);
		fprintf(out, ",\"scope\":\"%s\",\"action\":\"%s\",\"dryRun\":%s,"
			"\"allowed\":%llu,\"denied\":%llu,\"dryRunAllowed\":%llu,"
			"\"dryRunDenied\":%llu,\"kernelRefused\":%llu}",
			pol_scope_name(p->scope), pol_action_name(p->action),
			p->dry_run ? "true" : "false", al, de, da, dd, kr);
	}
	/* Kernel refusals under STRICT peer authentications. */
	{
		unsigned long long strict_k = 0;

		for (size_t i = 0; i < st->n_peer_auths; i++) {
			snprintf(strict, sizeof(strict), "(STRICT) %s/%s",
				 st->peer_auths[i].namespace,
				 st->peer_auths[i].name);
			strict_k += kernel_refused(c, strict);
		}
		snprintf(key, sizeof(key), "(%s)",
			 authz_reason_name(AUTHZ_R_NO_ALLOW_MATCHED));
		if (table) {
			fprintf(out, "%-40s %-16s %-6s %-7s %8s %8llu %8s %8s %8llu\n",
				key, "-", "DENY", "-", "-",
				(unsigned long long)atomic_load(&a->denied_no_allow_match),
				"-", "-", (unsigned long long)kernel_refused(c, key));
			fprintf(out, "%-40s %-16s %-6s %-7s %8s %8llu %8s %8s %8llu\n",
				"(STRICT mTLS, plaintext caller)", "-", "DENY", "-", "-",
				(unsigned long long)atomic_load(&a->denied_strict),
				"-", "-", strict_k);
			state_unref(st);
			return;
		}
		fprintf(out, "],\"defaultDeny\":{\"denied\":%llu,\"kernelRefused\":%llu},"
			"\"strictDeny\":{\"denied\":%llu,\"kernelRefused\":%llu},"
			"\"allowed\":%llu,\"denied\":%llu,\"closedOnChange\":%llu}\n",
			(unsigned long long)atomic_load(&a->denied_no_allow_match),
			(unsigned long long)kernel_refused(c, key),
			(unsigned long long)atomic_load(&a->denied_strict), strict_k,
			(unsigned long long)atomic_load(&a->allowed),
			(unsigned long long)atomic_load(&a->denied),
			(unsigned long long)atomic_load(&a->closed_on_change));
	}
	state_unref(st);
}

/*
 * `check SRC DST:PORT`: what the destination's tunnel would decide now.
 * SRC is an IP (a mesh workload's IP stands for its identity, any other
 * address for a plaintext caller), "spiffe://..." or "spiffe://...@IP".
 */
static int ctl_check(struct control *c, const char *args, FILE *out)
{
	char src[SPIFFE_ID_MAX + 32], dst[64], idbuf[SPIFFE_ID_MAX], *at, *colon;
	struct state *st;
	const struct workload *swl, *dwl;
	struct authz_conn q = { .src_prefix_len = 32 };
	struct in_addr a;
	unsigned long port;
	char *text;
	size_t need;

	if (sscanf(args, "%2079s %63s", src, dst) != 2) {
		fprintf(out, "error: expected: check SRC DST_IP:PORT\n");
		return 0;
	}
	colon = strrchr(dst, ':');
	port = colon ? strtoul(colon + 1, NULL, 10) : 0;
	if (!colon || port == 0 || port > 65535 ||
	    (*colon = '\0', inet_pton(AF_INET, dst, &a) != 1)) {
		fprintf(out, "error: destination '%s' is not IPv4:PORT\n", dst);
		return 0;
	}
	q.dst_be = a.s_addr;
	q.dst_port = (uint16_t)port;
	at = strchr(src, '@');
	if (strncmp(src, "spiffe://", 9) == 0) {
		q.identity = src;
		if (at) {
			*at = '\0';
			if (inet_pton(AF_INET, at + 1, &a) != 1) {
				fprintf(out, "error: '%s' is not an IPv4 address\n", at + 1);
				return 0;
			}
			q.src_be = a.s_addr;
		}
	} else if (inet_pton(AF_INET, src, &a) == 1) {
		q.src_be = a.s_addr;
	} else {
		fprintf(out, "error: source '%s' is neither an IPv4 address nor a "
			"SPIFFE ID\n", src);
		return 0;
	}
	st = daemon_state_get(&c->d);
	if (!q.identity) {
		swl = state_workload_by_ip(st, q.src_be);
		if (swl && swl->protocol == WL_PROTO_HBONE &&
		    !workload_identity(swl, idbuf, sizeof(idbuf)))
			q.identity = idbuf;
	}
	dwl = state_workload_by_ip(st, q.dst_be);
	if (!dwl || dwl->protocol != WL_PROTO_HBONE) {
		fprintf(out, "%s is not a mesh (HBONE) workload: no policy applies\n",
			dst);
		state_unref(st);
		return 0;
	}
	need = authz_explain(st, dwl, &q, NULL, 0) + 1;
	text = malloc(need);
	if (text) {
		authz_explain(st, dwl, &q, text, need);
		fputs(text, out);
		free(text);
	}
	state_unref(st);
	return 0;
}

static const char *ep_health(const struct endpoint *ep, uint64_t now_ms)
{
	if (ep->lb && atomic_load(&ep->lb->ejected_until_ms) > now_ms)
		return "Ejected";
	if (!ep->workload)
		return "NoWorkload";
	if (ep->status != WL_STATUS_HEALTHY ||
	    ep->workload->status != WL_STATUS_HEALTHY)
		return "Unhealthy";
	return "Healthy";
}

/*
 * `services`: VIPs, ports and endpoints with health, ejection and live
 * connection counts (the counters the workers balance with).
 */
static void ctl_services(struct control *c, FILE *out, bool table)
{
	struct state *st = daemon_state_get(&c->d);
	uint64_t now = loop_now_ms(c->loop);
	char ip[INET_ADDRSTRLEN];

	if (table)
		fprintf(out, "%-36s %-18s %-14s %-32s %-16s %-10s %6s %8s %6s\n",
			"SERVICE", "VIP", "PORTS", "ENDPOINT", "ADDRESS", "HEALTH",
			"ACTIVE", "PICKS", "FAILS");
	else
		fputs("{\"services\":[", out);
	for (size_t i = 0; i < st->n_services; i++) {
		const struct service *svc = &st->services[i];
		const struct lb_svc *ls = svc->lb;
		char name[600], vip[32] = "-", ports[128] = "", *p = ports;

		snprintf(name, sizeof(name), "%s/%s", svc->namespace, svc->hostname);
		if (svc->n_vips)
			ip4(svc->vips[0].addr_be, vip);
		for (size_t k = 0; k < svc->n_ports && p < ports + sizeof(ports) - 16; k++)
			p += sprintf(p, "%s%u>%u", k ? "," : "", svc->ports[k].service_port,
				     svc->ports[k].target_port);
		if (!table) {
			fprintf(out, "%s{\"name\":", i ? "," : "");
			json_str(out, svc->hostname);
			fputs(",\"namespace\":", out);
			json_str(out, svc->namespace);
			fputs(",\"vips\":[", out);
			for (size_t k = 0; k < svc->n_vips; k++)
				fprintf(out, "%s\"%s\"", k ? "," : "",
					ip4(svc->vips[k].addr_be, ip));
			fputs("],\"ports\":{", out);
			for (size_t k = 0; k < svc->n_ports; k++)
				fprintf(out, "%s\"%u\":%u", k ? "," : "",
					svc->ports[k].service_port,
					svc->ports[k].target_port);
			fprintf(out, "},\"maxConnections\":%u,\"active\":%d,"
				"\"connections\":%llu,\"retries\":%llu,\"ejections\":%llu,"
				"\"refusedNoEndpoint\":%llu,\"refusedLimit\":%llu,"
				"\"failed\":%llu,\"endpoints\":[",
				svc->max_connections, ls ? atomic_load(&ls->active) : 0,
				ls ? (unsigned long long)atomic_load(&ls->connections) : 0ull,
				ls ? (unsigned long long)atomic_load(&ls->retries) : 0ull,
				ls ? (unsigned long long)atomic_load(&ls->ejections) : 0ull,
				ls ? (unsigned long long)atomic_load(&ls->refused_no_endpoint) : 0ull,
				ls ? (unsigned long long)atomic_load(&ls->refused_limit) : 0ull,
				ls ? (unsigned long long)atomic_load(&ls->failed) : 0ull);
		}
		for (size_t j = 0; j < svc->n_endpoints; j++) {
			const struct endpoint *ep = &svc->endpoints[j];
			const struct lb_ep *le = ep->lb;
			const char *addr = ep->workload && ep->workload->n_ips ?
						   ip4(ep->workload->ips_be[0], ip) :
						   "-";
			int active = le ? atomic_load(&le->active) : 0;
			unsigned long long picks = le ? atomic_load(&le->picks) : 0,
					   fails = le ? atomic_load(&le->connect_failures) : 0;

			if (table) {
				fprintf(out, "%-36s %-18s %-14s %-32s %-16s %-10s %6d %8llu %6llu\n",
					j ? "" : name, j ? "" : vip, j ? "" : ports,
					ep->workload_uid ? ep->workload_uid : "?",
					addr, ep_health(ep, now), active, picks, fails);
				continue;
			}
			fprintf(out, "%s{\"uid\":", j ? "," : "");
			json_str(out, ep->workload_uid ? ep->workload_uid : "");
			fprintf(out, ",\"address\":\"%s\",\"node\":", addr);
			json_str(out, ep->workload && ep->workload->node ? ep->workload->node : "");
			fprintf(out, ",\"health\":\"%s\",\"active\":%d,\"picks\":%llu,"
				"\"connectFailures\":%llu,\"ejections\":%u}",
				ep_health(ep, now), active, picks, fails,
				le ? atomic_load(&le->ejections) : 0);
		}
		if (table && !svc->n_endpoints)
			fprintf(out, "%-36s %-18s %-14s %-32s\n", name, vip, ports,
				"(no endpoints)");
		if (!table)
			fputs("]}", out);
	}
	if (!table)
		fprintf(out, "],\"unknownVipRefused\":%llu}\n",
			(unsigned long long)atomic_load(&c->d.unknown_vip_refused));
	state_unref(st);
}

static int ctl_handle(const char *cmd, FILE *out, void *arg)
{
	struct control *c = arg;

	if (strcmp(cmd, "services") == 0 || strcmp(cmd, "services table") == 0) {
		ctl_services(c, out, cmd[8] != '\0');
		return 0;
	}

	if (strcmp(cmd, "policies") == 0 || strcmp(cmd, "policies table") == 0) {
		ctl_policies(c, out, cmd[8] != '\0');
		return 0;
	}
	if (strncmp(cmd, "check ", 6) == 0)
		return ctl_check(c, cmd + 6, out);

	if (strcmp(cmd, "certificates") == 0) {
		struct cert_list l = { .out = out };

		fputc('[', out);
		certstore_for_each(c->d.certs, time(NULL), list_cert, &l);
		fputs("]\n", out);
		return 0;
	}
	if (strcmp(cmd, "certificates table") == 0) {
		struct cert_list l = { .out = out, .table = true };

		X509 *root = ca_root_cert(c->d.ca);
		struct tm tb = { 0 }, ta = { 0 };
		char nb[32], na[32];

		fprintf(out, "%-52s %-5s %-10s %-10s %-32s %-20s %s\n", "CERTIFICATE NAME",
			"TYPE", "STATUS", "VALID CERT", "SERIAL NUMBER", "NOT AFTER",
			"NOT BEFORE");
		certstore_for_each(c->d.certs, time(NULL), list_cert, &l);
		ASN1_TIME_to_tm(X509_get0_notBefore(root), &tb);
		ASN1_TIME_to_tm(X509_get0_notAfter(root), &ta);
		strftime(nb, sizeof(nb), "%Y-%m-%dT%H:%M:%SZ", &tb);
		strftime(na, sizeof(na), "%Y-%m-%dT%H:%M:%SZ", &ta);
		fprintf(out, "%-52s %-5s %-10s %-10s %-32s %-20s %s\n", "ambientd root CA",
			"Root", "Available", "true", "-", na, nb);
		return 0;
	}
	if (strcmp(cmd, "kube") == 0 && c->kube) {
		kube_source_status(c->kube, out);
		return 0;
	}
	if (strcmp(cmd, "status") == 0) {
		struct state *st = daemon_state_get(&c->d);

		fprintf(out,
			"{\"node\":\"%s\",\"version\":\"%s\",\"config\":\"%s\","
			"\"config_generation\":%llu,\"workloads\":%zu,"
			"\"workers\":%d,\"connections\":%zu,"
			"\"sockops_events\":{\"open\":%llu,\"state\":%llu,"
			"\"retrans\":%llu,\"close\":%llu},"
			"\"hbone\":{\"pool_connections\":%llu,\"outbound_streams\":%llu,"
			"\"inbound_connections\":%llu,\"inbound_streams\":%llu,"
			"\"handshake_failures\":%llu}}\n",
			c->o.node, AMBIENTD_VERSION, c->o.config ? c->o.config : "",
			(unsigned long long)st->generation, st->n_workloads,
			c->d.n_workers, workers_live_connections(&c->d),
			(unsigned long long)c->sock_events[AMB_SE_OPEN],
			(unsigned long long)c->sock_events[AMB_SE_STATE],
			(unsigned long long)c->sock_events[AMB_SE_RETRANS],
			(unsigned long long)c->sock_events[AMB_SE_CLOSE],
			(unsigned long long)atomic_load(&c->d.hbone.pool_connections),
			(unsigned long long)atomic_load(&c->d.hbone.outbound_streams),
			(unsigned long long)atomic_load(&c->d.hbone.inbound_connections),
			(unsigned long long)atomic_load(&c->d.hbone.inbound_streams),
			(unsigned long long)atomic_load(&c->d.hbone.handshake_failures));
		state_unref(st);
		return 0;
	}
	return -ENOENT;
}

static void on_ctl(struct loop *l, struct loop_io *io, uint32_t events)
{
	ctlsock_serve_one(io->fd, ctl_handle, io->arg);
}

/* ---- setup ------------------------------------------------------------ */

static int setup_watch(struct control *c)
{
	char tmp[PATH_MAX];
	const char *slash;
	int wd;

	snprintf(tmp, sizeof(tmp), "%s", c->o.config);
	slash = strrchr(tmp, '/');
	if (slash) {
		snprintf(c->cfg_base, sizeof(c->cfg_base), "%s", slash + 1);
		tmp[slash - tmp] = '\0';
		snprintf(c->cfg_dir, sizeof(c->cfg_dir), "%s", tmp[0] ? tmp : "/");
	} else {
		snprintf(c->cfg_base, sizeof(c->cfg_base), "%s", tmp);
		snprintf(c->cfg_dir, sizeof(c->cfg_dir), ".");
	}
	c->ino_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (c->ino_fd < 0)
		return -errno;
	wd = inotify_add_watch(c->ino_fd, c->cfg_dir,
			       IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE |
				       IN_DELETE | IN_MODIFY);
	if (wd < 0)
		return -errno;
	loop_io_init(&c->ino_io, c->ino_fd, on_inotify, c);
	return loop_io_update(c->loop, &c->ino_io, EPOLLIN);
}

/* ---- Kubernetes (--kube) ------------------------------------------------- */

static void on_kube_changed(void *arg)
{
	struct control *c = arg;

	on_reload(c->loop, &c->reload_timer);
}

static bool kube_enrolled(uint32_t addr_be, void *arg)
{
	struct control *c = arg;
	struct amb_pod_key key = { .addr = addr_be };
	struct amb_pod pod;

	return bpf_map_lookup_elem(c->b.pods_fd, &key, &pod) == 0;
}

static int start_kube(struct control *c)
{
	struct kube_opts ko = {
		.node = c->o.node,
		.trust_domain = c->o.trust_domain,
		.cluster_domain = "cluster.local",
		.cni_socket = c->o.cni_socket,
	};
	struct kube_hooks hooks = { on_kube_changed, kube_enrolled, c };
	char err[512];

	if (kube_conf_init(&ko.conf, c->o.kube_server, c->o.kube_token, c->o.kube_ca,
			   err, sizeof(err))) {
		log_error("--kube: %s", err);
		return -EINVAL;
	}
	c->kube = kube_source_start(&ko, c->loop, &hooks, err, sizeof(err));
	if (!c->kube) {
		log_error("--kube: %s", err);
		return -EINVAL;
	}
	return 0;
}

static void stop_loop(void *loop)
{
	loop_stop(loop);
}

static int run(struct control *c)
{
	struct bpfctl_cidr nets[MAX_EXCLUDES * 2];
	size_t n_nets;
	char err[1024];
	sigset_t mask;
	int fd, rc, ret = 1;

	log_set_tag(c->o.node);
	access_log_set_node(c->o.node);
	rc = load_config(c, err, sizeof(err));
	if (rc) {
		log_error("config rejected: %s", err);
		fprintf(stderr, "ambientd: config rejected: %s\n", err);
		return 1;
	}
	if (setup_identity(c))
		goto out_identity;
	if (bpfctl_ensure_bpffs(c->o.bpffs))
		goto out_identity;
	if (bpfctl_load_opts(&c->b, c->o.bpffs, c->o.node,
			     &(struct bpfctl_load_opts){
				     .ipv6_passthrough = c->o.ipv6_passthrough }))
		goto out_identity;
	c->pol_ids = polmap_ids_new(c->b.pol_names_fd);
	if (!c->pol_ids)
		goto out;
	if (bpfctl_setup_routing())
		goto out;
	memcpy(nets, c->o.excl_nets, c->o.n_excl_nets * sizeof(nets[0]));
	n_nets = c->o.n_excl_nets +
		 node_addresses(nets + c->o.n_excl_nets, MAX_EXCLUDES);
	rc = bpfctl_set_exclusions(&c->b, c->o.excl_ports, c->o.n_excl_ports,
				   nets, n_nets, c->o.excl_in_ports,
				   c->o.n_excl_in_ports);
	if (rc) {
		log_error("setting exclusions: %s", strerror(-rc));
		goto out;
	}
	/*
	 * Programs loaded and pinned, routing set: from here on only the
	 * capabilities in privs.c. Before any thread exists, because
	 * capabilities are per thread and threads inherit them.
	 */
	if (privs_drop())
		goto out;

	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	/* Blocked before the workers start so only the signalfd sees them. */
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);

	refresh_local_addrs(c);
	/* Listeners before enrollment: a pod is never captured into nothing. */
	if (workers_start(&c->d, c->o.workers) < 0)
		goto out_workers;

	c->loop = loop_new();
	if (!c->loop)
		goto out_workers;
	loop_timer_init(&c->reload_timer, on_reload, c);
	c->cfg_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (c->cfg_efd < 0) {
		log_error("eventfd: %s", strerror(errno));
		goto out_loop;
	}
	loop_io_init(&c->cfg_io, c->cfg_efd, on_config_loaded, c);
	loop_io_update(c->loop, &c->cfg_io, EPOLLIN);
	loop_timer_init(&c->retry_timer, on_retry, c);
	loop_timer_init(&c->rotate_timer, on_rotate, c);
	loop_timer_arm(c->loop, &c->rotate_timer, 1000);
	loop_timer_init(&c->trim_timer, on_trim, c);
	loop_timer_arm(c->loop, &c->trim_timer, TRIM_EVERY_MS);

	fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	loop_io_init(&c->sig_io, fd, on_signal, c);
	loop_io_update(c->loop, &c->sig_io, EPOLLIN);
	rc = c->o.config ? setup_watch(c) : 0;
	if (rc)
		log_warn("cannot watch %s for changes (%s); send SIGHUP to reload",
			 c->o.config, strerror(-rc));
	if (c->o.kube && start_kube(c))
		goto out_loop;
	fd = rtnl_monitor_open();
	if (fd >= 0) {
		loop_io_init(&c->rtnl_io, fd, on_links, c);
		loop_io_update(c->loop, &c->rtnl_io, EPOLLIN);
	}
	c->ring = ring_buffer__new(c->b.sock_ev_fd, on_sock_event, c, NULL);
	if (c->ring) {
		loop_io_init(&c->ring_io, ring_buffer__epoll_fd(c->ring), on_ring, c);
		loop_timer_init(&c->ring_timer, on_ring_timer, c);
		loop_timer_arm(c->loop, &c->ring_timer, AMB_SOCK_EV_DRAIN_MS);
		loop_io_update(c->loop, &c->ring_io, EPOLLIN);
	}

	ctlsock_path(c->ctl_path, sizeof(c->ctl_path), c->o.node);
	fd = ctlsock_listen(c->ctl_path);
	if (fd >= 0) {
		loop_io_init(&c->ctl_io, fd, on_ctl, c);
		loop_io_update(c->loop, &c->ctl_io, EPOLLIN);
	} else {
		log_warn("control socket %s: %s (ambientctl status/certificates "
			 "will not reach this daemon)", c->ctl_path, strerror(-fd));
		c->ctl_path[0] = '\0';
	}

	{
		struct admin_ctx actx = { .d = &c->d, .b = &c->b, .loop = c->loop,
					  .pending = &c->pending, .stop = stop_loop,
					  .stop_arg = c->loop };

		if (admin_start(&actx, &c->o.admin, &c->admin))
			goto out_loop;
	}
	schedule_retry(c, reconcile(c));
	rc = bpfctl_attach_cgroup(&c->b, c->o.cgroup);
	if (rc) {
		log_error("attaching sockops to %s: %s", c->o.cgroup, strerror(-rc));
		goto out_loop;
	}
	log_info("ready: node %s, %d workers, listening on %d/%d/%d, pins in %s",
		 c->o.node, c->d.n_workers, AMB_PORT_OUTBOUND, AMB_PORT_INBOUND,
		 AMB_PORT_HBONE, c->b.pin_dir);
	loop_run(c->loop);
	ret = 0;
out_loop:
	if (c->cfg_job) { /* a reload in flight: let it finish, drop it */
		pthread_join(c->cfg_thread, NULL);
		state_unref(c->cfg_job->st);
		free(c->cfg_job);
		c->cfg_job = NULL;
	}
	if (c->cfg_efd > 0)
		close(c->cfg_efd);
	kube_source_stop(c->kube);
	c->kube = NULL;
	admin_free(c->admin);
	c->admin = NULL;
	if (c->ctl_path[0])
		unlink(c->ctl_path);
	ring_buffer__free(c->ring);
	loop_free(c->loop);
out_workers:
	workers_stop(&c->d);
out:
	polmap_ids_free(c->pol_ids);
	bpfctl_close(&c->b);
	if (c->o.uninstall_on_exit) {
		log_info("uninstalling node %s", c->o.node);
		if (bpfctl_uninstall(c->o.bpffs, c->o.node))
			ret = 1;
	} else if (ret == 0) {
		log_info("stopped; programs stay attached (enrolled pods fail "
			 "closed until ambientd runs again)");
	}
out_identity: /* nothing loaded or pinned yet */
	state_unref(c->d.state);
	certstore_free(c->d.certs);
	ca_free(c->d.ca);
	return ret;
}

/* Linux >= major.minor? */
static bool kernel_at_least(int major, int minor)
{
	struct utsname u;
	int ma = 0, mi = 0;

	if (uname(&u) < 0 || sscanf(u.release, "%d.%d", &ma, &mi) != 2)
		return false;
	return ma > major || (ma == major && mi >= minor);
}

/* Parses the command line, then runs the daemon or the uninstall
 * subcommand. Returns the process exit status; c stays the caller's. */
static int start(struct control *c, int argc, char **argv)
{
	const char *env_node = getenv("NODE_NAME");
	struct rlimit rl;
	bool uninstall;
	int idx;

	c->o.bpffs = BPFCTL_DEFAULT_BPFFS;
	c->o.buf_size = 256 * 1024;
	c->o.trust_domain = "cluster.local";
	c->o.cert_ttl = CERTSTORE_DEFAULT_TTL;
	c->o.connect_timeout_ms = 10000;
	c->o.pending_max = DAEMON_DEFAULT_PENDING_MAX;
	c->o.pending_per_source = DAEMON_DEFAULT_PENDING_PER_SOURCE;
	c->o.hs_max = DAEMON_DEFAULT_HS_MAX;
	c->o.hs_per_source = DAEMON_DEFAULT_HS_PER_SOURCE;
	c->o.lb = (struct lb_opts){ .algo = LB_P2C,
				    .outlier_failures = LB_DEFAULT_OUTLIER_FAILURES,
				    .base_ejection_ms = LB_DEFAULT_BASE_EJECTION_MS,
				    .max_ejection_ms = LB_DEFAULT_MAX_EJECTION_MS };
	/* ztunnel's ports (DESIGN.md §6). */
	strcpy(c->o.admin.metrics_ip, "0.0.0.0");
	c->o.admin.metrics_port = 15020;
	strcpy(c->o.admin.ready_ip, "0.0.0.0");
	c->o.admin.ready_port = 15021;
	strcpy(c->o.admin.admin_ip, "127.0.0.1");
	c->o.admin.admin_port = 15000;
	c->o.admin.drain_ms = ADMIN_DEFAULT_DRAIN_MS;
	c->o.workers = (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (c->o.workers < 1)
		c->o.workers = 1;
	if (c->o.workers > 64)
		c->o.workers = 64;
	if (env_node && *env_node)
		snprintf(c->o.node, sizeof(c->o.node), "%s", env_node);
	else
		gethostname(c->o.node, sizeof(c->o.node) - 1);
	log_route_libbpf();

	idx = cli_parse(argc, argv, options, handle_opt, &c->o);
	if (idx < 0) {
		fprintf(stderr, "Try 'ambientd --help'.\n");
		return 2;
	}
	uninstall = idx < argc && strcmp(argv[idx], "uninstall") == 0;
	if (uninstall) {
		/* Options may come after the subcommand too. */
		int rest = cli_parse(argc - idx, argv + idx, options, handle_opt, &c->o);

		if (rest < 0)
			return 2;
		idx += rest;
	}
	if (idx < argc) {
		fprintf(stderr, "ambientd: unexpected argument '%s'. Try 'ambientd --help'.\n",
			argv[idx]);
		return 2;
	}
	if (!bpfctl_node_name_valid(c->o.node)) {
		fprintf(stderr, "ambientd: node name '%s' is not usable; pass --node\n", c->o.node);
		return 2;
	}
	log_set_tag(c->o.node);
	if (uninstall) {
		if (bpfctl_ensure_bpffs(c->o.bpffs))
			return 1;
		return bpfctl_uninstall(c->o.bpffs, c->o.node) ? 1 : 0;
	}
	if (!c->o.config && !c->o.kube) {
		fprintf(stderr, "ambientd: --config FILE is required (the local config, ztunnel schema)\n");
		return 2;
	}
	if (!c->o.cgroup[0] && find_cgroup2(c->o.cgroup, sizeof(c->o.cgroup))) {
		fprintf(stderr, "ambientd: no cgroup v2 mount found; pass --cgroup DIR\n");
		return 1;
	}
	/* Two fds per relayed connection: thousands of them. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	c->d.reuseport = kernel_at_least(6, 5);
	if (!c->d.reuseport && c->o.workers > 1) {
		log_warn("Linux < 6.5: bpf_sk_assign cannot target SO_REUSEPORT "
			 "listeners; running 1 worker instead of %d", c->o.workers);
		c->o.workers = 1;
	}
	c->d.node = c->o.node;
	c->d.relay_buf_size = c->o.buf_size;
	c->d.connect_timeout_ms = c->o.connect_timeout_ms;
	c->d.hbone_idle_timeout_ms = c->o.hbone_idle_ms;
	c->d.pending_max = c->o.pending_max;
	c->d.pending_per_source = c->o.pending_per_source;
	c->d.hs_max = c->o.hs_max;
	c->d.hs_per_source = c->o.hs_per_source;
	c->d.lb = c->o.lb;
	for (size_t i = 0; i < c->o.n_svc_nets; i++)
		c->d.svc_nets[i] = (struct ip_cidr){ c->o.svc_nets[i].addr,
						     c->o.svc_nets[i].prefixlen };
	c->d.n_svc_nets = c->o.n_svc_nets;
	c->d.trust_domain = c->o.trust_domain;
	if (!c->o.state_dir[0])
		snprintf(c->o.state_dir, sizeof(c->o.state_dir),
			 "/var/lib/ambientd/%s", c->o.node);
	pthread_mutex_init(&c->d.state_lock, NULL);
	return run(c);
}

int main(int argc, char **argv)
{
	struct control *c = calloc(1, sizeof(*c));
	int ret;

	if (!c)
		return 1;
	ret = start(c, argc, argv);
	/* Freed rather than left to exit(): the sanitizer build's leak check
	 * then reports whatever run() failed to release. */
	free(c);
	return ret;
}
