#pragma once
// The VIPs a server stands behind (docs/balancer.md): the balancer rewrites a client's
// packet for VIP:port to (this host, the host port that stands for VIP:port), so the
// port a connection arrived on says which VIP the client used. ferry-control listens on
// each VIP's host port beside api.port and answers as that VIP where it matters: the
// channel endpoint it gives an activating gateway, and /healthz.
//
//   vip.api.port = 18443                        the host port (balancer's host_port)
//   vip.api.address = 198.51.100.10:443         what the clients dialled
//   vip.api.control_endpoint = wss://198.51.100.10:8445/v1/channel   (optional)

#include <Poco/Util/AbstractConfiguration.h>

#include <cstdint>
#include <string>
#include <vector>

#include "ferry/status.h"

namespace ferry::control {

struct Vip {
  std::string name;
  uint16_t port = 0;            // the host port
  std::string address;          // "HOST:PORT" the clients use
  std::string controlEndpoint;  // for gateways that activate through it ("" = the default)
};

// Every vip.NAME.* group of the configuration, checked: a port for one VIP only, an
// address with a host and a port, a wss:// endpoint.
Result<std::vector<Vip>> readVips(const Poco::Util::AbstractConfiguration& config);

// The VIP whose host port is port, or nullptr.
const Vip* vipForPort(const std::vector<Vip>& vips, uint16_t port);

}  // namespace ferry::control
