#pragma once
// The engine's admin interface for ferry-agent: a Unix socket (default
// STATE/admin.sock, mode 0600) speaking one JSON object per line each way.
// Requests and answers are specified in docs/admin.md.

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "ferry/fd.h"
#include "ferry/status.h"

namespace ferry {

class Engine;

// Answers one request line; pure function of the engine, unit-testable without a socket.
std::string handleAdminRequest(Engine& engine, const std::string& line);

class AdminServer {
 public:
  AdminServer(Engine& engine, std::string path) : engine_(engine), path_(std::move(path)) {}
  ~AdminServer() { stop(); }

  Status start();
  void stop();
  const std::string& path() const { return path_; }

 private:
  void acceptLoop();
  void serve(int fd);

  Engine& engine_;
  const std::string path_;
  UniqueFd listen_;
  int wakePipe_[2] = {-1, -1};
  std::thread acceptor_;
  std::atomic<bool> stopping_{false};
  std::mutex clientsMu_;
  std::vector<std::thread> clients_;
};

}  // namespace ferry
