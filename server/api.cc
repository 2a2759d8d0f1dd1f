#include "api.h"

#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerResponse.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "api_gateway.h"
#include "api_util.h"
#include "console.h"
#include "ferry/metrics_text.h"

namespace ferry::control {
namespace {

using json = nlohmann::json;
using Poco::Net::HTTPResponse;
using Poco::Net::HTTPServerRequest;
using Poco::Net::HTTPServerResponse;

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
          {"online", g.online},
          {"server", g.server}};
}

class Handler : public Poco::Net::HTTPRequestHandler {
 public:
  Handler(ApiContext& ctx, ApiCounters& counters)
      : ctx_(ctx), counters_(counters), accounts_(ctx.accounts), gateways_(ctx.gateways) {}

  void handleRequest(HTTPServerRequest& req, HTTPServerResponse& resp) override {
    if (serveConsole(req, resp)) {
      ++counters_.byClass[std::min<size_t>(static_cast<size_t>(resp.getStatus()) / 100, 5)];
      return;
    }
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
  // The channel endpoint to give a gateway: its VIP's, when it came through one that
  // names one (the port it arrived on says which), else the server's default.
  std::string controlEndpointFor(HTTPServerRequest& req) const {
    const Vip* vip = vipForPort(ctx_.vips, req.serverAddress().port());
    return vip && !vip->controlEndpoint.empty() ? vip->controlEndpoint : ctx_.controlEndpoint;
  }

  HTTPResponse::HTTPStatus route(HTTPServerRequest& req, json& out) {
    const std::string& m = req.getMethod();
    std::string path = req.getURI().substr(0, req.getURI().find('?'));
    if (path == "/healthz") {
      out = {{"ok", true}, {"server", ctx_.serverId}};
      if (const Vip* vip = vipForPort(ctx_.vips, req.serverAddress().port())) out["vip"] = vip->address;
      return HTTPResponse::HTTP_OK;
    }
    if (path == "/metrics" && m == "GET") {
      out = metrics();
      metricsText_ = true;
      return HTTPResponse::HTTP_OK;
    }
    if (path == "/v1/signup" && m == "POST") {
      json in = readBody(req);
      auto id = orThrow(accounts_.signUp(str(in, "email"), str(in, "password")));
      out = {{"account", {{"id", id}, {"email", in["email"]}}}};
      return HTTPResponse::HTTP_CREATED;
    }
    if (path == "/v1/login" && m == "POST") {
      json in = readBody(req);
      auto t = orThrow(accounts_.logIn(str(in, "email"), str(in, "password")));
      out = {{"token", t.secret}, {"expires_at", t.info.expiresAt}};
      return HTTPResponse::HTTP_OK;
    }
    // Activation, the gateway's side: no account, the gateway's key instead.
    if (path == "/v1/activation" && m == "POST") {
      json in = readBody(req);
      ActivationRequest r;
      r.publicKey = str(in, "public_key");
      r.hostname = optStr(in, "hostname");
      r.version = optStr(in, "software_version");
      if (in.contains("addresses")) {
        if (!in["addresses"].is_array()) throw invalidArgument("'addresses' must be an array of strings");
        for (const auto& a : in["addresses"]) {
          if (!a.is_string()) throw invalidArgument("'addresses' must be an array of strings");
          r.addresses.push_back(a.get<std::string>());
        }
      }
      auto t = orThrow(gateways_.startActivation(r));
      out = {
          {"request_id", t.requestId}, {"activation_key", t.key}, {"expires_at", t.expiresAt}};
      return HTTPResponse::HTTP_CREATED;
    }
    static const std::string kCertSuffix = "/certificate";
    if (path.rfind("/v1/activation/", 0) == 0 && m == "POST" && path.size() > 15 + kCertSuffix.size() &&
        path.compare(path.size() - kCertSuffix.size(), kCertSuffix.size(), kCertSuffix) == 0) {
      // 5. The activated gateway sends a CSR for its key and gets its certificate and
      // what it needs to connect.
      std::string requestId = path.substr(15, path.size() - 15 - kCertSuffix.size());
      json in = readBody(req);
      std::string csr = str(in, "csr");
      auto st = orThrow(gateways_.activationState(requestId, signedTime(req), req.get("X-Ferry-Signature", "")));
      if (!st.activated) {
        throw ApiError{HTTPResponse::HTTP_CONFLICT, "not_activated", "no customer has used the activation key yet"};
      }
      const GatewayInfo& g = st.gateway;
      auto cert = orThrow(ctx_.ca.signGateway(csr, g.keyFingerprint, g.id, ctx_.gatewayCertificateDays));
      orThrow(gateways_.recordCertificate(g.id, cert.serial, cert.notAfter));
      std::string store = gatewayStoreUrl(ctx_.storeTemplate, g.id);
      out = {{"gateway", gatewayJson(g)},
             {"certificate", cert.certificatePem},
             {"certificate_not_after", cert.notAfter},
             {"ca_certificate", ctx_.ca.certificatePem()},
             {"control_endpoint", controlEndpointFor(req)},
             {"store", store}};
      return HTTPResponse::HTTP_OK;
    }
    if (path.rfind("/v1/activation/", 0) == 0 && m == "GET") {
      auto st = orThrow(gateways_.activationState(path.substr(15), signedTime(req), req.get("X-Ferry-Signature", "")));
      out = {{"state", st.activated ? "activated" : "pending"}};
      if (st.activated) out["gateway"] = gatewayJson(st.gateway);
      return HTTPResponse::HTTP_OK;
    }
    // Everything else needs a bearer token.
    if (path.rfind("/v1/", 0) != 0) throw ApiError{HTTPResponse::HTTP_NOT_FOUND, "not_found", "no such path " + path};
    std::string account = authenticate(req);
    if (path == "/v1/me" && m == "GET") {
      auto email = orThrow(accounts_.emailOf(account));
      out = {{"account", {{"id", account}, {"email", email}}}};
      return HTTPResponse::HTTP_OK;
    }
    if (path == "/v1/logout" && m == "POST") {
      orThrow(accounts_.revokeSecret(req.get("Authorization").substr(7)));
      return HTTPResponse::HTTP_NO_CONTENT;
    }
    if (path == "/v1/tokens" && m == "GET") {
      auto list = orThrow(accounts_.listTokens(account));
      out = {{"tokens", json::array()}};
      for (const auto& t : list) out["tokens"].push_back(tokenJson(t));
      return HTTPResponse::HTTP_OK;
    }
    if (path == "/v1/tokens" && m == "POST") {
      json in = readBody(req);
      auto t = orThrow(accounts_.createApiToken(account, str(in, "name")));
      out = {{"token", t.secret}, {"info", tokenJson(t.info)}};
      return HTTPResponse::HTTP_CREATED;
    }
    if (path.rfind("/v1/tokens/", 0) == 0 && m == "DELETE") {
      orThrow(accounts_.revokeToken(account, path.substr(11)));
      return HTTPResponse::HTTP_NO_CONTENT;
    }
    if (path == "/v1/gateways/activate" && m == "POST") {
      json in = readBody(req);
      auto g = orThrow(gateways_.claim(account, str(in, "activation_key"), str(in, "name"), optStr(in, "timezone")));
      out = {{"gateway", gatewayJson(g)}, {"reactivated", g.reactivated}};
      return g.reactivated ? HTTPResponse::HTTP_OK : HTTPResponse::HTTP_CREATED;
    }
    if (path == "/v1/gateways" && m == "GET") {
      auto list = orThrow(gateways_.list(account));
      out = {{"gateways", json::array()}};
      for (const auto& g : list) out["gateways"].push_back(gatewayJson(g));
      return HTTPResponse::HTTP_OK;
    }
    if (HTTPResponse::HTTPStatus status; routeGatewayResources(ctx_, account, req, path, out, status)) return status;
    if (path.rfind("/v1/gateways/", 0) == 0 && path.find('/', 13) == std::string::npos) {
      std::string id = path.substr(13);
      if (m == "GET") {
        auto g = orThrow(gateways_.get(account, id));
        out = {{"gateway", gatewayJson(g)}};
        return HTTPResponse::HTTP_OK;
      }
      if (m == "PATCH") {
        json in = readBody(req);
        orThrow(gateways_.rename(account, id, str(in, "name")));
        out = {{"gateway", gatewayJson(orThrow(gateways_.get(account, id)))}};
        return HTTPResponse::HTTP_OK;
      }
      if (m == "DELETE") {
        orThrow(gateways_.remove(account, id));
        return HTTPResponse::HTTP_NO_CONTENT;
      }
      throw ApiError{HTTPResponse::HTTP_METHOD_NOT_ALLOWED, "method_not_allowed", m + " is not allowed on " + path};
    }
    if (path == "/v1/gateways" || path == "/v1/gateways/activate") {
      throw ApiError{HTTPResponse::HTTP_METHOD_NOT_ALLOWED, "method_not_allowed", m + " is not allowed on " + path};
    }
    if (path == "/v1/tokens" || path == "/v1/me" || path == "/v1/logout" || path.rfind("/v1/tokens/", 0) == 0) {
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
    if (auto byState = ctx_.outbox.countByState(); byState) {
      m.family("ferry_control_requests", "gauge", "Requests in the outbox by state, all gateways.");
      for (const auto& [state, n] : byState.value()) {
        m.sample("ferry_control_requests", static_cast<double>(n), {{"state", state}});
      }
    }
    if (ctx_.channel) {
      ChannelCounters c = ctx_.channel->counters();
      m.family("ferry_control_channels", "gauge", "Gateway channels this server holds (connections).");
      m.sample("ferry_control_channels", static_cast<double>(ctx_.channel->connections()));
      m.family("ferry_control_channel_frames_total", "counter", "Channel frames by kind, this server.");
      m.sample("ferry_control_channel_frames_total", static_cast<double>(c.sent), {{"kind", "request"}});
      m.sample("ferry_control_channel_frames_total", static_cast<double>(c.answers), {{"kind", "answer"}});
      m.sample("ferry_control_channel_frames_total", static_cast<double>(c.repeats), {{"kind", "repeated_answer"}});
      m.sample("ferry_control_channel_frames_total", static_cast<double>(c.badFrames), {{"kind", "bad"}});
      m.sample("ferry_control_channel_frames_total", static_cast<double>(c.reports), {{"kind", "metrics_report"}});
      m.family("ferry_control_channel_db_backlog", "gauge",
               "Channel work (registrations, fetches, answers) waiting for the database pool.");
      m.sample("ferry_control_channel_db_backlog", static_cast<double>(c.dbBacklog));
      m.family("ferry_control_peer_calls_total", "counter", "Calls served on the internal (peer) endpoint.");
      m.sample("ferry_control_peer_calls_total", static_cast<double>(c.peerCalls));
    }
    return m.text();
  }

  std::string authenticate(HTTPServerRequest& req) {
    std::string h = req.get("Authorization", "");
    if (h.rfind("Bearer ", 0) != 0) {
      throw ApiError{HTTPResponse::HTTP_UNAUTHORIZED, "unauthenticated", "send Authorization: Bearer <token>"};
    }
    auto acc = orThrow(accounts_.authenticate(h.substr(7)));
    return acc;
  }

  static int64_t signedTime(HTTPServerRequest& req) {
    try {
      return std::stoll(req.get("X-Ferry-Time", "0"));
    } catch (...) {
      throw invalidArgument("X-Ferry-Time must be a Unix time");
    }
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
