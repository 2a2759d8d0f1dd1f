#pragma once
// ferryctl's shared pieces: its command-line error, times and tables as people read
// them, and what a command needs (the API client, the arguments, the output format).

#include <algorithm>
#include <cstdint>
#include <ctime>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ctl_client.h"
#include "ferry/status.h"

namespace ferry::control {

constexpr int kExitApi = 1;
constexpr int kExitUsage = 2;

struct UsageError {
  std::string message;
};

// Unix seconds → "2026-11-30 12:00:00" (UTC); 0 → "never".
inline std::string when(int64_t t) {
  if (t == 0) return "never";
  char buf[32];
  time_t tt = static_cast<time_t>(t);
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", std::gmtime(&tt));
  return buf;
}

// Prints rows as aligned columns under a header.
inline void table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> w(header.size());
  for (size_t i = 0; i < header.size(); ++i) w[i] = header[i].size();
  for (const auto& r : rows) {
    for (size_t i = 0; i < r.size() && i < w.size(); ++i) w[i] = std::max(w[i], r[i].size());
  }
  auto line = [&](const std::vector<std::string>& r) {
    std::string out;
    for (size_t i = 0; i < r.size(); ++i) {
      out += r[i];
      if (i + 1 < r.size()) out += std::string(w[i] - r[i].size() + 2, ' ');
    }
    std::cout << out << "\n";
  };
  line(header);
  for (const auto& r : rows) line(r);
}

// What a command works with.
struct CtlCommand {
  ApiClient& client;
  const std::vector<std::string>& args;  // the command's words, flags and all
  const std::string& output;             // "text" or "json"

  const std::string& arg(size_t i, const char* what) const {
    if (i >= args.size()) throw UsageError{std::string("missing ") + what};
    return args[i];
  }
  // The value after flag, or fallback.
  std::string option(const std::string& flag, const std::string& fallback = "") const {
    for (size_t i = 0; i + 1 < args.size(); ++i) {
      if (args[i] == flag) return args[i + 1];
    }
    return fallback;
  }
  bool has(const std::string& flag) const { return std::find(args.begin(), args.end(), flag) != args.end(); }
  // The positional argument i, not counting flags and their values.
  std::string positional(size_t i, const std::vector<std::string>& flagsWithValues) const {
    size_t n = 0;
    for (size_t k = 0; k < args.size(); ++k) {
      if (std::find(flagsWithValues.begin(), flagsWithValues.end(), args[k]) != flagsWithValues.end()) {
        ++k;
        continue;
      }
      if (args[k].rfind("--", 0) == 0) continue;
      if (n++ == i) return args[k];
    }
    return "";
  }
  int fail(const Status& s) const {
    std::cerr << "ferryctl: " << s.message() << "\n";
    return kExitApi;
  }
  // Prints the JSON (--output json) or calls the human printer.
  template <typename F>
  int print(const nlohmann::json& j, F human) const {
    if (output == "json")
      std::cout << j.dump(2) << "\n";
    else
      human();
    return 0;
  }
};

// volume …, snapshot …, request … (ferryctl_requests.cc).
// gateway purge ID [--via GATEWAY] [--wait]: a lost gateway's store, cleaned up.
int gatewayPurgeCommand(const CtlCommand& c);
int volumeCommand(const CtlCommand& c);
int snapshotCommand(const CtlCommand& c);
int requestCommand(const CtlCommand& c);
// bandwidth …, metrics … (ferryctl_limits.cc).
int bandwidthCommand(const CtlCommand& c);
int metricsCommand(const CtlCommand& c);

// After a change the API accepted (202 with its request): with --wait, its outcome
// (exit 1 if it failed); else what was asked (ferryctl_requests.cc).
int accepted(const CtlCommand& c, const nlohmann::json& answer, const std::string& what);
// 1048576 → "1 MiB" (exact units only: 1536 stays "1536 B").
std::string bytes(int64_t n);

}  // namespace ferry::control
