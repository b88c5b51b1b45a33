// SPDX-License-Identifier: Apache-2.0
/* Strict option parsing and the names operators see. */
#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

#include "bpfctl.h"
#include "cli.h"
#include "tap.h"

static void test_u64(void)
{
	static const struct {
		const char *in;
		uint64_t min, max;
		int err;
		uint64_t want;
	} cases[] = {
		{ "80", 1, 65535, 0, 80 },
		{ "65535", 1, 65535, 0, 65535 },
		{ "65536", 1, 65535, -ERANGE, 0 },
		{ "0", 1, 65535, -ERANGE, 0 },
		{ "0x10", 0, 100, 0, 16 },
		{ "", 0, 100, -EINVAL, 0 },
		{ "-1", 0, 100, -EINVAL, 0 },
		{ "+5", 0, 100, -EINVAL, 0 },
		{ " 5", 0, 100, -EINVAL, 0 },
		{ "5 ", 0, 100, -EINVAL, 0 },
		{ "12abc", 0, 100, -EINVAL, 0 },
		{ "99999999999999999999999", 0, UINT64_MAX, -EINVAL, 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t v = 12345;
		int err = cli_parse_u64(cases[i].in, cases[i].min, cases[i].max, &v);

		ok(err == cases[i].err && (err || v == cases[i].want),
		   "cli_parse_u64(\"%s\", %llu..%llu) = %d (%llu)", cases[i].in,
		   (unsigned long long)cases[i].min, (unsigned long long)cases[i].max,
		   err, (unsigned long long)v);
	}
}

static void test_cidr(void)
{
	static const struct {
		const char *in;
		int err;
		const char *addr;
		uint8_t len;
	} cases[] = {
		{ "198.18.0.0/15", 0, "198.18.0.0", 15 },
		{ "198.19.7.9/24", 0, "198.19.7.0", 24 }, /* host bits cleared */
		{ "198.18.1.10", 0, "198.18.1.10", 32 },
		{ "0.0.0.0/0", 0, "0.0.0.0", 0 },
		{ "198.18.0.0/33", -EINVAL, NULL, 0 },
		{ "198.18.0.0/", -EINVAL, NULL, 0 },
		{ "198.18.0/16", -EINVAL, NULL, 0 },
		{ "fd00::/8", -EINVAL, NULL, 0 },
		{ "not-an-ip", -EINVAL, NULL, 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint32_t addr = 0;
		uint8_t len = 99;
		int err = cli_parse_cidr(cases[i].in, &addr, &len);
		struct in_addr want;

		if (cases[i].addr)
			inet_pton(AF_INET, cases[i].addr, &want);
		ok(err == cases[i].err &&
			   (err || (addr == want.s_addr && len == cases[i].len)),
		   "cli_parse_cidr(\"%s\") = %d", cases[i].in, err);
	}
}

static void test_names(void)
{
	static const char *const good[] = { "node1", "n-1.b_c", "A", "x" };
	static const char *const bad[] = { "", ".", "..", "a/b", "a b", "../x",
					   "0123456789012345678901234567890123456789012345678901234567890123" };
	bool all_named = true;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		ok(bpfctl_node_name_valid(good[i]), "node name \"%s\" accepted", good[i]);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ok(!bpfctl_node_name_valid(bad[i]), "node name \"%s\" refused", bad[i]);
	for (unsigned r = 0; r < AMB_R_MAX; r++)
		if (strcmp(bpfctl_reason_name(r), "unknown") == 0)
			all_named = false;
	ok(all_named, "every verdict reason has a name");
	ok(strcmp(bpfctl_reason_name(AMB_R_DROP_SPOOFED), "drop_spoofed") == 0,
	   "reason names follow the enum order");
	ok(strcmp(bpfctl_reason_name(AMB_R_MAX), "unknown") == 0,
	   "out-of-range reason is \"unknown\"");
}

int main(void)
{
	test_u64();
	test_cidr();
	test_names();
	return tap_done();
}
