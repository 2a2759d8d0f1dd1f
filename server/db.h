#pragma once
// The provider's state database through Poco::Data: SQLite for one server (the
// embedded default), PostgreSQL for a farm. One SQL text serves both: placeholders are
// $1, $2 …, and must first appear in the text in that order (SQLite numbers "$N" by
// first appearance, PostgreSQL by N); ids are text made by the application, so no
// auto-increment dialects.
//
//   sqlite:///abs/path/control.db
//   postgresql://user@host:port/dbname   (or a libpq "host=… dbname=…" string after
//                                         postgresql:)

#include <Poco/Data/SessionPool.h>
#include <Poco/Exception.h>

#include <memory>
#include <string>

#include "ferry/status.h"

namespace ferry::control {

class Db {
 public:
  // Opens the database and brings its schema to the newest version.
  static Result<std::unique_ptr<Db>> open(const std::string& url);

  // A pooled session. SQLite enforces foreign keys (ON DELETE CASCADE) only on
  // connections that ask, so every session asks.
  Poco::Data::Session session();
  bool postgres() const { return postgres_; }
  int schemaVersion();
  // The version this server's migrations bring a database to.
  static int latestVersion();

 private:
  Db(std::unique_ptr<Poco::Data::SessionPool> pool, bool postgres) : pool_(std::move(pool)), postgres_(postgres) {}
  Status migrate();

  std::unique_ptr<Poco::Data::SessionPool> pool_;
  bool postgres_;
};

// A write transaction on a session; rolled back unless committed. On SQLite it is
// BEGIN IMMEDIATE: the write lock is taken at the start, so a transaction that reads
// before it writes waits for another writer (the busy timeout) instead of failing
// with "database is locked" when its read snapshot turns out stale.
class Transaction {
 public:
  Transaction(Poco::Data::Session& s, bool postgres);
  ~Transaction();
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  void commit();
  void rollback();

 private:
  Poco::Data::Session& s_;
  bool postgres_;
  bool open_ = true;
};

// Runs f, turning a Poco exception into a Status that names what was being done.
template <typename F>
Status dbCall(const char* what, F&& f) {
  try {
    return f();
  } catch (const Poco::Exception& e) {
    return Status::ioError(std::string(what) + ": " + e.displayText());
  } catch (const std::exception& e) {
    return Status::ioError(std::string(what) + ": " + e.what());
  }
}

// Whether a failed statement broke a UNIQUE constraint (SQLite and PostgreSQL word it
// differently).
inline bool isUniqueViolation(const Status& s) {
  return s.code() == Code::kIoError && (s.message().find("UNIQUE constraint") != std::string::npos ||
                                        s.message().find("unique constraint") != std::string::npos);
}

}  // namespace ferry::control
