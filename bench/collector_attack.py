#!/usr/bin/env python3
"""The collector under attack (issue 13), on loopback: honest clients (wrk, GET /api/v1/targets,
from 127.0.0.1) measured alone and beside each attack (from 127.0.0.2, so a per-source cap can
tell them apart): slowloris, oversized bodies, a huge head, a connection flood over the cap,
bad tokens at a high rate (401 until the address's wrong-token limit, then 429), read endpoints
hammered with bad parameters.

Prints the honest clients' p50/p99 latency and error counts per run (figures only, no timed
assertion). With --check it exits 1 unless these functional facts hold: the collector is alive
after every attack, the honest clients got only 2xx answers and no socket errors, an honest
ingest still succeeds, and no row was written by an unauthenticated request.

usage: collector_attack.py --collector build/probe/pathsentry-collector [--duration S]
       [--per-source-cap N] [--auth-fail-limit N] [--check]
"""
import argparse
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

TOKEN = "honest-token-0123456789abcdef"
ATTACKER = "127.0.0.2"


def batch(agent, now_ns, n):
    lines = [json.dumps({"type": "batch", "agent": agent, "run": "00000000000000aa", "batch": n,
                         "created_ns": now_ns, "version": "attack"}, separators=(",", ":"))]
    lines.append(json.dumps({
        "type": "rollup", "target": "127.0.0.1", "proto": "icmp", "session_id": 1,
        "second_ns": now_ns // 10**9 * 10**9, "direction": "forward", "path": "", "sent": 1,
        "received": 1, "lost_forward": 0, "lost_reverse": 0, "lost_undetermined": 0,
        "rtt_min_ns": 1, "rtt_mean_ns": 1, "rtt_p50_ns": 1, "rtt_p99_ns": 1, "rtt_max_ns": 1,
        "jitter_ns": 0}, separators=(",", ":")))
    return ("\n".join(lines) + "\n").encode()


def connect(port, timeout=2.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((ATTACKER, 0))
    s.connect(("127.0.0.1", port))
    return s


class Attack:
    """Runs `fn(port, stop)` on `threads` threads until stop()."""

    def __init__(self, name, fn, threads=4):
        self.name, self.fn, self.nthreads = name, fn, threads
        self.stop_ev = threading.Event()
        self.count = [0]
        self.threads = []

    def start(self, port):
        for _ in range(self.nthreads):
            t = threading.Thread(target=self._run, args=(port,), daemon=True)
            t.start()
            self.threads.append(t)

    def _run(self, port):
        while not self.stop_ev.is_set():
            try:
                self.fn(port, self.stop_ev, self.count)
            except OSError:
                time.sleep(0.01)

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(timeout=10)


def slowloris(port, stop, count):
    # Many connections, each trickling its head a line at a time; reopened when cut off.
    conns = []
    while not stop.is_set():
        while len(conns) < 100 and not stop.is_set():
            try:
                s = connect(port)
                s.sendall(b"GET /api/v1/targets HTTP/1.1\r\nHost: x\r\n")
                conns.append(s)
                count[0] += 1
            except OSError:
                break
        time.sleep(0.3)
        alive = []
        for s in conns:
            try:
                s.sendall(b"X-Slow: 1\r\n")
                alive.append(s)
            except OSError:
                s.close()
        conns = alive
    for s in conns:
        s.close()


def flood(port, stop, count):
    # Connections opened as fast as possible and held open without a byte.
    conns = []
    while not stop.is_set():
        try:
            conns.append(connect(port))
            count[0] += 1
        except OSError:
            time.sleep(0.01)
        if len(conns) >= 150:
            # Drop the ones the server closed, keep the rest.
            keep = []
            for s in conns:
                s.setblocking(False)
                try:
                    if s.recv(1) == b"":
                        s.close()
                        continue
                except BlockingIOError:
                    pass
                except OSError:
                    s.close()
                    continue
                keep.append(s)
            conns = keep
            time.sleep(0.05)
    for s in conns:
        s.close()


def oversized(port, stop, count):
    s = connect(port)
    s.sendall(b"POST /api/v1/ingest HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
              TOKEN.encode() + b"\r\nContent-Length: 1073741824\r\n\r\n" + b"x" * 65536)
    try:
        s.recv(4096)
    finally:
        s.close()
    count[0] += 1
    # A chunked body that never ends.
    s = connect(port)
    try:
        s.sendall(b"POST /api/v1/ingest HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                  TOKEN.encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"10000\r\n" + b"y" * 65536 + b"\r\n"
        for _ in range(400):
            s.sendall(chunk)
    except OSError:
        pass
    finally:
        s.close()
    count[0] += 1


def huge_header(port, stop, count):
    s = connect(port)
    try:
        s.sendall(b"GET /api/v1/targets HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20) +
                  b"\r\n\r\n")
        s.recv(4096)
    except OSError:
        pass
    finally:
        s.close()
    count[0] += 1


BAD_TOKEN_STATUS = {}
BAD_TOKEN_LOCK = threading.Lock()


def bad_tokens(port, stop, count):
    s = connect(port)
    body = batch("attacker", time.time_ns(), 1)
    try:
        while not stop.is_set():
            tok = os.urandom(12).hex()
            s.sendall(b"POST /api/v1/ingest HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                      tok.encode() + b"\r\nContent-Length: " + str(len(body)).encode() +
                      b"\r\n\r\n" + body)
            r = s.recv(65536)
            if not r:
                break
            count[0] += 1
            st = r[9:12].decode("ascii", "replace")
            with BAD_TOKEN_LOCK:
                BAD_TOKEN_STATUS[st] = BAD_TOKEN_STATUS.get(st, 0) + 1
    finally:
        s.close()


BAD_PARAMS = [
    b"/api/v1/events?from=yesterday", b"/api/v1/events?limit=-1", b"/api/v1/events?x=1",
    b"/api/v1/series?target=%ZZ&from=1&to=2", b"/api/v1/probes?target=" + b"9" * 4000,
    b"/api/v1/series?from=99999999999999999999999&to=1", b"/api/v1/probes?from=1&to=0",
    b"/api/v1/events?since=2026-13-45T99:99:99Z", b"/api/v1/stream?last_event_id=abc",
    b"/api/v1/../../etc/passwd", b"/api/v1/targets?%00=%00",
]


def bad_params(port, stop, count):
    s = connect(port)
    i = 0
    buf = b""
    try:
        while not stop.is_set():
            path = BAD_PARAMS[i % len(BAD_PARAMS)]
            i += 1
            s.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            # Read one answer (heads here always carry Content-Length).
            while b"\r\n\r\n" not in buf:
                r = s.recv(65536)
                if not r:
                    return
                buf += r
            head, _, rest = buf.partition(b"\r\n\r\n")
            m = re.search(rb"(?i)content-length: *(\d+)", head)
            n = int(m.group(1)) if m else 0
            while len(rest) < n:
                r = s.recv(65536)
                if not r:
                    return
                rest += r
            buf = rest[n:]
            count[0] += 1
            if b"text/event-stream" in head:
                return
    finally:
        s.close()


ATTACKS = [
    ("slowloris", slowloris, 3),
    ("oversized bodies", oversized, 4),
    ("huge header", huge_header, 4),
    ("connection flood", flood, 2),
    ("bad tokens", bad_tokens, 4),
    ("bad read params", bad_params, 4),
]


def wrk(port, duration):
    out = subprocess.run(
        ["wrk", "-t1", "-c8", f"-d{duration}s", "--timeout", "5s", "--latency",
         f"http://127.0.0.1:{port}/api/v1/targets"],
        capture_output=True, text=True, check=False).stdout
    res = {"requests": 0, "non2xx": 0, "errors": 0, "p50": "?", "p99": "?", "raw": out}
    m = re.search(r"(\d+) requests in", out)
    if m:
        res["requests"] = int(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        res["non2xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        res["errors"] = sum(int(x) for x in m.groups())
    for q in ("50", "99"):
        m = re.search(rf"^\s+{q}(?:\.000)?%\s+(\S+)", out, re.M)
        if m:
            res["p" + q] = m.group(1)
    return res


def honest_ingest(port, n):
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/ingest", data=batch("honest", time.time_ns(), n),
        headers={"Authorization": "Bearer " + TOKEN, "Content-Type": "application/x-ndjson"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except Exception as e:  # noqa: BLE001 - any failure is reported as such
        return str(e)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--collector", required=True)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--auth-fail-limit", type=int, default=None,
                    help="the collector's [ingest] auth_fail_limit (default: its default, 20; "
                    "0 = no limit, to compare)")
    ap.add_argument("--per-source-cap", type=int, default=None,
                    help="collector.max_connections_per_source (default: the collector's)")
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="pathsentry-attack-")
    tok = os.path.join(work, "token")
    with open(tok, "w", encoding="ascii") as f:
        f.write(TOKEN + "\n")
    os.chmod(tok, 0o600)
    db = os.path.join(work, "collector.db")
    cfg = os.path.join(work, "collector.toml")
    with open(cfg, "w", encoding="ascii") as f:
        f.write("[collector]\nlisten = \"127.0.0.1:0\"\nmax_connections = 128\n"
                "header_timeout_s = 2\nbody_timeout_s = 5\nmax_body_bytes = 1048576\n"
                "log_level = \"warn\"\n")
        if args.per_source_cap is not None:
            f.write(f"max_connections_per_source = {args.per_source_cap}\n")
        f.write(f"[ingest]\ntoken_file = \"{tok}\"\n")
        if args.auth_fail_limit is not None:
            f.write(f"auth_fail_limit = {args.auth_fail_limit}\n")
        f.write(f"[db]\npath = \"{db}\"\n")
    errlog = open(os.path.join(work, "collector.err"), "w", encoding="utf-8")
    proc = subprocess.Popen([args.collector, "--config", cfg], stdout=subprocess.PIPE,
                            stderr=errlog, text=True)
    line = proc.stdout.readline()
    m = re.search(r"127\.0\.0\.1:(\d+)", line)
    if not m:
        print("the collector did not start:", line, file=sys.stderr)
        proc.kill()
        return 1
    port = int(m.group(1))
    failures = []
    rows = []
    try:
        base = wrk(port, args.duration)
        rows.append(("none (baseline)", base, 0))
        for name, fn, nthreads in ATTACKS:
            a = Attack(name, fn, nthreads)
            a.start(port)
            time.sleep(1.0)  # let it take hold before the honest clients connect
            res = wrk(port, args.duration)
            a.stop()
            rows.append((name, res, a.count[0]))
            if proc.poll() is not None:
                failures.append(f"{name}: the collector died (status {proc.returncode})")
                break
            if res["requests"] == 0 or res["non2xx"] or res["errors"]:
                failures.append(f"{name}: honest clients: {res['requests']} requests, "
                                f"{res['non2xx']} non-2xx, {res['errors']} socket errors")
            st = honest_ingest(port, len(rows))
            if st != 200:
                failures.append(f"{name}: an honest ingest after it got {st}")
        print(f"{'attack':<20} {'attacker ops':>12} {'honest req':>10} {'p50':>9} {'p99':>9}"
              f" {'non-2xx':>8} {'sock err':>8}")
        for name, r, n in rows:
            print(f"{name:<20} {n:>12} {r['requests']:>10} {r['p50']:>9} {r['p99']:>9}"
                  f" {r['non2xx']:>8} {r['errors']:>8}")
        print("bad tokens answered: " + ", ".join(
            f"{k} x{v}" for k, v in sorted(BAD_TOKEN_STATUS.items())) +
            " (401 until the address's wrong-token limit, then 429)")
        if BAD_TOKEN_STATUS and not BAD_TOKEN_STATUS.get("429") and args.auth_fail_limit != 0:
            failures.append("bad tokens: the address's wrong-token limit never engaged (no 429)")
        if set(BAD_TOKEN_STATUS) - {"401", "429"}:
            failures.append(f"bad tokens: answers other than 401/429: {BAD_TOKEN_STATUS}")
    finally:
        alive = proc.poll() is None
        if alive:
            proc.terminate()
            proc.wait(timeout=60)
        errlog.close()
    if not alive:
        failures.append("the collector was not alive at the end")
    con = sqlite3.connect(db)
    agents = [r[0] for r in con.execute("SELECT name FROM agents")]
    con.close()
    if "attacker" in agents:
        failures.append("rows from an unauthenticated request were written (agent 'attacker')")
    if "honest" not in agents:
        failures.append("the honest ingests left no agent row")
    with open(os.path.join(work, "collector.err"), encoding="utf-8") as f:
        warn = [ln.rstrip() for ln in f if "cap" in ln][:4]
    for ln in warn:
        print("  collector:", ln)
    if failures:
        for f_ in failures:
            print("FAIL:", f_)
        print("(work dir kept:", work, ")")
        return 1 if args.check else 0
    subprocess.run(["rm", "-rf", work], check=False)
    print("OK: the collector survived every attack, honest clients were served, no row from "
          "an unauthenticated request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
