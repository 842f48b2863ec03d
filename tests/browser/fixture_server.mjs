// A small static stand-in for the collector, for the page's browser test before a lab drill:
// serves the built page (web/dist or --dist) and canned JSON shaped exactly as
// SPEC-collector.md says (/api/v1/targets, /events, /probes?format=columns, /series, /stream).
// The SSE stream sends a state message every second and, 1 s after it opens, a new event (a
// switchover) with the state that follows it. The cloud's health check of line eth1 was last
// answered again at -5 min, agent dc2's line ens4 has none (absent) since -2 min (/api/v1/healthchecks derives each line's state from the latest
// healthcheck_* event, as the collector does). Loopback only.
//   node fixture_server.mjs [--dist DIR] [--port N] [--hold-live]
// prints "listening http://127.0.0.1:PORT/". Test hooks: POST /__fixture/arm (with --hold-live,
// the new event goes out 1 s after it), POST /__fixture/drop (ends the open streams and records
// an event while none is open), POST /__fixture/healthcheck?step=degraded|recovered (sends line
// eth1's health check degraded, 3 of 8 unanswered at a 2 s interval: eta 10 s from now; blocked,
// 4 of 8 while the line carries the agent's probes: eta 8 s; then answered again).
import { createServer } from 'node:http';
import { readFileSync, existsSync } from 'node:fs';
import { dirname, join, normalize, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1] : dflt;
};
const dist = resolve(opt('--dist', join(here, '../../web/dist')));
const port = Number(opt('--port', '0'));
const holdLive = args.includes('--hold-live');
if (!existsSync(join(dist, 'index.html'))) {
  console.error(`fixture_server: no ${join(dist, 'index.html')}: build the page first (npm run build in web/, or the CMake target pathsentry_web)`);
  process.exit(2);
}

const S = 1e9, MS = 1e6;
const AGENT = 'dc1', TARGET = '10.20.0.2', PROTO = 'icmp', SESSION = 7, RUN = '3f2a9c0d11e45b70';
const now0 = Math.floor(Date.now() / 1000) * S;
// The drill: failover at -10 min, failback at -4 min (times are ns).
const T_FAIL = now0 - 600 * S;
const T_BACK = now0 - 240 * S;
const FAIL_LAST_OK = T_FAIL - 1234.5 * MS;       // forward outage: last probe through on EC
const BACK_LAST_OK = T_BACK - 850.2 * MS;        // failback outage: last probe through on IPsec
const REV_FAIL = T_FAIL + 2 * S;                 // reverse follows 2 s later, no loss (bound)
const REV_BACK = T_BACK + 1 * S;

const ev = (o) => ({
  agent: AGENT, run: RUN, target: TARGET, proto: PROTO, session_id: SESSION,
  detected_ns: o.ts_ns + 20 * MS, ...o,
});
// The cloud's health check of the Express Connect line (eth1, the gateway's line address).
const hc = (o) => ({
  agent: AGENT, run: RUN, tap: 'eth1', path: 'express-connect', target: '10.1.0.2',
  prober: '100.96.0.5', fall: 8, interval_ns: 2 * S, duration_ns: 0, detected_ns: o.ts_ns + 3 * MS, ...o,
});
// Each line's state from its latest health-check event (by time, then row id).
function healthchecks(agent) {
  const latest = new Map();
  for (const e of events) {
    if (!e.event.startsWith('healthcheck_') || (agent && e.agent !== agent)) continue;
    const k = `${e.agent}|${e.tap}`;
    const have = latest.get(k);
    if (!have || e.ts_ns > have.ts_ns || (e.ts_ns === have.ts_ns && e.id > have.id)) latest.set(k, e);
  }
  const state = { healthcheck_degraded: 'degraded', healthcheck_failed: 'failed',
    healthcheck_blocked: 'blocked', healthcheck_absent: 'absent', healthcheck_recovered: 'ok' };
  return [...latest.values()].sort((a, b) => `${a.agent}|${a.tap}`.localeCompare(`${b.agent}|${b.tap}`))
    .map((e) => {
      const counting = e.event === 'healthcheck_degraded' || e.event === 'healthcheck_blocked';
      const failed = e.event === 'healthcheck_failed';
      return {
        agent: e.agent, tap: e.tap, path: e.path, target: e.target, state: state[e.event],
        prober: e.prober, unanswered: e.unanswered, fall: e.fall, interval_ns: e.interval_ns,
        eta_ns: counting ? e.eta_ns : failed ? 0 : null, eta_from_ns: counting || failed ? e.ts_ns : null,
        move_at_ns: counting ? e.ts_ns + e.eta_ns : failed ? e.ts_ns : null,
        duration_ns: e.duration_ns, reason: e.reason ?? '', event: e.event, id: e.id, run: e.run,
        event_id: e.event_id, ts_ns: e.ts_ns, detected_ns: e.detected_ns,
      };
    });
}
const events = [
  { id: 1, event: 'tap_down', agent: AGENT, run: RUN, event_id: 1, tap: 'eth2', path: 'ipsec',
    reason: 'pcap_next_ex: The interface went down', ts_ns: now0 - 900 * S, detected_ns: now0 - 900 * S + 5 * MS },
  { id: 2, event: 'tap_up', agent: AGENT, run: RUN, event_id: 2, tap: 'eth2', path: 'ipsec', reason: '',
    ts_ns: now0 - 897 * S, detected_ns: now0 - 897 * S + 5 * MS, duration_ns: 3.2 * S },
  ev({ id: 3, event_id: 3, event: 'outage_begin', direction: 'forward', ts_ns: FAIL_LAST_OK + 50 * MS,
    seq: 10001, from: 'express-connect', to: 'none', last_ok_on_old_ns: FAIL_LAST_OK, probes_lost: 5,
    probes_lost_undetermined: 0, outage_kind: 'measured', resolution_ns: 10 * MS }),
  ev({ id: 4, event_id: 4, event: 'switchover', direction: 'forward', ts_ns: T_FAIL + 30 * MS, seq: 10124,
    from: 'express-connect', to: 'ipsec', last_ok_on_old_ns: FAIL_LAST_OK, first_ok_on_new_ns: T_FAIL,
    outage_ns: 1234.5 * MS, probes_lost: 123, probes_lost_undetermined: 0, outage_kind: 'measured',
    resolution_ns: 10 * MS, failback: false }),
  ev({ id: 5, event_id: 5, event: 'asymmetric_begin', ts_ns: T_FAIL + 30 * MS, seq: 10124,
    fwd_path: 'ipsec', rev_path: 'express-connect' }),
  ev({ id: 6, event_id: 6, event: 'switchover', direction: 'reverse', ts_ns: REV_FAIL + 30 * MS, seq: 10324,
    from: 'express-connect', to: 'ipsec', last_ok_on_old_ns: REV_FAIL - 9.8 * MS, first_ok_on_new_ns: REV_FAIL,
    outage_ns: 9.8 * MS, probes_lost: 0, probes_lost_undetermined: 0, outage_kind: 'bound',
    resolution_ns: 10 * MS, failback: false }),
  ev({ id: 7, event_id: 7, event: 'asymmetric_end', ts_ns: REV_FAIL + 30 * MS, seq: 10324,
    fwd_path: 'ipsec', rev_path: 'ipsec', duration_ns: 2 * S }),
  ev({ id: 8, event_id: 8, event: 'switchover', direction: 'forward', ts_ns: T_BACK + 30 * MS, seq: 46124,
    from: 'ipsec', to: 'express-connect', last_ok_on_old_ns: BACK_LAST_OK, first_ok_on_new_ns: T_BACK,
    outage_ns: 850.2 * MS, probes_lost: 85, probes_lost_undetermined: 2, outage_kind: 'measured',
    resolution_ns: 10 * MS, failback: true }),
  ev({ id: 9, event_id: 9, event: 'switchover', direction: 'reverse', ts_ns: REV_BACK + 30 * MS, seq: 46224,
    from: 'ipsec', to: 'express-connect', last_ok_on_old_ns: REV_BACK - 12 * MS, first_ok_on_new_ns: REV_BACK,
    outage_ns: 12 * MS, probes_lost: 0, probes_lost_undetermined: 0, outage_kind: 'bound',
    resolution_ns: 10 * MS, failback: true }),
  hc({ id: 12, event_id: 12, event: 'healthcheck_recovered', ts_ns: now0 - 300 * S, unanswered: 2,
    duration_ns: 4 * S, reason: 'answered' }),
  // Another agent sees no health check on its line (no targets of its own in the fixture).
  hc({ id: 15, event_id: 1, agent: 'dc2', run: '77aa00bb11cc22dd', tap: 'ens4', target: '10.1.4.2',
    prober: '', event: 'healthcheck_absent', ts_ns: now0 - 120 * S, unanswered: 0, duration_ns: 6.5 * S }),
];
// Pushed over SSE 1 s after a client connects (made once: a reconnect sees the same event).
let live = null;
const liveEvent = () => {
  if (live) return live;
  const t = Math.floor(Date.now() / 1000) * S;
  live = ev({
    id: 10, event_id: 10, event: 'switchover', direction: 'forward', ts_ns: t, seq: 90001,
    from: 'express-connect', to: 'ipsec', last_ok_on_old_ns: t - 640 * MS, first_ok_on_new_ns: t,
    outage_ns: 640 * MS, probes_lost: 64, probes_lost_undetermined: 1, outage_kind: 'measured',
    resolution_ns: 10 * MS, failback: false,
  });
  return live;
};

const dir = (path, since, rtt, lost = {}) => ({
  path, since_ns: since, sent: 100, received: 100 - (lost.f ?? 0) - (lost.r ?? 0) - (lost.u ?? 0),
  lost: (lost.f ?? 0) + (lost.r ?? 0) + (lost.u ?? 0), lost_forward: lost.f ?? 0,
  lost_reverse: lost.r ?? 0, lost_undetermined: lost.u ?? 0, rtt_p50_ns: rtt, rtt_mean_ns: rtt + 0.2 * MS,
  jitter_ns: 0.4 * MS,
});
let liveSwitched = false;
const stateNow = () => {
  const second = Math.floor(Date.now() / 1000) * S - S;
  const fwd = liveSwitched ? dir('ipsec', liveEvent().ts_ns, 25.1 * MS) : dir('express-connect', T_BACK, 12.3 * MS);
  return { agent: AGENT, target: TARGET, proto: PROTO, second_ns: second, forward: fwd,
    reverse: dir('express-connect', REV_BACK, 12.3 * MS) };
};
const targets = () => ({
  targets: [
    { agent: AGENT, target: TARGET, proto: PROTO, session_id: SESSION, run: RUN, first_ns: now0 - 3600 * S,
      last_ns: now0, state: (({ second_ns, forward, reverse }) => ({ second_ns, forward, reverse }))(stateNow()) },
    { agent: AGENT, target: '10.20.0.2', proto: 'stamp', session_id: 8, run: RUN, first_ns: now0 - 3600 * S,
      last_ns: now0, state: null },
  ],
});

// Probes of the drill between from and to: forward EC until the failover's outage, lost (proven
// forward, a few undetermined) during it, IPsec until the failback's outage, EC after; reverse
// switches at REV_FAIL / REV_BACK without loss. At most `limit` probes, evenly spaced.
function probes(from, to, limit) {
  const n = Math.max(0, Math.min(limit, Math.floor((to - from) / MS)));
  const step = n > 0 ? (to - from) / n : 0;
  const c = { agent: [], proto: [], seq: [], tx_ns: [], rtt_ns: [], fwd_path: [], rev_path: [], loss: [] };
  let rnd = 12345;
  const noise = () => { rnd = (rnd * 1103515245 + 12345) % 2147483648; return rnd / 2147483648; };
  for (let i = 0; i < n; i++) {
    const t = Math.round(from + i * step);
    const inFail = t > FAIL_LAST_OK && t < T_FAIL;
    const inBack = t > BACK_LAST_OK && t < T_BACK;
    const fwd = t <= FAIL_LAST_OK ? 'express-connect' : t < T_BACK && !inBack ? 'ipsec' : 'express-connect';
    const rev = t < REV_FAIL ? 'express-connect' : t < REV_BACK ? 'ipsec' : 'express-connect';
    c.agent.push(AGENT); c.proto.push(PROTO); c.seq.push(Math.floor((t - (now0 - 3600 * S)) / (10 * MS)));
    c.tx_ns.push(t);
    if (inFail || inBack) {
      c.rtt_ns.push(null); c.fwd_path.push(fwd === 'ipsec' && inBack ? 'ipsec' : 'express-connect');
      c.rev_path.push('none'); c.loss.push(noise() < 0.02 ? 'undetermined' : 'forward');
    } else {
      const base = (fwd === 'ipsec' ? 20 : 10) + (rev === 'ipsec' ? 5 : 2);
      c.rtt_ns.push(Math.round((base + noise() * 1.5) * MS)); c.fwd_path.push(fwd); c.rev_path.push(rev);
      c.loss.push(null);
    }
  }
  return { columns: c, truncated: n === limit && (to - from) / MS > limit };
}

const send = (res, code, body, type = 'application/json') => {
  const b = typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
  res.writeHead(code, { 'Content-Type': type, 'Cache-Control': 'no-store' });
  res.end(b);
};
const ALLOWED = {
  '/api/v1/targets': [], '/api/v1/agents': [],
  '/api/v1/events': ['since', 'until', 'target', 'kind', 'agent', 'limit'],
  '/api/v1/series': ['target', 'proto', 'agent', 'from', 'to', 'step'],
  '/api/v1/probes': ['target', 'proto', 'agent', 'from', 'to', 'limit', 'format'],
  '/api/v1/stream': [], '/api/v1/healthchecks': ['agent'],
};
const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8' };
const ns = (v) => (/^\d+$/.test(v) ? Number(v) : Date.parse(v) * MS);

const streams = new Set();
const waiting = new Set();  // streams whose new event waits for /__fixture/arm
let armed = false;
const server = createServer((req, res) => {
  const url = new URL(req.url, 'http://127.0.0.1');
  const p = url.pathname;
  if (p in ALLOWED) {
    for (const k of url.searchParams.keys()) {
      if (!ALLOWED[p].includes(k)) return send(res, 400, { error: `unknown query parameter '${k}'` });
    }
  }
  const q = (k) => url.searchParams.get(k);
  switch (p) {
    case '/api/v1/agents':
      return send(res, 200, { agents: [{ name: AGENT, version: '0.1.0', last_run: RUN, first_seen_ns: now0 - 3600 * S,
        last_seen_ns: now0, batches: 3600 }] });
    case '/api/v1/targets':
      return send(res, 200, targets());
    case '/api/v1/healthchecks':
      return send(res, 200, { healthchecks: healthchecks(q('agent')), truncated: false });
    case '/api/v1/events': {
      const limit = Number(q('limit') ?? 1000);
      const list = [...events].sort((a, b) => b.ts_ns - a.ts_ns || b.id - a.id).slice(0, limit);
      return send(res, 200, { events: list });
    }
    case '/api/v1/probes': {
      if (q('format') !== 'columns') return send(res, 400, { error: 'the fixture serves format=columns only' });
      if (!q('from') || !q('to')) return send(res, 400, { error: 'from and to are required by the fixture' });
      const limit = Number(q('limit') ?? 100000);
      if (q('target') && q('target') !== TARGET) return send(res, 200, { columns: probes(0, 0, 0).columns, truncated: false });
      return send(res, 200, probes(ns(q('from')), ns(q('to')), limit));
    }
    case '/api/v1/series':
      return send(res, 200, { step_ns: Number(q('step') ?? 1) * S, points: [] });
    case '/api/v1/stream': {
      res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-store', Connection: 'keep-alive' });
      const state = () => res.write(`event: state\ndata: ${JSON.stringify(stateNow())}\n\n`);
      state();
      const tick = setInterval(state, 1000);
      // The new event, 1 s after the stream opens (with --hold-live: 1 s after POST /__fixture/arm,
      // so a test on a busy machine sees the page before it).
      let once = null;
      const push = () => {
        once = setTimeout(() => {
          liveSwitched = true;
          const e = liveEvent();
          if (!events.includes(e)) events.push(e);
          res.write(`id: ${e.id}\nevent: event\ndata: ${JSON.stringify(e)}\n\n`);
          state();
        }, 1000);
      };
      if (!holdLive || armed) push(); else waiting.add(push);
      const keep = setInterval(() => res.write(': keepalive\n\n'), 15000);
      streams.add(res);
      req.on('close', () => {
        streams.delete(res); waiting.delete(push); clearInterval(tick); clearTimeout(once); clearInterval(keep);
      });
      return undefined;
    }
    case '/__fixture/arm': {
      if (req.method !== 'POST') return send(res, 405, { error: 'POST only' });
      armed = true;
      const n = waiting.size;
      for (const f of waiting) f();
      waiting.clear();
      return send(res, 200, { armed: n });
    }
    case '/__fixture/drop': {
      // Test hook: end every open stream (the page must reconnect) and record an event while
      // no stream is open (the page must fetch it after reconnecting).
      if (req.method !== 'POST') return send(res, 405, { error: 'POST only' });
      const t = Math.floor(Date.now() / 1000) * S;
      if (!events.some((e) => e.id === 11)) {
        events.push({ id: 11, event: 'tap_down', agent: AGENT, run: RUN, event_id: 11, tap: 'eth1',
          path: 'express-connect', reason: 'recvfrom: Network is down', ts_ns: t, detected_ns: t + 5 * MS });
      }
      const n = streams.size;
      for (const r of streams) r.end();
      streams.clear();
      return send(res, 200, { dropped: n });
    }
    case '/__fixture/healthcheck': {
      // Test hook: line eth1's health check degrades (3 of 8 unanswered, 2 s interval: the cloud
      // moves the return path in 10 s), or is answered again; sent to every open stream.
      if (req.method !== 'POST') return send(res, 405, { error: 'POST only' });
      const t = Date.now() * MS;
      let e;
      if (q('step') === 'degraded') {
        e = hc({ id: 13, event_id: 13, event: 'healthcheck_degraded', ts_ns: t, unanswered: 3,
          duration_ns: 6 * S, eta_ns: 10 * S });
      } else if (q('step') === 'blocked') {
        e = hc({ id: 16, event_id: 16, event: 'healthcheck_blocked', ts_ns: t, unanswered: 4, duration_ns: 8 * S,
          eta_ns: 8 * S, reason: 'the agent\'s probes cross the line (loss 0 %)' });
      } else if (q('step') === 'recovered') {
        e = hc({ id: 14, event_id: 14, event: 'healthcheck_recovered', ts_ns: t, unanswered: 4,
          duration_ns: 8 * S, reason: 'answered' });
      } else {
        return send(res, 400, { error: 'step must be degraded, blocked or recovered' });
      }
      if (!events.some((x) => x.id === e.id)) events.push(e);
      for (const r of streams) r.write(`id: ${e.id}\nevent: event\ndata: ${JSON.stringify(e)}\n\n`);
      return send(res, 200, { sent: streams.size });
    }
    case '/healthz':
      return send(res, 200, { status: 'ok', schema_version: 1 });
    default:
      break;
  }
  if (req.method !== 'GET') return send(res, 405, { error: 'method not allowed' });
  const file = p === '/' ? 'index.html' : normalize(p).replace(/^\/+/, '');
  if (file.startsWith('..') || !/^(index\.html|assets\/[\w.-]+)$/.test(file)) return send(res, 404, { error: 'not found' });
  const full = join(dist, file);
  if (!existsSync(full)) return send(res, 404, { error: 'not found' });
  const ext = file.slice(file.lastIndexOf('.'));
  return send(res, 200, readFileSync(full), TYPES[ext] ?? 'application/octet-stream');
});
server.listen(port, '127.0.0.1', () => {
  console.log(`listening http://127.0.0.1:${server.address().port}/`);
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => { server.closeAllConnections?.(); server.close(() => process.exit(0)); });
