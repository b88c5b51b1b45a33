// SPDX-License-Identifier: Apache-2.0
#include "connector.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ambientd/bpf_shared.h"
#include "loop.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

struct connector {
	struct loop *loop;
	struct loop_io io;
	struct loop_timer timer;
	connector_cb cb;
	void *arg;
};

int sock_connect_as(const struct sockaddr_in *src, const struct sockaddr_in *dst)
{
	int one = 1, mark = AMB_MARK_TUNNEL, fd, err;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/*
	 * No Nagle on any tunnel socket: the relay writes what it read as
	 * soon as it read it, so coalescing is already done, and Nagle would
	 * hold a request's second piece (a body after its header) until the
	 * peer's delayed ACK, ~40 ms later.
	 */
	if (setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
		goto fail;
	if (src) {
		struct sockaddr_in b = { .sin_family = AF_INET,
					 .sin_addr = src->sin_addr };

		/* IP_TRANSPARENT: bind an address that is not ours. */
		if (setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof(one)) < 0 ||
		    setsockopt(fd, SOL_IP, IP_BIND_ADDRESS_NO_PORT, &one,
			       sizeof(one)) < 0 ||
		    bind(fd, (struct sockaddr *)&b, sizeof(b)) < 0)
			goto fail;
	}
	if (connect(fd, (const struct sockaddr *)dst, sizeof(*dst)) < 0 &&
	    errno != EINPROGRESS)
		goto fail;
	return fd;
fail:
	err = -errno;
	close(fd);
	return err;
}

static void connector_finish(struct connector *c, int err)
{
	int fd = c->io.fd;

	loop_io_stop(c->loop, &c->io);
	loop_timer_disarm(c->loop, &c->timer);
	if (err) {
		close(fd);
		fd = -1;
	}
	c->cb(fd, err, c->arg);
	loop_defer_free(c->loop, c, free);
}

static void on_writable(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct connector *c = io->arg;
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	connector_finish(c, err);
}

static void on_timeout(struct loop *l, struct loop_timer *t)
{
	connector_finish(t->arg, ETIMEDOUT);
}

int connector_start(struct loop *l, const struct sockaddr_in *src,
		    const struct sockaddr_in *dst, uint32_t timeout_ms,
		    connector_cb cb, void *arg, struct connector **out)
{
	struct connector *c = calloc(1, sizeof(*c));
	int fd, err;

	if (!c)
		return -ENOMEM;
	fd = sock_connect_as(src, dst);
	if (fd < 0) {
		free(c);
		return fd;
	}
	c->loop = l;
	c->cb = cb;
	c->arg = arg;
	loop_io_init(&c->io, fd, on_writable, c);
	err = loop_io_update(l, &c->io, EPOLLOUT);
	if (err) {
		close(fd);
		free(c);
		return err;
	}
	loop_timer_init(&c->timer, on_timeout, c);
	if (timeout_ms)
		loop_timer_arm(l, &c->timer, timeout_ms);
	if (out)
		*out = c;
	return 0;
}

void connector_cancel(struct connector *c)
{
	loop_io_stop(c->loop, &c->io);
	loop_timer_disarm(c->loop, &c->timer);
	close(c->io.fd);
	loop_defer_free(c->loop, c, free);
}
