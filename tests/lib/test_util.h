#pragma once
// Helpers for tests that run real processes: temporary directories, an nbdkit server
// with the ferry plugin on a Unix socket, and libnbd connections to it.

#include <libnbd.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace ferry::testing {

// mkdtemp directory, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::string pluginPath();  // $FERRY_PLUGIN, the built nbdkit-ferry-plugin.so
bool haveProgram(const std::string& name);
std::string readFile(const std::string& path);
// Runs a shell command, returns its exit status and (optionally) its output.
int runCommand(const std::string& cmd, std::string* output = nullptr);
// The "pg" fixture's PostgreSQL: a new, empty database named after the running test,
// and its URL for ferry-control ("postgresql:host=… dbname=…"); "" without the fixture.
std::string freshPostgresDatabase();
// The database URL for a control-server test parametrized by backend: "sqlite" (a
// file in dir) or "postgres" (freshPostgresDatabase(); "" without the fixture).
std::string controlDatabaseUrl(const std::string& backend, const TempDir& dir);
// The "rgw" fixture's radosgw: the directory it runs in ($FERRY_BUILD_DIR/rgw), and its
// endpoint ("http://127.0.0.1:PORT"; "" without the fixture).
std::string rgwDir();
std::string rgwEndpoint();
// A bucket of the running test's own: its name and our pid, within S3's naming rules.
std::string testBucketName();
std::vector<uint8_t> randomBytes(size_t n, uint32_t seed);
// Polls cond every 10 ms until it holds (true) or timeout passes (false).
bool waitUntil(const std::function<bool()>& cond, std::chrono::milliseconds timeout = std::chrono::seconds(20));
// Files under dir (recursively) whose path contains needle.
std::vector<std::string> listFiles(const std::string& dir, const std::string& needle = "");

// Sends one request line to the engine's admin socket and returns the answer line
// ("" when the socket cannot be reached).
std::string adminRequest(const std::string& socketPath, const std::string& request);

// A TCP port on 127.0.0.1 free right now (the OS's pick).
int freeTcpPort();

// nbdkit -f --exit-with-parent on a Unix socket, with the given filters and plugin args.
class Nbdkit {
 public:
  Nbdkit(std::string socketPath, std::vector<std::string> args, std::vector<std::string> filters = {});
  ~Nbdkit();
  // Starts and waits for the socket; false (with the log in log()) if it exited.
  bool start(int timeoutMs = 60000);
  // SIGTERM and wait; returns the exit status (0 = clean).
  int stop(int timeoutMs = 120000);
  void kill9();
  bool running();
  // Whether it listens on its socket now (serving).
  bool listening() const;
  std::string log() const;
  // How the process ended when start() found it gone: exit code, or 128 + signal.
  int exitStatus() const { return exitStatus_; }
  const std::string& socket() const { return socket_; }
  std::string uri(const std::string& exportName) const;

 private:
  std::string socket_;
  std::vector<std::string> args_;
  std::vector<std::string> filters_;
  std::string logPath_;
  pid_t pid_ = -1;
  int exitStatus_ = -1;
};

// One libnbd connection.
class NbdClient {
 public:
  NbdClient();
  ~NbdClient();
  bool connect(const std::string& socket, const std::string& exportName);
  bool connectTcp(const std::string& host, int port, const std::string& exportName);
  std::string error() const;
  int64_t size();
  bool pread(void* buf, size_t count, uint64_t offset);
  bool pwrite(const void* buf, size_t count, uint64_t offset, bool fua = false);
  bool zero(size_t count, uint64_t offset);
  bool trim(size_t count, uint64_t offset);
  bool flush();
  nbd_handle* handle() { return h_; }

 private:
  nbd_handle* h_;
};

}  // namespace ferry::testing
