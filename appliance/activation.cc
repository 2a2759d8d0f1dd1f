#include "activation.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace ferry::agent {

using json = nlohmann::json;

Status writeFileAtomically(const std::string& path, const std::string& text, int mode) {
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return Status::ioError("create " + tmp + ": " + std::strerror(errno));
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) return Status::ioError("write " + tmp + ": " + std::strerror(errno));
  if (::rename(tmp.c_str(), path.c_str()) != 0) return Status::ioError("rename " + tmp + ": " + std::strerror(errno));
  return Status::ok();
}

std::string ActivationRecord::stage() const {
  if (activated()) return "activated";
  if (!gatewayId.empty()) return "claimed";
  if (!requestId.empty()) return "waiting_for_customer";
  return "new";
}

Activation::Activation(Identity& identity, control::ApiClient provider, std::string stateDir, GatewayFacts facts)
    : identity_(identity), provider_(std::move(provider)), stateDir_(std::move(stateDir)), facts_(std::move(facts)) {}

Status Activation::load() {
  std::ifstream f(stateDir_ + "/activation.json");
  if (!f) return Status::ok();
  std::stringstream text;
  text << f.rdbuf();
  json j = json::parse(text.str(), nullptr, false);
  if (!j.is_object()) return Status::corruption(stateDir_ + "/activation.json is not JSON");
  ActivationRecord r;
  r.requestId = j.value("request_id", "");
  r.activationKey = j.value("activation_key", "");
  r.keyExpiresAt = j.value("key_expires_at", int64_t{0});
  r.gatewayId = j.value("gateway_id", "");
  r.gatewayName = j.value("gateway_name", "");
  r.certificatePem = j.value("certificate", "");
  r.caPem = j.value("ca_certificate", "");
  r.controlEndpoint = j.value("control_endpoint", "");
  r.store = j.value("store", "");
  r.certificateNotAfter = j.value("certificate_not_after", int64_t{0});
  std::lock_guard<std::mutex> l(mutex_);
  record_ = r;
  return Status::ok();
}

Status Activation::save(const ActivationRecord& r) {
  json j = {{"request_id", r.requestId},
            {"activation_key", r.activationKey},
            {"key_expires_at", r.keyExpiresAt},
            {"gateway_id", r.gatewayId},
            {"gateway_name", r.gatewayName},
            {"certificate", r.certificatePem},
            {"ca_certificate", r.caPem},
            {"control_endpoint", r.controlEndpoint},
            {"store", r.store},
            {"certificate_not_after", r.certificateNotAfter}};
  if (r.activated()) {
    if (Status s = writeFileAtomically(certificatePath(), r.certificatePem, 0644); !s) return s;
    if (Status s = writeFileAtomically(caPath(), r.caPem, 0644); !s) return s;
  }
  if (Status s = writeFileAtomically(stateDir_ + "/activation.json", j.dump(2) + "\n", 0600); !s) return s;
  std::lock_guard<std::mutex> l(mutex_);
  record_ = r;
  return Status::ok();
}

Status Activation::restart() {
  return save(ActivationRecord{});
}

Status Activation::installCertificate(const std::string& certificatePem, int64_t notAfter, const std::string& caPem) {
  ActivationRecord r = current();
  if (!r.activated()) return Status::invalid("not activated: no certificate to renew");
  if (!identity_.matches(certificatePem)) return Status::invalid("the certificate is not for this gateway's key");
  r.certificatePem = certificatePem;
  r.certificateNotAfter = notAfter;
  if (!caPem.empty()) r.caPem = caPem;
  return save(r);
}

ActivationRecord Activation::current() const {
  std::lock_guard<std::mutex> l(mutex_);
  return record_;
}

Result<ActivationRecord> Activation::step() {
  ActivationRecord r = current();
  if (r.activated()) return r;
  int64_t now = ::time(nullptr);
  // 1. A key to show (again, if the last one expired unclaimed).
  if (r.requestId.empty() || (r.gatewayId.empty() && r.keyExpiresAt != 0 && r.keyExpiresAt <= now)) {
    auto a = provider_.call("POST", "/v1/activation",
                            {{"public_key", identity_.publicPem()},
                             {"hostname", facts_.hostname},
                             {"software_version", facts_.version},
                             {"addresses", facts_.addresses}});
    if (!a) return a.status();
    ActivationRecord fresh;
    fresh.requestId = a.value().value("request_id", "");
    fresh.activationKey = a.value().value("activation_key", "");
    fresh.keyExpiresAt = a.value().value("expires_at", int64_t{0});
    if (fresh.requestId.empty()) return Status::corruption("the provider's activation answer has no request_id");
    if (Status s = save(fresh); !s) return s;
    return fresh;
  }
  std::string t = std::to_string(now);
  std::string signature = identity_.sign("ferry-activation\n" + r.requestId + "\n" + t);
  std::vector<std::pair<std::string, std::string>> headers = {{"X-Ferry-Time", t}, {"X-Ferry-Signature", signature}};
  // 4. Has a customer claimed it?
  if (r.gatewayId.empty()) {
    auto st = provider_.call("GET", "/v1/activation/" + r.requestId, nullptr, headers);
    if (!st) {
      // Expired or forgotten by the provider: a new key next step.
      if (st.status().code() == Code::kInvalidArgument || st.status().code() == Code::kNotFound) {
        ActivationRecord none;
        if (Status s = save(none); !s) return s;
        return none;
      }
      return st.status();
    }
    if (st.value().value("state", "") != "activated") return r;
    r.gatewayId = st.value()["gateway"].value("id", "");
    r.gatewayName = st.value()["gateway"].value("name", "");
    if (Status s = save(r); !s) return s;
  }
  // 5. The channel's certificate and where to connect.
  auto c = provider_.call("POST", "/v1/activation/" + r.requestId + "/certificate", {{"csr", identity_.csr()}}, headers);
  if (!c) return c.status();
  r.certificatePem = c.value().value("certificate", "");
  r.caPem = c.value().value("ca_certificate", "");
  r.controlEndpoint = c.value().value("control_endpoint", "");
  r.store = c.value().value("store", "");
  r.certificateNotAfter = c.value().value("certificate_not_after", int64_t{0});
  r.gatewayName = c.value()["gateway"].value("name", r.gatewayName);
  if (r.certificatePem.empty() || r.controlEndpoint.empty()) {
    return Status::corruption("the provider's certificate answer lacks the certificate or the control endpoint");
  }
  if (Status s = save(r); !s) return s;
  return r;
}

}  // namespace ferry::agent
