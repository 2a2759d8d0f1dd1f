// ferryctl: the command line of the provider API (docs/ferryctl.md).
//
//   ferryctl [--endpoint URL] [--ca FILE] [--output text|json] COMMAND ...
//
// Exit status: 0 done, 1 the API or the connection said no (the message says why),
// 2 the command line was wrong.

#include <Poco/Net/SSLManager.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "ctl_client.h"
#include "ctl_text.h"

namespace {

using json = nlohmann::json;
using ferry::Status;
using ferry::control::ApiClient;
using ferry::control::CtlCommand;
using ferry::control::kExitApi;
using ferry::control::kExitUsage;
using ferry::control::table;
using ferry::control::UsageError;
using ferry::control::when;

const char* kUsage = R"(usage: ferryctl [--endpoint URL] [--ca FILE] [--output text|json] COMMAND

account
  signup EMAIL [--password-stdin]     make an account
  login EMAIL [--password-stdin]      log in; keeps an API token in the config
  logout                              revoke that token and forget it
  whoami                              the account logged in
tokens
  token list | token create NAME | token revoke ID
gateways
  gateway list
  gateway show ID
  gateway activate KEY --name NAME [--timezone TZ]
  gateway rename ID NAME
  gateway delete ID
  gateway purge ID [--via GATEWAY] [--wait]
                                      a lost gateway: another one (online, or --via)
                                      deletes its volumes and snapshots from the store,
                                      then its record goes
volumes (a change is a request to the gateway; --wait waits for its answer)
  volume list GATEWAY
  volume show GATEWAY NAME
  volume create GATEWAY [NAME] --size SIZE [--chunk-size SIZE] [--wait]
                                      sizes as 10G, 256M (default chunk 1M)
  volume create GATEWAY [NAME] --from-snapshot SNAPSHOT [--size SIZE] [--wait]
  volume create GATEWAY [NAME] --from GATEWAY2/VOLUME [--size SIZE] [--wait]
                                      made from a snapshot, or from the newest recovery
                                      point of a volume (a clone, or the recovery of a
                                      lost gateway's volume); readable at once
  volume delete GATEWAY NAME [--wait]
  volume chap GATEWAY NAME --initiator-user U --initiator-secret S|- [--target-user U
         --target-secret S|-] [--wait]    iSCSI CHAP (mutual with a target user); "-" reads
                                          the secret from stdin; --off turns CHAP off
snapshots
  snapshot list GATEWAY [VOLUME]
  snapshot create GATEWAY VOLUME [--wait]
  snapshot delete GATEWAY SNAPSHOT [--wait]
  snapshot schedule GATEWAY VOLUME [--every HOURS --keep K | --off]
                                      a snapshot every HOURS, keeping the last K it took
requests (the history of what was asked of a gateway)
  request list GATEWAY [--limit N]
  request show ID
  request wait ID [--timeout SECONDS]
  request send GATEWAY gateway.describe|gateway.shutdown [--wait]
bandwidth limits (to and from the object store, in the gateway's time zone)
  bandwidth show GATEWAY
  bandwidth set GATEWAY [--upload RATE] [--download RATE] [--schedule "DAYS HH:MM-HH:MM [up=RATE] [down=RATE]"]...
                                      RATE: bytes per second (512K, 10M; 0 = none); DAYS: mon-fri,
                                      sat,sun, daily; --schedule repeats; set with nothing = no limits
metrics (reported by the gateway every minute)
  metrics GATEWAY [--volume NAME | --all] [--since DURATION] (1h, 30m, 2d; default 1h)
--wait and request wait give up after --timeout (60) seconds; a failed request exits 1.

--endpoint and --ca are remembered by login. FERRY_TOKEN, if set, is the API token
to use (one made with "token create" or in the console) instead of the login's. The config lives in
$FERRY_CONFIG_DIR, else $XDG_CONFIG_HOME/ferry, else ~/.config/ferry.
)";

std::string configDir() {
  if (const char* d = std::getenv("FERRY_CONFIG_DIR"); d && *d) return d;
  if (const char* x = std::getenv("XDG_CONFIG_HOME"); x && *x) return std::string(x) + "/ferry";
  const char* home = std::getenv("HOME");
  return std::string(home ? home : ".") + "/.config/ferry";
}

json loadConfig() {
  std::ifstream f(configDir() + "/config.json");
  if (!f) return json::object();
  json j = json::parse(f, nullptr, false);
  return j.is_object() ? j : json::object();
}

Status saveConfig(const json& j) {
  std::string dir = configDir();
  std::string parent = dir.substr(0, dir.rfind('/'));
  ::mkdir(parent.c_str(), 0700);
  ::mkdir(dir.c_str(), 0700);
  std::string path = dir + "/config.json", tmp = path + ".tmp";
  {
    std::ofstream f(tmp);
    if (!f) return Status::ioError("cannot write " + tmp);
    f << j.dump(2) << "\n";
  }
  ::chmod(tmp.c_str(), 0600);  // it holds a token
  if (::rename(tmp.c_str(), path.c_str()) != 0) return Status::ioError("cannot write " + path);
  return Status::ok();
}

std::string readPassword(bool fromStdin) {
  std::string pw;
  if (!fromStdin && isatty(STDIN_FILENO)) {
    std::cerr << "password: " << std::flush;
    termios old{};
    tcgetattr(STDIN_FILENO, &old);
    termios quiet = old;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
    std::getline(std::cin, pw);
    tcsetattr(STDIN_FILENO, TCSANOW, &old);
    std::cerr << "\n";
  } else {
    std::getline(std::cin, pw);
  }
  return pw;
}

void showGateway(const json& g) {
  std::cout << "id:            " << g.value("id", "") << "\n"
            << "name:          " << g.value("name", "") << "\n"
            << "online:        " << (g.value("online", false) ? "yes" : "no") << "\n"
            << "last seen:     " << when(g.value("last_seen_at", int64_t{0})) << "\n"
            << "hostname:      " << g.value("hostname", "") << "\n"
            << "version:       " << g.value("software_version", "") << "\n"
            << "time zone:     " << g.value("timezone", "") << "\n"
            << "addresses:     ";
  std::string sep;
  for (const auto& a : g.value("addresses", json::array())) {
    std::cout << sep << a.get<std::string>();
    sep = ", ";
  }
  std::cout << "\n"
            << "key:           " << g.value("key_fingerprint", "") << "\n"
            << "activated:     " << when(g.value("created_at", int64_t{0})) << " UTC\n";
}

class Ctl {
 public:
  Ctl(std::vector<std::string> args) : args_(std::move(args)) {}

  int run() {
    std::string endpointFlag, caFlag;
    for (size_t i = 0; i < args_.size();) {
      const std::string& a = args_[i];
      auto value = [&](const char* flag) {
        if (i + 1 >= args_.size()) throw UsageError{std::string(flag) + " needs a value"};
        std::string v = args_[i + 1];
        args_.erase(args_.begin() + static_cast<long>(i), args_.begin() + static_cast<long>(i) + 2);
        return v;
      };
      if (a == "--endpoint")
        endpointFlag = value("--endpoint");
      else if (a == "--ca")
        caFlag = value("--ca");
      else if (a == "--output")
        output_ = value("--output");
      else if (a == "--password-stdin") {
        passwordStdin_ = true;
        args_.erase(args_.begin() + static_cast<long>(i));
      } else if (a == "-h" || a == "--help") {
        std::cout << kUsage;
        return 0;
      } else
        ++i;
    }
    if (output_ != "text" && output_ != "json") throw UsageError{"--output is text or json"};
    if (args_.empty()) throw UsageError{"no command"};
    config_ = loadConfig();
    endpoint_ = !endpointFlag.empty() ? endpointFlag : config_.value("endpoint", "https://localhost:8443");
    ca_ = !caFlag.empty() ? caFlag : config_.value("ca", "");
    auto client = ApiClient::make(endpoint_, ca_);
    if (!client) return fail(client.status());
    client_.emplace(std::move(client).value());
    // An API token from the environment (scripts, CI) comes before the login's.
    const char* envToken = std::getenv("FERRY_TOKEN");
    client_->setToken(envToken && *envToken ? envToken : config_.value("token", ""));
    return dispatch();
  }

 private:
  const std::string& arg(size_t i, const char* what) {
    if (i >= args_.size()) throw UsageError{std::string("missing ") + what};
    return args_[i];
  }
  std::string option(const std::string& flag, const std::string& fallback = "") {
    for (size_t i = 0; i + 1 < args_.size(); ++i) {
      if (args_[i] == flag) return args_[i + 1];
    }
    return fallback;
  }
  int fail(const Status& s) {
    std::cerr << "ferryctl: " << s.message() << "\n";
    if (s.code() == ferry::Code::kPermissionDenied && config_.value("token", "").empty()) {
      std::cerr << "ferryctl: not logged in: ferryctl login EMAIL\n";
    }
    return kExitApi;
  }
  // Prints the JSON (--output json) or calls the human printer.
  template <typename F>
  int print(const json& j, F human) {
    if (output_ == "json")
      std::cout << j.dump(2) << "\n";
    else
      human();
    return 0;
  }

  int dispatch() {
    const std::string& cmd = args_[0];
    if (cmd == "signup") {
      std::string email = arg(1, "EMAIL");
      auto r = client_->call("POST", "/v1/signup", {{"email", email}, {"password", readPassword(passwordStdin_)}});
      if (!r) return fail(r.status());
      return print(r.value(), [&] {
        std::cout << "account " << r.value()["account"]["id"].get<std::string>() << " made for " << email
                  << "; now: ferryctl login " << email << "\n";
      });
    }
    if (cmd == "login") {
      std::string email = arg(1, "EMAIL");
      auto session = client_->call("POST", "/v1/login", {{"email", email}, {"password", readPassword(passwordStdin_)}});
      if (!session) return fail(session.status());
      client_->setToken(session.value()["token"]);
      char host[256] = "host";
      gethostname(host, sizeof host - 1);
      auto tok = client_->call("POST", "/v1/tokens", {{"name", std::string("ferryctl on ") + host}});
      if (!tok) return fail(tok.status());
      config_["endpoint"] = endpoint_;
      config_["ca"] = ca_;
      config_["email"] = email;
      config_["token"] = tok.value()["token"];
      config_["token_id"] = tok.value()["info"]["id"];
      if (Status s = saveConfig(config_); !s) return fail(s);
      json shown = {{"email", email}, {"endpoint", endpoint_}, {"token_id", config_["token_id"]}};
      return print(shown, [&] { std::cout << "logged in to " << endpoint_ << " as " << email << "\n"; });
    }
    if (cmd == "logout") {
      std::string id = config_.value("token_id", "");
      if (!id.empty()) {
        auto r = client_->call("DELETE", "/v1/tokens/" + id);
        if (!r && r.status().code() != ferry::Code::kPermissionDenied) return fail(r.status());
      }
      config_.erase("token");
      config_.erase("token_id");
      if (Status s = saveConfig(config_); !s) return fail(s);
      return print(json{{"ok", true}}, [] { std::cout << "logged out\n"; });
    }
    if (cmd == "whoami") {
      auto r = client_->call("GET", "/v1/me");
      if (!r) return fail(r.status());
      return print(r.value(), [&] {
        std::cout << r.value()["account"]["email"].get<std::string>() << " ("
                  << r.value()["account"]["id"].get<std::string>() << ")\n";
      });
    }
    if (cmd == "token") return tokens();
    if (cmd == "gateway") return gateways();
    if (cmd == "volume") return ferry::control::volumeCommand(CtlCommand{*client_, args_, output_});
    if (cmd == "snapshot") return ferry::control::snapshotCommand(CtlCommand{*client_, args_, output_});
    if (cmd == "bandwidth") return ferry::control::bandwidthCommand(CtlCommand{*client_, args_, output_});
    if (cmd == "metrics") return ferry::control::metricsCommand(CtlCommand{*client_, args_, output_});
    if (cmd == "request") return ferry::control::requestCommand(CtlCommand{*client_, args_, output_});
    throw UsageError{"unknown command '" + cmd + "'"};
  }

  int tokens() {
    const std::string& sub = arg(1, "token list|create|revoke");
    if (sub == "list") {
      auto r = client_->call("GET", "/v1/tokens");
      if (!r) return fail(r.status());
      return print(r.value(), [&] {
        std::vector<std::vector<std::string>> rows;
        for (const auto& t : r.value()["tokens"]) {
          rows.push_back({t["id"], t["kind"], t["name"], when(t["created_at"]), when(t["expires_at"])});
        }
        table({"ID", "KIND", "NAME", "CREATED (UTC)", "EXPIRES (UTC)"}, rows);
      });
    }
    if (sub == "create") {
      auto r = client_->call("POST", "/v1/tokens", {{"name", arg(2, "NAME")}});
      if (!r) return fail(r.status());
      return print(r.value(), [&] {
        std::cout << r.value()["token"].get<std::string>() << "\n";
        std::cerr << "(token " << r.value()["info"]["id"].get<std::string>()
                  << "; shown only now: keep it somewhere safe)\n";
      });
    }
    if (sub == "revoke") {
      auto r = client_->call("DELETE", "/v1/tokens/" + arg(2, "ID"));
      if (!r) return fail(r.status());
      return print(json{{"ok", true}}, [&] { std::cout << "revoked " << args_[2] << "\n"; });
    }
    throw UsageError{"unknown token command '" + sub + "'"};
  }

  int gateways() {
    const std::string& sub = arg(1, "gateway list|show|activate|rename|delete");
    if (sub == "list") {
      auto r = client_->call("GET", "/v1/gateways");
      if (!r) return fail(r.status());
      return print(r.value(), [&] {
        std::vector<std::vector<std::string>> rows;
        for (const auto& g : r.value()["gateways"]) {
          rows.push_back({g["id"], g["name"], g.value("online", false) ? "online" : "offline", when(g["last_seen_at"]),
                          g["software_version"]});
        }
        table({"ID", "NAME", "STATE", "LAST SEEN (UTC)", "VERSION"}, rows);
      });
    }
    if (sub == "show") {
      auto r = client_->call("GET", "/v1/gateways/" + arg(2, "ID"));
      if (!r) return fail(r.status());
      return print(r.value(), [&] { showGateway(r.value()["gateway"]); });
    }
    if (sub == "activate") {
      std::string key = arg(2, "KEY");
      std::string name = option("--name");
      if (name.empty()) throw UsageError{"gateway activate KEY --name NAME"};
      auto r = client_->call("POST", "/v1/gateways/activate",
                             {{"activation_key", key}, {"name", name}, {"timezone", option("--timezone", "UTC")}});
      if (!r) return fail(r.status());
      return print(r.value(), [&] {
        std::cout << "activated " << r.value()["gateway"]["id"].get<std::string>() << " (" << name << ")\n";
      });
    }
    if (sub == "rename") {
      auto r = client_->call("PATCH", "/v1/gateways/" + arg(2, "ID"), {{"name", arg(3, "NAME")}});
      if (!r) return fail(r.status());
      return print(r.value(), [&] { std::cout << "renamed " << args_[2] << " to " << args_[3] << "\n"; });
    }
    if (sub == "purge") return ferry::control::gatewayPurgeCommand(CtlCommand{*client_, args_, output_});
    if (sub == "delete") {
      auto r = client_->call("DELETE", "/v1/gateways/" + arg(2, "ID"));
      if (!r) return fail(r.status());
      return print(json{{"ok", true}}, [&] { std::cout << "deleted " << args_[2] << "\n"; });
    }
    throw UsageError{"unknown gateway command '" + sub + "'"};
  }

  std::vector<std::string> args_;
  std::string output_ = "text";
  bool passwordStdin_ = false;
  json config_;
  std::string endpoint_, ca_;
  std::optional<ApiClient> client_;
};

}  // namespace

int main(int argc, char** argv) {
  Poco::Net::initializeSSL();
  int rc;
  try {
    rc = Ctl(std::vector<std::string>(argv + 1, argv + argc)).run();
  } catch (const UsageError& e) {
    std::cerr << "ferryctl: " << e.message << "\n" << kUsage;
    rc = kExitUsage;
  } catch (const std::exception& e) {
    std::cerr << "ferryctl: " << e.what() << "\n";
    rc = kExitApi;
  }
  Poco::Net::uninitializeSSL();
  return rc;
}
