#include "health.h"

#include <curl/curl.h>

#include <chrono>

namespace ferry::balancer {

HealthChecker::HealthChecker(HealthConfig cfg, std::vector<BackendConfig> backends, std::function<void()> onChange)
    : cfg_(std::move(cfg)), backends_(std::move(backends)), onChange_(std::move(onChange)), state_(backends_.size()) {}

HealthChecker::~HealthChecker() { stop(); }

std::string HealthChecker::probe(const HealthConfig& cfg, uint32_t address) {
  CURL* curl = curl_easy_init();
  if (!curl) return "cannot make a curl handle";
  std::string scheme = cfg.scheme == "tcp" ? "http" : cfg.scheme;
  std::string url = scheme + "://" + formatIPv4(address) + ":" + std::to_string(cfg.port) + cfg.path;
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(cfg.timeoutMs));
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(cfg.timeoutMs));
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
  // A health check asks whether the server answers, not who it is: the farm's
  // certificates name the VIP's host name, not each backend's address.
  curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 0L);
  curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 0L);
  if (cfg.scheme == "tcp") curl_easy_setopt(curl, CURLOPT_CONNECT_ONLY, 1L);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, +[](char*, size_t size, size_t n, void*) { return size * n; });
  CURLcode rc = curl_easy_perform(curl);
  std::string error;
  if (rc != CURLE_OK) {
    error = curl_easy_strerror(rc);
  } else if (cfg.scheme != "tcp") {
    long code = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
    if (code < 200 || code > 299) error = "HTTP " + std::to_string(code) + " from " + url;
  }
  curl_easy_cleanup(curl);
  return error;
}

void HealthChecker::record(size_t index, const std::string& error, bool first) {
  bool changed = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    BackendHealth& h = state_[index];
    h.checks++;
    h.lastError = error;
    bool ok = error.empty();
    if (first) {
      changed = h.up != ok;
      h.up = ok;
      h.streak = 0;
    } else if (ok == h.up) {
      h.streak = 0;
    } else if (++h.streak >= (ok ? cfg_.rise : cfg_.fall)) {
      h.up = ok;
      h.streak = 0;
      h.transitions++;
      changed = true;
    }
  }
  if (changed && !first && onChange_) onChange_();
}

void HealthChecker::firstRound() {
  std::vector<std::thread> probes;
  for (size_t i = 0; i < backends_.size(); ++i)
    probes.emplace_back([this, i] { record(i, probe(cfg_, backends_[i].address), true); });
  for (auto& t : probes) t.join();
}

void HealthChecker::start() {
  for (size_t i = 0; i < backends_.size(); ++i) threads_.emplace_back([this, i] { loop(i); });
}

void HealthChecker::loop(size_t index) {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    cv_.wait_for(lock, std::chrono::milliseconds(cfg_.intervalMs), [this] { return stopping_; });
    if (stopping_) break;
    lock.unlock();
    std::string error = probe(cfg_, backends_[index].address);
    record(index, error, false);
    if (index == 0 && onRound_) onRound_();
    lock.lock();
  }
}

void HealthChecker::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
  threads_.clear();
}

std::vector<BackendHealth> HealthChecker::snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  return state_;
}

}  // namespace ferry::balancer
