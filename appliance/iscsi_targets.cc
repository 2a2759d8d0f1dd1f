#include "iscsi_targets.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "activation.h"  // writeFileAtomically
#include "child_process.h"

namespace ferry::agent {

using json = nlohmann::json;

namespace {

constexpr int kFuseReadySeconds = 15;

bool isMountPoint(const std::string& dir) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, dev, root, mountPoint;
    fields >> id >> parent >> dev >> root >> mountPoint;
    if (mountPoint == dir) return true;
  }
  return false;
}

std::string tail(const std::string& file, size_t bytes = 400) {
  std::ifstream in(file);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!all.empty() && all.back() == '\n') all.pop_back();
  return all.size() > bytes ? all.substr(all.size() - bytes) : all;
}

// tgtadm --op show --mode target: "Target 1: iqn…", then under "I_T nexus
// information:" lines "Initiator: NAME alias: A" and "IP Address: ADDR".
std::map<int, json> parseInitiators(const std::string& show) {
  std::map<int, json> out;
  std::istringstream in(show);
  std::string line;
  int tid = 0;
  while (std::getline(in, line)) {
    size_t start = line.find_first_not_of(' ');
    if (start == std::string::npos) continue;
    std::string l = line.substr(start);
    if (start == 0 && l.rfind("Target ", 0) == 0) {
      tid = std::atoi(l.c_str() + 7);
      out[tid] = json::array();
    } else if (tid > 0 && l.rfind("Initiator: ", 0) == 0) {
      std::string name = l.substr(11);
      size_t alias = name.find(" alias:");
      if (alias != std::string::npos) name.resize(alias);
      out[tid].push_back({{"name", name}, {"address", ""}});
    } else if (tid > 0 && l.rfind("IP Address: ", 0) == 0 && !out[tid].empty()) {
      out[tid].back()["address"] = l.substr(12);
    }
  }
  return out;
}

}  // namespace

std::string IscsiTargets::targetName(const std::string& volume) const {
  std::string name = volume;
  for (char& c : name) c = c == '_' ? '-' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return cfg_.iqnPrefix + ":" + name;
}

Status IscsiTargets::load() {
  if (!cfg_.enabled) return Status::ok();
  std::error_code ec;
  std::filesystem::create_directories(cfg_.dir + "/mnt", ec);
  if (ec) return Status::ioError("create " + cfg_.dir + "/mnt: " + ec.message());
  // A CHAP file that cannot be read leaves every target unserved (serving them without
  // their CHAP would open them to anyone) until an operator mends it; NBD goes on.
  std::string chapPath = cfg_.dir + "/chap.json";
  std::ifstream in(chapPath);
  if (!in && errno != ENOENT) {
    loadError_ = "cannot read " + chapPath + ": " + std::strerror(errno) + "; iSCSI is off until it is mended";
  }
  if (in) {
    json j = json::parse(in, nullptr, false);
    if (!j.is_object()) {
      loadError_ = cfg_.dir + "/chap.json is not a JSON object; iSCSI is off until it is mended";
    } else {
      for (const auto& [volume, setting] : j.items()) {
        auto c = chapFromJson(setting);
        if (!c) {
          loadError_ = c.status().withContext(cfg_.dir + "/chap.json, volume " + volume).message() +
                       "; iSCSI is off until it is mended";
          break;
        }
        chap_[volume] = c.value();
      }
    }
    if (!loadError_.empty()) std::cerr << "ferry-agent: iscsi: " << loadError_ << "\n";
  }
  // A tgtd a killed agent left: ours by its pid file, if it is still a tgtd on our
  // control port.
  std::ifstream pidFile(cfg_.dir + "/tgtd.pid");
  pid_t old = 0;
  if (pidFile >> old && old > 0) {
    std::ifstream cmdline("/proc/" + std::to_string(old) + "/cmdline");
    std::string args((std::istreambuf_iterator<char>(cmdline)), std::istreambuf_iterator<char>());
    std::string ours = std::string("-C") + '\0' + std::to_string(cfg_.controlPort) + '\0';
    if (args.find("tgtd") != std::string::npos && args.find(ours) != std::string::npos) {
      ::kill(old, SIGKILL);
      for (int i = 0; i < 100 && ::kill(old, 0) == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  // Mounts a killed nbdfuse left ("transport endpoint is not connected").
  for (const auto& e : std::filesystem::directory_iterator(cfg_.dir + "/mnt", ec)) {
    std::string dir = e.path().string();
    if (isMountPoint(dir)) (void)runCommand({cfg_.fusermount, "-u", "-z", dir}, 10);
  }
  return Status::ok();
}

void IscsiTargets::start() {
  if (!cfg_.enabled || thread_.joinable()) return;
  thread_ = std::thread([this] { loop(); });
}

void IscsiTargets::stop() {
  if (stopping_.exchange(true) || !thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> l(mu_);  // a waiter between its check and its wait sees it
  }
  wake_.notify_all();
  thread_.join();
}

void IscsiTargets::loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    uint64_t round = asked_;
    try {
      reconcileLocked();
    } catch (const std::exception& e) {  // a malformed answer must not take the agent down
      std::cerr << "ferry-agent: iscsi: round failed: " << e.what() << "\n";
    }
    {
      json now = statusLocked();
      std::lock_guard<std::mutex> l(statusMu_);
      status_ = std::move(now);
    }
    done_ = round;
    wake_.notify_all();
    wake_.wait_for(lock, std::chrono::seconds(cfg_.checkSeconds), [this] { return stopping_ || asked_ > done_; });
  }
  // Targets first (initiators see the LUN go), then the mounts, then tgtd.
  for (auto& [volume, s] : served_) unserveLocked(volume, s);
  served_.clear();
  if (tgtd_ > 0) {
    // tgtd ignores SIGTERM; this is its way out.
    (void)tgtadm({"--op", "delete", "--mode", "system"});
    stopChild(tgtd_, 5);
  }
  tgtd_ = 0;
}

Status IscsiTargets::waitRound(std::unique_lock<std::mutex>& lock) {
  if (!thread_.joinable()) return Status::unavailable("iSCSI is not running on this gateway");
  uint64_t want = ++asked_;
  wake_.notify_all();
  if (!wake_.wait_for(lock, std::chrono::seconds(120), [&] { return stopping_ || done_ >= want; })) {
    return Status::unavailable("iSCSI targets did not settle in 120 s");
  }
  if (stopping_) return Status::unavailable("the agent is stopping");
  return Status::ok();
}

Status IscsiTargets::ensure(const std::string& volume) {
  if (!cfg_.enabled) return Status::ok();
  std::unique_lock<std::mutex> lock(mu_);
  if (Status s = waitRound(lock); !s) return s;
  auto it = served_.find(volume);
  if (it == served_.end()) return Status::unavailable(tgtdError_.empty() ? "volume " + volume + " is not served over iSCSI" : tgtdError_);
  if (!it->second.error.empty()) return Status::unavailable(it->second.error);
  return Status::ok();
}

Status IscsiTargets::withdraw(const std::string& volume) {
  if (!cfg_.enabled) return Status::ok();
  std::unique_lock<std::mutex> lock(mu_);
  withdrawn_.insert(volume);
  if (Status s = waitRound(lock); !s) return s;
  if (served_.count(volume)) return Status::busy("volume " + volume + " is still an iSCSI target");
  return Status::ok();
}

void IscsiTargets::restore(const std::string& volume, bool deleted) {
  if (!cfg_.enabled) return;
  std::lock_guard<std::mutex> l(mu_);
  withdrawn_.erase(volume);
  if (deleted && chap_.erase(volume)) {
    if (Status s = saveChapLocked(); !s) std::cerr << "ferry-agent: iscsi: " << s.toString() << "\n";
  }
  ++asked_;
  wake_.notify_all();
}

Status IscsiTargets::setChap(const std::string& volume, const ChapSetting& chap) {
  if (!cfg_.enabled) return Status::invalid("this gateway does not serve iSCSI (iscsi.enabled is off)");
  std::unique_lock<std::mutex> lock(mu_);
  if (!loadError_.empty()) return Status::unavailable(loadError_);
  // tgtd's accounts are per daemon: one user name has one secret on the gateway.
  for (const auto& [other, c] : chap_) {
    if (other == volume) continue;
    for (const auto& [user, secret] : {std::pair{chap.initiatorUser, chap.initiatorSecret},
                                       std::pair{chap.targetUser, chap.targetSecret}}) {
      if (user.empty()) continue;
      if ((user == c.initiatorUser && secret != c.initiatorSecret) || (user == c.targetUser && secret != c.targetSecret)) {
        return Status::invalid("CHAP user " + user + " is already used by volume " + other +
                               " with another secret; use another user name or the same secret");
      }
    }
  }
  if (chap.initiatorUser.empty()) {
    chap_.erase(volume);
  } else {
    chap_[volume] = chap;
  }
  if (Status s = saveChapLocked(); !s) return s;
  if (Status s = waitRound(lock); !s) return s;
  auto it = served_.find(volume);
  if (it != served_.end() && !it->second.error.empty()) return Status::unavailable(it->second.error);
  return Status::ok();
}

Status IscsiTargets::saveChapLocked() {
  json j = json::object();
  for (const auto& [volume, c] : chap_) j[volume] = chapToJson(c);
  return writeFileAtomically(cfg_.dir + "/chap.json", j.dump(2) + "\n", 0600);
}

Result<std::string> IscsiTargets::tgtadm(std::vector<std::string> args) {
  std::vector<std::string> argv = {cfg_.tgtadm, "-C", std::to_string(cfg_.controlPort), "--lld", "iscsi"};
  argv.insert(argv.end(), args.begin(), args.end());
  return runCommand(argv, 30);
}

Status IscsiTargets::ensureTgtdLocked() {
  if (tgtd_ > 0 && !childExited(tgtd_)) return Status::ok();
  if (tgtd_ > 0) std::cerr << "ferry-agent: iscsi: tgtd exited; starting it again\n";
  tgtd_ = 0;
  // Its targets went with it; the mounts stay and are served again.
  for (auto& [volume, s] : served_) {
    s.tid = 0;
    s.open = false;
    s.chap = {};
  }
  accounts_.clear();
  std::string log = cfg_.dir + "/tgtd.log";
  tgtd_ = spawnChild(
      {{cfg_.tgtd, "-f", "-C", std::to_string(cfg_.controlPort), "--iscsi", "portal=" + cfg_.portal}, {}, log, SIGKILL});
  if (tgtd_ <= 0) return Status::ioError("cannot start tgtd: " + std::string(std::strerror(errno)));
  // tgtd writes no pid file in the foreground: ours, for load() after a crash.
  std::ofstream(cfg_.dir + "/tgtd.pid", std::ios::trunc) << tgtd_ << "\n";
  for (int i = 0; i < 100; ++i) {
    if (childExited(tgtd_)) {
      tgtd_ = 0;
      return Status::unavailable("tgtd exited at start (portal " + cfg_.portal + ", control port " +
                                 std::to_string(cfg_.controlPort) + "): " + tail(log));
    }
    if (tgtadm({"--op", "show", "--mode", "sys"})) return Status::ok();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return Status::unavailable("tgtd does not answer on control port " + std::to_string(cfg_.controlPort));
}

void IscsiTargets::reconcileLocked() {
  // Withdrawn volumes go first, even when tgtd is down: their nbdfuse holds the NBD
  // connection the engine's delete waits for.
  for (auto it = served_.begin(); it != served_.end();) {
    if (!withdrawn_.count(it->first)) {
      ++it;
      continue;
    }
    unserveLocked(it->first, it->second);
    it = served_.erase(it);
  }
  if (!loadError_.empty()) {
    tgtdError_ = loadError_;
    return;
  }
  if (Status s = ensureTgtdLocked(); !s) {
    if (tgtdError_ != s.message()) std::cerr << "ferry-agent: iscsi: " << s.message() << "\n";
    tgtdError_ = s.message();
    return;
  }
  tgtdError_.clear();
  auto engine = list_();
  if (!engine) return;  // the engine is (re)starting: keep what is served
  std::set<std::string> wanted;
  for (const auto& v : engine.value().volumes) {
    if (!withdrawn_.count(v)) wanted.insert(v);
  }
  bool engineRestarted = engineGeneration_ != -1 && engineGeneration_ != engine.value().generation;
  engineGeneration_ = engine.value().generation;
  if (engineRestarted) {
    // I/O that was in flight to the dead engine holds tgtd's LUNs ("still active"):
    // tgtd goes too (initiators log in again), every nbdfuse is replaced.
    std::cerr << "ferry-agent: iscsi: the engine restarted; serving every volume again\n";
    if (tgtd_ > 0) {
      ::kill(tgtd_, SIGKILL);
      stopChild(tgtd_, 5);
    }
    tgtd_ = 0;
    for (auto& [volume, s] : served_) {
      s.tid = 0;
      unserveLocked(volume, s);
    }
    if (Status st = ensureTgtdLocked(); !st) {
      tgtdError_ = st.message();
      return;
    }
  }
  for (auto it = served_.begin(); it != served_.end();) {
    // Gone from the engine, withdrawn, or its nbdfuse died (the LUN's file is dead).
    bool exited = it->second.fuse > 0 && childExited(it->second.fuse);
    bool fuseDied = exited;
    if (exited) {
      it->second.fuse = 0;
      std::cerr << "ferry-agent: iscsi: nbdfuse of " << it->first << " exited; serving it again\n";
    }
    if (!wanted.count(it->first) || fuseDied) {
      unserveLocked(it->first, it->second);
      if (!wanted.count(it->first)) {
        it = served_.erase(it);
        continue;
      }
    }
    ++it;
  }
  for (const auto& v : wanted) {
    if (stopping_) return;
    Served& s = served_[v];
    Status st = Status::ok();
    for (const auto& [other, o] : served_) {
      if (other != v && o.tid > 0 && targetName(other) == targetName(v)) {
        st = Status::invalid("volume " + other + " is already the target " + targetName(v) +
                             " (iSCSI names are lower case, '_' as '-')");
      }
    }
    ChapSetting want;
    if (auto c = chap_.find(v); c != chap_.end()) want = c->second;
    // New CHAP: the target is made again, so that no session outlives the old setting.
    if (st && s.tid > 0 && s.chap != want) dropTargetLocked(s);
    if (st) st = serveLocked(v, s);
    if (st) st = applyChapLocked(v, s);
    if (st) st = openLocked(s);
    // Never left open without its CHAP: a target that could not be finished goes.
    if (!st && s.tid > 0 && !s.open) dropTargetLocked(s);
    if (!st && s.error != st.message()) std::cerr << "ferry-agent: iscsi: " << v << ": " << st.message() << "\n";
    s.error = st ? "" : st.message();
  }
  // Accounts no target wants any more.
  std::set<std::string> users;
  for (const auto& [v, s] : served_) {
    if (!s.chap.initiatorUser.empty()) users.insert(s.chap.initiatorUser);
    if (!s.chap.targetUser.empty()) users.insert(s.chap.targetUser);
  }
  for (auto it = accounts_.begin(); it != accounts_.end();) {
    if (users.count(it->first)) {
      ++it;
      continue;
    }
    (void)tgtadm({"--op", "delete", "--mode", "account", "--user", it->first});
    it = accounts_.erase(it);
  }
  refreshInitiatorsLocked();
  reportLocked();
}

Status IscsiTargets::serveLocked(const std::string& volume, Served& s) {
  std::string dir = mountDir(volume), file = dir + "/disk";
  if (s.fuse <= 0) {
    std::error_code ec;
    if (isMountPoint(dir)) (void)runCommand({cfg_.fusermount, "-u", "-z", dir}, 10);
    std::filesystem::create_directories(dir, ec);
    if (ec) return Status::ioError("create " + dir + ": " + ec.message());
    std::string uri = "nbd://" + cfg_.nbdHost + ":" + std::to_string(cfg_.nbdPort) + "/" + volume;
    std::string log = cfg_.dir + "/nbdfuse-" + volume + ".log";
    s.fuse = spawnChild({{cfg_.nbdfuse, file, uri}, {}, log, SIGTERM});
    if (s.fuse <= 0) {
      s.fuse = 0;
      return Status::ioError("cannot start nbdfuse: " + std::string(std::strerror(errno)));
    }
    bool ready = false;
    for (int i = 0; i < kFuseReadySeconds * 20 && !ready; ++i) {
      if (childExited(s.fuse)) {
        s.fuse = 0;
        return Status::unavailable("nbdfuse for " + uri + " exited: " + tail(log));
      }
      struct stat st;
      ready = ::stat(file.c_str(), &st) == 0 && st.st_size > 0;
      if (!ready) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (!ready) {
      stopChild(s.fuse, 5);
      s.fuse = 0;
      return Status::unavailable("nbdfuse did not show " + uri + " in " + std::to_string(kFuseReadySeconds) + " s");
    }
  }
  if (s.tid > 0) return Status::ok();
  int tid = 1;
  for (bool taken = true; taken; ++tid) {
    taken = false;
    for (const auto& [v, other] : served_) taken = taken || other.tid == tid;
    if (!taken) break;
  }
  // A target left by a round that failed half-way is made again.
  (void)tgtadm({"--op", "delete", "--mode", "target", "--tid", std::to_string(tid), "--force"});
  // Thin provisioning (UNMAP → NBD TRIM) stays off: with it on, tgt 1.0.85 answers the
  // 16-byte READ/WRITE/VERIFY commands wrongly once GET LBA STATUS has run in a session
  // (27 iscsi-test-cu failures instead of 7; docs/iscsi.md).
  std::string product = volume.substr(0, 16);
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"--op", "new", "--mode", "target", "--tid", std::to_string(tid), "-T", targetName(volume)},
           // O_DIRECT: no page cache between tgtd and nbdfuse, so what NBD clients
           // write is what iSCSI initiators read next (tgtd keeps the file open).
           {"--op", "new", "--mode", "logicalunit", "--tid", std::to_string(tid), "--lun", "1", "--bstype", "rdwr",
            "--bsoflags", "direct", "-b", file},
           {"--op", "update", "--mode", "logicalunit", "--tid", std::to_string(tid), "--lun", "1", "--params",
            "vendor_id=FERRY,product_id=" + product}}) {
    if (auto r = tgtadm(args); !r) {
      (void)tgtadm({"--op", "delete", "--mode", "target", "--tid", std::to_string(tid), "--force"});
      return r.status();
    }
  }
  s.tid = tid;
  s.open = false;
  s.chap = {};
  std::cerr << "ferry-agent: iscsi: serving " << volume << " as " << targetName(volume) << " (tid " << tid << ")\n";
  return Status::ok();
}

Status IscsiTargets::openLocked(Served& s) {
  if (s.open) return Status::ok();
  auto r = tgtadm({"--op", "bind", "--mode", "target", "--tid", std::to_string(s.tid), "-I", "ALL"});
  if (!r) return r.status();
  s.open = true;
  return Status::ok();
}

void IscsiTargets::dropTargetLocked(Served& s) {
  if (s.tid > 0) {
    // --force: sessions logged in are cut off.
    if (auto r = tgtadm({"--op", "delete", "--mode", "target", "--tid", std::to_string(s.tid), "--force"}); !r) {
      std::cerr << "ferry-agent: iscsi: " << r.status().message() << "\n";
    }
  }
  s.tid = 0;
  s.open = false;
  s.chap = {};
}

void IscsiTargets::unserveLocked(const std::string& volume, Served& s) {
  dropTargetLocked(s);
  if (s.fuse > 0) {
    // Unmounting ends nbdfuse, which has nothing of its own to flush: every write it
    // took is in the engine.
    (void)runCommand({cfg_.fusermount, "-u", mountDir(volume)}, 10);
    if (!stopChild(s.fuse, 10)) std::cerr << "ferry-agent: iscsi: nbdfuse of " << volume << " had to be killed\n";
    s.fuse = 0;
  }
  if (isMountPoint(mountDir(volume))) (void)runCommand({cfg_.fusermount, "-u", "-z", mountDir(volume)}, 10);
  s.initiators = json::array();
}

Status IscsiTargets::applyChapLocked(const std::string& volume, Served& s) {
  ChapSetting want;
  if (auto it = chap_.find(volume); it != chap_.end()) want = it->second;
  if (want == s.chap) return Status::ok();
  // A target whose CHAP changes is made again (reconcileLocked), so it arrives here
  // with nothing bound.
  std::string tid = std::to_string(s.tid);
  auto account = [&](const std::string& user, const std::string& secret) -> Status {
    auto it = accounts_.find(user);
    if (it != accounts_.end() && it->second == secret) return Status::ok();
    if (it != accounts_.end()) {
      (void)tgtadm({"--op", "delete", "--mode", "account", "--user", user});
      accounts_.erase(it);
    }
    if (auto r = tgtadm({"--op", "new", "--mode", "account", "--user", user, "--password", secret}); !r) {
      // Not r's message: it quotes tgtadm's command line, which holds the secret.
      return Status::ioError("tgtadm refused to make the CHAP account " + user);
    }
    accounts_[user] = secret;
    return Status::ok();
  };
  if (!want.initiatorUser.empty()) {
    if (Status st = account(want.initiatorUser, want.initiatorSecret); !st) return st;
    if (auto r = tgtadm({"--op", "bind", "--mode", "account", "--tid", tid, "--user", want.initiatorUser}); !r) {
      return r.status();
    }
  }
  if (!want.targetUser.empty()) {
    if (Status st = account(want.targetUser, want.targetSecret); !st) return st;
    if (auto r = tgtadm({"--op", "bind", "--mode", "account", "--tid", tid, "--user", want.targetUser, "--outgoing"});
        !r) {
      return r.status();
    }
  }
  s.chap = want;
  std::cerr << "ferry-agent: iscsi: " << volume << ": CHAP "
            << (want.initiatorUser.empty() ? "off" : want.targetUser.empty() ? "on" : "on, mutual") << "\n";
  return Status::ok();
}

void IscsiTargets::refreshInitiatorsLocked() {
  auto show = tgtadm({"--op", "show", "--mode", "target"});
  if (!show) return;
  auto byTid = parseInitiators(show.value());
  for (auto& [volume, s] : served_) {
    auto it = byTid.find(s.tid);
    s.initiators = it == byTid.end() ? json::array() : it->second;
  }
}

json IscsiTargets::status() {
  std::lock_guard<std::mutex> l(statusMu_);
  return status_.is_null() ? json{{"enabled", cfg_.enabled}, {"portal", cfg_.portal}, {"error", ""},
                                  {"targets", json::array()}}
                           : status_;
}

json IscsiTargets::statusLocked() const {
  json out = {{"enabled", cfg_.enabled}, {"portal", cfg_.portal}, {"error", tgtdError_}, {"targets", json::array()}};
  for (const auto& [volume, s] : served_) {
    out["targets"].push_back({{"volume", volume},
                              {"target", targetName(volume)},
                              {"state", s.open && s.error.empty() ? "ready" : "error"},
                              {"error", s.error},
                              {"chap", chapPublicJson(s.chap)},
                              {"initiators", s.initiators}});
  }
  return out;
}

void IscsiTargets::reportLocked() {
  json volumes = json::array();
  for (const auto& [volume, s] : served_) {
    volumes.push_back({{"name", volume},
                       {"target", targetName(volume)},
                       {"state", s.open && s.error.empty() ? "ready" : "error"},
                       {"error", s.error},
                       {"initiators", s.initiators}});
  }
  // Sent when it changes, and again every 12 rounds (a minute by default): a frame
  // the channel took may still have been lost.
  if (++roundsSinceReport_ >= 12) reported_ = nullptr;
  if (volumes == reported_ || !report_) return;
  json frame = {{"report", "iscsi"}, {"at", static_cast<int64_t>(::time(nullptr))}, {"volumes", volumes}};
  if (report_(frame.dump())) {
    reported_ = volumes;
    roundsSinceReport_ = 0;
  }
}

}  // namespace ferry::agent
