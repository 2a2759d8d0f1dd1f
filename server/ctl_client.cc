#include "ctl_client.h"

#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/HTTPSClientSession.h>
#include <Poco/Net/NetException.h>
#include <Poco/Net/SSLException.h>
#include <Poco/URI.h>

#include <memory>
#include <sstream>

namespace ferry::control {

Result<ApiClient> ApiClient::make(const std::string& endpoint, const std::string& caFile, const std::string& certFile,
                                  const std::string& keyFile) {
  ApiClient c;
  try {
    Poco::URI uri(endpoint);
    if (uri.getScheme() != "https" && uri.getScheme() != "http") {
      return Status::invalid("endpoint " + endpoint + ": want https://host:port");
    }
    c.tls_ = uri.getScheme() == "https";
    c.host_ = uri.getHost();
    c.port_ = uri.getPort();
    if (c.host_.empty()) return Status::invalid("endpoint " + endpoint + ": no host");
  } catch (const Poco::Exception& e) {
    return Status::invalid("endpoint " + endpoint + ": " + e.displayText());
  }
  if (c.tls_) {
    try {
      c.context_ = new Poco::Net::Context(Poco::Net::Context::TLS_CLIENT_USE, keyFile, certFile, caFile,
                                          Poco::Net::Context::VERIFY_STRICT, 9, caFile.empty());
    } catch (const Poco::Exception& e) {
      return Status::invalid("CA file " + caFile + ": " + e.displayText());
    }
  }
  return c;
}

Result<nlohmann::json> ApiClient::call(const std::string& method, const std::string& path, const nlohmann::json& body,
                                       const std::vector<std::pair<std::string, std::string>>& headers) {
  try {
    std::unique_ptr<Poco::Net::HTTPClientSession> s;
    if (tls_)
      s = std::make_unique<Poco::Net::HTTPSClientSession>(host_, port_, context_);
    else
      s = std::make_unique<Poco::Net::HTTPClientSession>(host_, port_);
    s->setTimeout(Poco::Timespan(timeoutSeconds_, 0));
    Poco::Net::HTTPRequest req(method, path, Poco::Net::HTTPMessage::HTTP_1_1);
    if (!token_.empty()) req.set("Authorization", "Bearer " + token_);
    for (const auto& [k, v] : headers) req.set(k, v);
    std::string text = body.is_null() ? "" : body.dump();
    if (!body.is_null()) {
      req.setContentType("application/json");
      req.setContentLength(static_cast<std::streamsize>(text.size()));
    }
    s->sendRequest(req) << text;
    Poco::Net::HTTPResponse resp;
    std::istream& in = s->receiveResponse(resp);
    std::stringstream answer;
    answer << in.rdbuf();
    auto j = nlohmann::json::parse(answer.str(), nullptr, false);
    int status = resp.getStatus();
    if (status < 400) return j.is_discarded() ? nlohmann::json() : j;
    std::string message = j.is_object() && j.contains("error") ? j["error"].value("message", "") : answer.str();
    if (message.empty()) message = resp.getReason();
    switch (status) {
      case 400:
        return Status::invalid(message);
      case 401:
      case 403:
        return Status::denied(message);
      case 404:
        return Status::notFound(message);
      case 409:
        return Status::busy(message);
      case 429:
        return Status::rateLimited(message);
      default:
        return Status::unavailable("HTTP " + std::to_string(status) + ": " + message);
    }
  } catch (const Poco::Net::SSLException& e) {
    return Status::unavailable("TLS with " + host_ + ":" + std::to_string(port_) + " failed: " + e.displayText() +
                               " (is --ca the provider's CA?)");
  } catch (const Poco::Exception& e) {
    return Status::unavailable("cannot reach " + host_ + ":" + std::to_string(port_) + ": " + e.displayText());
  }
}

}  // namespace ferry::control
