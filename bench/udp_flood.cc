// The load generator of bench/balancer_pps.sh: small UDP packets of many flows, sent
// as fast as one core can through an AF_PACKET socket (qdisc bypassed, sendmmsg in
// batches), for a fixed time. Each flow is a source port; the frames are built once,
// with their IP checksums and no UDP checksum.
//   udp_flood --interface IF --dst-mac MAC --src IP --dst IP --dport N
//             [--flows 4096] [--seconds 5] [--payload 18]
// Prints {"sent": N, "seconds": S, "pps": P}.
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "packet.h"

namespace {

bool parseMac(const std::string& s, uint8_t* out) {
  unsigned v[6];
  if (std::sscanf(s.c_str(), "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6) return false;
  for (int i = 0; i < 6; ++i) out[i] = static_cast<uint8_t>(v[i]);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> o = {{"flows", "4096"}, {"seconds", "5"}, {"payload", "18"}};
  for (int i = 1; i + 1 < argc; i += 2) o[std::string(argv[i]).substr(2)] = argv[i + 1];
  for (const char* k : {"interface", "dst-mac", "src", "dst", "dport"})
    if (!o.count(k)) {
      std::fprintf(stderr, "udp_flood: --%s is required\n", k);
      return 2;
    }
  int fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_IP));
  if (fd < 0) {
    std::perror("udp_flood: AF_PACKET socket (needs root)");
    return 1;
  }
  int one = 1;
  setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one);
  unsigned ifindex = if_nametoindex(o["interface"].c_str());
  if (!ifindex) {
    std::fprintf(stderr, "udp_flood: no interface %s\n", o["interface"].c_str());
    return 1;
  }
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, o["interface"].c_str(), IFNAMSIZ - 1);
  if (ioctl(fd, SIOCGIFHWADDR, &ifr) != 0) {
    std::perror("udp_flood: interface MAC");
    return 1;
  }
  uint8_t dmac[6];
  if (!parseMac(o["dst-mac"], dmac)) {
    std::fprintf(stderr, "udp_flood: bad --dst-mac\n");
    return 2;
  }
  in_addr src{}, dst{};
  inet_pton(AF_INET, o["src"].c_str(), &src);
  inet_pton(AF_INET, o["dst"].c_str(), &dst);
  int flows = std::stoi(o["flows"]);
  size_t payload = std::stoul(o["payload"]);
  uint16_t dport = static_cast<uint16_t>(std::stoi(o["dport"]));

  size_t len = 14 + 20 + 8 + payload;
  std::vector<std::vector<uint8_t>> frames(static_cast<size_t>(flows), std::vector<uint8_t>(len, 0));
  for (int f = 0; f < flows; ++f) {
    uint8_t* p = frames[static_cast<size_t>(f)].data();
    std::memcpy(p, dmac, 6);
    std::memcpy(p + 6, ifr.ifr_hwaddr.sa_data, 6);
    p[12] = 0x08;
    uint8_t* ip = p + 14;
    ip[0] = 0x45;
    uint16_t total = htons(static_cast<uint16_t>(20 + 8 + payload));
    std::memcpy(ip + 2, &total, 2);
    ip[6] = 0x40;  // DF
    ip[8] = 64;
    ip[9] = IPPROTO_UDP;
    std::memcpy(ip + 12, &src, 4);
    std::memcpy(ip + 16, &dst, 4);
    uint16_t c = ferry::testing::inetChecksum(ip, 20);
    std::memcpy(ip + 10, &c, 2);
    uint8_t* udp = ip + 20;
    uint16_t sport = htons(static_cast<uint16_t>(10000 + f)), dp = htons(dport), ulen = htons(static_cast<uint16_t>(8 + payload));
    std::memcpy(udp, &sport, 2);
    std::memcpy(udp + 2, &dp, 2);
    std::memcpy(udp + 4, &ulen, 2);
  }

  sockaddr_ll to{};
  to.sll_family = AF_PACKET;
  to.sll_ifindex = static_cast<int>(ifindex);
  to.sll_halen = 6;
  std::memcpy(to.sll_addr, dmac, 6);
  constexpr int kBatch = 64;
  std::vector<mmsghdr> msgs(kBatch);
  std::vector<iovec> iovs(kBatch);
  double seconds = std::stod(o["seconds"]);
  auto start = std::chrono::steady_clock::now();
  auto end = start + std::chrono::duration<double>(seconds);
  uint64_t sent = 0;
  size_t next = 0;
  while (std::chrono::steady_clock::now() < end) {
    for (int i = 0; i < kBatch; ++i) {
      iovs[size_t(i)] = {frames[next].data(), len};
      next = (next + 1) % frames.size();
      msgs[size_t(i)].msg_hdr = {};
      msgs[size_t(i)].msg_hdr.msg_name = &to;
      msgs[size_t(i)].msg_hdr.msg_namelen = sizeof to;
      msgs[size_t(i)].msg_hdr.msg_iov = &iovs[size_t(i)];
      msgs[size_t(i)].msg_hdr.msg_iovlen = 1;
    }
    int n = sendmmsg(fd, msgs.data(), kBatch, 0);
    if (n > 0) sent += static_cast<uint64_t>(n);
  }
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("{\"sent\": %llu, \"seconds\": %.3f, \"pps\": %.0f}\n", static_cast<unsigned long long>(sent), took,
              double(sent) / took);
  close(fd);
  return 0;
}
