#pragma once
// What the console's entries do on the appliance: systemd-networkd files, the agent's
// local page, journalctl and systemctl, the provider settings the agent reads, and a
// yescrypt hash of the console password. Paths and programs are settings, so the
// console can be run (and tested) outside the image.

#include <string>

#include "console_menu.h"

namespace ferry::console {

struct SystemPaths {
  std::string etc = "/etc/ferry";                      // provider.properties, console.passwd
  std::string networkDir = "/etc/systemd/network";     // 10-ferry.network
  std::string page = "http://127.0.0.1:80";            // the agent's local page
  std::string systemctl = "systemctl";
  std::string journalctl = "journalctl";
  std::string service = "ferry-agent.service";
};

class SystemActions : public Actions {
 public:
  explicit SystemActions(SystemPaths paths) : p_(std::move(paths)) {}
  std::string networkSummary() override;
  Status useDhcp() override;
  Status useStatic(const StaticAddress& a) override;
  std::string testProvider() override;
  std::string agentStatus() override;
  bool agentAnswers() override;
  std::string logs(int lines) override;
  Status restartServices() override;
  bool passwordSet() override;
  bool checkPassword(const std::string& password) override;
  Status setPassword(const std::string& password) override;
  std::string providerEndpoint() override;
  Status setProviderEndpoint(const std::string& url) override;

 private:
  std::string providerSetting(const std::string& key);
  Status writeNetwork(const std::string& networkSection);
  SystemPaths p_;
};

}  // namespace ferry::console
