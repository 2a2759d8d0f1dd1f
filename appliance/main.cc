// ferry-agent: the gateway agent (docs/agent.md). Activates the gateway with the
// provider, holds the control channel, applies the provider's requests through the
// volume engine it runs beside it (nbdkit ferry), and shows the local page.

#include <Poco/Environment.h>
#include <Poco/Net/NetworkInterface.h>
#include <Poco/Net/SSLManager.h>
#include <Poco/Net/RejectCertificateHandler.h>
#include <Poco/StringTokenizer.h>
#include <Poco/Util/HelpFormatter.h>
#include <Poco/Util/Option.h>
#include <Poco/Util/OptionSet.h>
#include <Poco/Util/ServerApplication.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <iostream>
#include <memory>
#include <mutex>
#include <thread>

#include "activation.h"
#include "applier.h"
#include "bandwidth_keeper.h"
#include "channel.h"
#include "ctl_client.h"
#include "engine_client.h"
#include "identity.h"
#include "iscsi_targets.h"
#include "metrics_reporter.h"
#include "page.h"
#include "request_log.h"
#include "supervisor.h"

#ifndef FERRY_VERSION
#define FERRY_VERSION "0.0.0"
#endif

namespace {

using json = nlohmann::json;
using ferry::Status;
using namespace ferry::agent;

std::vector<std::string> localAddresses() {
  std::vector<std::string> out;
  try {
    for (const auto& i : Poco::Net::NetworkInterface::list()) {
      if (i.isLoopback() || !i.isUp()) continue;
      std::string a = i.address().toString();
      if (a.rfind("fe80", 0) == 0) continue;  // link-local
      out.push_back(a);
    }
  } catch (const Poco::Exception&) {
  }
  return out;
}

class Agent : public Poco::Util::ServerApplication {
 protected:
  void defineOptions(Poco::Util::OptionSet& options) override {
    ServerApplication::defineOptions(options);
    // Repeatable: the first file that sets a key wins (the appliance gives the
    // provider's settings first, then its defaults).
    options.addOption(Poco::Util::Option("config", "c", "configuration file (repeatable; the first to set a key wins)")
                          .repeatable(true)
                          .argument("FILE")
                          .callback(Poco::Util::OptionCallback<Agent>(this, &Agent::onConfig)));
    options.addOption(Poco::Util::Option("help", "h", "this help")
                          .callback(Poco::Util::OptionCallback<Agent>(this, &Agent::onHelp)));
  }
  void onConfig(const std::string&, const std::string& file) { loadConfiguration(file); }
  void onHelp(const std::string&, const std::string&) {
    Poco::Util::HelpFormatter f(options());
    f.setCommand(commandName());
    f.setUsage("--config=FILE");
    f.setHeader("The Ferry gateway agent. Configuration keys: docs/agent.md.");
    f.format(std::cout);
    helpShown_ = true;
    stopOptionsProcessing();
  }

  int main(const std::vector<std::string>&) override {
    if (helpShown_) return EXIT_OK;
    std::string stateDir = config().getString("state.dir", "/var/lib/ferry-agent");
    if (::mkdir(stateDir.c_str(), 0700) != 0 && errno != EEXIST) {
      std::cerr << "ferry-agent: cannot create state.dir " << stateDir << ": " << std::strerror(errno) << "\n";
      return EXIT_CANTCREAT;
    }
    auto identity = Identity::loadOrCreate(stateDir);
    if (!identity) return fail(identity.status(), EXIT_CONFIG);
    std::string providerUrl = config().getString("provider.endpoint", "https://localhost:8443");
    Poco::Net::initializeSSL();
    Poco::Net::Context::Ptr none =
        new Poco::Net::Context(Poco::Net::Context::TLS_CLIENT_USE, "", "", "", Poco::Net::Context::VERIFY_STRICT);
    Poco::Net::SSLManager::instance().initializeClient(nullptr, new Poco::Net::RejectCertificateHandler(false), none);
    auto provider = ferry::control::ApiClient::make(providerUrl, config().getString("provider.ca", ""));
    if (!provider) return fail(provider.status(), EXIT_CONFIG);
    provider.value().setTimeoutSeconds(15);
    GatewayFacts facts{Poco::Environment::nodeName(), FERRY_VERSION, localAddresses()};
    Activation activation(*identity.value(), provider.value(), stateDir, facts);
    if (Status s = activation.load(); !s) return fail(s, EXIT_CONFIG);
    auto log = RequestLog::open(stateDir + "/agent.db");
    if (!log) return fail(log.status(), EXIT_CANTCREAT);

    EngineConfig ec;
    ec.nbdkit = config().getString("engine.nbdkit", "nbdkit");
    ec.plugin = config().getString("engine.plugin", "ferry");
    ec.stateDir = config().getString("engine.state_dir", stateDir + "/engine");
    ec.host = config().getString("nbd.host", "0.0.0.0");
    ec.port = config().getInt("nbd.port", 10809);
    ec.logFile = config().getString("engine.log", stateDir + "/engine.log");
    for (const auto& a : Poco::StringTokenizer(config().getString("engine.args", ""), " ",
                                               Poco::StringTokenizer::TOK_IGNORE_EMPTY)) {
      ec.extra.push_back(a);
    }
    for (const auto& e : Poco::StringTokenizer(config().getString("engine.environment", ""), " ",
                                               Poco::StringTokenizer::TOK_IGNORE_EMPTY)) {
      if (e.find('=') == std::string::npos) {
        return fail(Status::invalid("engine.environment: want NAME=VALUE, not '" + e + "'"), EXIT_CONFIG);
      }
      ec.environment.push_back(e);
    }
    EngineClient engine(ec.stateDir + "/admin.sock");
    BandwidthKeeper bandwidth(stateDir, engine, config().getInt("bandwidth.check_seconds", 10));
    // A setting it cannot read must not keep the gateway from serving its volumes.
    if (Status s = bandwidth.load(); !s) std::cerr << "ferry-agent: bandwidth limits: " << s.toString() << "\n";
    // Reports go to the channel of the moment (a new one after re-activation).
    std::mutex reportMutex;
    Channel* reportTo = nullptr;
    MetricsReporter reporter(
        engine,
        [&](const std::string& frame) {
          std::lock_guard<std::mutex> l(reportMutex);
          return reportTo != nullptr && reportTo->report(frame);
        },
        config().getInt("metrics.interval_seconds", 60));
    // The supervisor, once there is one: its restart count tells iSCSI the engine's
    // NBD connections were lost.
    std::atomic<Supervisor*> engineSupervisor{nullptr};
    IscsiConfig ic;
    ic.enabled = config().getBool("iscsi.enabled", false);
    ic.portal = config().getString("iscsi.portal", "0.0.0.0:3260");
    ic.controlPort = config().getInt("iscsi.control_port", 0);
    ic.iqnPrefix = config().getString("iscsi.iqn_prefix", "iqn.2026-11.io.ferry");
    ic.tgtd = config().getString("iscsi.tgtd", "tgtd");
    ic.tgtadm = config().getString("iscsi.tgtadm", "tgtadm");
    ic.nbdfuse = config().getString("iscsi.nbdfuse", "nbdfuse");
    ic.fusermount = config().getString("iscsi.fusermount", "fusermount3");
    ic.dir = config().getString("iscsi.dir", stateDir + "/iscsi");
    ic.checkSeconds = config().getInt("iscsi.check_seconds", 5);
    ic.nbdHost = ec.host == "0.0.0.0" ? "127.0.0.1" : ec.host;
    ic.nbdPort = ec.port;
    IscsiTargets iscsi(
        ic,
        [&engine, &engineSupervisor]() -> ferry::Result<IscsiTargets::EngineView> {
          auto list = engine.call({{"op", "list"}}, 10);
          if (!list) return list.status();
          IscsiTargets::EngineView view;
          Supervisor* sup = engineSupervisor.load();
          view.generation = sup != nullptr ? sup->restarts() : 0;
          for (const auto& v : list.value().value("volumes", json::array())) view.volumes.push_back(v.value("name", ""));
          return view;
        },
        [&](const std::string& frame) {
          std::lock_guard<std::mutex> l(reportMutex);
          return reportTo != nullptr && reportTo->report(frame);
        });
    if (Status s = iscsi.load(); !s) return fail(s, EXIT_CANTCREAT);
    std::atomic<bool> shutdownAsked{false};
    Applier applier(engine, facts, &bandwidth, [&shutdownAsked] {
      // Answer first, then stop: the signal comes a moment later.
      shutdownAsked = true;
      std::thread([] {
        std::this_thread::sleep_for(std::chrono::seconds(1));
        ::kill(::getpid(), SIGTERM);
      }).detach();
    });
    applier.setIscsi(&iscsi);

    std::unique_ptr<Supervisor> supervisor;
    std::unique_ptr<Channel> channel;
    std::mutex partsMutex;
    std::string lastError;
    auto status = [&]() -> json {
      ActivationRecord r = activation.current();
      json st = {{"stage", r.stage()},
                 {"activation_key", r.activated() || !r.gatewayId.empty() ? "" : r.activationKey},
                 {"activation_key_expires_at", r.keyExpiresAt},
                 {"gateway", {{"id", r.gatewayId}, {"name", r.gatewayName}}},
                 {"provider", providerUrl},
                 {"software_version", FERRY_VERSION}};
      std::lock_guard<std::mutex> l(partsMutex);
      st["last_error"] = lastError;
      if (channel) {
        ChannelStatus c = channel->status();
        st["channel"] = {{"connected", c.connected},
                         {"connections", c.connections},
                         {"requests", c.requests},
                         {"repeats", c.repeats},
                         {"last_error", c.lastError}};
      }
      st["bandwidth"] = bandwidth.status();
      if (supervisor) {
        auto stats = engine.call({{"op", "stats"}}, 2);
        st["engine"] = stats ? stats.value() : json{{"ok", false}, {"error", stats.status().message()}};
        st["nbd"] = {{"host", ec.host}, {"port", ec.port}, {"restarts", supervisor->restarts()}};
        if (ic.enabled) st["iscsi"] = iscsi.status();
      }
      return st;
    };
    PageConfig pc{config().getString("page.host", "0.0.0.0"), config().getInt("page.port", 8081),
                  config().getString("console.url", providerUrl + "/console/")};
    Page page(pc, status);
    if (Status s = page.start(); !s) return fail(s, EXIT_UNAVAILABLE);
    std::cout << "ferry-agent: local page on http://" << pc.host << ":" << page.port() << "/, provider " << providerUrl
              << std::endl;

    // Activation, then the engine and the channel, on their own thread; the main
    // thread waits for SIGTERM.
    std::atomic<bool> stopping{false};
    std::mutex waitMutex;
    std::condition_variable waitCv;
    int pollSeconds = config().getInt("activation.poll_seconds", 3);
    auto pause = [&](int seconds) {
      std::unique_lock<std::mutex> l(waitMutex);
      waitCv.wait_for(l, std::chrono::seconds(seconds), [&] { return stopping.load(); });
    };
    // Activation until done; then the engine (once) and the channel; then watching
    // the certificate: one that expired (the agent was offline past its renewal) takes
    // the gateway back to activation with the same key pair — a new key on the page,
    // which the customer claims to consent; the gateway keeps its id and volumes.
    std::thread bringUp([&] {
      std::string shownKey;
      while (!stopping) {
        while (!stopping) {
          auto r = activation.step();
          {
            std::lock_guard<std::mutex> l(partsMutex);
            lastError = r ? "" : r.status().message();
          }
          if (!r) {
            std::cerr << "ferry-agent: activation: " << r.status().message() << "\n";
          } else if (r.value().activated()) {
            break;
          } else if (!r.value().activationKey.empty() && r.value().activationKey != shownKey &&
                     r.value().gatewayId.empty()) {
            shownKey = r.value().activationKey;
            std::cout << "ferry-agent: activation key " << shownKey
                      << " (on the local page; expires in 30 minutes)" << std::endl;
          }
          pause(pollSeconds);
        }
        if (stopping) return;
        ActivationRecord r = activation.current();
        std::cout << "ferry-agent: activated as " << r.gatewayId << " (" << r.gatewayName << "), store " << r.store
                  << std::endl;
        ChannelConfig cc{config().getString("channel.endpoint", r.controlEndpoint), activation.certificatePath(),
                         identity.value()->keyPath(), activation.caPath(),
                         config().getInt("channel.backoff_base_ms", 500),
                         config().getInt("channel.backoff_cap_ms", 30000), config().getInt("channel.dead_seconds", 45)};
        {
          std::lock_guard<std::mutex> l(partsMutex);
          if (stopping) return;
          if (!supervisor) {
            ec.store = config().getString("engine.store", r.store);
            supervisor = std::make_unique<Supervisor>(ec);
            engineSupervisor = supervisor.get();
            if (Status s = supervisor->start(); !s) {
              lastError = s.message();
              std::cerr << "ferry-agent: " << s.toString() << "\n";
            }
            bandwidth.start();
            reporter.start();
            iscsi.start();
          }
          channel = std::make_unique<Channel>(cc, *log.value(), applier);
          Channel* ch = channel.get();
          applier.setCertificateHandlers([&identity] { return identity.value()->csr(); },
                                         [&activation, ch](const json& args) {
                                           Status s = activation.installCertificate(
                                               args.value("certificate", ""), args.value("not_after", int64_t{0}),
                                               args.value("ca_certificate", ""));
                                           if (s) ch->reloadCertificate();
                                           return s;
                                         });
          if (Status s = channel->start(); !s) {
            lastError = s.message();
            std::cerr << "ferry-agent: " << s.toString() << "\n";
          }
          std::lock_guard<std::mutex> reportLock(reportMutex);
          reportTo = channel.get();
        }
        while (!stopping) {
          pause(pollSeconds);
          int64_t notAfter = activation.current().certificateNotAfter;
          if (notAfter != 0 && notAfter <= static_cast<int64_t>(::time(nullptr))) break;
        }
        if (stopping) return;
        std::cout << "ferry-agent: the channel certificate expired; activate the gateway again with the key on the "
                     "local page (it stays the same gateway)"
                  << std::endl;
        std::unique_ptr<Channel> old;
        {
          std::lock_guard<std::mutex> l(partsMutex);
          std::lock_guard<std::mutex> reportLock(reportMutex);
          reportTo = nullptr;
          old = std::move(channel);
        }
        old->stop();
        if (Status s = activation.restart(); !s) std::cerr << "ferry-agent: " << s.toString() << "\n";
      }
    });

    waitForTerminationRequest();
    // Nothing waits for the engine from here on (it may hang): a request being applied
    // is abandoned, to be applied again after the restart (docs/agent.md).
    engine.stopCalls();
    stopping = true;
    waitCv.notify_all();
    bringUp.join();
    std::cout << "ferry-agent: stopping" << (shutdownAsked ? " (the provider asked)" : "") << std::endl;
    page.stop();
    reporter.stop();
    bandwidth.stop();
    iscsi.stop();  // before the engine: nbdfuse holds NBD connections to it
    {
      std::lock_guard<std::mutex> l(partsMutex);
      if (channel) {
        channel->stop();
        std::cout << "ferry-agent: channel closed" << std::endl;
      }
      if (supervisor) supervisor->stop();
    }
    std::cout << "ferry-agent: stopped" << std::endl;
    Poco::Net::uninitializeSSL();
    return EXIT_OK;
  }

 private:
  static int fail(const Status& s, int code) {
    std::cerr << "ferry-agent: " << s.toString() << "\n";
    return code;
  }
  bool helpShown_ = false;
};

}  // namespace

POCO_SERVER_MAIN(Agent)
