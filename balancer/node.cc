#include "node.h"

#include "ferry/log.h"
#include "ferry/metrics_text.h"
#include "maglev.h"

namespace ferry::balancer {

Node::Node(BalancerConfig cfg, std::unique_ptr<Dataplane> dataplane) : cfg_(std::move(cfg)), dp_(std::move(dataplane)) {}

Node::~Node() { stop(); }

Status Node::start() {
  if (Status st = dp_->start(); !st) return st;
  health_ = std::make_unique<HealthChecker>(cfg_.health, cfg_.backends, [this] { reprogram(); });
  // A data-plane update that failed is tried again every health interval, not only at
  // the next change of health.
  health_->setOnRound([this] {
    bool failed;
    {
      std::lock_guard<std::mutex> lock(mu_);
      failed = !lastError_.empty();
    }
    if (failed) reprogram();
  });
  health_->firstRound();
  reprogram();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!lastError_.empty()) return Status::unavailable("program the data plane: " + lastError_);
  }
  health_->start();
  return Status::ok();
}

void Node::stop() {
  if (health_) health_->stop();
  health_.reset();
  if (dp_) dp_->stop();
}

void Node::reprogram() {
  std::lock_guard<std::mutex> lock(mu_);
  auto health = health_->snapshot();
  std::vector<MaglevBackend> mb;
  std::vector<BackendState> states;
  std::vector<bool> up;
  for (size_t i = 0; i < cfg_.backends.size(); ++i) {
    mb.push_back({cfg_.backends[i].name, health[i].up});
    states.push_back({cfg_.backends[i].address, health[i].up});
    up.push_back(health[i].up);
  }
  for (size_t i = 0; i < up.size(); ++i) {
    if (i < up_.size() && up_[i] == up[i]) continue;
    std::string why = health[i].lastError.empty() ? "" : " (" + health[i].lastError + ")";
    logInfo("backend " + cfg_.backends[i].name + " " + formatIPv4(cfg_.backends[i].address) + " is " +
            (up[i] ? "up" : "down") + why);
  }
  auto ring = buildMaglev(mb, cfg_.seed, LB_RING_SIZE);
  Status st = dp_->program(cfg_.services, states, ring);
  if (!st) {
    lastError_ = st.toString();
    logError("program the " + dp_->name() + " data plane: " + lastError_);
    return;
  }
  lastError_.clear();
  if (ring != ring_) ringUpdates_++;
  ring_ = std::move(ring);
  up_ = std::move(up);
}

std::string Node::metricsText() {
  MetricsText m;
  Result<DataplaneCounters> counters = Status::unavailable("not read");
  {
    // program() (on a health thread) reshapes what counters() reads.
    std::lock_guard<std::mutex> lock(mu_);
    counters = dp_->counters();
  }
  std::vector<BackendHealth> health = health_ ? health_->snapshot() : std::vector<BackendHealth>{};
  std::vector<int> slots(cfg_.backends.size(), 0);
  uint64_t updates;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (uint32_t b : ring_)
      if (b < slots.size()) slots[b]++;
    updates = ringUpdates_;
  }
  if (counters) {
    m.family("ferry_balancer_packets_total", "counter", "Packets seen by the data plane, by what it did with them.");
    for (int v = 0; v < LB_V_COUNT; ++v)
      m.sample("ferry_balancer_packets_total", double(counters->verdicts[size_t(v)].packets), {{"verdict", verdictName(v)}});
    m.family("ferry_balancer_service_packets_total", "counter", "Packets forwarded for each service (VIP, port).");
    for (size_t i = 0; i < cfg_.services.size() && i < counters->services.size(); ++i) {
      const ServiceConfig& s = cfg_.services[i];
      m.sample("ferry_balancer_service_packets_total", double(counters->services[i].packets),
               {{"service", s.name}, {"vip", formatIPv4(s.vip)}, {"port", std::to_string(s.port)},
                {"protocol", protocolName(s.protocol)}});
    }
    m.family("ferry_balancer_service_bytes_total", "counter", "Bytes forwarded for each service.");
    for (size_t i = 0; i < cfg_.services.size() && i < counters->services.size(); ++i)
      m.sample("ferry_balancer_service_bytes_total", double(counters->services[i].bytes),
               {{"service", cfg_.services[i].name}});
    m.family("ferry_balancer_backend_packets_total", "counter", "Packets forwarded to each backend.");
    for (size_t i = 0; i < cfg_.backends.size() && i < counters->backends.size(); ++i)
      m.sample("ferry_balancer_backend_packets_total", double(counters->backends[i].packets),
               {{"backend", cfg_.backends[i].name}, {"address", formatIPv4(cfg_.backends[i].address)}});
    m.family("ferry_balancer_backend_bytes_total", "counter", "Bytes forwarded to each backend.");
    for (size_t i = 0; i < cfg_.backends.size() && i < counters->backends.size(); ++i)
      m.sample("ferry_balancer_backend_bytes_total", double(counters->backends[i].bytes),
               {{"backend", cfg_.backends[i].name}});
  }
  // The format wants each family's samples together, after its own HELP and TYPE.
  m.family("ferry_balancer_backend_up", "gauge", "1 when the health checks take the backend in.");
  for (size_t i = 0; i < cfg_.backends.size(); ++i) {
    bool up = i < health.size() && health[i].up;
    m.sample("ferry_balancer_backend_up", up ? 1 : 0, {{"backend", cfg_.backends[i].name}});
  }
  m.family("ferry_balancer_backend_transitions_total", "counter",
           "Times the health checks took the backend in or out after its first check.");
  for (size_t i = 0; i < cfg_.backends.size() && i < health.size(); ++i)
    m.sample("ferry_balancer_backend_transitions_total", double(health[i].transitions),
             {{"backend", cfg_.backends[i].name}});
  m.family("ferry_balancer_backend_ring_slots", "gauge", "Maglev ring slots the backend owns.");
  for (size_t i = 0; i < cfg_.backends.size(); ++i)
    m.sample("ferry_balancer_backend_ring_slots", slots[i], {{"backend", cfg_.backends[i].name}});
  m.family("ferry_balancer_ring_updates_total", "counter", "Times a changed ring was programmed.");
  m.sample("ferry_balancer_ring_updates_total", double(updates));
  return m.text();
}

nlohmann::json Node::status() {
  nlohmann::json backends = nlohmann::json::array();
  auto health = health_ ? health_->snapshot() : std::vector<BackendHealth>{};
  for (size_t i = 0; i < cfg_.backends.size(); ++i) {
    nlohmann::json b = {{"name", cfg_.backends[i].name}, {"address", formatIPv4(cfg_.backends[i].address)}};
    if (i < health.size()) {
      b["up"] = health[i].up;
      b["checks"] = health[i].checks;
      b["last_error"] = health[i].lastError;
    }
    backends.push_back(b);
  }
  nlohmann::json services = nlohmann::json::array();
  for (const ServiceConfig& s : cfg_.services)
    services.push_back({{"name", s.name}, {"vip", formatIPv4(s.vip)}, {"port", s.port},
                        {"protocol", protocolName(s.protocol)}, {"host_port", s.hostPort}});
  std::lock_guard<std::mutex> lock(mu_);
  return {{"dataplane", dp_->name()}, {"seed", cfg_.seed}, {"services", services}, {"backends", backends},
          {"ring_updates", ringUpdates_}, {"last_error", lastError_}};
}

}  // namespace ferry::balancer
