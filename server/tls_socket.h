// A TLS stream for many mostly idle connections, for Boost.Beast (a websocket::stream
// or http::async_read over it). OpenSSL reads and writes the socket itself, without
// blocking, and Asio only waits until the socket is ready: there are no buffers in
// between. asio::ssl::stream keeps about 68 KiB per connection for its own (two 17 KiB
// vectors and a BIO pair of two 17 KiB buffers); with SSL_MODE_RELEASE_BUFFERS on the
// context, an idle TlsSocket keeps only OpenSSL's connection state.
//
// Server side only. Like asio::ssl::stream: one read and one write may be in flight
// at once (OpenSSL allows SSL_read and SSL_write to interleave on one thread), on
// one strand. Renegotiation is refused (TLS 1.2's; TLS 1.3 has none).

#pragma once

#include <openssl/ssl.h>

#include <utility>  // before Asio: 1.74's awaitable.hpp uses std::exchange without it

#include <boost/asio.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/role.hpp>
#include <cstddef>
#include <optional>
#include <vector>

namespace ferry::control {

class TlsSocket {
 public:
  using executor_type = boost::asio::ip::tcp::socket::executor_type;

  // Throws std::runtime_error when OpenSSL cannot make the connection's state.
  TlsSocket(boost::asio::ip::tcp::socket socket, SSL_CTX* context);
  ~TlsSocket();
  TlsSocket(const TlsSocket&) = delete;
  TlsSocket& operator=(const TlsSocket&) = delete;

  executor_type get_executor() { return socket_.get_executor(); }
  SSL* native_handle() { return ssl_; }
  boost::asio::ip::tcp::socket& socket() { return socket_; }
  // Pending operations end with operation_aborted; later ones fail (bad_descriptor).
  void close();
  // Sends close_notify if the socket takes it at once, then closes: never waits.
  void closeNotifyAndClose();

  // Handlers: void(error_code) for the handshake, void(error_code,
  // size_t) for reads and writes. A peer that closes reads as asio::error::eof.
  template <class Token>
  auto async_handshake(Token&& token) {
    return start<false>(HandshakeStep{this}, std::forward<Token>(token));
  }
  template <class Buffers, class Token>
  auto async_read_some(const Buffers& buffers, Token&& token) {
    boost::asio::mutable_buffer into;
    for (auto it = boost::asio::buffer_sequence_begin(buffers); it != boost::asio::buffer_sequence_end(buffers); ++it) {
      if ((into = *it).size() > 0) break;
    }
    return start<true>(ReadStep{this, into}, std::forward<Token>(token));
  }
  template <class Buffers, class Token>
  auto async_write_some(const Buffers& buffers, Token&& token) {
    return start<true>(WriteStep::of(this, buffers), std::forward<Token>(token));
  }

  // What one OpenSSL call came to.
  struct Attempt {
    enum Kind { kDone, kWantRead, kWantWrite, kFailed } kind = kDone;
    size_t bytes = 0;
    boost::beast::error_code error;
  };

 private:
  Attempt handshakeOnce();
  Attempt readOnce(void* data, size_t size);
  Attempt writeOnce(const void* data, size_t size);
  Attempt classify(int ret, size_t bytes, int savedErrno);

  struct HandshakeStep {
    TlsSocket* s;
    Attempt operator()() { return s->handshakeOnce(); }
  };
  struct ReadStep {
    TlsSocket* s;
    boost::asio::mutable_buffer into;
    Attempt operator()() { return into.size() == 0 ? Attempt{} : s->readOnce(into.data(), into.size()); }
  };
  struct WriteStep {
    TlsSocket* s;
    boost::asio::const_buffer from;
    // Several buffers (a WebSocket frame's header and payload) go in one record: copied,
    // up to one record's worth. A retry after "want write" must offer the same bytes.
    std::vector<unsigned char> gathered;
    template <class Buffers>
    static WriteStep of(TlsSocket* s, const Buffers& buffers) {
      WriteStep w{s, {}, {}};
      size_t nonEmpty = 0, total = 0;
      for (auto it = boost::asio::buffer_sequence_begin(buffers); it != boost::asio::buffer_sequence_end(buffers);
           ++it) {
        boost::asio::const_buffer b = *it;
        if (b.size() == 0) continue;
        if (nonEmpty++ == 0) w.from = b;
        total += b.size();
      }
      if (nonEmpty > 1) {
        w.gathered.resize(std::min(total, kRecord));
        boost::asio::buffer_copy(boost::asio::buffer(w.gathered), buffers);
      }
      return w;
    }
    Attempt operator()() {
      if (!gathered.empty()) return s->writeOnce(gathered.data(), gathered.size());
      return from.size() == 0 ? Attempt{} : s->writeOnce(from.data(), from.size());
    }
  };

  static constexpr size_t kRecord = 16384;

  // Runs step until it is done or fails, waiting on the socket in between; never
  // completes inside the call that starts it.
  template <bool WithBytes, class Step>
  struct Op {
    Step step;
    std::optional<Attempt> result;
    template <class Self>
    void operator()(Self& self, boost::beast::error_code waited = {}) {
      if (result) return finish(self, *result);
      if (waited) return finish(self, Attempt{Attempt::kFailed, 0, waited});
      boost::asio::ip::tcp::socket& sock = step.s->socket_;
      // Closed: no OpenSSL call, whose BIO would find no descriptor anyway.
      Attempt a = sock.is_open() ? step() : Attempt{Attempt::kFailed, 0, boost::asio::error::bad_descriptor};
      switch (a.kind) {
        case Attempt::kWantRead:
          return sock.async_wait(boost::asio::ip::tcp::socket::wait_read, std::move(self));
        case Attempt::kWantWrite:
          return sock.async_wait(boost::asio::ip::tcp::socket::wait_write, std::move(self));
        default:
          result = a;
          return boost::asio::post(sock.get_executor(), std::move(self));
      }
    }
    template <class Self>
    static void finish(Self& self, const Attempt& a) {
      if constexpr (WithBytes) {
        self.complete(a.error, a.bytes);
      } else {
        self.complete(a.error);
      }
    }
  };

  template <bool WithBytes, class Step, class Token>
  auto start(Step step, Token&& token) {
    using Signature = std::conditional_t<WithBytes, void(boost::beast::error_code, size_t),
                                         void(boost::beast::error_code)>;
    return boost::asio::async_compose<Token, Signature>(Op<WithBytes, Step>{std::move(step), {}},
                                                        token, socket_);
  }

  boost::asio::ip::tcp::socket socket_;
  SSL* ssl_ = nullptr;
};

// Beast's customization points for a WebSocket over a TlsSocket: closing sends
// close_notify if the socket takes it at once, then closes the socket. It never waits
// (a peer that stopped reading must not keep a session, and Beast's write lock, alive).
void teardown(boost::beast::role_type role, TlsSocket& stream, boost::beast::error_code& ec);

template <class Handler>
void async_teardown(boost::beast::role_type, TlsSocket& stream, Handler&& handler) {
  stream.closeNotifyAndClose();
  auto ex = boost::asio::get_associated_executor(handler, stream.get_executor());
  boost::asio::post(ex, [h = std::forward<Handler>(handler)]() mutable { h(boost::beast::error_code{}); });
}

void beast_close_socket(TlsSocket& stream);

}  // namespace ferry::control
