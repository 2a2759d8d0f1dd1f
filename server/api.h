#pragma once
// The customer REST API (/v1/…, JSON; docs/api.md) as a Poco HTTP request handler
// factory. Errors are {"error":{"code":"…","message":"…"}} with a 4xx/5xx status.

#include <Poco/Net/HTTPRequestHandlerFactory.h>

#include "accounts.h"
#include "gateways.h"

namespace ferry::control {

class ApiFactory : public Poco::Net::HTTPRequestHandlerFactory {
 public:
  ApiFactory(Accounts& accounts, Gateways& gateways) : accounts_(accounts), gateways_(gateways) {}
  Poco::Net::HTTPRequestHandler* createRequestHandler(const Poco::Net::HTTPServerRequest& request) override;

  static constexpr size_t kMaxBody = 64 << 10;

 private:
  Accounts& accounts_;
  Gateways& gateways_;
};

}  // namespace ferry::control
