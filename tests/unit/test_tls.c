// SPDX-License-Identifier: Apache-2.0
/*
 * HBONE TLS over real loopback TCP: both ends are tls_conns on one loop in
 * this thread. Handshake cases check what each side sees (ALPN, identities,
 * the refusal sentence); transfer cases move 32 MiB each way at once and
 * check the bytes and the buffer bounds.
 */
#include "ca.h"
#include "loop.h"
#include "tap.h"
#include "tls.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MiB	  (1024 * 1024)
#define TD	  "cluster.local"
#define CLIENT_ID "spiffe://cluster.local/ns/a/sa/client"
#define SERVER_ID "spiffe://cluster.local/ns/b/sa/server"

static char dir_a[] = "/tmp/test_tls_a.XXXXXX";
static char dir_b[] = "/tmp/test_tls_b.XXXXXX";
static struct ca *ca_a, *ca_b;
static int lfd;
static struct sockaddr_in laddr;
static uint8_t *blob_up, *blob_down;
static uint8_t scratch[256 * 1024];

struct pair;

struct ep {
	struct pair *p;
	const char *name;
	struct tls_conn *c;
	bool server;
	/* handshake */
	bool hs_done, hs_ok;
	char hs_err[256];
	char peer_id[256];
	/* sending */
	const uint8_t *tx;
	size_t tx_len, tx_off;
	bool got_eagain;
	bool shut;   /* everything sent and close_notify queued */
	bool paused; /* do not read until resumed */
	/* receiving */
	const uint8_t *rx_ref;
	size_t rx_len, rx_off;
	bool mismatch, eof;
	int read_err;
	char read_msg[256];
	/* observations */
	size_t max_pending, max_buffers;
	bool done;
};

struct pair {
	struct loop *l;
	struct ep cli, srv;
	const struct tls_conn_cbs *cli_cbs, *srv_cbs; /* NULL: cbs */
	struct loop_timer deadline;
	bool timed_out;
	int pending;
};

static void ep_finish(struct ep *e)
{
	if (e->done)
		return;
	e->done = true;
	if (--e->p->pending == 0)
		loop_stop(e->p->l);
}

static void ep_observe(struct ep *e)
{
	if (tls_conn_out_pending(e->c) > e->max_pending)
		e->max_pending = tls_conn_out_pending(e->c);
	if (tls_conn_buffer_bytes(e->c) > e->max_buffers)
		e->max_buffers = tls_conn_buffer_bytes(e->c);
}

/* Done when refused/failed, or when both directions finished. */
static void ep_check(struct ep *e)
{
	if (e->read_err || (e->eof && e->shut))
		ep_finish(e);
}

static void ep_send(struct ep *e)
{
	while (e->tx_off < e->tx_len) {
		ssize_t n = tls_conn_write(e->c, e->tx + e->tx_off,
					   e->tx_len - e->tx_off);

		ep_observe(e);
		if (n == -EAGAIN) {
			e->got_eagain = true;
			return;
		}
		if (n < 0) {
			e->read_err = (int)n;
			ep_finish(e);
			return;
		}
		e->tx_off += n;
	}
	tls_conn_shutdown(e->c);
	e->shut = true;
	tls_conn_want(e->c, !e->paused, false);
	ep_check(e);
}

static void on_handshake(struct tls_conn *c, bool ok, const char *err,
			 void *arg)
{
	struct ep *e = arg;

	e->hs_done = true;
	e->hs_ok = ok;
	if (!ok) {
		snprintf(e->hs_err, sizeof(e->hs_err), "%s", err);
		ep_finish(e);
		return;
	}
	tls_peer_identity(tls_conn_ssl(c), e->peer_id, sizeof(e->peer_id));
	tls_conn_want(c, !e->paused, true);
}

static void on_readable(struct tls_conn *c, void *arg)
{
	struct ep *e = arg;

	for (;;) {
		ssize_t n = tls_conn_read(c, scratch, sizeof(scratch));

		if (n == -EAGAIN)
			break;
		if (n == 0) {
			e->eof = true;
			tls_conn_want(c, false, !e->shut);
			break;
		}
		if (n < 0) {
			e->read_err = (int)n;
			snprintf(e->read_msg, sizeof(e->read_msg), "%s",
				 tls_conn_error(c) ? tls_conn_error(c) : "");
			tls_conn_want(c, false, false);
			break;
		}
		if (e->rx_off + n > e->rx_len ||
		    memcmp(scratch, e->rx_ref + e->rx_off, n))
			e->mismatch = true;
		e->rx_off += n;
	}
	ep_observe(e);
	ep_check(e);
}

static void on_writable(struct tls_conn *c, void *arg)
{
	ep_send(arg);
}

static const struct tls_conn_cbs cbs = {
    .on_handshake = on_handshake,
    .on_readable = on_readable,
    .on_writable = on_writable,
};

static void on_deadline(struct loop *l, struct loop_timer *t)
{
	struct pair *p = t->arg;

	p->timed_out = true;
	loop_stop(l);
}

static void tcp_pair(int *cfd, int *sfd)
{
	int one = 1;

	*cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (connect(*cfd, (struct sockaddr *)&laddr, sizeof(laddr)) < 0)
		perror("connect");
	*sfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	fcntl(*cfd, F_SETFL, fcntl(*cfd, F_GETFL) | O_NONBLOCK);
	setsockopt(*cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(*sfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* Set up both ends; tx/rx empty means "shut down right after the handshake". */
static bool pair_start(struct pair *p, SSL_CTX *cctx, SSL_CTX *sctx)
{
	int cfd, sfd;

	p->l = loop_new();
	p->cli.p = p->srv.p = p;
	p->cli.name = "client";
	p->srv.name = "server";
	p->srv.server = true;
	p->cli.rx_ref = p->srv.tx;
	p->cli.rx_len = p->srv.tx_len;
	p->srv.rx_ref = p->cli.tx;
	p->srv.rx_len = p->cli.tx_len;
	p->pending = 2;
	tcp_pair(&cfd, &sfd);
	if (tls_conn_new(p->l, cfd, cctx, false, p->cli_cbs ? p->cli_cbs : &cbs,
			 &p->cli, &p->cli.c) ||
	    tls_conn_new(p->l, sfd, sctx, true, p->srv_cbs ? p->srv_cbs : &cbs,
			 &p->srv, &p->srv.c)) {
		ok(0, "tls_conn_new");
		return false;
	}
	loop_timer_init(&p->deadline, on_deadline, p);
	loop_timer_arm(p->l, &p->deadline, 20000);
	return true;
}

static void pair_run(struct pair *p)
{
	loop_run(p->l);
}

static void pair_end(struct pair *p)
{
	loop_timer_disarm(p->l, &p->deadline);
	if (p->cli.c)
		tls_conn_abort(p->cli.c);
	if (p->srv.c)
		tls_conn_abort(p->srv.c);
	loop_free(p->l);
}

static SSL_CTX *server_ctx(struct ca *ca, const char *id)
{
	struct leaf *l = NULL;
	SSL_CTX *ctx;

	if (ca_issue(ca, id, 3600, &l))
		return NULL;
	ctx = tls_ctx_server(l, ca_trust_store(ca_a), TD);
	leaf_unref(l); /* the context holds its own references */
	return ctx;
}

static SSL_CTX *client_ctx_leaf(struct leaf *l)
{
	SSL_CTX *ctx = tls_ctx_client(l, ca_trust_store(ca_a));

	leaf_unref(l);
	return ctx;
}

static SSL_CTX *client_ctx(struct ca *ca, const char *id)
{
	struct leaf *l = NULL;

	if (ca_issue(ca, id, 3600, &l))
		return NULL;
	return client_ctx_leaf(l);
}

/* ---- handshakes ---- */

static void test_good(void)
{
	SSL_CTX *cctx = client_ctx(ca_a, CLIENT_ID);
	SSL_CTX *sctx = server_ctx(ca_a, SERVER_ID);
	const char *yes[] = {"spiffe://cluster.local/ns/x/sa/y", SERVER_ID};
	const char *no[] = {"spiffe://cluster.local/ns/b/sa/other",
			    "spiffe://other.td/ns/b/sa/server",
			    "spiffe://cluster.local/ns/b/sa/serve"};
	const unsigned char *alpn;
	unsigned int alpn_len;
	struct pair p = {0};

	if (!pair_start(&p, cctx, sctx))
		return;
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
	pair_run(&p);
	ok(!p.timed_out, "good: finished in time");
	ok(p.cli.hs_ok && p.srv.hs_ok,
	   "good: handshake ok on both sides (%s/%s)", p.cli.hs_err,
	   p.srv.hs_err);
	ok(!strcmp(p.srv.peer_id, CLIENT_ID),
	   "server reads the client identity (%s)", p.srv.peer_id);
	ok(!strcmp(p.cli.peer_id, SERVER_ID),
	   "client reads the server identity (%s)", p.cli.peer_id);
	SSL_get0_alpn_selected(tls_conn_ssl(p.cli.c), &alpn, &alpn_len);
	ok(alpn_len == 2 && !memcmp(alpn, "h2", 2), "client: ALPN h2");
	SSL_get0_alpn_selected(tls_conn_ssl(p.srv.c), &alpn, &alpn_len);
	ok(alpn_len == 2 && !memcmp(alpn, "h2", 2), "server: ALPN h2");
	ok(SSL_version(tls_conn_ssl(p.cli.c)) == TLS1_3_VERSION, "TLS 1.3 (%s)",
	   SSL_get_version(tls_conn_ssl(p.cli.c)));
	{
		const char *cs = SSL_CIPHER_get_name(
		    SSL_get_current_cipher(tls_conn_ssl(p.cli.c)));

		ok(!strcmp(cs, "TLS_AES_128_GCM_SHA256") ||
		       !strcmp(cs, "TLS_AES_256_GCM_SHA384"),
		   "AES-GCM suite (%s)", cs);
	}
	ok(!SSL_session_reused(tls_conn_ssl(p.cli.c)), "no resumption");
	ok(p.cli.eof && p.srv.eof && !p.cli.read_err && !p.srv.read_err,
	   "close_notify read as EOF on both sides");
	ok(tls_peer_matches(tls_conn_ssl(p.cli.c), yes, 2),
	   "tls_peer_matches: any expected identity matches");
	ok(!tls_peer_matches(tls_conn_ssl(p.cli.c), no, 3),
	   "tls_peer_matches: near misses and other trust domains do not");
	ok(!tls_peer_matches(tls_conn_ssl(p.cli.c), NULL, 0),
	   "tls_peer_matches: empty list never matches");
	ok(tls_peer_matches(tls_conn_ssl(p.srv.c), (const char *[]){CLIENT_ID},
			    1),
	   "tls_peer_matches works server-side too");
	pair_end(&p);
}

/*
 * A refused handshake: the server fails with `want_srv` in its reason; the
 * client fails its handshake or its first read with `want_cli` in its
 * reason.
 */
static void expect_refused(const char *what, SSL_CTX *cctx, SSL_CTX *sctx,
			   const char *want_srv, const char *want_cli)
{
	struct pair p = {0};
	const char *cli_err;

	if (!cctx || !sctx) {
		ok(0, "%s: contexts", what);
		SSL_CTX_free(cctx);
		SSL_CTX_free(sctx);
		return;
	}
	if (!pair_start(&p, cctx, sctx))
		return;
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
	pair_run(&p);
	cli_err = p.cli.hs_ok ? p.cli.read_msg : p.cli.hs_err;
	ok(!p.timed_out && p.srv.hs_done && !p.srv.hs_ok &&
	       strstr(p.srv.hs_err, want_srv),
	   "%s: server refuses: \"%s\"", what, p.srv.hs_err);
	ok(!p.timed_out && (!p.cli.hs_ok || p.cli.read_err) &&
	       p.cli.rx_off == 0 && strstr(cli_err, want_cli),
	   "%s: client sees: \"%s\"", what, cli_err);
	pair_end(&p);
}

static void test_refusals(void)
{
	struct leaf *l = NULL;
	time_t now = time(NULL);
	SSL_CTX *cctx;

	expect_refused("no client cert",
		       tls_ctx_client(NULL, ca_trust_store(ca_a)),
		       server_ctx(ca_a, SERVER_ID),
		       "peer did not present a certificate", "alert");
	expect_refused(
	    "untrusted root", client_ctx(ca_b, CLIENT_ID),
	    server_ctx(ca_a, SERVER_ID),
	    "certificate verify failed: unable to get local issuer certificate",
	    "alert");
	ca_issue_validity(ca_a, CLIENT_ID, now - 7200, now - 60, &l);
	expect_refused(
	    "expired cert", client_ctx_leaf(l), server_ctx(ca_a, SERVER_ID),
	    "certificate verify failed: certificate has expired", "alert");
	expect_refused("other trust domain",
		       client_ctx(ca_a, "spiffe://other.td/ns/a/sa/client"),
		       server_ctx(ca_a, SERVER_ID),
		       "peer identity spiffe://other.td/ns/a/sa/client not in "
		       "trust domain cluster.local",
		       "alert");

	cctx = client_ctx(ca_a, CLIENT_ID);
	SSL_CTX_set_min_proto_version(cctx, TLS1_2_VERSION);
	SSL_CTX_set_max_proto_version(cctx, TLS1_2_VERSION);
	expect_refused("client offering at most TLS 1.2", cctx,
		       server_ctx(ca_a, SERVER_ID), "unsupported protocol",
		       "alert protocol version");

	cctx = client_ctx(ca_a, CLIENT_ID);
	SSL_CTX_set_alpn_protos(cctx, NULL, 0);
	expect_refused("client without ALPN", cctx, server_ctx(ca_a, SERVER_ID),
		       "did not offer ALPN h2", "alert");

	cctx = client_ctx(ca_a, CLIENT_ID);
	SSL_CTX_set_alpn_protos(cctx, (const unsigned char *)"\x08http/1.1", 9);
	expect_refused("client offering only http/1.1", cctx,
		       server_ctx(ca_a, SERVER_ID), "did not offer ALPN h2",
		       "no application protocol");

	/* The client refuses a server whose chain it cannot verify. */
	{
		SSL_CTX *sctx = server_ctx(ca_b, SERVER_ID);
		struct pair p = {0};

		cctx = client_ctx(ca_a, CLIENT_ID);
		if (pair_start(&p, cctx, sctx)) {
			SSL_CTX_free(cctx);
			SSL_CTX_free(sctx);
			pair_run(&p);
			ok(p.cli.hs_done && !p.cli.hs_ok &&
			       strstr(p.cli.hs_err,
				      "certificate verify failed: unable to "
				      "get local issuer certificate"),
			   "client refuses an untrusted server: \"%s\"",
			   p.cli.hs_err);
			ok(p.srv.hs_done && !p.srv.hs_ok &&
			       strstr(p.srv.hs_err, "alert"),
			   "server sees: \"%s\"", p.srv.hs_err);
			pair_end(&p);
		}
	}
	ok(tls_ctx_server(NULL, ca_trust_store(ca_a), TD) == NULL &&
	       tls_ctx_server(NULL, ca_trust_store(ca_a), "Bad TD") == NULL,
	   "server context needs a leaf and a valid trust domain");
	ERR_clear_error();
}

/* ---- identities: tls_cert_identity() and both handshake checks ---- */

/* One subjectAltName entry for mint(): type GEN_URI/GEN_DNS, raw bytes. */
struct san {
	int type;
	const char *val;
	int len; /* -1: strlen(val) */
};

static EVP_PKEY *ca_a_key;

static int add_sans(X509 *x, const struct san *sans, size_t n)
{
	GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
	int good = gens != NULL;

	for (size_t i = 0; good && i < n; i++) {
		GENERAL_NAME *gn = GENERAL_NAME_new();
		ASN1_IA5STRING *v = ASN1_IA5STRING_new();

		good = gn && v && ASN1_STRING_set(v, sans[i].val, sans[i].len);
		if (good) {
			GENERAL_NAME_set0_value(gn, sans[i].type, v);
			v = NULL;
			good = sk_GENERAL_NAME_push(gens, gn) > 0;
		}
		if (!good) {
			GENERAL_NAME_free(gn);
			ASN1_IA5STRING_free(v);
		}
	}
	/* X509_add_ext appends: called twice it repeats the extension. */
	if (good) {
		X509_EXTENSION *ext =
		    X509V3_EXT_i2d(NID_subject_alt_name, 0, gens);

		good = ext && X509_add_ext(x, ext, -1);
		X509_EXTENSION_free(ext);
	}
	GENERAL_NAMES_free(gens);
	return good ? 0 : -1;
}

/*
 * A leaf signed by ca_a's root with any SANs, the way another CA (or an
 * attacker holding a mesh CA key) could make one: n_ext SAN extensions,
 * each holding sans[0..n). n_ext 0: no SAN extension.
 */
static X509 *mint(EVP_PKEY *key, const struct san *sans, size_t n, int n_ext)
{
	X509 *x = X509_new();
	X509V3_CTX v3;
	const char *const ext[][2] = {
	    {"basicConstraints", "critical,CA:FALSE"},
	    {"keyUsage", "critical,digitalSignature"},
	    {"extendedKeyUsage", "serverAuth,clientAuth"},
	};
	time_t now = time(NULL);
	int good;

	good =
	    x && X509_set_version(x, X509_VERSION_3) &&
	    ASN1_INTEGER_set(X509_get_serialNumber(x), (long)now) &&
	    ASN1_TIME_set(X509_getm_notBefore(x), now - 60) &&
	    ASN1_TIME_set(X509_getm_notAfter(x), now + 3600) &&
	    X509_set_pubkey(x, key) &&
	    X509_NAME_add_entry_by_txt(
		X509_get_subject_name(x), "O", MBSTRING_ASC,
		(const unsigned char *)"test", -1, -1, 0) &&
	    X509_set_issuer_name(x, X509_get_subject_name(ca_root_cert(ca_a)));
	X509V3_set_ctx(&v3, ca_root_cert(ca_a), x, NULL, NULL, 0);
	for (size_t i = 0; good && i < sizeof(ext) / sizeof(ext[0]); i++) {
		X509_EXTENSION *e =
		    X509V3_EXT_nconf(NULL, &v3, ext[i][0], ext[i][1]);

		good = e && X509_add_ext(x, e, -1);
		X509_EXTENSION_free(e);
	}
	for (int i = 0; good && i < n_ext; i++)
		good = !add_sans(x, sans, n);
	good = good && X509_sign(x, ca_a_key, EVP_sha256()) > 0;
	if (!good) {
		X509_free(x);
		return NULL;
	}
	return x;
}

/* A leaf (as ca.c makes them) around mint(); NULL on failure. */
static struct leaf *mint_leaf(const struct san *sans, size_t n)
{
	struct leaf *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	atomic_init(&l->refs, 1);
	l->key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	l->cert = l->key ? mint(l->key, sans, n, 1) : NULL;
	l->identity = strdup("minted by test_tls");
	if (!l->cert || !l->identity) {
		leaf_unref(l);
		return NULL;
	}
	return l;
}

#define URI(s)	      ((struct san){GEN_URI, (s), -1})
#define URI_RAW(s, n) ((struct san){GEN_URI, (s), (n)})
/* A string literal that may hold a NUL. */
#define URI_LIT(s) ((struct san){GEN_URI, (s), sizeof(s) - 1})
#define DNS(s)	   ((struct san){GEN_DNS, (s), -1})
#define SANS(...)  ((const struct san[]){__VA_ARGS__})

static void test_identity(void)
{
	static char long_id[SPIFFE_ID_MAX + 2], long_td[300];
	const struct {
		const char *what;
		const struct san *sans;
		size_t n;
		int n_ext;
		int want;
	} cases[] = {
	    {"no SAN extension", NULL, 0, 0, -ENOENT},
	    {"DNS SAN only", SANS(DNS("server.example")), 1, 1, -ENOENT},
	    {"one SPIFFE URI SAN", SANS(URI(SERVER_ID)), 1, 1, 0},
	    {"one URI SAN among DNS SANs",
	     SANS(DNS("a.example"), URI(SERVER_ID), DNS("b.example")), 3, 1, 0},
	    {"non-Istio SPIFFE path", SANS(URI("spiffe://cluster.local/w/1")),
	     1, 1, 0},
	    {"two URI SANs, the same", SANS(URI(SERVER_ID), URI(SERVER_ID)), 2,
	     1, -EINVAL},
	    {"two URI SANs, both in the trust domain",
	     SANS(URI(SERVER_ID), URI(CLIENT_ID)), 2, 1, -EINVAL},
	    {"an https URI SAN and a SPIFFE one",
	     SANS(URI("https://server.example/"), URI(SERVER_ID)), 2, 1,
	     -EINVAL},
	    {"the SAN extension twice", SANS(URI(SERVER_ID)), 1, 2, -EINVAL},
	    {"an https URI SAN only", SANS(URI("https://server.example/")), 1,
	     1, -ENOENT},
	    {"an empty URI SAN", SANS(URI("")), 1, 1, -ENOENT},
	    {"no path (a trust domain's own ID)",
	     SANS(URI("spiffe://cluster.local")), 1, 1, -EINVAL},
	    {"only a slash after the trust domain",
	     SANS(URI("spiffe://cluster.local/")), 1, 1, -EINVAL},
	    {"scheme in capitals",
	     SANS(URI("SPIFFE://cluster.local/ns/a/sa/b")), 1, 1, -EINVAL},
	    {"trust domain in capitals",
	     SANS(URI("spiffe://Cluster.local/ns/a/sa/b")), 1, 1, -EINVAL},
	    {"percent-encoding",
	     SANS(URI("spiffe://cluster.local/ns/a%2Fb/sa/c")), 1, 1, -EINVAL},
	    {"percent-encoded trust domain",
	     SANS(URI("spiffe://cluster%2Elocal/ns/a/sa/c")), 1, 1, -EINVAL},
	    {"'.' segment", SANS(URI("spiffe://cluster.local/ns/./sa/c")), 1, 1,
	     -EINVAL},
	    {"'..' segment", SANS(URI("spiffe://cluster.local/ns/../sa/c")), 1,
	     1, -EINVAL},
	    {"empty segment", SANS(URI("spiffe://cluster.local/ns//sa/c")), 1,
	     1, -EINVAL},
	    {"trailing slash", SANS(URI("spiffe://cluster.local/ns/a/sa/b/")),
	     1, 1, -EINVAL},
	    {"port", SANS(URI("spiffe://cluster.local:443/ns/a/sa/b")), 1, 1,
	     -EINVAL},
	    {"userinfo", SANS(URI("spiffe://u@cluster.local/ns/a/sa/b")), 1, 1,
	     -EINVAL},
	    {"query", SANS(URI("spiffe://cluster.local/ns/a/sa/b?x=1")), 1, 1,
	     -EINVAL},
	    {"fragment", SANS(URI("spiffe://cluster.local/ns/a/sa/b#x")), 1, 1,
	     -EINVAL},
	    {"embedded NUL",
	     SANS(URI_LIT("spiffe://cluster.local/ns/a\0/sa/b")), 1, 1,
	     -EINVAL},
	    {"non-ASCII byte",
	     SANS(URI("spiffe://cluster.local/ns/caf\xc3\xa9/sa/b")), 1, 1,
	     -EINVAL},
	    {"2048 bytes", SANS(URI_RAW(long_id, SPIFFE_ID_MAX)), 1, 1, 0},
	    {"2049 bytes", SANS(URI_RAW(long_id, SPIFFE_ID_MAX + 1)), 1, 1,
	     -EINVAL},
	    {"255-byte trust domain", SANS(URI_RAW(long_td, 9 + 255 + 4)), 1, 1,
	     0},
	};
	char buf[SPIFFE_ID_MAX + 1];
	EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");

	/* "spiffe://cluster.local/aaaa...a" and "spiffe://ttt...t/w/1". */
	memset(long_id, 'a', sizeof(long_id) - 1);
	memcpy(long_id, "spiffe://cluster.local/", 23);
	memset(long_td, 't', sizeof(long_td) - 1);
	memcpy(long_td, "spiffe://", 9);
	memcpy(long_td + 9 + 255, "/w/1", 4);

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct san *uri = NULL;
		struct san sans[4];
		X509 *x;
		int rc;

		for (size_t k = 0; k < cases[i].n; k++) {
			sans[k] = cases[i].sans[k];
			if (sans[k].len < 0)
				sans[k].len = (int)strlen(sans[k].val);
			if (!uri && sans[k].type == GEN_URI)
				uri = &sans[k];
		}
		x = mint(key, sans, cases[i].n, cases[i].n_ext);
		strcpy(buf, "untouched");
		rc = x ? tls_cert_identity(x, buf, sizeof(buf)) : -999;
		ok(rc == cases[i].want &&
		       (rc ? !strcmp(buf, "untouched")
			   : uri && strlen(buf) == (size_t)uri->len &&
				 !memcmp(buf, uri->val, uri->len)),
		   "tls_cert_identity: %s -> %d (%s)", cases[i].what, rc,
		   rc ? "buf untouched" : "the URI");
		X509_free(x);
	}
	{
		/* 256 bytes: one more 't' in front of the path. */
		struct san s = {GEN_URI, long_td, 9 + 256 + 4};
		X509 *x;

		long_td[9 + 255] = 't';
		memcpy(long_td + 9 + 256, "/w/1", 4);
		x = mint(key, &s, 1, 1);
		ok(x && tls_cert_identity(x, buf, sizeof(buf)) == -EINVAL,
		   "tls_cert_identity: 256-byte trust domain -> -EINVAL");
		X509_free(x);
	}
	{
		struct san s = {GEN_URI, SERVER_ID, (int)strlen(SERVER_ID)};
		X509 *x = mint(key, &s, 1, 1);

		strcpy(buf, "untouched");
		ok(x &&
		       tls_cert_identity(x, buf, strlen(SERVER_ID)) ==
			   -ENOSPC &&
		       !strcmp(buf, "untouched") &&
		       tls_cert_identity(x, buf, strlen(SERVER_ID) + 1) == 0,
		   "tls_cert_identity: buffer one byte short -> -ENOSPC, "
		   "exact fit -> 0");
		X509_free(x);
	}
	ok(tls_cert_identity(NULL, buf, sizeof(buf)) == -ENOENT,
	   "tls_cert_identity: no certificate -> -ENOENT");
	EVP_PKEY_free(key);
}

/* The client refuses the server's certificate with `want` in its reason. */
static void expect_client_refuses(const char *what, struct leaf *srv_leaf,
				  const char *want)
{
	SSL_CTX *cctx = client_ctx(ca_a, CLIENT_ID);
	SSL_CTX *sctx = srv_leaf
			    ? tls_ctx_server(srv_leaf, ca_trust_store(ca_a), TD)
			    : NULL;
	struct pair p = {0};

	leaf_unref(srv_leaf);
	if (!cctx || !sctx || !pair_start(&p, cctx, sctx)) {
		ok(0, "%s: contexts", what);
		SSL_CTX_free(cctx);
		SSL_CTX_free(sctx);
		return;
	}
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
	pair_run(&p);
	ok(!p.timed_out && p.cli.hs_done && !p.cli.hs_ok &&
	       strstr(p.cli.hs_err, want),
	   "%s: client refuses: \"%s\"", what, p.cli.hs_err);
	ok(p.srv.hs_done && !p.srv.hs_ok && p.srv.rx_off == 0,
	   "%s: server sees: \"%s\"", what, p.srv.hs_err);
	pair_end(&p);
}

static SSL_CTX *client_ctx_minted(const struct san *sans, size_t n)
{
	struct leaf *l = mint_leaf(sans, n);

	return l ? client_ctx_leaf(l) : NULL;
}

static void test_identity_handshakes(void)
{
	const char *other = "spiffe://cluster.local/ns/b/sa/other";

	expect_refused("client with two URI SANs",
		       client_ctx_minted(SANS(URI(CLIENT_ID), URI(other)), 2),
		       server_ctx(ca_a, SERVER_ID),
		       "peer certificate has 2 URI SANs", "alert");
	expect_refused(
	    "client with a malformed SPIFFE ID",
	    client_ctx_minted(SANS(URI("spiffe://cluster.local/ns/a/sa/c/")),
			      1),
	    server_ctx(ca_a, SERVER_ID),
	    "peer URI SAN spiffe://cluster.local/ns/a/sa/c/ is not a valid "
	    "SPIFFE ID",
	    "alert");
	expect_refused("client with a DNS SAN only",
		       client_ctx_minted(SANS(DNS("client.example")), 1),
		       server_ctx(ca_a, SERVER_ID),
		       "peer certificate has no SPIFFE URI SAN", "alert");
	/* Even when one of the two is exactly whom the client dials. */
	expect_client_refuses("server with two URI SANs",
			      mint_leaf(SANS(URI(SERVER_ID), URI(other)), 2),
			      "peer certificate has 2 URI SANs");
	expect_client_refuses(
	    "server with a malformed SPIFFE ID",
	    mint_leaf(SANS(URI("spiffe://cluster.local/ns/b/sa/%73erver")), 1),
	    "is not a valid SPIFFE ID");
	expect_client_refuses(
	    "server with control bytes in its URI SAN",
	    mint_leaf(SANS(URI("spiffe://cluster.local/ns/b/sa/\x1b[2J")), 1),
	    "peer URI SAN spiffe://cluster.local/ns/b/sa/?[2J is not");

	/* A minted certificate with one good URI SAN passes both checks. */
	{
		struct leaf *l =
		    mint_leaf(SANS(URI(SERVER_ID), DNS("x.example")), 2);
		SSL_CTX *cctx = client_ctx_minted(SANS(URI(CLIENT_ID)), 1);
		SSL_CTX *sctx =
		    l ? tls_ctx_server(l, ca_trust_store(ca_a), TD) : NULL;
		struct pair p = {0};

		leaf_unref(l);
		if (cctx && sctx && pair_start(&p, cctx, sctx)) {
			pair_run(&p);
			ok(p.cli.hs_ok && p.srv.hs_ok &&
			       !strcmp(p.srv.peer_id, CLIENT_ID) &&
			       !strcmp(p.cli.peer_id, SERVER_ID) &&
			       tls_peer_matches(tls_conn_ssl(p.cli.c),
						(const char *[]){SERVER_ID}, 1),
			   "one URI SAN (and a DNS SAN): accepted both ways "
			   "(%s/%s)",
			   p.cli.hs_err, p.srv.hs_err);
			pair_end(&p);
		} else {
			ok(0, "minted good pair: contexts");
		}
		SSL_CTX_free(cctx);
		SSL_CTX_free(sctx);
	}
	ERR_clear_error();
}

/* ---- transfers ---- */

static void test_transfer(void)
{
	SSL_CTX *cctx = client_ctx(ca_a, CLIENT_ID);
	SSL_CTX *sctx = server_ctx(ca_a, SERVER_ID);
	const size_t len = 32 * MiB;
	const size_t bound = TLS_CONN_OUT_MAX + 2048;
	struct pair p = {0};

	p.cli.tx = blob_up;
	p.cli.tx_len = len;
	p.srv.tx = blob_down;
	p.srv.tx_len = len;
	if (!pair_start(&p, cctx, sctx))
		return;
	/* Contexts (and their leaves) may go before the connections do. */
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
	pair_run(&p);
	ok(!p.timed_out && p.cli.hs_ok && p.srv.hs_ok,
	   "32 MiB: handshake and finish in time");
	ok(p.srv.rx_off == len && !p.srv.mismatch && p.srv.eof,
	   "32 MiB client->server intact, then EOF (%zu bytes)", p.srv.rx_off);
	ok(p.cli.rx_off == len && !p.cli.mismatch && p.cli.eof,
	   "32 MiB server->client intact, then EOF (%zu bytes)", p.cli.rx_off);
	ok(p.cli.max_pending <= bound && p.srv.max_pending <= bound,
	   "pending ciphertext stays within the bound (%zu, %zu <= %zu)",
	   p.cli.max_pending, p.srv.max_pending, bound);
	ok(p.cli.max_buffers <= TLS_CONN_IN_MAX + 2 * TLS_CONN_OUT_MAX &&
	       p.srv.max_buffers <= TLS_CONN_IN_MAX + 2 * TLS_CONN_OUT_MAX,
	   "buffer memory bounded (%zu, %zu)", p.cli.max_buffers,
	   p.srv.max_buffers);
	ok(tls_conn_buffer_bytes(p.cli.c) == 0 &&
	       tls_conn_buffer_bytes(p.srv.c) == 0,
	   "idle connections hold no buffers");
	pair_end(&p);
}

static size_t pending_at_resume;

static void on_resume(struct loop *l, struct loop_timer *t)
{
	struct pair *p = t->arg;

	/* The sender must be stuck at the bound by now. */
	pending_at_resume = tls_conn_out_pending(p->cli.c);
	p->srv.paused = false;
	tls_conn_want(p->srv.c, true, false);
}

static void test_backpressure(void)
{
	SSL_CTX *cctx = client_ctx(ca_a, CLIENT_ID);
	SSL_CTX *sctx = server_ctx(ca_a, SERVER_ID);
	const size_t len = 16 * MiB;
	struct loop_timer resume;
	struct pair p = {0};
	size_t at_pause;

	p.cli.tx = blob_up;
	p.cli.tx_len = len;
	p.srv.paused = true;
	if (!pair_start(&p, cctx, sctx))
		return;
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
	loop_timer_init(&resume, on_resume, &p);
	loop_timer_arm(p.l, &resume, 300);
	pair_run(&p);
	at_pause = pending_at_resume;
	ok(p.cli.got_eagain, "writer got -EAGAIN while the reader paused");
	ok(at_pause >= TLS_CONN_OUT_MAX / 2 &&
	       at_pause <= TLS_CONN_OUT_MAX + 2048,
	   "stuck writer holds about the bound of ciphertext (%zu)", at_pause);
	ok(p.srv.rx_off == len && !p.srv.mismatch && p.srv.eof,
	   "after resuming, all 16 MiB arrive intact");
	ok(p.cli.max_pending <= TLS_CONN_OUT_MAX + 2048,
	   "pending never above the bound (%zu)", p.cli.max_pending);
	loop_timer_disarm(p.l, &resume);
	pair_end(&p);
}

/* A peer that closes TCP without close_notify reads as a clean EOF. */
static void on_hs_fin(struct tls_conn *c, bool ok, const char *err, void *arg)
{
	struct ep *e = arg;

	on_handshake(c, ok, err, arg);
	e->shut = true; /* nothing to send: done at EOF */
	if (ok && e->server) {
		tls_conn_want(c, false, false);
		shutdown(tls_conn_fd(c), SHUT_WR);
		ep_finish(e);
	}
}

static void test_bare_fin(void)
{
	static const struct tls_conn_cbs fin_cbs = {
	    .on_handshake = on_hs_fin,
	    .on_readable = on_readable,
	    .on_writable = NULL,
	};
	SSL_CTX *cctx = client_ctx(ca_a, CLIENT_ID);
	SSL_CTX *sctx = server_ctx(ca_a, SERVER_ID);
	struct pair p = {0};

	if (!pair_start(&p, cctx, sctx))
		return;
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
	tls_conn_set_cbs(p.cli.c, &fin_cbs, &p.cli);
	tls_conn_set_cbs(p.srv.c, &fin_cbs, &p.srv);
	pair_run(&p);
	ok(!p.timed_out && p.cli.eof && !p.cli.read_err,
	   "bare TCP FIN reads as EOF (err %d: %s)", p.cli.read_err,
	   p.cli.read_msg);
	pair_end(&p);
}

/* Graceful close: what was accepted before tls_conn_close() still arrives. */
static void on_writable_then_close(struct tls_conn *c, void *arg)
{
	struct ep *e = arg;

	while (e->tx_off < e->tx_len) {
		ssize_t n =
		    tls_conn_write(c, e->tx + e->tx_off, e->tx_len - e->tx_off);

		if (n < 0)
			return;
		e->tx_off += n;
	}
	e->max_pending = tls_conn_out_pending(c);
	tls_conn_close(c);
	e->c = NULL;
	ep_finish(e);
}

static void on_drain(struct loop *l, struct loop_timer *t)
{
	loop_stop(l);
}

static void test_close_linger(void)
{
	static const struct tls_conn_cbs close_cbs = {
	    .on_handshake = on_handshake,
	    .on_readable = on_readable,
	    .on_writable = on_writable_then_close,
	};
	SSL_CTX *cctx = client_ctx(ca_a, CLIENT_ID);
	SSL_CTX *sctx = server_ctx(ca_a, SERVER_ID);
	struct loop_timer drain;
	struct pair p = {0};

	p.cli.tx = blob_up;
	p.cli.tx_len = 4 * MiB;
	if (!pair_start(&p, cctx, sctx))
		return;
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
	tls_conn_set_cbs(p.cli.c, &close_cbs, &p.cli);
	pair_run(&p);
	ok(p.cli.max_pending > 0, "close with output pending (%zu bytes)",
	   p.cli.max_pending);
	ok(!p.timed_out && p.srv.rx_off == 4 * MiB && !p.srv.mismatch &&
	       p.srv.eof && !p.srv.read_err,
	   "peer gets every byte and a clean EOF after close (%zu)",
	   p.srv.rx_off);
	/* Let the lingering end see the peer's FIN and free itself. */
	loop_timer_init(&drain, on_drain, NULL);
	loop_timer_arm(p.l, &drain, 100);
	loop_run(p.l);
	pair_end(&p);
}

/* A live connection keeps working across a rotation of its leaf. */
static void test_rotation(void)
{
	struct certstore *s = certstore_new(ca_a, 10);
	struct leaf *old = NULL, *cur = NULL;
	struct pair p = {0};
	SSL_CTX *cctx, *sctx;

	certstore_get(s, CLIENT_ID, &old);
	cctx = tls_ctx_client(old, ca_trust_store(ca_a));
	sctx = server_ctx(ca_a, SERVER_ID);
	p.cli.tx = blob_up;
	p.cli.tx_len = 4 * MiB;
	p.srv.tx = blob_down;
	p.srv.tx_len = 4 * MiB;
	if (!pair_start(&p, cctx, sctx))
		return;
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
	ok(certstore_rotate_due(s, time(NULL) + 6) == 1,
	   "rotation before transfer");
	certstore_get(s, CLIENT_ID, &cur);
	ok(cur != old && strcmp(cur->serial, old->serial),
	   "store has a new leaf");
	leaf_unref(old);
	certstore_free(s);
	pair_run(&p);
	ok(p.srv.rx_off == 4 * MiB && p.cli.rx_off == 4 * MiB &&
	       !p.srv.mismatch && !p.cli.mismatch &&
	       !strcmp(p.srv.peer_id, CLIENT_ID),
	   "connection made with the old leaf completes after rotation");
	pair_end(&p);
	leaf_unref(cur);
}

/* ---- records on the wire ---- */

/* Application data records the client sent, by length (from the msg hook). */
static struct {
	unsigned int n;
	size_t plain[32]; /* record length minus content type byte and tag */
} recs;

static void count_records(int write_p, int version, int content_type,
			  const void *buf, size_t len, SSL *ssl, void *arg)
{
	const uint8_t *h = buf;

	if (!write_p || content_type != SSL3_RT_HEADER || len < 5 ||
	    h[0] != SSL3_RT_APPLICATION_DATA)
		return;
	if (recs.n < 32)
		recs.plain[recs.n] = ((size_t)h[3] << 8 | h[4]) - 1 - 16;
	recs.n++;
}

/*
 * Gathers sent by the client right after its handshake (consecutive slices
 * of blob_up, so the server must read blob_up[0..total) back).
 */
static const size_t gathers[][5] = {
    {9, 64},		     /* an HTTP/2 frame header and a small payload */
    {13, 9, 100000, 50000},  /* control frames, header, ring in two parts */
    {3 * TLS_RECORD_MAX},    /* exactly three records */
    {TLS_RECORD_MAX - 1, 1}, /* one record from two pieces */
};
static size_t gather_results[4];

static void on_handshake_gather(struct tls_conn *c, bool ok, const char *err,
				void *arg)
{
	struct ep *e = arg;
	size_t off = 0;

	if (ok) {
		SSL_set_msg_callback(tls_conn_ssl(c), count_records);
		recs.n = 0;
		for (size_t g = 0; g < 4; g++) {
			struct iovec iov[5];
			int n = 0;

			for (; n < 5 && gathers[g][n]; n++) {
				iov[n] = (struct iovec){blob_up + off,
							gathers[g][n]};
				off += gathers[g][n];
			}
			gather_results[g] = tls_conn_writev(c, iov, n);
		}
		/* Records are made at once; close_notify is not counted. */
		SSL_set_msg_callback(tls_conn_ssl(c), NULL);
		e->tx_off = off; /* sent: ep_send only shuts down */
	}
	on_handshake(c, ok, err, arg);
}

static void test_records(void)
{
	static const struct tls_conn_cbs gather_cbs = {
	    .on_handshake = on_handshake_gather,
	    .on_readable = on_readable,
	    .on_writable = on_writable,
	};
	SSL_CTX *cctx = client_ctx(ca_a, CLIENT_ID);
	SSL_CTX *sctx = server_ctx(ca_a, SERVER_ID);
	/* Expected plaintext record lengths, in order. */
	size_t want[32], nwant = 0, total = 0;
	struct pair p = {0};
	bool lens_ok = true, all_taken = true;

	for (size_t g = 0; g < 4; g++) {
		size_t t = 0;

		for (int i = 0; i < 5 && gathers[g][i]; i++)
			t += gathers[g][i];
		/* First record takes the remainder, the rest are full. */
		if (t % TLS_RECORD_MAX)
			want[nwant++] = t % TLS_RECORD_MAX;
		for (size_t k = 0; k < t / TLS_RECORD_MAX; k++)
			want[nwant++] = TLS_RECORD_MAX;
		total += t;
	}
	p.cli.tx = blob_up;
	p.cli.tx_len = total;
	p.cli_cbs = &gather_cbs;
	if (!pair_start(&p, cctx, sctx))
		return;
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
	pair_run(&p);
	for (size_t g = 0; g < 4; g++) {
		size_t t = 0;

		for (int i = 0; i < 5 && gathers[g][i]; i++)
			t += gathers[g][i];
		all_taken &= gather_results[g] == t;
	}
	ok(all_taken, "writev: every gather taken whole");
	ok(recs.n == nwant, "writev: %u records for 4 gathers (want %zu)",
	   recs.n, nwant);
	for (size_t i = 0; i < nwant && i < recs.n; i++)
		lens_ok &= recs.plain[i] == want[i];
	ok(lens_ok && recs.n >= 2 && recs.plain[0] == 73,
	   "writev: header and payload share a record, bulk goes in full "
	   "%d-byte records (first %zu, second %zu)",
	   TLS_RECORD_MAX, recs.plain[0], recs.n > 1 ? recs.plain[1] : 0);
	ok(p.srv.rx_off == total && !p.srv.mismatch && p.srv.eof,
	   "writev: the server reads every byte in order (%zu of %zu)",
	   p.srv.rx_off, total);
	pair_end(&p);
}

/* ---- read syscalls per small message ---- */

/* read()-family syscalls of this process so far, or -1 (no /proc/self/io). */
static long syscalls_read(void)
{
	FILE *f = fopen("/proc/self/io", "r");
	char line[128];
	long v = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "syscr: %ld", &v) == 1)
			break;
	fclose(f);
	return v;
}

#define PINGS 200

static struct {
	struct tls_conn *cli;
	size_t got, sent;
	long syscr0, syscr1;
	bool bad;
} pp;

static void pp_send(void)
{
	if (tls_conn_write(pp.cli, blob_up + pp.sent * 64, 64) != 64)
		pp.bad = true;
	pp.sent++;
}

static void pp_srv_handshake(struct tls_conn *c, bool ok, const char *err,
			     void *arg)
{
	struct ep *e = arg;

	on_handshake(c, ok, err, arg);
	tls_conn_want(c, true, false);
	if (!ok)
		return;
	pp.cli = e->p->cli.c;
	pp.syscr0 = syscalls_read();
	pp_send();
}

static void pp_srv_readable(struct tls_conn *c, void *arg)
{
	struct ep *e = arg;
	ssize_t n;

	while ((n = tls_conn_read(c, scratch, sizeof(scratch))) > 0) {
		if (memcmp(scratch, blob_up + pp.got, n))
			pp.bad = true;
		pp.got += n;
	}
	if (n != -EAGAIN)
		pp.bad = true;
	if (pp.got == pp.sent * 64 && pp.sent < PINGS) {
		pp_send(); /* the next one only after this one arrived */
	} else if (pp.got == PINGS * 64) {
		pp.syscr1 = syscalls_read();
		tls_conn_want(c, false, false);
		e->p->pending = 0;
		loop_stop(e->p->l);
	}
}

static void pp_cli_handshake(struct tls_conn *c, bool ok, const char *err,
			     void *arg)
{
	on_handshake(c, ok, err, arg);
	tls_conn_want(c, false, false); /* the client only writes */
}

static void test_read_syscalls(void)
{
	static const struct tls_conn_cbs srv_cbs = {
	    .on_handshake = pp_srv_handshake,
	    .on_readable = pp_srv_readable,
	};
	static const struct tls_conn_cbs cli_cbs = {
	    .on_handshake = pp_cli_handshake,
	};
	SSL_CTX *cctx = client_ctx(ca_a, CLIENT_ID);
	SSL_CTX *sctx = server_ctx(ca_a, SERVER_ID);
	struct pair p = {0};
	long reads;

	if (syscalls_read() < 0) {
		tap_skip("no /proc/self/io: cannot count read syscalls");
		return;
	}
	p.cli_cbs = &cli_cbs;
	p.srv_cbs = &srv_cbs;
	if (!pair_start(&p, cctx, sctx))
		return;
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
	pair_run(&p);
	reads = pp.syscr1 - pp.syscr0;
	ok(!p.timed_out && !pp.bad && pp.got == PINGS * 64,
	   "%d small messages one after the other arrive intact", PINGS);
	/* One read() finds each message; a second one that would only say
	 * EAGAIN is skipped (the short read said the socket was drained). */
	ok(reads >= PINGS && reads <= PINGS + 2,
	   "one read() per small message (%ld reads for %d messages)", reads,
	   PINGS);
	pair_end(&p);
}

/* ---- a write cut at the bound is followed by on_writable ---- */

/*
 * Like the HBONE layer, the writer stops at the first write taken short
 * and waits for on_writable. Here the cut happens outside any connection
 * callback while ciphertext is pending on a full socket; the write's own
 * flush then finds room (the socket buffer just grew) and sends it all, so
 * the connection is writable again at once with nothing left to wait for:
 * it must still call on_writable. The reader sends nothing, so no event
 * from the peer can paper over a missing wakeup.
 */
#define CUT_TOTAL (4 * MiB)

static struct {
	size_t off;
	unsigned int writable_calls;
	bool cut_outside, waiting, bad;
	size_t cut_taken, cut_offered, pending_before;
	struct loop_timer grow;
} cut;

/* Write until the connection takes less than offered. */
static void cut_send(struct pair *p)
{
	struct tls_conn *c = p->cli.c;

	cut.waiting = false;
	while (cut.off < CUT_TOTAL) {
		size_t want = CUT_TOTAL - cut.off < 200 * 1024
				  ? CUT_TOTAL - cut.off
				  : 200 * 1024;
		ssize_t n = tls_conn_write(c, blob_up + cut.off, want);

		if (n == -EAGAIN)
			break;
		if (n < 0) {
			cut.bad = true;
			return;
		}
		cut.off += n;
		if ((size_t)n < want)
			break;
	}
	if (cut.off < CUT_TOTAL) {
		cut.waiting = true; /* until on_writable */
		return;
	}
	tls_conn_shutdown(c);
	tls_conn_want(c, false, false);
}

static void cut_writable(struct tls_conn *c, void *arg)
{
	struct ep *e = arg;

	cut.writable_calls++;
	if (!cut.cut_outside) {
		/* First: one write that leaves ciphertext on a full socket. */
		if (!cut.off)
			cut.off = tls_conn_write(c, blob_up, 250 * 1024);
		return;
	}
	if (cut.waiting)
		cut_send(e->p);
}

/* Once the writer is stuck on a full socket: grow the socket buffer and
 * write again from here, outside the connection's callbacks. */
static void cut_grow(struct loop *l, struct loop_timer *t)
{
	struct pair *p = t->arg;
	struct tls_conn *c = p->cli.c;
	int big = 16 * MiB;

	cut.pending_before = tls_conn_out_pending(c);
	setsockopt(tls_conn_fd(c), SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	cut.cut_outside = true;
	cut.cut_offered = 200 * 1024;
	cut.cut_taken = tls_conn_write(c, blob_up + cut.off, cut.cut_offered);
	cut.off += cut.cut_taken;
	cut.waiting = true;
	/* Reading generates no event on the writer's side while its buffer
	 * is empty (no EPOLLOUT is asked for then): only the cut itself can
	 * lead to on_writable. */
	p->srv.paused = false;
	tls_conn_want(p->srv.c, true, false);
}

static void cut_handshake(struct tls_conn *c, bool ok, const char *err,
			  void *arg)
{
	struct ep *e = arg;
	int small = 16 * 1024;

	on_handshake(c, ok, err, arg);
	if (!ok)
		return;
	setsockopt(tls_conn_fd(c), SOL_SOCKET, SO_SNDBUF, &small,
		   sizeof(small));
	tls_conn_want(c, false, true);
	loop_timer_arm(e->p->l, &cut.grow, 200);
}

static void test_cut_write_wakes(void)
{
	static const struct tls_conn_cbs cli_cbs = {
	    .on_handshake = cut_handshake,
	    .on_writable = cut_writable,
	};
	SSL_CTX *cctx = client_ctx(ca_a, CLIENT_ID);
	SSL_CTX *sctx = server_ctx(ca_a, SERVER_ID);
	socklen_t sl = sizeof(int);
	struct pair p = {0};
	bool started;
	int rcvbuf;

	p.cli.tx = blob_up;
	p.cli.tx_len = CUT_TOTAL; /* what the server must read back */
	p.srv.paused = true;
	p.cli_cbs = &cli_cbs;
	loop_timer_init(&cut.grow, cut_grow, &p);
	/* A small receive buffer (inherited from the listener, so the window
	 * is right from the SYN) keeps the first write's ciphertext pending. */
	getsockopt(lfd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, &sl);
	setsockopt(lfd, SOL_SOCKET, SO_RCVBUF, &(int){32 * 1024}, sizeof(int));
	started = pair_start(&p, cctx, sctx);
	setsockopt(lfd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	if (!started)
		return;
	p.cli.done = true; /* the server's EOF ends the case */
	p.pending = 1;
	p.srv.shut = true; /* the server sends nothing */
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
	pair_run(&p);
	ok(cut.cut_outside && cut.pending_before >= TLS_CONN_OUT_MAX / 2 &&
	       cut.cut_taken < cut.cut_offered,
	   "setup: a write on a connection with %zu bytes pending is cut "
	   "(%zu of %zu taken)",
	   cut.pending_before, cut.cut_taken, cut.cut_offered);
	ok(!p.timed_out && !cut.bad && p.srv.rx_off == CUT_TOTAL &&
	       !p.srv.mismatch && p.srv.eof,
	   "the cut writer hears on_writable without any event from the peer "
	   "and finishes (%zu of %d bytes)",
	   p.srv.rx_off, CUT_TOTAL);
	loop_timer_disarm(p.l, &cut.grow);
	pair_end(&p);
}

int main(void)
{
	char err[256];
	socklen_t sl = sizeof(laddr);

	if (!mkdtemp(dir_a) || !mkdtemp(dir_b))
		tap_skip_all("cannot create temp dirs");
	if (ca_open(dir_a, true, &ca_a, err, sizeof(err)) ||
	    ca_open(dir_b, true, &ca_b, err, sizeof(err))) {
		printf("# %s\n", err);
		return 1;
	}
	{
		/* To mint certificates ca.c never would (test_identity). */
		char kpath[sizeof(dir_a) + 16];
		FILE *f;

		snprintf(kpath, sizeof(kpath), "%s/ca-key.pem", dir_a);
		f = fopen(kpath, "r");
		ca_a_key = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
		if (f)
			fclose(f);
		if (!ca_a_key) {
			printf("# cannot read %s\n", kpath);
			return 1;
		}
	}
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	laddr = (struct sockaddr_in){.sin_family = AF_INET,
				     .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (bind(lfd, (struct sockaddr *)&laddr, sizeof(laddr)) ||
	    listen(lfd, 16) || getsockname(lfd, (struct sockaddr *)&laddr, &sl))
		tap_skip_all("no loopback TCP");
	blob_up = malloc(32 * MiB);
	blob_down = malloc(32 * MiB);
	for (size_t i = 0; i < 32 * MiB; i++) {
		blob_up[i] = (uint8_t)(i * 2654435761u >> 13);
		blob_down[i] = (uint8_t)(i * 40503u >> 7) ^ 0x5a;
	}

	test_good();
	test_refusals();
	test_identity();
	test_identity_handshakes();
	test_transfer();
	test_backpressure();
	test_bare_fin();
	test_close_linger();
	test_rotation();
	test_records();
	test_read_syscalls();
	test_cut_write_wakes();

	free(blob_up);
	free(blob_down);
	close(lfd);
	ca_free(ca_a);
	ca_free(ca_b);
	EVP_PKEY_free(ca_a_key);
	{
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s'", dir_a, dir_b);
		if (system(cmd))
			printf("# cleanup failed\n");
	}
	return tap_done();
}
