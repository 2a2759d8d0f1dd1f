#pragma once
// Builds Ethernet/IPv4/TCP|UDP|ICMP frames byte by byte, with every checksum computed
// from scratch, for the balancer's BPF tests: the expected packet is built the same
// way as the input, so an incremental checksum update in the program must agree with
// a full computation here.

#include <arpa/inet.h>
#include <netinet/in.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace ferry::testing {

using Bytes = std::vector<uint8_t>;
using Mac = std::array<uint8_t, 6>;

inline uint32_t ip4(const char* text) {
  in_addr a{};
  inet_pton(AF_INET, text, &a);
  return a.s_addr;
}

// The Internet checksum of data (with an initial sum), as stored in a header.
inline uint16_t inetChecksum(const uint8_t* data, size_t len, uint32_t sum = 0) {
  for (size_t i = 0; i + 1 < len; i += 2) sum += static_cast<uint32_t>(data[i] << 8 | data[i + 1]);
  if (len & 1) sum += static_cast<uint32_t>(data[len - 1] << 8);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return htons(static_cast<uint16_t>(~sum & 0xffff));
}

struct L4 {
  uint8_t proto = IPPROTO_TCP;
  uint16_t sport = 0, dport = 0;  // host order
  uint8_t tcpFlags = 0x02;        // SYN
  bool udpNoChecksum = false;
  Bytes payload;
};

struct Frame {
  Mac dst{0x02, 0, 0, 0, 0, 0x11};
  Mac src{0x02, 0, 0, 0, 0, 0x01};
  uint16_t ethType = 0x0800;
  uint32_t saddr = 0, daddr = 0;  // network order
  uint8_t ttl = 64;
  uint16_t fragOff = 0x4000;  // DF
  uint16_t id = 0x1234;
  Bytes ipOptions;            // a multiple of 4 bytes
  uint8_t ipProto = 0;        // 0: from the L4 part
  L4 l4;
  Bytes l4Raw;                // when set, used as the L4 bytes as they are (ICMP, truncation)
};

// The L4 bytes of a TCP or UDP segment with its checksum over the pseudo-header.
inline Bytes l4Bytes(const Frame& f) {
  const L4& s = f.l4;
  Bytes out;
  auto put16 = [&](uint16_t v) {
    out.push_back(static_cast<uint8_t>(v >> 8));
    out.push_back(static_cast<uint8_t>(v));
  };
  put16(s.sport);
  put16(s.dport);
  if (s.proto == IPPROTO_TCP) {
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(i + 1));  // seq, ack
    out.push_back(0x50);                                                     // data offset 5
    out.push_back(s.tcpFlags);
    put16(0xffff);  // window
    put16(0);       // checksum
    put16(0);       // urgent
  } else {
    put16(static_cast<uint16_t>(8 + s.payload.size()));
    put16(0);
  }
  out.insert(out.end(), s.payload.begin(), s.payload.end());
  if (s.proto == IPPROTO_UDP && s.udpNoChecksum) return out;
  Bytes pseudo(12);
  std::memcpy(&pseudo[0], &f.saddr, 4);
  std::memcpy(&pseudo[4], &f.daddr, 4);
  pseudo[9] = s.proto;
  pseudo[10] = static_cast<uint8_t>(out.size() >> 8);
  pseudo[11] = static_cast<uint8_t>(out.size());
  uint32_t sum = 0;
  for (size_t i = 0; i < pseudo.size(); i += 2) sum += static_cast<uint32_t>(pseudo[i] << 8 | pseudo[i + 1]);
  uint16_t c = inetChecksum(out.data(), out.size(), sum);
  if (s.proto == IPPROTO_UDP && c == 0) c = 0xffff;
  size_t off = s.proto == IPPROTO_TCP ? 16 : 6;
  std::memcpy(&out[off], &c, 2);
  return out;
}

// The IPv4 packet (no Ethernet header).
inline Bytes ipBytes(const Frame& f) {
  Bytes l4 = f.l4Raw.empty() ? l4Bytes(f) : f.l4Raw;
  size_t hlen = 20 + f.ipOptions.size();
  Bytes ip(hlen);
  ip[0] = static_cast<uint8_t>(0x40 | (hlen / 4));
  uint16_t total = htons(static_cast<uint16_t>(hlen + l4.size()));
  std::memcpy(&ip[2], &total, 2);
  uint16_t id = htons(f.id), frag = htons(f.fragOff);
  std::memcpy(&ip[4], &id, 2);
  std::memcpy(&ip[6], &frag, 2);
  ip[8] = f.ttl;
  ip[9] = f.ipProto ? f.ipProto : f.l4.proto;
  std::memcpy(&ip[12], &f.saddr, 4);
  std::memcpy(&ip[16], &f.daddr, 4);
  std::copy(f.ipOptions.begin(), f.ipOptions.end(), ip.begin() + 20);
  uint16_t c = inetChecksum(ip.data(), hlen);
  std::memcpy(&ip[10], &c, 2);
  ip.insert(ip.end(), l4.begin(), l4.end());
  return ip;
}

inline Bytes frameBytes(const Frame& f) {
  Bytes out(f.dst.begin(), f.dst.end());
  out.insert(out.end(), f.src.begin(), f.src.end());
  out.push_back(static_cast<uint8_t>(f.ethType >> 8));
  out.push_back(static_cast<uint8_t>(f.ethType));
  if (f.ethType != 0x0800) {
    out.resize(60, 0);
    return out;
  }
  Bytes ip = ipBytes(f);
  out.insert(out.end(), ip.begin(), ip.end());
  return out;
}

// An ICMP error (type, code) quoting `quoted` (its IP header and first 8 L4 bytes).
inline Bytes icmpError(uint8_t type, uint8_t code, const Frame& quoted, uint16_t mtu = 0) {
  Bytes q = ipBytes(quoted);
  size_t hlen = 20 + quoted.ipOptions.size();
  q.resize(std::min(q.size(), hlen + 8));
  Bytes out = {type, code, 0, 0, 0, 0, static_cast<uint8_t>(mtu >> 8), static_cast<uint8_t>(mtu)};
  out.insert(out.end(), q.begin(), q.end());
  uint16_t c = inetChecksum(out.data(), out.size());
  std::memcpy(&out[2], &c, 2);
  return out;
}

inline std::string hexDump(const Bytes& b) {
  static const char* kHex = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < b.size(); ++i) {
    if (i && i % 16 == 0) s += '\n';
    s += kHex[b[i] >> 4];
    s += kHex[b[i] & 15];
    s += ' ';
  }
  return s;
}

}  // namespace ferry::testing
