// ferryctl bandwidth …, metrics …: a gateway's bandwidth limits and schedule, and the
// metrics it reports.

#include <cstdio>
#include <string>
#include <vector>

#include "ctl_text.h"
#include "ferry/strings.h"

namespace ferry::control {

using json = nlohmann::json;

namespace {

const char* kDayNames[] = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"};

std::string rateText(int64_t r) {
  return r == 0 ? "none" : bytes(r) + "/s";
}

// "mon-fri", "sat,sun", "daily", "wed" → ["mon", …].
json daysOf(const std::string& text) {
  if (text == "daily" || text == "all")
    return json(std::vector<std::string>(std::begin(kDayNames), std::end(kDayNames)));
  auto index = [&](const std::string& d) {
    for (int i = 0; i < 7; ++i) {
      if (d == kDayNames[i]) return i;
    }
    throw UsageError{"'" + d + "' is not a day (mon, tue, wed, thu, fri, sat, sun)"};
  };
  json out = json::array();
  size_t at = 0;
  while (at <= text.size()) {
    size_t comma = text.find(',', at);
    std::string part = text.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
    size_t dash = part.find('-');
    if (dash == std::string::npos) {
      out.push_back(kDayNames[index(part)]);
    } else {
      int from = index(part.substr(0, dash)), to = index(part.substr(dash + 1));
      if (to < from) throw UsageError{"day range " + part + " runs backwards"};
      for (int i = from; i <= to; ++i) out.push_back(kDayNames[i]);
    }
    if (comma == std::string::npos) break;
    at = comma + 1;
  }
  return out;
}

// "mon-fri 08:00-18:00 up=512K down=1M" → an interval (the API checks the rest).
json intervalOf(const std::string& text) {
  std::vector<std::string> words;
  size_t at = 0;
  while (at < text.size()) {
    size_t end = text.find(' ', at);
    if (end == std::string::npos) end = text.size();
    if (end > at) words.push_back(text.substr(at, end - at));
    at = end + 1;
  }
  if (words.size() < 2)
    throw UsageError{"--schedule wants \"DAYS HH:MM-HH:MM [up=RATE] [down=RATE]\", not '" + text + "'"};
  size_t dash = words[1].find('-');
  if (dash == std::string::npos) throw UsageError{"--schedule: want a time range like 08:00-18:00, not " + words[1]};
  json iv = {{"days", daysOf(words[0])}, {"start", words[1].substr(0, dash)}, {"end", words[1].substr(dash + 1)}};
  for (size_t i = 2; i < words.size(); ++i) {
    if (words[i].rfind("up=", 0) == 0) {
      iv["upload_rate"] = words[i].substr(3);
    } else if (words[i].rfind("down=", 0) == 0) {
      iv["download_rate"] = words[i].substr(5);
    } else {
      throw UsageError{"--schedule: '" + words[i] + "' is neither up=RATE nor down=RATE"};
    }
  }
  return iv;
}

void showBandwidth(const json& b) {
  std::cout << "time zone:  " << b.value("timezone", "") << "\n"
            << "revision:   " << b.value("revision", 0) << "\n"
            << "upload:     " << rateText(b.value("upload_rate", int64_t{0})) << "\n"
            << "download:   " << rateText(b.value("download_rate", int64_t{0})) << "\n";
  if (b.contains("in_force")) {
    std::cout << "now:        upload " << rateText(b["in_force"].value("upload_rate", int64_t{0})) << ", download "
              << rateText(b["in_force"].value("download_rate", int64_t{0})) << "\n";
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& iv : b.value("schedule", json::array())) {
    std::string days;
    for (const auto& d : iv["days"]) days += (days.empty() ? "" : ",") + d.get<std::string>();
    rows.push_back({days, iv.value("start", "") + "-" + iv.value("end", ""),
                    rateText(iv.value("upload_rate", int64_t{0})), rateText(iv.value("download_rate", int64_t{0}))});
  }
  if (!rows.empty()) {
    std::cout << "schedule (local time; outside it, the limits above):\n";
    table({"DAYS", "HOURS", "UPLOAD", "DOWNLOAD"}, rows);
  }
}

// "90s", "30m", "1h", "2d" → seconds.
int64_t durationOf(const std::string& text) {
  if (text.size() < 2) throw UsageError{"--since wants a duration like 30m, 1h or 2d"};
  int64_t unit = 0;
  switch (text.back()) {
    case 's':
      unit = 1;
      break;
    case 'm':
      unit = 60;
      break;
    case 'h':
      unit = 3600;
      break;
    case 'd':
      unit = 86400;
      break;
    default:
      throw UsageError{"--since wants a duration like 30m, 1h or 2d, not " + text};
  }
  try {
    size_t used = 0;
    int64_t n = std::stoll(text.substr(0, text.size() - 1), &used);
    if (used != text.size() - 1 || n <= 0 || n > 3650 * 86400 / unit) throw UsageError{""};
    return n * unit;
  } catch (...) {
    throw UsageError{"--since wants a duration like 30m, 1h or 2d, not " + text};
  }
}

std::string ratioText(const json& v) {
  if (v.is_null()) return "-";
  char buf[16];
  std::snprintf(buf, sizeof buf, "%.1f%%", v.get<double>() * 100);
  return buf;
}

}  // namespace

int bandwidthCommand(const CtlCommand& c) {
  const std::string& sub = c.arg(1, "bandwidth show|set");
  const std::string& gw = c.arg(2, "GATEWAY");
  if (sub == "show") {
    auto r = c.client.call("GET", "/v1/gateways/" + gw + "/bandwidth");
    if (!r) return c.fail(r.status());
    return c.print(r.value(), [&] { showBandwidth(r.value()["bandwidth"]); });
  }
  if (sub == "set") {
    json setting = {{"upload_rate", c.option("--upload", "0")},
                    {"download_rate", c.option("--download", "0")},
                    {"schedule", json::array()}};
    for (size_t i = 0; i + 1 < c.args.size(); ++i) {
      if (c.args[i] == "--schedule") setting["schedule"].push_back(intervalOf(c.args[i + 1]));
    }
    auto r = c.client.call("PUT", "/v1/gateways/" + gw + "/bandwidth", setting);
    if (!r) return c.fail(r.status());
    return accepted(c, r.value(), "bandwidth limits of " + gw);
  }
  throw UsageError{"unknown bandwidth command '" + sub + "' (show, set)"};
}

int metricsCommand(const CtlCommand& c) {
  const std::string& gw = c.arg(1, "GATEWAY");
  std::string path = "/v1/gateways/" + gw + "/metrics?since=" +
                     std::to_string(static_cast<int64_t>(::time(nullptr)) - durationOf(c.option("--since", "1h")));
  std::string volume = c.has("--all") ? "*" : c.option("--volume");
  if (!volume.empty()) {
    if (volume != "*") {
      if (Status s = checkVolumeName(volume); !s) throw UsageError{s.message()};
    }
    path += "&volume=" + std::string(volume == "*" ? "%2A" : volume);
  }
  auto r = c.client.call("GET", path);
  if (!r) return c.fail(r.status());
  return c.print(r.value(), [&] {
    std::vector<std::vector<std::string>> rows;
    for (const auto& s : r.value()["samples"]) {
      rows.push_back({when(s.value("at", int64_t{0})), s.value("volume", "(gateway)"), ratioText(s["cache_hit_ratio"]),
                      bytes(s.value("cached_bytes", int64_t{0})), bytes(s.value("dirty_bytes", int64_t{0})),
                      s.contains("upload_buffer_used") ? ratioText(s["upload_buffer_used"]) : "",
                      bytes(s.value("bytes_up", int64_t{0})), bytes(s.value("bytes_down", int64_t{0}))});
    }
    if (rows.empty()) {
      std::cout << "no metrics from " << gw << " in that time (the gateway reports every minute while online)\n";
      return;
    }
    table({"AT (UTC)", "VOLUME", "HIT RATIO", "CACHED", "DIRTY", "BUFFER", "UP", "DOWN"}, rows);
  });
}

}  // namespace ferry::control
