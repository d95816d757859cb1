#!/usr/bin/env python3
"""Closed-loop HTTPS load against a running gpudock: N threads, each on its own
keep-alive connection, for a fixed number of requests. Prints requests/second.
Usage: load.py BASE_URL KIND THREADS REQUESTS [USERNAME PASSWORD]
KIND: healthz (GET /healthz) or login (POST /api/v1/auth/login)."""
import http.client, json, ssl, sys, threading, time
from urllib.parse import urlparse

base, kind, threads, total = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
user, password = (sys.argv[5], sys.argv[6]) if len(sys.argv) > 6 else ("", "")
u = urlparse(base)
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
body = json.dumps({"username": user, "password": password})
per = total // threads
errors = []

def worker():
    c = http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=30)
    for _ in range(per):
        if kind == "login":
            c.request("POST", "/api/v1/auth/login", body, {"content-type": "application/json"})
        else:
            c.request("GET", "/healthz")
        r = c.getresponse()
        r.read()
        if r.status != 200:
            errors.append(r.status)

start = time.perf_counter()
ts = [threading.Thread(target=worker) for _ in range(threads)]
for t in ts: t.start()
for t in ts: t.join()
elapsed = time.perf_counter() - start
if errors:
    print(f"errors: {len(errors)} (first {errors[0]})", file=sys.stderr)
    sys.exit(1)
print(f"{per * threads / elapsed:.1f}")
