#include "system_actions.h"

#include <Poco/Net/DNS.h>
#include <Poco/Net/NetException.h>
#include <Poco/Net/NetworkInterface.h>
#include <Poco/Net/StreamSocket.h>
#include <Poco/URI.h>
#include <crypt.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "activation.h"  // writeFileAtomically
#include "child_process.h"
#include "ctl_client.h"

namespace ferry::console {

using json = nlohmann::json;

namespace {

constexpr const char* kNetworkFile = "/10-ferry.network";
constexpr const char* kMatch = "[Match]\nName=en* eth*\n\n";

std::string readAll(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::string trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t\r"), b = s.find_last_not_of(" \t\r");
  return a == std::string::npos ? std::string() : s.substr(a, b - a + 1);
}

// The key of a "key = value" line ("" for comments and other lines).
std::string keyOf(const std::string& line) {
  std::string t = trim(line);
  size_t eq = t.find('=');
  if (t.empty() || t[0] == '#' || t[0] == '!' || eq == std::string::npos) return "";
  return trim(t.substr(0, eq));
}

// A key's value in a properties file: the last line that sets it wins, as in Poco.
std::string property(const std::string& text, const std::string& key) {
  std::istringstream in(text);
  std::string value;
  for (std::string line; std::getline(in, line);) {
    if (keyOf(line) == key) value = trim(line.substr(line.find('=') + 1));
  }
  return value;
}

}  // namespace

std::string SystemActions::providerSetting(const std::string& key) {
  std::string v = property(readAll(p_.etc + "/provider.properties"), key);
  return v.empty() ? property(readAll(p_.etc + "/agent.properties"), key) : v;
}

std::string SystemActions::networkSummary() {
  std::ostringstream out;
  std::string file = readAll(p_.networkDir + kNetworkFile);
  out << "Mode: " << (file.find("DHCP=yes") != std::string::npos || file.empty() ? "DHCP" : "static") << "\n";
  try {
    for (const auto& i : Poco::Net::NetworkInterface::list()) {
      if (i.isLoopback()) continue;
      std::string a = i.address().toString();
      if (a.rfind("fe80", 0) == 0) continue;
      out << "  " << i.name() << "  " << a << (i.isUp() ? "" : "  (down)") << "\n";
    }
  } catch (const Poco::Exception& e) {
    out << "  (cannot list the interfaces: " << e.displayText() << ")\n";
  }
  return out.str();
}

Status SystemActions::writeNetwork(const std::string& networkSection) {
  if (Status s = agent::writeFileAtomically(p_.networkDir + kNetworkFile, std::string(kMatch) + networkSection, 0644); !s) return s;
  auto r = agent::runCommand({p_.systemctl, "restart", "systemd-networkd.service"}, 60);
  return r ? Status::ok() : r.status();
}

Status SystemActions::useDhcp() {
  return writeNetwork("[Network]\nDHCP=yes\n");
}

Status SystemActions::useStatic(const StaticAddress& a) {
  std::string section = "[Network]\nAddress=" + a.address + "\nGateway=" + a.gateway + "\n";
  for (const auto& d : a.dns) section += "DNS=" + d + "\n";
  return writeNetwork(section);
}

std::string SystemActions::testProvider() {
  std::ostringstream out;
  std::string endpoint = providerEndpoint();
  if (endpoint.empty()) return "No provider endpoint is set (5 sets it).\n";
  out << "Provider: " << endpoint << "\n";
  Poco::URI uri;
  try {
    uri = Poco::URI(endpoint);
  } catch (const Poco::Exception& e) {
    return out.str() + "  FAIL the endpoint is not a URL: " + e.displayText() + "\n";
  }
  std::string host = uri.getHost();
  try {
    auto entry = Poco::Net::DNS::resolve(host);
    out << "  ok   name " << host << " → " << (entry.addresses().empty() ? "?" : entry.addresses()[0].toString())
        << "\n";
  } catch (const Poco::Exception& e) {
    return out.str() + "  FAIL name " + host + " does not resolve: " + e.displayText() + "\n";
  }
  try {
    Poco::Net::StreamSocket s;
    s.connect(Poco::Net::SocketAddress(host, uri.getPort()), Poco::Timespan(5, 0));
    out << "  ok   TCP " << host << ":" << uri.getPort() << "\n";
  } catch (const Poco::Exception& e) {
    return out.str() + "  FAIL TCP " + host + ":" + std::to_string(uri.getPort()) + ": " + e.displayText() + "\n";
  }
  auto client = control::ApiClient::make(endpoint, providerSetting("provider.ca"));
  if (!client) return out.str() + "  FAIL TLS settings: " + client.status().message() + "\n";
  client.value().setTimeoutSeconds(10);
  auto health = client.value().call("GET", "/healthz");
  if (!health) return out.str() + "  FAIL TLS and HTTPS: " + health.status().message() + "\n";
  out << "  ok   TLS (certificate trusted) and HTTPS: the provider answers (server "
      << health.value().value("server", std::string("?")) << ")\n";
  return out.str();
}

bool SystemActions::agentAnswers() {
  auto client = control::ApiClient::make(p_.page, "");
  if (!client) return false;
  client.value().setTimeoutSeconds(2);
  return static_cast<bool>(client.value().call("GET", "/status.json"));
}

std::string SystemActions::agentStatus() {
  auto client = control::ApiClient::make(p_.page, "");
  if (!client) return "Cannot reach the gateway agent: " + client.status().message() + "\n";
  client.value().setTimeoutSeconds(5);
  auto st = client.value().call("GET", "/status.json");
  if (!st) return "The gateway agent does not answer on " + p_.page + " (" + st.status().message() + "); see its logs (4).\n";
  const json& s = st.value();
  std::ostringstream out;
  std::string stage = s.value("stage", "");
  out << "Stage: " << stage << "\n";
  if (!s.value("activation_key", "").empty()) {
    out << "Activation key: " << s.value("activation_key", "") << "\n"
        << "  Claim it in the provider's console, or: ferryctl gateway activate KEY --name NAME\n";
  }
  const json& gw = s.value("gateway", json::object());
  if (!gw.value("id", "").empty()) out << "Gateway: " << gw.value("name", "") << " (" << gw.value("id", "") << ")\n";
  out << "Provider: " << s.value("provider", "") << "\n";
  if (s.contains("channel") && s["channel"].is_object()) {
    out << "Channel to the provider: " << (s["channel"].value("connected", false) ? "up" : "down") << "\n";
  }
  if (!s.value("last_error", "").empty()) out << "Last error: " << s.value("last_error", "") << "\n";
  out << "Activation page on this network:";
  try {
    for (const auto& i : Poco::Net::NetworkInterface::list()) {
      std::string a = i.address().toString();
      if (i.isLoopback() || !i.isUp() || a.find(':') != std::string::npos) continue;
      out << " http://" << a << "/";
    }
  } catch (const Poco::Exception&) {
  }
  out << "\n";
  return out.str();
}

std::string SystemActions::logs(int lines) {
  auto r = agent::runCommand({p_.journalctl, "-u", p_.service, "-u", "ferry-firstboot.service", "-n",
                              std::to_string(lines), "--no-pager"},
                             30);
  return r ? r.value() : "Cannot read the logs: " + r.status().message() + "\n";
}

Status SystemActions::restartServices() {
  auto r = agent::runCommand({p_.systemctl, "restart", p_.service}, 240);
  return r ? Status::ok() : r.status();
}

bool SystemActions::passwordSet() {
  std::string h = readAll(p_.etc + "/console.passwd");
  return !h.empty() && h[0] == '$';
}

bool SystemActions::checkPassword(const std::string& password) {
  std::string stored = readAll(p_.etc + "/console.passwd");
  while (!stored.empty() && stored.back() == '\n') stored.pop_back();
  if (stored.empty()) return false;
  crypt_data data{};
  const char* h = ::crypt_r(password.c_str(), stored.c_str(), &data);
  return h != nullptr && h[0] == '$' && stored == h;
}

Status SystemActions::setPassword(const std::string& password) {
  char salt[CRYPT_GENSALT_OUTPUT_SIZE];
  if (::crypt_gensalt_rn("$y$", 0, nullptr, 0, salt, sizeof salt) == nullptr) {
    return Status::ioError(std::string("cannot make a salt: ") + std::strerror(errno));
  }
  crypt_data data{};
  const char* h = ::crypt_r(password.c_str(), salt, &data);
  if (h == nullptr || h[0] != '$') return Status::ioError("cannot hash the password");
  return agent::writeFileAtomically(p_.etc + "/console.passwd", std::string(h) + "\n", 0600);
}

std::string SystemActions::providerEndpoint() {
  return providerSetting("provider.endpoint");
}

Status SystemActions::setProviderEndpoint(const std::string& url) {
  std::string path = p_.etc + "/provider.properties";
  std::istringstream in(readAll(path));
  std::string out;
  bool replaced = false;
  for (std::string line; std::getline(in, line);) {
    if (keyOf(line) == "provider.endpoint") {
      if (!replaced) out += "provider.endpoint = " + url + "\n";
      replaced = true;
      continue;
    }
    out += line + "\n";
  }
  if (!replaced) out += "provider.endpoint = " + url + "\n";
  return agent::writeFileAtomically(path, out, 0644);
}

}  // namespace ferry::console
