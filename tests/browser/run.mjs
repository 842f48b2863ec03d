// The status page in a real headless browser (Debian's chromium driven by playwright-core).
//   node tests/browser/run.mjs --base-url http://127.0.0.1:9780/   against a running collector
//   node tests/browser/run.mjs --dist build/web/dist               against fixture_server.mjs,
//                                                                   started and stopped here
// Options: --artifacts DIR (screenshots; default tests/browser/artifacts), --chromium PATH
// (default $CHROMIUM or /usr/bin/chromium), --live-timeout S (how long to wait for a new event
// over the stream; default 10, give a drill time to cause one against a real collector),
// --ready-file PATH (created when the test starts waiting for a live event: a lab test starts
// its next drill then), --expect-path WORDS (every target's current path, both directions, must
// read WORDS, e.g. "Express Connect" after a failback), --live-match REGEX (the live event
// waited for must have a title matching REGEX, e.g. a switchover caused by that next drill),
// --live-out FILE (the new events' ids and titles as JSON, for the caller to compare with the
// collector's).
// Checks: the current path per direction in words; a switchover (failover) and a failback in
// the timeline with their outage figures; a new event appears live without reload; the probes
// around the failover are drawn (points per direction, lost probes, render time); phone width
// without horizontal scrolling; no request leaves the base URL; no console error; little CPU
// while idle; the cloud's health check per line (against the fixture: a degraded health check
// with a countdown that decreases, then answered again). Prints one line per check and "N passed, N failed"; exits 1 on any failure.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../..');
const fatal = (msg) => { console.error(`browser test: ${msg}`); console.log('0 passed, 1 failed'); process.exit(1); };
if (Number(process.versions.node.split('.')[0]) < 20) {
  fatal(`node ${process.version} is too old for playwright-core 1.64 (it needs 20 or later)`);
}
const require = createRequire(join(root, 'web/package.json'));
let chromium;
try {
  ({ chromium } = require('playwright-core'));
} catch (err) {
  fatal(`playwright-core is not installed in web/node_modules (build the page: it runs npm ci): ${err.message}`);
}

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1] : dflt;
};
let baseUrl = opt('--base-url', process.env.PATHSENTRY_URL ?? '');
const dist = resolve(opt('--dist', join(root, 'web/dist')));
const artifacts = resolve(opt('--artifacts', join(here, 'artifacts')));
const chromiumPath = opt('--chromium', process.env.CHROMIUM ?? '/usr/bin/chromium');
const liveTimeoutMs = Number(opt('--live-timeout', '10')) * 1000;
const readyFile = opt('--ready-file', '');
const expectPath = opt('--expect-path', '');
const liveMatch = opt('--live-match', '');
const liveOut = opt('--live-out', '');
mkdirSync(artifacts, { recursive: true });
if (!existsSync(chromiumPath)) fatal(`no browser at ${chromiumPath}: scripts/deps.sh installs Debian's chromium`);

let passed = 0, failed = 0;
const check = (ok, what, detail = '') => {
  if (ok) passed++; else failed++;
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}${detail ? ` — ${detail}` : ''}`);
  return ok;
};

// Against the fixture: start it (loopback, an ephemeral port) and read its URL.
let fixture = null;
const fixtureMode = !baseUrl;
if (fixtureMode) {
  fixture = spawn(process.execPath, [join(here, 'fixture_server.mjs'), '--dist', dist, '--hold-live'],
    { stdio: ['ignore', 'pipe', 'inherit'] });
  baseUrl = await new Promise((ok, fail) => {
    let buf = '';
    const t = setTimeout(() => fail(new Error('fixture server did not start within 10 s')), 10000);
    fixture.stdout.on('data', (d) => {
      buf += d;
      const m = buf.match(/listening (http:\/\/\S+)/);
      if (m) { clearTimeout(t); ok(m[1]); }
    });
    fixture.on('exit', (code) => { clearTimeout(t); fail(new Error(`fixture server exited (${code})`)); });
  }).catch((err) => fatal(err.message));
}
if (!baseUrl.endsWith('/')) baseUrl += '/';
const origin = new URL(baseUrl).origin;
console.log(`page: ${baseUrl}${fixtureMode ? ' (fixture collector)' : ''}; screenshots: ${artifacts}`);

const browser = await chromium.launch({
  executablePath: chromiumPath,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
let target = null;
// A screenshot of the whole page while it is short (the fixture), else of the window: a real
// collector's timeline holds up to 500 events, tens of thousands of pixels, megabytes of PNG.
const shot = async (p, name) => {
  const tall = await p.evaluate(() => document.documentElement.scrollHeight);
  await p.screenshot({ path: join(artifacts, name), fullPage: tall <= 3000, timeout: 60000 });
};
const PATH_WORDS = /^(Express Connect|IPsec|down|undetermined|unknown|not attributed|no data|[\w.-]+)$/;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const foreign = [];
  const consoleErrors = [];
  page.on('request', (r) => {
    const u = r.url();
    if (!u.startsWith(origin + '/') && !u.startsWith('data:')) foreign.push(u);
  });
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  let navigations = 0;
  page.on('framenavigated', (f) => { if (f === page.mainFrame()) navigations++; });

  await page.goto(baseUrl, { waitUntil: 'load' });
  await page.waitForSelector('#targets .card', { timeout: 15000 });
  await page.waitForSelector('#events li[data-id]', { timeout: 15000 });
  await page.waitForFunction(() => document.querySelector('#conn')?.textContent === 'live', null, { timeout: 10000 })
    .then(() => check(true, 'the SSE stream is open (status "live")'),
      async () => check(false, 'the SSE stream is open', await page.textContent('#conn')));

  // 1. The current path per direction, in words.
  const cards = await page.$$eval('#targets .card', (els) => els.map((c) => ({
    key: c.dataset.key,
    fwd: c.querySelector('[data-dir="forward"] .path')?.textContent.trim(),
    rev: c.querySelector('[data-dir="reverse"] .path')?.textContent.trim(),
    text: c.innerText,
  })));
  check(cards.length > 0 && cards.every((c) => PATH_WORDS.test(c.fwd ?? '') && PATH_WORDS.test(c.rev ?? '')),
    'every target shows its current path per direction in words',
    cards.map((c) => `${c.key}: forward ${c.fwd}, reverse ${c.rev}`).join('; '));
  if (expectPath) {
    check(cards.length > 0 && cards.every((c) => c.fwd === expectPath && c.rev === expectPath),
      `every target is on ${expectPath} in both directions`,
      cards.map((c) => `${c.key}: ${c.fwd} / ${c.rev}`).join('; '));
  }
  if (!fixtureMode) {
    check(cards.length > 0 && cards.every((c) => /RTT\s*[\d.,]+ ms/.test(c.text) && /jitter\s*[\d.,]+ ms/.test(c.text)
      && /since (\d{4}-\d\d-\d\d )?\d\d:\d\d:\d\d/.test(c.text)), 'every target shows its RTT, jitter and since when',
    cards.map((c) => c.text.replace(/\s+/g, ' ').slice(0, 160)).join(' | '));
  }
  if (fixtureMode) {
    const c = cards.find((x) => x.key === 'dc1|10.20.0.2|icmp');
    check(c && c.fwd === 'Express Connect' && c.rev === 'Express Connect',
      'after the failback both directions are on Express Connect', c && `${c.fwd} / ${c.rev}`);
    check(c && /RTT\s*12\.30 ms/.test(c.text) && /jitter\s*0\.400 ms/.test(c.text) && /since (\d{4}-\d\d-\d\d )?\d\d:\d\d:\d\d/.test(c.text),
      'RTT, jitter and since-when are shown', c && c.text.replace(/\s+/g, ' ').slice(0, 200));
  }

  // 2. The failover and the failback with their outage figures.
  const evs = await page.$$eval('#events li[data-id]', (els) => els.map((li) => ({
    id: Number(li.dataset.id),
    title: li.querySelector('.ev-title')?.textContent.trim() ?? '',
    figs: li.querySelector('.ev-figs')?.textContent.replace(/\s+/g, ' ').trim() ?? '',
  })));
  const initialIds = new Set(evs.map((e) => e.id));
  // With --expect-path P: the failover leaves P, the failback returns to P.
  const esc = (t) => t.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const away = expectPath ? new RegExp(`: ${esc(expectPath)} → `) : /./;
  const back = expectPath ? new RegExp(` → ${esc(expectPath)}$`) : /./;
  const failovers = evs.filter((e) => /^Switchover, /.test(e.title) && away.test(e.title) && /outage .*\d ms/.test(e.figs));
  const failbacks = evs.filter((e) => /^Failback, /.test(e.title) && back.test(e.title) && /outage .*\d ms/.test(e.figs));
  const few = (l) => l.slice(0, 4).map((e) => `${e.title}: ${e.figs}`).join(' | ') + (l.length > 4 ? ` | … ${l.length} in all` : '');
  check(failovers.length > 0, `the timeline shows a switchover (failover${expectPath ? ` from ${expectPath}` : ''}) with its outage figure`,
    few(failovers));
  check(failbacks.length > 0, `the timeline shows a failback${expectPath ? ` to ${expectPath}` : ''} with its outage figure`,
    few(failbacks));
  if (fixtureMode) {
    const fo = evs.find((e) => e.id === 4), fb = evs.find((e) => e.id === 8), rb = evs.find((e) => e.id === 9);
    check(fo && fo.title === 'Switchover, forward: Express Connect → IPsec' &&
      fo.figs.includes('outage 1,234.5 ms, measured (between 1,224.5 ms and 1,234.5 ms)') &&
      fo.figs.includes('probes lost forward: 123'), 'the failover\'s figures are the collector\'s', fo && fo.figs);
    check(fb && fb.title === 'Failback, forward: IPsec → Express Connect' &&
      fb.figs.includes('outage 850.2 ms, measured') && fb.figs.includes('lost, direction undetermined: 2'),
    'the failback\'s figures are the collector\'s', fb && fb.figs);
    check(rb && rb.figs.includes('outage at most 12.00 ms (no probe lost)'),
      'a bound is shown as "at most"', rb && rb.figs);
    const order = evs.map((e) => e.id);
    check(JSON.stringify(order) === JSON.stringify([15, 9, 8, 12, 7, 6, 5, 4, 3, 2, 1]), 'events are newest first',
      order.join(','));
    const hcOk = await page.$eval('#healthchecks', (el) => {
      const l = el.querySelector('.hc[data-key="dc1|eth1"]');
      return l ? { state: l.dataset.state, text: l.innerText.replace(/\s+/g, ' ') } : null;
    });
    check(hcOk && hcOk.state === 'ok' && /ok: answered/.test(hcOk.text) && /answered again after 2 unanswered/.test(hcOk.text) &&
      /unanswered\s*0 of 8/.test(hcOk.text) &&
      /interval\s*2\.0 s/.test(hcOk.text) && /prober\s*100\.96\.0\.5/.test(hcOk.text) && !/≈/.test(hcOk.text),
    'the health check of line eth1 is shown per line (state, k of N, interval, prober)', hcOk && hcOk.text);
    const absent = await page.$eval('#healthchecks', (el) => {
      const l = el.querySelector('.hc[data-key="dc2|ens4"]');
      return l ? { state: l.dataset.state, cls: l.className, eta: l.querySelectorAll('.hc-eta').length,
        text: l.innerText.replace(/\s+/g, ' ') } : null;
    });
    check(absent && absent.state === 'absent' && /\bhc-absent\b/.test(absent.cls) && absent.eta === 0 &&
      /absent: no health-check probe seen/.test(absent.text) &&
      /the return path will not fail over by itself if the line fails silently/.test(absent.text),
    'an absent health check is a warning (another agent\'s line)', absent && absent.text);
  }
  await shot(page, 'page-laptop.png');

  // 3. A new event appears live, without reload.
  await page.evaluate(() => { window.__psNoReload = 'still the same document'; });
  const liveStart = Date.now();
  if (fixtureMode) await fetch(`${origin}/__fixture/arm`, { method: 'POST' });
  if (readyFile) writeFileSync(readyFile, `${new Date().toISOString()}\n`);
  const got = await page.waitForFunction(([ids, re]) => [...document.querySelectorAll('#events li[data-id]')]
    .some((li) => !ids.includes(Number(li.dataset.id)) &&
      new RegExp(re).test(li.querySelector('.ev-title')?.textContent.trim() ?? '')),
  [[...initialIds], liveMatch || '.'], { timeout: liveTimeoutMs }).then(() => true, () => false);
  const liveMs = Date.now() - liveStart;
  const same = await page.evaluate(() => window.__psNoReload === 'still the same document');
  check(got && same && navigations === 1, `a new event${liveMatch ? ` (/${liveMatch}/)` : ''} appears live without reload`,
    got ? `after ${liveMs} ms, ${navigations} navigation(s)` : `none within ${liveTimeoutMs / 1000} s`);
  if (got) {
    const fresh = await page.$$eval('#events li[data-id]', (els, ids) => els
      .filter((li) => !ids.includes(Number(li.dataset.id))).slice(0, 4)
      .map((li) => `${li.querySelector('.ev-title')?.textContent} (${li.querySelector('.ev-figs')?.textContent.replace(/\s+/g, ' ').trim()})`),
    [...initialIds]);
    if (liveOut) {
      const all = await page.$$eval('#events li[data-id]', (els, ids) => els
        .filter((li) => !ids.includes(Number(li.dataset.id)))
        .map((li) => ({ id: Number(li.dataset.id), title: li.querySelector('.ev-title')?.textContent.trim() })),
      [...initialIds]);
      writeFileSync(liveOut, JSON.stringify(all, null, 1));
    }
    const first = await page.$eval('#events li[data-id]', (li) => Number(li.dataset.id));
    check(!initialIds.has(first), 'the new event is at the top of the timeline', fresh.join(' | '));
    if (fixtureMode) {
      const fwd = await page.waitForFunction(() => document.querySelector(
        '.card[data-key="dc1|10.20.0.2|icmp"] [data-dir="forward"] .path')?.textContent === 'IPsec', null,
      { timeout: 5000 }).then(() => true, () => false);
      check(fwd, 'the current forward path follows the stream (now IPsec)');
    }
  }
  await shot(page, 'page-live.png');

  // 3b. The stream breaks: the page says so, reconnects by itself and fetches what it missed.
  if (fixtureMode) {
    const r = await fetch(`${origin}/__fixture/drop`, { method: 'POST' }).then((x) => x.json());
    const sawBreak = await page.waitForFunction(() => document.querySelector('#conn')?.textContent !== 'live',
      null, { timeout: 5000, polling: 50 }).then(() => true, () => false);
    const back = await page.waitForFunction(() => document.querySelector('#conn')?.textContent === 'live',
      null, { timeout: 15000 }).then(() => true, () => false);
    const missed = await page.waitForSelector('#events li[data-id="11"]', { timeout: 5000 })
      .then(() => true, () => false);
    const same = await page.evaluate(() => window.__psNoReload === 'still the same document');
    check(r.dropped >= 1 && sawBreak && back && missed && same && navigations === 1,
      'after the stream breaks the page reconnects by itself and shows the event it missed',
      `dropped ${r.dropped}, saw the break ${sawBreak}, live again ${back}, missed event shown ${missed}`);
  }

  // 3c. The timeline filtered to one target: its events and its agent's tap events only.
  if (fixtureMode) {
    await page.selectOption('#filter', 'dc1|10.20.0.2|stamp');
    const ids = await page.$$eval('#events li[data-id]', (els) => els.map((li) => Number(li.dataset.id)));
    await page.selectOption('#filter', '');
    const all = await page.$$eval('#events li[data-id]', (els) => els.length);
    check(JSON.stringify(ids) === JSON.stringify([11, 12, 2, 1]) && all === 13,
      'the timeline can show one target (and its agent\'s taps)', `stamp: ${ids.join(',')}; all: ${all}`);
  }

  // 3d. The cloud's health check degrades: the line's panel counts down to the cloud's move of
  // the return path (from the event's eta: 10 s), then the check is answered again.
  if (fixtureMode) {
    const line = '#healthchecks .hc[data-key="dc1|eth1"]';
    await fetch(`${origin}/__fixture/healthcheck?step=degraded`, { method: 'POST' });
    const degraded = await page.waitForSelector(`${line}[data-state="degraded"] .hc-eta`, { timeout: 10000 })
      .then(() => true, () => false);
    const first = degraded ? await page.$eval(`${line}`, (el) => ({
      seconds: Number(el.querySelector('.hc-eta').dataset.seconds),
      text: el.innerText.replace(/\s+/g, ' '),
    })) : null;
    check(degraded && /degraded: 3 of 8 unanswered/.test(first.text) &&
      /cloud moves the return path to IPsec in ≈ \d+ s unless answers resume/.test(first.text) &&
      first.seconds <= 10 && /interval\s*2\.0 s/.test(first.text),
    'a degraded health check shows k of N and the countdown to the cloud\'s move', first && first.text);
    await shot(page, 'page-healthcheck.png');
    const lower = first ? await page.waitForFunction(([sel, s0]) => {
      const el = document.querySelector(`${sel} .hc-eta`);
      return el && Number(el.dataset.seconds) < s0 && el.textContent.includes(`≈ ${el.dataset.seconds} s`)
        ? Number(el.dataset.seconds) : false;
    }, [line, first.seconds], { timeout: 10000 }).then((h) => h.jsonValue(), () => null) : null;
    check(lower !== null, 'the countdown decreases without a new event', `${first?.seconds} s, then ${lower} s`);
    const hcEvent = await page.waitForFunction(() => [...document.querySelectorAll('#events li[data-id="13"] .ev-title')]
      .some((t) => t.textContent.includes('Health check degraded: eth1 (Express Connect), 3 of 8 unanswered')),
    null, { timeout: 5000 }).then(() => true, () => false);
    check(hcEvent, 'the health-check event is in the timeline');
    // Blocked: probes unanswered although the line carries the agent's probes, a distinct warning.
    await fetch(`${origin}/__fixture/healthcheck?step=blocked`, { method: 'POST' });
    const blocked = await page.waitForSelector(`${line}[data-state="blocked"] .hc-eta`, { timeout: 10000 })
      .then(() => true, () => false);
    const b = blocked ? await page.$eval(line, (el) => ({ cls: el.className,
      seconds: Number(el.querySelector('.hc-eta').dataset.seconds), text: el.innerText.replace(/\s+/g, ' ') })) : null;
    check(blocked && /\bhc-blocked\b/.test(b.cls) && b.seconds <= 8 &&
      /blocked: false failover coming \(4 of 8 unanswered although the line works\)/.test(b.text) &&
      /cloud moves the return path to IPsec in ≈ \d+ s although the line carries the agent's probes/.test(b.text),
    'a blocked health check is a distinct warning: false failover coming, with its countdown', b && b.text);
    await fetch(`${origin}/__fixture/healthcheck?step=recovered`, { method: 'POST' });
    const ok = await page.waitForSelector(`${line}[data-state="ok"]`, { timeout: 10000 }).then(() => true, () => false);
    const after = await page.$eval(line, (el) => ({ eta: el.querySelectorAll('.hc-eta').length,
      text: el.innerText.replace(/\s+/g, ' ') }));
    check(ok && after.eta === 0 && /ok: answered/.test(after.text) &&
      /answered again after 4 unanswered/.test(after.text) && /unanswered\s*0 of 8/.test(after.text),
      'answered again: the line is ok and the countdown is gone', after.text);
  }

  // 4. Little CPU while idle: the stream's state messages redraw at most once a second.
  const cdp = await context.newCDPSession(page);
  await cdp.send('Performance.enable');
  const metric = async () => Object.fromEntries((await cdp.send('Performance.getMetrics')).metrics
    .map((m) => [m.name, m.value]));
  const m0 = await metric();
  await page.waitForTimeout(5000);
  const m1 = await metric();
  const busy = m1.TaskDuration - m0.TaskDuration;
  check(busy < 0.5, 'idle with the stream open, the page is busy under 10 % of the time',
    `${(busy * 1000).toFixed(0)} ms of tasks in 5 s`);

  // 5. The probes around the failover as points per direction.
  target = failovers.filter((e) => initialIds.has(e.id)).pop() ?? failovers[0];
  if (check(Boolean(target), 'a failover to choose')) {
    await page.click(`#events button.ev[data-id="${target.id}"]`);
    const drawn = await page.waitForFunction(() => document.querySelector('#detail-summary')?.dataset.points,
      null, { timeout: 30000 }).then(() => true, () => false);
    const info = await page.evaluate(() => ({
      points: Number(document.querySelector('#detail-summary').dataset.points),
      renderMs: Number(document.querySelector('#detail-summary').dataset.renderMs),
      summary: document.querySelector('#detail-summary').textContent,
      canvases: document.querySelectorAll('#detail .chart canvas').length,
      legendF: [...document.querySelectorAll('#chart-fwd .u-legend .u-label')].map((e) => e.textContent),
      legendR: [...document.querySelectorAll('#chart-rev .u-legend .u-label')].map((e) => e.textContent),
    }));
    check(drawn && info.points > 0 && info.canvases >= 2,
      'choosing the failover draws its probes, one chart per direction',
      `${info.points} probes in ${info.renderMs} ms; forward: ${info.legendF.join(', ')}; reverse: ${info.legendR.join(', ')}`);
    check(info.legendF.some((l) => /^lost /.test(l)) || !fixtureMode,
      'lost probes are drawn as their own series (the outage gap)', info.summary);
    if (fixtureMode) {
      check(info.points === 100000, 'the chart holds 100 000 points', String(info.points));
      check(info.renderMs < 3000, 'and draws them in under 3 s', `${info.renderMs} ms`);
      check(/RTT before 1[0-4]\.\d+ ms \(Express Connect\), after 2[0-9]\.\d+ ms \(IPsec\)/.test(info.summary),
        'RTT before and after the switchover', info.summary.match(/RTT before[^.]*\.\d+ ms[^.]*\.\d+ ms \([^)]*\)/)?.[0]);
      check(info.legendF.some((l) => l.startsWith('Express Connect')) && info.legendF.some((l) => l.startsWith('IPsec')),
        'points are coloured by path, named in the legend', info.legendF.join(', '));
    }
    await page.locator('#detail').scrollIntoViewIfNeeded();
    await shot(page, 'event-probes.png');
  }

  // 6. A phone.
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2,
    isMobile: true, hasTouch: true });
  const pp = await phone.newPage();
  pp.on('request', (r) => { const u = r.url(); if (!u.startsWith(origin + '/') && !u.startsWith('data:')) foreign.push(u); });
  await pp.goto(baseUrl, { waitUntil: 'load' });
  await pp.waitForSelector('#targets .card', { timeout: 15000 });
  await pp.waitForSelector('#events li[data-id]', { timeout: 15000 });
  const overflow = await pp.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 1, 'on a phone (390 px) the page needs no horizontal scrolling', `${overflow} px too wide`);
  await shot(pp, 'page-phone.png');
  if (target) {
    await pp.tap(`#events button.ev[data-id="${target.id}"]`);
    const drawn = await pp.waitForFunction(() => document.querySelector('#detail-summary')?.dataset.points,
      null, { timeout: 30000 }).then(() => true, () => false);
    const over = await pp.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(drawn && over <= 1, 'on a phone an event\'s probes fit the width', `${over} px too wide`);
    await pp.screenshot({ path: join(artifacts, 'event-probes-phone.png') });
  }
  await phone.close();

  check(foreign.length === 0, 'no request leaves the collector', foreign.slice(0, 5).join(', '));
  check(consoleErrors.length === 0, 'no error in the browser console', consoleErrors.slice(0, 5).join(' | '));
  await context.close();
} catch (err) {
  check(false, 'the test ran to its end', err.stack || String(err));
} finally {
  await browser.close();
  if (fixture) fixture.kill('SIGTERM');
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
