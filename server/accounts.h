#pragma once
// Customer accounts and how they prove who they are: a password (the console logs in
// and gets a session token) or an API token (ferryctl). Tokens are random, shown once,
// stored only as their SHA-256; every later query is scoped to the account they name.

#include <cstdint>
#include <string>
#include <vector>

#include "db.h"
#include "ferry/status.h"

namespace ferry::control {

struct TokenInfo {
  std::string id;
  std::string kind;  // "session" or "api"
  std::string name;
  int64_t createdAt = 0;
  int64_t expiresAt = 0;
  int64_t lastUsedAt = 0;
};

struct IssuedToken {
  TokenInfo info;
  std::string secret;  // the bearer token: shown to the caller once, never stored
};

class Accounts {
 public:
  explicit Accounts(Db& db) : db_(db) {}

  static constexpr int64_t kSessionSeconds = 12 * 3600;
  static constexpr int64_t kApiTokenSeconds = 365 * 24 * 3600;

  // A new account; kBusy if the email is taken, kInvalidArgument for a bad email or a
  // password shorter than 10 characters.
  Result<std::string> signUp(const std::string& email, const std::string& password);
  // A session token for the right email and password; kPermissionDenied otherwise
  // (the same answer for an unknown email as for a wrong password).
  Result<IssuedToken> logIn(const std::string& email, const std::string& password);
  Result<IssuedToken> createApiToken(const std::string& accountId, const std::string& name);
  Result<std::vector<TokenInfo>> listTokens(const std::string& accountId);
  // kNotFound unless the token exists and belongs to the account.
  Status revokeToken(const std::string& accountId, const std::string& tokenId);
  // Log out: revokes the token whose secret this is.
  Status revokeSecret(const std::string& bearer);
  // The account a bearer token names; kPermissionDenied if unknown or expired.
  Result<std::string> authenticate(const std::string& bearer);
  Result<std::string> emailOf(const std::string& accountId);
  Result<int64_t> count();

 private:
  Result<IssuedToken> issue(const std::string& accountId, const std::string& kind, const std::string& name,
                            int64_t lifetime);
  Db& db_;
};

// A plausible email address: one '@', something before it, a dot after it, no spaces,
// at most 254 characters.
bool validEmail(const std::string& email);

}  // namespace ferry::control
