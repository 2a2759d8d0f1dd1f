"""Holds TLS connections to the VIP for the balancer's end-to-end test; run inside the
client namespace. Reads commands on stdin, answers one JSON line each:
  open N         opens N more keep-alive connections; answers their servers
  round          GET /healthz on every open connection; answers each server or error
                 (a failed connection is closed and stays failed: no silent reconnect)
"""
import http.client
import json
import ssl
import sys

VIP, CA = sys.argv[1], sys.argv[2]
ctx = ssl.create_default_context(cafile=CA)
conns = []  # [connection or None]


def ask(c):
    c.request("GET", "/healthz")
    r = c.getresponse()
    body = r.read()
    if r.status != 200:
        raise RuntimeError("HTTP %d" % r.status)
    return json.loads(body)["server"]


def one(i):
    c = conns[i]
    if c is None:
        return "error: closed"
    try:
        return ask(c)
    except Exception as e:  # a reset, a timeout: this flow broke
        c.close()
        conns[i] = None
        return "error: %s" % (e.__class__.__name__,)


for line in sys.stdin:
    cmd = line.split()
    if not cmd:
        continue
    if cmd[0] == "open":
        start = len(conns)
        for _ in range(int(cmd[1])):
            conns.append(http.client.HTTPSConnection(VIP, 443, timeout=3, context=ctx))
        out = [one(i) for i in range(start, len(conns))]
    elif cmd[0] == "round":
        out = [one(i) for i in range(len(conns))]
    else:
        out = ["error: unknown command"]
    print(json.dumps(out), flush=True)
