// pathsentry's status page: current paths per target and direction, the event timeline, the
// probes around a chosen event, kept live by the collector's SSE stream (no reload, reconnects).
// Redraws are throttled (at most one per second for state), no animation loop runs.
import 'uplot/dist/uPlot.min.css';
import './style.css';
import {
  pathName, pathClass, fmtMs, fmtDuration, fmtTime, dirLong, eventTitle, eventFigures,
  isStreamEvent, isHealthcheck, nsParam, hcLineFromEvent, hcKey, hcNewer, hcView, hcInRow,
} from './format.js';
import { drawChart, txOrder, rttBeforeAfter, describe } from './chart.js';

const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({
  '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
})[c]);

const RENDER_MS = 1000;       // at most one redraw of the targets per second
const STALE_NS = 10e9;        // a target whose latest second is older than this is stale
const MAX_EVENTS = 500;       // timeline length kept in the page
const WINDOW_NS = 60e9;       // probes shown before and after an event
const PROBE_LIMIT = 100000;

const targets = new Map();    // "agent|target|proto" -> target row (with .state)
const hcLines = new Map();    // "agent|tap" -> the line's health-check state (/healthchecks)
const events = new Map();     // row id -> event
const eventEls = new Map();   // row id -> <li>
const htmlOf = new WeakMap(); // <li> -> the HTML it shows
const rttCache = new Map();   // row id -> "RTT before … after …" text
let selected = null;          // row id of the event whose probes are drawn
let charts = [];

const tkey = (o) => `${o.agent}|${o.target}|${o.proto}`;

async function getJson(path) {
  const r = await fetch(path, { headers: { Accept: 'application/json' } });
  if (!r.ok) {
    let msg = `HTTP ${r.status}`;
    try { msg = (await r.json()).error || msg; } catch { /* not JSON */ }
    throw new Error(`${path.split('?')[0]}: ${msg}`);
  }
  return r.json();
}

// ---- throttled rendering ----------------------------------------------------------------
const dirty = { targets: false, events: false, hc: false };
let renderTimer = null;
let lastRender = 0;
function schedule(what) {
  dirty[what] = true;
  if (renderTimer !== null) return;
  const wait = Math.max(0, lastRender + RENDER_MS - Date.now());
  renderTimer = setTimeout(() => {
    renderTimer = null;
    lastRender = Date.now();
    if (dirty.targets) { dirty.targets = false; renderTargets(); renderFilter(); }
    if (dirty.events) { dirty.events = false; renderEvents(); }
    if (dirty.hc) { dirty.hc = false; renderHealthchecks(); }
  }, wait);
}

// ---- current paths ------------------------------------------------------------------------
function dirBlock(name, d, now) {
  if (!d) {
    return `<div class="dir" data-dir="${name}"><div class="dir-name">${dirLong(name)}</div>
      <div class="path p-none">no data</div></div>`;
  }
  const since = d.since_ns
    ? `since ${fmtTime(d.since_ns, now)} (for ${fmtDuration(now * 1e6 - d.since_ns)})`
    : 'since: not known';
  const lost = d.lost ?? 0;
  const pct = d.sent ? (100 * lost) / d.sent : 0;
  const parts = [];
  if (d.lost_forward) parts.push(`forward ${d.lost_forward}`);
  if (d.lost_reverse) parts.push(`reverse ${d.lost_reverse}`);
  if (d.lost_undetermined) parts.push(`undetermined ${d.lost_undetermined}`);
  const lossText = `${pct.toFixed(pct > 0 && pct < 1 ? 2 : 0)} % (${lost} of ${d.sent ?? 0}` +
    `${parts.length ? `: ${parts.join(', ')}` : ''})`;
  return `<div class="dir" data-dir="${name}">
    <div class="dir-name">${dirLong(name)}</div>
    <div class="path ${pathClass(d.path)}" data-path="${esc(d.path)}">${esc(pathName(d.path))}</div>
    <div class="since">${since}</div>
    <dl class="figs">
      <div><dt>RTT</dt><dd>${fmtMs(d.rtt_p50_ns ?? d.rtt_mean_ns)}</dd></div>
      <div><dt>jitter</dt><dd>${fmtMs(d.jitter_ns)}</dd></div>
      <div><dt>loss</dt><dd>${lossText}</dd></div>
    </dl></div>`;
}

function renderTargets() {
  const el = $('targets');
  if (targets.size === 0) {
    el.innerHTML = '<p class="muted">No targets yet: no agent has shipped probes.</p>';
    return;
  }
  const now = Date.now();
  const byAgent = new Map();
  for (const t of [...targets.values()].sort((a, b) => tkey(a).localeCompare(tkey(b)))) {
    if (!byAgent.has(t.agent)) byAgent.set(t.agent, []);
    byAgent.get(t.agent).push(t);
  }
  let html = '';
  for (const [agent, list] of byAgent) {
    html += `<div class="agent"><h3 class="agent-name">agent ${esc(agent)}</h3><div class="cards">`;
    for (const t of list) {
      const st = t.state;
      const stale = !st || now * 1e6 - st.second_ns > STALE_NS;
      const staleText = !st ? 'no complete second yet'
        : stale ? `no data since ${fmtTime(st.second_ns, now)}` : `as of ${fmtTime(st.second_ns, now)}`;
      html += `<article class="card${stale ? ' stale' : ''}" data-key="${esc(tkey(t))}">
        <h4>${esc(t.target)} <span class="proto">${esc(t.proto)}</span></h4>
        <p class="asof">${staleText}</p>
        ${dirBlock('forward', st && st.forward, now)}
        ${dirBlock('reverse', st && st.reverse, now)}
      </article>`;
    }
    html += '</div></div>';
  }
  el.innerHTML = html;
}

// ---- the cloud's health check of each line ----------------------------------------------------
// One panel per line (agent · tap): the state, k of N, the interval, the prober, and while the
// check degrades or is blocked a countdown to the cloud's move of the return path, ticked once a
// second from the event's eta (only while something counts down).
let hcTicker = null;
let hcError = null;           // why /healthchecks could not be loaded (shown instead of "unknown")

function hcHtml(l, now) {
  const v = hcView(l, now);
  const eta = v.counting === null ? ''
    : `<p class="hc-eta" data-move-at="${l.move_at_ns}" data-seconds="${v.counting}">${esc(v.text)}</p>`;
  const text = v.counting === null ? `<p class="hc-text">${esc(v.text)}</p>` : '';
  return `<article class="hc ${v.cls}" data-key="${esc(hcKey(l))}" data-state="${esc(l.state)}">
    <h4>${esc(l.tap)} <span class="proto">${esc(pathName(l.path))}</span> → ${esc(l.target)}</h4>
    <p class="hc-state">${esc(v.label)}</p>${eta}${text}
    <dl class="figs">
      <div><dt>unanswered</dt><dd class="hc-kn">${hcInRow(l)} of ${l.fall}</dd></div>
      <div><dt>interval</dt><dd>${l.interval_ns ? fmtDuration(l.interval_ns) : 'not known'}</dd></div>
      <div><dt>prober</dt><dd>${esc(l.prober || '–')}</dd></div>
    </dl></article>`;
}

function tickCountdowns() {
  const now = Date.now();
  let any = false;
  for (const el of document.querySelectorAll('#healthchecks .hc-eta')) {
    const l = hcLines.get(el.closest('.hc').dataset.key);
    if (!l) continue;
    const v = hcView(l, now);
    if (v.counting === null) continue;
    any = true;
    if (el.dataset.seconds !== String(v.counting)) {
      el.dataset.seconds = String(v.counting);
      el.textContent = v.text;
    }
  }
  if (!any && hcTicker !== null) { clearInterval(hcTicker); hcTicker = null; }
}

function renderHealthchecks() {
  const el = $('healthchecks');
  const now = Date.now();
  const agents = new Set([...targets.values()].map((t) => t.agent));
  for (const l of hcLines.values()) agents.add(l.agent);
  let html = hcError ? `<p class="error">Could not load the health checks: ${esc(hcError)}</p>` : '';
  if (agents.size === 0) {
    el.innerHTML = html || '<p class="muted">No agent yet.</p>';
    return;
  }
  for (const agent of [...agents].sort()) {
    const lines = [...hcLines.values()].filter((l) => l.agent === agent)
      .sort((a, b) => hcKey(a).localeCompare(hcKey(b)));
    html += `<div class="agent"><h3 class="agent-name">agent ${esc(agent)}</h3>`;
    html += lines.length === 0
      ? `<p class="muted hc-unknown">health check: unknown (${hcError ? 'not loaded' : 'no health-check event from this agent'})</p>`
      : `<div class="cards">${lines.map((l) => hcHtml(l, now)).join('')}</div>`;
    html += '</div>';
  }
  el.innerHTML = html;
  const counting = [...hcLines.values()].some((l) => hcView(l, now).counting !== null);
  if (counting && hcTicker === null) hcTicker = setInterval(tickCountdowns, 1000);
  if (!counting && hcTicker !== null) { clearInterval(hcTicker); hcTicker = null; }
}

function mergeHealthcheck(line) {
  const k = hcKey(line);
  if (hcNewer(line, hcLines.get(k))) {
    hcLines.set(k, line);
    schedule('hc');
  }
}

// ---- timeline -------------------------------------------------------------------------------
function eventHtml(e) {
  const where = isStreamEvent(e) ? `${esc(e.agent)} · ${esc(e.target)} ${esc(e.proto)}`
    : isHealthcheck(e) ? `${esc(e.agent)} · tap ${esc(e.tap)} · health check ${e.prober ? `${esc(e.prober)} ` : ''}→ ${esc(e.target)}`
      : `${esc(e.agent)} · tap ${esc(e.tap)}`;
  const figs = eventFigures(e).map((f) => `<span class="fig">${esc(f)}</span>`);
  if (rttCache.has(e.id)) figs.push(`<span class="fig rtt">${esc(rttCache.get(e.id))}</span>`);
  const kind = e.event === 'switchover' && e.failback ? 'failback' : e.event;
  const body = `<span class="ev-time">${fmtTime(e.ts_ns)}</span>
    <span class="ev-title">${esc(eventTitle(e))}</span>
    <span class="ev-where">${where}</span>
    <span class="ev-figs">${figs.join(' ')}</span>`;
  return isStreamEvent(e)
    ? `<button type="button" class="ev ev-${kind}" data-id="${e.id}"
        aria-pressed="${selected === e.id}">${body}</button>`
    : `<div class="ev ev-${kind}">${body}</div>`;
}

function sortedEvents() {
  return [...events.values()].sort((a, b) => (b.ts_ns - a.ts_ns) || (b.id - a.id));
}

// The timeline's filter: "" = everything, else one target key (its agent's tap events too).
function renderFilter() {
  const sel = $('filter');
  const keys = [...targets.keys()].sort();
  const have = [...sel.options].slice(1).map((o) => o.value);
  if (keys.join('\n') === have.join('\n')) return;
  const cur = sel.value;
  sel.replaceChildren(new Option('all targets', ''), ...keys.map((k) => {
    const [agent, target, proto] = k.split('|');
    return new Option(`${agent} · ${target} ${proto}`, k);
  }));
  sel.value = keys.includes(cur) ? cur : '';
}

function shown(e) {
  const f = $('filter').value;
  if (!f) return true;
  if (!isStreamEvent(e)) return f.startsWith(`${e.agent}|`);
  return tkey(e) === f;
}

function renderEvents() {
  const list = $('events');
  let evs = sortedEvents();
  while (evs.length > MAX_EVENTS) events.delete(evs.pop().id);
  evs = evs.filter(shown);
  if (evs.length === 0) {
    list.innerHTML = '<li class="muted">No events.</li>';
    eventEls.clear();
    return;
  }
  for (const el of list.querySelectorAll('li.muted')) el.remove();
  const keep = new Set(evs.map((e) => e.id));
  for (const [id, el] of eventEls) {
    if (!keep.has(id)) { el.remove(); eventEls.delete(id); }
  }
  evs.forEach((e, i) => {
    let li = eventEls.get(e.id);
    const html = eventHtml(e);
    if (!li) {
      li = document.createElement('li');
      li.dataset.id = e.id;
      eventEls.set(e.id, li);
    }
    if (htmlOf.get(li) !== html) { li.innerHTML = html; htmlOf.set(li, html); }
    if (list.children[i] !== li) list.insertBefore(li, list.children[i] || null);
  });
}

function addEvent(e, live) {
  if (typeof e.id !== 'number' || events.has(e.id)) return;
  events.set(e.id, e);
  if (isHealthcheck(e)) mergeHealthcheck(hcLineFromEvent(e));
  if (live) $('live-note').textContent = `New event: ${eventTitle(e)}`;
  schedule('events');
}

// ---- probes around an event ----------------------------------------------------------------
async function showEvent(id) {
  const e = events.get(id);
  if (!e || !isStreamEvent(e)) return;
  selected = id;
  schedule('events');
  const sec = $('detail');
  sec.hidden = false;
  sec.scrollIntoView({ block: 'start' });
  $('detail-title').textContent = `${fmtTime(e.ts_ns)} · ${e.agent} · ${e.target} ${e.proto} · ${eventTitle(e)}`;
  $('detail-summary').textContent = 'loading probes…';
  const t0 = Math.min(e.ts_ns, e.last_ok_on_old_ns || e.ts_ns) - WINDOW_NS;
  const t1 = Math.max(e.ts_ns, e.first_ok_on_new_ns || e.ts_ns) + WINDOW_NS;
  const q = new URLSearchParams({
    format: 'columns', agent: e.agent, target: e.target, proto: e.proto,
    from: nsParam(t0), to: nsParam(t1), limit: String(PROBE_LIMIT),
  });
  let data;
  try {
    data = await getJson(`api/v1/probes?${q}`);
  } catch (err) {
    if (selected === id) $('detail-summary').textContent = `Could not load the probes: ${err.message}`;
    return;
  }
  if (selected !== id) return;
  const cols = data.columns;
  const started = performance.now();
  const order = txOrder(cols);
  for (const c of charts) c.destroy();
  charts = [];
  const width = Math.max(280, sec.clientWidth - 4);
  const fwd = drawChart($('chart-fwd'), cols, order, 'forward', e, width);
  const rev = drawChart($('chart-rev'), cols, order, 'reverse', e, width);
  charts = [fwd.plot, rev.plot];
  // uPlot draws in a microtask after construction: count the drawing too.
  await new Promise((r) => { setTimeout(r, 0); });
  if (selected !== id) return;
  const ms = performance.now() - started;
  const ba = rttBeforeAfter(cols, e);
  let baText = '';
  if (ba && (ba.before !== null || ba.after !== null)) {
    baText = `RTT before ${fmtMs(ba.before)} (${pathName(e.from)}), after ${fmtMs(ba.after)} (${pathName(e.to)})`;
    rttCache.set(id, baText);
    schedule('events');
  }
  const n = cols.tx_ns.length;
  const summary = $('detail-summary');
  summary.dataset.points = String(n);
  summary.dataset.renderMs = ms.toFixed(1);
  summary.textContent = `${n.toLocaleString('en-US')} probes from ${fmtTime(t0)} to ${fmtTime(t1)}` +
    `${data.truncated ? ' (truncated: more probes than shown)' : ''}. ${describe(fwd.series, 'forward')}; ` +
    `${describe(rev.series, 'reverse')}.${baText ? ` ${baText}.` : ''} Dashed line: the event; ` +
    'shaded: from the last probe through on the old path to the first on the new. Drag across ' +
    'a chart to zoom in, double-click to zoom out.';
}

function closeDetail() {
  selected = null;
  for (const c of charts) c.destroy();
  charts = [];
  $('detail').hidden = true;
  schedule('events');
}

let resizeTimer = null;
window.addEventListener('resize', () => {
  if (resizeTimer !== null) return;
  resizeTimer = setTimeout(() => {
    resizeTimer = null;
    const w = Math.max(280, $('detail').clientWidth - 4);
    for (const c of charts) c.setSize({ width: w, height: w < 500 ? 220 : 280 });
  }, 250);
});

// ---- data: initial load, live stream, resync after a reconnect -----------------------------
function setConn(text, cls) {
  const el = $('conn');
  el.textContent = text;
  el.className = `conn ${cls || ''}`;
}

function mergeTargets(rows) {
  for (const t of rows) {
    const k = tkey(t);
    const old = targets.get(k);
    if (!old || (t.last_ns ?? 0) >= (old.last_ns ?? 0)) {
      targets.set(k, { ...t, state: t.state ?? (old && old.state) ?? null });
    }
  }
  schedule('targets');
  schedule('hc');
}

async function load() {
  // The health checks apart: the paths and events are shown even if that answer fails.
  const hcLoad = getJson('api/v1/healthchecks').then((hc) => {
    hcError = null;
    for (const l of hc.healthchecks || []) mergeHealthcheck(l);
    schedule('hc');
  }, (err) => {
    hcError = err.message;
    schedule('hc');
  });
  const [t, ev] = await Promise.all([
    getJson('api/v1/targets'),
    getJson(`api/v1/events?limit=${MAX_EVENTS}`),
  ]);
  mergeTargets(t.targets || []);
  await hcLoad;
  for (const e of ev.events || []) addEvent(e, false);
  schedule('events');
}

let es = null;
let retry = null;
let broken = false;
function connect() {
  es = new EventSource('api/v1/stream');
  es.addEventListener('open', () => {
    setConn('live', 'ok');
    // After a break the stream resumes from Last-Event-ID; a new EventSource has none, and
    // state is not replayed: reload both to be sure nothing was missed.
    if (broken) { broken = false; load().catch((err) => setConn(`live (reload failed: ${err.message})`, 'warn')); }
  });
  es.addEventListener('state', (m) => {
    let s;
    try { s = JSON.parse(m.data); } catch { return; }
    const k = tkey(s);
    const t = targets.get(k) || { agent: s.agent, target: s.target, proto: s.proto };
    t.state = { second_ns: s.second_ns, forward: s.forward, reverse: s.reverse };
    t.last_ns = Math.max(t.last_ns ?? 0, s.second_ns);
    if (!targets.has(k)) schedule('hc');
    targets.set(k, t);
    schedule('targets');
  });
  es.addEventListener('event', (m) => {
    let e;
    try { e = JSON.parse(m.data); } catch { return; }
    addEvent(e, true);
  });
  es.addEventListener('error', () => {
    broken = true;
    setConn('reconnecting…', 'warn');
    if (es.readyState === EventSource.CLOSED) {
      // The browser gave up (an HTTP error, say): start again ourselves.
      es.close();
      clearTimeout(retry);
      retry = setTimeout(connect, 5000);
    }
  });
}

$('events').addEventListener('click', (ev) => {
  const b = ev.target.closest('button.ev');
  if (b) showEvent(Number(b.dataset.id));
});
$('detail-close').addEventListener('click', closeDetail);
$('filter').addEventListener('change', () => renderEvents());
// Durations ("for 3 min") age even when no message comes; one cheap refresh every 15 s.
setInterval(() => schedule('targets'), 15000);

connect();
load().catch((err) => {
  $('targets').innerHTML = `<p class="error">Could not load: ${esc(err.message)}</p>`;
  $('healthchecks').innerHTML = '';
});
