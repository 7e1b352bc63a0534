// SPDX-License-Identifier: BSD-2-Clause OR GPL-2.0-only
//
// weir's XDP L4 balancer: VIP (address, port, protocol) -> per-VIP Maglev lookup table ->
// endpoint, with an LRU connection table so established flows keep their endpoint, and two ways
// to forward: IP-in-IP encapsulation (direct server return, as Katran does) or DNAT with
// incremental checksum updates (replies are translated back by the same program).
//
// The program sends the packets it balances itself: back out with XDP_TX to a configured next
// hop (`gateway_mac`, one-arm), or, by default, to the next hop the kernel's FIB names
// (bpf_fib_lookup: route + neighbour) with bpf_redirect, or XDP_TX when that is the ingress
// interface. Whatever the FIB cannot answer at once (no neighbour entry yet, fragmentation
// needed, TTL expiring, no route, forwarding disabled) is passed to the kernel, which handles it
// (resolves the neighbour for the next packets, sends the ICMP error); each outcome is counted
// in `fwd_stats` so an operator sees when the fast path is not taken.
//
// The Maglev table and the probe walk are the ones weir-balance computes and walks in userspace
// (crates/weir-balance/src/maglev.rs): key = mix64(flow hash); home slot = key mod M; while the
// slot's endpoint is not eligible, probe slot rehash(key, k) mod M for k = 1..64. The flow hash
// is defined here and mirrored by weir_ebpf::flow_hash; the BPF tests check both agree.
//
// Maps use the legacy `struct bpf_map_def` layout, so the object needs no BTF and builds
// byte-for-byte reproducibly (scripts/build-bpf). Everything the kernel does not balance is
// passed on untouched: non-IPv4, IP options, fragments, truncated headers, misses.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

// The legacy map definition aya (and the kernel's old loaders) read from the `maps` section.
struct map_def {
	__u32 type;
	__u32 key_size;
	__u32 value_size;
	__u32 max_entries;
	__u32 map_flags;
};

// Keys and values shared with weir_ebpf::maps (repr(C) mirrors; keep in sync).
struct vip_key {
	__be32 addr;
	__be16 port;
	__u8 proto;
	__u8 pad;
};

#define VIP_MODE_DNAT 1

struct vip_info {
	__u32 id;        // index into vip_stats
	__u32 ring_base; // first slot of this VIP's Maglev table in `ring`
	__u32 ring_size; // M, a prime
	__u32 flags;     // VIP_MODE_*
};

#define EP_PRESENT 1
#define EP_ELIGIBLE 2

struct endpoint {
	__be32 addr;
	__be16 port;
	__u16 flags; // EP_*
};

struct flow_key {
	__be32 src;
	__be32 dst;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

struct nat_key {
	__be32 ep_addr;
	__be32 client_addr;
	__be16 ep_port;
	__be16 client_port;
	__u8 proto;
	__u8 pad[3];
};

struct nat_value {
	__be32 vip_addr;
	__be16 vip_port;
	__u16 pad;
};

#define CFG_KERNEL_PATH 1 // lb_config.flags: XDP_PASS balanced packets instead of the FIB

struct lb_config {
	__be32 local_addr; // outer source of IP-in-IP packets
	__u8 gw_mac[6];    // next hop for XDP_TX; all zero: the FIB's next hop (or the kernel)
	__u16 flags;       // CFG_*
};

// Indices of `fwd_stats`: how balanced (and reverse-translated) packets left the program.
#define FWD_REDIRECT 0      // bpf_redirect to the FIB's egress interface
#define FWD_TX 1            // XDP_TX: the FIB's egress is the ingress interface
#define FWD_GATEWAY 2       // XDP_TX to gateway_mac
#define FWD_KERNEL 3        // XDP_PASS by configuration (forwarding_path: kernel)
#define FB_TTL 4            // fallbacks to XDP_PASS: TTL would expire (kernel sends ICMP)
#define FB_NO_NEIGH 5       // no neighbour entry yet (the kernel resolves it)
#define FB_FRAG_NEEDED 6    // larger than the egress MTU
#define FB_NO_ROUTE 7       // blackhole, unreachable, prohibit, not forwarded
#define FB_FWD_DISABLED 8   // forwarding disabled on the ingress interface
#define FB_OTHER 9          // unsupported route type, lookup error
#define FWD_REASONS 10

struct counters {
	__u64 packets;
	__u64 bytes;
};

// Sizes marked "loader" are set by weir_ebpf::Balancer before the maps are created.
struct map_def SEC("maps") vips = {
	.type = BPF_MAP_TYPE_HASH,
	.key_size = sizeof(struct vip_key),
	.value_size = sizeof(struct vip_info),
	.max_entries = 1024, // loader
};

struct map_def SEC("maps") ring = {
	.type = BPF_MAP_TYPE_ARRAY,
	.key_size = sizeof(__u32),
	.value_size = sizeof(__u32),
	.max_entries = 65537, // loader
};

struct map_def SEC("maps") endpoints = {
	.type = BPF_MAP_TYPE_ARRAY,
	.key_size = sizeof(__u32),
	.value_size = sizeof(struct endpoint),
	.max_entries = 4096, // loader
};

struct map_def SEC("maps") conntrack = {
	.type = BPF_MAP_TYPE_LRU_HASH,
	.key_size = sizeof(struct flow_key),
	.value_size = sizeof(__u32),
	.max_entries = 65536, // loader
};

struct map_def SEC("maps") reverse_nat = {
	.type = BPF_MAP_TYPE_LRU_HASH,
	.key_size = sizeof(struct nat_key),
	.value_size = sizeof(struct nat_value),
	.max_entries = 65536, // loader
};

struct map_def SEC("maps") config = {
	.type = BPF_MAP_TYPE_ARRAY,
	.key_size = sizeof(__u32),
	.value_size = sizeof(struct lb_config),
	.max_entries = 1,
};

struct map_def SEC("maps") vip_stats = {
	.type = BPF_MAP_TYPE_PERCPU_ARRAY,
	.key_size = sizeof(__u32),
	.value_size = sizeof(struct counters),
	.max_entries = 1024, // loader
};

struct map_def SEC("maps") endpoint_stats = {
	.type = BPF_MAP_TYPE_PERCPU_ARRAY,
	.key_size = sizeof(__u32),
	.value_size = sizeof(struct counters),
	.max_entries = 4096, // loader
};

struct map_def SEC("maps") fwd_stats = {
	.type = BPF_MAP_TYPE_PERCPU_ARRAY,
	.key_size = sizeof(__u32),
	.value_size = sizeof(__u64),
	.max_entries = FWD_REASONS,
};

#define MAX_PROBES 64
#define GAMMA 0x9E3779B97F4A7C15ULL

// SplitMix64's finaliser, as weir-balance's rng::mix64.
static __always_inline __u64 mix64(__u64 z)
{
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

// The flow hash: addresses and ports as host-order numbers (mirrored by weir_ebpf::flow_hash).
static __always_inline __u64 flow_hash(const struct flow_key *f)
{
	__u64 h = mix64(((__u64)bpf_ntohl(f->src) << 32) | bpf_ntohl(f->dst));
	__u64 p = ((__u64)bpf_ntohs(f->sport) << 32) | ((__u64)bpf_ntohs(f->dport) << 16) | f->proto;
	return mix64(h ^ p);
}

static __always_inline void count(void *map, __u32 id, __u64 bytes)
{
	struct counters *c = bpf_map_lookup_elem(map, &id);
	if (c) {
		c->packets += 1;
		c->bytes += bytes;
	}
}

// The endpoint at `slot` of the VIP's table, or -1 when the slot is out of range or empty.
static __always_inline long slot_endpoint(const struct vip_info *vip, __u64 key, struct endpoint **ep)
{
	__u32 idx = vip->ring_base + (__u32)(key % vip->ring_size);
	__u32 *id = bpf_map_lookup_elem(&ring, &idx);
	if (!id)
		return -1;
	__u32 ep_id = *id;
	*ep = bpf_map_lookup_elem(&endpoints, &ep_id);
	if (!*ep)
		return -1;
	return ep_id;
}

// Maglev pick: the home slot, then up to MAX_PROBES salted rehashes, as weir-balance walks.
// When nothing eligible is found the home endpoint is used, if present.
static __always_inline long maglev_pick(const struct vip_info *vip, __u64 hash, struct endpoint **out)
{
	if (vip->ring_size == 0)
		return -1;
	__u64 key = mix64(hash);
	struct endpoint *home = 0;
	long home_id = slot_endpoint(vip, key, &home);
	if (home_id >= 0 && (home->flags & EP_ELIGIBLE)) {
		*out = home;
		return home_id;
	}
	long found = -1;
	struct endpoint *ep = 0;
#pragma clang loop unroll(disable)
	for (__u64 k = 1; k <= MAX_PROBES; k++) {
		long id = slot_endpoint(vip, mix64(key ^ (k * GAMMA)), &ep);
		if (id >= 0 && (ep->flags & EP_ELIGIBLE)) {
			found = id;
			break;
		}
	}
	if (found >= 0) {
		*out = ep;
		return found;
	}
	if (home_id >= 0 && (home->flags & EP_PRESENT)) {
		*out = home;
		return home_id;
	}
	return -1;
}

// RFC 1624 incremental checksum update for a 32-bit and a 16-bit field.
static __always_inline __u16 csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)sum;
}

static __always_inline void csum_replace4(__sum16 *check, __be32 from, __be32 to)
{
	__u32 sum = (__u16)~*check;
	sum += (__u16)~(from & 0xffff);
	sum += (__u16)~(from >> 16);
	sum += to & 0xffff;
	sum += to >> 16;
	*check = ~csum_fold(sum);
}

static __always_inline void csum_replace2(__sum16 *check, __be16 from, __be16 to)
{
	__u32 sum = (__u16)~*check;
	sum += (__u16)~from;
	sum += to;
	*check = ~csum_fold(sum);
}

static __always_inline __sum16 ip_checksum(const struct iphdr *ip)
{
	const __u16 *w = (const __u16 *)ip;
	__u32 sum = 0;
#pragma clang loop unroll(full)
	for (int i = 0; i < (int)(sizeof(*ip) / 2); i++)
		sum += w[i];
	return ~csum_fold(sum);
}

static __always_inline int verdict(__u32 reason, int action)
{
	__u64 *n = bpf_map_lookup_elem(&fwd_stats, &reason);
	if (n)
		*n += 1;
	return action;
}

#define AF_INET 2

// Forwards the (already rewritten) IPv4 packet to the next hop the kernel's FIB names, as the
// kernel's forwarding would: TTL decremented, Ethernet addresses of the egress interface and the
// neighbour. Anything the FIB cannot answer goes to the kernel (XDP_PASS), counted by reason.
static __always_inline int fib_forward(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return XDP_PASS;
	if (ip->ttl <= 1)
		return verdict(FB_TTL, XDP_PASS);
	struct bpf_fib_lookup fib = {
		.family = AF_INET,
		.tos = ip->tos,
		.l4_protocol = ip->protocol,
		.tot_len = bpf_ntohs(ip->tot_len),
		.ifindex = ctx->ingress_ifindex,
		.ipv4_src = ip->saddr,
		.ipv4_dst = ip->daddr,
	};
	long rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	switch (rc) {
	case BPF_FIB_LKUP_RET_SUCCESS:
		break;
	case BPF_FIB_LKUP_RET_NO_NEIGH:
		return verdict(FB_NO_NEIGH, XDP_PASS);
	case BPF_FIB_LKUP_RET_FRAG_NEEDED:
		return verdict(FB_FRAG_NEEDED, XDP_PASS);
	case BPF_FIB_LKUP_RET_BLACKHOLE:
	case BPF_FIB_LKUP_RET_UNREACHABLE:
	case BPF_FIB_LKUP_RET_PROHIBIT:
	case BPF_FIB_LKUP_RET_NOT_FWDED:
		return verdict(FB_NO_ROUTE, XDP_PASS);
	case BPF_FIB_LKUP_RET_FWD_DISABLED:
		return verdict(FB_FWD_DISABLED, XDP_PASS);
	default:
		return verdict(FB_OTHER, XDP_PASS);
	}
	// ip_decrease_ttl: TTL is the high byte of its 16-bit word, so the checksum gains 0x0100.
	__u32 check = ip->check;
	check += bpf_htons(0x0100);
	ip->check = (__sum16)(check + (check >= 0xFFFF));
	ip->ttl -= 1;
	__builtin_memcpy(eth->h_dest, fib.dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, fib.smac, ETH_ALEN);
	if (fib.ifindex == ctx->ingress_ifindex)
		return verdict(FWD_TX, XDP_TX);
	return verdict(FWD_REDIRECT, bpf_redirect(fib.ifindex, 0));
}

// Sends the packet on: back out of the interface to the configured next hop (XDP_TX), to the
// kernel's routing when so configured (XDP_PASS), else to the FIB's next hop (fib_forward).
static __always_inline int forward(struct xdp_md *ctx, const struct lb_config *cfg)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	if (!(cfg->gw_mac[0] | cfg->gw_mac[1] | cfg->gw_mac[2] | cfg->gw_mac[3] | cfg->gw_mac[4] |
	      cfg->gw_mac[5])) {
		if (cfg->flags & CFG_KERNEL_PATH)
			return verdict(FWD_KERNEL, XDP_PASS);
		return fib_forward(ctx);
	}
	__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, cfg->gw_mac, ETH_ALEN);
	return verdict(FWD_GATEWAY, XDP_TX);
}

static __always_inline int encap_ipip(struct xdp_md *ctx, const struct lb_config *cfg,
				      const struct endpoint *ep)
{
	if (bpf_xdp_adjust_head(ctx, 0 - (int)sizeof(struct iphdr)))
		return XDP_DROP;
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *outer = data + sizeof(struct ethhdr);
	struct ethhdr *old_eth = data + sizeof(struct iphdr);
	struct iphdr *inner = data + sizeof(struct iphdr) + sizeof(struct ethhdr);
	if ((void *)(inner + 1) > data_end)
		return XDP_DROP;
	__builtin_memmove(eth, old_eth, sizeof(struct ethhdr));
	outer->version = 4;
	outer->ihl = 5;
	outer->tos = inner->tos;
	outer->tot_len = bpf_htons(bpf_ntohs(inner->tot_len) + sizeof(struct iphdr));
	outer->id = 0;
	outer->frag_off = 0;
	outer->ttl = 64;
	outer->protocol = IPPROTO_IPIP;
	outer->check = 0;
	outer->saddr = cfg->local_addr;
	outer->daddr = ep->addr;
	outer->check = ip_checksum(outer);
	return forward(ctx, cfg);
}

// Rewrites the destination to the endpoint, updating the IP and L4 checksums.
static __always_inline int dnat(struct xdp_md *ctx, const struct lb_config *cfg, struct iphdr *ip,
				void *l4, const struct endpoint *ep, const struct flow_key *flow)
{
	void *data_end = (void *)(long)ctx->data_end;
	__sum16 *l4check;
	__be16 *dport;
	if (flow->proto == IPPROTO_TCP) {
		struct tcphdr *tcp = l4;
		if ((void *)(tcp + 1) > data_end)
			return XDP_PASS;
		l4check = &tcp->check;
		dport = &tcp->dest;
	} else {
		struct udphdr *udp = l4;
		if ((void *)(udp + 1) > data_end)
			return XDP_PASS;
		l4check = &udp->check;
		dport = &udp->dest;
	}
	struct nat_key nk = {
		.ep_addr = ep->addr,
		.client_addr = flow->src,
		.ep_port = ep->port,
		.client_port = flow->sport,
		.proto = flow->proto,
	};
	// An update costs more than a lookup: write the reverse entry only when it is missing.
	if (!bpf_map_lookup_elem(&reverse_nat, &nk)) {
		struct nat_value nv = {.vip_addr = flow->dst, .vip_port = flow->dport};
		bpf_map_update_elem(&reverse_nat, &nk, &nv, BPF_ANY);
	}
	if (flow->proto == IPPROTO_TCP || *l4check) {
		csum_replace4(l4check, ip->daddr, ep->addr);
		csum_replace2(l4check, *dport, ep->port);
		if (flow->proto == IPPROTO_UDP && !*l4check)
			*l4check = 0xffff;
	}
	csum_replace4(&ip->check, ip->daddr, ep->addr);
	ip->daddr = ep->addr;
	*dport = ep->port;
	return forward(ctx, cfg);
}

// Translates an endpoint's reply to a DNAT'ed flow back to the VIP's address and port.
static __always_inline int reverse_dnat(struct xdp_md *ctx, struct iphdr *ip, void *l4,
					void *data_end, const struct flow_key *flow)
{
	struct nat_key nk = {
		.ep_addr = flow->src,
		.client_addr = flow->dst,
		.ep_port = flow->sport,
		.client_port = flow->dport,
		.proto = flow->proto,
	};
	struct nat_value *nv = bpf_map_lookup_elem(&reverse_nat, &nk);
	if (!nv)
		return XDP_PASS;
	__sum16 *l4check;
	__be16 *sport;
	if (flow->proto == IPPROTO_TCP) {
		struct tcphdr *tcp = l4;
		if ((void *)(tcp + 1) > data_end)
			return XDP_PASS;
		l4check = &tcp->check;
		sport = &tcp->source;
	} else {
		struct udphdr *udp = l4;
		if ((void *)(udp + 1) > data_end)
			return XDP_PASS;
		l4check = &udp->check;
		sport = &udp->source;
	}
	if (flow->proto == IPPROTO_TCP || *l4check) {
		csum_replace4(l4check, ip->saddr, nv->vip_addr);
		csum_replace2(l4check, *sport, nv->vip_port);
		if (flow->proto == IPPROTO_UDP && !*l4check)
			*l4check = 0xffff;
	}
	csum_replace4(&ip->check, ip->saddr, nv->vip_addr);
	ip->saddr = nv->vip_addr;
	*sport = nv->vip_port;
	// Replies go to the client by the FIB too, unless the kernel path is configured (a
	// gateway_mac is the next hop towards the endpoints, not necessarily towards clients).
	__u32 zero = 0;
	struct lb_config *cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg || (cfg->flags & CFG_KERNEL_PATH))
		return verdict(FWD_KERNEL, XDP_PASS);
	return fib_forward(ctx);
}

// Whether the packet opens a TCP connection (SYN without ACK).
static __always_inline int tcp_syn(const struct iphdr *ip, void *l4, void *data_end)
{
	struct tcphdr *tcp = l4;
	if (ip->protocol != IPPROTO_TCP || (void *)(tcp + 1) > data_end)
		return 0;
	return tcp->syn && !tcp->ack;
}

SEC("xdp")
int xdp_lb(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 bytes = data_end - data;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return XDP_PASS;
	// No IP options and no fragments: a fragment after the first has no ports to hash.
	if (ip->version != 4 || ip->ihl != 5)
		return XDP_PASS;
	if (ip->frag_off & bpf_htons(0x3fff))
		return XDP_PASS;
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP)
		return XDP_PASS;
	struct udphdr *ports = (void *)(ip + 1); // source and destination ports lead both headers
	if ((void *)(ports + 1) > data_end)
		return XDP_PASS;

	struct flow_key flow = {
		.src = ip->saddr,
		.dst = ip->daddr,
		.sport = ports->source,
		.dport = ports->dest,
		.proto = ip->protocol,
	};
	struct vip_key vk = {.addr = ip->daddr, .port = ports->dest, .proto = ip->protocol};
	struct vip_info *vip = bpf_map_lookup_elem(&vips, &vk);
	if (!vip)
		return reverse_dnat(ctx, ip, ports, data_end, &flow);
	__u32 zero = 0;
	struct lb_config *cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg)
		return XDP_PASS;

	struct endpoint *ep = 0;
	long ep_id = -1;
	__u32 *known = bpf_map_lookup_elem(&conntrack, &flow);
	if (known) {
		__u32 id = *known;
		ep = bpf_map_lookup_elem(&endpoints, &id);
		// An established flow stays while its endpoint is listed, even when it is down; a new
		// TCP connection (SYN) reusing a remembered 5-tuple is balanced afresh if it is down.
		if (ep && (ep->flags & EP_PRESENT) &&
		    ((ep->flags & EP_ELIGIBLE) || !tcp_syn(ip, ports, data_end)))
			ep_id = id;
	}
	if (ep_id < 0) {
		ep_id = maglev_pick(vip, flow_hash(&flow), &ep);
		if (ep_id < 0 || !ep)
			return XDP_PASS;
		__u32 id = (__u32)ep_id;
		bpf_map_update_elem(&conntrack, &flow, &id, BPF_ANY);
	}
	if (!ep)
		return XDP_PASS;
	count(&vip_stats, vip->id, bytes);
	count(&endpoint_stats, (__u32)ep_id, bytes);
	if (vip->flags & VIP_MODE_DNAT)
		return dnat(ctx, cfg, ip, ports, ep, &flow);
	return encap_ipip(ctx, cfg, ep);
}

char _license[] SEC("license") = "Dual BSD/GPL";
