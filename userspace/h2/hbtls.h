/* SPDX-License-Identifier: Apache-2.0 */
/* An established tls_conn as the byte transport of an HBONE connection. */
#ifndef AMBIENTD_HBTLS_H
#define AMBIENTD_HBTLS_H

struct tls_conn;
struct hb_transport;

/*
 * Wrap tc (handshake done) as an hb_transport; the transport owns tc from
 * here on (close/abort release it). Takes over tc's callbacks. 0 or -ENOMEM
 * (tc untouched then).
 */
int hb_transport_tls_new(struct tls_conn *tc, struct hb_transport **out);

#endif
