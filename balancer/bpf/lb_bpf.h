/* What the two BPF programs share beyond lb_shared.h: the ICMP header (linux/icmp.h
 * pulls in libc headers the BPF target has not) and counting into a per-CPU array of
 * lb_counter. BPF only. */
#ifndef FERRY_BALANCER_LB_BPF_H
#define FERRY_BALANCER_LB_BPF_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "lb_shared.h"

struct icmphdr {
  __u8 type;
  __u8 code;
  __u16 checksum;
  __u32 rest;
};
#define ICMP_DEST_UNREACH 3
#define ICMP_TIME_EXCEEDED 11

static __always_inline void lb_count(void* map, __u32 index, __u64 bytes) {
  struct lb_counter* c = bpf_map_lookup_elem(map, &index);
  if (c) {
    c->packets++;
    c->bytes += bytes;
  }
}

#endif /* FERRY_BALANCER_LB_BPF_H */
