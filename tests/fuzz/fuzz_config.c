// SPDX-License-Identifier: Apache-2.0
/*
 * config_load_buffer(): the local config file (and, in --kube mode, the
 * policies ConfigMap anyone allowed to edit it controls). Properties:
 *  - never crashes, never reads past len (the input is copied into a
 *    buffer of exactly len bytes, no NUL after it);
 *  - 0 with a snapshot, or a negative errno with *out untouched and a
 *    one-line message in err (NUL-terminated, never empty);
 *  - an accepted snapshot is consistent with its own indexes: every
 *    workload address, workload uid, service VIP and policy key finds the
 *    object that declared it.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "state.h"

#define FUZZ_MAX_INPUT (64 * 1024)

static void check_snapshot(const struct state *st)
{
	for (size_t i = 0; i < st->n_workloads; i++) {
		const struct workload *wl = &st->workloads[i];

		if (!wl->namespace)
			abort();
		for (size_t j = 0; j < wl->n_ips; j++)
			if (state_workload_by_ip(st, wl->ips_be[j]) != wl)
				abort();
		if (wl->uid && state_workload_by_uid(st, wl->uid) != wl)
			abort();
	}
	for (size_t i = 0; i < st->n_services; i++) {
		const struct service *svc = &st->services[i];

		for (size_t j = 0; j < svc->n_vips; j++)
			if (state_service_by_vip(st, svc->vips[j].addr_be) !=
			    svc)
				abort();
		for (size_t j = 0; j < svc->n_endpoints; j++) {
			const struct endpoint *ep = &svc->endpoints[j];

			if (ep->workload && ep->workload_uid &&
			    strcmp(ep->workload->uid ? ep->workload->uid : "",
				   ep->workload_uid))
				abort();
		}
	}
	for (size_t i = 0; i < st->n_policies; i++) {
		const struct policy *p = &st->policies[i];

		if (state_policy_by_key(st, p->namespace, p->name) != p)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct state *st = NULL, *const poison =
				     (struct state *)(uintptr_t)0x5a5a;
	char err[512];
	char *buf;
	int rc;

	if (size > FUZZ_MAX_INPUT)
		return 0;
	buf = malloc(size ? size : 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	memset(err, 'x', sizeof(err));
	st = poison;
	rc = config_load_buffer("fuzz.yaml", buf, size, &st, err, sizeof(err));
	if (!memchr(err, '\0', sizeof(err)))
		abort(); /* message not terminated */
	if (rc == 0) {
		if (!st || st == poison)
			abort();
		check_snapshot(st);
		state_unref(st);
	} else {
		if (rc != -EINVAL && rc != -ENOMEM && rc != -EFBIG)
			abort();
		if (st != poison || !err[0])
			abort(); /* *out touched, or no message */
	}
	free(buf);
	return 0;
}
