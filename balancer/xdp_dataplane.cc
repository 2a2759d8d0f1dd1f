#include "xdp_dataplane.h"

#include <bpf/bpf.h>
#include <linux/if_link.h>
#include <net/if.h>

#include <arpa/inet.h>
#include <unistd.h>

#include <cerrno>
#include <tuple>
#include <set>

namespace ferry::balancer {

extern const unsigned char k_lb_xdp_object[];
extern const size_t k_lb_xdp_object_size;

XdpDataplane::XdpDataplane(XdpOptions options) : opt_(std::move(options)) {}

XdpDataplane::~XdpDataplane() { stop(); }

Status XdpDataplane::start() {
  if (opt_.mode != "native" && opt_.mode != "generic")
    return Status::invalid("XDP mode must be native or generic, not \"" + opt_.mode + "\"");
  unsigned ifindex = 0;
  if (!opt_.interface.empty()) {
    ifindex = if_nametoindex(opt_.interface.c_str());
    if (ifindex == 0) return Status::invalid("no interface \"" + opt_.interface + "\" here");
    // The program asks the kernel's FIB for the next hop, which answers only where the
    // interface forwards.
    if (!ipv4Forwarding(opt_.interface))
      return Status::invalid("the XDP data plane forwards: set net.ipv4.conf." + opt_.interface +
                             ".forwarding = 1 (or net.ipv4.ip_forward = 1)");
  }
  auto obj = openEmbedded(k_lb_xdp_object, k_lb_xdp_object_size, "lb_xdp");
  if (!obj) return obj.status();
  obj_ = std::move(obj.value());
  bpf_map* flows = bpf_object__find_map_by_name(obj_.get(), "flows");
  if (!flows || bpf_map__set_max_entries(flows, opt_.flows) != 0) return Status::invalid("cannot size the flow table");
  if (Status st = loadObject(obj_.get(), "lb_xdp"); !st) return st;

  uint32_t zero = 0;
  lb_config cfg{opt_.seed, 0};
  if (bpf_map_update_elem(mapFd("config"), &zero, &cfg, BPF_ANY) != 0) return bpfError("set config", errno);
  // Until the first program(), every slot says "no backend".
  liveRing_.assign(LB_RING_SIZE, LB_NO_BACKEND);
  for (uint32_t half = 0; half < 2; ++half)
    if (Status st = writeRing(half, liveRing_); !st) return st;

  if (ifindex == 0) return Status::ok();
  bpf_link_create_opts lo{};
  lo.sz = sizeof lo;
  lo.flags = opt_.mode == "generic" ? XDP_FLAGS_SKB_MODE : XDP_FLAGS_DRV_MODE;
  int fd = bpf_link_create(programFd(), static_cast<int>(ifindex), BPF_XDP, &lo);
  if (fd < 0) {
    int err = errno;
    std::string hint = opt_.mode == "native" ? " (the driver may not support native XDP: try --xdp-mode=generic)"
                                             : "";
    if (err == EBUSY || err == EEXIST) hint = " (another XDP program is attached: detach it first)";
    return bpfError("attach XDP to " + opt_.interface + " in " + opt_.mode + " mode" + hint, err);
  }
  linkFd_ = fd;  // closing the link detaches the program
  return Status::ok();
}

int XdpDataplane::programFd() const {
  bpf_program* prog = obj_ ? bpf_object__find_program_by_name(obj_.get(), "ferry_lb") : nullptr;
  return prog ? bpf_program__fd(prog) : -1;
}

int XdpDataplane::mapFd(const char* name) const { return obj_ ? balancer::mapFd(obj_.get(), name) : -1; }

Status XdpDataplane::writeRing(uint32_t half, const std::vector<uint32_t>& ring) {
  if (ring.size() != LB_RING_SIZE) return Status::invalid("the ring must have " + std::to_string(LB_RING_SIZE) + " slots");
  std::vector<uint32_t> keys(LB_RING_SIZE);
  for (uint32_t i = 0; i < LB_RING_SIZE; ++i) keys[i] = half * LB_RING_SIZE + i;
  uint32_t count = LB_RING_SIZE;
  bpf_map_batch_opts bo{};
  bo.sz = sizeof bo;
  if (bpf_map_update_batch(mapFd("rings"), keys.data(), ring.data(), &count, &bo) != 0)
    return bpfError("write the Maglev ring", errno);
  return Status::ok();
}

Status XdpDataplane::program(const std::vector<ServiceConfig>& services, const std::vector<BackendState>& backends,
                             const std::vector<uint32_t>& ring) {
  if (!obj_) return Status::invalid("the XDP data plane is not started");
  if (backends.size() > LB_MAX_BACKENDS || services.size() > LB_MAX_SERVICES)
    return Status::invalid("too many services or backends");
  for (uint32_t slot : ring)
    if (slot != LB_NO_BACKEND && slot >= backends.size()) return Status::invalid("the ring names an unknown backend");

  // Services and VIP addresses: add or update what is listed, delete the rest.
  int svcFd = mapFd("services"), vipFd = mapFd("vip_addrs");
  std::set<std::tuple<uint32_t, uint16_t, uint8_t>> wanted;
  std::set<uint32_t> vips;
  for (uint32_t i = 0; i < services.size(); ++i) {
    const ServiceConfig& s = services[i];
    lb_service_key key{s.vip, htons(s.port), s.protocol, 0};
    lb_service value{i, htons(s.hostPort), 0};
    if (bpf_map_update_elem(svcFd, &key, &value, BPF_ANY) != 0) return bpfError("program service " + s.name, errno);
    uint32_t one = 1;
    if (bpf_map_update_elem(vipFd, &s.vip, &one, BPF_ANY) != 0) return bpfError("program VIP", errno);
    wanted.insert({s.vip, htons(s.port), s.protocol});
    vips.insert(s.vip);
  }
  for (const ServiceConfig& s : services_) {
    lb_service_key key{s.vip, htons(s.port), s.protocol, 0};
    if (!wanted.count({key.addr, key.port, key.proto})) bpf_map_delete_elem(svcFd, &key);
    if (!vips.count(s.vip)) bpf_map_delete_elem(vipFd, &s.vip);
  }
  services_ = services;

  // Backends that came up are marked first (nothing points at them yet), then the new
  // ring goes into the idle half and goes live, and only then are backends that went
  // down marked: until the flip, the live ring may still send packets to them.
  int beFd = mapFd("backends");
  auto mark = [&](bool upPass) -> Status {
    for (uint32_t i = 0; i < backends.size(); ++i) {
      if (backends[i].up != upPass) continue;
      lb_backend value{backends[i].address, backends[i].up ? 1u : 0u};
      if (bpf_map_update_elem(beFd, &i, &value, BPF_ANY) != 0) return bpfError("program backend", errno);
    }
    return Status::ok();
  };
  if (Status st = mark(true); !st) return st;
  if (ring != liveRing_) {
    uint32_t idle = 1 - liveHalf_;
    if (Status st = writeRing(idle, ring); !st) return st;
    uint32_t zero = 0;
    lb_config cfg{opt_.seed, idle};
    if (bpf_map_update_elem(mapFd("config"), &zero, &cfg, BPF_ANY) != 0) return bpfError("flip the ring", errno);
    liveHalf_ = idle;
    liveRing_ = ring;
  }
  if (Status st = mark(false); !st) return st;
  // Slots past the configured backends stay marked down.
  for (uint32_t i = static_cast<uint32_t>(backends.size()); i < backendCount_; ++i) {
    lb_backend value{0, 0};
    bpf_map_update_elem(beFd, &i, &value, BPF_ANY);
  }
  backendCount_ = backends.size();
  return Status::ok();
}

Result<DataplaneCounters> XdpDataplane::counters() {
  if (!obj_) return Status::invalid("the XDP data plane is not started");
  DataplaneCounters out;
  int fd = mapFd("verdicts");
  for (uint32_t v = 0; v < LB_V_COUNT; ++v) {
    auto c = readPerCpuCounter(fd, v);
    if (!c) return c.status();
    out.verdicts[v] = c.value();
  }
  fd = mapFd("service_stats");
  for (uint32_t i = 0; i < services_.size(); ++i) {
    auto c = readPerCpuCounter(fd, i);
    if (!c) return c.status();
    out.services.push_back(c.value());
  }
  fd = mapFd("backend_stats");
  for (uint32_t i = 0; i < backendCount_; ++i) {
    auto c = readPerCpuCounter(fd, i);
    if (!c) return c.status();
    out.backends.push_back(c.value());
  }
  return out;
}

void XdpDataplane::stop() {
  if (linkFd_ >= 0) {
    close(linkFd_);
    linkFd_ = -1;
  }
  obj_.reset();
}

}  // namespace ferry::balancer
