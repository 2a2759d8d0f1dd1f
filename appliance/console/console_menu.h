#pragma once
// The appliance's serial console (docs/console-menu.md): a numbered menu, read a line
// at a time (a serial line has no cursor keys to count on), like AWS's gateway console:
// network (DHCP or static), test the provider, the activation key and status, the
// gateway's logs, restart its services, set the console password, set the provider.
// What each entry does to the machine is behind Actions; the menu only talks.

#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "ferry/status.h"

namespace ferry::console {

struct StaticAddress {
  std::string address;  // CIDR: 192.0.2.10/24
  std::string gateway;
  std::vector<std::string> dns;
};

class Actions {
 public:
  virtual ~Actions() = default;
  virtual std::string networkSummary() = 0;  // interfaces, addresses, the mode
  virtual Status useDhcp() = 0;
  virtual Status useStatic(const StaticAddress& a) = 0;
  virtual std::string testProvider() = 0;   // a report, line by line
  virtual std::string agentStatus() = 0;    // stage, activation key, gateway, channel
  virtual bool agentAnswers() = 0;          // its local page is up
  virtual std::string logs(int lines) = 0;
  virtual Status restartServices() = 0;
  virtual bool passwordSet() = 0;
  virtual bool checkPassword(const std::string& password) = 0;
  virtual Status setPassword(const std::string& password) = 0;
  virtual std::string providerEndpoint() = 0;
  virtual Status setProviderEndpoint(const std::string& url) = 0;
};

// Reads lines; hides what is typed for passwords when the input is a terminal.
class Terminal {
 public:
  Terminal(std::istream& in, std::ostream& out, bool echoControl) : in_(in), out_(out), echoControl_(echoControl) {}
  std::optional<std::string> line(const std::string& prompt);
  std::optional<std::string> secret(const std::string& prompt);
  std::ostream& out() { return out_; }

 private:
  std::istream& in_;
  std::ostream& out_;
  bool echoControl_;
};

// Validation the menu does before it asks Actions for anything.
Status checkCidr(const std::string& text);
Status checkIpv4(const std::string& text);
Status checkProviderUrl(const std::string& text);

class ConsoleMenu {
 public:
  // waitAgentSeconds: at start, how long to wait for the agent (the console starts at
  // boot, before it) so that the first thing shown is the activation key.
  ConsoleMenu(Terminal& term, Actions& actions, int waitAgentSeconds = 60)
      : term_(term), act_(actions), waitAgent_(waitAgentSeconds) {}
  // The password gate (when one is set), then the menu until "0" or end of input.
  // Returns 0, or 1 when the password was wrong three times.
  int run();

 private:
  bool gate();
  void network();
  void password();
  void provider();
  void pause();
  // Asks until the answer passes check (end of input: nullopt).
  std::optional<std::string> ask(const std::string& prompt, Status (*check)(const std::string&));

  Terminal& term_;
  Actions& act_;
  int waitAgent_;
};

}  // namespace ferry::console
