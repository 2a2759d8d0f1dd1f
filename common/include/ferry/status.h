#pragma once
// Status and Result<T>: how the data path reports failure. The cache, metadata,
// uploader and store clients return these; only control code may throw.
// (After LevelDB's include/leveldb/status.h.)

#include <cerrno>
#include <string>
#include <utility>
#include <variant>

namespace ferry {

enum class Code {
  kOk = 0,
  kNotFound,          // object, volume or key absent
  kInvalidArgument,   // bad input from a caller: never retried
  kIoError,           // local disk error (errno kept)
  kNoSpace,           // local disk full
  kUnavailable,       // transient: store down, 5xx, timeout; worth a retry
  kPermissionDenied,  // wrong credentials, forbidden bucket: not retried
  kBusy,              // held by someone else (volume lease, open connections)
  kCorruption,        // a file or object does not parse
  kFenced,            // another gateway took our volume over: stop writing
  kRateLimited,       // too many attempts (e.g. activation key guesses): try later
  kConflict,          // a conditional write lost: the object changed since it was read
};

class Status {
 public:
  Status() = default;
  static Status ok() { return Status(); }
  static Status notFound(std::string m) { return Status(Code::kNotFound, std::move(m)); }
  static Status invalid(std::string m) { return Status(Code::kInvalidArgument, std::move(m)); }
  static Status ioError(std::string m, int err = EIO) { return Status(Code::kIoError, std::move(m), err); }
  static Status noSpace(std::string m) { return Status(Code::kNoSpace, std::move(m), ENOSPC); }
  static Status unavailable(std::string m) { return Status(Code::kUnavailable, std::move(m)); }
  static Status denied(std::string m) { return Status(Code::kPermissionDenied, std::move(m)); }
  static Status busy(std::string m) { return Status(Code::kBusy, std::move(m)); }
  static Status corruption(std::string m) { return Status(Code::kCorruption, std::move(m)); }
  static Status fenced(std::string m) { return Status(Code::kFenced, std::move(m)); }
  static Status rateLimited(std::string m) { return Status(Code::kRateLimited, std::move(m)); }
  static Status conflict(std::string m) { return Status(Code::kConflict, std::move(m)); }

  bool isOk() const { return code_ == Code::kOk; }
  explicit operator bool() const { return isOk(); }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  bool isTransient() const { return code_ == Code::kUnavailable; }

  // The errno an NBD client should see for this status.
  int toErrno() const;
  // "not found: volume x" style text for logs and clients.
  std::string toString() const;
  // Prefixes more context: "upload chunk 7: " + message.
  Status withContext(const std::string& context) const;

 private:
  Status(Code c, std::string m, int err = 0) : code_(c), message_(std::move(m)), errno_(err) {}
  Code code_ = Code::kOk;
  std::string message_;
  int errno_ = 0;
};

// errno -> Status with context, the one place that maps errno values.
Status errnoStatus(const std::string& context, int err);

template <typename T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}           // NOLINT(google-explicit-constructor)
  Result(Status status) : v_(std::move(status)) {}    // NOLINT(google-explicit-constructor)
  bool isOk() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return isOk(); }
  const Status& status() const {
    static const Status kOk;
    return isOk() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  T& operator*() { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace ferry
