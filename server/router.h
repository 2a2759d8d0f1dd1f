#pragma once
// Where a request for a gateway goes once it is in the outbox (DESIGN.md "Control",
// patent US20180152501A1): pushed down the channel if this server holds it; else
// forwarded to the server that does, found in the registration table (lookup), or
// offered to every live peer (broadcast); else it stays pending until the gateway
// connects, to whichever server it reaches. Either way the request is already stored:
// routing only decides who sends it now.

#include <string>

#include "channel_server.h"
#include "gateways.h"

namespace ferry::control {

enum class Routing { kLookup, kBroadcast };

// "lookup" or "broadcast"; false for anything else.
bool parseRouting(const std::string& text, Routing* out);
const char* routingName(Routing r);

struct RouteOutcome {
  std::string how;     // "local", "forwarded", "broadcast" or "pending"
  std::string server;  // the server that holds the gateway's channel, if one took it
};

class Router {
 public:
  // certFile/keyFile: this server's certificate, presented to peers; caFile: the
  // provider CA, that peers' certificates must chain to.
  Router(ChannelServer* local, Gateways& gateways, std::string serverId, std::string caFile, std::string certFile,
         std::string keyFile)
      : local_(local),
        gateways_(gateways),
        serverId_(std::move(serverId)),
        caFile_(std::move(caFile)),
        certFile_(std::move(certFile)),
        keyFile_(std::move(keyFile)) {}

  RouteOutcome route(const std::string& gatewayId, Routing mode);

 private:
  // Asks one peer to deliver: true if it holds the gateway.
  bool askPeer(const PeerServer& peer, const std::string& gatewayId);

  ChannelServer* local_;
  Gateways& gateways_;
  std::string serverId_, caFile_, certFile_, keyFile_;
};

}  // namespace ferry::control
