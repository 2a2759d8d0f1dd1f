#pragma once
// The gateway's local page (DESIGN.md "Control", step 2): plain HTTP on the customer
// network (port 80 in the image). While unactivated it shows the activation key, and
// GET /?activationRegion=R answers 302 to the provider's console with activationKey=…
// (as AWS's gateways do); once activated, the gateway's name, the provider, whether
// the channel is up, its volumes, cache and upload-buffer use.
//   GET /             the page (HTML)
//   GET /status.json  the same facts as JSON
//   GET /metrics      Prometheus text

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "ferry/status.h"

namespace Poco::Net {
class HTTPServer;
}

namespace ferry::agent {

struct PageConfig {
  std::string host = "0.0.0.0";
  int port = 8081;          // 0 = a free one
  std::string consoleUrl;   // where ?activationRegion= sends the customer
};

class Page {
 public:
  // status(): {"stage", "activation_key", "gateway":{id,name}, "provider", "channel":{…},
  // "engine":{…}} as the agent knows it now.
  Page(PageConfig config, std::function<nlohmann::json()> status);
  ~Page();
  Status start();
  void stop();
  int port() const;

 private:
  PageConfig cfg_;
  std::function<nlohmann::json()> status_;
  std::unique_ptr<Poco::Net::HTTPServer> server_;
  int port_ = 0;
};

// The page's HTML for a status (escaped).
std::string renderPage(const nlohmann::json& status);

}  // namespace ferry::agent
