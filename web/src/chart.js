// The probes around one event as RTT-over-time points, one chart per direction: each point is
// coloured by the path that carried the probe in that direction (the forward chart uses the
// record's fwd_path, the reverse chart its rev_path); lost probes sit on the zero line in their
// own series so the outage gap shows. uPlot draws every series as one canvas path: no DOM per
// point, so 100 000 probes stay readable and cheap.
import uPlot from 'uplot';
import { dirLong, pathName, median } from './format.js';

const COLORS = {
  'express-connect': '#1f6fd1',
  ipsec: '#e07b00',
  unknown: '#7a7a7a',
  '': '#b0b0b0',
};
const OTHER = ['#2a9d3c', '#8c564b', '#e377c2', '#17becf', '#bcbd22'];
const LOST = '#d62728';
const LOST_UNDET = '#9467bd';

/** Splits the columns into series for one direction. Returns {x, series:[{label,color,y,count}]}. */
export function seriesFor(cols, order, direction) {
  const pathCol = direction === 'reverse' ? cols.rev_path : cols.fwd_path;
  const n = order.length;
  const x = new Array(n);
  const groups = new Map(); // key -> {label,color,y,count}
  let other = 0;
  const group = (key, label, color, sortKey) => {
    let g = groups.get(key);
    if (!g) {
      g = { label, color, y: new Array(n).fill(null), count: 0, sortKey };
      groups.set(key, g);
    }
    return g;
  };
  for (let k = 0; k < n; k++) {
    const i = order[k];
    x[k] = cols.tx_ns[i] / 1e9;
    const rtt = cols.rtt_ns[i];
    const loss = cols.loss ? cols.loss[i] : null;
    if (rtt !== null && rtt !== undefined) {
      const p = pathCol[i] ?? '';
      let color = COLORS[p];
      if (!color) color = OTHER[other++ % OTHER.length];
      const g = group(`p:${p}`, `${pathName(p)}`, color, 0);
      g.y[k] = rtt / 1e6;
      g.count++;
    } else if (loss === direction) {
      const g = group('lost', `lost ${direction} (at 0)`, LOST, 2);
      g.lost = true;
      g.y[k] = 0;
      g.count++;
    } else if (loss === 'undetermined' || loss === null || loss === undefined) {
      const g = group('lost-u', 'lost, direction undetermined (at 0)', LOST_UNDET, 1);
      g.lost = true;
      g.y[k] = 0;
      g.count++;
    }
    // Lost in the other direction: this direction carried it; it has no RTT to plot here.
  }
  const series = [...groups.values()].sort((a, b) => a.sortKey - b.sortKey);
  return { x, series };
}

/** Indices of the probes in tx order (the collector's order is kept when already sorted). */
export function txOrder(cols) {
  const n = cols.tx_ns.length;
  const order = new Uint32Array(n);
  let sorted = true;
  for (let i = 0; i < n; i++) {
    order[i] = i;
    if (i > 0 && cols.tx_ns[i] < cols.tx_ns[i - 1]) sorted = false;
  }
  if (!sorted) order.sort((a, b) => cols.tx_ns[a] - cols.tx_ns[b]);
  return order;
}

/** RTT medians of the probes on the old path before and on the new path after an event. */
export function rttBeforeAfter(cols, ev, windowNs = 10e9) {
  if (ev.event !== 'switchover' && ev.event !== 'outage_end') return null;
  const pathCol = ev.direction === 'reverse' ? cols.rev_path : cols.fwd_path;
  const before = [], after = [];
  const endOld = ev.last_ok_on_old_ns || ev.ts_ns;
  const startNew = ev.first_ok_on_new_ns || ev.ts_ns;
  for (let i = 0; i < cols.tx_ns.length; i++) {
    const rtt = cols.rtt_ns[i];
    if (rtt === null || rtt === undefined) continue;
    const t = cols.tx_ns[i];
    if (t <= endOld && t > endOld - windowNs && (ev.event !== 'switchover' || pathCol[i] === ev.from)) {
      before.push(rtt);
    } else if (t >= startNew && t < startNew + windowNs && pathCol[i] === ev.to) {
      after.push(rtt);
    }
  }
  return { before: median(before), after: median(after), nBefore: before.length, nAfter: after.length };
}

/**
 * Draws a series as small squares straight onto the canvas: one rectangle per occupied device
 * pixel (100 000 probes over a chart a thousand pixels wide mostly share pixels), one fill.
 * Returns null so uPlot draws nothing else for the series.
 */
function squares(size, color) {
  return (u, seriesIdx, idx0, idx1) => {
    const xs = u.data[0];
    const ys = u.data[seriesIdx];
    const { left, top, width, height } = u.bbox;
    const h = Math.max(1, Math.round((size * devicePixelRatio) / 2));
    const seen = new Uint8Array((width + 1) * (height + 1));
    const path = new Path2D();
    for (let i = idx0; i <= idx1; i++) {
      const y = ys[i];
      if (y === null || y === undefined) continue;
      const cx = Math.round(u.valToPos(xs[i], 'x', true));
      const cy = Math.round(u.valToPos(y, 'y', true));
      const px = cx - left, py = cy - top;
      if (px < 0 || py < 0 || px > width || py > height) continue;
      const k = py * (width + 1) + px;
      if (seen[k]) continue;
      seen[k] = 1;
      path.rect(cx - h, cy - h, 2 * h, 2 * h);
    }
    const { ctx } = u;
    ctx.save();
    ctx.fillStyle = color;
    ctx.fill(path);
    ctx.restore();
    return null;
  };
}

const pad2 = (n) => String(n).padStart(2, '0');
/** x-axis labels in 24-hour local time; milliseconds once zoomed in below a second per tick. */
function timeLabels(u, splits, axisIdx, space, incr) {
  return splits.map((t) => {
    const d = new Date(t * 1000);
    const hms = `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
    return incr < 1 ? `${hms}.${String(d.getMilliseconds()).padStart(3, '0')}` : hms;
  });
}

function markerHook(ev) {
  return (u) => {
    const { ctx } = u;
    const { top, height } = u.bbox;
    ctx.save();
    const a = ev.last_ok_on_old_ns, b = ev.first_ok_on_new_ns;
    if (a && b && b > a) {
      const x0 = u.valToPos(a / 1e9, 'x', true), x1 = u.valToPos(b / 1e9, 'x', true);
      ctx.fillStyle = 'rgba(214, 39, 40, 0.10)';
      ctx.fillRect(x0, top, Math.max(1, x1 - x0), height);
    }
    const x = u.valToPos(ev.ts_ns / 1e9, 'x', true);
    ctx.strokeStyle = '#888';
    ctx.setLineDash([4, 4]);
    ctx.beginPath();
    ctx.moveTo(x, top);
    ctx.lineTo(x, top + height);
    ctx.stroke();
    ctx.restore();
  };
}

/** Builds (or rebuilds) one direction's chart in `el`; returns {plot, series}. */
export function drawChart(el, cols, order, direction, ev, width) {
  const { x, series } = seriesFor(cols, order, direction);
  el.replaceChildren();
  // Axis text in the page's colour (light or dark scheme), grid lines faint.
  const ink = getComputedStyle(el).color || '#1b1b1b';
  const grid = 'rgba(128,128,128,0.25)';
  const opts = {
    title: `${dirLong(direction)}: RTT by path`,
    width,
    height: width < 500 ? 220 : 280,
    scales: {
      x: { time: true },
      y: { range: (u, min, max) => [0, Math.max(1, (max ?? 1) * 1.08)] },
    },
    axes: [{ stroke: ink, grid: { stroke: grid }, ticks: { stroke: grid }, values: timeLabels },
      { label: 'RTT (ms)', size: 56, stroke: ink, grid: { stroke: grid }, ticks: { stroke: grid } }],
    series: [{ label: 'time' }, ...series.map((s) => ({
      label: `${s.label} (${s.count})`,
      stroke: s.color,
      fill: s.color,
      paths: squares(s.lost ? 6 : 3, s.color),
      points: { show: false },
    }))],
    cursor: {
      // Every series is sparse (null where another path took the probe): take the index under
      // the cursor as it is instead of searching each series for its nearest value.
      dataIdx: (u, si, i) => i,
      points: { show: false },
      sync: { key: 'probes' },
      drag: { x: true, y: false },
    },
    legend: { live: false },
    hooks: { draw: [markerHook(ev)] },
  };
  const plot = new uPlot(opts, [x, ...series.map((s) => s.y)], el);
  el.setAttribute('role', 'img');
  el.setAttribute('aria-label', `${opts.title}. ${describe(series, direction)}.`);
  return { plot, series };
}

/** Counts per direction in words for the summary line. */
export function describe(series, direction) {
  if (series.length === 0) return `${direction}: no probes`;
  return `${direction}: ` + series.map((s) => `${s.count} ${s.label.replace(' (at 0)', '')}`).join(', ');
}
