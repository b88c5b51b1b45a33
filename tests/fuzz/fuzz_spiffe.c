// SPDX-License-Identifier: Apache-2.0
/*
 * SPIFFE identities: from a peer's certificate (DER -> d2i_X509 ->
 * tls_cert_identity(), what both mTLS handshake checks use) and as strings
 * (spiffe_trust_domain(), spiffe_parse(), spiffe_identity() in ca.c).
 *
 * Input: byte 0 even: the rest is a DER certificate; odd: the rest is
 * strings (the whole as an ID, and split at NULs into trust domain,
 * namespace and service account).
 *
 * Properties: no sanitizer report; tls_cert_identity() returns 0 with a
 * valid SPIFFE ID that has a path, or -ENOENT/-EINVAL with buf untouched,
 * and -ENOSPC exactly when buf is one byte short; an ID the parsers accept
 * is rebuilt byte for byte by spiffe_identity(), and what spiffe_identity()
 * builds, spiffe_parse() takes apart into the same parts.
 */
#include <errno.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca.h"
#include "tls.h"

#define FUZZ_MAX_INPUT (16 * 1024)

static void check_rebuild(const char *id)
{
	struct spiffe_parts p;
	char again[SPIFFE_ID_MAX + 1];

	if (spiffe_parse(id, &p))
		return;
	if (spiffe_trust_domain(id, strlen(id), NULL))
		abort(); /* Istio form but not a SPIFFE ID */
	if (spiffe_identity(again, sizeof(again), p.td, p.ns, p.sa) ||
	    strcmp(again, id)) {
		fprintf(stderr, "\"%s\" parses but rebuilds as \"%s\"\n", id,
			again);
		abort();
	}
}

static void fuzz_cert(const uint8_t *der, size_t len)
{
	const unsigned char *p = der;
	X509 *x = d2i_X509(NULL, &p, (long)len);
	char id[SPIFFE_ID_MAX + 1], small[SPIFFE_ID_MAX + 1];
	size_t n;
	int rc;

	if (!x)
		return;
	memset(id, 'x', sizeof(id));
	rc = tls_cert_identity(x, id, sizeof(id));
	if (getenv("AMBIENTD_FUZZ_DUMP")) /* to look at what a seed makes */
		fprintf(stderr, "tls_cert_identity: %d %.*s\n", rc, rc ? 0 : 80,
			id);
	if (rc) {
		if (rc != -ENOENT && rc != -EINVAL)
			abort();
		for (size_t i = 0; i < sizeof(id); i++)
			if (id[i] != 'x')
				abort(); /* written on failure */
		X509_free(x);
		return;
	}
	n = strlen(id);
	if (n > SPIFFE_ID_MAX || strncmp(id, "spiffe://", 9) ||
	    !strchr(id + 9, '/') || spiffe_trust_domain(id, n, NULL))
		abort();
	/* One byte short: -ENOSPC, untouched; exactly enough: the same. */
	memset(small, 'y', sizeof(small));
	if (tls_cert_identity(x, small, n) != -ENOSPC || small[0] != 'y')
		abort();
	if (tls_cert_identity(x, small, n + 1) || strcmp(small, id))
		abort();
	check_rebuild(id);
	X509_free(x);
}

static void fuzz_strings(const char *s, size_t len)
{
	char td[SPIFFE_TD_MAX + 1], id[SPIFFE_ID_MAX + 1];
	const char *part[3] = {"", "", ""};
	struct spiffe_parts p;
	char *z;
	size_t k = 0;

	/* The bytes as a certificate SAN would hold them (no NUL needed). */
	memset(td, 'x', sizeof(td));
	if (spiffe_trust_domain(s, len, td) == 0 &&
	    (!memchr(td, 0, sizeof(td)) || !td[0] || memchr(s, 0, len)))
		abort();

	/* As C strings. */
	z = malloc(len + 1);
	if (!z)
		abort();
	memcpy(z, s, len);
	z[len] = '\0';
	check_rebuild(z);
	for (size_t i = 0; i <= len && k < 3; i++) {
		if (i == 0 || z[i - 1] == '\0')
			part[k++] = z + i;
	}
	if (spiffe_identity(id, sizeof(id), part[0], part[1], part[2]) == 0) {
		if (spiffe_parse(id, &p) || strcmp(p.td, part[0]) ||
		    strcmp(p.ns, part[1]) || strcmp(p.sa, part[2]))
			abort();
	}
	free(z);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *copy;

	if (size < 1 || size > FUZZ_MAX_INPUT)
		return 0;
	/* Exactly the bytes, so reads past them are caught. */
	copy = malloc(size - 1 ? size - 1 : 1);
	if (!copy)
		abort();
	memcpy(copy, data + 1, size - 1);
	if (data[0] & 1)
		fuzz_strings((const char *)copy, size - 1);
	else
		fuzz_cert(copy, size - 1);
	free(copy);
	ERR_clear_error(); /* d2i failures queue errors; start each input clean
			    */
	return 0;
}
