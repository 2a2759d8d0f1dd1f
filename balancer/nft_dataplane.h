#pragma once
// The nftables data plane (`ferry-balancer node --dataplane=nft`): the portable
// fallback and the reference the XDP path is measured against. Stateless rewrites
// (`notrack`, no conntrack) in a prerouting chain of table ip ferry_lb: for each
// service, the destination becomes the backend at jhash(4-tuple) mod 65537 in the same
// Maglev ring the XDP path uses (an nft map), and the host port; the kernel then
// forwards it (net.ipv4.ip_forward = 1). The ring is double-buffered in two maps, and
// the rules switch maps in the same transaction that fills the idle one.
//
// What it does not do that the XDP path does: no connection table (a backend change
// moves the flows Maglev moves), ICMP errors to a VIP are dropped rather than sent to
// their flow's backend, and the flow hash is the kernel's jhash, not lb_flow_hash.
//
// NftHost is the host side (`ferry-balancer host --dataplane=nft`): stateless
// rewrites of replies leaving through the host's interface, in the output hook of table
// ip ferry_host.

#include <string>
#include <vector>

#include "dataplane.h"

namespace ferry::balancer {

class NftDataplane : public Dataplane {
 public:
  explicit NftDataplane(uint32_t seed);
  ~NftDataplane() override;
  std::string name() const override { return "nft"; }
  Status start() override;
  Status program(const std::vector<ServiceConfig>& services, const std::vector<BackendState>& backends,
                 const std::vector<uint32_t>& ring) override;
  Result<DataplaneCounters> counters() override;
  void stop() override;

  // The script program() would apply (for tests and `--dry-run` reading).
  static std::string script(const std::vector<ServiceConfig>& services, const std::vector<BackendState>& backends,
                            const std::vector<uint32_t>& ring, uint32_t seed, int idle, bool writeRing);

 private:
  uint32_t seed_;
  bool started_ = false;
  int live_ = 0;  // the ring map the rules use: ring0 or ring1
  std::vector<uint32_t> liveRing_;
  size_t services_ = 0, backends_ = 0;
};

class NftHost {
 public:
  // Rewrites what leaves through interface (as the tc program does): local traffic
  // and other ports stay as they are.
  NftHost(std::string interface, uint32_t address, std::vector<uint32_t> nodes);
  Status start(const std::vector<ServiceConfig>& services);
  Result<uint64_t> rewritten();  // packets rewritten so far
  static Status remove();

 private:
  std::string interface_;
  uint32_t address_;
  std::vector<uint32_t> nodes_;
};

}  // namespace ferry::balancer
