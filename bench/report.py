#!/usr/bin/env python3
"""Turns the raw outputs of bench/probe_bench.sh into uniform step records and the final table.

Subcommands (all write JSON; nothing here measures anything itself):
  get FILE KEY                     print a value (dotted path, list indices allowed)
  probe-step --summary F --runstat F --proto P --rate N --peer-cpu PCT --out F
  fping-step --output F --runstat F --rate N --count N --out F
  raw-step --client F --server-cpu PCT --search F --out F
  table DIR                        print the side-by-side table; write DIR/summary.json

A step record is {"tool", "proto", "target_rate", "achieved_rate", "echo_rate", "sent",
"received", "lost", "loss_ratio", "send_errors", "cpu_pct", "peer_cpu_pct", "rtt_p50_ns",
"rtt_p99_ns", "clean", "why"}. "clean" = no probe lost, no send error and the sender kept at
least 95 % of the asked rate, and its RTT p99 stayed below half the reply timeout
(BENCH_TIMEOUT_MS; replies queueing towards the timeout would be lost in a longer step).
"lossless" and "held" are the first two halves; slots the pacer missed are noted, and count
only through the achieved rate; "why" says what failed.
"""
import argparse
import glob
import json
import math
import os
import sys

KEEP_UP = 0.95  # a step must achieve this fraction of its target rate to count as clean
# A step whose RTT p99 reaches this is backlogged (not clean): half the reply timeout, which
# the script passes as BENCH_TIMEOUT_MS.
BACKLOG_NS = int(os.environ.get("BENCH_TIMEOUT_MS", "0")) * 1_000_000 // 2


def load(path):
    with open(path) as f:
        return json.load(f)


def dump(obj, path):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")


def dig(obj, key):
    for part in key.split("."):
        if isinstance(obj, list):
            obj = obj[int(part)]
        elif isinstance(obj, dict):
            obj = obj.get(part)
        else:
            return None
        if obj is None:
            return None
    return obj


def percentile(sorted_values, p):
    """Nearest rank, like bench_util.h."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def verdict(step):
    """lossless: answered everything, no send error, exited well; held: sent at >= KEEP_UP of
    the asked rate; clean: both. Slots the pacer skipped are not loss: they are noted, and
    count only through the achieved rate."""
    fails, notes = [], []
    if step["sent"] == 0:
        fails.append("sent nothing")
    if step["lost"]:
        fails.append("lost %d" % step["lost"])
    if step.get("send_errors"):
        fails.append("%d send errors" % step["send_errors"])
    if step.get("exit_code") not in (None, 0):
        fails.append("exit code %s" % step["exit_code"])
    step["lossless"] = not fails
    # Zero loss over a step says little when the replies queue up towards the timeout: a longer
    # step would lose them. Such a step is not clean either.
    p99 = step.get("rtt_p99_ns")
    if BACKLOG_NS and p99 is not None and p99 >= BACKLOG_NS:
        fails.append("backlog: p99 RTT %.0f ms" % (p99 / 1e6))
    target = step["target_rate"]
    step["held"] = not target or step["achieved_rate"] >= KEEP_UP * target
    if not step["held"]:
        fails.append("sent at %.0f/s only (%.0f %%)" % (step["achieved_rate"],
                                                         100.0 * step["achieved_rate"] / target))
    if step.get("lost") and (step.get("lost_forward") or step.get("lost_reverse")):
        notes.append("fwd %d / rev %d" % (step.get("lost_forward") or 0,
                                          step.get("lost_reverse") or 0))
    if step.get("peer_udp_drops"):
        notes.append("reflector socket dropped %d" % step["peer_udp_drops"])
    if step.get("agent_udp_drops"):
        notes.append("agent socket dropped %d" % step["agent_udp_drops"])
    if step.get("late"):
        notes.append("%d of them late" % step["late"])
    if step.get("missed_slots"):
        notes.append("%d missed slots" % step["missed_slots"])
    step["clean"] = not fails
    if fails:
        step["why"] = ", ".join(fails + notes)
    else:
        step["why"] = "ok" + (" (" + ", ".join(notes) + ")" if notes else "")
    return step


def cmd_get(a):
    v = dig(load(a.file), a.key)
    if isinstance(v, bool):
        print("true" if v else "false")
    elif v is None:
        print("null")
    elif isinstance(v, (dict, list)):
        print(json.dumps(v))
    else:
        print(v)


def cmd_probe_step(a):
    run = load(a.runstat)
    try:
        summary = load(a.summary)
    except (OSError, ValueError) as e:
        summary = {"error": str(e), "sessions": []}
    sessions = summary.get("sessions") or []
    sent = sum(s.get("sent", 0) for s in sessions)
    received = sum(s.get("received", 0) for s in sessions)
    # False loss = probes without an on-time reply = sent - received: the probe ends only when
    # every probe is resolved, and this holds whatever its own lost/late bookkeeping does (a
    # late reply is taken back from its run's "lost"; both are kept below as reported).
    lost = max(0, sent - received)
    # Rates over the asked duration: the summary's duration_s also covers the wait for the
    # last replies (up to the timeout), which is not sending time.
    duration = a.duration or summary.get("duration_s") or run["wall_s"]
    rtt = sessions[0].get("rtt_ns", {}) if len(sessions) == 1 else {}
    step = {
        "tool": "pathsentry",
        "proto": a.proto,
        "target_rate": a.rate,
        "duration_s": duration,
        "sent": sent,
        "received": received,
        "lost": lost,
        "loss_ratio": lost / sent if sent else None,
        "run_s": summary.get("duration_s"),
        "reported_lost": sum(s.get("lost", 0) for s in sessions),
        "lost_forward": sum(s.get("lost_forward", 0) or 0 for s in sessions),
        "lost_reverse": sum(s.get("lost_reverse", 0) or 0 for s in sessions),
        "late": sum(s.get("late", 0) or 0 for s in sessions),
        "duplicates": sum(s.get("duplicates", 0) or 0 for s in sessions),
        "send_errors": sum(s.get("send_errors", 0) or 0 for s in sessions),
        "missed_slots": sum(s.get("missed_slots", 0) or 0 for s in sessions),
        "achieved_rate": sent / duration if duration else 0.0,
        "echo_rate": received / duration if duration else 0.0,
        "cpu_pct": run["cpu_pct"],
        "max_rss_kb": run["max_rss_kb"],
        "peer_cpu_pct": a.peer_cpu,
        "rtt_p50_ns": rtt.get("p50"),
        "rtt_p99_ns": rtt.get("p99"),
        "exit_code": run["exit_code"],
        "summary_error": summary.get("error"),
        # UDP RcvbufErrors in each namespace over the step: where false loss happened.
        "agent_udp_drops": a.agent_udp_drops,
        "peer_udp_drops": a.peer_udp_drops,
    }
    dump(verdict(step), a.out)


def parse_fping(path, target):
    """fping -C N -q -s writes one line per target, 'ADDR : 0.041 0.039 - 0.052' (ms, '-' =
    lost), then global stats including 'N ICMP Echos sent' and 'S sec (elapsed real time)'."""
    rtts, lost, sent, elapsed = [], 0, None, None
    with open(path) as f:
        for line in f:
            words = line.split()
            if line.startswith(target + " : ") and "xmt/rcv" not in line:
                for tok in words[2:]:
                    if tok == "-":
                        lost += 1
                    else:
                        rtts.append(round(float(tok) * 1e6))
            elif line.strip().endswith("ICMP Echos sent"):
                sent = int(words[0])
            elif line.strip().endswith("(elapsed real time)"):
                elapsed = float(words[0])
    return rtts, lost, sent, elapsed


def cmd_fping_step(a):
    run = load(a.runstat)
    rtts, lost, sent_stat, elapsed = parse_fping(a.output, a.target)
    rtts.sort()
    sent = len(rtts) + lost
    # fping's own elapsed time (first send to last reply) when it printed one, else the wall
    # time of the whole process (start-up included: pessimistic).
    wall = elapsed if elapsed else run["wall_s"]
    step = {
        "tool": "fping",
        "proto": "icmp",
        "target_rate": a.rate,
        "period_ms": a.period_ms,
        "duration_s": wall,
        "duration_source": "fping elapsed real time" if elapsed else "process wall time",
        "sent": sent,
        "sent_reported": sent_stat,
        "received": len(rtts),
        "lost": lost + max(0, a.count - sent),
        "loss_ratio": ((lost + max(0, a.count - sent)) / a.count) if a.count else None,
        "achieved_rate": sent / wall if wall else 0.0,
        "echo_rate": len(rtts) / wall if wall else 0.0,
        "cpu_pct": run["cpu_pct"],
        "max_rss_kb": run["max_rss_kb"],
        "peer_cpu_pct": None,
        "rtt_p50_ns": percentile(rtts, 50),
        "rtt_p99_ns": percentile(rtts, 99),
        "rtt_resolution_ns": 1000,
        # fping exits 1 when a target is unreachable; loss is counted above, so only >= 2
        # (bad address, bad option, system error) makes the step fail.
        "exit_code": 0 if run["exit_code"] in (0, 1) else run["exit_code"],
    }
    dump(verdict(step), a.out)


def cmd_raw_step(a):
    c = load(a.client)
    step = {
        "tool": "raw-udp",
        "proto": "udp",
        "target_rate": c["target_rate"],
        "duration_s": c["duration_s"],
        "sent": c["sent"],
        "received": c["received"],
        "lost": c["lost"],
        "loss_ratio": c["loss_ratio"],
        "send_errors": c["send_errors"],
        "late": c.get("late", 0),
        "achieved_rate": c["send_rate"],
        "echo_rate": c["echo_rate"],
        "cpu_pct": c["cpu_pct"],
        "peer_cpu_pct": a.server_cpu,
        "rtt_p50_ns": c["rtt_ns"]["p50"],
        "rtt_p99_ns": c["rtt_ns"]["p99"],
        "rtt_method": c.get("rtt_method"),
        "tx_stamped": c.get("tx_stamped"),  # --timestamps: kernel TX timestamps read
    }
    try:
        s = load(a.search)
        step["search_best_clean_rate"] = s.get("best_clean_rate")
        step["flat_out_echo_rate"] = dig(s, "flat_out.echo_rate")
        step["flat_out_send_rate"] = dig(s, "flat_out.send_rate")
    except (OSError, ValueError):
        pass
    dump(verdict(step), a.out)


def fmt_rate(v):
    return "-" if v is None else "%.0f" % v


def fmt_us(ns):
    return "-" if ns is None else "%.1f" % (ns / 1000.0)


def fmt_pct(v):
    return "-" if v is None else "%.0f" % v


def best_clean(steps):
    clean = [s for s in steps if s["clean"]]
    return max(clean, key=lambda s: s["echo_rate"]) if clean else None


def first_unclean(steps):
    bad = [s for s in steps if not s["clean"]]
    return min(bad, key=lambda s: s["target_rate"]) if bad else None


def cmd_table(a):
    d = a.dir
    def load_if(name, missing=None):
        path = os.path.join(d, name)
        return load(path) if os.path.exists(path) else missing

    meta = load_if("meta.json", {})
    raw = load_if("raw.step.json")
    steps = [load(p) for p in sorted(glob.glob(os.path.join(d, "probe-*.step.json")))]
    fpings = [load(p) for p in sorted(glob.glob(os.path.join(d, "fping-*.step.json")))]
    rtt_err = load_if("rtt_error.json")
    # The limit: the echo rate of the confirmation run (a full step at the highest rate the
    # search found clean, lowered 10 % per lost try) when it lost nothing.
    limit = raw["echo_rate"] if raw and raw["clean"] else None
    # The same echo with kernel timestamps (RAW_TS=1): the ceiling of a timestamping prober.
    raw_ts = load_if("raw-ts.step.json")
    limit_ts = raw_ts["echo_rate"] if raw_ts and raw_ts["clean"] else None

    def ratio(v, of=limit):
        return "-" if (v is None or not of) else "%.2f" % (v / of)

    raw_end = load_if("raw-end.step.json")
    rows = []
    if raw:
        rows.append(("raw udp echo @limit", raw))
    if raw_ts:
        rows.append(("raw + kernel ts @limit", raw_ts))
    if raw_end:
        rows.append(("raw again at run's end", raw_end))
    for proto in ("stamp", "icmp"):
        for s in sorted((s for s in steps if s["proto"] == proto), key=lambda s: s["target_rate"]):
            rows.append(("pathsentry %s" % proto, s))
    for s in sorted(fpings, key=lambda s: s["target_rate"] or 1e12):
        rows.append(("fping" + (" (flat out)" if not s["target_rate"] else ""), s))

    out = []
    out.append("pathsentry bench  %s  cpus=%s  load start/end=%s / %s  kernel=%s  commit=%s" % (
        meta.get("date", "?"), meta.get("cpus", "?"), meta.get("loadavg_start", "?"),
        meta.get("loadavg_end", "?"), meta.get("kernel", "?"), meta.get("commit", "?")))
    out.append("all probes: ns %s -> %s over one veth; peer = reflector / raw echo server "
               "(ICMP: kernel, not attributable)" % (meta.get("ns_a", "?"), meta.get("ns_b", "?")))
    hdr = "%-24s %9s %10s %10s %9s %9s %6s %6s %7s %9s %9s %7s %6s  %s" % (
        "what", "target/s", "sent/s", "echoed/s", "lost", "loss", "cpu%", "peer%", "rss MB",
        "p50 us", "p99 us", "vs raw", "vs ts", "verdict")
    out.append(hdr)
    out.append("-" * len(hdr))
    for name, s in rows:
        loss = s["loss_ratio"]
        rss = s.get("max_rss_kb")
        out.append("%-24s %9s %10s %10s %9d %9s %6s %6s %7s %9s %9s %7s %6s  %s" % (
            name, fmt_rate(s["target_rate"]) if s["target_rate"] else "max",
            fmt_rate(s["achieved_rate"]), fmt_rate(s["echo_rate"]), s["lost"],
            "-" if loss is None else "%.2e" % loss if loss else "0",
            fmt_pct(s["cpu_pct"]), fmt_pct(s["peer_cpu_pct"]),
            "-" if rss is None else "%.1f" % (rss / 1024.0),
            fmt_us(s["rtt_p50_ns"]), fmt_us(s["rtt_p99_ns"]), ratio(s["echo_rate"]),
            ratio(s["echo_rate"], limit_ts), s["why"]))
    out.append("")

    summary = {"meta": meta, "raw": raw, "raw_ts": raw_ts, "raw_end": raw_end, "pathsentry_steps": steps, "fping": fpings,
               "rtt_error": rtt_err, "headline": {}}
    if raw:
        out.append("raw limit (highest zero-loss paced rate, confirmed over a full step): %s/s;"
                   " bisection's best rate %s/s; flat-out echo throughput %s/s" % (
                       fmt_rate(limit), fmt_rate(raw.get("search_best_clean_rate")),
                       fmt_rate(raw.get("flat_out_echo_rate"))))
    if raw_ts:
        out.append("raw limit with kernel timestamps (the client's TX timestamps read from the error "
                   "queue, the server's RX timestamps): %s/s = %s of the raw limit; its client "
                   "CPU %s %%, server %s %% there; %s of %s datagrams TX-timestamped" % (
                       fmt_rate(limit_ts), ratio(limit_ts), fmt_pct(raw_ts["cpu_pct"]),
                       fmt_pct(raw_ts["peer_cpu_pct"]), raw_ts.get("tx_stamped"), raw_ts["sent"]))
    for proto in ("stamp", "icmp"):
        ps = [s for s in steps if s["proto"] == proto]
        if not ps:
            continue
        best, bad = best_clean(ps), first_unclean(ps)
        lossless = [s for s in ps if s["lossless"]]
        best_ll = max(lossless, key=lambda s: s["echo_rate"]) if lossless else None
        lossy = [s for s in ps if not s["lossless"]]
        first_lossy = min(lossy, key=lambda s: s["target_rate"]) if lossy else None
        frac = best["echo_rate"] / limit if (best and limit) else None
        frac_ll = best_ll["echo_rate"] / limit if (best_ll and limit) else None
        h = {"max_clean_rate": best["echo_rate"] if best else None,
             "fraction_of_raw": frac,
             "max_lossless_rate": best_ll["echo_rate"] if best_ll else None,
             "lossless_fraction_of_raw": frac_ll,
             "first_unclean_rate": bad["target_rate"] if bad else None,
             "first_unclean_why": bad["why"] if bad else None,
             "first_loss_rate": first_lossy["target_rate"] if first_lossy else None,
             "goal_fraction": 0.60,
             "goal_met": (frac is not None and frac >= 0.60)}
        # Issue 14 goal 3: zero loss (clean) with at most 1 % of the step's slots missed.
        def missed_share(st):
            slots = st["sent"] + (st.get("missed_slots") or 0) + (st.get("send_errors") or 0)
            return (st.get("missed_slots") or 0) / slots if slots else 1.0
        g3 = [s for s in ps if s["clean"] and missed_share(s) <= 0.01]
        best3 = max(g3, key=lambda s: s["echo_rate"]) if g3 else None
        frac3 = best3["echo_rate"] / limit if (best3 and limit) else None
        h["max_clean_rate_missed_le_1pct"] = best3["echo_rate"] if best3 else None
        h["missed_share_there"] = missed_share(best3) if best3 else None
        h["fraction_of_raw_missed_le_1pct"] = frac3
        h["goal14_fraction"] = 0.95
        h["goal14_met"] = frac3 is not None and frac3 >= 0.95
        h["fraction_of_raw_ts_missed_le_1pct"] = (best3["echo_rate"] / limit_ts
                                                   if (best3 and limit_ts) else None)
        summary["headline"]["pathsentry_" + proto] = h
        out.append("pathsentry %-5s: held its rate with zero loss up to %s/s = %s of raw limit "
                   "(goal >= 0.60: %s); first unclean step: %s" % (
                       proto, fmt_rate(h["max_clean_rate"]),
                       "-" if frac is None else "%.2f" % frac,
                       "MET" if h["goal_met"] else "NOT MET",
                       "none (stopped at the rate list's end or the raw limit)" if not bad else
                       "%s/s (%s)" % (fmt_rate(bad["target_rate"]), bad["why"])))
        out.append("                  highest zero-loss echoed rate, rate held or not: %s/s = %s"
                   " of raw limit; first step with loss: %s" % (
                       fmt_rate(h["max_lossless_rate"]),
                       "-" if frac_ll is None else "%.2f" % frac_ll,
                       "none" if not first_lossy else "%s/s (%s)" % (
                           fmt_rate(first_lossy["target_rate"]), first_lossy["why"])))
        out.append("                  zero loss with <= 1 %% of slots missed up to %s/s = %s of raw "
                   "limit (%s missed there; issue 14 goal >= 0.95: %s)%s" % (
                       fmt_rate(h["max_clean_rate_missed_le_1pct"]),
                       "-" if frac3 is None else "%.2f" % frac3,
                       "-" if best3 is None else "%.2f %%" % (100 * h["missed_share_there"]),
                       "MET" if h["goal14_met"] else "NOT MET",
                       "" if h["fraction_of_raw_ts_missed_le_1pct"] is None else
                       " = %.2f of the timestamping raw limit" % h["fraction_of_raw_ts_missed_le_1pct"]))
    fl = [s for s in fpings if s["clean"]]
    if fl:
        fb = max(fl, key=lambda s: s["echo_rate"])
        out.append("fping: max zero-loss rate %s/s = %s of raw limit" % (
            fmt_rate(fb["echo_rate"]), ratio(fb["echo_rate"])))
    if rtt_err:
        for proto in ("stamp", "icmp"):
            e = rtt_err.get(proto)
            if not e:
                continue
            med = dig(e, "error_ns.p50")
            h = {"matched": e["matched"], "answered": e["answered"],
                 "median_error_ns": med, "p1_error_ns": dig(e, "error_ns.p1"),
                 "p99_error_ns": dig(e, "error_ns.p99"),
                 "p99_abs_error_ns": dig(e, "abs_error_ns.p99"),
                 "median_tx_offset_ns": dig(e, "tx_offset_ns.p50"),
                 "median_rx_offset_ns": dig(e, "rx_offset_ns.p50"),
                 "goal_median_ns": 5000,
                 "goal_met": med is not None and abs(med) <= 5000}
            summary["headline"]["rtt_error_" + proto] = h
            h["tx_not_kernel"] = e.get("tx_not_kernel")
            out.append("RTT error %-5s (pathsentry - pcap, %d of %d answered probes matched, "
                       "%s with a user-space tx time): "
                       "median %s ns, p1..p99 %s..%s ns, p99 |err| %s ns (goal |median| <= 5000 ns: %s);"
                       " tx offset p50 %s ns, rx offset p50 %s ns" % (
                           proto, e["matched"], e["answered"], e.get("tx_not_kernel"), med,
                           h["p1_error_ns"], h["p99_error_ns"],
                           h["p99_abs_error_ns"], "MET" if h["goal_met"] else "NOT MET",
                           h["median_tx_offset_ns"], h["median_rx_offset_ns"]))
    text = "\n".join(out)
    print(text)
    summary["table_text"] = text
    dump(summary, os.path.join(d, "summary.json"))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("get")
    g.add_argument("file")
    g.add_argument("key")
    ps = sub.add_parser("probe-step")
    ps.add_argument("--summary", required=True)
    ps.add_argument("--runstat", required=True)
    ps.add_argument("--proto", required=True)
    ps.add_argument("--rate", type=float, required=True)
    ps.add_argument("--duration", type=float, help="the --duration the probe was given")
    ps.add_argument("--peer-cpu", type=lambda v: None if v in ("", "null") else float(v))
    ps.add_argument("--agent-udp-drops", type=int)
    ps.add_argument("--peer-udp-drops", type=int)
    ps.add_argument("--out", required=True)
    fs = sub.add_parser("fping-step")
    fs.add_argument("--output", required=True)
    fs.add_argument("--runstat", required=True)
    fs.add_argument("--target", required=True)
    fs.add_argument("--rate", type=float, required=True)
    fs.add_argument("--period-ms", type=float, required=True)
    fs.add_argument("--count", type=int, required=True)
    fs.add_argument("--out", required=True)
    rs = sub.add_parser("raw-step")
    rs.add_argument("--client", required=True)
    rs.add_argument("--search", required=True)
    rs.add_argument("--server-cpu", type=lambda v: None if v in ("", "null") else float(v))
    rs.add_argument("--out", required=True)
    t = sub.add_parser("table")
    t.add_argument("dir")
    a = p.parse_args()
    {"get": cmd_get, "probe-step": cmd_probe_step, "fping-step": cmd_fping_step,
     "raw-step": cmd_raw_step, "table": cmd_table}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
