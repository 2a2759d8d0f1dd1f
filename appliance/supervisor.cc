#include "supervisor.h"

#include "child_process.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <iostream>

namespace ferry::agent {

pid_t Supervisor::spawn() {
  std::vector<std::string> argv = {cfg_.nbdkit,
                                   "-f",
                                   "--exit-with-parent",
                                   "-i",
                                   cfg_.host,
                                   "-p",
                                   std::to_string(cfg_.port),
                                   cfg_.plugin,
                                   "state=" + cfg_.stateDir,
                                   "store=" + cfg_.store,
                                   "admin-socket=" + adminSocket()};
  argv.insert(argv.end(), cfg_.extra.begin(), cfg_.extra.end());
  // nbdkit's own --exit-with-parent follows the agent, not the thread that started it.
  return spawnChild({argv, cfg_.environment, cfg_.logFile, /*parentDeathSignal=*/0});
}

Status Supervisor::start() {
  if (::mkdir(cfg_.stateDir.c_str(), 0700) != 0 && errno != EEXIST) {
    return Status::ioError("create " + cfg_.stateDir + ": " + std::strerror(errno));
  }
  if (cfg_.store.empty()) return Status::invalid("the volume engine needs an object store");
  // A directory store the provider named for this gateway: make it (the engine
  // refuses a missing one, which catches typos in hand-written configurations).
  if (cfg_.store.rfind("file://", 0) == 0) {
    std::string dir = cfg_.store.substr(7);
    for (size_t at = dir.find('/', 1);; at = dir.find('/', at + 1)) {
      std::string part = dir.substr(0, at);
      if (!part.empty() && ::mkdir(part.c_str(), 0700) != 0 && errno != EEXIST) {
        return Status::ioError("create the store directory " + part + ": " + std::strerror(errno));
      }
      if (at == std::string::npos) break;
    }
  }
  thread_ = std::thread([this] { watch(); });
  return Status::ok();
}

void Supervisor::watch() {
  int pause = 1;
  for (;;) {
    {
      std::lock_guard<std::mutex> l(mutex_);
      if (stopping_) return;
      pid_ = spawn();
    }
    if (pid_ <= 0) {  // fork failed: waitpid(-1) would reap someone else's child
      pid_ = 0;
      std::cerr << "ferry-agent: cannot start the volume engine (fork failed); trying again in " << pause << " s\n";
      std::unique_lock<std::mutex> l(mutex_);
      wake_.wait_for(l, std::chrono::seconds(pause), [this] { return stopping_; });
      pause = std::min(pause * 2, 60);
      continue;
    }
    std::cerr << "ferry-agent: volume engine started (pid " << pid_ << ", NBD on " << cfg_.host << ":" << cfg_.port
              << ")\n";
    auto started = std::chrono::steady_clock::now();
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = 0;
    std::unique_lock<std::mutex> l(mutex_);
    if (stopping_) return;
    std::cerr << "ferry-agent: volume engine exited ("
              << (WIFEXITED(status) ? "status " + std::to_string(WEXITSTATUS(status))
                                    : "signal " + std::to_string(WTERMSIG(status)))
              << "); restarting in " << pause << " s\n";
    ++restarts_;
    // A run that lasted a while resets the pause; quick deaths back off to a minute.
    if (std::chrono::steady_clock::now() - started > std::chrono::minutes(1)) pause = 1;
    wake_.wait_for(l, std::chrono::seconds(pause), [this] { return stopping_; });
    pause = std::min(pause * 2, 60);
  }
}

void Supervisor::stop() {
  {
    std::lock_guard<std::mutex> l(mutex_);
    if (stopping_ || !thread_.joinable()) return;
    stopping_ = true;
    wake_.notify_all();
  }
  pid_t pid = pid_;
  if (pid > 0) {
    ::kill(pid, SIGTERM);  // the engine uploads what is dirty, then exits
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(cfg_.stopSeconds);
    while (pid_ > 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (pid_ > 0) ::kill(pid, SIGKILL);
  }
  thread_.join();
}

}  // namespace ferry::agent
