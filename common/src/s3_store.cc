// ObjectStore on any S3-compatible server: path-style URLs (endpoint/bucket/prefix+key),
// so it works with radosgw, MinIO and Garage without wildcard DNS. The HTTP exchange,
// signing and retries live in s3_client.cc; this file says what each S3 answer means.

#include "ferry/s3_store.h"

#include <atomic>
#include <cstdint>
#include <utility>

#include "ferry/s3_xml.h"
#include "s3_client.h"

namespace ferry {
namespace {

bool isSuccess(const s3::Response& r) {
  return r.httpStatus >= 200 && r.httpStatus < 300;
}

// What to check, for the errors a misconfigured gateway most often meets.
std::string deniedHint(const std::string& code) {
  if (code == "InvalidAccessKeyId") {
    return " (the server does not know this access key: check AWS_ACCESS_KEY_ID)";
  }
  if (code == "SignatureDoesNotMatch") {
    return " (the secret key does not match the access key: check AWS_SECRET_ACCESS_KEY and the region)";
  }
  if (code == "RequestTimeTooSkewed") return " (the local clock is wrong)";
  if (code == "AccessDenied") return " (these credentials may not use this bucket)";
  return "";
}

class S3Store final : public ObjectStore {
 public:
  explicit S3Store(const S3Config& config) : config_(config), client_(config_) {}

  Status put(const std::string& key, std::span<const uint8_t> data) override {
    if (key.empty()) return Status::invalid("s3 PUT: empty key");
    s3::Request req = objectRequest("PUT", key);
    req.body = data;
    Result<s3::Response> r = client_.execute(req);
    if (!r) return r.status();
    return isSuccess(*r) ? Status::ok() : failure(req, *r);
  }

  Result<size_t> get(const std::string& key, uint64_t offset, std::span<uint8_t> out) override {
    if (key.empty()) return Status::invalid("s3 GET: empty key");
    if (out.empty()) {
      // A range cannot be empty; HEAD still tells a missing key from a present one.
      s3::Request req = objectRequest("HEAD", key);
      Result<s3::Response> r = client_.execute(req);
      if (!r) return r.status();
      if (isSuccess(*r)) return size_t{0};
      return failure(req, *r);
    }
    if (offset > UINT64_MAX - out.size()) return Status::invalid("s3 GET " + key + ": offset out of range");
    s3::Request req = objectRequest("GET", key);
    req.rangeOffset = offset;
    req.into = out;
    Result<s3::Response> r = client_.execute(req);
    if (!r) return r.status();
    if (isSuccess(*r)) return r->bytes;
    // The range starts at or past the end: an empty object, or a read at its end.
    if (r->httpStatus == 416) return size_t{0};
    return failure(req, *r);
  }

  Result<std::string> getAll(const std::string& key) override {
    auto got = getWhole(key);
    if (!got) return got.status();
    return std::move(got->data);
  }

  Result<TaggedObject> getTagged(const std::string& key) override {
    auto got = getWhole(key);
    if (got && got->tag.empty()) return Status::corruption(objectRequest("GET", key).what + ": the answer has no ETag");
    return got;
  }

  // If-Match carries the ETag unquoted, the form radosgw 16 takes (it compares the
  // header with the bare tag, so the quoted form always fails there). A server that
  // wants it quoted (RFC 7232's form) answers 412 although the object is unchanged:
  // then the quoted form is tried, and kept for later writes if it works.
  Result<std::string> putIfTag(const std::string& key, std::span<const uint8_t> data,
                               const std::string& ifTag) override {
    if (key.empty()) return Status::invalid("s3 PUT: empty key");
    bool quoted = quoteIfMatch_.load();
    for (int attempt = 0;; ++attempt) {
      s3::Request req = objectRequest("PUT", key);
      req.body = data;
      req.headers.push_back(ifTag.empty() ? "If-None-Match: *" : "If-Match: " + (quoted ? "\"" + ifTag + "\"" : ifTag));
      Result<s3::Response> r = client_.execute(req);
      if (!r) return r.status();
      if (isSuccess(*r)) {
        if (r->etag.empty()) return Status::corruption(req.what + ": the answer has no ETag");
        if (attempt > 0) quoteIfMatch_ = quoted;
        return r->etag;
      }
      // 409 ConditionalRequestConflict: AWS's answer to two conditional writes at
      // once; 404 to If-Match on a key that is gone.
      bool lost = r->httpStatus == 412 || (r->httpStatus == 409 && r->errorCode == "ConditionalRequestConflict") ||
                  (r->httpStatus == 404 && !ifTag.empty() && r->errorCode != "NoSuchBucket");
      if (!lost) return failure(req, *r);
      if (r->httpStatus == 412 && !ifTag.empty() && attempt == 0) {
        s3::Request head = objectRequest("HEAD", key);
        Result<s3::Response> now = client_.execute(head);
        if (now && isSuccess(*now) && now->etag == ifTag) {
          quoted = !quoted;  // unchanged: the server wants the tag in the other form
          continue;
        }
      }
      return Status::conflict(req.what + ": " +
                              (ifTag.empty() ? "the object exists" : "the object is no longer " + ifTag) +
                              " (another writer came first)");
    }
  }

  Result<std::vector<ObjectInfo>> list(const std::string& prefix) override {
    std::vector<ObjectInfo> objects;
    std::string token;
    for (;;) {
      std::vector<std::pair<std::string, std::string>> params = {{"list-type", "2"},
                                                                 {"prefix", config_.prefix + prefix}};
      if (!token.empty()) params.emplace_back("continuation-token", token);
      s3::Request req = bucketRequest("GET", s3::canonicalQuery(std::move(params)));
      std::string body;
      req.intoString = &body;
      Result<s3::Response> r = client_.execute(req);
      if (!r) return r.status();
      if (!isSuccess(*r)) return failure(req, *r);
      Result<s3::ListPage> page = s3::parseListObjectsV2(body);
      if (!page) return page.status().withContext(req.what);
      for (ObjectInfo& object : page->objects) {
        if (!object.key.starts_with(config_.prefix)) {
          return Status::corruption(req.what + ": listed key '" + object.key + "' is outside the prefix");
        }
        object.key.erase(0, config_.prefix.size());
        objects.push_back(std::move(object));
      }
      if (!page->truncated) return objects;
      // A server repeating its token would have us loop for ever.
      if (page->nextContinuationToken == token) {
        return Status::corruption(req.what + ": listing repeats its continuation token");
      }
      token = std::move(page->nextContinuationToken);
    }
  }

  Status remove(const std::string& key) override {
    if (key.empty()) return Status::invalid("s3 DELETE: empty key");
    s3::Request req = objectRequest("DELETE", key);
    Result<s3::Response> r = client_.execute(req);
    if (!r) return r.status();
    // S3 answers 204 for an absent key too; some servers say 404 NoSuchKey.
    if (isSuccess(*r) || (r->httpStatus == 404 && r->errorCode != "NoSuchBucket")) return Status::ok();
    return failure(req, *r);
  }

  // CopyObject when both stores are on the same server with the same keys: the bytes
  // stay in the store.
  Status copyFrom(ObjectStore& source, const std::string& sourceKey, const std::string& key,
                  bool* serverSide) override {
    auto* from = dynamic_cast<S3Store*>(&source);
    if (from == nullptr || from->config_.endpoint != config_.endpoint || from->config_.accessKey != config_.accessKey) {
      return ObjectStore::copyFrom(source, sourceKey, key, serverSide);
    }
    if (key.empty() || sourceKey.empty()) return Status::invalid("s3 copy: empty key");
    s3::Request req = objectRequest("PUT", key);
    req.what = "s3 copy " + from->config_.bucket + "/" + from->config_.prefix + sourceKey + " to " +
               config_.bucket + "/" + config_.prefix + key;
    req.headers.push_back("x-amz-copy-source: /" + from->config_.bucket + "/" +
                          s3::uriEncode(from->config_.prefix + sourceKey, true));
    std::string body;
    req.intoString = &body;
    Result<s3::Response> r = client_.execute(req);
    if (!r) return r.status();
    if (!isSuccess(*r)) return failure(req, *r);
    // A copy that fails after it started still answers 200, with an error body.
    if (body.find("<Error>") != std::string::npos || body.find("CopyObjectResult") == std::string::npos) {
      return Status::unavailable(req.what + ": the server answered 200 without a copy result: " + body.substr(0, 200));
    }
    if (serverSide) *serverSide = true;
    return Status::ok();
  }

  std::string describe() const override {
    return "s3://" + config_.bucket + (config_.prefix.empty() ? "" : "/" + config_.prefix) + " at " + config_.endpoint;
  }

  // Checks the bucket exists and the credentials may list it, creating it when the
  // config asks: configuration mistakes should fail here, not on the first upload.
  Status openBucket() {
    s3::Request req = bucketRequest("GET", s3::canonicalQuery({{"list-type", "2"}, {"max-keys", "1"}}));
    std::string body;
    req.intoString = &body;
    Result<s3::Response> r = client_.execute(req);
    if (!r) return r.status();
    if (isSuccess(*r)) return Status::ok();
    if (r->httpStatus == 404 && r->errorCode == "NoSuchBucket" && config_.createBucket) return createBucket();
    return failure(req, *r);
  }

 private:
  // A whole object and its ETag ("" if the answer had none).
  Result<TaggedObject> getWhole(const std::string& key) {
    if (key.empty()) return Status::invalid("s3 GET: empty key");
    TaggedObject object;
    s3::Request req = objectRequest("GET", key);
    req.intoString = &object.data;
    Result<s3::Response> r = client_.execute(req);
    if (!r) return r.status();
    if (!isSuccess(*r)) return failure(req, *r);
    object.tag = std::move(r->etag);
    return object;
  }

  Status createBucket() {
    s3::Request req = bucketRequest("PUT", "");
    // Outside us-east-1, AWS wants the region repeated in the body.
    std::string location;
    if (config_.region != "us-east-1") {
      location = "<CreateBucketConfiguration><LocationConstraint>" + config_.region +
                 "</LocationConstraint></CreateBucketConfiguration>";
      req.body = bytesOf(location);
    }
    Result<s3::Response> r = client_.execute(req);
    if (!r) return r.status();
    // Someone else (another gateway starting with us) may have created it first.
    if (isSuccess(*r) || r->errorCode == "BucketAlreadyOwnedByYou") return Status::ok();
    if (r->errorCode == "BucketAlreadyExists") {
      return Status::denied(req.what + ": bucket name '" + config_.bucket + "' is taken by another account");
    }
    return failure(req, *r);
  }

  s3::Request objectRequest(const char* method, const std::string& key) const {
    s3::Request req;
    req.method = method;
    req.path = "/" + config_.bucket + "/" + s3::uriEncode(config_.prefix + key, true);
    req.what = "s3 " + std::string(method) + " " + config_.bucket + "/" + config_.prefix + key;
    return req;
  }

  s3::Request bucketRequest(const char* method, std::string query) const {
    s3::Request req;
    req.method = method;
    req.path = "/" + config_.bucket;
    req.query = std::move(query);
    req.what = "s3 " + std::string(method) + " " + config_.bucket + "/" + config_.prefix;
    return req;
  }

  // The Status for a final answer that is not a success and not retryable.
  Status failure(const s3::Request& req, const s3::Response& r) const {
    std::string detail = std::to_string(r.httpStatus);
    if (!r.errorCode.empty()) detail += " " + r.errorCode;
    if (!r.errorMessage.empty()) detail += ": " + r.errorMessage;
    std::string text = req.what + ": " + detail;
    if (r.httpStatus == 401 || r.httpStatus == 403) return Status::denied(text + deniedHint(r.errorCode));
    if (r.httpStatus == 404 && r.errorCode == "NoSuchBucket") {
      return Status::notFound(req.what + ": bucket '" + config_.bucket + "' does not exist at " + config_.endpoint);
    }
    if (r.httpStatus == 404) return Status::notFound(text);
    if (r.httpStatus >= 500) return Status::unavailable(text);
    if (r.httpStatus >= 300 && r.httpStatus < 400) {
      return Status::invalid(text + " (a redirect: is the endpoint or the region wrong?)");
    }
    return Status::invalid(text);
  }

  const S3Config config_;
  s3::Client client_;
  std::atomic<bool> quoteIfMatch_{false};  // this server wants If-Match's tag quoted
};

Status validate(S3Config& config) {
  while (config.endpoint.ends_with('/')) config.endpoint.pop_back();
  if (config.endpoint.empty()) return Status::invalid("S3 endpoint is not set (http://host:port)");
  if (!config.endpoint.starts_with("http://") && !config.endpoint.starts_with("https://")) {
    return Status::invalid("S3 endpoint '" + config.endpoint + "' must start with http:// or https://");
  }
  if (config.bucket.empty()) return Status::invalid("S3 bucket is not set");
  // Anything uriEncode would change cannot be a bucket name, and would break the URL.
  if (s3::uriEncode(config.bucket, false) != config.bucket) {
    return Status::invalid("S3 bucket name '" + config.bucket + "' is not valid");
  }
  if (config.accessKey.empty() || config.secretKey.empty()) {
    return Status::invalid(
        "S3 credentials are not set: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
        "(or access_key= and secret_key= in the store URL)");
  }
  if (config.region.empty()) return Status::invalid("S3 region is not set (us-east-1 for most servers)");
  if (config.maxAttempts < 1 || config.connectTimeoutMs <= 0 || config.requestTimeoutMs <= 0) {
    return Status::invalid("S3 maxAttempts and timeouts must be positive");
  }
  // Keys are prefix + key, so the prefix is a directory: "gw1" means "gw1/".
  while (config.prefix.starts_with('/')) config.prefix.erase(0, 1);
  if (!config.prefix.empty() && !config.prefix.ends_with('/')) config.prefix += '/';
  return Status::ok();
}

}  // namespace

Result<std::unique_ptr<ObjectStore>> makeS3Store(const S3Config& config) {
  S3Config checked = config;
  if (Status s = validate(checked); !s) return s;
  auto store = std::make_unique<S3Store>(checked);
  if (Status s = store->openBucket(); !s) return s;
  return std::unique_ptr<ObjectStore>(std::move(store));
}

}  // namespace ferry
