/* SPDX-License-Identifier: Apache-2.0 */
/*
 * TLS for HBONE (DESIGN.md §3): SSL_CTX factories with the HBONE profile,
 * SPIFFE peer checks, and a non-blocking TLS connection driven by the event
 * loop.
 *
 * Profile (both sides): TLS 1.3 only; TLS_AES_128_GCM_SHA256 and
 * TLS_AES_256_GCM_SHA384; groups X25519, P-256, P-384 (X25519 first for
 * speed, P-256 for FIPS-configured peers, P-384 because rustls/ztunnel and
 * Node also offer it); ALPN "h2" mandatory; no session tickets, no session
 * cache (HBONE pools connections instead of resuming them); a peer closing
 * TCP without close_notify reads as a clean EOF (HTTP/2 frames its own end).
 *
 * The server requires a client certificate chaining to `trust` whose one
 * SPIFFE URI SAN (tls_cert_identity) is in the server's trust domain, and
 * refuses clients that do not offer ALPN h2. The client verifies the server
 * chain against `trust` and requires one valid SPIFFE URI SAN too; which
 * identity it accepts is the caller's decision after the handshake
 * (tls_peer_matches), since it depends on the destination.
 *
 * Contexts are immutable once built and may be shared by threads; build a
 * new one when the leaf rotates (see certstore_generation()).
 */
#ifndef AMBIENTD_TLS_H
#define AMBIENTD_TLS_H

#include <openssl/ssl.h>

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

struct leaf;
struct loop;

/*
 * Server context presenting `leaf` and accepting clients whose chain ends
 * in `trust` (e.g. ca_trust_store(); the context takes its own reference)
 * and whose one URI SAN is spiffe://<trust_domain>/... Returns a new
 * SSL_CTX (SSL_CTX_free it) or NULL; the reason is logged.
 */
SSL_CTX *tls_ctx_server(const struct leaf *leaf, X509_STORE *trust,
			const char *trust_domain);

/*
 * Client context presenting `leaf` (NULL: no certificate — only useful to
 * test that servers refuse it), verifying the server chain against `trust`
 * and that the server certificate has one valid SPIFFE URI SAN. Returns a
 * new SSL_CTX or NULL (logged).
 */
SSL_CTX *tls_ctx_client(const struct leaf *leaf, X509_STORE *trust);

/*
 * The SPIFFE identity of a certificate, the one function that extracts it
 * (both handshake checks and everything after them use it). A pure
 * function of the certificate: fuzz it freely.
 *
 * As the SPIFFE X509-SVID spec says (§2, §5.2), and stricter than ztunnel
 * (which accepts a peer if any URI SAN that parses as an Istio identity
 * matches, and takes the first as the peer's identity): the certificate
 * must carry exactly one URI SAN, and it must be a valid SPIFFE ID with a
 * path: scheme "spiffe", trust domain [a-z0-9.-_] (at most 255 bytes, no
 * port or userinfo), segments [A-Za-z0-9.-_] that are not empty, "." or
 * "..", no percent-encoding, query or fragment, at most 2048 bytes. DNS
 * and other SANs and the subject are ignored.
 *
 * Returns 0 with the ID NUL-terminated in buf; -ENOENT: no certificate, no
 * URI SAN, or one whose scheme is not spiffe; -EINVAL: more than one URI
 * SAN, a malformed SPIFFE ID, or an undecodable or repeated SAN
 * extension; -ENOSPC: buf shorter than the ID + 1 (SPIFFE_ID_MAX + 1
 * always suffices). buf is written only on success.
 */
int tls_cert_identity(X509 *cert, char *buf, size_t len);

/* tls_cert_identity() of the peer's certificate (same results). */
int tls_peer_identity(SSL *ssl, char *buf, size_t len);

/*
 * Client-side server check: true iff the peer certificate's identity
 * (tls_cert_identity) equals (byte for byte) any of the n expected
 * identities. False without a peer certificate or identity.
 */
bool tls_peer_matches(SSL *ssl, const char *const *expected, size_t n);

/* ---- a TLS connection on a non-blocking fd, driven by a loop ---- */

/*
 * Ciphertext is moved with large syscalls through two buffers the
 * connection owns (a custom BIO pair, no copies inside OpenSSL's BIO):
 *   socket --read()--> in buffer --SSL_read--> caller's plaintext buffer
 *   caller's plaintext --SSL_write--> out buffer --sendmsg()--> socket
 * so one read()/sendmsg() carries many 16 KiB records. Both buffers are
 * allocated only while they hold bytes.
 *
 * Bounds: the in buffer holds at most TLS_CONN_IN_MAX bytes and the socket
 * is not read while the caller does not want to read; the out buffer stops
 * accepting plaintext (-EAGAIN) once TLS_CONN_OUT_MAX ciphertext bytes are
 * pending. Output is flushed when the buffer passes half the bound, when
 * the caller flushes, and at the end of the loop turn it was written in.
 */
#define TLS_CONN_IN_MAX	 (128 * 1024)
#define TLS_CONN_OUT_MAX (256 * 1024)
/* Largest TLS plaintext record (RFC 8446 §5.1). */
#define TLS_RECORD_MAX 16384
/* A handshake not finished after this long fails ("handshake timed out"). */
#define TLS_HANDSHAKE_TIMEOUT_MS 10000
/* tls_conn_close() waits at most this long to deliver pending output. */
#define TLS_LINGER_MS 5000

struct tls_conn;

/*
 * Callbacks, all on the loop thread. A callback may call any tls_conn
 * function, including tls_conn_close() (the memory stays valid until the
 * end of the loop turn, so nothing up the stack breaks).
 *
 * on_handshake: exactly once, when the handshake finished (ok) or failed
 *   (!ok, err is a sentence such as "peer did not present a certificate",
 *   "certificate verify failed: unable to get local issuer certificate" or
 *   "peer identity spiffe://other.td/ns/a/sa/b not in trust domain
 *   cluster.local"). On failure the only thing left to do is close. After
 *   success the connection wants to read and not to write (tls_conn_want).
 *   Note that a TLS 1.3 client finishes before the server has checked the
 *   client certificate: a refusal then shows up as a read error.
 * on_readable: the caller wants to read and something may be readable
 *   (plaintext, EOF or an error). Level-triggered: it is called again at the
 *   next turn while the caller still wants to read and has not seen -EAGAIN,
 *   so read until -EAGAIN/0/error or stop wanting.
 * on_writable: the caller wants to write and the out buffer is below half
 *   its bound (called when that becomes true, when wanting starts, and on
 *   later events while it stays true).
 */
struct tls_conn_cbs {
	void (*on_handshake)(struct tls_conn *c, bool ok, const char *err,
			     void *arg);
	void (*on_readable)(struct tls_conn *c, void *arg);
	void (*on_writable)(struct tls_conn *c, void *arg);
};

/*
 * Start TLS on `fd` (non-blocking, connected or with a connect in progress:
 * output waits for the socket to become writable) as server or client with
 * `ctx` (the connection takes its own reference). cbs is copied. The
 * handshake starts at the next loop turn. On success the connection owns fd
 * and returns 0 with *out set; on error fd is untouched and -errno returned.
 */
int tls_conn_new(struct loop *l, int fd, SSL_CTX *ctx, bool server,
		 const struct tls_conn_cbs *cbs, void *arg,
		 struct tls_conn **out);

/* Replace callbacks and argument (e.g. when an HTTP/2 session takes over). */
void tls_conn_set_cbs(struct tls_conn *c, const struct tls_conn_cbs *cbs,
		      void *arg);

/*
 * Read plaintext. Returns bytes (>0), 0 at a clean EOF (close_notify or TCP
 * FIN), -EAGAIN when nothing is ready (also before the handshake finished),
 * -EPROTO on a TLS error (fatal alert from the peer, bad record; see
 * tls_conn_error()), or the socket's -errno (e.g. -ECONNRESET).
 */
ssize_t tls_conn_read(struct tls_conn *c, void *buf, size_t len);

/*
 * Write plaintext. Returns bytes accepted (>0, possibly fewer than len),
 * -EAGAIN when TLS_CONN_OUT_MAX ciphertext is pending or the handshake is
 * not finished, -EPIPE after tls_conn_shutdown(), -EPROTO/-errno once the
 * connection failed. Never raises SIGPIPE.
 */
ssize_t tls_conn_write(struct tls_conn *c, const void *buf, size_t len);

/*
 * Gather write, same results as tls_conn_write() for the iovecs' bytes in
 * order. Records are cut from the gathered bytes, not per iovec: a frame
 * header and its payload, or many small frames, share one record, and bulk
 * goes out as full TLS_RECORD_MAX records encrypted in place (only a record
 * spanning iovecs is copied, once, to gather it). tls_conn_write() is this
 * with one iovec.
 */
ssize_t tls_conn_writev(struct tls_conn *c, const struct iovec *iov,
			int iovcnt);

/*
 * Send pending ciphertext now. 0 when all was sent, -EAGAIN when some is
 * left (it goes out when the socket is writable), or -errno.
 */
int tls_conn_flush(struct tls_conn *c);

/* Say what the caller wants to be told about (level-triggered, see above). */
void tls_conn_want(struct tls_conn *c, bool read, bool write);

/*
 * Half-close: queue close_notify and send TCP FIN once everything before it
 * was sent. Reading goes on until the peer closes too. 0 or -errno
 * (-ENOTCONN before the handshake finished).
 */
int tls_conn_shutdown(struct tls_conn *c);

/*
 * Release gracefully: no more callbacks; close_notify is queued if not sent
 * yet, pending output is delivered (up to TLS_LINGER_MS, input is discarded
 * meanwhile so the kernel does not answer it with a RST), then the fd is
 * closed and the memory freed.
 */
void tls_conn_close(struct tls_conn *c);

/* Release now with a TCP RST; pending output is dropped. */
void tls_conn_abort(struct tls_conn *c);

/* The connection's SSL (peer identity, ALPN, cipher...). Borrowed. */
SSL *tls_conn_ssl(struct tls_conn *c);
int tls_conn_fd(const struct tls_conn *c);

/* Why the handshake or connection failed, or NULL while nothing failed. */
const char *tls_conn_error(const struct tls_conn *c);

/* Ciphertext waiting to be sent, and buffer memory held right now. */
size_t tls_conn_out_pending(const struct tls_conn *c);

size_t tls_conn_buffer_bytes(const struct tls_conn *c);

#endif
