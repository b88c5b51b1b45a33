// SPDX-License-Identifier: Apache-2.0
/*
 * Operator ports (see admin.h): the metrics page, readiness, the admin API,
 * the drain, and the per-pod TCP health fed by sockops events.
 */
#include "admin.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "bpfctl.h"
#include "bpfinfo.h"
#include "configdump.h"
#include "daemon.h"
#include "httpd.h"
#include "lb.h"
#include "log.h"
#include "loop.h"
#include "prom.h"
#include "state.h"
#include "telemetry.h"
#include "worker.h"

#define TCP_ESTABLISHED 1
#define TCP_CLOSE_WAIT	8
/* Per-pod TCP health slots (open addressing by pod address). */
#define TH_SLOTS (2 * AMB_MAX_PODS)

/* Smoothed RTT buckets, seconds. */
static const double rtt_bounds[] = {0.00005, 0.0001, 0.00025, 0.0005, 0.001,
				    0.0025,  0.005,  0.01,    0.025,  0.05,
				    0.1,     0.25,   0.5,     1};
#define TH_BUCKETS (sizeof(rtt_bounds) / sizeof(rtt_bounds[0]))

/* TCP health of one enrolled pod's application sockets. */
struct th_pod {
	uint32_t addr; /* 0: free slot */
	uint64_t opened, closed, resets, retrans;
	uint64_t rtt[TH_BUCKETS + 1];
	double rtt_sum;
};

struct admin {
	struct admin_ctx c;
	struct admin_opts o;
	struct httpd *metrics, *ready, *api;
	bool draining;
	uint64_t drain_deadline;
	struct loop_timer drain_timer;
	struct th_pod *th;
	uint64_t th_overflow;
	time_t started;
};

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- TCP health ------------------------------------------------------------
 */

static struct th_pod *th_slot(struct admin *a, uint32_t addr)
{
	uint32_t h = (addr * 2654435761u) & (TH_SLOTS - 1);

	for (unsigned i = 0; i < TH_SLOTS; i++, h = (h + 1) & (TH_SLOTS - 1)) {
		if (a->th[h].addr == addr)
			return &a->th[h];
		if (!a->th[h].addr) {
			a->th[h].addr = addr;
			return &a->th[h];
		}
	}
	return NULL;
}

void admin_sock_event(struct admin *a, const struct amb_sock_event *ev)
{
	struct th_pod *p;

	if (!a || !ev->saddr)
		return;
	p = th_slot(a, ev->saddr);
	if (!p) {
		a->th_overflow++;
		return;
	}
	switch (ev->type) {
	case AMB_SE_OPEN:
		p->opened++;
		break;
	case AMB_SE_RETRANS:
		p->retrans++;
		break;
	case AMB_SE_CLOSE: {
		double rtt = ev->srtt_us / 1e6;
		unsigned b = 0;

		p->closed++;
		/* Straight from a synchronized state to CLOSE: a reset was
		 * sent or received (a FIN handshake passes through
		 * FIN_WAIT/LAST_ACK instead). */
		if (ev->old_state == TCP_ESTABLISHED ||
		    ev->old_state == TCP_CLOSE_WAIT)
			p->resets++;
		if (!ev->srtt_us)
			break; /* no RTT sample on this socket */
		while (b < TH_BUCKETS && rtt > rtt_bounds[b])
			b++;
		p->rtt[b]++;
		p->rtt_sum += rtt;
		break;
	}
	default:
		break;
	}
}

static void render_tcp_health(struct admin *a, const struct state *st,
			      struct sbuf *o)
{
	static const struct {
		const char *name, *help;
		size_t off;
	} fams[] = {
	    {"ambientd_tcp_connections_opened_total",
	     "TCP connections of enrolled pods' applications established "
	     "(sockops)",
	     offsetof(struct th_pod, opened)},
	    {"ambientd_tcp_connections_closed_total",
	     "TCP connections of enrolled pods' applications closed (sockops)",
	     offsetof(struct th_pod, closed)},
	    {"ambientd_tcp_resets_total",
	     "Application TCP connections that ended in a reset (went straight "
	     "from ESTABLISHED or CLOSE_WAIT to CLOSE)",
	     offsetof(struct th_pod, resets)},
	    {"ambientd_tcp_retransmits_total",
	     "Segments the enrolled pods' applications retransmitted (sockops "
	     "RETRANS callbacks)",
	     offsetof(struct th_pod, retrans)},
	};
	struct sbuf *lbl = calloc(TH_SLOTS, sizeof(*lbl));

	if (!lbl) {
		o->failed = true;
		return;
	}
	for (unsigned i = 0; i < TH_SLOTS; i++) {
		const struct th_pod *p = &a->th[i];
		const struct workload *wl;
		char ip[INET_ADDRSTRLEN];
		bool first = true;

		if (!p->addr)
			continue;
		wl = state_workload_by_ip(st, p->addr);
		sbuf_init(&lbl[i], 4096);
		inet_ntop(AF_INET, &p->addr, ip, sizeof(ip));
		prom_label(&lbl[i], &first, "namespace",
			   wl ? wl->namespace : NULL);
		prom_label(
		    &lbl[i], &first, "workload",
		    wl ? (wl->workload_name ? wl->workload_name : wl->name)
		       : NULL);
		prom_label(&lbl[i], &first, "pod", wl ? wl->name : NULL);
		prom_label(&lbl[i], &first, "pod_ip", ip);
	}
	for (size_t f = 0; f < sizeof(fams) / sizeof(fams[0]); f++) {
		prom_family(o, fams[f].name, PROM_COUNTER, fams[f].help);
		for (unsigned i = 0; i < TH_SLOTS; i++)
			if (a->th[i].addr)
				prom_sample_u64(
				    o, fams[f].name, lbl[i].p, NULL,
				    *(const uint64_t *)((const char *)&a
							    ->th[i] +
							fams[f].off));
	}
	prom_family(o, "ambientd_tcp_srtt_seconds", PROM_HISTOGRAM,
		    "Smoothed RTT of enrolled pods' application TCP "
		    "connections, taken when they close (sockops)");
	for (unsigned i = 0; i < TH_SLOTS; i++)
		if (a->th[i].addr)
			prom_histogram(o, "ambientd_tcp_srtt_seconds", lbl[i].p,
				       rtt_bounds, a->th[i].rtt, TH_BUCKETS,
				       a->th[i].rtt_sum);
	for (unsigned i = 0; i < TH_SLOTS; i++)
		sbuf_free(&lbl[i]);
	free(lbl);
}

/* ---- metrics page ----------------------------------------------------------
 */

static void process_metrics(struct admin *a, struct sbuf *o)
{
	long page = sysconf(_SC_PAGESIZE);
	unsigned long long vsz = 0, rss = 0;
	struct rusage ru;
	struct rlimit rl;
	struct dirent *de;
	int fds = 0;
	DIR *d = opendir("/proc/self/fd");
	FILE *f = fopen("/proc/self/statm", "re");

	if (d) {
		while ((de = readdir(d)))
			fds += de->d_name[0] != '.';
		closedir(d);
		fds--; /* the directory's own fd */
	}
	if (f) {
		if (fscanf(f, "%llu %llu", &vsz, &rss) != 2)
			vsz = rss = 0;
		fclose(f);
	}
	getrusage(RUSAGE_SELF, &ru);
	prom_family(o, "process_open_fds", PROM_GAUGE,
		    "Number of open file descriptors");
	prom_sample_u64(o, "process_open_fds", NULL, NULL, (uint64_t)fds);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		prom_family(o, "process_max_fds", PROM_GAUGE,
			    "Maximum number of open file descriptors");
		prom_sample_u64(o, "process_max_fds", NULL, NULL, rl.rlim_cur);
	}
	prom_family(o, "process_resident_memory_bytes", PROM_GAUGE,
		    "Resident memory size in bytes");
	prom_sample_u64(o, "process_resident_memory_bytes", NULL, NULL,
			rss * (uint64_t)page);
	prom_family(o, "process_virtual_memory_bytes", PROM_GAUGE,
		    "Virtual memory size in bytes");
	prom_sample_u64(o, "process_virtual_memory_bytes", NULL, NULL,
			vsz * (uint64_t)page);
	prom_family(o, "process_cpu_seconds_total", PROM_COUNTER,
		    "Total user and system CPU time spent in seconds");
	prom_sample_f64(o, "process_cpu_seconds_total", NULL, NULL,
			ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
			    (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
	prom_family(o, "process_start_time_seconds", PROM_GAUGE,
		    "Start time of the process since unix epoch in seconds");
	prom_sample_u64(o, "process_start_time_seconds", NULL, NULL,
			(uint64_t)a->started);
}

static void bpf_metrics(struct admin *a, struct sbuf *o)
{
	struct amb_counter cnt[AMB_R_MAX];
	char l[128];

	if (bpfctl_read_counters(a->c.b, cnt))
		return;
	prom_family(o, "ambientd_bpf_verdict_packets_total", PROM_COUNTER,
		    "Packets of enrolled pods' traffic by tc program verdict "
		    "and reason (per-CPU map amb_counters, summed)");
	for (unsigned r = 0; r < AMB_R_MAX; r++) {
		const char *n = bpfctl_reason_name(r);

		snprintf(l, sizeof(l), "verdict=\"%s\",reason=\"%s\"",
			 bpfinfo_verdict_of(n), n);
		prom_sample_u64(o, "ambientd_bpf_verdict_packets_total", l,
				NULL, cnt[r].packets);
	}
	prom_family(
	    o, "ambientd_bpf_verdict_bytes_total", PROM_COUNTER,
	    "Bytes of enrolled pods' traffic by tc program verdict and reason");
	for (unsigned r = 0; r < AMB_R_MAX; r++) {
		const char *n = bpfctl_reason_name(r);

		snprintf(l, sizeof(l), "verdict=\"%s\",reason=\"%s\"",
			 bpfinfo_verdict_of(n), n);
		prom_sample_u64(o, "ambientd_bpf_verdict_bytes_total", l, NULL,
				cnt[r].bytes);
	}
	prom_family(
	    o, "ambientd_bpf_policy_refused_total", PROM_COUNTER,
	    "Plaintext SYNs the kernel refused by policy slot (amb_pol_hits)");
	for (uint32_t id = 1; a->c.b->pol_hits_fd >= 0 && id < AMB_MAX_POL_IDS;
	     id++) {
		char name[AMB_POL_NAME_LEN];
		struct amb_counter sum;
		struct sbuf lb;
		bool first = true;

		if (bpfctl_pol_name(a->c.b, id, name, sizeof(name)) ||
		    bpfctl_pol_hits(a->c.b, id, &sum))
			continue;
		sbuf_init(&lb, 1024);
		prom_label(&lb, &first, "policy", name);
		prom_sample_u64(o, "ambientd_bpf_policy_refused_total", lb.p,
				NULL, sum.packets);
		sbuf_free(&lb);
	}
}

/* HBONE abuse counters (struct hb_stats), one series per label set. */
static void hbone_abuse_metrics(const struct hb_stats *h, struct sbuf *o)
{
	static const char *const sides[2] = {"client", "server"};
	char l[96];

	prom_family(o, "ambientd_hbone_protocol_errors_total", PROM_COUNTER,
		    "GOAWAY and RST_STREAM frames sent with this HTTP/2 error "
		    "code (not NO_ERROR, CANCEL, CONNECT_ERROR); side: ours");
	for (int side = 0; side < 2; side++)
		for (uint32_t code = 0; code < HB_H2_ERROR_CODES; code++) {
			if (!hb_h2_error_counted(code))
				continue;
			snprintf(l, sizeof(l), "code=\"%s\",side=\"%s\"",
				 hb_h2_error_name(code), sides[side]);
			prom_sample_u64(
			    o, "ambientd_hbone_protocol_errors_total", l, NULL,
			    atomic_load(&h->errors[side][code]));
		}
	prom_family(o, "ambientd_hbone_deadlines_total", PROM_COUNTER,
		    "HBONE connections closed because the peer missed a "
		    "deadline");
	for (int side = 0; side < 2; side++)
		for (int dl = 0; dl < HB_DL__COUNT; dl++) {
			snprintf(l, sizeof(l), "deadline=\"%s\",side=\"%s\"",
				 hb_deadline_name(dl), sides[side]);
			prom_sample_u64(o, "ambientd_hbone_deadlines_total", l,
					NULL,
					atomic_load(&h->deadlines[side][dl]));
		}
	prom_family(o, "ambientd_hbone_bad_requests_total", PROM_COUNTER,
		    "CONNECT requests on 15008 answered 400 (malformed)");
	prom_sample_u64(o, "ambientd_hbone_bad_requests_total", NULL, NULL,
			atomic_load(&h->bad_requests));
	prom_family(o, "ambientd_hbone_limits_total", PROM_COUNTER,
		    "Times an HBONE peer ran into a limit");
	for (int side = 0; side < 2; side++)
		for (int lim = 0; lim < HB_LIM__COUNT; lim++) {
			snprintf(l, sizeof(l), "limit=\"%s\",side=\"%s\"",
				 hb_limit_name(lim), sides[side]);
			prom_sample_u64(o, "ambientd_hbone_limits_total", l,
					NULL,
					atomic_load(&h->limits[side][lim]));
		}
}

static void daemon_metrics(struct admin *a, const struct state *st,
			   struct sbuf *o)
{
	struct daemon *d = a->c.d;
	const struct {
		const char *name, *help;
		atomic_uint_fast64_t *v;
	} c[] = {
	    {"ambientd_hbone_pool_connections_total",
	     "Outbound HBONE (mTLS + HTTP/2) connections created",
	     &d->hbone.pool_connections},
	    {"ambientd_hbone_outbound_streams_total", "CONNECT streams sent",
	     &d->hbone.outbound_streams},
	    {"ambientd_hbone_inbound_connections_total",
	     "Inbound HBONE connections that passed the mTLS handshake",
	     &d->hbone.inbound_connections},
	    {"ambientd_hbone_inbound_streams_total", "CONNECT streams received",
	     &d->hbone.inbound_streams},
	    {"ambientd_hbone_handshake_failures_total",
	     "mTLS handshakes that failed or presented the wrong identity",
	     &d->hbone.handshake_failures},
	    {"ambientd_hbone_handshake_timeouts_total",
	     "Connections to 15008 reset before their handshake began (no TLS bytes, or no handshake slot, in time)",
	     &d->hbone.handshake_timeouts},
	    {"ambientd_hbone_handshake_slot_timeouts_total",
	     "Of those, connections that waited for a handshake slot in vain",
	     &d->hbone.handshake_slot_timeouts},
	    {"ambientd_config_rejected_total",
	     "Config reloads refused (the previous config stays in force)",
	     &d->config_rejected},
	    {"ambientd_authz_closed_on_change_total",
	     "Live connections closed because a new policy denies them",
	     &d->authz.closed_on_change},
	};

	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		prom_family(o, c[i].name, PROM_COUNTER, c[i].help);
		prom_sample_u64(o, c[i].name, NULL, NULL, atomic_load(c[i].v));
	}
	hbone_abuse_metrics(&d->hbone.h2, o);
	prom_family(o, "ambientd_authz_decisions_total", PROM_COUNTER,
		    "Authorization decisions made in userspace");
	prom_sample_u64(o, "ambientd_authz_decisions_total",
			"decision=\"allow\"", NULL,
			atomic_load(&d->authz.allowed));
	prom_sample_u64(o, "ambientd_authz_decisions_total",
			"decision=\"deny\"", NULL,
			atomic_load(&d->authz.denied));
	prom_family(o, "ambientd_authz_policy_decisions_total", PROM_COUNTER,
		    "Authorization decisions by the policy that made them");
	for (size_t i = 0; st->policy_hits && i < st->n_policies; i++) {
		const struct policy_hits *h = &st->policy_hits[i];
		static const char *const kinds[] = {
		    "allow", "deny", "dry_run_allow", "dry_run_deny"};
		const atomic_uint_fast64_t *v[] = {&h->allow, &h->deny,
						   &h->dry_allow, &h->dry_deny};

		for (int k = 0; k < 4; k++) {
			struct sbuf lb;
			bool first = true;

			sbuf_init(&lb, 2048);
			prom_label(&lb, &first, "policy", st->policies[i].name);
			prom_label(&lb, &first, "namespace",
				   st->policies[i].namespace);
			prom_label(&lb, &first, "decision", kinds[k]);
			prom_sample_u64(o,
					"ambientd_authz_policy_decisions_total",
					lb.p, NULL, atomic_load(v[k]));
			sbuf_free(&lb);
		}
	}
	prom_family(o, "ambientd_config_generation", PROM_GAUGE,
		    "Generation of the config snapshot in force");
	prom_sample_u64(o, "ambientd_config_generation", NULL, NULL,
			st->generation);
	prom_family(o, "ambientd_workers", PROM_GAUGE, "Worker threads");
	prom_sample_u64(o, "ambientd_workers", NULL, NULL,
			(uint64_t)d->n_workers);
}

/* One sample labelled with a service (and maybe an endpoint, a reason). */
static void svc_sample(struct sbuf *o, const char *name, const struct service *svc,
		       const char *ep, const char *reason, uint64_t v)
{
	struct sbuf lb;
	bool first = true;

	sbuf_init(&lb, 512);
	prom_label(&lb, &first, "service", svc ? svc->hostname : NULL);
	prom_label(&lb, &first, "namespace", svc ? svc->namespace : NULL);
	if (ep)
		prom_label(&lb, &first, "endpoint", ep);
	if (reason)
		prom_label(&lb, &first, "reason", reason);
	prom_sample_u64(o, name, lb.p, NULL, v);
	sbuf_free(&lb);
}

/*
 * Load balancing per service (lb.h counters; cardinality bounded by the
 * config: one series per service, per endpoint, per refusal reason).
 */
static void service_metrics(struct admin *a, const struct state *st,
			    struct sbuf *o)
{
	static const struct {
		const char *name, *help;
		enum prom_type type;
	} fams[] = {
	    {"ambientd_service_connections_total",
	     "Connections to a service VIP that got an endpoint", PROM_COUNTER},
	    {"ambientd_service_retries_total",
	     "Connects retried on another endpoint after a failure or a 503",
	     PROM_COUNTER},
	    {"ambientd_service_ejections_total",
	     "Endpoints ejected after consecutive connect failures", PROM_COUNTER},
	    {"ambientd_service_failed_total",
	     "Service connections whose connect failed (after the retry)",
	     PROM_COUNTER},
	    {"ambientd_service_active_connections",
	     "Connections to the service open now", PROM_GAUGE},
	};
	uint64_t now = loop_now_ms(a->c.loop);

	for (size_t f = 0; f < sizeof(fams) / sizeof(fams[0]); f++) {
		prom_family(o, fams[f].name, fams[f].type, fams[f].help);
		for (size_t i = 0; i < st->n_services; i++) {
			const struct service *svc = &st->services[i];
			const struct lb_svc *l = svc->lb;
			uint64_t v = 0;

			if (l)
				v = f == 0 ? atomic_load(&l->connections) :
				    f == 1 ? atomic_load(&l->retries) :
				    f == 2 ? atomic_load(&l->ejections) :
				    f == 3 ? atomic_load(&l->failed) :
					     (uint64_t)(atomic_load(&l->active) > 0 ?
								atomic_load(&l->active) :
								0);
			svc_sample(o, fams[f].name, svc, NULL, NULL, v);
		}
	}
	prom_family(o, "ambientd_service_refused_total", PROM_COUNTER,
		    "Connections to service VIPs refused at connect, by reason");
	for (size_t i = 0; i < st->n_services; i++) {
		const struct service *svc = &st->services[i];
		const struct lb_svc *l = svc->lb;

		svc_sample(o, "ambientd_service_refused_total", svc, NULL,
			   "no_endpoint", l ? atomic_load(&l->refused_no_endpoint) : 0);
		svc_sample(o, "ambientd_service_refused_total", svc, NULL,
			   "connection_limit", l ? atomic_load(&l->refused_limit) : 0);
	}
	svc_sample(o, "ambientd_service_refused_total", NULL, NULL, "unknown_vip",
		   atomic_load(&a->c.d->unknown_vip_refused));
	prom_family(o, "ambientd_service_endpoint_active_connections", PROM_GAUGE,
		    "Connections open now per service endpoint");
	for (size_t i = 0; i < st->n_services; i++)
		for (size_t j = 0; j < st->services[i].n_endpoints; j++) {
			const struct endpoint *ep = &st->services[i].endpoints[j];
			int act = ep->lb ? atomic_load(&ep->lb->active) : 0;

			svc_sample(o, "ambientd_service_endpoint_active_connections",
				   &st->services[i], ep->workload_uid, NULL,
				   act > 0 ? (uint64_t)act : 0);
		}
	prom_family(o, "ambientd_service_endpoint_ejected", PROM_GAUGE,
		    "1 while the endpoint is ejected (outlier detection)");
	for (size_t i = 0; i < st->n_services; i++)
		for (size_t j = 0; j < st->services[i].n_endpoints; j++) {
			const struct endpoint *ep = &st->services[i].endpoints[j];

			svc_sample(o, "ambientd_service_endpoint_ejected",
				   &st->services[i], ep->workload_uid, NULL,
				   ep->lb && atomic_load(&ep->lb->ejected_until_ms) > now);
		}
}

/* Connections the listeners turned away, by listener and reason. */
static void listener_metrics(struct admin *a, struct sbuf *o)
{
	static const char fam[] = "ambientd_listener_refused_total";
	struct daemon *d = a->c.d;
	struct {
		const char *name;
		const struct httpd *h;
	} ops[] = {{"metrics", a->metrics}, {"readiness", a->ready}, {"admin", a->api}};
	char l[96];

	prom_family(o, fam, PROM_COUNTER,
		    "Connections or requests a listener refused, by reason");
	for (int k = 0; k < LISTEN_KINDS; k++) {
		uint64_t n[LREF_MAX] = {0}, fds = 0;

		for (int i = 0; i < d->n_workers; i++) {
			struct listener *ls = &d->workers[i]->lst[k];

			for (int r = 0; r < LREF_MAX; r++)
				n[r] += atomic_load_explicit(&ls->refused[r],
							     memory_order_relaxed);
			fds += atomic_load(&ls->acc.fd_exhausted);
		}
		for (int r = 0; r < LREF_MAX; r++) {
			snprintf(l, sizeof(l), "listener=\"%s\",reason=\"%s\"",
				 listener_name(k), listen_refusal_name(r));
			prom_sample_u64(o, fam, l, NULL, n[r]);
		}
		snprintf(l, sizeof(l), "listener=\"%s\",reason=\"fd_exhausted\"",
			 listener_name(k));
		prom_sample_u64(o, fam, l, NULL, fds);
	}
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		uint64_t n[HTTPD_R_MAX];

		if (!ops[i].h)
			continue;
		httpd_refusals(ops[i].h, n);
		for (int r = 0; r < HTTPD_R_MAX; r++) {
			snprintf(l, sizeof(l), "listener=\"%s\",reason=\"%s\"",
				 ops[i].name, httpd_refusal_name(r));
			prom_sample_u64(o, fam, l, NULL, n[r]);
		}
	}
}

static void h_metrics(void *arg, const struct http_req *req,
		      struct http_rsp *rsp)
{
	struct admin *a = arg;
	struct state *st = daemon_state_get(a->c.d);
	struct sbuf *o = &rsp->body;

	http_rsp_status(rsp, 200, PROM_CONTENT_TYPE);
	prom_family(o, "istio_build", PROM_GAUGE, "Istio component build info");
	prom_sample_u64(o, "istio_build",
			"component=\"ztunnel\",tag=\"ambientd-" AMBIENTD_VERSION
			"\"",
			NULL, 1);
	tel_render_istio(a->c.d, o);
	daemon_metrics(a, st, o);
	service_metrics(a, st, o);
	bpf_metrics(a, o);
	listener_metrics(a, o);
	render_tcp_health(a, st, o);
	process_metrics(a, o);
	state_unref(st);
}

/* ---- readiness -------------------------------------------------------------
 */

int admin_ready(struct admin *a, char *why, size_t len)
{
	struct state *st;
	int err;

	if (a->draining) {
		snprintf(why, len, "draining (/quitquitquit)");
		return -ESHUTDOWN;
	}
	err = workers_check_listeners(a->c.d, why, len);
	if (err)
		return err;
	err = bpfinfo_check_attached(a->c.b, why, len);
	if (err)
		return err;
	if (a->c.pending && *a->c.pending > 0) {
		snprintf(why, len,
			 "%d workload address%s of this node not enrolled yet "
			 "(waiting for the pod's veth)",
			 *a->c.pending, *a->c.pending == 1 ? "" : "es");
		return -EAGAIN;
	}
	st = daemon_state_get(a->c.d);
	err = config_check_certificates(a->c.d, st, why, len);
	state_unref(st);
	return err;
}

static void h_ready(void *arg, const struct http_req *req, struct http_rsp *rsp)
{
	char why[512];

	if (admin_ready(arg, why, sizeof(why)))
		http_rsp_text(rsp, 503, "not ready: %s", why);
	else
		http_rsp_text(rsp, 200, "ready");
}

/* ---- admin -----------------------------------------------------------------
 */

static void h_config_dump(void *arg, const struct http_req *req,
			  struct http_rsp *rsp)
{
	struct admin *a = arg;
	struct state *st = daemon_state_get(a->c.d);

	http_rsp_status(rsp, 200, "application/json");
	config_dump(a->c.d, st, &rsp->body);
	sbuf_putc(&rsp->body, '\n');
	state_unref(st);
}

static const char *const level_names[] = {"error", "warn", "info", "debug"};

static void h_logging(void *arg, const struct http_req *req,
		      struct http_rsp *rsp)
{
	enum log_level lvl;
	char v[32];
	int err = http_query_param(req, "level", v, sizeof(v));

	if (req->method == HTTP_POST) {
		if (err || log_level_parse(v, &lvl)) {
			http_rsp_text(rsp, 400,
				      "expected ?level=error|warn|info|debug");
			return;
		}
		__atomic_store_n(&log_threshold, lvl, __ATOMIC_RELAXED);
		log_warn("log level set to %s through the admin API", v);
	} else if (err != -ENOENT) {
		http_rsp_text(
		    rsp, 400,
		    "change the level with POST /logging?level=LEVEL");
		return;
	}
	http_rsp_status(rsp, 200, "application/json");
	sbuf_printf(
	    &rsp->body, "{\"level\":\"%s\"}\n",
	    level_names[__atomic_load_n(&log_threshold, __ATOMIC_RELAXED)]);
}

static void drain_check(struct loop *l, struct loop_timer *t)
{
	struct admin *a = t->arg;
	size_t live = workers_live_connections(a->c.d);

	if (live == 0) {
		log_info("drain: no connection left; exiting");
		a->c.stop(a->c.stop_arg);
		return;
	}
	if (mono_ms() >= a->drain_deadline) {
		log_warn("drain deadline reached: cutting %zu connection%s",
			 live, live == 1 ? "" : "s");
		tel_ask_workers(a->c.d, TEL_REQ_CUT, 2000, NULL);
		a->c.stop(a->c.stop_arg);
		return;
	}
	loop_timer_arm(l, t, 50);
}

static void h_quit(void *arg, const struct http_req *req, struct http_rsp *rsp)
{
	struct admin *a = arg;

	if (!a->draining) {
		a->draining = true;
		a->drain_deadline = mono_ms() + a->o.drain_ms;
		log_info("drain requested: refusing new connections, %zu live, "
			 "deadline %u ms",
			 workers_live_connections(a->c.d), a->o.drain_ms);
		tel_ask_workers(a->c.d, TEL_REQ_DRAIN, 2000, NULL);
		loop_timer_arm(a->c.loop, &a->drain_timer, 50);
	}
	http_rsp_text(rsp, 200, "OK");
}

static void h_connections(void *arg, const struct http_req *req,
			  struct http_rsp *rsp)
{
	struct admin *a = arg;

	http_rsp_status(rsp, 200, "application/json");
	sbuf_putc(&rsp->body, '[');
	tel_ask_workers(a->c.d, TEL_REQ_DUMP, 1000, &rsp->body);
	sbuf_puts(&rsp->body, "]\n");
}

static void h_bpf(void *arg, const struct http_req *req, struct http_rsp *rsp)
{
	struct admin *a = arg;

	http_rsp_status(rsp, 200, "application/json");
	if (bpfinfo_json(a->c.b, &rsp->body))
		http_rsp_text(rsp, 500, "reading the BPF state failed");
	else
		sbuf_putc(&rsp->body, '\n');
}

static void h_index(void *arg, const struct http_req *req, struct http_rsp *rsp)
{
	http_rsp_text(rsp, 200,
		      "ambientd admin API\n"
		      "  GET  /config_dump          workloads, services, "
		      "policies, certificates\n"
		      "  GET  /connections          live tunneled connections\n"
		      "  GET  /bpf                  programs, attach points, "
		      "maps, verdict counters\n"
		      "  GET  /logging              log level\n"
		      "  POST /logging?level=L      set the log level "
		      "(error|warn|info|debug)\n"
		      "  POST /quitquitquit         drain and exit");
}

static const struct httpd_route metrics_routes[] = {
    {"/metrics", HTTP_GET, h_metrics},
    {"/stats/prometheus", HTTP_GET, h_metrics},
    {NULL},
};

static const struct httpd_route ready_routes[] = {
    {"/healthz/ready", HTTP_GET, h_ready},
    {NULL},
};

static const struct httpd_route admin_routes[] = {
    {"/", HTTP_GET, h_index},
    {"/config_dump", HTTP_GET, h_config_dump},
    {"/logging", HTTP_GET | HTTP_POST, h_logging},
    {"/quitquitquit", HTTP_POST, h_quit},
    {"/connections", HTTP_GET, h_connections},
    {"/bpf", HTTP_GET, h_bpf},
    {NULL},
};

static int serve(struct admin *a, const char *ip, uint16_t port,
		 const struct httpd_route *routes, const char *name,
		 struct httpd **out)
{
	struct httpd_opts o = {.routes = routes, .arg = a, .name = name};
	int fd, err;

	if (!port)
		return 0;
	fd = httpd_listen(ip, port);
	if (fd < 0) {
		log_error("%s: cannot listen on %s:%u: %s", name, ip, port,
			  strerror(-fd));
		return fd;
	}
	err = httpd_new(a->c.loop, fd, &o, out);
	if (err)
		log_error("%s: %s", name, strerror(-err));
	return err;
}

int admin_start(const struct admin_ctx *ctx, const struct admin_opts *o,
		struct admin **out)
{
	struct admin *a = calloc(1, sizeof(*a));
	int err;

	if (!a)
		return -ENOMEM;
	a->c = *ctx;
	a->o = *o;
	a->started = time(NULL);
	a->th = calloc(TH_SLOTS, sizeof(*a->th));
	loop_timer_init(&a->drain_timer, drain_check, a);
	if (!a->th) {
		free(a);
		return -ENOMEM;
	}
	err = serve(a, o->metrics_ip, o->metrics_port, metrics_routes,
		    "metrics", &a->metrics);
	if (!err)
		err = serve(a, o->ready_ip, o->ready_port, ready_routes,
			    "readiness", &a->ready);
	if (!err)
		err = serve(a, o->admin_ip, o->admin_port, admin_routes,
			    "admin", &a->api);
	if (err) {
		admin_free(a);
		return err;
	}
	*out = a;
	return 0;
}

void admin_free(struct admin *a)
{
	if (!a)
		return;
	loop_timer_disarm(a->c.loop, &a->drain_timer);
	httpd_free(a->metrics);
	httpd_free(a->ready);
	httpd_free(a->api);
	free(a->th);
	free(a);
}
