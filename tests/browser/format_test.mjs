// The page's words and figures (web/src/format.js, web/src/chart.js's data split), without a
// browser: node --test tests/browser/format_test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  pathName, fmtMs, fmtDuration, eventTitle, eventFigures, outageFigure, median, nsParam,
  isStreamEvent, isHealthcheck, hcLineFromEvent, hcNewer, hcView, hcSecondsLeft, hcInRow, fmtSeconds,
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

// The cloud's health check of a line (healthcheck_* events, /api/v1/healthchecks lines).
const S = 1e9;
const T = 1_700_000_000_000 * 1e6;  // an event time (ns); nowMs below is relative to it
const hcEv = (o) => ({
  id: 20, agent: 'dc1', run: 'r', event_id: 20, tap: 'eth1', path: 'express-connect', target: '10.1.0.2',
  prober: '100.96.0.5', fall: 8, interval_ns: 2 * S, duration_ns: 6 * S, ts_ns: T, detected_ns: T + 1e6, ...o,
});
const at = (s) => T / 1e6 + s * 1000;  // ms, s seconds after the event

test('health-check events are a line\'s, not a probe stream\'s', () => {
  const e = hcEv({ event: 'healthcheck_degraded', unanswered: 3, eta_ns: 10 * S });
  assert.equal(isHealthcheck(e), true);
  assert.equal(isStreamEvent(e), false);
  assert.equal(isStreamEvent(sw), true);
  assert.equal(isHealthcheck({ event: 'tap_down' }), false);
});

test('health-check titles and figures per kind', () => {
  const d = hcEv({ event: 'healthcheck_degraded', unanswered: 3, eta_ns: 10 * S });
  assert.equal(eventTitle(d), 'Health check degraded: eth1 (Express Connect), 3 of 8 unanswered');
  assert.deepEqual(eventFigures(d), [
    'the cloud moves the return path to IPsec in ≈ 10 s unless answers resume', 'interval 2.0 s',
    'prober 100.96.0.5 → 10.1.0.2']);
  const b = hcEv({ event: 'healthcheck_blocked', unanswered: 5, eta_ns: 6 * S, reason: 'agent probes answered' });
  assert.equal(eventTitle(b), 'Health check blocked: eth1 (Express Connect), false failover coming although the line works');
  assert.deepEqual(eventFigures(b).slice(0, 2), [
    'the cloud moves the return path to IPsec in ≈ 6 s unless answers resume', 'the line works: agent probes answered']);
  const f = hcEv({ event: 'healthcheck_failed', unanswered: 8, duration_ns: 14 * S });
  assert.equal(eventTitle(f), 'Health check failed: eth1 (Express Connect), the cloud moves the return path to IPsec');
  assert.equal(eventFigures(f)[0], '8 of 8 unanswered in a row (14.0 s)');
  const r = hcEv({ event: 'healthcheck_recovered', unanswered: 4, duration_ns: 8 * S, reason: 'answered' });
  assert.equal(eventTitle(r), 'Health check recovered: eth1 (Express Connect)');
  assert.deepEqual(eventFigures(r), ['answered again after 4 unanswered (8.0 s)']);
  assert.deepEqual(eventFigures({ ...r, reason: 'probes_resumed' }), ['probes seen again']);
  const a = hcEv({ event: 'healthcheck_absent', prober: '', unanswered: 0, duration_ns: 7 * S });
  assert.equal(eventTitle(a), 'Health check absent: eth1 (Express Connect)');
  assert.deepEqual(eventFigures(a), ['no probe for 7.0 s (> 3 × 2.0 s)',
    'the return path will not fail over by itself if the line fails silently']);
  assert.equal(fmtSeconds(9.6 * S), '10 s');
  assert.equal(fmtSeconds(-1 * S), '0 s');
});

test('a line\'s state from its event, as the collector derives it', () => {
  const d = hcLineFromEvent(hcEv({ event: 'healthcheck_degraded', unanswered: 3, eta_ns: 10 * S }));
  assert.equal(d.state, 'degraded');
  assert.equal(d.eta_from_ns, T);
  assert.equal(d.move_at_ns, T + 10 * S);
  const f = hcLineFromEvent(hcEv({ event: 'healthcheck_failed', unanswered: 8 }));
  assert.deepEqual([f.state, f.eta_ns, f.move_at_ns], ['failed', 0, T]);
  const r = hcLineFromEvent(hcEv({ event: 'healthcheck_recovered', unanswered: 4, reason: 'answered' }));
  assert.deepEqual([r.state, r.eta_ns, r.move_at_ns, hcInRow(r)], ['ok', null, null, 0]);
  assert.equal(hcLineFromEvent(hcEv({ event: 'healthcheck_absent' })).state, 'absent');
  assert.equal(hcLineFromEvent(hcEv({ event: 'healthcheck_blocked', unanswered: 5, eta_ns: 6 * S })).move_at_ns, T + 6 * S);
  // The later event decides: by time, then by row id; an older one arriving late does not.
  assert.equal(hcNewer(r, undefined), true);
  assert.equal(hcNewer({ ...r, ts_ns: T + S }, d), true);
  assert.equal(hcNewer(d, { ...r, ts_ns: T + S }), false);
  assert.equal(hcNewer({ ...r, id: 21 }, d), true);
  assert.equal(hcNewer(d, { ...r, id: 21 }), false);
});

test('the countdown counts down from the eta at the event\'s time, and stops at 0', () => {
  const d = hcLineFromEvent(hcEv({ event: 'healthcheck_degraded', unanswered: 3, eta_ns: 10 * S }));
  assert.equal(hcSecondsLeft(d, at(0)), 10);
  assert.equal(hcSecondsLeft(d, at(3.2)), 7);
  assert.equal(hcSecondsLeft(d, at(12)), 0);
  const v = hcView(d, at(4));
  assert.deepEqual([v.label, v.counting, v.cls], ['degraded: 3 of 8 unanswered', 6, 'hc-degraded']);
  assert.equal(v.text, 'cloud moves the return path to IPsec in ≈ 6 s unless answers resume');
  const b = hcView(hcLineFromEvent(hcEv({ event: 'healthcheck_blocked', unanswered: 5, eta_ns: 6 * S,
    reason: 'agent probes answered' })), at(1));
  assert.equal(b.cls, 'hc-blocked');
  assert.equal(b.counting, 5);
  assert.match(b.label, /^blocked: false failover coming \(5 of 8 unanswered although the line works\)$/);
  assert.match(b.text, /^cloud moves the return path to IPsec in ≈ 5 s although the line carries the agent's probes \(agent probes answered\)/);
  const f = hcView(hcLineFromEvent(hcEv({ event: 'healthcheck_failed', unanswered: 8 })), at(1));
  assert.deepEqual([f.label, f.counting], ['failed: 8 of 8 unanswered', null]);
  const a = hcView(hcLineFromEvent(hcEv({ event: 'healthcheck_absent', duration_ns: 7 * S })), at(1));
  assert.equal(a.cls, 'hc-absent');
  assert.equal(a.counting, null);
  assert.match(a.text, /^no probe for 7\.0 s \(> 3 intervals\)/);
  const ok = hcView(hcLineFromEvent(hcEv({ event: 'healthcheck_recovered', unanswered: 4, reason: 'answered' })), at(1));
  assert.deepEqual([ok.label, ok.counting], ['ok: answered', null]);
  assert.match(ok.text, /^answered again after 4 unanswered, since /);
  assert.equal(hcView({ state: 'unknown' }).label, 'unknown');
});
