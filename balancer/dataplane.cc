#include "dataplane.h"

#include <fstream>

namespace ferry::balancer {

const char* verdictName(int v) {
  static const char* const kNames[LB_V_COUNT] = {
      "forwarded",         "forwarded_kernel", "icmp_forwarded", "pass_not_ipv4",   "pass_not_vip",
      "drop_unknown_service", "drop_fragment", "drop_protocol",  "drop_malformed",  "drop_no_backend",
      "drop_ttl",          "drop_no_route",    "drop_too_big"};
  return v >= 0 && v < LB_V_COUNT ? kNames[v] : "?";
}

bool ipv4Forwarding(const std::string& conf) {
  std::ifstream in("/proc/sys/net/ipv4/conf/" + conf + "/forwarding");
  int on = 0;
  in >> on;
  return on == 1;
}

}  // namespace ferry::balancer
