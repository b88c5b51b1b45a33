// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * TCP telemetry for the application sockets of this node's enrolled pods.
 *
 * Attached to a cgroup v2 (several nodes may attach to the same one); a
 * socket is ours when its local address is one of this node's enrolled pods
 * (amb_pods, shared by pin with the tc object) and it does not carry the
 * tunnel's SO_MARK: tunnels bind pod addresses too when they deliver with
 * the client's IP, so the address alone is not enough.
 */
#include <linux/bpf.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "lib/maps.h"

#define AF_INET 2
#define TCP_CLOSE 7

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Live sockets by socket cookie; LRU so a lost close can't fill it. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, AMB_MAX_SOCKS);
	__type(key, __u64);
	__type(value, struct amb_sock_stat);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} amb_socks SEC(".maps");

/* Open/state/retransmit/close events for userspace telemetry. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, AMB_SOCK_EV_BYTES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} amb_sock_ev SEC(".maps");

static __always_inline int is_pod_socket(struct bpf_sock_ops *skops)
{
	struct amb_pod_key key = { .addr = skops->local_ip4 };
	struct bpf_sock *sk = skops->sk;

	if (!sk || (sk->mark & AMB_MARK_MASK) == AMB_MARK_TUNNEL)
		return 0;
	return bpf_map_lookup_elem(&amb_pods, &key) != NULL;
}

static __always_inline void emit(struct bpf_sock_ops *skops, __u64 cookie,
				 const struct amb_sock_stat *st, __u8 type,
				 __u8 old_state, __u8 new_state)
{
	struct amb_sock_event *ev;

	ev = bpf_ringbuf_reserve(&amb_sock_ev, sizeof(*ev), 0);
	if (!ev)
		return; /* consumer behind: the map still has the state */
	ev->cookie = cookie;
	ev->ts_ns = bpf_ktime_get_ns();
	ev->saddr = st->saddr;
	ev->daddr = st->daddr;
	ev->sport = st->sport;
	ev->dport = st->dport;
	ev->type = type;
	ev->old_state = old_state;
	ev->new_state = new_state;
	ev->pad = 0;
	ev->srtt_us = st->srtt_us;
	ev->total_retrans = st->total_retrans;
	/* No wakeup per event: the daemon drains on a short timer. Waking
	 * it for every connection's events cost 8-10% of its CPU at high
	 * connection rates (each wakeup is an interrupt, a VM exit on a
	 * guest). Past a quarter full the consumer is woken at once. */
	bpf_ringbuf_submit(ev, bpf_ringbuf_query(&amb_sock_ev, BPF_RB_AVAIL_DATA) >
				       AMB_SOCK_EV_WAKE_BYTES ?
				       BPF_RB_FORCE_WAKEUP :
				       BPF_RB_NO_WAKEUP);
}

static __always_inline void track_open(struct bpf_sock_ops *skops, __u8 active)
{
	struct amb_sock_stat st = {};
	__u64 cookie;

	if (!is_pod_socket(skops))
		return;
	cookie = bpf_get_socket_cookie(skops);
	st.saddr = skops->local_ip4;
	st.daddr = skops->remote_ip4;
	st.sport = (__u16)skops->local_port;
	/* remote_port holds the network-order port in its upper 16 bits. */
	st.dport = (__u16)bpf_ntohl(skops->remote_port);
	st.state = 1; /* TCP_ESTABLISHED */
	st.active = active;
	st.srtt_us = skops->srtt_us >> 3;
	st.total_retrans = skops->total_retrans;
	st.netns_cookie = bpf_get_netns_cookie(skops);
	st.opened_ns = bpf_ktime_get_ns();
	st.updated_ns = st.opened_ns;
	bpf_map_update_elem(&amb_socks, &cookie, &st, BPF_ANY);
	bpf_sock_ops_cb_flags_set(skops, BPF_SOCK_OPS_STATE_CB_FLAG |
						 BPF_SOCK_OPS_RTT_CB_FLAG |
						 BPF_SOCK_OPS_RETRANS_CB_FLAG);
	emit(skops, cookie, &st, AMB_SE_OPEN, 0, st.state);
}

SEC("sockops")
int amb_sockops(struct bpf_sock_ops *skops)
{
	struct amb_sock_stat *st;
	__u64 cookie;
	__u8 old_state, new_state;

	if (skops->family != AF_INET)
		return 1;

	switch (skops->op) {
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		track_open(skops, 1);
		return 1;
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		track_open(skops, 0);
		return 1;
	case BPF_SOCK_OPS_STATE_CB:
	case BPF_SOCK_OPS_RTT_CB:
	case BPF_SOCK_OPS_RETRANS_CB:
		break;
	default:
		return 1;
	}

	/* Callbacks are only enabled on sockets track_open() accepted. */
	cookie = bpf_get_socket_cookie(skops);
	st = bpf_map_lookup_elem(&amb_socks, &cookie);
	if (!st)
		return 1;
	st->srtt_us = skops->srtt_us >> 3;
	st->total_retrans = skops->total_retrans;
	st->updated_ns = bpf_ktime_get_ns();

	if (skops->op == BPF_SOCK_OPS_RETRANS_CB) {
		emit(skops, cookie, st, AMB_SE_RETRANS, st->state, st->state);
	} else if (skops->op == BPF_SOCK_OPS_STATE_CB) {
		old_state = (__u8)skops->args[0];
		new_state = (__u8)skops->args[1];
		st->state = new_state;
		if (new_state == TCP_CLOSE) {
			emit(skops, cookie, st, AMB_SE_CLOSE, old_state, new_state);
			bpf_map_delete_elem(&amb_socks, &cookie);
		} else {
			emit(skops, cookie, st, AMB_SE_STATE, old_state, new_state);
		}
	}
	return 1;
}
