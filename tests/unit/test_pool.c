// SPDX-License-Identifier: Apache-2.0
/* Pool unit tests (extended in the next commit). */
#include "hbone.h"
#include "loop.h"
#include "pool.h"
#include "tap.h"

#include <errno.h>
#include <netinet/in.h>

static int connect_cb(void *arg, struct pool *p, const struct pool_key *key)
{
	return -ENETUNREACH;
}

int main(void)
{
	struct pool_opts o = {.connect = connect_cb};
	struct loop *l = loop_new();
	struct pool *p = pool_new(l, &o);
	struct sockaddr_in dst = {.sin_family = AF_INET,
				  .sin_port = htons(15008)};
	struct pool_key k = {.src_identity = "spiffe://td/ns/a/sa/a",
			     .dst = (struct sockaddr *)&dst};
	struct pool_waiter *w;
	struct hb_conn *c;

	ok(p != NULL, "pool_new");
	ok(pool_acquire(p, &k, (pool_ready_cb)1, NULL, &c, &w) ==
		   -ENETUNREACH &&
	       !c && !w,
	   "immediate connect failure is returned, nobody queued");
	pool_free(p);
	loop_free(l);
	return tap_done();
}
