// nbdkit ferry on a real S3 server: Ceph radosgw on loopback, started once per run by
// the "rgw" CTest fixture (tests/rgw/rgw-start.sh).

#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <future>
#include <thread>

#include "ferry/s3_store.h"
#include "test_util.h"

namespace ferry::testing {
namespace {

namespace fs = std::filesystem;

class PluginS3Test : public ::testing::Test {
 protected:
  void SetUp() override {
    if (pluginPath().empty() || !haveProgram("nbdkit")) GTEST_SKIP() << "nbdkit or the plugin is not available";
    rgwDir_ = rgwDir();
    endpoint_ = rgwEndpoint();
    if (endpoint_.empty()) GTEST_SKIP() << "radosgw is not running (no " << rgwDir_ << "/endpoint)";
    bucket_ = testBucketName();
    ::setenv("AWS_ACCESS_KEY_ID", "TESTKEY", 1);
    ::setenv("AWS_SECRET_ACCESS_KEY", "TESTSECRET", 1);
  }
  std::string storeUrl(const std::string& extra = "") {
    return "s3://" + bucket_ + "/gw?endpoint=" + endpoint_ + "&region=us-east-1&create_bucket=1" + extra;
  }
  std::unique_ptr<Nbdkit> start(const std::string& state, std::vector<std::string> extra = {}) {
    std::vector<std::string> a = {"state=" + (dir_ / state), "store=" + storeUrl(), "lease-ttl=5",
                                  "commit-interval=100"};
    a.insert(a.end(), extra.begin(), extra.end());
    auto n = std::make_unique<Nbdkit>(dir_ / (state + ".sock"), a);
    EXPECT_TRUE(n->start()) << n->log();
    return n;
  }
  size_t storedChunks(const std::string& volume) {
    S3Config c;
    c.endpoint = endpoint_;
    c.bucket = bucket_;
    c.prefix = "gw/";
    c.accessKey = "TESTKEY";
    c.secretKey = "TESTSECRET";
    auto s = makeS3Store(c);
    if (!s) return 0;
    auto l = s.value()->list("volumes/" + volume + "/chunks/");
    return l ? l->size() : 0;
  }
  // radosgw's pid, to stop and continue it (a store outage). Never 0 or negative:
  // kill() would signal a whole process group.
  pid_t rgwPid() {
    pid_t pid = static_cast<pid_t>(std::atoi(readFile(rgwDir_ + "/run/client.rgw.a.pid").c_str()));
    if (pid <= 1) throw std::runtime_error("no radosgw pid file in " + rgwDir_ + "/run");
    return pid;
  }

  TempDir dir_;
  std::string rgwDir_, endpoint_, bucket_;
};

TEST_F(PluginS3Test, DataRoundTripsThroughTheStoreToAFreshGateway) {
  auto data = randomBytes(12 << 20, 1);
  {
    auto n = start("old", {"create=vol:64M"});
    {
      NbdClient c;
      ASSERT_TRUE(c.connect(n->socket(), "vol")) << c.error();
      ASSERT_TRUE(c.pwrite(data.data(), data.size(), 2 << 20)) << c.error();
    }
    EXPECT_EQ(n->stop(), 0) << n->log();
  }
  EXPECT_EQ(storedChunks("vol"), 12u);
  auto n = start("new", {"create=vol:64M"});
  NbdClient c;
  ASSERT_TRUE(c.connect(n->socket(), "vol")) << c.error();
  std::vector<uint8_t> back(data.size());
  ASSERT_TRUE(c.pread(back.data(), back.size(), 2 << 20)) << c.error();
  EXPECT_TRUE(back == data);
}

TEST_F(PluginS3Test, KilledAfterFlushUploadsOnRestart) {
  auto data = randomBytes(3 << 20, 2);
  {
    auto n = start("s", {"create=vol:64M"});
    ::kill(rgwPid(), SIGSTOP);  // nothing reaches the store before the kill
    NbdClient c;
    bool ok = c.connect(n->socket(), "vol") && c.pwrite(data.data(), data.size(), 0) && c.flush();
    n->kill9();
    ::kill(rgwPid(), SIGCONT);
    ASSERT_TRUE(ok) << c.error();
  }
  auto n = start("s", {"create=vol:64M"});
  for (int i = 0; i < 300 && storedChunks("vol") < 3; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(storedChunks("vol"), 3u);
  NbdClient c;
  ASSERT_TRUE(c.connect(n->socket(), "vol")) << c.error();
  std::vector<uint8_t> back(data.size());
  ASSERT_TRUE(c.pread(back.data(), back.size(), 0));
  EXPECT_TRUE(back == data);
}

TEST_F(PluginS3Test, StoreOutageBuffersWritesThenDrains) {
  auto n = start("s", {"create=vol:64M", "cache-size=32M", "upload-buffer=4M"});
  NbdClient c;
  ASSERT_TRUE(c.connect(n->socket(), "vol")) << c.error();
  ::kill(rgwPid(), SIGSTOP);
  auto data = randomBytes(8 << 20, 3);
  ASSERT_TRUE(c.pwrite(data.data(), 4 << 20, 0)) << c.error();
  auto rest = std::async(std::launch::async, [&] {
    NbdClient c2;
    return c2.connect(n->socket(), "vol") && c2.pwrite(data.data() + (4 << 20), 4 << 20, 4 << 20);
  });
  bool waited = rest.wait_for(std::chrono::seconds(2)) == std::future_status::timeout;
  ::kill(rgwPid(), SIGCONT);
  EXPECT_TRUE(waited) << "writes past the upload buffer must wait for the store";
  ASSERT_EQ(rest.wait_for(std::chrono::seconds(120)), std::future_status::ready);
  EXPECT_TRUE(rest.get());
  for (int i = 0; i < 600 && storedChunks("vol") < 8; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(storedChunks("vol"), 8u);
}

TEST_F(PluginS3Test, WrongCredentialsAndMissingBucketFailClearly) {
  ::setenv("AWS_SECRET_ACCESS_KEY", "WRONGSECRET", 1);
  Nbdkit wrong(dir_ / "w.sock", {"state=" + (dir_ / "w"), "store=" + storeUrl(), "create=vol:64M"});
  EXPECT_FALSE(wrong.start());
  EXPECT_NE(wrong.log().find("SignatureDoesNotMatch"), std::string::npos) << wrong.log();
  ::setenv("AWS_SECRET_ACCESS_KEY", "TESTSECRET", 1);
  Nbdkit missing(dir_ / "m.sock", {"state=" + (dir_ / "m"),
                                   "store=s3://no-such-bucket-" + std::to_string(::getpid()) + "?endpoint=" + endpoint_,
                                   "create=vol:64M"});
  EXPECT_FALSE(missing.start());
  EXPECT_NE(missing.log().find("does not exist"), std::string::npos) << missing.log();
}

TEST_F(PluginS3Test, ATakenSocketIsAnErrorExitNotACrash) {
  // nbdkit binds its socket after get_ready: the engine is open (store client, lease)
  // when it gives up, and must not crash on the way out.
  if (std::getenv("FERRY_NBDKIT_PRELOAD")) {
    // nbdkit with the ASan runtime preloaded deadlocks in libc's exit handlers when it
    // exits this early (p11-kit's destructor); the regular build runs this test.
    GTEST_SKIP() << "exit status not observable under the preloaded sanitizer runtime";
  }
  std::string sock = dir_ / "taken.sock";
  ASSERT_EQ(runCommand("python3 -c \"import socket;socket.socket(socket.AF_UNIX).bind('" + sock + "')\""), 0);
  std::string preload;
  if (const char* p = std::getenv("FERRY_NBDKIT_PRELOAD")) preload = std::string("LD_PRELOAD=") + p + " ";
  std::string out;
  int rc = runCommand(preload + "timeout -k 5 120 nbdkit -f -U " + sock + " " + pluginPath() + " state=" + (dir_ / "s") +
                          " 'store=" + storeUrl() + "' create=vol:64M",
                      &out);
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find("Address already in use"), std::string::npos) << out;
}

}  // namespace
}  // namespace ferry::testing
