"""The balancer end to end, in network namespaces made for it (topology.sh): a client,
an ECMP router with an L4 hash, two balancer nodes running `ferry-balancer node` (XDP,
native), three backend hosts running `ferry-balancer host` and a real ferry-control
each, on one PostgreSQL in its own namespace. A client holds TLS connections to the VIP,
and three real ferry-agents in the client namespace activate through the VIP and hold
their gateway channels through it (the channel service, VIP:8445).

Checks: requests reach every backend through the VIP; replies never cross a balancer
(a bridge counter); withdrawing one balancer node from the ECMP route breaks no held
connection; adding a backend keeps held connections where they were and new ones reach
it; killing a backend breaks only its own connections, and the health checks take it
out. The same for the gateway channels: a request is pushed down each one; they survive
the node withdrawal and the added backend on the connection they had; the ones held
by the killed backend reconnect through the VIP to another and the gateways are
online again. Needs root: exits 77 (skipped) without it.

With --dataplane nft the nodes and hosts use the nftables data plane, which has no
connection table: a change of the backend set also moves the held connections whose
ring slots Maglev moved (adding a third backend moves about a third of all flows to it;
removing one moves a few per cent besides its own), so those checks are relaxed to at
least a quarter and at least 70 % kept.

  FERRY_BUILD_DIR=build python3 tests/balancer/e2e_test.py [--dataplane xdp|nft]
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BUILD = os.path.abspath(os.environ.get("FERRY_BUILD_DIR", os.path.join(ROOT, "build")))
DATAPLANE = sys.argv[sys.argv.index("--dataplane") + 1] if "--dataplane" in sys.argv else "xdp"
P = "fbt" if DATAPLANE == "xdp" else "fbn"
VIP = "198.51.100.10"
HOSTS = {"h1": "10.2.0.21", "h2": "10.2.0.22", "h3": "10.2.0.23"}
NODES = {"lb1": "10.2.0.11", "lb2": "10.2.0.12"}
procs = {}


def sh(cmd, check=True):
    r = subprocess.run(cmd, shell=True, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError("%s: %s%s" % (cmd, r.stdout, r.stderr))
    return r.stdout


def spawn(name, ns, args, log):
    f = open(log, "w")
    procs[name] = subprocess.Popen(["ip", "netns", "exec", "%s-%s" % (P, ns)] + args, stdout=f,
                                   stderr=subprocess.STDOUT, start_new_session=True)


def kill(name, sig=signal.SIGTERM):
    p = procs.pop(name, None)
    if p and p.poll() is None:
        os.killpg(p.pid, sig)
        p.wait(timeout=30)


def wait_for(what, fn, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        try:
            if fn():
                return
        except Exception:
            pass
        time.sleep(0.2)
    raise AssertionError("timed out waiting for " + what)


def metrics(node):
    out = sh("ip netns exec %s-%s curl -s -m 2 http://%s:9480/metrics" % (P, node, NODES[node]))
    values = {}
    for line in out.splitlines():
        m = re.match(r'^(\w+)\{([^}]*)\} (\S+)$', line)
        if m:
            values[(m.group(1), m.group(2))] = float(m.group(3))
    return values


def backend_up(node, backend):
    return metrics(node).get(("ferry_balancer_backend_up", 'backend="%s"' % backend)) == 1


def start_control(tmp, host, db_url):
    d = os.path.join(tmp, host)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "control.properties"), "w") as f:
        # The server's own API port is 8443; 18443 is the VIP's host port (the balancer's
        # host_port), where it answers as the VIP.
        f.write("database = %s\napi.host = 0.0.0.0\napi.port = 8443\nstate.dir = %s/state\n"
                "gateway.store = file://%s/store/{gateway}\nchannel.port = 18445\n"
                "channel.ping_seconds = 1\nchannel.dead_seconds = 3\nserver.heartbeat_seconds = 1\n"
                "server.stale_seconds = 3\n"
                "internal.port = 8444\napi.threads = 64\ntls.ca_dir = %s/ca\ntls.names = %s,localhost\nserver.id = %s\n"
                "vip.api.port = 18443\nvip.api.address = %s:443\n"
                "vip.api.control_endpoint = wss://%s:8445/v1/channel\n"
                % (db_url, d, tmp, tmp, HOSTS[host], host, VIP, VIP))
    spawn("control-" + host, host, [os.path.join(BUILD, "server", "ferry-control"),
                                     "--config=" + os.path.join(d, "control.properties")], os.path.join(d, "control.log"))
    wait_for("ferry-control on " + host, lambda: os.path.exists(os.path.join(tmp, "ca", "ca.crt")) and sh(
        "ip netns exec %s-%s curl -sk -m 1 https://%s:18443/healthz" % (P, host, HOSTS[host]), check=False))


class Client:
    def __init__(self, ca):
        self.p = subprocess.Popen(["ip", "netns", "exec", P + "-cli", sys.executable,
                                   os.path.join(HERE, "flow_client.py"), VIP, ca],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(self, cmd):
        self.p.stdin.write(cmd + "\n")
        self.p.stdin.flush()
        return json.loads(self.p.stdout.readline())

    def close(self):
        self.p.stdin.close()
        self.p.wait(timeout=10)


def cli(cmd):
    return sh("ip netns exec %s-cli %s" % (P, cmd))


class Api:
    """The provider's API through the VIP, from the client namespace, as a customer."""

    def __init__(self, tmp):
        self.ca = tmp + "/ca/ca.crt"
        who = json.dumps({"email": "lb@example.com", "password": "0123456789ab"})
        self.call("POST", "/v1/signup", who)
        self.token = self.call("POST", "/v1/login", who)["token"]

    def call(self, method, path, body=None):
        cmd = "curl -s -m 10 --cacert %s -X %s" % (self.ca, method)
        if getattr(self, "token", None):
            cmd += " -H 'Authorization: Bearer %s'" % self.token
        if body is not None:
            cmd += " -H 'Content-Type: application/json' --data '%s'" % body
        return json.loads(cli(cmd + " https://%s%s" % (VIP, path)) or "{}")


def start_agent(tmp, i):
    d = "%s/agent%d" % (tmp, i)
    os.makedirs(d, exist_ok=True)
    preload = os.environ.get("FERRY_NBDKIT_PRELOAD", "")
    with open(d + "/agent.properties", "w") as f:
        f.write("state.dir = %s/state\nprovider.endpoint = https://%s:443\nprovider.ca = %s/ca/ca.crt\n"
                "page.host = 10.1.0.2\npage.port = %d\nnbd.host = 10.1.0.2\nnbd.port = %d\n"
                "engine.plugin = %s\nactivation.poll_seconds = 1\n"
                "channel.backoff_base_ms = 100\nchannel.backoff_cap_ms = 1000\n%s"
                % (d, VIP, tmp, 8081 + i, 10809 + i, os.path.join(BUILD, "plugins", "ferry", "nbdkit-ferry-plugin.so"),
                   "engine.environment = LD_PRELOAD=%s\n" % preload if preload else ""))
    spawn("agent%d" % i, "cli", [os.path.join(BUILD, "appliance", "ferry-agent"), "--config=" + d + "/agent.properties"],
          d + "/agent.log")


def agent_status(i):
    return json.loads(cli("curl -s -m 2 http://10.1.0.2:%d/status.json" % (8081 + i)))


def channel_connections(i):
    ch = agent_status(i).get("channel", {})
    return ch.get("connections", 0) if ch.get("connected") else 0


def activate_agents(tmp, api, count):
    """Starts count agents, claims each through the API; returns their gateway ids."""
    ids = []
    for i in range(count):
        start_agent(tmp, i)
    for i in range(count):
        key = {}
        wait_for("agent %d's activation key" % i,
                 lambda: key.setdefault("k", agent_status(i).get("activation_key")) or key.pop("k", None))
        g = api.call("POST", "/v1/gateways/activate",
                     json.dumps({"activation_key": key["k"], "name": "gw%d" % i, "timezone": "UTC"}))
        ids.append(g["gateway"]["id"])
    for i, gid in enumerate(ids):
        wait_for("gateway %d online" % i, lambda gid=gid: api.call("GET", "/v1/gateways/" + gid)["gateway"]["online"],
                 timeout=60)
        wait_for("agent %d's channel" % i, lambda i=i: channel_connections(i) == 1, timeout=30)
    return ids


def push_volume(api, gid, name):
    """Creates a volume on the gateway: a request pushed down its channel; True when done,
    else the request as the API last showed it."""
    r = api.call("POST", "/v1/gateways/%s/volumes" % gid, json.dumps({"name": name, "size": "64M"}))
    rid = r["request"]["id"]
    end = time.time() + 60
    req = {}
    while time.time() < end:
        req = api.call("GET", "/v1/requests/" + rid)["request"]
        if req["state"] in ("done", "failed"):
            break
        time.sleep(0.3)
    return True if req.get("state") == "done" else req


def bridge_counters():
    out = sh("ip netns exec %s-lan nft list table bridge dsr" % P)
    return [int(n) for n in re.findall(r"counter packets (\d+)", out)]


def check(cond, message):
    if not cond:
        raise AssertionError(message)
    print("ok:", message, flush=True)


def run(tmp):
    topo = os.path.join(HERE, "topology.sh")
    sh("bash %s up %s %s" % (topo, P, os.path.join(BUILD, "balancer", "lb_pass.bpf.o")))

    # One PostgreSQL for the farm, in its own namespace.
    env = "FERRY_PG_LISTEN=10.2.0.50"
    sh("ip netns exec %s-db env %s bash %s/tests/pg/pg-start.sh %s/pg" % (P, env, ROOT, tmp))
    port = re.search(r"port=(\d+)", open(tmp + "/pg/url").read()).group(1)
    db_url = "postgresql:host=10.2.0.50 port=%s user=postgres dbname=ferry" % port

    cfg = {"seed": 5,
           "services": [{"name": "api", "vip": VIP, "port": 443, "host_port": 18443},
                        {"name": "channel", "vip": VIP, "port": 8445, "host_port": 18445}],
           "backends": [{"name": h, "address": a} for h, a in sorted(HOSTS.items())],
           "nodes": list(NODES.values()),
           # A generous timeout and three failures in a row. In CI (2026-12-03, sanitizer
           # suite, beside another test on two cores) every connection on h1 and h3 broke
           # after h2's kill; the likely cause, not proven, is checks of the live servers
           # timing out at 1 s and taking them out. A killed server refuses at once, so it
           # still goes out within a second. The failure message now shows the transitions.
           "health": {"scheme": "https", "path": "/healthz", "interval_ms": 300, "timeout_ms": 3000,
                      "rise": 2, "fall": 3}}
    with open(tmp + "/balancer.json", "w") as f:
        json.dump(cfg, f)
    bal = os.path.join(BUILD, "balancer", "ferry-balancer")
    for h, a in HOSTS.items():
        spawn("host-" + h, h, [bal, "host", "--config", tmp + "/balancer.json", "--interface", "eth0", "--address", a,
                               "--dataplane", DATAPLANE], "%s/host-%s.log" % (tmp, h))
    start_control(tmp, "h1", db_url)
    start_control(tmp, "h2", db_url)
    for n, a in NODES.items():
        spawn(n, n, [bal, "node", "--config", tmp + "/balancer.json", "--interface", "eth0", "--metrics", a + ":9480",
                     "--dataplane", DATAPLANE], "%s/%s.log" % (tmp, n))
    for n in NODES:
        wait_for(n + " sees h1 and h2 up", lambda n=n: backend_up(n, "h1") and backend_up(n, "h2"))
    check(not backend_up("lb1", "h3"), "h3 (no server yet) is down")

    # Replies from VIP seen on the bridge: [from a balancer's MAC, from anyone].
    macs = [sh("ip -n %s-%s -j link show eth0" % (P, n)) for n in NODES]
    macs = [json.loads(m)[0]["address"] for m in macs]
    sh("ip netns exec %s-lan nft -f -" % P + " <<'EOF'\n"
       "table bridge dsr { chain watch { type filter hook forward priority 0;\n"
       "  ip saddr %s ether saddr { %s } counter\n  ip saddr %s counter\n}\n}\nEOF" % (VIP, ", ".join(macs), VIP))

    answer = json.loads(sh("ip netns exec %s-cli curl -s -m 5 --cacert %s/ca/ca.crt https://%s/healthz" % (P, tmp, VIP)))
    check(answer.get("vip") == VIP + ":443", "ferry-control knows which VIP the client dialled: %s" % answer)
    client = Client(tmp + "/ca/ca.crt")
    first = client.ask("open 24")
    check(all(s in ("h1", "h2") for s in first), "24 TLS connections through the VIP answered: %s" % first)
    check({"h1", "h2"} <= set(first), "both backends serve")
    via_lb, total = bridge_counters()
    check(total > 0 and via_lb == 0, "replies never cross a balancer (%d from the VIP, %d of them via a node)"
          % (total, via_lb))
    api = Api(tmp)
    gws = activate_agents(tmp, api, 3)
    holders = [api.call("GET", "/v1/gateways/" + g)["gateway"]["server"] for g in gws]
    check(set(holders) <= {"h1", "h2"}, "3 gateways activated through the VIP hold channels on %s" % holders)
    pushed = [push_volume(api, g, "v1") for g in gws]
    check(all(p is True for p in pushed), "a request went down each channel through the VIP: %s" % pushed)

    fwd = sum(metrics(n).get(("ferry_balancer_packets_total", 'verdict="forwarded"'), 0) for n in NODES)
    check(fwd > 0, "the nodes forwarded %d client packets" % fwd)
    per_node = [metrics(n).get(("ferry_balancer_packets_total", 'verdict="forwarded"'), 0) for n in NODES]
    check(all(v > 0 for v in per_node), "ECMP spreads flows over both nodes: %s" % per_node)

    # Withdraw lb1: its flows go to lb2, which builds the same ring.
    sh("bash %s ecmp %s lb2" % (topo, P))
    again = client.ask("round")
    check(again == first, "withdrawing lb1 broke no held connection")
    time.sleep(4)  # more than dead_seconds: pings cross lb2 now
    check([channel_connections(i) for i in range(3)] == [1, 1, 1], "nor a gateway channel")
    sh("bash %s ecmp %s both" % (topo, P))
    check(client.ask("round") == first, "and giving it back neither")

    # Add a backend: held connections stay, new ones reach it.
    start_control(tmp, "h3", db_url)
    for n in NODES:
        wait_for(n + " sees h3 up", lambda n=n: backend_up(n, "h3"))
    now = client.ask("round")
    if DATAPLANE == "xdp":
        check(now == first, "adding h3 kept every held connection where it was")
    else:
        kept = sum(1 for a, b in zip(first, now) if a == b)
        # Without a connection table every flow in a slot h3 now owns moves: about a third
        # (a binomial draw: 14 to 17 of 24 kept in trial runs; a quarter is far below).
        check(kept >= len(first) * 0.25, "adding h3 kept %d of %d held connections (no connection table)"
              % (kept, len(first)))
        first = now  # a moved one is gone for good
    if DATAPLANE == "xdp":
        time.sleep(4)
        check([channel_connections(i) for i in range(3)] == [1, 1, 1],
              "adding h3 kept every gateway channel on its connection")
    fresh = client.ask("open 24")
    check(not any(s.startswith("error") for s in fresh), "24 new connections answered: %s" % fresh)
    check("h3" in fresh, "new connections reach h3")
    held = first + fresh
    if DATAPLANE == "nft":
        # The forward-path counters of the nft plane count per backend too.
        check(sum(v for k, v in metrics("lb1").items() if k[0] == "ferry_balancer_backend_packets_total") > 0,
              "the nft plane counts packets per backend")

    # Kill a backend: only its own connections break; the checks take it out.
    kill("control-h2", signal.SIGKILL)
    for n in NODES:
        wait_for(n + " takes h2 out", lambda n=n: not backend_up(n, "h2"))
    after = client.ask("round")
    others = [(was, now) for was, now in zip(held, after) if was in ("h1", "h3")]
    for was, now in zip(held, after):
        if was == "h2":
            check(now.startswith("error"), "a connection on h2 broke (%s)" % now)
    kept = sum(1 for was, now in others if was == now)
    if DATAPLANE == "xdp":
        check(kept == len(others), "every connection on h1 and h3 kept going (%d)" % kept)
    else:
        enough = kept >= len(others) * 0.7
        said = "%d of %d connections on h1 and h3 kept going" % (kept, len(others))
        if not enough:
            flaps = {n: {b: metrics(n).get(("ferry_balancer_backend_transitions_total", 'backend="%s"' % b))
                         for b in HOSTS} for n in NODES}
            said += ": %s -> %s; health transitions per node (h3 joined, h2 left: 1 each): %s" % (held, after, flaps)
        check(enough, said)
    for i, g in enumerate(gws):
        def moved(g=g):
            gw = api.call("GET", "/v1/gateways/" + g)["gateway"]
            return gw["online"] and gw["server"] in ("h1", "h3")
        wait_for("gateway %d online after the kill" % i, moved, timeout=60)
    conns = [channel_connections(i) for i in range(3)]
    for i, was in enumerate(holders):
        if was == "h2":
            check(conns[i] >= 2, "gateway %d, held by h2, reconnected through the VIP (%d connections)" % (i, conns[i]))
        elif DATAPLANE == "xdp":
            check(conns[i] == 1, "gateway %d, held by %s, kept its channel" % (i, was))
    pushed = [push_volume(api, g, "v2") for g in gws]
    check(all(p is True for p in pushed), "requests reach every gateway after the kill: %s" % pushed)
    replaced = client.ask("open 12")
    check(all(s in ("h1", "h3") for s in replaced), "new connections avoid h2: %s" % replaced)
    client.close()


def main():
    if os.geteuid() != 0:
        print("skipped: needs root for network namespaces and XDP")
        return 77
    for tool in ("ip", "nft", "curl", "ethtool"):
        if not shutil.which(tool):
            print("skipped: %s is not installed" % tool)
            return 77
    tmp = tempfile.mkdtemp(prefix="ferry-balancer-e2e-")
    os.chmod(tmp, 0o755)
    try:
        run(tmp)
        print("PASSED")
        return 0
    except Exception as e:
        print("FAILED:", e)
        for n in NODES:
            try:
                print("--- %s metrics\n%s" % (n, "\n".join("%s{%s} %g" % (k[0], k[1], v) for k, v in metrics(n).items() if v)))
            except Exception:
                pass
        # The nodes' and hosts' logs at the top, the control servers' and agents' in
        # their own folders (control-h1/control.log, agent0/agent.log).
        for folder, _, names in sorted(os.walk(tmp)):
            for name in sorted(names):
                if name.endswith(".log"):
                    path = os.path.join(folder, name)
                    print("--- " + os.path.relpath(path, tmp) + "\n" + open(path, errors="replace").read()[-4000:])
        return 1
    finally:
        for name in list(procs):
            kill(name, signal.SIGKILL)
        subprocess.run("ip netns exec %s-db bash %s/tests/pg/pg-stop.sh %s/pg" % (P, ROOT, tmp), shell=True)
        subprocess.run(["bash", os.path.join(HERE, "topology.sh"), "down", P])
        if not os.environ.get("FERRY_KEEP"):
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
