#include "vips.h"

#include <set>

namespace ferry::control {

Result<std::vector<Vip>> readVips(const Poco::Util::AbstractConfiguration& config) {
  std::vector<Vip> out;
  std::set<int> ports;
  Poco::Util::AbstractConfiguration::Keys names;
  config.keys("vip", names);
  for (const std::string& name : names) {
    std::string prefix = "vip." + name + ".";
    Vip v;
    v.name = name;
    int port = config.getInt(prefix + "port", 0);
    if (port < 1 || port > 65535) return Status::invalid(prefix + "port must be a port number (1-65535)");
    if (!ports.insert(port).second) return Status::invalid(prefix + "port " + std::to_string(port) + " is another VIP's");
    v.port = static_cast<uint16_t>(port);
    v.address = config.getString(prefix + "address", "");
    size_t colon = v.address.rfind(':');
    if (v.address.empty() || colon == 0 || colon == std::string::npos || colon + 1 == v.address.size())
      return Status::invalid(prefix + "address must be HOST:PORT, the address clients use");
    v.controlEndpoint = config.getString(prefix + "control_endpoint", "");
    if (!v.controlEndpoint.empty() && v.controlEndpoint.rfind("wss://", 0) != 0)
      return Status::invalid(prefix + "control_endpoint must be a wss:// URL");
    out.push_back(v);
  }
  return out;
}

const Vip* vipForPort(const std::vector<Vip>& vips, uint16_t port) {
  for (const Vip& v : vips)
    if (v.port == port) return &v;
  return nullptr;
}

}  // namespace ferry::control
