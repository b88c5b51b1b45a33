// SPDX-License-Identifier: Apache-2.0
/*
 * ambientd-cni: a chained CNI plugin (spec 1.1, also 0.3.x..1.0) that tells
 * the node's ambientd about a pod the moment its network exists, so a pod
 * created while the agent watches the API server is captured before its
 * application starts. It never touches the network itself: the plugins
 * before it in the chain made the veth and the addresses.
 *
 *   ADD     prevResult is required; the pod's IPs from it go to the agent;
 *           stdout is prevResult, unchanged.
 *   DEL     best effort and idempotent: always succeeds.
 *   CHECK   asks the agent whether the pod is as it should be.
 *   STATUS  error 50 while the agent does not answer.
 *   GC      nothing to do (the agent reconciles from the API server).
 *   VERSION the versions below.
 *
 * Errors are the spec's JSON on stdout with its codes and a non-zero exit.
 * Config keys besides the standard ones: "socket" (agent socket, default
 * CNI_DEFAULT_SOCKET) and "failClosed" (ADD fails with code 11 "try again
 * later" when the agent cannot be reached; default false: the pod starts
 * and is captured when the agent lists it).
 *
 * `ambientd-cni install` is the DaemonSet's init step (see usage()).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cni.h"
#include "cniconf.h"

#define BPF_FS_MAGIC 0xcafe4a11
#define MAX_STDIN (1 << 20)

static const char *cni_version = "1.1.0"; /* echoed in errors */

/* Prints the spec's error object on stdout and exits 1. */
static void __attribute__((noreturn, format(printf, 3, 4)))
fail(enum cni_err code, const char *details, const char *fmt, ...)
{
	struct json_object *o = json_object_new_object();
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	json_object_object_add(o, "cniVersion", json_object_new_string(cni_version));
	json_object_object_add(o, "code", json_object_new_int(code));
	json_object_object_add(o, "msg", json_object_new_string(msg));
	if (details)
		json_object_object_add(o, "details", json_object_new_string(details));
	puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
						       JSON_C_TO_STRING_NOSLASHESCAPE));
	fprintf(stderr, "ambientd-cni: %s\n", msg);
	json_object_put(o);
	exit(1);
}

static char *read_stdin(size_t *len)
{
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap + 1);

	while (buf) {
		ssize_t r = read(0, buf + n, cap - n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			fail(CNI_ERR_IO, strerror(errno), "reading the network configuration from stdin failed");
		if (r == 0)
			break;
		n += (size_t)r;
		if (n == cap) {
			char *nb;

			if (cap >= MAX_STDIN)
				fail(CNI_ERR_DECODE, NULL, "network configuration larger than %d bytes", MAX_STDIN);
			nb = realloc(buf, cap * 2 + 1);
			if (!nb)
				break;
			buf = nb;
			cap *= 2;
		}
	}
	if (!buf)
		fail(CNI_ERR_IO, NULL, "out of memory");
	buf[n] = '\0';
	*len = n;
	return buf;
}

/* Value of KEY in CNI_ARGS ("K8S_POD_NAME=x;K8S_POD_NAMESPACE=y"), or "". */
static void cni_arg(const char *key, char *out, size_t len)
{
	const char *args = getenv("CNI_ARGS"), *p;
	size_t kl = strlen(key);

	out[0] = '\0';
	for (p = args; p && *p;) {
		const char *end = strchr(p, ';');
		size_t l = end ? (size_t)(end - p) : strlen(p);

		if (l > kl && strncmp(p, key, kl) == 0 && p[kl] == '=') {
			snprintf(out, len, "%.*s", (int)(l - kl - 1), p + kl + 1);
			return;
		}
		p = end ? end + 1 : NULL;
	}
}

static const char *need_env(const char *name)
{
	const char *v = getenv(name);

	if (!v || !*v)
		fail(CNI_ERR_ENV, NULL, "environment variable %s is required", name);
	return v;
}

/* ---- talking to the agent ------------------------------------------- */

/*
 * One request/answer exchange. Returns 0 with *reply (caller puts it), or
 * -errno: -ENOENT/-ECONNREFUSED when no agent listens, -ETIMEDOUT, -EPROTO
 * for an answer that is not JSON.
 */
static int agent_call(const char *path, struct json_object *req,
		      struct json_object **reply)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char buf[CNI_MAX_MESSAGE];
	const char *line;
	size_t n = 0;
	int fd, err;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		err = -errno;
		goto out;
	}
	line = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN |
							   JSON_C_TO_STRING_NOSLASHESCAPE);
	if (dprintf(fd, "%s\n", line) < 0) {
		err = -EIO;
		goto out;
	}
	shutdown(fd, SHUT_WR);
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t r;

		if (poll(&p, 1, CNI_AGENT_TIMEOUT_MS) == 0) {
			err = -ETIMEDOUT;
			goto out;
		}
		r = read(fd, buf + n, sizeof(buf) - 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			err = -errno;
			goto out;
		}
		if (r == 0 || (n += (size_t)r) == sizeof(buf) - 1 ||
		    memchr(buf, '\n', n))
			break;
	}
	buf[n] = '\0';
	*reply = json_tokener_parse(buf);
	err = *reply && json_object_is_type(*reply, json_type_object) ? 0 : -EPROTO;
	if (err && *reply)
		json_object_put(*reply);
out:
	close(fd);
	return err;
}

static struct json_object *make_request(const char *cmd, struct json_object *prev)
{
	struct json_object *req = json_object_new_object();
	char ns[256], name[256];
	const char *v;

	cni_arg("K8S_POD_NAMESPACE", ns, sizeof(ns));
	cni_arg("K8S_POD_NAME", name, sizeof(name));
	json_object_object_add(req, "command", json_object_new_string(cmd));
	json_object_object_add(req, "containerId",
			       json_object_new_string(getenv("CNI_CONTAINERID") ?: ""));
	v = getenv("CNI_NETNS");
	json_object_object_add(req, "netns", json_object_new_string(v ? v : ""));
	json_object_object_add(req, "ifname",
			       json_object_new_string(getenv("CNI_IFNAME") ?: ""));
	json_object_object_add(req, "podNamespace", json_object_new_string(ns));
	json_object_object_add(req, "podName", json_object_new_string(name));
	json_object_object_add(req, "ips", cni_prev_ips(prev));
	return req;
}

static bool reply_ok(struct json_object *reply, const char **why)
{
	struct json_object *ok;

	*why = cni_jstr(reply, "error");
	return json_object_object_get_ex(reply, "ok", &ok) &&
	       json_object_get_boolean(ok);
}

/* ---- commands ---------------------------------------------------------- */

static int cmd_add(struct cni_conf *c)
{
	struct json_object *req, *reply = NULL;
	const char *why;
	int err;

	need_env("CNI_CONTAINERID");
	need_env("CNI_NETNS");
	need_env("CNI_IFNAME");
	if (!c->prev)
		fail(CNI_ERR_CONFIG, NULL,
		     "no prevResult: ambientd-cni must be chained after the plugin that creates the pod's interface");
	req = make_request("ADD", c->prev);
	err = agent_call(c->socket, req, &reply);
	json_object_put(req);
	if (err) {
		if (c->fail_closed)
			fail(CNI_ERR_AGAIN, strerror(-err), "ambientd agent at %s not reachable", c->socket);
		fprintf(stderr, "ambientd-cni: agent at %s not reachable (%s); "
			"the pod is captured once the agent lists it\n", c->socket, strerror(-err));
	} else if (!reply_ok(reply, &why)) {
		char msg[512];

		snprintf(msg, sizeof(msg), "%s", why ? why : "(no reason)");
		json_object_put(reply);
		fail(CNI_ERR_AGAIN, msg, "ambientd agent refused the pod");
	} else {
		json_object_put(reply);
	}
	/* Chained plugins pass the previous result on, unchanged. */
	puts(json_object_to_json_string_ext(c->prev, JSON_C_TO_STRING_PLAIN |
							     JSON_C_TO_STRING_NOSLASHESCAPE));
	return 0;
}

static int cmd_del(struct cni_conf *c)
{
	struct json_object *req, *reply = NULL;

	/* Idempotent and best effort: DEL may come many times, for a pod
	 * the agent never saw, or with the agent down. */
	need_env("CNI_CONTAINERID");
	need_env("CNI_IFNAME");
	req = make_request("DEL", c->prev);
	if (agent_call(c->socket, req, &reply) == 0)
		json_object_put(reply);
	json_object_put(req);
	return 0;
}

static int cmd_check(struct cni_conf *c)
{
	struct json_object *req, *reply = NULL;
	const char *why;
	int err;

	if (cni_version_cmp(cni_version, "0.4.0") < 0)
		fail(CNI_ERR_VERSION, NULL, "CHECK needs CNI version 0.4.0 or later, config is %s", cni_version);
	need_env("CNI_CONTAINERID");
	need_env("CNI_NETNS");
	need_env("CNI_IFNAME");
	if (!c->prev)
		fail(CNI_ERR_CONFIG, NULL, "CHECK needs prevResult");
	req = make_request("CHECK", c->prev);
	err = agent_call(c->socket, req, &reply);
	json_object_put(req);
	if (err) {
		if (c->fail_closed)
			fail(CNI_ERR_AGAIN, strerror(-err), "ambientd agent at %s not reachable", c->socket);
		return 0;
	}
	if (!reply_ok(reply, &why)) {
		char msg[512];

		snprintf(msg, sizeof(msg), "%s", why ? why : "(no reason)");
		json_object_put(reply);
		fail(CNI_ERR_CONTAINER, msg, "ambientd agent: pod not as expected");
	}
	json_object_put(reply);
	return 0;
}

static int cmd_status(struct cni_conf *c)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, err = 0;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", c->socket);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		err = errno;
	if (fd >= 0)
		close(fd);
	if (err)
		fail(CNI_ERR_UNAVAILABLE, strerror(err), "ambientd agent at %s not available", c->socket);
	return 0;
}

static int cmd_version(void)
{
	struct json_object *o = json_object_new_object(), *a = json_object_new_array();

	for (size_t i = 0; i < cni_n_versions; i++)
		json_object_array_add(a, json_object_new_string(cni_versions[i]));
	json_object_object_add(o, "cniVersion", json_object_new_string("1.1.0"));
	json_object_object_add(o, "supportedVersions", a);
	puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	return 0;
}

/* ---- install (the DaemonSet's init container) --------------------------- */

static int install_usage(FILE *f)
{
	fprintf(f,
		"Usage: ambientd-cni install [OPTIONS]\n"
		"\n"
		"The DaemonSet's init step: mounts the bpf filesystem if the host has\n"
		"none, copies this binary into the CNI bin dir and chains it into the\n"
		"first CNI config (as kubelet/containerd pick it: lexical order).\n"
		"Idempotent: running it again changes nothing.\n"
		"\nOptions:\n"
		"  --bin-dir=DIR    CNI binaries (default /opt/cni/bin)\n"
		"  --conf-dir=DIR   CNI configs (default /etc/cni/net.d)\n"
		"  --bpffs=DIR      bpf filesystem to make sure of (default: skip)\n"
		"  --socket=PATH    agent socket written into the config (default %s)\n"
		"\nExamples:\n"
		"  ambientd-cni install --bin-dir=/host/opt/cni/bin --conf-dir=/host/etc/cni/net.d\n",
		CNI_DEFAULT_SOCKET);
	return f == stdout ? 0 : 2;
}

static int write_atomic(const char *dir, const char *name, const void *data,
			size_t len, mode_t mode)
{
	char tmp[PATH_MAX], path[PATH_MAX];
	int fd, err = 0;

	snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, name);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return -errno;
	if (write(fd, data, len) != (ssize_t)len || fsync(fd) < 0)
		err = errno ? -errno : -EIO;
	fchmod(fd, mode);
	close(fd);
	if (!err && rename(tmp, path) < 0)
		err = -errno;
	if (err)
		unlink(tmp);
	return err;
}

static int install_binary(const char *bin_dir)
{
	char *data = NULL;
	size_t cap = 0, n = 0;
	int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC), err;

	if (fd < 0)
		return -errno;
	for (;;) {
		ssize_t r;

		if (n == cap) {
			char *nb = realloc(data, cap ? cap * 2 : 1 << 16);

			if (!nb) {
				free(data);
				close(fd);
				return -ENOMEM;
			}
			data = nb;
			cap = cap ? cap * 2 : 1 << 16;
		}
		r = read(fd, data + n, cap - n);
		if (r < 0) {
			err = -errno;
			free(data);
			close(fd);
			return err;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	err = write_atomic(bin_dir, CNI_PLUGIN_TYPE, data, n, 0755);
	free(data);
	return err;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool has_suffix(const char *s, const char *suf)
{
	size_t l = strlen(s), m = strlen(suf);

	return l >= m && strcmp(s + l - m, suf) == 0;
}

/* The config file the runtime uses: lexically first .conflist/.conf/.json. */
static int first_conf(const char *dir, char *out, size_t len)
{
	struct dirent *de;
	char *names[256];
	size_t n = 0;
	DIR *d = opendir(dir);

	if (!d)
		return -errno;
	while ((de = readdir(d)) && n < 256) {
		if (de->d_name[0] == '.')
			continue;
		if (has_suffix(de->d_name, ".conflist") || has_suffix(de->d_name, ".conf") ||
		    has_suffix(de->d_name, ".json"))
			names[n++] = strdup(de->d_name);
	}
	closedir(d);
	if (!n)
		return -ENOENT;
	qsort(names, n, sizeof(names[0]), name_cmp);
	snprintf(out, len, "%s", names[0]);
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	return 0;
}

/* Add (or update) our entry at the end of the chain; 0 or -errno. */
static int chain_config(const char *dir, const char *socket_path)
{
	char name[NAME_MAX + 1], path[PATH_MAX], newname[NAME_MAX + 16];
	struct json_object *root, *plugins, *ours = NULL;
	const char *text;
	int err;

	err = first_conf(dir, name, sizeof(name));
	if (err) {
		fprintf(stderr, "ambientd-cni install: no CNI config in %s yet (%s); "
			"the cluster's CNI must be installed first\n", dir, strerror(-err));
		return err;
	}
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	root = json_object_from_file(path);
	if (!root || !json_object_is_type(root, json_type_object)) {
		fprintf(stderr, "ambientd-cni install: %s is not a JSON object\n", path);
		json_object_put(root);
		return -EINVAL;
	}
	snprintf(newname, sizeof(newname), "%s", name);
	if (!json_object_object_get_ex(root, "plugins", &plugins)) {
		/* A single-plugin .conf: becomes a list with it first. */
		struct json_object *list = json_object_new_object();
		struct json_object *first = json_object_get(root);
		struct json_object *v;

		plugins = json_object_new_array();
		if (json_object_object_get_ex(first, "cniVersion", &v))
			json_object_object_add(list, "cniVersion", json_object_get(v));
		if (json_object_object_get_ex(first, "name", &v))
			json_object_object_add(list, "name", json_object_get(v));
		json_object_object_del(first, "cniVersion");
		json_object_object_del(first, "name");
		json_object_array_add(plugins, first);
		json_object_object_add(list, "plugins", plugins);
		json_object_put(root);
		root = list;
		if (!has_suffix(name, ".conflist"))
			snprintf(newname, sizeof(newname), "%.*s.conflist",
				 (int)(strrchr(name, '.') - name), name);
	}
	if (!json_object_is_type(plugins, json_type_array)) {
		fprintf(stderr, "ambientd-cni install: %s: \"plugins\" is not a list\n", path);
		json_object_put(root);
		return -EINVAL;
	}
	for (size_t i = 0; i < json_object_array_length(plugins); i++) {
		struct json_object *p = json_object_array_get_idx(plugins, i);
		const char *t = cni_jstr(p, "type");

		if (t && strcmp(t, CNI_PLUGIN_TYPE) == 0)
			ours = p;
	}
	if (!ours) {
		ours = json_object_new_object();
		json_object_object_add(ours, "type", json_object_new_string(CNI_PLUGIN_TYPE));
		json_object_array_add(plugins, ours);
	}
	json_object_object_add(ours, "socket", json_object_new_string(socket_path));
	text = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY |
							    JSON_C_TO_STRING_NOSLASHESCAPE);
	err = write_atomic(dir, newname, text, strlen(text), 0644);
	if (!err && strcmp(newname, name) != 0)
		unlink(path);
	if (!err)
		fprintf(stderr, "ambientd-cni install: chained into %s/%s\n", dir, newname);
	json_object_put(root);
	return err;
}

static int ensure_bpffs(const char *dir)
{
	struct statfs st;

	if (statfs(dir, &st) == 0 && (unsigned long)st.f_type == BPF_FS_MAGIC)
		return 0;
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return -errno;
	if (mount("bpf", dir, "bpf", 0, "mode=0700") < 0)
		return -errno;
	fprintf(stderr, "ambientd-cni install: mounted a bpf filesystem at %s\n", dir);
	return 0;
}

static int cmd_install(int argc, char **argv)
{
	const char *bin = "/opt/cni/bin", *conf = "/etc/cni/net.d", *bpffs = NULL;
	const char *sock = CNI_DEFAULT_SOCKET;
	int err;

	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];

		if (strncmp(a, "--bin-dir=", 10) == 0)
			bin = a + 10;
		else if (strncmp(a, "--conf-dir=", 11) == 0)
			conf = a + 11;
		else if (strncmp(a, "--bpffs=", 8) == 0)
			bpffs = a + 8;
		else if (strncmp(a, "--socket=", 9) == 0)
			sock = a + 9;
		else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
			return install_usage(stdout);
		else {
			fprintf(stderr, "ambientd-cni install: unknown argument '%s'\n", a);
			return install_usage(stderr);
		}
	}
	if (bpffs && (err = ensure_bpffs(bpffs))) {
		fprintf(stderr, "ambientd-cni install: bpf filesystem at %s: %s\n", bpffs, strerror(-err));
		return 1;
	}
	err = install_binary(bin);
	if (err) {
		fprintf(stderr, "ambientd-cni install: copying the plugin to %s: %s\n", bin, strerror(-err));
		return 1;
	}
	return chain_config(conf, sock) ? 1 : 0;
}

int main(int argc, char **argv)
{
	const char *cmd, *details;
	struct cni_conf c;
	char msg[256];
	size_t len;
	char *buf;
	int rc;

	if (argc > 1 && strcmp(argv[1], "install") == 0)
		return cmd_install(argc - 2, argv + 2);
	cmd = getenv("CNI_COMMAND");
	if (!cmd || !*cmd) {
		fprintf(stderr, "ambientd-cni: a CNI plugin, run by the container runtime with "
			"CNI_COMMAND set;\n  `ambientd-cni install --help` for the installer\n");
		fail(CNI_ERR_ENV, NULL, "environment variable CNI_COMMAND is required");
	}
	if (strcmp(cmd, "VERSION") == 0)
		return cmd_version();
	buf = read_stdin(&len);
	rc = cni_conf_parse(buf, len, &c, msg, sizeof(msg), &details);
	if (c.version)
		cni_version = c.version; /* errors echo the config's version */
	if (rc)
		fail(rc, details, "%s", msg);
	if (strcmp(cmd, "ADD") == 0)
		rc = cmd_add(&c);
	else if (strcmp(cmd, "DEL") == 0)
		rc = cmd_del(&c);
	else if (strcmp(cmd, "CHECK") == 0)
		rc = cmd_check(&c);
	else if (strcmp(cmd, "STATUS") == 0)
		rc = cmd_status(&c);
	else if (strcmp(cmd, "GC") == 0)
		rc = 0;
	else
		fail(CNI_ERR_ENV, NULL, "unknown CNI_COMMAND %s", cmd);
	cni_conf_free(&c);
	free(buf);
	return rc;
}
