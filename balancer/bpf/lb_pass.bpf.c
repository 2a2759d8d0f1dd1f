/* XDP_PASS and nothing else, for the far end of a veth whose near end runs ferry_lb in
 * native mode: XDP_TX and redirects into a veth are only delivered when the receiving
 * end has an XDP program. (ip link set dev PEER xdp obj lb_pass.bpf.o sec xdp) */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int ferry_pass(struct xdp_md* ctx) {
  (void)ctx;
  return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
