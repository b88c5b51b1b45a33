// SPDX-License-Identifier: Apache-2.0
/*
 * HTTP/1.1 over TLS to the API server: just what list, watch and patch
 * need (Content-Length and chunked bodies, Connection: close).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kubeclient.h"
#include "log.h"

#define CONNECT_TIMEOUT_MS 5000
#define REQUEST_IDLE_MS 30000
#define MAX_HEADER 16384
#define MAX_TOKEN 16384

struct kube_client {
	struct kube_conf k;
	SSL_CTX *ctx;
	char token[MAX_TOKEN];
	struct timespec token_mtime;
	off_t token_size;
	ino_t token_ino;
	unsigned token_reads;
};

int kube_conf_init(struct kube_conf *k, const char *server, const char *token,
		   const char *ca, char *err, size_t errlen)
{
	const char *h = getenv("KUBERNETES_SERVICE_HOST");
	const char *p = getenv("KUBERNETES_SERVICE_PORT");
	char buf[sizeof(k->host)];
	unsigned long port = 443;
	char *colon, *end;

	memset(k, 0, sizeof(*k));
	if (server) {
		if (strncmp(server, "https://", 8) == 0)
			server += 8;
		snprintf(buf, sizeof(buf), "%s", server);
		buf[strcspn(buf, "/")] = '\0';
		/* [v6]:port is not supported: clusters here are IPv4. */
		colon = strrchr(buf, ':');
		if (colon) {
			*colon = '\0';
			port = strtoul(colon + 1, &end, 10);
			if (*end || port == 0 || port > 65535) {
				snprintf(err, errlen, "--kube-server %s: bad port", server);
				return -EINVAL;
			}
		}
		snprintf(k->host, sizeof(k->host), "%s", buf);
	} else if (h && *h) {
		snprintf(k->host, sizeof(k->host), "%s", h);
		if (p && *p) {
			port = strtoul(p, &end, 10);
			if (*end || port == 0 || port > 65535) {
				snprintf(err, errlen, "KUBERNETES_SERVICE_PORT=%s: bad port", p);
				return -EINVAL;
			}
		}
	} else {
		snprintf(err, errlen, "no API server: not in a cluster "
			 "(KUBERNETES_SERVICE_HOST unset) and no --kube-server");
		return -EINVAL;
	}
	if (!k->host[0]) {
		snprintf(err, errlen, "empty API server host");
		return -EINVAL;
	}
	k->port = (uint16_t)port;
	snprintf(k->token_path, sizeof(k->token_path), "%s",
		 token ? token : KUBE_SA_DIR "/token");
	snprintf(k->ca_path, sizeof(k->ca_path), "%s", ca ? ca : KUBE_SA_DIR "/ca.crt");
	return 0;
}

struct kube_client *kube_client_new(const struct kube_conf *k, char *err,
				    size_t errlen)
{
	struct kube_client *kc = calloc(1, sizeof(*kc));

	if (!kc) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	kc->k = *k;
	kc->ctx = SSL_CTX_new(TLS_client_method());
	if (!kc->ctx || !SSL_CTX_set_min_proto_version(kc->ctx, TLS1_2_VERSION) ||
	    SSL_CTX_load_verify_locations(kc->ctx, k->ca_path, NULL) != 1) {
		snprintf(err, errlen, "cluster CA %s: %s", k->ca_path,
			 ERR_reason_error_string(ERR_get_error()) ?: "cannot load");
		kube_client_free(kc);
		return NULL;
	}
	SSL_CTX_set_verify(kc->ctx, SSL_VERIFY_PEER, NULL);
	return kc;
}

void kube_client_free(struct kube_client *kc)
{
	if (!kc)
		return;
	SSL_CTX_free(kc->ctx);
	OPENSSL_cleanse(kc->token, sizeof(kc->token));
	free(kc);
}

unsigned kube_client_token_reads(struct kube_client *kc)
{
	return kc->token_reads;
}

/* Re-read the token when the file changed (kubelet swaps it by rename, so
 * the inode changes; an in-place write changes mtime or size). */
static int load_token(struct kube_client *kc)
{
	struct stat st;
	ssize_t n;
	int fd;

	if (stat(kc->k.token_path, &st) < 0)
		return kc->token[0] ? 0 : -errno; /* keep the last good one */
	if (kc->token_reads && st.st_ino == kc->token_ino &&
	    st.st_size == kc->token_size &&
	    st.st_mtim.tv_sec == kc->token_mtime.tv_sec &&
	    st.st_mtim.tv_nsec == kc->token_mtime.tv_nsec)
		return 0;
	fd = open(kc->k.token_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return kc->token[0] ? 0 : -errno;
	n = read(fd, kc->token, sizeof(kc->token) - 1);
	close(fd);
	if (n <= 0)
		return kc->token[0] ? 0 : -EINVAL;
	kc->token[n] = '\0';
	kc->token[strcspn(kc->token, "\r\n")] = '\0';
	kc->token_ino = st.st_ino;
	kc->token_size = st.st_size;
	kc->token_mtime = st.st_mtim;
	kc->token_reads++;
	log_debug("kube: service-account token (re)read from %s", kc->k.token_path);
	return 0;
}

/* ---- connection --------------------------------------------------------- */

struct conn {
	int fd;
	SSL *ssl;
	char buf[16384]; /* read buffer */
	size_t off, len;
	int idle_ms;
	const atomic_bool *stop;
};

static int tcp_connect(const struct kube_conf *k)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *res, *ai;
	char port[8];
	int fd = -1, err = -EHOSTUNREACH;

	snprintf(port, sizeof(port), "%u", k->port);
	if (getaddrinfo(k->host, port, &hints, &res) != 0)
		return -EHOSTUNREACH;
	for (ai = res; ai; ai = ai->ai_next) {
		struct pollfd p;
		socklen_t sl = sizeof(err);

		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0)
			continue;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
			err = -errno;
			close(fd);
			fd = -1;
			continue;
		}
		p = (struct pollfd){ .fd = fd, .events = POLLOUT };
		if (poll(&p, 1, CONNECT_TIMEOUT_MS) != 1) {
			err = -ETIMEDOUT;
			close(fd);
			fd = -1;
			continue;
		}
		getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &sl);
		if (err) {
			err = -err;
			close(fd);
			fd = -1;
			continue;
		}
		/* Blocking from here; reads wait in poll() with our timeouts. */
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
		break;
	}
	freeaddrinfo(res);
	return fd >= 0 ? fd : err;
}

static void conn_close(struct conn *c)
{
	if (c->ssl) {
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

static int conn_open(struct kube_client *kc, struct conn *c)
{
	struct in_addr a4;
	struct in6_addr a6;
	bool is_ip;
	int ret;

	c->fd = tcp_connect(&kc->k);
	if (c->fd < 0)
		return c->fd;
	c->ssl = SSL_new(kc->ctx);
	if (!c->ssl) {
		conn_close(c);
		return -ENOMEM;
	}
	SSL_set_fd(c->ssl, c->fd);
	is_ip = inet_pton(AF_INET, kc->k.host, &a4) == 1 ||
		inet_pton(AF_INET6, kc->k.host, &a6) == 1;
	if (is_ip) {
		X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), kc->k.host);
	} else {
		SSL_set_tlsext_host_name(c->ssl, kc->k.host);
		SSL_set1_host(c->ssl, kc->k.host);
	}
	{
		struct timeval tv = { .tv_sec = CONNECT_TIMEOUT_MS / 1000 };

		setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	}
	ret = SSL_connect(c->ssl);
	if (ret != 1) {
		long v = SSL_get_verify_result(c->ssl);

		log_warn("kube: TLS handshake with %s:%u failed: %s", kc->k.host,
			 kc->k.port, v != X509_V_OK ? X509_verify_cert_error_string(v) :
			 (ERR_reason_error_string(ERR_get_error()) ?: "connection closed"));
		ERR_clear_error();
		conn_close(c);
		return -ECONNABORTED;
	}
	return 0;
}

static int conn_write(struct conn *c, const char *data, size_t len)
{
	while (len) {
		int n = SSL_write(c->ssl, data, (int)len);

		if (n <= 0)
			return -EIO;
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Refill the buffer: 0, -ECANCELED, -ETIMEDOUT, -EPIPE at EOF, -EIO. */
static int conn_fill(struct conn *c)
{
	int waited = 0, n;

	if (c->off < c->len)
		return 0;
	c->off = c->len = 0;
	while (!SSL_pending(c->ssl)) {
		struct pollfd p = { .fd = c->fd, .events = POLLIN };
		int r;

		if (c->stop && atomic_load(c->stop))
			return -ECANCELED;
		r = poll(&p, 1, 500);
		if (r > 0)
			break;
		if (r < 0 && errno != EINTR)
			return -errno;
		waited += 500;
		if (waited >= c->idle_ms)
			return -ETIMEDOUT;
	}
	n = SSL_read(c->ssl, c->buf, sizeof(c->buf));
	if (n <= 0) {
		int e = SSL_get_error(c->ssl, n);

		ERR_clear_error();
		if (e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL)
			return -EPIPE;
		if (e == SSL_ERROR_WANT_READ)
			return conn_fill(c);
		return -EIO;
	}
	c->len = (size_t)n;
	return 0;
}

/* One line (CRLF or LF stripped) into out; -EMSGSIZE if longer than cap. */
static int conn_line(struct conn *c, char *out, size_t cap)
{
	size_t n = 0;
	int err;

	for (;;) {
		char ch;

		err = conn_fill(c);
		if (err)
			return err;
		ch = c->buf[c->off++];
		if (ch == '\n')
			break;
		if (n + 1 >= cap)
			return -EMSGSIZE;
		out[n++] = ch;
	}
	if (n && out[n - 1] == '\r')
		n--;
	out[n] = '\0';
	return 0;
}

/* ---- HTTP --------------------------------------------------------------- */

struct resp {
	int status;
	bool chunked;
	long long content_length; /* -1: until EOF */
	long long chunk_left; /* chunked: bytes left in this chunk; -1: need size */
	bool done;
};

static int send_request(struct kube_client *kc, struct conn *c, const char *method,
			const char *path, const char *ctype, const char *body)
{
	char *head = NULL;
	int err, n;

	err = load_token(kc);
	if (err)
		log_warn("kube: token %s: %s", kc->k.token_path, strerror(-err));
	n = asprintf(&head,
		     "%s %s HTTP/1.1\r\nHost: %s:%u\r\nUser-Agent: ambientd\r\n"
		     "Accept: application/json\r\nConnection: close\r\n"
		     "%s%s%s"
		     "%s%s%s"
		     "Content-Length: %zu\r\n\r\n",
		     method, path, kc->k.host, kc->k.port,
		     kc->token[0] ? "Authorization: Bearer " : "", kc->token,
		     kc->token[0] ? "\r\n" : "", ctype ? "Content-Type: " : "",
		     ctype ? ctype : "", ctype ? "\r\n" : "", body ? strlen(body) : 0);
	if (n < 0)
		return -ENOMEM;
	err = conn_write(c, head, (size_t)n);
	OPENSSL_cleanse(head, (size_t)n);
	free(head);
	if (!err && body)
		err = conn_write(c, body, strlen(body));
	return err;
}

static int read_head(struct conn *c, struct resp *r)
{
	char line[MAX_HEADER];
	int err;

	err = conn_line(c, line, sizeof(line));
	if (err)
		return err;
	if (sscanf(line, "HTTP/1.%*d %d", &r->status) != 1)
		return -EPROTO;
	r->content_length = -1;
	r->chunk_left = -1;
	for (;;) {
		err = conn_line(c, line, sizeof(line));
		if (err)
			return err;
		if (!line[0])
			return 0;
		if (strncasecmp(line, "Content-Length:", 15) == 0)
			r->content_length = strtoll(line + 15, NULL, 10);
		else if (strncasecmp(line, "Transfer-Encoding:", 18) == 0 &&
			 strcasestr(line + 18, "chunked"))
			r->chunked = true;
	}
}

/* Up to cap body bytes into out; returns bytes (0 at the end) or -errno. */
static ssize_t read_body(struct conn *c, struct resp *r, char *out, size_t cap)
{
	char line[256];
	size_t n;
	int err;

	if (r->done)
		return 0;
	if (r->chunked && r->chunk_left <= 0) {
		if (r->chunk_left == 0) { /* CRLF after the previous chunk */
			err = conn_line(c, line, sizeof(line));
			if (err)
				return err;
		}
		err = conn_line(c, line, sizeof(line));
		if (err)
			return err;
		r->chunk_left = strtoll(line, NULL, 16);
		if (r->chunk_left < 0)
			return -EPROTO;
		if (r->chunk_left == 0) {
			r->done = true;
			return 0;
		}
	}
	if (!r->chunked && r->content_length == 0) {
		r->done = true;
		return 0;
	}
	err = conn_fill(c);
	if (err == -EPIPE && !r->chunked && r->content_length < 0) {
		r->done = true;
		return 0;
	}
	if (err)
		return err;
	n = c->len - c->off;
	if (n > cap)
		n = cap;
	if (r->chunked && (long long)n > r->chunk_left)
		n = (size_t)r->chunk_left;
	if (!r->chunked && r->content_length >= 0 && (long long)n > r->content_length)
		n = (size_t)r->content_length;
	memcpy(out, c->buf + c->off, n);
	c->off += n;
	if (r->chunked)
		r->chunk_left -= (long long)n;
	else if (r->content_length > 0)
		r->content_length -= (long long)n;
	return (ssize_t)n;
}

int kube_request(struct kube_client *kc, const char *method, const char *path,
		 const char *ctype, const char *body, int *status, char **out,
		 size_t *out_len)
{
	struct conn *c = calloc(1, sizeof(*c));
	struct resp r = { 0 };
	size_t cap = 65536, len = 0;
	char *buf = NULL;
	int err;

	if (!c)
		return -ENOMEM;
	c->fd = -1;
	c->idle_ms = REQUEST_IDLE_MS;
	err = conn_open(kc, c);
	if (!err)
		err = send_request(kc, c, method, path, ctype, body);
	if (!err)
		err = read_head(c, &r);
	if (!err)
		buf = malloc(cap + 1);
	while (!err && buf) {
		ssize_t n;

		if (len == cap) {
			char *nb;

			if (cap >= KUBE_MAX_BODY) {
				err = -EFBIG;
				break;
			}
			nb = realloc(buf, cap * 2 + 1);
			if (!nb)
				break;
			buf = nb;
			cap *= 2;
		}
		n = read_body(c, &r, buf + len, cap - len);
		if (n < 0)
			err = (int)n;
		else if (n == 0)
			break;
		else
			len += (size_t)n;
	}
	if (!err && !buf)
		err = -ENOMEM;
	conn_close(c);
	free(c);
	if (err) {
		free(buf);
		return err;
	}
	buf[len] = '\0';
	*status = r.status;
	*out = buf;
	if (out_len)
		*out_len = len;
	return 0;
}

int kube_stream(struct kube_client *kc, const char *path,
		int (*on_line)(char *line, size_t len, void *arg), void *arg,
		int *status, const atomic_bool *stop, int idle_ms)
{
	struct conn *c = calloc(1, sizeof(*c));
	struct resp r = { 0 };
	size_t cap = 65536, len = 0;
	char *line = NULL;
	int err;

	if (!c)
		return -ENOMEM;
	c->fd = -1;
	c->idle_ms = idle_ms;
	c->stop = stop;
	err = conn_open(kc, c);
	if (!err)
		err = send_request(kc, c, "GET", path, NULL, NULL);
	if (!err)
		err = read_head(c, &r);
	if (!err) {
		*status = r.status;
		line = malloc(cap + 1);
		if (!line)
			err = -ENOMEM;
	}
	while (!err) {
		ssize_t n;
		char *nl;

		if (len == cap) {
			char *nb;

			if (cap >= KUBE_MAX_LINE || r.status / 100 != 2) {
				err = r.status / 100 != 2 ? 0 : -EMSGSIZE;
				break;
			}
			nb = realloc(line, cap * 2 + 1);
			if (!nb) {
				err = -ENOMEM;
				break;
			}
			line = nb;
			cap *= 2;
		}
		n = read_body(c, &r, line + len, cap - len);
		if (n < 0) {
			err = (int)n;
			break;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		/* Hand over every complete line; keep the partial tail. */
		while (r.status / 100 == 2 && (nl = memchr(line, '\n', len))) {
			size_t l = (size_t)(nl - line);

			*nl = '\0';
			if (l && (err = on_line(line, l, arg)))
				break;
			memmove(line, nl + 1, len - l - 1);
			len -= l + 1;
		}
	}
	if ((!err || err == -EPIPE) && len) {
		line[len] = '\0';
		if (r.status / 100 != 2 || len)
			err = on_line(line, len, arg) ?: (err == -EPIPE ? 0 : err);
	}
	if (err == -EPIPE)
		err = 0; /* the server ended the stream */
	conn_close(c);
	free(c);
	free(line);
	return err;
}
