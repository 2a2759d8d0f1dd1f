// openStore: the one place a store URL becomes a client.

#include <cstdlib>

#include "ferry/file_store.h"
#include "ferry/object_store.h"
#include "ferry/s3_store.h"
#include "ferry/strings.h"

namespace ferry {
namespace {

Result<std::unique_ptr<ObjectStore>> openS3(std::string_view rest) {
  std::string_view query;
  if (size_t q = rest.find('?'); q != std::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  S3Config c;
  size_t slash = rest.find('/');
  c.bucket = std::string(rest.substr(0, slash));
  if (slash != std::string_view::npos) {
    c.prefix = std::string(rest.substr(slash + 1));
    while (!c.prefix.empty() && c.prefix.back() == '/') c.prefix.pop_back();
    if (!c.prefix.empty()) c.prefix += '/';
  }
  if (c.bucket.empty()) return Status::invalid("s3 store URL has no bucket: s3://BUCKET[/PREFIX]?endpoint=…");
  auto params = parseQuery(query);
  for (const auto& [k, v] : params) {
    if (k == "endpoint") c.endpoint = v;
    else if (k == "region") c.region = v;
    else if (k == "access_key") c.accessKey = v;
    else if (k == "secret_key") c.secretKey = v;
    else if (k == "create_bucket") c.createBucket = (v == "1" || v == "true" || v == "yes");
    else if (k == "max_attempts") c.maxAttempts = std::atoi(v.c_str());
    else if (k == "timeout_ms") c.requestTimeoutMs = std::atoi(v.c_str());
    else if (k == "connect_timeout_ms") c.connectTimeoutMs = std::atoi(v.c_str());
    else return Status::invalid("unknown s3 store URL parameter '" + k + "'");
  }
  if (c.endpoint.empty()) return Status::invalid("s3 store URL needs ?endpoint=http(s)://host:port");
  if (c.maxAttempts < 1) c.maxAttempts = 1;
  if (c.accessKey.empty()) {
    if (const char* e = std::getenv("AWS_ACCESS_KEY_ID")) c.accessKey = e;
  }
  if (c.secretKey.empty()) {
    if (const char* e = std::getenv("AWS_SECRET_ACCESS_KEY")) c.secretKey = e;
  }
  return makeS3Store(c);
}

}  // namespace

Result<std::unique_ptr<ObjectStore>> openStore(const std::string& url) {
  std::string_view u = url;
  if (u.starts_with("file://")) {
    std::string_view path = u.substr(7);
    bool create = false;
    if (size_t q = path.find('?'); q != std::string_view::npos) {
      auto params = parseQuery(path.substr(q + 1));
      create = params.count("create") > 0;
      path = path.substr(0, q);
    }
    return makeFileStore(percentDecode(path), create);
  }
  if (u.starts_with("s3://")) return openS3(u.substr(5));
  return Status::invalid("unknown store URL '" + url + "': use file:///path or s3://bucket/prefix?endpoint=…");
}

}  // namespace ferry
