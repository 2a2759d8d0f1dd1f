#pragma once
// The gateway's end of the control channel (DESIGN.md "Control", patent
// US20180152501A1): one outbound WebSocket over mutual TLS to the provider, held open.
// It reconnects with exponential backoff and full jitter, pings the provider when the
// line is quiet and drops a connection silent for the dead interval. It never sends
// requests of its own: it answers the provider's, each applied once (RequestLog) in
// arrival order on one worker thread, off the I/O thread.

#include <atomic>
#include <memory>
#include <string>

#include "applier.h"
#include "ferry/status.h"
#include "request_log.h"

namespace ferry::agent {

struct ChannelConfig {
  std::string endpoint;  // wss://host:port/path
  std::string certificateFile, keyFile, caFile;
  int backoffBaseMillis = 500;
  int backoffCapMillis = 30000;
  int deadSeconds = 45;  // silence after which the connection is dropped
};

struct ChannelStatus {
  bool connected = false;
  int64_t connections = 0;  // made so far
  int64_t requests = 0;     // frames received
  int64_t repeats = 0;      // of them, requests answered before (from the log)
  std::string lastError;
};

class Channel {
 public:
  Channel(ChannelConfig config, RequestLog& log, Applier& applier);
  ~Channel();
  Status start();
  void stop();
  ChannelStatus status() const;
  // Reads the certificate files again: new connections use what is there now.
  void reloadCertificate();
  // Sends a report frame (not a request, no answer: gateway metrics) on the open
  // connection; false when there is none. Best effort: a connection that breaks before
  // the write loses it.
  bool report(std::string frame);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// "wss://host:port/path" → host, port, path; false if it is not such a URL.
bool parseChannelUrl(const std::string& url, std::string* host, std::string* port, std::string* path);

}  // namespace ferry::agent
