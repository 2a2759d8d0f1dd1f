#include "bandwidth_keeper.h"

#include <ctime>
#include <fstream>
#include <iostream>
#include <sstream>

#include "activation.h"

namespace ferry::agent {

using json = nlohmann::json;

namespace {

struct Setting {
  int64_t revision = 0;
  TimeZone zone;
  BandwidthSchedule schedule;
};

Result<Setting> settingOf(const json& in) {
  if (!in.is_object() || !in.contains("revision") || !in["revision"].is_number_integer() || !in.contains("timezone") ||
      !in["timezone"].is_string() || !in.contains("limits")) {
    return Status::invalid("bandwidth.set: want {revision, timezone, limits}");
  }
  Setting s;
  s.revision = in["revision"].get<int64_t>();
  auto zone = TimeZone::load(in["timezone"].get<std::string>());
  if (!zone) return zone.status();
  s.zone = zone.value();
  auto schedule = BandwidthSchedule::fromJson(in["limits"]);
  if (!schedule) return schedule.status();
  s.schedule = schedule.value();
  return s;
}

}  // namespace

Status BandwidthKeeper::load() {
  std::ifstream in(path_);
  if (!in) return Status::ok();  // never set: no limits
  std::stringstream text;
  text << in.rdbuf();
  auto setting = settingOf(json::parse(text.str(), nullptr, false));
  std::lock_guard<std::mutex> l(mu_);
  if (!setting) {
    Status s = setting.status().withContext(path_);
    loadError_ = s.message() + " (no limits until the provider sends them again)";
    return s;
  }
  revision_ = setting.value().revision;
  zone_ = setting.value().zone;
  schedule_ = setting.value().schedule;
  return Status::ok();
}

void BandwidthKeeper::start() {
  thread_ = std::thread([this] {
    std::unique_lock<std::mutex> l(mu_);
    while (!stopping_) {
      l.unlock();
      apply();
      l.lock();
      wake_.wait_for(l, std::chrono::seconds(checkSeconds_), [this] { return stopping_; });
    }
  });
}

void BandwidthKeeper::stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Result<json> BandwidthKeeper::set(const json& args) {
  auto setting = settingOf(args);
  if (!setting) return setting.status();
  {
    std::lock_guard<std::mutex> l(mu_);
    if (setting.value().revision < revision_) {
      return json{{"revision", revision_}, {"superseded", true}};
    }
    json kept = {{"revision", setting.value().revision},
                 {"timezone", setting.value().zone.name()},
                 {"limits", setting.value().schedule.toJson()}};
    if (Status s = writeFileAtomically(path_, kept.dump(2) + "\n", 0644); !s) return s;
    revision_ = setting.value().revision;
    zone_ = setting.value().zone;
    schedule_ = setting.value().schedule;
    loadError_.clear();
  }
  apply();
  std::lock_guard<std::mutex> l(mu_);
  if (!applied_) {
    // Kept: the check thread applies it once the engine answers.
    return json{{"revision", revision_}, {"applied", false}, {"detail", lastError_}};
  }
  return json{{"revision", revision_},
              {"applied", true},
              {"in_force", {{"upload_rate", inForce_.upload}, {"download_rate", inForce_.download}}}};
}

void BandwidthKeeper::apply() {
  std::lock_guard<std::mutex> one(applyMu_);
  BandwidthRates rates;
  {
    std::lock_guard<std::mutex> l(mu_);
    int64_t t = static_cast<int64_t>(::time(nullptr));
    rates = schedule_.atInstant(t, zone_.offsetAt(t));
  }
  auto r = engine_.call({{"op", "limits"}, {"upload", rates.upload}, {"download", rates.download}}, 5);
  std::lock_guard<std::mutex> l(mu_);
  bool changed = !(rates == inForce_) || applied_ != static_cast<bool>(r);
  inForce_ = rates;
  applied_ = static_cast<bool>(r);
  lastError_ = r ? "" : r.status().message();
  if (changed && r) {
    std::cout << "ferry-agent: bandwidth limits now upload " << rates.upload << " B/s, download " << rates.download
              << " B/s (0 = none)" << std::endl;
  }
}

json BandwidthKeeper::status() const {
  std::lock_guard<std::mutex> l(mu_);
  json out = schedule_.toJson();
  out["revision"] = revision_;
  out["timezone"] = zone_.name();
  out["in_force"] = {{"upload_rate", inForce_.upload}, {"download_rate", inForce_.download}};
  out["applied"] = applied_;
  out["last_error"] = lastError_.empty() ? loadError_ : lastError_;
  return out;
}

}  // namespace ferry::agent
