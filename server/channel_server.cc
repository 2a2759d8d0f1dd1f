#include "channel_server.h"

#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <random>
#include <unordered_set>

#include "channel_impl.h"

namespace ferry::control {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

namespace {
// A pending request this old on a held gateway missed its push: push it again.
constexpr int64_t kStalledMillis = 2000;
}  // namespace

ChannelServer::Impl::Impl(ChannelOptions o, Gateways& g, Outbox& ob, Renewal* r, GatewayMetrics* m)
    : opt(std::move(o)), gateways(g), outbox(ob), renewal(r), metrics(m) {
  std::random_device rd;
  nextEpoch = static_cast<int64_t>((uint64_t{rd()} << 20) & 0x3fffffffffffffffULL);
}

void ChannelServer::Impl::accept(tcp::acceptor& a, bool peers) {
  a.async_accept(asio::make_strand(io), [this, &a, peers](boost::system::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted) return;
    if (!ec) {
      if (peers)
        startPeerSession(*this, std::move(socket));
      else
        startGatewaySession(*this, std::move(socket));
    }
    accept(a, peers);
  });
}

// Every heartbeat interval, on the database pool: this server is alive; servers that
// stopped beating lose their registrations (their gateways show offline and reconnect
// elsewhere); requests whose push was missed are pushed again.
void ChannelServer::Impl::beat() {
  heartbeatTimer.expires_after(std::chrono::seconds(opt.heartbeatSeconds));
  heartbeatTimer.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    asio::post(beats, [this] {
      auto revived = gateways.heartbeat(opt.serverId, internalUrl);
      if (!revived) {
        std::cerr << "ferry-control: " << revived.status().toString() << "\n";
      } else if (revived.value()) {
        reregisterHeld();
      }
      // Give back to the OS what bursts left free: thousands of gateways handshaking
      // at once (a reconnection storm) need far more memory than they hold afterwards,
      // and the allocator keeps the peak otherwise.
      ::malloc_trim(0);
      auto expired = gateways.expireStaleServers();
      if (!expired) {
        std::cerr << "ferry-control: " << expired.status().toString() << "\n";
      } else if (expired.value() > 0) {
        std::cerr << "ferry-control: " << expired.value() << " channel registrations of dead servers expired\n";
      }
      auto stalled = outbox.stalledGateways(opt.serverId, kStalledMillis);
      if (stalled) {
        for (const auto& g : stalled.value()) deliver(g);
      }
      pruneMetrics();
    });
    beat();
  });
}

bool ChannelServer::Impl::takeReport(const std::string& gatewayId) {
  constexpr double kBurst = 60;  // an hour of backlog at one a minute
  auto nowTime = std::chrono::steady_clock::now();
  std::lock_guard<std::mutex> lock(reportMutex);
  auto [it, fresh] = reportBuckets.try_emplace(gatewayId, ReportBucket{kBurst, nowTime});
  ReportBucket& b = it->second;
  if (!fresh) {
    double refill = std::chrono::duration<double>(nowTime - b.last).count() / std::max(1, opt.reportMinSeconds);
    b.tokens = std::min(kBurst, b.tokens + refill);
    b.last = nowTime;
  }
  if (b.tokens < 1) return false;
  b.tokens -= 1;
  return true;
}

// Every ten minutes at most (each server of a farm does it; once would do).
void ChannelServer::Impl::pruneMetrics() {
  if (!metrics) return;
  auto nowTime = std::chrono::steady_clock::now();
  if (lastPrune.time_since_epoch().count() != 0 && nowTime - lastPrune < std::chrono::minutes(10)) return;
  lastPrune = nowTime;
  auto gone = metrics->prune(static_cast<int64_t>(::time(nullptr)) - opt.metricsRetentionSeconds);
  if (!gone) std::cerr << "ferry-control: " << gone.status().toString() << "\n";
}

void ChannelServer::Impl::registerChannel(const std::string& gatewayId, int64_t epoch,
                                          std::function<void(bool known)> done) {
  std::lock_guard<std::mutex> lock(registrationMutex);
  registrations.push_back({gatewayId, epoch, std::move(done)});
  if (registering) return;  // the queued run takes this one too
  registering = true;
  onDb([this] { registerQueued(); });
}

void ChannelServer::Impl::registerQueued() {
  constexpr size_t kBatch = 500;  // one transaction stays short
  std::vector<Registration> batch;
  {
    std::lock_guard<std::mutex> lock(registrationMutex);
    if (stopping) {  // the server is going: its registrations would be forgotten anyway
      registrations.clear();
      registering = false;
      return;
    }
    size_t n = std::min(kBatch, registrations.size());
    batch.assign(std::make_move_iterator(registrations.begin()), std::make_move_iterator(registrations.begin() + n));
    registrations.erase(registrations.begin(), registrations.begin() + n);
  }
  registerBatch(batch);
  // One batch at a time: two transactions racing could leave a gateway that reconnected
  // at once registered with its older connection.
  std::lock_guard<std::mutex> lock(registrationMutex);
  if (registrations.empty() || stopping) {
    registering = false;
  } else {
    onDb([this] { registerQueued(); });  // the rest, behind other work queued meanwhile
  }
}

void ChannelServer::Impl::registerBatch(std::vector<Registration>& batch) {
  std::vector<std::pair<std::string, int64_t>> channels;
  for (const Registration& r : batch) channels.emplace_back(r.gateway, r.epoch);
  auto known = gateways.connectMany(channels, opt.serverId);
  if (!known) {
    // The batch failed as a whole: one at a time, so one bad row costs only its own.
    std::cerr << "ferry-control: " << known.status().toString() << "; registering one at a time\n";
    for (const Registration& r : batch) {
      bool k = gateways.exists(r.gateway);
      if (k) {
        if (Status s = gateways.connected(r.gateway, opt.serverId, r.epoch); !s) {
          std::cerr << "ferry-control: channel of " << r.gateway << ": " << s.toString() << "\n";
        }
      }
      r.done(k);
    }
    return;
  }
  for (size_t i = 0; i < batch.size(); ++i) batch[i].done(known.value()[i]);
}

void ChannelServer::Impl::fetchFirst(const std::string& gatewayId, const std::shared_ptr<GatewaySession>& s) {
  std::lock_guard<std::mutex> lock(registrationMutex);
  firstFetches.emplace_back(gatewayId, s);
  if (fetching) return;
  fetching = true;
  onDb([this] { fetchQueued(); });
}

void ChannelServer::Impl::fetchQueued() {
  std::vector<std::pair<std::string, std::weak_ptr<GatewaySession>>> batch;
  {
    std::lock_guard<std::mutex> lock(registrationMutex);
    batch.swap(firstFetches);
    fetching = false;
  }
  // Asked after every session of the batch was held: a request made later is pushed
  // to the held session as usual.
  auto open = outbox.gatewaysWithOpenRequests();
  std::unordered_set<std::string> waiting;
  if (open) {
    waiting.insert(open.value().begin(), open.value().end());
  } else {
    std::cerr << "ferry-control: " << open.status().toString() << "; each new channel fetches\n";
  }
  for (const auto& [gateway, weak] : batch) {
    if (open && waiting.count(gateway) == 0) continue;
    if (auto session = weak.lock()) session->deliverOutstanding();
  }
}

void ChannelServer::Impl::hold(const std::string& gatewayId, const std::shared_ptr<GatewaySession>& s) {
  std::lock_guard<std::mutex> lock(heldMutex);
  // Two connections of one gateway registered out of order: the newer (higher epoch)
  // is the one to push to.
  auto& slot = held[gatewayId];
  auto current = slot.lock();
  if (!current || current->epoch() <= s->epoch()) slot = s;
}

void ChannelServer::Impl::release(const std::string& gatewayId, const GatewaySession* s) {
  std::lock_guard<std::mutex> lock(heldMutex);
  auto it = held.find(gatewayId);
  if (it == held.end()) return;
  auto current = it->second.lock();
  if (!current || current.get() == s) held.erase(it);
}

void ChannelServer::Impl::reregisterHeld() {
  std::vector<std::pair<std::string, int64_t>> all;
  {
    std::lock_guard<std::mutex> lock(heldMutex);
    for (const auto& [gw, weak] : held) {
      if (auto s = weak.lock()) all.emplace_back(gw, s->epoch());
    }
  }
  if (all.empty()) return;
  std::cerr << "ferry-control: this server was taken for dead; registering its " << all.size()
            << " channels again\n";
  if (Status s = gateways.reclaim(opt.serverId, all); !s) std::cerr << "ferry-control: " << s.toString() << "\n";
}

bool ChannelServer::Impl::deliver(const std::string& gatewayId) {
  std::shared_ptr<GatewaySession> s;
  {
    std::lock_guard<std::mutex> lock(heldMutex);
    auto it = held.find(gatewayId);
    if (it != held.end()) s = it->second.lock();
  }
  if (!s) return false;
  s->deliverOutstanding();
  return true;
}

ChannelServer::ChannelServer(ChannelOptions options, Gateways& gateways, Outbox& outbox, Renewal* renewal,
                             GatewayMetrics* metrics, IscsiAccess* iscsi)
    : impl_(std::make_unique<Impl>(std::move(options), gateways, outbox, renewal, metrics)) {
  impl_->iscsi = iscsi;
}

ChannelServer::~ChannelServer() {
  stop();
}

namespace {

void listen(tcp::acceptor& a, const std::string& host, uint16_t port) {
  tcp::endpoint ep(asio::ip::make_address(host), port);
  a.open(ep.protocol());
  a.set_option(asio::socket_base::reuse_address(true));
  a.bind(ep);
  a.listen(asio::socket_base::max_listen_connections);
}

}  // namespace

Status ChannelServer::start() {
  Impl& s = *impl_;
  try {
    s.tls.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                      ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    s.tls.use_certificate_chain_file(s.opt.certFile);
    s.tls.use_private_key_file(s.opt.keyFile, ssl::context::pem);
    s.tls.load_verify_file(s.opt.caFile);
    // Mutual TLS on both endpoints: without a certificate from the provider CA, no
    // further. Which kind of certificate (gateway or server) each session checks.
    s.tls.set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
    // Idle channels are most of them: OpenSSL frees a connection's buffers between
    // records rather than holding them.
    SSL_CTX_set_mode(s.tls.native_handle(), SSL_MODE_RELEASE_BUFFERS);
    // Gateways reconnect with a full handshake (a client certificate each time): no
    // session cache and no TLS 1.3 tickets to keep per connection.
    SSL_CTX_set_session_cache_mode(s.tls.native_handle(), SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(s.tls.native_handle(), 0);
  } catch (const std::exception& e) {
    return Status::invalid(std::string("channel TLS files: ") + e.what());
  }
  try {
    listen(s.acceptor, s.opt.host, s.opt.port);
  } catch (const std::exception& e) {
    return Status::unavailable("channel endpoint on " + s.opt.host + ":" + std::to_string(s.opt.port) + ": " +
                               e.what());
  }
  try {
    listen(s.internalAcceptor, s.opt.internalHost, s.opt.internalPort);
  } catch (const std::exception& e) {
    return Status::unavailable("internal endpoint on " + s.opt.internalHost + ":" +
                               std::to_string(s.opt.internalPort) + ": " + e.what());
  }
  s.internalUrl = s.opt.internalUrl;
  if (s.internalUrl.empty()) {
    s.internalUrl =
        "https://" + s.opt.advertiseHost + ":" + std::to_string(s.internalAcceptor.local_endpoint().port());
  }
  if (Status f = s.gateways.forgetServer(s.opt.serverId); !f) return f;
  if (auto h = s.gateways.heartbeat(s.opt.serverId, s.internalUrl); !h) return h.status();
  s.accept(s.acceptor, false);
  s.accept(s.internalAcceptor, true);
  s.beat();
  for (int i = 0; i < std::max(1, s.opt.threads); ++i) s.threads.emplace_back([&s] { s.io.run(); });
  return Status::ok();
}

void ChannelServer::stop() {
  Impl& s = *impl_;
  if (s.threads.empty()) return;
  {
    std::lock_guard<std::mutex> lock(s.registrationMutex);
    s.stopping = true;
  }
  s.io.stop();
  for (auto& t : s.threads) t.join();
  s.threads.clear();
  s.db.join();
  s.beats.join();
  (void)s.gateways.forgetServer(s.opt.serverId);
}

uint16_t ChannelServer::port() const {
  return impl_->acceptor.local_endpoint().port();
}

uint16_t ChannelServer::internalPort() const {
  return impl_->internalAcceptor.local_endpoint().port();
}

const std::string& ChannelServer::internalUrl() const {
  return impl_->internalUrl;
}

size_t ChannelServer::connections() const {
  return impl_->live.load();
}

ChannelCounters ChannelServer::counters() const {
  return {impl_->sent.load(), impl_->answers.load(), impl_->repeats.load(), impl_->badFrames.load(),
          impl_->peerCalls.load(), impl_->reports.load(), impl_->dbQueued.load()};
}

bool ChannelServer::deliver(const std::string& gatewayId) {
  return impl_->deliver(gatewayId);
}

}  // namespace ferry::control
