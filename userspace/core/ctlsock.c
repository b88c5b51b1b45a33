// SPDX-License-Identifier: Apache-2.0
#include "ctlsock.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"

#define CTL_MAX_REQUEST 1024
#define CTL_MAX_ANSWER (16u << 20)

void ctlsock_path(char *buf, size_t len, const char *node)
{
	snprintf(buf, len, "%s/%s.sock", CTLSOCK_DIR, node);
}

static int fill_addr(struct sockaddr_un *sa, const char *path)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa->sun_path))
		return -ENAMETOOLONG;
	strcpy(sa->sun_path, path);
	return 0;
}

int ctlsock_listen(const char *path)
{
	struct sockaddr_un sa;
	int fd, err;

	err = fill_addr(&sa, path);
	if (err)
		return err;
	if (mkdir(CTLSOCK_DIR, 0700) < 0 && errno != EEXIST)
		return -errno;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	unlink(path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    chmod(path, 0600) < 0 || listen(fd, 16) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

static void set_timeouts(int fd)
{
	struct timeval tv = { .tv_sec = 1 };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

void ctlsock_serve_one(int lfd, ctlsock_handler h, void *arg)
{
	char req[CTL_MAX_REQUEST + 1];
	char *answer = NULL;
	size_t alen = 0, got = 0;
	FILE *out;
	int fd;

	fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return;
	/* Blocking with short timeouts: a stuck client costs at most 2 s of
	 * the control thread, never the data path. */
	set_timeouts(fd);
	while (got < CTL_MAX_REQUEST) {
		ssize_t n = read(fd, req + got, CTL_MAX_REQUEST - got);

		if (n <= 0)
			break;
		got += (size_t)n;
		if (memchr(req, '\n', got))
			break;
	}
	req[got] = '\0';
	req[strcspn(req, "\r\n")] = '\0';
	out = open_memstream(&answer, &alen);
	if (!out)
		goto cleanup;
	if (h(req, out, arg) == -ENOENT)
		fprintf(out, "{\"error\":\"unknown command '%.64s'\"}\n", req);
	fclose(out);
	write_all(fd, answer, alen);
cleanup:
	free(answer);
	close(fd);
}

int ctlsock_request(const char *node, const char *cmd, char **answer)
{
	char path[sizeof(((struct sockaddr_un *)0)->sun_path) + 64], *buf = NULL;
	size_t len = 0, cap = 0;
	struct sockaddr_un sa;
	int fd, err;

	ctlsock_path(path, sizeof(path), node);
	err = fill_addr(&sa, path);
	if (err)
		return err;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	set_timeouts(fd);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		err = -errno;
		goto cleanup;
	}
	err = write_all(fd, cmd, strlen(cmd));
	if (!err)
		err = write_all(fd, "\n", 1);
	while (!err) {
		ssize_t n;

		if (cap - len < 4096) {
			char *nb;

			if (cap >= CTL_MAX_ANSWER) {
				err = -EFBIG;
				break;
			}
			nb = realloc(buf, cap ? cap * 2 : 8192);
			if (!nb) {
				err = -ENOMEM;
				break;
			}
			buf = nb;
			cap = cap ? cap * 2 : 8192;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			err = -errno;
		else if (n == 0)
			break;
		else
			len += (size_t)n;
	}
	if (!err) {
		buf[len] = '\0';
		*answer = buf;
		buf = NULL;
	}
cleanup:
	free(buf);
	close(fd);
	return err;
}
