/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Least privilege after start-up (DESIGN.md §9): once the programs are
 * loaded and pinned and the routing is set, the daemon keeps only the
 * capabilities it still needs at run time (the table in privs.c, one line
 * per capability saying what needs it) and sets no-new-privs.
 *
 * Capabilities, the bounding set and no-new-privs belong to a thread, not
 * to the process: call privs_drop() on the main thread before any other
 * thread exists. Threads created afterwards inherit the reduced set.
 */
#ifndef AMBIENTD_PRIVS_H
#define AMBIENTD_PRIVS_H

#include <stddef.h>
#include <stdint.h>

/*
 * Reduce the calling thread's effective and permitted sets to the retained
 * set (intersected with what it has: a capability never held is not asked
 * for), empty its inheritable and ambient sets, shrink the bounding set to
 * the retained set when the thread may (CAP_SETPCAP; a container runtime
 * has usually bounded it already), and set PR_SET_NO_NEW_PRIVS. Logs the
 * retained set (info). Returns 0, or -errno when a step failed (logged; the
 * caller should not go on with more privileges than intended).
 */
int privs_drop(void);

/*
 * The retained set as a capability bit mask (bit n = capability n, the
 * layout of CapEff in /proc/PID/status), for tests and diagnostics.
 */
uint64_t privs_retained_mask(void);

/*
 * The retained set's names, comma-separated without the CAP_ prefix
 * (e.g. "NET_ADMIN"), into buf. Returns buf.
 */
const char *privs_retained_names(char *buf, size_t len);

#endif
