#pragma once
// Small parsers shared by the plugin, the admin interface and the daemons.

#include <cstdint>
#include <map>
#include <string>
#include <vector>
#include <string_view>

#include "ferry/status.h"

namespace ferry {

// "256M", "10G", "4096", "1T", "512k" -> bytes (powers of 1024, as nbdkit parses them).
Result<uint64_t> parseSize(std::string_view text);

// A volume name: 1-64 of [A-Za-z0-9._-], not starting with '.' or '-'. Names become
// export names and object-store keys, so '/' and '..' are refused.
Status checkVolumeName(std::string_view name);

// "a=1&b=x%2Fy" -> {a:1, b:x/y}
std::map<std::string, std::string> parseQuery(std::string_view query);
std::string percentDecode(std::string_view s);
// The parts with sep between them.
std::string join(const std::vector<std::string>& parts, std::string_view sep);

}  // namespace ferry
