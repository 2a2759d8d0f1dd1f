#pragma once
// What every part of the REST API shares: its error type (thrown, turned into
// {"error":{"code","message"}} by the handler), the mapping from a Status, and the
// readers of request bodies and fields.

#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/HTTPServerRequest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "ferry/status.h"

namespace ferry::control {

struct ApiError {
  Poco::Net::HTTPResponse::HTTPStatus status;
  std::string code;
  std::string message;
};

ApiError fromStatus(const Status& s);
ApiError invalidArgument(const std::string& message);

// The value, or the Status as an ApiError.
template <typename T>
T orThrow(Result<T> r) {
  if (!r) throw fromStatus(r.status());
  return std::move(r.value());
}
inline void orThrow(const Status& s) {
  if (!s) throw fromStatus(s);
}

// The request body as a JSON object: bounded (kMaxApiBody; a larger one is read and
// dropped up to a point, then 413), well-formed, an object.
constexpr size_t kMaxApiBody = 64 << 10;
nlohmann::json readBody(Poco::Net::HTTPServerRequest& req);

// A required string field; an optional one ("" when absent or null).
std::string str(const nlohmann::json& in, const char* key);
std::string optStr(const nlohmann::json& in, const char* key);
// The query parameter name of the request's URI, or fallback.
std::string queryParam(const Poco::Net::HTTPServerRequest& req, const std::string& name,
                       const std::string& fallback = "");

}  // namespace ferry::control
