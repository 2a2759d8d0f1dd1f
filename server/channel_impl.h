#pragma once
// Inside the channel server: the state its gateway sessions (channel_session.cc) and
// peer sessions (peer_endpoint.cc) share. Not for use outside those files.

#include <atomic>
#include <functional>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "channel_server.h"

namespace ferry::control {

// One gateway's held channel (channel_session.cc).
class GatewaySession {
 public:
  virtual ~GatewaySession() = default;
  // Sends the gateway's outstanding requests; safe from any thread.
  virtual void deliverOutstanding() = 0;
  // This connection's registration epoch.
  virtual int64_t epoch() const = 0;
};

// Starts serving one accepted connection on each endpoint.
void startGatewaySession(ChannelServer::Impl& server, boost::asio::ip::tcp::socket socket);
void startPeerSession(ChannelServer::Impl& server, boost::asio::ip::tcp::socket socket);

struct ChannelServer::Impl {
  // Declared before io: the connections io still holds when it is destroyed use them.
  ChannelOptions opt;
  Gateways& gateways;
  Outbox& outbox;
  Renewal* renewal;
  GatewayMetrics* metrics;
  IscsiAccess* iscsi = nullptr;
  boost::asio::ssl::context tls{boost::asio::ssl::context::tls_server};
  std::atomic<size_t> live{0};
  std::atomic<int64_t> nextEpoch;
  std::atomic<uint64_t> sent{0}, answers{0}, repeats{0}, badFrames{0}, peerCalls{0}, reports{0};
  std::chrono::steady_clock::time_point lastPrune{};  // on the beats thread only
  // Metrics reports: a bucket per gateway, kept across its connections (reconnecting
  // does not refill it).
  struct ReportBucket {
    double tokens = 0;
    std::chrono::steady_clock::time_point last;
  };
  std::mutex reportMutex;
  std::unordered_map<std::string, ReportBucket> reportBuckets;
  // Whether gatewayId may send one more report now (and counts it).
  bool takeReport(const std::string& gatewayId);
  std::string internalUrl;
  // The channels this server holds, by gateway id.
  std::mutex heldMutex;
  std::unordered_map<std::string, std::weak_ptr<GatewaySession>> held;

  boost::asio::io_context io;
  // Declared after io: they must go before it.
  boost::asio::ip::tcp::acceptor acceptor{io};
  boost::asio::ip::tcp::acceptor internalAcceptor{io};
  boost::asio::steady_timer heartbeatTimer{io};
  boost::asio::thread_pool db{2};  // database calls, off the I/O threads
  std::atomic<uint64_t> dbQueued{0};  // posted to db, not yet done
  struct Registration {
    std::string gateway;
    int64_t epoch;
    std::function<void(bool)> done;
  };
  std::mutex registrationMutex;
  std::vector<Registration> registrations;  // GUARDED_BY(registrationMutex)
  bool registering = false;                 // a registerQueued is on the pool; GUARDED_BY(registrationMutex)
  bool stopping = false;                    // stop() began; GUARDED_BY(registrationMutex)
  std::vector<std::pair<std::string, std::weak_ptr<GatewaySession>>> firstFetches;  // GUARDED_BY(registrationMutex)
  bool fetching = false;  // a fetchQueued is on the pool; GUARDED_BY(registrationMutex)
  // Runs f on the database pool, counted in dbQueued (a burst of connections queues
  // thousands of registrations: /metrics shows how far behind the pool is).
  template <class F>
  void onDb(F&& f) {
    ++dbQueued;
    boost::asio::post(db, [this, f = std::forward<F>(f)]() mutable {
      f();
      --dbQueued;
    });
  }
  // The heartbeat on its own thread: a busy database pool must not make this server
  // look dead to its peers.
  boost::asio::thread_pool beats{1};
  std::vector<std::thread> threads;

  Impl(ChannelOptions o, Gateways& g, Outbox& ob, Renewal* r, GatewayMetrics* m);
  void accept(boost::asio::ip::tcp::acceptor& a, bool peers);
  void beat();
  void pruneMetrics();

  // The held map: a newer channel of a gateway replaces an older one.
  // A new channel's registration: whether gatewayId is still on record (known) comes
  // back through done, on the database pool. Registrations queued meanwhile go to the
  // database together, in one transaction: a storm of reconnecting gateways costs a
  // few transactions rather than one each.
  void registerChannel(const std::string& gatewayId, int64_t epoch, std::function<void(bool known)> done);
  void registerQueued();
  void registerBatch(std::vector<Registration>& batch);
  // A new channel's first fetch of what waits for it, after it is held: queued ones
  // share one query for which gateways have anything open; only those fetch.
  void fetchFirst(const std::string& gatewayId, const std::shared_ptr<GatewaySession>& s);
  void fetchQueued();
  void hold(const std::string& gatewayId, const std::shared_ptr<GatewaySession>& s);
  void release(const std::string& gatewayId, const GatewaySession* s);
  bool deliver(const std::string& gatewayId);
  // After this server's row was expired by a peer: registers every held channel again.
  void reregisterHeld();
};

}  // namespace ferry::control
