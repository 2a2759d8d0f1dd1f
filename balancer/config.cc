#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "bpf/lb_shared.h"

namespace ferry::balancer {

using nlohmann::json;

Result<uint32_t> parseIPv4(const std::string& text) {
  in_addr a{};
  if (inet_pton(AF_INET, text.c_str(), &a) != 1) return Status::invalid("not an IPv4 address: \"" + text + "\"");
  return static_cast<uint32_t>(a.s_addr);
}

std::string formatIPv4(uint32_t networkOrder) {
  char buf[INET_ADDRSTRLEN];
  in_addr a{};
  a.s_addr = networkOrder;
  inet_ntop(AF_INET, &a, buf, sizeof buf);
  return buf;
}

const char* protocolName(uint8_t protocol) {
  return protocol == IPPROTO_TCP ? "tcp" : protocol == IPPROTO_UDP ? "udp" : "?";
}

namespace {

// Reads an integer field in [lo, hi], or its default when absent.
Status readInt(const json& obj, const std::string& where, const char* key, long lo, long hi, long& out) {
  if (!obj.contains(key)) return Status::ok();
  const json& v = obj[key];
  if (!v.is_number_integer()) return Status::invalid(where + "." + key + " must be an integer");
  long n = v.get<long>();
  if (n < lo || n > hi)
    return Status::invalid(where + "." + key + " must be between " + std::to_string(lo) + " and " + std::to_string(hi));
  out = n;
  return Status::ok();
}

Status readString(const json& obj, const std::string& where, const char* key, bool required, std::string& out) {
  if (!obj.contains(key)) return required ? Status::invalid(where + "." + key + " is missing") : Status::ok();
  if (!obj[key].is_string() || obj[key].get<std::string>().empty())
    return Status::invalid(where + "." + key + " must be a non-empty string");
  out = obj[key].get<std::string>();
  return Status::ok();
}

Status parseServices(const json& doc, BalancerConfig& cfg) {
  if (!doc.contains("services") || !doc["services"].is_array() || doc["services"].empty())
    return Status::invalid("services must be a non-empty array");
  if (doc["services"].size() > LB_MAX_SERVICES)
    return Status::invalid("services: at most " + std::to_string(LB_MAX_SERVICES));
  std::set<std::string> names;
  std::set<std::tuple<uint32_t, uint16_t, uint8_t>> keys;
  std::set<std::pair<uint16_t, uint8_t>> hostPorts;
  for (size_t i = 0; i < doc["services"].size(); ++i) {
    const json& s = doc["services"][i];
    std::string where = "services[" + std::to_string(i) + "]";
    if (!s.is_object()) return Status::invalid(where + " must be an object");
    ServiceConfig svc;
    std::string vip, proto = "tcp";
    if (Status st = readString(s, where, "name", true, svc.name); !st) return st;
    if (Status st = readString(s, where, "vip", true, vip); !st) return st;
    if (Status st = readString(s, where, "protocol", false, proto); !st) return st;
    auto addr = parseIPv4(vip);
    if (!addr) return Status::invalid(where + ".vip: " + addr.status().message());
    svc.vip = addr.value();
    if (proto == "tcp") {
      svc.protocol = IPPROTO_TCP;
    } else if (proto == "udp") {
      svc.protocol = IPPROTO_UDP;
    } else {
      return Status::invalid(where + ".protocol must be \"tcp\" or \"udp\"");
    }
    long port = -1, hostPort = -1;
    if (Status st = readInt(s, where, "port", 1, 65535, port); !st) return st;
    if (Status st = readInt(s, where, "host_port", 1, 65535, hostPort); !st) return st;
    if (port < 0) return Status::invalid(where + ".port is missing");
    if (hostPort < 0) return Status::invalid(where + ".host_port is missing");
    svc.port = static_cast<uint16_t>(port);
    svc.hostPort = static_cast<uint16_t>(hostPort);
    if (!names.insert(svc.name).second) return Status::invalid(where + ".name \"" + svc.name + "\" is used twice");
    if (!keys.insert({svc.vip, svc.port, svc.protocol}).second)
      return Status::invalid(where + ": " + vip + ":" + std::to_string(port) + "/" + proto + " is listed twice");
    // One-to-one: a host port stands for exactly one VIP:port, or replies could not be
    // told apart on the way out.
    if (!hostPorts.insert({svc.hostPort, svc.protocol}).second)
      return Status::invalid(where + ".host_port " + std::to_string(hostPort) + "/" + proto +
                             " already stands for another service");
    cfg.services.push_back(svc);
  }
  return Status::ok();
}

Status parseBackends(const json& doc, BalancerConfig& cfg) {
  if (!doc.contains("backends") || !doc["backends"].is_array())
    return Status::invalid("backends must be an array");
  if (doc["backends"].size() > LB_MAX_BACKENDS)
    return Status::invalid("backends: at most " + std::to_string(LB_MAX_BACKENDS));
  std::set<std::string> names;
  std::set<uint32_t> addrs;
  for (size_t i = 0; i < doc["backends"].size(); ++i) {
    const json& b = doc["backends"][i];
    std::string where = "backends[" + std::to_string(i) + "]";
    if (!b.is_object()) return Status::invalid(where + " must be an object");
    BackendConfig be;
    std::string address;
    if (Status st = readString(b, where, "name", true, be.name); !st) return st;
    if (Status st = readString(b, where, "address", true, address); !st) return st;
    auto addr = parseIPv4(address);
    if (!addr) return Status::invalid(where + ".address: " + addr.status().message());
    be.address = addr.value();
    if (!names.insert(be.name).second) return Status::invalid(where + ".name \"" + be.name + "\" is used twice");
    if (!addrs.insert(be.address).second) return Status::invalid(where + ".address " + address + " is used twice");
    cfg.backends.push_back(be);
  }
  return Status::ok();
}

Status parseHealth(const json& doc, BalancerConfig& cfg) {
  HealthConfig& h = cfg.health;
  if (!cfg.services.empty()) h.port = cfg.services.front().hostPort;
  if (!doc.contains("health")) return Status::ok();
  const json& j = doc["health"];
  if (!j.is_object()) return Status::invalid("health must be an object");
  if (Status st = readString(j, "health", "scheme", false, h.scheme); !st) return st;
  if (h.scheme != "http" && h.scheme != "https" && h.scheme != "tcp")
    return Status::invalid("health.scheme must be \"http\", \"https\" or \"tcp\"");
  if (Status st = readString(j, "health", "path", false, h.path); !st) return st;
  if (h.path.front() != '/') return Status::invalid("health.path must start with /");
  long port = h.port, interval = h.intervalMs, timeout = h.timeoutMs, rise = h.rise, fall = h.fall;
  if (Status st = readInt(j, "health", "port", 1, 65535, port); !st) return st;
  if (Status st = readInt(j, "health", "interval_ms", 10, 3600000, interval); !st) return st;
  if (Status st = readInt(j, "health", "timeout_ms", 10, 600000, timeout); !st) return st;
  if (Status st = readInt(j, "health", "rise", 1, 100, rise); !st) return st;
  if (Status st = readInt(j, "health", "fall", 1, 100, fall); !st) return st;
  h.port = static_cast<uint16_t>(port);
  h.intervalMs = static_cast<int>(interval);
  h.timeoutMs = static_cast<int>(timeout);
  h.rise = static_cast<int>(rise);
  h.fall = static_cast<int>(fall);
  return Status::ok();
}

}  // namespace

Result<BalancerConfig> parseBalancerConfig(const std::string& text) {
  json doc = json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) return Status::invalid("the configuration is not a JSON object");
  static const std::set<std::string> kKnown = {"seed", "services", "backends", "nodes", "health", "flows"};
  for (auto it = doc.begin(); it != doc.end(); ++it)
    if (!kKnown.count(it.key())) return Status::invalid("unknown field \"" + it.key() + "\"");
  BalancerConfig cfg;
  long seed = 0, flows = cfg.flows;
  if (Status st = readInt(doc, "config", "seed", 0, 0xffffffffL, seed); !st) return st;
  if (Status st = readInt(doc, "config", "flows", 1024, 16L << 20, flows); !st) return st;
  cfg.seed = static_cast<uint32_t>(seed);
  cfg.flows = static_cast<uint32_t>(flows);
  if (Status st = parseServices(doc, cfg); !st) return st;
  if (Status st = parseBackends(doc, cfg); !st) return st;
  if (Status st = parseHealth(doc, cfg); !st) return st;
  if (doc.contains("nodes")) {
    const json& nodes = doc["nodes"];
    if (!nodes.is_array() || nodes.size() > LB_MAX_NODES)
      return Status::invalid("nodes must be an array of at most " + std::to_string(LB_MAX_NODES) + " addresses");
    for (size_t i = 0; i < nodes.size(); ++i) {
      auto addr = nodes[i].is_string() ? parseIPv4(nodes[i].get<std::string>()) : Result<uint32_t>(Status::invalid("not a string"));
      if (!addr) return Status::invalid("nodes[" + std::to_string(i) + "]: " + addr.status().message());
      cfg.nodes.push_back(addr.value());
    }
  }
  return cfg;
}

Result<BalancerConfig> loadBalancerConfig(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::ioError("cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  auto cfg = parseBalancerConfig(ss.str());
  if (!cfg) return cfg.status().withContext(path);
  return cfg;
}

}  // namespace ferry::balancer
