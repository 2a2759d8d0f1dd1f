#include "ferry/strings.h"

#include <cctype>
#include <limits>

namespace ferry {

Result<uint64_t> parseSize(std::string_view text) {
  if (text.empty()) return Status::invalid("empty size");
  uint64_t value = 0;
  size_t i = 0;
  for (; i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])); ++i) {
    uint64_t d = static_cast<uint64_t>(text[i] - '0');
    if (value > (std::numeric_limits<uint64_t>::max() - d) / 10) {
      return Status::invalid("size '" + std::string(text) + "' is too large");
    }
    value = value * 10 + d;
  }
  if (i == 0) return Status::invalid("size '" + std::string(text) + "' does not start with a number");
  std::string_view suffix = text.substr(i);
  int shift = 0;
  if (suffix.empty() || suffix == "b" || suffix == "B") {
    shift = 0;
  } else if (suffix.size() == 1 || (suffix.size() == 2 && (suffix[1] == 'B' || suffix[1] == 'b')) ||
             (suffix.size() == 3 && suffix.substr(1) == "iB")) {
    switch (std::tolower(static_cast<unsigned char>(suffix[0]))) {
      case 'k': shift = 10; break;
      case 'm': shift = 20; break;
      case 'g': shift = 30; break;
      case 't': shift = 40; break;
      case 'p': shift = 50; break;
      case 'e': shift = 60; break;
      default: return Status::invalid("size '" + std::string(text) + "' has an unknown suffix");
    }
  } else {
    return Status::invalid("size '" + std::string(text) + "' has an unknown suffix");
  }
  if (shift > 0 && value > (std::numeric_limits<uint64_t>::max() >> shift)) {
    return Status::invalid("size '" + std::string(text) + "' is too large");
  }
  return value << shift;
}

Status checkVolumeName(std::string_view name) {
  if (name.empty() || name.size() > 64) {
    return Status::invalid("volume name must be 1-64 characters, got '" + std::string(name) + "'");
  }
  if (name.front() == '.' || name.front() == '-') {
    return Status::invalid("volume name '" + std::string(name) + "' must not start with '.' or '-'");
  }
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') {
      return Status::invalid("volume name '" + std::string(name) +
                             "' may only hold letters, digits, '.', '_' and '-'");
    }
  }
  if (name.find("..") != std::string_view::npos) {
    return Status::invalid("volume name '" + std::string(name) + "' must not contain '..'");
  }
  return Status::ok();
}

std::string percentDecode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() &&
        std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out.push_back(static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16)));
      i += 2;
    } else if (s[i] == '+') {
      out.push_back(' ');
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::map<std::string, std::string> parseQuery(std::string_view query) {
  std::map<std::string, std::string> out;
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view part = query.substr(0, amp);
    if (!part.empty()) {
      size_t eq = part.find('=');
      if (eq == std::string_view::npos) {
        out[percentDecode(part)] = "";
      } else {
        out[percentDecode(part.substr(0, eq))] = percentDecode(part.substr(eq + 1));
      }
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return out;
}

std::string join(const std::vector<std::string>& parts, std::string_view sep) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i) out += sep;
    out += parts[i];
  }
  return out;
}

}  // namespace ferry
