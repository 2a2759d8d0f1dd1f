// ferry-control: the provider's control server (docs/control.md). This first part
// serves the customer REST API for accounts and tokens over the state database.
//
//   ferry-control --config=FILE      (keys: database, api.host, api.port, api.threads)

#include <Poco/Net/HTTPServer.h>
#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/Util/HelpFormatter.h>
#include <Poco/Util/Option.h>
#include <Poco/Util/OptionSet.h>
#include <Poco/Util/ServerApplication.h>

#include <iostream>

#include "accounts.h"
#include "api.h"
#include "db.h"
#include "gateways.h"

namespace {

using Poco::Util::Option;
using Poco::Util::OptionSet;

class ControlServer : public Poco::Util::ServerApplication {
 protected:
  void defineOptions(OptionSet& options) override {
    ServerApplication::defineOptions(options);
    options.addOption(Option("config", "c", "configuration file (properties or INI)")
                          .required(false)
                          .argument("FILE")
                          .callback(Poco::Util::OptionCallback<ControlServer>(this, &ControlServer::onConfig)));
    options.addOption(Option("help", "h", "show this help")
                          .callback(Poco::Util::OptionCallback<ControlServer>(this, &ControlServer::onHelp)));
  }

  void onConfig(const std::string&, const std::string& file) { loadConfiguration(file); }
  void onHelp(const std::string&, const std::string&) {
    Poco::Util::HelpFormatter f(options());
    f.setCommand(commandName());
    f.setUsage("--config=FILE");
    f.setHeader(
        "The Ferry provider control server. Configuration keys: database (sqlite:///path or "
        "postgresql://…), api.host (default 0.0.0.0), api.port (default 8443; 0 picks a free port), "
        "api.threads (default 16).");
    f.format(std::cout);
    helpShown_ = true;
    stopOptionsProcessing();
  }

  int main(const std::vector<std::string>&) override {
    if (helpShown_) return EXIT_OK;
    std::string dbUrl = config().getString("database", "");
    if (dbUrl.empty()) {
      std::cerr << "ferry-control: set 'database' in the configuration (sqlite:///path or postgresql://…)\n";
      return EXIT_CONFIG;
    }
    auto db = ferry::control::Db::open(dbUrl);
    if (!db) {
      std::cerr << "ferry-control: " << db.status().toString() << "\n";
      return EXIT_CONFIG;
    }
    ferry::control::Accounts accounts(*db.value());
    ferry::control::Gateways gateways(*db.value());

    std::string host = config().getString("api.host", "0.0.0.0");
    auto port = static_cast<Poco::UInt16>(config().getUInt("api.port", 8443));
    Poco::Net::ServerSocket socket;
    try {
      socket.bind(Poco::Net::SocketAddress(host, port), true);
      socket.listen(256);
    } catch (const Poco::Exception& e) {
      std::cerr << "ferry-control: cannot listen on " << host << ":" << port << ": " << e.displayText() << "\n";
      return EXIT_UNAVAILABLE;
    }
    auto* params = new Poco::Net::HTTPServerParams;
    params->setMaxThreads(config().getInt("api.threads", 16));
    params->setKeepAlive(true);
    Poco::Net::HTTPServer server(new ferry::control::ApiFactory(accounts, gateways), socket, params);
    server.start();
    std::cout << "ferry-control: API on " << socket.address().toString() << ", database schema version "
              << db.value()->schemaVersion() << std::endl;
    waitForTerminationRequest();
    server.stopAll(true);
    std::cout << "ferry-control: stopped" << std::endl;
    return EXIT_OK;
  }

 private:
  bool helpShown_ = false;
};

}  // namespace

POCO_SERVER_MAIN(ControlServer)
