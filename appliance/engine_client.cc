#include "engine_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "ferry/fd.h"

namespace ferry::agent {

using json = nlohmann::json;

namespace {

Status cancelled() {
  return Status::unavailable("the agent is stopping: the volume engine's answer was not awaited");
}

}  // namespace

Status EngineClient::waitReady(int seconds) {
  const uint64_t epoch = cancels_.load();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  for (;;) {
    auto r = callAt({{"op", "list"}}, 5, epoch);
    if (r || r.status().code() != Code::kUnavailable) return Status::ok();
    if (cancelledSince(epoch)) return cancelled();
    if (std::chrono::steady_clock::now() >= deadline) return r.status();
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

Result<json> EngineClient::call(const json& request, int timeoutSeconds) {
  return callAt(request, timeoutSeconds, cancels_.load());
}

Result<json> EngineClient::callAt(const json& request, int timeoutSeconds, uint64_t epoch) {
  if (cancelledSince(epoch)) return cancelled();
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path_.size() >= sizeof addr.sun_path) return Status::invalid("admin socket path too long: " + path_);
  std::memcpy(addr.sun_path, path_.c_str(), path_.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Status::ioError(std::string("socket: ") + std::strerror(errno));
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    return Status::unavailable("the volume engine is not reachable at " + path_ + ": " + std::strerror(errno));
  }
  std::string line = request.dump() + "\n";
  for (size_t done = 0; done < line.size();) {
    ssize_t n = ::send(fd.get(), line.data() + done, line.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Status::unavailable(std::string("send to the volume engine: ") + std::strerror(errno));
    done += static_cast<size_t>(n);
  }
  std::string answer;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeoutSeconds);
  while (answer.find('\n') == std::string::npos) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return Status::unavailable("the volume engine did not answer in time");
    if (cancelledSince(epoch)) return cancelled();
    pollfd p{fd.get(), POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 200)));  // looks at cancelCalls
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;
    char buf[4096];
    ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Status::unavailable("the volume engine closed the connection");
    answer.append(buf, static_cast<size_t>(n));
    if (answer.size() > (size_t{64} << 20)) return Status::corruption("the volume engine's answer is too large");
  }
  json j = json::parse(answer.substr(0, answer.find('\n')), nullptr, false);
  if (!j.is_object()) return Status::corruption("the volume engine's answer is not JSON");
  if (j.value("ok", false)) return j;
  std::string error = j.value("error", "the volume engine refused");
  switch (j.value("errno", 0)) {
    case ENOENT:
      return Status::notFound(error);
    case EINVAL:
      return Status::invalid(error);
    case EBUSY:
    case EEXIST:
      return Status::busy(error);
    case ENOSPC:
      return Status::noSpace(error);
    default:
      return Status::ioError(error);
  }
}

}  // namespace ferry::agent
