// SPDX-License-Identifier: Apache-2.0
/*
 * Built-in CA: SPIFFE ID helpers, root create/reload and its error messages,
 * leaf contents, and the certificate store (issue once, rotate at half-life,
 * generation, listing, threads).
 */
#include "ca.h"
#include "tap.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/test_ca.XXXXXX";

static const char *path_in(const char *sub, const char *file)
{
	static char buf[4][512];
	static int n;
	char *b = buf[n++ % 4];

	snprintf(b, sizeof(buf[0]), "%s/%s%s%s", tmpdir, sub, file ? "/" : "",
		 file ? file : "");
	return b;
}

static void rm_rf(const char *dir)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd))
		fprintf(stderr, "cleanup of %s failed\n", dir);
}

static bool copy_file(const char *from, const char *to)
{
	char buf[8192];
	FILE *in = fopen(from, "r"), *out = fopen(to, "w");
	size_t n;
	bool ok = in && out;

	while (ok && (n = fread(buf, 1, sizeof(buf), in)) > 0)
		ok = fwrite(buf, 1, n, out) == n;
	if (in)
		fclose(in);
	if (out)
		fclose(out);
	return ok;
}

static bool write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	bool ok = f && fputs(text, f) >= 0;

	if (f)
		fclose(f);
	return ok;
}

/* ---- SPIFFE helpers ---- */

static void test_spiffe(void)
{
	static const struct {
		const char *id;
		bool istio; /* spiffe_parse accepts */
		bool any;   /* spiffe_trust_domain accepts */
	} cases[] = {
	    {"spiffe://cluster.local/ns/default/sa/sleep", true, true},
	    {"spiffe://td_1-x.example/ns/a.b/sa/C-D_e", true, true},
	    {"spiffe://cluster.local", false, true},
	    {"spiffe://cluster.local/workload/1", false, true},
	    {"spiffe://cluster.local/ns/a/sa/b/extra", false, true},
	    {"spiffe://cluster.local/ns/a/sa/", false, false},
	    {"spiffe://cluster.local/ns//sa/b", false, false},
	    {"spiffe://cluster.local/ns/a/sa/..", false, false},
	    {"spiffe://Cluster.local/ns/a/sa/b", false, false},
	    {"spiffe:///ns/a/sa/b", false, false},
	    {"spiffe://cluster.local/ns/a b/sa/b", false, false},
	    {"spiffe://cluster.local/ns/a/sa/b?x", false, false},
	    {"https://cluster.local/ns/a/sa/b", false, false},
	    {"spiffe://cluster.local/", false, false},
	    {"spiffe://cluster.local/nx/a/sa/b", false, true},
	    /* The SPIFFE ID spec's other rules (tls_cert_identity uses them).
	     */
	    {"spiffe://cluster.local/ns/a%20b/sa/b", false, false},
	    {"spiffe://cluster%2elocal/ns/a/sa/b", false, false},
	    {"spiffe://cluster.local:8080/ns/a/sa/b", false, false},
	    {"spiffe://u@cluster.local/ns/a/sa/b", false, false},
	    {"spiffe://cluster.local/ns/a/sa/b#f", false, false},
	    {"spiffe://cluster.local/ns/a/sa/b/", false, false},
	    {"spiffe://cluster.local/ns/./sa/b", false, false},
	    {"SPIFFE://cluster.local/ns/a/sa/b", false, false},
	    {"spiffe://[::1]/ns/a/sa/b", false, false},
	    {"spiffe://10.0.0.1/ns/a/sa/b", true, true},
	    {"", false, false},
	};
	struct spiffe_parts p;
	char buf[128], td[SPIFFE_TD_MAX + 1];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *id = cases[i].id;

		ok((spiffe_parse(id, NULL) == 0) == cases[i].istio,
		   "spiffe_parse(\"%s\") %s", id,
		   cases[i].istio ? "accepts" : "rejects");
		ok((spiffe_trust_domain(id, strlen(id), NULL) == 0) ==
		       cases[i].any,
		   "spiffe_trust_domain(\"%s\") %s", id,
		   cases[i].any ? "accepts" : "rejects");
	}
	ok(spiffe_parse("spiffe://cluster.local/ns/foo/sa/bar", &p) == 0 &&
	       !strcmp(p.td, "cluster.local") && !strcmp(p.ns, "foo") &&
	       !strcmp(p.sa, "bar"),
	   "spiffe_parse splits td/ns/sa");
	ok(spiffe_trust_domain("spiffe://a.b/c", 14, td) == 0 &&
	       !strcmp(td, "a.b"),
	   "spiffe_trust_domain extracts the trust domain");
	{
		/* At most 2048 bytes in all, 255 for the trust domain. */
		static char id[SPIFFE_ID_MAX + 2];

		memset(id, 'a', sizeof(id) - 1);
		memcpy(id, "spiffe://td/", 12);
		ok(spiffe_trust_domain(id, SPIFFE_ID_MAX, NULL) == 0 &&
		       spiffe_trust_domain(id, SPIFFE_ID_MAX + 1, NULL) ==
			   -EINVAL,
		   "2048 bytes accepted, 2049 refused");
		memset(id, 't', sizeof(id) - 1);
		memcpy(id, "spiffe://", 9);
		memcpy(id + 9 + 255, "/w", 2);
		ok(spiffe_trust_domain(id, 9 + 255 + 2, td) == 0 &&
		       strlen(td) == 255,
		   "255-byte trust domain accepted");
		id[9 + 255] = 't';
		memcpy(id + 9 + 256, "/w", 2);
		ok(spiffe_trust_domain(id, 9 + 256 + 2, NULL) == -EINVAL,
		   "256-byte trust domain refused");
	}
	/* A SAN is length-delimited and could hide a NUL. */
	ok(spiffe_trust_domain("spiffe://a.b\0/c", 15, NULL) == -EINVAL,
	   "embedded NUL rejected");
	ok(spiffe_identity(buf, sizeof(buf), "cluster.local", "default",
			   "sleep") == 0 &&
	       !strcmp(buf, "spiffe://cluster.local/ns/default/sa/sleep"),
	   "spiffe_identity builds the Istio form");
	ok(spiffe_identity(buf, 20, "cluster.local", "default", "sleep") ==
	       -ENOSPC,
	   "spiffe_identity: short buffer -> -ENOSPC");
	ok(spiffe_identity(buf, sizeof(buf), "cluster.local", "a/b", "c") ==
	       -EINVAL,
	   "spiffe_identity: '/' in a part -> -EINVAL");
	ok(spiffe_identity(buf, sizeof(buf), "", "a", "c") == -EINVAL,
	   "spiffe_identity: empty trust domain -> -EINVAL");
}

/* ---- root ---- */

static X509 *load_cert(const char *path)
{
	FILE *f = fopen(path, "r");
	X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;

	if (f)
		fclose(f);
	return x;
}

/* A self-signed CA cert for key, valid [nb, na], written to dir. */
static bool write_custom_root(const char *dir, EVP_PKEY *key, time_t nb,
			      time_t na, bool is_ca)
{
	X509 *x = X509_new();
	X509V3_CTX v3;
	X509_EXTENSION *ext;
	char path[512];
	FILE *f;
	bool good;

	X509_set_version(x, X509_VERSION_3);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
	ASN1_TIME_set(X509_getm_notBefore(x), nb);
	ASN1_TIME_set(X509_getm_notAfter(x), na);
	X509_set_pubkey(x, key);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
				   (const unsigned char *)"custom", -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
	ext = X509V3_EXT_nconf_nid(NULL, &v3, NID_basic_constraints,
				   is_ca ? "critical,CA:TRUE"
					 : "critical,CA:FALSE");
	X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	good = X509_sign(x, key, EVP_sha256()) > 0;
	snprintf(path, sizeof(path), "%s/ca-cert.pem", dir);
	f = fopen(path, "w");
	good = good && f && PEM_write_X509(f, x);
	if (f)
		fclose(f);
	snprintf(path, sizeof(path), "%s/ca-key.pem", dir);
	f = fopen(path, "w");
	good = good && f &&
	       PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
	if (f)
		fclose(f);
	X509_free(x);
	return good;
}

struct open_arg {
	const char *dir;
	struct ca *ca;
	int ret;
};

static void *open_thread(void *p)
{
	struct open_arg *a = p;
	char err[256];

	a->ret = ca_open(a->dir, true, &a->ca, err, sizeof(err));
	return NULL;
}

static void test_root(void)
{
	struct ca *ca = NULL, *ca2 = NULL;
	char err[512];
	struct stat st;
	X509 *on_disk;
	int ret;

	ret = ca_open(path_in("absent", NULL), false, &ca, err, sizeof(err));
	ok(ret == -ENOENT && strstr(err, "absent"),
	   "missing dir without create: -ENOENT, names it (%s)", err);

	ret = ca_open(path_in("a", NULL), true, &ca, err, sizeof(err));
	ok(ret == 0 && ca, "create a root in a new directory");
	if (ret)
		return;
	ok(stat(path_in("a", "ca-key.pem"), &st) == 0 &&
	       (st.st_mode & 0777) == 0600,
	   "ca-key.pem is mode 0600");
	on_disk = load_cert(path_in("a", "ca-cert.pem"));
	ok(on_disk && X509_cmp(on_disk, ca_root_cert(ca)) == 0,
	   "ca-cert.pem holds the root");
	X509_free(on_disk);
	ok(X509_check_ca(ca_root_cert(ca)) == 1 &&
	       (X509_get_key_usage(ca_root_cert(ca)) &
		(KU_KEY_CERT_SIGN | KU_CRL_SIGN)) ==
		   (KU_KEY_CERT_SIGN | KU_CRL_SIGN),
	   "root: CA:TRUE, keyCertSign+cRLSign");
	{
		X509_NAME *n = X509_get_subject_name(ca_root_cert(ca));
		char cn[64] = "", o[64] = "";

		X509_NAME_get_text_by_NID(n, NID_commonName, cn, sizeof(cn));
		X509_NAME_get_text_by_NID(n, NID_organizationName, o,
					  sizeof(o));
		ok(!strcmp(cn, "ambientd root CA") && !strcmp(o, "ambientd"),
		   "root subject O=ambientd, CN=ambientd root CA");
	}
	{
		EVP_PKEY *pk = X509_get0_pubkey(ca_root_cert(ca));
		char group[64] = "";
		size_t gl;

		EVP_PKEY_get_group_name(pk, group, sizeof(group), &gl);
		ok(!strcmp(group, "prime256v1"), "root key is P-256 (%s)",
		   group);
	}
	{
		int days = 0, secs = 0;

		ASN1_TIME_diff(&days, &secs,
			       X509_get0_notBefore(ca_root_cert(ca)),
			       X509_get0_notAfter(ca_root_cert(ca)));
		ok(days >= 3650 && days <= 3651,
		   "root valid 10 years (%d days)", days);
	}
	ok(ca_root_pem(ca) && strstr(ca_root_pem(ca), "BEGIN CERTIFICATE"),
	   "root PEM available");

	ret = ca_open(path_in("a", NULL), false, &ca2, err, sizeof(err));
	ok(ret == 0 && X509_cmp(ca_root_cert(ca2), ca_root_cert(ca)) == 0,
	   "reopen the same dir: same root");
	ca_free(ca2);
	ca2 = NULL;
	ret = ca_open(path_in("a", NULL), true, &ca2, err, sizeof(err));
	ok(ret == 0 && X509_cmp(ca_root_cert(ca2), ca_root_cert(ca)) == 0,
	   "reopen with create: same root, not regenerated");
	ca_free(ca2);
	ca2 = NULL;

	/* Several daemons racing on one fresh dir agree on one root. */
	{
		struct open_arg a[4];
		pthread_t th[4];
		bool same = true;

		for (int i = 0; i < 4; i++) {
			a[i] = (struct open_arg){.dir = path_in("race", NULL)};
			pthread_create(&th[i], NULL, open_thread, &a[i]);
		}
		for (int i = 0; i < 4; i++)
			pthread_join(th[i], NULL);
		for (int i = 0; i < 4; i++)
			same = same && !a[i].ret &&
			       X509_cmp(ca_root_cert(a[i].ca),
					ca_root_cert(a[0].ca)) == 0;
		ok(same, "4 concurrent ca_open(create) on a fresh dir share "
			 "one root");
		for (int i = 0; i < 4; i++)
			ca_free(a[i].ca);
	}

	/* Error cases. */
	ret =
	    ca_open(path_in("a", "ca-cert.pem"), true, &ca2, err, sizeof(err));
	ok(ret == -ENOTDIR && strstr(err, "not a directory"),
	   "a file as CA dir: %s", err);

	mkdir(path_in("corrupt", NULL), 0700);
	copy_file(path_in("a", "ca-key.pem"), path_in("corrupt", "ca-key.pem"));
	write_text(path_in("corrupt", "ca-cert.pem"), "garbage\n");
	ret = ca_open(path_in("corrupt", NULL), true, &ca2, err, sizeof(err));
	ok(ret == -EINVAL && strstr(err, "corrupt/ca-cert.pem") &&
	       strstr(err, "not a PEM certificate"),
	   "corrupt cert: %s", err);

	write_text(
	    path_in("corrupt", "ca-key.pem"),
	    "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
	ret = ca_open(path_in("corrupt", NULL), true, &ca2, err, sizeof(err));
	ok(ret == -EINVAL && strstr(err, "corrupt/ca-key.pem") &&
	       strstr(err, "private key"),
	   "corrupt key: %s", err);

	mkdir(path_in("half", NULL), 0700);
	copy_file(path_in("a", "ca-key.pem"), path_in("half", "ca-key.pem"));
	ret = ca_open(path_in("half", NULL), true, &ca2, err, sizeof(err));
	ok(ret == -EEXIST && strstr(err, "ca-cert.pem does not"),
	   "key without cert: %s", err);

	mkdir(path_in("mismatch", NULL), 0700);
	copy_file(path_in("a", "ca-cert.pem"),
		  path_in("mismatch", "ca-cert.pem"));
	{
		EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
		FILE *f = fopen(path_in("mismatch", "ca-key.pem"), "w");

		PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
		fclose(f);
		EVP_PKEY_free(k);
	}
	ret = ca_open(path_in("mismatch", NULL), false, &ca2, err, sizeof(err));
	ok(ret == -EINVAL && strstr(err, "does not match"),
	   "key/cert mismatch: %s", err);

	{
		EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
		time_t now = time(NULL);

		mkdir(path_in("expired", NULL), 0700);
		write_custom_root(path_in("expired", NULL), k, now - 86400,
				  now - 3600, true);
		ret = ca_open(path_in("expired", NULL), false, &ca2, err,
			      sizeof(err));
		ok(ret == -EINVAL && strstr(err, "expired/ca-cert.pem") &&
		       strstr(err, "has expired"),
		   "expired root: %s", err);

		mkdir(path_in("notca", NULL), 0700);
		write_custom_root(path_in("notca", NULL), k, now - 60,
				  now + 3600, false);
		ret = ca_open(path_in("notca", NULL), false, &ca2, err,
			      sizeof(err));
		ok(ret == -EINVAL && strstr(err, "not a CA certificate"),
		   "CA:FALSE cert as root: %s", err);
		EVP_PKEY_free(k);
	}

	if (geteuid() == 0) {
		tap_skip("unreadable key: running as root reads anything");
	} else {
		mkdir(path_in("unreadable", NULL), 0700);
		copy_file(path_in("a", "ca-key.pem"),
			  path_in("unreadable", "ca-key.pem"));
		copy_file(path_in("a", "ca-cert.pem"),
			  path_in("unreadable", "ca-cert.pem"));
		chmod(path_in("unreadable", "ca-key.pem"), 0);
		ret = ca_open(path_in("unreadable", NULL), false, &ca2, err,
			      sizeof(err));
		ok(ret == -EACCES && strstr(err, "cannot read") &&
		       strstr(err, "unreadable/ca-key.pem"),
		   "unreadable key: %s", err);
	}
	ok(ca2 == NULL, "failed opens leave *out NULL");
	ca_free(ca);
}

/* ---- the key file's mode and owner ---- */

static void test_key_perms(void)
{
	static const struct {
		mode_t mode;
		bool other_owner;
		int want;
		const char *what;
	} cases[] = {
	    {S_IFREG | 0600, false, 0, "0600"},
	    {S_IFREG | 0400, false, 0, "0400"},
	    {S_IFREG | 0700, false, 0, "0700 (owner bits only)"},
	    {S_IFREG | 0640, false, -EPERM, "0640: group readable"},
	    {S_IFREG | 0620, false, -EPERM, "0620: group writable"},
	    {S_IFREG | 0610, false, -EPERM, "0610: group executable"},
	    {S_IFREG | 0604, false, -EPERM, "0604: others readable"},
	    {S_IFREG | 0602, false, -EPERM, "0602: others writable"},
	    {S_IFREG | 0644, false, -EPERM, "0644"},
	    {S_IFREG | 0600, true, -EPERM, "0600 but another owner"},
	    {S_IFREG | 0644, true, -EPERM, "0644 and another owner"},
	    {S_IFDIR | 0700, false, -EINVAL, "a directory"},
	    {S_IFIFO | 0600, false, -EINVAL, "a FIFO"},
	};
	struct ca *ca = NULL;
	char err[512];
	int ret;

	/* The pure check, for any uid: nothing here depends on being root. */
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct stat st = {.st_mode = cases[i].mode,
				  .st_uid = cases[i].other_owner ? 4321 : 1234};

		err[0] = '\0';
		ret = ca_key_file_check("/x/ca-key.pem", &st, 1234, err,
					sizeof(err));
		ok(ret == cases[i].want &&
		       (!ret || strstr(err, "/x/ca-key.pem")) &&
		       (ret != -EPERM || (st.st_mode & 077) == 0 ||
			strstr(err, "chmod 600")) &&
		       (ret != -EPERM || !cases[i].other_owner ||
			(strstr(err, "uid 4321") && strstr(err, "chown 1234"))),
		   "key file %s -> %d%s%s", cases[i].what, ret, ret ? ": " : "",
		   err);
	}

	/* Through ca_open, on a copy of the CA made by test_root. */
	mkdir(path_in("perm", NULL), 0700);
	copy_file(path_in("a", "ca-cert.pem"), path_in("perm", "ca-cert.pem"));
	copy_file(path_in("a", "ca-key.pem"), path_in("perm", "ca-key.pem"));
	{
		static const mode_t bad[] = {0644, 0640, 0604, 0660};

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			char mode[8];

			chmod(path_in("perm", "ca-key.pem"), bad[i]);
			snprintf(mode, sizeof(mode), "%04o", bad[i]);
			ret = ca_open(path_in("perm", NULL), false, &ca, err,
				      sizeof(err));
			ok(ret == -EPERM && !ca &&
			       strstr(err, "perm/ca-key.pem") &&
			       strstr(err, mode) && strstr(err, "chmod 600"),
			   "ca_open refuses a %s key: %s", mode, err);
			ca_free(ca);
			ca = NULL;
		}
	}
	chmod(path_in("perm", "ca-key.pem"), 0400);
	ret = ca_open(path_in("perm", NULL), false, &ca, err, sizeof(err));
	ok(ret == 0, "ca_open takes a 0400 key (a Kubernetes Secret's "
		     "defaultMode 0400)");
	ca_free(ca);
	ca = NULL;

	/* A Secret volume: ca-key.pem is a symlink into ..data/. */
	mkdir(path_in("secret", NULL), 0700);
	mkdir(path_in("secret", "..data"), 0700);
	copy_file(path_in("a", "ca-key.pem"),
		  path_in("secret", "..data/ca-key.pem"));
	copy_file(path_in("a", "ca-cert.pem"),
		  path_in("secret", "..data/ca-cert.pem"));
	symlink("..data/ca-key.pem", path_in("secret", "ca-key.pem"));
	symlink("..data/ca-cert.pem", path_in("secret", "ca-cert.pem"));
	chmod(path_in("secret", "..data/ca-key.pem"), 0400);
	ret = ca_open(path_in("secret", NULL), false, &ca, err, sizeof(err));
	ok(ret == 0,
	   "symlinked key (Secret volume layout), target 0400: "
	   "taken (%s)",
	   ret ? err : "ok");
	ca_free(ca);
	ca = NULL;
	chmod(path_in("secret", "..data/ca-key.pem"), 0644);
	ret = ca_open(path_in("secret", NULL), false, &ca, err, sizeof(err));
	ok(ret == -EPERM && strstr(err, "0644"),
	   "symlinked key: the target's mode counts, not the link's: %s", err);
	ca_free(ca);
	ca = NULL;

	/* Another owner: root can make one; anyone else borrows root's. */
	if (geteuid() == 0) {
		chmod(path_in("perm", "ca-key.pem"), 0600);
		if (chown(path_in("perm", "ca-key.pem"), 65534, 65534))
			diag("chown: %s", strerror(errno));
		ret = ca_open(path_in("perm", NULL), false, &ca, err,
			      sizeof(err));
		ok(ret == -EPERM && strstr(err, "owned by uid 65534") &&
		       strstr(err, "chown 0 "),
		   "ca_open refuses a key owned by another uid: %s", err);
	} else {
		unlink(path_in("perm", "ca-key.pem"));
		symlink("/etc/passwd", path_in("perm", "ca-key.pem"));
		ret = ca_open(path_in("perm", NULL), false, &ca, err,
			      sizeof(err));
		ok(ret == -EPERM && strstr(err, "owned by uid 0"),
		   "ca_open refuses a key owned by another uid (root's "
		   "/etc/passwd): %s",
		   err);
	}
	ca_free(ca);
	ca = NULL;

	/* Not a regular file: refused at once (a FIFO must not block). */
	unlink(path_in("perm", "ca-key.pem"));
	mkfifo(path_in("perm", "ca-key.pem"), 0600);
	ret = ca_open(path_in("perm", NULL), false, &ca, err, sizeof(err));
	ok(ret == -EINVAL && strstr(err, "not a regular file"),
	   "a FIFO as ca-key.pem: %s", err);
	ca_free(ca);
	ca = NULL;

	/* What ca_open creates is protected whatever the umask. */
	{
		mode_t old = umask(0);
		struct stat st;
		bool good;

		ret = ca_open(path_in("umask0", NULL), true, &ca, err,
			      sizeof(err));
		umask(old);
		good = ret == 0;
		good = good && stat(path_in("umask0", NULL), &st) == 0 &&
		       (st.st_mode & 07777) == 0700;
		good = good &&
		       stat(path_in("umask0", "ca-key.pem"), &st) == 0 &&
		       (st.st_mode & 07777) == 0600 && st.st_uid == geteuid();
		good = good && stat(path_in("umask0", "ca.lock"), &st) == 0 &&
		       (st.st_mode & 077) == 0;
		good = good &&
		       stat(path_in("umask0", "ca-cert.pem"), &st) == 0 &&
		       (st.st_mode & 07777) == 0644;
		ok(good, "created under umask 0: dir 0700, key 0600 owned by "
			 "us, lock 0600, cert 0644");
		ca_free(ca);
		ca = NULL;
		ret = ca_open(path_in("umask0", NULL), false, &ca, err,
			      sizeof(err));
		ok(ret == 0, "and reopening it passes the key check (%s)",
		   ret ? err : "ok");
		ca_free(ca);
	}
}

/* ---- leaves ---- */

static bool verify_leaf(struct ca *ca, struct leaf *l, int purpose)
{
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	bool good;

	X509_STORE_CTX_init(ctx, ca_trust_store(ca), l->cert, NULL);
	X509_STORE_CTX_set_purpose(ctx, purpose);
	good = X509_verify_cert(ctx) == 1;
	X509_STORE_CTX_free(ctx);
	return good;
}

static bool leaf_uri_is(const struct leaf *l, const char *want)
{
	GENERAL_NAMES *gens =
	    X509_get_ext_d2i(l->cert, NID_subject_alt_name, NULL, NULL);
	bool found = false;
	int n = 0;

	for (int i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
		GENERAL_NAME *gn = sk_GENERAL_NAME_value(gens, i);

		if (gn->type != GEN_URI)
			continue;
		n++;
		found = ASN1_STRING_length(gn->d.uniformResourceIdentifier) ==
			    (int)strlen(want) &&
			!memcmp(ASN1_STRING_get0_data(
				    gn->d.uniformResourceIdentifier),
				want, strlen(want));
	}
	GENERAL_NAMES_free(gens);
	return found && n == 1;
}

static void test_leaf(void)
{
	const char *id = "spiffe://cluster.local/ns/default/sa/sleep";
	struct ca *ca = NULL, *other = NULL;
	struct leaf *l = NULL, *l2 = NULL, *lo = NULL;
	char err[256], group[64] = "";
	time_t now = time(NULL);
	uint32_t xku;
	size_t gl;

	if (ca_open(path_in("a", NULL), true, &ca, err, sizeof(err)) ||
	    ca_open(path_in("other", NULL), true, &other, err, sizeof(err))) {
		ok(0, "open CAs: %s", err);
		return;
	}
	ok(ca_issue(ca, id, 3600, &l) == 0 && l, "issue a leaf");
	if (!l)
		goto cleanup;
	ok(atomic_load(&l->refs) == 1, "new leaf has one reference");
	ok(!strcmp(l->identity, id), "leaf identity");
	ok(leaf_uri_is(l, id), "exactly one URI SAN = identity");
	xku = X509_get_extended_key_usage(l->cert);
	ok((xku & (XKU_SSL_SERVER | XKU_SSL_CLIENT)) ==
	       (XKU_SSL_SERVER | XKU_SSL_CLIENT),
	   "EKU serverAuth + clientAuth");
	ok((X509_get_key_usage(l->cert) & KU_DIGITAL_SIGNATURE) &&
	       !(X509_get_key_usage(l->cert) & KU_KEY_CERT_SIGN),
	   "keyUsage digitalSignature, no keyCertSign");
	ok(X509_check_ca(l->cert) == 0, "leaf is not a CA");
	EVP_PKEY_get_group_name(l->key, group, sizeof(group), &gl);
	ok(!strcmp(group, "prime256v1") &&
	       X509_check_private_key(l->cert, l->key) == 1,
	   "leaf key is P-256 and matches the cert (%s)", group);
	ok(l->not_after >= now + 3600 && l->not_after <= now + 3602 &&
	       l->not_before >= now - 61 && l->not_before <= now - 58,
	   "validity: now-60s .. now+ttl");
	ok(X509_cmp_time(X509_get0_notAfter(l->cert), &(time_t){now + 3599}) >
		   0 &&
	       X509_cmp_time(X509_get0_notAfter(l->cert),
			     &(time_t){now + 3603}) < 0,
	   "cert notAfter matches the struct");
	ok(strlen(l->serial) == 32 &&
	       strspn(l->serial, "0123456789abcdef") == 32,
	   "serial is 128-bit lowercase hex (%s)", l->serial);
	ok(!X509_NAME_cmp(X509_get_issuer_name(l->cert),
			  X509_get_subject_name(ca_root_cert(ca))),
	   "issuer = root subject");
	ok(verify_leaf(ca, l, X509_PURPOSE_SSL_CLIENT) &&
	       verify_leaf(ca, l, X509_PURPOSE_SSL_SERVER),
	   "chains to the root (client and server purpose)");
	ok(!verify_leaf(other, l, X509_PURPOSE_SSL_CLIENT),
	   "does not chain to another root");
	ERR_clear_error();

	ok(ca_issue(ca, id, 3600, &l2) == 0 && strcmp(l2->serial, l->serial) &&
	       EVP_PKEY_eq(l->key, l2->key) != 1,
	   "second issue: new serial, new key");
	ok(ca_issue(ca, "spiffe://bad td/ns/a/sa/b", 60, &lo) == -EINVAL && !lo,
	   "bad identity -> -EINVAL");
	ok(ca_issue(ca, id, 0, &lo) == -EINVAL, "ttl 0 -> -EINVAL");
	ok(ca_issue_validity(ca, id, now - 7200, now - 3600, &lo) == 0 &&
	       !verify_leaf(ca, lo, X509_PURPOSE_SSL_CLIENT),
	   "ca_issue_validity mints an expired leaf that fails verification");
	ERR_clear_error();
	ok(leaf_ref(l) == l && atomic_load(&l->refs) == 2, "leaf_ref");
	leaf_unref(l);
	ok(atomic_load(&l->refs) == 1, "leaf_unref");
cleanup:
	leaf_unref(l);
	leaf_unref(l2);
	leaf_unref(lo);
	leaf_unref(NULL);
	ca_free(ca);
	ca_free(other);
}

/* ---- store ---- */

struct listing {
	int n, active, rotated, expired;
	char serials[8][33];
};

static void list_cb(const struct leaf *l, enum leaf_state st, void *arg)
{
	struct listing *li = arg;

	if (li->n < 8)
		strcpy(li->serials[li->n], l->serial);
	li->n++;
	li->active += st == LEAF_ACTIVE;
	li->rotated += st == LEAF_ROTATED;
	li->expired += st == LEAF_EXPIRED;
}

struct get_arg {
	struct certstore *s;
	struct leaf *got[50];
};

static void *get_thread(void *p)
{
	struct get_arg *a = p;

	for (int i = 0; i < 50; i++)
		certstore_get(a->s, "spiffe://cluster.local/ns/t/sa/t",
			      &a->got[i]);
	return NULL;
}

static void test_store(void)
{
	const char *a = "spiffe://cluster.local/ns/default/sa/a";
	const char *b = "spiffe://cluster.local/ns/default/sa/b";
	struct leaf *la = NULL, *la2 = NULL, *lb = NULL, *la3 = NULL, *x = NULL;
	struct certstore *s = NULL;
	struct listing li;
	struct ca *ca = NULL;
	char err[256], old_serial[33];
	time_t now = time(NULL);
	uint64_t g;

	if (ca_open(path_in("a", NULL), true, &ca, err, sizeof(err))) {
		ok(0, "open CA: %s", err);
		return;
	}
	s = certstore_new(ca, 10);
	ok(s && certstore_generation(s) == 0, "new store, generation 0");
	ok(certstore_get(s, a, &la) == 0 && la, "get issues on first use");
	ok(certstore_generation(s) == 1, "generation bumped by the issue");
	ok(la->not_after - la->issued == 10, "store TTL applies (10 s)");
	ok(certstore_get(s, a, &la2) == 0 && la2 == la &&
	       certstore_generation(s) == 1,
	   "second get: same leaf, no new generation");
	ok(atomic_load(&la->refs) == 3, "store + 2 callers hold the leaf");
	leaf_unref(la2);
	la2 = NULL;
	ok(certstore_get(s, b, &lb) == 0 && lb != la &&
	       certstore_generation(s) == 2,
	   "another identity gets its own leaf");
	ok(certstore_get(s, "spiffe://cluster.local/x", &x) == -EINVAL && !x,
	   "non-Istio identity rejected");
	ok(certstore_next_rotation(s) >= now + 4 &&
	       certstore_next_rotation(s) <= now + 6,
	   "next rotation at half-life");

	ok(certstore_rotate_due(s, now + 4) == 0 &&
	       certstore_generation(s) == 2,
	   "before half-life: nothing rotates");
	strcpy(old_serial, la->serial);
	g = certstore_generation(s);
	ok(certstore_rotate_due(s, now + 6) == 2,
	   "after half-life: both rotate");
	ok(certstore_generation(s) > g, "generation bumped by the rotation");
	ok(certstore_get(s, a, &la3) == 0 && la3 != la &&
	       strcmp(la3->serial, old_serial) &&
	       EVP_PKEY_eq(la3->key, la->key) != 1,
	   "new leaf: new serial and key");
	ok(!strcmp(la->serial, old_serial) && !strcmp(la->identity, a) &&
	       verify_leaf(ca, la, X509_PURPOSE_SSL_CLIENT),
	   "old reference still intact and valid");

	memset(&li, 0, sizeof(li));
	certstore_for_each(s, now + 6, list_cb, &li);
	/* a: active + rotated (we hold la); b: active, old b held by lb. */
	ok(li.n == 4 && li.active == 2 && li.rotated == 2,
	   "listing: 2 active, 2 rotated still in use (n=%d a=%d r=%d)", li.n,
	   li.active, li.rotated);
	leaf_unref(la);
	la = NULL;
	leaf_unref(lb);
	lb = NULL;
	/* New leaves were minted at the real clock: now + 1 is before their
	 * half-life, so this call only prunes. */
	ok(certstore_rotate_due(s, now + 1) == 0, "prune pass rotates nothing");
	memset(&li, 0, sizeof(li));
	certstore_for_each(s, now + 6, list_cb, &li);
	ok(li.n == 2 && li.active == 2,
	   "released old leaves drop out of the listing");
	memset(&li, 0, sizeof(li));
	certstore_for_each(s, now + 60, list_cb, &li);
	ok(li.expired == 2, "leaves past notAfter listed as expired");
	ok(!strcmp(leaf_state_name(LEAF_ROTATED), "rotated"), "state names");
	certstore_free(s);
	ok(atomic_load(&la3->refs) == 1 && !strcmp(la3->identity, a),
	   "a leaf outlives its store");

	/* Threads racing on first use get the same leaf. */
	s = certstore_new(ca, 0);
	{
		struct get_arg ga[4];
		pthread_t th[4];
		bool same = true;

		for (int i = 0; i < 4; i++) {
			ga[i].s = s;
			pthread_create(&th[i], NULL, get_thread, &ga[i]);
		}
		for (int i = 0; i < 4; i++)
			pthread_join(th[i], NULL);
		for (int i = 0; i < 4; i++)
			for (int j = 0; j < 50; j++) {
				same = same && ga[i].got[j] == ga[0].got[0];
				leaf_unref(ga[i].got[j]);
			}
		ok(same && certstore_generation(s) == 1,
		   "4 threads x 50 gets: one issue, one leaf");
		ok(ga[0].got[0]->not_after - ga[0].got[0]->issued ==
		       CERTSTORE_DEFAULT_TTL,
		   "default TTL 24 h");
	}
	certstore_free(s);
	leaf_unref(la3);
	ca_free(ca);
}

int main(void)
{
	if (!mkdtemp(tmpdir))
		tap_skip_all("cannot create a temp dir");
	/*
	 * Files the tests write stand for an operator's CA files: private
	 * (ca_open refuses keys others can read; test_key_perms tests that).
	 */
	umask(077);
	test_spiffe();
	test_root();
	test_key_perms();
	test_leaf();
	test_store();
	rm_rf(tmpdir);
	return tap_done();
}
