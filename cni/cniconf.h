/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the container runtime hands the ambientd-cni plugin on stdin (CNI
 * spec 1.1, "Section 1: Network configuration" with prevResult): parsed by
 * pure functions over a buffer, so the plugin's main and the fuzzer
 * (tests/fuzz/fuzz_cni.c) run the same code. Nothing here exits, prints or
 * reads the environment.
 */
#ifndef AMBIENTD_CNICONF_H
#define AMBIENTD_CNICONF_H

#include <stdbool.h>
#include <stddef.h>

struct json_object;

/* Error codes of the CNI spec (SPEC.md "Error"). */
enum cni_err {
	CNI_ERR_VERSION = 1,   /* incompatible CNI version */
	CNI_ERR_FIELD = 2,     /* unsupported field in network configuration */
	CNI_ERR_CONTAINER = 3, /* container unknown or does not exist */
	CNI_ERR_ENV = 4,       /* invalid necessary environment variables */
	CNI_ERR_IO = 5,	       /* I/O failure */
	CNI_ERR_DECODE = 6,    /* failed to decode content */
	CNI_ERR_CONFIG = 7,    /* invalid network config */
	CNI_ERR_AGAIN = 11,    /* try again later */
	CNI_ERR_UNAVAILABLE = 50, /* plugin not available (STATUS) */
};

/* The versions this plugin speaks, as "1.1.0, 1.0.0, ..." for messages. */
extern const char *const cni_versions[];
extern const size_t cni_n_versions;
bool cni_version_supported(const char *v);
/* Numeric, part by part ("0.4.0" < "1.0.0"); -1, 0 or 1. */
int cni_version_cmp(const char *a, const char *b);

struct cni_conf {
	struct json_object *root; /* owns every pointer below */
	const char *version;	  /* cniVersion (NULL if absent) */
	struct json_object *prev; /* prevResult, NULL if absent */
	const char *socket;	  /* "socket", else CNI_DEFAULT_SOCKET */
	bool fail_closed;	  /* "failClosed" */
};

/*
 * Parse len bytes of network configuration (strict JSON: one object,
 * nothing after it but blanks). 0 and *c (release with cni_conf_free()), or
 * a CNI error code (enum cni_err) with a one-line message in msg and, when
 * there is one, a detail string in *details (static storage). On error
 * c->version is still the config's cniVersion when it had one (the error
 * reply echoes it), so cni_conf_free() is needed either way.
 */
int cni_conf_parse(const char *buf, size_t len, struct cni_conf *c, char *msg,
		   size_t msglen, const char **details);
void cni_conf_free(struct cni_conf *c);

/*
 * The pod's addresses from prevResult.ips[].address ("ip/prefix" -> "ip"),
 * as a new JSON array of strings (entries without an address string are
 * skipped). prev may be NULL (empty array). NULL only on ENOMEM.
 */
struct json_object *cni_prev_ips(struct json_object *prev);

/* o[key] when it is a string (borrowed from o), else NULL (o may be NULL). */
const char *cni_jstr(struct json_object *o, const char *key);

#endif
