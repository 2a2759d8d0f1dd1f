#include "host_egress.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <net/if.h>

#include <cerrno>

namespace ferry::balancer {

extern const unsigned char k_lb_host_object[];
extern const size_t k_lb_host_object_size;

namespace {
// Our filter's place on the clsact egress hook: a fixed handle and priority, so that a
// restarted daemon replaces its predecessor instead of stacking a second copy.
constexpr uint32_t kHandle = 0xfe77;
constexpr uint32_t kPriority = 1;

// Takes our filter (by handle and priority) off ifindex's egress hook; 0 or -errno.
int detachOurs(unsigned ifindex) {
  bpf_tc_hook hook{};
  hook.sz = sizeof hook;
  hook.ifindex = static_cast<int>(ifindex);
  hook.attach_point = BPF_TC_EGRESS;
  bpf_tc_opts to{};
  to.sz = sizeof to;
  to.handle = kHandle;
  to.priority = kPriority;
  return bpf_tc_detach(&hook, &to);
}
}  // namespace

HostEgress::HostEgress(HostOptions options) : opt_(std::move(options)) {}

HostEgress::~HostEgress() {
  // Deliberately left attached on destruction: only stop() removes the rewrite.
}

int HostEgress::programFd() const {
  bpf_program* prog = obj_ ? bpf_object__find_program_by_name(obj_.get(), "ferry_host_egress") : nullptr;
  return prog ? bpf_program__fd(prog) : -1;
}

int HostEgress::mapFd(const char* name) const { return obj_ ? balancer::mapFd(obj_.get(), name) : -1; }

Status HostEgress::start(const std::vector<ServiceConfig>& services, const std::vector<uint32_t>& nodes) {
  if (!opt_.interface.empty()) {
    ifindex_ = if_nametoindex(opt_.interface.c_str());
    if (ifindex_ == 0) return Status::invalid("no interface \"" + opt_.interface + "\" here");
    if (opt_.address == 0) return Status::invalid("the host's address is needed (--address)");
  }
  auto obj = openEmbedded(k_lb_host_object, k_lb_host_object_size, "lb_host");
  if (!obj) return obj.status();
  obj_ = std::move(obj.value());
  if (Status st = loadObject(obj_.get(), "lb_host"); !st) return st;
  int fd = mapFd("host_ports");
  for (const ServiceConfig& s : services) {
    lb_host_key key{opt_.address, htons(s.hostPort), s.protocol, 0};
    lb_host_target to{s.vip, htons(s.port), 0};
    if (bpf_map_update_elem(fd, &key, &to, BPF_ANY) != 0) return bpfError("program port " + s.name, errno);
  }
  int exemptFd = mapFd("exempt");
  for (uint32_t node : nodes) {
    uint32_t one = 1;
    if (bpf_map_update_elem(exemptFd, &node, &one, BPF_ANY) != 0) return bpfError("program node address", errno);
  }
  if (ifindex_ == 0) return Status::ok();

  bpf_tc_hook hook{};
  hook.sz = sizeof hook;
  hook.ifindex = static_cast<int>(ifindex_);
  hook.attach_point = BPF_TC_EGRESS;
  int rc = bpf_tc_hook_create(&hook);
  if (rc != 0 && rc != -EEXIST) return bpfError("create the clsact qdisc on " + opt_.interface, rc);
  bpf_tc_opts to{};
  to.sz = sizeof to;
  to.handle = kHandle;
  to.priority = kPriority;
  to.prog_fd = programFd();
  to.flags = BPF_TC_F_REPLACE;
  rc = bpf_tc_attach(&hook, &to);
  if (rc != 0) return bpfError("attach the egress rewrite to " + opt_.interface, rc);
  attached_ = true;
  return Status::ok();
}

Result<HostCounters> HostEgress::counters() {
  if (!obj_) return Status::invalid("the host rewrite is not started");
  HostCounters out{};
  auto r = readPerCpuCounter(mapFd("host_stats"), 0);
  if (!r) return r.status();
  auto i = readPerCpuCounter(mapFd("host_stats"), 1);
  if (!i) return i.status();
  out.replies = r.value();
  out.icmpErrors = i.value();
  return out;
}

Status HostEgress::removeFromInterface() {
  unsigned ifindex = if_nametoindex(opt_.interface.c_str());
  if (ifindex == 0) return Status::invalid("no interface \"" + opt_.interface + "\" here");
  int rc = detachOurs(ifindex);
  if (rc == -ENOENT || rc == -EINVAL) return Status::notFound("no egress rewrite on " + opt_.interface);
  if (rc != 0) return bpfError("detach the egress rewrite from " + opt_.interface, rc);
  return Status::ok();
}

void HostEgress::stop() {
  if (attached_) {
    detachOurs(ifindex_);
    attached_ = false;
  }
  obj_.reset();
}

}  // namespace ferry::balancer
