#include "gateways.h"

#include <Poco/Data/Statement.h>

#include <cctype>
#include <ctime>
#include <nlohmann/json.hpp>

#include "crypto.h"
#include "ferry/timezone.h"
#include "keys.h"

namespace ferry::control {

using Poco::Data::Keywords::into;
using Poco::Data::Keywords::now;
using Poco::Data::Keywords::use;

namespace {

// 32 symbols without 0/O and 1/I: 16 of them are 80 bits, typed in four groups of four.
constexpr char kKeyAlphabet[] = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
constexpr size_t kKeyLength = 16;

Poco::Int64 nowSeconds() {
  return static_cast<Poco::Int64>(::time(nullptr));
}

std::string newActivationKey() {
  std::string hexBytes = randomHex(kKeyLength);
  std::string key;
  for (size_t i = 0; i < kKeyLength; ++i) {
    int byte = std::stoi(hexBytes.substr(2 * i, 2), nullptr, 16);
    if (i > 0 && i % 4 == 0) key += '-';
    key += kKeyAlphabet[byte & 31];
  }
  return key;
}

std::string addressesJson(const std::vector<std::string>& a) {
  return nlohmann::json(a).dump();
}

std::vector<std::string> addressesOf(const std::string& text) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  std::vector<std::string> out;
  if (j.is_array()) {
    for (const auto& e : j) {
      if (e.is_string()) out.push_back(e.get<std::string>());
    }
  }
  return out;
}

Status checkText(const char* what, const std::string& v, size_t max) {
  if (v.size() > max) return Status::invalid(std::string(what) + " is longer than " + std::to_string(max));
  for (unsigned char c : v) {
    if (c < 0x20 || c == 0x7f) return Status::invalid(std::string(what) + " has control characters");
  }
  return Status::ok();
}

}  // namespace

std::string normalizeActivationKey(const std::string& key) {
  std::string out;
  for (char c : key) {
    if (c == '-' || c == ' ') continue;
    char u = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (std::string_view(kKeyAlphabet).find(u) == std::string_view::npos) return "";
    out += u;
  }
  return out.size() == kKeyLength ? out : "";
}

Status checkGatewayName(const std::string& name) {
  if (name.empty()) return Status::invalid("a gateway name is required");
  return checkText("the gateway name", name, 100);
}

Result<ActivationTicket> Gateways::startActivation(const ActivationRequest& r) {
  auto fp = publicKeyFingerprint(r.publicKey);
  if (!fp) return fp.status();
  if (Status s = checkText("hostname", r.hostname, 253); !s) return s;
  if (Status s = checkText("version", r.version, 64); !s) return s;
  if (r.addresses.size() > 32) return Status::invalid("at most 32 addresses");
  for (const auto& a : r.addresses) {
    if (Status s = checkText("an address", a, 64); !s) return s;
  }
  ActivationTicket t;
  t.requestId = "act-" + randomHex(12);
  t.key = newActivationKey();
  Poco::Int64 created = nowSeconds();
  t.expiresAt = created + kKeyLifetimeSeconds;
  std::string keyHash = sha256Hex(normalizeActivationKey(t.key));
  std::string pub = r.publicKey, fingerprint = fp.value(), host = r.hostname, ver = r.version;
  std::string addrs = addressesJson(r.addresses), id = t.requestId;
  Poco::Int64 expires = t.expiresAt;
  Status s = dbCall("start activation", [&] {
    Poco::Data::Session ses = db_.session();
    ses << "INSERT INTO activations (request_id, key_hash, public_key, key_fingerprint, hostname, version,"
           " addresses, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        use(id), use(keyHash), use(pub), use(fingerprint), use(host), use(ver), use(addrs), use(created), use(expires),
        now;
    return Status::ok();
  });
  if (!s) return s;
  return t;
}

Status Gateways::recordClaimFailure(const std::string& accountId) {
  std::string acc = accountId;
  Poco::Int64 t = nowSeconds();
  return dbCall("record failed claim", [&] {
    Poco::Data::Session ses = db_.session();
    ses << "INSERT INTO claim_failures (account_id, at) VALUES ($1, $2)", use(acc), use(t), now;
    return Status::ok();
  });
}

Result<GatewayInfo> Gateways::claim(const std::string& accountId, const std::string& keyIn, const std::string& name,
                                    const std::string& timezone) {
  if (Status s = checkGatewayName(name); !s) return s;
  std::string tz = timezone.empty() ? "UTC" : timezone;
  if (Status s = checkText("the time zone", tz, 64); !s) return s;
  // Schedules run in it: it must be one the gateway can read.
  if (auto zone = TimeZone::load(tz); !zone) return zone.status();
  std::string acc = accountId;
  Poco::Int64 t = nowSeconds();
  int failures = 0;
  Status s = dbCall("count failed claims", [&] {
    Poco::Data::Session ses = db_.session();
    Poco::Int64 since = t - kClaimWindowSeconds;
    ses << "SELECT COUNT(*) FROM claim_failures WHERE account_id = $1 AND at > $2", use(acc), use(since),
        into(failures), now;
    return Status::ok();
  });
  if (!s) return s;
  if (failures >= kMaxClaimFailures) {
    return Status::rateLimited("too many wrong activation keys; try again in " +
                               std::to_string(kClaimWindowSeconds / 60) + " minutes");
  }
  std::string key = normalizeActivationKey(keyIn);
  if (key.empty()) {
    (void)recordClaimFailure(accountId);
    return Status::invalid("'" + keyIn +
                           "' is not an activation key (16 letters and digits, like ABCD-EFGH-JKLM-NPQR)");
  }
  std::string keyHash = sha256Hex(key);
  GatewayInfo g;
  Status c = dbCall("claim activation", [&] {
    Poco::Data::Session ses = db_.session();
    // A statement that throws leaves the transaction open: tx rolls it back before
    // the session goes back to the pool.
    Transaction tx(ses, db_.postgres());
    std::vector<std::string> ids, pubs, fps, hosts, vers, addrs;
    std::vector<Poco::Int64> expires;
    std::vector<std::string> claimed;
    ses << "SELECT request_id, public_key, key_fingerprint, hostname, version, addresses, expires_at,"
           " COALESCE(gateway_id, '')"
           " FROM activations WHERE key_hash = $1",
        use(keyHash), into(ids), into(pubs), into(fps), into(hosts), into(vers), into(addrs), into(expires),
        into(claimed), now;
    if (ids.empty()) {
      tx.rollback();
      return Status::notFound("no such activation key: check it on the gateway's page");
    }
    if (!claimed[0].empty()) {
      tx.rollback();
      return Status::busy("this activation key was used already");
    }
    if (expires[0] <= t) {
      tx.rollback();
      return Status::invalid("this activation key expired; the gateway shows a new one");
    }
    // The key pair of a gateway this account has already: a re-activation (the way
    // back for a gateway whose certificate expired while it was offline). The
    // customer's claim is the consent; the gateway keeps its id, name and volumes.
    std::vector<std::string> ownerIds, owners, names, tzs;
    ses << "SELECT id, account_id, name, timezone FROM gateways WHERE key_fingerprint = $1", use(fps[0]),
        into(ownerIds), into(owners), into(names), into(tzs), now;
    if (!ownerIds.empty()) {
      if (owners[0] != acc) {
        tx.rollback();
        return Status::busy("this gateway is activated already");
      }
      std::string gid = ownerIds[0];
      ses << "UPDATE gateways SET hostname = $1, version = $2, addresses = $3 WHERE id = $4", use(hosts[0]),
          use(vers[0]), use(addrs[0]), use(gid), now;
      Poco::Data::Statement upd(ses);
      upd << "UPDATE activations SET gateway_id = $1 WHERE request_id = $2 AND gateway_id IS NULL", use(gid),
          use(ids[0]);
      if (upd.execute() != 1) {
        tx.rollback();
        return Status::busy("this activation key was used already");
      }
      tx.commit();
      g.id = gid;
      g.name = names[0];
      g.timezone = tzs[0];
      g.hostname = hosts[0];
      g.version = vers[0];
      g.addresses = addressesOf(addrs[0]);
      g.keyFingerprint = fps[0];
      g.reactivated = true;
      return Status::ok();
    }
    g.id = "gw-" + randomHex(8);
    g.name = name;
    g.timezone = tz;
    g.hostname = hosts[0];
    g.version = vers[0];
    g.addresses = addressesOf(addrs[0]);
    g.keyFingerprint = fps[0];
    g.createdAt = t;
    g.lastSeenAt = 0;
    Poco::Int64 zero = 0;
    std::string gid = g.id, nm = name;
    ses << "INSERT INTO gateways (id, account_id, name, timezone, public_key, key_fingerprint, hostname, version,"
           " addresses, created_at, last_seen_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        use(gid), use(acc), use(nm), use(tz), use(pubs[0]), use(fps[0]), use(hosts[0]), use(vers[0]), use(addrs[0]),
        use(t), use(zero), now;
    // Single use, even when two customers race for the same key: only one UPDATE
    // finds gateway_id still NULL.
    Poco::Data::Statement upd(ses);
    upd << "UPDATE activations SET gateway_id = $1 WHERE request_id = $2 AND gateway_id IS NULL", use(gid), use(ids[0]);
    if (upd.execute() != 1) {
      tx.rollback();
      return Status::busy("this activation key was used already");
    }
    tx.commit();
    return Status::ok();
  });
  if (!c) {
    if (c.code() == Code::kNotFound || c.code() == Code::kInvalidArgument) (void)recordClaimFailure(accountId);
    if (isUniqueViolation(c)) {
      return Status::busy("this gateway is activated already");
    }
    return c;
  }
  return g;
}

Result<ActivationState> Gateways::activationState(const std::string& requestId, int64_t unixTime,
                                                  const std::string& signature) {
  Poco::Int64 t = nowSeconds();
  if (unixTime < t - kSignatureSkewSeconds || unixTime > t + kSignatureSkewSeconds) {
    return Status::denied("the signed time is more than 5 minutes off the server's clock");
  }
  std::vector<std::string> pubs;
  std::vector<std::string> gws;
  std::vector<Poco::Int64> expires;
  std::string id = requestId;
  Status s = dbCall("read activation", [&] {
    Poco::Data::Session ses = db_.session();
    ses << "SELECT public_key, COALESCE(gateway_id, ''), expires_at FROM activations WHERE request_id = $1", use(id),
        into(pubs), into(gws), into(expires), now;
    return Status::ok();
  });
  if (!s) return s;
  if (pubs.empty()) return Status::notFound("no activation request " + requestId);
  if (Status v = verifySignature(pubs[0], activationChallenge(requestId, unixTime), signature); !v) return v;
  ActivationState st;
  if (gws[0].empty()) {
    if (expires[0] <= t) return Status::invalid("the activation key expired before a customer used it; start again");
    return st;
  }
  std::string gid = gws[0];
  std::vector<std::string> accs;
  s = dbCall("find gateway owner", [&] {
    Poco::Data::Session ses = db_.session();
    ses << "SELECT account_id FROM gateways WHERE id = $1", use(gid), into(accs), now;
    return Status::ok();
  });
  if (!s) return s;
  if (accs.empty()) return Status::notFound("the gateway of this activation was deleted");
  auto g = get(accs[0], gid);
  if (!g) return g.status();
  st.activated = true;
  st.gateway = g.value();
  return st;
}

Status Gateways::recordCertificate(const std::string& gatewayId, const std::string& serial, int64_t notAfter) {
  std::string gid = gatewayId, ser = serial;
  Poco::Int64 until = notAfter, at = nowSeconds();
  return dbCall("record certificate", [&] {
    Poco::Data::Session ses = db_.session();
    ses << "INSERT INTO certificates (serial, gateway_id, not_after, issued_at) VALUES ($1, $2, $3, $4)", use(ser),
        use(gid), use(until), use(at), now;
    return Status::ok();
  });
}

Status Gateways::connected(const std::string& gatewayId, const std::string& serverId, int64_t epoch) {
  std::string gid = gatewayId, sid = serverId;
  Poco::Int64 ep = epoch, t = nowSeconds();
  return dbCall("register channel", [&] {
    Poco::Data::Session ses = db_.session();
    ses << "INSERT INTO registrations (gateway_id, server_id, epoch, connected_at) VALUES ($1, $2, $3, $4)"
           " ON CONFLICT (gateway_id) DO UPDATE SET server_id = excluded.server_id, epoch = excluded.epoch,"
           " connected_at = excluded.connected_at",
        use(gid), use(sid), use(ep), use(t), now;
    ses << "UPDATE gateways SET last_seen_at = $1 WHERE id = $2", use(t), use(gid), now;
    return Status::ok();
  });
}

Result<std::vector<bool>> Gateways::connectMany(const std::vector<std::pair<std::string, int64_t>>& channels,
                                                const std::string& serverId) {
  std::string sid = serverId;
  Poco::Int64 t = nowSeconds();
  std::vector<bool> known(channels.size(), false);
  Status s = dbCall("register channels", [&] {
    Poco::Data::Session ses = db_.session();
    Transaction tx(ses, db_.postgres());
    for (size_t i = 0; i < channels.size(); ++i) {
      std::string gid = channels[i].first;
      Poco::Int64 ep = channels[i].second;
      int n = 0;
      ses << "SELECT COUNT(*) FROM gateways WHERE id = $1", use(gid), into(n), now;
      if (n == 0) continue;
      ses << "INSERT INTO registrations (gateway_id, server_id, epoch, connected_at) VALUES ($1, $2, $3, $4)"
             " ON CONFLICT (gateway_id) DO UPDATE SET server_id = excluded.server_id, epoch = excluded.epoch,"
             " connected_at = excluded.connected_at",
          use(gid), use(sid), use(ep), use(t), now;
      ses << "UPDATE gateways SET last_seen_at = $1 WHERE id = $2", use(t), use(gid), now;
      known[i] = true;
    }
    tx.commit();
    return Status::ok();
  });
  if (!s) return s;
  return known;
}

Status Gateways::reclaim(const std::string& serverId, const std::vector<std::pair<std::string, int64_t>>& held) {
  std::string sid = serverId;
  Poco::Int64 t = nowSeconds();
  return dbCall("register channels again", [&] {
    Poco::Data::Session ses = db_.session();
    Transaction tx(ses, db_.postgres());
    for (const auto& [gateway, epoch] : held) {
      std::string gid = gateway;
      Poco::Int64 ep = epoch;
      // Only where no other server registered the gateway meanwhile: a gateway that
      // reconnected elsewhere while this server was taken for dead stays there.
      ses << "INSERT INTO registrations (gateway_id, server_id, epoch, connected_at) VALUES ($1, $2, $3, $4)"
             " ON CONFLICT (gateway_id) DO NOTHING",
          use(gid), use(sid), use(ep), use(t), now;
    }
    tx.commit();
    return Status::ok();
  });
}

Status Gateways::disconnected(const std::string& gatewayId, const std::string& serverId, int64_t epoch) {
  std::string gid = gatewayId, sid = serverId;
  Poco::Int64 ep = epoch, t = nowSeconds();
  return dbCall("deregister channel", [&] {
    Poco::Data::Session ses = db_.session();
    ses << "DELETE FROM registrations WHERE gateway_id = $1 AND server_id = $2 AND epoch = $3", use(gid), use(sid),
        use(ep), now;
    ses << "UPDATE gateways SET last_seen_at = $1 WHERE id = $2", use(t), use(gid), now;
    return Status::ok();
  });
}

Status Gateways::forgetServer(const std::string& serverId) {
  std::string sid = serverId;
  return dbCall("forget server's channels", [&] {
    Poco::Data::Session ses = db_.session();
    ses << "DELETE FROM registrations WHERE server_id = $1", use(sid), now;
    return Status::ok();
  });
}

Result<bool> Gateways::heartbeat(const std::string& serverId, const std::string& internalUrl) {
  std::string sid = serverId, url = internalUrl;
  Poco::Int64 t = nowSeconds();
  bool revived = false;
  Status s = dbCall("server heartbeat", [&] {
    Poco::Data::Session ses = db_.session();
    Poco::Data::Statement up(ses);
    up << "UPDATE servers SET heartbeat_at = $1, internal_url = $2 WHERE id = $3", use(t), use(url), use(sid);
    if (up.execute() > 0) return Status::ok();
    revived = true;
    ses << "INSERT INTO servers (id, started_at, heartbeat_at, internal_url) VALUES ($1, $2, $2, $3)"
           " ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, internal_url = excluded.internal_url",
        use(sid), use(t), use(url), now;
    return Status::ok();
  });
  if (!s) return s;
  return revived;
}

Result<std::optional<PeerServer>> Gateways::holder(const std::string& gatewayId) {
  std::string gid = gatewayId;
  Poco::Int64 cutoff = nowSeconds() - serverStaleSeconds_;
  std::vector<std::string> ids, urls;
  Status s = dbCall("find channel holder", [&] {
    Poco::Data::Session ses = db_.session();
    ses << "SELECT s.id, s.internal_url FROM registrations r JOIN servers s ON s.id = r.server_id"
           " WHERE r.gateway_id = $1 AND s.heartbeat_at >= $2",
        use(gid), use(cutoff), into(ids), into(urls), now;
    return Status::ok();
  });
  if (!s) return s;
  if (ids.empty()) return std::optional<PeerServer>();
  return std::optional<PeerServer>(PeerServer{ids.front(), urls.front()});
}

Result<std::vector<PeerServer>> Gateways::livePeers(const std::string& exceptId) {
  std::string sid = exceptId;
  Poco::Int64 cutoff = nowSeconds() - serverStaleSeconds_;
  std::vector<std::string> ids, urls;
  Status s = dbCall("list live servers", [&] {
    Poco::Data::Session ses = db_.session();
    ses << "SELECT id, internal_url FROM servers WHERE heartbeat_at >= $1 AND id <> $2 ORDER BY id", use(cutoff),
        use(sid), into(ids), into(urls), now;
    return Status::ok();
  });
  if (!s) return s;
  std::vector<PeerServer> out;
  for (size_t i = 0; i < ids.size(); ++i) out.push_back({ids[i], urls[i]});
  return out;
}

Result<int64_t> Gateways::expireStaleServers() {
  Poco::Int64 cutoff = nowSeconds() - serverStaleSeconds_;
  int64_t removed = 0;
  Status s = dbCall("expire stale servers", [&] {
    Poco::Data::Session ses = db_.session();
    // One transaction, the servers' rows first: a server whose heartbeat lands in
    // between either keeps both its row and its registrations, or finds its row gone
    // (and registers its channels again).
    Transaction tx(ses, db_.postgres());
    ses << "DELETE FROM servers WHERE heartbeat_at < $1", use(cutoff), now;
    Poco::Data::Statement del(ses);
    // Rows of servers that stopped beating, or that never had a heartbeat row.
    del << "DELETE FROM registrations WHERE server_id NOT IN (SELECT id FROM servers)";
    removed = static_cast<int64_t>(del.execute());
    tx.commit();
    return Status::ok();
  });
  if (!s) return s;
  return removed;
}

bool Gateways::exists(const std::string& gatewayId) {
  std::string gid = gatewayId;
  int n = 0;
  Status s = dbCall("find gateway", [&] {
    Poco::Data::Session ses = db_.session();
    ses << "SELECT COUNT(*) FROM gateways WHERE id = $1", use(gid), into(n), now;
    return Status::ok();
  });
  return s && n > 0;
}

Result<std::pair<int64_t, int64_t>> Gateways::counts() {
  Poco::Int64 gateways = 0, pending = 0, t = nowSeconds();
  Status s = dbCall("count gateways", [&] {
    Poco::Data::Session ses = db_.session();
    ses << "SELECT COUNT(*) FROM gateways", into(gateways), now;
    ses << "SELECT COUNT(*) FROM activations WHERE gateway_id IS NULL AND expires_at > $1", use(t), into(pending), now;
    return Status::ok();
  });
  if (!s) return s;
  return std::make_pair(static_cast<int64_t>(gateways), static_cast<int64_t>(pending));
}

Result<std::vector<GatewayInfo>> Gateways::list(const std::string& accountId) {
  return select(accountId, "");
}

Result<std::vector<GatewayInfo>> Gateways::select(const std::string& accountId, const std::string& gatewayId) {
  std::vector<std::string> ids, names, tzs, hosts, vers, addrs, fps, servers;
  std::vector<Poco::Int64> created, seen;
  std::string acc = accountId, gid = gatewayId;
  // Online: registered on a server whose heartbeat is fresh.
  Poco::Int64 cutoff = nowSeconds() - serverStaleSeconds_;
  Status s = dbCall("list gateways", [&] {
    Poco::Data::Session ses = db_.session();
    Poco::Data::Statement st(ses);
    st << "SELECT g.id, g.name, g.timezone, g.hostname, g.version, g.addresses, g.key_fingerprint, g.created_at,"
          " g.last_seen_at, COALESCE(srv.id, '')"
          " FROM gateways g LEFT JOIN registrations r ON r.gateway_id = g.id"
          " LEFT JOIN servers srv ON srv.id = r.server_id AND srv.heartbeat_at >= $1"
          " WHERE g.account_id = $2" +
              std::string(gatewayId.empty() ? "" : " AND g.id = $3") + " ORDER BY g.created_at, g.id",
        use(cutoff), use(acc), into(ids), into(names), into(tzs), into(hosts), into(vers), into(addrs), into(fps),
        into(created), into(seen), into(servers);
    if (!gatewayId.empty()) st, use(gid);
    st.execute();
    return Status::ok();
  });
  if (!s) return s;
  std::vector<GatewayInfo> out(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    out[i] = {ids[i],    names[i],
              tzs[i],    hosts[i],
              vers[i],   addressesOf(addrs[i]),
              fps[i],    created[i],
              seen[i],   !servers[i].empty(),
              servers[i]};
  }
  return out;
}

Result<GatewayInfo> Gateways::get(const std::string& accountId, const std::string& id) {
  if (id.empty()) return Status::notFound("no gateway ''");
  auto one = select(accountId, id);
  if (!one) return one.status();
  if (one.value().empty()) return Status::notFound("no gateway " + id);
  return one.value().front();
}

Status Gateways::rename(const std::string& accountId, const std::string& id, const std::string& name) {
  if (Status s = checkGatewayName(name); !s) return s;
  std::string acc = accountId, gid = id, nm = name;
  return dbCall("rename gateway", [&] {
    Poco::Data::Session ses = db_.session();
    Poco::Data::Statement st(ses);
    st << "UPDATE gateways SET name = $1 WHERE id = $2 AND account_id = $3", use(nm), use(gid), use(acc);
    if (st.execute() == 0) return Status::notFound("no gateway " + id);
    return Status::ok();
  });
}

Status Gateways::remove(const std::string& accountId, const std::string& id) {
  std::string acc = accountId, gid = id;
  return dbCall("delete gateway", [&] {
    Poco::Data::Session ses = db_.session();
    Poco::Data::Statement st(ses);
    st << "DELETE FROM gateways WHERE id = $1 AND account_id = $2", use(gid), use(acc);
    if (st.execute() == 0) return Status::notFound("no gateway " + id);
    return Status::ok();
  });
}

}  // namespace ferry::control
