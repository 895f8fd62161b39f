#!/usr/bin/env python3
"""The driver of scripts/bench: runs every server x mode, then the
"tokens against sessions" measurements, and renders docs/benchmarks.md and
docs/benchmarks.svg from the raw results.

    bench.py run    --duration S --rounds N [--smoke]   (scripts/bench calls this)
    bench.py render RESULTS.json                         (re-render a finished run)

Python 3 standard library only. Every process it starts is stopped by its
PID when it exits, on success, on error and on Ctrl-C.
"""

import argparse
import base64
import concurrent.futures
import datetime
import http.client
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import render  # noqa: E402  (beside this file)

LUA = os.path.join(HERE, "bench.lua")
PG_URL = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")
SERVER_CPU = os.environ.get("SERVER_CPU", "0")
WRK_CPU = os.environ.get("WRK_CPU", "1")
CONNECTIONS = int(os.environ.get("CONNECTIONS", "32"))
FLOOD_CONNECTIONS = int(os.environ.get("FLOOD_CONNECTIONS", "4"))
MASTER_KEY = secrets.token_hex(32)


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ---- processes ---------------------------------------------------------------

PROCS = {}  # pid -> Popen, everything we started and have not stopped


def spawn(cmd, logfile, env=None, cpu=None):
    full = (["taskset", "-c", str(cpu)] if cpu is not None else []) + cmd
    e = dict(os.environ)
    if any(str(c).startswith("postgres") for c in cmd):
        # With PostgreSQL tessera needs the key that seals its signing keys,
        # the same on every instance: one throwaway key per run.
        e.setdefault("TESSERA_MASTER_KEY", MASTER_KEY)
    e.update(env or {})
    out = open(logfile, "ab")
    p = subprocess.Popen(full, stdout=out, stderr=subprocess.STDOUT, env=e,
                         stdin=subprocess.DEVNULL)
    out.close()
    PROCS[p.pid] = p
    return p


def stop(p):
    """TERM, up to 5 s, then KILL; by PID only."""
    if p is None or p.pid not in PROCS:
        return
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    PROCS.pop(p.pid, None)


def stop_all(*_):
    for p in list(PROCS.values()):
        stop(p)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- HTTP --------------------------------------------------------------------

def req(port, method, path, body=None, headers=None, raw_body=None):
    """One request; returns (status, {lower-name: [values]}, parsed-or-raw body)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    h = dict(headers or {})
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    elif raw_body is not None:
        data = raw_body
    c.request(method, path, body=data, headers=h)
    r = c.getresponse()
    payload = r.read()
    hdrs = {}
    for k, v in r.getheaders():
        hdrs.setdefault(k.lower(), []).append(v)
    c.close()
    try:
        payload = json.loads(payload) if payload else {}
    except ValueError:
        pass
    return r.status, hdrs, payload


def cookies_of(hdrs, root_path_only=False):
    """name=value pairs of the Set-Cookie headers (what a browser would send
    to /v1/me when root_path_only)."""
    out = []
    for sc in hdrs.get("set-cookie", []):
        parts = [p.strip() for p in sc.split(";")]
        if root_path_only:
            paths = [p[5:] for p in parts[1:] if p.lower().startswith("path=")]
            if paths and paths[0] != "/":
                continue
        if parts[0].split("=", 1)[1] == "":
            continue
        out.append(parts[0])
    return out


def wait_up(port, proc, what, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"bench: {what} exited (code {proc.returncode}); see its log")
        try:
            if req(port, "GET", "/healthz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"bench: {what} did not answer /healthz on port {port}")


def new_creds():
    return {"username": "bench_" + secrets.token_hex(6),
            "password": "bench-" + secrets.token_urlsafe(18)}


def register(port):
    creds = new_creds()
    st, _, b = req(port, "POST", "/v1/users", creds)
    if st not in (200, 201):
        raise SystemExit(f"bench: POST /v1/users answered {st}: {b}")
    return creds


def session_login(port, creds):
    st, h, b = req(port, "POST", "/v1/sessions", creds)
    if st not in (200, 201):
        raise SystemExit(f"bench: POST /v1/sessions answered {st}: {b}")
    ck = [c for c in cookies_of(h) if c.startswith("tessera_session=")] or cookies_of(h)[:1]
    return ck[0], (b.get("csrf_token") if isinstance(b, dict) else None)


def token_login(port, creds):
    st, _, b = req(port, "POST", "/v1/tokens", creds)
    if st != 200 or "access_token" not in b:
        raise SystemExit(f"bench: POST /v1/tokens answered {st}: {b}")
    return b


def jwt_claims(token):
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


# ---- wrk ---------------------------------------------------------------------

def wrk_cmd(port, spec, label, duration, connections):
    env = {
        "BENCH_MODE": label,
        "BENCH_METHOD": spec.get("method", "GET"),
        "BENCH_BODY": spec.get("body", ""),
        "BENCH_CONTENT_TYPE": spec.get("ctype", ""),
        "BENCH_HEADER_NAME": spec.get("hname", ""),
        "BENCH_HEADER_VALUE": spec.get("hvalue", ""),
        "BENCH_POOL_FILE": spec.get("pool", ""),
    }
    cmd = ["taskset", "-c", WRK_CPU, "wrk", "-t1", f"-c{connections}",
           f"-d{duration}s", "--timeout", "10s", "-s", LUA,
           f"http://127.0.0.1:{port}{spec['path']}"]
    return cmd, env


def parse_wrk(out):
    last = [ln for ln in out.strip().splitlines() if ln.strip()][-1].split()
    return {"rps": float(last[1]), "p50": float(last[2]), "p99": float(last[3]),
            "non2xx": int(last[4]), "requests": int(last[5])}


def run_wrk(port, spec, label, duration, connections=None):
    cmd, env = wrk_cmd(port, spec, label, duration, connections or CONNECTIONS)
    e = dict(os.environ)
    e.update(env)
    p = subprocess.Popen(cmd, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    PROCS[p.pid] = p
    out, err = p.communicate(timeout=duration + 60)
    PROCS.pop(p.pid, None)
    if p.returncode != 0:
        raise SystemExit(f"bench: wrk failed: {err}")
    return parse_wrk(out)


# ---- the run -----------------------------------------------------------------

class Bench:
    def __init__(self, a):
        self.a = a
        self.work = a.work_dir
        self.logs = os.path.join(self.work, "logs")
        os.makedirs(self.logs, exist_ok=True)
        self.data = os.path.join(self.work, "data")
        shutil.rmtree(self.data, ignore_errors=True)
        os.makedirs(self.data)
        self.n = 0
        self.rows = []        # one per (round, server, mode)
        self.extra = {}       # item-6 measurements and notes
        self.notes = []
        self.tessera = a.tessera
        self.help = subprocess.run([self.tessera, "serve", "--help"], capture_output=True,
                                   text=True).stdout
        self.cache_flag = "--auth-cache-ttl" in self.help
        self.pg_ok = self._pg_ok()
        self.pg_tags = []   # schemas and Redis prefixes this run made, dropped at the end

    def drop_stores(self):
        """Drops the PostgreSQL schemas and Redis keys this run made."""
        for tag in self.pg_tags:
            subprocess.run(["psql", PG_URL, "-qc", f'DROP SCHEMA IF EXISTS "{tag}" CASCADE'],
                           capture_output=True)
            redis_del(list(redis_keys(tag, usage=False)))
        self.pg_tags = []

    def _pg_ok(self):
        r = subprocess.run(["psql", PG_URL, "-tAc", "select 1"], capture_output=True, text=True)
        return r.returncode == 0

    def fresh(self, tag):
        self.n += 1
        d = os.path.join(self.data, f"{tag}-{self.n}")
        os.makedirs(d)
        return d

    # -- server command lines --
    def tessera_cmd(self, port, kind, db_dir=None, extra=()):
        cmd = [self.tessera, "serve", "--listen", f"127.0.0.1:{port}", "--insecure-dev-cookies"]
        if kind == "sqlite":
            cmd += ["--database", f"sqlite://{db_dir}/tessera.db"]
        else:
            tag = f"bench_{os.getpid()}_{self.n}_{secrets.token_hex(3)}"
            self.pg_tags.append(tag)
            cmd += ["--database", PG_URL, "--database-schema", tag,
                    "--redis", REDIS_URL, "--redis-prefix", tag]
            if kind == "pg-redis-nocache":
                cmd += ["--auth-cache-ttl", "0s"]
        return cmd + list(extra)

    def start(self, name, port, cpu=SERVER_CPU):
        """Starts target `name` on `port`; returns (Popen, context)."""
        logf = os.path.join(self.logs, f"{name}.log")
        a = self.a
        ctx = {}
        if name.startswith("ceiling"):
            alg = "HS256" if name == "ceiling-hs256" else "EdDSA"
            p = spawn([a.ceiling], logf, {"PORT": str(port), "JWT_ALG": alg}, cpu)
        elif name.startswith("node"):
            store = "memory" if name == "node-memory" else "redis"
            p = spawn(["node", os.path.join(a.node_dir, "server.js")], logf,
                      {"PORT": str(port), "STORE": store, "NODE_ENV": "production"}, cpu)
        elif name.startswith("axum-login"):
            d = self.fresh("axum")
            store = "moka-sqlite" if name.endswith("moka") else "sqlite"
            p = spawn([a.axum_login], logf, {"PORT": str(port), "STORE": store,
                                             "DB": os.path.join(d, "peer.db")}, cpu)
        elif name == "tessera":
            d = self.fresh("tessera")
            p = spawn(self.tessera_cmd(port, "sqlite", d), logf, cpu=cpu)
        elif name == "tessera-pool":
            d = self.fresh("pool")
            for f in os.listdir(self.pool_template):
                shutil.copy2(os.path.join(self.pool_template, f), d)
            p = spawn(self.tessera_cmd(port, "sqlite", d), logf, cpu=cpu)
        elif name.startswith("tessera-pg-redis"):
            kind = "pg-redis-nocache" if name.endswith("nocache") else "pg-redis"
            p = spawn(self.tessera_cmd(port, kind), logf, cpu=cpu)
        else:
            raise SystemExit(f"bench: unknown target {name}")
        wait_up(port, p, name)
        return p, ctx

    # -- one mode: what wrk sends --
    def spec(self, name, mode, port):
        if mode == "healthz":
            return {"path": "/healthz"}
        if mode == "session":
            creds = register(port)
            cookie, _ = session_login(port, creds)
            return {"path": "/v1/me", "hname": "Cookie", "hvalue": cookie}
        if mode == "bearer":
            creds = register(port)
            tok = token_login(port, creds)["access_token"]
            return {"path": "/v1/me", "hname": "Authorization", "hvalue": "Bearer " + tok}
        if mode == "bearer-pool":
            if name == "ceiling-eddsa":   # its token stub is cheap: a fresh pool per start
                pool = os.path.join(self.data, f"ceiling-pool-{port}.txt")
                with open(pool, "w") as f:
                    for i in range(self.a.pool):
                        tok = token_login(port, {"username": f"u{i}", "password": "x" * 12})
                        f.write("Bearer " + tok["access_token"] + "\n")
            else:
                pool = self.pool_file
            return {"path": "/v1/me", "hname": "Authorization", "pool": pool}
        if mode == "cookie_token":
            creds = register(port)
            st, h, b = req(port, "POST", "/v1/tokens?cookie=true", creds)
            if st != 200:
                raise SystemExit(f"bench: POST /v1/tokens?cookie=true answered {st}: {b}")
            return {"path": "/v1/me", "hname": "Cookie",
                    "hvalue": "; ".join(cookies_of(h, root_path_only=True))}
        if mode == "login":
            creds = register(port)
            return {"path": "/v1/sessions", "method": "POST", "body": json.dumps(creds),
                    "ctype": "application/json"}
        raise SystemExit(f"bench: unknown mode {mode}")

    def check(self, port, spec, mode):
        h = {}
        if spec.get("hname") and not spec.get("pool"):
            h[spec["hname"]] = spec["hvalue"]
        if spec.get("pool"):
            with open(spec["pool"]) as f:
                h[spec["hname"]] = f.readline().strip()
        st, _, b = req(port, spec.get("method", "GET"), spec["path"], headers={
            **h, **({"Content-Type": spec["ctype"]} if spec.get("ctype") else {})},
            raw_body=spec.get("body", "").encode() or None)
        if st >= 300:
            raise SystemExit(f"bench: {mode}: {spec['path']} answered {st}, not 2xx: {b}")

    def measure(self, name, mode, port, rnd):
        if mode == "me-during-login-flood":
            return self.measure_flood(name, port, rnd)
        spec = self.spec(name, mode, port)
        self.check(port, spec, mode)
        if self.a.warmup > 0:
            run_wrk(port, spec, mode, self.a.warmup)
        bound = None
        if name == "tessera" and mode == "login":
            # The bound on the same core just before the run it bounds (the
            # server is idle meanwhile), so that drift hits both alike. The
            # warm-up's queued hashes (up to one per connection) drain first.
            time.sleep(2 if self.a.warmup > 0 else 0)
            bound = self.argon2_bound()
        r = run_wrk(port, spec, mode, self.a.duration)
        if bound:
            # ... and again after it (once its queue has drained): a bound is
            # the best case, so the faster of the two counts.
            time.sleep(2)
            after = self.argon2_bound()
            if after["rps"] > bound["rps"]:
                bound = after
            self.extra.setdefault("argon2_bound", []).append(bound)
            log(f"round {rnd}  argon2 bound: {bound['rps']:.1f} checks/s ({bound['ms']:.1f} ms each)")
            r["argon2_bound"] = bound["rps"]
        return r

    def measure_flood(self, name, port, rnd):
        """/v1/me with a session cookie while a second wrk (FLOOD_CONNECTIONS
        connections, same CPU as the measured wrk) logs in as fast as it can."""
        me = self.spec(name, "session", port)
        login = self.spec(name, "login", port)
        d = self.a.duration
        cmd, env = wrk_cmd(port, login, "login-flood", d + 2, FLOOD_CONNECTIONS)
        e = dict(os.environ)
        e.update(env)
        fp = subprocess.Popen(cmd, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        PROCS[fp.pid] = fp
        time.sleep(1)
        r = run_wrk(port, me, "me-during-login-flood", d)
        out, _ = fp.communicate(timeout=d + 60)
        PROCS.pop(fp.pid, None)
        fl = parse_wrk(out)
        r["flood_login_rps"] = fl["rps"]
        r["flood_non2xx"] = fl["non2xx"]
        return r

    # -- bearer-pool: 10 000 sessions, each a real POST /v1/tokens --
    def seed_pool(self):
        n = self.a.pool
        d = self.fresh("pool-template")
        port = free_port()
        # Seeding only: both cores, and an access TTL long enough that the
        # tokens outlive the run. The measured instances run with defaults.
        p = spawn(self.tessera_cmd(port, "sqlite", d, ["--access-ttl", "12h"]),
                  os.path.join(self.logs, "pool-seed.log"))
        try:
            wait_up(port, p, "pool seeding")
            creds = register(port)
            t0 = time.time()
            tokens = [None] * n
            statuses = []

            def one(i):
                b = token_login(port, creds)
                tokens[i] = b["access_token"]

            with concurrent.futures.ThreadPoolExecutor(self.a.seed_threads) as ex:
                for f in concurrent.futures.as_completed([ex.submit(one, i) for i in range(n)]):
                    statuses.append(f.result())
            secs = time.time() - t0
        finally:
            stop(p)
        self.pool_template = d
        self.pool_file = os.path.join(self.data, "pool-tokens.txt")
        with open(self.pool_file, "w") as f:
            for t in tokens:
                f.write("Bearer " + t + "\n")
        sids = {jwt_claims(t).get("sid") for t in tokens}
        self.extra["pool"] = {"tokens": n, "sessions": len(sids), "seed_seconds": round(secs, 1),
                              "threads": self.a.seed_threads}
        log(f"bearer-pool: {n} tokens of {len(sids)} sessions in {secs:.0f} s")

    def argon2_bound(self):
        r = subprocess.run(["taskset", "-c", SERVER_CPU, self.a.argon2_bound,
                            str(self.a.argon2_n)], capture_output=True, text=True, check=True)
        f = r.stdout.split()
        return {"rps": float(f[1]), "ms": float(f[2]), "n": int(f[3])}

    def targets(self):
        t = [("ceiling-hs256", ["healthz", "bearer"]),
             ("ceiling-eddsa", ["bearer", "bearer-pool"]),
             ("node-memory", ["healthz", "session", "bearer", "login"]),
             ("node-redis", ["session"]),
             ("axum-login", ["healthz", "session", "login"]),
             ("axum-login-moka", ["session"]),
             ("tessera", ["healthz", "session", "bearer", "cookie_token", "login",
                          "me-during-login-flood"]),
             ("tessera-pool", ["bearer-pool"])]
        if self.pg_ok:
            t.append(("tessera-pg-redis", ["session", "bearer"]))
            if self.cache_flag:
                t.append(("tessera-pg-redis-nocache", ["session", "bearer"]))
            else:
                self.notes.append("session-pg-redis-nocache: cache not available "
                                  "(`tessera serve --help` has no --auth-cache-ttl)")
        else:
            self.notes.append(f"PostgreSQL at {PG_URL} not reachable: PG + Redis modes skipped")
        if self.a.only:
            keep = set(self.a.only.split(","))
            t = [(n, m) for n, m in t if n in keep]
        if self.a.smoke:
            smoke = {"ceiling-hs256": ["healthz", "bearer"], "ceiling-eddsa": ["bearer-pool"],
                     "node-memory": ["session"], "axum-login-moka": ["session"],
                     "tessera": ["healthz", "session", "login", "me-during-login-flood"],
                     "tessera-pool": ["bearer-pool"], "tessera-pg-redis": ["session"],
                     "tessera-pg-redis-nocache": ["session"]}
            t = [(n, smoke[n]) for n, _ in t if n in smoke]
        return t

    def run(self):
        a = self.a
        targets = self.targets()
        if any(n == "tessera-pool" for n, _ in targets):
            try:
                self.seed_pool()
            except SystemExit as e:
                self.notes.append(f"bearer-pool seeding failed, tessera-pool skipped: {e}")
                targets = [(n, m) for n, m in targets if n != "tessera-pool"]
        for rnd in range(1, a.rounds + 1):
            order = targets if rnd % 2 == 1 else list(reversed(targets))
            for name, modes in order:
                port = free_port()
                p = None
                try:   # one failing server or mode is noted; the run goes on
                    p, _ = self.start(name, port)
                    for mode in modes:
                        try:
                            r = self.measure(name, mode, port, rnd)
                        except SystemExit as e:
                            self.notes.append(f"round {rnd}, {name} {mode}: {e}")
                            log(f"bench: round {rnd}, {name} {mode} failed: {e}")
                            continue
                        r.update({"round": rnd, "server": name, "mode": mode})
                        self.rows.append(r)
                        log(f"round {rnd}  {name:<24} {mode:<22} {r['rps']:>9.0f} req/s"
                            f"  p50 {r['p50']:.2f}  p99 {r['p99']:.2f}  non2xx {r['non2xx']}")
                except SystemExit as e:
                    self.notes.append(f"round {rnd}, {name}: {e}")
                    log(f"bench: round {rnd}, {name} failed: {e}")
                finally:
                    stop(p)
        self.save()
        if not a.skip_extras:
            for step in (self.store_ops, self.bytes_per_user, self.million,
                         self.instances, self.logout):
                try:
                    step()
                except SystemExit as e:
                    self.notes.append(f"{step.__name__}: {e}")
                    log(f"bench: {step.__name__} failed: {e}")
                self.save()

    def save(self):
        out = {"meta": self.a.meta, "rows": self.rows, "extra": self.extra, "notes": self.notes}
        with open(self.a.results, "w") as f:
            json.dump(out, f, indent=1)

    # ---- item 6 ----------------------------------------------------------------

    def start_metrics(self, kind, name, d=None, extra=()):
        port, mport = free_port(), free_port()
        cmd = self.tessera_cmd(port, kind, d, ["--metrics-listen", f"127.0.0.1:{mport}", *extra])
        p = spawn(cmd, os.path.join(self.logs, f"{name}.log"), cpu=SERVER_CPU)
        wait_up(port, p, name)
        return p, port, mport

    @staticmethod
    def store_counts(mport):
        c = http.client.HTTPConnection("127.0.0.1", mport, timeout=10)
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
        c.close()
        counts = {}
        for m in re.finditer(r'^tessera_store_operation_duration_seconds_count\{([^}]*)\} (\S+)$',
                             text, re.M):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
            counts[(labels.get("backend", "?"), labels.get("operation", "?"))] = float(m.group(2))
        lag = re.findall(r'^tessera_auth_cache_invalidation_lag_seconds(_\w+)?(\{[^}]*\})? (\S+)$',
                         text, re.M)
        return counts, lag

    def store_ops(self):
        """Store calls per request, from the server's own counters."""
        res = self.extra["store_ops"] = {}   # kept as far as it gets
        d = max(1, min(self.a.duration, 3))
        kinds = [("sqlite", ["session", "bearer", "cookie_token", "login"])]
        if self.pg_ok:
            kinds.append(("pg-redis", ["session", "bearer", "login"]))
        for kind, modes in kinds:
            p, port, mport = self.start_metrics(kind, f"ops-{kind}",
                                                self.fresh("ops") if kind == "sqlite" else None)
            try:
                for mode in modes:
                    spec = self.spec("tessera", mode, port)
                    before, _ = self.store_counts(mport)
                    r = run_wrk(port, spec, mode, d, connections=8)
                    after, _ = self.store_counts(mport)
                    ops = {f"{b}:{o}": round((after[k] - before.get(k, 0)) / max(r["requests"], 1), 3)
                           for k in after for b, o in [k] if after[k] - before.get(k, 0) > 0}
                    res[f"{kind}/{mode}"] = {"requests": r["requests"], "per_request": ops}
                    log(f"store ops {kind}/{mode}: {ops}")
            finally:
                stop(p)
        self.extra["store_ops"] = res

    def bytes_per_user(self):
        res = self.extra["bytes"] = {}
        # SQLite: the pool template holds N token sessions (+ their refresh tokens).
        if getattr(self, "pool_template", None):
            db = os.path.join(self.pool_template, "tessera.db")
            res["sqlite_token_session"] = sqlite_bytes(db, ["sessions", "refresh_tokens"])
        # SQLite cookie sessions: measured on the 1k seed in million().
        # Redis: MEMORY USAGE of every key of a fresh prefix after K logins.
        if self.pg_ok:
            # Redis: the growth of the MEMORY USAGE of every key under a fresh
            # prefix over K more logins, after one login of each kind (so that
            # the per-address and per-user keys exist already), divided by K.
            k = 20
            p, port, mport = self.start_metrics("pg-redis", "bytes-redis")
            prefix = p.args[p.args.index("--redis-prefix") + 1]
            try:
                creds = register(port)
                session_login(port, creds)
                s0 = redis_keys(prefix)
                for _ in range(k):
                    session_login(port, creds)
                s1 = redis_keys(prefix)
                token_login(port, creds)
                s2 = redis_keys(prefix)
                for _ in range(k):
                    token_login(port, creds)
                s3 = redis_keys(prefix)
            finally:
                stop(p)
            for key, (a, b) in (("redis_cookie_session", (s0, s1)),
                                ("redis_token_session", (s2, s3))):
                grow = sum(b.values()) - sum(a.values())
                res[key] = {"sessions": k, "bytes_total": grow, "bytes_per_session": round(grow / k),
                            "keys": len(b) - len(a)}
            # PostgreSQL without Redis: sessions are rows there.
            port = free_port()
            tag = f"bench_{os.getpid()}_pgrow_{secrets.token_hex(3)}"
            self.pg_tags.append(tag)
            p = spawn([self.tessera, "serve", "--listen", f"127.0.0.1:{port}",
                       "--insecure-dev-cookies", "--database", PG_URL, "--database-schema", tag],
                      os.path.join(self.logs, "bytes-pg.log"), cpu=SERVER_CPU)
            try:
                wait_up(port, p, "bytes-pg")
                creds = register(port)
                for _ in range(k):
                    session_login(port, creds)
            finally:
                stop(p)
            q = (f'SELECT count(*), avg(pg_column_size(s.*))::int FROM "{tag}".sessions s')
            out = subprocess.run(["psql", PG_URL, "-tAc", q], capture_output=True, text=True,
                                 check=True).stdout.strip().split("|")
            res["pg_cookie_session"] = {"sessions": int(out[0]), "row_bytes": int(out[1]),
                                        "bytes_per_session": int(out[1]) + 4}
        self.extra["bytes"] = res
        log(f"bytes per user: {res}")

    def million(self):
        """The same /v1/me on SQLite with 1k and with 1M live sessions seeded."""
        res = self.extra["million"] = {}
        for count in (self.a.small_sessions, self.a.big_sessions):
            d = self.fresh(f"seed{count}")
            port = free_port()
            p = spawn(self.tessera_cmd(port, "sqlite", d), os.path.join(self.logs, "seed.log"),
                      cpu=SERVER_CPU)
            try:
                wait_up(port, p, "seed")
                register(port)   # a real hash, copied into the seeded users
                phash = sqlite3.connect(os.path.join(d, "tessera.db")).execute(
                    "SELECT password_hash FROM users").fetchone()[0]
            finally:
                stop(p)
            t0 = time.time()
            seed_sessions(os.path.join(d, "tessera.db"), count, phash)
            seed_s = time.time() - t0
            db = os.path.join(d, "tessera.db")
            row = sqlite_bytes(db, ["sessions"])
            users = sqlite_bytes(db, ["users"])
            p = spawn(self.tessera_cmd(port, "sqlite", d), os.path.join(self.logs, f"m{count}.log"),
                      cpu=SERVER_CPU)
            try:
                wait_up(port, p, f"{count} sessions")
                rss_start = vm(p.pid)
                spec = self.spec("tessera", "session", port)
                self.check(port, spec, "session")
                if self.a.warmup > 0:
                    run_wrk(port, spec, "session", self.a.warmup)
                runs = [run_wrk(port, spec, "session", self.a.duration)
                        for _ in range(self.a.rounds)]
                rss = vm(p.pid)
            finally:
                stop(p)
            files = {f: os.path.getsize(os.path.join(d, f)) for f in os.listdir(d)
                     if f.startswith("tessera.db")}
            res[str(count)] = {
                "sessions": count, "seed_seconds": round(seed_s, 1),
                "rps": statistics.median(r["rps"] for r in runs),
                "p99": statistics.median(r["p99"] for r in runs),
                "rss_start_kib": rss_start.get("VmRSS"), "rss_kib": rss.get("VmRSS"),
                "hwm_kib": rss.get("VmHWM"), "db_bytes": files, "session_rows": row,
                "user_rows": users}
            log(f"{count} sessions: {res[str(count)]}")
        self.extra["million"] = res

    def instances(self):
        """1, 2 and 3 tessera instances on one PostgreSQL + Redis; one wrk per
        instance, run at once, rates summed."""
        if not self.pg_ok:
            return
        res = self.extra["instances"] = {}
        tag = f"bench_multi_{os.getpid()}_{secrets.token_hex(3)}"
        self.pg_tags += [f"{tag}_{n}" for n in (1, 2, 3)]
        for n in (1, 2, 3):
            ps, ports = [], []
            try:
                for i in range(n):
                    port = free_port()
                    cmd = [self.tessera, "serve", "--listen", f"127.0.0.1:{port}",
                           "--insecure-dev-cookies", "--database", PG_URL,
                           "--database-schema", f"{tag}_{n}", "--redis", REDIS_URL,
                           "--redis-prefix", f"{tag}_{n}"]
                    p = spawn(cmd, os.path.join(self.logs, f"multi{n}-{i}.log"))
                    ps.append(p)
                    wait_up(port, p, f"instance {i + 1} of {n}")
                    ports.append(port)
                creds = register(ports[0])
                cookie, _ = session_login(ports[0], creds)
                spec = {"path": "/v1/me", "hname": "Cookie", "hvalue": cookie}
                for port in ports:   # a session made on one instance works on every other
                    self.check(port, spec, "session")
                conns = max(8, CONNECTIONS // n)
                procs = []
                cpu0, tess0 = cpu_times(), sum(proc_cpu(p.pid) for p in ps)
                for port in ports:
                    cmd, env = wrk_cmd(port, spec, f"x{n}", self.a.duration, conns)
                    cmd = cmd[3:]  # no taskset: the machine has 2 cores for everything
                    e = dict(os.environ)
                    e.update(env)
                    wp = subprocess.Popen(cmd, env=e, stdout=subprocess.PIPE, text=True)
                    PROCS[wp.pid] = wp
                    procs.append(wp)
                outs = []
                for wp in procs:
                    out, _ = wp.communicate(timeout=self.a.duration + 60)
                    PROCS.pop(wp.pid, None)
                    outs.append(parse_wrk(out))
                cpu1, tess1 = cpu_times(), sum(proc_cpu(p.pid) for p in ps)
                wall = (cpu1[1] - cpu0[1]) / os.cpu_count()   # ticks per CPU
                busy = 1 - (cpu1[0] - cpu0[0]) / max(cpu1[1] - cpu0[1], 1)
                res[str(n)] = {
                               "machine_busy": round(busy, 3),
                               "tessera_cpu_share": round((tess1 - tess0) / max(cpu1[1] - cpu0[1], 1), 3),
                               "cores": os.cpu_count(), "wall_ticks": wall,"rps": sum(o["rps"] for o in outs),
                               "p99_max": max(o["p99"] for o in outs),
                               "non2xx": sum(o["non2xx"] for o in outs),
                               "per_instance": [o["rps"] for o in outs],
                               "connections_each": conns}
                log(f"{n} instance(s): {res[str(n)]}")
            finally:
                for p in ps:
                    stop(p)
        self.extra["instances"] = res

    def logout(self):
        """How soon a logout takes effect, by the credential used."""
        res = self.extra["logout"] = {}
        d = self.fresh("logout")
        p, port, mport = self.start_metrics("sqlite", "logout", d)
        try:
            creds = register(port)
            cookie, csrf = session_login(port, creds)
            res["cookie_session"] = propagation(
                port, {"Cookie": cookie},
                lambda: req(port, "DELETE", "/v1/sessions/current",
                             headers={"Cookie": cookie, "X-CSRF-Token": csrf or ""}))
            tok = token_login(port, creds)
            at = tok["access_token"]
            res["token_tessera"] = propagation(
                port, {"Authorization": "Bearer " + at},
                lambda: req(port, "POST", "/v1/tokens/revoke", {"token": tok["refresh_token"]}))
            claims = jwt_claims(at)
            res["token_jwks_only"] = {"exp_minus_iat_s": claims["exp"] - claims["iat"],
                                      "note": "accepted until exp: the JWKS holds no revocation"}
        finally:
            stop(p)
        if self.pg_ok:
            # Two instances on one PG + Redis: log out on A, ask B.
            tag = f"bench_lo_{os.getpid()}_{secrets.token_hex(3)}"
            self.pg_tags.append(tag)
            ps, ports, mports = [], [], []
            try:
                for i in range(2):
                    port, mport = free_port(), free_port()
                    cmd = [self.tessera, "serve", "--listen", f"127.0.0.1:{port}",
                           "--insecure-dev-cookies", "--database", PG_URL,
                           "--database-schema", tag, "--redis", REDIS_URL, "--redis-prefix", tag,
                           "--metrics-listen", f"127.0.0.1:{mport}"]
                    p = spawn(cmd, os.path.join(self.logs, f"logout-pg{i}.log"))
                    ps.append(p)
                    wait_up(port, p, f"logout instance {i}")
                    ports.append(port)
                    mports.append(mport)
                a_port, b_port = ports
                creds = register(a_port)
                cookie, csrf = session_login(a_port, creds)
                res["cookie_session_other_instance"] = propagation(
                    b_port, {"Cookie": cookie},
                    lambda: req(a_port, "DELETE", "/v1/sessions/current",
                                 headers={"Cookie": cookie, "X-CSRF-Token": csrf or ""}))
                tok = token_login(a_port, creds)
                res["token_tessera_other_instance"] = propagation(
                    b_port, {"Authorization": "Bearer " + tok["access_token"]},
                    lambda: req(a_port, "POST", "/v1/tokens/revoke",
                                 {"token": tok["refresh_token"]}))
                _, lag = self.store_counts(mports[1])
                res["invalidation_lag_metric"] = [list(x) for x in lag] or None
            finally:
                for p in ps:
                    stop(p)
        self.extra["logout"] = res
        log(f"logout: {res}")


def propagation(port, headers, do_logout, limit_s=30.0):
    """Warms the credential on `port`, logs out, then polls /v1/me there until
    it answers 401: the time from the logout's answer to the first 401, and
    how many requests still got 200 in between."""
    for _ in range(3):
        st = req(port, "GET", "/v1/me", headers=headers)[0]
        if st != 200:
            return {"error": f"/v1/me answered {st} before the logout"}
    st = do_logout()[0]
    t0 = time.perf_counter()
    ok_after = 0
    while time.perf_counter() - t0 < limit_s:
        st2 = req(port, "GET", "/v1/me", headers=headers)[0]
        if st2 == 401:
            return {"logout_status": st, "ms_to_401": round((time.perf_counter() - t0) * 1000, 2),
                    "200s_after_logout": ok_after}
        ok_after += 1
        time.sleep(0.005)
    return {"logout_status": st, "ms_to_401": None, "200s_after_logout": ok_after}


def cpu_times():
    """(idle + iowait ticks, all ticks) of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return v[3] + v[4], sum(v[:8])


def proc_cpu(pid):
    """user + system ticks of one process (all its threads)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            v = f.read().rsplit(")", 1)[1].split()
        return int(v[11]) + int(v[12])
    except OSError:
        return 0


def vm(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS", "VmHWM")):
                k, v = line.split(":")
                out[k] = int(v.split()[0])
    return out


def sqlite_bytes(db, tables):
    """Bytes of the pages of `tables` and their indexes (dbstat), per row of
    the first table."""
    c = sqlite3.connect(db)
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    names = [r[0] for r in c.execute(
        "SELECT name FROM sqlite_master WHERE tbl_name IN (%s)" % ",".join("?" * len(tables)),
        tables)]
    total = c.execute("SELECT sum(pgsize), sum(payload) FROM dbstat WHERE name IN (%s)"
                      % ",".join("?" * len(names)), names).fetchone()
    rows = c.execute(f"SELECT count(*) FROM {tables[0]}").fetchone()[0]
    c.close()
    return {"rows": rows, "page_bytes": total[0], "payload_bytes": total[1],
            "bytes_per_row": round(total[0] / rows) if rows else None}


def seed_sessions(db, count, password_hash):
    """`count` users, each with one live cookie session, written the way the
    SQLite store writes them (crates/tessera-store-sqlite/migrations and
    create_session): random ids and secret hashes, Unix milliseconds, a
    browser user agent and an address. No secret is kept: nobody uses them."""
    now = int(time.time() * 1000)
    ua = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"

    def b64id(prefix):
        return prefix + "_" + base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()

    c = sqlite3.connect(db)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("PRAGMA synchronous=OFF")       # seeding only; the server sets its own
    c.execute("PRAGMA cache_size=-262144")    # 256 MiB for the random-order index inserts
    batch = 50_000
    done = 0
    while done < count:
        k = min(batch, count - done)
        users, sessions = [], []
        for i in range(done, done + k):
            uid = b64id("usr")
            name = f"seed_{i:07d}"
            users.append((uid, name, name, password_hash, now))
            sessions.append((b64id("ses"), os.urandom(32), uid, "cookie", now, now,
                             now + 24 * 3600_000, now + 30 * 60_000, ua,
                             f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", None))
        c.executemany("INSERT INTO users (id, username, username_key, password_hash, created_at)"
                      " VALUES (?, ?, ?, ?, ?)", users)
        c.executemany("INSERT INTO sessions (id, secret_hash, user_id, kind, created_at, "
                      "last_seen_at, expires_at, idle_expires_at, user_agent, ip, revoked_at) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", sessions)
        c.commit()
        done += k
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()


def redis_keys(prefix, usage=True):
    keys = subprocess.run(["redis-cli", "--scan", "--pattern", prefix + "*"],
                          capture_output=True, text=True, check=True).stdout.split()
    if not usage:
        return dict.fromkeys(keys, 0)
    out = {}
    for k in keys:
        v = subprocess.run(["redis-cli", "MEMORY", "USAGE", k], capture_output=True,
                           text=True).stdout.strip()
        if v.isdigit():
            out[k] = int(v)
    return out


def redis_del(keys):
    for i in range(0, len(keys), 500):
        subprocess.run(["redis-cli", "DEL", *keys[i:i + 500]], capture_output=True)


def machine():
    def sh(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, shell=True).stdout.strip()
        except OSError:
            return ""
    lscpu = sh("lscpu")
    keep = ("Architecture", "CPU(s)", "Model name", "Thread(s) per core", "Core(s) per socket",
            "Hypervisor vendor", "Virtualization type", "L3 cache")
    lines = [ln for ln in lscpu.splitlines() if ln.split(":")[0].strip() in keep]
    osr = sh(". /etc/os-release && echo $PRETTY_NAME")
    return {"lscpu": lines, "nproc": sh("nproc"), "kernel": platform.release(), "os": osr,
            "mem": sh("free -m | awk '/Mem:/ {print $2}'"),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "load": sh("cat /proc/loadavg"),
            "wrk": sh("wrk -v 2>&1 | head -n1"), "node": sh("node --version"),
            "rustc": sh("rustc --version"), "commit": sh(f"git -C {ROOT} rev-parse --short HEAD"),
            "dirty": bool(sh(f"git -C {ROOT} status --porcelain"))}


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--duration", type=int, default=10)
    r.add_argument("--rounds", type=int, default=3)
    r.add_argument("--warmup", type=int, default=int(os.environ.get("WARMUP_S", "2")))
    r.add_argument("--smoke", action="store_true")
    r.add_argument("--pool", type=int, default=10_000)
    r.add_argument("--seed-threads", type=int, default=4)
    r.add_argument("--small-sessions", type=int, default=1_000)
    r.add_argument("--big-sessions", type=int, default=1_000_000)
    r.add_argument("--argon2-n", type=int, default=30)
    r.add_argument("--only", default=os.environ.get("TARGETS", ""))
    r.add_argument("--skip-extras", action="store_true")
    r.add_argument("--work-dir", required=True)
    r.add_argument("--tessera", required=True)
    r.add_argument("--argon2-bound", required=True)
    r.add_argument("--ceiling", required=True)
    r.add_argument("--axum-login", required=True)
    r.add_argument("--node-dir", required=True)
    r.add_argument("--command", default="scripts/bench")
    r.add_argument("--docs", default=os.path.join(ROOT, "docs"))
    d = sub.add_parser("render")
    d.add_argument("results")
    d.add_argument("--docs", default=os.path.join(ROOT, "docs"))
    a = ap.parse_args()
    if a.cmd == "render":
        with open(a.results) as f:
            render.write(json.load(f), a.docs)
        return
    a.results = os.path.join(a.work_dir, "results.json")
    a.meta = {"machine": machine(), "command": a.command, "duration": a.duration,
              "rounds": a.rounds, "warmup": a.warmup, "connections": CONNECTIONS,
              "flood_connections": FLOOD_CONNECTIONS, "server_cpu": SERVER_CPU,
              "wrk_cpu": WRK_CPU, "smoke": a.smoke, "pool": a.pool,
              "small_sessions": a.small_sessions, "big_sessions": a.big_sessions,
              "results": a.results}
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    b = None
    try:
        b = Bench(a)
        a.meta["cache_flag"] = b.cache_flag
        b.run()
    except KeyboardInterrupt:
        sys.exit(130)
    finally:
        stop_all()
        if b is not None:
            b.save()
            b.drop_stores()
            shutil.rmtree(b.data, ignore_errors=True)   # the seeded databases: hundreds of MB
    with open(a.results) as f:
        res = json.load(f)
    render.write(res, a.docs)
    log(f"raw results: {a.results}")
    log(f"wrote {a.docs}/benchmarks.md and {a.docs}/benchmarks.svg")
    print(render.summary(res))


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()
