#pragma once
// A real ferry-agent process for tests: its own state dir, a free local-page port and
// NBD port, the built nbdkit plugin, the provider given. Header-only.

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <thread>

#include "control_process.h"
#include "test_util.h"

namespace ferry::testing {

class Agent {
  using json = nlohmann::json;

 public:
  // extraConfig: more properties lines.
  Agent(const std::string& dir, const Control& provider, const std::string& extraConfig = "")
      : dir_(dir), nbdPort_(freeTcpPort()) {
    std::ofstream(dir + "/agent.properties")
        << "state.dir = " << dir << "/state\n"
        << "provider.endpoint = https://localhost:" << provider.port() << "\n"
        << "provider.ca = " << provider.caPath() << "\n"
        << "page.host = 127.0.0.1\npage.port = 0\n"
        << "nbd.host = 127.0.0.1\nnbd.port = " << nbdPort_ << "\n"
        << "engine.plugin = " << pluginPath() << "\n"
        << "activation.poll_seconds = 1\n"
        << "channel.backoff_base_ms = 100\nchannel.backoff_cap_ms = 1000\n"
        << preload() << extraConfig;
  }
  ~Agent() { stop(); }

  bool start() {
    size_t logStart = readFile(dir_ + "/agent.log").size();
    pid_ = fork();
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      std::string log = dir_ + "/agent.log";
      FILE* f = std::freopen(log.c_str(), "a", stdout);
      (void)f;
      dup2(fileno(stdout), STDERR_FILENO);
      std::string bin = buildDir() + "/appliance/ferry-agent";
      std::string cfg = "--config=" + dir_ + "/agent.properties";
      execl(bin.c_str(), bin.c_str(), cfg.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    static const std::regex kPage("local page on http://127\\.0\\.0\\.1:([0-9]+)/");
    for (int i = 0; i < 200; ++i) {
      std::smatch m;
      std::string log = readFile(dir_ + "/agent.log").substr(logStart);
      if (std::regex_search(log, m, kPage)) {
        pagePort_ = std::stoi(m[1]);
        return true;
      }
      int status;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }
  // SIGTERM and wait (the engine uploads what is dirty); the exit status.
  int stop() {
    terminate();
    return waitExit();
  }
  // SIGTERM, without waiting.
  void terminate() {
    if (pid_ > 0) kill(pid_, SIGTERM);
  }
  // Waits (up to a minute) for the agent to exit; its exit status.
  int waitExit() {
    if (pid_ <= 0) return -1;
    int status = 0;
    for (int i = 0; i < 1200; ++i) {
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    kill9();
    return -1;
  }
  void kill9() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  // GET path on the local page: status and body.
  std::pair<int, std::string> page(const std::string& path) {
    Poco::Net::HTTPClientSession s("127.0.0.1", static_cast<Poco::UInt16>(pagePort_));
    s.setTimeout(Poco::Timespan(10, 0));
    Poco::Net::HTTPRequest req("GET", path, Poco::Net::HTTPMessage::HTTP_1_1);
    s.sendRequest(req);
    Poco::Net::HTTPResponse resp;
    std::stringstream text;
    text << s.receiveResponse(resp).rdbuf();
    std::string body = text.str();
    if (resp.has("Location")) body = resp.get("Location");
    return {resp.getStatus(), body};
  }
  json status() {
    try {
      return json::parse(page("/status.json").second, nullptr, false);
    } catch (const Poco::Exception&) {
      return json();
    }
  }
  // Waits until check(status) holds (at most seconds).
  template <typename F>
  bool waitFor(F check, int seconds = 30) {
    for (int i = 0; i < seconds * 10; ++i) {
      json st = status();
      if (st.is_object() && check(st)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }
  int nbdPort() const { return nbdPort_; }
  int pagePort() const { return pagePort_; }
  std::string stateDir() const { return dir_ + "/state"; }
  std::string log() const { return readFile(dir_ + "/agent.log") + readFile(dir_ + "/state/engine.log"); }
  // The pid of the volume engine the agent started last (from its log); 0 if none.
  pid_t enginePid() const {
    static const std::regex kStarted("volume engine started \\(pid ([0-9]+)");
    std::string text = log();
    pid_t pid = 0;
    for (std::sregex_iterator it(text.begin(), text.end(), kStarted), end; it != end; ++it) pid = std::stoi((*it)[1]);
    return pid;
  }

 private:
  // The sanitizer build's plugin needs its runtime preloaded into nbdkit.
  static std::string preload() {
    const char* p = std::getenv("FERRY_NBDKIT_PRELOAD");
    return p && *p ? "engine.environment = LD_PRELOAD=" + std::string(p) + "\n" : "";
  }

  std::string dir_;
  int nbdPort_;
  int pagePort_ = 0;
  pid_t pid_ = -1;
};

}  // namespace ferry::testing
