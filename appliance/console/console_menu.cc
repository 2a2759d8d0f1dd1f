#include "console_menu.h"

#include <arpa/inet.h>
#include <termios.h>
#include <unistd.h>

#include <chrono>
#include <iostream>
#include <thread>
#include <sstream>

namespace ferry::console {

namespace {

std::string trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t\r\n"), b = s.find_last_not_of(" \t\r\n");
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

}  // namespace

std::optional<std::string> Terminal::line(const std::string& prompt) {
  out_ << prompt << std::flush;
  std::string l;
  if (!std::getline(in_, l)) return std::nullopt;
  return trim(l);
}

std::optional<std::string> Terminal::secret(const std::string& prompt) {
  termios before{};
  bool hidden = echoControl_ && ::tcgetattr(STDIN_FILENO, &before) == 0;
  if (hidden) {
    termios quiet = before;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    ::tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
  }
  out_ << prompt << std::flush;
  std::string l;
  bool got = static_cast<bool>(std::getline(in_, l));
  if (hidden) {
    ::tcsetattr(STDIN_FILENO, TCSANOW, &before);
    out_ << "\n";
  }
  if (!got) return std::nullopt;
  while (!l.empty() && (l.back() == '\r' || l.back() == '\n')) l.pop_back();
  return l;
}

Status checkIpv4(const std::string& text) {
  // inet_pton's dotted quad: no leading zeros, which systemd-networkd would refuse.
  in_addr a{};
  if (::inet_pton(AF_INET, text.c_str(), &a) != 1) {
    return Status::invalid("'" + text + "' is not an IPv4 address (like 192.0.2.1)");
  }
  return Status::ok();
}

Status checkCidr(const std::string& text) {
  size_t slash = text.find('/');
  if (slash == std::string::npos) return Status::invalid("give the address with its prefix, like 192.0.2.10/24");
  if (Status s = checkIpv4(text.substr(0, slash)); !s) return s;
  std::string prefix = text.substr(slash + 1);
  if (prefix.empty() || prefix.size() > 2 || prefix.find_first_not_of("0123456789") != std::string::npos ||
      std::stoi(prefix) < 1 || std::stoi(prefix) > 32) {
    return Status::invalid("the prefix after / must be 1 to 32");
  }
  return Status::ok();
}

Status checkProviderUrl(const std::string& text) {
  if (text.rfind("https://", 0) != 0 || text.size() <= 8) {
    return Status::invalid("the provider endpoint is an https:// URL, like https://provider.example:8443");
  }
  for (char c : text) {
    if (c <= ' ' || c == '"' || c == '\\') return Status::invalid("the URL may not hold spaces or quotes");
  }
  return Status::ok();
}

bool ConsoleMenu::gate() {
  if (!act_.passwordSet()) return true;
  for (int tries = 0; tries < 3; ++tries) {
    auto p = term_.secret("Console password: ");
    if (!p) return false;
    if (act_.checkPassword(*p)) return true;
    term_.out() << "Wrong password.\n";
  }
  return false;
}

std::optional<std::string> ConsoleMenu::ask(const std::string& prompt, Status (*check)(const std::string&)) {
  for (;;) {
    auto answer = term_.line(prompt);
    if (!answer) return std::nullopt;
    Status s = check(*answer);
    if (s) return answer;
    term_.out() << s.message() << "\n";
  }
}

void ConsoleMenu::pause() {
  (void)term_.line("\nPress Enter to go back to the menu. ");
}

void ConsoleMenu::network() {
  term_.out() << "\n" << act_.networkSummary() << "\n";
  auto choice = term_.line("1) DHCP   2) Static address   0) Back\nChoice: ");
  if (!choice || *choice == "0" || choice->empty()) return;
  if (*choice == "1") {
    Status s = act_.useDhcp();
    term_.out() << (s ? "The network now uses DHCP.\n" : "Could not switch to DHCP: " + s.message() + "\n");
    return;
  }
  if (*choice != "2") {
    term_.out() << "No such choice: " << *choice << "\n";
    return;
  }
  StaticAddress a;
  auto address = ask("Address with prefix (192.0.2.10/24): ", checkCidr);
  if (!address) return;
  auto gateway = ask("Default gateway: ", checkIpv4);
  if (!gateway) return;
  a.address = *address;
  a.gateway = *gateway;
  auto dns = term_.line("DNS servers (space-separated, empty for none): ");
  if (!dns) return;
  std::istringstream words(*dns);
  for (std::string w; words >> w;) {
    if (Status s = checkIpv4(w); !s) {
      term_.out() << s.message() << "; nothing changed.\n";
      return;
    }
    a.dns.push_back(w);
  }
  Status s = act_.useStatic(a);
  term_.out() << (s ? "The network now uses " + a.address + " via " + a.gateway + ".\n"
                    : "Could not set the address: " + s.message() + "\n");
}

void ConsoleMenu::password() {
  auto one = term_.secret("New console password (8 characters or more): ");
  if (!one) return;
  if (one->size() < 8) {
    term_.out() << "Too short; nothing changed.\n";
    return;
  }
  auto two = term_.secret("Again: ");
  if (!two) return;
  if (*one != *two) {
    term_.out() << "The two differ; nothing changed.\n";
    return;
  }
  Status s = act_.setPassword(*one);
  term_.out() << (s ? "Console password set.\n" : "Could not set it: " + s.message() + "\n");
}

void ConsoleMenu::provider() {
  term_.out() << "\nProvider endpoint now: "
              << (act_.providerEndpoint().empty() ? "(not set)" : act_.providerEndpoint()) << "\n";
  auto url = term_.line("New endpoint (empty keeps it): ");
  if (!url || url->empty()) return;
  if (Status s = checkProviderUrl(*url); !s) {
    term_.out() << s.message() << "; nothing changed.\n";
    return;
  }
  Status s = act_.setProviderEndpoint(*url);
  term_.out() << (s ? "Provider endpoint set; restart the services (6) to use it.\n"
                    : "Could not set it: " + s.message() + "\n");
}

int ConsoleMenu::run() {
  if (!gate()) {
    term_.out() << "Goodbye.\n";
    return 1;
  }
  // What a new appliance's console must show first: its activation key and page.
  for (int waited = 0; waited < waitAgent_ && !act_.agentAnswers(); waited += 2) {
    if (waited == 0) term_.out() << "\nWaiting for the gateway agent to start..." << std::endl;
    std::this_thread::sleep_for(std::chrono::seconds(2));
  }
  term_.out() << "\n" << act_.agentStatus();
  for (;;) {
    term_.out() << "\n"
                   "  Ferry gateway console\n"
                   "  ---------------------\n"
                   "  1) Network configuration\n"
                   "  2) Test connectivity to the provider\n"
                   "  3) Activation key and gateway status\n"
                   "  4) Gateway logs\n"
                   "  5) Set the provider endpoint\n"
                   "  6) Restart the gateway services\n"
                   "  7) Set the console password\n"
                   "  0) Exit\n";
    auto choice = term_.line("\nChoice: ");
    if (!choice || *choice == "0") return 0;
    if (*choice == "1") {
      network();
    } else if (*choice == "2") {
      term_.out() << "\n" << act_.testProvider();
    } else if (*choice == "3") {
      term_.out() << "\n" << act_.agentStatus();
    } else if (*choice == "4") {
      term_.out() << "\n" << act_.logs(40);
    } else if (*choice == "5") {
      provider();
    } else if (*choice == "6") {
      Status s = act_.restartServices();
      term_.out() << (s ? "The gateway services restarted.\n" : "Could not restart them: " + s.message() + "\n");
    } else if (*choice == "7") {
      password();
    } else if (!choice->empty()) {
      term_.out() << "No such choice: " << *choice << "\n";
      continue;
    } else {
      continue;
    }
    pause();
  }
}

}  // namespace ferry::console
