#include "ferry/bandwidth_schedule.h"

#include <array>
#include <cctype>
#include <cstdio>
#include <string>

#include "ferry/strings.h"

namespace ferry {

using json = nlohmann::json;

namespace {

constexpr std::array<const char*, 7> kDays = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

Result<int64_t> rateField(const json& in, const char* key, const std::string& where) {
  auto it = in.find(key);
  if (it == in.end() || it->is_null()) return int64_t{0};
  int64_t v = -1;
  if (it->is_number_integer()) {
    v = it->get<int64_t>();
  } else if (it->is_string()) {
    auto parsed = parseSize(it->get<std::string>());
    if (parsed && parsed.value() <= static_cast<uint64_t>(INT64_MAX)) v = static_cast<int64_t>(parsed.value());
  }
  if (v < 0) return Status::invalid(where + key + " must be bytes per second (a number, or a size like \"512K\")");
  if (v != 0 && v < kMinBandwidthRate) {
    return Status::invalid(where + key + " must be 0 (no limit) or at least " + std::to_string(kMinBandwidthRate) +
                           " bytes per second");
  }
  return v;
}

// "HH:MM" → minutes; "24:00" only as an end.
Result<int> clockField(const json& in, const char* key, const std::string& where, bool end) {
  auto it = in.find(key);
  std::string what = where + key + " must be a time \"HH:MM\"" + (end ? " (up to \"24:00\")" : "");
  if (it == in.end() || !it->is_string()) return Status::invalid(what);
  const std::string s = it->get<std::string>();
  if (s.size() != 5 || s[2] != ':' || !std::isdigit(static_cast<unsigned char>(s[0])) ||
      !std::isdigit(static_cast<unsigned char>(s[1])) || !std::isdigit(static_cast<unsigned char>(s[3])) ||
      !std::isdigit(static_cast<unsigned char>(s[4]))) {
    return Status::invalid(what);
  }
  int h = (s[0] - '0') * 10 + (s[1] - '0'), m = (s[3] - '0') * 10 + (s[4] - '0');
  if (m > 59 || h > 24 || (h == 24 && (m != 0 || !end))) return Status::invalid(what);
  return h * 60 + m;
}

std::string clockText(int minutes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%02d:%02d", minutes / 60, minutes % 60);
  return buf;
}

}  // namespace

Result<BandwidthSchedule> BandwidthSchedule::fromJson(const json& in) {
  if (!in.is_object()) return Status::invalid("bandwidth limits must be a JSON object");
  for (const auto& [k, v] : in.items()) {
    if (k != "upload_rate" && k != "download_rate" && k != "schedule") {
      return Status::invalid("unknown field '" + k + "' (upload_rate, download_rate, schedule)");
    }
  }
  BandwidthSchedule out;
  auto up = rateField(in, "upload_rate", "");
  if (!up) return up.status();
  auto down = rateField(in, "download_rate", "");
  if (!down) return down.status();
  out.standing = {up.value(), down.value()};
  json schedule = in.value("schedule", json::array());
  if (schedule.is_null()) schedule = json::array();
  if (!schedule.is_array()) return Status::invalid("schedule must be a list of intervals");
  if (schedule.size() > kMaxBandwidthIntervals) {
    return Status::invalid("schedule has " + std::to_string(schedule.size()) + " intervals; at most " +
                           std::to_string(kMaxBandwidthIntervals));
  }
  for (size_t i = 0; i < schedule.size(); ++i) {
    const json& e = schedule[i];
    std::string where = "schedule interval " + std::to_string(i + 1) + ": ";
    if (!e.is_object()) return Status::invalid(where + "must be an object");
    for (const auto& [k, v] : e.items()) {
      if (k != "days" && k != "start" && k != "end" && k != "upload_rate" && k != "download_rate") {
        return Status::invalid(where + "unknown field '" + k + "' (days, start, end, upload_rate, download_rate)");
      }
    }
    BandwidthInterval iv;
    if (!e.contains("days") || !e["days"].is_array() || e["days"].empty()) {
      return Status::invalid(where + "days must be a list like [\"mon\", \"tue\"]");
    }
    for (const auto& d : e["days"]) {
      int found = -1;
      for (size_t k = 0; k < kDays.size(); ++k) {
        if (d.is_string() && d.get<std::string>() == kDays[k]) found = static_cast<int>(k);
      }
      if (found < 0)
        return Status::invalid(where + "days: " + d.dump() + " is not one of sun, mon, tue, wed, thu, fri, sat");
      iv.days = static_cast<uint8_t>(iv.days | (1u << found));
    }
    auto start = clockField(e, "start", where, false);
    if (!start) return start.status();
    auto end = clockField(e, "end", where, true);
    if (!end) return end.status();
    if (end.value() <= start.value()) return Status::invalid(where + "end must be after start");
    iv.start = start.value();
    iv.end = end.value();
    auto u = rateField(e, "upload_rate", where);
    if (!u) return u.status();
    auto d = rateField(e, "download_rate", where);
    if (!d) return d.status();
    iv.rates = {u.value(), d.value()};
    for (size_t j = 0; j < out.intervals.size(); ++j) {
      const BandwidthInterval& o = out.intervals[j];
      uint8_t shared = o.days & iv.days;
      if (shared != 0 && iv.start < o.end && o.start < iv.end) {
        int day = 0;
        while (!(shared & (1u << day))) ++day;
        return Status::invalid(where + "overlaps interval " + std::to_string(j + 1) + " on " + kDays[day]);
      }
    }
    out.intervals.push_back(iv);
  }
  return out;
}

json BandwidthSchedule::toJson() const {
  json schedule = json::array();
  for (const auto& iv : intervals) {
    json days = json::array();
    for (size_t d = 1; d <= 7; ++d) {  // Monday first, Sunday last
      if (iv.days & (1u << (d % 7))) days.push_back(kDays[d % 7]);
    }
    schedule.push_back({{"days", days},
                        {"start", clockText(iv.start)},
                        {"end", clockText(iv.end)},
                        {"upload_rate", iv.rates.upload},
                        {"download_rate", iv.rates.download}});
  }
  return {{"upload_rate", standing.upload}, {"download_rate", standing.download}, {"schedule", schedule}};
}

BandwidthRates BandwidthSchedule::at(int weekday, int minute) const {
  for (const auto& iv : intervals) {
    if ((iv.days & (1u << weekday)) && minute >= iv.start && minute < iv.end) return iv.rates;
  }
  return standing;
}

BandwidthRates BandwidthSchedule::atInstant(int64_t utc, int32_t offsetSeconds) const {
  int64_t local = utc + offsetSeconds;
  int64_t day = local >= 0 ? local / 86400 : (local - 86399) / 86400;
  int weekday = static_cast<int>(((day % 7) + 7 + 4) % 7);  // 1970-01-01 was a Thursday
  int minute = static_cast<int>((local - day * 86400) / 60);
  return at(weekday, minute);
}

}  // namespace ferry
