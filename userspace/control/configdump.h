/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The admin port's /config_dump, shaped like ztunnel's so tooling written
 * for `istioctl ztunnel-config` reads it: a JSON object with
 *   "workloads":  [ workload... ]   camelCase fields of the local config,
 *                                    absent optional fields omitted
 *   "services":   [ service... ]    ports as {"80": 8080}, vips "net/ip",
 *                                    endpoints keyed by workload uid
 *   "policies":   [ policy... ]     rules as [[[match]]] (rule, clause,
 *                                    match), string matches {"Exact": s}
 *   "peerAuthentications": [ ... ]  (our local-file extension)
 *   "certificates": [ {identity, state, certChain[{pem, serialNumber,
 *                     validFrom, expirationTime}], rootCerts[...]} ]
 *   "config": {node, trustDomain, generation, version}
 * Certificates: one entry per identity the daemon holds a leaf for, plus
 * one per local mesh workload it could not get a certificate for (state
 * "Unavailable: <why>").
 */
#ifndef AMBIENTD_CONFIGDUMP_H
#define AMBIENTD_CONFIGDUMP_H

#include "sbuf.h"

struct daemon;
struct state;

/* Write the whole dump of snapshot st (and d's certificates) into out. */
void config_dump(struct daemon *d, const struct state *st, struct sbuf *out);

/*
 * Local mesh workloads (node == d->node, protocol HBONE) each need a
 * current certificate. Issues missing ones (certstore_get). Returns 0, or
 * -errno of the first failure with a sentence in why.
 */
int config_check_certificates(struct daemon *d, const struct state *st,
			      char *why, size_t len);

#endif
