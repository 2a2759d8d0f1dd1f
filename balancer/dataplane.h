#pragma once
// A balancer node's data plane, as the control plane drives it: XDP (xdp_dataplane.h)
// or nftables (the portable fallback). The control plane hands it the services, the
// backends with their health, and the Maglev ring; the data plane makes packets follow
// them, and counts.

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "bpf/lb_shared.h"
#include "config.h"
#include "ferry/status.h"

namespace ferry::balancer {

struct BackendState {
  uint32_t address = 0;  // network order
  bool up = false;
};

struct DataplaneCounters {
  std::array<lb_counter, LB_V_COUNT> verdicts{};
  std::vector<lb_counter> services;  // by index in the configuration
  std::vector<lb_counter> backends;  // by index in the configuration
};

// The name of verdict v as /metrics shows it ("forwarded", "drop_fragment", ...).
const char* verdictName(int v);

// Whether IPv4 forwarding is on for conf: an interface, or "all" (net.ipv4.ip_forward).
// Both data planes forward; they refuse to start without it.
bool ipv4Forwarding(const std::string& conf);

class Dataplane {
 public:
  virtual ~Dataplane() = default;
  virtual std::string name() const = 0;
  // Loads and attaches; a clear error when it cannot.
  virtual Status start() = 0;
  // Makes the data plane follow these: services and backends in configuration order,
  // ring entries index backends. Packets in flight never see a half-written ring.
  virtual Status program(const std::vector<ServiceConfig>& services, const std::vector<BackendState>& backends,
                         const std::vector<uint32_t>& ring) = 0;
  virtual Result<DataplaneCounters> counters() = 0;
  // Detaches; packets then go where the kernel sends them.
  virtual void stop() = 0;
};

}  // namespace ferry::balancer
