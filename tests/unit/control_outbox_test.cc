// The outbox and the records it keeps (volumes, snapshots), on SQLite and PostgreSQL.

#include <gtest/gtest.h>

#include <chrono>
#include <ctime>
#include <memory>
#include <thread>

#include "accounts.h"
#include "db.h"
#include "gateway_key.h"
#include "gateways.h"
#include "inventory.h"
#include "outbox.h"
#include "test_util.h"

namespace ferry::control {
namespace {

using json = nlohmann::json;
using ferry::testing::GatewayKey;
using ferry::testing::TempDir;

class OutboxTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    std::string url = ferry::testing::controlDatabaseUrl(GetParam(), dir_);
    if (url.empty()) GTEST_SKIP() << "no PostgreSQL (the pg fixture did not start)";
    auto db = Db::open(url);
    ASSERT_TRUE(db) << db.status().toString();
    db_ = std::move(db).value();
    accounts_ = std::make_unique<Accounts>(*db_);
    gateways_ = std::make_unique<Gateways>(*db_);
    outbox_ = std::make_unique<Outbox>(*db_);
    outbox_->setSettler(&Inventory::settle);
    inventory_ = std::make_unique<Inventory>(*db_, *outbox_);
    ann_ = accounts_->signUp("ann@example.com", "0123456789ab").value();
    bob_ = accounts_->signUp("bob@example.com", "0123456789ab").value();
    gw_ = activate(ann_);
  }
  std::string activate(const std::string& account) {
    GatewayKey key;
    auto t = gateways_->startActivation({key.publicPem(), "h", "0.1.0", {}});
    auto g = gateways_->claim(account, t.value().key, "g", "");
    EXPECT_TRUE(g) << g.status().toString();
    return g.value().id;
  }
  std::string stateOf(const std::string& id) { return outbox_->get(ann_, id).value().state; }

  TempDir dir_;
  std::unique_ptr<Db> db_;
  std::unique_ptr<Accounts> accounts_;
  std::unique_ptr<Gateways> gateways_;
  std::unique_ptr<Outbox> outbox_;
  std::unique_ptr<Inventory> inventory_;
  std::string ann_, bob_, gw_;
};

TEST_P(OutboxTest, ARequestGoesPendingDeliveredDoneAndIsAnsweredOnce) {
  auto r = outbox_->submit(ann_, gw_, "gateway.describe", json::object());
  ASSERT_TRUE(r) << r.status().toString();
  EXPECT_EQ(r.value().state, "pending");
  EXPECT_EQ(r.value().id.rfind("req-", 0), 0u);
  auto out = outbox_->outstanding(gw_);
  ASSERT_TRUE(out);
  ASSERT_EQ(out.value().size(), 1u);
  EXPECT_EQ(out.value()[0].op, "gateway.describe");

  ASSERT_TRUE(outbox_->markDelivered(r.value().id, "server-a", 7));
  auto got = outbox_->get(ann_, r.value().id).value();
  EXPECT_EQ(got.state, "delivered");
  EXPECT_EQ(got.attempts, 1);
  EXPECT_EQ(got.deliveredBy, "server-a");
  EXPECT_EQ(outbox_->outstanding(gw_).value().size(), 1u) << "delivered, not answered: sent again on reconnect";

  auto fin = outbox_->finish(gw_, r.value().id, true, {{"volumes", 0}});
  ASSERT_TRUE(fin) << fin.status().toString();
  EXPECT_TRUE(fin.value());
  got = outbox_->get(ann_, r.value().id).value();
  EXPECT_EQ(got.state, "done");
  EXPECT_EQ(got.result, (json{{"volumes", 0}}));
  EXPECT_GT(got.finishedAt, 0);
  EXPECT_TRUE(outbox_->outstanding(gw_).value().empty());

  // A repeated answer (after a redelivery) changes nothing, even a different one.
  fin = outbox_->finish(gw_, r.value().id, false, {{"code", "x"}, {"message", "late"}});
  ASSERT_TRUE(fin);
  EXPECT_FALSE(fin.value());
  EXPECT_EQ(stateOf(r.value().id), "done");
  // A late "delivered" never moves it back.
  ASSERT_TRUE(outbox_->markDelivered(r.value().id, "server-b", 8));
  EXPECT_EQ(stateOf(r.value().id), "done");
}

// The holder's heartbeat sends again what missed its push (pending too long) and what
// went down a connection that is no longer the registered one: that connection died
// unanswered after the gateway had reconnected, and nothing else would send it again.
TEST_P(OutboxTest, TheHolderSendsAgainWhatWentDownAConnectionThatIsGone) {
  auto stalled = [&](const std::string& server) {
    std::this_thread::sleep_for(std::chrono::milliseconds(3));  // older than the 1 ms asked below
    auto r = outbox_->stalledGateways(server, 1);
    EXPECT_TRUE(r) << r.status().toString();
    return r ? r.value() : std::vector<std::string>{};
  };
  ASSERT_TRUE(gateways_->connectMany({{gw_, 100}}, "server-a"));
  auto r = outbox_->submit(ann_, gw_, "gateway.describe", json::object()).value();
  EXPECT_EQ(stalled("server-a"), std::vector<std::string>{gw_}) << "pending, its push missed";
  EXPECT_TRUE(stalled("server-b").empty()) << "only the holder sends";

  ASSERT_TRUE(outbox_->markDelivered(r.id, "server-a", 100));
  EXPECT_TRUE(stalled("server-a").empty()) << "delivered on the connection registered now: its answer is awaited";
  EXPECT_EQ(outbox_->outstanding(gw_).value().at(0).deliveredEpoch, 100) << "a channel compares it with its own";

  // The gateway reconnected (to the same server or another) before the answer came.
  ASSERT_TRUE(gateways_->connectMany({{gw_, 200}}, "server-b"));
  EXPECT_TRUE(stalled("server-a").empty());
  EXPECT_EQ(stalled("server-b"), std::vector<std::string>{gw_}) << "sent on connection 100, registered is 200";

  ASSERT_TRUE(outbox_->markDelivered(r.id, "server-b", 200));
  EXPECT_TRUE(stalled("server-b").empty());
  ASSERT_TRUE(outbox_->finish(gw_, r.id, true, json::object()));
  ASSERT_TRUE(gateways_->connectMany({{gw_, 300}}, "server-b"));
  EXPECT_TRUE(stalled("server-b").empty()) << "answered: nothing to send";
}

TEST_P(OutboxTest, AnswersOnlyCountFromTheGatewayTheRequestIsFor) {
  std::string other = activate(ann_);
  auto r = outbox_->submit(ann_, gw_, "gateway.describe", json::object()).value();
  auto fin = outbox_->finish(other, r.id, true, json::object());
  EXPECT_EQ(fin.status().code(), Code::kNotFound);
  EXPECT_EQ(stateOf(r.id), "pending");
  EXPECT_EQ(outbox_->finish(gw_, "req-nope", true, json::object()).status().code(), Code::kNotFound);
}

TEST_P(OutboxTest, OutstandingIsOldestFirstAndListNewestFirst) {
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    ids.push_back(outbox_->submit(ann_, gw_, "gateway.describe", json::object()).value().id);
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  auto out = outbox_->outstanding(gw_).value();
  ASSERT_EQ(out.size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(out[i].id, ids[i]);
  auto listed = outbox_->list(ann_, gw_, 2).value();
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[0].id, ids[2]);
  EXPECT_EQ(listed[1].id, ids[1]);
}

TEST_P(OutboxTest, AnotherAccountSeesNothing) {
  auto r = outbox_->submit(ann_, gw_, "gateway.describe", json::object()).value();
  EXPECT_EQ(outbox_->submit(bob_, gw_, "gateway.describe", json::object()).status().code(), Code::kNotFound);
  EXPECT_EQ(outbox_->get(bob_, r.id).status().code(), Code::kNotFound);
  EXPECT_EQ(outbox_->list(bob_, gw_, 10).status().code(), Code::kNotFound);
  EXPECT_EQ(inventory_->volumes(bob_, gw_).status().code(), Code::kNotFound);
  EXPECT_EQ(inventory_->createVolume(bob_, gw_, "v", 1 << 20, 1 << 20).status().code(), Code::kNotFound);
  EXPECT_EQ(inventory_->snapshots(bob_, gw_, "").status().code(), Code::kNotFound);
  EXPECT_EQ(outbox_->outstanding(gw_).value().size(), 1u) << "bob's attempts stored nothing";
}

TEST_P(OutboxTest, AVolumeFollowsItsRequests) {
  auto made = inventory_->createVolume(ann_, gw_, "disk0", 64 << 20, 1 << 20);
  ASSERT_TRUE(made) << made.status().toString();
  EXPECT_EQ(made.value().first.state, "creating");
  EXPECT_EQ(made.value().second.op, "volume.create");
  EXPECT_EQ(made.value().second.args, (json{{"name", "disk0"}, {"size", 64 << 20}, {"chunk_size", 1 << 20}}));
  EXPECT_EQ(inventory_->createVolume(ann_, gw_, "disk0", 64 << 20, 1 << 20).status().code(), Code::kBusy)
      << "one name per gateway";
  EXPECT_EQ(inventory_->deleteVolume(ann_, gw_, "disk0").status().code(), Code::kBusy) << "still creating";
  EXPECT_EQ(inventory_->createSnapshot(ann_, gw_, "nope").status().code(), Code::kNotFound);

  ASSERT_TRUE(outbox_->finish(gw_, made.value().second.id, true, json::object()));
  EXPECT_EQ(inventory_->volume(ann_, gw_, "disk0").value().state, "available");

  auto snap = inventory_->createSnapshot(ann_, gw_, "disk0");
  ASSERT_TRUE(snap) << snap.status().toString();
  EXPECT_EQ(snap.value().second.args["snapshot"], snap.value().first.id);
  ASSERT_TRUE(outbox_->finish(gw_, snap.value().second.id, true, {{"chunks", 3}}));
  auto snaps = inventory_->snapshots(ann_, gw_, "disk0").value();
  ASSERT_EQ(snaps.size(), 1u);
  EXPECT_EQ(snaps[0].state, "completed");
  EXPECT_EQ(snaps[0].detail, (json{{"chunks", 3}}));

  // A failed delete gives the volume back; a done one removes it and its snapshots.
  auto del = inventory_->deleteVolume(ann_, gw_, "disk0");
  ASSERT_TRUE(del) << del.status().toString();
  EXPECT_EQ(inventory_->volume(ann_, gw_, "disk0").value().state, "deleting");
  ASSERT_TRUE(outbox_->finish(gw_, del.value().id, false, {{"code", "busy"}, {"message", "in use"}}));
  EXPECT_EQ(inventory_->volume(ann_, gw_, "disk0").value().state, "available");
  del = inventory_->deleteVolume(ann_, gw_, "disk0");
  ASSERT_TRUE(outbox_->finish(gw_, del.value().id, true, json::object()));
  EXPECT_EQ(inventory_->volume(ann_, gw_, "disk0").status().code(), Code::kNotFound);
  EXPECT_TRUE(inventory_->snapshots(ann_, gw_, "").value().empty());
}

TEST_P(OutboxTest, AFailedCreateLeavesNoVolumeAndBadArgumentsStoreNothing) {
  auto made = inventory_->createVolume(ann_, gw_, "disk0", 64 << 20, 1 << 20).value();
  ASSERT_TRUE(outbox_->finish(gw_, made.second.id, false, {{"code", "no_space"}, {"message", "cache disk full"}}));
  EXPECT_EQ(inventory_->volume(ann_, gw_, "disk0").status().code(), Code::kNotFound);
  auto r = outbox_->get(ann_, made.second.id).value();
  EXPECT_EQ(r.state, "failed");
  EXPECT_EQ(r.error["message"], "cache disk full");

  EXPECT_EQ(inventory_->createVolume(ann_, gw_, "../x", 1 << 20, 1 << 20).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(inventory_->createVolume(ann_, gw_, "v", 3 << 20, 2 << 20).status().code(), Code::kInvalidArgument)
      << "chunk size not a power of two";
  EXPECT_EQ(inventory_->createVolume(ann_, gw_, "v", (1 << 20) + 1, 1 << 20).status().code(),
            Code::kInvalidArgument)
      << "size not a multiple of the chunk";
  EXPECT_EQ(inventory_->createVolume(ann_, gw_, "v", 0, 1 << 20).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(outbox_->list(ann_, gw_, 100).value().size(), 1u);
}

TEST_P(OutboxTest, DeletingAGatewayDropsItsRequestsAndVolumes) {
  auto made = inventory_->createVolume(ann_, gw_, "disk0", 64 << 20, 1 << 20).value();
  ASSERT_TRUE(gateways_->remove(ann_, gw_));
  EXPECT_EQ(outbox_->get(ann_, made.second.id).status().code(), Code::kNotFound);
  EXPECT_TRUE(outbox_->outstanding(gw_).value().empty());
}

TEST(OperationsTest, OnlyKnownOperationsWithTheirArguments) {
  EXPECT_TRUE(checkRequest("gateway.describe", json::object()));
  EXPECT_EQ(checkRequest("gateway.format_disk", json::object()).code(), Code::kInvalidArgument);
  EXPECT_EQ(checkRequest("gateway.describe", {{"x", 1}}).code(), Code::kInvalidArgument);
  EXPECT_EQ(checkRequest("gateway.describe", json::array()).code(), Code::kInvalidArgument);
  EXPECT_EQ(checkRequest("volume.delete", json::object()).code(), Code::kInvalidArgument);
  EXPECT_EQ(checkRequest("volume.create", {{"name", "v"}, {"size", "1G"}, {"chunk_size", 1 << 20}}).code(),
            Code::kInvalidArgument);
  EXPECT_TRUE(checkRequest("volume.create", {{"name", "v"}, {"size", 1 << 30}, {"chunk_size", 1 << 20}}));
  EXPECT_TRUE(isDirectOp("gateway.shutdown"));
  EXPECT_FALSE(isDirectOp("volume.create"));
}

INSTANTIATE_TEST_SUITE_P(Backends, OutboxTest, ::testing::Values("sqlite", "postgres"),
                         [](const auto& p) { return p.param; });

}  // namespace
}  // namespace ferry::control
