#pragma once
// What the provider's requests do on this gateway (server/operations.h lists them),
// through the volume engine's admin interface. Each is idempotent — applying one
// twice (the agent died between applying and answering) leaves what applying it once
// does — and answers {ok, result} or {ok: false, error: {code, message}}.

#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "activation.h"
#include "bandwidth_keeper.h"
#include "engine_client.h"
#include "iscsi_targets.h"

namespace ferry::agent {

class Applier {
 public:
  // bandwidth: keeps and applies bandwidth.set (none: the op is refused).
  Applier(EngineClient& engine, GatewayFacts facts, BandwidthKeeper* bandwidth, std::function<void()> shutdown)
      : engine_(engine), facts_(std::move(facts)), bandwidth_(bandwidth), shutdown_(std::move(shutdown)) {}

  // request: {id, op, args}.
  nlohmann::json apply(const nlohmann::json& request);
  // An apply under way stops waiting for the engine and answers a failure (the agent
  // is stopping; see EngineClient::cancelCalls).
  void cancel() { engine_.cancelCalls(); }
  // The agent is stopping (EngineClient::stopCalls): a failed apply is no answer.
  bool stopping() const { return engine_.callsStopped(); }

  // iSCSI targets to keep with the volumes (none: volume.chap is refused).
  void setIscsi(IscsiTargets* iscsi) { iscsi_ = iscsi; }

  // Certificate rotation: makes a CSR for the gateway's key; installs a certificate.
  void setCertificateHandlers(std::function<std::string()> csr,
                              std::function<Status(const nlohmann::json&)> install) {
    csr_ = std::move(csr);
    install_ = std::move(install);
  }

 private:
  nlohmann::json createVolume(const nlohmann::json& args);
  nlohmann::json deleteVolume(const nlohmann::json& args);
  nlohmann::json snapshot(const nlohmann::json& args);
  nlohmann::json deleteSnapshot(const nlohmann::json& args);
  nlohmann::json purgeStore(const nlohmann::json& args);
  nlohmann::json describe();
  nlohmann::json setChap(const nlohmann::json& args);

  EngineClient& engine_;
  GatewayFacts facts_;
  BandwidthKeeper* bandwidth_;
  IscsiTargets* iscsi_ = nullptr;
  std::function<void()> shutdown_;
  std::function<std::string()> csr_;
  std::function<Status(const nlohmann::json&)> install_;
};

}  // namespace ferry::agent
