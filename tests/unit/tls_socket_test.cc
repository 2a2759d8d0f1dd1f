// TlsSocket (server/tls_socket.h), the channel's TLS stream: a real TLS client (Asio's
// own stream, mutual TLS with certificates from the provider CA) talks to a WebSocket
// server over a TlsSocket on loopback. Messages larger than a record and many small
// ones cross both ways; a client without a certificate, a peer that vanishes and a
// clean close each end the server's side with an error, never a hang.

#include "tls_socket.h"

#include <gtest/gtest.h>

#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <chrono>
#include <functional>
#include <future>
#include <thread>

#include "ca.h"
#include "gateway_key.h"
#include "keys.h"
#include "test_util.h"

namespace ferry::control {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace ssl = asio::ssl;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using ferry::testing::GatewayKey;
using ferry::testing::TempDir;
using Ws = websocket::stream<TlsSocket>;
using Done = std::shared_ptr<std::promise<beast::error_code>>;

std::string pattern(size_t n, unsigned seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131 + seed * 7 + i / 977) & 0xff);
  return s;
}

class TlsSocketTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ca = CertificateAuthority::loadOrCreate(dir_ / "ca");
    ASSERT_TRUE(ca) << ca.status().toString();
    ca_ = std::move(ca).value();
    auto server = ca_->issueServer({"127.0.0.1"}, 1);
    ASSERT_TRUE(server);
    serverTls_.use_certificate_chain(asio::buffer(server.value().certificatePem));
    serverTls_.use_private_key(asio::buffer(server.value().privateKeyPem), ssl::context::pem);
    serverTls_.add_certificate_authority(asio::buffer(ca_->certificatePem()));
    serverTls_.set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
    SSL_CTX_set_mode(serverTls_.native_handle(), SSL_MODE_RELEASE_BUFFERS);

    auto fp = publicKeyFingerprint(key_.publicPem());
    ASSERT_TRUE(fp);
    auto client = ca_->signGateway(key_.csr(), fp.value(), "gw-1", 1);
    ASSERT_TRUE(client) << client.status().toString();
    clientCert_ = client.value().certificatePem;

    acceptor_.open(tcp::v4());
    acceptor_.bind({asio::ip::make_address("127.0.0.1"), 0});
    acceptor_.listen();
  }

  ssl::context clientTls(bool withCertificate) {
    ssl::context c(ssl::context::tls_client);
    c.add_certificate_authority(asio::buffer(ca_->certificatePem()));
    c.set_verify_mode(ssl::verify_peer);
    if (withCertificate) {
      c.use_certificate(asio::buffer(clientCert_), ssl::context::pem);
      std::string pem = key_.privatePem();
      c.use_private_key(asio::buffer(pem), ssl::context::pem);
    }
    return c;
  }

  // A WebSocket client with a certificate, connected and upgraded (blocking calls).
  struct Client {
    asio::io_context io;
    ssl::context tls;
    websocket::stream<ssl::stream<tcp::socket>> ws;
    explicit Client(ssl::context t) : tls(std::move(t)), ws(io, tls) {}
  };
  std::unique_ptr<Client> connectClient() {
    auto c = std::make_unique<Client>(clientTls(true));
    beast::get_lowest_layer(c->ws).connect(acceptor_.local_endpoint());
    c->ws.next_layer().handshake(ssl::stream_base::client);
    c->ws.handshake("127.0.0.1", "/");
    return c;
  }

  // Accepts one connection; the server side runs `serve` on the io thread and
  // reports how it ended.
  std::future<beast::error_code> serveOne(std::function<void(std::shared_ptr<Ws>, Done)> serve) {
    auto done = std::make_shared<std::promise<beast::error_code>>();
    auto result = done->get_future();
    acceptor_.async_accept(asio::make_strand(io_), [this, serve, done](beast::error_code ec, tcp::socket s) {
      if (ec) return done->set_value(ec);
      auto ws = std::make_shared<Ws>(std::move(s), serverTls_.native_handle());
      ws->next_layer().async_handshake([ws, serve, done](beast::error_code e) {
        if (e) return done->set_value(e);
        // The handshake checked the client's certificate.
        EXPECT_NE(SSL_get0_peer_certificate(ws->next_layer().native_handle()), nullptr);
        ws->async_accept([ws, serve, done](beast::error_code e2) {
          if (e2) return done->set_value(e2);
          serve(ws, done);
        });
      });
    });
    return result;
  }

  void runIo() {
    thread_ = std::thread([this] { io_.run(); });
  }
  void TearDown() override {
    io_.stop();
    if (thread_.joinable()) thread_.join();
  }

  TempDir dir_;
  std::unique_ptr<CertificateAuthority> ca_;
  GatewayKey key_;
  std::string clientCert_;
  ssl::context serverTls_{ssl::context::tls_server};
  asio::io_context io_;
  tcp::acceptor acceptor_{io_};
  std::thread thread_;
};

// Echoes every message until the client closes.
void echo(std::shared_ptr<Ws> ws, Done done) {
  auto buf = std::make_shared<beast::flat_buffer>();
  ws->read_message_max(8 << 20);
  ws->async_read(*buf, [ws, buf, done](beast::error_code ec, size_t) {
    if (ec) return done->set_value(ec);
    ws->text(ws->got_text());
    ws->async_write(buf->data(), [ws, buf, done](beast::error_code e, size_t) {
      if (e) return done->set_value(e);
      buf->consume(buf->size());
      echo(ws, done);
    });
  });
}

TEST_F(TlsSocketTest, MessagesOfEverySizeCrossBothWaysIntact) {
  auto ended = serveOne(echo);
  runIo();
  auto client = connectClient();
  auto& ws = client->ws;
  ws.read_message_max(8 << 20);
  // Sizes around the TLS record (16 KiB) and the WebSocket stream's read size, up to
  // several MiB (many records; partial writes on the server's side).
  unsigned seed = 0;
  for (size_t n : {size_t{0}, size_t{1}, size_t{125}, size_t{1536}, size_t{16383}, size_t{16384}, size_t{16385},
                   size_t{70000}, size_t{1} << 20, size_t{5} << 20}) {
    std::string msg = pattern(n, ++seed);
    ws.binary(true);
    ws.write(asio::buffer(msg));
    beast::flat_buffer in;
    ws.read(in);
    ASSERT_EQ(beast::buffers_to_string(in.data()), msg) << "a message of " << n << " bytes came back changed";
  }
  // Many small messages written before any is read back: reads and writes interleave
  // on the server's socket.
  for (int i = 0; i < 200; ++i) ws.write(asio::buffer(pattern(300, static_cast<unsigned>(i))));
  for (int i = 0; i < 200; ++i) {
    beast::flat_buffer in;
    ws.read(in);
    ASSERT_EQ(beast::buffers_to_string(in.data()), pattern(300, static_cast<unsigned>(i))) << "message " << i;
  }
  ws.close(websocket::close_code::normal);
  ASSERT_EQ(ended.wait_for(std::chrono::seconds(10)), std::future_status::ready) << "the server did not see the close";
  EXPECT_EQ(ended.get(), websocket::error::closed);
}

TEST_F(TlsSocketTest, TheServerWritesWhileItsReadWaits) {
  // As a channel does: a read is always pending while requests are pushed down.
  auto ended = serveOne([](std::shared_ptr<Ws> ws, Done done) {
    auto buf = std::make_shared<beast::flat_buffer>();
    ws->async_read(*buf, [ws, buf, done](beast::error_code ec, size_t) {
      done->set_value(ec ? ec : (beast::buffers_to_string(buf->data()) == "bye" ? beast::error_code{}
                                                                              : asio::error::invalid_argument));
    });
    auto push = std::make_shared<std::function<void(int)>>();
    *push = [ws, push](int i) {
      if (i == 50) return;
      auto msg = std::make_shared<std::string>(pattern(20000, static_cast<unsigned>(i)));
      ws->binary(true);
      ws->async_write(asio::buffer(*msg), [push, msg, i](beast::error_code ec, size_t) {
        if (!ec) (*push)(i + 1);
      });
    };
    (*push)(0);
  });
  runIo();
  auto client = connectClient();
  auto& ws = client->ws;
  for (int i = 0; i < 50; ++i) {
    beast::flat_buffer in;
    ws.read(in);
    ASSERT_EQ(beast::buffers_to_string(in.data()), pattern(20000, static_cast<unsigned>(i))) << "push " << i;
  }
  ws.text(true);
  ws.write(asio::buffer(std::string("bye")));
  ASSERT_EQ(ended.wait_for(std::chrono::seconds(10)), std::future_status::ready) << "the pending read never completed";
  EXPECT_FALSE(ended.get()) << "the read that waited through the pushes got the wrong message";
}

TEST_F(TlsSocketTest, AClosedSocketNeitherReadsNorWrites) {
  // A pending read ends when the socket is closed; a later write fails at once and
  // never reaches a descriptor the kernel may have given to another connection.
  std::promise<std::pair<beast::error_code, beast::error_code>> done;
  auto ended = done.get_future();
  acceptor_.async_accept(asio::make_strand(io_), [this, &done](beast::error_code ec, tcp::socket s) {
    ASSERT_FALSE(ec);
    auto sock = std::make_shared<TlsSocket>(std::move(s), serverTls_.native_handle());
    sock->async_handshake([sock, &done](beast::error_code e) {
      ASSERT_FALSE(e) << e.message();
      auto byte = std::make_shared<char>();
      sock->async_read_some(asio::buffer(byte.get(), 1), [sock, byte, &done](beast::error_code read, size_t) {
        static const char kData[] = "x";
        sock->async_write_some(asio::buffer(kData, 1), [read, &done](beast::error_code write, size_t) {
          done.set_value({read, write});
        });
      });
      sock->close();
    });
  });
  runIo();
  asio::io_context cio;
  ssl::context ctx = clientTls(true);
  ssl::stream<tcp::socket> client(cio, ctx);
  client.next_layer().connect(acceptor_.local_endpoint());
  client.handshake(ssl::stream_base::client);
  ASSERT_EQ(ended.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  auto [read, write] = ended.get();
  EXPECT_EQ(read, asio::error::operation_aborted) << read.message();
  EXPECT_EQ(write, asio::error::bad_descriptor) << write.message();
}

TEST_F(TlsSocketTest, AClientWithoutACertificateFailsTheHandshake) {
  auto ended = serveOne(echo);
  runIo();
  asio::io_context cio;
  ssl::context ctx = clientTls(false);
  ssl::stream<tcp::socket> s(cio, ctx);
  s.next_layer().connect(acceptor_.local_endpoint());
  beast::error_code ec;
  s.handshake(ssl::stream_base::client, ec);
  if (!ec) {  // TLS 1.3: the client learns of the refusal at its first read
    char c;
    s.read_some(asio::buffer(&c, 1), ec);
  }
  EXPECT_TRUE(ec) << "a client without a certificate got through";
  ASSERT_EQ(ended.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  beast::error_code server = ended.get();
  EXPECT_TRUE(server);
  EXPECT_EQ(server.category(), asio::error::get_ssl_category()) << server.message();
}

TEST_F(TlsSocketTest, APeerThatVanishesEndsTheReadWithAnError) {
  auto ended = serveOne(echo);
  runIo();
  {
    auto client = connectClient();
    auto& ws = client->ws;
    // Half a message, then the socket goes without a TLS or WebSocket goodbye.
    std::string big = pattern(100000, 3);
    beast::error_code ec;
    ws.binary(true);
    ws.write_some(false, asio::buffer(big.data(), 40000), ec);
    ASSERT_FALSE(ec);
    beast::get_lowest_layer(ws).close();
  }
  ASSERT_EQ(ended.wait_for(std::chrono::seconds(10)), std::future_status::ready) << "the server hangs on a dead peer";
  beast::error_code ec = ended.get();
  EXPECT_TRUE(ec == asio::error::eof || ec == asio::error::connection_reset) << ec.message();
}

TEST_F(TlsSocketTest, ASilentClientIsClosedByTheServerWithoutAHang) {
  // The server closes a connection whose handshake never comes (as the channel's
  // 15 s timer does): the pending handshake ends at once with operation_aborted.
  std::promise<beast::error_code> done;
  auto ended = done.get_future();
  acceptor_.async_accept(asio::make_strand(io_), [this, &done](beast::error_code ec, tcp::socket s) {
    ASSERT_FALSE(ec);
    auto sock = std::make_shared<TlsSocket>(std::move(s), serverTls_.native_handle());
    sock->async_handshake([sock, &done](beast::error_code e) { done.set_value(e); });
    auto timer = std::make_shared<asio::steady_timer>(sock->get_executor(), std::chrono::milliseconds(200));
    timer->async_wait([sock, timer](beast::error_code) { sock->close(); });
  });
  runIo();
  asio::io_context cio;
  tcp::socket raw(cio);
  raw.connect(acceptor_.local_endpoint());
  ASSERT_EQ(ended.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_EQ(ended.get(), asio::error::operation_aborted);
}

}  // namespace
}  // namespace ferry::control
