#include "operations.h"

#include <set>

#include "ferry/bandwidth_schedule.h"
#include "ferry/chap.h"
#include "ferry/strings.h"
#include "ferry/timezone.h"

namespace ferry::control {

using json = nlohmann::json;

Status checkVolumeSize(int64_t size, int64_t chunkSize) {
  if (chunkSize < kMinChunkSize || chunkSize > kMaxChunkSize || (chunkSize & (chunkSize - 1)) != 0) {
    return Status::invalid("chunk_size must be a power of two from 64 KiB to 64 MiB");
  }
  if (size <= 0 || size > kMaxVolumeSize) return Status::invalid("size must be from 1 byte to 64 TiB");
  if (size % chunkSize != 0) {
    return Status::invalid("size " + std::to_string(size) + " is not a multiple of the chunk size " +
                           std::to_string(chunkSize));
  }
  return Status::ok();
}

namespace {

// args has exactly these fields (strings unless listed as integers).
Status checkFields(const std::string& op, const json& args, const std::set<std::string>& strings,
                   const std::set<std::string>& integers = {}) {
  if (!args.is_object()) return Status::invalid(op + ": args must be a JSON object");
  for (const auto& [k, v] : args.items()) {
    if (strings.count(k)) {
      if (!v.is_string()) return Status::invalid(op + ": '" + k + "' must be a string");
    } else if (integers.count(k)) {
      if (!v.is_number_integer()) return Status::invalid(op + ": '" + k + "' must be an integer");
    } else {
      return Status::invalid(op + ": unknown argument '" + k + "'");
    }
  }
  for (const auto& k : strings) {
    if (!args.contains(k)) return Status::invalid(op + ": '" + k + "' is required");
  }
  for (const auto& k : integers) {
    if (!args.contains(k)) return Status::invalid(op + ": '" + k + "' is required");
  }
  return Status::ok();
}

}  // namespace

Status checkRequest(const std::string& op, const json& args) {
  if (op == "volume.create") {
    // "source": {"volume", "snapshot", "store"?}: made from that snapshot
    // ("recovery-point": the volume's newest recovery point) in that store.
    json rest = args;
    json source;
    if (rest.is_object() && rest.contains("source")) {
      source = rest["source"];
      rest.erase("source");
    }
    if (Status s = checkFields(op, rest, {"name"}, {"size", "chunk_size"}); !s) return s;
    if (Status s = ferry::checkVolumeName(rest["name"].get<std::string>()); !s) return s;
    if (!source.is_null()) {
      if (source.is_object() && source.contains("store")) {
        if (!source["store"].is_string()) return Status::invalid(op + ": source 'store' must be a URL");
        source.erase("store");  // optional: the gateway's own store
      }
      if (Status s = checkFields(op + " source", source, {"volume", "snapshot"}); !s) return s;
      for (const char* k : {"volume", "snapshot"}) {
        if (Status s = ferry::checkVolumeName(source[k].get<std::string>()); !s) return s.withContext("source");
      }
    }
    return checkVolumeSize(rest["size"].get<int64_t>(), rest["chunk_size"].get<int64_t>());
  }
  if (op == "volume.delete") {
    if (Status s = checkFields(op, args, {"name"}); !s) return s;
    return ferry::checkVolumeName(args["name"].get<std::string>());
  }
  if (op == "volume.chap") {
    if (Status s =
            checkFields(op, args, {"name", "initiator_user", "initiator_secret", "target_user", "target_secret"});
        !s) {
      return s;
    }
    if (Status s = ferry::checkVolumeName(args["name"].get<std::string>()); !s) return s;
    auto chap = chapFromJson(args);
    return chap ? Status::ok() : chap.status().withContext(op);
  }
  if (op == "snapshot.create" || op == "snapshot.delete") {
    if (Status s = checkFields(op, args, {"snapshot", "volume"}); !s) return s;
    return ferry::checkVolumeName(args["volume"].get<std::string>());
  }
  if (op == "store.purge") {
    if (Status s = checkFields(op, args, {"store", "gateway_id"}); !s) return s;
    if (args["store"].get<std::string>().empty()) return Status::invalid(op + ": 'store' must be a store URL");
    return Status::ok();
  }
  if (op == "gateway.describe" || op == "gateway.shutdown" || op == "certificate.renew") {
    return checkFields(op, args, {});
  }
  if (op == "bandwidth.set") {
    if (!args.is_object() || !args.contains("limits")) return Status::invalid(op + ": 'limits' is required");
    json rest = args;
    rest.erase("limits");
    if (Status s = checkFields(op, rest, {"timezone"}, {"revision"}); !s) return s;
    if (auto zone = TimeZone::load(args["timezone"].get<std::string>()); !zone) return zone.status();
    auto schedule = BandwidthSchedule::fromJson(args["limits"]);
    return schedule ? Status::ok() : schedule.status().withContext(op);
  }
  if (op == "certificate.install") {
    return checkFields(op, args, {"certificate", "ca_certificate"}, {"not_after"});
  }
  return Status::invalid(
      "unknown operation '" + op +
      "' (known: volume.create, volume.delete, volume.chap, snapshot.create, snapshot.delete, "
      "store.purge, gateway.describe, gateway.shutdown, certificate.renew, certificate.install, bandwidth.set)");
}

bool isDirectOp(const std::string& op) {
  return op == "gateway.describe" || op == "gateway.shutdown" || op == "certificate.renew";
}

}  // namespace ferry::control
