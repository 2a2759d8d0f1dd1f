// The control server's state: schema migrations, password hashing, accounts and tokens.
// Every test runs on SQLite and on PostgreSQL (the "pg" CTest fixture's server; those
// cases skip without it), since the same SQL must serve both.

#include <gtest/gtest.h>

#include <Poco/Data/Session.h>

#include <fstream>

#include "accounts.h"
#include "crypto.h"
#include "db.h"
#include "test_util.h"

namespace ferry::control {
namespace {

using ferry::testing::TempDir;

class ControlDbTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    url_ = ferry::testing::controlDatabaseUrl(GetParam(), dir_);
    if (url_.empty()) GTEST_SKIP() << "no PostgreSQL (the pg fixture did not start)";
    auto db = Db::open(url_);
    ASSERT_TRUE(db) << db.status().toString();
    db_ = std::move(db).value();
    accounts_ = std::make_unique<Accounts>(*db_);
  }

  TempDir dir_;
  std::string url_;
  std::unique_ptr<Db> db_;
  std::unique_ptr<Accounts> accounts_;
};

TEST(PasswordTest, HashesAreSaltedAndVerify) {
  std::string a = hashPassword("correct horse battery");
  std::string b = hashPassword("correct horse battery");
  EXPECT_NE(a, b) << "salted";
  EXPECT_EQ(a.rfind("pbkdf2-sha256$210000$", 0), 0u) << a;
  EXPECT_TRUE(verifyPassword("correct horse battery", a));
  EXPECT_FALSE(verifyPassword("correct horse batterY", a));
  EXPECT_FALSE(verifyPassword("correct horse battery", "garbage"));
  EXPECT_FALSE(verifyPassword("x", "pbkdf2-sha256$0$00$00"));
}

TEST(EmailTest, PlausibleAddressesOnly) {
  EXPECT_TRUE(validEmail("ann@example.com"));
  for (const char* bad : {"", "ann", "@example.com", "ann@", "ann@example", "a b@example.com", "a@@example.com",
                          "ann@.com", "ann@example."}) {
    EXPECT_FALSE(validEmail(bad)) << bad;
  }
}

TEST_P(ControlDbTest, MigrationsRunOnceAndReopenIsANoOp) {
  EXPECT_EQ(db_->schemaVersion(), Db::latestVersion());
  EXPECT_GE(Db::latestVersion(), 4);
  auto again = Db::open(url_);
  ASSERT_TRUE(again) << again.status().toString();
  EXPECT_EQ(again.value()->schemaVersion(), Db::latestVersion());
}

TEST_P(ControlDbTest, ANewerSchemaIsRefused) {
  Poco::Data::Session s = db_->session();
  s << "INSERT INTO schema_version (version, applied_at) VALUES (99, 0)", Poco::Data::Keywords::now;
  auto db = Db::open(url_);
  ASSERT_FALSE(db);
  EXPECT_NE(db.status().message().find("newer"), std::string::npos) << db.status().toString();
}

TEST_P(ControlDbTest, SignUpLogInAndAuthenticate) {
  auto id = accounts_->signUp("Ann@Example.com", "0123456789ab");
  ASSERT_TRUE(id) << id.status().toString();
  auto t = accounts_->logIn("ann@example.com", "0123456789ab");
  ASSERT_TRUE(t) << t.status().toString();
  auto who = accounts_->authenticate(t.value().secret);
  ASSERT_TRUE(who);
  EXPECT_EQ(who.value(), id.value());
  EXPECT_EQ(accounts_->emailOf(id.value()).value(), "ann@example.com");
}

TEST_P(ControlDbTest, BadSignUpsAndLogInsAreRefusedClearly) {
  ASSERT_TRUE(accounts_->signUp("ann@example.com", "0123456789ab"));
  EXPECT_EQ(accounts_->signUp("ANN@example.com", "0123456789ab").status().code(), Code::kBusy);
  EXPECT_EQ(accounts_->signUp("bob@example.com", "short").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(accounts_->signUp("not-an-email", "0123456789ab").status().code(), Code::kInvalidArgument);
  auto wrong = accounts_->logIn("ann@example.com", "0123456789aX");
  auto unknown = accounts_->logIn("nobody@example.com", "0123456789ab");
  EXPECT_EQ(wrong.status().code(), Code::kPermissionDenied);
  EXPECT_EQ(unknown.status().code(), Code::kPermissionDenied);
  EXPECT_EQ(wrong.status().message(), unknown.status().message()) << "does not tell which emails exist";
  EXPECT_EQ(accounts_->authenticate("fy_" + std::string(64, '0')).status().code(), Code::kPermissionDenied);
  EXPECT_EQ(accounts_->authenticate("nonsense").status().code(), Code::kPermissionDenied);
}

TEST_P(ControlDbTest, ApiTokensAreListedRevokedAndScopedToTheirAccount) {
  auto ann = accounts_->signUp("ann@example.com", "0123456789ab").value();
  auto bob = accounts_->signUp("bob@example.com", "0123456789ab").value();
  auto tok = accounts_->createApiToken(ann, "laptop");
  ASSERT_TRUE(tok);
  EXPECT_EQ(accounts_->authenticate(tok.value().secret).value(), ann);
  auto list = accounts_->listTokens(ann).value();
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].name, "laptop");
  EXPECT_EQ(list[0].kind, "api");
  EXPECT_TRUE(accounts_->listTokens(bob).value().empty());
  EXPECT_EQ(accounts_->revokeToken(bob, tok.value().info.id).code(), Code::kNotFound) << "not Bob's to revoke";
  EXPECT_TRUE(accounts_->authenticate(tok.value().secret));
  EXPECT_TRUE(accounts_->revokeToken(ann, tok.value().info.id));
  EXPECT_EQ(accounts_->authenticate(tok.value().secret).status().code(), Code::kPermissionDenied);
  EXPECT_EQ(accounts_->createApiToken(ann, "").status().code(), Code::kInvalidArgument);
}

TEST_P(ControlDbTest, ExpiredTokensDoNotAuthenticate) {
  auto ann = accounts_->signUp("ann@example.com", "0123456789ab").value();
  auto tok = accounts_->createApiToken(ann, "old").value();
  Poco::Data::Session s = db_->session();
  std::string id = tok.info.id;
  s << "UPDATE tokens SET expires_at = 1 WHERE id = $1", Poco::Data::Keywords::use(id), Poco::Data::Keywords::now;
  EXPECT_EQ(accounts_->authenticate(tok.secret).status().code(), Code::kPermissionDenied);
  EXPECT_TRUE(accounts_->listTokens(ann).value().empty());
}

INSTANTIATE_TEST_SUITE_P(Backends, ControlDbTest, ::testing::Values("sqlite", "postgres"),
                         [](const auto& p) { return p.param; });

}  // namespace
}  // namespace ferry::control
