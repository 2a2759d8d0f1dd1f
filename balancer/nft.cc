#include "nft.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>

namespace ferry::balancer {

namespace {

// Runs a shell command, returns its exit code and everything it printed.
int run(const std::string& cmd, std::string& output) {
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return -1;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) output.append(buf, n);
  int rc = pclose(p);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

}  // namespace

bool haveNft() {
  std::string out;
  return run("nft --version", out) == 0;
}

Status applyNft(const std::string& script, const std::string& what) {
  char path[] = "/tmp/ferry-nft-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return Status::ioError("make a temporary file for nft");
  close(fd);
  {
    std::ofstream out(path);
    out << script;
    if (!out) {
      unlink(path);
      return Status::ioError("write the nft script");
    }
  }
  std::string output;
  int rc = run(std::string("nft -f ") + path, output);
  unlink(path);
  if (rc == 0) return Status::ok();
  if (output.size() > 2000) output = output.substr(0, 2000) + "…";
  if (rc == 127) return Status::unavailable(what + ": nft is not installed (apt-get install nftables)");
  return Status::unavailable(what + ": nft failed: " + output);
}

Result<nlohmann::json> listNft(const std::string& args) {
  std::string output;
  int rc = run("nft -j " + args, output);
  if (rc != 0) return Status::unavailable("nft -j " + args + ": " + output);
  auto doc = nlohmann::json::parse(output, nullptr, false);
  if (doc.is_discarded()) return Status::corruption("nft -j " + args + ": not JSON");
  return doc;
}

}  // namespace ferry::balancer
