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
export const isStreamEvent = (e) => !isTap(e);

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
    default:
      break;
  }
  return out;
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
