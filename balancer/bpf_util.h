#pragma once
// What the XDP and tc loaders share: opening an embedded BPF object with libbpf's
// messages kept for the error (the verifier's log says why a load failed), and reading
// per-CPU counters.

#include <bpf/libbpf.h>

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "bpf/lb_shared.h"
#include "ferry/status.h"

namespace ferry::balancer {

struct BpfObjectDeleter {
  void operator()(bpf_object* obj) const { bpf_object__close(obj); }
};
using BpfObject = std::unique_ptr<bpf_object, BpfObjectDeleter>;

// Opens the embedded object (named for messages); nothing is loaded yet.
Result<BpfObject> openEmbedded(const unsigned char* bytes, size_t size, const std::string& name);
// Loads it into the kernel: a failure carries libbpf's last words.
Status loadObject(bpf_object* obj, const std::string& name);
// The fd of a map the object defines, or -1.
int mapFd(bpf_object* obj, const char* name);

// Sums a per-CPU array of lb_counter at index over every possible CPU.
Result<lb_counter> readPerCpuCounter(int fd, uint32_t index);

// "what: strerror(err)" for a libbpf or bpf() failure (-err or errno).
Status bpfError(const std::string& what, int err);

}  // namespace ferry::balancer
