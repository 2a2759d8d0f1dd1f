#pragma once
// The object stores the engine's snapshot, clone and recovery tests run against: named
// directories under a temporary directory, or — when FERRY_TEST_STORE=s3, as
// engine_s3_test runs them — named prefixes of a bucket of the radosgw that the ctest
// fixture "rgw" started. The same test bodies then cover both. Header-only.

#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ferry/object_store.h"
#include "test_util.h"

namespace ferry::testing {

class TestStores {
 public:
  explicit TestStores(std::string dir) : dir_(std::move(dir)) {
    const char* kind = std::getenv("FERRY_TEST_STORE");
    s3_ = kind != nullptr && std::string(kind) == "s3";
    if (!s3_) return;
    endpoint_ = rgwEndpoint();
    bucket_ = testBucketName();
    ::setenv("AWS_ACCESS_KEY_ID", "TESTKEY", 1);
    ::setenv("AWS_SECRET_ACCESS_KEY", "TESTSECRET", 1);
  }

  // Non-empty: why these tests cannot run here (the caller skips).
  std::string unavailable() const {
    return s3_ && endpoint_.empty() ? "radosgw is not running (no $FERRY_BUILD_DIR/rgw/endpoint)" : "";
  }
  bool s3() const { return s3_; }

  // The URL of the store called name, as an engine's store= or a volume's source.
  std::string url(const std::string& name) const {
    if (s3_) return "s3://" + bucket_ + "/" + name + "?endpoint=" + endpoint_ + "&region=us-east-1&create_bucket=1";
    return "file://" + dir_ + "/" + name + "?create";
  }
  ObjectStore& client(const std::string& name) {
    auto& c = clients_[name];
    if (!c) {
      auto opened = openStore(url(name));
      if (!opened) throw std::runtime_error(opened.status().toString());
      c = std::move(opened).value();
    }
    return *c;
  }
  bool exists(const std::string& name, const std::string& key) {
    auto got = client(name).getAll(key);
    EXPECT_TRUE(got || got.status().code() == Code::kNotFound) << got.status().toString();
    return static_cast<bool>(got);
  }
  std::string read(const std::string& name, const std::string& key) {
    auto got = client(name).getAll(key);
    EXPECT_TRUE(got) << key << ": " << got.status().toString();
    return got ? got.value() : "";
  }
  // The keys under prefix.
  std::vector<std::string> keys(const std::string& name, const std::string& prefix) {
    auto listed = client(name).list(prefix);
    EXPECT_TRUE(listed) << listed.status().toString();
    std::vector<std::string> out;
    if (listed) {
      for (const ObjectInfo& o : listed.value()) out.push_back(o.key);
    }
    return out;
  }

 private:
  std::string dir_;
  bool s3_ = false;
  std::string endpoint_, bucket_;
  std::map<std::string, std::unique_ptr<ObjectStore>> clients_;
};

}  // namespace ferry::testing
