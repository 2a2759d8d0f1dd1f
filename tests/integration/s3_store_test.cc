// S3Store against a real radosgw (tests/rgw/rgw-start.sh, the CTest fixture "rgw"),
// which checks SigV4 signatures and answers with real S3 errors. Each test works in a
// bucket of its own. Without the fixture's endpoint file those tests are skipped.
// S3StoreFaultTest needs no radosgw: it injects 5xx, throttling and odd answers from a
// canned server.

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "ferry/file_store.h"
#include "ferry/s3_store.h"
#include "test_util.h"

namespace ferry {
namespace {

using Clock = std::chrono::steady_clock;

std::span<const uint8_t> bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

std::string randomBytes(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

// A loopback TCP socket bound to a free port. listen() makes it a server that never
// answers (connects succeed, requests hang); without it the port refuses connections.
class LoopbackSocket {
 public:
  explicit LoopbackSocket(bool listening) : fd_(socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (fd_ < 0 || bind(fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
        getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0 || (listening && listen(fd_, 16) != 0)) {
      ADD_FAILURE() << "cannot set up a loopback socket";
    }
    port_ = ntohs(addr.sin_port);
  }
  ~LoopbackSocket() {
    if (fd_ >= 0) close(fd_);
  }
  LoopbackSocket(const LoopbackSocket&) = delete;
  LoopbackSocket& operator=(const LoopbackSocket&) = delete;
  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int fd() const { return fd_; }

 private:
  int fd_;
  int port_ = 0;
};

// A loopback HTTP server that answers each request with the next canned response (the
// last one repeats) and closes the connection. It checks no signatures: it is for the
// retry policy and for server behaviour radosgw cannot be made to show.
class CannedServer {
 public:
  explicit CannedServer(std::vector<std::string> responses)
      : socket_(/*listening=*/true), responses_(std::move(responses)), thread_([this] { run(); }) {}
  ~CannedServer() {
    stop_ = true;
    thread_.join();
  }
  std::string endpoint() const { return socket_.endpoint(); }
  int requests() const { return requests_; }
  // The request line and headers of every request so far, in order.
  std::vector<std::string> seen() {
    std::lock_guard lock(mu_);
    return seen_;
  }

  static std::string response(int status, const std::string& body) {
    return "HTTP/1.1 " + std::to_string(status) + " Canned\r\nContent-Length: " + std::to_string(body.size()) +
           "\r\nConnection: close\r\n\r\n" + body;
  }
  // An empty answer carrying an ETag (as S3 quotes it).
  static std::string tagged(int status, const std::string& etag) {
    return "HTTP/1.1 " + std::to_string(status) + " Canned\r\nETag: \"" + etag +
           "\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
  }
  static std::string error(int status, const std::string& code, const std::string& message) {
    return response(status, "<Error><Code>" + code + "</Code><Message>" + message + "</Message></Error>");
  }

 private:
  void run() {
    while (!stop_) {
      pollfd listener{socket_.fd(), POLLIN, 0};
      if (poll(&listener, 1, 50) <= 0) continue;
      int fd = accept(socket_.fd(), nullptr, nullptr);
      if (fd < 0) continue;
      timeval timeout{2, 0};
      setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
      std::string request;
      char buf[4096];
      ssize_t n;
      while (request.find("\r\n\r\n") == std::string::npos && (n = read(fd, buf, sizeof buf)) > 0) {
        request.append(buf, n);
      }
      {
        std::lock_guard lock(mu_);
        seen_.push_back(request.substr(0, request.find("\r\n\r\n")));
      }
      const std::string& reply = responses_[std::min<size_t>(requests_++, responses_.size() - 1)];
      [[maybe_unused]] ssize_t written = write(fd, reply.data(), reply.size());
      close(fd);
    }
  }

  LoopbackSocket socket_;
  std::vector<std::string> responses_;
  std::atomic<bool> stop_{false};
  std::atomic<int> requests_{0};
  std::mutex mu_;
  std::vector<std::string> seen_;  // GUARDED_BY(mu_)
  std::thread thread_;
};

// For the tests without radosgw (canned servers take any signature).
S3Config offlineConfig(const std::string& endpoint) {
  S3Config c;
  c.endpoint = endpoint;
  c.bucket = "bkt";
  c.accessKey = "TESTKEY";
  c.secretKey = "TESTSECRET";
  c.maxAttempts = 3;
  return c;
}

const char kEmptyListing[] = "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>";

bool hasHeader(const std::string& request, const std::string& header) {
  return request.find("\r\n" + header + "\r\n") != std::string::npos || request.ends_with("\r\n" + header);
}

// A conditional PUT: radosgw's unquoted If-Match first; a 412 on an object whose ETag
// is still the one sent means the server wants it quoted, which is then kept. A 412
// on a changed object, and a 404 on a vanished one, are conflicts.
TEST(S3StoreFaultTest, ConditionalPutsFindTheIfMatchFormTheServerTakes) {
  CannedServer server(
      {CannedServer::response(200, kEmptyListing),
       CannedServer::error(412, "PreconditionFailed", "At least one precondition failed"),
       CannedServer::tagged(200, "abc"), CannedServer::tagged(200, "def"), CannedServer::tagged(200, "ghi"),
       CannedServer::error(412, "PreconditionFailed", "At least one precondition failed"),
       CannedServer::tagged(200, "zzz"), CannedServer::error(404, "NoSuchKey", "The specified key does not exist.")});
  Result<std::unique_ptr<ObjectStore>> store = makeS3Store(offlineConfig(server.endpoint()));
  ASSERT_TRUE(store) << store.status().toString();
  auto first = (*store)->putIfTag("k", bytes("x"), "abc");
  ASSERT_TRUE(first) << first.status().toString();
  EXPECT_EQ(first.value(), "def");
  auto second = (*store)->putIfTag("k", bytes("y"), "def");
  ASSERT_TRUE(second) << second.status().toString();
  EXPECT_EQ(second.value(), "ghi");
  EXPECT_EQ((*store)->putIfTag("k", bytes("z"), "ghi").status().code(), Code::kConflict) << "changed (zzz)";
  EXPECT_EQ((*store)->putIfTag("k", bytes("z"), "ghi").status().code(), Code::kConflict) << "gone (404)";
  std::vector<std::string> seen = server.seen();
  ASSERT_EQ(seen.size(), 8u);
  EXPECT_TRUE(hasHeader(seen[1], "If-Match: abc")) << seen[1];
  EXPECT_TRUE(seen[2].starts_with("HEAD ")) << seen[2];
  EXPECT_TRUE(hasHeader(seen[3], "If-Match: \"abc\"")) << seen[3];
  EXPECT_TRUE(hasHeader(seen[4], "If-Match: \"def\"")) << "the quoted form was not kept: " << seen[4];
}

TEST(S3StoreFaultTest, ThrottlingAndServerErrorsAreRetriedUntilSuccess) {
  CannedServer server({CannedServer::error(503, "SlowDown", "Please reduce your request rate."),
                       CannedServer::error(500, "InternalError", ""), CannedServer::response(200, kEmptyListing)});
  Result<std::unique_ptr<ObjectStore>> store = makeS3Store(offlineConfig(server.endpoint()));
  EXPECT_TRUE(store) << store.status().toString();
  EXPECT_EQ(server.requests(), 3);
}

TEST(S3StoreFaultTest, PersistentThrottlingIsUnavailableNamingTheCause) {
  CannedServer server({CannedServer::error(503, "SlowDown", "Please reduce your request rate.")});
  Result<std::unique_ptr<ObjectStore>> store = makeS3Store(offlineConfig(server.endpoint()));
  ASSERT_FALSE(store);
  EXPECT_EQ(store.status().code(), Code::kUnavailable);
  EXPECT_EQ(store.status().message(), "s3 GET bkt/: 503 SlowDown after 3 attempts: Please reduce your request rate.");
  EXPECT_EQ(server.requests(), 3);
}

TEST(S3StoreFaultTest, ClientErrorsAreNotRetried) {
  CannedServer server({CannedServer::error(400, "InvalidArgument", "bad thing")});
  Result<std::unique_ptr<ObjectStore>> store = makeS3Store(offlineConfig(server.endpoint()));
  ASSERT_FALSE(store);
  EXPECT_EQ(store.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(store.status().message(), "s3 GET bkt/: 400 InvalidArgument: bad thing");
  EXPECT_EQ(server.requests(), 1);
}

TEST(S3StoreFaultTest, NonS3ErrorPagesAreQuotedInTheMessage) {
  CannedServer server({CannedServer::response(502, "<html>upstream down</html>")});
  Result<std::unique_ptr<ObjectStore>> store = makeS3Store(offlineConfig(server.endpoint()));
  ASSERT_FALSE(store);
  EXPECT_EQ(store.status().code(), Code::kUnavailable);
  EXPECT_EQ(store.status().message(), "s3 GET bkt/: 502 after 3 attempts: <html>upstream down</html>");
}

TEST(S3StoreFaultTest, ServerIgnoringRangeStillYieldsTheAskedBytes) {
  CannedServer server({CannedServer::response(200, kEmptyListing), CannedServer::response(200, "0123456789")});
  Result<std::unique_ptr<ObjectStore>> store = makeS3Store(offlineConfig(server.endpoint()));
  ASSERT_TRUE(store) << store.status().toString();
  std::vector<uint8_t> buf(4);
  Result<size_t> n = (*store)->get("k", 3, buf);
  ASSERT_TRUE(n) << n.status().toString();
  EXPECT_EQ(*n, 4u);
  EXPECT_EQ(std::string(buf.begin(), buf.end()), "3456");
}

TEST(S3StoreFaultTest, MalformedListingIsCorruption) {
  CannedServer server(
      {CannedServer::response(200, kEmptyListing), CannedServer::response(200, "<ListBucketResult><Contents><Key>x")});
  Result<std::unique_ptr<ObjectStore>> store = makeS3Store(offlineConfig(server.endpoint()));
  ASSERT_TRUE(store) << store.status().toString();
  EXPECT_EQ((*store)->list("").status().code(), Code::kCorruption);
}

TEST(S3StoreFaultTest, MissingCredentialsAreInvalid) {
  S3Config c = offlineConfig("http://127.0.0.1:1");
  c.secretKey = "";
  Result<std::unique_ptr<ObjectStore>> store = makeS3Store(c);
  ASSERT_FALSE(store);
  EXPECT_EQ(store.status().code(), Code::kInvalidArgument);
  EXPECT_NE(store.status().message().find("AWS_SECRET_ACCESS_KEY"), std::string::npos) << store.status().message();
}

TEST(S3StoreFaultTest, RefusedConnectionsAreUnavailableAfterBoundedRetries) {
  LoopbackSocket closedPort(/*listening=*/false);
  S3Config c = offlineConfig(closedPort.endpoint());
  c.maxAttempts = 3;
  c.connectTimeoutMs = 500;
  c.requestTimeoutMs = 1000;
  auto start = Clock::now();
  Result<std::unique_ptr<ObjectStore>> store = makeS3Store(c);
  auto elapsed = Clock::now() - start;
  ASSERT_FALSE(store);
  EXPECT_EQ(store.status().code(), Code::kUnavailable);
  EXPECT_NE(store.status().message().find("after 3 attempts"), std::string::npos) << store.status().message();
  // Three refused connects plus at most 100 + 200 ms of backoff.
  EXPECT_LT(elapsed, std::chrono::seconds(3));
}

TEST(S3StoreFaultTest, SilentServerTimesOutAsUnavailable) {
  LoopbackSocket silent(/*listening=*/true);
  S3Config c = offlineConfig(silent.endpoint());
  c.maxAttempts = 2;
  c.requestTimeoutMs = 300;
  auto start = Clock::now();
  Result<std::unique_ptr<ObjectStore>> store = makeS3Store(c);
  auto elapsed = Clock::now() - start;
  ASSERT_FALSE(store);
  EXPECT_EQ(store.status().code(), Code::kUnavailable);
  EXPECT_NE(store.status().message().find("after 2 attempts"), std::string::npos) << store.status().message();
  EXPECT_GE(elapsed, std::chrono::milliseconds(500));  // two 300 ms timeouts, with slack
  EXPECT_LT(elapsed, std::chrono::seconds(3));
}

// A request under a StoreDeadline (a volume's lease confirmation) ends there: an
// attempt's timeout is cut to it, and no attempt starts past it.
TEST(S3StoreFaultTest, ADeadlineCutsAnAttemptAndItsRetriesShort) {
  LoopbackSocket silent(/*listening=*/true);
  S3Config c = offlineConfig(silent.endpoint());
  c.maxAttempts = 6;
  c.requestTimeoutMs = 10000;
  auto start = Clock::now();
  Result<std::unique_ptr<ObjectStore>> store = [&] {
    StoreDeadline deadline(start + std::chrono::milliseconds(400));
    return makeS3Store(c);
  }();
  auto elapsed = Clock::now() - start;
  ASSERT_FALSE(store);
  EXPECT_EQ(store.status().code(), Code::kUnavailable);
  EXPECT_NE(store.status().message().find("not done before the deadline"), std::string::npos)
      << store.status().message();
  EXPECT_GE(elapsed, std::chrono::milliseconds(350));
  EXPECT_LT(elapsed, std::chrono::seconds(2)) << "six attempts of 10 s each without the deadline";
  EXPECT_EQ(StoreDeadline::current(), StoreDeadline::Clock::time_point::max()) << "the scope ended";
}

TEST(S3StoreFaultTest, RefusedConnectionsStopRetryingAtTheDeadline) {
  LoopbackSocket closedPort(/*listening=*/false);
  S3Config c = offlineConfig(closedPort.endpoint());
  c.maxAttempts = 20;  // about a minute of backoff
  auto start = Clock::now();
  StoreDeadline outer(start + std::chrono::seconds(30));
  StoreDeadline inner(start + std::chrono::milliseconds(300));  // the earlier wins
  Result<std::unique_ptr<ObjectStore>> store = makeS3Store(c);
  ASSERT_FALSE(store);
  EXPECT_EQ(store.status().code(), Code::kUnavailable);
  EXPECT_NE(store.status().message().find("not done before the deadline"), std::string::npos)
      << store.status().message();
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(2));
  StoreDeadline past(start - std::chrono::seconds(1));
  store = makeS3Store(c);
  ASSERT_FALSE(store);
  EXPECT_NE(store.status().message().find("not sent; not done before the deadline"), std::string::npos)
      << store.status().message();
}

class S3StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    endpoint_ = ferry::testing::rgwEndpoint();
    if (endpoint_.empty()) {
      GTEST_SKIP() << "no radosgw: " << ferry::testing::rgwDir() << "/endpoint is absent (run tests/rgw/rgw-start.sh "
                   << "$FERRY_BUILD_DIR/rgw, or ctest, which does)";
    }
  }

  S3Config config() const {
    S3Config c;
    c.endpoint = endpoint_;
    c.bucket = ferry::testing::testBucketName();
    c.accessKey = "TESTKEY";
    c.secretKey = "TESTSECRET";
    c.createBucket = true;
    return c;
  }

  std::unique_ptr<ObjectStore> open(const S3Config& c) {
    Result<std::unique_ptr<ObjectStore>> store = makeS3Store(c);
    EXPECT_TRUE(store) << store.status().toString();
    return store ? std::move(store).value() : nullptr;
  }

  std::string endpoint_;
};

TEST_F(S3StoreTest, PutThenGetRoundTripsOneMebibyte) {
  auto store = open(config());
  ASSERT_TRUE(store);
  const std::string data = randomBytes(1 << 20, 1);
  ASSERT_TRUE(store->put("vol/chunk-1", bytes(data)));

  std::string back(data.size(), '\0');
  Result<size_t> n = store->get("vol/chunk-1", 0, {reinterpret_cast<uint8_t*>(back.data()), back.size()});
  ASSERT_TRUE(n) << n.status().toString();
  EXPECT_EQ(*n, data.size());
  EXPECT_TRUE(back == data);

  Result<std::string> all = store->getAll("vol/chunk-1");
  ASSERT_TRUE(all) << all.status().toString();
  EXPECT_TRUE(*all == data);
}

// Two stores on one server (prefixes of the same bucket, as two gateways have): a
// copy is CopyObject, the bytes never pass through us; from another kind of store it
// is read and written; a missing source is not found.
TEST_F(S3StoreTest, CopiesBetweenPrefixesOnTheServer) {
  S3Config ca = config(), cb = config();
  ca.prefix = "gw-a/";
  cb.prefix = "gw-b/";
  auto a = open(ca), b = open(cb);
  ASSERT_TRUE(a && b);
  const std::string data = randomBytes(1 << 20, 9);
  ASSERT_TRUE(a->put("volumes/v/chunks/1", bytes(data)));
  bool serverSide = false;
  ASSERT_TRUE(b->copyFrom(*a, "volumes/v/chunks/1", "volumes/w/chunks/1", &serverSide));
  EXPECT_TRUE(serverSide);
  EXPECT_TRUE(b->getAll("volumes/w/chunks/1").value() == data);
  EXPECT_EQ(b->copyFrom(*a, "volumes/v/chunks/9", "volumes/w/chunks/9", &serverSide).code(), Code::kNotFound);

  ferry::testing::TempDir dir;
  auto file = makeFileStore(dir.path() + "/f", true);
  ASSERT_TRUE(file);
  ASSERT_TRUE(file.value()->put("k", bytes("from a file")));
  ASSERT_TRUE(b->copyFrom(*file.value(), "k", "copied", &serverSide));
  EXPECT_FALSE(serverSide);
  EXPECT_EQ(b->getAll("copied").value(), "from a file");
}

TEST_F(S3StoreTest, RangeGetReadsTheMiddleAndStopsAtTheEnd) {
  auto store = open(config());
  ASSERT_TRUE(store);
  const std::string data = randomBytes(1000, 2);
  ASSERT_TRUE(store->put("obj", bytes(data)));
  ASSERT_TRUE(store->put("empty", {}));

  std::vector<uint8_t> buf(50);
  Result<size_t> n = store->get("obj", 100, buf);
  ASSERT_TRUE(n) << n.status().toString();
  EXPECT_EQ(*n, 50u);
  EXPECT_EQ(std::string(buf.begin(), buf.end()), data.substr(100, 50));

  n = store->get("obj", 990, buf);  // only 10 bytes left
  ASSERT_TRUE(n) << n.status().toString();
  EXPECT_EQ(*n, 10u);
  EXPECT_EQ(std::string(buf.begin(), buf.begin() + 10), data.substr(990));

  for (uint64_t offset : {1000, 5000}) {
    n = store->get("obj", offset, buf);
    ASSERT_TRUE(n) << n.status().toString();
    EXPECT_EQ(*n, 0u) << "offset " << offset;
  }
  n = store->get("empty", 0, buf);
  ASSERT_TRUE(n) << n.status().toString();
  EXPECT_EQ(*n, 0u);
  Result<std::string> all = store->getAll("empty");
  ASSERT_TRUE(all) << all.status().toString();
  EXPECT_EQ(*all, "");
}

TEST_F(S3StoreTest, MissingKeyIsNotFound) {
  auto store = open(config());
  ASSERT_TRUE(store);
  std::vector<uint8_t> buf(16);
  EXPECT_EQ(store->get("absent", 0, buf).status().code(), Code::kNotFound);
  EXPECT_EQ(store->get("absent", 0, {}).status().code(), Code::kNotFound);
  Result<std::string> all = store->getAll("absent");
  EXPECT_EQ(all.status().code(), Code::kNotFound);
  EXPECT_NE(all.status().message().find("NoSuchKey"), std::string::npos) << all.status().message();
}

TEST_F(S3StoreTest, KeysWithSpecialCharactersRoundTrip) {
  auto store = open(config());
  ASSERT_TRUE(store);
  const std::string key = "dir/a b+c&d=e%f~g(h)\xC3\xA9";
  ASSERT_TRUE(store->put(key, bytes("x")));
  Result<std::string> all = store->getAll(key);
  ASSERT_TRUE(all) << all.status().toString();
  EXPECT_EQ(*all, "x");
  auto listed = store->list("dir/a b+");
  ASSERT_TRUE(listed) << listed.status().toString();
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].key, key);
}

TEST_F(S3StoreTest, ListWithPrefixGivesRelativeKeysInOrder) {
  S3Config c = config();
  auto plain = open(c);
  ASSERT_TRUE(plain);
  ASSERT_TRUE(plain->put("outside", bytes("o")));
  c.prefix = "gw1";  // made into "gw1/"
  auto store = open(c);
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->put("b/1", bytes("b1")));
  ASSERT_TRUE(store->put("a/2", bytes("a22")));
  ASSERT_TRUE(store->put("a/1", bytes("a1")));

  auto listed = store->list("a/");
  ASSERT_TRUE(listed) << listed.status().toString();
  ASSERT_EQ(listed->size(), 2u);
  EXPECT_EQ((*listed)[0].key, "a/1");
  EXPECT_EQ((*listed)[0].size, 2u);
  EXPECT_EQ((*listed)[1].key, "a/2");
  EXPECT_EQ((*listed)[1].size, 3u);

  listed = store->list("");
  ASSERT_TRUE(listed) << listed.status().toString();
  EXPECT_EQ(listed->size(), 3u);  // not "outside", which is not under gw1/
  listed = store->list("none/");
  ASSERT_TRUE(listed) << listed.status().toString();
  EXPECT_TRUE(listed->empty());
}

TEST_F(S3StoreTest, ListFollowsContinuationPastOneThousandKeys) {
  auto store = open(config());
  ASSERT_TRUE(store);
  constexpr int kObjects = 1100;
  constexpr int kThreads = 8;
  std::atomic<int> next{0};
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = next++; i < kObjects; i = next++) {
        char key[32];
        std::snprintf(key, sizeof key, "many/%05d", i);
        if (!store->put(key, bytes(std::to_string(i)))) ++failures;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  ASSERT_EQ(failures.load(), 0);

  auto listed = store->list("many/");
  ASSERT_TRUE(listed) << listed.status().toString();
  ASSERT_EQ(listed->size(), static_cast<size_t>(kObjects));
  for (int i = 0; i < kObjects; ++i) {
    char key[32];
    std::snprintf(key, sizeof key, "many/%05d", i);
    ASSERT_EQ((*listed)[i].key, key);
    ASSERT_EQ((*listed)[i].size, std::to_string(i).size());
  }
}

TEST_F(S3StoreTest, RemoveDeletesAndAcceptsMissingKeys) {
  auto store = open(config());
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->put("doomed", bytes("x")));
  ASSERT_TRUE(store->remove("doomed"));
  EXPECT_EQ(store->getAll("doomed").status().code(), Code::kNotFound);
  EXPECT_TRUE(store->remove("doomed"));
  EXPECT_TRUE(store->remove("never-was"));
  auto listed = store->list("");
  ASSERT_TRUE(listed) << listed.status().toString();
  EXPECT_TRUE(listed->empty());
}

TEST_F(S3StoreTest, ParallelPutsFromEightThreadsAllLand) {
  auto store = open(config());
  ASSERT_TRUE(store);
  constexpr int kThreads = 8;
  constexpr int kPerThread = 8;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        std::string data = randomBytes(256 << 10, t * 100 + i);
        if (!store->put("p/" + std::to_string(t) + "-" + std::to_string(i), bytes(data))) ++failures;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  ASSERT_EQ(failures.load(), 0);
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kPerThread; ++i) {
      Result<std::string> all = store->getAll("p/" + std::to_string(t) + "-" + std::to_string(i));
      ASSERT_TRUE(all) << all.status().toString();
      EXPECT_TRUE(*all == randomBytes(256 << 10, t * 100 + i)) << t << "-" << i;
    }
  }
}

TEST_F(S3StoreTest, WrongSecretKeyIsDeniedWithAHint) {
  ASSERT_TRUE(open(config()));
  S3Config c = config();
  c.secretKey = "WRONG";
  Result<std::unique_ptr<ObjectStore>> store = makeS3Store(c);
  ASSERT_FALSE(store);
  EXPECT_EQ(store.status().code(), Code::kPermissionDenied);
  EXPECT_NE(store.status().message().find("SignatureDoesNotMatch"), std::string::npos) << store.status().message();
  EXPECT_NE(store.status().message().find("AWS_SECRET_ACCESS_KEY"), std::string::npos) << store.status().message();
}

TEST_F(S3StoreTest, UnknownAccessKeyIsDeniedWithAHint) {
  S3Config c = config();
  c.accessKey = "NOSUCHKEY";
  Result<std::unique_ptr<ObjectStore>> store = makeS3Store(c);
  ASSERT_FALSE(store);
  EXPECT_EQ(store.status().code(), Code::kPermissionDenied);
  EXPECT_NE(store.status().message().find("InvalidAccessKeyId"), std::string::npos) << store.status().message();
  EXPECT_NE(store.status().message().find("AWS_ACCESS_KEY_ID"), std::string::npos) << store.status().message();
}

TEST_F(S3StoreTest, MissingBucketWithoutCreateIsNotFound) {
  S3Config c = config();
  c.createBucket = false;
  Result<std::unique_ptr<ObjectStore>> store = makeS3Store(c);
  ASSERT_FALSE(store);
  EXPECT_EQ(store.status().code(), Code::kNotFound);
  EXPECT_NE(store.status().message().find("'" + c.bucket + "' does not exist"), std::string::npos)
      << store.status().message();
}

TEST_F(S3StoreTest, CreateBucketMakesABucketLaterOpensFind) {
  auto created = open(config());
  ASSERT_TRUE(created);
  ASSERT_TRUE(created->put("k", bytes("v")));
  S3Config c = config();
  c.createBucket = false;
  auto reopened = open(c);
  ASSERT_TRUE(reopened);
  Result<std::string> all = reopened->getAll("k");
  ASSERT_TRUE(all) << all.status().toString();
  EXPECT_EQ(*all, "v");
  EXPECT_EQ(reopened->describe(), "s3://" + c.bucket + " at " + endpoint_);
}

}  // namespace
}  // namespace ferry
