// SPDX-License-Identifier: Apache-2.0
/*
 * The policy fast path agrees with userspace: the same cases through both.
 *
 * A config with policies over every field a plaintext caller can be judged
 * by (sourceIps, notSourceIps, destinationPorts, notDestinationPorts,
 * destinationIps, notDestinationIps) and the identity fields it never has
 * (namespaces, principals, notPrincipals...), scopes, dryRun and STRICT
 * peer authentication is compiled with polmap.c into a private amb_pol map;
 * then, for every enrolled pod, port and a grid of source addresses around
 * each listed CIDR's edges (plus pseudo-random ones), a SYN runs through
 * amb_tc_inbound with bpf_prog_test_run_opts and authz_evaluate() decides
 * the same connection in userspace. No listener exists in this private
 * netns, so an allowed SYN ends as refused_no_listener and a denied one as
 * refused_policy; a denial must also count once for the deciding policy's
 * slot in amb_pol_hits, whose name must be that policy's.
 *
 * Then the config changes and the sync must follow it: entries of policies
 * that went away are deleted, and the cases agree again.
 */
#include "ambientd/bpf_shared.h"
#include "redirect.skel.h"
#include "tap.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <unistd.h>

#include "authz.h"
#include "bpf_test.h"
#include "config.h"
#include "polmap.h"

#define POD_IP "198.18.9.20"
#define REMOTE "198.19.2.3"
#define F_SYN  0x02
#define F_ACK  0x10
#include "frames.h"

#define LO 1

static struct amb_redirect *skel;
static int ncpus;

static const char cfg_v1[] =
	"workloads:\n"
	"- {uid: web, name: web, namespace: shop, serviceAccount: web,\n"
	"   workloadIps: [198.18.9.20], protocol: HBONE, node: n1}\n"
	"- {uid: db, name: db, namespace: shop, serviceAccount: db,\n"
	"   workloadIps: [198.18.9.21], protocol: HBONE, node: n1,\n"
	"   authorizationPolicies: [shop/db-only]}\n"
	"- {uid: vault, name: vault, namespace: bank, workloadIps: [198.18.9.22],\n"
	"   protocol: HBONE, node: n1}\n"
	"- {uid: free, name: free, namespace: free, workloadIps: [198.18.9.23],\n"
	"   protocol: HBONE, node: n1}\n"
	"- {uid: mix, name: mix, namespace: mix, workloadIps: [198.18.9.24],\n"
	"   protocol: HBONE, node: n1}\n"
	"policies:\n"
	"- name: deny-bad-range\n"
	"  namespace: istio-system\n"
	"  scope: Global\n"
	"  action: Deny\n"
	"  rules:\n"
	"  - - - sourceIps: [198.19.66.0/24]\n"
	"        notSourceIps: [198.19.66.128/26]\n"
	"- name: dry-deny-all\n"
	"  namespace: istio-system\n"
	"  scope: Global\n"
	"  action: Deny\n"
	"  dryRun: true\n"
	"  rules: [[]]\n"
	"- name: allow-clients\n"
	"  namespace: shop\n"
	"  scope: Namespace\n"
	"  action: Allow\n"
	"  rules:\n"
	"  - - - sourceIps: [198.18.10.0/24, 198.18.11.0/25]\n"
	"        destinationPorts: [8080, 8443]\n"
	"- name: allow-ns-only\n"
	"  namespace: shop\n"
	"  scope: Namespace\n"
	"  action: Allow\n"
	"  rules:\n"
	"  - - - namespaces: [{Exact: shop}]\n"
	"- name: deny-admin\n"
	"  namespace: shop\n"
	"  scope: Namespace\n"
	"  action: Deny\n"
	"  rules:\n"
	"  - - - destinationPorts: [9000]\n"
	"      - notPrincipals: [{Presence: []}]\n"
	"        destinationPorts: [9001]\n"
	"- name: db-only\n"
	"  namespace: shop\n"
	"  scope: WorkloadSelector\n"
	"  action: Allow\n"
	"  rules:\n"
	"  - - - notSourceIps: [198.18.12.0/24]\n"
	"        destinationIps: [198.18.9.21/32]\n"
	"        notDestinationPorts: [22]\n"
	"    - - notDestinationIps: [198.18.9.20/32]\n"
	"- name: allow-all\n"
	"  namespace: mix\n"
	"  scope: Namespace\n"
	"  action: Allow\n"
	"  rules: [[]]\n"
	"- name: deny-odd-ports\n"
	"  namespace: mix\n"
	"  scope: Namespace\n"
	"  action: Deny\n"
	"  rules:\n"
	"  - - - notDestinationPorts: [80, 443]\n"
	"        sourceIps: [198.18.0.0/16]\n"
	"peerAuthentications:\n"
	"- {name: default, namespace: istio-system, mode: PERMISSIVE}\n"
	"- {name: strict, namespace: bank, mode: STRICT}\n";

/* v2: the shop policies are gone, bank is PERMISSIVE, a new DENY in free. */
static const char cfg_v2[] =
	"workloads:\n"
	"- {uid: web, name: web, namespace: shop, workloadIps: [198.18.9.20],\n"
	"   protocol: HBONE, node: n1}\n"
	"- {uid: vault, name: vault, namespace: bank, workloadIps: [198.18.9.22],\n"
	"   protocol: HBONE, node: n1}\n"
	"- {uid: free, name: free, namespace: free, workloadIps: [198.18.9.23],\n"
	"   protocol: HBONE, node: n1}\n"
	"policies:\n"
	"- name: deny-telnet\n"
	"  namespace: free\n"
	"  scope: Namespace\n"
	"  action: Deny\n"
	"  rules:\n"
	"  - - - destinationPorts: [23]\n"
	"peerAuthentications:\n"
	"- {name: strict, namespace: bank, mode: PERMISSIVE}\n";

static uint16_t ports[] = { 22, 80, 443, 8080, 8443, 9000, 9001, 23, 5555 };

static int read_reason(uint32_t r, uint64_t *packets)
{
	struct amb_counter v[ncpus];

	*packets = 0;
	if (bpf_map_lookup_elem(bpf_map__fd(skel->maps.amb_counters), &r, v))
		return -errno;
	for (int i = 0; i < ncpus; i++)
		*packets += v[i].packets;
	return 0;
}

static uint64_t pol_hits(uint32_t id)
{
	struct amb_counter v[ncpus];
	uint64_t n = 0;

	if (bpf_map_lookup_elem(bpf_map__fd(skel->maps.amb_pol_hits), &id, v))
		return 0;
	for (int i = 0; i < ncpus; i++)
		n += v[i].packets;
	return n;
}

/* The slot whose name is `name`, or 0. */
static uint32_t slot_of(const char *name)
{
	for (uint32_t id = 1; id < AMB_MAX_POL_IDS; id++) {
		struct amb_pol_name n;

		if (!bpf_map_lookup_elem(bpf_map__fd(skel->maps.amb_pol_names),
					 &id, &n) &&
		    !strcmp(n.name, name))
			return id;
	}
	return 0;
}

static size_t map_entries(void)
{
	struct amb_pol_key k, next;
	size_t n = 0;
	int fd = bpf_map__fd(skel->maps.amb_pol);

	for (int r = bpf_map_get_next_key(fd, NULL, &next); r == 0;
	     r = bpf_map_get_next_key(fd, &k, &next)) {
		k = next;
		n++;
	}
	return n;
}

static int load_and_sync(const char *yaml, struct state **st,
			 struct polmap_ids *ids, size_t *entries)
{
	char err[512];
	struct polmap pm = { 0 };
	int rc;

	rc = config_load_buffer("policy.yaml", yaml, strlen(yaml), st, err,
				sizeof(err));
	if (rc) {
		diag("config: %s", err);
		return rc;
	}
	for (size_t i = 0; i < (*st)->n_workloads && !rc; i++) {
		const struct workload *wl = &(*st)->workloads[i];
		struct amb_pod_key k = { .addr = wl->ips_be[0] };
		struct amb_pod v = { .ifindex = 7, .flags = AMB_POD_F_CONFIG };

		if (bpf_map_update_elem(bpf_map__fd(skel->maps.amb_pods), &k,
					&v, BPF_ANY))
			rc = -errno;
		else
			rc = polmap_compile(*st, wl, wl->ips_be[0], ids, &pm);
	}
	if (!rc)
		rc = polmap_sync(bpf_map__fd(skel->maps.amb_pol),
				 bpf_map__fd(skel->maps.amb_pol_names), ids, &pm);
	*entries = pm.n;
	polmap_free(&pm);
	return rc;
}

/* Source addresses: the edges of every listed CIDR, and some others. */
static size_t sources(uint32_t *out, size_t max)
{
	static const char *const cidrs[] = {
		"198.19.66.0/24", "198.19.66.128/26", "198.18.10.0/24",
		"198.18.11.0/25", "198.18.12.0/24",   "198.18.0.0/16",
	};
	uint32_t seed = 12345;
	size_t n = 0;

	for (size_t i = 0; i < sizeof(cidrs) / sizeof(cidrs[0]); i++) {
		char ip[32];
		int len;
		uint32_t a, first, last;

		sscanf(cidrs[i], "%31[^/]/%d", ip, &len);
		a = ntohl(ip4(ip));
		first = a & (len ? ~0u << (32 - len) : 0);
		last = first | (len ? ~(~0u << (32 - len)) : ~0u);
		uint32_t cand[] = { first - 1, first, first + 1, last - 1, last,
				    last + 1 };
		for (size_t j = 0; j < 6 && n < max; j++)
			out[n++] = htonl(cand[j]);
	}
	/* Pseudo-random addresses in 198.18.0.0/15. */
	while (n < max) {
		seed = seed * 1103515245 + 12345;
		out[n++] = htonl(0xc6120000u | (seed >> 8 & 0x1ffff));
	}
	return n;
}

struct tally {
	int cases, mismatches, denies;
};

static void one_case(const struct state *st, const struct workload *wl,
		     uint32_t src, uint16_t port, struct tally *t)
{
	char s[INET_ADDRSTRLEN], d[INET_ADDRSTRLEN], name[600];
	struct authz_conn c = { .identity = NULL,
				.src_be = src,
				.src_prefix_len = 32,
				.dst_be = wl->ips_be[0],
				.dst_port = port };
	struct authz_result r;
	uint8_t frame[256], out[256];
	struct spec sp = { .kind = FR_IPV4, .sport = 40000, .seq = 1000,
			   .flags = F_SYN, .src = s, .dst = d, .dport = port };
	struct __sk_buff ctx = { .ifindex = LO };
	LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = frame, .data_out = out,
		    .data_size_out = sizeof(out), .ctx_in = &ctx,
		    .ctx_size_in = sizeof(ctx), .repeat = 1);
	uint64_t pol0, pol1, nol0, nol1, hits0 = 0, hits1 = 0;
	uint32_t slot = 0;
	bool kernel_denied, user_denied;

	inet_ntop(AF_INET, &src, s, sizeof(s));
	inet_ntop(AF_INET, &wl->ips_be[0], d, sizeof(d));
	o.data_size_in = (uint32_t)build(frame, &sp);
	authz_evaluate(st, wl, &c, &r);
	user_denied = r.verdict == AUTHZ_DENY;
	if (user_denied) {
		if (r.policy)
			snprintf(name, sizeof(name), "%s/%s", r.policy->namespace,
				 r.policy->name);
		else if (r.peer_auth)
			snprintf(name, sizeof(name), "(STRICT) %s/%s",
				 r.peer_auth->namespace, r.peer_auth->name);
		else
			snprintf(name, sizeof(name), "(%s)",
				 authz_reason_name(r.reason));
		slot = slot_of(name);
		hits0 = pol_hits(slot);
	}
	read_reason(AMB_R_REFUSED_POLICY, &pol0);
	read_reason(AMB_R_REFUSED_NO_LISTENER, &nol0);
	if (bpf_prog_test_run_opts(bpf_program__fd(skel->progs.amb_tc_inbound),
				   &o)) {
		t->mismatches++;
		diag("%s -> %s:%u: test_run failed: %s", s, d, port,
		     strerror(errno));
		return;
	}
	read_reason(AMB_R_REFUSED_POLICY, &pol1);
	read_reason(AMB_R_REFUSED_NO_LISTENER, &nol1);
	if (user_denied)
		hits1 = pol_hits(slot);
	kernel_denied = pol1 == pol0 + 1 && nol1 == nol0;
	t->cases++;
	t->denies += user_denied;
	if (kernel_denied != user_denied ||
	    (!kernel_denied && nol1 != nol0 + 1) ||
	    (user_denied && (!slot || hits1 != hits0 + 1))) {
		t->mismatches++;
		if (t->mismatches <= 10)
			diag("%s -> %s/%s %s:%u: userspace %s (%s), kernel %s "
			     "(refused_policy +%llu, refused_no_listener +%llu, "
			     "slot %u hits +%llu)",
			     s, wl->namespace, wl->name, d, port,
			     user_denied ? "DENY" : "ALLOW",
			     authz_reason_name(r.reason),
			     kernel_denied ? "DENY" : "ALLOW",
			     (unsigned long long)(pol1 - pol0),
			     (unsigned long long)(nol1 - nol0), slot,
			     (unsigned long long)(hits1 - hits0));
	}
}

static void agree(const char *label, const struct state *st)
{
	uint32_t src[96];
	size_t n = sources(src, sizeof(src) / sizeof(src[0]));

	for (size_t w = 0; w < st->n_workloads; w++) {
		const struct workload *wl = &st->workloads[w];
		struct tally t = { 0 };

		for (size_t p = 0; p < sizeof(ports) / sizeof(ports[0]); p++)
			for (size_t i = 0; i < n; i++)
				one_case(st, wl, src[i], ports[p], &t);
		ok(t.cases > 0 && t.mismatches == 0,
		   "%s: %s/%s: kernel and userspace agree on %d plaintext "
		   "SYNs (%d denied), %d disagreements",
		   label, wl->namespace, wl->name, t.cases, t.denies,
		   t.mismatches);
	}
}

int main(void)
{
	struct polmap_ids *ids = NULL;
	struct state *v1 = NULL, *v2 = NULL;
	struct bpf_map *map;
	size_t n1 = 0, n2 = 0;

	bpf_test_enter_netns();
	ncpus = libbpf_num_possible_cpus();
	if (ncpus <= 0)
		tap_skip_all("cannot count possible CPUs");

	skel = amb_redirect__open();
	if (!ok(skel != NULL, "open redirect skeleton"))
		return tap_done();
	bpf_object__for_each_map(map, skel->obj)
		bpf_map__set_pin_path(map, NULL);
	if (!ok(amb_redirect__load(skel) == 0, "load redirect programs"))
		goto out;
	ids = polmap_ids_new(bpf_map__fd(skel->maps.amb_pol_names));
	if (!ok(ids != NULL, "policy slot table"))
		goto out;

	if (!ok(load_and_sync(cfg_v1, &v1, ids, &n1) == 0,
		"v1: policies compiled into amb_pol"))
		goto out;
	ok(n1 > 0 && n1 == map_entries(),
	   "v1: amb_pol holds exactly the %zu compiled entries (%zu)", n1,
	   map_entries());
	ok(slot_of("istio-system/dry-deny-all") == 0,
	   "v1: the dryRun policy never gets a kernel slot");
	agree("v1", v1);

	if (!ok(load_and_sync(cfg_v2, &v2, ids, &n2) == 0,
		"v2: changed policies synced"))
		goto out;
	ok(n2 > 0 && n2 == map_entries(),
	   "v2: stale entries deleted: amb_pol holds the %zu new entries (%zu)",
	   n2, map_entries());
	agree("v2", v2);
out:
	state_unref(v1);
	state_unref(v2);
	polmap_ids_free(ids);
	amb_redirect__destroy(skel);
	return tap_done();
}
