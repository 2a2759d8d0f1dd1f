#pragma once
// The requests the provider sends down a gateway's channel (DESIGN.md "Control"):
// their names, what their arguments must be, and the names of the things they make.
// The frame down is {id, op, args}; the gateway answers {id, ok, result|error}.
//
//   volume.create   {name, size, chunk_size}    a volume (size in bytes, a multiple of
//                                               the chunk size; chunk a power of two)
//   volume.delete   {name}
//   volume.chap     {name, initiator_user, initiator_secret, target_user,
//                    target_secret}             the volume's iSCSI CHAP (ferry/chap.h);
//                                               an empty initiator_user turns it off
//   snapshot.create {snapshot, volume}          snapshot: the id the provider chose
//   snapshot.delete {snapshot, volume}
//   gateway.describe {}                         what the gateway is and holds
//   gateway.shutdown {}                         the agent stops its services
//   certificate.renew {}                        the gateway answers {csr} for its key
//   certificate.install {certificate, not_after, ca_certificate}
//                                               the renewed channel certificate
//   bandwidth.set   {revision, timezone, limits} limits: ferry/bandwidth_schedule.h;
//                                               a gateway keeps the highest revision

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "ferry/status.h"

namespace ferry::control {

constexpr int64_t kDefaultChunkSize = int64_t{1} << 20;
constexpr int64_t kMinChunkSize = int64_t{64} << 10;
constexpr int64_t kMaxChunkSize = int64_t{64} << 20;
constexpr int64_t kMaxVolumeSize = int64_t{64} << 40;

// Volume names are checked as the engine checks them (ferry/strings.h).
Status checkVolumeSize(int64_t size, int64_t chunkSize);

// Whether op is one the provider knows and args fit it (an object with the fields
// above, nothing else).
Status checkRequest(const std::string& op, const nlohmann::json& args);

// Ops a customer may submit directly (POST /v1/gateways/ID/requests): those that
// change nothing the provider keeps a record of. The others come through their own
// resources (volumes, snapshots), which keep that record.
bool isDirectOp(const std::string& op);

}  // namespace ferry::control
