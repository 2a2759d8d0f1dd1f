#pragma once
// ferry-balancer's configuration: one JSON file shared by every balancer node and
// backend host of a farm, so that all of them agree on the seed, the backend order and
// the port map (docs/balancer.md). What differs per machine (interface, address) comes
// from the command line.
//
// {
//   "seed": 7,
//   "services": [{"name": "api", "vip": "198.51.100.10", "port": 443,
//                 "protocol": "tcp", "host_port": 18443}],
//   "backends": [{"name": "control-1", "address": "10.2.0.21"}],
//   "nodes": ["10.2.0.11", "10.2.0.12"],
//   "health": {"scheme": "https", "port": 18443, "path": "/healthz",
//              "interval_ms": 1000, "timeout_ms": 800, "rise": 2, "fall": 2},
//   "flows": 65536
// }

#include <cstdint>
#include <string>
#include <vector>

#include "ferry/status.h"

namespace ferry::balancer {

struct ServiceConfig {
  std::string name;
  uint32_t vip = 0;  // network order
  uint16_t port = 0;  // host order
  uint8_t protocol = 0;  // IPPROTO_TCP / IPPROTO_UDP
  uint16_t hostPort = 0;  // host order: the port on every backend host
};

struct BackendConfig {
  std::string name;
  uint32_t address = 0;  // network order
};

struct HealthConfig {
  std::string scheme = "http";  // http, https (certificate not checked) or tcp (connect)
  uint16_t port = 0;            // 0: the first service's host port
  std::string path = "/healthz";
  int intervalMs = 1000;
  int timeoutMs = 800;
  int rise = 2;  // consecutive successes before a backend is taken in
  int fall = 2;  // consecutive failures before it is taken out
};

struct BalancerConfig {
  uint32_t seed = 0;
  std::vector<ServiceConfig> services;
  std::vector<BackendConfig> backends;
  HealthConfig health;
  // The balancer nodes' own addresses: hosts answer their health checks unrewritten.
  std::vector<uint32_t> nodes;
  uint32_t flows = 65536;  // connection-table entries per node
};

// Parses and checks the whole file; every error names the field.
Result<BalancerConfig> parseBalancerConfig(const std::string& text);
Result<BalancerConfig> loadBalancerConfig(const std::string& path);

// "10.0.0.1" -> network-order address; nullopt-like failure as a Status.
Result<uint32_t> parseIPv4(const std::string& text);
std::string formatIPv4(uint32_t networkOrder);
const char* protocolName(uint8_t protocol);

}  // namespace ferry::balancer
