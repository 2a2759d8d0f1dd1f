#pragma once
// Test steps a customer and a gateway take against a real ferry-control: sign up and
// log in; activate a gateway through the real flow (steps 1, 3 and 5), ending with the
// identity its channel uses. Header-only.

#include <chrono>
#include <ctime>
#include <thread>
#include <nlohmann/json.hpp>
#include <string>

#include "control_process.h"
#include "gateway_channel.h"
#include "gateway_key.h"

namespace ferry::testing {

// Polls a request through the API until it is done or failed (or seconds pass); its
// last JSON.
inline nlohmann::json waitFinished(Control& via, const std::string& token, const std::string& id, int seconds) {
  nlohmann::json r;
  for (int i = 0; i < seconds * 20; ++i) {
    r = via.call("GET", "/v1/requests/" + id, "", token).body["request"];
    if (r.value("state", "") == "done" || r.value("state", "") == "failed") return r;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return r;
}

// A new account's session token.
inline std::string signUpAndLogIn(Control& c, const std::string& email) {
  nlohmann::json who = {{"email", email}, {"password", "0123456789ab"}};
  c.call("POST", "/v1/signup", who.dump());
  auto r = c.call("POST", "/v1/login", who.dump());
  EXPECT_EQ(r.status, 200) << r.text;
  return r.body.value("token", "");
}

inline GatewayChannel::Identity activateGateway(Control& c, const std::string& token, const GatewayKey& key,
                                                const std::string& name = "g") {
  using json = nlohmann::json;
  auto started = c.call("POST", "/v1/activation", json{{"public_key", key.publicPem()}}.dump());
  std::string requestId = started.body.value("request_id", "");
  auto claimed = c.call("POST", "/v1/gateways/activate",
                        json{{"activation_key", started.body.value("activation_key", "")}, {"name", name}}.dump(), token);
  EXPECT_EQ(claimed.status, 201) << claimed.text;
  std::string t = std::to_string(::time(nullptr));
  auto cert = c.call("POST", "/v1/activation/" + requestId + "/certificate", json{{"csr", key.csr()}}.dump(), "",
                     {{"X-Ferry-Time", t}, {"X-Ferry-Signature", key.sign("ferry-activation\n" + requestId + "\n" + t)}});
  EXPECT_EQ(cert.status, 200) << cert.text;
  return {claimed.body["gateway"].value("id", ""), cert.body.value("certificate", ""),
          cert.body.value("ca_certificate", ""), key.privatePem()};
}

}  // namespace ferry::testing
