/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A small, blocking Kubernetes API client for one thread at a time: HTTPS
 * (OpenSSL, server verified against the cluster CA, SNI/host or IP check),
 * bearer-token auth with the service-account token re-read whenever the
 * file changes (kubelet rotates it), one request per connection.
 *
 * Every call blocks the calling thread only, with bounded connect and read
 * timeouts; the daemon runs these calls on its kube threads, never on the
 * control loop or a worker. All functions return 0 or -errno.
 */
#ifndef AMBIENTD_KUBECLIENT_H
#define AMBIENTD_KUBECLIENT_H

#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define KUBE_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"
#define KUBE_MAX_BODY (256u << 20) /* a list bigger than this is refused */
#define KUBE_MAX_LINE (16u << 20) /* one watch event */

struct kube_conf {
	char host[256]; /* API server host name or IP */
	uint16_t port;
	char token_path[PATH_MAX];
	char ca_path[PATH_MAX];
};

/*
 * In-cluster defaults: KUBERNETES_SERVICE_HOST/PORT and the service
 * account's token and ca.crt. server ("https://host:port" or "host:port")
 * and the two paths override them when non-NULL. -EINVAL with a message in
 * err when nothing names a server.
 */
int kube_conf_init(struct kube_conf *k, const char *server, const char *token,
		   const char *ca, char *err, size_t errlen);

struct kube_client;

/* A client (its TLS context loaded from ca_path); NULL with err set. */
struct kube_client *kube_client_new(const struct kube_conf *k, char *err,
				    size_t errlen);
void kube_client_free(struct kube_client *kc);

/* Times the token file was (re)read; for logs and tests. */
unsigned kube_client_token_reads(struct kube_client *kc);

/*
 * One request. body/ctype may be NULL. On 0, *status is the HTTP status
 * and *resp the NUL-terminated body (malloc'd, caller frees; may be empty).
 * -errno for connection, TLS or protocol failures.
 */
int kube_request(struct kube_client *kc, const char *method, const char *path,
		 const char *ctype, const char *body, int *status, char **resp,
		 size_t *resp_len);

/*
 * GET path and hand each newline-terminated line of the (chunked or plain)
 * body to on_line until the server ends the stream, on_line returns
 * non-zero (returned as is), *stop becomes true (-ECANCELED) or nothing
 * arrives for idle_ms (-ETIMEDOUT). A non-2xx answer returns 0 with
 * *status set and its body (up to 64 KiB) passed as one line.
 */
int kube_stream(struct kube_client *kc, const char *path,
		int (*on_line)(char *line, size_t len, void *arg), void *arg,
		int *status, const atomic_bool *stop, int idle_ms);

#endif
