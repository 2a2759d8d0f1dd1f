#pragma once
// The channel endpoint (DESIGN.md "Control", patent US20180152501A1): gateways open a
// WebSocket over mutual TLS (wss://…/v1/channel) with the client certificate activation
// gave them, and keep it open; the provider pushes requests down it. Asynchronous on
// Boost.Asio/Beast: no thread per connection.
//
// It authenticates a gateway by its certificate (signed by the provider CA, CN = a
// gateway that exists), records it as held by this server (the registration table, with
// an epoch so that a stale close cannot remove a newer connection's row), pings it every
// ping interval and drops it after the dead interval of silence. On connect, and
// whenever asked (deliver), it sends the gateway's outstanding requests from the
// outbox, frames {id, op, args}; the gateway's answers {id, ok, result|error} finish
// them.
//
// The same server holds the farm's internal endpoint (peer_endpoint.cc): other servers,
// authenticated by their own server certificates from the provider CA, ask it to
// deliver to a gateway it holds.

#include <cstdint>
#include <memory>
#include <string>

#include "ferry/status.h"
#include "gateway_metrics.h"
#include "iscsi_access.h"
#include "gateways.h"
#include "outbox.h"
#include "renewal.h"

namespace ferry::control {

struct ChannelOptions {
  std::string host = "0.0.0.0";
  uint16_t port = 8445;           // 0 = a free port
  std::string certFile, keyFile;  // the server's certificate (from the provider CA)
  std::string caFile;             // the provider CA: gateways' certificates must chain to it
  int pingSeconds = 15;
  int deadSeconds = 45;
  int threads = 1;
  std::string serverId;      // this server in the registration table
  int heartbeatSeconds = 5;  // this server's heartbeat; also how often stale servers are expired
  // The internal endpoint for peers (mutual TLS with server certificates).
  std::string internalHost = "0.0.0.0";
  uint16_t internalPort = 8444;  // 0 = a free port
  // How peers reach it, written with the heartbeat; "" = https://ADVERTISE-HOST:PORT
  // with the port as bound.
  std::string internalUrl;
  std::string advertiseHost = "localhost";  // a name in the server's certificate
  // A gateway whose certificate expires within this is asked for a renewal.
  int64_t renewWithinSeconds = 30 * 86400;
  // Gateway metrics reports: kept this long; a gateway's reports closer together than
  // reportMinSeconds are dropped (a misbehaving agent cannot flood the database).
  int64_t metricsRetentionSeconds = 15 * 86400;
  int reportMinSeconds = 10;
};

struct ChannelCounters {
  uint64_t sent = 0;      // request frames written
  uint64_t answers = 0;   // answers that finished a request
  uint64_t repeats = 0;   // answers to requests already finished (after a redelivery)
  uint64_t badFrames = 0; // frames that were not a valid answer
  uint64_t peerCalls = 0; // internal endpoint calls served
  uint64_t reports = 0;   // metrics reports stored
  uint64_t dbBacklog = 0; // channel work waiting for the database pool (a gauge)
};

class ChannelServer {
 public:
  // renewal: asks gateways for certificate renewals (none: never asked); metrics and
  // iscsi: store the gateways' metrics and iSCSI reports (none: they are dropped).
  ChannelServer(ChannelOptions options, Gateways& gateways, Outbox& outbox, Renewal* renewal = nullptr,
                GatewayMetrics* metrics = nullptr, IscsiAccess* iscsi = nullptr);
  ~ChannelServer();
  Status start();
  void stop();
  uint16_t port() const;
  uint16_t internalPort() const;
  const std::string& internalUrl() const;
  size_t connections() const;
  ChannelCounters counters() const;

  // If this server holds gatewayId's channel: sends its outstanding requests (in the
  // background) and returns true.
  bool deliver(const std::string& gatewayId);

  struct Impl;  // (public so that the sessions in channel_session.cc can name it)

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace ferry::control
