/* The balancer node's data plane (DESIGN.md "Balancer"): an XDP program that sends
 * each packet for a (VIP, port) to one backend host, chosen by the Maglev ring from a
 * hash of its 4-tuple, with the destination rewritten to (backend, the host port that
 * stands for VIP:port). Replies do not come back this way (direct server return).
 *
 * What it does with each kind of packet (each one counted in verdicts):
 *   not IPv4, or not to a VIP address        XDP_PASS (the node's own traffic)
 *   TCP/UDP to a configured (VIP, port)      rewritten and forwarded
 *   TCP/UDP to a VIP, unknown port/protocol  XDP_DROP
 *   an IP fragment to a VIP                  XDP_DROP (later fragments carry no ports;
 *                                            VIP traffic is sent with DF, as TCP does)
 *   ICMP error (unreachable, time exceeded)  forwarded to the backend of the flow it
 *     quoting a VIP flow                     is about, the quoted header rewritten so
 *                                            the host's stack finds its socket (PMTU)
 *   any other ICMP or protocol to a VIP      XDP_DROP
 *   truncated headers to a VIP               XDP_DROP
 * The next hop comes from the kernel's FIB; without a neighbour entry yet, the
 * rewritten packet goes to the kernel, which resolves it and forwards. Too big for the
 * backend link (the FIB says fragmentation needed), or no route: XDP_DROP. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "lb_bpf.h"

#ifndef AF_INET
#define AF_INET 2
#endif
#define IP_MF 0x2000
#define IP_OFFSET 0x1fff

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, LB_MAX_SERVICES);
  __type(key, struct lb_service_key);
  __type(value, struct lb_service);
} services SEC(".maps");

/* Every VIP address, so that unknown ports on a VIP are dropped, not passed. */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, LB_MAX_SERVICES);
  __type(key, __u32);
  __type(value, __u32);
} vip_addrs SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct lb_config);
} config SEC(".maps");

/* Two Maglev rings, back to back; config.ring says which is live. */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 2 * LB_RING_SIZE);
  __type(key, __u32);
  __type(value, __u32);
} rings SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, LB_MAX_BACKENDS);
  __type(key, __u32);
  __type(value, struct lb_backend);
} backends SEC(".maps");

/* The connection table; the loader may resize it before load. */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 65536);
  __type(key, struct lb_flow_key);
  __type(value, struct lb_flow);
} flows SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, LB_V_COUNT);
  __type(key, __u32);
  __type(value, struct lb_counter);
} verdicts SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, LB_MAX_SERVICES);
  __type(key, __u32);
  __type(value, struct lb_counter);
} service_stats SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, LB_MAX_BACKENDS);
  __type(key, __u32);
  __type(value, struct lb_counter);
} backend_stats SEC(".maps");

static __always_inline int verdict(struct xdp_md* ctx, __u32 v, int action) {
  lb_count(&verdicts, v, ctx->data_end - ctx->data);
  return action;
}

/* The backend for a flow: the connection table first (unless a new TCP connection),
 * then the live ring. Returns LB_NO_BACKEND when no backend is up. */
static __always_inline __u32 pick_backend(struct lb_flow_key* fk, int new_flow, struct lb_backend** out) {
  __u32 zero = 0;
  struct lb_config* cfg = bpf_map_lookup_elem(&config, &zero);
  if (!cfg) return LB_NO_BACKEND;
  if (!new_flow) {
    struct lb_flow* known = bpf_map_lookup_elem(&flows, fk);
    if (known) {
      __u32 idx = known->backend;
      struct lb_backend* be = bpf_map_lookup_elem(&backends, &idx);
      if (be && be->up) {
        *out = be;
        return idx;
      }
    }
  }
  __u32 slot = lb_flow_hash(fk, cfg->seed) % LB_RING_SIZE + (cfg->ring ? LB_RING_SIZE : 0);
  __u32* entry = bpf_map_lookup_elem(&rings, &slot);
  if (!entry || *entry == LB_NO_BACKEND) return LB_NO_BACKEND;
  __u32 idx = *entry;
  struct lb_backend* be = bpf_map_lookup_elem(&backends, &idx);
  /* The ring holds only backends that were up when it was built. Its up flag is not
   * checked here: a packet that read the old ring just before a flip may meet a backend
   * marked down just after it, and dropping it would be a drop caused by the update. */
  if (!be) return LB_NO_BACKEND;
  struct lb_flow value = {.backend = idx};
  bpf_map_update_elem(&flows, fk, &value, BPF_ANY);
  *out = be;
  return idx;
}

/* Sends the rewritten packet towards daddr: next hop from the FIB, then XDP_TX out of
 * the port it came in on, or a redirect. TTL is decremented as any router does, once:
 * by us when we send, by the kernel when we hand the packet to it. */
static __always_inline int transmit(struct xdp_md* ctx, struct ethhdr* eth, struct iphdr* ip, __u32 v) {
  if (ip->ttl <= 1) return verdict(ctx, LB_V_DROP_TTL, XDP_DROP);
  struct bpf_fib_lookup fib = {};
  fib.family = AF_INET;
  fib.ipv4_src = ip->saddr;
  fib.ipv4_dst = ip->daddr;
  fib.tos = ip->tos;
  fib.l4_protocol = ip->protocol;
  fib.tot_len = bpf_ntohs(ip->tot_len);
  fib.ifindex = ctx->ingress_ifindex;
  long rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
  if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) return verdict(ctx, LB_V_FORWARDED_KERNEL, XDP_PASS);
  /* Larger than the backend link's MTU: the node's links towards the backends must carry
   * what its client side does (docs/balancer.md); counted apart so it shows. */
  if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED) return verdict(ctx, LB_V_DROP_TOO_BIG, XDP_DROP);
  if (rc != BPF_FIB_LKUP_RET_SUCCESS) return verdict(ctx, LB_V_DROP_NO_ROUTE, XDP_DROP);
  __u16 old_word = *(__u16*)&ip->ttl;
  ip->ttl--;
  ip->check = lb_csum_replace16(ip->check, old_word, *(__u16*)&ip->ttl);
  __builtin_memcpy(eth->h_dest, fib.dmac, ETH_ALEN);
  __builtin_memcpy(eth->h_source, fib.smac, ETH_ALEN);
  if (fib.ifindex == ctx->ingress_ifindex) return verdict(ctx, v, XDP_TX);
  verdict(ctx, v, XDP_REDIRECT);
  return bpf_redirect(fib.ifindex, 0);
}

/* Counts a packet for its service and backend once transmit() has not dropped it. */
static __always_inline int counted(int action, __u32 service, __u32 backend, __u64 bytes) {
  if (action != XDP_DROP && action != XDP_ABORTED) {
    lb_count(&service_stats, service, bytes);
    lb_count(&backend_stats, backend, bytes);
  }
  return action;
}

/* Rewrites the destination to (backend, host port): IP header and L4 checksums fixed
 * incrementally (the pseudo-header holds the destination address). */
static __always_inline void rewrite_dest(struct iphdr* ip, __u16* port, __u16* l4check, int udp,
                                         __u32 addr, __u16 host_port) {
  __u32 old_addr = ip->daddr;
  __u16 old_port = *port;
  ip->daddr = addr;
  *port = host_port;
  ip->check = lb_csum_replace32(ip->check, old_addr, addr);
  if (udp && *l4check == 0) return; /* UDP without a checksum stays without one */
  __u16 c = lb_csum_replace32(*l4check, old_addr, addr);
  c = lb_csum_replace16(c, old_port, host_port);
  if (udp && c == 0) c = 0xffff;
  *l4check = c;
}

/* An ICMP error to a VIP quotes a packet the VIP sent (src VIP:port, dst client). It
 * belongs to the backend that serves the client's flow: the flow key is the quote
 * turned around. The quoted source becomes (backend, host port), as the backend
 * sent it before its egress rewrite, so the host's stack matches it to the socket. */
static __always_inline int handle_icmp(struct xdp_md* ctx, struct ethhdr* eth, struct iphdr* ip,
                                       struct icmphdr* icmp, void* end) {
  if ((void*)(icmp + 1) > end) return verdict(ctx, LB_V_DROP_MALFORMED, XDP_DROP);
  if (icmp->type != ICMP_DEST_UNREACH && icmp->type != ICMP_TIME_EXCEEDED)
    return verdict(ctx, LB_V_DROP_PROTOCOL, XDP_DROP);
  struct iphdr* inner = (void*)(icmp + 1);
  if ((void*)(inner + 1) > end) return verdict(ctx, LB_V_DROP_MALFORMED, XDP_DROP);
  if (inner->ihl != 5 || inner->saddr != ip->daddr) return verdict(ctx, LB_V_DROP_MALFORMED, XDP_DROP);
  if (inner->protocol != IPPROTO_TCP && inner->protocol != IPPROTO_UDP)
    return verdict(ctx, LB_V_DROP_PROTOCOL, XDP_DROP);
  __u16* ports = (void*)(inner + 1);
  if ((void*)(ports + 2) > end) return verdict(ctx, LB_V_DROP_MALFORMED, XDP_DROP);

  struct lb_service_key sk = {.addr = inner->saddr, .port = ports[0], .proto = inner->protocol};
  struct lb_service* svc = bpf_map_lookup_elem(&services, &sk);
  if (!svc) return verdict(ctx, LB_V_DROP_UNKNOWN_SERVICE, XDP_DROP);
  struct lb_flow_key fk = {.saddr = inner->daddr, .daddr = inner->saddr, .sport = ports[1],
                           .dport = ports[0], .proto = inner->protocol};
  struct lb_backend* be = 0;
  __u32 idx = pick_backend(&fk, 0, &be);
  if (idx == LB_NO_BACKEND || !be) return verdict(ctx, LB_V_DROP_NO_BACKEND, XDP_DROP);

  /* The quote: source address and port, its header checksum; the ICMP checksum covers
   * every word that changes (ICMP has no pseudo-header). A quoted UDP checksum is in
   * the 8 bytes every error quotes and is kept consistent; TCP's lies beyond them. */
  __u32 old_src = inner->saddr;
  __u16 old_sport = ports[0];
  __u16 old_icheck = inner->check;
  inner->saddr = be->addr;
  ports[0] = svc->host_port;
  inner->check = lb_csum_replace32(inner->check, old_src, be->addr);
  __u16 c = lb_csum_replace32(icmp->checksum, old_src, be->addr);
  c = lb_csum_replace16(c, old_sport, svc->host_port);
  c = lb_csum_replace16(c, old_icheck, inner->check);
  if (inner->protocol == IPPROTO_UDP) {
    __u16* ucheck = ports + 3;
    if ((void*)(ucheck + 1) <= end && *ucheck) {
      __u16 old_ucheck = *ucheck;
      __u16 u = lb_csum_replace32(old_ucheck, old_src, be->addr);
      u = lb_csum_replace16(u, old_sport, svc->host_port);
      if (u == 0) u = 0xffff;
      *ucheck = u;
      c = lb_csum_replace16(c, old_ucheck, u);
    }
  }
  icmp->checksum = c;

  __u32 old_dst = ip->daddr;
  ip->daddr = be->addr;
  ip->check = lb_csum_replace32(ip->check, old_dst, be->addr);
  __u64 bytes = ctx->data_end - ctx->data;
  return counted(transmit(ctx, eth, ip, LB_V_ICMP_FORWARDED), svc->index, idx, bytes);
}

SEC("xdp")
int ferry_lb(struct xdp_md* ctx) {
  void* data = (void*)(long)ctx->data;
  void* end = (void*)(long)ctx->data_end;
  struct ethhdr* eth = data;
  if ((void*)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
    return verdict(ctx, LB_V_PASS_NOT_IPV4, XDP_PASS);
  struct iphdr* ip = (void*)(eth + 1);
  if ((void*)(ip + 1) > end) return verdict(ctx, LB_V_PASS_NOT_IPV4, XDP_PASS);
  __u32 daddr = ip->daddr;
  if (!bpf_map_lookup_elem(&vip_addrs, &daddr)) return verdict(ctx, LB_V_PASS_NOT_VIP, XDP_PASS);

  /* To a VIP from here on: nothing is passed to the node's own stack. */
  if (ip->version != 4 || ip->ihl < 5) return verdict(ctx, LB_V_DROP_MALFORMED, XDP_DROP);
  if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET)) return verdict(ctx, LB_V_DROP_FRAGMENT, XDP_DROP);
  __u32 hlen = ip->ihl * 4;
  if (hlen > 60) return verdict(ctx, LB_V_DROP_MALFORMED, XDP_DROP);
  void* l4 = (void*)ip + hlen;
  if (l4 > end) return verdict(ctx, LB_V_DROP_MALFORMED, XDP_DROP);

  __u16* ports;
  __u16* l4check;
  int udp = 0;
  if (ip->protocol == IPPROTO_TCP) {
    struct tcphdr* tcp = l4;
    if ((void*)(tcp + 1) > end) return verdict(ctx, LB_V_DROP_MALFORMED, XDP_DROP);
    ports = &tcp->source;
    l4check = &tcp->check;
  } else if (ip->protocol == IPPROTO_UDP) {
    struct udphdr* udph = l4;
    if ((void*)(udph + 1) > end) return verdict(ctx, LB_V_DROP_MALFORMED, XDP_DROP);
    ports = &udph->source;
    l4check = &udph->check;
    udp = 1;
  } else if (ip->protocol == IPPROTO_ICMP) {
    return handle_icmp(ctx, eth, ip, l4, end);
  } else {
    return verdict(ctx, LB_V_DROP_PROTOCOL, XDP_DROP);
  }

  struct lb_service_key sk = {.addr = daddr, .port = ports[1], .proto = ip->protocol};
  struct lb_service* svc = bpf_map_lookup_elem(&services, &sk);
  if (!svc) return verdict(ctx, LB_V_DROP_UNKNOWN_SERVICE, XDP_DROP);

  struct lb_flow_key fk = {.saddr = ip->saddr, .daddr = daddr, .sport = ports[0], .dport = ports[1],
                           .proto = ip->protocol};
  int new_flow = !udp && ((struct tcphdr*)l4)->syn && !((struct tcphdr*)l4)->ack;
  struct lb_backend* be = 0;
  __u32 idx = pick_backend(&fk, new_flow, &be);
  if (idx == LB_NO_BACKEND || !be) return verdict(ctx, LB_V_DROP_NO_BACKEND, XDP_DROP);

  rewrite_dest(ip, &ports[1], l4check, udp, be->addr, svc->host_port);
  __u64 bytes = ctx->data_end - ctx->data;
  return counted(transmit(ctx, eth, ip, LB_V_FORWARDED), svc->index, idx, bytes);
}

char LICENSE[] SEC("license") = "GPL";
