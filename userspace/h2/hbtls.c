// SPDX-License-Identifier: Apache-2.0
#include "hbtls.h"

#include <errno.h>
#include <stdlib.h>

#include "hbone.h"
#include "tls.h"

struct tls_transport {
	struct hb_transport base;
	struct tls_conn *tc;
};

static struct tls_conn *tc_of(struct hb_transport *t)
{
	return ((struct tls_transport *)t)->tc;
}

static ssize_t tt_read(struct hb_transport *t, void *buf, size_t len)
{
	return tls_conn_read(tc_of(t), buf, len);
}

/* One call: header and payload share records (tls_conn_writev()). */
static ssize_t tt_writev(struct hb_transport *t, const struct iovec *iov,
			 int iovcnt)
{
	return tls_conn_writev(tc_of(t), iov, iovcnt);
}

static int tt_set_interest(struct hb_transport *t, bool rd, bool wr)
{
	tls_conn_want(tc_of(t), rd, wr);
	return 0;
}

static int tt_shutdown(struct hb_transport *t)
{
	return tls_conn_shutdown(tc_of(t));
}

static void tt_close(struct hb_transport *t)
{
	tls_conn_close(tc_of(t));
	free(t);
}

static void tt_abort(struct hb_transport *t)
{
	tls_conn_abort(tc_of(t));
	free(t);
}

static const struct hb_transport_ops tls_transport_ops = {
	.read = tt_read,
	.writev = tt_writev,
	.set_interest = tt_set_interest,
	.shutdown = tt_shutdown,
	.close = tt_close,
	.abort = tt_abort,
};

static void tt_on_readable(struct tls_conn *c, void *arg)
{
	hb_transport_notify(arg, HB_TRANSPORT_READABLE);
}

static void tt_on_writable(struct tls_conn *c, void *arg)
{
	hb_transport_notify(arg, HB_TRANSPORT_WRITABLE);
}

static const struct tls_conn_cbs tls_transport_cbs = {
	.on_readable = tt_on_readable,
	.on_writable = tt_on_writable,
};

int hb_transport_tls_new(struct tls_conn *tc, struct hb_transport **out)
{
	struct tls_transport *t = calloc(1, sizeof(*t));

	if (!t)
		return -ENOMEM;
	t->base.ops = &tls_transport_ops;
	t->tc = tc;
	tls_conn_set_cbs(tc, &tls_transport_cbs, t);
	*out = &t->base;
	return 0;
}
