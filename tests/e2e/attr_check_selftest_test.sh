#!/usr/bin/env bash
# e2e tooling: the per-probe delivery and path truth (deploy/lab/probetruth) and the comparison
# (deploy/lab/attrcheck) that the attr_* tests rely on, on a constructed drill: pcap files
# written here with an agent's ICMP (PSNT payload) and STAMP probes as the DC host, the ECS and
# the cloud router's two interfaces would capture them (forward moves to the tunnel at once,
# the replies die for 20 probes and come back through the tunnel; then 20 requests die in a
# black hole: forward losses with no reply, so no reverse sample; then both back on ec).
# Checks the truth's paths, losses and events (no reverse outage over the black hole), that a
# faithful agent (STAMP: every loss's direction proven; ICMP: all `undetermined`) passes every
# assertion, and that each kind of error makes exactly its assertions fail: a wrong path, a
# `none` for a delivered probe, an outage off by 3 intervals (and, only when the agent logged a
# realtime clock step, passes one 3 ms short of its realtime bracket), a switchover bracket widened by
# `unknown` probes over the sender's 5 ms pause (passes with the truth's gap over it, fails
# when off or when the widening has no unknowns), a missing and an extra event, a
# `reverse` loss for a request that never arrived, a `forward` loss for one that did, proven
# losses off by more than 2 %, too few undetermined losses, proven losses the truth does not
# have, outage kinds `measured` without loss and `bound` with loss, and the issue-8 agent (a
# false reverse outage over a forward black hole). No root, no lab.
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
N = 160
PAUSE = 35  # the sender pauses 5 ms before this probe (a loaded host): the longest gap there


def at(seq):
    return seq * MS + (5 * MS if seq >= PAUSE else 0)
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
# lost on the dead line for 40..59 (they leave the cloud router towards the VBR: reverse losses),
# then ipsec; then a black hole for the requests 100..119 (never reach the cloud router nor the
# ECS: forward losses, and no reply is ever sent: no reverse sample at all); from 120 both
# directions back on ec.
def fwd_path(seq):
    return "express-connect" if seq < 40 or seq >= 120 else "ipsec"


def rev_path(seq):
    return "express-connect" if seq < 60 or seq >= 120 else "ipsec"


def delivered_fwd(seq):
    return not 100 <= seq < 120


def delivered_rev(seq):
    return not 40 <= seq < 60 and delivered_fwd(seq)


def truth_loss(seq):
    return None if delivered_rev(seq) else "forward" if not delivered_fwd(seq) else "reverse"


caps = {"probes-dc": [], "probes-ecs": [], "probes-cen-ec": [], "probes-cen-ipsec": []}
cen = {"express-connect": "probes-cen-ec", "ipsec": "probes-cen-ipsec"}
for proto, off in (("icmp", 0), ("stamp", 30_000)):
    for seq in range(N):
        tx = T0 + at(seq) + off
        req, rep = packet(proto, False, seq), packet(proto, True, seq)
        caps["probes-dc"].append((tx, req))
        if not delivered_fwd(seq):
            continue
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
                                                          (T0 + at(N + 1)) / 1e9))
with open(os.path.join(drill, "actions.log"), "w") as f:
    f.write("%.6f selftest: the line dies\n" % ((T0 + at(39) + MS / 2) / 1e9))

truth_json = os.path.join(drill, "probes.json")
r = subprocess.run([sys.executable, os.path.join(repo, "deploy/lab/probetruth"), drill,
                    "--json", truth_json], capture_output=True, text=True)
ok("probetruth runs (%s)" % r.stderr.strip(), r.returncode == 0)
truth = json.load(open(truth_json))
sess = {(s["proto"], s["session_key"]): s for s in truth["sessions"]}
ok("probetruth finds both sessions (ICMP by session id, STAMP by SSID)",
   set(sess) == {("icmp", ICMP_SID), ("stamp", STAMP_SID & 0xFFFF)})
ip_ = sess[("icmp", ICMP_SID)]
ok("every probe's paths: forward from the cloud router's ingress if it reached the ECS, else "
   "none; reverse only if delivered, n/a if no reply was ever sent",
   all(p[2] == (fwd_path(p[0]) if delivered_fwd(p[0]) else "none") and
       p[3] == (rev_path(p[0]) if delivered_rev(p[0]) else "n/a" if not delivered_fwd(p[0])
                else "none") for p in ip_["probes"]) and len(ip_["probes"]) == N)
ok("every probe's loss from the end hosts' ports: reverse 40..59, forward 100..119",
   all(p[9] == truth_loss(p[0]) for p in ip_["probes"]) and
   ip_["lost"] == {"forward": 20, "reverse": 20, "no_reply": 0} and
   (ip_["delivered_fwd"], ip_["replies_sent"], ip_["delivered_rev"]) == (N - 20, N - 20, N - 40))
ev = [(e["event"], e["direction"], e.get("from"), e.get("to"), e.get("outage_ns"),
       e.get("probes_lost"), e.get("truth_lost"), e.get("outage_kind"), e.get("resolution_ns"))
      for e in ip_["events"]]
ok("truth events: forward switchover at once (bound 1 ms); reverse outage K=3 in, ended and "
   "switched with a measured 21 ms outage, 20 lost; the black hole a measured 21 ms FORWARD "
   "outage, 20 lost, and in reverse NO outage, only the failback switchover, no loss, at most "
   "21 ms: %s" % ev, ev == [
       ("switchover", "forward", "express-connect", "ipsec", MS, 0, 0, "bound", MS),
       ("outage_begin", "reverse", "express-connect", "none", None, 3, 3, "measured", None),
       ("outage_end", "reverse", "none", "ipsec", 21 * MS, 20, 20, "measured", MS),
       ("switchover", "reverse", "express-connect", "ipsec", 21 * MS, 20, 20, "measured", MS),
       ("outage_begin", "forward", "ipsec", "none", None, 3, 3, "measured", None),
       ("outage_end", "forward", "none", "express-connect", 21 * MS, 20, 20, "measured", MS),
       ("switchover", "forward", "ipsec", "express-connect", 21 * MS, 20, 20, "measured", MS),
       ("switchover", "reverse", "ipsec", "express-connect", 21 * MS, 0, 0, "bound", MS)])
ok("kernel drops read from tcpdump's counters",
   all(c.get("dropped") == 0 for c in truth["captures"].values()))


def agent_lines(mutate=None):
    """A faithful agent: STAMP proves every loss's direction (the reflector's counter), ICMP
    proves none (the request was seen leaving on the tap, nothing more): `undetermined`, an
    outage in both directions."""
    lines = []
    for proto, sid, off in (("icmp", ICMP_SID, 0), ("stamp", STAMP_SID, 30_000)):
        def tx(seq):
            return T0 + at(seq) + off + 3_000  # the agent's clock reads 3 us later

        for seq in range(N):
            loss = truth_loss(seq)
            if loss and proto == "icmp":
                loss = "undetermined"
            rec = {"type": "probe", "agent": "t", "target": ECS, "proto": proto,
                   "session_id": sid, "seq": seq, "tx_ns": tx(seq),
                   "rx_ns": tx(seq) + 400_000 if delivered_rev(seq) else None,
                   # ICMP: seen leaving on the tap; STAMP here: a forward loss seen on no tap
                   "fwd_path": fwd_path(seq) if delivered_fwd(seq) or proto == "icmp"
                   else "none",
                   "rev_path": rev_path(seq) if delivered_rev(seq) else "none", "loss": loss}
            lines.append(rec)

        def event(kind, d, seq, frm, to, last=None, first=None, lost=0, undet=0, **kw):
            e = {"type": "event", "agent": "t", "event": kind, "target": ECS, "proto": proto,
                 "session_id": sid, "direction": d, "ts_ns": tx(seq), "seq": seq,
                 "detected_ns": tx(seq) + 20 * MS, "from": frm, "to": to,
                 "last_ok_on_old_ns": tx(last), "probes_lost": lost,
                 "probes_lost_undetermined": undet,
                 "outage_kind": "measured" if lost else "undetermined" if undet else "bound"}
            if first is not None:
                e.update(first_ok_on_new_ns=tx(first), outage_ns=tx(first) - tx(last),
                         resolution_ns=MS)
            e.update(kw)
            return e
        EC_, IP_ = "express-connect", "ipsec"
        if proto == "stamp":
            lines += [
                event("switchover", "forward", 42, EC_, IP_, 39, 40, failback=False),
                event("outage_begin", "reverse", 42, EC_, "none", 39, lost=3),
                event("outage_end", "reverse", 60, "none", IP_, 39, 60, lost=20),
                event("switchover", "reverse", 62, EC_, IP_, 39, 60, lost=20, failback=False),
                event("outage_begin", "forward", 102, IP_, "none", 99, lost=3),
                event("outage_end", "forward", 120, "none", EC_, 99, 120, lost=20),
                event("switchover", "forward", 122, IP_, EC_, 99, 120, lost=20, failback=True),
                event("switchover", "reverse", 122, IP_, EC_, 99, 120, failback=True)]
        else:
            for d in ("forward", "reverse"):
                lines += [
                    event("outage_begin", d, 42, EC_, "none", 39, undet=3),
                    event("outage_end", d, 60, "none", IP_, 39, 60, undet=20),
                    event("switchover", d, 62, EC_, IP_, 39, 60, undet=20, failback=False),
                    event("outage_begin", d, 102, IP_, "none", 99, undet=3),
                    event("outage_end", d, 120, "none", EC_, 99, 120, undet=20),
                    event("switchover", d, 122, IP_, EC_, 99, 120, undet=20, failback=True)]
    if mutate:
        mutate(lines)
    return lines


def run_check(name, lines, extra=()):
    path = os.path.join(work, name + ".jsonl")
    with open(path, "w") as f:
        for o in lines:
            f.write(json.dumps(o) + "\n")
    out = os.path.join(work, name + ".json")
    r = subprocess.run([sys.executable, os.path.join(repo, "deploy/lab/attrcheck"), path,
                        truth_json, "--json", out, "--expect-switchovers",
                        "forward=express-connect>ipsec,ipsec>express-connect", "--expect-switchovers",
                        "reverse=express-connect>ipsec,ipsec>express-connect", *extra], capture_output=True,
                       text=True)
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


def find_ev(lines, proto, d, kind, seq):
    return next(o for o in lines if o["type"] == "event" and o["proto"] == proto and
                o["direction"] == d and o["event"] == kind and o["seq"] == seq)


def wrong_path(lines):
    find(lines, "icmp", 70)["fwd_path"] = "express-connect"


def none_delivered(lines):
    find(lines, "stamp", 70)["rev_path"] = "none"


def outage_off(lines):
    # 3 intervals: beyond one interval + the truth's 1 ms resolution
    e = find_ev(lines, "icmp", "reverse", "switchover", 62)
    e["first_ok_on_new_ns"] += 3 * MS
    e["outage_ns"] += 3 * MS


def clock_step(lines):
    # the host stepped its realtime clock 3 ms forward inside the bracket: the agent's duration
    # (monotonic) is 3 ms short of its two probes' realtime tx times, which match the captures
    e = find_ev(lines, "icmp", "reverse", "switchover", 62)
    e["outage_ns"] -= 3 * MS


def clock_step_off(lines):
    # the same step, but the agent's realtime bracket is off from the captures' by 3 intervals
    e = find_ev(lines, "icmp", "reverse", "switchover", 62)
    e["outage_ns"] -= 3 * MS
    e["first_ok_on_new_ns"] += 3 * MS


def missing_event(lines):
    lines.remove(find_ev(lines, "stamp", "reverse", "outage_begin", 42))


def extra_event(lines):
    e = dict(find_ev(lines, "icmp", "forward", "outage_begin", 42))
    e.update(seq=80, ts_ns=T0 + at(80), **{"from": "ipsec"})
    lines.append(e)


def tap_down(lines):
    lines.append({"type": "event", "agent": "1", "event": "tap_down", "tap": "tap-ec",
                  "path": "express-connect", "reason": "pcap read: The interface disappeared",
                  "ts_ns": T0 + at(90), "detected_ns": T0 + at(91)})


def unknown_widened(lines, claim_ms=6, unknown=True):
    # probes 30..39 through but unattributed forward: the agent's bracket of the forward
    # switchover is 29 -> 40, whose longest gap is the sender's 5 ms pause (34 -> 35: 6 ms)
    if unknown:
        for seq in range(30, 40):
            find(lines, "stamp", seq)["fwd_path"] = "unknown"
    e = find_ev(lines, "stamp", "forward", "switchover", 42)
    e.update(last_ok_on_old_ns=find(lines, "stamp", 29)["tx_ns"], outage_ns=claim_ms * MS)


def unknown_widened_wrong(lines):
    unknown_widened(lines, claim_ms=12)


def widened_without_unknown(lines):
    unknown_widened(lines, unknown=False)


def reverse_not_arrived(lines):
    find(lines, "stamp", 105)["loss"] = "reverse"


def forward_arrived(lines):
    find(lines, "stamp", 45)["loss"] = "forward"


def lost_off(lines):
    find_ev(lines, "stamp", "forward", "outage_end", 120)["probes_lost"] = 23


def undet_short(lines):
    find_ev(lines, "icmp", "reverse", "outage_end", 60)["probes_lost_undetermined"] = 15


def proven_beyond(lines):
    # 5 of the black hole's undetermined losses "proven" reverse: the truth lost none that way
    e = find_ev(lines, "icmp", "reverse", "outage_end", 120)
    e.update(probes_lost=5, probes_lost_undetermined=15, outage_kind="undetermined")


def kind_measured(lines):
    find_ev(lines, "stamp", "reverse", "switchover", 122)["outage_kind"] = "measured"


def kind_bound(lines):
    find_ev(lines, "stamp", "reverse", "outage_end", 60)["outage_kind"] = "bound"


def issue8_agent(lines):
    # what the agent did before issue 8: the requests lost in the black hole called reverse
    # losses, a reverse outage over them
    for seq in range(100, 120):
        find(lines, "stamp", seq)["loss"] = "reverse"
    e = find_ev(lines, "stamp", "reverse", "switchover", 122)
    e.update(probes_lost=20, outage_kind="measured")
    ob = dict(find_ev(lines, "stamp", "forward", "outage_begin", 102), direction="reverse")
    oe = dict(find_ev(lines, "stamp", "forward", "outage_end", 120), direction="reverse")
    lines[lines.index(e):lines.index(e)] = [ob, oe]


S, I = "stamp session %d" % STAMP_SID, "icmp session %d" % ICMP_SID
for name, mutate, want in (
        ("tap-down", tap_down, ["no tap went down during the drill"]),
        ("unknown-widened-bracket", unknown_widened, []),
        ("unknown-widened-bracket-wrong", unknown_widened_wrong,
         [S + " forward: switchover outage 12.000 ms"]),
        ("bracket-widened-without-unknown", widened_without_unknown,
         [S + " forward: switchover outage 6.000 ms"]),
        ("wrong-path", wrong_path, [I + " forward: zero probes"]),
        ("none-delivered", none_delivered, [S + " reverse: zero probes"]),
        ("outage-off", outage_off, [I + " reverse: switchover outage"]),
        ("clock-step-not-logged", clock_step, [I + " reverse: switchover outage"]),
        ("missing-event", missing_event, [S + " reverse: the agent's events are exactly"]),
        ("extra-event", extra_event, [I + " forward: the agent's events are exactly"]),
        ("reverse-loss-never-arrived", reverse_not_arrived,
         [S + ": no record whose `loss` contradicts"]),
        ("forward-loss-arrived", forward_arrived, [S + ": no record whose `loss` contradicts"]),
        ("probes-lost-off", lost_off, [S + " forward: outage_end probes_lost 23 within 2 %"]),
        ("undetermined-too-few", undet_short,
         [I + " reverse: outage_end losses 0 proven + 15 undetermined consistent"]),
        ("proven-beyond-truth", proven_beyond,
         [I + " reverse: outage_end losses 5 proven + 15 undetermined consistent",
          I + " reverse: outage_end outage_kind undetermined consistent"]),
        ("kind-measured-no-loss", kind_measured,
         [S + " reverse: switchover outage_kind measured consistent"]),
        ("kind-bound-with-loss", kind_bound,
         [S + " reverse: outage_end outage_kind bound consistent"]),
        ("issue-8-false-reverse-outage", issue8_agent,
         [S + ": no record whose `loss` contradicts",
          S + " reverse: the agent's events are exactly",
          S + " reverse: switchover probes_lost 20 within 2 %",
          S + " reverse: switchover outage_kind measured consistent"])):
    failed = run_check(name, agent_lines(mutate))
    whats = [a["what"] for a in failed or []]
    ok("%s: exactly the matching assertions fail (%s)" % (name, whats),
       failed is not None and all(any(w.startswith(x) for x in want) for w in whats) and
       all(any(w.startswith(x) for w in whats) for x in want))



# with the agent's log saying the realtime clock stepped (--clock-stepped)
for name, mutate, want in (
        ("clock-step-in-bracket", clock_step, []),
        ("clock-step-bracket-off", clock_step_off, [I + " reverse: switchover outage"]),
        ("clock-step-no-excuse", outage_off, [I + " reverse: switchover outage"])):
    failed = run_check(name, agent_lines(mutate), ["--clock-stepped"])
    whats = [a["what"] for a in failed or []]
    ok("%s (clock stepped): exactly the matching assertions fail (%s)" % (name, whats),
       failed is not None and all(any(w.startswith(x) for x in want) for w in whats) and
       all(any(w.startswith(x) for w in whats) for x in want))


def healthcheck_events(lines):
    # the cloud's health check (issue 12): no probe stream's event, ignored by the comparison
    for kind in ("healthcheck_degraded", "healthcheck_failed", "healthcheck_recovered",
                 "healthcheck_absent"):
        lines.append({"type": "event", "agent": "t", "event": kind, "tap": "tap-ec",
                      "path": "express-connect", "target": "10.1.0.2", "prober": "100.96.0.5",
                      "ts_ns": T0 + 50 * MS, "detected_ns": T0 + 51 * MS, "unanswered": 1,
                      "fall": 8, "interval_ns": 2000 * MS, "duration_ns": 0})


failed = run_check("healthcheck-events", agent_lines(healthcheck_events))
ok("health-check events are not compared with the probe streams' truth (%s)" %
   [a["what"] for a in failed or []], failed == [])

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

NA, UD = "n/a", "undetermined"
ok("a probe with no reverse sample is skipped: no outage, the switchover's outage at most the "
   "gap (%s)" % model([EC] * 3 + [NA] * 5 + [IP] * 3, 2),
   model([EC] * 3 + [NA] * 5 + [IP] * 3, 2) == [("switchover", 6 * MS, 0)])
ud = [(e["event"], e["probes_lost"], e["probes_lost_undetermined"], e["outage_kind"])
      for e in pt.run_model([(i, i * MS, p, p) for i, p in enumerate([EC] * 3 + [UD] * 4 +
                                                                     [IP] * 3)], 3, 3, 2)
      if e["direction"] == "forward"]
ok("undetermined losses make an outage, counted apart (%s)" % ud, ud == [
    ("outage_begin", 0, 3, "undetermined"), ("outage_end", 0, 4, "undetermined"),
    ("switchover", 0, 4, "undetermined")])

print("[attr_check_selftest_test] %s: %d failed" % ("FAILED" if fails else "PASSED", len(fails)))
sys.exit(1 if fails else 0)
PY
