// SPDX-License-Identifier: Apache-2.0
/*
 * amb_sockops on real sockets: attached to a fresh cgroup v2 directory that
 * only this process joins, in a private network namespace, with private
 * (unpinned) maps. 127.0.0.1 is "the pod": connections over it must show
 * up in amb_socks (keyed by the socket cookie, which SO_COOKIE reads back)
 * and as ring-buffer events; a socket carrying the tunnel's SO_MARK must
 * not. The process goes back to its original cgroup and the directory is
 * removed whatever happens.
 */
#include "ambientd/bpf_shared.h"
#include "sockops.skel.h"
#include "tap.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "bpf_test.h"

#ifndef SO_COOKIE
#define SO_COOKIE 57
#endif
#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif
#define TCP_ESTABLISHED 1
#define TCP_CLOSE	7
#define MAX_EVENTS	64

static struct amb_sockops *skel;
static struct amb_sock_event events[MAX_EVENTS];
static int nevents;

static char cg_root[256]; /* cgroup2 mount point */
static char cg_orig[512]; /* our cgroup before the test */
static char cg_test[512]; /* the directory this test creates */
static bool cg_created, cg_moved;

static int on_event(void *ctx, void *data, size_t len)
{
	if (len == sizeof(struct amb_sock_event) && nevents < MAX_EVENTS)
		memcpy(&events[nevents++], data, len);
	return 0;
}


static int find_cgroup2(void)
{
	char line[1024], dev[256], mnt[256], type[64];
	FILE *f = fopen("/proc/self/mounts", "re");
	int found = 0;

	if (!f)
		return 0;
	while (!found && fgets(line, sizeof(line), f))
		if (sscanf(line, "%255s %255s %63s", dev, mnt, type) == 3 &&
		    !strcmp(type, "cgroup2")) {
			snprintf(cg_root, sizeof(cg_root), "%s", mnt);
			found = 1;
		}
	fclose(f);
	if (!found)
		return 0;
	f = fopen("/proc/self/cgroup", "re");
	if (!f)
		return 0;
	found = 0;
	while (!found && fgets(line, sizeof(line), f))
		if (!strncmp(line, "0::", 3)) {
			line[strcspn(line, "\n")] = 0;
			snprintf(cg_orig, sizeof(cg_orig), "%s%.200s", cg_root,
				 !strcmp(line + 3, "/") ? "" : line + 3);
			found = 1;
		}
	fclose(f);
	return found;
}

static int join(const char *dir)
{
	char path[600], pid[32];
	int fd, n, err = 0;

	snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = snprintf(pid, sizeof(pid), "%d", getpid());
	if (write(fd, pid, n) != n)
		err = -errno;
	close(fd);
	return err;
}

static void cgroup_cleanup(void)
{
	if (cg_moved && join(cg_orig) == 0)
		cg_moved = false;
	if (cg_created && !cg_moved && rmdir(cg_test) == 0)
		cg_created = false;
}

static uint64_t cookie_of(int fd)
{
	uint64_t c = 0;
	socklen_t l = sizeof(c);

	return getsockopt(fd, SOL_SOCKET, SO_COOKIE, &c, &l) ? 0 : c;
}

static uint16_t port_of(int fd, bool peer)
{
	struct sockaddr_in sa;
	socklen_t l = sizeof(sa);
	int r = peer ? getpeername(fd, (struct sockaddr *)&sa, &l)
		     : getsockname(fd, (struct sockaddr *)&sa, &l);

	return r ? 0 : ntohs(sa.sin_port);
}

/* A connected pair over 127.0.0.1 through listener lfd; the client gets
 * `mark` as SO_MARK before connecting (0: none). */
static int connect_pair(int lfd, uint32_t mark, int *cfd, int *afd)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons(port_of(lfd, false)),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};

	*afd = -1;
	*cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (*cfd < 0)
		return -1;
	if (mark && setsockopt(*cfd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)))
		return -1;
	if (connect(*cfd, (struct sockaddr *)&sa, sizeof(sa)))
		return -1;
	*afd = accept(lfd, NULL, NULL);
	return *afd < 0 ? -1 : 0;
}

static const struct amb_sock_event *find_event(uint64_t cookie, uint8_t type)
{
	int i;

	for (i = 0; i < nevents; i++)
		if (events[i].cookie == cookie && events[i].type == type)
			return &events[i];
	return NULL;
}

static void drain(struct ring_buffer *rb)
{
	int i;

	/* The program does not wake consumers per event (they drain on a
	 * timer): consume outright, a few times a little apart. */
	for (i = 0; i < 5; i++) {
		ring_buffer__consume(rb);
		usleep(20000);
	}
}

static void check_stat(const char *who, int fd, uint8_t active)
{
	int socks = bpf_map__fd(skel->maps.amb_socks);
	uint32_t lo = htonl(INADDR_LOOPBACK);
	uint64_t cookie = cookie_of(fd);
	const struct amb_sock_event *ev;
	struct amb_sock_stat st;
	uint64_t ns = 0;
	socklen_t l = sizeof(ns);

	if (!ok(cookie && !bpf_map_lookup_elem(socks, &cookie, &st),
		"%s: amb_socks has the socket (cookie %llu)", who,
		(unsigned long long)cookie))
		return;
	ok(st.saddr == lo && st.daddr == lo && st.sport == port_of(fd, false) &&
	       st.dport == port_of(fd, true),
	   "%s: entry ports %u -> %u (socket %u -> %u)", who, st.sport,
	   st.dport, port_of(fd, false), port_of(fd, true));
	ok(st.state == TCP_ESTABLISHED && st.active == active,
	   "%s: entry state %u (want ESTABLISHED), active %u (want %u)", who,
	   st.state, st.active, active);
	/* (not inside ok(): its format arguments may be evaluated first) */
	if (getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &ns, &l))
		ns = 0;
	ok(ns && st.netns_cookie == ns && st.opened_ns != 0 &&
	       st.updated_ns >= st.opened_ns,
	   "%s: entry netns cookie %llu = the test netns' %llu, timestamps set",
	   who, (unsigned long long)st.netns_cookie, (unsigned long long)ns);
	ev = find_event(cookie, AMB_SE_OPEN);
	ok(ev && ev->sport == st.sport && ev->dport == st.dport &&
	       ev->saddr == lo && ev->new_state == TCP_ESTABLISHED,
	   "%s: ring buffer OPEN event with the same ports", who);
}

int main(void)
{
	int lfd = -1, cfd = -1, afd = -1, mcfd = -1, mafd = -1, cgfd = -1;
	struct amb_pod_key key = {.addr = htonl(INADDR_LOOPBACK)};
	struct amb_pod pod = {.ifindex = 1, .flags = AMB_POD_F_MANUAL};
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct ring_buffer *rb = NULL;
	struct bpf_link *link = NULL;
	struct amb_sock_stat st;
	struct bpf_map *map;
	uint64_t cookie, mcookie;
	int err, socks, i;

	if (geteuid() != 0)
		tap_skip_all("needs root (BPF, cgroup, unshare(CLONE_NEWNET))");
	if (unshare(CLONE_NEWNET) || lo_up())
		tap_skip_all("no private network namespace");
	if (libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_SOCK_OPS, NULL) != 1)
		tap_skip_all("BPF sockops programs unavailable");
	if (!find_cgroup2())
		tap_skip_all("no cgroup2 mount");

	snprintf(cg_test, sizeof(cg_test), "%s/amb-test-sockops-%d", cg_root,
		 getpid());
	if (!ok(mkdir(cg_test, 0755) == 0, "create cgroup %s", cg_test))
		return tap_done();
	cg_created = true;
	cgfd = open(cg_test, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	skel = amb_sockops__open();
	if (!ok(skel != NULL, "open sockops skeleton"))
		goto out;
	bpf_object__for_each_map(map, skel->obj)
	    bpf_map__set_pin_path(map, NULL);
	err = amb_sockops__load(skel);
	if (!ok(err == 0, "load sockops program (%d)", err))
		goto out;
	link = bpf_program__attach_cgroup(skel->progs.amb_sockops, cgfd);
	if (!ok(link != NULL, "attach to the test cgroup"))
		goto out;
	if (!ok(join(cg_test) == 0, "move the test process into it"))
		goto out;
	cg_moved = true;
	socks = bpf_map__fd(skel->maps.amb_socks);
	rb = ring_buffer__new(bpf_map__fd(skel->maps.amb_sock_ev), on_event,
			      NULL, NULL);
	if (!ok(rb != NULL, "ring buffer consumer"))
		goto out;

	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (!ok(lfd >= 0 && !bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) &&
		    !listen(lfd, 8),
		"listener on 127.0.0.1"))
		goto out;

	/* Not enrolled yet: nothing is tracked. */
	if (!ok(connect_pair(lfd, 0, &cfd, &afd) == 0,
		"connection before enrollment"))
		goto out;
	drain(rb);
	cookie = cookie_of(cfd);
	ok(bpf_map_lookup_elem(socks, &cookie, &st) && errno == ENOENT &&
	       nevents == 0,
	   "not enrolled: no entry, no event (%d events)", nevents);
	close(cfd);
	close(afd);
	cfd = afd = -1;
	drain(rb);
	nevents = 0;

	if (!ok(bpf_map_update_elem(bpf_map__fd(skel->maps.amb_pods), &key,
				    &pod, BPF_ANY) == 0,
		"enroll 127.0.0.1"))
		goto out;
	if (!ok(connect_pair(lfd, 0, &cfd, &afd) == 0, "connection as a pod"))
		goto out;
	drain(rb);
	check_stat("client", cfd, 1);
	check_stat("accepted", afd, 0);

	/* Tunnel sockets (SO_MARK 0x539) are never the pod's. */
	if (!ok(connect_pair(lfd, AMB_MARK_TUNNEL, &mcfd, &mafd) == 0,
		"connection with SO_MARK 0x539"))
		goto out;
	drain(rb);
	mcookie = cookie_of(mcfd);
	ok(mcookie && bpf_map_lookup_elem(socks, &mcookie, &st) &&
	       errno == ENOENT && !find_event(mcookie, AMB_SE_OPEN),
	   "marked client: no entry, no OPEN event");
	cookie = cookie_of(mafd);
	ok(!bpf_map_lookup_elem(socks, &cookie, &st) &&
	       st.dport == port_of(mcfd, false),
	   "its unmarked accepted peer is tracked");

	/* Close: STATE events, then CLOSE and the entry goes away. */
	cookie = cookie_of(cfd);
	close(cfd);
	cfd = -1;
	close(afd);
	afd = -1;
	for (i = 0; i < 20 && !find_event(cookie, AMB_SE_CLOSE); i++)
		drain(rb);
	ok(find_event(cookie, AMB_SE_STATE) != NULL,
	   "client close: STATE event(s)");
	ok(find_event(cookie, AMB_SE_CLOSE) &&
	       find_event(cookie, AMB_SE_CLOSE)->new_state == TCP_CLOSE,
	   "client close: CLOSE event, new state TCP_CLOSE");
	ok(bpf_map_lookup_elem(socks, &cookie, &st) && errno == ENOENT,
	   "client close: entry removed from amb_socks");

out:
	if (cfd >= 0)
		close(cfd);
	if (afd >= 0)
		close(afd);
	if (mcfd >= 0)
		close(mcfd);
	if (mafd >= 0)
		close(mafd);
	if (lfd >= 0)
		close(lfd);
	cgroup_cleanup();
	ring_buffer__free(rb);
	bpf_link__destroy(link);
	amb_sockops__destroy(skel);
	if (cgfd >= 0)
		close(cgfd);
	cgroup_cleanup();
	ok(!cg_moved && !cg_created && access(cg_test, F_OK) != 0,
	   "back in the original cgroup, %s removed", cg_test);
	return tap_done();
}
