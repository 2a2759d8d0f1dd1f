#include "router.h"

#include <future>
#include <iostream>
#include <vector>

#include "ctl_client.h"

namespace ferry::control {

bool parseRouting(const std::string& text, Routing* out) {
  if (text == "lookup") {
    *out = Routing::kLookup;
    return true;
  }
  if (text == "broadcast") {
    *out = Routing::kBroadcast;
    return true;
  }
  return false;
}

const char* routingName(Routing r) {
  return r == Routing::kLookup ? "lookup" : "broadcast";
}

bool Router::askPeer(const PeerServer& peer, const std::string& gatewayId) {
  if (peer.internalUrl.empty()) return false;
  auto client = ApiClient::make(peer.internalUrl, caFile_, certFile_, keyFile_);
  if (!client) {
    std::cerr << "ferry-control: peer " << peer.id << ": " << client.status().toString() << "\n";
    return false;
  }
  client.value().setTimeoutSeconds(5);
  auto r = client.value().call("POST", "/internal/v1/deliver", {{"gateway", gatewayId}});
  if (r) return r.value().value("held", false);
  if (r.status().code() != Code::kNotFound) {
    std::cerr << "ferry-control: peer " << peer.id << " at " << peer.internalUrl << ": " << r.status().toString()
              << "\n";
  }
  return false;
}

RouteOutcome Router::route(const std::string& gatewayId, Routing mode) {
  if (local_ && local_->deliver(gatewayId)) return {"local", serverId_};
  if (mode == Routing::kLookup) {
    auto holder = gateways_.holder(gatewayId);
    if (holder && holder.value() && holder.value()->id != serverId_ && askPeer(*holder.value(), gatewayId)) {
      return {"forwarded", holder.value()->id};
    }
    return {"pending", ""};
  }
  auto peers = gateways_.livePeers(serverId_);
  if (!peers) return {"pending", ""};
  // Every live peer at once; the one that holds the gateway says so.
  std::vector<std::future<bool>> asks;
  for (const auto& p : peers.value()) {
    asks.push_back(std::async(std::launch::async, [this, p, gatewayId] { return askPeer(p, gatewayId); }));
  }
  RouteOutcome out{"pending", ""};
  for (size_t i = 0; i < asks.size(); ++i) {
    if (asks[i].get() && out.server.empty()) out = {"broadcast", peers.value()[i].id};
  }
  return out;
}

}  // namespace ferry::control
