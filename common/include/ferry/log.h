#pragma once
// Logging that does not tie a library to its host: stderr by default; the nbdkit plugin
// routes it to nbdkit_error / nbdkit_debug, the daemons to their logger.

#include <functional>
#include <string>

namespace ferry {

enum class LogLevel { kDebug, kInfo, kError };
using LogSink = std::function<void(LogLevel, const std::string&)>;

void setLogSink(LogSink sink);
void log(LogLevel level, const std::string& message);
inline void logError(const std::string& m) { log(LogLevel::kError, m); }
inline void logInfo(const std::string& m) { log(LogLevel::kInfo, m); }
inline void logDebug(const std::string& m) { log(LogLevel::kDebug, m); }

}  // namespace ferry
