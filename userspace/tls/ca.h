/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Built-in CA and per-identity certificate store (DESIGN.md §4 "Identity").
 *
 * struct ca: a root key + self-signed root certificate kept in a directory
 * (ca-key.pem, ca-cert.pem). Every node started with the same directory
 * (--ca-dir) shares the root, so their leaves chain to one trust anchor.
 *
 * struct leaf: one issued workload certificate (ECDSA P-256, URI SAN =
 * SPIFFE identity, EKU serverAuth+clientAuth). Immutable after issue and
 * reference counted, so a TLS connection keeps the leaf it was set up with
 * for its whole life while the store rotates to a new one.
 *
 * struct certstore: the daemon's current leaf per identity. Issues on first
 * use, re-issues at half-life, and counts changes in a generation number so
 * callers can cache SSL_CTXs per (identity, generation).
 *
 * Thread safety: ca_issue() may run on any thread (the root key is only
 * read); a certstore is safe to share between threads; leaf_ref/leaf_unref
 * are atomic. Everything else about a struct ca is read-only after ca_open().
 */
#ifndef AMBIENTD_CA_H
#define AMBIENTD_CA_H

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

/* ---- SPIFFE identities: spiffe://<trust domain>/ns/<ns>/sa/<sa> ---- */

/* The SPIFFE spec caps an ID at 2048 bytes; Istio identities are shorter. */
#define SPIFFE_ID_MAX 2048
#define SPIFFE_TD_MAX 255

/*
 * Write "spiffe://td/ns/ns/sa/sa" into buf. Returns 0, -EINVAL if a part is
 * empty or has characters SPIFFE does not allow (trust domain: [a-z0-9.-_];
 * path segments: [A-Za-z0-9.-_], not "." or ".."), -ENOSPC if buf is short.
 */
int spiffe_identity(char *buf, size_t len, const char *td, const char *ns,
		    const char *sa);

/* Parts of an Istio-form identity (copies, NUL-terminated). */
struct spiffe_parts {
	char td[SPIFFE_TD_MAX + 1];
	char ns[254];
	char sa[254];
};

/*
 * Parse and validate an Istio-form SPIFFE ID (exactly /ns/<ns>/sa/<sa>).
 * Returns 0 and fills *out (may be NULL: validate only), or -EINVAL.
 */
int spiffe_parse(const char *id, struct spiffe_parts *out);

/*
 * Validate any SPIFFE ID (spiffe://td[/path]) of length `len` (not
 * necessarily NUL-terminated, as found in a certificate SAN) and copy its
 * trust domain into td (SPIFFE_TD_MAX + 1 bytes) if td is not NULL.
 * Returns 0 or -EINVAL.
 */
int spiffe_trust_domain(const char *id, size_t len, char *td);

/* ---- leaves ---- */

/*
 * An issued certificate. All fields are set once by ca_issue*() and never
 * change; only refs moves. Hold a reference (leaf_ref) for as long as you
 * use any field; key and cert may be passed to OpenSSL, which takes its own
 * references (SSL_CTX_use_certificate etc.).
 */
struct leaf {
	atomic_uint refs;
	EVP_PKEY *key;
	X509 *cert;
	char *identity;	   /* the URI SAN */
	char serial[33];   /* lowercase hex, 128-bit random */
	time_t issued;	   /* when it was minted (rotation clock starts here) */
	time_t not_before; /* issued - 60 s, tolerating peers' clock skew */
	time_t not_after;
};

/* Returns l (for `x = leaf_ref(y)`). NULL is allowed and returned. */
struct leaf *leaf_ref(struct leaf *l);
/* Drops a reference; frees the leaf on the last one. NULL is a no-op. */
void leaf_unref(struct leaf *l);

/* ---- the CA ---- */

struct ca;

/*
 * Open the CA kept in `dir`: load ca-key.pem and ca-cert.pem; if neither
 * exists and `create`, make the directory (one level, 0700) if needed and
 * generate a new root: ECDSA P-256, CA:TRUE (critical), keyUsage
 * keyCertSign+cRLSign, 10 years, subject O=ambientd, CN=ambientd root CA.
 * Files are written atomically (temp file + rename; key 0600). Creation is
 * serialized with flock() on `dir`/ca.lock, so several daemons started at
 * once on the same directory end up with the same root.
 *
 * Loading checks the key file first (ca_key_file_check, with the effective
 * uid), then that the cert is a CA allowed to sign certificates, the key
 * matches it, and it is currently valid. On failure returns -errno
 * (-ENOENT: files absent and !create; -EPERM: an unprotected key file;
 * -EINVAL: bad content; -EEXIST: only one of the two files exists) and
 * writes a sentence naming the file, the problem and the fix into err (if
 * errlen > 0).
 */
int ca_open(const char *dir, bool create, struct ca **out, char *err,
	    size_t errlen);

/*
 * Whether a CA private key file with status *st may be used by a daemon
 * running as `uid`, the way ssh refuses unprotected private keys: it must
 * be a regular file owned by uid with no group or other permission bits
 * (0600 or 0400). Returns 0, -EPERM (mode or owner; err says which and
 * gives the chmod/chown to run) or -EINVAL (not a regular file). A pure
 * function of its arguments.
 */
int ca_key_file_check(const char *path, const struct stat *st, uid_t uid,
		      char *err, size_t errlen);
void ca_free(struct ca *ca);

/* The root certificate (borrowed; lives as long as ca). */
X509 *ca_root_cert(const struct ca *ca);
/*
 * A trust store holding the root (borrowed; lives as long as ca). OpenSSL
 * users take their own reference (SSL_CTX_set1_cert_store).
 */
X509_STORE *ca_trust_store(const struct ca *ca);
/* The root as PEM text, NUL-terminated (borrowed), for trust bundles. */
const char *ca_root_pem(const struct ca *ca);

/*
 * Issue a leaf for `identity` (any valid SPIFFE ID) valid for ttl_s seconds
 * from now (notBefore = now - 60 s for clock skew). Fresh P-256 key, random
 * 128-bit serial, signed by the root with SHA-256. Returns 0 and a leaf with
 * one reference in *out, -EINVAL for a bad identity or ttl_s == 0, -ENOMEM
 * (or -EIO when OpenSSL fails; details go to the log).
 */
int ca_issue(struct ca *ca, const char *identity, unsigned int ttl_s,
	     struct leaf **out);
/*
 * Like ca_issue() with explicit validity (tests use it to mint expired or
 * not-yet-valid certificates). issued is set to not_before.
 */
int ca_issue_validity(struct ca *ca, const char *identity, time_t not_before,
		      time_t not_after, struct leaf **out);

/* ---- the store ---- */

#define CERTSTORE_DEFAULT_TTL (24 * 3600)

struct certstore;

/*
 * A store issuing from `ca` (borrowed: must outlive the store) with leaves
 * valid ttl_s seconds (0: CERTSTORE_DEFAULT_TTL). NULL with errno on error.
 */
struct certstore *certstore_new(struct ca *ca, unsigned int ttl_s);
/* Drops the store's references; leaves held elsewhere stay valid. */
void certstore_free(struct certstore *s);

/*
 * The current leaf for `identity` (Istio form, see spiffe_parse), issued on
 * first use. Returns 0 and a new reference in *out (leaf_unref it), or
 * -EINVAL / -ENOMEM / -EIO. Takes the store's mutex; issuing happens under it.
 */
int certstore_get(struct certstore *s, const char *identity, struct leaf **out);

/*
 * Re-issue (new key, new serial) every leaf at or past half its lifetime at
 * time `now` (issued + (not_after - issued) / 2). The previous leaf stays
 * valid for connections that hold it. Also forgets superseded leaves no one
 * holds anymore. Returns how many leaves were rotated (failures are logged
 * and retried on the next call).
 */
int certstore_rotate_due(struct certstore *s, time_t now);

/* Bumped on every issue or rotation; cache SSL_CTXs keyed by it. */
uint64_t certstore_generation(const struct certstore *s);

/* The earliest time any current leaf is due for rotation, or 0 if none. */
time_t certstore_next_rotation(struct certstore *s);

enum leaf_state {
	LEAF_ACTIVE,  /* the store's current leaf for its identity */
	LEAF_ROTATED, /* superseded, still held by live connections */
	LEAF_EXPIRED, /* past notAfter (rotation kept failing) */
};
const char *leaf_state_name(enum leaf_state st);

typedef void (*certstore_cb)(const struct leaf *leaf, enum leaf_state st,
			     void *arg);
/*
 * Call cb for every current leaf and every superseded one still in use, as
 * of `now`, ordered by identity (current before superseded). Runs under the
 * store's mutex: cb must not call back into the store.
 */
void certstore_for_each(struct certstore *s, time_t now, certstore_cb cb,
			void *arg);

#endif
