/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the kernel holds for one node, read from the pins alone (works with
 * the daemon down): programs with their attach points, maps with their
 * fill level, and the per-reason verdict counters. Used by `ambientctl bpf`
 * and by the daemon's readiness check and metrics.
 */
#ifndef AMBIENTD_BPFINFO_H
#define AMBIENTD_BPFINFO_H

#include <stddef.h>
#include <stdint.h>

#include "bpfctl.h"
#include "sbuf.h"

/*
 * JSON object {"node","pinDir","programs":[{name,id,type,tag,runCount,
 * runTimeNs,attached:[{kind,target}]}],"maps":[{name,id,type,keySize,
 * valueSize,maxEntries,entries}],"counters":[{reason,verdict,packets,
 * bytes}]}. Reads b's fds (bpfctl_open_pinned() or a loaded daemon) in the
 * current network namespace (tc attachments live there). 0 or -errno.
 */
int bpfinfo_json(struct bpfctl *b, struct sbuf *out);

/*
 * Readiness: amb_tc_pod on every enrolled pod's veth, amb_tc_inbound on
 * every other Ethernet interface, sockops attached through its pinned
 * cgroup link. 0, or -errno with a sentence in why.
 */
int bpfinfo_check_attached(struct bpfctl *b, char *why, size_t len);

/* "assign", "pass", "drop" or "refused": the verdict part of a reason. */
const char *bpfinfo_verdict_of(const char *reason);

#endif
