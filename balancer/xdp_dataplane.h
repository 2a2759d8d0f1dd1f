#pragma once
// The XDP data plane (bpf/lb_xdp.bpf.c): loads the embedded program with libbpf,
// attaches it to the node's interface through a BPF link (it goes when the process
// goes), and programs its maps. The ring is double-buffered: the idle half is written,
// then config.ring flips, so a map update drops no packet.

#include <bpf/libbpf.h>

#include <string>
#include <vector>

#include "bpf_util.h"
#include "dataplane.h"

namespace ferry::balancer {

struct XdpOptions {
  std::string interface;          // empty: load only (tests run the program with BPF_PROG_RUN)
  std::string mode = "native";    // native (driver) or generic (skb)
  uint32_t seed = 0;              // the flow hash seed
  uint32_t flows = 65536;         // connection-table entries
};

class XdpDataplane : public Dataplane {
 public:
  explicit XdpDataplane(XdpOptions options);
  ~XdpDataplane() override;
  std::string name() const override { return "xdp"; }
  Status start() override;
  Status program(const std::vector<ServiceConfig>& services, const std::vector<BackendState>& backends,
                 const std::vector<uint32_t>& ring) override;
  Result<DataplaneCounters> counters() override;
  void stop() override;

  // For tests: the loaded program and a map by name.
  int programFd() const;
  int mapFd(const char* name) const;

 private:
  Status writeRing(uint32_t half, const std::vector<uint32_t>& ring);

  XdpOptions opt_;
  BpfObject obj_;
  int linkFd_ = -1;
  uint32_t liveHalf_ = 0;
  std::vector<uint32_t> liveRing_;
  std::vector<ServiceConfig> services_;
  size_t backendCount_ = 0;
};

}  // namespace ferry::balancer
