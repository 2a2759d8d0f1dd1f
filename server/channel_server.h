#pragma once
// The channel endpoint (DESIGN.md "Control", patent US20180152501A1): gateways open a
// WebSocket over mutual TLS (wss://…/v1/channel) with the client certificate activation
// gave them, and keep it open; the provider pushes requests down it. Asynchronous on
// Boost.Asio/Beast: no thread per connection.
//
// This first part holds the connections: it authenticates the gateway by its
// certificate (signed by the provider CA, CN = a gateway that exists), records it as
// online on this server (the registration table, with an epoch so that a stale close
// cannot remove a newer connection's row), pings it every ping interval and drops it
// after the dead interval of silence. Requests down the channel come with the outbox.

#include <cstdint>
#include <memory>
#include <string>

#include "ferry/status.h"
#include "gateways.h"

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
};

class ChannelServer {
 public:
  ChannelServer(ChannelOptions options, Gateways& gateways);
  ~ChannelServer();
  Status start();
  void stop();
  uint16_t port() const;
  size_t connections() const;

  struct Impl;  // (public so that the connections in channel_server.cc can name it)

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace ferry::control
