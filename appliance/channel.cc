#include "channel.h"

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <condition_variable>
#include <deque>
#include <iostream>
#include <mutex>
#include <random>
#include <thread>

namespace ferry::agent {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace ssl = asio::ssl;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using json = nlohmann::json;

bool parseChannelUrl(const std::string& url, std::string* host, std::string* port, std::string* path) {
  if (url.rfind("wss://", 0) != 0) return false;
  std::string rest = url.substr(6);
  size_t slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  *path = slash == std::string::npos ? "/" : rest.substr(slash);
  size_t colon = authority.rfind(':');
  if (colon == std::string::npos || authority.back() == ']') {
    *host = authority;
    *port = "443";
  } else {
    *host = authority.substr(0, colon);
    *port = authority.substr(colon + 1);
  }
  if (host->size() > 2 && host->front() == '[' && host->back() == ']') *host = host->substr(1, host->size() - 2);
  return !host->empty() && !port->empty();
}

namespace {

using Stream = websocket::stream<beast::ssl_stream<beast::tcp_stream>>;

// One connection; handlers hold it, so an old connection's last callbacks never touch
// a newer one.
struct Conn {
  Conn(asio::io_context& io, ssl::context& tls) : ws(io, tls) {}
  Stream ws;
  beast::flat_buffer buffer;
  std::deque<std::string> out;
  bool writing = false, dead = false;
  bool open = false;  // past the TLS and WebSocket handshakes
};

}  // namespace

struct Channel::Impl {
  ChannelConfig cfg;
  RequestLog& log;
  Applier& applier;
  std::string host, port, path;
  asio::io_context io;
  ssl::context tls{ssl::context::tls_client};
  asio::steady_timer retryTimer{io};
  tcp::resolver resolver{io};
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  std::thread ioThread;
  std::weak_ptr<Conn> current;
  bool stopping = false;
  int attempt = 0;
  std::mt19937_64 rng{std::random_device{}()};

  // The worker: requests in arrival order, applied one at a time.
  std::thread worker;
  std::mutex mutex;
  std::condition_variable wake;
  std::deque<std::pair<std::shared_ptr<Conn>, json>> queue;
  bool workerStop = false;
  bool workerDone = false;  // applyLoop has returned

  mutable std::mutex statusMutex;
  ChannelStatus st;

  Impl(ChannelConfig c, RequestLog& l, Applier& a) : cfg(std::move(c)), log(l), applier(a) {}

  void setError(const std::string& e) {
    std::lock_guard<std::mutex> l(statusMutex);
    st.lastError = e;
    st.connected = false;
  }

  void connect() {
    if (stopping) return;
    auto c = std::make_shared<Conn>(io, tls);
    current = c;
    resolver.async_resolve(host, port, [this, c](beast::error_code ec, tcp::resolver::results_type results) {
      if (ec) return retry(c, "resolve " + host + ": " + ec.message());
      beast::get_lowest_layer(c->ws).expires_after(std::chrono::seconds(15));
      beast::get_lowest_layer(c->ws).async_connect(results, [this, c](beast::error_code e, const tcp::endpoint&) {
        if (e) return retry(c, "connect " + host + ":" + port + ": " + e.message());
        SSL_set_tlsext_host_name(c->ws.next_layer().native_handle(), host.c_str());
        c->ws.next_layer().set_verify_callback(ssl::host_name_verification(host));
        c->ws.next_layer().async_handshake(ssl::stream_base::client, [this, c](beast::error_code e2) {
          if (e2) return retry(c, "TLS with " + host + ":" + port + ": " + e2.message());
          upgrade(c);
        });
      });
    });
  }

  void upgrade(const std::shared_ptr<Conn>& c) {
    beast::get_lowest_layer(c->ws).expires_never();
    websocket::stream_base::timeout t{};
    t.handshake_timeout = std::chrono::seconds(15);
    t.idle_timeout = std::chrono::seconds(cfg.deadSeconds);  // silent this long: dead
    t.keep_alive_pings = true;                               // ping at half of it when quiet
    c->ws.set_option(t);
    c->ws.set_option(websocket::stream_base::decorator(
        [](websocket::request_type& r) { r.set(beast::http::field::user_agent, "ferry-agent"); }));
    c->ws.read_message_max(1 << 20);
    c->ws.async_handshake(host, path, [this, c](beast::error_code ec) {
      if (ec) return retry(c, "channel handshake: " + ec.message());
      c->open = true;
      attempt = 0;
      {
        std::lock_guard<std::mutex> l(statusMutex);
        st.connected = true;
        ++st.connections;
        st.lastError.clear();
      }
      std::cerr << "ferry-agent: channel up to " << cfg.endpoint << "\n";
      read(c);
    });
  }

  // Exponential backoff with full jitter: a random wait up to base × 2^attempt,
  // capped, so gateways cut off together do not come back together.
  void retry(const std::shared_ptr<Conn>& c, const std::string& why) {
    if (c->dead) return;
    c->dead = true;
    beast::error_code ignored;
    beast::get_lowest_layer(c->ws).socket().close(ignored);
    setError(why);
    if (stopping) return;
    int64_t ceiling = std::min<int64_t>(cfg.backoffCapMillis, int64_t{cfg.backoffBaseMillis} << std::min(attempt, 20));
    ++attempt;
    int64_t wait = std::uniform_int_distribution<int64_t>(0, ceiling)(rng);
    std::cerr << "ferry-agent: channel: " << why << "; again in " << wait << " ms\n";
    retryTimer.expires_after(std::chrono::milliseconds(wait));
    retryTimer.async_wait([this](beast::error_code ec) {
      if (!ec) connect();
    });
  }

  void read(const std::shared_ptr<Conn>& c) {
    c->ws.async_read(c->buffer, [this, c](beast::error_code ec, size_t) {
      if (ec) return retry(c, "channel closed: " + ec.message());
      json f = json::parse(beast::buffers_to_string(c->buffer.data()), nullptr, false);
      c->buffer.consume(c->buffer.size());
      if (f.is_object() && f.contains("id") && f["id"].is_string() && f.contains("op") && f["op"].is_string()) {
        {
          std::lock_guard<std::mutex> l(statusMutex);
          ++st.requests;
        }
        std::lock_guard<std::mutex> l(mutex);
        queue.emplace_back(c, std::move(f));
        wake.notify_one();
      } else {
        std::cerr << "ferry-agent: the provider sent a frame that is not a request; ignored\n";
      }
      read(c);
    });
  }

  void send(const std::shared_ptr<Conn>& c, std::string frame) {
    if (c->dead) return;  // the answer is in the log: a redelivery gets it
    c->out.push_back(std::move(frame));
    if (!c->writing) write(c);
  }

  void write(const std::shared_ptr<Conn>& c) {
    if (c->out.empty() || c->dead) {
      c->writing = false;
      return;
    }
    c->writing = true;
    c->ws.text(true);
    c->ws.async_write(asio::buffer(c->out.front()), [this, c](beast::error_code ec, size_t) {
      if (ec) return retry(c, "channel write: " + ec.message());
      c->out.pop_front();
      write(c);
    });
  }

  // From the worker: ends a connection (on the io thread), so that the provider sends
  // its outstanding requests again on the next one.
  void dropConnection(const std::shared_ptr<Conn>& c, const std::string& why) {
    asio::post(io, [this, c, why] { retry(c, why); });
  }

  // Each request once: answered before → the same answer again; else applied (again,
  // if an earlier run died while applying it), the answer logged, then sent.
  bool stopRequested() {
    std::lock_guard<std::mutex> l(mutex);
    return workerStop;
  }

  void applyLoop() {
    for (;;) {
      std::pair<std::shared_ptr<Conn>, json> item;
      {
        std::unique_lock<std::mutex> l(mutex);
        wake.wait(l, [this] { return workerStop || !queue.empty(); });
        if (workerStop) return;
        item = std::move(queue.front());
        queue.pop_front();
      }
      const json& req = item.second;
      std::string id = req["id"];
      json answer;
      auto before = log.answerOf(id);
      if (!before) {
        // Cannot tell whether it was applied: never risk applying it twice. Drop the
        // connection; the provider sends it again on the next one.
        std::cerr << "ferry-agent: request log: " << before.status().toString() << "\n";
        dropConnection(item.first, "request log unreadable");
        continue;
      }
      if (before.value()) {
        answer = *before.value();
        std::lock_guard<std::mutex> l(statusMutex);
        ++st.repeats;
      } else {
        if (Status s = log.begin(id, req["op"]); !s) {
          std::cerr << "ferry-agent: request log: " << s.toString() << "\n";
          dropConnection(item.first, "request log unwritable");  // not applied: it comes again
          continue;
        }
        answer = applier.apply(req);
        if ((stopRequested() || applier.stopping()) && !answer.value("ok", false)) {
          // Failed because the agent is stopping (its engine calls were cancelled): not
          // an answer. Begun and not finished, it is applied again after
          // the restart, when the provider sends it again.
          return;
        }
        answer["id"] = id;
        if (Status s = log.finish(id, answer); !s) {
          std::cerr << "ferry-agent: request log: " << s.toString() << "\n";
          dropConnection(item.first, "request log unwritable");  // applied again (idempotent) when it comes again
          continue;
        }
      }
      asio::post(io, [this, c = item.first, frame = answer.dump()]() mutable { send(c, std::move(frame)); });
    }
  }
};

Channel::Channel(ChannelConfig config, RequestLog& log, Applier& applier)
    : impl_(std::make_unique<Impl>(std::move(config), log, applier)) {}

Channel::~Channel() {
  stop();
}

Status Channel::start() {
  Impl& s = *impl_;
  if (!parseChannelUrl(s.cfg.endpoint, &s.host, &s.port, &s.path)) {
    return Status::invalid("control endpoint " + s.cfg.endpoint + ": want wss://host:port/path");
  }
  try {
    s.tls.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                      ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    s.tls.load_verify_file(s.cfg.caFile);
    s.tls.use_certificate_chain_file(s.cfg.certificateFile);
    s.tls.use_private_key_file(s.cfg.keyFile, ssl::context::pem);
    s.tls.set_verify_mode(ssl::verify_peer);
  } catch (const std::exception& e) {
    return Status::invalid(std::string("channel TLS files: ") + e.what());
  }
  s.work.emplace(s.io.get_executor());
  asio::post(s.io, [&s] { s.connect(); });
  s.ioThread = std::thread([&s] { s.io.run(); });
  s.worker = std::thread([&s] {
    s.applyLoop();
    std::lock_guard<std::mutex> l(s.mutex);
    s.workerDone = true;
    s.wake.notify_all();
  });
  return Status::ok();
}

void Channel::stop() {
  Impl& s = *impl_;
  if (!s.ioThread.joinable()) return;
  {
    std::lock_guard<std::mutex> l(s.mutex);
    s.workerStop = true;
    s.wake.notify_all();
  }
  // A request being applied does not hold the stop up to the engine's timeout (a
  // snapshot can take minutes): its engine call is abandoned, not its effect. Again
  // until the worker is out, in case its call began after a cancel.
  {
    std::unique_lock<std::mutex> l(s.mutex);
    while (!s.workerDone) {
      s.applier.cancel();
      s.wake.wait_for(l, std::chrono::milliseconds(100));
    }
  }
  s.worker.join();
  asio::post(s.io, [&s] {
    s.stopping = true;
    s.retryTimer.cancel();
    s.resolver.cancel();
    if (auto c = s.current.lock()) {
      c->dead = true;
      beast::error_code ignored;
      beast::get_lowest_layer(c->ws).socket().close(ignored);
    }
    s.work.reset();
  });
  s.ioThread.join();
}

void Channel::reloadCertificate() {
  Impl& s = *impl_;
  asio::post(s.io, [&s] {
    try {
      s.tls.load_verify_file(s.cfg.caFile);
      s.tls.use_certificate_chain_file(s.cfg.certificateFile);
      std::cerr << "ferry-agent: channel certificate renewed; used from the next connection\n";
    } catch (const std::exception& e) {
      std::cerr << "ferry-agent: cannot load the renewed certificate: " << e.what() << "\n";
    }
  });
}

bool Channel::report(std::string frame) {
  Impl& s = *impl_;
  {
    std::lock_guard<std::mutex> l(s.statusMutex);
    if (!s.st.connected || !s.ioThread.joinable()) return false;
  }
  asio::post(s.io, [&s, frame = std::move(frame)]() mutable {
    if (auto c = s.current.lock(); c && c->open && !c->dead) s.send(c, std::move(frame));
  });
  return true;
}

ChannelStatus Channel::status() const {
  std::lock_guard<std::mutex> l(impl_->statusMutex);
  return impl_->st;
}

}  // namespace ferry::agent
