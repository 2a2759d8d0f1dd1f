// channel_load: the load generator of bench/channels.sh (issue #3's targets).
//
//   channel_load prepare --db URL --ca-dir DIR --count N --out FILE
//       makes an account and N activated gateways straight in the provider's database
//       (the same library calls the API makes), each with its key and a client
//       certificate from the provider CA; writes them to FILE (JSON lines).
//   channel_load run --identities FILE --ports P1,P2,... --ca FILE --api-a PORT --api-b PORT
//                    --server-pid PID --kill-pid PID [--count N] [--rate 100] [--seconds 20]
//       holds N gateway channels (source addresses spread over 127.0.0.0/8), measures
//       the server's RSS per channel, push latency at --rate requests/s through server
//       A's API (direct: A holds the channels) and through B's (forwarded), then kills
//       --kill-pid and measures how long until every gateway is connected again.
//       Prints one JSON object.

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <signal.h>
#include <sys/resource.h>

#include <Poco/Net/Context.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/HTTPSClientSession.h>
#include <Poco/Net/RejectCertificateHandler.h>
#include <Poco/Net/SSLManager.h>

#include <algorithm>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <chrono>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <thread>

#include "accounts.h"
#include "ca.h"
#include "db.h"
#include "gateways.h"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace ssl = asio::ssl;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

std::string arg(const std::vector<std::string>& a, const std::string& flag, const std::string& fallback = "") {
  for (size_t i = 0; i + 1 < a.size(); ++i) {
    if (a[i] == flag) return a[i + 1];
  }
  if (fallback.empty()) {
    std::cerr << "channel_load: " << flag << " is required\n";
    std::exit(2);
  }
  return fallback;
}

std::string bioText(BIO* b) {
  char* d = nullptr;
  long n = BIO_get_mem_data(b, &d);
  return std::string(d, static_cast<size_t>(n));
}

int prepare(const std::vector<std::string>& a) {
  using namespace ferry::control;
  auto db = Db::open(arg(a, "--db"));
  if (!db) return std::cerr << db.status().toString() << "\n", 1;
  auto ca = CertificateAuthority::loadOrCreate(arg(a, "--ca-dir"));
  if (!ca) return std::cerr << ca.status().toString() << "\n", 1;
  int count = std::stoi(arg(a, "--count"));
  Accounts accounts(*db.value());
  Gateways gateways(*db.value());
  std::string email = "load" + std::to_string(::time(nullptr)) + "@example.com";
  auto account = accounts.signUp(email, "load-password-1");
  if (!account) return std::cerr << account.status().toString() << "\n", 1;
  auto login = accounts.logIn(email, "load-password-1");
  std::ofstream out(arg(a, "--out"));
  out << json{{"token", login.value().secret}}.dump() << "\n";
  auto t0 = Clock::now();
  for (int i = 0; i < count; ++i) {
    EVP_PKEY* key = EVP_EC_gen("P-256");
    std::unique_ptr<BIO, decltype(&BIO_free)> pub(BIO_new(BIO_s_mem()), BIO_free), priv(BIO_new(BIO_s_mem()), BIO_free),
        csrBio(BIO_new(BIO_s_mem()), BIO_free);
    PEM_write_bio_PUBKEY(pub.get(), key);
    PEM_write_bio_PrivateKey(priv.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
    X509_REQ* req = X509_REQ_new();
    X509_REQ_set_pubkey(req, key);
    X509_REQ_sign(req, key, EVP_sha256());
    PEM_write_bio_X509_REQ(csrBio.get(), req);
    X509_REQ_free(req);
    EVP_PKEY_free(key);
    auto ticket = gateways.startActivation({bioText(pub.get()), "load", "0", {}});
    if (!ticket) return std::cerr << ticket.status().toString() << "\n", 1;
    auto g = gateways.claim(account.value(), ticket.value().key, "load-" + std::to_string(i), "");
    if (!g) return std::cerr << g.status().toString() << "\n", 1;
    auto cert = ca.value()->signGateway(bioText(csrBio.get()), g.value().keyFingerprint, g.value().id, 365);
    if (!cert) return std::cerr << cert.status().toString() << "\n", 1;
    out << json{{"id", g.value().id}, {"cert", cert.value().certificatePem}, {"key", bioText(priv.get())}}.dump()
        << "\n";
  }
  std::cerr << "prepared " << count << " gateways in "
            << std::chrono::duration<double>(Clock::now() - t0).count() << " s\n";
  return 0;
}

int64_t rssKiB(int pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6));
  }
  return -1;
}

struct Gateway {
  std::string id;
  X509* cert = nullptr;
  EVP_PKEY* key = nullptr;
};

// N gateway channels on one io thread, reconnecting to the next port when one ends.
class Load {
 public:
  Load(std::vector<Gateway> gws, std::vector<int> ports, const std::string& caFile)
      : gws_(std::move(gws)), ports_(std::move(ports)), tls_(ssl::context::tls_client) {
    tls_.load_verify_file(caFile);
    tls_.set_verify_mode(ssl::verify_peer);
    SSL_CTX_set_mode(tls_.native_handle(), SSL_MODE_RELEASE_BUFFERS);
    conns_.resize(gws_.size());
  }
  void start() {
    for (size_t i = 0; i < gws_.size(); ++i) asio::post(io_, [this, i] { connect(i, 0); });
    thread_ = std::thread([this] {
      auto work = asio::make_work_guard(io_);
      io_.run();
    });
  }
  void stop() {
    io_.stop();
    thread_.join();
  }
  int connected() const { return connected_; }
  int64_t handshakes() const { return handshakes_; }
  // When the request id arrived (steady clock), if it did.
  std::map<std::string, Clock::time_point> arrivals() {
    std::lock_guard<std::mutex> l(mutex_);
    return arrivals_;
  }

 private:
  struct Conn {
    Conn(asio::io_context& io, ssl::context& tls) : ws(io, tls) {}
    websocket::stream<beast::ssl_stream<beast::tcp_stream>> ws;
    beast::flat_buffer buffer;
    std::deque<std::string> out;
    bool writing = false, dead = false, up = false;
  };

  void connect(size_t i, int attempt) {
    auto c = std::make_shared<Conn>(io_, tls_);
    conns_[i] = c;
    SSL* s = c->ws.next_layer().native_handle();
    SSL_use_certificate(s, gws_[i].cert);
    SSL_use_PrivateKey(s, gws_[i].key);
    SSL_set_tlsext_host_name(s, "localhost");
    auto& sock = beast::get_lowest_layer(c->ws).socket();
    sock.open(tcp::v4());
    // Source addresses over 127.0.0.0/8: each has its own ephemeral ports.
    uint32_t src = (127u << 24) | static_cast<uint32_t>(2 + i);
    boost::system::error_code ec;
    sock.bind(tcp::endpoint(asio::ip::address_v4(src), 0), ec);
    int port = ports_[static_cast<size_t>(attempt + next_[i]) % ports_.size()];
    beast::get_lowest_layer(c->ws).expires_after(std::chrono::seconds(30));
    beast::get_lowest_layer(c->ws).async_connect(
        tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<uint16_t>(port)),
        [this, i, c, attempt](beast::error_code e) {
          if (e) return retry(i, c, attempt);
          c->ws.next_layer().async_handshake(ssl::stream_base::client, [this, i, c, attempt](beast::error_code e2) {
            if (e2) return retry(i, c, attempt);
            c->ws.async_handshake("localhost", "/v1/channel", [this, i, c, attempt](beast::error_code e3) {
              if (e3) return retry(i, c, attempt);
              beast::get_lowest_layer(c->ws).expires_never();
              c->up = true;
              ++connected_;
              ++handshakes_;
              read(i, c);
            });
          });
        });
  }
  void retry(size_t i, const std::shared_ptr<Conn>& c, int attempt) {
    if (c->dead) return;
    c->dead = true;
    if (c->up) --connected_;
    beast::error_code ignored;
    beast::get_lowest_layer(c->ws).socket().close(ignored);
    // As the agent does: full jitter up to 250 ms × 2^attempt, capped at 5 s.
    int64_t ceiling = std::min<int64_t>(5000, int64_t{250} << std::min(attempt, 10));
    auto t = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(
                                                           std::uniform_int_distribution<int64_t>(0, ceiling)(rng_)));
    t->async_wait([this, i, t, attempt](beast::error_code) { connect(i, attempt + 1); });
  }
  void read(size_t i, const std::shared_ptr<Conn>& c) {
    c->ws.async_read(c->buffer, [this, i, c](beast::error_code ec, size_t) {
      if (ec) return retry(i, c, 0);
      auto now = Clock::now();
      json f = json::parse(beast::buffers_to_string(c->buffer.data()), nullptr, false);
      c->buffer.consume(c->buffer.size());
      if (f.is_object() && f.contains("id")) {
        std::string id = f["id"];
        {
          std::lock_guard<std::mutex> l(mutex_);
          arrivals_.emplace(id, now);
        }
        c->out.push_back(json{{"id", id}, {"ok", true}, {"result", json::object()}}.dump());
        if (!c->writing) write(c);
      }
      read(i, c);
    });
  }
  void write(const std::shared_ptr<Conn>& c) {
    if (c->out.empty() || c->dead) {
      c->writing = false;
      return;
    }
    c->writing = true;
    c->ws.text(true);
    c->ws.async_write(asio::buffer(c->out.front()), [this, c](beast::error_code ec, size_t) {
      if (ec) return;
      c->out.pop_front();
      write(c);
    });
  }

  std::vector<Gateway> gws_;
  std::vector<int> ports_;
  std::vector<int> next_ = std::vector<int>(gws_.size(), 0);
  asio::io_context io_;
  ssl::context tls_;
  std::vector<std::shared_ptr<Conn>> conns_;
  std::thread thread_;
  std::atomic<int> connected_{0};
  std::atomic<int64_t> handshakes_{0};
  std::mt19937_64 rng_{42};
  std::mutex mutex_;
  std::map<std::string, Clock::time_point> arrivals_;
};

// Requests at `rate` per second for `seconds` through the API on port; the send time
// of each request id. Keep-alive HTTPS, as a busy client would.
std::map<std::string, Clock::time_point> push(int port, const std::string& token, const std::vector<Gateway>& gws,
                                              int rate, int seconds, const std::string& caFile) {
  Poco::Net::Context::Ptr ctx =
      new Poco::Net::Context(Poco::Net::Context::TLS_CLIENT_USE, "", "", caFile, Poco::Net::Context::VERIFY_STRICT);
  Poco::Net::HTTPSClientSession s("localhost", static_cast<Poco::UInt16>(port), ctx);
  s.setKeepAlive(true);
  std::map<std::string, Clock::time_point> sent;
  auto start = Clock::now();
  int total = rate * seconds;
  for (int i = 0; i < total; ++i) {
    std::this_thread::sleep_until(start + std::chrono::microseconds(int64_t{1000000} * i / rate));
    const Gateway& g = gws[static_cast<size_t>(i * 7919) % gws.size()];
    std::string body = R"({"op":"gateway.describe"})";
    Poco::Net::HTTPRequest req("POST", "/v1/gateways/" + g.id + "/requests", Poco::Net::HTTPMessage::HTTP_1_1);
    req.set("Authorization", "Bearer " + token);
    req.setContentType("application/json");
    req.setContentLength(static_cast<std::streamsize>(body.size()));
    req.setKeepAlive(true);
    auto t0 = Clock::now();
    s.sendRequest(req) << body;
    Poco::Net::HTTPResponse resp;
    std::stringstream text;
    text << s.receiveResponse(resp).rdbuf();
    json j = json::parse(text.str(), nullptr, false);
    if (resp.getStatus() == 202 && j.is_object()) sent.emplace(j["request"]["id"].get<std::string>(), t0);
  }
  return sent;
}

// A gauge from the server's /metrics on port (-1 when it cannot be read).
double metric(int port, const std::string& name, const std::string& caFile) {
  try {
    Poco::Net::Context::Ptr ctx =
        new Poco::Net::Context(Poco::Net::Context::TLS_CLIENT_USE, "", "", caFile, Poco::Net::Context::VERIFY_STRICT);
    Poco::Net::HTTPSClientSession s("localhost", static_cast<Poco::UInt16>(port), ctx);
    Poco::Net::HTTPRequest req("GET", "/metrics", Poco::Net::HTTPMessage::HTTP_1_1);
    s.sendRequest(req);
    Poco::Net::HTTPResponse resp;
    std::istream& in = s.receiveResponse(resp);
    for (std::string line; std::getline(in, line);) {
      if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
    }
  } catch (const std::exception&) {
  }
  return -1;
}

json latency(const std::map<std::string, Clock::time_point>& sent,
             const std::map<std::string, Clock::time_point>& arrived) {
  std::vector<double> ms;
  for (const auto& [id, t0] : sent) {
    auto it = arrived.find(id);
    if (it != arrived.end()) ms.push_back(std::chrono::duration<double, std::milli>(it->second - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  auto pct = [&](double p) { return ms.empty() ? -1.0 : ms[std::min(ms.size() - 1, static_cast<size_t>(p * ms.size()))]; };
  return {{"sent", sent.size()}, {"arrived", ms.size()}, {"p50_ms", pct(0.50)}, {"p99_ms", pct(0.99)},
          {"max_ms", ms.empty() ? -1.0 : ms.back()}};
}

int run(const std::vector<std::string>& a) {
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  std::ifstream in(arg(a, "--identities"));
  std::string line;
  std::getline(in, line);
  std::string token = json::parse(line)["token"];
  size_t limit = static_cast<size_t>(std::stoll(arg(a, "--count", "1000000")));
  std::vector<Gateway> gws;
  while (gws.size() < limit && std::getline(in, line)) {
    json j = json::parse(line);
    Gateway g;
    g.id = j["id"];
    std::string c = j["cert"], k = j["key"];
    std::unique_ptr<BIO, decltype(&BIO_free)> cb(BIO_new_mem_buf(c.data(), static_cast<int>(c.size())), BIO_free),
        kb(BIO_new_mem_buf(k.data(), static_cast<int>(k.size())), BIO_free);
    g.cert = PEM_read_bio_X509(cb.get(), nullptr, nullptr, nullptr);
    g.key = PEM_read_bio_PrivateKey(kb.get(), nullptr, nullptr, nullptr);
    gws.push_back(g);
  }
  std::vector<int> ports;
  std::stringstream ps(arg(a, "--ports"));
  for (std::string p; std::getline(ps, p, ',');) ports.push_back(std::stoi(p));
  std::string caFile = arg(a, "--ca");
  int serverPid = std::stoi(arg(a, "--server-pid")), killPid = std::stoi(arg(a, "--kill-pid"));
  int rate = std::stoi(arg(a, "--rate", "100")), seconds = std::stoi(arg(a, "--seconds", "20"));
  json out = {{"channels", gws.size()}};

  int64_t rssBefore = rssKiB(serverPid);
  Load load(gws, ports, caFile);
  auto t0 = Clock::now();
  load.start();
  while (load.connected() < static_cast<int>(gws.size())) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (Clock::now() - t0 > std::chrono::minutes(5)) break;
  }
  out["connect_seconds"] = std::chrono::duration<double>(Clock::now() - t0).count();
  out["connected"] = load.connected();
  // Registrations settle: the server has registered every channel and fetched what
  // waits for it (its database backlog is empty), then a second for the allocator.
  const int apiA = std::stoi(arg(a, "--api-a"));
  auto settleStart = Clock::now();
  // Three zero readings in a row: between a batch and the sessions' next step the
  // gauge can read 0 for an instant.
  for (int zeros = 0; zeros < 3 && Clock::now() - settleStart < std::chrono::minutes(2);) {
    double backlog = metric(apiA, "ferry_control_channel_db_backlog", caFile);
    if (backlog < 0) {  // a server without the gauge (an older build): a fixed wait
      std::this_thread::sleep_for(std::chrono::seconds(3));
      break;
    }
    zeros = backlog == 0 ? zeros + 1 : 0;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  out["settle_seconds"] = std::chrono::duration<double>(Clock::now() - settleStart).count();
  std::this_thread::sleep_for(std::chrono::seconds(1));
  int64_t rssAfter = rssKiB(serverPid);
  out["server_rss_kib_before"] = rssBefore;
  out["server_rss_kib_after"] = rssAfter;
  out["rss_per_channel_kib"] = gws.empty() ? 0.0 : static_cast<double>(rssAfter - rssBefore) / static_cast<double>(gws.size());

  auto direct = push(apiA, token, gws, rate, seconds, caFile);
  std::this_thread::sleep_for(std::chrono::seconds(2));
  out["push_direct"] = latency(direct, load.arrivals());
  auto forwarded = push(std::stoi(arg(a, "--api-b")), token, gws, rate, seconds, caFile);
  std::this_thread::sleep_for(std::chrono::seconds(2));
  out["push_forwarded"] = latency(forwarded, load.arrivals());

  int64_t before = load.handshakes();
  auto tk = Clock::now();
  ::kill(killPid, SIGKILL);
  while (load.handshakes() - before < static_cast<int64_t>(gws.size()) ||
         load.connected() < static_cast<int>(gws.size())) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (Clock::now() - tk > std::chrono::minutes(3)) break;
  }
  out["reconnect_seconds"] = std::chrono::duration<double>(Clock::now() - tk).count();
  out["reconnected"] = load.handshakes() - before;
  // Absorbed: B has also registered every one of them (its database backlog is empty).
  const int apiB = std::stoi(arg(a, "--api-b"));
  double backlog = -1;
  for (int zeros = 0; zeros < 3 && Clock::now() - tk < std::chrono::minutes(4);) {
    backlog = metric(apiB, "ferry_control_channel_db_backlog", caFile);
    if (backlog < 0) break;  // not known (an older build, or B does not answer)
    zeros = backlog == 0 ? zeros + 1 : 0;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  // The last zero reading, not the two confirming ones after it.
  out["reconnect_registered_seconds"] =
      backlog < 0 ? -1.0 : std::chrono::duration<double>(Clock::now() - tk).count() - 0.2;
  load.stop();
  std::cout << out.dump() << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> a(argv + 1, argv + argc);
  if (a.empty()) {
    std::cerr << "usage: channel_load prepare|run … (see the top of bench/channel_load.cc)\n";
    return 2;
  }
  Poco::Net::initializeSSL();
  Poco::Net::Context::Ptr none =
      new Poco::Net::Context(Poco::Net::Context::TLS_CLIENT_USE, "", "", "", Poco::Net::Context::VERIFY_STRICT);
  Poco::Net::SSLManager::instance().initializeClient(nullptr, new Poco::Net::RejectCertificateHandler(false), none);
  int rc = a[0] == "prepare" ? prepare(a) : a[0] == "run" ? run(a) : 2;
  Poco::Net::uninitializeSSL();
  return rc;
}
