#!/usr/bin/env bash
# e2e tooling: the per-probe ground truth (deploy/lab/probetruth) and the comparison
# (deploy/lab/attrcheck) that the attr_* tests rely on, on a constructed drill: pcap files
# written here with an agent's ICMP (PSNT payload) and STAMP probes as the DC host, the ECS and
# the cloud router's two interfaces would capture them (forward moves to the tunnel at once,
# the replies die for 20 probes, then come back through the tunnel). Checks the truth's paths
# and events, that a faithful agent output passes every assertion, and that a wrong path, a
# `none` for a delivered probe, an outage off by 2 intervals, a missing event and an extra
# event each make the matching assertion fail. No root, no lab.
# Usage: bash tests/e2e/attr_check_selftest_test.sh [build-dir (unused)]
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/pathsentry-attrcheck-selftest.XXXXXX)
trap 'rm -rf -- "$WORK"' EXIT
python3 - "$REPO" "$WORK" <<'PY'
import json, os, struct, subprocess, sys

repo, work = sys.argv[1], sys.argv[2]
drill = os.path.join(work, "drill")
os.makedirs(drill)
DC, ECS = "172.16.1.188", "192.168.20.161"
T0 = 1_800_000_000_000_000_000
MS = 1_000_000
N = 100
ICMP_SID, STAMP_SID = 0xA1B20001, 0xA1B20002  # STAMP SSID on the wire: low 16 bits
fails = []


def ok(what, cond):
    print("  %s %s" % ("ok  " if cond else "FAIL", what))
    if not cond:
        fails.append(what)


def ip(src, dst, proto, payload):
    a = bytes(int(x) for x in src.split("."))
    b = bytes(int(x) for x in dst.split("."))
    return struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0, 64, proto, 0, a,
                       b) + payload


def icmp(kind, seq):
    payload = b"PSNT" + bytes([1, 0, 0, 0]) + struct.pack(">IIQq", 1, ICMP_SID, seq, 0)
    return struct.pack(">BBHHH", kind, 0, 0, 0x1234, seq & 0xFFFF) + payload


def stamp(reply, seq):
    body = bytearray(44)
    struct.pack_into(">I", body, 0, 7 if reply else seq)  # reflector's own seq / sender's
    struct.pack_into(">H", body, 14, STAMP_SID & 0xFFFF)
    if reply:
        struct.pack_into(">I", body, 24, seq)
    sport, dport = (862, 40000) if reply else (40000, 862)
    return struct.pack(">HHHH", sport, dport, 8 + len(body), 0) + bytes(body)


def packet(proto, reply, seq):
    if proto == "icmp":
        return (ip(ECS, DC, 1, icmp(0, seq)) if reply else ip(DC, ECS, 1, icmp(8, seq)))
    return ip(ECS, DC, 17, stamp(True, seq)) if reply else ip(DC, ECS, 17, stamp(False, seq))


def write_pcap(name, frames):
    with open(os.path.join(drill, "cap-%s.pcap" % name), "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, 1))
        for ts, pkt in sorted(frames, key=lambda x: x[0]):
            frame = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + pkt
            f.write(struct.pack("<IIII", ts // 10**9, ts % 10**9, len(frame), len(frame)))
            f.write(frame)
    with open(os.path.join(drill, "cap-%s.err" % name), "w") as f:
        f.write("listening on x\n%d packets captured\n%d packets received by filter\n"
                "0 packets dropped by kernel\n" % (len(frames), len(frames)))


# the constructed drill: forward on ec for seq < 40, then ipsec; replies on ec for seq < 40,
# lost on the dead line for 40..59 (they leave the cloud router towards the VBR), then ipsec
def fwd_path(seq):
    return "express-connect" if seq < 40 else "ipsec"


def rev_path(seq):
    return "express-connect" if seq < 60 else "ipsec"


def delivered_rev(seq):
    return not 40 <= seq < 60


caps = {"probes-dc": [], "probes-ecs": [], "probes-cen-ec": [], "probes-cen-ipsec": []}
cen = {"express-connect": "probes-cen-ec", "ipsec": "probes-cen-ipsec"}
for proto, off in (("icmp", 0), ("stamp", 30_000)):
    for seq in range(N):
        tx = T0 + seq * MS + off
        req, rep = packet(proto, False, seq), packet(proto, True, seq)
        caps["probes-dc"].append((tx, req))
        caps[cen[fwd_path(seq)]].append((tx + 100_000, req))
        caps["probes-ecs"].append((tx + 200_000, req))
        caps["probes-ecs"].append((tx + 210_000, rep))
        caps[cen[rev_path(seq)]].append((tx + 300_000, rep))
        if delivered_rev(seq):
            caps["probes-dc"].append((tx + 400_000, rep))
    # a fping-like echo between the hosts without our payload: ignored
    caps["probes-dc"].append((T0 + 5 * MS, ip(DC, ECS, 1, struct.pack(">BBHHH", 8, 0, 0, 1, 1)
                                               + b"x" * 40)))
for name, frames in caps.items():
    write_pcap(name, frames)
with open(os.path.join(drill, "meta.env"), "w") as f:
    f.write("DRILL=selftest\nPROFILE=fast\nDC_HOST=%s\nECS=%s\nPROBE_STAMP_PORT=862\n"
            "T_STREAM_START=%.6f\nT_STREAM_END=%.6f\n" % (DC, ECS, (T0 - MS) / 1e9,
                                                          (T0 + (N + 1) * MS) / 1e9))
with open(os.path.join(drill, "actions.log"), "w") as f:
    f.write("%.6f selftest: the line dies\n" % ((T0 + 39.5 * MS) / 1e9))

truth_json = os.path.join(drill, "probes.json")
r = subprocess.run([sys.executable, os.path.join(repo, "deploy/lab/probetruth"), drill,
                    "--json", truth_json], capture_output=True, text=True)
ok("probetruth runs (%s)" % r.stderr.strip(), r.returncode == 0)
truth = json.load(open(truth_json))
sess = {(s["proto"], s["session_key"]): s for s in truth["sessions"]}
ok("probetruth finds both sessions (ICMP by session id, STAMP by SSID)",
   set(sess) == {("icmp", ICMP_SID), ("stamp", STAMP_SID & 0xFFFF)})
ip_ = sess[("icmp", ICMP_SID)]
ok("every probe's paths: forward from the cloud router's ingress, reverse only if delivered",
   all(p[2] == fwd_path(p[0]) and p[3] == (rev_path(p[0]) if delivered_rev(p[0]) else "none")
       for p in ip_["probes"]) and len(ip_["probes"]) == N)
ev = [(e["event"], e["direction"], e.get("from"), e.get("to"), e.get("outage_ns"),
       e.get("probes_lost")) for e in ip_["events"]]
ok("truth events: forward switchover at once; reverse outage K=3 in, ended and switched with "
   "a 21 ms outage, 20 lost: %s" % ev, ev == [
       ("switchover", "forward", "express-connect", "ipsec", MS, 0),
       ("outage_begin", "reverse", "express-connect", "none", None, 3),
       ("outage_end", "reverse", "none", "ipsec", 21 * MS, 20),
       ("switchover", "reverse", "express-connect", "ipsec", 21 * MS, 20)])
ok("kernel drops read from tcpdump's counters",
   all(c.get("dropped") == 0 for c in truth["captures"].values()))


def agent_lines(mutate=None):
    lines = []
    for proto, sid, off in (("icmp", ICMP_SID, 0), ("stamp", STAMP_SID, 30_000)):
        for seq in range(N):
            tx = T0 + seq * MS + off + 3_000  # the agent's clock reads 3 us later
            rec = {"type": "probe", "agent": "t", "target": ECS, "proto": proto,
                   "session_id": sid, "seq": seq, "tx_ns": tx,
                   "rx_ns": tx + 400_000 if delivered_rev(seq) else None,
                   "fwd_path": fwd_path(seq),
                   "rev_path": rev_path(seq) if delivered_rev(seq) else "none"}
            lines.append(rec)

        def tx(seq):
            return T0 + seq * MS + off + 3_000

        def event(kind, d, seq, frm, to, **kw):
            e = {"type": "event", "agent": "t", "event": kind, "target": ECS, "proto": proto,
                 "session_id": sid, "direction": d, "ts_ns": tx(seq), "seq": seq,
                 "detected_ns": tx(seq) + 20 * MS, "from": frm, "to": to}
            e.update(kw)
            return e
        lines += [
            event("switchover", "forward", 42, "express-connect", "ipsec",
                  last_ok_on_old_ns=tx(39), first_ok_on_new_ns=tx(40), outage_ns=MS,
                  probes_lost=0, failback=False),
            event("outage_begin", "reverse", 42, "express-connect", "none",
                  last_ok_on_old_ns=tx(39), probes_lost=3),
            event("outage_end", "reverse", 60, "none", "ipsec", last_ok_on_old_ns=tx(39),
                  first_ok_on_new_ns=tx(60), outage_ns=21 * MS, probes_lost=20),
            event("switchover", "reverse", 62, "express-connect", "ipsec",
                  last_ok_on_old_ns=tx(39), first_ok_on_new_ns=tx(60), outage_ns=21 * MS,
                  probes_lost=20, failback=False)]
    if mutate:
        mutate(lines)
    return lines


def run_check(name, lines):
    path = os.path.join(work, name + ".jsonl")
    with open(path, "w") as f:
        for o in lines:
            f.write(json.dumps(o) + "\n")
    out = os.path.join(work, name + ".json")
    r = subprocess.run([sys.executable, os.path.join(repo, "deploy/lab/attrcheck"), path,
                        truth_json, "--json", out, "--expect-switchovers",
                        "forward=express-connect>ipsec"], capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stdout, r.stderr)
        return None
    return [a for a in json.load(open(out))["assertions"] if not a["ok"]]


failed = run_check("faithful", agent_lines())
ok("a faithful agent output passes every assertion (%s)" %
   [a["what"] for a in failed or []], failed == [])


def find(lines, proto, seq):
    return next(o for o in lines if o["type"] == "probe" and o["proto"] == proto and
                o["seq"] == seq)


def wrong_path(lines):
    find(lines, "icmp", 50)["fwd_path"] = "express-connect"


def none_delivered(lines):
    find(lines, "stamp", 70)["rev_path"] = "none"


def outage_off(lines):
    for o in lines:
        if o["type"] == "event" and o["proto"] == "icmp" and o["direction"] == "reverse" \
                and o["event"] == "switchover":
            o["first_ok_on_new_ns"] += 2 * MS
            o["outage_ns"] += 2 * MS


def missing_event(lines):
    lines.remove(next(o for o in lines if o["type"] == "event" and o["proto"] == "stamp"
                      and o["event"] == "outage_begin"))


def extra_event(lines):
    e = dict(next(o for o in lines if o["type"] == "event" and o["proto"] == "icmp"
                  and o["event"] == "outage_begin"))
    e.update(direction="forward", seq=80, ts_ns=T0 + 80 * MS, **{"from": "ipsec"})
    lines.append(e)


def tap_down(lines):
    lines.append({"type": "event", "agent": "1", "event": "tap_down", "tap": "tap-ec",
                  "path": "express-connect", "reason": "pcap read: The interface disappeared",
                  "ts_ns": T0 + 90 * MS, "detected_ns": T0 + 91 * MS})


for name, mutate, want in (
        ("tap-down", tap_down, "no tap went down during the drill"),
        ("wrong-path", wrong_path, "icmp session %d forward: zero probes" % ICMP_SID),
        ("none-delivered", none_delivered, "stamp session %d reverse: zero probes" % STAMP_SID),
        ("outage-off", outage_off, "icmp session %d reverse: switchover outage" % ICMP_SID),
        ("missing-event", missing_event,
         "stamp session %d reverse: the agent's events are exactly" % STAMP_SID),
        ("extra-event", extra_event,
         "icmp session %d forward: the agent's events are exactly" % ICMP_SID)):
    failed = run_check(name, agent_lines(mutate))
    whats = [a["what"] for a in failed or []]
    ok("%s: exactly the matching assertion fails (%s)" % (name, whats),
       len(whats) == 1 and whats[0].startswith(want))

# the rules themselves, on direct sample sequences (forward only; reverse mirrors it)
import importlib.machinery, importlib.util
loader = importlib.machinery.SourceFileLoader("probetruth", os.path.join(repo,
                                                                        "deploy/lab/probetruth"))
spec = importlib.util.spec_from_loader("probetruth", loader)
pt = importlib.util.module_from_spec(spec)
loader.exec_module(pt)


def model(labels, rules):
    samples = [(i, i * MS, p, p) for i, p in enumerate(labels)]
    return [(e["event"], e.get("outage_ns"), e.get("probes_lost"))
            for e in pt.run_model(samples, 3, 3, rules) if e.get("direction") == "forward"]


EC, IP, U, X = "express-connect", "ipsec", "unknown", "none"
boundary = [EC] * 3 + [U, U] + [IP] * 3
ok("rules 1: unknown probes at the boundary count as outage (3 ms)",
   model(boundary, 1) == [("switchover", 3 * MS, 0)])
ok("rules 2: the outage is the longest time nothing got through (1 ms)",
   model(boundary, 2) == [("switchover", MS, 0)])
cut = [EC] * 3 + [IP] + [X] * 10 + [IP] * 3
ok("rules 1: a candidate seen before an outage keeps its first probe (%s)" % model(cut, 1),
   model(cut, 1) == [("outage_begin", None, 3), ("outage_end", 12 * MS, 10),
                     ("switchover", MS, 0)])
ok("rules 2: an outage drops the candidate; the switchover spans the outage (%s)" %
   model(cut, 2), model(cut, 2) == [("outage_begin", None, 3), ("outage_end", 11 * MS, 10),
                                    ("switchover", 11 * MS, 10)])

print("[attr_check_selftest_test] %s: %d failed" % ("FAILED" if fails else "PASSED", len(fails)))
sys.exit(1 if fails else 0)
PY
