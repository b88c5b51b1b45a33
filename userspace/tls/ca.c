// SPDX-License-Identifier: Apache-2.0
/*
 * Built-in CA, leaves and the certificate store (see ca.h).
 *
 * Everything goes through the OpenSSL 3 EVP_PKEY/X509 APIs. Extensions with
 * fixed text are added through X509V3_EXT_nconf_nid(); the URI SAN is built
 * as a GENERAL_NAME so an identity is never parsed as config syntax.
 */
#include "ca.h"

#include "log.h"

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define CA_KEY_FILE  "ca-key.pem"
#define CA_CERT_FILE "ca-cert.pem"
#define CA_LOCK_FILE "ca.lock"
#define CA_ROOT_DAYS 3650
#define LEAF_SKEW_S  60

/* ---- SPIFFE IDs ---- */

static bool td_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
	       c == '-' || c == '_';
}

static bool seg_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
}

/* A path segment [s, s+n): non-empty, allowed characters, not . or .. */
static bool seg_valid(const char *s, size_t n)
{
	if (!n || (n == 1 && s[0] == '.') ||
	    (n == 2 && s[0] == '.' && s[1] == '.'))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!seg_char(s[i]))
			return false;
	return true;
}

int spiffe_trust_domain(const char *id, size_t len, char *td)
{
	static const char scheme[] = "spiffe://";
	const size_t slen = sizeof(scheme) - 1;
	size_t i, td_len;

	if (len > SPIFFE_ID_MAX || len <= slen || memcmp(id, scheme, slen))
		return -EINVAL;
	for (i = slen; i < len && id[i] != '/'; i++)
		if (!td_char(id[i]))
			return -EINVAL;
	td_len = i - slen;
	if (!td_len || td_len > SPIFFE_TD_MAX)
		return -EINVAL;
	/* Path: ("/" segment)*, no trailing slash. */
	while (i < len) {
		size_t start = ++i;

		while (i < len && id[i] != '/')
			i++;
		if (!seg_valid(id + start, i - start))
			return -EINVAL;
	}
	if (td) {
		memcpy(td, id + slen, td_len);
		td[td_len] = '\0';
	}
	return 0;
}

int spiffe_parse(const char *id, struct spiffe_parts *out)
{
	const char *p, *ns, *sa;
	size_t ns_len, sa_len;
	char td[SPIFFE_TD_MAX + 1];

	if (!id || spiffe_trust_domain(id, strlen(id), td))
		return -EINVAL;
	p = strchr(id + strlen("spiffe://"), '/');
	if (!p || strncmp(p, "/ns/", 4))
		return -EINVAL;
	ns = p + 4;
	p = strchr(ns, '/');
	if (!p || strncmp(p, "/sa/", 4))
		return -EINVAL;
	ns_len = p - ns;
	sa = p + 4;
	sa_len = strlen(sa);
	/* spiffe_trust_domain() validated the segments; one more is too many.
	 */
	if (strchr(sa, '/') || ns_len >= sizeof(out->ns) ||
	    sa_len >= sizeof(out->sa))
		return -EINVAL;
	if (out) {
		strcpy(out->td, td);
		memcpy(out->ns, ns, ns_len);
		out->ns[ns_len] = '\0';
		memcpy(out->sa, sa, sa_len + 1);
	}
	return 0;
}

int spiffe_identity(char *buf, size_t len, const char *td, const char *ns,
		    const char *sa)
{
	int n;

	if (!td || !ns || !sa)
		return -EINVAL;
	n = snprintf(buf, len, "spiffe://%s/ns/%s/sa/%s", td, ns, sa);
	if (n < 0)
		return -EINVAL;
	if ((size_t)n >= len)
		return -ENOSPC;
	return spiffe_parse(buf, NULL);
}

/* ---- helpers ---- */

static __attribute__((format(printf, 3, 4))) void
seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* The most specific reason OpenSSL queued, then clears the queue. */
static const char *ossl_reason(char *buf, size_t len)
{
	unsigned long e = ERR_peek_last_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;

	if (r)
		snprintf(buf, len, "%s", r);
	else if (e)
		ERR_error_string_n(e, buf, len);
	else
		snprintf(buf, len, "unknown OpenSSL error");
	ERR_clear_error();
	return buf;
}

static void log_ossl(const char *what)
{
	char buf[256];

	log_error("ca: %s: %s", what, ossl_reason(buf, sizeof(buf)));
}

/* Never prompt on a terminal for an encrypted key: fail instead. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	return -1;
}

static EVP_PKEY *gen_p256(void)
{
	return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
}

/* Random 128-bit serial; lowercase hex copy into hex (33 bytes). */
static int set_serial(X509 *x, char *hex)
{
	unsigned char raw[16];
	BIGNUM *bn = NULL;
	char *h = NULL;
	int err = -EIO;

	if (RAND_bytes(raw, sizeof(raw)) != 1)
		goto cleanup;
	/* Positive (DER) and always 16 bytes / 32 hex digits: 126 random bits.
	 */
	raw[0] = (raw[0] & 0x3f) | 0x40;
	bn = BN_bin2bn(raw, sizeof(raw), NULL);
	if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)))
		goto cleanup;
	if (hex) {
		h = BN_bn2hex(bn);
		if (!h)
			goto cleanup;
		for (size_t i = 0; h[i] && i < 32; i++)
			hex[i] =
			    (char)(h[i] >= 'A' && h[i] <= 'F' ? h[i] - 'A' + 'a'
							      : h[i]);
		hex[strnlen(h, 32)] = '\0';
	}
	err = 0;
cleanup:
	OPENSSL_free(h);
	BN_free(bn);
	return err;
}

/* Add an extension from its config text; issuer NULL means self-signed. */
static int add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX v3;
	X509_EXTENSION *ext;
	int ok;

	X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
	ext = X509V3_EXT_nconf_nid(NULL, &v3, nid, value);
	if (!ext)
		return -EIO;
	ok = X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	return ok ? 0 : -EIO;
}

static int add_uri_san(X509 *x, const char *uri)
{
	GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
	GENERAL_NAME *gn = GENERAL_NAME_new();
	ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();
	int err = -EIO;

	if (!gens || !gn || !ia5 || !ASN1_STRING_set(ia5, uri, -1))
		goto cleanup;
	GENERAL_NAME_set0_value(gn, GEN_URI, ia5);
	ia5 = NULL;
	if (!sk_GENERAL_NAME_push(gens, gn))
		goto cleanup;
	gn = NULL;
	if (X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0,
			      X509V3_ADD_DEFAULT) != 1)
		goto cleanup;
	err = 0;
cleanup:
	ASN1_IA5STRING_free(ia5);
	GENERAL_NAME_free(gn);
	GENERAL_NAMES_free(gens);
	return err;
}

/* A v3 certificate shell: serial, validity, public key, subject, issuer. */
static X509 *cert_shell(EVP_PKEY *pub, X509 *issuer, time_t nb, time_t na,
			const char *cn, char *serial_hex)
{
	X509 *x = X509_new();
	X509_NAME *name;

	if (!x || !X509_set_version(x, X509_VERSION_3) ||
	    set_serial(x, serial_hex) ||
	    !ASN1_TIME_set(X509_getm_notBefore(x), nb) ||
	    !ASN1_TIME_set(X509_getm_notAfter(x), na) ||
	    !X509_set_pubkey(x, pub))
		goto fail;
	name = X509_get_subject_name(x);
	if (!X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
					(const unsigned char *)"ambientd", -1,
					-1, 0))
		goto fail;
	if (cn &&
	    !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
					(const unsigned char *)cn, -1, -1, 0))
		goto fail;
	if (!X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer)
					    : name))
		goto fail;
	return x;
fail:
	X509_free(x);
	return NULL;
}

/* ---- the CA ---- */

struct ca {
	EVP_PKEY *key;
	X509 *cert;
	X509_STORE *store;
	char *pem;
};

static X509 *make_root(EVP_PKEY *key)
{
	time_t now = time(NULL);
	X509 *x = cert_shell(key, NULL, now - LEAF_SKEW_S,
			     now + (time_t)CA_ROOT_DAYS * 86400,
			     "ambientd root CA", NULL);

	if (!x || add_ext(x, NULL, NID_basic_constraints, "critical,CA:TRUE") ||
	    add_ext(x, NULL, NID_key_usage, "critical,keyCertSign,cRLSign") ||
	    add_ext(x, NULL, NID_subject_key_identifier, "hash") ||
	    !X509_sign(x, key, EVP_sha256())) {
		X509_free(x);
		return NULL;
	}
	return x;
}

/*
 * Write `what` (key or cert) to dir/name through a temp file in the same
 * directory, fsync, rename. Mode 0600 (mkstemp) for the key, 0644 for the
 * cert.
 */
static int write_pem_atomic(const char *dir, const char *name, EVP_PKEY *key,
			    X509 *cert, char *err, size_t errlen)
{
	char tmp[PATH_MAX], path[PATH_MAX];
	FILE *f = NULL;
	int fd = -1, ret;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (snprintf(tmp, sizeof(tmp), "%s/.%s.XXXXXX", dir, name) >=
	    (int)sizeof(tmp)) {
		seterr(err, errlen, "CA directory path too long: %s", dir);
		return -ENAMETOOLONG;
	}
	fd = mkstemp(tmp);
	if (fd < 0) {
		ret = -errno;
		seterr(err, errlen, "cannot create %s: %s", path,
		       strerror(-ret));
		return ret;
	}
	if (cert && fchmod(fd, 0644) < 0) {
		ret = -errno;
		goto fail_errno;
	}
	f = fdopen(fd, "w");
	if (!f) {
		ret = -errno;
		goto fail_errno;
	}
	fd = -1;
	if (key ? !PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL)
		: !PEM_write_X509(f, cert)) {
		char buf[128];

		ret = -EIO;
		seterr(err, errlen, "cannot write %s: %s", path,
		       ossl_reason(buf, sizeof(buf)));
		goto fail;
	}
	if (fflush(f) || fsync(fileno(f))) {
		ret = -errno;
		goto fail_errno;
	}
	ret = fclose(f);
	f = NULL;
	if (ret || rename(tmp, path) < 0) {
		ret = -errno;
		goto fail_errno;
	}
	return 0;
fail_errno:
	seterr(err, errlen, "cannot write %s: %s", path, strerror(-ret));
fail:
	if (f)
		fclose(f);
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	return ret;
}

static int create_root(const char *dir, struct ca *ca, char *err, size_t errlen)
{
	int ret;

	ca->key = gen_p256();
	ca->cert = ca->key ? make_root(ca->key) : NULL;
	if (!ca->cert) {
		char buf[128];

		seterr(err, errlen, "cannot generate a CA root: %s",
		       ossl_reason(buf, sizeof(buf)));
		return -EIO;
	}
	/* Key first: a crash in between leaves a key without cert, which
	 * ca_open() reports instead of silently pairing mismatched files. */
	ret = write_pem_atomic(dir, CA_KEY_FILE, ca->key, NULL, err, errlen);
	if (!ret)
		ret = write_pem_atomic(dir, CA_CERT_FILE, NULL, ca->cert, err,
				       errlen);
	if (!ret) {
		int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		if (dfd >= 0) {
			fsync(dfd);
			close(dfd);
		}
		log_info("ca: created a new root CA in %s", dir);
	}
	return ret;
}

int ca_key_file_check(const char *path, const struct stat *st, uid_t uid,
		      char *err, size_t errlen)
{
	bool open_mode = st->st_mode & (S_IRWXG | S_IRWXO);
	bool other_owner = st->st_uid != uid;

	if (!S_ISREG(st->st_mode)) {
		seterr(err, errlen, "%s is not a regular file", path);
		return -EINVAL;
	}
	if (!open_mode && !other_owner)
		return 0;
	if (open_mode && other_owner)
		seterr(
		    err, errlen,
		    "%s is owned by uid %u and accessible by group or "
		    "others (mode %04o): refusing an unprotected CA private "
		    "key; it must belong to uid %u, which ambientd runs as, "
		    "with mode 600 or 400: run `chown %u %s && chmod 600 %s`",
		    path, (unsigned)st->st_uid, (unsigned)(st->st_mode & 07777),
		    (unsigned)uid, (unsigned)uid, path, path);
	else if (open_mode)
		seterr(err, errlen,
		       "%s is accessible by group or others (mode %04o, owner "
		       "uid %u): refusing an unprotected CA private key; run "
		       "`chmod 600 %s`",
		       path, (unsigned)(st->st_mode & 07777),
		       (unsigned)st->st_uid, path);
	else
		seterr(
		    err, errlen,
		    "%s is owned by uid %u, not by uid %u, which ambientd "
		    "runs as: refusing the CA private key; run `chown %u %s` "
		    "(and keep it mode 600)",
		    path, (unsigned)st->st_uid, (unsigned)uid, (unsigned)uid,
		    path);
	return -EPERM;
}

static int load_root(const char *kpath, const char *cpath, struct ca *ca,
		     char *err, size_t errlen)
{
	struct stat st;
	char buf[128];
	FILE *f;
	int fd, ret;

	/*
	 * Checked on the open file, not the path, so what is checked is what
	 * is read. Symlinks are followed: Kubernetes mounts Secret keys as
	 * links into a ..data directory. O_NONBLOCK: a FIFO must not hang us.
	 */
	fd = open(kpath, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0 || fstat(fd, &st) < 0) {
		ret = -errno;
		seterr(err, errlen, "cannot read %s: %s", kpath,
		       strerror(-ret));
		if (fd >= 0)
			close(fd);
		return ret;
	}
	ret = ca_key_file_check(kpath, &st, geteuid(), err, errlen);
	f = ret ? NULL : fdopen(fd, "r");
	if (!f) {
		if (!ret) {
			ret = -errno;
			seterr(err, errlen, "cannot read %s: %s", kpath,
			       strerror(-ret));
		}
		close(fd);
		return ret;
	}
	ERR_clear_error();
	ca->key = PEM_read_PrivateKey(f, NULL, no_passphrase, NULL);
	fclose(f);
	if (!ca->key) {
		seterr(err, errlen,
		       "%s: not an unencrypted PEM private key (%s)", kpath,
		       ossl_reason(buf, sizeof(buf)));
		return -EINVAL;
	}

	f = fopen(cpath, "r");
	if (!f) {
		ret = -errno;
		seterr(err, errlen, "cannot read %s: %s", cpath,
		       strerror(-ret));
		return ret;
	}
	ca->cert = PEM_read_X509(f, NULL, no_passphrase, NULL);
	fclose(f);
	if (!ca->cert) {
		seterr(err, errlen, "%s: not a PEM certificate (%s)", cpath,
		       ossl_reason(buf, sizeof(buf)));
		return -EINVAL;
	}

	/* X509_check_ca: 1 = CA:TRUE with keyCertSign if keyUsage present. */
	if (X509_check_ca(ca->cert) != 1) {
		seterr(err, errlen,
		       "%s: not a CA certificate (needs basicConstraints "
		       "CA:TRUE and keyUsage keyCertSign)",
		       cpath);
		return -EINVAL;
	}
	if (X509_check_private_key(ca->cert, ca->key) != 1) {
		ERR_clear_error();
		seterr(err, errlen, "%s does not match the key in %s", cpath,
		       kpath);
		return -EINVAL;
	}
	if (X509_cmp_current_time(X509_get0_notAfter(ca->cert)) <= 0) {
		seterr(err, errlen, "%s: the CA certificate has expired",
		       cpath);
		return -EINVAL;
	}
	if (X509_cmp_current_time(X509_get0_notBefore(ca->cert)) > 0) {
		seterr(err, errlen, "%s: the CA certificate is not valid yet",
		       cpath);
		return -EINVAL;
	}
	return 0;
}

/* 1 if path exists, 0 if not, -errno if it cannot be checked. */
static int file_exists(const char *path, char *err, size_t errlen)
{
	struct stat st;

	if (stat(path, &st) == 0)
		return 1;
	if (errno == ENOENT)
		return 0;
	seterr(err, errlen, "cannot access %s: %s", path, strerror(errno));
	return -errno;
}

static int ca_finish(struct ca *ca, char *err, size_t errlen)
{
	BIO *mem = BIO_new(BIO_s_mem());
	char *data;
	long n;
	int ret = -ENOMEM;

	ca->store = X509_STORE_new();
	if (!mem || !ca->store || !X509_STORE_add_cert(ca->store, ca->cert) ||
	    !PEM_write_bio_X509(mem, ca->cert))
		goto cleanup;
	n = BIO_get_mem_data(mem, &data);
	ca->pem = malloc(n + 1);
	if (!ca->pem)
		goto cleanup;
	memcpy(ca->pem, data, n);
	ca->pem[n] = '\0';
	ret = 0;
cleanup:
	if (ret)
		seterr(err, errlen, "out of memory setting up the CA");
	BIO_free(mem);
	return ret;
}

int ca_open(const char *dir, bool create, struct ca **out, char *err,
	    size_t errlen)
{
	char kpath[PATH_MAX], cpath[PATH_MAX], lpath[PATH_MAX];
	struct ca *ca = NULL;
	struct stat st;
	int lock_fd = -1, have_key, have_cert, ret;

	*out = NULL;
	if (!dir || !*dir) {
		seterr(err, errlen, "no CA directory given");
		return -EINVAL;
	}
	if (snprintf(lpath, sizeof(lpath), "%s/%s", dir, CA_LOCK_FILE) >=
	    (int)sizeof(lpath)) {
		seterr(err, errlen, "CA directory path too long: %s", dir);
		return -ENAMETOOLONG;
	}
	snprintf(kpath, sizeof(kpath), "%s/%s", dir, CA_KEY_FILE);
	snprintf(cpath, sizeof(cpath), "%s/%s", dir, CA_CERT_FILE);

	if (create && mkdir(dir, 0700) < 0 && errno != EEXIST) {
		ret = -errno;
		seterr(err, errlen, "cannot create CA directory %s: %s", dir,
		       strerror(-ret));
		return ret;
	}
	if (stat(dir, &st) < 0) {
		ret = -errno;
		seterr(err, errlen, "CA directory %s: %s", dir, strerror(-ret));
		return ret;
	}
	if (!S_ISDIR(st.st_mode)) {
		seterr(err, errlen, "CA directory %s is not a directory", dir);
		return -ENOTDIR;
	}

	ca = calloc(1, sizeof(*ca));
	if (!ca) {
		seterr(err, errlen, "out of memory");
		return -ENOMEM;
	}
	/* Serialize check-then-create against other daemons on this dir. */
	if (create) {
		lock_fd = open(lpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (lock_fd < 0) {
			ret = -errno;
			seterr(err, errlen, "cannot create %s: %s", lpath,
			       strerror(-ret));
			goto cleanup;
		}
		while (flock(lock_fd, LOCK_EX) < 0 && errno == EINTR)
			;
	}

	ret = have_key = file_exists(kpath, err, errlen);
	if (ret < 0)
		goto cleanup;
	ret = have_cert = file_exists(cpath, err, errlen);
	if (ret < 0)
		goto cleanup;
	if (have_key != have_cert) {
		seterr(err, errlen,
		       "%s exists but %s does not; restore the missing file or "
		       "remove both to create a new root",
		       have_key ? kpath : cpath, have_key ? cpath : kpath);
		ret = -EEXIST;
		goto cleanup;
	}
	if (!have_key && !create) {
		seterr(err, errlen, "no CA in %s (%s and %s are missing)", dir,
		       CA_KEY_FILE, CA_CERT_FILE);
		ret = -ENOENT;
		goto cleanup;
	}
	ret = have_key ? load_root(kpath, cpath, ca, err, errlen)
		       : create_root(dir, ca, err, errlen);
	if (!ret)
		ret = ca_finish(ca, err, errlen);
cleanup:
	if (lock_fd >= 0)
		close(lock_fd); /* releases the flock */
	if (ret) {
		ca_free(ca);
		return ret;
	}
	*out = ca;
	return 0;
}

void ca_free(struct ca *ca)
{
	if (!ca)
		return;
	X509_STORE_free(ca->store);
	X509_free(ca->cert);
	EVP_PKEY_free(ca->key);
	free(ca->pem);
	free(ca);
}

X509 *ca_root_cert(const struct ca *ca)
{
	return ca->cert;
}

X509_STORE *ca_trust_store(const struct ca *ca)
{
	return ca->store;
}

const char *ca_root_pem(const struct ca *ca)
{
	return ca->pem;
}

/* ---- leaves ---- */

struct leaf *leaf_ref(struct leaf *l)
{
	if (l)
		atomic_fetch_add_explicit(&l->refs, 1, memory_order_relaxed);
	return l;
}

void leaf_unref(struct leaf *l)
{
	if (!l ||
	    atomic_fetch_sub_explicit(&l->refs, 1, memory_order_release) != 1)
		return;
	atomic_thread_fence(memory_order_acquire);
	X509_free(l->cert);
	EVP_PKEY_free(l->key);
	free(l->identity);
	free(l);
}

int ca_issue_validity(struct ca *ca, const char *identity, time_t not_before,
		      time_t not_after, struct leaf **out)
{
	struct leaf *l = NULL;
	int ret = -EINVAL;

	*out = NULL;
	if (!identity ||
	    spiffe_trust_domain(identity, strlen(identity), NULL) ||
	    not_after <= not_before)
		return -EINVAL;
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	atomic_init(&l->refs, 1);
	l->identity = strdup(identity);
	if (!l->identity) {
		ret = -ENOMEM;
		goto cleanup;
	}
	ret = -EIO;
	l->key = gen_p256();
	if (!l->key) {
		log_ossl("generating a leaf key");
		goto cleanup;
	}
	l->cert = cert_shell(l->key, ca->cert, not_before, not_after, NULL,
			     l->serial);
	if (!l->cert ||
	    add_ext(l->cert, ca->cert, NID_basic_constraints,
		    "critical,CA:FALSE") ||
	    add_ext(l->cert, ca->cert, NID_key_usage,
		    "critical,digitalSignature,keyAgreement") ||
	    add_ext(l->cert, ca->cert, NID_ext_key_usage,
		    "serverAuth,clientAuth") ||
	    add_ext(l->cert, ca->cert, NID_authority_key_identifier, "keyid") ||
	    add_uri_san(l->cert, identity) ||
	    !X509_sign(l->cert, ca->key, EVP_sha256())) {
		log_ossl("issuing a leaf certificate");
		goto cleanup;
	}
	l->issued = not_before;
	l->not_before = not_before;
	l->not_after = not_after;
	ret = 0;
cleanup:
	if (ret) {
		leaf_unref(l);
		return ret;
	}
	*out = l;
	return 0;
}

int ca_issue(struct ca *ca, const char *identity, unsigned int ttl_s,
	     struct leaf **out)
{
	time_t now = time(NULL);
	int ret;

	if (!ttl_s) {
		*out = NULL;
		return -EINVAL;
	}
	ret = ca_issue_validity(ca, identity, now - LEAF_SKEW_S,
				now + (time_t)ttl_s, out);
	if (!ret)
		(*out)->issued = now;
	return ret;
}

/* ---- the store ---- */

struct cs_entry {
	struct leaf *cur;  /* what new connections get */
	struct leaf *prev; /* superseded; kept for listing while in use */
};

struct certstore {
	struct ca *ca;
	unsigned int ttl_s;
	pthread_mutex_t mu;
	struct cs_entry *v; /* sorted by cur->identity */
	size_t n, cap;
	atomic_uint_fast64_t gen;
};

struct certstore *certstore_new(struct ca *ca, unsigned int ttl_s)
{
	struct certstore *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->ca = ca;
	s->ttl_s = ttl_s ? ttl_s : CERTSTORE_DEFAULT_TTL;
	pthread_mutex_init(&s->mu, NULL);
	atomic_init(&s->gen, 0);
	return s;
}

void certstore_free(struct certstore *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++) {
		leaf_unref(s->v[i].cur);
		leaf_unref(s->v[i].prev);
	}
	free(s->v);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

/* Index of identity, or the insertion point with *found = false. */
static size_t cs_find(const struct certstore *s, const char *identity,
		      bool *found)
{
	size_t lo = 0, hi = s->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(s->v[mid].cur->identity, identity);

		if (!c) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

int certstore_get(struct certstore *s, const char *identity, struct leaf **out)
{
	struct leaf *l = NULL;
	bool found;
	size_t i;
	int ret = 0;

	*out = NULL;
	if (spiffe_parse(identity, NULL))
		return -EINVAL;
	pthread_mutex_lock(&s->mu);
	i = cs_find(s, identity, &found);
	if (found) {
		*out = leaf_ref(s->v[i].cur);
		goto cleanup;
	}
	if (s->n == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 8;
		struct cs_entry *v = realloc(s->v, cap * sizeof(*v));

		if (!v) {
			ret = -ENOMEM;
			goto cleanup;
		}
		s->v = v;
		s->cap = cap;
	}
	ret = ca_issue(s->ca, identity, s->ttl_s, &l);
	if (ret)
		goto cleanup;
	memmove(&s->v[i + 1], &s->v[i], (s->n - i) * sizeof(*s->v));
	s->v[i] = (struct cs_entry){.cur = l};
	s->n++;
	atomic_fetch_add(&s->gen, 1);
	log_info("ca: issued %s serial %s", identity, l->serial);
	*out = leaf_ref(l);
cleanup:
	pthread_mutex_unlock(&s->mu);
	return ret;
}

static time_t half_life(const struct leaf *l)
{
	return l->issued + (l->not_after - l->issued) / 2;
}

static bool in_use(const struct leaf *l)
{
	return atomic_load_explicit(&((struct leaf *)l)->refs,
				    memory_order_relaxed) > 1;
}

int certstore_rotate_due(struct certstore *s, time_t now)
{
	int rotated = 0;

	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < s->n; i++) {
		struct cs_entry *e = &s->v[i];
		struct leaf *l;
		int ret;

		if (e->prev &&
		    (!in_use(e->prev) || e->prev->not_after <= now)) {
			leaf_unref(e->prev);
			e->prev = NULL;
		}
		if (now < half_life(e->cur))
			continue;
		ret = ca_issue(s->ca, e->cur->identity, s->ttl_s, &l);
		if (ret) {
			log_error("ca: rotating %s: %s", e->cur->identity,
				  strerror(-ret));
			continue;
		}
		log_info("ca: rotated %s serial %s -> %s", l->identity,
			 e->cur->serial, l->serial);
		leaf_unref(e->prev);
		e->prev = e->cur;
		e->cur = l;
		rotated++;
	}
	if (rotated)
		atomic_fetch_add(&s->gen, 1);
	pthread_mutex_unlock(&s->mu);
	return rotated;
}

uint64_t certstore_generation(const struct certstore *s)
{
	return atomic_load(&((struct certstore *)s)->gen);
}

time_t certstore_next_rotation(struct certstore *s)
{
	time_t next = 0;

	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < s->n; i++) {
		time_t t = half_life(s->v[i].cur);

		if (!next || t < next)
			next = t;
	}
	pthread_mutex_unlock(&s->mu);
	return next;
}

const char *leaf_state_name(enum leaf_state st)
{
	switch (st) {
	case LEAF_ACTIVE:
		return "active";
	case LEAF_ROTATED:
		return "rotated";
	case LEAF_EXPIRED:
		return "expired";
	}
	return "unknown";
}

void certstore_for_each(struct certstore *s, time_t now, certstore_cb cb,
			void *arg)
{
	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < s->n; i++) {
		struct cs_entry *e = &s->v[i];

		cb(e->cur,
		   e->cur->not_after <= now ? LEAF_EXPIRED : LEAF_ACTIVE, arg);
		if (e->prev && in_use(e->prev) && e->prev->not_after > now)
			cb(e->prev, LEAF_ROTATED, arg);
	}
	pthread_mutex_unlock(&s->mu);
}
