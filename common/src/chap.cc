#include "ferry/chap.h"

#include <cctype>

namespace ferry {

using json = nlohmann::json;

namespace {

Status checkSecret(const std::string& what, const std::string& value) {
  if (value.size() < 12 || value.size() > 16) return Status::invalid(what + " must be 12 to 16 characters");
  for (char c : value) {
    if (c <= ' ' || c > '~') return Status::invalid(what + " may hold printable characters only, no spaces");
  }
  return Status::ok();
}

Status checkUser(const std::string& what, const std::string& value) {
  if (value.empty() || value.size() > 64) return Status::invalid(what + " must be 1 to 64 characters");
  for (char c : value) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_' || c == ':')) {
      return Status::invalid(what + " may hold letters, digits, '.', '-', '_' and ':' only");
    }
  }
  return Status::ok();
}

Result<std::string> field(const json& in, const char* name) {
  auto it = in.find(name);
  if (it == in.end() || it->is_null()) return std::string();
  if (!it->is_string()) return Status::invalid(std::string(name) + " must be a string");
  return it->get<std::string>();
}

}  // namespace

Result<ChapSetting> chapFromJson(const json& in) {
  if (!in.is_object()) return Status::invalid("CHAP settings must be a JSON object");
  ChapSetting c;
  for (auto [name, to] : {std::pair{"initiator_user", &c.initiatorUser}, std::pair{"initiator_secret", &c.initiatorSecret},
                          std::pair{"target_user", &c.targetUser}, std::pair{"target_secret", &c.targetSecret}}) {
    auto v = field(in, name);
    if (!v) return v.status();
    *to = v.value();
  }
  if (c.initiatorUser.empty()) {
    if (!c.initiatorSecret.empty() || !c.targetUser.empty() || !c.targetSecret.empty()) {
      return Status::invalid("CHAP needs initiator_user before a secret or mutual CHAP");
    }
    return c;
  }
  if (Status s = checkUser("initiator_user", c.initiatorUser); !s) return s;
  if (Status s = checkSecret("initiator_secret", c.initiatorSecret); !s) return s;
  if (c.targetUser.empty() != c.targetSecret.empty()) {
    return Status::invalid("mutual CHAP needs both target_user and target_secret");
  }
  if (c.mutual()) {
    if (Status s = checkUser("target_user", c.targetUser); !s) return s;
    if (Status s = checkSecret("target_secret", c.targetSecret); !s) return s;
    if (c.targetSecret == c.initiatorSecret) return Status::invalid("target_secret must differ from initiator_secret");
    // One tgtd account per user name: the same name both ways would leave one side unbound.
    if (c.targetUser == c.initiatorUser) return Status::invalid("target_user must differ from initiator_user");
  }
  return c;
}

json chapToJson(const ChapSetting& c) {
  return {{"initiator_user", c.initiatorUser},
          {"initiator_secret", c.initiatorSecret},
          {"target_user", c.targetUser},
          {"target_secret", c.targetSecret}};
}

json chapPublicJson(const ChapSetting& c) {
  return {{"enabled", c.enabled()},
          {"initiator_user", c.initiatorUser},
          {"mutual", c.mutual()},
          {"target_user", c.targetUser}};
}

}  // namespace ferry
