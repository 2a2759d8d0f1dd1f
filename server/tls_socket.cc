#include "tls_socket.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <sys/socket.h>

#include <boost/asio/ssl/error.hpp>
#include <cerrno>
#include <stdexcept>

namespace ferry::control {

namespace asio = boost::asio;
using boost::beast::error_code;

namespace {

// OpenSSL's own socket BIO writes with write(2): a peer gone raises SIGPIPE. This one
// sends with MSG_NOSIGNAL, as Asio does, and never blocks (the socket is non-blocking).
// It asks the socket for its descriptor on every call: once the socket is closed that
// is -1 (EBADF), never a number the kernel has since given to another connection.
int descriptorOf(BIO* bio) {
  auto* socket = static_cast<asio::ip::tcp::socket*>(BIO_get_data(bio));
  return socket->is_open() ? static_cast<int>(socket->native_handle()) : -1;
}

int sendRecord(BIO* bio, const char* data, int size) {
  BIO_clear_retry_flags(bio);
  ssize_t n;
  do {
    n = ::send(descriptorOf(bio), data, static_cast<size_t>(size), MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) BIO_set_retry_write(bio);
  return static_cast<int>(n);
}

int receive(BIO* bio, char* data, int size) {
  BIO_clear_retry_flags(bio);
  ssize_t n;
  do {
    n = ::recv(descriptorOf(bio), data, static_cast<size_t>(size), 0);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) BIO_set_retry_read(bio);
  return static_cast<int>(n);
}

long control(BIO*, int cmd, long, void*) {
  return cmd == BIO_CTRL_FLUSH ? 1 : 0;  // nothing is buffered here
}

int created(BIO* bio) {
  BIO_set_init(bio, 1);
  return 1;
}

BIO_METHOD* socketMethod() {
  static BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "ferry socket");
    if (m == nullptr) return m;
    BIO_meth_set_write(m, sendRecord);
    BIO_meth_set_read(m, receive);
    BIO_meth_set_ctrl(m, control);
    BIO_meth_set_create(m, created);
    return m;
  }();
  return method;
}

}  // namespace

TlsSocket::TlsSocket(asio::ip::tcp::socket socket, SSL_CTX* context) : socket_(std::move(socket)) {
  BIO_METHOD* method = socketMethod();
  BIO* bio = method != nullptr ? BIO_new(method) : nullptr;
  ssl_ = bio != nullptr ? SSL_new(context) : nullptr;
  if (ssl_ == nullptr) {
    BIO_free(bio);
    throw std::runtime_error("TLS: cannot make a connection's state (out of memory?)");
  }
  boost::system::error_code ec;
  socket_.non_blocking(true, ec);  // OpenSSL must never block an I/O thread
  if (ec) {
    SSL_free(ssl_);
    BIO_free(bio);
    throw std::runtime_error("TLS: cannot make the socket non-blocking: " + ec.message());
  }
  BIO_set_data(bio, &socket_);
  SSL_set_bio(ssl_, bio, bio);  // the SSL owns it
  SSL_set_accept_state(ssl_);
  SSL_set_options(ssl_, SSL_OP_NO_RENEGOTIATION);
  SSL_set_mode(ssl_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
}

TlsSocket::~TlsSocket() {
  SSL_free(ssl_);
}

void TlsSocket::close() {
  boost::system::error_code ignored;
  socket_.close(ignored);
}

TlsSocket::Attempt TlsSocket::classify(int ret, size_t bytes, int savedErrno) {
  if (ret == 1) return Attempt{Attempt::kDone, bytes, {}};
  switch (SSL_get_error(ssl_, ret)) {
    case SSL_ERROR_WANT_READ:
      return Attempt{Attempt::kWantRead, 0, {}};
    case SSL_ERROR_WANT_WRITE:
      return Attempt{Attempt::kWantWrite, 0, {}};
    case SSL_ERROR_ZERO_RETURN:  // close_notify
      return Attempt{Attempt::kFailed, 0, asio::error::eof};
    case SSL_ERROR_SYSCALL:
      ERR_clear_error();
      if (savedErrno == 0) return Attempt{Attempt::kFailed, 0, asio::error::eof};
      return Attempt{Attempt::kFailed, 0, error_code(savedErrno, boost::system::system_category())};
    default: {
      unsigned long code = ERR_get_error();
      ERR_clear_error();
      if (ERR_GET_REASON(code) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        return Attempt{Attempt::kFailed, 0, asio::error::eof};
      }
      if (code == 0) return Attempt{Attempt::kFailed, 0, asio::error::connection_aborted};
      return Attempt{Attempt::kFailed, 0, error_code(static_cast<int>(code), asio::error::get_ssl_category())};
    }
  }
}

TlsSocket::Attempt TlsSocket::handshakeOnce() {
  ERR_clear_error();
  errno = 0;
  int ret = SSL_do_handshake(ssl_);
  return classify(ret, 0, errno);
}

TlsSocket::Attempt TlsSocket::readOnce(void* data, size_t size) {
  ERR_clear_error();
  errno = 0;
  size_t n = 0;
  int ret = SSL_read_ex(ssl_, data, size, &n);
  return classify(ret, n, errno);
}

TlsSocket::Attempt TlsSocket::writeOnce(const void* data, size_t size) {
  ERR_clear_error();
  errno = 0;
  size_t n = 0;
  int ret = SSL_write_ex(ssl_, data, size, &n);
  return classify(ret, n, errno);
}

void teardown(boost::beast::role_type, TlsSocket& stream, error_code& ec) {
  ec = {};
  stream.closeNotifyAndClose();
}

void TlsSocket::closeNotifyAndClose() {
  if (socket_.is_open()) {
    ERR_clear_error();
    (void)SSL_shutdown(ssl_);  // one non-blocking try: a peer that does not read gets nothing
    ERR_clear_error();
  }
  close();
}

void beast_close_socket(TlsSocket& stream) {
  stream.close();
}

}  // namespace ferry::control
