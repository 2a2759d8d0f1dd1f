#include "ferry/sqlite.h"

#include <utility>

namespace ferry {

SqliteDb::SqliteDb(SqliteDb&& o) noexcept : db_(std::exchange(o.db_, nullptr)), path_(std::move(o.path_)) {}

SqliteDb& SqliteDb::operator=(SqliteDb&& o) noexcept {
  if (this != &o) {
    if (db_) sqlite3_close_v2(db_);
    db_ = std::exchange(o.db_, nullptr);
    path_ = std::move(o.path_);
  }
  return *this;
}

SqliteDb::~SqliteDb() {
  if (db_) sqlite3_close_v2(db_);
}

Result<SqliteDb> SqliteDb::open(const std::string& path, bool create) {
  SqliteDb db;
  db.path_ = path;
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
  int rc = sqlite3_open_v2(path.c_str(), &db.db_, flags, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db.db_ ? sqlite3_errmsg(db.db_) : sqlite3_errstr(rc);
    if (rc == SQLITE_CANTOPEN) return Status::notFound("cannot open database " + path + ": " + msg);
    return Status::corruption("cannot open database " + path + ": " + msg);
  }
  sqlite3_busy_timeout(db.db_, 5000);
  // Reading the schema catches a file that is not a database at all.
  if (Status s = db.exec("PRAGMA journal_mode=WAL"); !s) {
    return Status::corruption("database " + path + " is not usable: " + s.message());
  }
  if (Status s = db.exec("PRAGMA foreign_keys=ON; PRAGMA synchronous=FULL"); !s) return s;
  return db;
}

Status SqliteDb::error(std::string_view what) const {
  int rc = sqlite3_errcode(db_);
  std::string msg = std::string(what) + " (" + path_ + "): " + sqlite3_errmsg(db_);
  if (rc == SQLITE_FULL) return Status::noSpace(msg);
  if (rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB) return Status::corruption(msg);
  if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) return Status::busy(msg);
  return Status::ioError(msg);
}

Status SqliteDb::exec(std::string_view sql) {
  char* err = nullptr;
  std::string text(sql);
  if (sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    Status s = error("sql");
    sqlite3_free(err);
    return s;
  }
  return Status::ok();
}

Result<SqliteStmt> SqliteDb::prepare(std::string_view sql) {
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db_, sql.data(), static_cast<int>(sql.size()), &st, nullptr) != SQLITE_OK) {
    return error("prepare");
  }
  return SqliteStmt(db_, st);
}

SqliteStmt::SqliteStmt(SqliteStmt&& o) noexcept : db_(o.db_), st_(std::exchange(o.st_, nullptr)) {}

SqliteStmt::~SqliteStmt() {
  if (st_) sqlite3_finalize(st_);
}

SqliteStmt& SqliteStmt::bind(int i, int64_t v) {
  sqlite3_bind_int64(st_, i, v);
  return *this;
}

SqliteStmt& SqliteStmt::bindNull(int i) {
  sqlite3_bind_null(st_, i);
  return *this;
}

SqliteStmt& SqliteStmt::bind(int i, std::string_view v) {
  sqlite3_bind_text(st_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  return *this;
}

Result<bool> SqliteStmt::step() {
  int rc = sqlite3_step(st_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  std::string msg = std::string("sql step: ") + sqlite3_errmsg(db_);
  if (rc == SQLITE_FULL) return Status::noSpace(msg);
  if (rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB) return Status::corruption(msg);
  return Status::ioError(msg);
}

Status SqliteStmt::run() {
  for (;;) {
    auto r = step();
    if (!r) {
      reset();
      return r.status();
    }
    if (!r.value()) break;
  }
  reset();
  return Status::ok();
}

void SqliteStmt::reset() {
  sqlite3_reset(st_);
  sqlite3_clear_bindings(st_);
}

std::string SqliteStmt::text(int col) const {
  const unsigned char* p = sqlite3_column_text(st_, col);
  return p ? std::string(reinterpret_cast<const char*>(p)) : std::string();
}

}  // namespace ferry
