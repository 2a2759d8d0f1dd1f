// ferryctl volume …, snapshot …, request …: what a gateway holds and what is asked of
// it. Every change is a request the provider sends the gateway; --wait follows it to
// its answer.

#include <chrono>
#include <string>
#include <thread>

#include "crypto.h"
#include "ctl_text.h"

namespace ferry::control {

using json = nlohmann::json;

namespace {

std::string millisWhen(const json& j, const char* key) {
  return when(j.value(key, int64_t{0}) / 1000);
}

void showRequest(const json& r) {
  std::cout << "id:         " << r.value("id", "") << "\n"
            << "gateway:    " << r.value("gateway_id", "") << "\n"
            << "operation:  " << r.value("op", "") << " " << r.value("args", json::object()).dump() << "\n"
            << "state:      " << r.value("state", "") << "\n"
            << "attempts:   " << r.value("attempts", 0) << "\n"
            << "created:    " << millisWhen(r, "created_at_ms") << " UTC\n"
            << "delivered:  " << millisWhen(r, "delivered_at_ms")
            << (r.value("delivered_by", "").empty() ? "" : " by " + r.value("delivered_by", "")) << "\n"
            << "finished:   " << millisWhen(r, "finished_at_ms") << "\n";
  if (r.contains("result") && !r["result"].is_null()) std::cout << "result:     " << r["result"].dump() << "\n";
  if (r.contains("error") && !r["error"].is_null()) {
    std::cout << "error:      " << r["error"].value("message", r["error"].dump()) << "\n";
  }
}

// Polls a request until it is done or failed (or the timeout): its last JSON.
Result<json> waitFor(const CtlCommand& c, const std::string& id) {
  int timeout = 60;
  try {
    timeout = std::stoi(c.option("--timeout", "60"));
  } catch (...) {
    throw UsageError{"--timeout is a number of seconds"};
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout);
  for (;;) {
    auto r = c.client.call("GET", "/v1/requests/" + id);
    if (!r) return r.status();
    json req = r.value()["request"];
    std::string state = req.value("state", "");
    if (state == "done" || state == "failed") return req;
    if (std::chrono::steady_clock::now() >= deadline) {
      return Status::unavailable("request " + id + " is still " + state + " after " + std::to_string(timeout) +
                                 " s (is the gateway online? ferryctl request show " + id + ")");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

}  // namespace

std::string bytes(int64_t n) {
  static const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  int u = 0;
  double v = static_cast<double>(n);
  while (v >= 1024 && u < 5 && static_cast<int64_t>(v) % 1024 == 0) {
    v /= 1024;
    ++u;
  }
  return std::to_string(static_cast<int64_t>(v)) + " " + units[u];
}

// After a change: with --wait, its outcome (exit 1 if it failed); else what was asked.
int accepted(const CtlCommand& c, const json& answer, const std::string& what) {
  std::string id = answer["request"].value("id", "");
  if (!c.has("--wait")) {
    return c.print(answer, [&] {
      std::cout << what << ": request " << id << " " << answer["request"].value("state", "") << " ("
                << answer["routing"].value("how", "") << "); ferryctl request wait " << id << "\n";
    });
  }
  auto done = waitFor(c, id);
  if (!done) return c.fail(done.status());
  json out = answer;
  out["request"] = done.value();
  bool ok = done.value().value("state", "") == "done";
  c.print(out, [&] {
    if (ok)
      std::cout << what << ": done (request " << id << ")\n";
    else
      std::cout << what << ": failed: " << done.value()["error"].value("message", "") << " (request " << id << ")\n";
  });
  return ok ? 0 : kExitApi;
}

int volumeCommand(const CtlCommand& c) {
  const std::string& sub = c.arg(1, "volume list|show|create|delete|chap");
  if (sub == "list") {
    auto r = c.client.call("GET", "/v1/gateways/" + c.arg(2, "GATEWAY") + "/volumes");
    if (!r) return c.fail(r.status());
    return c.print(r.value(), [&] {
      std::vector<std::vector<std::string>> rows;
      for (const auto& v : r.value()["volumes"]) {
        rows.push_back(
            {v["name"], bytes(v["size"]), bytes(v["chunk_size"]), v["state"], millisWhen(v, "created_at_ms")});
      }
      table({"NAME", "SIZE", "CHUNK", "STATE", "CREATED (UTC)"}, rows);
    });
  }
  if (sub == "show") {
    auto r = c.client.call("GET", "/v1/gateways/" + c.arg(2, "GATEWAY") + "/volumes/" + c.arg(3, "NAME"));
    if (!r) return c.fail(r.status());
    return c.print(r.value(), [&] {
      const json& v = r.value()["volume"];
      std::cout << "name:     " << v.value("name", "") << "\n"
                << "gateway:  " << v.value("gateway_id", "") << "\n"
                << "size:     " << bytes(v.value("size", int64_t{0})) << "\n"
                << "chunk:    " << bytes(v.value("chunk_size", int64_t{0})) << "\n"
                << "state:    " << v.value("state", "") << "\n"
                << "request:  " << v.value("request_id", "") << "\n";
      if (auto src = v.find("source"); src != v.end() && src->is_object()) {
        std::cout << "made from: "
                  << (src->value("recovery_point", false) ? "the newest recovery point of "
                                                          : "snapshot " + src->value("snapshot", "") + " of ")
                  << src->value("volume", "") << " on " << src->value("gateway_id", "") << "\n";
        if (auto used = src->find("used"); used != src->end() && src->value("recovery_point", false)) {
          std::cout << "recovery point: " << used->value("snapshot", "") << ", taken "
                    << when(used->value("created", int64_t{0}));
          if (src->contains("seconds_before_last_seen")) {
            std::cout << ", " << src->value("seconds_before_last_seen", int64_t{0})
                      << " s before its gateway was last seen (writes after it are lost)";
          }
          std::cout << "\n";
        }
      }
      auto iscsi = v.find("iscsi");
      if (iscsi == v.end() || !iscsi->is_object()) return;
      const json& chap = iscsi->value("chap", json::object());
      std::string chapText = !chap.value("enabled", false) ? "off"
                             : chap.value("mutual", false)
                                 ? "mutual (initiator " + chap.value("initiator_user", "") + ", target " +
                                       chap.value("target_user", "") + ")"
                                 : "one-way (initiator " + chap.value("initiator_user", "") + ")";
      std::cout << "iscsi:    " << iscsi->value("target", "") << " (" << iscsi->value("state", "") << ")"
                << (iscsi->value("error", "").empty() ? "" : ": " + iscsi->value("error", "")) << "\n"
                << "chap:     " << chapText;
      std::string asked = iscsi->value("chap_request_state", "");
      if (asked == "failed") {
        std::cout << " — NOT APPLIED, the gateway refused it: " << iscsi->value("chap_request_error", "");
      } else if (asked == "pending" || asked == "delivered") {
        std::cout << " (asked; not applied yet)";
      }
      std::cout << "\n";
      for (const auto& i : iscsi->value("initiators", json::array())) {
        std::cout << "initiator: " << i.value("name", "") << " from " << i.value("address", "") << "\n";
      }
    });
  }
  if (sub == "chap") {
    // Secrets: on the command line, or "-" to read them from stdin (one per line: the
    // initiator's, then the target's), which keeps them out of shell history.
    static const std::vector<std::string> flags = {"--initiator-user", "--initiator-secret", "--target-user",
                                                   "--target-secret",  "--timeout",          "--output"};
    std::string gateway = c.positional(2, flags), name = c.positional(3, flags);
    if (gateway.empty() || name.empty()) {
      throw UsageError{
          "volume chap GATEWAY NAME --initiator-user U --initiator-secret S|- "
          "[--target-user U --target-secret S|-] | --off"};
    }
    std::string path = "/v1/gateways/" + gateway + "/volumes/" + name + "/chap";
    if (c.has("--off")) {
      auto r = c.client.call("DELETE", path);
      if (!r) return c.fail(r.status());
      return accepted(c, r.value(), "CHAP off for " + name);
    }
    auto secret = [&](const std::string& flag) {
      std::string v = c.option(flag);
      if (v == "-" && !std::getline(std::cin, v)) throw UsageError{flag + " -: no line on stdin"};
      return v;
    };
    json body = {{"initiator_user", c.option("--initiator-user")}, {"initiator_secret", secret("--initiator-secret")}};
    if (c.has("--target-user") || c.has("--target-secret")) {
      body["target_user"] = c.option("--target-user");
      body["target_secret"] = secret("--target-secret");
    }
    if (body["initiator_user"] == "") throw UsageError{"volume chap needs --initiator-user (or --off)"};
    auto r = c.client.call("PUT", path, body);
    if (!r) return c.fail(r.status());
    return accepted(c, r.value(), "CHAP for " + name);
  }
  if (sub == "create") {
    static const std::vector<std::string> flags = {"--size", "--chunk-size", "--from-snapshot",
                                                   "--from", "--timeout",    "--output"};
    std::string gateway = c.positional(2, flags);
    if (gateway.empty()) throw UsageError{"volume create GATEWAY [NAME] --size SIZE"};
    std::string name = c.positional(3, flags);
    if (name.empty()) name = "vol-" + randomHex(4);
    std::string size = c.option("--size"), snapshot = c.option("--from-snapshot"), from = c.option("--from");
    if (!snapshot.empty() && !from.empty()) throw UsageError{"volume create takes --from-snapshot or --from, not both"};
    if (size.empty() && snapshot.empty() && from.empty()) {
      throw UsageError{
          "volume create needs --size (e.g. --size 10G), --from-snapshot SNAPSHOT or --from GATEWAY/VOLUME"};
    }
    json body = {{"name", name}};
    if (!size.empty()) body["size"] = size;
    if (std::string chunk = c.option("--chunk-size"); !chunk.empty()) body["chunk_size"] = chunk;
    if (!snapshot.empty()) body["snapshot"] = snapshot;
    if (!from.empty()) {
      size_t slash = from.find('/');
      if (slash == std::string::npos || slash == 0 || slash + 1 == from.size()) {
        throw UsageError{"--from takes GATEWAY/VOLUME, the volume whose newest recovery point to use"};
      }
      body["from"] = {{"gateway_id", from.substr(0, slash)}, {"volume", from.substr(slash + 1)}};
    }
    auto r = c.client.call("POST", "/v1/gateways/" + gateway + "/volumes", body);
    if (!r) return c.fail(r.status());
    return accepted(c, r.value(), "volume " + name + " on " + gateway);
  }
  if (sub == "delete") {
    std::string name = c.arg(3, "NAME");
    auto r = c.client.call("DELETE", "/v1/gateways/" + c.arg(2, "GATEWAY") + "/volumes/" + name);
    if (!r) return c.fail(r.status());
    return accepted(c, r.value(), "delete volume " + name);
  }
  throw UsageError{"unknown volume command '" + sub + "'"};
}

int gatewayPurgeCommand(const CtlCommand& c) {
  const std::string& lost = c.arg(2, "ID");
  json body = json::object();
  if (std::string via = c.option("--via"); !via.empty()) body["via"] = via;
  auto r = c.client.call("POST", "/v1/gateways/" + lost + "/purge", body);
  if (!r) return c.fail(r.status());
  return accepted(c, r.value(), "purge the store of " + lost);
}

int snapshotCommand(const CtlCommand& c) {
  const std::string& sub = c.arg(1, "snapshot list|create|delete|schedule");
  if (sub == "list") {
    static const std::vector<std::string> flags = {"--output"};
    std::string gateway = c.arg(2, "GATEWAY");
    std::string volume = c.positional(3, flags);
    std::string path = "/v1/gateways/" + gateway + (volume.empty() ? "" : "/volumes/" + volume) + "/snapshots";
    auto r = c.client.call("GET", path);
    if (!r) return c.fail(r.status());
    return c.print(r.value(), [&] {
      std::vector<std::vector<std::string>> rows;
      for (const auto& s : r.value()["snapshots"]) {
        rows.push_back(
            {s["id"], s["volume"], s["state"], millisWhen(s, "created_at_ms"), millisWhen(s, "completed_at_ms")});
      }
      table({"ID", "VOLUME", "STATE", "REQUESTED (UTC)", "COMPLETED (UTC)"}, rows);
    });
  }
  if (sub == "create") {
    std::string volume = c.arg(3, "VOLUME");
    auto r = c.client.call("POST", "/v1/gateways/" + c.arg(2, "GATEWAY") + "/volumes/" + volume + "/snapshots");
    if (!r) return c.fail(r.status());
    return accepted(c, r.value(), "snapshot " + r.value()["snapshot"].value("id", "") + " of " + volume);
  }
  if (sub == "delete") {
    std::string snap = c.arg(3, "SNAPSHOT");
    auto r = c.client.call("DELETE", "/v1/gateways/" + c.arg(2, "GATEWAY") + "/snapshots/" + snap);
    if (!r) return c.fail(r.status());
    if (r.value().is_null()) {  // 204: a failed snapshot, gone at once
      return c.print(json{{"deleted", snap}}, [&] { std::cout << "deleted " << snap << "\n"; });
    }
    return accepted(c, r.value(), "delete snapshot " + snap);
  }
  if (sub == "schedule") {
    std::string path = "/v1/gateways/" + c.arg(2, "GATEWAY") + "/volumes/" + c.arg(3, "VOLUME") + "/schedule";
    Result<json> r = json();
    if (c.has("--off")) {
      r = c.client.call("DELETE", path);
      if (!r) return c.fail(r.status());
      return c.print(json{{"schedule", nullptr}},
                     [&] { std::cout << "no snapshot schedule for " << c.args[3] << "\n"; });
    }
    if (c.has("--every") || c.has("--keep")) {
      auto number = [&](const char* flag) {
        std::string v = c.option(flag);
        if (!v.empty() && v.back() == 'h') v.pop_back();
        try {
          size_t used = 0;
          int n = std::stoi(v, &used);
          if (used == v.size()) return n;
        } catch (...) {
        }
        throw UsageError{std::string(flag) + " wants a whole number" +
                         (std::string(flag) == "--every" ? " of hours" : "")};
      };
      r = c.client.call("PUT", path, json{{"every_hours", number("--every")}, {"keep", number("--keep")}});
    } else {
      r = c.client.call("GET", path);
    }
    if (!r) return c.fail(r.status());
    return c.print(r.value(), [&] {
      const json& s = r.value()["schedule"];
      std::cout << "volume " << s.value("volume", "") << ": a snapshot every " << s.value("every_hours", 0)
                << " h, keeping the last " << s.value("keep", 0) << "; next at " << when(s.value("next_at", int64_t{0}))
                << " UTC\n";
    });
  }
  throw UsageError{"unknown snapshot command '" + sub + "'"};
}

int requestCommand(const CtlCommand& c) {
  const std::string& sub = c.arg(1, "request list|show|wait|send");
  if (sub == "list") {
    auto r =
        c.client.call("GET", "/v1/gateways/" + c.arg(2, "GATEWAY") + "/requests?limit=" + c.option("--limit", "50"));
    if (!r) return c.fail(r.status());
    return c.print(r.value(), [&] {
      std::vector<std::vector<std::string>> rows;
      for (const auto& q : r.value()["requests"]) {
        std::string error = q["error"].is_object() ? q["error"].value("message", "") : "";
        rows.push_back({q["id"], q["op"], q["state"], std::to_string(q.value("attempts", 0)),
                        millisWhen(q, "created_at_ms"), error});
      }
      table({"ID", "OPERATION", "STATE", "ATTEMPTS", "CREATED (UTC)", "ERROR"}, rows);
    });
  }
  if (sub == "show") {
    auto r = c.client.call("GET", "/v1/requests/" + c.arg(2, "ID"));
    if (!r) return c.fail(r.status());
    return c.print(r.value(), [&] { showRequest(r.value()["request"]); });
  }
  if (sub == "wait") {
    auto done = waitFor(c, c.arg(2, "ID"));
    if (!done) return c.fail(done.status());
    c.print(json{{"request", done.value()}}, [&] { showRequest(done.value()); });
    return done.value().value("state", "") == "done" ? 0 : kExitApi;
  }
  if (sub == "send") {
    std::string op = c.arg(3, "OPERATION");
    auto r = c.client.call("POST", "/v1/gateways/" + c.arg(2, "GATEWAY") + "/requests", {{"op", op}});
    if (!r) return c.fail(r.status());
    return accepted(c, r.value(), op);
  }
  throw UsageError{"unknown request command '" + sub + "'"};
}

}  // namespace ferry::control
