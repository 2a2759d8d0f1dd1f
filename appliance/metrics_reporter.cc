#include "metrics_reporter.h"

#include <algorithm>
#include <ctime>
#include <iostream>

namespace ferry::agent {

using json = nlohmann::json;

namespace {

// Since the last sample; a counter that went down (the engine restarted) counts from 0.
uint64_t delta(uint64_t now, uint64_t before) {
  return now >= before ? now - before : now;
}

json ratioOrNull(uint64_t hits, uint64_t misses) {
  if (hits + misses == 0) return nullptr;
  return static_cast<double>(hits) / static_cast<double>(hits + misses);
}

}  // namespace

Result<json> MetricsReporter::sample(int64_t at) {
  auto stats = engine_.call({{"op", "stats"}}, 10);
  if (!stats) return stats.status();
  const json& st = stats.value();
  json volumes = json::array();
  Counters total;
  std::map<std::string, Counters> seen;
  for (const auto& v : st.value("volumes", json::array())) {
    std::string name = v.value("name", "");
    Counters now{v.value("uploaded_bytes", uint64_t{0}), v.value("downloaded_bytes", uint64_t{0}),
                 v.value("read_hits", uint64_t{0}), v.value("read_misses", uint64_t{0})};
    Counters before = last_.count(name) ? last_[name] : Counters{};
    Counters d{delta(now.up, before.up), delta(now.down, before.down), delta(now.hits, before.hits),
               delta(now.misses, before.misses)};
    seen[name] = now;
    total.up += d.up;
    total.down += d.down;
    total.hits += d.hits;
    total.misses += d.misses;
    volumes.push_back({{"name", name},
                       {"cache_hit_ratio", ratioOrNull(d.hits, d.misses)},
                       {"cached_bytes", v.value("cached_bytes", uint64_t{0})},
                       {"dirty_bytes", v.value("dirty_bytes", uint64_t{0})},
                       {"bytes_up", d.up},
                       {"bytes_down", d.down}});
  }
  last_ = std::move(seen);
  uint64_t buffer = st.value("upload_buffer", uint64_t{0}), dirty = st.value("dirty_bytes", uint64_t{0});
  return json{{"report", "metrics"},
              {"at", at},
              {"interval", interval_},
              {"gateway",
               {{"cache_hit_ratio", ratioOrNull(total.hits, total.misses)},
                {"cached_bytes", st.value("cached_bytes", uint64_t{0})},
                {"dirty_bytes", dirty},
                {"upload_buffer_used",
                 buffer == 0 ? 0.0 : std::min(1.0, static_cast<double>(dirty) / static_cast<double>(buffer))},
                {"bytes_up", total.up},
                {"bytes_down", total.down}}},
              {"volumes", volumes}};
}

void MetricsReporter::tick() {
  auto report = sample(static_cast<int64_t>(::time(nullptr)));
  if (!report) {
    std::cerr << "ferry-agent: metrics: " << report.status().toString() << "\n";
    return;
  }
  std::lock_guard<std::mutex> l(mu_);
  unsent_.push_back(report.value().dump());
  while (unsent_.size() > kMaxUnsentReports) unsent_.pop_front();
  while (!unsent_.empty() && send_(unsent_.front())) unsent_.pop_front();
}

void MetricsReporter::start() {
  thread_ = std::thread([this] {
    // The first counters are the baseline: the first report covers one whole interval.
    (void)sample(0);
    std::unique_lock<std::mutex> l(mu_);
    while (!stopping_) {
      wake_.wait_for(l, std::chrono::seconds(interval_), [this] { return stopping_; });
      if (stopping_) break;
      l.unlock();
      tick();
      l.lock();
    }
  });
}

void MetricsReporter::stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

size_t MetricsReporter::unsent() const {
  std::lock_guard<std::mutex> l(mu_);
  return unsent_.size();
}

}  // namespace ferry::agent
