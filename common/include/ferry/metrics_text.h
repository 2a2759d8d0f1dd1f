#pragma once
// The Prometheus text exposition format (version 0.0.4), written by hand: a # HELP
// and # TYPE line once per metric family, then one line per sample.
//
//   MetricsText m;
//   m.family("ferry_x_total", "counter", "What it counts.");
//   m.sample("ferry_x_total", 3, {{"code", "2xx"}});
//   std::string body = m.text();

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace ferry {

class MetricsText {
 public:
  void family(const std::string& name, const std::string& type, const std::string& help);
  void sample(const std::string& name, double value,
              const std::vector<std::pair<std::string, std::string>>& labels = {});
  const std::string& text() const { return out_; }

  static constexpr const char* kContentType = "text/plain; version=0.0.4; charset=utf-8";

 private:
  std::string out_;
};

}  // namespace ferry
