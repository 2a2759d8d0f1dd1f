// ferry-control's REST API through a real ferry-control process on loopback, on
// SQLite and on PostgreSQL (the "pg" fixture; those cases skip without it).

#include <gtest/gtest.h>

#include <Poco/Net/AcceptCertificateHandler.h>
#include <Poco/Net/Context.h>
#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/HTTPSClientSession.h>
#include <Poco/Net/RejectCertificateHandler.h>
#include <Poco/Net/SSLManager.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <thread>

#include "control_process.h"
#include "gateway_key.h"
#include "test_util.h"

namespace {

using json = nlohmann::json;
using ferry::testing::buildDir;
using ferry::testing::Control;
using ferry::testing::readFile;
using ferry::testing::TempDir;

std::string errorCode(const Control::Reply& r) {
  return r.body.is_object() && r.body.contains("error") ? r.body["error"].value("code", "") : "";
}

class ControlApiTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    url_ = ferry::testing::controlDatabaseUrl(GetParam(), dir_);
    if (url_.empty()) GTEST_SKIP() << "no PostgreSQL (the pg fixture did not start)";
    control_ = std::make_unique<Control>(dir_.path(), url_);
    ASSERT_TRUE(control_->start()) << control_->log();
  }

  // Signs up and logs in; returns the session token.
  std::string account(const std::string& email) {
    auto r = control_->call("POST", "/v1/signup", json{{"email", email}, {"password", "0123456789ab"}}.dump());
    EXPECT_EQ(r.status, 201) << r.body;
    r = control_->call("POST", "/v1/login", json{{"email", email}, {"password", "0123456789ab"}}.dump());
    EXPECT_EQ(r.status, 200) << r.body;
    return r.body.value("token", "");
  }

  TempDir dir_;
  std::string url_;
  std::unique_ptr<Control> control_;
};

TEST_P(ControlApiTest, SignUpLogInAndManageTokens) {
  std::string session = account("ann@example.com");
  auto me = control_->call("GET", "/v1/me", "", session);
  ASSERT_EQ(me.status, 200) << me.body;
  EXPECT_EQ(me.body["account"]["email"], "ann@example.com");

  auto created = control_->call("POST", "/v1/tokens", R"({"name":"ferryctl on laptop"})", session);
  ASSERT_EQ(created.status, 201) << created.body;
  std::string api = created.body["token"];
  EXPECT_EQ(control_->call("GET", "/v1/me", "", api).status, 200) << "the API token works as a bearer";
  auto list = control_->call("GET", "/v1/tokens", "", api);
  ASSERT_EQ(list.status, 200);
  EXPECT_EQ(list.body["tokens"].size(), 2u) << list.body;
  EXPECT_FALSE(list.body.dump().find(api) != std::string::npos) << "secrets are never shown again";

  std::string id = created.body["info"]["id"];
  EXPECT_EQ(control_->call("DELETE", "/v1/tokens/" + id, "", session).status, 204);
  EXPECT_EQ(control_->call("GET", "/v1/me", "", api).status, 401);
}

TEST_P(ControlApiTest, AccountsSurviveARestart) {
  account("ann@example.com");
  control_->stop();
  ASSERT_TRUE(control_->start()) << control_->log();
  auto r = control_->call("POST", "/v1/login", R"({"email":"ann@example.com","password":"0123456789ab"})");
  EXPECT_EQ(r.status, 200) << r.body;
}

TEST_P(ControlApiTest, BadInputGetsAClearErrorAndChangesNothing) {
  std::string session = account("ann@example.com");
  auto r = control_->call("POST", "/v1/signup", "{not json");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(errorCode(r), "malformed");
  r = control_->call("POST", "/v1/signup", "[1,2]");
  EXPECT_EQ(r.status, 400);
  r = control_->call("POST", "/v1/signup", R"({"email":"bob@example.com"})");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body["error"]["message"].get<std::string>().find("password"), std::string::npos) << r.body;
  r = control_->call("POST", "/v1/signup", R"({"email":"bob@example.com","password":12345678901})");
  EXPECT_EQ(r.status, 400);
  r = control_->call("POST", "/v1/signup", R"({"email":"ann@example.com","password":"0123456789ab"})");
  EXPECT_EQ(r.status, 409);
  std::string big = R"({"email":"bob@example.com","password":")" + std::string(100 << 10, 'x') + "\"}";
  r = control_->call("POST", "/v1/signup", big);
  EXPECT_EQ(r.status, 413);
  r = control_->call("POST", "/v1/login", R"({"email":"ann@example.com","password":"wrong-password"})");
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(errorCode(r), "unauthenticated");
  EXPECT_EQ(control_->call("GET", "/v1/me").status, 401);
  EXPECT_EQ(control_->call("GET", "/v1/me", "", "fy_forged").status, 401);
  EXPECT_EQ(control_->call("GET", "/v1/nothing-here", "", session).status, 404);
  EXPECT_EQ(control_->call("PUT", "/v1/tokens", "{}", session).status, 405);
  // Nothing of the above created an account.
  r = control_->call("POST", "/v1/login", R"({"email":"bob@example.com","password":"0123456789ab"})");
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(control_->call("GET", "/healthz").status, 200);
}

TEST_P(ControlApiTest, OneAccountCannotTouchAnothersTokens) {
  std::string ann = account("ann@example.com");
  std::string bob = account("bob@example.com");
  auto t = control_->call("POST", "/v1/tokens", R"({"name":"ann's"})", ann);
  std::string id = t.body["info"]["id"];
  auto r = control_->call("DELETE", "/v1/tokens/" + id, "", bob);
  EXPECT_EQ(r.status, 404) << "Bob is told nothing about Ann's token";
  auto list = control_->call("GET", "/v1/tokens", "", bob);
  EXPECT_EQ(list.body["tokens"].size(), 1u) << "only Bob's own session";
  EXPECT_EQ(control_->call("GET", "/v1/me", "", t.body["token"]).status, 200);
}

TEST_P(ControlApiTest, AGatewayIsActivatedAndManagedThroughTheApi) {
  ferry::testing::GatewayKey key;
  // 1. The gateway asks for an activation key.
  auto started = control_->call("POST", "/v1/activation",
                                json{{"public_key", key.publicPem()},
                                     {"hostname", "gw1"},
                                     {"software_version", "0.1.0"},
                                     {"addresses", {"10.1.2.3"}}}
                                    .dump());
  ASSERT_EQ(started.status, 201) << started.body;
  std::string requestId = started.body["request_id"], activationKey = started.body["activation_key"];
  auto poll = [&](const ferry::testing::GatewayKey& k) {
    std::string t = std::to_string(::time(nullptr));
    std::string sig = k.sign("ferry-activation\n" + requestId + "\n" + t);
    return control_->call("GET", "/v1/activation/" + requestId, "", "",
                          {{"X-Ferry-Time", t}, {"X-Ferry-Signature", sig}});
  };
  auto p = poll(key);
  ASSERT_EQ(p.status, 200) << p.body;
  EXPECT_EQ(p.body["state"], "pending");

  // 3. The customer claims it.
  std::string ann = account("ann@example.com");
  std::string bob = account("bob@example.com");
  auto wrong =
      control_->call("POST", "/v1/gateways/activate", R"({"activation_key":"ABCD-EFGH-JKMN-PQ23","name":"x"})", ann);
  EXPECT_EQ(wrong.status, 404) << wrong.body;
  EXPECT_NE(wrong.body["error"]["message"].get<std::string>().find("activation key"), std::string::npos);
  auto claimed =
      control_->call("POST", "/v1/gateways/activate",
                     json{{"activation_key", activationKey}, {"name", "store 12"}, {"timezone", "UTC"}}.dump(), ann);
  ASSERT_EQ(claimed.status, 201) << claimed.body;
  std::string id = claimed.body["gateway"]["id"];
  auto again = control_->call("POST", "/v1/gateways/activate",
                              json{{"activation_key", activationKey}, {"name", "mine"}}.dump(), bob);
  EXPECT_EQ(again.status, 409) << "single use";

  // 4. The gateway learns who it is; a key that is not its own learns nothing.
  p = poll(key);
  ASSERT_EQ(p.status, 200) << p.body;
  EXPECT_EQ(p.body["state"], "activated");
  EXPECT_EQ(p.body["gateway"]["id"], id);
  ferry::testing::GatewayKey thief;
  EXPECT_EQ(poll(thief).status, 401);

  // The customer's view, and no one else's.
  auto list = control_->call("GET", "/v1/gateways", "", ann);
  ASSERT_EQ(list.status, 200);
  ASSERT_EQ(list.body["gateways"].size(), 1u);
  EXPECT_EQ(list.body["gateways"][0]["hostname"], "gw1");
  EXPECT_EQ(control_->call("GET", "/v1/gateways/" + id, "", bob).status, 404);
  EXPECT_EQ(control_->call("PATCH", "/v1/gateways/" + id, R"({"name":"stolen"})", bob).status, 404);
  EXPECT_EQ(control_->call("DELETE", "/v1/gateways/" + id, "", bob).status, 404);
  auto renamed = control_->call("PATCH", "/v1/gateways/" + id, R"({"name":"store 13"})", ann);
  ASSERT_EQ(renamed.status, 200) << renamed.body;
  EXPECT_EQ(renamed.body["gateway"]["name"], "store 13");
  EXPECT_EQ(control_->call("DELETE", "/v1/gateways/" + id, "", ann).status, 204);
  EXPECT_EQ(control_->call("GET", "/v1/gateways/" + id, "", ann).status, 404);
}

// Verifies pem against the CA in caPath; returns the subject CN, "" if it does not verify.
std::string verifiedCommonName(const std::string& pem, const std::string& caPath) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), BIO_free);
  std::unique_ptr<X509, decltype(&X509_free)> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr), X509_free);
  if (!cert) return "";
  std::unique_ptr<X509_STORE, decltype(&X509_STORE_free)> store(X509_STORE_new(), X509_STORE_free);
  X509_STORE_load_file(store.get(), caPath.c_str());
  std::unique_ptr<X509_STORE_CTX, decltype(&X509_STORE_CTX_free)> ctx(X509_STORE_CTX_new(), X509_STORE_CTX_free);
  X509_STORE_CTX_init(ctx.get(), store.get(), cert.get(), nullptr);
  X509_STORE_CTX_set_purpose(ctx.get(), X509_PURPOSE_SSL_CLIENT);
  if (X509_verify_cert(ctx.get()) != 1) return "";
  char cn[256] = "";
  X509_NAME_get_text_by_NID(X509_get_subject_name(cert.get()), NID_commonName, cn, sizeof cn);
  return cn;
}

TEST_P(ControlApiTest, AnActivatedGatewayGetsItsCertificateForItsOwnKeyOnly) {
  ferry::testing::GatewayKey key, other;
  auto started = control_->call("POST", "/v1/activation", json{{"public_key", key.publicPem()}}.dump());
  ASSERT_EQ(started.status, 201) << started.body;
  std::string requestId = started.body["request_id"];
  auto askCert = [&](const ferry::testing::GatewayKey& signer, const std::string& csr) {
    std::string t = std::to_string(::time(nullptr));
    std::string sig = signer.sign("ferry-activation\n" + requestId + "\n" + t);
    return control_->call("POST", "/v1/activation/" + requestId + "/certificate", json{{"csr", csr}}.dump(), "",
                          {{"X-Ferry-Time", t}, {"X-Ferry-Signature", sig}});
  };
  auto early = askCert(key, key.csr());
  EXPECT_EQ(early.status, 409) << "not claimed yet: " << early.body;

  std::string ann = account("ann@example.com");
  auto claimed = control_->call("POST", "/v1/gateways/activate",
                                json{{"activation_key", started.body["activation_key"]}, {"name", "g"}}.dump(), ann);
  ASSERT_EQ(claimed.status, 201) << claimed.body;
  std::string id = claimed.body["gateway"]["id"];

  EXPECT_EQ(askCert(key, other.csr()).status, 401) << "a CSR for another key";
  EXPECT_EQ(askCert(other, other.csr()).status, 401) << "signed by another key";
  EXPECT_EQ(askCert(key, "garbage").status, 400);

  auto got = askCert(key, key.csr());
  ASSERT_EQ(got.status, 200) << got.body;
  EXPECT_EQ(verifiedCommonName(got.body["certificate"], control_->caPath()), id)
      << "a client certificate for the gateway, signed by the provider CA";
  EXPECT_EQ(got.body["ca_certificate"], ferry::testing::readFile(control_->caPath()));
  EXPECT_EQ(got.body["store"], "s3://ferry/" + id + "?endpoint=http://store:7480");
  EXPECT_EQ(got.body["control_endpoint"], "wss://localhost:" + std::to_string(control_->channelPort()) + "/v1/channel");
}

// Behind the balancer (docs/balancer.md): the port a connection arrived on says which
// VIP the client dialled; the server answers as that VIP where it matters.
TEST(ControlVipTest, AVipsHostPortAnswersAsThatVip) {
  TempDir dir;
  int vipPort = ferry::testing::freeTcpPort();
  Control control(dir.path(), "sqlite://" + (dir / "control.db"),
                  "vip.api.port = " + std::to_string(vipPort) +
                      "\nvip.api.address = 198.51.100.10:443\n"
                      "vip.api.control_endpoint = wss://198.51.100.10:8445/v1/channel\n");
  ASSERT_TRUE(control.start()) << control.log();
  auto direct = control.call("GET", "/healthz");
  ASSERT_EQ(direct.status, 200);
  EXPECT_FALSE(direct.body.contains("vip")) << direct.text;
  auto viaVip = control.callOn(vipPort, "GET", "/healthz");
  ASSERT_EQ(viaVip.status, 200) << "the server listens on the VIP's host port too";
  EXPECT_EQ(viaVip.body.value("vip", ""), "198.51.100.10:443");

  // A gateway that activates through the VIP is told the VIP's channel endpoint; one that
  // comes to the server's own port, the server's.
  std::string token;
  {
    auto r = control.call("POST", "/v1/signup", json{{"email", "vip@example.com"}, {"password", "0123456789ab"}}.dump());
    ASSERT_EQ(r.status, 201) << r.text;
    r = control.call("POST", "/v1/login", json{{"email", "vip@example.com"}, {"password", "0123456789ab"}}.dump());
    token = r.body.value("token", "");
  }
  for (bool throughVip : {true, false}) {
    ferry::testing::GatewayKey key;
    auto call = [&](const std::string& m, const std::string& path, const std::string& body, const std::string& tok,
                    const std::vector<std::pair<std::string, std::string>>& h = {}) {
      return throughVip ? control.callOn(vipPort, m, path, body, tok, h) : control.call(m, path, body, tok, h);
    };
    auto started = call("POST", "/v1/activation", json{{"public_key", key.publicPem()}}.dump(), "");
    ASSERT_EQ(started.status, 201) << started.text;
    std::string requestId = started.body["request_id"];
    auto claimed = control.call("POST", "/v1/gateways/activate",
                                json{{"activation_key", started.body["activation_key"]},
                                     {"name", throughVip ? "via-vip" : "direct"}}.dump(),
                                token);
    ASSERT_EQ(claimed.status, 201) << claimed.text;
    std::string t = std::to_string(::time(nullptr));
    auto got = call("POST", "/v1/activation/" + requestId + "/certificate", json{{"csr", key.csr()}}.dump(), "",
                    {{"X-Ferry-Time", t}, {"X-Ferry-Signature", key.sign("ferry-activation\n" + requestId + "\n" + t)}});
    ASSERT_EQ(got.status, 200) << got.text;
    if (throughVip) {
      EXPECT_EQ(got.body["control_endpoint"], "wss://198.51.100.10:8445/v1/channel");
    } else {
      EXPECT_EQ(got.body["control_endpoint"], "wss://localhost:" + std::to_string(control.channelPort()) + "/v1/channel");
    }
  }
}

TEST(ControlVipTest, ABadVipIsRefusedAtStart) {
  TempDir dir;
  Control control(dir.path(), "sqlite://" + (dir / "control.db"), "vip.api.port = 0\nvip.api.address = 198.51.100.10:443\n");
  EXPECT_FALSE(control.start());
  EXPECT_NE(control.log().find("vip.api.port must be a port number"), std::string::npos) << control.log();
}

TEST_P(ControlApiTest, TheApiIsTlsOnlyAndTheCaSurvivesARestart) {
  std::string ca = ferry::testing::readFile(control_->caPath());
  ASSERT_NE(ca.find("BEGIN CERTIFICATE"), std::string::npos);
  // Plain HTTP to the TLS port gets no answer.
  Poco::Net::HTTPClientSession plain("127.0.0.1", static_cast<Poco::UInt16>(control_->port()));
  plain.setTimeout(Poco::Timespan(5, 0));
  Poco::Net::HTTPRequest req("GET", "/healthz", Poco::Net::HTTPMessage::HTTP_1_1);
  Poco::Net::HTTPResponse resp;
  EXPECT_ANY_THROW({
    plain.sendRequest(req);
    plain.receiveResponse(resp);
  });
  // A client that does not trust the provider CA refuses the server.
  Poco::Net::Context::Ptr untrusting =
      new Poco::Net::Context(Poco::Net::Context::TLS_CLIENT_USE, "", "", "", Poco::Net::Context::VERIFY_STRICT);
  Poco::Net::HTTPSClientSession s("127.0.0.1", static_cast<Poco::UInt16>(control_->port()), untrusting);
  EXPECT_ANY_THROW({
    s.sendRequest(req);
    s.receiveResponse(resp);
  });
  control_->stop();
  ASSERT_TRUE(control_->start()) << control_->log();
  EXPECT_EQ(ferry::testing::readFile(control_->caPath()), ca) << "the same provider CA after a restart";
  EXPECT_EQ(control_->call("GET", "/healthz").status, 200);
}

TEST_P(ControlApiTest, MetricsCountAnswersAndWhatTheDatabaseHolds) {
  account("ann@example.com");
  control_->call("GET", "/v1/me");  // a 401
  ferry::testing::GatewayKey key;
  ASSERT_EQ(control_->call("POST", "/v1/activation", json{{"public_key", key.publicPem()}}.dump()).status, 201);
  auto m = control_->call("GET", "/metrics");
  ASSERT_EQ(m.status, 200);
  EXPECT_NE(m.text.find("# TYPE ferry_control_http_responses_total counter"), std::string::npos) << m.text;
  EXPECT_NE(m.text.find("ferry_control_http_responses_total{class=\"4xx\"} 1\n"), std::string::npos) << m.text;
  EXPECT_NE(m.text.find("ferry_control_http_responses_total{class=\"2xx\"} 3\n"), std::string::npos) << m.text;
  EXPECT_NE(m.text.find("ferry_control_accounts 1\n"), std::string::npos) << m.text;
  EXPECT_NE(m.text.find("ferry_control_gateways 0\n"), std::string::npos) << m.text;
  EXPECT_NE(m.text.find("ferry_control_activations_pending 1\n"), std::string::npos) << m.text;
  EXPECT_NE(m.text.find("ferry_control_database_up 1\n"), std::string::npos) << m.text;
}

TEST_P(ControlApiTest, BadActivationRequestsAreRefused) {
  EXPECT_EQ(control_->call("POST", "/v1/activation", R"({"public_key":"nope"})").status, 400);
  EXPECT_EQ(control_->call("POST", "/v1/activation", R"({"hostname":"x"})").status, 400);
  EXPECT_EQ(control_->call("GET", "/v1/activation/act-missing", "", "", {{"X-Ferry-Time", "x"}}).status, 400);
  std::string t = std::to_string(::time(nullptr));
  EXPECT_EQ(control_->call("GET", "/v1/activation/act-missing", "", "", {{"X-Ferry-Time", t}}).status, 404);
  std::string ann = account("ann@example.com");
  int limited = 0;
  for (int i = 0; i < 12; ++i) {
    auto r =
        control_->call("POST", "/v1/gateways/activate", R"({"activation_key":"ABCD-EFGH-JKMN-PQ23","name":"x"})", ann);
    if (r.status == 429) ++limited;
  }
  EXPECT_EQ(limited, 2) << "10 wrong keys, then refused";
}

INSTANTIATE_TEST_SUITE_P(Backends, ControlApiTest, ::testing::Values("sqlite", "postgres"),
                         [](const auto& p) { return p.param; });

TEST(ControlStartTest, ABadDatabaseUrlIsAClearErrorAtStart) {
  TempDir dir;
  Control c(dir.path(), "mysql://nope");
  EXPECT_FALSE(c.start());
  EXPECT_NE(c.exitCode(), 0);
  EXPECT_NE(c.log().find("want sqlite:///path or postgresql://"), std::string::npos) << c.log();
}

}  // namespace
