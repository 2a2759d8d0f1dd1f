#include "s3_client.h"

#include <curl/curl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <random>
#include <string_view>
#include <thread>

#include "ferry/digest.h"
#include "ferry/object_store.h"
#include "ferry/s3_xml.h"

namespace ferry::s3 {
namespace {

// SHA-256 of the empty string: the payload hash of every request without a body.
constexpr char kEmptySha256[] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
constexpr auto kBackoffBase = std::chrono::milliseconds(100);
constexpr auto kBackoffCap = std::chrono::milliseconds(5000);
// Error bodies are a few hundred bytes; a longer one is not S3 talking.
constexpr size_t kMaxErrorBody = size_t{64} << 10;
// Idle handles (each with its open connection) kept for reuse; more concurrent callers
// than this still work, their extra handles are just closed afterwards.
constexpr size_t kMaxIdleConnections = 64;

std::once_flag curlInitOnce;

// The state of one attempt, shared with the curl callbacks.
struct Transfer {
  const Request* req = nullptr;
  CURL* handle = nullptr;
  const curl_socket_t* socket = nullptr;  // of the connection in use
  size_t sent = 0;                        // body bytes handed to curl
  long status = 0;                        // known from the first body byte on
  uint64_t skip = 0;                      // leading body bytes to drop
  bool enough = false;                    // `into` is full and the transfer was cut short on purpose
  size_t bytes = 0;
  std::string errorBody;
  std::string etag;  // of the last response's headers, quotes removed
};

size_t onBody(char* data, size_t size, size_t count, void* arg) {
  Transfer& t = *static_cast<Transfer*>(arg);
  size_t length = size * count;
  if (t.status == 0) {
    curl_easy_getinfo(t.handle, CURLINFO_RESPONSE_CODE, &t.status);
    // A server that ignores Range answers 200 with the whole object.
    if (t.status == 200 && !t.req->into.empty()) t.skip = t.req->rangeOffset;
  }
  if (t.status < 200 || t.status >= 300) {
    t.errorBody.append(data, std::min(length, kMaxErrorBody - t.errorBody.size()));
    return length;
  }
  if (!t.req->into.empty()) {
    size_t skipped = static_cast<size_t>(std::min<uint64_t>(t.skip, length));
    t.skip -= skipped;
    size_t wanted = length - skipped;
    size_t copied = std::min(wanted, t.req->into.size() - t.bytes);
    std::memcpy(t.req->into.data() + t.bytes, data + skipped, copied);
    t.bytes += copied;
    if (copied < wanted) {
      t.enough = true;
      return 0;  // ends the transfer: the rest is beyond what the caller asked for
    }
    return length;
  }
  if (t.req->intoString != nullptr) t.req->intoString->append(data, length);
  t.bytes += length;
  return length;
}

size_t onSend(char* buffer, size_t size, size_t count, void* arg) {
  Transfer& t = *static_cast<Transfer*>(arg);
  size_t length = std::min(size * count, t.req->body.size() - t.sent);
  std::memcpy(buffer, t.req->body.data() + t.sent, length);
  t.sent += length;
  return length;
}

// curl rewinds the body when it must send it again on the same attempt (a reused
// connection that turned out closed, an early error answer to Expect: 100-continue).
int onSeek(void* arg, curl_off_t offset, int origin) {
  Transfer& t = *static_cast<Transfer*>(arg);
  if (origin != SEEK_SET || offset < 0 || static_cast<uint64_t>(offset) > t.req->body.size()) {
    return CURL_SEEKFUNC_FAIL;
  }
  t.sent = static_cast<size_t>(offset);
  return CURL_SEEKFUNC_OK;
}

// Small responses from radosgw arrive 40 ms late: it writes the headers and the body
// separately with Nagle on, so the body waits for our ACK of the headers, which Linux
// delays by up to 40 ms. Acknowledging as soon as the header block arrives releases
// the body at once (4 KiB GETs: 44 ms -> ~1 ms). The ETag header is kept for
// conditional writes.
size_t onHeader(char* data, size_t size, size_t count, void* arg) {
  Transfer& t = *static_cast<Transfer*>(arg);
  size_t length = size * count;
  std::string_view line(data, length);
  if (line.starts_with("HTTP/")) {
    t.etag.clear();  // a new response (after a 100 Continue, say)
    if (*t.socket != CURL_SOCKET_BAD) {
      int one = 1;
      setsockopt(*t.socket, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
    }
  } else if (line.size() > 5 && strncasecmp(line.data(), "etag:", 5) == 0) {
    line.remove_prefix(5);
    auto trim = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '"'; };
    while (!line.empty() && trim(line.front())) line.remove_prefix(1);
    while (!line.empty() && trim(line.back())) line.remove_suffix(1);
    t.etag = line;
  }
  return length;
}

// curl does not tell which socket a transfer uses while it runs (CURLINFO_ACTIVESOCKET
// is only set afterwards), so we follow the handle's socket from open to close.
int onSocketOpen(void* arg, curl_socket_t fd, curlsocktype /*purpose*/) {
  *static_cast<curl_socket_t*>(arg) = fd;
  return CURL_SOCKOPT_OK;
}

int onSocketClose(void* arg, curl_socket_t fd) {
  auto* socket = static_cast<curl_socket_t*>(arg);
  if (*socket == fd) *socket = CURL_SOCKET_BAD;
  return close(fd);
}

bool isRetryable(const Response& r) {
  switch (r.httpStatus) {
    case 429:
    case 500:
    case 502:
    case 503:
    case 504:
      return true;
    default:
      // Throttling and server-side timeouts, whatever status they come with (S3 sends
      // RequestTimeout as a 400).
      return r.errorCode == "SlowDown" || r.errorCode == "RequestTimeout" || r.errorCode == "Throttling" ||
             r.errorCode == "InternalError" || r.errorCode == "ServiceUnavailable";
  }
}

// Transport errors that are about our configuration, not the network: retrying
// cannot help.
bool isPermanent(CURLcode code) {
  switch (code) {
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_NOT_BUILT_IN:
    case CURLE_UNKNOWN_OPTION:
    case CURLE_BAD_FUNCTION_ARGUMENT:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ENGINE_NOTFOUND:
      return true;
    default:
      return false;
  }
}

// Full jitter (a uniform wait up to an exponentially growing cap) spreads out the
// retries of many callers that failed together, so they do not hit the server in step.
std::chrono::milliseconds backoff(int attempt) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  auto cap = kBackoffBase * (int64_t{1} << std::min(attempt - 1, 16));
  cap = std::min<std::chrono::milliseconds>(cap, kBackoffCap);
  std::uniform_int_distribution<int64_t> wait(0, cap.count());
  return std::chrono::milliseconds(wait(rng));
}

void fillError(const std::string& body, Response& response) {
  if (body.empty()) return;
  Result<ErrorBody> parsed = parseErrorBody(body);
  if (parsed) {
    response.errorCode = parsed->code;
    response.errorMessage = parsed->message;
    return;
  }
  // Not S3 XML (a proxy's HTML page, say): keep the start of it for the message.
  std::string text = body.substr(0, 200);
  std::replace_if(
      text.begin(), text.end(), [](char c) { return c == '\n' || c == '\r'; }, ' ');
  response.errorMessage = text;
}

std::string attempts(int n) {
  return std::to_string(n) + (n == 1 ? " attempt" : " attempts");
}

}  // namespace

struct Client::Connection {
  Connection() : curl(curl_easy_init()) {}
  // Cleaning up the handle closes its connection through onSocketClose, which writes
  // to `socket`: the handle must go first.
  ~Connection() {
    if (curl != nullptr) curl_easy_cleanup(curl);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  CURL* const curl;
  curl_socket_t socket = CURL_SOCKET_BAD;
};

class Client::Lease {
 public:
  explicit Lease(Client& client) : client_(client), connection_(client.take()) {}
  ~Lease() { client_.giveBack(std::move(connection_)); }
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
  Connection& operator*() const { return *connection_; }

 private:
  Client& client_;
  std::unique_ptr<Connection> connection_;
};

Client::Client(const S3Config& config) : config_(config), sigv4_("aws:amz:" + config.region + ":s3") {
  std::call_once(curlInitOnce, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

Client::~Client() = default;

std::unique_ptr<Client::Connection> Client::take() {
  {
    std::lock_guard lock(mu_);
    if (!idle_.empty()) {
      std::unique_ptr<Connection> connection = std::move(idle_.back());
      idle_.pop_back();
      return connection;
    }
  }
  return std::make_unique<Connection>();
}

void Client::giveBack(std::unique_ptr<Connection> connection) {
  std::lock_guard lock(mu_);
  if (connection->curl != nullptr && idle_.size() < kMaxIdleConnections) {
    idle_.push_back(std::move(connection));
  }
}

Result<Response> Client::execute(const Request& req) {
  Lease lease(*this);
  Connection& connection = *lease;
  CURL* h = connection.curl;
  if (h == nullptr) return Status::unavailable(req.what + ": curl_easy_init failed");

  // libcurl 7.88 signs a payload hash only if we send it as a header ourselves.
  std::string hashHeader = "x-amz-content-sha256: ";
  hashHeader += req.body.empty() ? kEmptySha256 : sha256Hex(req.body);
  std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> headers(curl_slist_append(nullptr, hashHeader.c_str()),
                                                                      &curl_slist_free_all);
  if (!headers) return Status::unavailable(req.what + ": out of memory");
  for (const std::string& extra : req.headers) {
    // Appending to a list that has a head returns that head.
    if (curl_slist_append(headers.get(), extra.c_str()) == nullptr) return Status::unavailable(req.what + ": out of memory");
  }
  // Expect: 100-continue is left on for large PUTs: suppressing it with an empty
  // "Expect:" header makes curl 7.88 sign a header it does not send.

  std::string url = config_.endpoint + req.path;
  if (!req.query.empty()) url += "?" + req.query;
  std::string range;
  if (!req.into.empty()) {
    range = std::to_string(req.rangeOffset) + "-" + std::to_string(req.rangeOffset + req.into.size() - 1);
  }

  const auto deadline = StoreDeadline::current();
  const bool bounded = deadline != StoreDeadline::Clock::time_point::max();
  auto pastDeadline = [&](const std::string& failure) {
    return Status::unavailable(req.what + ": " + failure + "; not done before the deadline of this request " +
                               "(the volume's lease must be confirmed again before the store is changed further; " +
                               "requests that take longer than about lease-ttl/3 on this link need a larger lease-ttl)");
  };
  for (int attempt = 1;; ++attempt) {
    // Each attempt's timeout ends at the deadline, if that comes first.
    auto timeoutMs = static_cast<int64_t>(config_.requestTimeoutMs);
    if (bounded) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - StoreDeadline::Clock::now());
      if (left.count() <= 0) return pastDeadline(attempt == 1 ? "not sent" : "not sent again");
      timeoutMs = std::min<int64_t>(timeoutMs, left.count());
    }
    Transfer t;
    t.req = &req;
    t.handle = h;
    t.socket = &connection.socket;
    if (req.intoString != nullptr) req.intoString->clear();
    char curlError[CURL_ERROR_SIZE] = "";

    // reset keeps the handle's connection cache, so the next attempt or request on
    // this handle reuses the open connection.
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url.c_str());
    curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);  // the signed path must be the sent path
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(config_.connectTimeoutMs));
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(timeoutMs));
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "ferry");
    curl_easy_setopt(h, CURLOPT_AWS_SIGV4, sigv4_.c_str());
    curl_easy_setopt(h, CURLOPT_USERNAME, config_.accessKey.c_str());
    curl_easy_setopt(h, CURLOPT_PASSWORD, config_.secretKey.c_str());
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.get());
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, curlError);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, onBody);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &t);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, onHeader);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &t);
    curl_easy_setopt(h, CURLOPT_SOCKOPTFUNCTION, onSocketOpen);
    curl_easy_setopt(h, CURLOPT_SOCKOPTDATA, &connection.socket);
    curl_easy_setopt(h, CURLOPT_CLOSESOCKETFUNCTION, onSocketClose);
    curl_easy_setopt(h, CURLOPT_CLOSESOCKETDATA, &connection.socket);
    if (std::strcmp(req.method, "PUT") == 0) {
      curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
      curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(req.body.size()));
      curl_easy_setopt(h, CURLOPT_READFUNCTION, onSend);
      curl_easy_setopt(h, CURLOPT_READDATA, &t);
      curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, onSeek);
      curl_easy_setopt(h, CURLOPT_SEEKDATA, &t);
    } else if (std::strcmp(req.method, "HEAD") == 0) {
      curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (std::strcmp(req.method, "GET") != 0) {
      curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req.method);
    }
    if (!range.empty()) curl_easy_setopt(h, CURLOPT_RANGE, range.c_str());

    CURLcode code = curl_easy_perform(h);
    // The buffer lives on this frame: curl must not write to it after we return.
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, nullptr);

    std::string failure;  // what went wrong, when it is worth another attempt
    std::string detail;
    if (code == CURLE_OK || (code == CURLE_WRITE_ERROR && t.enough)) {
      Response response;
      curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &response.httpStatus);
      response.bytes = t.bytes;
      response.etag = std::move(t.etag);
      if (response.httpStatus < 200 || response.httpStatus >= 300) fillError(t.errorBody, response);
      if (!isRetryable(response)) return response;
      failure = std::to_string(response.httpStatus);
      if (!response.errorCode.empty()) failure += " " + response.errorCode;
      detail = response.errorMessage;
    } else {
      failure = curl_easy_strerror(code);
      detail = curlError;
      if (isPermanent(code)) {
        return Status::invalid(req.what + ": " + failure + (detail.empty() ? "" : ": " + detail));
      }
    }
    if (attempt >= config_.maxAttempts) {
      return Status::unavailable(req.what + ": " + failure + " after " + attempts(attempt) +
                                 (detail.empty() ? "" : ": " + detail));
    }
    auto wait = backoff(attempt);
    if (bounded && StoreDeadline::Clock::now() + wait >= deadline) {
      return pastDeadline(failure + " after " + attempts(attempt) + (detail.empty() ? "" : " (" + detail + ")"));
    }
    std::this_thread::sleep_for(wait);
  }
}

}  // namespace ferry::s3
