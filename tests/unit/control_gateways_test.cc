// Gateways and their activation (steps 1, 3 and 4) on SQLite and PostgreSQL.

#include <gtest/gtest.h>

#include <Poco/Data/Session.h>

#include <ctime>
#include <memory>

#include "accounts.h"
#include "db.h"
#include "gateway_key.h"
#include "gateways.h"
#include "keys.h"
#include "test_util.h"

namespace ferry::control {
namespace {

using ferry::testing::GatewayKey;
using ferry::testing::TempDir;

class GatewaysTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    std::string url = ferry::testing::controlDatabaseUrl(GetParam(), dir_);
    if (url.empty()) GTEST_SKIP() << "no PostgreSQL (the pg fixture did not start)";
    auto db = Db::open(url);
    ASSERT_TRUE(db) << db.status().toString();
    db_ = std::move(db).value();
    accounts_ = std::make_unique<Accounts>(*db_);
    gateways_ = std::make_unique<Gateways>(*db_);
    ann_ = accounts_->signUp("ann@example.com", "0123456789ab").value();
    bob_ = accounts_->signUp("bob@example.com", "0123456789ab").value();
  }
  ActivationTicket start(const GatewayKey& key) {
    auto t = gateways_->startActivation({key.publicPem(), "gw-host", "0.1.0", {"10.0.0.5", "fd00::5"}});
    EXPECT_TRUE(t) << t.status().toString();
    return t.value();
  }
  Result<ActivationState> poll(const GatewayKey& key, const std::string& requestId) {
    int64_t t = ::time(nullptr);
    return gateways_->activationState(requestId, t, key.sign(activationChallenge(requestId, t)));
  }

  TempDir dir_;
  std::unique_ptr<Db> db_;
  std::unique_ptr<Accounts> accounts_;
  std::unique_ptr<Gateways> gateways_;
  std::string ann_, bob_;
};

TEST(ActivationKeyTest, NormalizesWhatACustomerTypes) {
  EXPECT_EQ(normalizeActivationKey("abcd-efgh-jkmn-pq23"), "ABCDEFGHJKMNPQ23");
  EXPECT_EQ(normalizeActivationKey("ABCD EFGH JKMN PQ23"), "ABCDEFGHJKMNPQ23");
  EXPECT_EQ(normalizeActivationKey("ABCD-EFGH-JKMN-PQ2"), "") << "too short";
  EXPECT_EQ(normalizeActivationKey("ABCD-EFGH-JKMN-PQ20"), "") << "0 is not in the alphabet";
  EXPECT_EQ(normalizeActivationKey("ABCD-EFGH-JKMN-PQ2!"), "");
}

TEST_P(GatewaysTest, TheWholeActivation) {
  GatewayKey key;
  ActivationTicket t = start(key);
  EXPECT_EQ(t.key.size(), 19u) << t.key;
  auto st = poll(key, t.requestId);
  ASSERT_TRUE(st) << st.status().toString();
  EXPECT_FALSE(st.value().activated);

  auto g = gateways_->claim(ann_, t.key, "branch office", "Europe/Berlin");
  ASSERT_TRUE(g) << g.status().toString();
  EXPECT_EQ(g.value().name, "branch office");
  EXPECT_EQ(g.value().hostname, "gw-host");
  EXPECT_EQ(g.value().addresses, (std::vector<std::string>{"10.0.0.5", "fd00::5"}));
  EXPECT_EQ(g.value().keyFingerprint, publicKeyFingerprint(key.publicPem()).value());

  st = poll(key, t.requestId);
  ASSERT_TRUE(st) << st.status().toString();
  EXPECT_TRUE(st.value().activated);
  EXPECT_EQ(st.value().gateway.id, g.value().id);

  auto list = gateways_->list(ann_).value();
  ASSERT_EQ(list.size(), 1u);
  EXPECT_TRUE(gateways_->rename(ann_, g.value().id, "head office"));
  EXPECT_EQ(gateways_->get(ann_, g.value().id).value().name, "head office");
}

TEST_P(GatewaysTest, ManyChannelsRegisterInOneCallAndUnknownGatewaysAreNot) {
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    GatewayKey key;
    auto g = gateways_->claim(ann_, start(key).key, "gw " + std::to_string(i), "");
    ASSERT_TRUE(g) << g.status().toString();
    ids.push_back(g.value().id);
  }
  ASSERT_TRUE(gateways_->heartbeat("srv-a", "https://a:8444"));
  // The second gateway was registered elsewhere before: the newer connection wins.
  ASSERT_TRUE(gateways_->heartbeat("srv-b", "https://b:8444"));
  ASSERT_TRUE(gateways_->connected(ids[1], "srv-b", 1));
  auto known = gateways_->connectMany({{ids[0], 7}, {"gw-deleted-or-never", 8}, {ids[1], 9}, {ids[2], 10}}, "srv-a");
  ASSERT_TRUE(known) << known.status().toString();
  EXPECT_EQ(known.value(), (std::vector<bool>{true, false, true, true}));
  for (const std::string& id : ids) {
    auto h = gateways_->holder(id);
    ASSERT_TRUE(h && h.value()) << id;
    EXPECT_EQ(h.value()->id, "srv-a") << id;
    EXPECT_GT(gateways_->get(ann_, id).value().lastSeenAt, 0) << id;
  }
  EXPECT_FALSE(gateways_->holder("gw-deleted-or-never").value()) << "an unknown gateway was registered";
  // The epoch is this connection's: a close with another epoch leaves the row.
  ASSERT_TRUE(gateways_->disconnected(ids[2], "srv-a", 3));
  EXPECT_TRUE(gateways_->holder(ids[2]).value());
  ASSERT_TRUE(gateways_->disconnected(ids[2], "srv-a", 10));
  EXPECT_FALSE(gateways_->holder(ids[2]).value());
}

TEST_P(GatewaysTest, AKeyIsSingleUseAndBoundToItsGateway) {
  GatewayKey key, other;
  ActivationTicket t = start(key);
  ASSERT_TRUE(gateways_->claim(ann_, t.key, "one", ""));
  EXPECT_EQ(gateways_->claim(bob_, t.key, "two", "").status().code(), Code::kBusy) << "reused";
  EXPECT_EQ(poll(other, t.requestId).status().code(), Code::kPermissionDenied) << "another key cannot poll";
  int64_t old = ::time(nullptr) - 3600;
  EXPECT_EQ(
      gateways_->activationState(t.requestId, old, key.sign(activationChallenge(t.requestId, old))).status().code(),
      Code::kPermissionDenied)
      << "an old signature is not replayed";
}

TEST_P(GatewaysTest, OneKeyPairIsOneGatewayAndAFailedClaimLeavesNothingBehind) {
  GatewayKey key;
  ActivationTicket first = start(key), second = start(key), third = start(key);
  auto one = gateways_->claim(ann_, first.key, "one", "Europe/Berlin");
  ASSERT_TRUE(one);
  EXPECT_FALSE(one.value().reactivated);
  // Another account cannot take the key pair of ann's gateway.
  auto taken = gateways_->claim(bob_, second.key, "bob's", "");
  EXPECT_EQ(taken.status().code(), Code::kBusy) << taken.status().toString();
  EXPECT_TRUE(gateways_->list(bob_).value().empty());
  // The failed claim rolled back: the database is usable and the second key unused.
  GatewayKey other;
  EXPECT_TRUE(gateways_->claim(bob_, start(other).key, "bob's", ""));
  auto st = poll(key, second.requestId);
  ASSERT_TRUE(st) << st.status().toString();
  EXPECT_FALSE(st.value().activated);
  // The same account claiming a new key of the same key pair re-activates the gateway
  // (an expired certificate's way back): same id, name and time zone, no second one.
  auto again = gateways_->claim(ann_, third.key, "ignored", "");
  ASSERT_TRUE(again) << again.status().toString();
  EXPECT_TRUE(again.value().reactivated);
  EXPECT_EQ(again.value().id, one.value().id);
  EXPECT_EQ(again.value().name, "one");
  EXPECT_EQ(again.value().timezone, "Europe/Berlin");
  EXPECT_EQ(gateways_->list(ann_).value().size(), 1u);
  st = poll(key, third.requestId);
  ASSERT_TRUE(st);
  EXPECT_TRUE(st.value().activated);
  EXPECT_EQ(st.value().gateway.id, one.value().id);
}

TEST_P(GatewaysTest, WrongAndExpiredKeysAreClearErrors) {
  GatewayKey key;
  ActivationTicket t = start(key);
  EXPECT_EQ(gateways_->claim(ann_, "ABCD-EFGH-JKMN-PQ23", "x", "").status().code(), Code::kNotFound);
  EXPECT_EQ(gateways_->claim(ann_, "hello", "x", "").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(gateways_->claim(ann_, t.key, "", "").status().code(), Code::kInvalidArgument) << "a name is required";
  Poco::Data::Session s = db_->session();
  std::string id = t.requestId;
  s << "UPDATE activations SET expires_at = 1 WHERE request_id = $1", Poco::Data::Keywords::use(id),
      Poco::Data::Keywords::now;
  auto expired = gateways_->claim(ann_, t.key, "x", "");
  EXPECT_EQ(expired.status().code(), Code::kInvalidArgument);
  EXPECT_NE(expired.status().message().find("expired"), std::string::npos) << expired.status().toString();
  EXPECT_TRUE(gateways_->list(ann_).value().empty()) << "nothing was created";
  EXPECT_FALSE(gateways_->startActivation({"not a key", "h", "v", {}}));
}

TEST_P(GatewaysTest, GuessingKeysIsRateLimited) {
  GatewayKey key;
  ActivationTicket t = start(key);
  for (int i = 0; i < Gateways::kMaxClaimFailures; ++i) {
    EXPECT_EQ(gateways_->claim(bob_, "ABCD-EFGH-JKMN-PQ2" + std::string(1, "ABCDEFGHJKMN"[i]), "x", "").status().code(),
              Code::kNotFound);
  }
  auto limited = gateways_->claim(bob_, t.key, "x", "");
  EXPECT_EQ(limited.status().code(), Code::kRateLimited) << "even the right key, once over the limit";
  EXPECT_TRUE(gateways_->claim(ann_, t.key, "mine", "")) << "the limit is per account";
}

TEST_P(GatewaysTest, OneAccountCannotSeeOrChangeAnothersGateways) {
  GatewayKey key;
  auto g = gateways_->claim(ann_, start(key).key, "ann's", "").value();
  EXPECT_TRUE(gateways_->list(bob_).value().empty());
  EXPECT_EQ(gateways_->get(bob_, g.id).status().code(), Code::kNotFound);
  EXPECT_EQ(gateways_->rename(bob_, g.id, "mine now").code(), Code::kNotFound);
  EXPECT_EQ(gateways_->remove(bob_, g.id).code(), Code::kNotFound);
  EXPECT_EQ(gateways_->get(ann_, g.id).value().name, "ann's");
  EXPECT_TRUE(gateways_->remove(ann_, g.id));
  EXPECT_TRUE(gateways_->list(ann_).value().empty());
}

INSTANTIATE_TEST_SUITE_P(Backends, GatewaysTest, ::testing::Values("sqlite", "postgres"),
                         [](const auto& p) { return p.param; });

}  // namespace
}  // namespace ferry::control
