// SPDX-License-Identifier: Apache-2.0
/*
 * Dropping capabilities after start-up (see privs.h), with libcap-ng.
 *
 * What start-up needs and run time does not: CAP_BPF and CAP_PERFMON (or
 * CAP_SYS_ADMIN) to create maps and load programs, CAP_SYS_ADMIN to mount
 * a bpffs, CAP_SETPCAP to shrink the bounding set here. After that the
 * daemon only works on file descriptors it already holds (maps, programs,
 * the ring buffer, listeners) and on netlink, and that is what the table
 * below covers.
 *
 * Not retained, on purpose:
 *   CAP_BPF           map updates and lookups on fds already held, pinning
 *                     and BPF_OBJ_GET (file permissions on bpffs), bpf_link
 *                     create/update/detach for the sockops cgroup link and
 *                     object info all work without it (checked on Linux
 *                     6.18; kernels since 6.5 check it only in map/prog
 *                     creation).
 *   CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
 *                     files read after start-up (config, CA, tokens) must
 *                     be readable by uid 0 through their mode bits, as in
 *                     the DaemonSet (which never granted these).
 *   CAP_NET_BIND_SERVICE
 *                     every listener is above 1023 and upstream sockets
 *                     bind port 0.
 *   CAP_NET_RAW       CAP_NET_ADMIN alone passes the kernel's checks for
 *                     SO_MARK and IP_TRANSPARENT.
 */
#include "privs.h"

#include "log.h"

#include <cap-ng.h>
#include <errno.h>
#include <linux/capability.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>

/*
 * The retained set: every capability the daemon still uses after
 * privs_drop(), with who uses it. Keep manifests/daemonset.yaml's `add:`
 * list a superset (it also needs what start-up needs).
 */
static const struct retained_cap {
	unsigned int cap;
	const char *why;
} retained[] = {
    {CAP_NET_ADMIN,
     "tc filters on veths of pods enrolled later and on new interfaces "
     "(and their removal with --uninstall-on-exit), ip rule/route "
     "removal, SO_MARK and IP_TRANSPARENT on upstream sockets"},
};

#define N_RETAINED (sizeof(retained) / sizeof(retained[0]))

uint64_t privs_retained_mask(void)
{
	uint64_t m = 0;

	for (size_t i = 0; i < N_RETAINED; i++)
		m |= 1ULL << retained[i].cap;
	return m;
}

/* "NET_ADMIN" for CAP_NET_ADMIN (libcap-ng's names are lowercase). */
static void cap_name(unsigned int cap, char *buf, size_t len)
{
	const char *n = capng_capability_to_name(cap);
	size_t i;

	if (!n) {
		snprintf(buf, len, "%u", cap);
		return;
	}
	for (i = 0; n[i] && i + 1 < len; i++)
		buf[i] = (char)(n[i] >= 'a' && n[i] <= 'z' ? n[i] - 'a' + 'A'
							   : n[i]);
	buf[i] = '\0';
}

const char *privs_retained_names(char *buf, size_t len)
{
	size_t off = 0;

	if (!len)
		return buf;
	buf[0] = '\0';
	for (size_t i = 0; i < N_RETAINED && off < len; i++) {
		char name[32];
		int n;

		cap_name(retained[i].cap, name, sizeof(name));
		n = snprintf(buf + off, len - off, "%s%s", i ? "," : "", name);
		if (n < 0)
			break;
		off += (size_t)n;
	}
	return buf;
}

int privs_drop(void)
{
	bool have[N_RETAINED], setpcap;
	char names[256] = "";
	size_t off = 0;
	int rc;

	if (capng_get_caps_process()) {
		log_error(
		    "privileges: cannot read this process's capabilities");
		return -EIO;
	}
	setpcap = capng_have_capability(CAPNG_EFFECTIVE, CAP_SETPCAP);
	/* What we hold of the retained set, before the state is cleared. */
	for (size_t i = 0; i < N_RETAINED; i++)
		have[i] =
		    capng_have_capability(CAPNG_PERMITTED, retained[i].cap);

	capng_clear(CAPNG_SELECT_BOTH);
	for (size_t i = 0; i < N_RETAINED; i++) {
		char name[32];

		cap_name(retained[i].cap, name, sizeof(name));
		if (!have[i]) {
			/* The operation that needs it will fail and say so. */
			log_warn("privileges: CAP_%s is not available (needed "
				 "for %s)",
				 name, retained[i].why);
			continue;
		}
		if (capng_update(CAPNG_ADD,
				 CAPNG_EFFECTIVE | CAPNG_PERMITTED |
				     CAPNG_BOUNDING_SET,
				 retained[i].cap)) {
			log_error("privileges: cannot keep CAP_%s", name);
			return -EINVAL;
		}
		if (off < sizeof(names))
			off += snprintf(names + off, sizeof(names) - off,
					"%s%s", off ? "," : "", name);
	}
	/*
	 * Shrinking the bounding set needs CAP_SETPCAP, which the capset
	 * below takes away: bounds first (capng_apply does that order).
	 * Without CAP_SETPCAP (a container) the runtime's bounding set stays;
	 * no-new-privs and the empty inheritable set keep it from mattering.
	 */
	errno = 0;
	rc = capng_apply(setpcap ? CAPNG_SELECT_BOTH : CAPNG_SELECT_CAPS);
	if (rc) {
		int err = errno ? -errno : -EPERM;

		log_error(
		    "privileges: dropping capabilities failed (capng_apply "
		    "%d: %s)",
		    rc, strerror(-err));
		return err;
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		rc = -errno;
		log_error("privileges: PR_SET_NO_NEW_PRIVS: %s", strerror(-rc));
		return rc;
	}
	log_info("privileges: kept only %s; bounding set %s; no_new_privs set",
		 names[0] ? names : "no capabilities",
		 setpcap ? "reduced to the same"
			 : "left as the runtime set it "
			   "(no CAP_SETPCAP)");
	return 0;
}
