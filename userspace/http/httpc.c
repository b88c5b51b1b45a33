// SPDX-License-Identifier: Apache-2.0
/* The blocking HTTP/1.1 client of httpd.h (ambientctl -> admin port). */
#include "httpd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

static int wait_fd(int fd, short ev, int timeout_ms)
{
	struct pollfd p = {.fd = fd, .events = ev};
	int n;

	do
		n = poll(&p, 1, timeout_ms);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return n == 0 ? -ETIMEDOUT : 0;
}

int http_fetch(const char *ip, uint16_t port, const char *method,
	       const char *path, int timeout_ms, int *status, struct sbuf *body)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons(port)};
	struct sbuf in;
	char req[1024], *hend, *p;
	int fd, err = 0, n;
	socklen_t sl = sizeof(err);
	size_t off = 0, clen = 0;
	bool have_len = false;

	if (inet_pton(AF_INET, ip, &sa.sin_addr) != 1)
		return -EINVAL;
	n = snprintf(req, sizeof(req),
		     "%s %s HTTP/1.1\r\nHost: %s:%u\r\n"
		     "Content-Length: 0\r\nConnection: close\r\n\r\n",
		     method, path, ip, port);
	if (n < 0 || (size_t)n >= sizeof(req))
		return -ENAMETOOLONG;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (errno != EINPROGRESS) {
			err = -errno;
			goto out_fd;
		}
		err = wait_fd(fd, POLLOUT, timeout_ms);
		if (!err &&
		    getsockopt(fd, SOL_SOCKET, SO_ERROR, &n, &sl) == 0 && n)
			err = -n;
		if (err)
			goto out_fd;
	}
	while (off < (size_t)strlen(req)) {
		ssize_t w =
		    send(fd, req + off, strlen(req) - off, MSG_NOSIGNAL);

		if (w < 0 && errno == EAGAIN) {
			err = wait_fd(fd, POLLOUT, timeout_ms);
			if (err)
				goto out_fd;
			continue;
		}
		if (w < 0) {
			err = -errno;
			goto out_fd;
		}
		off += (size_t)w;
	}
	sbuf_init(&in, body->max ? body->max + 65536 : 0);
	for (;;) {
		char buf[16384];
		ssize_t r = recv(fd, buf, sizeof(buf), 0);

		if (r < 0 && errno == EAGAIN) {
			err = wait_fd(fd, POLLIN, timeout_ms);
			if (err)
				break;
			continue;
		}
		if (r < 0) {
			err = -errno;
			break;
		}
		if (r == 0)
			break;
		sbuf_put(&in, buf, (size_t)r);
		if (sbuf_failed(&in)) {
			err = -EFBIG;
			break;
		}
	}
	if (!err) {
		hend = in.p ? strstr(in.p, "\r\n\r\n") : NULL;
		if (!hend || sscanf(in.p, "HTTP/1.%*d %d", status) != 1) {
			err = -EPROTO;
		} else {
			*hend = '\0';
			p = strcasestr(in.p, "\r\nContent-Length:");
			if (p) {
				clen = strtoul(p + 17, NULL, 10);
				have_len = true;
			}
			hend += 4;
			n = (int)(in.len - (size_t)(hend - in.p));
			if (have_len && clen < (size_t)n)
				n = (int)clen;
			sbuf_put(body, hend, (size_t)n);
		}
	}
	sbuf_free(&in);
out_fd:
	close(fd);
	return err;
}
