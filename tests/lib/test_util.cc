#include "test_util.h"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace ferry::testing {

namespace fs = std::filesystem;

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base ? base : "/tmp") + "/ferry-test-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (!::mkdtemp(buf.data())) throw std::runtime_error("mkdtemp failed");
  path_ = buf.data();
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

std::string pluginPath() {
  const char* p = std::getenv("FERRY_PLUGIN");
  return p ? p : "";
}

bool haveProgram(const std::string& name) {
  return runCommand("command -v " + name + " >/dev/null 2>&1") == 0;
}

std::string rgwDir() {
  const char* build = std::getenv("FERRY_BUILD_DIR");
  return std::string(build ? build : ".") + "/rgw";
}

std::string rgwEndpoint() {
  std::string endpoint = readFile(rgwDir() + "/endpoint");
  while (!endpoint.empty() && std::isspace(static_cast<unsigned char>(endpoint.back()))) endpoint.pop_back();
  return endpoint;
}

std::string testBucketName() {
  std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
  std::string bucket = "ferry-";
  for (char c : name.substr(0, 40)) {
    bucket += std::isalnum(static_cast<unsigned char>(c))
                  ? static_cast<char>(std::tolower(static_cast<unsigned char>(c)))
                  : '-';
  }
  return bucket + "-" + std::to_string(::getpid());
}

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int runCommand(const std::string& cmd, std::string* output) {
  std::string full = cmd + " 2>&1";
  if (output) output->clear();  // this command's output only
  FILE* p = ::popen(full.c_str(), "r");
  if (!p) return -1;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) {
    if (output) output->append(buf, n);
  }
  int st = ::pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

std::vector<uint8_t> randomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; i += 4) {
    uint32_t r = rng();
    std::memcpy(v.data() + i, &r, std::min<size_t>(4, n - i));
  }
  return v;
}

bool waitUntil(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (!cond()) {
    if (std::chrono::steady_clock::now() >= end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

std::vector<std::string> listFiles(const std::string& dir, const std::string& needle) {
  std::vector<std::string> out;
  std::error_code ec;
  if (!fs::exists(dir, ec)) return out;
  for (auto& e : fs::recursive_directory_iterator(dir, ec)) {
    if (e.is_regular_file() && e.path().string().find(needle) != std::string::npos) out.push_back(e.path());
  }
  return out;
}

std::string adminRequest(const std::string& socketPath, const std::string& request) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "";
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socketPath.c_str(), sizeof addr.sun_path - 1);
  std::string reply;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    std::string line = request + "\n";
    if (::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size())) {
      char c;
      while (::read(fd, &c, 1) == 1 && c != '\n') reply.push_back(c);
    }
  }
  ::close(fd);
  return reply;
}

Nbdkit::Nbdkit(std::string socketPath, std::vector<std::string> args, std::vector<std::string> filters)
    : socket_(std::move(socketPath)),
      args_(std::move(args)),
      filters_(std::move(filters)),
      logPath_(socket_ + ".log") {}

Nbdkit::~Nbdkit() {
  if (pid_ > 0) kill9();
}

namespace {

// Whether a process listens on the Unix socket at path: /proc/net/unix flags
// 00010000 (__SO_ACCEPTCON) on its line. Asking this way does not open a connection
// the server would log as a failed handshake.
bool unixSocketListening(const std::string& path) {
  std::istringstream in(readFile("/proc/net/unix"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.size() > path.size() && line.compare(line.size() - path.size(), path.size(), path) == 0 &&
        line[line.size() - path.size() - 1] == ' ' && line.find(" 00010000 ") != std::string::npos) {
      return true;
    }
  }
  return false;
}

}  // namespace

bool Nbdkit::start(int timeoutMs) {
  ::unlink(socket_.c_str());
  std::vector<std::string> argv = {"nbdkit", "-f", "-v", "--exit-with-parent", "-U", socket_};
  for (const auto& f : filters_) argv.push_back("--filter=" + f);
  argv.push_back(pluginPath());
  for (const auto& a : args_) argv.push_back(a);
  pid_ = ::fork();
  if (pid_ == 0) {
    // The sanitizer build preloads its runtime into the uninstrumented nbdkit.
    if (const char* pre = std::getenv("FERRY_NBDKIT_PRELOAD")) ::setenv("LD_PRELOAD", pre, 1);
    int fd = ::open(logPath_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    ::execvp("nbdkit", cargv.data());
    _exit(127);
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeoutMs);
  while (std::chrono::steady_clock::now() < deadline) {
    struct stat st;
    // The socket file appears at bind(); connections are refused until listen().
    if (::stat(socket_.c_str(), &st) == 0 && unixSocketListening(socket_)) return true;
    int status;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      exitStatus_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

bool Nbdkit::listening() const {
  return unixSocketListening(socket_);
}

int Nbdkit::stop(int timeoutMs) {
  if (pid_ <= 0) return -1;
  ::kill(pid_, SIGTERM);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeoutMs);
  int status = 0;
  // Under the sanitizer build an uninstrumented nbdkit with the ASan runtime preloaded
  // can deadlock in libc's exit handlers (p11-kit's destructor, after our cleanup has
  // finished). There, our own "stopped cleanly" line is the clean exit.
  bool preloaded = std::getenv("FERRY_NBDKIT_PRELOAD") != nullptr;
  std::chrono::steady_clock::time_point stoppedAt{};
  while (std::chrono::steady_clock::now() < deadline) {
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    if (preloaded && log().find("ferry: stopped cleanly") != std::string::npos) {
      if (stoppedAt == std::chrono::steady_clock::time_point{}) stoppedAt = std::chrono::steady_clock::now();
      if (std::chrono::steady_clock::now() - stoppedAt > std::chrono::seconds(3)) {
        kill9();
        return 0;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill9();
  return -1;
}

void Nbdkit::kill9() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
}

bool Nbdkit::running() {
  if (pid_ <= 0) return false;
  int status;
  if (::waitpid(pid_, &status, WNOHANG) == pid_) {
    pid_ = -1;
    return false;
  }
  return true;
}

std::string Nbdkit::log() const {
  return readFile(logPath_);
}

std::string Nbdkit::uri(const std::string& exportName) const {
  return "nbd+unix:///" + exportName + "?socket=" + socket_;
}

NbdClient::NbdClient() : h_(nbd_create()) {
  if (!h_) throw std::runtime_error(nbd_get_error());
}

NbdClient::~NbdClient() {
  if (h_) {
    nbd_shutdown(h_, 0);
    nbd_close(h_);
  }
}

bool NbdClient::connect(const std::string& socket, const std::string& exportName) {
  if (nbd_set_export_name(h_, exportName.c_str()) == -1) return false;
  return nbd_connect_unix(h_, socket.c_str()) == 0;
}

bool NbdClient::connectTcp(const std::string& host, int port, const std::string& exportName) {
  if (nbd_set_export_name(h_, exportName.c_str()) == -1) return false;
  return nbd_connect_tcp(h_, host.c_str(), std::to_string(port).c_str()) == 0;
}

int freeTcpPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  ::close(fd);
  return port;
}

std::string NbdClient::error() const {
  const char* e = nbd_get_error();
  return e ? e : "";
}

int64_t NbdClient::size() {
  return nbd_get_size(h_);
}

bool NbdClient::pread(void* buf, size_t count, uint64_t offset) {
  return nbd_pread(h_, buf, count, offset, 0) == 0;
}

bool NbdClient::pwrite(const void* buf, size_t count, uint64_t offset, bool fua) {
  return nbd_pwrite(h_, buf, count, offset, fua ? LIBNBD_CMD_FLAG_FUA : 0) == 0;
}

bool NbdClient::zero(size_t count, uint64_t offset) {
  return nbd_zero(h_, count, offset, 0) == 0;
}
bool NbdClient::trim(size_t count, uint64_t offset) {
  return nbd_trim(h_, count, offset, 0) == 0;
}
bool NbdClient::flush() {
  return nbd_flush(h_, 0) == 0;
}

}  // namespace ferry::testing

namespace ferry::testing {

std::string freshPostgresDatabase() {
  const char* build = std::getenv("FERRY_BUILD_DIR");
  if (!build) return "";
  std::string url = readFile(std::string(build) + "/pg/url");
  while (!url.empty() && (url.back() == '\n' || url.back() == ' ')) url.pop_back();
  if (url.rfind("postgresql:", 0) != 0) return "";
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = "t" + std::to_string(getpid()) + "_" + info->test_suite_name() + "_" + info->name();
  for (char& c : name) c = static_cast<char>(std::isalnum(static_cast<unsigned char>(c)) ? std::tolower(c) : '_');
  name = name.substr(0, 63);
  std::string conn = url.substr(11);
  std::string cmd = "psql -q '" + conn + "' -c 'DROP DATABASE IF EXISTS " + name + "' -c 'CREATE DATABASE " + name +
                    "' >/dev/null 2>&1";
  if (runCommand(cmd) != 0) return "";
  size_t at = conn.find("dbname=");
  if (at == std::string::npos) return "";
  size_t end = conn.find(' ', at);
  return "postgresql:" + conn.substr(0, at) + "dbname=" + name + (end == std::string::npos ? "" : conn.substr(end));
}

std::string controlDatabaseUrl(const std::string& backend, const TempDir& dir) {
  return backend == "sqlite" ? "sqlite://" + (dir / "control.db") : freshPostgresDatabase();
}

}  // namespace ferry::testing
