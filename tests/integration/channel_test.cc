// The channel endpoint: a gateway, activated through the real flow, holds a WebSocket
// over mutual TLS to a real ferry-control; the API shows it online while it does.

#include <gtest/gtest.h>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <nlohmann/json.hpp>
#include <thread>

#include "control_process.h"
#include "gateway_key.h"
#include "test_util.h"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace ssl = asio::ssl;
namespace websocket = beast::websocket;
using json = nlohmann::json;
using ferry::testing::Control;
using ferry::testing::GatewayKey;
using ferry::testing::TempDir;

struct Identity {
  std::string id, certificate, caCertificate;
};

// The gateway's side of a channel: blocking Beast, enough for a test.
class GatewayClient {
 public:
  GatewayClient(const Identity& who, const GatewayKey& key, bool presentCertificate = true)
      : tls_(ssl::context::tls_client) {
    tls_.add_certificate_authority(asio::buffer(who.caCertificate));
    tls_.set_verify_mode(ssl::verify_peer);
    if (presentCertificate) {
      tls_.use_certificate(asio::buffer(who.certificate), ssl::context::pem);
      std::string pem = key.privatePem();
      tls_.use_private_key(asio::buffer(pem), ssl::context::pem);
    }
    ws_ = std::make_unique<websocket::stream<beast::ssl_stream<beast::tcp_stream>>>(io_, tls_);
  }
  ~GatewayClient() {
    if (reader_.joinable()) {
      asio::post(io_, [this] {
        beast::error_code ec;
        beast::get_lowest_layer(*ws_).socket().close(ec);
      });
      reader_.join();
    }
  }
  // TLS + WebSocket handshakes; the error, if any.
  beast::error_code connect(int port, const std::string& path = "/v1/channel") {
    beast::error_code ec;
    beast::get_lowest_layer(*ws_).expires_after(std::chrono::seconds(10));
    beast::get_lowest_layer(*ws_).connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), ec);
    if (ec) return ec;
    SSL_set_tlsext_host_name(ws_->next_layer().native_handle(), "localhost");
    ws_->next_layer().set_verify_callback(ssl::host_name_verification("localhost"));
    ws_->next_layer().handshake(ssl::stream_base::client, ec);
    if (ec) return ec;
    ws_->handshake("localhost", path, ec);
    beast::get_lowest_layer(*ws_).expires_never();
    return ec;
  }
  // Reads in the background (which answers pings) until the connection ends. Beast's
  // streams are not thread-safe: from here on, everything runs on the io thread.
  void keepAnswering() {
    readLoop();
    reader_ = std::thread([this] { io_.run(); });
  }
  // Reads once, blocking: what ended the connection.
  beast::error_code readUntilClosed() {
    beast::flat_buffer b;
    beast::error_code ec;
    beast::get_lowest_layer(*ws_).expires_after(std::chrono::seconds(10));
    while (!ec) ws_->read(b, ec);
    return ec;
  }
  // A clean WebSocket close, on the io thread; then waits for the reader to finish.
  void close() {
    asio::post(io_, [this] { ws_->async_close(websocket::close_code::normal, [](beast::error_code) {}); });
    if (reader_.joinable()) reader_.join();
  }
  bool closed() const { return closed_; }
  websocket::close_reason reason() const { return ws_->reason(); }

 private:
  asio::io_context io_;
  ssl::context tls_;
  std::unique_ptr<websocket::stream<beast::ssl_stream<beast::tcp_stream>>> ws_;
  void readLoop() {
    ws_->async_read(buffer_, [this](beast::error_code ec, size_t) {
      if (ec) {
        closed_ = true;
        return;
      }
      buffer_.consume(buffer_.size());
      readLoop();
    });
  }

  std::thread reader_;
  beast::flat_buffer buffer_;
  std::atomic<bool> closed_{false};
};

using ferry::testing::kFastTimers;

class ChannelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    control_ = std::make_unique<Control>(dir_.path(), "sqlite://" + (dir_ / "control.db"), kFastTimers);
    ASSERT_TRUE(control_->start()) << control_->log();
    ASSERT_GT(control_->channelPort(), 0) << control_->log();
    auto r = control_->call("POST", "/v1/signup", R"({"email":"ann@example.com","password":"0123456789ab"})");
    r = control_->call("POST", "/v1/login", R"({"email":"ann@example.com","password":"0123456789ab"})");
    session_ = r.body["token"];
  }
  // Activation steps 1, 3 and 5 for key.
  Identity activate(const GatewayKey& key) {
    auto started = control_->call("POST", "/v1/activation", json{{"public_key", key.publicPem()}}.dump());
    std::string requestId = started.body["request_id"];
    auto claimed =
        control_->call("POST", "/v1/gateways/activate",
                       json{{"activation_key", started.body["activation_key"]}, {"name", "g"}}.dump(), session_);
    std::string t = std::to_string(::time(nullptr));
    auto cert = control_->call(
        "POST", "/v1/activation/" + requestId + "/certificate", json{{"csr", key.csr()}}.dump(), "",
        {{"X-Ferry-Time", t}, {"X-Ferry-Signature", key.sign("ferry-activation\n" + requestId + "\n" + t)}});
    EXPECT_EQ(cert.status, 200) << cert.body;
    EXPECT_EQ(cert.body["control_endpoint"],
              "wss://localhost:" + std::to_string(control_->channelPort()) + "/v1/channel");
    return {claimed.body["gateway"]["id"], cert.body["certificate"], cert.body["ca_certificate"]};
  }
  bool online(const std::string& id, Control* via = nullptr) {
    return (via ? via : control_.get())
        ->call("GET", "/v1/gateways/" + id, "", session_)
        .body["gateway"]
        .value("online", false);
  }
  bool waitOnline(const std::string& id, bool want, int seconds = 10, Control* via = nullptr) {
    for (int i = 0; i < seconds * 10; ++i) {
      if (online(id, via) == want) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

  TempDir dir_;
  std::unique_ptr<Control> control_;
  std::string session_;
};

TEST_F(ChannelTest, AnActivatedGatewayHoldsTheChannelAndShowsOnline) {
  GatewayKey key;
  Identity who = activate(key);
  EXPECT_FALSE(online(who.id));
  GatewayClient gw(who, key);
  ASSERT_FALSE(gw.connect(control_->channelPort())) << "mutual TLS and the WebSocket upgrade";
  gw.keepAnswering();
  ASSERT_TRUE(waitOnline(who.id, true));
  // Pings every second, dead after 3 of silence: a gateway that answers stays.
  std::this_thread::sleep_for(std::chrono::seconds(4));
  EXPECT_TRUE(online(who.id));
  EXPECT_FALSE(gw.closed());
  gw.close();
  EXPECT_TRUE(waitOnline(who.id, false)) << "a closed channel is offline";
  EXPECT_GT(control_->call("GET", "/v1/gateways/" + who.id, "", session_).body["gateway"]["last_seen_at"], 0);
}

TEST_F(ChannelTest, ASilentGatewayIsDroppedAsDead) {
  GatewayKey key;
  Identity who = activate(key);
  GatewayClient gw(who, key);
  ASSERT_FALSE(gw.connect(control_->channelPort()));
  ASSERT_TRUE(waitOnline(who.id, true));
  // It never reads, so never answers a ping.
  EXPECT_TRUE(waitOnline(who.id, false, 10)) << "dropped after the dead interval";
}

TEST_F(ChannelTest, AKilledServersGatewaysGoOfflineForTheRestOfTheFarm) {
  // A second server on the same database: the farm, as far as state goes.
  TempDir otherDir;
  Control peer(otherDir.path(), "sqlite://" + (dir_ / "control.db"), kFastTimers);
  ASSERT_TRUE(peer.start()) << peer.log();
  GatewayKey key;
  Identity who = activate(key);
  GatewayClient gw(who, key);
  ASSERT_FALSE(gw.connect(control_->channelPort()));
  gw.keepAnswering();
  ASSERT_TRUE(waitOnline(who.id, true, 10, &peer)) << "the peer sees the registration";
  control_->kill9();
  // No close, no deregistration: the peer notices the missing heartbeats.
  EXPECT_TRUE(waitOnline(who.id, false, 10, &peer)) << peer.log();
  for (int i = 0; i < 50 && peer.log().find("registrations of dead servers expired") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_NE(peer.log().find("1 channel registrations of dead servers expired"), std::string::npos) << peer.log();
}

TEST_F(ChannelTest, NoCertificateOrAnotherCasCertificateGetsNoChannel) {
  GatewayKey key;
  Identity who = activate(key);
  {
    GatewayClient anonymous(who, key, false);
    beast::error_code ec = anonymous.connect(control_->channelPort());
    if (!ec) ec = anonymous.readUntilClosed();  // TLS 1.3: the refusal may come after the handshake
    EXPECT_TRUE(ec);
  }
  // A certificate from another provider's CA, for the same id.
  TempDir other;
  Control second(other.path(), "sqlite://" + (other / "control.db"));
  ASSERT_TRUE(second.start()) << second.log();
  second.call("POST", "/v1/signup", R"({"email":"x@example.com","password":"0123456789ab"})");
  auto login = second.call("POST", "/v1/login", R"({"email":"x@example.com","password":"0123456789ab"})");
  GatewayKey key2;
  auto started = second.call("POST", "/v1/activation", json{{"public_key", key2.publicPem()}}.dump());
  second.call("POST", "/v1/gateways/activate",
              json{{"activation_key", started.body["activation_key"]}, {"name", "g"}}.dump(),
              login.body["token"].get<std::string>());
  std::string requestId = started.body["request_id"], t = std::to_string(::time(nullptr));
  auto cert =
      second.call("POST", "/v1/activation/" + requestId + "/certificate", json{{"csr", key2.csr()}}.dump(), "",
                  {{"X-Ferry-Time", t}, {"X-Ferry-Signature", key2.sign("ferry-activation\n" + requestId + "\n" + t)}});
  ASSERT_EQ(cert.status, 200);
  Identity forged{who.id, cert.body["certificate"], who.caCertificate};
  GatewayClient impostor(forged, key2);
  beast::error_code ec = impostor.connect(control_->channelPort());
  if (!ec) ec = impostor.readUntilClosed();
  EXPECT_TRUE(ec);
  EXPECT_FALSE(online(who.id));
}

TEST_F(ChannelTest, ADeletedGatewayOrAnotherPathIsTurnedAway) {
  GatewayKey key;
  Identity who = activate(key);
  {
    GatewayClient wrongPath(who, key);
    EXPECT_TRUE(wrongPath.connect(control_->channelPort(), "/v1/other")) << "only /v1/channel upgrades";
  }
  ASSERT_EQ(control_->call("DELETE", "/v1/gateways/" + who.id, "", session_).status, 204);
  GatewayClient gw(who, key);
  ASSERT_FALSE(gw.connect(control_->channelPort()));
  EXPECT_EQ(gw.readUntilClosed(), websocket::error::closed);
  EXPECT_EQ(gw.reason().code, websocket::close_code::policy_error);
}

}  // namespace
