#include "bpf_util.h"

#include <bpf/bpf.h>

#include <cerrno>
#include <cstdarg>
#include <cstring>
#include <mutex>

namespace ferry::balancer {

namespace {

// libbpf reports through one process-wide callback: keep the last lines it printed,
// so that a failed load can say why (the verifier's log, a missing capability).
std::mutex gLogMutex;
std::string gLog;

int keepLibbpfLog(libbpf_print_level level, const char* format, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  char line[1024];
  int n = vsnprintf(line, sizeof line, format, args);
  std::lock_guard<std::mutex> lock(gLogMutex);
  gLog += line;
  if (gLog.size() > 4096) gLog.erase(0, gLog.size() - 4096);
  return n;
}

void installLog() {
  static std::once_flag once;
  std::call_once(once, [] { libbpf_set_print(keepLibbpfLog); });
}

std::string takeLog() {
  std::lock_guard<std::mutex> lock(gLogMutex);
  std::string out;
  out.swap(gLog);
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

}  // namespace

Status bpfError(const std::string& what, int err) {
  if (err < 0) err = -err;
  std::string msg = what + ": " + std::strerror(err);
  if (err == EPERM) msg += " (needs root, or CAP_BPF and CAP_NET_ADMIN)";
  std::string log = takeLog();
  if (!log.empty()) msg += "\nlibbpf: " + log;
  if (err == EPERM || err == EACCES) return Status::denied(msg);
  return Status::unavailable(msg);
}

Result<BpfObject> openEmbedded(const unsigned char* bytes, size_t size, const std::string& name) {
  installLog();
  takeLog();
  bpf_object_open_opts opts{};
  opts.sz = sizeof opts;
  opts.object_name = name.c_str();
  bpf_object* obj = bpf_object__open_mem(bytes, size, &opts);
  if (!obj) return bpfError("open BPF object " + name, errno);
  return BpfObject(obj);
}

Status loadObject(bpf_object* obj, const std::string& name) {
  takeLog();
  int rc = bpf_object__load(obj);
  if (rc != 0) return bpfError("load BPF object " + name, rc);
  return Status::ok();
}

int mapFd(bpf_object* obj, const char* name) {
  bpf_map* map = bpf_object__find_map_by_name(obj, name);
  return map ? bpf_map__fd(map) : -1;
}

Result<lb_counter> readPerCpuCounter(int fd, uint32_t index) {
  int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) return bpfError("count CPUs", cpus);
  std::vector<lb_counter> values(static_cast<size_t>(cpus));
  if (bpf_map_lookup_elem(fd, &index, values.data()) != 0) return bpfError("read counters", errno);
  lb_counter sum{};
  for (const lb_counter& c : values) {
    sum.packets += c.packets;
    sum.bytes += c.bytes;
  }
  return sum;
}

}  // namespace ferry::balancer
