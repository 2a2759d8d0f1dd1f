// The farm's internal endpoint: another ferry-control asks this one to deliver to a
// gateway whose channel it holds (DESIGN.md "Control": forwarding and broadcast).
// Mutual TLS; the caller's certificate must be a server certificate from the provider
// CA (a gateway's certificate is for client authentication only, so a gateway cannot
// pose as a peer).
//
//   POST /internal/v1/deliver {"gateway": ID}  → 200 {"held": true}
//                                              → 404 {"held": false} (not held here)
//   GET  /internal/v1/healthz                  → 200

#include <openssl/x509v3.h>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <optional>
#include <nlohmann/json.hpp>

#include "channel_impl.h"

namespace ferry::control {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using json = nlohmann::json;

namespace {

// A control server's certificate: the provider CA gives serverAuth only to servers.
bool isServerCertificate(SSL* ssl) {
  X509* cert = SSL_get0_peer_certificate(ssl);
  return cert && (X509_get_extended_key_usage(cert) & XKU_SSL_SERVER) != 0;
}

class PeerSession : public std::enable_shared_from_this<PeerSession> {
 public:
  PeerSession(ChannelServer::Impl& server, tcp::socket socket)
      : server_(server), stream_(std::move(socket), server.tls) {}

  void start() {
    beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(10));
    stream_.async_handshake(ssl::stream_base::server, [self = shared_from_this()](beast::error_code ec) {
      if (ec) return;
      self->peer_ = isServerCertificate(self->stream_.native_handle());
      self->read();
    });
  }

 private:
  void read() {
    request_ = {};
    parser_.emplace();
    parser_->body_limit(64 << 10);
    beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(60));  // idle keep-alive
    http::async_read(stream_, buffer_, *parser_, [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec) return;
      self->request_ = self->parser_->release();
      self->answer();
    });
  }

  void answer() {
    ++server_.peerCalls;
    http::status status = http::status::ok;
    json out;
    if (!peer_) {
      status = http::status::forbidden;
      out = {{"error", {{"code", "forbidden"}, {"message", "the internal endpoint is for control servers only"}}}};
    } else if (request_.target() == "/internal/v1/healthz") {
      out = {{"ok", true}};
    } else if (request_.target() == "/internal/v1/deliver" && request_.method() == http::verb::post) {
      json in = json::parse(request_.body(), nullptr, false);
      if (!in.is_object() || !in.contains("gateway") || !in["gateway"].is_string()) {
        status = http::status::bad_request;
        out = {{"error", {{"code", "malformed"}, {"message", "want {\"gateway\": ID}"}}}};
      } else {
        bool held = server_.deliver(in["gateway"].get<std::string>());
        status = held ? http::status::ok : http::status::not_found;
        out = {{"held", held}, {"server", server_.opt.serverId}};
      }
    } else {
      status = http::status::not_found;
      out = {{"error", {{"code", "not_found"}, {"message", "no such internal path"}}}};
    }
    auto res = std::make_shared<http::response<http::string_body>>(status, request_.version());
    res->set(http::field::content_type, "application/json");
    res->keep_alive(request_.keep_alive() && peer_);
    res->body() = out.dump() + "\n";
    res->prepare_payload();
    http::async_write(stream_, *res, [self = shared_from_this(), res](beast::error_code ec, size_t) {
      if (ec) return;
      if (res->keep_alive()) return self->read();
      beast::error_code ignored;
      beast::get_lowest_layer(self->stream_).socket().shutdown(tcp::socket::shutdown_both, ignored);
    });
  }

  ChannelServer::Impl& server_;
  beast::ssl_stream<beast::tcp_stream> stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::request<http::string_body> request_;
  bool peer_ = false;
};

}  // namespace

void startPeerSession(ChannelServer::Impl& server, tcp::socket socket) {
  std::make_shared<PeerSession>(server, std::move(socket))->start();
}

}  // namespace ferry::control
