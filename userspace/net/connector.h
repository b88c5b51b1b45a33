/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Outgoing tunnel connections: transparent (source = the pod or client the
 * tunnel speaks for), marked with SO_MARK 0x539 so capture never sees them,
 * non-blocking, with a completion callback and a timeout.
 */
#ifndef AMBIENTD_CONNECTOR_H
#define AMBIENTD_CONNECTOR_H

#include <netinet/in.h>
#include <stdint.h>

struct loop;
struct connector;

/* fd >= 0: connected socket, now owned by the callee. fd < 0: err says why
 * (ECONNREFUSED, ETIMEDOUT, ...). */
typedef void (*connector_cb)(int fd, int err, void *arg);

/*
 * Non-blocking connect from src's address (port chosen by the kernel at
 * connect time, unique per 4-tuple) to dst. Returns the connecting fd or
 * -errno. src NULL: the node's own address.
 */
int sock_connect_as(const struct sockaddr_in *src, const struct sockaddr_in *dst);

/* Connect and call cb once, from the loop, when done, failed or timed out.
 * Returns 0 (and *out, may be NULL) or -errno (cb not called). */
int connector_start(struct loop *l, const struct sockaddr_in *src,
		    const struct sockaddr_in *dst, uint32_t timeout_ms,
		    connector_cb cb, void *arg, struct connector **out);
/* Give up: closes the socket; the callback will not run. */
void connector_cancel(struct connector *c);

#endif
