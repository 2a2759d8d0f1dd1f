#pragma once
// The fixture of the engine tests that run on file:// and, in engine_s3_test
// (FERRY_TEST_STORE=s3), on radosgw: a temporary directory, the stores in it, the
// fault seam; skipped, never passed, where the store cannot run. Header-only.

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "faulty_store.h"
#include "test_stores.h"
#include "test_util.h"

namespace ferry::testing {

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::string why = stores_.unavailable(); !why.empty()) GTEST_SKIP() << why;
  }

  TempDir dir_;
  TestStores stores_{dir_.path()};
  std::shared_ptr<FaultyStore::Control> control_ = std::make_shared<FaultyStore::Control>();
};

}  // namespace ferry::testing
