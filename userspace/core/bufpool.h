/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A per-thread cache of drained data-path buffers, by exact size.
 *
 * The data path takes a buffer when bytes arrive and gives it back as soon
 * as they are passed on, so an idle connection holds none. For small
 * request/response traffic that is a take and a give per message and per
 * layer (relay, HBONE stream, TLS rings); malloc and free of 16-272 KiB
 * blocks then cost more than the message. Each thread keeps up to
 * BUFPOOL_MAX_IDLE bytes of given-back buffers for the next take; beyond
 * that, beyond BUFPOOL_DEPTH of one size, and for sizes beyond
 * BUFPOOL_CLASSES distinct ones, they go back to malloc. Nothing here is
 * shared between threads.
 */
#ifndef AMBIENTD_BUFPOOL_H
#define AMBIENTD_BUFPOOL_H

#include <stddef.h>

#define BUFPOOL_MAX_IDLE (2u * 1024 * 1024)
#define BUFPOOL_CLASSES 8
#define BUFPOOL_DEPTH 8

/* A buffer of `size` bytes, or NULL. */
void *bufpool_get(size_t size);
/* Gives back a buffer from bufpool_get(size); NULL is ignored. */
void bufpool_put(void *p, size_t size);
/* Frees this thread's idle buffers (also done when the thread exits). */
void bufpool_trim(void);
size_t bufpool_idle_bytes(void);

#endif
