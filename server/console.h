#pragma once
// The web console (server/console/: plain ES modules, no build step), built into the
// binary (embed_console.cmake) and served at /console/ on the API's port, beside the
// API it calls. Static files only; every page is index.html with a hash route.

#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerResponse.h>

#include <cstddef>
#include <string>
#include <vector>

namespace ferry::control {

struct ConsoleAsset {
  const char* path;  // relative to console/, e.g. "views/gateway.js"
  const unsigned char* data;
  size_t size;
};
const std::vector<ConsoleAsset>& consoleAssets();

// Answers /console and /console/… (true); false for any other path.
bool serveConsole(Poco::Net::HTTPServerRequest& req, Poco::Net::HTTPServerResponse& resp);

}  // namespace ferry::control
