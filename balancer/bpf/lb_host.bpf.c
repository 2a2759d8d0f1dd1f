/* The backend host's half of direct server return (DESIGN.md "Balancer"): a tc egress
 * program that rewrites the source of replies from (host address, mapped port) back
 * to (VIP, port), so that they go straight to the client, which only ever talks to the
 * VIP. Everything else, fragments included, leaves untouched, and so do replies to the
 * balancer nodes themselves (their health checks talk to the mapped ports directly).
 *
 * It also rewrites the ICMP errors the host sends about a mapped port (say, port
 * unreachable for UDP): the outer source becomes the VIP and the quoted destination
 * (VIP, port), so the client's stack recognises them. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "lb_bpf.h"


struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, LB_MAX_SERVICES);
  __type(key, struct lb_host_key);
  __type(value, struct lb_host_target);
} host_ports SEC(".maps");

/* Destinations whose replies keep the host's own address: the balancer nodes, whose
 * health checks reach the mapped ports directly and must hear back from the host. */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, LB_MAX_NODES);
  __type(key, __u32);
  __type(value, __u32);
} exempt SEC(".maps");

/* [0] replies rewritten, [1] ICMP errors rewritten. */
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 2);
  __type(key, __u32);
  __type(value, struct lb_counter);
} host_stats SEC(".maps");


#define ETH_LEN sizeof(struct ethhdr)
#define IP_SADDR_OFF (ETH_LEN + offsetof(struct iphdr, saddr))
#define IP_CHECK_OFF (ETH_LEN + offsetof(struct iphdr, check))

static __always_inline int rewrite_reply(struct __sk_buff* skb, struct iphdr* ip, __u32 l4off) {
  __u32 check_off = l4off + (ip->protocol == IPPROTO_TCP ? offsetof(struct tcphdr, check)
                                                         : offsetof(struct udphdr, check));
  __u16 sport;
  if (bpf_skb_load_bytes(skb, l4off, &sport, sizeof(sport))) return TC_ACT_OK;
  struct lb_host_key key = {.addr = ip->saddr, .port = sport, .proto = ip->protocol};
  struct lb_host_target* to = bpf_map_lookup_elem(&host_ports, &key);
  if (!to) return TC_ACT_OK;
  __u32 old_addr = ip->saddr;
  __u32 new_addr = to->vip;
  __u16 new_port = to->port;
  /* For UDP, BPF_F_MARK_MANGLED_0 keeps a zero (absent) checksum absent and turns a
   * computed zero into 0xffff. */
  __u64 l4flags = ip->protocol == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
  bpf_l4_csum_replace(skb, check_off, old_addr, new_addr, l4flags | BPF_F_PSEUDO_HDR | sizeof(new_addr));
  bpf_l4_csum_replace(skb, check_off, sport, new_port, l4flags | sizeof(new_port));
  bpf_l3_csum_replace(skb, IP_CHECK_OFF, old_addr, new_addr, sizeof(new_addr));
  bpf_skb_store_bytes(skb, IP_SADDR_OFF, &new_addr, sizeof(new_addr), 0);
  bpf_skb_store_bytes(skb, l4off, &new_port, sizeof(new_port), 0);
  lb_count(&host_stats, 0, skb->len);
  return TC_ACT_OK;
}

/* An ICMP error the host sends quotes a packet it received: (client -> host:mapped).
 * The client sent it to VIP:port, so that is what the quote and the sender must say. */
static __always_inline int rewrite_icmp(struct __sk_buff* skb, struct iphdr* ip, __u32 l4off) {
  struct icmphdr icmp;
  if (bpf_skb_load_bytes(skb, l4off, &icmp, sizeof(icmp))) return TC_ACT_OK;
  if (icmp.type != ICMP_DEST_UNREACH && icmp.type != ICMP_TIME_EXCEEDED) return TC_ACT_OK;
  __u32 inner_off = l4off + sizeof(icmp);
  struct iphdr inner;
  if (bpf_skb_load_bytes(skb, inner_off, &inner, sizeof(inner))) return TC_ACT_OK;
  if (inner.ihl != 5 || (inner.protocol != IPPROTO_TCP && inner.protocol != IPPROTO_UDP)) return TC_ACT_OK;
  __u16 ports[2];
  if (bpf_skb_load_bytes(skb, inner_off + sizeof(inner), ports, sizeof(ports))) return TC_ACT_OK;
  if (inner.daddr != ip->saddr) return TC_ACT_OK;
  struct lb_host_key key = {.addr = inner.daddr, .port = ports[1], .proto = inner.protocol};
  struct lb_host_target* to = bpf_map_lookup_elem(&host_ports, &key);
  if (!to) return TC_ACT_OK;

  __u32 old_addr = inner.daddr;
  __u16 old_port = ports[1];
  __u16 old_icheck = inner.check;
  __u32 vip = to->vip;
  __u16 vport = to->port;
  __u16 new_icheck = lb_csum_replace32(old_icheck, old_addr, vip);
  __u16 c = lb_csum_replace32(icmp.checksum, old_addr, vip);
  c = lb_csum_replace16(c, old_port, vport);
  c = lb_csum_replace16(c, old_icheck, new_icheck);
  /* A quoted UDP header carries its checksum in the 8 bytes every error quotes: keep
   * the quote consistent (TCP's lies beyond them and is not there to fix). */
  __u32 iudp_check_off = inner_off + sizeof(inner) + offsetof(struct udphdr, check);
  __u16 old_ucheck = 0;
  if (inner.protocol == IPPROTO_UDP && !bpf_skb_load_bytes(skb, iudp_check_off, &old_ucheck, 2) && old_ucheck) {
    __u16 u = lb_csum_replace32(old_ucheck, old_addr, vip);
    u = lb_csum_replace16(u, old_port, vport);
    if (u == 0) u = 0xffff;
    c = lb_csum_replace16(c, old_ucheck, u);
    bpf_skb_store_bytes(skb, iudp_check_off, &u, sizeof(u), 0);
  }
  __u32 icheck_off = inner_off + offsetof(struct iphdr, check);
  __u32 idaddr_off = inner_off + offsetof(struct iphdr, daddr);
  __u32 idport_off = inner_off + sizeof(inner) + sizeof(__u16);
  __u32 icmp_check_off = l4off + offsetof(struct icmphdr, checksum);
  bpf_skb_store_bytes(skb, idaddr_off, &vip, sizeof(vip), 0);
  bpf_skb_store_bytes(skb, idport_off, &vport, sizeof(vport), 0);
  bpf_skb_store_bytes(skb, icheck_off, &new_icheck, sizeof(new_icheck), 0);
  bpf_skb_store_bytes(skb, icmp_check_off, &c, sizeof(c), 0);
  bpf_l3_csum_replace(skb, IP_CHECK_OFF, old_addr, vip, sizeof(vip));
  bpf_skb_store_bytes(skb, IP_SADDR_OFF, &vip, sizeof(vip), 0);
  lb_count(&host_stats, 1, skb->len);
  return TC_ACT_OK;
}

SEC("tc")
int ferry_host_egress(struct __sk_buff* skb) {
  if (skb->protocol != bpf_htons(ETH_P_IP)) return TC_ACT_OK;
  struct iphdr ip;
  if (bpf_skb_load_bytes(skb, ETH_LEN, &ip, sizeof(ip))) return TC_ACT_OK;
  /* Fragments leave as they are: later ones carry no ports to match, and a datagram
   * whose fragments name different sources never reassembles. Replies of VIP
   * services fit the path MTU (TCP finds it; UDP services must keep to it). */
  if (ip.ihl < 5 || (ip.frag_off & bpf_htons(0x3fff))) return TC_ACT_OK;
  if (bpf_map_lookup_elem(&exempt, &ip.daddr)) return TC_ACT_OK;
  __u32 l4off = ETH_LEN + ip.ihl * 4;
  if (ip.protocol == IPPROTO_TCP || ip.protocol == IPPROTO_UDP) return rewrite_reply(skb, &ip, l4off);
  if (ip.protocol == IPPROTO_ICMP) return rewrite_icmp(skb, &ip, l4off);
  return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
