// SPDX-License-Identifier: Apache-2.0 OR MIT
/*
 * tollgate XDP steering program.
 *
 * Only UDP datagrams addressed to a local media address that the signalling plane has put into the `flows`
 * map are redirected to the AF_XDP socket of their receive queue. Everything else (SIP, ARP, ND, ICMP, SSH,
 * unknown ports, fragments, anything we could not fully parse) goes to the kernel with XDP_PASS, so a bug or
 * a missing entry can cost performance but never connectivity.
 *
 * Written for kernel 6.1+ (Debian 12) and built with clang 14: no kfuncs, no CO-RE, no bpf_loop.
 * Shared layouts with src/fastpath/xdp/maps.rs: struct tg_flow_key, struct tg_flow_val, enum tg_counter.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

/* XSKMAP slot = port slot * TG_QUEUES_PER_PORT + rx queue: one program serves several interfaces (carrier
 * side, cloud side), whose queue numbers overlap. */
#define TG_MAX_PORTS 8
#define TG_QUEUES_PER_PORT 64
#define TG_MAX_QUEUES (TG_MAX_PORTS * TG_QUEUES_PER_PORT)
#define TG_MAX_FLOWS 65536

#define ETH_P_8021Q_ 0x8100
#define ETH_P_8021AD_ 0x88A8
#define IPV6_NEXTHDR_FRAGMENT 44
#define IPV4_MF_OFFSET_MASK 0x3fff

/* Lookup key: the local media address a packet is sent to. addr holds the IPv4 address in its first 4
 * bytes (rest zero) or the full IPv6 address; port is in network byte order. 20 bytes, no padding. */
struct tg_flow_key {
	__u8 family; /* 4 or 6 */
	__u8 pad;
	__be16 port;
	__u8 addr[16];
};

/* TG_FLOW_DROP: drop in XDP (a flow the signalling plane blocked, e.g. after a media timeout under attack). */
#define TG_FLOW_DROP 1u

struct tg_flow_val {
	__u32 flags;
	__u32 worker; /* owning worker, for user space bookkeeping and bpftool dumps */
};

enum tg_counter {
	TG_C_PASSED = 0,     /* every XDP_PASS, all reasons below summed */
	TG_C_REDIRECTED = 1, /* handed to an XSK */
	TG_C_NOT_IP = 2,     /* ARP, LLDP, ... */
	TG_C_NOT_UDP = 3,    /* ICMP, ND, TCP (SSH, SIP/TCP), IPv6 extension headers */
	TG_C_NO_FLOW = 4,    /* UDP to a port with no flow entry: SIP, unknown media ports */
	TG_C_FRAGMENT = 5,   /* IPv4 MF/offset, IPv6 fragment header */
	TG_C_MALFORMED = 6,  /* truncated or inconsistent headers */
	TG_C_NO_XSK = 7,     /* flow matched but no socket bound on this rx queue */
	TG_C_FLOW_DROP = 8,  /* flow marked TG_FLOW_DROP */
	TG_C_COUNT = 9,
};

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, TG_MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} xsks_map SEC(".maps");

/* ingress ifindex -> port slot (0..TG_MAX_PORTS-1), written by the loader on attach. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TG_MAX_PORTS);
	__type(key, __u32);
	__type(value, __u32);
} port_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TG_MAX_FLOWS);
	__type(key, struct tg_flow_key);
	__type(value, struct tg_flow_val);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TG_C_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);
	if (v)
		*v += 1;
}

static __always_inline int pass(__u32 reason)
{
	count(reason);
	count(TG_C_PASSED);
	return XDP_PASS;
}

SEC("xdp")
int xdp_tollgate(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct tg_flow_key key = {};
	struct udphdr *udp;

	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return pass(TG_C_MALFORMED);
	__be16 proto = eth->h_proto;
	void *l3 = eth + 1;

	/* One VLAN tag (802.1Q or 802.1ad outer): the tag is 4 bytes, the inner ethertype is its last 2. */
	if (proto == bpf_htons(ETH_P_8021Q_) || proto == bpf_htons(ETH_P_8021AD_)) {
		if (l3 + 4 > data_end)
			return pass(TG_C_MALFORMED);
		proto = *(__be16 *)(l3 + 2);
		l3 += 4;
	}

	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = l3;
		if ((void *)(ip + 1) > data_end)
			return pass(TG_C_MALFORMED);
		__u32 hlen = ip->ihl * 4;
		if (ip->version != 4 || hlen < sizeof(*ip))
			return pass(TG_C_MALFORMED);
		if (bpf_ntohs(ip->tot_len) < hlen)
			return pass(TG_C_MALFORMED);
		if (ip->protocol != IPPROTO_UDP)
			return pass(TG_C_NOT_UDP);
		if (ip->frag_off & bpf_htons(IPV4_MF_OFFSET_MASK))
			return pass(TG_C_FRAGMENT);
		/* hlen is 20..60: options are skipped, not interpreted. */
		udp = l3 + (hlen & 0x3c);
		if ((void *)(udp + 1) > data_end)
			return pass(TG_C_MALFORMED);
		if (bpf_ntohs(ip->tot_len) != hlen + bpf_ntohs(udp->len))
			return pass(TG_C_MALFORMED);
		key.family = 4;
		__builtin_memcpy(key.addr, &ip->daddr, 4);
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = l3;
		if ((void *)(ip6 + 1) > data_end)
			return pass(TG_C_MALFORMED);
		if (ip6->version != 6)
			return pass(TG_C_MALFORMED);
		if (ip6->nexthdr == IPV6_NEXTHDR_FRAGMENT)
			return pass(TG_C_FRAGMENT);
		if (ip6->nexthdr != IPPROTO_UDP)
			return pass(TG_C_NOT_UDP);
		udp = (void *)(ip6 + 1);
		if ((void *)(udp + 1) > data_end)
			return pass(TG_C_MALFORMED);
		if (bpf_ntohs(ip6->payload_len) != bpf_ntohs(udp->len))
			return pass(TG_C_MALFORMED);
		key.family = 6;
		__builtin_memcpy(key.addr, &ip6->daddr, 16);
	} else {
		return pass(TG_C_NOT_IP);
	}

	/* The worker gets whole datagrams only: UDP length sane and every byte of it in the frame. */
	__u32 ulen = bpf_ntohs(udp->len);
	if (ulen < sizeof(*udp) || (void *)udp + ulen > data_end)
		return pass(TG_C_MALFORMED);
	key.port = udp->dest;

	struct tg_flow_val *flow = bpf_map_lookup_elem(&flows, &key);
	if (!flow)
		return pass(TG_C_NO_FLOW);
	if (flow->flags & TG_FLOW_DROP) {
		count(TG_C_FLOW_DROP);
		return XDP_DROP;
	}

	/* An empty XSKMAP slot would make bpf_redirect_map fall back to XDP_PASS silently; check first so the
	 * counters say what really happened. */
	__u32 ifindex = ctx->ingress_ifindex;
	__u32 *slot = bpf_map_lookup_elem(&port_slots, &ifindex);
	if (!slot || *slot >= TG_MAX_PORTS || ctx->rx_queue_index >= TG_QUEUES_PER_PORT)
		return pass(TG_C_NO_XSK);
	__u32 q = *slot * TG_QUEUES_PER_PORT + ctx->rx_queue_index;
	if (!bpf_map_lookup_elem(&xsks_map, &q))
		return pass(TG_C_NO_XSK);
	count(TG_C_REDIRECTED);
	return bpf_redirect_map(&xsks_map, q, XDP_PASS);
}

char _license[] SEC("license") = "Dual MIT/GPL";
