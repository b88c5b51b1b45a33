/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The kernel fast path of authorization: compile the decisions for
 * plaintext callers of the node's enrolled pods into the amb_pol LPM trie
 * (struct amb_pol_key), which amb_tc_inbound consults before a SYN reaches
 * a listener.
 *
 * Why it is exact: a plaintext caller has no principal, namespace or
 * service account, so authz_evaluate() depends only on the source address,
 * the pod address and the port. Per pod address the compiler takes every
 * port the applicable policies name (plus 0 = "any other port") and every
 * source CIDR they name (plus 0.0.0.0/0). For an address whose longest
 * listed prefix is L, membership in every listed CIDR C is decided by
 * whether C contains L; authz_conn's prefix form evaluates exactly that, so
 * one evaluation per (port, L) gives the verdict of every address the LPM
 * lookup maps to L. Entries equal to what the lookup would find without
 * them are left out.
 */
#ifndef AMBIENTD_POLMAP_H
#define AMBIENTD_POLMAP_H

#include <stddef.h>
#include <stdint.h>

#include "ambientd/bpf_shared.h"
#include "state.h"

/*
 * policy_id slots: names ("ns/name" of a policy, or a reason) to ids,
 * stable for the daemon's life and across restarts (loaded back from the
 * pinned amb_pol_names). Slot 0 is "(allowed)".
 */
struct polmap_ids;

/* New id table, seeded from names_fd when >= 0. NULL on ENOMEM. */
struct polmap_ids *polmap_ids_new(int names_fd);
void polmap_ids_free(struct polmap_ids *ids);
/* Name of a slot, or NULL if unused. */
const char *polmap_id_name(const struct polmap_ids *ids, uint32_t id);

struct polmap_entry {
	struct amb_pol_key key;
	struct amb_pol_verdict val;
};

/* A growing list of entries (zero-initialize; free with polmap_free). */
struct polmap {
	struct polmap_entry *e;
	size_t n, cap;
};
void polmap_free(struct polmap *pm);

/*
 * Append the entries for workload wl (of st) reached at addr (network
 * order). 0, -ENOMEM, or -ENOSPC when the id table is full (nothing is
 * appended then: userspace still enforces, the kernel just does not help).
 */
int polmap_compile(const struct state *st, const struct workload *wl,
		   uint32_t addr, struct polmap_ids *ids, struct polmap *out);

/*
 * Make amb_pol (pol_fd) hold exactly pm's entries and amb_pol_names
 * (names_fd) the ids' names: new entries are written first, stale ones
 * deleted after. 0 or -errno.
 */
int polmap_sync(int pol_fd, int names_fd, const struct polmap_ids *ids,
		const struct polmap *pm);

#endif
