#include "renewal.h"

#include <Poco/Data/Statement.h>

#include <nlohmann/json.hpp>

#include "crypto.h"

namespace ferry::control {

using json = nlohmann::json;
using Poco::Data::Keywords::into;
using Poco::Data::Keywords::now;
using Poco::Data::Keywords::use;

namespace {

// Inserts a request the provider itself makes, for the gateway's account.
void insertRequest(Poco::Data::Session& ses, const std::string& gatewayId, const std::string& op, const json& args) {
  std::string gid = gatewayId;
  std::vector<std::string> accounts;
  ses << "SELECT account_id FROM gateways WHERE id = $1", use(gid), into(accounts), now;
  if (accounts.empty()) return;  // deleted meanwhile
  std::string id = "req-" + randomHex(12), acc = accounts.front(), o = op, a = args.dump(), st = "pending", empty;
  int attempts = 0;
  Poco::Int64 created = nowMillis(), zero = 0;
  ses << "INSERT INTO requests (id, account_id, gateway_id, op, args, state, result, error, attempts,"
         " delivered_by, created_at, delivered_at, finished_at)"
         " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
      use(id), use(acc), use(gid), use(o), use(a), use(st), use(empty), use(empty), use(attempts), use(empty),
      use(created), use(zero), use(zero), now;
}

}  // namespace

Status Renewal::ask(const std::string& gatewayId) {
  std::string gid = gatewayId;
  return dbCall("ask for a certificate renewal", [&] {
    Poco::Data::Session ses = db_.session();
    Transaction tx(ses, db_.postgres());
    int open = 0;
    ses << "SELECT COUNT(*) FROM requests WHERE gateway_id = $1 AND op IN ('certificate.renew', 'certificate.install')"
           " AND state IN ('pending', 'delivered')",
        use(gid), into(open), now;
    if (open > 0) return Status::ok();
    insertRequest(ses, gatewayId, "certificate.renew", json::object());
    tx.commit();
    return Status::ok();
  });
}

Status Renewal::settle(Poco::Data::Session& ses, const RequestInfo& r) {
  if (r.op != "certificate.renew" || r.state != "done") return Status::ok();
  std::string csr = r.result.is_object() ? r.result.value("csr", "") : "";
  std::string gid = r.gatewayId;
  std::vector<std::string> fps;
  ses << "SELECT key_fingerprint FROM gateways WHERE id = $1", use(gid), into(fps), now;
  if (fps.empty()) return Status::ok();  // deleted meanwhile
  // A CSR for another key than the one the gateway activated with (or none) is
  // refused: the renew request fails with the reason, and no certificate is issued.
  auto cert = ca_.signGateway(csr, fps.front(), gid, days_);
  if (!cert) {
    std::string rid = r.id, error = json{{"code", "bad_csr"}, {"message", cert.status().message()}}.dump();
    ses << "UPDATE requests SET state = 'failed', error = $1 WHERE id = $2", use(error), use(rid), now;
    return Status::ok();
  }
  std::string serial = cert.value().serial;
  Poco::Int64 until = cert.value().notAfter, at = nowMillis() / 1000;
  ses << "INSERT INTO certificates (serial, gateway_id, not_after, issued_at) VALUES ($1, $2, $3, $4)", use(serial),
      use(gid), use(until), use(at), now;
  insertRequest(ses, gid, "certificate.install",
                {{"certificate", cert.value().certificatePem},
                 {"not_after", cert.value().notAfter},
                 {"ca_certificate", ca_.certificatePem()}});
  return Status::ok();
}

}  // namespace ferry::control
