#include "nft_dataplane.h"

#include <netinet/in.h>

#include <sstream>

#include "nft.h"

namespace ferry::balancer {

namespace {

const char* l4(uint8_t protocol) { return protocol == IPPROTO_UDP ? "udp" : "tcp"; }

// nft counter name -> the XDP verdict it stands for.
struct VerdictCounter {
  const char* name;
  int verdict;
};
constexpr VerdictCounter kVerdictCounters[] = {
    {"drop_fragment", LB_V_DROP_FRAGMENT},
    {"drop_unknown", LB_V_DROP_UNKNOWN_SERVICE},
    {"drop_no_backend", LB_V_DROP_NO_BACKEND},
};

}  // namespace

NftDataplane::NftDataplane(uint32_t seed) : seed_(seed) {}

NftDataplane::~NftDataplane() { stop(); }

Status NftDataplane::start() {
  if (!haveNft()) return Status::unavailable("the nft data plane needs nft (apt-get install nftables)");
  if (!ipv4Forwarding("all"))
    return Status::invalid("the nft data plane forwards through the kernel: set net.ipv4.ip_forward = 1");
  std::ostringstream s;
  s << "add table ip ferry_lb\ndelete table ip ferry_lb\n"
    << "table ip ferry_lb {\n";
  for (int i = 0; i < 2; ++i)
    s << "  map ring" << i << " { typeof jhash ip saddr mod " << LB_RING_SIZE << " : ip daddr; size " << LB_RING_SIZE
      << "; }\n";
  s << "  set vips { type ipv4_addr; }\n";
  for (const VerdictCounter& c : kVerdictCounters) s << "  counter " << c.name << " { }\n";
  s << "  chain prerouting { type filter hook prerouting priority raw; policy accept; }\n"
    << "  chain forward { type filter hook forward priority filter; policy accept; }\n"
    << "}\n";
  if (Status st = applyNft(s.str(), "set up table ip ferry_lb"); !st) return st;
  started_ = true;
  live_ = 0;
  liveRing_.clear();
  return Status::ok();
}

std::string NftDataplane::script(const std::vector<ServiceConfig>& services, const std::vector<BackendState>& backends,
                                 const std::vector<uint32_t>& ring, uint32_t seed, int idle, bool writeRing) {
  std::ostringstream s;
  bool any = false;
  for (uint32_t b : ring) any = any || b != LB_NO_BACKEND;
  if (writeRing) {
    s << "flush map ip ferry_lb ring" << idle << "\n";
    if (any) {
      s << "add element ip ferry_lb ring" << idle << " { ";
      for (uint32_t slot = 0; slot < ring.size(); ++slot) {
        if (ring[slot] == LB_NO_BACKEND) continue;
        s << slot << " : " << formatIPv4(backends[ring[slot]].address) << (slot + 1 < ring.size() ? ", " : "");
      }
      s << " }\n";
    }
  }
  s << "flush set ip ferry_lb vips\n";
  s << "add element ip ferry_lb vips { ";
  for (size_t i = 0; i < services.size(); ++i) s << (i ? ", " : "") << formatIPv4(services[i].vip);
  s << " }\n";
  for (size_t i = 0; i < services.size(); ++i) s << "add counter ip ferry_lb svc_" << i << "\n";
  for (size_t i = 0; i < backends.size(); ++i) s << "add counter ip ferry_lb be_" << i << "\n";

  s << "flush chain ip ferry_lb prerouting\n";
  s << "add rule ip ferry_lb prerouting ip daddr @vips ip frag-off & 0x3fff != 0 counter name \"drop_fragment\" drop\n";
  for (size_t i = 0; i < services.size(); ++i) {
    const ServiceConfig& v = services[i];
    const char* p = l4(v.protocol);
    s << "add rule ip ferry_lb prerouting ip daddr " << formatIPv4(v.vip) << " " << p << " dport " << v.port;
    if (!any) {
      s << " counter name \"drop_no_backend\" drop\n";
      continue;
    }
    s << " notrack counter name \"svc_" << i << "\" ip daddr set jhash ip saddr . " << p << " sport . ip daddr . " << p
      << " dport mod " << LB_RING_SIZE << " seed " << seed << " map @ring" << idle << " " << p << " dport set "
      << v.hostPort << "\n";
  }
  s << "add rule ip ferry_lb prerouting ip daddr @vips counter name \"drop_unknown\" drop\n";

  s << "flush chain ip ferry_lb forward\n";
  if (!backends.empty()) {
    s << "add rule ip ferry_lb forward counter name ip daddr map { ";
    for (size_t i = 0; i < backends.size(); ++i)
      s << (i ? ", " : "") << formatIPv4(backends[i].address) << " : \"be_" << i << "\"";
    s << " }\n";
  }
  return s.str();
}

Status NftDataplane::program(const std::vector<ServiceConfig>& services, const std::vector<BackendState>& backends,
                             const std::vector<uint32_t>& ring) {
  if (!started_) return Status::invalid("the nft data plane is not started");
  for (uint32_t slot : ring)
    if (slot != LB_NO_BACKEND && slot >= backends.size()) return Status::invalid("the ring names an unknown backend");
  bool changed = ring != liveRing_;
  int target = changed ? 1 - live_ : live_;
  // One transaction: the idle map filled, the rules pointed at it.
  if (Status st = applyNft(script(services, backends, ring, seed_, target, changed), "program table ip ferry_lb"); !st)
    return st;
  live_ = target;
  liveRing_ = ring;
  services_ = services.size();
  backends_ = backends.size();
  return Status::ok();
}

Result<DataplaneCounters> NftDataplane::counters() {
  auto doc = listNft("list counters table ip ferry_lb");
  if (!doc) return doc.status();
  DataplaneCounters out;
  out.services.resize(services_);
  out.backends.resize(backends_);
  for (const auto& item : doc->value("nftables", nlohmann::json::array())) {
    if (!item.contains("counter")) continue;
    const auto& c = item["counter"];
    std::string name = c.value("name", "");
    lb_counter value{c.value("packets", uint64_t{0}), c.value("bytes", uint64_t{0})};
    for (const VerdictCounter& v : kVerdictCounters)
      if (name == v.name) out.verdicts[size_t(v.verdict)] = value;
    if (name.rfind("svc_", 0) == 0) {
      size_t i = std::stoul(name.substr(4));
      if (i < out.services.size()) out.services[i] = value;
      out.verdicts[LB_V_FORWARDED].packets += value.packets;
      out.verdicts[LB_V_FORWARDED].bytes += value.bytes;
    } else if (name.rfind("be_", 0) == 0) {
      size_t i = std::stoul(name.substr(3));
      if (i < out.backends.size()) out.backends[i] = value;
    }
  }
  return out;
}

void NftDataplane::stop() {
  if (!started_) return;
  applyNft("delete table ip ferry_lb\n", "remove table ip ferry_lb");
  started_ = false;
}

NftHost::NftHost(std::string interface, uint32_t address, std::vector<uint32_t> nodes)
    : interface_(std::move(interface)), address_(address), nodes_(std::move(nodes)) {}

Status NftHost::start(const std::vector<ServiceConfig>& services) {
  if (!haveNft()) return Status::unavailable("the nft host rewrite needs nft (apt-get install nftables)");
  std::string host = formatIPv4(address_);
  std::ostringstream s;
  s << "add table ip ferry_host\ndelete table ip ferry_host\n"
    << "table ip ferry_host {\n  set nodes { type ipv4_addr; ";
  if (!nodes_.empty()) {
    s << "elements = { ";
    for (size_t i = 0; i < nodes_.size(); ++i) s << (i ? ", " : "") << formatIPv4(nodes_[i]);
    s << " } ";
  }
  s << "}\n  counter rewritten { }\n"
    << "  chain pre {\n    type filter hook prerouting priority raw; policy accept;\n";
  for (const ServiceConfig& v : services)
    s << "    iifname \"" << interface_ << "\" ip daddr " << host << " " << l4(v.protocol) << " dport " << v.hostPort
      << " notrack\n";
  s << "  }\n  chain out {\n    type filter hook output priority raw; policy accept;\n"
    << "    ip daddr @nodes accept\n";
  for (const ServiceConfig& v : services)
    s << "    oifname \"" << interface_ << "\" ip saddr " << host << " " << l4(v.protocol) << " sport " << v.hostPort
      << " notrack counter name \"rewritten\" ip saddr set " << formatIPv4(v.vip) << " " << l4(v.protocol)
      << " sport set " << v.port << "\n";
  s << "  }\n}\n";
  return applyNft(s.str(), "set up table ip ferry_host");
}

Result<uint64_t> NftHost::rewritten() {
  auto doc = listNft("list counter ip ferry_host rewritten");
  if (!doc) return doc.status();
  for (const auto& item : doc->value("nftables", nlohmann::json::array()))
    if (item.contains("counter")) return item["counter"].value("packets", uint64_t{0});
  return Status::notFound("counter rewritten");
}

Status NftHost::remove() { return applyNft("delete table ip ferry_host\n", "remove table ip ferry_host"); }

}  // namespace ferry::balancer
