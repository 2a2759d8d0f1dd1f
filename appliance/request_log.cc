#include "request_log.h"

#include <ctime>

namespace ferry::agent {

using json = nlohmann::json;

Result<std::unique_ptr<RequestLog>> RequestLog::open(const std::string& path) {
  auto db = SqliteDb::open(path, true);
  if (!db) return db.status();
  if (Status s = db.value().exec("CREATE TABLE IF NOT EXISTS requests ("
                                 " id TEXT PRIMARY KEY,"
                                 " op TEXT NOT NULL,"
                                 " answer TEXT NOT NULL,"  // '' while applying
                                 " received_at INTEGER NOT NULL,"
                                 " answered_at INTEGER NOT NULL)");
      !s) {
    return s;
  }
  return std::unique_ptr<RequestLog>(new RequestLog(std::move(db).value()));
}

Result<std::optional<json>> RequestLog::answerOf(const std::string& id) {
  std::lock_guard<std::mutex> l(mutex_);
  auto st = db_.prepare("SELECT answer FROM requests WHERE id = ?1");
  if (!st) return st.status();
  st.value().bind(1, id);
  auto row = st.value().step();
  if (!row) return row.status();
  if (!row.value()) return std::optional<json>();
  std::string text = st.value().text(0);
  if (text.empty()) return std::optional<json>();  // begun, never answered
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded()) return Status::corruption("stored answer of " + id + " is not JSON");
  return std::optional<json>(j);
}

Status RequestLog::begin(const std::string& id, const std::string& op) {
  std::lock_guard<std::mutex> l(mutex_);
  auto st = db_.prepare(
      "INSERT INTO requests (id, op, answer, received_at, answered_at) VALUES (?1, ?2, '', ?3, 0)"
      " ON CONFLICT (id) DO NOTHING");
  if (!st) return st.status();
  return st.value().bind(1, id).bind(2, op).bind(3, static_cast<int64_t>(::time(nullptr))).run();
}

Status RequestLog::finish(const std::string& id, const json& answer) {
  std::lock_guard<std::mutex> l(mutex_);
  auto st = db_.prepare("UPDATE requests SET answer = ?1, answered_at = ?2 WHERE id = ?3");
  if (!st) return st.status();
  return st.value().bind(1, answer.dump()).bind(2, static_cast<int64_t>(::time(nullptr))).bind(3, id).run();
}

int64_t RequestLog::answered() {
  std::lock_guard<std::mutex> l(mutex_);
  auto st = db_.prepare("SELECT COUNT(*) FROM requests WHERE answer <> ''");
  if (!st) return 0;
  auto row = st.value().step();
  return row && row.value() ? st.value().int64(0) : 0;
}

}  // namespace ferry::agent
