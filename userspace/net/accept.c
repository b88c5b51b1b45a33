// SPDX-License-Identifier: Apache-2.0
#include "accept.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

static pthread_mutex_t reserve_lock = PTHREAD_MUTEX_INITIALIZER;
static int reserve_fd = -1;

static void reserve_take(void)
{
	if (reserve_fd < 0)
		reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

void reset_close(int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

static void on_resume(struct loop *l, struct loop_timer *t)
{
	struct acceptor *a = t->arg;

	if (a->io.fd >= 0)
		loop_io_update(l, &a->io, EPOLLIN);
}

void acceptor_init(struct acceptor *a, int fd, loop_io_cb cb, void *arg,
		   const char *name)
{
	loop_io_init(&a->io, fd, cb, arg);
	loop_timer_init(&a->resume, on_resume, a);
	a->name = name;
	atomic_store(&a->fd_exhausted, 0);
	pthread_mutex_lock(&reserve_lock);
	reserve_take();
	pthread_mutex_unlock(&reserve_lock);
}

int acceptor_start(struct loop *l, struct acceptor *a)
{
	return loop_io_update(l, &a->io, EPOLLIN);
}

void acceptor_close(struct loop *l, struct acceptor *a)
{
	/* Never set up (a worker that failed before its listener existed):
	 * its zeroed timer must not be touched. */
	if (a->io.fd < 0)
		return;
	loop_timer_disarm(l, &a->resume);
	loop_io_stop(l, &a->io);
	close(a->io.fd);
	a->io.fd = -1;
}

/* Out of fds: shed the oldest waiting connection through the reserve fd,
 * then stop looking at the listener for a while. */
static void exhausted(struct loop *l, struct acceptor *a, int err)
{
	int fd;

	pthread_mutex_lock(&reserve_lock);
	if (reserve_fd >= 0) {
		close(reserve_fd);
		reserve_fd = -1;
		fd = accept4(a->io.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0)
			reset_close(fd);
	}
	reserve_take(); /* may fail while fds stay short: tried again next time */
	pthread_mutex_unlock(&reserve_lock);
	atomic_fetch_add_explicit(&a->fd_exhausted, 1, memory_order_relaxed);
	log_warn_rl("%s: accept: %s; refusing new connections for %d ms",
		    a->name, strerror(err), ACCEPT_PAUSE_MS);
	loop_io_update(l, &a->io, 0);
	loop_timer_arm(l, &a->resume, ACCEPT_PAUSE_MS);
}

int acceptor_accept(struct loop *l, struct acceptor *a, struct sockaddr_in *peer)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	int fd;

	for (;;) {
		fd = accept4(a->io.fd, (struct sockaddr *)&sa, &sl,
			     SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0)
			break;
		switch (errno) {
		case EINTR:
		case ECONNABORTED: /* reset while waiting: try the next one */
			sl = sizeof(sa);
			continue;
		case EAGAIN:
			return -EAGAIN;
		case EMFILE:
		case ENFILE:
		case ENOBUFS:
		case ENOMEM:
			exhausted(l, a, errno);
			return -EMFILE;
		default:
			return -errno;
		}
	}
	if (peer) {
		if (sl == sizeof(sa) && sa.sin_family == AF_INET)
			*peer = sa;
		else
			memset(peer, 0, sizeof(*peer));
	}
	return fd;
}
