#pragma once
// A gateway's side of the channel for tests: it connects with its certificate over
// mutual TLS, answers pings, applies the requests pushed down it through a handler
// exactly once per request id (answering a redelivered request from what it answered
// before, as the agent does), and reconnects, trying the next server, when the
// connection ends. Everything runs on one io thread; the counters are safe to read.
// Header-only; Boost.Beast and OpenSSL.

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace ferry::testing {

class GatewayChannel {
  using json = nlohmann::json;
  using Stream = boost::beast::websocket::stream<boost::beast::ssl_stream<boost::beast::tcp_stream>>;

 public:
  struct Identity {
    std::string id, certificatePem, caPem, privateKeyPem;
  };
  // The request's {op, args} → an answer {ok, result|error}; null = the gateway died
  // before applying it (nothing is answered nor remembered; it comes again).
  using Handler = std::function<json(const json& request)>;

  GatewayChannel(Identity who, std::vector<int> ports, Handler handler)
      : who_(std::move(who)), ports_(std::move(ports)), handler_(std::move(handler)),
        tls_(boost::asio::ssl::context::tls_client), timer_(io_) {
    tls_.add_certificate_authority(boost::asio::buffer(who_.caPem));
    tls_.set_verify_mode(boost::asio::ssl::verify_peer);
    tls_.use_certificate(boost::asio::buffer(who_.certificatePem), boost::asio::ssl::context::pem);
    tls_.use_private_key(boost::asio::buffer(who_.privateKeyPem), boost::asio::ssl::context::pem);
  }
  ~GatewayChannel() { stop(); }

  void start() {
    work_.emplace(io_.get_executor());
    boost::asio::post(io_, [this] { connect(); });
    thread_ = std::thread([this] { io_.run(); });
  }
  void stop() {
    if (!thread_.joinable()) return;
    boost::asio::post(io_, [this] {
      stopping_ = true;
      timer_.cancel();
      if (auto c = current_.lock()) {
        boost::beast::error_code ec;
        boost::beast::get_lowest_layer(c->ws).socket().close(ec);
      }
      work_.reset();
    });
    thread_.join();
  }
  // Drops the connection as a crash would (no close frame); it reconnects.
  void drop() {
    boost::asio::post(io_, [this] {
      if (auto c = current_.lock()) {
        boost::beast::error_code ec;
        boost::beast::get_lowest_layer(c->ws).socket().close(ec);
      }
    });
  }

  // Writes a frame of the gateway's own (a metrics report) on the current connection.
  void send(std::string frame) {
    boost::asio::post(io_, [this, frame = std::move(frame)]() mutable {
      auto c = current_.lock();
      if (!c || c->dead) return;
      c->out.push_back(std::move(frame));
      if (!c->writing) write(c);
    });
  }

  bool connected() const { return connected_; }
  int port() const { return port_; }  // of the current or last connection
  int connections() const { return connections_; }
  // How many times the handler ran for id (1 after de-duplication, whatever the
  // redeliveries); and how many frames with that id arrived.
  int executions(const std::string& id) const {
    std::lock_guard<std::mutex> l(mutex_);
    auto it = executed_.find(id);
    return it == executed_.end() ? 0 : it->second;
  }
  int received(const std::string& id) const {
    std::lock_guard<std::mutex> l(mutex_);
    auto it = received_.find(id);
    return it == received_.end() ? 0 : it->second;
  }
  std::map<std::string, int> allExecutions() const {
    std::lock_guard<std::mutex> l(mutex_);
    return executed_;
  }

 private:
  // One connection: its stream and what waits to be written on it. Handlers hold it,
  // so an old connection's last callbacks never touch a newer one.
  struct Conn {
    Conn(boost::asio::io_context& io, boost::asio::ssl::context& tls) : ws(io, tls) {}
    Stream ws;
    boost::beast::flat_buffer buffer;
    std::deque<std::string> out;
    bool writing = false, dead = false;
  };

  void connect() {
    if (stopping_) return;
    connected_ = false;
    auto c = std::make_shared<Conn>(io_, tls_);
    current_ = c;
    port_ = ports_[next_++ % ports_.size()];
    auto& tcp = boost::beast::get_lowest_layer(c->ws);
    tcp.expires_after(std::chrono::seconds(5));
    tcp.async_connect(boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), port_),
                      [this, c](boost::beast::error_code ec) {
                        if (ec) return retry(c);
                        SSL_set_tlsext_host_name(c->ws.next_layer().native_handle(), "localhost");
                        c->ws.next_layer().async_handshake(boost::asio::ssl::stream_base::client,
                                                           [this, c](boost::beast::error_code e) {
                                                             if (e) return retry(c);
                                                             upgrade(c);
                                                           });
                      });
  }
  void upgrade(const std::shared_ptr<Conn>& c) {
    c->ws.async_handshake("localhost", "/v1/channel", [this, c](boost::beast::error_code ec) {
      if (ec) return retry(c);
      boost::beast::get_lowest_layer(c->ws).expires_never();
      connected_ = true;
      ++connections_;
      backoff_ = std::chrono::milliseconds(50);
      read(c);
    });
  }
  // The connection ended (or never began): a new one after a backoff.
  void retry(const std::shared_ptr<Conn>& c) {
    if (c->dead) return;
    c->dead = true;
    boost::beast::error_code ignored;
    boost::beast::get_lowest_layer(c->ws).socket().close(ignored);
    connected_ = false;
    if (stopping_) return;
    timer_.expires_after(backoff_);
    backoff_ = std::min(backoff_ * 2, std::chrono::milliseconds(1000));
    timer_.async_wait([this](boost::beast::error_code ec) {
      if (!ec) connect();
    });
  }
  void read(const std::shared_ptr<Conn>& c) {
    c->ws.async_read(c->buffer, [this, c](boost::beast::error_code ec, size_t) {
      if (ec) return retry(c);
      json f = json::parse(boost::beast::buffers_to_string(c->buffer.data()), nullptr, false);
      c->buffer.consume(c->buffer.size());
      if (f.is_object() && f.contains("id") && f["id"].is_string()) onRequest(c, f);
      read(c);
    });
  }
  void onRequest(const std::shared_ptr<Conn>& c, const json& f) {
    std::string id = f["id"];
    json answer;
    {
      std::lock_guard<std::mutex> l(mutex_);
      ++received_[id];
      auto done = answers_.find(id);
      if (done != answers_.end()) answer = done->second;
    }
    if (answer.is_null()) {
      answer = handler_(f);
      if (answer.is_null()) return;
      answer["id"] = id;
      std::lock_guard<std::mutex> l(mutex_);
      ++executed_[id];
      answers_[id] = answer;
    }
    c->out.push_back(answer.dump());
    if (!c->writing) write(c);
  }
  void write(const std::shared_ptr<Conn>& c) {
    if (c->out.empty() || c->dead) {
      c->writing = false;
      return;
    }
    c->writing = true;
    c->ws.text(true);
    c->ws.async_write(boost::asio::buffer(c->out.front()), [this, c](boost::beast::error_code ec, size_t) {
      if (ec) return retry(c);
      c->out.pop_front();
      write(c);
    });
  }

  Identity who_;
  std::vector<int> ports_;
  Handler handler_;
  boost::asio::io_context io_;
  boost::asio::ssl::context tls_;
  boost::asio::steady_timer timer_;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_;
  std::weak_ptr<Conn> current_;  // on the io thread only
  bool stopping_ = false;
  size_t next_ = 0;
  std::chrono::milliseconds backoff_{50};
  std::thread thread_;
  std::atomic<bool> connected_{false};
  std::atomic<int> port_{0}, connections_{0};
  mutable std::mutex mutex_;
  std::map<std::string, int> executed_, received_;
  std::map<std::string, json> answers_;
};

}  // namespace ferry::testing
