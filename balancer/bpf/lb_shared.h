/* What the balancer's BPF programs and their C++ loader share: map layouts, limits,
 * verdict numbers, the flow hash and the incremental checksum update. C, so that
 * clang -target bpf and g++ both read it. Addresses and ports are kept in network
 * byte order everywhere, as they sit in the packet. */
#ifndef FERRY_BALANCER_LB_SHARED_H
#define FERRY_BALANCER_LB_SHARED_H

#ifdef __cplusplus
#include <cstdint>
typedef uint8_t lb_u8;
typedef uint16_t lb_u16;
typedef uint32_t lb_u32;
typedef uint64_t lb_u64;
#define LB_INLINE static inline
#else
#include <linux/types.h>
typedef __u8 lb_u8;
typedef __u16 lb_u16;
typedef __u32 lb_u32;
typedef __u64 lb_u64;
#define LB_INLINE static __always_inline
#endif

/* Maglev table size M (a prime). Every balancer node builds the same table. */
#define LB_RING_SIZE 65537u
/* (VIP, port, protocol) services and backend hosts one node can carry. */
#define LB_MAX_SERVICES 64u
#define LB_MAX_BACKENDS 256u
/* Balancer nodes a host knows (their health checks are answered unrewritten). */
#define LB_MAX_NODES 64u
/* A ring slot with no backend (no backend is healthy). */
#define LB_NO_BACKEND 0xffffffffu

/* services: (VIP, port, protocol) -> service. */
struct lb_service_key {
  lb_u32 addr; /* VIP, network order */
  lb_u16 port; /* network order */
  lb_u8 proto; /* IPPROTO_TCP or IPPROTO_UDP */
  lb_u8 pad;
};
struct lb_service {
  lb_u32 index;     /* 0..LB_MAX_SERVICES-1: the counters' slot */
  lb_u16 host_port; /* network order: the port on every backend host that stands for it */
  lb_u16 pad;
};

/* config[0]: what the whole program needs. ring selects the live half of rings:
 * slots [ring * LB_RING_SIZE, (ring + 1) * LB_RING_SIZE). The loader fills the other
 * half, then flips ring, so a packet never sees a half-written table. */
struct lb_config {
  lb_u32 seed; /* flow hash seed, the same on every node */
  lb_u32 ring; /* 0 or 1 */
};

/* backends[i] */
struct lb_backend {
  lb_u32 addr; /* network order */
  lb_u32 up;   /* 1 = healthy; flows pinned to a backend that is not up are moved */
};

/* flows: the connection table. The 4-tuple as the client sent it. */
struct lb_flow_key {
  lb_u32 saddr;
  lb_u32 daddr;
  lb_u16 sport;
  lb_u16 dport;
  lb_u8 proto;
  lb_u8 pad[3];
};
struct lb_flow {
  lb_u32 backend;
  lb_u32 pad;
};

struct lb_counter {
  lb_u64 packets;
  lb_u64 bytes;
};

/* What happened to a packet: the node's verdict counters (verdicts[LB_V_*]). */
enum {
  LB_V_FORWARDED = 0,       /* rewritten and sent to a backend (XDP_TX or redirect) */
  LB_V_FORWARDED_KERNEL,    /* rewritten, handed to the kernel to resolve the next hop */
  LB_V_ICMP_FORWARDED,      /* an ICMP error about a VIP flow, sent to its backend */
  LB_V_PASS_NOT_IPV4,       /* not IPv4: the node's own business */
  LB_V_PASS_NOT_VIP,        /* IPv4 not addressed to a VIP */
  LB_V_DROP_UNKNOWN_SERVICE, /* to a VIP address, but no such (port, protocol) */
  LB_V_DROP_FRAGMENT,       /* an IP fragment to a VIP: no ports to hash */
  LB_V_DROP_PROTOCOL,       /* to a VIP, neither TCP, UDP nor an ICMP error */
  LB_V_DROP_MALFORMED,      /* truncated or bad headers to a VIP */
  LB_V_DROP_NO_BACKEND,     /* no healthy backend */
  LB_V_DROP_TTL,            /* TTL would reach zero */
  LB_V_DROP_NO_ROUTE,       /* no route to the backend */
  LB_V_DROP_TOO_BIG,        /* larger than the MTU towards the backend */
  LB_V_COUNT
};

/* host_ports (on backend hosts): (host address, mapped port, protocol) -> (VIP, port). */
struct lb_host_key {
  lb_u32 addr;
  lb_u16 port;
  lb_u8 proto;
  lb_u8 pad;
};
struct lb_host_target {
  lb_u32 vip;
  lb_u16 port;
  lb_u16 pad;
};

/* The flow hash: a seeded mix of the 4-tuple and protocol (murmur3's finalizer over
 * each word). Pure integer arithmetic, so the loader and tests compute the same slot
 * the program does. The words are taken as they sit in memory (network order). */
LB_INLINE lb_u32 lb_mix(lb_u32 h, lb_u32 k) {
  k *= 0xcc9e2d51u;
  k = (k << 15) | (k >> 17);
  k *= 0x1b873593u;
  h ^= k;
  h = (h << 13) | (h >> 19);
  return h * 5u + 0xe6546b64u;
}
LB_INLINE lb_u32 lb_flow_hash(const struct lb_flow_key* f, lb_u32 seed) {
  lb_u32 h = seed;
  h = lb_mix(h, f->saddr);
  h = lb_mix(h, f->daddr);
  h = lb_mix(h, ((lb_u32)f->sport << 16) | f->dport);
  h = lb_mix(h, f->proto);
  h ^= 13u;
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h;
}

/* RFC 1624 incremental update of an Internet checksum when one 16-bit word of the
 * covered data changes from old to new: HC' = ~(~HC + ~m + m'). */
LB_INLINE lb_u16 lb_csum_replace16(lb_u16 check, lb_u16 old_word, lb_u16 new_word) {
  lb_u32 sum = (lb_u16)~check;
  sum += (lb_u16)~old_word;
  sum += new_word;
  sum = (sum & 0xffffu) + (sum >> 16);
  sum = (sum & 0xffffu) + (sum >> 16);
  return (lb_u16)~sum;
}
/* The same for a 32-bit field (an address), as two words in memory order. */
LB_INLINE lb_u16 lb_csum_replace32(lb_u16 check, lb_u32 old_value, lb_u32 new_value) {
  check = lb_csum_replace16(check, (lb_u16)(old_value & 0xffffu), (lb_u16)(new_value & 0xffffu));
  return lb_csum_replace16(check, (lb_u16)(old_value >> 16), (lb_u16)(new_value >> 16));
}

#endif /* FERRY_BALANCER_LB_SHARED_H */
