#pragma once
// The fixture of the iSCSI tests: the agent fixture (a real ferry-control, an account)
// plus an agent configuration that serves iSCSI on a free loopback port with its own
// tgtd, and the initiators the tests use (libiscsi's tools, qemu-io). Header-only.

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "agent_fixture.h"

namespace ferry::testing {

class IscsiFixture : public AgentFixture {
 protected:
  using json = nlohmann::json;
  void SetUp() override {
    for (const char* p : {"tgtd", "tgtadm", "nbdfuse", "iscsi-inq", "iscsi-readcapacity16", "qemu-io"}) {
      if (!ferry::testing::haveProgram(p)) GTEST_SKIP() << p << " is not installed (scripts/deps.sh installs it)";
    }
    if (::access("/dev/fuse", R_OK | W_OK) != 0) GTEST_SKIP() << "no /dev/fuse here";
    AgentFixture::SetUp();
    portalPort_ = ferry::testing::freeTcpPort();
    // tgtd's management socket is /var/run/tgtd/socket.N: one N per test process.
    controlPort_ = 1000 + portalPort_ % 30000;  // tgtd takes up to 32767
  }
  std::string agentConfig() const {
    return "iscsi.enabled = true\niscsi.portal = 127.0.0.1:" + std::to_string(portalPort_) +
           "\niscsi.control_port = " + std::to_string(controlPort_) + "\niscsi.check_seconds = 1\n";
  }
  std::string iqn(const std::string& volume) const { return "iqn.2026-11.io.ferry:" + volume; }
  // iscsi://[user%secret@]127.0.0.1:PORT/IQN/1[?target_user=…&target_password=…]
  std::string url(const std::string& volume, const std::string& user = "", const std::string& secret = "",
                  const std::string& targetUser = "", const std::string& targetSecret = "") const {
    std::string u = "iscsi://" + (user.empty() ? "" : user + "%" + secret + "@") + "127.0.0.1:" +
                    std::to_string(portalPort_) + "/" + iqn(volume) + "/1";
    if (!targetUser.empty()) u += "?target_user=" + targetUser + "&target_password=" + targetSecret;
    return u;
  }
  int run(const std::string& cmd, std::string* out = nullptr) {
    return ferry::testing::runCommand(cmd + " 2>&1", out);
  }
  // qemu-io over iSCSI as a named initiator; cmds: qemu-io commands.
  int qemuIo(const std::string& volume, const std::vector<std::string>& cmds, std::string* out = nullptr,
             const std::string& initiator = "iqn.2026-11.test:host1") {
    std::string c = "qemu-io --image-opts driver=iscsi,transport=tcp,portal=127.0.0.1:" +
                    std::to_string(portalPort_) + ",target=" + iqn(volume) + ",lun=1,initiator-name=" + initiator;
    for (const auto& one : cmds) c += " -c '" + one + "'";
    return run(c, out);
  }
  bool waitTarget(const std::string& volume, bool present, int seconds = 30) {
    for (int i = 0; i < seconds * 5; ++i) {
      if ((run("iscsi-inq " + url(volume)) == 0) == present) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    return false;
  }
  json iscsiOf(const std::string& gw, const std::string& volume) {
    return api("GET", "/v1/gateways/" + gw + "/volumes/" + volume + "/iscsi").body.value("iscsi", json::object());
  }
  int portalPort_ = 0, controlPort_ = 0;
};

}  // namespace ferry::testing
