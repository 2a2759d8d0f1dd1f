// ferry-balancer's configuration file: a good one parses with its defaults, and each
// kind of mistake is refused with a message that names the field.

#include "config.h"

#include <gtest/gtest.h>
#include <netinet/in.h>

namespace ferry::balancer {
namespace {

const char* kGood = R"({
  "seed": 7,
  "services": [
    {"name": "api", "vip": "198.51.100.10", "port": 443, "host_port": 18443},
    {"name": "dns", "vip": "198.51.100.10", "port": 53, "protocol": "udp", "host_port": 18053}
  ],
  "backends": [{"name": "c1", "address": "10.2.0.21"}, {"name": "c2", "address": "10.2.0.22"}],
  "nodes": ["10.2.0.11", "10.2.0.12"],
  "health": {"scheme": "https", "path": "/healthz", "interval_ms": 200, "rise": 1}
})";

TEST(BalancerConfig, ParsesAGoodFile) {
  auto cfg = parseBalancerConfig(kGood);
  ASSERT_TRUE(cfg) << cfg.status().toString();
  EXPECT_EQ(cfg->seed, 7u);
  ASSERT_EQ(cfg->services.size(), 2u);
  EXPECT_EQ(formatIPv4(cfg->services[0].vip), "198.51.100.10");
  EXPECT_EQ(cfg->services[0].protocol, IPPROTO_TCP);
  EXPECT_EQ(cfg->services[1].protocol, IPPROTO_UDP);
  EXPECT_EQ(cfg->services[1].hostPort, 18053);
  ASSERT_EQ(cfg->backends.size(), 2u);
  EXPECT_EQ(formatIPv4(cfg->backends[1].address), "10.2.0.22");
  EXPECT_EQ(cfg->health.scheme, "https");
  EXPECT_EQ(cfg->health.port, 18443) << "defaults to the first service's host port";
  EXPECT_EQ(cfg->health.intervalMs, 200);
  EXPECT_EQ(cfg->health.rise, 1);
  EXPECT_EQ(cfg->health.fall, 2);
  EXPECT_EQ(cfg->flows, 65536u);
  ASSERT_EQ(cfg->nodes.size(), 2u);
  EXPECT_EQ(formatIPv4(cfg->nodes[1]), "10.2.0.12");
}

void expectRefused(const std::string& text, const std::string& mention) {
  auto cfg = parseBalancerConfig(text);
  ASSERT_FALSE(cfg) << text;
  EXPECT_NE(cfg.status().message().find(mention), std::string::npos)
      << "\"" << cfg.status().message() << "\" should mention \"" << mention << "\"";
}

TEST(BalancerConfig, RefusesMistakesByName) {
  expectRefused("[]", "not a JSON object");
  expectRefused("{", "not a JSON object");
  expectRefused(R"({"services": [], "backends": []})", "services must be a non-empty array");
  const std::string be = R"("backends": [{"name": "c1", "address": "10.0.0.1"}])";
  expectRefused(R"({"services": [{"name": "a", "vip": "1.2.3", "port": 1, "host_port": 2}], )" + be + "}",
                "services[0].vip");
  expectRefused(R"({"services": [{"name": "a", "vip": "1.2.3.4", "port": 0, "host_port": 2}], )" + be + "}",
                "services[0].port must be between 1 and 65535");
  expectRefused(R"({"services": [{"name": "a", "vip": "1.2.3.4", "port": 1}], )" + be + "}",
                "services[0].host_port is missing");
  expectRefused(R"({"services": [{"name": "a", "vip": "1.2.3.4", "port": 1, "host_port": 2, "protocol": "sctp"}], )" +
                    be + "}",
                "services[0].protocol");
  expectRefused(R"({"services": [{"name": "a", "vip": "1.2.3.4", "port": 1, "host_port": 2},
                                 {"name": "b", "vip": "1.2.3.5", "port": 1, "host_port": 2}], )" +
                    be + "}",
                "services[1].host_port 2/tcp already stands for another service");
  expectRefused(R"({"services": [{"name": "a", "vip": "1.2.3.4", "port": 1, "host_port": 2},
                                 {"name": "b", "vip": "1.2.3.4", "port": 1, "host_port": 3}], )" +
                    be + "}",
                "1.2.3.4:1/tcp is listed twice");
  const std::string svc = R"("services": [{"name": "a", "vip": "1.2.3.4", "port": 1, "host_port": 2}])";
  expectRefused("{" + svc + R"(, "backends": [{"name": "c1", "address": "10.0.0.1"}, {"name": "c1", "address": "10.0.0.2"}]})",
                "backends[1].name \"c1\" is used twice");
  expectRefused("{" + svc + R"(, "backends": [{"name": "c1"}]})", "backends[0].address is missing");
  expectRefused("{" + svc + ", " + be + R"(, "health": {"scheme": "gopher"}})", "health.scheme");
  expectRefused("{" + svc + ", " + be + R"(, "health": {"interval_ms": 1}})", "health.interval_ms");
  expectRefused("{" + svc + ", " + be + R"(, "health": {"path": "healthz"}})", "health.path must start with /");
  expectRefused("{" + svc + ", " + be + R"(, "seeds": 1})", "unknown field \"seeds\"");
  expectRefused("{" + svc + ", " + be + R"(, "flows": 10})", "flows must be between");
  expectRefused("{" + svc + ", " + be + R"(, "nodes": ["10.0.0"]})", "nodes[0]");
}

TEST(BalancerConfig, MissingFileIsAnError) {
  auto cfg = loadBalancerConfig("/nonexistent/balancer.json");
  ASSERT_FALSE(cfg);
  EXPECT_NE(cfg.status().message().find("/nonexistent/balancer.json"), std::string::npos);
}

}  // namespace
}  // namespace ferry::balancer
