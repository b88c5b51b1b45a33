// SPDX-License-Identifier: Apache-2.0
/*
 * Per-source counting (srctrack.h): limits, and a long random run of takes
 * and puts checked against a plain array, so that backward-shift deletion
 * never loses or misplaces an entry.
 */
#include "srctrack.h"
#include "tap.h"

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define ADDRS 300

static void test_limits(void)
{
	struct srctrack t = { 0 };
	int fails = 0;

	for (int i = 0; i < 5; i++)
		fails += srctrack_take(&t, 0x0a000001, 5) != 0;
	ok(!fails && srctrack_take(&t, 0x0a000001, 5) == -EBUSY &&
		   srctrack_count(&t, 0x0a000001) == 5,
	   "the sixth take at limit 5 is refused");
	ok(srctrack_take(&t, 0x0a000002, 5) == 0, "another address is not affected");
	srctrack_put(&t, 0x0a000001);
	ok(srctrack_take(&t, 0x0a000001, 5) == 0, "a put makes room again");
	ok(srctrack_take(&t, 0, 1) == 0 && srctrack_take(&t, 0, 1) == -EBUSY,
	   "address 0 is counted like any other");
	ok(srctrack_take(&t, 0x0a000009, 0) == -EBUSY, "limit 0 refuses everything");
	srctrack_free(&t);
}

static void test_random(void)
{
	struct srctrack t = { 0 };
	uint32_t ref[ADDRS] = { 0 }, addr[ADDRS];
	unsigned seed = 12345, bad = 0;

	for (int i = 0; i < ADDRS; i++)
		/* Close addresses collide in the hash's low bits sometimes:
		 * probe chains get long, deletion has work to do. */
		addr[i] = htobe32(0xc6120000u + (uint32_t)i * 7);
	for (int step = 0; step < 200000; step++) {
		int i = (int)(rand_r(&seed) % ADDRS);

		if (rand_r(&seed) % 2) {
			int rc = srctrack_take(&t, addr[i], 4);

			if ((rc == 0) != (ref[i] < 4))
				bad++;
			if (!rc)
				ref[i]++;
		} else if (ref[i]) {
			srctrack_put(&t, addr[i]);
			ref[i]--;
		}
		if (step % 1000 == 0)
			for (int k = 0; k < ADDRS; k++)
				bad += srctrack_count(&t, addr[k]) != ref[k];
	}
	ok(!bad, "200,000 random takes and puts agree with a plain array (%u mismatches)",
	   bad);
	for (int k = 0; k < ADDRS; k++)
		while (ref[k]--)
			srctrack_put(&t, addr[k]);
	ok(t.used == 0, "everything put back: no slot in use (%u)", t.used);
	srctrack_free(&t);
}

int main(void)
{
	test_limits();
	test_random();
	return tap_done();
}
