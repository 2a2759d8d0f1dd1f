#pragma once
// The backend host's half (bpf/lb_host.bpf.c): a tc egress program on the host's
// interface that rewrites replies from (host address, mapped port) to (VIP, port).
// It stays attached when ferry-balancer exits (replies keep their VIP while the daemon
// restarts); start() replaces an earlier instance, stop() removes it.

#include <string>
#include <vector>

#include "bpf_util.h"
#include "config.h"

namespace ferry::balancer {

struct HostOptions {
  std::string interface;  // empty: load only (tests)
  uint32_t address = 0;   // the host's address the balancer sends to (network order)
};

struct HostCounters {
  lb_counter replies;      // rewritten replies
  lb_counter icmpErrors;   // rewritten ICMP errors about mapped ports
};

class HostEgress {
 public:
  explicit HostEgress(HostOptions options);
  ~HostEgress();
  // services: what to rewrite; nodes: the balancer nodes, whose health checks get
  // their answers from the host's own address.
  Status start(const std::vector<ServiceConfig>& services, const std::vector<uint32_t>& nodes);
  Result<HostCounters> counters();
  void stop();
  // Takes our filter off the interface (this daemon's or an earlier one's): not found
  // when there is none, an error when the interface is missing or the detach fails.
  Status removeFromInterface();

  int programFd() const;
  int mapFd(const char* name) const;

 private:
  HostOptions opt_;
  BpfObject obj_;
  unsigned ifindex_ = 0;
  bool attached_ = false;
};

}  // namespace ferry::balancer
