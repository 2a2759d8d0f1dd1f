#pragma once
// S3-compatible object store client: libcurl with CURLOPT_AWS_SIGV4, path-style
// addressing, connection reuse, parallel callers, retries with backoff and jitter on
// 5xx/429/timeouts, immediate clear errors on other 4xx.

#include <memory>
#include <string>

#include "ferry/object_store.h"

namespace ferry {

struct S3Config {
  std::string endpoint;             // "http://127.0.0.1:7480" (scheme://host[:port])
  std::string region = "us-east-1";
  std::string bucket;
  std::string prefix;               // "" or ending in '/': "gw1/"
  std::string accessKey;
  std::string secretKey;
  bool createBucket = false;        // create the bucket if it does not exist
  int maxAttempts = 6;              // per request, transient failures only
  int connectTimeoutMs = 5000;
  int requestTimeoutMs = 60000;
};

// Checks the bucket is reachable with these credentials (or creates it when asked):
// a missing bucket or wrong keys fail here with a clear message.
Result<std::unique_ptr<ObjectStore>> makeS3Store(const S3Config& config);

}  // namespace ferry
