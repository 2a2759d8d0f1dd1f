#include "applier.h"

#include <chrono>
#include <thread>

namespace ferry::agent {

using json = nlohmann::json;

namespace {

const char* codeOf(Code c) {
  switch (c) {
    case Code::kNotFound:
      return "not_found";
    case Code::kInvalidArgument:
      return "invalid_argument";
    case Code::kBusy:
      return "busy";
    case Code::kNoSpace:
      return "no_space";
    case Code::kUnavailable:
      return "engine_unavailable";
    default:
      return "io_error";
  }
}

json failure(const Status& s) {
  return {{"ok", false}, {"error", {{"code", codeOf(s.code())}, {"message", s.message()}}}};
}

json success(json result) {
  return {{"ok", true}, {"result", std::move(result)}};
}

// The engine's record of a volume, or null.
Result<json> findVolume(EngineClient& engine, const std::string& name) {
  auto list = engine.call({{"op", "list"}});
  if (!list) return list.status();
  for (const auto& v : list.value().value("volumes", json::array())) {
    if (v.value("name", "") == name) return v;
  }
  return json();
}

}  // namespace

json Applier::apply(const json& request) {
  std::string op = request.value("op", "");
  json args = request.value("args", json::object());
  if (!args.is_object()) return failure(Status::invalid("args must be an object"));
  bool needsEngine =
      op.rfind("volume.", 0) == 0 || op.rfind("snapshot.", 0) == 0 || op == "gateway.describe" || op == "store.purge";
  if (needsEngine) {
    // The engine may be starting (just activated) or restarting: give it a minute.
    if (Status s = engine_.waitReady(60); !s) return failure(s);
  }
  try {
    if (op == "volume.create") return createVolume(args);
    if (op == "volume.delete") return deleteVolume(args);
    if (op == "snapshot.create") return snapshot(args);
    if (op == "snapshot.delete") return deleteSnapshot(args);
    if (op == "store.purge") return purgeStore(args);
    if (op == "gateway.describe") return describe();
    if (op == "volume.chap") return setChap(args);
    if (op == "bandwidth.set") {
      if (!bandwidth_) return failure(Status::invalid("this gateway cannot keep bandwidth limits"));
      auto kept = bandwidth_->set(args);
      if (!kept) return failure(kept.status());
      return success(kept.value());
    }
    if (op == "certificate.renew") {
      std::string csr = csr_ ? csr_() : "";
      if (csr.empty()) return failure(Status::ioError("cannot make a certificate request"));
      return success({{"csr", csr}});
    }
    if (op == "certificate.install") {
      if (!install_) return failure(Status::invalid("this gateway cannot install certificates yet"));
      if (Status s = install_(args); !s) return failure(s);
      return success({{"not_after", args.value("not_after", int64_t{0})}});
    }
    if (op == "gateway.shutdown") {
      if (shutdown_) shutdown_();
      return success({{"shutting_down", true}});
    }
  } catch (const json::exception& e) {
    return failure(Status::invalid(op + ": " + e.what()));
  }
  return {{"ok", false}, {"error", {{"code", "unknown_operation"}, {"message", "this gateway does not know " + op}}}};
}

json Applier::createVolume(const json& args) {
  std::string name = args.at("name").get<std::string>();
  int64_t size = args.at("size").get<int64_t>(), chunk = args.at("chunk_size").get<int64_t>();
  // Applied before (the answer was lost): the same volume is there; done.
  auto existing = findVolume(engine_, name);
  if (!existing) return failure(existing.status());
  if (!existing.value().is_null()) {
    if (existing.value().value("size", int64_t{0}) == size &&
        existing.value().value("chunk_size", int64_t{0}) == chunk) {
      return success(existing.value());
    }
    return failure(Status::busy("a volume " + name + " of another size already exists on this gateway"));
  }
  json create = {{"op", "create"}, {"name", name}, {"size", size}, {"chunk_size", chunk}};
  if (args.contains("source")) create["source"] = args.at("source");  // a snapshot or a recovery point
  auto made = engine_.call(create);
  if (!made) return failure(made.status());
  json out = made.value().value("volume", json::object());
  if (made.value().contains("source")) out["source"] = made.value()["source"];
  // The volume is made and served over NBD; an iSCSI target that cannot be made yet
  // is said here and retried, not a failed request.
  if (iscsi_ != nullptr && iscsi_->enabled()) {
    Status served = iscsi_->ensure(name);
    out["iscsi"] = {{"target", iscsi_->targetName(name)},
                    {"state", served ? "ready" : "error"},
                    {"error", served ? "" : served.message()}};
  }
  return success(out);
}

json Applier::deleteVolume(const json& args) {
  std::string name = args.at("name").get<std::string>();
  // Its iSCSI target goes first: the engine refuses a volume with open connections.
  if (iscsi_ != nullptr) {
    if (Status s = iscsi_->withdraw(name); !s) {
      iscsi_->restore(name, false);
      return failure(s);
    }
  }
  auto gone = engine_.call({{"op", "delete"}, {"name", name}, {"force", false}});
  // nbdfuse's connections close a moment after it exits: give them a few seconds.
  for (int i = 0; iscsi_ != nullptr && iscsi_->enabled() && i < 50 && !gone && gone.status().code() == Code::kBusy;
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    gone = engine_.call({{"op", "delete"}, {"name", name}, {"force", false}});
  }
  // Gone already (deleted before the answer was lost): done.
  bool deleted = gone || gone.status().code() == Code::kNotFound;
  if (iscsi_ != nullptr) iscsi_->restore(name, deleted);
  if (!deleted) return failure(gone.status());
  return success({{"name", name}, {"deleted", true}});
}

json Applier::snapshot(const json& args) {
  std::string volume = args.at("volume").get<std::string>(), id = args.at("snapshot").get<std::string>();
  // The recovery point (everything acknowledged before now is in the store), as a
  // manifest in the store; made before (the answer was lost): the same manifest.
  auto made = engine_.call({{"op", "snapshot"}, {"name", volume}, {"snapshot", id}, {"timeout", 300}}, 330);
  if (!made) return failure(made.status());
  const json& m = made.value();
  return success({{"snapshot", id},
                  {"volume", volume},
                  {"size", m.value("size", int64_t{0})},
                  {"chunk_size", m.value("chunk_size", int64_t{0})},
                  {"created", m.value("created", int64_t{0})},
                  {"chunks_stored", m.value("chunks", int64_t{0})}});
}

json Applier::deleteSnapshot(const json& args) {
  std::string volume = args.at("volume").get<std::string>(), id = args.at("snapshot").get<std::string>();
  auto gone = engine_.call({{"op", "snapshot-delete"}, {"name", volume}, {"snapshot", id}}, 120);
  if (!gone) return failure(gone.status());
  return success({{"snapshot", id}, {"volume", volume}, {"deleted", true}});
}

json Applier::purgeStore(const json& args) {
  // A lost gateway's store: every volume in it goes, but one that is still leased or
  // read from (the engine says which and why; a rerun finishes them).
  std::string store = args.at("store").get<std::string>();
  auto purged = engine_.call({{"op", "purge-store"}, {"store", store}}, 600);
  if (!purged) return failure(purged.status());
  return success(
      {{"gateway_id", args.value("gateway_id", "")}, {"deleted", purged.value().value("deleted", json::array())}});
}

json Applier::setChap(const json& args) {
  std::string name = args.at("name").get<std::string>();
  if (iscsi_ == nullptr || !iscsi_->enabled()) {
    return failure(Status::invalid("this gateway does not serve iSCSI (iscsi.enabled is off in its configuration)"));
  }
  auto chap = chapFromJson(args);
  if (!chap) return failure(chap.status());
  auto existing = findVolume(engine_, name);
  if (!existing) return failure(existing.status());
  if (existing.value().is_null()) return failure(Status::notFound("no volume named " + name + " on this gateway"));
  if (Status s = iscsi_->setChap(name, chap.value()); !s) return failure(s);
  return success({{"volume", name}, {"target", iscsi_->targetName(name)}, {"chap", chapPublicJson(chap.value())}});
}

json Applier::describe() {
  json out = {{"hostname", facts_.hostname}, {"software_version", facts_.version}, {"addresses", facts_.addresses}};
  auto stats = engine_.call({{"op", "stats"}});
  if (!stats) return failure(stats.status());
  out["engine"] = stats.value();
  if (iscsi_ != nullptr) out["iscsi"] = iscsi_->status();
  return success(out);
}

}  // namespace ferry::agent
