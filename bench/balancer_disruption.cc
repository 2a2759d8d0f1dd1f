// How many established flows a backend change disturbs (issue 5's target: at most
// 1.2/N), measured on the XDP program itself with BPF_PROG_RUN: F TCP flows are opened
// (SYN) with N backends up, then one backend is removed (or one added) and every flow
// sends an ACK; a flow is disturbed when its ACK goes to another backend than its SYN
// did. Also reported: what the ring alone would move (a new SYN per flow), which is
// what a balancer without a connection table does.
//   balancer_disruption [--flows 20000] [--backends 3,5,10,20]
// Runs in a network namespace of its own; needs root.
#include <bpf/bpf.h>
#include <linux/bpf.h>
#include <net/if.h>
#include <sched.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>

#include "maglev.h"
#include "packet.h"
#include "xdp_dataplane.h"

using namespace ferry::balancer;
using ferry::testing::Frame;
using ferry::testing::ip4;

namespace {

uint32_t runTo(int fd, const Frame& f, unsigned ifindex) {
  auto in = frameBytes(f);
  std::vector<uint8_t> out(in.size() + 64);
  xdp_md ctx{};
  ctx.data_end = static_cast<uint32_t>(in.size());
  ctx.ingress_ifindex = ifindex;
  bpf_test_run_opts o{};
  o.sz = sizeof o;
  o.data_in = in.data();
  o.data_size_in = static_cast<uint32_t>(in.size());
  o.data_out = out.data();
  o.data_size_out = static_cast<uint32_t>(out.size());
  o.ctx_in = &ctx;
  o.ctx_size_in = sizeof ctx;
  if (bpf_prog_test_run_opts(fd, &o) != 0 || (o.retval != XDP_TX && o.retval != XDP_PASS)) return 0;
  uint32_t daddr;
  std::memcpy(&daddr, &out[14 + 16], 4);
  return daddr;
}

int sh(const std::string& c) { return std::system(c.c_str()); }

}  // namespace

int main(int argc, char** argv) {
  int flows = 20000;
  std::string counts = "3,5,10,20";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::string(argv[i]) == "--flows") flows = std::atoi(argv[i + 1]);
    if (std::string(argv[i]) == "--backends") counts = argv[i + 1];
  }
  if (unshare(CLONE_NEWNET) != 0) {
    std::perror("balancer_disruption: unshare (needs root)");
    return 1;
  }
  sh("ip link set lo up && ip link add lb0 type veth peer name up0 && ip addr add 10.2.0.11/16 dev lb0 && "
     "ip link set lb0 up && ip link set up0 up && sysctl -qw net.ipv4.ip_forward=1");
  unsigned ifindex = if_nametoindex("lb0");
  std::printf("{\"flows\": %d, \"results\": [\n", flows);
  std::stringstream ss(counts);
  bool firstRow = true;
  for (std::string tok; std::getline(ss, tok, ',');) {
    int n = std::stoi(tok);
    std::vector<ServiceConfig> services = {{"api", ip4("198.51.100.10"), 443, IPPROTO_TCP, 18443}};
    std::vector<MaglevBackend> mb;
    std::vector<BackendState> states;
    for (int b = 0; b < n + 1; ++b) {
      std::string addr = "10.2.1." + std::to_string(b + 1);
      sh("ip neigh replace " + addr + " lladdr 02:00:00:00:01:" + std::to_string(10 + b) + " dev lb0 nud permanent");
      mb.push_back({"backend-" + std::to_string(b), b < n});
      states.push_back({ip4(addr.c_str()), b < n});
    }
    for (const char* change : {"remove", "add"}) {
      XdpOptions xo;
      xo.seed = 99;
      xo.flows = static_cast<uint32_t>(flows * 2);
      XdpDataplane dp(xo);
      if (ferry::Status st = dp.start(); !st) {
        std::fprintf(stderr, "%s\n", st.toString().c_str());
        return 1;
      }
      auto before = mb;
      auto beforeStates = states;
      dp.program(services, beforeStates, buildMaglev(before, 99, LB_RING_SIZE));
      std::vector<uint32_t> first(static_cast<size_t>(flows));
      auto frame = [&](int f, uint8_t flags) {
        Frame fr;
        fr.saddr = htonl(0x0a640000u + static_cast<uint32_t>(f / 30000));  // 10.100.x.x
        fr.daddr = ip4("198.51.100.10");
        fr.l4.sport = static_cast<uint16_t>(20000 + f % 30000);
        fr.l4.dport = 443;
        fr.l4.tcpFlags = flags;
        return fr;
      };
      for (int f = 0; f < flows; ++f) first[size_t(f)] = runTo(dp.programFd(), frame(f, 0x02), ifindex);
      auto after = before;
      auto afterStates = beforeStates;
      size_t changed = std::string(change) == "remove" ? 0 : static_cast<size_t>(n);
      after[changed].up = std::string(change) == "add";
      afterStates[changed].up = after[changed].up;
      dp.program(services, afterStates, buildMaglev(after, 99, LB_RING_SIZE));
      int moved = 0, ringMoved = 0, onChanged = 0;
      for (int f = 0; f < flows; ++f) {
        if (first[size_t(f)] == states[changed].address) onChanged++;
        moved += runTo(dp.programFd(), frame(f, 0x10), ifindex) != first[size_t(f)];
      }
      // The same flows as new connections: what the ring alone would do.
      for (int f = 0; f < flows; ++f) ringMoved += runTo(dp.programFd(), frame(f, 0x02), ifindex) != first[size_t(f)];
      int nAfter = std::string(change) == "remove" ? n - 1 : n + 1;
      int nBefore = n;
      int nMax = std::max(nAfter, nBefore);
      std::printf("%s  {\"backends\": %d, \"change\": \"%s\", \"disturbed\": %.4f, \"ring_moved\": %.4f, "
                  "\"on_removed\": %.4f, \"one_over_n\": %.4f, \"disturbed_times_n\": %.2f, \"ring_moved_times_n\": %.2f}",
                  firstRow ? "" : ",\n", n, change, double(moved) / flows, double(ringMoved) / flows,
                  double(onChanged) / flows, 1.0 / nMax, double(moved) / flows * nMax, double(ringMoved) / flows * nMax);
      firstRow = false;
      dp.stop();
    }
  }
  std::printf("\n]}\n");
  return 0;
}
