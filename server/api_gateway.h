#pragma once
// The REST API for what a gateway holds and what is asked of it (docs/api.md):
//   /v1/gateways/ID/volumes[/NAME[/snapshots]], /v1/gateways/ID/snapshots[/SNAP],
//   /v1/gateways/ID/requests, /v1/requests/REQ.
// A change is a request stored in the outbox and routed to the gateway (202 with the
// request; its state follows through GET /v1/requests/REQ).

#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/HTTPServerRequest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "api.h"

namespace ferry::control {

// Serves req if its path is one of the above (true), for account; else false.
bool routeGatewayResources(ApiContext& ctx, const std::string& account, Poco::Net::HTTPServerRequest& req,
                           const std::string& path, nlohmann::json& out, Poco::Net::HTTPResponse::HTTPStatus& status);

nlohmann::json requestJson(const RequestInfo& r);

}  // namespace ferry::control
