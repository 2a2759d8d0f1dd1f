#include "outbox.h"

#include <Poco/Data/Statement.h>
#include <Poco/Tuple.h>

#include <chrono>

#include "crypto.h"

namespace ferry::control {

using json = nlohmann::json;
using Poco::Data::Keywords::into;
using Poco::Data::Keywords::now;
using Poco::Data::Keywords::use;

int64_t nowMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

namespace {

constexpr const char* kColumns =
    "SELECT id, gateway_id, op, args, state, result, error, attempts, delivered_by, created_at, delivered_at,"
    " finished_at, delivered_epoch FROM requests ";

using Row = Poco::Tuple<std::string, std::string, std::string, std::string, std::string, std::string, std::string, int,
                        std::string, Poco::Int64, Poco::Int64, Poco::Int64, Poco::Int64>;

json parseOrNull(const std::string& text) {
  if (text.empty()) return nullptr;
  json j = json::parse(text, nullptr, false);
  return j.is_discarded() ? json() : j;
}

RequestInfo infoOf(const Row& r) {
  RequestInfo i;
  i.id = r.get<0>();
  i.gatewayId = r.get<1>();
  i.op = r.get<2>();
  i.args = parseOrNull(r.get<3>());
  i.state = r.get<4>();
  i.result = parseOrNull(r.get<5>());
  i.error = parseOrNull(r.get<6>());
  i.attempts = r.get<7>();
  i.deliveredBy = r.get<8>();
  i.createdAt = r.get<9>();
  i.deliveredAt = r.get<10>();
  i.finishedAt = r.get<11>();
  i.deliveredEpoch = r.get<12>();
  return i;
}

std::vector<RequestInfo> infosOf(const std::vector<Row>& rows) {
  std::vector<RequestInfo> out;
  out.reserve(rows.size());
  for (const auto& r : rows) out.push_back(infoOf(r));
  return out;
}

}  // namespace

bool ownsGateway(Poco::Data::Session& ses, const std::string& accountId, const std::string& gatewayId) {
  std::string acc = accountId, gid = gatewayId;
  int n = 0;
  ses << "SELECT COUNT(*) FROM gateways WHERE id = $1 AND account_id = $2", use(gid), use(acc), into(n), now;
  return n > 0;
}

Result<RequestInfo> Outbox::submit(const std::string& accountId, const std::string& gatewayId, const std::string& op,
                                   const json& args,
                                   const std::function<Status(Poco::Data::Session&, const std::string&)>& prepare) {
  return submitMade(accountId, gatewayId, op, [&](Poco::Data::Session& ses, const std::string& id) -> Result<json> {
    if (prepare) {
      if (Status p = prepare(ses, id); !p) return p;
    }
    return args;
  });
}

Result<RequestInfo> Outbox::submitMade(const std::string& accountId, const std::string& gatewayId,
                                       const std::string& op, const ArgsMaker& make) {
  RequestInfo info;
  info.id = "req-" + randomHex(12);
  info.gatewayId = gatewayId;
  info.op = op;
  info.state = "pending";
  info.createdAt = nowMillis();
  std::string id = info.id, acc = accountId, gid = gatewayId, o = op, a, st = info.state, empty;
  int attempts = 0;
  Poco::Int64 created = info.createdAt, zero = 0;
  Status s = dbCall("store request", [&] {
    Poco::Data::Session ses = db_.session();
    if (!ownsGateway(ses, accountId, gatewayId)) return Status::notFound("no gateway " + gatewayId);
    Transaction tx(ses, db_.postgres());
    auto made = make(ses, id);
    if (!made) return made.status();
    info.args = made.value();
    a = info.args.dump();
    ses << "INSERT INTO requests (id, account_id, gateway_id, op, args, state, result, error, attempts,"
           " delivered_by, created_at, delivered_at, finished_at)"
           " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        use(id), use(acc), use(gid), use(o), use(a), use(st), use(empty), use(empty), use(attempts), use(empty),
        use(created), use(zero), use(zero), now;
    tx.commit();
    return Status::ok();
  });
  if (!s) return s;
  return info;
}

Result<RequestInfo> Outbox::get(const std::string& accountId, const std::string& id) {
  std::string acc = accountId, rid = id;
  std::vector<Row> rows;
  Status s = dbCall("read request", [&] {
    Poco::Data::Session ses = db_.session();
    ses << std::string(kColumns) + "WHERE id = $1 AND account_id = $2", use(rid), use(acc), into(rows), now;
    return Status::ok();
  });
  if (!s) return s;
  if (rows.empty()) return Status::notFound("no request " + id);
  return infoOf(rows.front());
}

Result<std::vector<RequestInfo>> Outbox::list(const std::string& accountId, const std::string& gatewayId, int limit) {
  std::string gid = gatewayId;
  int lim = std::max(1, std::min(limit, 1000));
  std::vector<Row> rows;
  Status s = dbCall("list requests", [&] {
    Poco::Data::Session ses = db_.session();
    if (!ownsGateway(ses, accountId, gatewayId)) return Status::notFound("no gateway " + gatewayId);
    ses << std::string(kColumns) + "WHERE gateway_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2", use(gid),
        use(lim), into(rows), now;
    return Status::ok();
  });
  if (!s) return s;
  return infosOf(rows);
}

Result<std::vector<RequestInfo>> Outbox::outstanding(const std::string& gatewayId) {
  std::string gid = gatewayId;
  std::vector<Row> rows;
  Status s = dbCall("read outstanding requests", [&] {
    Poco::Data::Session ses = db_.session();
    ses << std::string(kColumns) +
               "WHERE gateway_id = $1 AND state IN ('pending', 'delivered') ORDER BY created_at, id LIMIT 1000",
        use(gid), into(rows), now;
    return Status::ok();
  });
  if (!s) return s;
  return infosOf(rows);
}

Status Outbox::markDelivered(const std::string& id, const std::string& serverId, int64_t epoch) {
  std::string rid = id, sid = serverId;
  Poco::Int64 t = nowMillis(), e = epoch;
  return dbCall("mark request delivered", [&] {
    Poco::Data::Session ses = db_.session();
    // Never moves a finished request back (its answer can overtake this write); an
    // answer that overtook it still leaves who delivered it on record.
    ses << "UPDATE requests SET state = CASE WHEN state IN ('pending', 'delivered') THEN 'delivered' ELSE state END,"
           " attempts = attempts + 1, delivered_by = $1, delivered_at = $2, delivered_epoch = $3"
           " WHERE id = $4 AND (state IN ('pending', 'delivered') OR delivered_by = '')",
        use(sid), use(t), use(e), use(rid), now;
    return Status::ok();
  });
}

Result<bool> Outbox::finish(const std::string& gatewayId, const std::string& id, bool ok, const json& payload) {
  std::string rid = id, gid = gatewayId, state = ok ? "done" : "failed";
  std::string result = ok ? payload.dump() : "", error = ok ? "" : payload.dump();
  Poco::Int64 t = nowMillis();
  bool finished = false;
  Status s = dbCall("finish request", [&] {
    Poco::Data::Session ses = db_.session();
    Transaction tx(ses, db_.postgres());
    Poco::Data::Statement up(ses);
    // Only the first answer finishes it: the state guard makes a repeated one a no-op.
    up << "UPDATE requests SET state = $1, result = $2, error = $3, finished_at = $4"
          " WHERE id = $5 AND gateway_id = $6 AND state IN ('pending', 'delivered')",
        use(state), use(result), use(error), use(t), use(rid), use(gid);
    if (up.execute() == 0) {
      tx.rollback();
      int known = 0;
      ses << "SELECT COUNT(*) FROM requests WHERE id = $1 AND gateway_id = $2", use(rid), use(gid), into(known), now;
      return known ? Status::ok() : Status::notFound("gateway " + gatewayId + " has no request " + id);
    }
    std::vector<Row> rows;
    ses << std::string(kColumns) + "WHERE id = $1", use(rid), into(rows), now;
    if (settler_ && !rows.empty()) {
      if (Status st = settler_(ses, infoOf(rows.front())); !st) return st;
    }
    tx.commit();
    finished = true;
    return Status::ok();
  });
  if (!s) return s;
  return finished;
}

Result<std::vector<std::string>> Outbox::stalledGateways(const std::string& serverId, int64_t ageMillis) {
  std::string sid = serverId;
  Poco::Int64 before = nowMillis() - ageMillis;
  std::vector<std::string> ids;
  Status s = dbCall("find stalled requests", [&] {
    Poco::Data::Session ses = db_.session();
    ses << "SELECT DISTINCT r.gateway_id FROM requests r JOIN registrations g ON g.gateway_id = r.gateway_id"
           " WHERE g.server_id = $1 AND ((r.state = 'pending' AND r.created_at < $2)"
           " OR (r.state = 'delivered' AND r.delivered_epoch <> g.epoch AND r.delivered_at < $3))",
        use(sid), use(before), use(before), into(ids), now;
    return Status::ok();
  });
  if (!s) return s;
  return ids;
}

Result<std::vector<std::string>> Outbox::gatewaysWithOpenRequests() {
  std::vector<std::string> ids;
  Status s = dbCall("find gateways with open requests", [&] {
    Poco::Data::Session ses = db_.session();
    ses << "SELECT DISTINCT gateway_id FROM requests WHERE state IN ('pending', 'delivered')", into(ids), now;
    return Status::ok();
  });
  if (!s) return s;
  return ids;
}

Result<std::map<std::string, int64_t>> Outbox::countByState() {
  std::vector<std::string> states;
  std::vector<Poco::Int64> counts;
  Status s = dbCall("count requests", [&] {
    Poco::Data::Session ses = db_.session();
    ses << "SELECT state, COUNT(*) FROM requests GROUP BY state", into(states), into(counts), now;
    return Status::ok();
  });
  if (!s) return s;
  std::map<std::string, int64_t> out{{"pending", 0}, {"delivered", 0}, {"done", 0}, {"failed", 0}};
  for (size_t i = 0; i < states.size(); ++i) out[states[i]] = counts[i];
  return out;
}

}  // namespace ferry::control
