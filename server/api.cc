#include "api.h"

#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerResponse.h>

#include <algorithm>
#include <istream>
#include <nlohmann/json.hpp>

#include "ferry/metrics_text.h"

namespace ferry::control {
namespace {

using json = nlohmann::json;
using Poco::Net::HTTPResponse;
using Poco::Net::HTTPServerRequest;
using Poco::Net::HTTPServerResponse;

constexpr size_t kDrainMax = size_t{4} << 20;

struct ApiError {
  HTTPResponse::HTTPStatus status;
  std::string code;
  std::string message;
};

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

ApiError fromStatus(const Status& s) {
  return {httpStatusOf(s.code()), codeName(s.code()), s.message()};
}

json tokenJson(const TokenInfo& t) {
  return {{"id", t.id},
          {"kind", t.kind},
          {"name", t.name},
          {"created_at", t.createdAt},
          {"expires_at", t.expiresAt},
          {"last_used_at", t.lastUsedAt}};
}

json gatewayJson(const GatewayInfo& g) {
  return {{"id", g.id},
          {"name", g.name},
          {"timezone", g.timezone},
          {"hostname", g.hostname},
          {"software_version", g.version},
          {"addresses", g.addresses},
          {"key_fingerprint", g.keyFingerprint},
          {"created_at", g.createdAt},
          {"last_seen_at", g.lastSeenAt},
          {"online", g.online}};
}

class Handler : public Poco::Net::HTTPRequestHandler {
 public:
  Handler(ApiContext& ctx, ApiCounters& counters)
      : ctx_(ctx), counters_(counters), accounts_(ctx.accounts), gateways_(ctx.gateways) {}

  void handleRequest(HTTPServerRequest& req, HTTPServerResponse& resp) override {
    json out;
    HTTPResponse::HTTPStatus status = HTTPResponse::HTTP_OK;
    try {
      status = route(req, out);
    } catch (const ApiError& e) {
      status = e.status;
      out = {{"error", {{"code", e.code}, {"message", e.message}}}};
    } catch (const std::exception& e) {
      status = HTTPResponse::HTTP_INTERNAL_SERVER_ERROR;
      out = {{"error", {{"code", "internal"}, {"message", e.what()}}}};
    }
    ++counters_.byClass[std::min<size_t>(static_cast<size_t>(status) / 100, 5)];
    if (metricsText_) {
      // /metrics: Prometheus text, not JSON.
      std::string text = out.get<std::string>();
      resp.setStatusAndReason(status);
      resp.setContentType(MetricsText::kContentType);
      resp.setContentLength(static_cast<std::streamsize>(text.size()));
      resp.send() << text;
      return;
    }
    std::string body = out.is_null() ? "" : out.dump() + "\n";
    resp.setStatusAndReason(status);
    resp.set("Cache-Control", "no-store");
    if (status == HTTPResponse::HTTP_UNAUTHORIZED) resp.set("WWW-Authenticate", "Bearer");
    resp.setContentType("application/json");
    resp.setContentLength(static_cast<std::streamsize>(body.size()));
    resp.send() << body;
  }

 private:
  HTTPResponse::HTTPStatus route(HTTPServerRequest& req, json& out) {
    const std::string& m = req.getMethod();
    std::string path = req.getURI().substr(0, req.getURI().find('?'));
    if (path == "/healthz") {
      out = {{"ok", true}};
      return HTTPResponse::HTTP_OK;
    }
    if (path == "/metrics" && m == "GET") {
      out = metrics();
      metricsText_ = true;
      return HTTPResponse::HTTP_OK;
    }
    if (path == "/v1/signup" && m == "POST") {
      json in = body(req);
      auto id = accounts_.signUp(str(in, "email"), str(in, "password"));
      if (!id) throw fromStatus(id.status());
      out = {{"account", {{"id", id.value()}, {"email", in["email"]}}}};
      return HTTPResponse::HTTP_CREATED;
    }
    if (path == "/v1/login" && m == "POST") {
      json in = body(req);
      auto t = accounts_.logIn(str(in, "email"), str(in, "password"));
      if (!t) throw fromStatus(t.status());
      out = {{"token", t.value().secret}, {"expires_at", t.value().info.expiresAt}};
      return HTTPResponse::HTTP_OK;
    }
    // Activation, the gateway's side: no account, the gateway's key instead.
    if (path == "/v1/activation" && m == "POST") {
      json in = body(req);
      ActivationRequest r;
      r.publicKey = str(in, "public_key");
      r.hostname = optStr(in, "hostname");
      r.version = optStr(in, "software_version");
      if (in.contains("addresses")) {
        if (!in["addresses"].is_array()) throw invalid("'addresses' must be an array of strings");
        for (const auto& a : in["addresses"]) {
          if (!a.is_string()) throw invalid("'addresses' must be an array of strings");
          r.addresses.push_back(a.get<std::string>());
        }
      }
      auto t = gateways_.startActivation(r);
      if (!t) throw fromStatus(t.status());
      out = {
          {"request_id", t.value().requestId}, {"activation_key", t.value().key}, {"expires_at", t.value().expiresAt}};
      return HTTPResponse::HTTP_CREATED;
    }
    static const std::string kCertSuffix = "/certificate";
    if (path.rfind("/v1/activation/", 0) == 0 && m == "POST" && path.size() > 15 + kCertSuffix.size() &&
        path.compare(path.size() - kCertSuffix.size(), kCertSuffix.size(), kCertSuffix) == 0) {
      // 5. The activated gateway sends a CSR for its key and gets its certificate and
      // what it needs to connect.
      std::string requestId = path.substr(15, path.size() - 15 - kCertSuffix.size());
      json in = body(req);
      std::string csr = str(in, "csr");
      auto st = gateways_.activationState(requestId, signedTime(req), req.get("X-Ferry-Signature", ""));
      if (!st) throw fromStatus(st.status());
      if (!st.value().activated) {
        throw ApiError{HTTPResponse::HTTP_CONFLICT, "not_activated", "no customer has used the activation key yet"};
      }
      const GatewayInfo& g = st.value().gateway;
      auto cert = ctx_.ca.signGateway(csr, g.keyFingerprint, g.id, ctx_.gatewayCertificateDays);
      if (!cert) throw fromStatus(cert.status());
      if (Status s = gateways_.recordCertificate(g.id, cert.value().serial, cert.value().notAfter); !s) {
        throw fromStatus(s);
      }
      std::string store = ctx_.storeTemplate;
      for (size_t at; (at = store.find("{gateway}")) != std::string::npos;) store.replace(at, 9, g.id);
      out = {{"gateway", gatewayJson(g)},
             {"certificate", cert.value().certificatePem},
             {"certificate_not_after", cert.value().notAfter},
             {"ca_certificate", ctx_.ca.certificatePem()},
             {"control_endpoint", ctx_.controlEndpoint},
             {"store", store}};
      return HTTPResponse::HTTP_OK;
    }
    if (path.rfind("/v1/activation/", 0) == 0 && m == "GET") {
      auto st = gateways_.activationState(path.substr(15), signedTime(req), req.get("X-Ferry-Signature", ""));
      if (!st) throw fromStatus(st.status());
      out = {{"state", st.value().activated ? "activated" : "pending"}};
      if (st.value().activated) out["gateway"] = gatewayJson(st.value().gateway);
      return HTTPResponse::HTTP_OK;
    }
    // Everything else needs a bearer token.
    if (path.rfind("/v1/", 0) != 0) throw ApiError{HTTPResponse::HTTP_NOT_FOUND, "not_found", "no such path " + path};
    std::string account = authenticate(req);
    if (path == "/v1/me" && m == "GET") {
      auto email = accounts_.emailOf(account);
      if (!email) throw fromStatus(email.status());
      out = {{"account", {{"id", account}, {"email", email.value()}}}};
      return HTTPResponse::HTTP_OK;
    }
    if (path == "/v1/tokens" && m == "GET") {
      auto list = accounts_.listTokens(account);
      if (!list) throw fromStatus(list.status());
      out = {{"tokens", json::array()}};
      for (const auto& t : list.value()) out["tokens"].push_back(tokenJson(t));
      return HTTPResponse::HTTP_OK;
    }
    if (path == "/v1/tokens" && m == "POST") {
      json in = body(req);
      auto t = accounts_.createApiToken(account, str(in, "name"));
      if (!t) throw fromStatus(t.status());
      out = {{"token", t.value().secret}, {"info", tokenJson(t.value().info)}};
      return HTTPResponse::HTTP_CREATED;
    }
    if (path.rfind("/v1/tokens/", 0) == 0 && m == "DELETE") {
      if (Status s = accounts_.revokeToken(account, path.substr(11)); !s) throw fromStatus(s);
      return HTTPResponse::HTTP_NO_CONTENT;
    }
    if (path == "/v1/gateways/activate" && m == "POST") {
      json in = body(req);
      auto g = gateways_.claim(account, str(in, "activation_key"), str(in, "name"), optStr(in, "timezone"));
      if (!g) throw fromStatus(g.status());
      out = {{"gateway", gatewayJson(g.value())}};
      return HTTPResponse::HTTP_CREATED;
    }
    if (path == "/v1/gateways" && m == "GET") {
      auto list = gateways_.list(account);
      if (!list) throw fromStatus(list.status());
      out = {{"gateways", json::array()}};
      for (const auto& g : list.value()) out["gateways"].push_back(gatewayJson(g));
      return HTTPResponse::HTTP_OK;
    }
    if (path.rfind("/v1/gateways/", 0) == 0 && path.find('/', 13) == std::string::npos) {
      std::string id = path.substr(13);
      if (m == "GET") {
        auto g = gateways_.get(account, id);
        if (!g) throw fromStatus(g.status());
        out = {{"gateway", gatewayJson(g.value())}};
        return HTTPResponse::HTTP_OK;
      }
      if (m == "PATCH") {
        json in = body(req);
        if (Status s = gateways_.rename(account, id, str(in, "name")); !s) throw fromStatus(s);
        out = {{"gateway", gatewayJson(gateways_.get(account, id).value())}};
        return HTTPResponse::HTTP_OK;
      }
      if (m == "DELETE") {
        if (Status s = gateways_.remove(account, id); !s) throw fromStatus(s);
        return HTTPResponse::HTTP_NO_CONTENT;
      }
      throw ApiError{HTTPResponse::HTTP_METHOD_NOT_ALLOWED, "method_not_allowed", m + " is not allowed on " + path};
    }
    if (path == "/v1/gateways" || path == "/v1/gateways/activate") {
      throw ApiError{HTTPResponse::HTTP_METHOD_NOT_ALLOWED, "method_not_allowed", m + " is not allowed on " + path};
    }
    if (path == "/v1/tokens" || path == "/v1/me" || path.rfind("/v1/tokens/", 0) == 0) {
      throw ApiError{HTTPResponse::HTTP_METHOD_NOT_ALLOWED, "method_not_allowed", m + " is not allowed on " + path};
    }
    throw ApiError{HTTPResponse::HTTP_NOT_FOUND, "not_found", "no such path " + path};
  }

  std::string metrics() {
    MetricsText m;
    m.family("ferry_control_http_responses_total", "counter", "API answers by status class.");
    for (size_t c = 1; c <= 5; ++c) {
      m.sample("ferry_control_http_responses_total", static_cast<double>(counters_.byClass[c].load()),
               {{"class", std::to_string(c) + "xx"}});
    }
    m.family("ferry_control_start_time_seconds", "gauge", "When this server started (Unix time).");
    m.sample("ferry_control_start_time_seconds", static_cast<double>(counters_.startedAt));
    auto accounts = accounts_.count();
    auto counts = gateways_.counts();
    m.family("ferry_control_database_up", "gauge", "1 if the state database answered this scrape.");
    m.sample("ferry_control_database_up", accounts && counts ? 1 : 0);
    if (accounts && counts) {
      m.family("ferry_control_accounts", "gauge", "Customer accounts.");
      m.sample("ferry_control_accounts", static_cast<double>(accounts.value()));
      m.family("ferry_control_gateways", "gauge", "Activated gateways, all accounts.");
      m.sample("ferry_control_gateways", static_cast<double>(counts.value().first));
      m.family("ferry_control_activations_pending", "gauge", "Activation keys handed out, not claimed, not expired.");
      m.sample("ferry_control_activations_pending", static_cast<double>(counts.value().second));
    }
    return m.text();
  }

  std::string authenticate(HTTPServerRequest& req) {
    std::string h = req.get("Authorization", "");
    if (h.rfind("Bearer ", 0) != 0) {
      throw ApiError{HTTPResponse::HTTP_UNAUTHORIZED, "unauthenticated", "send Authorization: Bearer <token>"};
    }
    auto acc = accounts_.authenticate(h.substr(7));
    if (!acc) throw fromStatus(acc.status());
    return acc.value();
  }

  // The request body as a JSON object: bounded, well-formed, an object.
  static json body(HTTPServerRequest& req) {
    std::string text;
    char buf[4096];
    std::istream& in = req.stream();
    bool tooLarge = req.hasContentLength() && req.getContentLength64() > static_cast<Poco::Int64>(ApiFactory::kMaxBody);
    size_t drained = 0;
    while (in.read(buf, sizeof buf) || in.gcount() > 0) {
      size_t n = static_cast<size_t>(in.gcount());
      if (!tooLarge) text.append(buf, n);
      if (text.size() > ApiFactory::kMaxBody) tooLarge = true;
      // Read (and drop) a too-large body up to a point before answering, so that the
      // client, still sending, gets the 413 rather than a reset connection.
      if (tooLarge && (drained += n) > kDrainMax) break;
    }
    if (tooLarge) {
      throw ApiError{HTTPResponse::HTTP_REQUEST_ENTITY_TOO_LARGE, "too_large",
                     "request bodies are at most " + std::to_string(ApiFactory::kMaxBody) + " bytes"};
    }
    json j = json::parse(text, nullptr, false);
    if (j.is_discarded()) throw ApiError{HTTPResponse::HTTP_BAD_REQUEST, "malformed", "the body is not valid JSON"};
    if (!j.is_object()) throw ApiError{HTTPResponse::HTTP_BAD_REQUEST, "malformed", "the body must be a JSON object"};
    return j;
  }

  static int64_t signedTime(HTTPServerRequest& req) {
    try {
      return std::stoll(req.get("X-Ferry-Time", "0"));
    } catch (...) {
      throw invalid("X-Ferry-Time must be a Unix time");
    }
  }

  static ApiError invalid(const std::string& message) {
    return ApiError{HTTPResponse::HTTP_BAD_REQUEST, "invalid_argument", message};
  }

  // An optional string field: "" when absent.
  static std::string optStr(const json& in, const char* key) {
    auto it = in.find(key);
    if (it == in.end() || it->is_null()) return "";
    if (!it->is_string()) throw invalid(std::string("'") + key + "' must be a string");
    return it->get<std::string>();
  }

  static std::string str(const json& in, const char* key) {
    auto it = in.find(key);
    if (it == in.end() || !it->is_string()) {
      throw ApiError{HTTPResponse::HTTP_BAD_REQUEST, "invalid_argument",
                     std::string("'") + key + "' (a string) is required"};
    }
    return it->get<std::string>();
  }

  ApiContext& ctx_;
  ApiCounters& counters_;
  bool metricsText_ = false;  // the answer is Prometheus text in a JSON string
  Accounts& accounts_;
  Gateways& gateways_;
};

}  // namespace

Poco::Net::HTTPRequestHandler* ApiFactory::createRequestHandler(const Poco::Net::HTTPServerRequest&) {
  return new Handler(ctx_, counters_);
}

}  // namespace ferry::control
