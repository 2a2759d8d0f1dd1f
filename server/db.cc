#include "db.h"

#include <Poco/Data/PostgreSQL/Connector.h>
#include <Poco/Data/SQLite/Connector.h>
#include <Poco/Data/Statement.h>

#include <mutex>
#include <vector>

namespace ferry::control {

using Poco::Data::Keywords::into;
using Poco::Data::Keywords::now;
using Poco::Data::Keywords::use;

namespace {

// Each migration moves the schema up one version; applied in order, each in its own
// transaction, never edited once released (add a new one instead).
const std::vector<std::vector<const char*>>& migrations() {
  static const std::vector<std::vector<const char*>> m = {
      // 1: accounts and their credentials
      {
          "CREATE TABLE accounts ("
          " id TEXT PRIMARY KEY,"
          " email TEXT NOT NULL UNIQUE,"
          " password_hash TEXT NOT NULL,"
          " created_at BIGINT NOT NULL)",
          // Session tokens (console logins) and API tokens (ferryctl): only the SHA-256
          // of a token is stored.
          "CREATE TABLE tokens ("
          " id TEXT PRIMARY KEY,"
          " account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,"
          " kind TEXT NOT NULL,"
          " name TEXT NOT NULL,"
          " token_hash TEXT NOT NULL UNIQUE,"
          " created_at BIGINT NOT NULL,"
          " expires_at BIGINT NOT NULL,"
          " last_used_at BIGINT NOT NULL)",
          "CREATE INDEX tokens_account ON tokens(account_id)",
      },
      // 2: gateways and their activation
      {
          "CREATE TABLE gateways ("
          " id TEXT PRIMARY KEY,"
          " account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,"
          " name TEXT NOT NULL,"
          " timezone TEXT NOT NULL,"
          " public_key TEXT NOT NULL,"
          " key_fingerprint TEXT NOT NULL UNIQUE,"
          " hostname TEXT NOT NULL,"
          " version TEXT NOT NULL,"
          " addresses TEXT NOT NULL,"  // JSON array
          " created_at BIGINT NOT NULL,"
          " last_seen_at BIGINT NOT NULL)",
          "CREATE INDEX gateways_account ON gateways(account_id)",
          // One row per activation a gateway started; key_hash is the SHA-256 of the
          // normalized key; gateway_id is set once a customer claimed it.
          "CREATE TABLE activations ("
          " request_id TEXT PRIMARY KEY,"
          " key_hash TEXT NOT NULL UNIQUE,"
          " public_key TEXT NOT NULL,"
          " key_fingerprint TEXT NOT NULL,"
          " hostname TEXT NOT NULL,"
          " version TEXT NOT NULL,"
          " addresses TEXT NOT NULL,"
          " created_at BIGINT NOT NULL,"
          " expires_at BIGINT NOT NULL,"
          " gateway_id TEXT)",
          "CREATE TABLE claim_failures (account_id TEXT NOT NULL, at BIGINT NOT NULL)",
          "CREATE INDEX claim_failures_account ON claim_failures(account_id, at)",
      },
      // 3: client certificates issued to gateways (activation step 5, rotation)
      {
          "CREATE TABLE certificates ("
          " serial TEXT PRIMARY KEY,"
          " gateway_id TEXT NOT NULL REFERENCES gateways(id) ON DELETE CASCADE,"
          " not_after BIGINT NOT NULL,"
          " issued_at BIGINT NOT NULL)",
          "CREATE INDEX certificates_gateway ON certificates(gateway_id)",
      },
      // 4: the registration service: which server holds which gateway's channel
      {
          "CREATE TABLE registrations ("
          " gateway_id TEXT PRIMARY KEY REFERENCES gateways(id) ON DELETE CASCADE,"
          " server_id TEXT NOT NULL,"
          " epoch BIGINT NOT NULL,"
          " connected_at BIGINT NOT NULL)",
      },
      // 5: servers of the farm and their heartbeats; registrations of a server whose
      // heartbeat stopped are stale
      {
          "CREATE TABLE servers ("
          " id TEXT PRIMARY KEY,"
          " started_at BIGINT NOT NULL,"
          " heartbeat_at BIGINT NOT NULL)",
      },
      // 6: the outbox (every request to a gateway, stored before it is sent), the
      // volumes and snapshots the provider asked gateways for, and where each server's
      // internal (peer) endpoint is
      {
          "ALTER TABLE servers ADD COLUMN internal_url TEXT NOT NULL DEFAULT ''",
          // state: pending → delivered → done | failed; times in milliseconds (0 = not
          // yet); result and error are JSON texts ('' until finished).
          "CREATE TABLE requests ("
          " id TEXT PRIMARY KEY,"
          " account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,"
          " gateway_id TEXT NOT NULL REFERENCES gateways(id) ON DELETE CASCADE,"
          " op TEXT NOT NULL,"
          " args TEXT NOT NULL,"
          " state TEXT NOT NULL,"
          " result TEXT NOT NULL,"
          " error TEXT NOT NULL,"
          " attempts INTEGER NOT NULL,"
          " delivered_by TEXT NOT NULL,"
          " created_at BIGINT NOT NULL,"
          " delivered_at BIGINT NOT NULL,"
          " finished_at BIGINT NOT NULL)",
          "CREATE INDEX requests_gateway ON requests(gateway_id, created_at)",
          "CREATE INDEX requests_open ON requests(state, gateway_id)",
          // state: creating → available → deleting (gone when the delete is done);
          // a failed create removes the row (the request keeps the error).
          "CREATE TABLE volumes ("
          " gateway_id TEXT NOT NULL REFERENCES gateways(id) ON DELETE CASCADE,"
          " name TEXT NOT NULL,"
          " size BIGINT NOT NULL,"
          " chunk_size BIGINT NOT NULL,"
          " state TEXT NOT NULL,"
          " request_id TEXT NOT NULL,"
          " created_at BIGINT NOT NULL,"
          " PRIMARY KEY (gateway_id, name))",
          // state: pending → completed | failed; deleting (gone when done)
          "CREATE TABLE snapshots ("
          " id TEXT PRIMARY KEY,"
          " gateway_id TEXT NOT NULL REFERENCES gateways(id) ON DELETE CASCADE,"
          " volume TEXT NOT NULL,"
          " state TEXT NOT NULL,"
          " request_id TEXT NOT NULL,"
          " created_at BIGINT NOT NULL,"
          " completed_at BIGINT NOT NULL,"
          " detail TEXT NOT NULL)",
          "CREATE INDEX snapshots_volume ON snapshots(gateway_id, volume)",
      },
      // 7: bandwidth limits (the customer's setting as JSON, and its revision), and
      // gateway metrics over time (a row per report: the gateway's totals with volume
      // '', and one per volume; -1 stands for "none" in the ratios).
      {
          "ALTER TABLE gateways ADD COLUMN bandwidth TEXT NOT NULL DEFAULT '{}'",
          "ALTER TABLE gateways ADD COLUMN bandwidth_revision BIGINT NOT NULL DEFAULT 0",
          "CREATE TABLE metrics ("
          " gateway_id TEXT NOT NULL REFERENCES gateways(id) ON DELETE CASCADE,"
          " volume TEXT NOT NULL,"
          " at BIGINT NOT NULL,"
          " interval_seconds INTEGER NOT NULL,"
          " cache_hit_ratio DOUBLE PRECISION NOT NULL,"
          " cached_bytes BIGINT NOT NULL,"
          " dirty_bytes BIGINT NOT NULL,"
          " upload_buffer_used DOUBLE PRECISION NOT NULL,"
          " bytes_up BIGINT NOT NULL,"
          " bytes_down BIGINT NOT NULL,"
          " PRIMARY KEY (gateway_id, volume, at))",
          "CREATE INDEX metrics_at ON metrics(at)",
      },
      // 8: snapshot schedules (every N hours, keep the last K), and which snapshots
      // a schedule took.
      {
          "ALTER TABLE snapshots ADD COLUMN scheduled INTEGER NOT NULL DEFAULT 0",
          "CREATE TABLE snapshot_schedules ("
          " gateway_id TEXT NOT NULL,"
          " volume TEXT NOT NULL,"
          " every_hours INTEGER NOT NULL,"
          " keep_last INTEGER NOT NULL,"
          " next_at BIGINT NOT NULL,"
          " PRIMARY KEY (gateway_id, volume),"
          " FOREIGN KEY (gateway_id, volume) REFERENCES volumes(gateway_id, name) ON DELETE CASCADE)",
          "CREATE INDEX snapshot_schedules_due ON snapshot_schedules(next_at)",
      },
      // 9: iSCSI: each volume's CHAP credentials (kept for the gateway) and what the
      // gateway last reported of its target (state, initiators logged in).
      {
          "CREATE TABLE volume_iscsi ("
          " gateway_id TEXT NOT NULL,"
          " volume TEXT NOT NULL,"
          " initiator_user TEXT NOT NULL DEFAULT '',"
          " initiator_secret TEXT NOT NULL DEFAULT '',"
          " target_user TEXT NOT NULL DEFAULT '',"
          " target_secret TEXT NOT NULL DEFAULT '',"
          " chap_request_id TEXT NOT NULL DEFAULT '',"
          " target TEXT NOT NULL DEFAULT '',"
          " state TEXT NOT NULL DEFAULT '',"
          " error TEXT NOT NULL DEFAULT '',"
          " initiators TEXT NOT NULL DEFAULT '[]',"
          " reported_at BIGINT NOT NULL DEFAULT 0,"
          " PRIMARY KEY (gateway_id, volume),"
          " FOREIGN KEY (gateway_id, volume) REFERENCES volumes(gateway_id, name) ON DELETE CASCADE)",
      },
      // 10: a volume made from a snapshot or a recovery point says which (JSON).
      {
          "ALTER TABLE volumes ADD COLUMN source TEXT NOT NULL DEFAULT ''",
      },
      // 11: which connection (registration epoch) a request last went down, so that a
      // request sent on a connection that died unanswered after the gateway had
      // reconnected is sent again on the new one.
      {
          "ALTER TABLE requests ADD COLUMN delivered_epoch BIGINT NOT NULL DEFAULT 0",
      },
  };
  return m;
}

void registerConnectors() {
  static std::once_flag once;
  std::call_once(once, [] {
    Poco::Data::SQLite::Connector::registerConnector();
    Poco::Data::PostgreSQL::Connector::registerConnector();
  });
}

}  // namespace

Result<std::unique_ptr<Db>> Db::open(const std::string& url) {
  registerConnectors();
  std::string connector, conn;
  bool postgres = false;
  if (url.rfind("sqlite://", 0) == 0) {
    connector = "SQLite";
    conn = url.substr(9);
    if (conn.empty() || conn.front() != '/') {
      return Status::invalid("database URL " + url + ": want sqlite:///absolute/path");
    }
  } else if (url.rfind("postgresql:", 0) == 0) {
    connector = "PostgreSQL";
    postgres = true;
    conn = url.rfind("postgresql://", 0) == 0 ? url : url.substr(11);
  } else {
    return Status::invalid("database URL " + url + ": want sqlite:///path or postgresql://…");
  }
  std::unique_ptr<Db> db;
  Status s = dbCall("open database", [&] {
    auto pool = std::make_unique<Poco::Data::SessionPool>(connector, conn, 1, 32, 60);
    Poco::Data::Session probe = pool->get();
    if (!postgres) {
      // WAL: readers do not block the writer; wait rather than fail on a busy database.
      probe << "PRAGMA journal_mode=WAL", now;
      probe << "PRAGMA foreign_keys=ON", now;
    }
    db.reset(new Db(std::move(pool), postgres));
    return Status::ok();
  });
  if (!s) return s;
  if (Status m = db->migrate(); !m) return m;
  return db;
}

Poco::Data::Session Db::session() {
  Poco::Data::Session s = pool_->get();
  if (!postgres_) {
    s << "PRAGMA foreign_keys=ON", now;
    s.setConnectionTimeout(10);  // seconds a statement waits for another writer
  }
  return s;
}

Transaction::Transaction(Poco::Data::Session& s, bool postgres) : s_(s), postgres_(postgres) {
  if (postgres_)
    s_.begin();
  else
    s_ << "BEGIN IMMEDIATE", now;
}

Transaction::~Transaction() {
  try {
    rollback();
  } catch (...) {
  }
}

void Transaction::commit() {
  if (!open_) return;
  // Closed only once COMMIT went through: if it throws, the destructor rolls back
  // (a pooled SQLite connection must not keep the write lock).
  if (postgres_)
    s_.commit();
  else
    s_ << "COMMIT", now;
  open_ = false;
}

void Transaction::rollback() {
  if (!open_) return;
  open_ = false;
  if (postgres_)
    s_.rollback();
  else
    s_ << "ROLLBACK", now;
}

int Db::latestVersion() {
  return static_cast<int>(migrations().size());
}

int Db::schemaVersion() {
  int version = 0;
  Status s = dbCall("read schema version", [&] {
    Poco::Data::Session ses = session();
    ses << "SELECT COALESCE(MAX(version), 0) FROM schema_version", into(version), now;
    return Status::ok();
  });
  return s ? version : -1;
}

Status Db::migrate() {
  return dbCall("migrate schema", [&] {
    Poco::Data::Session ses = session();
    // Servers of a farm starting together: one migrates, the others wait for it.
    if (postgres_) {
      ses << "SET client_min_messages TO WARNING", now;  // no NOTICE for IF NOT EXISTS
      ses << "SELECT pg_advisory_lock(7071)", now;
    }
    struct Unlock {
      Poco::Data::Session& s;
      bool pg;
      ~Unlock() {
        try {
          if (pg) s << "SELECT pg_advisory_unlock(7071)", now;
        } catch (...) {
        }
      }
    } unlock{ses, postgres_};
    ses << "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)", now;
    int current = schemaVersion();
    const auto& all = migrations();
    if (current > static_cast<int>(all.size())) {
      return Status::invalid("database schema version " + std::to_string(current) +
                             " is newer than this ferry-control knows (" + std::to_string(all.size()) +
                             "): refusing to run an older server on it");
    }
    for (size_t v = static_cast<size_t>(current) + 1; v <= all.size(); ++v) {
      Transaction tx(ses, postgres_);
      for (const char* sql : all[v - 1]) ses << sql, now;
      int version = static_cast<int>(v);
      Poco::Int64 at = static_cast<Poco::Int64>(::time(nullptr));
      ses << "INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)", use(version), use(at), now;
      tx.commit();
    }
    return Status::ok();
  });
}

}  // namespace ferry::control
