#include "ferry/status.h"

#include <cstring>

namespace ferry {

int Status::toErrno() const {
  switch (code_) {
    case Code::kOk: return 0;
    case Code::kNotFound: return ENOENT;
    case Code::kInvalidArgument: return EINVAL;
    case Code::kIoError: return errno_ ? errno_ : EIO;
    case Code::kNoSpace: return ENOSPC;
    case Code::kUnavailable: return EIO;
    case Code::kPermissionDenied: return EACCES;
    case Code::kBusy: return EBUSY;
    case Code::kCorruption: return EIO;
    case Code::kFenced: return EROFS;
    case Code::kRateLimited: return EAGAIN;
    case Code::kConflict: return EAGAIN;
  }
  return EIO;
}

std::string Status::toString() const {
  const char* name = "ok";
  switch (code_) {
    case Code::kOk: return "ok";
    case Code::kNotFound: name = "not found"; break;
    case Code::kInvalidArgument: name = "invalid argument"; break;
    case Code::kIoError: name = "I/O error"; break;
    case Code::kNoSpace: name = "no space left"; break;
    case Code::kUnavailable: name = "unavailable"; break;
    case Code::kPermissionDenied: name = "permission denied"; break;
    case Code::kBusy: name = "busy"; break;
    case Code::kCorruption: name = "corruption"; break;
    case Code::kFenced: name = "fenced"; break;
    case Code::kRateLimited: name = "rate limited"; break;
    case Code::kConflict: name = "conflict"; break;
  }
  return std::string(name) + ": " + message_;
}

Status Status::withContext(const std::string& context) const {
  if (isOk()) return *this;
  return Status(code_, context + ": " + message_, errno_);
}

Status errnoStatus(const std::string& context, int err) {
  std::string m = context + ": " + std::strerror(err);
  switch (err) {
    case ENOENT: return Status::notFound(m);
    case ENOSPC:
    case EDQUOT: return Status::noSpace(m);
    case EACCES:
    case EPERM: return Status::denied(m);
    case EINVAL: return Status::invalid(m);
    default: return Status::ioError(m, err);
  }
}

}  // namespace ferry
