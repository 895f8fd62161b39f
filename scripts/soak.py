#!/usr/bin/env python3
"""The load driver and checks of scripts/soak (see there).

Starts the server, warms it up with the same load as the measured run, then
counts its open file descriptors and resident memory at rest, runs the load
for --duration seconds, counts them again at rest, stops the server with
SIGTERM, prints every figure and exits 1 if a check failed.
"""

import argparse
import http.client
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter

PASSWORD = "correct horse battery staple"
WARMUP_SECONDS = 10
RSS_TOLERANCE = 0.10


class Worker:
    """One client: a keep-alive connection and the requests of the mix."""

    def __init__(self, host, port, username):
        self.host, self.port, self.username = host, port, username
        self.conn = http.client.HTTPConnection(host, port, timeout=30)
        self.statuses = Counter()
        self.unexpected = Counter()
        self.requests = 0

    def call(self, method, path, expect, body=None, headers=None, raw=None):
        headers = dict(headers or {})
        data = raw
        if body is not None:
            data = json.dumps(body)
            headers["Content-Type"] = "application/json"
        for attempt in (0, 1):
            try:
                self.conn.request(method, path, body=data, headers=headers)
                res = self.conn.getresponse()
                payload = res.read()
                break
            except (http.client.HTTPException, ConnectionError, OSError):
                # The server may close a kept-alive connection; retry once on a new one.
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                if attempt == 1:
                    self.statuses["connection error"] += 1
                    self.unexpected[f"{method} {path}: connection error"] += 1
                    return None, b""
        self.requests += 1
        self.statuses[res.status] += 1
        if res.status != expect:
            self.unexpected[f"{method} {path}: {res.status} (expected {expect})"] += 1
        if res.getheader("Connection", "").lower() == "close":
            self.conn.close()
        return res, payload

    def session_round(self, reads):
        res, payload = self.call(
            "POST", "/v1/sessions", 201, {"username": self.username, "password": PASSWORD}
        )
        if res is None or res.status != 201:
            return
        cookie = (res.getheader("Set-Cookie") or "").split(";")[0]
        csrf = json.loads(payload)["csrf_token"]
        for _ in range(reads):
            self.call("GET", "/v1/me", 200, headers={"Cookie": cookie})
        self.call(
            "DELETE",
            "/v1/sessions/current",
            204,
            headers={"Cookie": cookie, "X-CSRF-Token": csrf},
        )
        self.call("GET", "/v1/me", 401, headers={"Cookie": cookie})

    def token_round(self, reads):
        res, payload = self.call(
            "POST", "/v1/tokens", 200, {"username": self.username, "password": PASSWORD}
        )
        if res is None or res.status != 200:
            return
        tokens = json.loads(payload)
        bearer = {"Authorization": "Bearer " + tokens["access_token"]}
        for _ in range(reads):
            self.call("GET", "/v1/me", 200, headers=bearer)
        res, payload = self.call(
            "POST", "/v1/tokens/refresh", 200, {"refresh_token": tokens["refresh_token"]}
        )
        if res is None or res.status != 200:
            return
        tokens = json.loads(payload)
        bearer = {"Authorization": "Bearer " + tokens["access_token"]}
        self.call("GET", "/v1/me", 200, headers=bearer)
        self.call("POST", "/v1/tokens/revoke", 200, {"token": tokens["refresh_token"]})
        self.call("GET", "/v1/me", 401, headers=bearer)

    def bad_requests(self):
        json_type = {"Content-Type": "application/json"}
        self.call("POST", "/v1/sessions", 400, raw="{not json", headers=json_type)
        self.call(
            "POST", "/v1/sessions", 415, raw="username=x", headers={"Content-Type": "text/plain"}
        )
        self.call("GET", "/v1/me", 401)
        self.call("GET", "/v1/me", 401, headers={"Authorization": "Bearer not.a.token"})
        self.call("GET", "/v1/no/such/route", 404)
        self.call("DELETE", "/healthz", 405)
        self.call("GET", "/healthz", 200)


def work(args):
    host, port, username, seconds = args
    w = Worker(host, port, username)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        w.session_round(10)
        w.token_round(10)
        w.bad_requests()
    w.conn.close()
    return w.requests, w.statuses, w.unexpected


def run_load(host, port, users, seconds):
    with multiprocessing.Pool(len(users)) as pool:
        results = pool.map(work, [(host, port, u, seconds) for u in users])
    requests = sum(r[0] for r in results)
    statuses, unexpected = Counter(), Counter()
    for _, s, u in results:
        statuses.update(s)
        unexpected.update(u)
    return requests, statuses, unexpected


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def at_rest(pid):
    """Descriptors and memory once the load's connections are closed."""
    time.sleep(2)
    return open_fds(pid), rss_kib(pid)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", required=True)
    parser.add_argument("--duration", type=int, default=60)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="tessera-soak-")
    log = open(os.path.join(tmp, "server.log"), "w")
    server = subprocess.Popen(
        [
            os.path.abspath(args.bin),
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database",
            f"sqlite://{tmp}/tessera.db",
            "--insecure-dev-cookies",
        ],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        cwd=tmp,
    )
    line = server.stdout.readline().strip()
    prefix = "tessera listening on http://"
    if not line.startswith(prefix):
        server.kill()
        sys.exit(f"soak: the server did not start: {line!r}; log in {tmp}")
    host, port = line[len(prefix):].rsplit(":", 1)
    port = int(port)
    pid = server.pid
    print(f"soak: tessera (pid {pid}) on {host}:{port}; {args.workers} workers")

    users = [f"soak_{os.getpid()}_{i}" for i in range(args.workers)]
    conn = http.client.HTTPConnection(host, port, timeout=30)
    for u in users:
        conn.request(
            "POST",
            "/v1/users",
            body=json.dumps({"username": u, "password": PASSWORD}),
            headers={"Content-Type": "application/json"},
        )
        res = conn.getresponse()
        res.read()
        if res.status != 201:
            server.kill()
            sys.exit(f"soak: registering {u} answered {res.status}")
    conn.close()

    failures = []
    try:
        warm_requests, warm_statuses, warm_unexpected = run_load(
            host, port, users, WARMUP_SECONDS
        )
        fds_warm, rss_warm = at_rest(pid)
        print(
            f"warm-up: {warm_requests} requests in {WARMUP_SECONDS} s; "
            f"then {fds_warm} open fds, VmRSS {rss_warm} KiB"
        )
        start = time.monotonic()
        requests, statuses, unexpected = run_load(host, port, users, args.duration)
        elapsed = time.monotonic() - start
        fds_end, rss_end = at_rest(pid)
    finally:
        alive = server.poll() is None
        if alive:
            server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            code = "killed after 30 s"

    statuses.update(warm_statuses)
    unexpected.update(warm_unexpected)
    server_errors = sum(n for s, n in statuses.items() if isinstance(s, int) and s >= 500)
    growth = (rss_end - rss_warm) / rss_warm
    print(
        f"run: {requests} requests in {elapsed:.1f} s ({requests / elapsed:.0f}/s); "
        f"statuses (warm-up included): {dict(sorted(statuses.items(), key=str))}"
    )
    print(f"5xx: {server_errors}")
    print(f"unexpected statuses: {sum(unexpected.values())} {dict(unexpected)}")
    print(f"open fds: {fds_warm} after warm-up, {fds_end} at the end")
    print(
        f"VmRSS: {rss_warm} KiB after warm-up, {rss_end} KiB at the end "
        f"({growth:+.1%}, limit +{RSS_TOLERANCE:.0%})"
    )
    print(f"server exit on SIGTERM: {code}")

    if server_errors:
        failures.append(f"{server_errors} responses were 5xx")
    if unexpected:
        failures.append(f"{sum(unexpected.values())} unexpected statuses")
    if fds_end > fds_warm:
        failures.append(f"open fds grew from {fds_warm} to {fds_end}")
    if growth > RSS_TOLERANCE:
        failures.append(f"VmRSS grew {growth:.1%}, more than {RSS_TOLERANCE:.0%}")
    if not alive or code != 0:
        failures.append(f"the server did not stop cleanly: {code}")
    if failures:
        print("soak: FAILED: " + "; ".join(failures) + f" (server log in {tmp})")
        sys.exit(1)
    shutil.rmtree(tmp)
    print("soak: passed")


if __name__ == "__main__":
    main()
