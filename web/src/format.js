// Words for what the collector's JSON says: path labels, durations, times and the figures of an
// event. Pure functions (no DOM), shared by the page and its tests.

/** A path as people say it: tap labels mapped to their names, the attributor's values spelled. */
export function pathName(p) {
  if (p === null || p === undefined) return 'no data';
  switch (p) {
    case 'express-connect': return 'Express Connect';
    case 'ipsec': return 'IPsec';
    case 'down':
    case 'none': return 'down';
    case 'undetermined': return 'undetermined';
    case 'unknown': return 'unknown';
    case '': return 'not attributed';
    default: return p;
  }
}

/** A CSS class per path so colours follow the words (never replace them). */
export function pathClass(p) {
  switch (p) {
    case 'express-connect': return 'p-ec';
    case 'ipsec': return 'p-ipsec';
    case 'down':
    case 'none': return 'p-down';
    case 'undetermined': return 'p-undet';
    case 'unknown': return 'p-unknown';
    case '':
    case null:
    case undefined: return 'p-none';
    default: return 'p-other';
  }
}

const nf = (digits) => new Intl.NumberFormat('en-US', {
  minimumFractionDigits: digits, maximumFractionDigits: digits,
});
const nf0 = nf(0), nf1 = nf(1), nf2 = nf(2), nf3 = nf(3);

/** Nanoseconds as milliseconds with sensible digits ("0.412 ms", "12.34 ms", "1,234.5 ms"). */
export function fmtMs(ns) {
  if (ns === null || ns === undefined) return '–';
  const ms = ns / 1e6;
  const a = Math.abs(ms);
  const f = a < 1 ? nf3 : a < 100 ? nf2 : a < 100000 ? nf1 : nf0;
  return `${f.format(ms)} ms`;
}

/** A duration for people: "850 ms", "4.2 s", "3 min 5 s", "2 h 4 min", "3 d 2 h". */
export function fmtDuration(ns) {
  if (ns === null || ns === undefined || !Number.isFinite(ns)) return '–';
  const s = ns / 1e9;
  if (s < 1) return `${nf0.format(s * 1000)} ms`;
  if (s < 60) return `${nf1.format(s)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.floor(s % 60)} s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${m % 60} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

const pad = (n, w = 2) => String(n).padStart(w, '0');

/** Wall-clock time of an ns timestamp, local time, ms resolution; the date when not today. */
export function fmtTime(ns, now = Date.now()) {
  if (ns === null || ns === undefined) return '–';
  const d = new Date(ns / 1e6);
  const t = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
  const today = new Date(now);
  if (d.getFullYear() === today.getFullYear() && d.getMonth() === today.getMonth() &&
      d.getDate() === today.getDate()) {
    return t;
  }
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${t}`;
}

export const dirName = (d) => (d === 'reverse' ? 'reverse' : 'forward');
export const dirLong = (d) =>
  (d === 'reverse' ? 'Reverse (cloud → DC)' : 'Forward (DC → cloud)');

const isTap = (e) => e.event === 'tap_down' || e.event === 'tap_up';
/** The cloud's health check of a line (healthcheck_*): a line's event, not a probe stream's. */
export const isHealthcheck = (e) => typeof e.event === 'string' && e.event.startsWith('healthcheck_');
export const isStreamEvent = (e) => !isTap(e) && !isHealthcheck(e);

/** The event's headline in words. */
export function eventTitle(e) {
  const dir = dirName(e.direction);
  switch (e.event) {
    case 'switchover':
      return `${e.failback ? 'Failback' : 'Switchover'}, ${dir}: ${pathName(e.from)} → ${pathName(e.to)}`;
    case 'outage_begin':
      return `Outage began, ${dir} (was on ${pathName(e.from)})`;
    case 'outage_end':
      return `Outage ended, ${dir}: through again on ${pathName(e.to)}`;
    case 'asymmetric_begin':
      return `Asymmetric paths began: forward ${pathName(e.fwd_path)}, reverse ${pathName(e.rev_path)}`;
    case 'asymmetric_end':
      return `Asymmetric paths ended: forward ${pathName(e.fwd_path)}, reverse ${pathName(e.rev_path)}`;
    case 'tap_down':
      return `Tap down: ${e.tap} (${pathName(e.path)})`;
    case 'tap_up':
      return `Tap up: ${e.tap} (${pathName(e.path)})`;
    case 'healthcheck_degraded':
      return `Health check degraded: ${e.tap} (${pathName(e.path)}), ${e.unanswered} of ${e.fall} unanswered`;
    case 'healthcheck_failed':
      return `Health check failed: ${e.tap} (${pathName(e.path)}), the cloud moves the return path to IPsec`;
    case 'healthcheck_blocked':
      return `Health check blocked: ${e.tap} (${pathName(e.path)}), false failover coming although the line works`;
    case 'healthcheck_absent':
      return `Health check absent: ${e.tap} (${pathName(e.path)})`;
    case 'healthcheck_recovered':
      return `Health check recovered: ${e.tap} (${pathName(e.path)})`;
    default:
      return `Event ${e.event}`;
  }
}

/** The outage figure with what it is (measured, a bound, undetermined direction). */
export function outageFigure(e) {
  if (e.outage_ns === undefined || e.outage_ns === null) return null;
  const ms = fmtMs(e.outage_ns);
  switch (e.outage_kind) {
    case 'measured': {
      if (e.resolution_ns > 0) {
        const lo = Math.max(0, e.outage_ns - e.resolution_ns);
        return `outage ${ms}, measured (between ${fmtMs(lo)} and ${ms})`;
      }
      return `outage ${ms}, measured`;
    }
    case 'bound':
      return `outage at most ${ms} (no probe lost)`;
    case 'undetermined':
      return `outage at most ${ms}, undetermined (losses of undetermined direction)`;
    default:
      return `outage ${ms}`;
  }
}

/** The event's figures, each a short phrase. */
export function eventFigures(e) {
  const out = [];
  switch (e.event) {
    case 'switchover':
    case 'outage_end': {
      const o = outageFigure(e);
      if (o) out.push(o);
      out.push(`probes lost ${dirName(e.direction)}: ${e.probes_lost ?? 0}`);
      out.push(`lost, direction undetermined: ${e.probes_lost_undetermined ?? 0}`);
      break;
    }
    case 'outage_begin':
      out.push(`probes lost ${dirName(e.direction)}: ${e.probes_lost ?? 0}`);
      out.push(`lost, direction undetermined: ${e.probes_lost_undetermined ?? 0}`);
      out.push(e.outage_kind === 'measured' ? 'losses proven in this direction'
        : e.outage_kind === 'undetermined' ? 'direction of the losses undetermined'
          : `kind ${e.outage_kind}`);
      if (e.last_ok_on_old_ns) out.push(`last probe through ${fmtTime(e.last_ok_on_old_ns)}`);
      break;
    case 'asymmetric_end':
      if (e.duration_ns) out.push(`lasted ${fmtDuration(e.duration_ns)}`);
      break;
    case 'tap_down':
      if (e.reason) out.push(`reason: ${e.reason}`);
      break;
    case 'tap_up':
      if (e.duration_ns) out.push(`was down ${fmtDuration(e.duration_ns)}`);
      break;
    case 'healthcheck_degraded':
    case 'healthcheck_blocked':
      out.push(`the cloud moves the return path to IPsec in ≈ ${fmtSeconds(e.eta_ns)} unless answers resume`);
      if (e.event === 'healthcheck_blocked' && e.reason) out.push(`the line works: ${e.reason}`);
      out.push(`interval ${fmtDuration(e.interval_ns)}`);
      out.push(`prober ${e.prober || '?'} → ${e.target}`);
      break;
    case 'healthcheck_failed':
      out.push(`${e.unanswered} of ${e.fall} unanswered in a row (${fmtDuration(e.duration_ns)})`);
      out.push(`interval ${fmtDuration(e.interval_ns)}`);
      out.push(`prober ${e.prober || '?'} → ${e.target}`);
      break;
    case 'healthcheck_recovered':
      out.push(e.reason === 'probes_resumed' ? 'probes seen again'
        : `answered again after ${e.unanswered} unanswered (${fmtDuration(e.duration_ns)})`);
      break;
    case 'healthcheck_absent':
      out.push(`no probe for ${fmtDuration(e.duration_ns)} (> 3 × ${fmtDuration(e.interval_ns)})`);
      out.push('the return path will not fail over by itself if the line fails silently');
      break;
    default:
      break;
  }
  return out;
}

/** Whole seconds, as the countdown says them: "≈ 12 s" is written by the caller. */
export function fmtSeconds(ns) {
  if (ns === null || ns === undefined || !Number.isFinite(ns)) return '–';
  return `${Math.max(0, Math.round(ns / 1e9))} s`;
}

// ---- the cloud's health check of each line ---------------------------------------------------

const HC_STATE = {
  healthcheck_degraded: 'degraded', healthcheck_failed: 'failed', healthcheck_blocked: 'blocked',
  healthcheck_absent: 'absent', healthcheck_recovered: 'ok',
};

/** A line's state from one health-check event, shaped as /api/v1/healthchecks answers it. */
export function hcLineFromEvent(e) {
  const state = HC_STATE[e.event] ?? 'unknown';
  const counting = state === 'degraded' || state === 'blocked';
  const failed = state === 'failed';
  return {
    agent: e.agent, tap: e.tap, path: e.path, target: e.target, state, prober: e.prober ?? '',
    unanswered: e.unanswered ?? 0, fall: e.fall ?? 0, interval_ns: e.interval_ns ?? 0,
    eta_ns: counting ? e.eta_ns : failed ? 0 : null,
    eta_from_ns: counting || failed ? e.ts_ns : null,
    move_at_ns: counting ? e.ts_ns + e.eta_ns : failed ? e.ts_ns : null,
    duration_ns: e.duration_ns ?? 0, reason: e.reason ?? '', event: e.event, id: e.id, run: e.run,
    event_id: e.event_id, ts_ns: e.ts_ns, detected_ns: e.detected_ns,
  };
}

export const hcKey = (l) => `${l.agent}|${l.tap}`;

/** Whether line state `a` comes from a later event than `b` (by time, then row id). */
export const hcNewer = (a, b) => !b || a.ts_ns > b.ts_ns || (a.ts_ns === b.ts_ns && a.id > b.id);

/** Seconds left until the cloud moves the return path (counting down from the event's eta). */
export function hcSecondsLeft(line, nowMs) {
  if (line.move_at_ns === null || line.move_at_ns === undefined) return null;
  return Math.max(0, Math.round((line.move_at_ns - nowMs * 1e6) / 1e9));
}

/** Probes unanswered in a row now: the event's k, except after an answer (0). */
export const hcInRow = (line) => (line.state === 'ok' ? 0 : line.unanswered);

/**
 * What a line's health check says now: { label, cls, text, counting } where counting is the
 * seconds left while degraded or blocked (the page ticks it down), else null.
 */
export function hcView(line, nowMs = Date.now()) {
  const kn = `${line.unanswered} of ${line.fall}`;
  switch (line.state) {
    case 'degraded': {
      const left = hcSecondsLeft(line, nowMs);
      return { label: `degraded: ${kn} unanswered`, cls: 'hc-degraded', counting: left,
        text: `cloud moves the return path to IPsec in ≈ ${left} s unless answers resume` };
    }
    case 'blocked': {
      const left = hcSecondsLeft(line, nowMs);
      return { label: `blocked: false failover coming (${kn} unanswered although the line works)`,
        cls: 'hc-blocked', counting: left,
        text: `cloud moves the return path to IPsec in ≈ ${left} s although the line carries the agent's probes` +
          `${line.reason ? ` (${line.reason})` : ''}: the gateway does not answer the health check` };
    }
    case 'failed':
      return { label: `failed: ${kn} unanswered`, cls: 'hc-failed', counting: null,
        text: `the cloud moves the return path to IPsec (since ${fmtTime(line.ts_ns, nowMs)})` };
    case 'absent':
      return { label: 'absent: no health-check probe seen', cls: 'hc-absent', counting: null,
        text: `no probe for ${fmtDuration(line.duration_ns)} (> 3 intervals) at ${fmtTime(line.ts_ns, nowMs)}: ` +
          'the return path will not fail over by itself if the line fails silently' };
    case 'ok':
      return { label: 'ok: answered', cls: 'hc-ok', counting: null,
        text: line.reason === 'probes_resumed' ? `probes seen again since ${fmtTime(line.ts_ns, nowMs)}`
          : `answered again after ${line.unanswered} unanswered, since ${fmtTime(line.ts_ns, nowMs)}` };
    default:
      return { label: 'unknown', cls: 'hc-unknown', counting: null, text: 'no health-check event yet' };
  }
}

/** Median of a numeric array (sorted copy); null when empty. */
export function median(xs) {
  if (xs.length === 0) return null;
  const s = Float64Array.from(xs).sort();
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Nanoseconds (a JS number, possibly rounded) as an integer query parameter. */
export const nsParam = (ns) => BigInt(Math.round(ns)).toString();
