// The balancer's BPF programs, run by the kernel on table-driven packets with
// BPF_PROG_RUN: what comes out (bytes and verdict) for each kind of packet DESIGN.md
// "Balancer" and bpf/lb_xdp.bpf.c list, against a packet built from scratch with full
// checksums. The test process moves into a network namespace of its own, whose
// interfaces and neighbour entries give the program's FIB lookups their answers.
// Needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN): skipped otherwise.

#include <bpf/bpf.h>
#include <gtest/gtest.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <net/if.h>
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <thread>

#include "host_egress.h"
#include "maglev.h"
#include "packet.h"
#include "test_util.h"
#include "xdp_dataplane.h"

namespace ferry::balancer {
namespace {

using testing::Bytes;
using testing::Frame;
using testing::ip4;
using testing::Mac;

const Mac kLbMac{0x02, 0, 0, 0, 0, 0x11};
const Mac kOutMac{0x02, 0, 0, 0, 0, 0x33};
const Mac kRouterMac{0x02, 0, 0, 0, 0, 0x01};
Mac backendMac(int last) { return {0x02, 0, 0, 0, 0, static_cast<uint8_t>(last)}; }

constexpr uint32_t kSeed = 1234;

std::string gSkip;  // why the suite cannot run here, or ""

// Builds the namespace: lb0 (10.2.0.11, where packets come in and most backends are),
// out0 (10.3.0.11, a backend behind another port), permanent neighbour entries for
// every backend but 10.2.0.23, forwarding on.
void setUpNamespace() {
  if (geteuid() != 0) {
    gSkip = "needs root for BPF and a network namespace";
    return;
  }
  if (unshare(CLONE_NEWNET) != 0) {
    gSkip = std::string("cannot make a network namespace: ") + strerror(errno);
    return;
  }
  const char* cmds[] = {
      "ip link set lo up",
      "ip link add lb0 address 02:00:00:00:00:11 type veth peer name up0",
      "ip link add out0 address 02:00:00:00:00:33 type veth peer name up1",
      "ip addr add 10.2.0.11/24 dev lb0",
      "ip addr add 10.3.0.11/24 dev out0",
      "ip link set lb0 up && ip link set up0 up && ip link set out0 up && ip link set up1 up",
      "ip neigh replace 10.2.0.21 lladdr 02:00:00:00:00:21 dev lb0 nud permanent",
      "ip neigh replace 10.2.0.22 lladdr 02:00:00:00:00:22 dev lb0 nud permanent",
      "ip neigh replace 10.3.0.31 lladdr 02:00:00:00:00:31 dev out0 nud permanent",
      "sysctl -qw net.ipv4.ip_forward=1",
  };
  for (const char* c : cmds) {
    std::string out;
    if (testing::runCommand(c, &out) != 0) {
      gSkip = std::string("namespace setup failed: ") + c + ": " + out;
      return;
    }
  }
}

class Env : public ::testing::Environment {
 public:
  void SetUp() override { setUpNamespace(); }
};
const auto* gEnv = ::testing::AddGlobalTestEnvironment(new Env);

struct ProgRun {
  int action = -1;
  Bytes out;
};

// Runs a program once on in (with an optional context) and returns its verdict and
// the packet as it left.
ProgRun runProgram(int fd, const Bytes& in, void* ctx = nullptr, size_t ctxSize = 0) {
  ProgRun r;
  r.out.resize(in.size() + 256);
  bpf_test_run_opts o{};
  o.sz = sizeof o;
  o.data_in = in.data();
  o.data_size_in = static_cast<uint32_t>(in.size());
  o.data_out = r.out.data();
  o.data_size_out = static_cast<uint32_t>(r.out.size());
  o.ctx_in = ctx;
  o.ctx_size_in = static_cast<uint32_t>(ctxSize);
  o.repeat = 1;
  int rc = bpf_prog_test_run_opts(fd, &o);
  EXPECT_EQ(rc, 0) << strerror(errno);
  r.action = static_cast<int>(o.retval);
  r.out.resize(o.data_size_out);
  return r;
}

// XDP: as if it came in on ifname.
ProgRun runXdp(int fd, const Bytes& in, const char* ifname = "lb0") {
  xdp_md ctx{};
  ctx.data_end = static_cast<uint32_t>(in.size());
  ctx.ingress_ifindex = if_nametoindex(ifname);
  return runProgram(fd, in, &ctx, sizeof ctx);
}

ProgRun runTc(int fd, const Bytes& in) { return runProgram(fd, in); }

// The farm of these tests: two services on one VIP and four backends.
const uint32_t kVip = ip4("198.51.100.10");
const uint32_t kClient = ip4("203.0.113.7");

std::vector<ServiceConfig> services() {
  return {{"api", kVip, 443, IPPROTO_TCP, 18443}, {"dns", kVip, 53, IPPROTO_UDP, 18053}};
}
std::vector<BackendConfig> backendConfigs() {
  return {{"c1", ip4("10.2.0.21")}, {"c2", ip4("10.2.0.22")}, {"c3", ip4("10.3.0.31")}, {"c4", ip4("10.2.0.23")}};
}

class XdpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!gSkip.empty()) GTEST_SKIP() << gSkip;
    XdpOptions o;
    o.seed = kSeed;
    o.flows = 4096;
    dp_ = std::make_unique<XdpDataplane>(o);
    Status st = dp_->start();
    ASSERT_TRUE(st) << st.toString();
    setUp({true, true, false, false});
  }

  // Programs the maps with these backends up, and remembers the ring.
  void setUp(std::vector<bool> up) {
    std::vector<MaglevBackend> mb;
    std::vector<BackendState> states;
    auto cfgs = backendConfigs();
    for (size_t i = 0; i < cfgs.size(); ++i) {
      mb.push_back({cfgs[i].name, up[i]});
      states.push_back({cfgs[i].address, up[i]});
    }
    ring_ = buildMaglev(mb, kSeed, LB_RING_SIZE);
    Status st = dp_->program(services(), states, ring_);
    ASSERT_TRUE(st) << st.toString();
  }

  // Where the ring sends this flow (the connection table aside).
  uint32_t ringPick(const Frame& f) const {
    lb_flow_key k{f.saddr, f.daddr, htons(f.l4.sport), htons(f.l4.dport), f.l4.proto, {}};
    return ring_[lb_flow_hash(&k, kSeed) % LB_RING_SIZE];
  }

  // A client port whose flow the ring gives to backend b.
  uint16_t portFor(uint32_t b, uint8_t proto = IPPROTO_TCP, uint16_t dport = 443) const {
    for (uint16_t p = 40000; p < 60000; ++p) {
      Frame f = clientFrame(p, proto, dport);
      if (ringPick(f) == b) return p;
    }
    ADD_FAILURE() << "no port maps to backend " << b;
    return 0;
  }

  static Frame clientFrame(uint16_t sport, uint8_t proto = IPPROTO_TCP, uint16_t dport = 443) {
    Frame f;
    f.dst = kLbMac;
    f.src = kRouterMac;
    f.saddr = kClient;
    f.daddr = kVip;
    f.l4.proto = proto;
    f.l4.sport = sport;
    f.l4.dport = dport;
    f.l4.payload = {'h', 'e', 'l', 'l', 'o'};
    return f;
  }

  // What the program must send: to the backend and the mapped port, TTL one less,
  // MACs from the neighbour table.
  static Frame forwarded(Frame f, uint32_t backend, uint16_t hostPort, Mac dmac, Mac smac = kLbMac) {
    f.daddr = backend;
    f.l4.dport = hostPort;
    f.ttl--;
    f.dst = dmac;
    f.src = smac;
    return f;
  }

  lb_counter verdict(int v) {
    auto c = dp_->counters();
    EXPECT_TRUE(c) << c.status().toString();
    return c ? c->verdicts[static_cast<size_t>(v)] : lb_counter{};
  }

  void expectSame(const Bytes& got, const Bytes& want) {
    EXPECT_EQ(got, want) << "got:\n" << testing::hexDump(got) << "\nwant:\n" << testing::hexDump(want);
  }

  std::unique_ptr<XdpDataplane> dp_;
  std::vector<uint32_t> ring_;
};

TEST_F(XdpTest, TcpToAServiceGoesToItsBackendOnTheMappedPort) {
  for (uint32_t b : {0u, 1u}) {
    Frame in = clientFrame(portFor(b));
    ProgRun r = runXdp(dp_->programFd(), frameBytes(in));
    EXPECT_EQ(r.action, XDP_TX) << "backend " << b;
    Frame want = forwarded(in, backendConfigs()[b].address, 18443, backendMac(0x21 + static_cast<int>(b)));
    expectSame(r.out, frameBytes(want));
  }
  EXPECT_EQ(verdict(LB_V_FORWARDED).packets, 2u);
  auto c = dp_->counters();
  ASSERT_TRUE(c);
  EXPECT_EQ(c->services[0].packets, 2u);
  EXPECT_EQ(c->services[1].packets, 0u);
  EXPECT_EQ(c->backends[0].packets, 1u);
  EXPECT_EQ(c->backends[1].packets, 1u);
}

TEST_F(XdpTest, UdpIsRewrittenAndAnAbsentChecksumStaysAbsent) {
  Frame in = clientFrame(portFor(1, IPPROTO_UDP, 53), IPPROTO_UDP, 53);
  ProgRun r = runXdp(dp_->programFd(), frameBytes(in));
  EXPECT_EQ(r.action, XDP_TX);
  expectSame(r.out, frameBytes(forwarded(in, ip4("10.2.0.22"), 18053, backendMac(0x22))));

  in.l4.udpNoChecksum = true;
  r = runXdp(dp_->programFd(), frameBytes(in));
  EXPECT_EQ(r.action, XDP_TX);
  expectSame(r.out, frameBytes(forwarded(in, ip4("10.2.0.22"), 18053, backendMac(0x22))));
}

TEST_F(XdpTest, IpOptionsAreSteppedOver) {
  Frame in = clientFrame(portFor(0));
  in.ipOptions = {0x01, 0x01, 0x01, 0x00};  // NOP NOP NOP EOL
  ProgRun r = runXdp(dp_->programFd(), frameBytes(in));
  EXPECT_EQ(r.action, XDP_TX);
  expectSame(r.out, frameBytes(forwarded(in, ip4("10.2.0.21"), 18443, backendMac(0x21))));
}

TEST_F(XdpTest, ManyFlowsSpreadOverTheBackendsThatAreUp) {
  setUp({true, true, true, false});
  int per[4] = {0, 0, 0, 0};
  for (uint16_t p = 20000; p < 20600; ++p) {
    ProgRun r = runXdp(dp_->programFd(), frameBytes(clientFrame(p)));
    ASSERT_TRUE(r.action == XDP_TX || r.action == XDP_REDIRECT) << r.action;
    uint32_t daddr;
    std::memcpy(&daddr, &r.out[14 + 16], 4);
    for (int i = 0; i < 4; ++i) per[i] += daddr == backendConfigs()[static_cast<size_t>(i)].address;
  }
  EXPECT_EQ(per[3], 0);
  for (int i = 0; i < 3; ++i) EXPECT_GT(per[i], 150) << "backend " << i;
}

TEST_F(XdpTest, ABackendBehindAnotherPortIsRedirected) {
  setUp({false, false, true, false});
  Frame in = clientFrame(40000);
  ProgRun r = runXdp(dp_->programFd(), frameBytes(in));
  EXPECT_EQ(r.action, XDP_REDIRECT);
  expectSame(r.out, frameBytes(forwarded(in, ip4("10.3.0.31"), 18443, backendMac(0x31), kOutMac)));
}

TEST_F(XdpTest, WithoutANeighbourEntryTheKernelForwardsTheRewrittenPacket) {
  setUp({false, false, false, true});
  Frame in = clientFrame(40000);
  ProgRun r = runXdp(dp_->programFd(), frameBytes(in));
  EXPECT_EQ(r.action, XDP_PASS);
  // Addresses and ports rewritten, MACs as they came: the kernel routes it (and takes
  // one from the TTL, as it forwards: the program leaves the TTL to it).
  Frame want = forwarded(in, ip4("10.2.0.23"), 18443, in.dst, in.src);
  want.ttl++;
  expectSame(r.out, frameBytes(want));
  EXPECT_EQ(verdict(LB_V_FORWARDED_KERNEL).packets, 1u);
}

TEST_F(XdpTest, EstablishedFlowsKeepTheirBackendWhenTheSetChanges) {
  // A flow on backend 0 with c3 still out; then c3 comes up and takes slots. A flow
  // whose slot moved to c3 stays on its backend while established; a new connection
  // on the same 4-tuple (SYN) follows the new ring.
  setUp({true, true, false, false});
  std::vector<MaglevBackend> mb = {{"c1", true}, {"c2", true}, {"c3", true}, {"c4", false}};
  auto next = buildMaglev(mb, kSeed, LB_RING_SIZE);
  uint16_t port = 0;
  for (uint16_t p = 40000; p < 60000 && !port; ++p) {
    Frame f = clientFrame(p);
    lb_flow_key k{f.saddr, f.daddr, htons(p), htons(443), IPPROTO_TCP, {}};
    uint32_t slot = lb_flow_hash(&k, kSeed) % LB_RING_SIZE;
    if (ring_[slot] == 0 && next[slot] == 2) port = p;
  }
  ASSERT_NE(port, 0);
  Frame syn = clientFrame(port);
  ProgRun r = runXdp(dp_->programFd(), frameBytes(syn));
  ASSERT_EQ(r.action, XDP_TX);

  setUp({true, true, true, false});
  Frame ack = syn;
  ack.l4.tcpFlags = 0x10;
  r = runXdp(dp_->programFd(), frameBytes(ack));
  EXPECT_EQ(r.action, XDP_TX);
  expectSame(r.out, frameBytes(forwarded(ack, ip4("10.2.0.21"), 18443, backendMac(0x21))));

  r = runXdp(dp_->programFd(), frameBytes(syn));
  EXPECT_EQ(r.action, XDP_REDIRECT) << "a new connection follows the new ring to c3";
  expectSame(r.out, frameBytes(forwarded(syn, ip4("10.3.0.31"), 18443, backendMac(0x31), kOutMac)));
}

TEST_F(XdpTest, FlowsOfABackendThatWentDownMoveAndOnlyThose) {
  setUp({true, true, true, false});
  uint16_t onC1 = portFor(0), onC2 = portFor(1);
  Frame a = clientFrame(onC1), b = clientFrame(onC2);
  ASSERT_EQ(runXdp(dp_->programFd(), frameBytes(a)).action, XDP_TX);
  ASSERT_EQ(runXdp(dp_->programFd(), frameBytes(b)).action, XDP_TX);
  setUp({false, true, true, false});
  a.l4.tcpFlags = b.l4.tcpFlags = 0x10;
  ProgRun ra = runXdp(dp_->programFd(), frameBytes(a));
  uint32_t daddr;
  std::memcpy(&daddr, &ra.out[14 + 16], 4);
  EXPECT_NE(daddr, ip4("10.2.0.21")) << "c1 is down: its flow must move";
  ProgRun rb = runXdp(dp_->programFd(), frameBytes(b));
  expectSame(rb.out, frameBytes(forwarded(b, ip4("10.2.0.22"), 18443, backendMac(0x22))));
}

TEST_F(XdpTest, NoRouteOrTooBigForTheBackendLinkDropsAndSaysWhich) {
  // A backend nothing routes to (the namespace has no default route).
  std::vector<uint32_t> ring(LB_RING_SIZE, 0);
  ASSERT_TRUE(dp_->program(services(), {{ip4("10.9.0.5"), true}}, ring));
  EXPECT_EQ(runXdp(dp_->programFd(), frameBytes(clientFrame(40000))).action, XDP_DROP);
  EXPECT_EQ(verdict(LB_V_DROP_NO_ROUTE).packets, 1u);
  auto c = dp_->counters();
  ASSERT_TRUE(c);
  EXPECT_EQ(c->backends[0].packets, 0u) << "a dropped packet is not counted as the backend's";

  // A packet larger than the MTU of the port towards the backend.
  ASSERT_EQ(testing::runCommand("ip link set out0 mtu 1280"), 0);
  setUp({false, false, true, false});
  Frame big = clientFrame(40000);
  big.l4.payload = Bytes(1400, 'b');
  EXPECT_EQ(runXdp(dp_->programFd(), frameBytes(big)).action, XDP_DROP);
  EXPECT_EQ(verdict(LB_V_DROP_TOO_BIG).packets, 1u);
  ASSERT_EQ(testing::runCommand("ip link set out0 mtu 1500"), 0);
  EXPECT_EQ(runXdp(dp_->programFd(), frameBytes(big)).action, XDP_REDIRECT);
}

TEST_F(XdpTest, NoBackendUpDrops) {
  setUp({false, false, false, false});
  EXPECT_EQ(runXdp(dp_->programFd(), frameBytes(clientFrame(40000))).action, XDP_DROP);
  EXPECT_EQ(verdict(LB_V_DROP_NO_BACKEND).packets, 1u);
}

TEST_F(XdpTest, WhatIsNotForAServiceHasAStatedFate) {
  struct Case {
    const char* what;
    Frame frame;
    int action;
    int counter;
  };
  std::vector<Case> cases;
  {
    Frame f = clientFrame(40000);
    f.daddr = ip4("10.2.0.11");
    cases.push_back({"TCP to the node's own address", f, XDP_PASS, LB_V_PASS_NOT_VIP});
  }
  {
    Frame f = clientFrame(40000);
    f.ethType = 0x0806;
    cases.push_back({"ARP", f, XDP_PASS, LB_V_PASS_NOT_IPV4});
  }
  {
    Frame f = clientFrame(40000);
    f.ethType = 0x86dd;
    cases.push_back({"IPv6", f, XDP_PASS, LB_V_PASS_NOT_IPV4});
  }
  {
    Frame f = clientFrame(40000, IPPROTO_TCP, 80);
    cases.push_back({"TCP to a port of the VIP no service has", f, XDP_DROP, LB_V_DROP_UNKNOWN_SERVICE});
  }
  {
    Frame f = clientFrame(40000, IPPROTO_UDP, 443);
    cases.push_back({"UDP to a TCP service's port", f, XDP_DROP, LB_V_DROP_UNKNOWN_SERVICE});
  }
  {
    Frame f = clientFrame(40000);
    f.fragOff = 0x2000;  // MF, offset 0
    cases.push_back({"a first fragment", f, XDP_DROP, LB_V_DROP_FRAGMENT});
  }
  {
    Frame f = clientFrame(40000);
    f.fragOff = 0x0010;  // offset 128 bytes, last
    f.l4Raw = Bytes(16, 0xab);
    cases.push_back({"a later fragment", f, XDP_DROP, LB_V_DROP_FRAGMENT});
  }
  {
    Frame f = clientFrame(40000);
    f.ipProto = 47;
    f.l4Raw = Bytes(8, 0);
    cases.push_back({"GRE to the VIP", f, XDP_DROP, LB_V_DROP_PROTOCOL});
  }
  {
    Frame f = clientFrame(40000);
    f.ipProto = IPPROTO_ICMP;
    f.l4Raw = {8, 0, 0xf7, 0xff, 0, 0, 0, 0};  // echo request
    cases.push_back({"ping to the VIP", f, XDP_DROP, LB_V_DROP_PROTOCOL});
  }
  {
    Frame f = clientFrame(40000);
    f.ipProto = IPPROTO_TCP;
    f.l4Raw = {0x9c, 0x40, 0x01, 0xbb, 0, 0};  // 6 bytes of a TCP header
    cases.push_back({"a truncated TCP header", f, XDP_DROP, LB_V_DROP_MALFORMED});
  }
  {
    Frame f = clientFrame(portFor(0));
    f.ttl = 1;
    cases.push_back({"TTL 1", f, XDP_DROP, LB_V_DROP_TTL});
  }
  for (const Case& c : cases) {
    Bytes in = frameBytes(c.frame);
    uint64_t before = verdict(c.counter).packets;
    ProgRun r = runXdp(dp_->programFd(), in);
    EXPECT_EQ(r.action, c.action) << c.what;
    EXPECT_EQ(verdict(c.counter).packets, before + 1) << c.what << " counted as " << verdictName(c.counter);
    if (c.action == XDP_PASS) {
      EXPECT_EQ(r.out, in) << c.what << " must pass untouched";
    }
  }
  {
    // An Ethernet frame too short for an IPv4 header, to the VIP's MAC.
    Bytes runt = frameBytes(clientFrame(40000));
    runt.resize(14 + 10);
    EXPECT_EQ(runXdp(dp_->programFd(), runt).action, XDP_PASS);
  }
}

TEST_F(XdpTest, AnIcmpErrorAboutAFlowReachesThatFlowsBackend) {
  // The backend c2 answered the client from VIP:port (after its egress rewrite); a
  // router on the way sent an error back to the VIP ("fragmentation needed" for TCP,
  // "time exceeded" for UDP). The balancer must give it to c2 with the quote as c2's
  // own stack sent it: from 10.2.0.22 and the mapped port.
  struct Case {
    uint8_t proto;
    uint16_t port, hostPort;
    uint8_t type, code;
  };
  for (Case k : {Case{IPPROTO_TCP, 443, 18443, 3, 4}, Case{IPPROTO_UDP, 53, 18053, 11, 0}}) {
    uint16_t port = portFor(1, k.proto, k.port);
    Frame reply;
    reply.saddr = kVip;
    reply.daddr = kClient;
    reply.l4.proto = k.proto;
    reply.l4.sport = k.port;
    reply.l4.dport = port;
    reply.l4.tcpFlags = 0x18;
    reply.l4.payload = Bytes(64, 'x');
    Frame in;
    in.dst = kLbMac;
    in.src = kRouterMac;
    in.saddr = ip4("192.0.2.1");  // the router that could not forward it
    in.daddr = kVip;
    in.ipProto = IPPROTO_ICMP;
    in.l4Raw = testing::icmpError(k.type, k.code, reply, 1400);
    uint64_t before = verdict(LB_V_ICMP_FORWARDED).packets;
    ProgRun r = runXdp(dp_->programFd(), frameBytes(in));
    EXPECT_EQ(r.action, XDP_TX);

    Frame quoted = reply;
    quoted.saddr = ip4("10.2.0.22");
    quoted.l4.sport = k.hostPort;
    Frame want = in;
    want.daddr = ip4("10.2.0.22");
    want.ttl--;
    want.dst = backendMac(0x22);
    want.src = kLbMac;
    want.l4Raw = testing::icmpError(k.type, k.code, quoted, 1400);
    expectSame(r.out, frameBytes(want));
    EXPECT_EQ(verdict(LB_V_ICMP_FORWARDED).packets, before + 1);

    // An error quoting a VIP port no service has is dropped.
    reply.l4.sport = 80;
    in.l4Raw = testing::icmpError(k.type, k.code, reply, 1400);
    EXPECT_EQ(runXdp(dp_->programFd(), frameBytes(in)).action, XDP_DROP);
  }
}

TEST_F(XdpTest, AnUpdateFlipsTheRingInOneStep) {
  uint32_t zero = 0;
  lb_config before{}, after{};
  ASSERT_EQ(bpf_map_lookup_elem(dp_->mapFd("config"), &zero, &before), 0);
  setUp({true, true, true, true});
  ASSERT_EQ(bpf_map_lookup_elem(dp_->mapFd("config"), &zero, &after), 0);
  EXPECT_NE(before.ring, after.ring);
  EXPECT_EQ(after.seed, kSeed);
  // The live half holds the new ring.
  for (uint32_t s : {0u, 1u, 777u, LB_RING_SIZE - 1}) {
    uint32_t key = after.ring * LB_RING_SIZE + s, value = 0;
    ASSERT_EQ(bpf_map_lookup_elem(dp_->mapFd("rings"), &key, &value), 0);
    EXPECT_EQ(value, ring_[s]);
  }
  // The same ring again writes nothing and flips nothing.
  setUp({true, true, true, true});
  lb_config again{};
  ASSERT_EQ(bpf_map_lookup_elem(dp_->mapFd("config"), &zero, &again), 0);
  EXPECT_EQ(again.ring, after.ring);
}

TEST_F(XdpTest, MapUpdatesUnderTrafficDropNoPacket) {
  // One thread keeps reprogramming (a backend comes and goes, so the ring flips every
  // time) while this one sends new connections through the program: every packet must
  // be forwarded, none dropped for a half-written ring or a backend marked down mid-way.
  std::atomic<bool> done{false};
  std::atomic<int> updates{0};
  std::thread updater([&] {
    auto cfgs = backendConfigs();
    for (bool third = true; !done; third = !third) {
      std::vector<MaglevBackend> mb;
      std::vector<BackendState> st;
      for (size_t i = 0; i < cfgs.size(); ++i) {
        bool up = i < 2 || (i == 2 && third);
        mb.push_back({cfgs[i].name, up});
        st.push_back({cfgs[i].address, up});
      }
      Status s = dp_->program(services(), st, buildMaglev(mb, kSeed, LB_RING_SIZE));
      if (!s) ADD_FAILURE() << s.toString();
      updates++;
    }
  });
  int dropped = 0, sent = 0;
  // Until the ring has flipped 20 times (an update takes milliseconds: the whole ring is
  // written), with a time limit.
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (; (sent < 2000 || updates < 20) && std::chrono::steady_clock::now() < until; ++sent) {
    ProgRun r = runXdp(dp_->programFd(), frameBytes(clientFrame(static_cast<uint16_t>(10000 + sent % 50000))));
    dropped += r.action != XDP_TX && r.action != XDP_REDIRECT;
  }
  done = true;
  updater.join();
  EXPECT_GE(updates.load(), 20) << "the ring must have flipped while packets ran";
  EXPECT_EQ(dropped, 0) << "of " << sent << " packets, during " << updates << " updates";
  EXPECT_EQ(verdict(LB_V_DROP_NO_BACKEND).packets, 0u);
}

TEST_F(XdpTest, AttachingToAMissingInterfaceSaysSo) {
  XdpOptions o;
  o.interface = "nosuch0";
  XdpDataplane dp(o);
  Status st = dp.start();
  ASSERT_FALSE(st);
  EXPECT_NE(st.message().find("no interface \"nosuch0\""), std::string::npos) << st.message();
}

TEST_F(XdpTest, AttachesToAVethAndDetachesOnStop) {
  XdpOptions o;
  o.interface = "up1";
  o.mode = "generic";
  {
    XdpDataplane dp(o);
    Status st = dp.start();
    ASSERT_TRUE(st) << st.toString();
    std::string out;
    testing::runCommand("ip link show up1", &out);
    EXPECT_NE(out.find("xdpgeneric"), std::string::npos) << out;
    // A second program on the same port is refused with a reason.
    XdpDataplane second(o);
    Status st2 = second.start();
    EXPECT_FALSE(st2);
    EXPECT_NE(st2.message().find("attach XDP to up1"), std::string::npos) << st2.message();
  }
  std::string out;
  testing::runCommand("ip link show up1", &out);
  EXPECT_EQ(out.find("xdp"), std::string::npos) << out;
}

TEST_F(XdpTest, TheCommandLineSaysWhatIsWrong) {
  const char* build = std::getenv("FERRY_BUILD_DIR");
  if (!build) GTEST_SKIP() << "FERRY_BUILD_DIR is not set (run under ctest)";
  std::string bin = std::string(build) + "/balancer/ferry-balancer";
  testing::TempDir dir;
  std::ofstream(dir / "lb.json") << R"({"services": [{"name": "api", "vip": "198.51.100.10", "port": 443,
    "host_port": 18443}], "backends": [{"name": "c1", "address": "10.2.0.21"}]})";
  struct Case {
    std::string args;
    int exit;
    std::string says;
  };
  std::vector<Case> cases = {
      {"host --interface nosuch0 --remove", 1, "no interface \"nosuch0\""},
      {"host --interface up0 --remove", 0, "no tc egress rewrite on up0"},
      {"node --config " + (dir / "lb.json") + " --interface nosuch0", 1, "no interface \"nosuch0\""},
      {"node --config " + (dir / "lb.json") + " --interface lb0 --dataplane ebpf", 1, "--dataplane must be xdp or nft"},
      {"node --config " + (dir / "lb.json") + " --interface lb0 --xdp-mode turbo", 1, "XDP mode must be native or generic"},
      {"node --config " + (dir / "missing.json") + " --interface lb0", 1, "missing.json"},
      {"node --config " + (dir / "lb.json") + " --interface lb0 --xdp-mode generic --metrics 127.0.0.1:99999", 1,
       "port 0-65535"},
      {"table --config " + (dir / "lb.json"), 0, "\"digest\""},
      {"bogus", 2, "unknown command"},
  };
  for (const Case& c : cases) {
    std::string out;
    int rc = testing::runCommand(bin + " " + c.args + " 2>&1", &out);
    EXPECT_EQ(rc, c.exit) << c.args << ": " << out;
    EXPECT_NE(out.find(c.says), std::string::npos) << c.args << ": " << out;
  }
  // Forwarding off: the XDP node refuses, naming the setting.
  ASSERT_EQ(testing::runCommand("sysctl -qw net.ipv4.conf.up1.forwarding=0"), 0);
  std::string out;
  EXPECT_EQ(testing::runCommand(bin + " node --config " + (dir / "lb.json") + " --interface up1 2>&1", &out), 1);
  EXPECT_NE(out.find("net.ipv4.conf.up1.forwarding = 1"), std::string::npos) << out;
  ASSERT_EQ(testing::runCommand("sysctl -qw net.ipv4.conf.up1.forwarding=1"), 0);
}

// The host's egress rewrite.
class HostTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!gSkip.empty()) GTEST_SKIP() << gSkip;
    host_ = std::make_unique<HostEgress>(HostOptions{"", ip4("10.2.0.22")});
    Status st = host_->start(services(), {ip4("10.2.0.11")});
    ASSERT_TRUE(st) << st.toString();
  }
  // A reply c2's stack sends: from its address and the mapped port.
  static Frame reply(uint8_t proto, uint16_t sport) {
    Frame f;
    f.saddr = ip4("10.2.0.22");
    f.daddr = kClient;
    f.l4.proto = proto;
    f.l4.sport = sport;
    f.l4.dport = 40001;
    f.l4.tcpFlags = 0x12;
    f.l4.payload = {'o', 'k'};
    return f;
  }
  std::unique_ptr<HostEgress> host_;
};

TEST_F(HostTest, RepliesFromAMappedPortLeaveAsTheVip) {
  for (auto [proto, hostPort, port] : {std::tuple{IPPROTO_TCP, 18443, 443}, std::tuple{IPPROTO_UDP, 18053, 53}}) {
    Frame in = reply(static_cast<uint8_t>(proto), static_cast<uint16_t>(hostPort));
    ProgRun r = runTc(host_->programFd(), frameBytes(in));
    EXPECT_EQ(r.action, TC_ACT_OK);
    Frame want = in;
    want.saddr = kVip;
    want.l4.sport = static_cast<uint16_t>(port);
    EXPECT_EQ(r.out, frameBytes(want)) << "proto " << proto << "\n" << testing::hexDump(r.out);
  }
  Frame udp0 = reply(IPPROTO_UDP, 18053);
  udp0.l4.udpNoChecksum = true;
  ProgRun r = runTc(host_->programFd(), frameBytes(udp0));
  Frame want = udp0;
  want.saddr = kVip;
  want.l4.sport = 53;
  EXPECT_EQ(r.out, frameBytes(want)) << "a UDP checksum of zero stays zero";
  auto c = host_->counters();
  ASSERT_TRUE(c);
  EXPECT_EQ(c->replies.packets, 3u);
}

TEST_F(HostTest, EverythingElseLeavesUntouched) {
  std::vector<std::pair<const char*, Frame>> cases;
  cases.push_back({"another port", reply(IPPROTO_TCP, 22)});
  cases.push_back({"the mapped port with the other protocol", reply(IPPROTO_UDP, 18443)});
  Frame other = reply(IPPROTO_TCP, 18443);
  other.saddr = ip4("10.9.9.9");
  cases.push_back({"another source address", other});
  Frame toNode = reply(IPPROTO_TCP, 18443);
  toNode.daddr = ip4("10.2.0.11");
  cases.push_back({"an answer to a balancer node's health check", toNode});
  Frame frag = reply(IPPROTO_UDP, 18053);
  frag.fragOff = 0x2000;
  cases.push_back({"a fragment", frag});
  for (auto& [what, f] : cases) {
    Bytes in = frameBytes(f);
    ProgRun r = runTc(host_->programFd(), in);
    EXPECT_EQ(r.action, TC_ACT_OK) << what;
    EXPECT_EQ(r.out, in) << what;
  }
}

TEST_F(HostTest, IcmpErrorsAboutAMappedPortNameTheVip) {
  // The client sent UDP to VIP:53; the balancer delivered it as 10.2.0.22:18053; nothing
  // listens, so c2's stack answers "port unreachable" quoting what it received.
  Frame received;
  received.saddr = kClient;
  received.daddr = ip4("10.2.0.22");
  received.l4.proto = IPPROTO_UDP;
  received.l4.sport = 40001;
  received.l4.dport = 18053;
  Frame in;
  in.saddr = ip4("10.2.0.22");
  in.daddr = kClient;
  in.ipProto = IPPROTO_ICMP;
  in.l4Raw = testing::icmpError(3, 3, received);
  ProgRun r = runTc(host_->programFd(), frameBytes(in));
  EXPECT_EQ(r.action, TC_ACT_OK);
  Frame quoted = received;
  quoted.daddr = kVip;
  quoted.l4.dport = 53;
  Frame want = in;
  want.saddr = kVip;
  want.l4Raw = testing::icmpError(3, 3, quoted);
  EXPECT_EQ(r.out, frameBytes(want)) << "got:\n" << testing::hexDump(r.out) << "\nwant:\n"
                                     << testing::hexDump(frameBytes(want));
  auto c = host_->counters();
  ASSERT_TRUE(c);
  EXPECT_EQ(c->icmpErrors.packets, 1u);
}

}  // namespace
}  // namespace ferry::balancer
