#pragma once
// ferry-balancer's small HTTP endpoint: GET /metrics (Prometheus text) and GET
// /status.json, each answered by a function the daemon gives.

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "ferry/status.h"

namespace Poco::Net {
class HTTPServer;
}

namespace ferry::balancer {

struct HttpAnswer {
  std::string contentType;
  std::string body;
};
using HttpRoutes = std::map<std::string, std::function<HttpAnswer()>>;

class HttpEndpoint {
 public:
  HttpEndpoint(std::string listen, HttpRoutes routes);  // listen: "HOST:PORT" (port 0: any free)
  ~HttpEndpoint();
  Status start();
  void stop();
  int port() const { return port_; }

 private:
  std::string listen_;
  HttpRoutes routes_;
  std::unique_ptr<Poco::Net::HTTPServer> server_;
  int port_ = 0;
};

}  // namespace ferry::balancer
