/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The daemon's local control socket, /run/ambientd/<node>.sock (root only):
 * ambientctl sends one request line ("certificates", "status") and reads the
 * JSON answer until the daemon closes. State that lives in the kernel (pods,
 * counters, sockets) is read from the pins instead, so it works with the
 * daemon down; what only the daemon knows comes through here.
 */
#ifndef AMBIENTD_CTLSOCK_H
#define AMBIENTD_CTLSOCK_H

#include <stddef.h>
#include <stdio.h>

#define CTLSOCK_DIR "/run/ambientd"

/* Writes the answer for `cmd` to out; returns 0, or -ENOENT for an unknown
 * command (the client is told so). */
typedef int (*ctlsock_handler)(const char *cmd, FILE *out, void *arg);

/* Path of node's socket into buf. */
void ctlsock_path(char *buf, size_t len, const char *node);
/* Listening socket at path (a stale socket file is replaced). fd or -errno. */
int ctlsock_listen(const char *path);
/* Serve one connection waiting on the listening fd (bounded, 1 s timeouts). */
void ctlsock_serve_one(int lfd, ctlsock_handler h, void *arg);

/* Client: send cmd and return the whole answer (malloc'd, NUL-terminated).
 * 0, -ECONNREFUSED/-ENOENT when no daemon runs, or -errno. */
int ctlsock_request(const char *node, const char *cmd, char **answer);

#endif
