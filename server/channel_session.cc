// A gateway's channel: TLS with its client certificate, the WebSocket upgrade at
// /v1/channel, registration, pings and dead-peer detection, requests down and answers
// up. Everything on the session's strand; database calls on the server's pool.

#include <openssl/x509.h>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <algorithm>
#include <chrono>
#include <ctime>
#include <deque>
#include <iostream>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "channel_impl.h"
#include "tls_socket.h"

namespace ferry::control {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace ssl = asio::ssl;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using json = nlohmann::json;

namespace {

constexpr size_t kMaxFrame = 1 << 20;

// When the peer's certificate expires (Unix seconds; 0 if unknown).
int64_t notAfterOf(SSL* ssl) {
  X509* cert = SSL_get0_peer_certificate(ssl);
  struct tm t {};
  if (!cert || ASN1_TIME_to_tm(X509_get0_notAfter(cert), &t) != 1) return 0;
  return static_cast<int64_t>(timegm(&t));
}

// The gateway id a verified peer certificate names (its subject CN).
std::string commonNameOf(SSL* ssl) {
  X509* cert = SSL_get0_peer_certificate(ssl);
  if (!cert) return "";
  char cn[256] = "";
  if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn) <= 0) return "";
  return cn;
}

class Session : public GatewaySession, public std::enable_shared_from_this<Session> {
 public:
  Session(ChannelServer::Impl& server, tcp::socket socket)
      : server_(server), ws_(std::move(socket), server.tls.native_handle()), timer_(ws_.get_executor()),
        renewTimer_(ws_.get_executor()) {}

  void start() {
    ++server_.live;
    // The handshakes (TLS, then the WebSocket upgrade) in 15 s, or the socket closes.
    // A weak reference: a connection that failed early goes at once, not in 15 s.
    timer_.expires_after(std::chrono::seconds(15));
    timer_.async_wait([weak = weak_from_this()](beast::error_code ec) {
      auto self = weak.lock();
      // accepted_: an expiry queued just before the upgrade finished is not a timeout.
      if (!ec && self && !self->accepted_) self->ws_.next_layer().close();
    });
    ws_.next_layer().async_handshake([self = shared_from_this()](beast::error_code ec) { self->onTls(ec); });
  }
  ~Session() override { --server_.live; }

  int64_t epoch() const override { return epoch_; }

  void deliverOutstanding() override {
    asio::post(ws_.get_executor(), [self = shared_from_this()] { self->fetchOutstanding(); });
  }

 private:
  void onTls(beast::error_code ec) {
    if (ec) return;  // no certificate, or not the provider CA's: nothing to say to it
    gateway_ = commonNameOf(ws_.next_layer().native_handle());
    certNotAfter_ = notAfterOf(ws_.next_layer().native_handle());
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
    ws_.read_message_max(kMaxFrame);
    ws_.write_buffer_bytes(1024);  // frames are small JSON; the default 4 KiB per channel adds up
    ws_.async_accept(upgrade_, [self = shared_from_this()](beast::error_code e) { self->onAccept(e); });
  }

  void onAccept(beast::error_code ec) {
    if (ec) return;
    upgrade_ = {};  // the upgrade request is done with: do not hold it for the channel's life
    accepted_ = true;
    timer_.cancel();  // the handshakes are done
    epoch_ = ++server_.nextEpoch;
    // Is it a gateway we know (not deleted)? Registered if so, off the I/O thread.
    if (gateway_.empty()) return onKnown(false);
    server_.registerChannel(gateway_, epoch_, [self = shared_from_this()](bool known) {
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
    server_.hold(gateway_, shared_from_this());
    lastHeard_ = std::chrono::steady_clock::now();
    ws_.control_callback(
        [this](websocket::frame_type, beast::string_view) { lastHeard_ = std::chrono::steady_clock::now(); });
    tick();
    read();
    server_.fetchFirst(gateway_, shared_from_this());  // what waited for this gateway while it was away
    scheduleRenewal();
  }

  // When the certificate this connection was made with enters the renewal window (now,
  // or later for a connection that lives that long): ask the gateway for a renewal.
  void scheduleRenewal() {
    if (!server_.renewal || certNotAfter_ == 0) return;
    int64_t due = certNotAfter_ - server_.opt.renewWithinSeconds - static_cast<int64_t>(::time(nullptr));
    renewTimer_.expires_after(std::chrono::seconds(std::max<int64_t>(0, std::min<int64_t>(due, 86400))));
    renewTimer_.async_wait([self = shared_from_this(), due](beast::error_code ec) {
      if (ec || self->closing_) return;
      if (due > 86400) return self->scheduleRenewal();  // not yet: look again in a day
      self->server_.onDb([self] {
        if (Status s = self->server_.renewal->ask(self->gateway_); !s) {
          std::cerr << "ferry-control: renewal for " << self->gateway_ << ": " << s.toString() << "\n";
          return;
        }
        self->deliverOutstanding();
      });
    });
  }

  // Outstanding requests from the outbox, then the ones not yet sent on this
  // connection go down it. One fetch at a time; a push during a fetch fetches again.
  void fetchOutstanding() {
    if (closing_ || !registered_) return;
    if (fetching_) {
      fetchAgain_ = true;
      return;
    }
    fetching_ = true;
    server_.onDb([self = shared_from_this()] {
      auto r = self->server_.outbox.outstanding(self->gateway_);
      asio::post(self->ws_.get_executor(), [self, r = std::move(r)] { self->onOutstanding(r); });
    });
  }

  void onOutstanding(const Result<std::vector<RequestInfo>>& r) {
    fetching_ = false;
    if (!r) {
      std::cerr << "ferry-control: requests for " << gateway_ << ": " << r.status().toString() << "\n";
    } else {
      for (const auto& req : r.value()) {
        if (!sent_.insert(req.id).second) {  // already sent on this connection
          // ...but recorded as sent on another: two connections' marks landed out of
          // order. Recorded again, or the heartbeat takes it for missed at every beat.
          if (req.state == "delivered" && req.deliveredEpoch != epoch_) markDelivered(req.id);
          continue;
        }
        queue_.push_back({req.id, json{{"id", req.id}, {"op", req.op}, {"args", req.args}}.dump()});
      }
      if (!writing_) writeNext();
    }
    if (fetchAgain_) {
      fetchAgain_ = false;
      fetchOutstanding();
    }
  }

  // Recorded as sent down this connection (off the I/O thread).
  void markDelivered(const std::string& id) {
    server_.onDb([self = shared_from_this(), id] {
      if (Status s = self->server_.outbox.markDelivered(id, self->server_.opt.serverId, self->epoch_); !s) {
        std::cerr << "ferry-control: " << s.toString() << "\n";
      }
    });
  }

  void writeNext() {
    if (queue_.empty() || closing_) {
      writing_ = false;
      return;
    }
    writing_ = true;
    ws_.text(true);
    ws_.async_write(asio::buffer(queue_.front().frame), [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec) return self->closed();
      std::string id = std::move(self->queue_.front().id);
      self->queue_.pop_front();
      ++self->server_.sent;
      self->markDelivered(id);
      self->writeNext();
    });
  }

  void read() {
    ws_.async_read(buffer_, [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec) return self->closed();
      self->lastHeard_ = std::chrono::steady_clock::now();
      self->onFrame(beast::buffers_to_string(self->buffer_.data()));
      self->buffer_.consume(self->buffer_.size());
      self->buffer_.shrink_to_fit();  // an idle channel holds no read buffer
      self->read();
    });
  }

  // {id, ok: true, result} or {id, ok: false, error: {code, message}}, or a metrics
  // report (gateway_metrics.h). A gateway never sends requests of its own; anything
  // else is counted and dropped.
  void onFrame(const std::string& text) {
    json f = json::parse(text, nullptr, false);
    if (f.is_object() && f.contains("report")) return onReport(std::move(f));
    if (!f.is_object() || !f.contains("id") || !f["id"].is_string() || !f.contains("ok") || !f["ok"].is_boolean()) {
      ++server_.badFrames;
      std::cerr << "ferry-control: gateway " << gateway_ << " sent a frame that is not an answer; dropped\n";
      return;
    }
    bool ok = f["ok"].get<bool>();
    json payload = ok ? f.value("result", json::object()) : f.value("error", json::object());
    if (!ok && (!payload.is_object() || !payload.contains("message"))) {
      payload = {{"code", "error"}, {"message", payload.is_string() ? payload.get<std::string>() : payload.dump()}};
    }
    server_.onDb([self = shared_from_this(), id = f["id"].get<std::string>(), ok, payload] {
      auto r = self->server_.outbox.finish(self->gateway_, id, ok, payload);
      if (!r) {
        std::cerr << "ferry-control: answer from " << self->gateway_ << ": " << r.status().toString() << "\n";
        if (r.status().code() == Code::kNotFound) {
          ++self->server_.badFrames;
          return;
        }
        // Not recorded (the database failed): send the request again, so the gateway
        // answers again (from its log) and the answer gets another try.
        asio::post(self->ws_.get_executor(), [self, id] {
          self->sent_.erase(id);
          self->fetchOutstanding();
        });
        return;
      }
      ++(r.value() ? self->server_.answers : self->server_.repeats);
      // Finished: no fetch from now on returns it, so the connection can forget it.
      asio::post(self->ws_.get_executor(), [self, id] { self->sent_.erase(id); });
    });
  }

  void onReport(json report) {
    if (!server_.metrics || !server_.takeReport(gateway_)) {
      ++server_.badFrames;
      if (server_.metrics) std::cerr << "ferry-control: gateway " << gateway_ << " reports too often; report dropped\n";
      return;
    }
    server_.onDb([self = shared_from_this(), report = std::move(report)] {
      const auto kind = report.find("report");
      bool iscsi = kind != report.end() && *kind == "iscsi";
      if (iscsi && self->server_.iscsi == nullptr) return;
      Status s = iscsi ? self->server_.iscsi->record(self->gateway_, report)
                       : self->server_.metrics->record(self->gateway_, report);
      if (!s) {
        ++self->server_.badFrames;
        std::cerr << "ferry-control: gateway " << self->gateway_ << ": " << s.toString() << "\n";
        return;
      }
      ++self->server_.reports;
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
        self->ws_.next_layer().close();
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
    renewTimer_.cancel();
    if (!registered_) return;
    server_.release(gateway_, this);
    server_.onDb([self = shared_from_this()] {
      (void)self->server_.gateways.disconnected(self->gateway_, self->server_.opt.serverId, self->epoch_);
    });
  }

  struct Outgoing {
    std::string id, frame;
  };

  ChannelServer::Impl& server_;
  // Our own TLS stream (tls_socket.h): asio's keeps ~68 KiB of buffers per connection,
  // and most channels are idle.
  websocket::stream<TlsSocket> ws_;
  asio::steady_timer timer_;
  asio::steady_timer renewTimer_;
  int64_t certNotAfter_ = 0;
  beast::flat_buffer buffer_;
  beast::http::request<beast::http::string_body> upgrade_;
  std::string gateway_;
  int64_t epoch_ = 0;
  bool accepted_ = false;  // the WebSocket upgrade is done (the handshake timer is off)
  bool registered_ = false;
  bool closing_ = false;
  bool fetching_ = false, fetchAgain_ = false, writing_ = false;
  std::unordered_set<std::string> sent_;  // request ids sent on this connection
  std::deque<Outgoing> queue_;
  std::chrono::steady_clock::time_point lastHeard_;
};

}  // namespace

void startGatewaySession(ChannelServer::Impl& server, tcp::socket socket) {
  std::make_shared<Session>(server, std::move(socket))->start();
}

}  // namespace ferry::control
