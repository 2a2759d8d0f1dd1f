// ferry-balancer: the farm's distributed load balancer with direct server return
// (DESIGN.md "Balancer", docs/balancer.md).
//   ferry-balancer node  --config F --interface IF [--dataplane xdp|nft] [--xdp-mode native|generic]
//                        [--metrics HOST:PORT]
//   ferry-balancer host  --config F --interface IF --address A [--dataplane xdp|nft] [--metrics HOST:PORT]
//   ferry-balancer host  --interface IF --remove
//   ferry-balancer table --config F [--down NAME,...]
#include <signal.h>

#include <cstdio>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "config.h"
#include "ferry/log.h"
#include "ferry/metrics_text.h"
#include "host_egress.h"
#include "http_endpoint.h"
#include "maglev.h"
#include "nft.h"
#include "nft_dataplane.h"
#include "node.h"
#include "xdp_dataplane.h"

namespace ferry::balancer {
namespace {

const char* kUsage =
    "usage:\n"
    "  ferry-balancer node  --config F --interface IF [--dataplane xdp|nft] [--xdp-mode native|generic]\n"
    "                       [--metrics HOST:PORT]\n"
    "      forward the config's services to its healthy backends (XDP on IF, or nftables)\n"
    "  ferry-balancer host  --config F --interface IF --address A [--dataplane xdp|nft] [--metrics HOST:PORT]\n"
    "      on a backend host: replies from A's mapped ports leave as their VIP (tc egress on IF, or nftables)\n"
    "  ferry-balancer host  --interface IF --remove\n"
    "      take the egress rewrite off IF (and the nftables one)\n"
    "  ferry-balancer table --config F [--down NAME,...]\n"
    "      print the Maglev ring's digest and each backend's share (every node must agree)\n";

struct Args {
  std::string command;
  std::map<std::string, std::string> opts;
  std::set<std::string> flags;
};

bool parseArgs(int argc, char** argv, Args& out, std::string& error) {
  if (argc < 2) return false;
  out.command = argv[1];
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) != 0) {
      error = "unexpected argument \"" + a + "\"";
      return false;
    }
    std::string key = a.substr(2), value;
    size_t eq = key.find('=');
    if (eq != std::string::npos) {
      value = key.substr(eq + 1);
      key = key.substr(0, eq);
    } else if (key == "remove") {
      out.flags.insert(key);
      continue;
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      error = "--" + key + " needs a value";
      return false;
    }
    static const std::set<std::string> kKnown = {"config", "interface", "dataplane", "xdp-mode", "metrics", "address", "down"};
    if (!kKnown.count(key)) {
      error = "unknown option --" + key;
      return false;
    }
    out.opts[key] = value;
  }
  return true;
}

int fail(const std::string& message) {
  std::cerr << "ferry-balancer: " << message << "\n";
  return 1;
}

// Blocks SIGINT and SIGTERM in every thread, then waits for one.
void blockSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}
int waitForSignal() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  int sig = 0;
  sigwait(&set, &sig);
  return sig;
}

// --dataplane: xdp (default) or nft.
Result<std::string> dataplaneOf(const Args& a) {
  std::string d = a.opts.count("dataplane") ? a.opts.at("dataplane") : "xdp";
  if (d != "xdp" && d != "nft") return Status::invalid("--dataplane must be xdp or nft, not \"" + d + "\"");
  return d;
}

Result<BalancerConfig> needConfig(const Args& a) {
  auto it = a.opts.find("config");
  if (it == a.opts.end()) return Status::invalid("--config is required");
  return loadBalancerConfig(it->second);
}

int runTable(const Args& a) {
  auto cfg = needConfig(a);
  if (!cfg) return fail(cfg.status().toString());
  std::set<std::string> down;
  if (a.opts.count("down")) {
    std::stringstream ss(a.opts.at("down"));
    for (std::string name; std::getline(ss, name, ',');) down.insert(name);
  }
  std::vector<MaglevBackend> mb;
  for (const BackendConfig& b : cfg->backends) mb.push_back({b.name, !down.count(b.name)});
  auto ring = buildMaglev(mb, cfg->seed, LB_RING_SIZE);
  std::string bytes(reinterpret_cast<const char*>(ring.data()), ring.size() * sizeof(uint32_t));
  std::vector<int> slots(cfg->backends.size(), 0);
  for (uint32_t s : ring)
    if (s < slots.size()) slots[s]++;
  nlohmann::json shares = nlohmann::json::object();
  for (size_t i = 0; i < slots.size(); ++i) shares[cfg->backends[i].name] = slots[i];
  char digest[32];
  std::snprintf(digest, sizeof digest, "%016llx", static_cast<unsigned long long>(maglevHash(bytes, 0)));
  std::cout << nlohmann::json({{"size", LB_RING_SIZE}, {"seed", cfg->seed}, {"digest", digest}, {"slots", shares}}).dump()
            << "\n";
  return 0;
}

int runNode(const Args& a) {
  auto cfg = needConfig(a);
  if (!cfg) return fail(cfg.status().toString());
  auto dataplane = dataplaneOf(a);
  if (!dataplane) return fail(dataplane.status().toString());
  if (!a.opts.count("interface")) return fail("--interface is required");
  XdpOptions xo;
  xo.interface = a.opts.at("interface");
  xo.mode = a.opts.count("xdp-mode") ? a.opts.at("xdp-mode") : "native";
  xo.seed = cfg->seed;
  xo.flows = cfg->flows;
  std::unique_ptr<Dataplane> dp;
  if (dataplane.value() == "nft") {
    dp = std::make_unique<NftDataplane>(cfg->seed);
  } else {
    dp = std::make_unique<XdpDataplane>(xo);
  }
  std::string where = dataplane.value() == "nft" ? std::string("nftables") : "XDP (" + xo.mode + ") on " + xo.interface;
  blockSignals();
  Node node(cfg.value(), std::move(dp));
  if (Status st = node.start(); !st) return fail(st.toString());
  std::unique_ptr<HttpEndpoint> http;
  if (a.opts.count("metrics")) {
    http = std::make_unique<HttpEndpoint>(
        a.opts.at("metrics"),
        HttpRoutes{{"/metrics", [&] { return HttpAnswer{MetricsText::kContentType, node.metricsText()}; }},
                   {"/status.json", [&] { return HttpAnswer{"application/json", node.status().dump(2)}; }}});
    if (Status st = http->start(); !st) return fail(st.toString());
  }
  logInfo("ferry-balancer node: " + std::to_string(cfg->services.size()) + " services, " +
          std::to_string(cfg->backends.size()) + " backends, " + where +
          (http ? ", metrics on port " + std::to_string(http->port()) : ""));
  int sig = waitForSignal();
  logInfo("ferry-balancer node: signal " + std::to_string(sig) + ", detaching");
  if (http) http->stop();
  node.stop();
  return 0;
}

int runHost(const Args& a) {
  if (!a.opts.count("interface")) return fail("--interface is required");
  HostOptions ho;
  ho.interface = a.opts.at("interface");
  if (a.flags.count("remove")) {
    // Both rewrites, whichever this host ran; saying which were there.
    Status tc = HostEgress(ho).removeFromInterface();
    if (!tc && tc.code() != ferry::Code::kNotFound) return fail(tc.toString());
    std::cout << (tc ? "removed the tc egress rewrite from " : "no tc egress rewrite on ") << ho.interface << "\n";
    if (haveNft()) {
      bool present = listNft("list table ip ferry_host").isOk();
      if (present) {
        if (Status st = NftHost::remove(); !st) return fail(st.toString());
      }
      std::cout << (present ? "removed" : "no") << " nftables table ip ferry_host\n";
    }
    return 0;
  }
  auto dataplane = dataplaneOf(a);
  if (!dataplane) return fail(dataplane.status().toString());
  auto cfg = needConfig(a);
  if (!cfg) return fail(cfg.status().toString());
  if (!a.opts.count("address")) return fail("--address is required (the host's address the balancer sends to)");
  auto addr = parseIPv4(a.opts.at("address"));
  if (!addr) return fail("--address: " + addr.status().message());
  ho.address = addr.value();
  blockSignals();
  HostEgress egress(ho);
  NftHost nftHost(ho.interface, ho.address, cfg->nodes);
  bool nft = dataplane.value() == "nft";
  if (Status st = nft ? nftHost.start(cfg->services) : egress.start(cfg->services, cfg->nodes); !st)
    return fail(st.toString());
  std::unique_ptr<HttpEndpoint> http;
  if (a.opts.count("metrics")) {
    http = std::make_unique<HttpEndpoint>(a.opts.at("metrics"), HttpRoutes{{"/metrics", [&] {
                                            MetricsText m;
                                            m.family("ferry_balancer_host_rewritten_packets_total", "counter",
                                                     "Packets whose source the egress rewrite set to a VIP.");
                                            if (nft) {
                                              if (auto n = nftHost.rewritten())
                                                m.sample("ferry_balancer_host_rewritten_packets_total",
                                                         double(n.value()), {{"kind", "reply"}});
                                            } else if (auto c = egress.counters()) {
                                              m.sample("ferry_balancer_host_rewritten_packets_total",
                                                       double(c->replies.packets), {{"kind", "reply"}});
                                              m.sample("ferry_balancer_host_rewritten_packets_total",
                                                       double(c->icmpErrors.packets), {{"kind", "icmp_error"}});
                                            }
                                            return HttpAnswer{MetricsText::kContentType, m.text()};
                                          }}});
    if (Status st = http->start(); !st) return fail(st.toString());
  }
  logInfo("ferry-balancer host: replies from " + a.opts.at("address") + " leave as their VIP (" +
          (nft ? std::string("nftables") : "tc egress on " + ho.interface) + ")");
  waitForSignal();
  // The rewrite stays: replies of live connections must keep their VIP while the
  // daemon is away. `ferry-balancer host --remove` takes it off.
  if (http) http->stop();
  return 0;
}

}  // namespace
}  // namespace ferry::balancer

int main(int argc, char** argv) {
  using namespace ferry::balancer;
  Args args;
  std::string error;
  if (!parseArgs(argc, argv, args, error)) {
    if (!error.empty()) std::cerr << "ferry-balancer: " << error << "\n";
    std::cerr << kUsage;
    return 2;
  }
  if (args.command == "node") return runNode(args);
  if (args.command == "host") return runHost(args);
  if (args.command == "table") return runTable(args);
  std::cerr << "ferry-balancer: unknown command \"" << args.command << "\"\n" << kUsage;
  return 2;
}
