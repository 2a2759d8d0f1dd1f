#include "ferry/log.h"

#include <cstdio>
#include <mutex>

namespace ferry {
namespace {

std::mutex gMu;
LogSink gSink;  // GUARDED_BY(gMu)

}  // namespace

void setLogSink(LogSink sink) {
  std::lock_guard lock(gMu);
  gSink = std::move(sink);
}

void log(LogLevel level, const std::string& message) {
  std::lock_guard lock(gMu);
  if (gSink) {
    gSink(level, message);
    return;
  }
  if (level == LogLevel::kDebug) return;
  std::fprintf(stderr, "ferry: %s\n", message.c_str());
}

}  // namespace ferry
