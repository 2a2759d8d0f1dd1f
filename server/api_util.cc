#include "api_util.h"

#include <istream>

#include "ferry/strings.h"

namespace ferry::control {

using json = nlohmann::json;
using Poco::Net::HTTPResponse;

namespace {

constexpr size_t kDrainMax = size_t{4} << 20;

HTTPResponse::HTTPStatus httpStatusOf(Code c) {
  switch (c) {
    case Code::kInvalidArgument:
      return HTTPResponse::HTTP_BAD_REQUEST;
    case Code::kNotFound:
      return HTTPResponse::HTTP_NOT_FOUND;
    case Code::kPermissionDenied:
      return HTTPResponse::HTTP_UNAUTHORIZED;
    case Code::kBusy:
      return HTTPResponse::HTTP_CONFLICT;
    case Code::kRateLimited:
      return HTTPResponse::HTTP_TOO_MANY_REQUESTS;
    case Code::kUnavailable:
      return HTTPResponse::HTTP_SERVICE_UNAVAILABLE;
    default:
      return HTTPResponse::HTTP_INTERNAL_SERVER_ERROR;
  }
}

const char* codeName(Code c) {
  switch (c) {
    case Code::kInvalidArgument:
      return "invalid_argument";
    case Code::kNotFound:
      return "not_found";
    case Code::kPermissionDenied:
      return "unauthenticated";
    case Code::kBusy:
      return "conflict";
    case Code::kRateLimited:
      return "rate_limited";
    case Code::kUnavailable:
      return "unavailable";
    default:
      return "internal";
  }
}

}  // namespace

ApiError fromStatus(const Status& s) {
  return {httpStatusOf(s.code()), codeName(s.code()), s.message()};
}

ApiError invalidArgument(const std::string& message) {
  return ApiError{HTTPResponse::HTTP_BAD_REQUEST, "invalid_argument", message};
}

json readBody(Poco::Net::HTTPServerRequest& req) {
  std::string text;
  char buf[4096];
  std::istream& in = req.stream();
  bool tooLarge = req.hasContentLength() && req.getContentLength64() > static_cast<Poco::Int64>(kMaxApiBody);
  size_t drained = 0;
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    size_t n = static_cast<size_t>(in.gcount());
    if (!tooLarge) text.append(buf, n);
    if (text.size() > kMaxApiBody) tooLarge = true;
    // Read (and drop) a too-large body up to a point before answering, so that the
    // client, still sending, gets the 413 rather than a reset connection.
    if (tooLarge && (drained += n) > kDrainMax) break;
  }
  if (tooLarge) {
    throw ApiError{HTTPResponse::HTTP_REQUEST_ENTITY_TOO_LARGE, "too_large",
                   "request bodies are at most " + std::to_string(kMaxApiBody) + " bytes"};
  }
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded()) throw ApiError{HTTPResponse::HTTP_BAD_REQUEST, "malformed", "the body is not valid JSON"};
  if (!j.is_object()) throw ApiError{HTTPResponse::HTTP_BAD_REQUEST, "malformed", "the body must be a JSON object"};
  return j;
}

std::string optStr(const json& in, const char* key) {
  auto it = in.find(key);
  if (it == in.end() || it->is_null()) return "";
  if (!it->is_string()) throw invalidArgument(std::string("'") + key + "' must be a string");
  return it->get<std::string>();
}

std::string str(const json& in, const char* key) {
  auto it = in.find(key);
  if (it == in.end() || !it->is_string()) throw invalidArgument(std::string("'") + key + "' (a string) is required");
  return it->get<std::string>();
}

std::string queryParam(const Poco::Net::HTTPServerRequest& req, const std::string& name, const std::string& fallback) {
  const std::string& uri = req.getURI();
  size_t q = uri.find('?');
  if (q == std::string::npos) return fallback;
  auto params = parseQuery(std::string_view(uri).substr(q + 1));
  auto it = params.find(name);
  return it == params.end() ? fallback : it->second;
}

}  // namespace ferry::control
