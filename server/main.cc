// ferry-control: the provider's control server (docs/control.md): the customer REST
// API and the gateways' activation over TLS, with the provider CA made on first start.
//
//   ferry-control --config=FILE      (keys: docs/control.md, "Configuration")

#include <Poco/Environment.h>
#include <Poco/Net/Context.h>
#include <Poco/Net/HTTPServer.h>
#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/RejectCertificateHandler.h>
#include <Poco/Net/SSLManager.h>
#include <Poco/Net/SecureServerSocket.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/StringTokenizer.h>
#include <Poco/Util/HelpFormatter.h>
#include <Poco/Util/Option.h>
#include <Poco/Util/OptionSet.h>
#include <Poco/Util/ServerApplication.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <ctime>
#include <mutex>
#include <thread>
#include <cstring>
#include <iostream>
#include <memory>

#include "accounts.h"
#include "api.h"
#include "bandwidth.h"
#include "ca.h"
#include "channel_server.h"
#include "db.h"
#include "gateway_metrics.h"
#include "gateways.h"
#include "inventory.h"
#include "outbox.h"
#include "renewal.h"
#include "router.h"
#include "snapshot_schedule.h"

namespace {

using ferry::Status;
using Poco::Util::Option;

Status writeSecret(const std::string& path, const std::string& data) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return ferry::errnoStatus("create " + path, errno);
  bool ok = ::write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size());
  ::close(fd);
  return ok ? Status::ok() : ferry::errnoStatus("write " + path, errno);
}
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
        "The Ferry provider control server. Configuration keys (docs/control.md): database, state.dir, "
        "api.host, api.port, api.tls, api.threads, tls.names, tls.ca_dir, gateway.control_endpoint, "
        "gateway.store, gateway.certificate_days.");
    f.format(std::cout);
    helpShown_ = true;
    stopOptionsProcessing();
  }

  int main(const std::vector<std::string>&) override {
    if (helpShown_) return EXIT_OK;
    std::string stateDir = config().getString("state.dir", "/var/lib/ferry-control");
    if (::mkdir(stateDir.c_str(), 0700) != 0 && errno != EEXIST) {
      std::cerr << "ferry-control: cannot create state.dir " << stateDir << ": " << std::strerror(errno) << "\n";
      return EXIT_CANTCREAT;
    }
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
    ferry::control::Outbox outbox(*db.value());
    ferry::control::Inventory inventory(*db.value(), outbox);
    inventory.setStoreTemplate(config().getString("gateway.store", ""));
    ferry::control::Bandwidth bandwidth(*db.value(), outbox);
    ferry::control::SnapshotSchedules schedules(*db.value(), inventory, config().getInt("snapshots.hour_seconds", 3600));
    ferry::control::GatewayMetrics metrics(*db.value());
    ferry::control::IscsiAccess iscsi(*db.value(), outbox, inventory);

    ferry::control::Routing routing;
    if (!ferry::control::parseRouting(config().getString("routing", "lookup"), &routing)) {
      std::cerr << "ferry-control: routing must be lookup or broadcast\n";
      return EXIT_CONFIG;
    }
    int heartbeatSeconds = config().getInt("server.heartbeat_seconds", 5);
    gateways.setServerStaleSeconds(config().getInt("server.stale_seconds", 3 * heartbeatSeconds));

    auto ca = ferry::control::CertificateAuthority::loadOrCreate(config().getString("tls.ca_dir", stateDir + "/ca"));
    if (!ca) {
      std::cerr << "ferry-control: " << ca.status().toString() << "\n";
      return EXIT_CONFIG;
    }
    std::vector<std::string> names;
    for (const auto& n :
         Poco::StringTokenizer(config().getString("tls.names", "localhost,127.0.0.1"), ",",
                               Poco::StringTokenizer::TOK_TRIM | Poco::StringTokenizer::TOK_IGNORE_EMPTY)) {
      names.push_back(n);
    }
    auto vips = ferry::control::readVips(config());
    if (!vips) {
      std::cerr << "ferry-control: " << vips.status().toString() << "\n";
      return EXIT_CONFIG;
    }
    // Clients that came through a VIP check the certificate against the VIP's name.
    for (const auto& v : vips.value()) {
      std::string vipHost = v.address.substr(0, v.address.rfind(':'));
      if (std::find(names.begin(), names.end(), vipHost) == names.end()) names.push_back(vipHost);
    }
    std::string host = config().getString("api.host", "0.0.0.0");
    auto port = static_cast<Poco::UInt16>(config().getUInt("api.port", 8443));
    bool tls = config().getBool("api.tls", true);

    Poco::Net::Context::Ptr serverTls;  // one, for every listener
    if (tls) {
      // A fresh server certificate from the provider CA at every start: names follow
      // the configuration, and it never expires under a running server for long.
      auto cert = ca.value()->issueServer(names, 90);
      if (!cert) {
        std::cerr << "ferry-control: " << cert.status().toString() << "\n";
        return EXIT_CONFIG;
      }
      std::string tlsDir = stateDir + "/tls";
      ::mkdir(tlsDir.c_str(), 0700);
      if (Status s = writeSecret(tlsDir + "/server.key", cert.value().privateKeyPem);
          !s || !(s = writeSecret(tlsDir + "/server.crt", cert.value().certificatePem))) {
        std::cerr << "ferry-control: " << s.toString() << "\n";
        return EXIT_CANTCREAT;
      }
      try {
        Poco::Net::initializeSSL();
        serverTls = new Poco::Net::Context(Poco::Net::Context::TLS_SERVER_USE, tlsDir + "/server.key",
                                           tlsDir + "/server.crt", "", Poco::Net::Context::VERIFY_NONE, 9, false,
                                           "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL");
        serverTls->requireMinimumProtocol(Poco::Net::Context::PROTO_TLSV1_2);
      } catch (const Poco::Exception& e) {
        std::cerr << "ferry-control: cannot listen on " << host << ":" << port << ": " << e.displayText() << "\n";
        return EXIT_UNAVAILABLE;
      }
    }
    // The API listens on its own port and on each VIP's host port: the same API on each.
    struct Listener {
      Poco::UInt16 port;
      std::string what;  // for an error: "" or " for VIP NAME"
    };
    std::vector<Listener> listeners = {{port, ""}};
    for (const auto& v : vips.value()) listeners.push_back({v.port, " for VIP " + v.name});
    std::vector<std::unique_ptr<Poco::Net::ServerSocket>> sockets;  // in the order of listeners
    for (const Listener& l : listeners) {
      try {
        std::unique_ptr<Poco::Net::ServerSocket> listening;
        if (tls) {
          listening = std::make_unique<Poco::Net::SecureServerSocket>(serverTls);
        } else {
          listening = std::make_unique<Poco::Net::ServerSocket>();
        }
        listening->bind(Poco::Net::SocketAddress(host, l.port), true);
        listening->listen(256);
        sockets.push_back(std::move(listening));
      } catch (const Poco::Exception& e) {
        std::cerr << "ferry-control: cannot listen on " << host << ":" << l.port << l.what << ": " << e.displayText()
                  << "\n";
        return EXIT_UNAVAILABLE;
      }
    }
    Poco::Net::ServerSocket& socket = *sockets.front();
    Poco::UInt16 boundPort = socket.address().port();
    // What finishing a request changes: volumes and snapshots, or a renewed certificate.
    ferry::control::Renewal renewal(*db.value(), outbox, *ca.value(), config().getInt("gateway.certificate_days", 365));
    outbox.setSettler([&renewal](Poco::Data::Session& ses, const ferry::control::RequestInfo& r) {
      if (r.op.rfind("certificate.", 0) == 0) return renewal.settle(ses, r);
      return ferry::control::Inventory::settle(ses, r);
    });
    std::string serverId =
        config().getString("server.id", Poco::Environment::nodeName() + ":" + std::to_string(boundPort));
    std::unique_ptr<ferry::control::ChannelServer> channel;
    if (tls) {
      ferry::control::ChannelOptions co;
      co.host = config().getString("channel.host", host);
      co.port = static_cast<uint16_t>(config().getUInt("channel.port", 8445));
      co.certFile = stateDir + "/tls/server.crt";
      co.keyFile = stateDir + "/tls/server.key";
      co.caFile = config().getString("tls.ca_dir", stateDir + "/ca") + "/ca.crt";
      co.pingSeconds = config().getInt("channel.ping_seconds", 15);
      co.deadSeconds = config().getInt("channel.dead_seconds", 45);
      co.threads = config().getInt("channel.threads", 1);
      co.heartbeatSeconds = heartbeatSeconds;
      co.serverId = serverId;
      co.internalHost = config().getString("internal.host", host);
      co.internalPort = static_cast<uint16_t>(config().getUInt("internal.port", 8444));
      co.internalUrl = config().getString("internal.url", "");
      co.advertiseHost = names.front();
      co.renewWithinSeconds = int64_t{86400} * config().getInt("gateway.certificate_renew_days", 30);
      co.metricsRetentionSeconds = int64_t{86400} * config().getInt("metrics.retention_days", 15);
      co.reportMinSeconds = config().getInt("metrics.report_min_seconds", 10);
      channel = std::make_unique<ferry::control::ChannelServer>(co, gateways, outbox, &renewal, &metrics, &iscsi);
      if (Status s = channel->start(); !s) {
        std::cerr << "ferry-control: " << s.toString() << "\n";
        return EXIT_UNAVAILABLE;
      }
    }
    std::string channelUrl =
        channel ? "wss://" + names.front() + ":" + std::to_string(channel->port()) + "/v1/channel" : "";
    std::string caFile = config().getString("tls.ca_dir", stateDir + "/ca") + "/ca.crt";
    if (tls) {
      // Calls to peers: present this server's certificate, trust only the provider CA,
      // and never ask anyone what to do about a bad certificate.
      Poco::Net::Context::Ptr client =
          new Poco::Net::Context(Poco::Net::Context::TLS_CLIENT_USE, "", "", caFile, Poco::Net::Context::VERIFY_STRICT);
      Poco::Net::SSLManager::instance().initializeClient(nullptr, new Poco::Net::RejectCertificateHandler(false),
                                                         client);
    }
    ferry::control::Router router(channel.get(), gateways, serverId, caFile,
                                  stateDir + "/tls/server.crt", stateDir + "/tls/server.key");
    ferry::control::ApiContext ctx{accounts,
                                   gateways,
                                   *ca.value(),
                                   config().getString("gateway.control_endpoint", channelUrl),
                                   config().getString("gateway.store", ""),
                                   config().getInt("gateway.certificate_days", 365),
                                   outbox,
                                   inventory,
                                   bandwidth,
                                   schedules,
                                   metrics,
                                   router,
                                   routing,
                                   channel.get(),
                                   serverId,
                                   vips.value(),
                                   &iscsi};
    // One handler factory for every listener: the same counters whichever port a
    // request came in on.
    Poco::Net::HTTPRequestHandlerFactory::Ptr factory = new ferry::control::ApiFactory(ctx);
    std::vector<std::unique_ptr<Poco::Net::HTTPServer>> servers;
    for (auto& listening : sockets) {
      auto* params = new Poco::Net::HTTPServerParams;
      params->setMaxThreads(config().getInt("api.threads", 16));
      params->setKeepAlive(true);
      servers.push_back(std::make_unique<Poco::Net::HTTPServer>(factory, *listening, params));
      servers.back()->start();
    }
    std::cout << "ferry-control: API on " << (tls ? "https://" : "http://") << socket.address().toString()
              << ", database schema version " << db.value()->schemaVersion() << ", provider CA "
              << config().getString("tls.ca_dir", stateDir + "/ca") << "/ca.crt";
    if (channel) {
      std::cout << ", channel on wss://" << host << ":" << channel->port() << "/v1/channel, internal endpoint "
                << channel->internalUrl() << " (server " << serverId << ", routing "
                << ferry::control::routingName(routing) << ")";
    }
    for (const auto& v : vips.value()) std::cout << ", VIP " << v.name << " " << v.address << " on port " << v.port;
    std::cout << std::endl;
    // Snapshot schedules: every server looks; one takes each due snapshot and routes
    // the requests it made as the API does.
    std::mutex scheduleMutex;
    std::condition_variable scheduleWake;
    bool stopping = false;
    int checkSeconds = config().getInt("snapshots.check_seconds", 30);
    std::thread scheduler([&] {
      std::unique_lock<std::mutex> l(scheduleMutex);
      while (!scheduleWake.wait_for(l, std::chrono::seconds(checkSeconds), [&] { return stopping; })) {
        l.unlock();
        auto touched = schedules.runDue(static_cast<int64_t>(::time(nullptr)));
        if (!touched) {
          std::cerr << "ferry-control: snapshot schedules: " << touched.status().toString() << "\n";
        } else {
          for (const auto& gw : touched.value()) router.route(gw, routing);
        }
        l.lock();
      }
    });
    waitForTerminationRequest();
    {
      std::lock_guard<std::mutex> l(scheduleMutex);
      stopping = true;
    }
    scheduleWake.notify_all();
    scheduler.join();
    for (auto& api : servers) api->stopAll(true);
    if (channel) channel->stop();
    std::cout << "ferry-control: stopped" << std::endl;
    if (tls) Poco::Net::uninitializeSSL();
    return EXIT_OK;
  }

 private:
  bool helpShown_ = false;
};

}  // namespace

POCO_SERVER_MAIN(ControlServer)
