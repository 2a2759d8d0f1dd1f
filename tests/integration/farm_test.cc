// A farm of three ferry-control servers on one PostgreSQL (the "pg" fixture): a request
// that enters at one server reaches the gateway whose channel another server holds —
// found through the registration table (lookup) or by asking every peer (broadcast);
// a server killed while it holds gateways loses nothing: they reconnect to the others
// and every request is applied exactly once after de-duplication. The internal
// endpoint takes only peers.

#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/HTTPSClientSession.h>
#include <Poco/Net/SSLException.h>
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "activate.h"
#include "control_process.h"
#include "gateway_channel.h"
#include "gateway_key.h"
#include "test_util.h"

namespace {

using json = nlohmann::json;
using ferry::testing::Control;
using ferry::testing::GatewayChannel;
using ferry::testing::GatewayKey;
using ferry::testing::TempDir;

using ferry::testing::kFastTimers;

json obedient(const json& req) {
  return {{"ok", true}, {"result", {{"op", req.value("op", "")}}}};
}

class FarmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string url = ferry::testing::freshPostgresDatabase();
    if (url.empty()) GTEST_SKIP() << "no PostgreSQL (the pg fixture did not start)";
    const char* names[] = {"a", "b", "c"};
    for (int i = 0; i < 3; ++i) {
      // One provider CA for the farm (the first server makes it): every server trusts
      // the others' certificates and the gateways' from any of them.
      servers_.push_back(std::make_unique<Control>(
          dirs_[i].path(), url,
          std::string(kFastTimers) + "server.id = " + names[i] + "\ntls.ca_dir = " + (ca_ / "ca") + "\n"));
    }
    for (auto& s : servers_) ASSERT_TRUE(s->start()) << s->log();
    token_ = ferry::testing::signUpAndLogIn(a(), "ann@example.com");
  }
  Control& a() { return *servers_[0]; }
  Control& b() { return *servers_[1]; }
  Control& c() { return *servers_[2]; }

  json waitFinished(Control& via, const std::string& id, int seconds = 20) {
    return ferry::testing::waitFinished(via, token_, id, seconds);
  }
  bool waitHeldBy(Control& via, const std::string& gw, const std::string& server, int seconds = 15) {
    for (int i = 0; i < seconds * 20; ++i) {
      auto g = via.call("GET", "/v1/gateways/" + gw, "", token_).body["gateway"];
      if (g.value("online", false) && (server.empty() || g.value("server", "") == server)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }
  std::string submit(Control& via, const std::string& gw, const std::string& query = "", json* routing = nullptr) {
    auto r = via.call("POST", "/v1/gateways/" + gw + "/requests" + query, R"({"op":"gateway.describe"})", token_);
    EXPECT_EQ(r.status, 202) << r.text;
    if (routing) *routing = r.body["routing"];
    return r.body["request"].value("id", "");
  }

  TempDir ca_, dirs_[3];
  std::vector<std::unique_ptr<Control>> servers_;
  std::string token_;
};

TEST_F(FarmTest, ARequestEnteringAtOneServerReachesTheGatewayHeldByAnotherByLookupAndByBroadcast) {
  GatewayKey key;
  auto who = ferry::testing::activateGateway(a(), token_, key);
  GatewayChannel channel(who, {a().channelPort()}, obedient);
  channel.start();
  ASSERT_TRUE(waitHeldBy(c(), who.id, "a"));

  json routing;
  std::string id = submit(c(), who.id, "", &routing);
  EXPECT_EQ(routing, (json{{"mode", "lookup"}, {"how", "forwarded"}, {"server", "a"}}));
  json done = waitFinished(c(), id);
  EXPECT_EQ(done["state"], "done") << done;
  EXPECT_EQ(done["delivered_by"], "a");
  EXPECT_EQ(channel.executions(id), 1);

  id = submit(c(), who.id, "?routing=broadcast", &routing);
  EXPECT_EQ(routing, (json{{"mode", "broadcast"}, {"how", "broadcast"}, {"server", "a"}}));
  EXPECT_EQ(waitFinished(b(), id)["state"], "done");
  EXPECT_EQ(channel.executions(id), 1);

  auto m = a().call("GET", "/metrics");
  EXPECT_NE(m.text.find("ferry_control_peer_calls_total"), std::string::npos) << m.text;
}

TEST_F(FarmTest, AServerKilledWhileHoldingGatewaysLosesNoRequestAndAppliesNoneTwice) {
  constexpr int kGateways = 4, kBefore = 5, kDuring = 5;
  std::vector<GatewayKey> keys(kGateways);
  std::vector<GatewayChannel::Identity> who;
  std::vector<std::unique_ptr<GatewayChannel>> channels;
  for (int g = 0; g < kGateways; ++g) {
    who.push_back(ferry::testing::activateGateway(a(), token_, keys[g], "g" + std::to_string(g)));
    // A first; when it goes, B, then C.
    channels.push_back(std::make_unique<GatewayChannel>(
        who[g], std::vector<int>{a().channelPort(), b().channelPort(), c().channelPort()}, obedient));
    channels.back()->start();
  }
  for (int g = 0; g < kGateways; ++g) ASSERT_TRUE(waitHeldBy(c(), who[g].id, "a"));

  std::vector<std::vector<std::string>> ids(kGateways);
  for (int i = 0; i < kBefore; ++i) {
    for (int g = 0; g < kGateways; ++g) ids[g].push_back(submit(c(), who[g].id));
  }
  a().kill9();
  // While the farm notices: requests enter at B and C, to gateways still registered on
  // the dead server or already reconnecting.
  for (int i = 0; i < kDuring; ++i) {
    for (int g = 0; g < kGateways; ++g) ids[g].push_back(submit(i % 2 ? b() : c(), who[g].id));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  for (int g = 0; g < kGateways; ++g) {
    for (const auto& id : ids[g]) {
      json r = waitFinished(b(), id, 30);
      EXPECT_EQ(r["state"], "done") << r;
    }
    EXPECT_TRUE(waitHeldBy(b(), who[g].id, ""));
    EXPECT_NE(channels[g]->port(), a().channelPort()) << "reconnected to a live server";
    auto executed = channels[g]->allExecutions();
    EXPECT_EQ(executed.size(), ids[g].size()) << "every request reached the gateway's handler";
    for (const auto& id : ids[g]) EXPECT_EQ(executed[id], 1) << id << " applied exactly once";
  }
}

// What a TLS client presenting certFile/keyFile (or none) gets from a peer's internal
// endpoint: the HTTP status, or -1 if TLS refused it.
int callInternal(Control& server, const std::string& caFile, const std::string& certFile, const std::string& keyFile) {
  try {
    Poco::Net::Context::Ptr ctx = new Poco::Net::Context(Poco::Net::Context::TLS_CLIENT_USE, keyFile, certFile, caFile,
                                                         Poco::Net::Context::VERIFY_STRICT, 9, false);
    Poco::Net::HTTPSClientSession s("localhost", static_cast<Poco::UInt16>(server.internalPort()), ctx);
    s.setTimeout(Poco::Timespan(5, 0));
    Poco::Net::HTTPRequest req("POST", "/internal/v1/deliver", Poco::Net::HTTPMessage::HTTP_1_1);
    std::string body = R"({"gateway":"gw-any"})";
    req.setContentType("application/json");
    req.setContentLength(static_cast<std::streamsize>(body.size()));
    s.sendRequest(req) << body;
    Poco::Net::HTTPResponse resp;
    std::stringstream ignored;
    ignored << s.receiveResponse(resp).rdbuf();
    return resp.getStatus();
  } catch (const Poco::Exception&) {
    return -1;
  }
}

TEST_F(FarmTest, TheInternalEndpointTakesOnlyPeers) {
  GatewayKey key;
  auto who = ferry::testing::activateGateway(a(), token_, key);
  std::string id = submit(a(), who.id);  // offline: pending
  TempDir files;
  std::ofstream(files / "gw.crt") << who.certificatePem;
  std::ofstream(files / "gw.key") << who.privateKeyPem;
  std::string ca = ca_ / "ca/ca.crt";
  EXPECT_EQ(callInternal(a(), ca, "", ""), -1) << "no certificate: no TLS";
  EXPECT_EQ(callInternal(a(), ca, files / "gw.crt", files / "gw.key"), 403) << "a gateway is not a peer";
  // A peer's own certificate is accepted.
  std::string stateB = dirs_[1] / "state/tls";
  EXPECT_EQ(callInternal(a(), ca, stateB + "/server.crt", stateB + "/server.key"), 404) << "a peer; gw-any is not held";
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto r = a().call("GET", "/v1/requests/" + id, "", token_);
  EXPECT_EQ(r.body["request"]["state"], "pending") << "no call changed anything";
}

}  // namespace
