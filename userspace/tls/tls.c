// SPDX-License-Identifier: Apache-2.0
/*
 * HBONE TLS: contexts, SPIFFE checks and the loop-driven connection (tls.h).
 *
 * Connection data path. OpenSSL talks to a custom BIO whose read side pops
 * from c->in and whose write side appends to c->out; the connection moves
 * bytes between those rings and the socket with readv()/sendmsg(). The BIO
 * never touches the socket, so OpenSSL only ever sees "retry" (empty in),
 * EOF (peer FIN seen and in drained) or an error (socket error seen and in
 * drained). The out ring grows past its nominal size rather than failing a
 * BIO write (only handshake messages, alerts and close_notify can make it
 * do that: plaintext writes are clamped to the bound).
 *
 * Readability. SSL_read() drains c->in into OpenSSL's own buffer, so after
 * it reports WANT_READ every byte OpenSSL holds is part of an incomplete
 * record. c->rx_stalled records exactly that ("the last read said EAGAIN
 * and nothing arrived since"); anything new (bytes, EOF, error) clears it.
 * The caller is told it can read while it wants to and !rx_stalled.
 * c->rx_drained says the socket had nothing more at the last read (a short
 * read or EAGAIN) and no EPOLLIN came since: then neither another read()
 * nor, with c->in and OpenSSL's buffer empty too, another SSL_read() can
 * find anything, so both are skipped (a small message costs one read()
 * and one SSL_read(), not two of each).
 *
 * Connection states (conn_set_state() checks the transitions):
 *
 *   HANDSHAKING --ok--> OPEN --fatal TLS/socket error--> FAILED
 *        |                 \                               |
 *        +--fail--> FAILED  +--tls_conn_close()-----> LINGER --drained/
 *                                                       timeout--> (freed)
 *
 * tls_conn_close() goes straight to freeing when nothing is pending, and
 * tls_conn_abort() always does.
 */
#include "tls.h"

#include "bufpool.h"

#include "ca.h"
#include "log.h"
#include "loop.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define HBONE_CIPHERSUITES "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384"
#define HBONE_GROUPS	   "X25519:P-256:P-384"
#define VERIFY_DEPTH	   4

/* ---- ex_data slots (allocated once per process) ---- */

static int td_idx = -1;	 /* SSL_CTX: char * trust domain (server) */
static int msg_idx = -1; /* SSL: char * first failure reason we found */
static BIO_METHOD *conn_bio_meth;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;

static void free_str(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx,
		     long argl, void *argp)
{
	free(ptr);
}

static int conn_bio_write(BIO *b, const char *data, int len);
static int conn_bio_read(BIO *b, char *buf, int len);
static long conn_bio_ctrl(BIO *b, int cmd, long num, void *ptr);

static int conn_bio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static int conn_bio_destroy(BIO *b)
{
	return 1;
}

static void tls_init_once(void)
{
	td_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, free_str);
	msg_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, free_str);
	conn_bio_meth = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
				     "ambientd-conn");
	if (conn_bio_meth) {
		BIO_meth_set_write(conn_bio_meth, conn_bio_write);
		BIO_meth_set_read(conn_bio_meth, conn_bio_read);
		BIO_meth_set_ctrl(conn_bio_meth, conn_bio_ctrl);
		BIO_meth_set_create(conn_bio_meth, conn_bio_create);
		BIO_meth_set_destroy(conn_bio_meth, conn_bio_destroy);
	}
}

static bool tls_init(void)
{
	pthread_once(&tls_once, tls_init_once);
	return td_idx >= 0 && msg_idx >= 0 && conn_bio_meth;
}

/* Remember the first reason we know better than OpenSSL's error queue. */
static __attribute__((format(printf, 2, 3))) void set_msg(SSL *ssl,
							  const char *fmt, ...)
{
	char buf[384];
	va_list ap;
	char *s;

	if (SSL_get_ex_data(ssl, msg_idx))
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	s = strdup(buf);
	if (s && !SSL_set_ex_data(ssl, msg_idx, s))
		free(s);
}

/* ---- SANs ---- */

/* A URI that means to be a SPIFFE ID: scheme "spiffe", in any case. */
static bool spiffe_scheme(const unsigned char *uri, int n)
{
	static const char s[] = "spiffe:";

	if (n < (int)sizeof(s) - 1)
		return false;
	for (size_t i = 0; i < sizeof(s) - 1; i++) {
		unsigned char c = uri[i];

		if (c >= 'A' && c <= 'Z')
			c += 'a' - 'A';
		if (c != (unsigned char)s[i])
			return false;
	}
	return true;
}

int tls_cert_identity(X509 *cert, char *buf, size_t len)
{
	const ASN1_IA5STRING *uri = NULL;
	const unsigned char *s;
	GENERAL_NAMES *gens;
	int crit = -1, n, ret = -ENOENT;

	if (!cert)
		return -ENOENT;
	gens = X509_get_ext_d2i(cert, NID_subject_alt_name, &crit, NULL);
	if (!gens) /* absent (-1); or repeated (-2) or not decodable */
		return crit == -1 ? -ENOENT : -EINVAL;
	for (int i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
		const GENERAL_NAME *gn = sk_GENERAL_NAME_value(gens, i);

		if (gn->type != GEN_URI)
			continue;
		/* X509-SVID §2: a validator MUST reject more than one. */
		if (uri) {
			ret = -EINVAL;
			goto out;
		}
		uri = gn->d.uniformResourceIdentifier;
	}
	if (!uri)
		goto out;
	s = ASN1_STRING_get0_data(uri);
	n = ASN1_STRING_length(uri);
	if (!spiffe_scheme(s, n))
		goto out; /* -ENOENT: some other URI, no SPIFFE identity */
	/*
	 * The SPIFFE ID rules (ca.c), and X509-SVID §5.2: a leaf's ID has a
	 * path. spiffe_trust_domain() refuses empty segments, so a '/' after
	 * the trust domain means a non-empty path.
	 */
	ret = -EINVAL;
	if (spiffe_trust_domain((const char *)s, n, NULL) ||
	    !memchr(s + strlen("spiffe://"), '/', n - strlen("spiffe://")))
		goto out;
	ret = -ENOSPC;
	if ((size_t)n >= len)
		goto out;
	memcpy(buf, s, n);
	buf[n] = '\0';
	ret = 0;
out:
	GENERAL_NAMES_free(gens);
	return ret;
}

int tls_peer_identity(SSL *ssl, char *buf, size_t len)
{
	return tls_cert_identity(SSL_get0_peer_certificate(ssl), buf, len);
}

bool tls_peer_matches(SSL *ssl, const char *const *expected, size_t n)
{
	char id[SPIFFE_ID_MAX + 1];

	if (tls_peer_identity(ssl, id, sizeof(id)))
		return false;
	for (size_t j = 0; j < n; j++)
		if (expected[j] && !strcmp(expected[j], id))
			return true;
	return false;
}

/* ---- contexts ---- */

/*
 * Why tls_cert_identity() refused `cert` (rc), as a sentence for the log:
 * printable ASCII only and bounded, since the peer chose the bytes.
 */
static void identity_refusal(X509 *cert, int rc, char *msg, size_t len)
{
	GENERAL_NAMES *gens;
	char uri[97];
	int n_uri = 0;

	uri[0] = '\0';
	gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	for (int i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
		const GENERAL_NAME *gn = sk_GENERAL_NAME_value(gens, i);
		const unsigned char *s;
		int n, o = 0;

		if (gn->type != GEN_URI || n_uri++)
			continue;
		s = ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier);
		n = ASN1_STRING_length(gn->d.uniformResourceIdentifier);
		for (int k = 0; k < n && o < (int)sizeof(uri) - 4; k++)
			uri[o++] =
			    s[k] >= 0x20 && s[k] < 0x7f ? (char)s[k] : '?';
		uri[o] = '\0';
		if (o < n)
			strcpy(uri + o, "...");
	}
	GENERAL_NAMES_free(gens);
	if (rc == -ENOENT)
		snprintf(msg, len, "peer certificate has no SPIFFE URI SAN");
	else if (n_uri > 1)
		snprintf(msg, len,
			 "peer certificate has %d URI SANs (a SPIFFE "
			 "certificate has exactly one)",
			 n_uri);
	else if (n_uri == 1)
		snprintf(msg, len, "peer URI SAN %s is not a valid SPIFFE ID",
			 uri);
	else
		snprintf(msg, len,
			 "peer certificate has a malformed or repeated "
			 "subjectAltName extension");
}

/*
 * Both sides' chain check hook: after OpenSSL accepted the chain (depth 0,
 * preverify_ok), require exactly one URI SAN, a valid SPIFFE ID (see
 * tls_cert_identity); the server also requires it in its trust domain
 * (ex_data td_idx of its context). The client checks which identity it is
 * after the handshake (tls_peer_matches), as that depends on the dial.
 */
static int verify_cb(int preverify_ok, X509_STORE_CTX *xs)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(
	    xs, SSL_get_ex_data_X509_STORE_CTX_idx());
	X509 *cert = X509_STORE_CTX_get_current_cert(xs);
	char id[SPIFFE_ID_MAX + 1], td[SPIFFE_TD_MAX + 1], msg[256];
	const char *want;
	int rc;

	if (!preverify_ok || !ssl || X509_STORE_CTX_get_error_depth(xs) != 0)
		return preverify_ok;
	rc = tls_cert_identity(cert, id, sizeof(id));
	if (rc) {
		identity_refusal(cert, rc, msg, sizeof(msg));
		set_msg(ssl, "%s", msg);
		goto reject;
	}
	want = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), td_idx);
	if (!want)
		return 1;
	spiffe_trust_domain(id, strlen(id), td);
	if (strcmp(td, want)) {
		set_msg(ssl, "peer identity %s not in trust domain %s", id,
			want);
		goto reject;
	}
	return 1;
reject:
	X509_STORE_CTX_set_error(xs, X509_V_ERR_APPLICATION_VERIFICATION);
	return 0;
}

/* Refuse clients that do not offer ALPN at all (the select cb never runs). */
static int client_hello_cb(SSL *ssl, int *al, void *arg)
{
	const unsigned char *p;
	size_t len;

	if (SSL_client_hello_get0_ext(
		ssl, TLSEXT_TYPE_application_layer_protocol_negotiation, &p,
		&len))
		return SSL_CLIENT_HELLO_SUCCESS;
	set_msg(ssl, "peer did not offer ALPN h2 (no ALPN extension)");
	*al = SSL_AD_NO_APPLICATION_PROTOCOL;
	return SSL_CLIENT_HELLO_ERROR;
}

static int alpn_select_cb(SSL *ssl, const unsigned char **out,
			  unsigned char *outlen, const unsigned char *in,
			  unsigned int inlen, void *arg)
{
	for (unsigned int i = 0; i < inlen; i += 1 + in[i]) {
		if (in[i] == 2 && i + 3 <= inlen &&
		    !memcmp(in + i + 1, "h2", 2)) {
			*out = in + i + 1;
			*outlen = 2;
			return SSL_TLSEXT_ERR_OK;
		}
	}
	set_msg(ssl, "peer did not offer ALPN h2");
	return SSL_TLSEXT_ERR_ALERT_FATAL;
}

static void log_ctx_error(const char *what)
{
	unsigned long e = ERR_peek_last_error();
	char buf[256];

	ERR_error_string_n(e, buf, sizeof(buf));
	ERR_clear_error();
	log_error("tls: %s: %s", what, e ? buf : "unknown error");
}

/* The parts both sides share. */
static SSL_CTX *ctx_common(const struct leaf *leaf, X509_STORE *trust)
{
	SSL_CTX *ctx;

	if (!tls_init()) {
		log_error("tls: cannot initialize (out of memory)");
		return NULL;
	}
	ERR_clear_error();
	ctx = SSL_CTX_new(TLS_method());
	if (!ctx)
		goto fail;
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
	    !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) ||
	    !SSL_CTX_set_ciphersuites(ctx, HBONE_CIPHERSUITES) ||
	    !SSL_CTX_set1_groups_list(ctx, HBONE_GROUPS) ||
	    !SSL_CTX_set_num_tickets(ctx, 0))
		goto fail;
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_COMPRESSION |
				     SSL_OP_IGNORE_UNEXPECTED_EOF |
				     SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	/* Give OpenSSL's record buffers back while a connection is idle. */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_verify_depth(ctx, VERIFY_DEPTH);
	if (leaf && (SSL_CTX_use_certificate(ctx, leaf->cert) != 1 ||
		     SSL_CTX_use_PrivateKey(ctx, leaf->key) != 1 ||
		     SSL_CTX_check_private_key(ctx) != 1))
		goto fail;
	if (trust)
		SSL_CTX_set1_cert_store(ctx, trust);
	return ctx;
fail:
	log_ctx_error("building a TLS context");
	SSL_CTX_free(ctx);
	return NULL;
}

SSL_CTX *tls_ctx_server(const struct leaf *leaf, X509_STORE *trust,
			const char *trust_domain)
{
	char probe[SPIFFE_TD_MAX + 16];
	SSL_CTX *ctx;
	char *td;
	int n;

	n = trust_domain
		? snprintf(probe, sizeof(probe), "spiffe://%s", trust_domain)
		: -1;
	if (!leaf || !trust || n < 0 || (size_t)n >= sizeof(probe) ||
	    spiffe_trust_domain(probe, n, NULL)) {
		log_error("tls: server context needs a leaf, roots and a valid "
			  "trust domain");
		return NULL;
	}
	ctx = ctx_common(leaf, trust);
	if (!ctx)
		return NULL;
	td = strdup(trust_domain);
	if (!td || !SSL_CTX_set_ex_data(ctx, td_idx, td)) {
		free(td);
		SSL_CTX_free(ctx);
		log_error("tls: out of memory");
		return NULL;
	}
	SSL_CTX_set_verify(ctx,
			   SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
			   verify_cb);
	SSL_CTX_set_client_hello_cb(ctx, client_hello_cb, NULL);
	SSL_CTX_set_alpn_select_cb(ctx, alpn_select_cb, NULL);
	return ctx;
}

SSL_CTX *tls_ctx_client(const struct leaf *leaf, X509_STORE *trust)
{
	static const unsigned char alpn[] = {2, 'h', '2'};
	SSL_CTX *ctx = ctx_common(leaf, trust);

	if (!ctx)
		return NULL;
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, verify_cb);
	/* Returns 0 on success, unlike most of OpenSSL. */
	if (SSL_CTX_set_alpn_protos(ctx, alpn, sizeof(alpn))) {
		log_ctx_error("setting ALPN");
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/*
 * A sentence for the failure just reported on ssl: our own reason first,
 * then the chain verdict, then OpenSSL's queue, then the socket. Clears the
 * thread's error queue.
 */
static void describe_failure(SSL *ssl, int sock_err, char *buf, size_t len)
{
	const char *msg = SSL_get_ex_data(ssl, msg_idx);
	unsigned long e = ERR_peek_error();
	int reason = ERR_GET_REASON(e);
	long v;

	if (msg) {
		snprintf(buf, len, "%s", msg);
	} else if (e && ERR_GET_LIB(e) == ERR_LIB_SSL &&
		   reason == SSL_R_CERTIFICATE_VERIFY_FAILED &&
		   (v = SSL_get_verify_result(ssl)) != X509_V_OK) {
		snprintf(buf, len, "certificate verify failed: %s",
			 X509_verify_cert_error_string(v));
	} else if (e && ERR_GET_LIB(e) == ERR_LIB_SSL) {
		const char *r = ERR_reason_error_string(e);

		switch (reason) {
		case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
			snprintf(buf, len,
				 "peer did not present a certificate");
			break;
		case SSL_R_UNSUPPORTED_PROTOCOL:
			snprintf(buf, len,
				 "peer does not support TLS 1.3 (unsupported "
				 "protocol)");
			break;
		case SSL_R_NO_SHARED_CIPHER:
			snprintf(buf, len,
				 "no shared cipher suite (TLS 1.3 AES-GCM "
				 "required)");
			break;
		case SSL_R_UNEXPECTED_EOF_WHILE_READING:
			snprintf(buf, len, "connection closed by peer");
			break;
		default:
			if (reason >= SSL_AD_REASON_OFFSET)
				snprintf(buf, len, "peer sent alert: %s",
					 r ? r : "unknown");
			else
				snprintf(buf, len, "%s", r ? r : "TLS error");
		}
	} else if (e) {
		ERR_error_string_n(e, buf, len);
	} else if (sock_err) {
		snprintf(buf, len, "%s", strerror(-sock_err));
	} else {
		snprintf(buf, len, "connection closed by peer");
	}
	ERR_clear_error();
}

/* ---- byte rings ---- */

/*
 * A ring of bytes whose storage exists only while it holds some: cap is
 * the size of buf when allocated, nominal the size to allocate next.
 */
struct ring {
	uint8_t *buf;
	size_t nominal, cap, head, len;
};

static void ring_release(struct ring *r)
{
	bufpool_put(r->buf, r->cap);
	r->buf = NULL;
	r->cap = r->head = r->len = 0;
}

static int ring_ensure(struct ring *r)
{
	if (r->buf)
		return 0;
	r->buf = bufpool_get(r->nominal);
	if (!r->buf)
		return -ENOMEM;
	r->cap = r->nominal;
	r->head = r->len = 0;
	return 0;
}

/* Nominal room left (before allocating: all of it). */
static size_t ring_room(const struct ring *r)
{
	size_t cap = r->buf ? r->cap : r->nominal;

	return cap > r->len ? cap - r->len : 0;
}

/* Up to two iovecs covering the free space; returns how many. */
static int ring_space_iov(struct ring *r, struct iovec *iov)
{
	size_t tail = (r->head + r->len) % r->cap;
	size_t room = r->cap - r->len;

	if (!room)
		return 0;
	if (tail + room <= r->cap) {
		iov[0] = (struct iovec){r->buf + tail, room};
		return 1;
	}
	iov[0] = (struct iovec){r->buf + tail, r->cap - tail};
	iov[1] = (struct iovec){r->buf, room - (r->cap - tail)};
	return 2;
}

static int ring_data_iov(const struct ring *r, struct iovec *iov)
{
	if (!r->len)
		return 0;
	if (r->head + r->len <= r->cap) {
		iov[0] = (struct iovec){r->buf + r->head, r->len};
		return 1;
	}
	iov[0] = (struct iovec){r->buf + r->head, r->cap - r->head};
	iov[1] = (struct iovec){r->buf, r->len - (r->cap - r->head)};
	return 2;
}

static void ring_consume(struct ring *r, size_t n)
{
	r->head = (r->head + n) % r->cap;
	r->len -= n;
	if (!r->len)
		r->head = 0;
}

static size_t ring_pop(struct ring *r, void *out, size_t n)
{
	struct iovec iov[2];
	int cnt = ring_data_iov(r, iov);
	size_t done = 0;

	for (int i = 0; i < cnt && done < n; i++) {
		size_t k =
		    iov[i].iov_len < n - done ? iov[i].iov_len : n - done;

		memcpy((uint8_t *)out + done, iov[i].iov_base, k);
		done += k;
	}
	ring_consume(r, done);
	return done;
}

/* Append, growing the storage beyond nominal if it must. 0 or -ENOMEM. */
static int ring_push(struct ring *r, const void *data, size_t n)
{
	struct iovec iov[2];
	size_t done = 0;
	int cnt;

	if (ring_ensure(r))
		return -ENOMEM;
	if (r->cap - r->len < n) {
		size_t cap = r->cap * 2 > r->len + n ? r->cap * 2 : r->len + n;
		uint8_t *nb = bufpool_get(cap);

		if (!nb)
			return -ENOMEM;
		r->len = ring_pop(r, nb, r->len);
		bufpool_put(r->buf, r->cap);
		r->buf = nb;
		r->cap = cap;
		r->head = 0;
	}
	cnt = ring_space_iov(r, iov);
	for (int i = 0; i < cnt && done < n; i++) {
		size_t k =
		    iov[i].iov_len < n - done ? iov[i].iov_len : n - done;

		memcpy(iov[i].iov_base, (const uint8_t *)data + done, k);
		done += k;
	}
	r->len += done;
	return 0;
}

/* ---- the connection ---- */

enum tls_conn_state {
	TLS_HANDSHAKING, /* handshake running; only the handshake cb fires */
	TLS_OPEN,	 /* application data; read/write/shutdown allowed */
	TLS_FAILED,	 /* handshake or connection failed; c->err says why */
	TLS_LINGER,	 /* closed by the owner; delivering pending output */
};

struct tls_conn {
	struct loop *l;
	struct loop_io io;
	struct loop_timer kick;	 /* 0 ms: work for the end of this turn */
	struct loop_timer timer; /* handshake deadline, then linger deadline */
	struct loop_orphan orphan; /* while lingering */
	SSL *ssl;
	struct tls_conn_cbs cbs;
	void *arg;
	enum tls_conn_state state;

	struct ring in;	 /* ciphertext read from the socket */
	struct ring out; /* ciphertext waiting for the socket */

	int err;	 /* -errno the connection failed with, or 0 */
	int sock_err;	 /* socket error seen by read/send, or 0 */
	bool rx_eof;	 /* read() returned 0 */
	bool rx_stalled; /* last SSL_read wanted more and nothing came since */
	bool rx_drained; /* the socket had no more at the last read */
	bool rd_done;	 /* the owner was handed EOF or the error */
	bool want_read, want_write;
	bool wr_shut;	  /* close_notify queued */
	bool fin_pending; /* send FIN once out drains */
	bool fin_sent;
	bool tx_full;	/* the last flush left bytes: the socket was full */
	bool released;	/* close/abort called: no more callbacks */
	bool destroyed; /* fd closed, memory handed to loop_defer_free */
	char errmsg[256];
};

static void conn_update_io(struct tls_conn *c);
static void conn_process(struct tls_conn *c);

static void conn_set_state(struct tls_conn *c, enum tls_conn_state st)
{
	static const bool legal[4][4] = {
	    [TLS_HANDSHAKING] =
		{[TLS_OPEN] = true, [TLS_FAILED] = true, [TLS_LINGER] = true},
	    [TLS_OPEN] = {[TLS_FAILED] = true, [TLS_LINGER] = true},
	    [TLS_FAILED] = {[TLS_LINGER] = true},
	};

	assert(legal[c->state][st]);
	c->state = st;
}

static int conn_bio_write(BIO *b, const char *data, int len)
{
	struct tls_conn *c = BIO_get_data(b);

	BIO_clear_retry_flags(b);
	if (len <= 0)
		return 0;
	if (ring_push(&c->out, data, len))
		return -1;
	return len;
}

static int conn_bio_read(BIO *b, char *buf, int len)
{
	struct tls_conn *c = BIO_get_data(b);

	BIO_clear_retry_flags(b);
	if (len <= 0)
		return 0;
	if (c->in.len) {
		size_t n = ring_pop(&c->in, buf, len);

		if (!c->in.len)
			ring_release(&c->in);
		return (int)n;
	}
	if (c->sock_err)
		return -1;
	if (c->rx_eof)
		return 0;
	BIO_set_retry_read(b);
	return -1;
}

static long conn_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct tls_conn *c = BIO_get_data(b);

	switch (cmd) {
	case BIO_CTRL_FLUSH:
		return 1; /* the connection flushes on its own schedule */
	case BIO_CTRL_PENDING:
		return (long)c->in.len;
	case BIO_CTRL_WPENDING:
		return (long)c->out.len;
	case BIO_CTRL_EOF:
		return c->rx_eof && !c->in.len;
	default:
		return 0;
	}
}

/*
 * SSL_get_error() needs an empty error queue before the call it explains.
 * Emptying it costs ~100 ns even when it is empty, looking ~20 ns: on the
 * data path, look first.
 */
static void err_reset(void)
{
	if (ERR_peek_error())
		ERR_clear_error();
}

static void kick(struct tls_conn *c)
{
	if (!loop_timer_armed(&c->kick))
		loop_timer_arm(c->l, &c->kick, 0);
}

/*
 * Read from the socket into c->in while there is room. Returns true if
 * anything new happened (bytes, EOF or an error).
 */
static bool fill_in(struct tls_conn *c)
{
	size_t before = c->in.len;
	bool was_done = c->rx_eof || c->sock_err;

	while (!c->rx_eof && !c->sock_err && ring_room(&c->in)) {
		struct iovec iov[2];
		size_t want = 0;
		ssize_t n;
		int cnt;

		if (ring_ensure(&c->in)) {
			c->sock_err = -ENOMEM;
			break;
		}
		cnt = ring_space_iov(&c->in, iov);
		for (int i = 0; i < cnt; i++)
			want += iov[i].iov_len;
		n = readv(c->io.fd, iov, cnt);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				c->sock_err = -errno;
			c->rx_drained = true;
			break;
		}
		if (n == 0)
			c->rx_eof = true;
		c->in.len += n;
		c->rx_stalled = false;
		if ((size_t)n < want) {
			c->rx_drained = true; /* a stream socket read short */
			break;
		}
	}
	if (c->rx_eof || c->sock_err)
		c->rx_stalled = false;
	if (!c->in.len && c->in.buf)
		ring_release(&c->in);
	return c->in.len > before || (!was_done && (c->rx_eof || c->sock_err));
}

/* Send c->out. 0 when empty, -EAGAIN when some is left, or -errno. */
static int flush_out(struct tls_conn *c)
{
	while (c->out.len) {
		struct iovec iov[2];
		struct msghdr mh = {.msg_iov = iov};
		ssize_t n;

		if (c->sock_err)
			return c->sock_err;
		mh.msg_iovlen = ring_data_iov(&c->out, iov);
		n = sendmsg(c->io.fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == ENOTCONN) {
				c->tx_full = true;
				return -EAGAIN; /* full, or connect pending */
			}
			c->sock_err = -errno;
			return c->sock_err;
		}
		ring_consume(&c->out, n);
	}
	c->tx_full = false;
	ring_release(&c->out);
	if (c->fin_pending && !c->fin_sent) {
		shutdown(c->io.fd, SHUT_WR);
		c->fin_sent = true;
	}
	return 0;
}

static void destroy(struct tls_conn *c)
{
	if (c->destroyed)
		return;
	c->destroyed = true;
	if (c->state == TLS_LINGER)
		loop_orphan_del(c->l, &c->orphan);
	loop_io_stop(c->l, &c->io);
	loop_timer_disarm(c->l, &c->kick);
	loop_timer_disarm(c->l, &c->timer);
	close(c->io.fd);
	SSL_free(c->ssl);
	ring_release(&c->in);
	ring_release(&c->out);
	loop_defer_free(c->l, c, free);
}

/* The loop is freed while we linger: give up on the last bytes. */
static void linger_end(struct loop_orphan *o)
{
	destroy((struct tls_conn *)((char *)o - offsetof(struct tls_conn, orphan)));
}

/* The connection is unusable; reads and writes return err from now on. */
static void conn_fail(struct tls_conn *c, int err, const char *msg)
{
	if (c->state == TLS_FAILED)
		return;
	c->err = err;
	if (!c->errmsg[0])
		snprintf(c->errmsg, sizeof(c->errmsg), "%s", msg);
	conn_set_state(c, TLS_FAILED);
	c->rx_stalled = false;
	flush_out(c); /* best effort: an alert OpenSSL queued for the peer */
	loop_timer_disarm(c->l, &c->timer);
}

static void do_handshake(struct tls_conn *c)
{
	const unsigned char *alpn;
	unsigned int alpn_len;
	char why[256];
	int r, e;

	ERR_clear_error();
	r = SSL_do_handshake(c->ssl);
	if (r == 1) {
		SSL_get0_alpn_selected(c->ssl, &alpn, &alpn_len);
		if (alpn_len != 2 || memcmp(alpn, "h2", 2)) {
			conn_fail(c, -EPROTO, "peer did not select ALPN h2");
			goto failed;
		}
		conn_set_state(c, TLS_OPEN);
		loop_timer_disarm(c->l, &c->timer);
		c->want_read = true;
		c->rx_stalled = false;
		flush_out(c);
		if (c->cbs.on_handshake)
			c->cbs.on_handshake(c, true, NULL, c->arg);
		return;
	}
	e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_READ && !c->sock_err) {
		flush_out(c);
		return;
	}
	describe_failure(c->ssl, c->sock_err, why, sizeof(why));
	conn_fail(c,
		  e == SSL_ERROR_SYSCALL && c->sock_err ? c->sock_err : -EPROTO,
		  why);
failed:
	if (c->cbs.on_handshake)
		c->cbs.on_handshake(c, false, c->errmsg, c->arg);
}

static bool conn_writable(const struct tls_conn *c)
{
	return c->state == TLS_OPEN && !c->wr_shut &&
	       c->out.len < TLS_CONN_OUT_MAX / 2;
}

/* Run the state machine and the owner's callbacks after anything happened. */
static void conn_process(struct tls_conn *c)
{
	if (c->state == TLS_LINGER) {
		if (c->in.len) /* discard what the peer still sends */
			ring_release(&c->in);
		/* Wait for the peer's FIN too: closing with unread input would
		 * answer it with a RST that can destroy what we just sent. */
		if (c->sock_err || (!c->out.len && (c->rx_eof || c->err)))
			destroy(c);
		else
			conn_update_io(c);
		return;
	}
	if (c->state == TLS_HANDSHAKING) {
		do_handshake(c);
		if (c->released || c->state == TLS_HANDSHAKING) {
			if (!c->released)
				conn_update_io(c);
			return;
		}
	}
	if (c->want_read && !c->rx_stalled && !c->rd_done &&
	    c->cbs.on_readable) {
		c->cbs.on_readable(c, c->arg);
		if (c->released)
			return;
	}
	if (c->want_write && conn_writable(c) && c->cbs.on_writable) {
		c->cbs.on_writable(c, c->arg);
		if (c->released)
			return;
	}
	conn_update_io(c);
	/* Level-triggered: the owner stopped reading before -EAGAIN. */
	if (c->want_read && !c->rx_stalled && !c->rd_done && c->cbs.on_readable)
		kick(c);
}

static void conn_update_io(struct tls_conn *c)
{
	uint32_t ev = 0;
	bool reading;

	if (c->sock_err || c->state == TLS_FAILED) {
		loop_io_stop(c->l, &c->io);
		return;
	}
	reading = c->state == TLS_HANDSHAKING || c->state == TLS_LINGER ||
		  (c->state == TLS_OPEN && c->want_read);
	if (reading && !c->rx_eof && ring_room(&c->in))
		ev |= EPOLLIN;
	/*
	 * EPOLLOUT only when the socket refused bytes, or when nothing else
	 * will flush: output queued in this turn goes out from the armed kick,
	 * and asking epoll for it would cost two epoll_ctl calls per write.
	 */
	if (c->out.len && (c->tx_full || !loop_timer_armed(&c->kick)))
		ev |= EPOLLOUT;
	if (loop_io_update(c->l, &c->io, ev) < 0 && !c->sock_err)
		c->sock_err = -errno;
}

static void conn_io_cb(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct tls_conn *c = io->arg;

	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
		c->rx_drained = false;
		fill_in(c);
	}
	if (events & (EPOLLOUT | EPOLLERR))
		flush_out(c);
	if ((events & EPOLLERR) && !c->sock_err && !c->rx_eof) {
		int soerr = 0;
		socklen_t sl = sizeof(soerr);

		if (!getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) &&
		    soerr)
			c->sock_err = -soerr;
		c->rx_stalled = false;
	}
	conn_process(c);
}

static void conn_kick_cb(struct loop *l, struct loop_timer *t)
{
	struct tls_conn *c = t->arg;

	if (c->out.len)
		flush_out(c);
	conn_process(c);
}

static void conn_timer_cb(struct loop *l, struct loop_timer *t)
{
	struct tls_conn *c = t->arg;

	if (c->state == TLS_LINGER) {
		destroy(c);
		return;
	}
	if (c->state != TLS_HANDSHAKING)
		return;
	conn_fail(c, -ETIMEDOUT, "handshake timed out");
	if (c->cbs.on_handshake)
		c->cbs.on_handshake(c, false, c->errmsg, c->arg);
	if (!c->released)
		conn_update_io(c);
}

int tls_conn_new(struct loop *l, int fd, SSL_CTX *ctx, bool server,
		 const struct tls_conn_cbs *cbs, void *arg,
		 struct tls_conn **out)
{
	struct tls_conn *c;
	BIO *bio = NULL;

	*out = NULL;
	if (!tls_init())
		return -ENOMEM;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->l = l;
	/* Output is already batched per loop turn (one sendmsg for many
	 * records), so Nagle can only delay a small reply behind an ACK. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int));
	loop_io_init(&c->io, fd, conn_io_cb, c);
	loop_timer_init(&c->kick, conn_kick_cb, c);
	loop_timer_init(&c->timer, conn_timer_cb, c);
	c->in.nominal = TLS_CONN_IN_MAX;
	/* Slack for record overhead past the bound and for control messages
	 * (alerts, KeyUpdate, close_notify) so the ring does not grow. */
	c->out.nominal = TLS_CONN_OUT_MAX + 16384;
	if (cbs)
		c->cbs = *cbs;
	c->arg = arg;
	c->state = TLS_HANDSHAKING;

	ERR_clear_error();
	c->ssl = SSL_new(ctx);
	bio = BIO_new(conn_bio_meth);
	if (!c->ssl || !bio) {
		BIO_free(bio);
		SSL_free(c->ssl);
		free(c);
		ERR_clear_error();
		return -ENOMEM;
	}
	BIO_set_data(bio, c);
	SSL_set_bio(c->ssl, bio, bio); /* one reference, owned by ssl */
	SSL_set_read_ahead(c->ssl, 1);
	if (server)
		SSL_set_accept_state(c->ssl);
	else
		SSL_set_connect_state(c->ssl);
	loop_timer_arm(l, &c->timer, TLS_HANDSHAKE_TIMEOUT_MS);
	kick(c); /* the client's first flight, or an early ClientHello */
	*out = c;
	return 0;
}

void tls_conn_set_cbs(struct tls_conn *c, const struct tls_conn_cbs *cbs,
		      void *arg)
{
	c->cbs = cbs ? *cbs : (struct tls_conn_cbs){0};
	c->arg = arg;
}

/* A read/write result for a failed or closed connection. */
static int conn_err(const struct tls_conn *c)
{
	return c->err ? c->err : -EPIPE;
}

/*
 * SSL_read() cannot produce anything: no ciphertext in c->in or inside
 * OpenSSL, the socket read short or said EAGAIN last time (no EPOLLIN
 * since), and no EOF or error waits to be reported.
 */
static bool rx_nothing_new(struct tls_conn *c)
{
	return c->rx_drained && !c->in.len && !c->rx_eof && !c->sock_err &&
	       !SSL_has_pending(c->ssl);
}

ssize_t tls_conn_read(struct tls_conn *c, void *buf, size_t len)
{
	char why[256];
	size_t got;
	int e;

	if (c->state == TLS_HANDSHAKING)
		return -EAGAIN;
	if (c->state != TLS_OPEN) {
		c->rd_done = true;
		return conn_err(c);
	}
	if (c->rd_done)
		return 0; /* EOF already delivered */
	for (;;) {
		if (rx_nothing_new(c))
			goto stalled;
		err_reset();
		if (SSL_read_ex(c->ssl, buf, len, &got)) {
			if (c->out.len) /* e.g. a KeyUpdate answer */
				kick(c);
			return (ssize_t)got;
		}
		e = SSL_get_error(c->ssl, 0);
		if (e == SSL_ERROR_WANT_READ) {
			/* Read through to the socket before saying EAGAIN. */
			if (!c->rx_drained && fill_in(c))
				continue;
			goto stalled;
		}
		break;
	}
	if (e == SSL_ERROR_ZERO_RETURN) {
		c->rd_done = true;
		c->rx_stalled = true;
		ERR_clear_error();
		conn_update_io(c);
		return 0;
	}
	if (e == SSL_ERROR_SYSCALL && c->sock_err) {
		ERR_clear_error();
		conn_fail(c, c->sock_err, strerror(-c->sock_err));
	} else {
		describe_failure(c->ssl, c->sock_err, why, sizeof(why));
		conn_fail(c, -EPROTO, why);
	}
	c->rd_done = true;
	conn_update_io(c);
	return c->err;

stalled:
	c->rx_stalled = true;
	if (c->out.len)
		kick(c);
	conn_update_io(c);
	return -EAGAIN;
}

/* One SSL_write_ex of len bytes; false (connection failed) on error. */
static bool conn_encrypt(struct tls_conn *c, const void *buf, size_t len)
{
	char why[256];
	size_t done;

	if (SSL_write_ex(c->ssl, buf, len, &done) && done == len)
		return true;
	describe_failure(c->ssl, c->sock_err, why, sizeof(why));
	conn_fail(c, -EPROTO, why);
	return false;
}

/* Where a record spanning iovecs is gathered. */
static __thread uint8_t t_stage[TLS_RECORD_MAX];

/*
 * Encrypts the first `budget` bytes of iov[0..cnt) as few, large records:
 * the first record takes budget % TLS_RECORD_MAX bytes (or a whole record),
 * every later one exactly TLS_RECORD_MAX. A record lying inside one iovec
 * is encrypted from there (runs of whole records in one SSL_write_ex, which
 * cuts them at TLS_RECORD_MAX like we do); one spanning iovecs (a frame
 * header and the start of its payload, say) is gathered in t_stage first.
 * Returns false if the connection failed.
 */
static bool conn_encrypt_iov(struct tls_conn *c, const struct iovec *iov,
			     int cnt, size_t budget)
{
	size_t rec =
	    budget % TLS_RECORD_MAX ? budget % TLS_RECORD_MAX : TLS_RECORD_MAX;
	size_t off = 0; /* into iov[i] */
	int i = 0;

	while (budget) {
		size_t here, n;

		while (i < cnt && off == iov[i].iov_len) {
			i++;
			off = 0;
		}
		if (i == cnt)
			break; /* cannot happen: budget <= the iovecs' total */
		if (rec > budget)
			rec = budget;
		here = iov[i].iov_len - off;
		if (here >= rec) {
			/* Direct: this record and every whole one after it
			 * that lies in the same iovec. */
			n = rec;
			if (rec == TLS_RECORD_MAX) {
				n = (here < budget ? here : budget);
				n -= n % TLS_RECORD_MAX;
			}
			if (!conn_encrypt(c, (uint8_t *)iov[i].iov_base + off,
					  n))
				return false;
			off += n;
		} else {
			/* Gather one record across iovec boundaries. */
			size_t got = 0;

			n = rec;
			for (; got < n && i < cnt; i++, off = 0) {
				size_t k = iov[i].iov_len - off;

				if (k > n - got)
					k = n - got;
				memcpy(t_stage + got,
				       (uint8_t *)iov[i].iov_base + off, k);
				got += k;
				off += k;
				if (got == n)
					break; /* iov[i] may have more */
			}
			n = got;
			if (!conn_encrypt(c, t_stage, n))
				return false;
		}
		budget -= n;
		rec = TLS_RECORD_MAX;
	}
	return true;
}

ssize_t tls_conn_writev(struct tls_conn *c, const struct iovec *iov, int iovcnt)
{
	size_t total = 0, budget;

	if (c->state == TLS_HANDSHAKING)
		return -EAGAIN;
	if (c->state != TLS_OPEN)
		return conn_err(c);
	if (c->wr_shut)
		return -EPIPE;
	for (int i = 0; i < iovcnt; i++)
		total += iov[i].iov_len;
	if (!total)
		return 0;
	if (c->out.len >= TLS_CONN_OUT_MAX) {
		int r = flush_out(c);

		if (r != -EAGAIN && r < 0) {
			conn_fail(c, r, strerror(-r));
			conn_update_io(c);
			return r;
		}
		if (c->out.len >= TLS_CONN_OUT_MAX) {
			conn_update_io(c);
			return -EAGAIN;
		}
	}
	budget = TLS_CONN_OUT_MAX - c->out.len;
	if (budget > total)
		budget = total;
	err_reset();
	if (!conn_encrypt_iov(c, iov, iovcnt, budget)) {
		conn_update_io(c);
		return c->err;
	}
	if (c->out.len >= TLS_CONN_OUT_MAX / 2)
		flush_out(c);
	/*
	 * The rest goes out at the end of this turn. A caller cut short waits
	 * for on_writable: if that flush emptied the buffer there will be no
	 * socket event to deliver it, so the kick must.
	 */
	if (c->out.len || budget < total)
		kick(c);
	conn_update_io(c);
	return (ssize_t)budget;
}

ssize_t tls_conn_write(struct tls_conn *c, const void *buf, size_t len)
{
	struct iovec iov = {(void *)buf, len};

	return tls_conn_writev(c, &iov, 1);
}

int tls_conn_flush(struct tls_conn *c)
{
	int r = flush_out(c);

	conn_update_io(c);
	return r;
}

void tls_conn_want(struct tls_conn *c, bool read, bool write)
{
	c->want_read = read;
	c->want_write = write;
	if ((read && !c->rx_stalled && !c->rd_done) ||
	    (write && conn_writable(c)))
		kick(c);
	conn_update_io(c);
}

int tls_conn_shutdown(struct tls_conn *c)
{
	if (c->state == TLS_HANDSHAKING)
		return -ENOTCONN;
	if (c->state != TLS_OPEN)
		return conn_err(c);
	if (c->wr_shut)
		return 0;
	ERR_clear_error();
	SSL_shutdown(c->ssl); /* queues close_notify; 0 = peer's not seen yet */
	ERR_clear_error();
	c->wr_shut = true;
	c->fin_pending = true;
	flush_out(c);
	conn_update_io(c);
	return c->sock_err;
}

void tls_conn_close(struct tls_conn *c)
{
	if (c->released)
		return;
	c->released = true;
	c->cbs = (struct tls_conn_cbs){0};
	if (c->state == TLS_OPEN && !c->wr_shut) {
		ERR_clear_error();
		SSL_shutdown(c->ssl);
		ERR_clear_error();
		c->wr_shut = true;
	}
	c->fin_pending = true;
	flush_out(c);
	/* Linger also with everything written: a peer still sending would
	 * get a RST for its next bytes, and a RST destroys what we wrote
	 * and it has not read yet (e.g. the GOAWAY that says why). */
	if (c->sock_err ||
	    (!c->out.len && (c->rx_eof || c->state != TLS_OPEN))) {
		destroy(c);
		return;
	}
	conn_set_state(c, TLS_LINGER);
	/* Nobody refers to it any more: the loop ends it if it goes first. */
	loop_orphan_add(c->l, &c->orphan, linger_end);
	loop_timer_disarm(c->l, &c->kick);
	loop_timer_arm(c->l, &c->timer, TLS_LINGER_MS);
	conn_update_io(c);
}

void tls_conn_abort(struct tls_conn *c)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};

	if (c->destroyed)
		return;
	c->released = true;
	setsockopt(c->io.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	destroy(c);
}

SSL *tls_conn_ssl(struct tls_conn *c)
{
	return c->ssl;
}

int tls_conn_fd(const struct tls_conn *c)
{
	return c->io.fd;
}

const char *tls_conn_error(const struct tls_conn *c)
{
	return c->errmsg[0] ? c->errmsg : NULL;
}

size_t tls_conn_out_pending(const struct tls_conn *c)
{
	return c->out.len;
}

size_t tls_conn_buffer_bytes(const struct tls_conn *c)
{
	return c->in.cap + c->out.cap;
}
