/* SPDX-License-Identifier: Apache-2.0 */
/* Small filesystem helpers. */
#ifndef AMBIENTD_FSUTIL_H
#define AMBIENTD_FSUTIL_H

#include <sys/types.h>

/* mkdir -p with `mode` for every directory created; 0 or -errno. */
int mkdir_p(const char *path, mode_t mode);

#endif
