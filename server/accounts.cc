#include "accounts.h"

#include <Poco/Data/Statement.h>
#include <Poco/Nullable.h>

#include <algorithm>
#include <ctime>

#include "crypto.h"

namespace ferry::control {

using Poco::Data::Keywords::into;
using Poco::Data::Keywords::now;
using Poco::Data::Keywords::use;

namespace {
Poco::Int64 nowSeconds() {
  return static_cast<Poco::Int64>(::time(nullptr));
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}
}  // namespace

bool validEmail(const std::string& email) {
  if (email.size() < 3 || email.size() > 254) return false;
  size_t at = email.find('@');
  if (at == 0 || at == std::string::npos || email.find('@', at + 1) != std::string::npos) return false;
  size_t dot = email.find('.', at);
  if (dot == std::string::npos || dot == at + 1 || dot == email.size() - 1) return false;
  return std::none_of(email.begin(), email.end(), [](unsigned char c) { return c <= ' ' || c == 0x7f; });
}

Result<std::string> Accounts::signUp(const std::string& emailIn, const std::string& password) {
  std::string email = lower(emailIn);
  if (!validEmail(email)) return Status::invalid("'" + emailIn + "' is not an email address");
  if (password.size() < 10) return Status::invalid("the password must be at least 10 characters long");
  if (password.size() > 1024) return Status::invalid("the password must be at most 1024 characters long");
  std::string id = "acc-" + randomHex(8);
  std::string hash = hashPassword(password);
  Poco::Int64 at = nowSeconds();
  Status s = dbCall("sign up", [&] {
    Poco::Data::Session ses = db_.session();
    int taken = 0;
    ses << "SELECT COUNT(*) FROM accounts WHERE email = $1", use(email), into(taken), now;
    if (taken > 0) return Status::busy("an account with the email " + email + " already exists");
    ses << "INSERT INTO accounts (id, email, password_hash, created_at) VALUES ($1, $2, $3, $4)", use(id), use(email),
        use(hash), use(at), now;
    return Status::ok();
  });
  if (!s) {
    // Two sign-ups racing for one email: the UNIQUE constraint decides.
    if (isUniqueViolation(s)) {
      return Status::busy("an account with the email " + email + " already exists");
    }
    return s;
  }
  return id;
}

Result<IssuedToken> Accounts::logIn(const std::string& emailIn, const std::string& password) {
  std::string email = lower(emailIn);
  std::vector<std::string> ids, hashes;
  Status s = dbCall("log in", [&] {
    Poco::Data::Session ses = db_.session();
    ses << "SELECT id, password_hash FROM accounts WHERE email = $1", use(email), into(ids), into(hashes), now;
    return Status::ok();
  });
  if (!s) return s;
  // An unknown email costs a hash too, so timing does not tell which emails exist.
  static const std::string kDummy = hashPassword("not a real password");
  bool ok = verifyPassword(password, ids.empty() ? kDummy : hashes[0]);
  if (ids.empty() || !ok) return Status::denied("wrong email or password");
  return issue(ids[0], "session", "console login", kSessionSeconds);
}

Result<IssuedToken> Accounts::createApiToken(const std::string& accountId, const std::string& name) {
  if (name.empty() || name.size() > 100) return Status::invalid("a token name is 1 to 100 characters");
  return issue(accountId, "api", name, kApiTokenSeconds);
}

Result<IssuedToken> Accounts::issue(const std::string& accountId, const std::string& kind, const std::string& name,
                                    int64_t lifetime) {
  IssuedToken t;
  t.secret = "fy_" + randomHex(32);
  t.info.id = "tok-" + randomHex(8);
  t.info.kind = kind;
  t.info.name = name;
  t.info.createdAt = nowSeconds();
  t.info.expiresAt = t.info.createdAt + lifetime;
  t.info.lastUsedAt = t.info.createdAt;
  std::string hash = sha256Hex(t.secret);
  Poco::Int64 created = t.info.createdAt, expires = t.info.expiresAt;
  std::string id = t.info.id, k = kind, n = name, acc = accountId;
  Status s = dbCall("issue token", [&] {
    Poco::Data::Session ses = db_.session();
    ses << "INSERT INTO tokens (id, account_id, kind, name, token_hash, created_at, expires_at, last_used_at)"
           " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        use(id), use(acc), use(k), use(n), use(hash), use(created), use(expires), use(created), now;
    return Status::ok();
  });
  if (!s) return s;
  return t;
}

Result<std::vector<TokenInfo>> Accounts::listTokens(const std::string& accountId) {
  std::vector<std::string> ids, kinds, names;
  std::vector<Poco::Int64> created, expires, used;
  std::string acc = accountId;
  Poco::Int64 t = nowSeconds();
  Status s = dbCall("list tokens", [&] {
    Poco::Data::Session ses = db_.session();
    ses << "SELECT id, kind, name, created_at, expires_at, last_used_at FROM tokens"
           " WHERE account_id = $1 AND expires_at > $2 ORDER BY created_at, id",
        use(acc), use(t), into(ids), into(kinds), into(names), into(created), into(expires), into(used), now;
    return Status::ok();
  });
  if (!s) return s;
  std::vector<TokenInfo> out(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) out[i] = {ids[i], kinds[i], names[i], created[i], expires[i], used[i]};
  return out;
}

Status Accounts::revokeToken(const std::string& accountId, const std::string& tokenId) {
  std::string acc = accountId, id = tokenId;
  return dbCall("revoke token", [&] {
    Poco::Data::Session ses = db_.session();
    Poco::Data::Statement st(ses);
    st << "DELETE FROM tokens WHERE id = $1 AND account_id = $2", use(id), use(acc);
    if (st.execute() == 0) return Status::notFound("no token " + tokenId);
    return Status::ok();
  });
}

Status Accounts::revokeSecret(const std::string& bearer) {
  std::string hash = sha256Hex(bearer);
  return dbCall("revoke token", [&] {
    Poco::Data::Session ses = db_.session();
    ses << "DELETE FROM tokens WHERE token_hash = $1", use(hash), now;
    return Status::ok();
  });
}

Result<std::string> Accounts::authenticate(const std::string& bearer) {
  if (bearer.rfind("fy_", 0) != 0 || bearer.size() != 67) return Status::denied("invalid token");
  std::string hash = sha256Hex(bearer);
  std::vector<std::string> accs, ids;
  std::vector<Poco::Int64> expires, used;
  Status s = dbCall("authenticate", [&] {
    Poco::Data::Session ses = db_.session();
    ses << "SELECT account_id, id, expires_at, last_used_at FROM tokens WHERE token_hash = $1", use(hash), into(accs),
        into(ids), into(expires), into(used), now;
    return Status::ok();
  });
  if (!s) return s;
  Poco::Int64 t = nowSeconds();
  if (accs.empty() || expires[0] <= t) return Status::denied("invalid or expired token");
  if (t - used[0] >= 60) {
    // last_used_at at a minute's resolution: not a write per request.
    std::string id = ids[0];
    (void)dbCall("touch token", [&] {
      Poco::Data::Session ses = db_.session();
      ses << "UPDATE tokens SET last_used_at = $1 WHERE id = $2", use(t), use(id), now;
      return Status::ok();
    });
  }
  return accs[0];
}

Result<int64_t> Accounts::count() {
  Poco::Int64 n = 0;
  Status s = dbCall("count accounts", [&] {
    Poco::Data::Session ses = db_.session();
    ses << "SELECT COUNT(*) FROM accounts", into(n), now;
    return Status::ok();
  });
  if (!s) return s;
  return static_cast<int64_t>(n);
}

Result<std::string> Accounts::emailOf(const std::string& accountId) {
  std::vector<std::string> emails;
  std::string acc = accountId;
  Status s = dbCall("read account", [&] {
    Poco::Data::Session ses = db_.session();
    ses << "SELECT email FROM accounts WHERE id = $1", use(acc), into(emails), now;
    return Status::ok();
  });
  if (!s) return s;
  if (emails.empty()) return Status::notFound("no account " + accountId);
  return emails[0];
}

}  // namespace ferry::control
