#pragma once
// The fixture of the agent's end-to-end tests: a real ferry-control (SQLite, a store per
// gateway: a file:// directory, or with FERRY_TEST_STORE=s3 a prefix of a radosgw
// bucket, tests/lib/test_stores.h) and an account; activate() starts an agent and
// activates it as a customer would, with the key read from its local page. Header-only.

#include <gtest/gtest.h>

#include <csignal>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "activate.h"
#include "agent_process.h"
#include "control_process.h"
#include "test_stores.h"
#include "test_util.h"

namespace ferry::testing {

class AgentFixture : public ::testing::Test {
 protected:
  using json = nlohmann::json;
  void SetUp() override {
    if (!ferry::testing::haveProgram("nbdkit")) GTEST_SKIP() << "nbdkit is not installed";
    if (std::string why = stores_.unavailable(); !why.empty()) GTEST_SKIP() << why;
    // The agents inherit the test's environment: the S3 credentials TestStores set.
    std::string store = stores_.s3() ? stores_.url("{gateway}") : "file://" + (storeDir_ / "{gateway}");
    control_ = std::make_unique<Control>(controlDir_.path(), "sqlite://" + (controlDir_ / "control.db"),
                                         std::string(kFastTimers) + "gateway.store = " + store + "\n" + controlExtra_);
    ASSERT_TRUE(control_->start()) << control_->log();
    token_ = ferry::testing::signUpAndLogIn(*control_, "ann@example.com");
  }
  Control::Reply api(const std::string& method, const std::string& path, const json& body = nullptr) {
    return control_->call(method, path, body.is_null() ? "" : body.dump(), token_);
  }
  // Starts the agent and activates it as a customer would: the key from its page.
  std::string activate(Agent& agent, const std::string& timezone = "") {
    EXPECT_TRUE(agent.start()) << agent.log();
    EXPECT_TRUE(agent.waitFor([](const json& s) { return s.value("stage", "") == "waiting_for_customer"; }))
        << agent.log();
    std::string key = agent.status()["activation_key"];
    json claim = {{"activation_key", key}, {"name", "branch"}};
    if (!timezone.empty()) claim["timezone"] = timezone;
    auto claimed = api("POST", "/v1/gateways/activate", claim);
    EXPECT_EQ(claimed.status, 201) << claimed.text;
    EXPECT_TRUE(agent.waitFor([](const json& s) {
      return s.value("stage", "") == "activated" && s.value("channel", json::object()).value("connected", false);
    })) << agent.log();
    return claimed.body["gateway"].value("id", "");
  }
  json waitFinished(const std::string& id, int seconds = 60) {
    return ferry::testing::waitFinished(*control_, token_, id, seconds);
  }
  std::string createVolume(const std::string& gw, const std::string& name, const std::string& size = "64M") {
    auto r = api("POST", "/v1/gateways/" + gw + "/volumes", {{"name", name}, {"size", size}});
    EXPECT_EQ(r.status, 202) << r.text;
    return r.body["request"].value("id", "");
  }

  // Stops the agent's volume engine (SIGSTOP; the caller sends SIGCONT), then asks for
  // volume `name`: the request reaches the agent and hangs there, begun. The engine's
  // pid and the request's id.
  std::pair<pid_t, std::string> createWithHungEngine(Agent& agent, const std::string& gw, const std::string& name) {
    pid_t engine = agent.enginePid();
    EXPECT_GT(engine, 0) << agent.log();
    if (engine <= 0 || ::kill(engine, SIGSTOP) != 0) return {0, ""};
    std::string id = createVolume(gw, name);
    EXPECT_TRUE(agent.waitFor([](const json& s) { return s.value("channel", json::object()).value("requests", 0) >= 2; }))
        << "the request reached the agent";
    return {engine, id};
  }

  std::string controlExtra_;  // more control config lines (set before SetUp)
  TempDir controlDir_, agentDir_, storeDir_;
  TestStores stores_{storeDir_.path()};  // gateway G's store is stores_ "G"
  std::unique_ptr<Control> control_;
  std::string token_;
};

}  // namespace ferry::testing
