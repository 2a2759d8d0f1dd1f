#pragma once
// Thin RAII wrappers over sqlite3: a connection and a prepared statement. Errors come
// back as Status with the database's own message.

#include <sqlite3.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "ferry/status.h"

namespace ferry {

class SqliteStmt;

class SqliteDb {
 public:
  SqliteDb() = default;
  SqliteDb(SqliteDb&& o) noexcept;
  SqliteDb& operator=(SqliteDb&& o) noexcept;
  SqliteDb(const SqliteDb&) = delete;
  SqliteDb& operator=(const SqliteDb&) = delete;
  ~SqliteDb();

  // Opens (creating when asked) a database file in WAL mode with foreign keys on.
  static Result<SqliteDb> open(const std::string& path, bool create);

  Status exec(std::string_view sql);
  Result<SqliteStmt> prepare(std::string_view sql);
  sqlite3* handle() const { return db_; }
  Status error(std::string_view what) const;
  int64_t lastInsertId() const { return sqlite3_last_insert_rowid(db_); }

 private:
  sqlite3* db_ = nullptr;
  std::string path_;
};

class SqliteStmt {
 public:
  SqliteStmt(sqlite3* db, sqlite3_stmt* st) : db_(db), st_(st) {}
  SqliteStmt(SqliteStmt&& o) noexcept;
  SqliteStmt& operator=(SqliteStmt&&) = delete;
  SqliteStmt(const SqliteStmt&) = delete;
  ~SqliteStmt();

  SqliteStmt& bind(int i, int64_t v);
  SqliteStmt& bind(int i, std::string_view v);
  SqliteStmt& bindNull(int i);
  // SQLITE_ROW -> true, SQLITE_DONE -> false, otherwise an error status.
  Result<bool> step();
  Status run();  // step to completion, expecting no rows
  void reset();
  int64_t int64(int col) const { return sqlite3_column_int64(st_, col); }
  std::string text(int col) const;
  bool isNull(int col) const { return sqlite3_column_type(st_, col) == SQLITE_NULL; }

 private:
  sqlite3* db_;
  sqlite3_stmt* st_;
};

}  // namespace ferry
