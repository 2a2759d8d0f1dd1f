#pragma once
// Private to the S3 store: signed HTTP exchanges with an S3 server through libcurl. It
// knows HTTP, SigV4 and which failures are worth retrying, not what a request means;
// s3_store.cc decides what a 404 is.

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "ferry/s3_store.h"
#include "ferry/status.h"

namespace ferry::s3 {

struct Request {
  const char* method = "GET";     // GET, PUT, DELETE or HEAD
  std::string path;               // "/bucket/key", already URI-encoded
  std::string query;              // from canonicalQuery(): sorted, encoded; "" for none
  std::string what;               // "s3 GET bucket/key": how messages name the request
  std::span<const uint8_t> body;  // sent by PUT with a Content-Length, never chunked
  // More headers, signed with the rest ("x-amz-copy-source: /bucket/key").
  std::vector<std::string> headers;
  // A 2xx body goes to `into` when it is not empty, which also makes the GET a range
  // request for [rangeOffset, rangeOffset + into.size()); otherwise to *intoString
  // when set; otherwise nowhere.
  uint64_t rangeOffset = 0;
  std::span<uint8_t> into;
  std::string* intoString = nullptr;
};

struct Response {
  long httpStatus = 0;
  size_t bytes = 0;          // body bytes delivered to `into` / intoString
  std::string errorCode;     // <Code> of a non-2xx body ("NoSuchKey"), may be ""
  std::string errorMessage;  // <Message>, or the start of a body that is not S3 XML
  std::string etag;          // the ETag header, without its quotes; "" if none
};

// Safe to use from many threads at once: each exchange takes an idle curl handle from
// a pool (or makes one) and returns it afterwards, so parallel callers never share a
// handle and sequential ones reuse the handle's open connection.
class Client {
 public:
  explicit Client(const S3Config& config);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Sends req and returns the server's final answer, whatever its status. Transport
  // errors (refused, reset, timeout), 500/502/503/504, 429 and throttling codes are
  // retried up to maxAttempts times with capped exponential backoff and full jitter;
  // when the attempts run out the result is kUnavailable, naming the last failure.
  // A request curl cannot make at all (bad URL, TLS setup) is kInvalidArgument.
  Result<Response> execute(const Request& req);

 private:
  // A curl easy handle and the socket of the connection it keeps open.
  struct Connection;
  // Returns its connection to the pool when the exchange ends, on every path.
  class Lease;

  std::unique_ptr<Connection> take();
  void giveBack(std::unique_ptr<Connection> connection);

  const S3Config config_;
  const std::string sigv4_;  // "aws:amz:<region>:s3"

  std::mutex mu_;
  std::vector<std::unique_ptr<Connection>> idle_;  // guarded by mu_
};

}  // namespace ferry::s3
