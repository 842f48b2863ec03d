// The page's words and figures (web/src/format.js, web/src/chart.js's data split), without a
// browser: node --test tests/browser/format_test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  pathName, fmtMs, fmtDuration, eventTitle, eventFigures, outageFigure, median, nsParam,
} from '../../web/src/format.js';
import { seriesFor, txOrder, rttBeforeAfter } from '../../web/src/chart.js';

test('paths in words: tap labels mapped, the rest spelled', () => {
  assert.equal(pathName('express-connect'), 'Express Connect');
  assert.equal(pathName('ipsec'), 'IPsec');
  assert.equal(pathName('down'), 'down');
  assert.equal(pathName('none'), 'down');
  assert.equal(pathName('undetermined'), 'undetermined');
  assert.equal(pathName('unknown'), 'unknown');
  assert.equal(pathName(''), 'not attributed');
  assert.equal(pathName('mpls-backup'), 'mpls-backup');
  assert.equal(pathName(null), 'no data');
});

test('milliseconds and durations', () => {
  assert.equal(fmtMs(412000), '0.412 ms');
  assert.equal(fmtMs(12345678), '12.35 ms');
  assert.equal(fmtMs(1234500000), '1,234.5 ms');
  assert.equal(fmtMs(null), '–');
  assert.equal(fmtDuration(850e6), '850 ms');
  assert.equal(fmtDuration(4.2e9), '4.2 s');
  assert.equal(fmtDuration(185e9), '3 min 5 s');
  assert.equal(fmtDuration(2 * 3600e9 + 240e9), '2 h 4 min');
});

const sw = {
  event: 'switchover', direction: 'forward', from: 'express-connect', to: 'ipsec',
  outage_ns: 1234.5e6, resolution_ns: 10e6, outage_kind: 'measured', probes_lost: 123,
  probes_lost_undetermined: 4, failback: false,
};

test('outage figures say what they are', () => {
  assert.equal(outageFigure(sw), 'outage 1,234.5 ms, measured (between 1,224.5 ms and 1,234.5 ms)');
  assert.equal(outageFigure({ ...sw, resolution_ns: 0 }), 'outage 1,234.5 ms, measured');
  assert.equal(outageFigure({ ...sw, outage_kind: 'bound', outage_ns: 9.8e6 }),
    'outage at most 9.80 ms (no probe lost)');
  assert.equal(outageFigure({ ...sw, outage_kind: 'undetermined' }),
    'outage at most 1,234.5 ms, undetermined (losses of undetermined direction)');
  assert.equal(outageFigure({ event: 'outage_begin' }), null);
});

test('titles and figures per event kind', () => {
  assert.equal(eventTitle(sw), 'Switchover, forward: Express Connect → IPsec');
  assert.equal(eventTitle({ ...sw, failback: true, direction: 'reverse', from: 'ipsec', to: 'express-connect' }),
    'Failback, reverse: IPsec → Express Connect');
  assert.deepEqual(eventFigures(sw), [
    'outage 1,234.5 ms, measured (between 1,224.5 ms and 1,234.5 ms)',
    'probes lost forward: 123', 'lost, direction undetermined: 4']);
  assert.equal(eventTitle({ event: 'outage_begin', direction: 'reverse', from: 'ipsec' }),
    'Outage began, reverse (was on IPsec)');
  assert.equal(eventTitle({ event: 'outage_end', direction: 'forward', to: 'unknown' }),
    'Outage ended, forward: through again on unknown');
  assert.equal(eventTitle({ event: 'asymmetric_begin', fwd_path: 'ipsec', rev_path: 'express-connect' }),
    'Asymmetric paths began: forward IPsec, reverse Express Connect');
  assert.deepEqual(eventFigures({ event: 'asymmetric_end', duration_ns: 2e9 }), ['lasted 2.0 s']);
  assert.equal(eventTitle({ event: 'tap_down', tap: 'eth2', path: 'ipsec' }), 'Tap down: eth2 (IPsec)');
  assert.deepEqual(eventFigures({ event: 'tap_down', reason: 'gone' }), ['reason: gone']);
  assert.deepEqual(eventFigures({ event: 'tap_up', duration_ns: 3.2e9 }), ['was down 3.2 s']);
  assert.equal(eventTitle({ event: 'something_new' }), 'Event something_new');
});

test('median and ns query parameters', () => {
  assert.equal(median([]), null);
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.equal(nsParam(1796318761000000000), '1796318761000000000');
  assert.equal(nsParam(1.5), '2');
});

// Probes as the collector's columns: out of tx order on purpose.
const cols = {
  tx_ns: [3e9, 1e9, 2e9, 4e9, 5e9, 6e9],
  rtt_ns: [null, 10e6, 11e6, null, 25e6, 24e6],
  fwd_path: ['express-connect', 'express-connect', 'express-connect', 'ipsec', 'ipsec', 'ipsec'],
  rev_path: ['', 'express-connect', 'express-connect', 'none', 'express-connect', 'ipsec'],
  loss: ['forward', null, null, 'undetermined', null, null],
};

test('probe columns split into one series per path and direction, lost probes at 0', () => {
  const order = txOrder(cols);
  assert.deepEqual([...order], [1, 2, 0, 3, 4, 5]);
  const f = seriesFor(cols, order, 'forward');
  assert.deepEqual(f.x, [1, 2, 3, 4, 5, 6]);
  const byLabel = Object.fromEntries(f.series.map((s) => [s.label, s]));
  assert.deepEqual(byLabel['Express Connect'].y, [10, 11, null, null, null, null]);
  assert.deepEqual(byLabel.IPsec.y, [null, null, null, null, 25, 24]);
  assert.deepEqual(byLabel['lost forward (at 0)'].y, [null, null, 0, null, null, null]);
  assert.deepEqual(byLabel['lost, direction undetermined (at 0)'].y, [null, null, null, 0, null, null]);
  // The reverse chart colours by rev_path; the forward loss is not a reverse loss.
  const r = seriesFor(cols, order, 'reverse');
  const rl = Object.fromEntries(r.series.map((s) => [s.label, s]));
  assert.deepEqual(rl['Express Connect'].y, [10, 11, null, null, 25, null]);
  assert.deepEqual(rl.IPsec.y, [null, null, null, null, null, 24]);
  assert.equal(rl['lost reverse (at 0)'], undefined);
  assert.equal(rl['lost, direction undetermined (at 0)'].count, 1);
});

test('RTT before and after a switchover, on the old and the new path', () => {
  const ev = { event: 'switchover', direction: 'forward', from: 'express-connect', to: 'ipsec',
    ts_ns: 5e9, last_ok_on_old_ns: 2e9, first_ok_on_new_ns: 5e9 };
  const ba = rttBeforeAfter(cols, ev);
  assert.equal(ba.before, 10.5e6);
  assert.equal(ba.after, 24.5e6);
  assert.equal(rttBeforeAfter(cols, { event: 'tap_down' }), null);
});
