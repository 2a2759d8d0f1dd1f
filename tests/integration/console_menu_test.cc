// The appliance's serial console (ferry-console) run directly in tmux, driven with
// send-keys as a person at the serial line would, against a real ferry-control and a
// real agent: the activation key, the provider check (DNS, TCP, TLS with the provider
// CA), static and DHCP network files, the console password, the provider endpoint,
// logs and restarts. systemd is not PID 1 here: systemctl and journalctl are scripts
// that record what the console asked of them (the image's boot test runs the real ones).

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <fstream>
#include <string>
#include <thread>

#include "agent_fixture.h"
#include "console_menu.h"

namespace {

using ferry::testing::Agent;
using ferry::testing::readFile;
using json = nlohmann::json;

TEST(ConsoleChecksTest, AddressesAndUrlsAreCheckedBeforeAnythingChanges) {
  EXPECT_TRUE(ferry::console::checkCidr("192.0.2.10/24"));
  EXPECT_FALSE(ferry::console::checkCidr("192.0.2.10"));
  EXPECT_FALSE(ferry::console::checkCidr("192.0.2.10/33"));
  EXPECT_FALSE(ferry::console::checkCidr("192.0.2.256/24"));
  EXPECT_FALSE(ferry::console::checkIpv4("192.0.2"));
  EXPECT_FALSE(ferry::console::checkIpv4("192.0.2.1."));
  EXPECT_FALSE(ferry::console::checkIpv4("a.b.c.d"));
  EXPECT_FALSE(ferry::console::checkIpv4("192.168.001.010")) << "systemd-networkd refuses leading zeros";
  EXPECT_TRUE(ferry::console::checkProviderUrl("https://provider.example:8443"));
  EXPECT_FALSE(ferry::console::checkProviderUrl("http://provider.example"));
  EXPECT_FALSE(ferry::console::checkProviderUrl("https://a b"));
}

class Tmux {
 public:
  explicit Tmux(std::string name) : name_(std::move(name)) {}
  ~Tmux() { ferry::testing::runCommand("tmux kill-session -t " + name_ + " 2>/dev/null"); }
  bool start(const std::string& command) {
    return ferry::testing::runCommand("tmux new-session -d -x 120 -y 50 -s " + name_ + " '" + command + "'") == 0;
  }
  void type(const std::string& text) {
    ferry::testing::runCommand("tmux send-keys -t " + name_ + " -l '" + text + "'");
    ferry::testing::runCommand("tmux send-keys -t " + name_ + " Enter");
  }
  std::string screen() {
    std::string out;
    ferry::testing::runCommand("tmux capture-pane -p -J -S -5000 -t " + name_, &out);
    // Without the blank rows below the cursor: what is on the screen only grows.
    out.erase(out.find_last_not_of(" \n") + 1);
    return out;
  }
  // Waits until the screen shows text (after what was seen before the last mark).
  bool waitFor(const std::string& text, int seconds = 20) {
    for (int i = 0; i < seconds * 10; ++i) {
      std::string s = screen();
      if (s.find(text, mark_) != std::string::npos) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }
  void markNow() { mark_ = screen().size(); }
  bool alive() { return ferry::testing::runCommand("tmux has-session -t " + name_ + " 2>/dev/null") == 0; }

 private:
  std::string name_;
  size_t mark_ = 0;
};

class ConsoleMenuTest : public ferry::testing::AgentFixture {
 protected:
  void SetUp() override {
    if (!ferry::testing::haveProgram("tmux")) GTEST_SKIP() << "tmux is not installed (scripts/deps.sh installs it)";
    AgentFixture::SetUp();
  }
  // A program that appends its arguments to a file, and prints a line.
  std::string recorder(const std::string& name, const std::string& says) {
    std::string path = agentDir_ / name;
    std::ofstream(path) << "#!/bin/sh\necho \"$*\" >> " << path << ".calls\necho '" << says << "'\n";
    ::chmod(path.c_str(), 0755);
    return path;
  }
};

TEST_F(ConsoleMenuTest, AnOperatorAtTheSerialLineSetsTheGatewayUp) {
  Agent agent(agentDir_.path(), *control_);
  ASSERT_TRUE(agent.start()) << agent.log();
  ASSERT_TRUE(agent.waitFor([](const json& s) { return !s.value("activation_key", "").empty(); })) << agent.log();
  std::string key = agent.status()["activation_key"];

  std::string etc = agentDir_ / "etc", net = agentDir_ / "network";
  ASSERT_EQ(::mkdir(etc.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(net.c_str(), 0755), 0);
  std::ofstream(etc + "/provider.properties") << "# from the hypervisor\nprovider.endpoint = https://localhost:"
                                              << control_->port() << "\nprovider.ca = " << control_->caPath() << "\n";
  std::string systemctl = recorder("systemctl", ""), journalctl = recorder("journalctl", "ferry-agent: channel up");
  std::string cmd = ferry::testing::buildDir() + "/appliance/ferry-console --etc " + etc + " --network-dir " + net +
                    " --page http://127.0.0.1:" + std::to_string(agent.pagePort()) + " --systemctl " + systemctl +
                    " --journalctl " + journalctl;
  Tmux tmux("ferry-console-" + std::to_string(::getpid()));
  ASSERT_TRUE(tmux.start(cmd + "; echo console-exit=$?; sleep 30"));
  ASSERT_TRUE(tmux.waitFor("Ferry gateway console")) << tmux.screen();
  // First, unasked: the activation key and where the page is.
  EXPECT_TRUE(tmux.waitFor("Activation key: " + key)) << tmux.screen();
  EXPECT_TRUE(tmux.waitFor("Activation page on this network:")) << tmux.screen();
  tmux.markNow();

  // 3: the key the agent shows, as the customer will type it in the provider's console.
  tmux.type("3");
  ASSERT_TRUE(tmux.waitFor("Activation key: " + key)) << tmux.screen();
  EXPECT_TRUE(tmux.waitFor("Stage: waiting_for_customer")) << tmux.screen();
  tmux.type("");

  // 2: the provider, step by step, trusted with the provider CA.
  tmux.markNow();
  tmux.type("2");
  ASSERT_TRUE(tmux.waitFor("ok   TLS (certificate trusted) and HTTPS")) << tmux.screen();
  EXPECT_TRUE(tmux.waitFor("ok   TCP localhost:" + std::to_string(control_->port()))) << tmux.screen();
  tmux.type("");

  // 1, 2: a static address, a wrong prefix first; the networkd file, networkd restarted.
  tmux.markNow();
  tmux.type("1");
  ASSERT_TRUE(tmux.waitFor("Mode: DHCP")) << tmux.screen();
  tmux.type("2");
  tmux.type("192.0.2.10/33");
  ASSERT_TRUE(tmux.waitFor("the prefix after / must be 1 to 32")) << tmux.screen();
  tmux.type("192.0.2.010/24");
  ASSERT_TRUE(tmux.waitFor("'192.0.2.010' is not an IPv4 address")) << tmux.screen();
  tmux.type("192.0.2.10/24");
  tmux.type("192.0.2.1");
  tmux.type("192.0.2.53 198.51.100.53");
  ASSERT_TRUE(tmux.waitFor("The network now uses 192.0.2.10/24 via 192.0.2.1.")) << tmux.screen();
  std::string file = readFile(net + "/10-ferry.network");
  EXPECT_NE(file.find("Address=192.0.2.10/24\nGateway=192.0.2.1\nDNS=192.0.2.53\nDNS=198.51.100.53\n"),
            std::string::npos)
      << file;
  EXPECT_NE(readFile(systemctl + ".calls").find("restart systemd-networkd.service"), std::string::npos);
  tmux.type("");
  tmux.markNow();
  tmux.type("1");
  ASSERT_TRUE(tmux.waitFor("Mode: static")) << tmux.screen();
  tmux.type("1");
  ASSERT_TRUE(tmux.waitFor("The network now uses DHCP.")) << tmux.screen();
  EXPECT_NE(readFile(net + "/10-ferry.network").find("DHCP=yes"), std::string::npos);
  tmux.type("");

  // 5: the provider endpoint: not https is refused; the other key lines are kept.
  tmux.markNow();
  tmux.type("5");
  tmux.type("http://provider.example");
  ASSERT_TRUE(tmux.waitFor("is an https:// URL")) << tmux.screen();
  tmux.type("");
  tmux.type("5");
  tmux.type("https://provider.example:8443");
  ASSERT_TRUE(tmux.waitFor("Provider endpoint set")) << tmux.screen();
  std::string props = readFile(etc + "/provider.properties");
  EXPECT_NE(props.find("provider.endpoint = https://provider.example:8443\n"), std::string::npos) << props;
  EXPECT_NE(props.find("provider.ca = " + control_->caPath()), std::string::npos) << props;
  EXPECT_EQ(props.find("localhost"), std::string::npos) << props;
  tmux.type("");

  // 4 and 6: logs and a restart, through journalctl and systemctl.
  tmux.markNow();
  tmux.type("4");
  ASSERT_TRUE(tmux.waitFor("ferry-agent: channel up")) << tmux.screen();
  tmux.type("");
  tmux.type("6");
  ASSERT_TRUE(tmux.waitFor("The gateway services restarted.")) << tmux.screen();
  EXPECT_NE(readFile(systemctl + ".calls").find("restart ferry-agent.service"), std::string::npos);
  tmux.type("");

  // 7: a console password (typed twice, not echoed); then the console asks for it.
  tmux.markNow();
  tmux.type("7");
  // Typed once the prompt shows (the terminal echoes what comes before the console
  // turns echo off, as it would for a person typing ahead).
  ASSERT_TRUE(tmux.waitFor("New console password")) << tmux.screen();
  tmux.type("console-pass-1");
  ASSERT_TRUE(tmux.waitFor("Again:")) << tmux.screen();
  tmux.type("console-pass-1");
  ASSERT_TRUE(tmux.waitFor("Console password set.")) << tmux.screen();
  EXPECT_EQ(tmux.screen().find("console-pass-1"), std::string::npos) << "typed without echo";
  EXPECT_EQ(readFile(etc + "/console.passwd").rfind("$y$", 0), 0u) << "a yescrypt hash, not the password";
  tmux.type("");
  tmux.type("0");
  ASSERT_TRUE(tmux.waitFor("console-exit=0")) << tmux.screen();

  Tmux again("ferry-console-again-" + std::to_string(::getpid()));
  ASSERT_TRUE(again.start(cmd + "; echo console-exit=$?; sleep 30"));
  ASSERT_TRUE(again.waitFor("Console password:")) << again.screen();
  again.type("wrong-password");
  ASSERT_TRUE(again.waitFor("Wrong password.")) << again.screen();
  again.type("console-pass-1");
  ASSERT_TRUE(again.waitFor("Ferry gateway console")) << again.screen();
  again.type("0");
  ASSERT_TRUE(again.waitFor("console-exit=0")) << again.screen();

  Tmux locked("ferry-console-locked-" + std::to_string(::getpid()));
  ASSERT_TRUE(locked.start(cmd + "; echo console-exit=$?; sleep 30"));
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(locked.waitFor("Console password:")) << locked.screen();
    locked.markNow();
    locked.type("not-it-" + std::to_string(i));
  }
  ASSERT_TRUE(locked.waitFor("console-exit=1")) << locked.screen();
}

}  // namespace
