/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers shared by the bpf suites (each runs in its own network namespace). */
#ifndef AMBIENTD_BPF_TEST_H
#define AMBIENTD_BPF_TEST_H

#include <errno.h>
#include <net/if.h>
#include <sched.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

/* Bring up lo of the current (fresh) network namespace. 0 or -errno. */
static inline int lo_up(void)
{
	struct ifreq ifr = {0};
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int err = 0;

	if (fd < 0)
		return -errno;
	strcpy(ifr.ifr_name, "lo");
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0) {
		err = -errno;
	} else {
		ifr.ifr_flags |= IFF_UP;
		if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
			err = -errno;
	}
	close(fd);
	return err;
}

/*
 * Every bpf suite starts the same way: root, a private network namespace
 * of its own, lo up. Skips the whole suite (exit 77) with the reason when
 * any of it is impossible here. Needs tap.h.
 */
static inline void bpf_test_enter_netns(void)
{
	if (geteuid() != 0)
		tap_skip_all("needs root (BPF, unshare(CLONE_NEWNET))");
	if (unshare(CLONE_NEWNET))
		tap_skip_all("unshare(CLONE_NEWNET) failed");
	if (lo_up())
		tap_skip_all("cannot bring lo up in the test netns");
}

#endif
