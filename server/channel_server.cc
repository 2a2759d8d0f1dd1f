#include "channel_server.h"

#include <openssl/x509.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <chrono>
#include <iostream>
#include <random>
#include <thread>
#include <vector>

namespace ferry::control {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace ssl = asio::ssl;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;

namespace {

// The gateway id a verified peer certificate names (its subject CN).
std::string commonNameOf(SSL* ssl) {
  X509* cert = SSL_get0_peer_certificate(ssl);
  if (!cert) return "";
  char cn[256] = "";
  if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn) <= 0) return "";
  return cn;
}

}  // namespace

struct ChannelServer::Impl {
  // Declared before io: the connections io still holds when it is destroyed use them.
  ChannelOptions opt;
  Gateways& gateways;
  ssl::context tls{ssl::context::tls_server};
  std::atomic<size_t> live{0};
  std::atomic<int64_t> nextEpoch;
  asio::io_context io;
  // Declared after io: they must go before it.
  tcp::acceptor acceptor{io};
  asio::steady_timer heartbeatTimer{io};
  asio::thread_pool db{2};  // database calls, off the I/O threads
  std::vector<std::thread> threads;

  // Every heartbeat interval, on the database pool: this server is alive, and servers
  // that stopped beating lose their registrations (their gateways show offline and
  // reconnect elsewhere).
  void beat() {
    heartbeatTimer.expires_after(std::chrono::seconds(opt.heartbeatSeconds));
    heartbeatTimer.async_wait([this](beast::error_code ec) {
      if (ec) return;
      asio::post(db, [this] {
        if (Status s = gateways.heartbeat(opt.serverId); !s) std::cerr << "ferry-control: " << s.toString() << "\n";
        auto expired = gateways.expireStaleServers();
        if (!expired)
          std::cerr << "ferry-control: " << expired.status().toString() << "\n";
        else if (expired.value() > 0) {
          std::cerr << "ferry-control: " << expired.value() << " channel registrations of dead servers expired\n";
        }
      });
      beat();
    });
  }

  Impl(ChannelOptions o, Gateways& g) : opt(std::move(o)), gateways(g) {
    std::random_device rd;
    nextEpoch = static_cast<int64_t>((uint64_t{rd()} << 20) & 0x3fffffffffffffffULL);
  }
  void accept();
};

namespace {

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(ChannelServer::Impl& server, tcp::socket socket)
      : server_(server), ws_(std::move(socket), server.tls), timer_(ws_.get_executor()) {}

  void start() {
    ++server_.live;
    beast::get_lowest_layer(ws_).expires_after(std::chrono::seconds(15));  // the handshakes
    ws_.next_layer().async_handshake(ssl::stream_base::server,
                                     [self = shared_from_this()](beast::error_code ec) { self->onTls(ec); });
  }
  ~Session() { --server_.live; }

 private:
  void onTls(beast::error_code ec) {
    if (ec) return;  // no certificate, or not the provider CA's: nothing to say to it
    gateway_ = commonNameOf(ws_.next_layer().native_handle());
    // Read the HTTP upgrade request first: only /v1/channel is a channel.
    beast::http::async_read(ws_.next_layer(), buffer_, upgrade_,
                            [self = shared_from_this()](beast::error_code e, size_t) { self->onUpgrade(e); });
  }

  void onUpgrade(beast::error_code ec) {
    if (ec) return;
    if (!websocket::is_upgrade(upgrade_) || upgrade_.target() != "/v1/channel") {
      auto res = std::make_shared<beast::http::response<beast::http::string_body>>(beast::http::status::not_found,
                                                                                   upgrade_.version());
      res->set(beast::http::field::content_type, "application/json");
      res->body() = R"({"error":{"code":"not_found","message":"the channel is a WebSocket at /v1/channel"}})";
      res->prepare_payload();
      beast::http::async_write(ws_.next_layer(), *res, [self = shared_from_this(), res](beast::error_code, size_t) {});
      return;
    }
    ws_.set_option(websocket::stream_base::decorator(
        [](websocket::response_type& res) { res.set(beast::http::field::server, "ferry-control"); }));
    ws_.async_accept(upgrade_, [self = shared_from_this()](beast::error_code e) { self->onAccept(e); });
  }

  void onAccept(beast::error_code ec) {
    if (ec) return;
    beast::get_lowest_layer(ws_).expires_never();
    epoch_ = ++server_.nextEpoch;
    // Is it a gateway we know (not deleted)? Ask the database off the I/O thread.
    asio::post(server_.db, [self = shared_from_this()] {
      bool known = !self->gateway_.empty() && self->server_.gateways.exists(self->gateway_);
      if (known) {
        if (Status s = self->server_.gateways.connected(self->gateway_, self->server_.opt.serverId, self->epoch_); !s) {
          std::cerr << "ferry-control: channel of " << self->gateway_ << ": " << s.toString() << "\n";
        }
      }
      asio::post(self->ws_.get_executor(), [self, known] { self->onKnown(known); });
    });
  }

  void onKnown(bool known) {
    if (!known) {
      ws_.async_close(websocket::close_reason(websocket::close_code::policy_error, "unknown or deleted gateway"),
                      [self = shared_from_this()](beast::error_code) {});
      return;
    }
    registered_ = true;
    lastHeard_ = std::chrono::steady_clock::now();
    ws_.control_callback(
        [this](websocket::frame_type, beast::string_view) { lastHeard_ = std::chrono::steady_clock::now(); });
    tick();
    read();
  }

  void read() {
    ws_.async_read(buffer_, [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec) return self->closed();
      self->lastHeard_ = std::chrono::steady_clock::now();
      // Replies to pushed requests arrive here once the outbox exists; a gateway never
      // sends requests of its own.
      self->buffer_.consume(self->buffer_.size());
      self->read();
    });
  }

  // Every ping interval: dead after the dead interval of silence, else ping.
  void tick() {
    timer_.expires_after(std::chrono::seconds(server_.opt.pingSeconds));
    timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (ec || self->closing_) return;
      auto silent = std::chrono::steady_clock::now() - self->lastHeard_;
      if (silent >= std::chrono::seconds(self->server_.opt.deadSeconds)) {
        // Dead peer: no TCP goodbye will come; drop the connection.
        beast::error_code ignored;
        beast::get_lowest_layer(self->ws_).socket().close(ignored);
        return;
      }
      self->ws_.async_ping({}, [self](beast::error_code e) {
        if (!e) self->tick();
      });
    });
  }

  void closed() {
    if (closing_) return;
    closing_ = true;
    timer_.cancel();
    if (!registered_) return;
    asio::post(server_.db, [self = shared_from_this()] {
      (void)self->server_.gateways.disconnected(self->gateway_, self->server_.opt.serverId, self->epoch_);
    });
  }

  ChannelServer::Impl& server_;
  websocket::stream<beast::ssl_stream<beast::tcp_stream>> ws_;
  asio::steady_timer timer_;
  beast::flat_buffer buffer_;
  beast::http::request<beast::http::string_body> upgrade_;
  std::string gateway_;
  int64_t epoch_ = 0;
  bool registered_ = false;
  bool closing_ = false;
  std::chrono::steady_clock::time_point lastHeard_;
};

}  // namespace

void ChannelServer::Impl::accept() {
  acceptor.async_accept(asio::make_strand(io), [this](beast::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted) return;
    if (!ec) std::make_shared<Session>(*this, std::move(socket))->start();
    accept();
  });
}

ChannelServer::ChannelServer(ChannelOptions options, Gateways& gateways)
    : impl_(std::make_unique<Impl>(std::move(options), gateways)) {}

ChannelServer::~ChannelServer() {
  stop();
}

Status ChannelServer::start() {
  Impl& s = *impl_;
  try {
    s.tls.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                      ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    s.tls.use_certificate_chain_file(s.opt.certFile);
    s.tls.use_private_key_file(s.opt.keyFile, ssl::context::pem);
    s.tls.load_verify_file(s.opt.caFile);
    // Mutual TLS: a gateway without a certificate from the provider CA gets no further.
    s.tls.set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
    tcp::endpoint ep(asio::ip::make_address(s.opt.host), s.opt.port);
    s.acceptor.open(ep.protocol());
    s.acceptor.set_option(asio::socket_base::reuse_address(true));
    s.acceptor.bind(ep);
    s.acceptor.listen(asio::socket_base::max_listen_connections);
  } catch (const std::exception& e) {
    return Status::unavailable("channel endpoint on " + s.opt.host + ":" + std::to_string(s.opt.port) + ": " +
                               e.what());
  }
  if (Status f = s.gateways.forgetServer(s.opt.serverId); !f) return f;
  if (Status h = s.gateways.heartbeat(s.opt.serverId); !h) return h;
  s.accept();
  s.beat();
  for (int i = 0; i < std::max(1, s.opt.threads); ++i) s.threads.emplace_back([&s] { s.io.run(); });
  return Status::ok();
}

void ChannelServer::stop() {
  Impl& s = *impl_;
  if (s.threads.empty()) return;
  s.io.stop();
  for (auto& t : s.threads) t.join();
  s.threads.clear();
  s.db.join();
  (void)s.gateways.forgetServer(s.opt.serverId);
}

uint16_t ChannelServer::port() const {
  return impl_->acceptor.local_endpoint().port();
}

size_t ChannelServer::connections() const {
  return impl_->live.load();
}

}  // namespace ferry::control
