#include "http_endpoint.h"

#include <Poco/Exception.h>
#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPRequestHandlerFactory.h>
#include <Poco/Net/HTTPServer.h>
#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <Poco/Net/ServerSocket.h>

namespace ferry::balancer {

namespace {

class Handler : public Poco::Net::HTTPRequestHandler {
 public:
  explicit Handler(const HttpRoutes& routes) : routes_(routes) {}
  void handleRequest(Poco::Net::HTTPServerRequest& req, Poco::Net::HTTPServerResponse& resp) override {
    std::string path = req.getURI().substr(0, req.getURI().find('?'));
    auto it = routes_.find(path);
    HttpAnswer answer{"text/plain", "not found\n"};
    auto status = Poco::Net::HTTPResponse::HTTP_NOT_FOUND;
    if (req.getMethod() != "GET") {
      answer.body = "GET only\n";
      status = Poco::Net::HTTPResponse::HTTP_METHOD_NOT_ALLOWED;
    } else if (it != routes_.end()) {
      answer = it->second();
      status = Poco::Net::HTTPResponse::HTTP_OK;
    }
    resp.setStatusAndReason(status);
    resp.setContentType(answer.contentType);
    resp.set("Cache-Control", "no-store");
    resp.setContentLength(static_cast<std::streamsize>(answer.body.size()));
    resp.send() << answer.body;
  }

 private:
  const HttpRoutes& routes_;
};

class Factory : public Poco::Net::HTTPRequestHandlerFactory {
 public:
  explicit Factory(const HttpRoutes& routes) : routes_(routes) {}
  Poco::Net::HTTPRequestHandler* createRequestHandler(const Poco::Net::HTTPServerRequest&) override {
    return new Handler(routes_);
  }

 private:
  const HttpRoutes& routes_;
};

}  // namespace

HttpEndpoint::HttpEndpoint(std::string listen, HttpRoutes routes) : listen_(std::move(listen)), routes_(std::move(routes)) {}

HttpEndpoint::~HttpEndpoint() { stop(); }

Status HttpEndpoint::start() {
  size_t colon = listen_.rfind(':');
  std::string portText = colon == std::string::npos ? "" : listen_.substr(colon + 1);
  bool digits = !portText.empty() && portText.size() <= 5 &&
                portText.find_first_not_of("0123456789") == std::string::npos;
  if (colon == std::string::npos || colon == 0 || !digits || std::stoi(portText) > 65535)
    return Status::invalid("listen address must be HOST:PORT (port 0-65535), not \"" + listen_ + "\"");
  try {
    Poco::Net::SocketAddress addr(listen_.substr(0, colon), static_cast<Poco::UInt16>(std::stoi(portText)));
    Poco::Net::ServerSocket socket(addr, 64);
    port_ = socket.address().port();
    auto* params = new Poco::Net::HTTPServerParams;
    params->setMaxThreads(2);
    params->setKeepAlive(false);
    server_ = std::make_unique<Poco::Net::HTTPServer>(new Factory(routes_), socket, params);
    server_->start();
  } catch (const std::exception& e) {
    return Status::unavailable("cannot listen on " + listen_ + ": " + e.what());
  }
  return Status::ok();
}

void HttpEndpoint::stop() {
  if (server_) {
    server_->stopAll(true);
    server_.reset();
  }
}

}  // namespace ferry::balancer
