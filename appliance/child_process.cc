#include "child_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "ferry/strings.h"

namespace ferry::agent {

namespace {

std::vector<char*> pointers(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// Waits for pid up to seconds; true once reaped.
bool reapWithin(pid_t pid, double seconds) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  for (;;) {
    int status;
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid || (r < 0 && errno == ECHILD)) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace

pid_t spawnChild(const ChildSpec& spec) {
  std::vector<std::string> argv = spec.argv;
  std::vector<char*> args = pointers(argv);
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) env.emplace_back(*e);
  env.insert(env.end(), spec.environment.begin(), spec.environment.end());
  std::vector<char*> envp = pointers(env);
  std::string cannot = "ferry-agent: cannot run " + (argv.empty() ? std::string("(nothing)") : argv[0]) + "\n";
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid == 0) {
    if (spec.parentDeathSignal != 0) {
      ::prctl(PR_SET_PDEATHSIG, spec.parentDeathSignal);
      if (::getppid() != parent) ::_exit(1);  // the parent died already
    }
    if (!spec.logFile.empty()) {
      int fd = ::open(spec.logFile.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      if (fd >= 0) {
        ::dup2(fd, STDOUT_FILENO);
        ::dup2(fd, STDERR_FILENO);
      }
    }
    int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null >= 0) ::dup2(null, STDIN_FILENO);
    // Nothing of the agent's (its channel's socket above all) stays open in the child.
    ::close_range(3, ~0U, 0);
    ::execvpe(args[0], args.data(), envp.data());
    ssize_t ignored = ::write(STDERR_FILENO, cannot.data(), cannot.size());
    (void)ignored;
    ::_exit(127);
  }
  return pid;
}

bool stopChild(pid_t pid, int graceSeconds) {
  if (pid <= 0) return true;
  ::kill(pid, SIGTERM);
  if (reapWithin(pid, graceSeconds)) return true;
  ::kill(pid, SIGKILL);
  reapWithin(pid, 5);
  return false;
}

bool childExited(pid_t pid) {
  int status;
  pid_t r = ::waitpid(pid, &status, WNOHANG);
  return r == pid || (r < 0 && errno == ECHILD);
}

Result<std::string> runCommand(const std::vector<std::string>& argv, int timeoutSeconds) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return Status::ioError(std::string("pipe: ") + std::strerror(errno));
  std::vector<std::string> copy = argv;
  std::vector<char*> args = pointers(copy);
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    return Status::ioError(std::string("fork: ") + std::strerror(errno));
  }
  if (pid == 0) {
    ::dup2(fds[1], STDOUT_FILENO);
    ::dup2(fds[1], STDERR_FILENO);
    int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null >= 0) ::dup2(null, STDIN_FILENO);
    ::close_range(3, ~0U, 0);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  std::string output;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeoutSeconds);
  bool timedOut = false;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timedOut = true;
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;
    char buf[4096];
    ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    output.append(buf, static_cast<size_t>(n));
  }
  ::close(fds[0]);
  if (timedOut) ::kill(pid, SIGKILL);
  // A child that closed its output but does not exit is killed at the same deadline.
  int status = 0;
  for (;;) {
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) return Status::ioError(join(argv, " ") + ": lost track of it: " + std::strerror(errno));
    if (std::chrono::steady_clock::now() >= deadline && !timedOut) {
      timedOut = true;
      ::kill(pid, SIGKILL);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(timedOut ? 5 : 2));
  }
  if (timedOut) return Status::unavailable(join(argv, " ") + ": no answer in " + std::to_string(timeoutSeconds) + " s");
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return output;
  while (!output.empty() && (output.back() == '\n' || output.back() == ' ')) output.pop_back();
  std::string how = WIFEXITED(status) ? (WEXITSTATUS(status) == 127 ? "cannot be run" : "exited with status " + std::to_string(WEXITSTATUS(status)))
                                      : "killed by signal " + std::to_string(WTERMSIG(status));
  return Status::ioError(join(argv, " ") + " " + how + (output.empty() ? "" : ": " + output));
}

}  // namespace ferry::agent
