#pragma once
// Programs the agent runs: long-lived children it supervises (nbdkit, tgtd, nbdfuse)
// and short commands whose output it reads (tgtadm, fusermount3). Everything a child
// needs is made before fork: between fork and exec the child of a threaded process
// may only make async-signal-safe calls.

#include <sys/types.h>

#include <string>
#include <vector>

#include "ferry/status.h"

namespace ferry::agent {

struct ChildSpec {
  std::vector<std::string> argv;         // argv[0] is looked up in PATH
  std::vector<std::string> environment;  // NAME=VALUE added to the agent's
  std::string logFile;                   // stdout and stderr appended here ("" = the agent's)
  // Sent to the child when the thread that started it ends (the agent killed); 0: none.
  // SIGKILL for a program that ignores SIGTERM (tgtd).
  int parentDeathSignal = 15;  // SIGTERM
};

// The child's pid (> 0), or -1 when fork failed. A program that cannot be run exits 127
// with a line in its log.
pid_t spawnChild(const ChildSpec& spec);

// SIGTERM, then SIGKILL after graceSeconds; reaps it. False if it had to be killed.
bool stopChild(pid_t pid, int graceSeconds);

// True (and reaps it) if the child has exited.
bool childExited(pid_t pid);

// Runs a command to its end (killed after timeoutSeconds) and returns what it printed
// on stdout and stderr; a non-zero exit is an error whose message carries that output.
Result<std::string> runCommand(const std::vector<std::string>& argv, int timeoutSeconds = 30);

}  // namespace ferry::agent
