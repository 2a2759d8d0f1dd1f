#include "page.h"

#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPRequestHandlerFactory.h>
#include <Poco/Net/HTTPServer.h>
#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/URI.h>

#include <sstream>

#include "ferry/metrics_text.h"
#include "ferry/strings.h"

namespace ferry::agent {

using json = nlohmann::json;

namespace {

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '&':
        out += "&amp;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string mib(const json& v) {
  return std::to_string(v.is_number() ? v.get<int64_t>() >> 20 : 0) + " MiB";
}

std::string metricsOf(const json& st) {
  MetricsText m;
  m.family("ferry_agent_activated", "gauge", "1 once the gateway is activated.");
  m.sample("ferry_agent_activated", st.value("stage", "") == "activated" ? 1 : 0);
  const json& ch = st.value("channel", json::object());
  m.family("ferry_agent_channel_up", "gauge", "1 while the control channel is connected.");
  m.sample("ferry_agent_channel_up", ch.value("connected", false) ? 1 : 0);
  m.family("ferry_agent_channel_connections_total", "counter", "Channel connections made.");
  m.sample("ferry_agent_channel_connections_total", static_cast<double>(ch.value("connections", int64_t{0})));
  m.family("ferry_agent_requests_total", "counter", "Requests received from the provider (repeats included).");
  m.sample("ferry_agent_requests_total", static_cast<double>(ch.value("requests", int64_t{0})));
  m.family("ferry_agent_request_repeats_total", "counter", "Requests received again and answered from the log.");
  m.sample("ferry_agent_request_repeats_total", static_cast<double>(ch.value("repeats", int64_t{0})));
  const json& engine = st.value("engine", json::object());
  m.family("ferry_agent_engine_up", "gauge", "1 if the volume engine answered.");
  m.sample("ferry_agent_engine_up", engine.value("ok", false) ? 1 : 0);
  if (engine.value("ok", false)) {
    for (const char* k : {"cache_size", "cached_bytes", "upload_buffer", "dirty_bytes"}) {
      std::string name = std::string("ferry_agent_engine_") + k;
      m.family(name, "gauge", std::string("The engine's ") + k + " (bytes).");
      m.sample(name, static_cast<double>(engine.value(k, int64_t{0})));
    }
  }
  return m.text();
}

class Handler : public Poco::Net::HTTPRequestHandler {
 public:
  Handler(const PageConfig& cfg, const std::function<json()>& status) : cfg_(cfg), status_(status) {}
  void handleRequest(Poco::Net::HTTPServerRequest& req, Poco::Net::HTTPServerResponse& resp) override {
    const std::string& uri = req.getURI();
    std::string path = uri.substr(0, uri.find('?'));
    auto query = parseQuery(uri.find('?') == std::string::npos ? "" : uri.substr(uri.find('?') + 1));
    json st = status_();
    resp.set("Cache-Control", "no-store");
    if (req.getMethod() != "GET" && req.getMethod() != "HEAD") {
      return send(resp, Poco::Net::HTTPResponse::HTTP_METHOD_NOT_ALLOWED, "text/plain", "GET only\n");
    }
    if (path == "/status.json") return send(resp, Poco::Net::HTTPResponse::HTTP_OK, "application/json", st.dump(2));
    if (path == "/metrics") return send(resp, Poco::Net::HTTPResponse::HTTP_OK, MetricsText::kContentType, metricsOf(st));
    if (path != "/") return send(resp, Poco::Net::HTTPResponse::HTTP_NOT_FOUND, "text/plain", "not found\n");
    auto region = query.find("activationRegion");
    std::string key = st.value("activation_key", "");
    if (region != query.end() && !key.empty() && st.value("stage", "") == "waiting_for_customer" &&
        !cfg_.consoleUrl.empty()) {
      // As AWS's gateways do: to the console, the key filled in.
      std::string target = cfg_.consoleUrl, k, r;
      Poco::URI::encode(key, "&=?#+", k);
      Poco::URI::encode(region->second, "&=?#+", r);
      target += (target.find('?') == std::string::npos ? "?" : "&") + std::string("activationKey=") + k +
                "&activationRegion=" + r;
      resp.setStatusAndReason(Poco::Net::HTTPResponse::HTTP_FOUND);
      resp.set("Location", target);
      resp.setContentLength(0);
      resp.send();
      return;
    }
    send(resp, Poco::Net::HTTPResponse::HTTP_OK, "text/html; charset=utf-8", renderPage(st));
  }

 private:
  static void send(Poco::Net::HTTPServerResponse& resp, Poco::Net::HTTPResponse::HTTPStatus status,
                   const std::string& type, const std::string& body) {
    resp.setStatusAndReason(status);
    resp.setContentType(type);
    resp.setContentLength(static_cast<std::streamsize>(body.size()));
    resp.send() << body;
  }
  const PageConfig& cfg_;
  const std::function<json()>& status_;
};

class Factory : public Poco::Net::HTTPRequestHandlerFactory {
 public:
  Factory(const PageConfig& cfg, const std::function<json()>& status) : cfg_(cfg), status_(status) {}
  Poco::Net::HTTPRequestHandler* createRequestHandler(const Poco::Net::HTTPServerRequest&) override {
    return new Handler(cfg_, status_);
  }

 private:
  const PageConfig& cfg_;
  const std::function<json()>& status_;
};

}  // namespace

std::string renderPage(const json& st) {
  std::ostringstream h;
  std::string stage = st.value("stage", "");
  h << "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
       "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
       "<title>Ferry gateway</title><style>body{font-family:sans-serif;max-width:40em;margin:2em auto;padding:0 1em}"
       ".key{font:bold 2em monospace;letter-spacing:.1em}th{text-align:left;padding-right:1em}</style></head><body>"
       "<h1>Ferry gateway</h1>";
  if (stage != "activated" && stage != "claimed") {
    std::string key = st.value("activation_key", "");
    h << "<p>This gateway is not activated yet.</p>";
    if (!key.empty()) {
      h << "<p>Activation key:</p><p class=\"key\" id=\"activation-key\">" << escape(key) << "</p>"
        << "<p>Enter it in the Ferry console (or <code>ferryctl gateway activate KEY --name NAME</code>) within 30 "
           "minutes.</p>";
    } else {
      h << "<p>Asking the provider for an activation key…";
      if (!st.value("last_error", "").empty()) h << " (" << escape(st.value("last_error", "")) << ")";
      h << "</p>";
    }
  } else {
    const json& g = st.value("gateway", json::object());
    const json& ch = st.value("channel", json::object());
    h << "<table><tr><th>Gateway</th><td id=\"gateway-name\">" << escape(g.value("name", "")) << " ("
      << escape(g.value("id", "")) << ")</td></tr><tr><th>Provider</th><td>" << escape(st.value("provider", ""))
      << "</td></tr><tr><th>Channel</th><td id=\"channel\">"
      << (ch.value("connected", false) ? "up" : "down" + (ch.value("last_error", "").empty()
                                                                ? std::string()
                                                                : " (" + escape(ch.value("last_error", "")) + ")"))
      << "</td></tr>";
    const json& e = st.value("engine", json::object());
    if (e.value("ok", false)) {
      h << "<tr><th>Cache</th><td>" << mib(e["cached_bytes"]) << " of " << mib(e["cache_size"])
        << "</td></tr><tr><th>Upload buffer</th><td>" << mib(e["dirty_bytes"]) << " of " << mib(e["upload_buffer"])
        << "</td></tr></table><h2>Volumes</h2><table><tr><th>Name</th><th>Cached</th><th>Dirty</th></tr>";
      for (const auto& v : e.value("volumes", json::array())) {
        h << "<tr><td>" << escape(v.value("name", "")) << "</td><td>" << mib(v["cached_bytes"]) << "</td><td>"
          << mib(v["dirty_bytes"]) << "</td></tr>";
      }
      h << "</table>";
    } else {
      h << "<tr><th>Volume engine</th><td>not running</td></tr></table>";
    }
  }
  h << "</body></html>\n";
  return h.str();
}

Page::Page(PageConfig config, std::function<json()> status) : cfg_(std::move(config)), status_(std::move(status)) {}

Page::~Page() {
  stop();
}

Status Page::start() {
  try {
    Poco::Net::ServerSocket socket;
    socket.bind(Poco::Net::SocketAddress(cfg_.host, static_cast<Poco::UInt16>(cfg_.port)), true);
    socket.listen(64);
    port_ = socket.address().port();
    auto* params = new Poco::Net::HTTPServerParams;
    params->setMaxThreads(4);
    server_ = std::make_unique<Poco::Net::HTTPServer>(new Factory(cfg_, status_), socket, params);
    server_->start();
  } catch (const Poco::Exception& e) {
    return Status::unavailable("local page on " + cfg_.host + ":" + std::to_string(cfg_.port) + ": " +
                               e.displayText());
  }
  return Status::ok();
}

void Page::stop() {
  if (server_) server_->stopAll(true);
  server_.reset();
}

int Page::port() const {
  return port_;
}

}  // namespace ferry::agent
