// SPDX-License-Identifier: Apache-2.0
/* Non-blocking tunnel connects: success, refusal, cancel. */
#include <arpa/inet.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "connector.h"
#include "loop.h"
#include "tap.h"

struct result {
	struct loop *l;
	int fd, err, calls;
};

static void done(int fd, int err, void *arg)
{
	struct result *r = arg;

	r->fd = fd;
	r->err = err;
	r->calls++;
	loop_stop(r->l);
}

static void on_deadline(struct loop *l, struct loop_timer *t)
{
	loop_stop(l);
}

static void run(struct loop *l, unsigned ms)
{
	struct loop_timer t;

	loop_timer_init(&t, on_deadline, NULL);
	loop_timer_arm(l, &t, ms);
	loop_run(l);
	loop_timer_disarm(l, &t);
}

int main(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	struct result r = { 0 };
	struct connector *c;
	int lfd, afd, mark = 0;
	socklen_t ml = sizeof(mark);

	r.l = loop_new();
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(lfd, 8) < 0 || getsockname(lfd, (struct sockaddr *)&sa, &len) < 0)
		tap_skip_all("cannot listen on 127.0.0.1");

	ok(connector_start(r.l, NULL, &sa, 2000, done, &r, NULL) == 0, "connect started");
	run(r.l, 3000);
	ok(r.calls == 1 && r.fd >= 0 && r.err == 0, "connected once (fd %d, err %d)", r.fd, r.err);
	afd = accept(lfd, NULL, NULL);
	ok(afd >= 0 && write(r.fd, "x", 1) == 1, "the connected fd is usable");
	/* SO_MARK needs CAP_NET_ADMIN: as root it must be the tunnel's mark. */
	if (geteuid() == 0)
		ok(getsockopt(r.fd, SOL_SOCKET, SO_MARK, &mark, &ml) == 0 && mark == 0x539,
		   "tunnel socket carries SO_MARK 0x539 (%#x)", mark);
	else
		tap_skip("SO_MARK needs root");
	close(afd);
	close(r.fd);

	close(lfd); /* nothing listens there now */
	loop_free(r.l);
	memset(&r, 0, sizeof(r));
	r.l = loop_new();
	ok(connector_start(r.l, NULL, &sa, 2000, done, &r, NULL) == 0, "connect to a closed port started");
	run(r.l, 3000);
	ok(r.calls == 1 && r.fd == -1 && r.err == ECONNREFUSED,
	   "refused reported once as ECONNREFUSED (%s)", strerror(r.err));

	loop_free(r.l);
	memset(&r, 0, sizeof(r));
	r.l = loop_new();
	ok(connector_start(r.l, NULL, &sa, 2000, done, &r, &c) == 0, "connect started, then cancelled");
	connector_cancel(c);
	run(r.l, 300);
	ok(r.calls == 0, "no callback after cancel");
	loop_free(r.l);
	return tap_done();
}
