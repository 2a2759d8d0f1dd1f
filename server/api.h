#pragma once
// The customer REST API (/v1/…, JSON; docs/api.md) as a Poco HTTP request handler
// factory. Errors are {"error":{"code":"…","message":"…"}} with a 4xx/5xx status.

#include <Poco/Net/HTTPRequestHandlerFactory.h>

#include <array>
#include <atomic>
#include <ctime>

#include "accounts.h"
#include "bandwidth.h"
#include "ca.h"
#include "channel_server.h"
#include "gateway_metrics.h"
#include "iscsi_access.h"
#include "gateways.h"
#include "inventory.h"
#include "outbox.h"
#include "router.h"
#include "snapshot_schedule.h"
#include "vips.h"

namespace ferry::control {

// What the API serves from, and what it tells an activated gateway (step 5).
struct ApiContext {
  Accounts& accounts;
  Gateways& gateways;
  CertificateAuthority& ca;
  std::string controlEndpoint;  // where the gateway's channel connects
  std::string storeTemplate;    // the gateway's object store; "{gateway}" = its id
  int gatewayCertificateDays = 365;
  Outbox& outbox;
  Inventory& inventory;
  Bandwidth& bandwidth;
  SnapshotSchedules& schedules;
  GatewayMetrics& metrics;
  Router& router;
  Routing routing = Routing::kLookup;  // unless a call says ?routing=
  ChannelServer* channel = nullptr;    // for /metrics; none when api.tls = false
  std::string serverId;                // in /healthz: which farm member answered
  std::vector<Vip> vips;               // the VIPs whose host ports this server also listens on
  IscsiAccess* iscsi = nullptr;        // volumes' CHAP settings and iSCSI reports
};

// Answers by status class (1xx … 5xx), for /metrics.
struct ApiCounters {
  std::array<std::atomic<uint64_t>, 6> byClass{};
  const int64_t startedAt = static_cast<int64_t>(::time(nullptr));
};

class ApiFactory : public Poco::Net::HTTPRequestHandlerFactory {
 public:
  explicit ApiFactory(ApiContext ctx) : ctx_(std::move(ctx)) {}
  Poco::Net::HTTPRequestHandler* createRequestHandler(const Poco::Net::HTTPServerRequest& request) override;

 private:
  ApiContext ctx_;
  ApiCounters counters_;
};

}  // namespace ferry::control
