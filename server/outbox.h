#pragma once
// The outbox (DESIGN.md "Control"): every request to a gateway is stored here before
// anything is sent, so nothing is lost while the gateway is offline or a server dies.
//
//   pending ──sent down a channel──▶ delivered ──the gateway's answer──▶ done | failed
//
// Delivery is at least once: a request sent on a connection that then broke is sent
// again on the gateway's next connection, to whichever server it reaches; the gateway
// de-duplicates by request id. An answer finishes a request once; a repeated answer
// (after a redelivery) changes nothing.

#include <Poco/Data/Session.h>

#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "db.h"
#include "ferry/status.h"

namespace ferry::control {

struct RequestInfo {
  std::string id;  // req-…
  std::string gatewayId;
  std::string op;
  nlohmann::json args;
  std::string state;      // pending, delivered, done, failed
  nlohmann::json result;  // the gateway's result (done), else null
  nlohmann::json error;   // {code, message} (failed), else null
  int attempts = 0;       // how many times it was sent
  std::string deliveredBy;
  int64_t createdAt = 0, deliveredAt = 0, finishedAt = 0;  // Unix milliseconds; 0 = not yet
  int64_t deliveredEpoch = 0;                              // the connection (registration epoch) it last went down
};

class Outbox {
 public:
  explicit Outbox(Db& db) : db_(db) {}

  // Runs inside the transaction that finishes a request (e.g. a volume becomes
  // available when its volume.create is done); an error undoes the finish.
  using Settler = std::function<Status(Poco::Data::Session&, const RequestInfo&)>;
  void setSettler(Settler s) { settler_ = std::move(s); }

  // Stores a request for one of the account's gateways (else kNotFound). prepare, if
  // given, runs in the same transaction with the new request's id (to record what the
  // request will make, or refuse).
  Result<RequestInfo> submit(const std::string& accountId, const std::string& gatewayId, const std::string& op,
                             const nlohmann::json& args,
                             const std::function<Status(Poco::Data::Session&, const std::string&)>& prepare = {});
  // As submit, with the args made inside the transaction (from what it reads there)
  // by make, which may also refuse.
  using ArgsMaker = std::function<Result<nlohmann::json>(Poco::Data::Session&, const std::string& requestId)>;
  Result<RequestInfo> submitMade(const std::string& accountId, const std::string& gatewayId, const std::string& op,
                                 const ArgsMaker& make);

  Result<RequestInfo> get(const std::string& accountId, const std::string& id);
  // The gateway's requests, newest first.
  Result<std::vector<RequestInfo>> list(const std::string& accountId, const std::string& gatewayId, int limit);

  // What a channel must (re)send to the gateway: pending and delivered requests,
  // oldest first.
  Result<std::vector<RequestInfo>> outstanding(const std::string& gatewayId);
  // Sent by serverId on the gateway's connection registered as epoch (a redelivery
  // counts another attempt).
  Status markDelivered(const std::string& id, const std::string& serverId, int64_t epoch);
  // The gateway's answer: ok with a result, or an error {code, message}. True if it
  // finished the request; false if the request was already finished (a repeated
  // answer). kNotFound if the gateway has no such request.
  Result<bool> finish(const std::string& gatewayId, const std::string& id, bool ok, const nlohmann::json& payload);

  // Gateways held by serverId with requests pending for longer than ageMillis, or
  // delivered that long ago on another connection than the one registered now: a
  // missed push (a peer that could not be reached), or a request sent down a
  // connection that died unanswered after the gateway had already reconnected
  // (nothing else would send it again), is retried from here.
  Result<std::vector<std::string>> stalledGateways(const std::string& serverId, int64_t ageMillis);
  // The gateways with requests still to send or answer (pending or delivered): one
  // query for a burst of new channels, most of which have nothing waiting.
  Result<std::vector<std::string>> gatewaysWithOpenRequests();
  // Requests by state, every account (for /metrics).
  Result<std::map<std::string, int64_t>> countByState();

 private:
  Db& db_;
  Settler settler_;
};

int64_t nowMillis();
// Whether gatewayId is one of accountId's gateways.
bool ownsGateway(Poco::Data::Session& ses, const std::string& accountId, const std::string& gatewayId);

}  // namespace ferry::control
