#pragma once
// A real ferry-control process for tests, on loopback with a free port and its own
// state dir, and an HTTPS client of it that trusts only the provider CA it made.
// Header-only: include from tests that link ferry_control (Poco, OpenSSL).

#include <Poco/Net/Context.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/HTTPSClientSession.h>
#include <Poco/Net/RejectCertificateHandler.h>
#include <Poco/Net/SSLManager.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <map>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "test_util.h"

namespace ferry::testing {

// TLS clients in this test reject what the provider CA did not sign.
class SslEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    Poco::Net::initializeSSL();
    Poco::Net::Context::Ptr none =
        new Poco::Net::Context(Poco::Net::Context::TLS_CLIENT_USE, "", "", "", Poco::Net::Context::VERIFY_STRICT);
    Poco::Net::SSLManager::instance().initializeClient(nullptr, new Poco::Net::RejectCertificateHandler(false), none);
  }
  void TearDown() override { Poco::Net::uninitializeSSL(); }
};
inline auto* const kSslEnvironment = ::testing::AddGlobalTestEnvironment(new SslEnvironment);

inline std::string buildDir() {
  const char* d = std::getenv("FERRY_BUILD_DIR");
  return d ? d : "";
}

// Configuration lines for a Control: pings every second, dead after 3 of silence;
// heartbeats every second, a server silent for 3 is dead.
inline const char* const kFastTimers =
    "channel.ping_seconds = 1\nchannel.dead_seconds = 3\nserver.heartbeat_seconds = 1\nserver.stale_seconds = 3\n"
    "snapshots.hour_seconds = 1\nsnapshots.check_seconds = 1\n";  // an "hour" of a snapshot schedule: 1 s

// One ferry-control process; stops it (SIGTERM, then SIGKILL) when it goes.
class Control {
  using json = nlohmann::json;

 public:
  // extraConfig: more properties lines (e.g. "channel.ping_seconds = 1\n").
  Control(const std::string& dir, const std::string& dbUrl, const std::string& extraConfig = "") : dir_(dir) {
    std::ofstream(dir + "/control.properties") << "database = " << dbUrl << "\napi.host = 127.0.0.1\napi.port = 0\n"
                                               << "state.dir = " << dir << "/state\n"
                                               << "gateway.store = s3://ferry/{gateway}?endpoint=http://store:7480\n"
                                               << "channel.port = 0\ninternal.port = 0\n"
                                               << extraConfig;
  }
  ~Control() { stop(); }

  bool start() {
    size_t logStart = readFile(dir_ + "/control.log").size();  // a restart appends
    if (port_ > 0) {
      // A restart keeps the ports, as a real server's configuration does: gateways
      // reconnect to where they were.
      std::ofstream(dir_ + "/control.properties", std::ios::app)
          << "api.port = " << port_ << "\nchannel.port = " << channelPort_ << "\ninternal.port = " << internalPort_
          << "\n";
    }
    pid_ = fork();
    if (pid_ == 0) {
      // If the test process dies (a crash, a timeout), the server goes with it.
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      std::string log = dir_ + "/control.log";
      FILE* f = std::freopen(log.c_str(), "a", stdout);
      (void)f;
      dup2(fileno(stdout), STDERR_FILENO);
      std::string bin = buildDir() + "/server/ferry-control";
      std::string cfg = "--config=" + dir_ + "/control.properties";
      execl(bin.c_str(), bin.c_str(), cfg.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    static const std::regex kListening("API on https://127\\.0\\.0\\.1:([0-9]+)");
    for (int i = 0; i < 200; ++i) {
      std::smatch m;
      std::string log = readFile(dir_ + "/control.log").substr(logStart);
      if (std::regex_search(log, m, kListening)) {
        port_ = std::stoi(m[1]);
        static const std::regex kChannel("channel on wss://[0-9.]+:([0-9]+)/");
        if (std::regex_search(log, m, kChannel)) channelPort_ = std::stoi(m[1]);
        static const std::regex kCa("provider CA ([^ ,]+)");
        if (std::regex_search(log, m, kCa)) caPath_ = m[1];
        static const std::regex kInternal("internal endpoint https://[^:]+:([0-9]+)");
        if (std::regex_search(log, m, kInternal)) internalPort_ = std::stoi(m[1]);
        return true;
      }
      int status;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        exit_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        pid_ = -1;
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }
  void stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    for (int i = 0; i < 100; ++i) {
      int status;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  int exitCode() const { return exit_; }
  // A crash: SIGKILL, nothing cleaned up.
  void kill9() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  int port() const { return port_; }
  int channelPort() const { return channelPort_; }
  int internalPort() const { return internalPort_; }
  // The provider CA the server uses (its own, or tls.ca_dir's).
  std::string caPath() const { return caPath_.empty() ? dir_ + "/state/ca/ca.crt" : caPath_; }
  // A TLS client that trusts only the provider CA this server made.
  Poco::Net::Context::Ptr clientContext() {
    if (!client_) {
      client_ = new Poco::Net::Context(Poco::Net::Context::TLS_CLIENT_USE, "", "", caPath(),
                                       Poco::Net::Context::VERIFY_STRICT, 9, false);
    }
    return client_;
  }
  std::string log() const { return readFile(dir_ + "/control.log"); }

  struct Reply {
    int status = 0;
    json body;
    std::string text;
    std::map<std::string, std::string> headers;  // of the answer
  };
  Reply call(const std::string& method, const std::string& path, const std::string& body = "",
             const std::string& token = "", const std::vector<std::pair<std::string, std::string>>& headers = {}) {
    return callOn(port_, method, path, body, token, headers);
  }
  // The same on another of the server's ports (a VIP's host port).
  Reply callOn(int port, const std::string& method, const std::string& path, const std::string& body = "",
               const std::string& token = "", const std::vector<std::pair<std::string, std::string>>& headers = {}) {
    Poco::Net::HTTPSClientSession s("127.0.0.1", static_cast<Poco::UInt16>(port), clientContext());
    Poco::Net::HTTPRequest req(method, path, Poco::Net::HTTPMessage::HTTP_1_1);
    if (!token.empty()) req.set("Authorization", "Bearer " + token);
    for (const auto& [k, v] : headers) req.set(k, v);
    if (!body.empty() || method == "POST") {
      req.setContentType("application/json");
      req.setContentLength(static_cast<std::streamsize>(body.size()));
    }
    s.sendRequest(req) << body;
    Poco::Net::HTTPResponse resp;
    std::istream& in = s.receiveResponse(resp);
    std::stringstream text;
    text << in.rdbuf();
    Reply r;
    r.status = resp.getStatus();
    r.text = text.str();
    r.body = json::parse(r.text, nullptr, false);
    for (const auto& [k, v] : resp) r.headers[k] = v;
    return r;
  }

 private:
  std::string dir_;
  pid_t pid_ = -1;
  int port_ = 0;
  int channelPort_ = 0;
  int internalPort_ = 0;
  std::string caPath_;
  int exit_ = -1;
  Poco::Net::Context::Ptr client_;
};

}  // namespace ferry::testing
