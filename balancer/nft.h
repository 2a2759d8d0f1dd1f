#pragma once
// Running nft(8): a script applied as one transaction (all of it or none), and a
// listing read back as JSON.

#include <nlohmann/json.hpp>
#include <string>

#include "ferry/status.h"

namespace ferry::balancer {

// Applies script with `nft -f` (atomic: the kernel takes the whole batch or nothing).
// The error carries nft's own message.
Status applyNft(const std::string& script, const std::string& what);
// `nft -j ARGS`, parsed.
Result<nlohmann::json> listNft(const std::string& args);
// Whether `nft` can be run here.
bool haveNft();

}  // namespace ferry::balancer
