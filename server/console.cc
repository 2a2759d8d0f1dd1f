#include "console.h"

#include <string_view>

namespace ferry::control {

namespace {

std::string contentType(std::string_view path) {
  auto ends = [&](std::string_view s) { return path.size() >= s.size() && path.substr(path.size() - s.size()) == s; };
  if (ends(".html")) return "text/html; charset=utf-8";
  if (ends(".js")) return "text/javascript; charset=utf-8";
  if (ends(".css")) return "text/css; charset=utf-8";
  if (ends(".svg")) return "image/svg+xml";
  if (ends(".png")) return "image/png";
  return "application/octet-stream";
}

void send(Poco::Net::HTTPServerResponse& resp, Poco::Net::HTTPResponse::HTTPStatus status, const std::string& type,
          const char* data, size_t size) {
  resp.setStatusAndReason(status);
  resp.setContentType(type);
  // Only this origin's scripts, styles and API; no framing (clickjacking), no inline code.
  resp.set("Content-Security-Policy",
           "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
           "frame-ancestors 'none'; base-uri 'none'; form-action 'self'");
  resp.set("X-Content-Type-Options", "nosniff");
  resp.set("Referrer-Policy", "no-referrer");
  resp.set("Cache-Control", "no-cache");
  resp.setContentLength(static_cast<std::streamsize>(size));
  resp.send().write(data, static_cast<std::streamsize>(size));
}

}  // namespace

bool serveConsole(Poco::Net::HTTPServerRequest& req, Poco::Net::HTTPServerResponse& resp) {
  std::string path = req.getURI().substr(0, req.getURI().find_first_of("?#"));
  if (path == "/console") {
    std::string query = req.getURI().substr(path.size());
    resp.setStatusAndReason(Poco::Net::HTTPResponse::HTTP_MOVED_PERMANENTLY);
    resp.set("Location", "/console/" + query);
    resp.setContentLength(0);
    resp.send();
    return true;
  }
  if (path.rfind("/console/", 0) != 0) return false;
  if (req.getMethod() != "GET" && req.getMethod() != "HEAD") {
    static const std::string kNo = "the console is read-only: GET\n";
    send(resp, Poco::Net::HTTPResponse::HTTP_METHOD_NOT_ALLOWED, "text/plain; charset=utf-8", kNo.data(), kNo.size());
    return true;
  }
  std::string rel = path.substr(9);
  if (rel.empty()) rel = "index.html";
  for (const auto& a : consoleAssets()) {
    if (rel == a.path) {
      send(resp, Poco::Net::HTTPResponse::HTTP_OK, contentType(rel), reinterpret_cast<const char*>(a.data), a.size);
      return true;
    }
  }
  static const std::string kMissing = "no such console file\n";
  send(resp, Poco::Net::HTTPResponse::HTTP_NOT_FOUND, "text/plain; charset=utf-8", kMissing.data(), kMissing.size());
  return true;
}

}  // namespace ferry::control
