#pragma once
// The REST API as ferryctl (and later the agent and the console tests) call it: HTTPS
// to ferry-control, trusting the provider CA given, a bearer token, JSON in and out.
// An API error comes back as a Status carrying the server's message.

#include <Poco/Net/Context.h>

#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "ferry/status.h"

namespace ferry::control {

class ApiClient {
 public:
  // endpoint: https://host:port (or http:// for a server with api.tls=false). caFile:
  // the provider CA in PEM; empty = the system's trusted CAs. certFile and keyFile: a
  // client certificate to present (a control server calling a peer), or none.
  static Result<ApiClient> make(const std::string& endpoint, const std::string& caFile,
                                const std::string& certFile = "", const std::string& keyFile = "");
  void setTimeoutSeconds(int s) { timeoutSeconds_ = s; }

  void setToken(std::string token) { token_ = std::move(token); }
  // method path [body]: the answer's JSON (null for 204); 4xx/5xx become a Status:
  // 400 → kInvalidArgument, 401 → kPermissionDenied, 404 → kNotFound, 409 → kBusy,
  // 403 → kPermissionDenied, 429 → kRateLimited, others → kUnavailable; connection failures → kUnavailable.
  Result<nlohmann::json> call(const std::string& method, const std::string& path, const nlohmann::json& body = nullptr,
                              const std::vector<std::pair<std::string, std::string>>& headers = {});

 private:
  ApiClient() = default;
  std::string host_;
  uint16_t port_ = 0;
  bool tls_ = true;
  Poco::Net::Context::Ptr context_;
  std::string token_;
  int timeoutSeconds_ = 30;
};

}  // namespace ferry::control
