// Status page timings in headless Chromium, for scripts/bench-page.py (not a test):
//
//   node bench_page.js --url URL --token-file F --renders N --updates M --nodes K [--gap-ms G]
//
// 1. full render: N fresh page loads; time from navigation start until the first screen is
//    drawn: the nodes table holds its first page (min(K, 100) rows) and the count says K nodes
//    (performance.now() in the page, so the browser's own clock).
// 2. update latency: M times (G ms apart, default 250: a person clicking), in one open page,
//    drain a READY worker through the page's own
//    endpoint (session + CSRF) and time until its row says "draining" — the whole path: HTTP,
//    Raft write, the feed's next frame, SSE, render. The write's own answer time is kept apart.
// Prints one JSON line.
'use strict';

const fs = require('fs');
const { chromium } = require('playwright-core');

function args() {
  const a = {};
  const v = process.argv.slice(2);
  for (let i = 0; i < v.length; i += 2) a[v[i].replace(/^--/, '')] = v[i + 1];
  return a;
}

const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

async function main() {
  const a = args();
  const renders = Number(a.renders || 20), updates = Number(a.updates || 50), nodes = Number(a.nodes);
  const gap = Number(a['gap-ms'] ?? 250);
  const token = fs.readFileSync(a['token-file'], 'utf8').trim();
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: FLAGS });
  const out = { render_ms: [], update_ms: [], write_ms: [], errors: [],
    // where a render's time goes: the HTML's last byte, the scripts run (DOMContentLoaded),
    // the snapshot applied (its SSE frame parsed), all from navigation start
    html_ms: [], dcl_ms: [], snapshot_ms: [] };
  try {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    for (let i = 0; i < renders; i++) {
      const page = await ctx.newPage();
      page.on('pageerror', (e) => out.errors.push(e.message));
      await page.goto(a.url, { waitUntil: 'commit' });
      const ms = await page.evaluate(async (n) => {
        for (;;) {
          const rows = document.querySelectorAll('#nodes tr').length;
          const count = (document.getElementById('nodes-count') || {}).textContent || '';
          if (rows >= Math.min(n, 100) && count.includes(String(n))) {
            const nav = performance.getEntriesByType('navigation')[0] || {};
            return { drawn: performance.now(), html: nav.responseEnd, dcl: nav.domContentLoadedEventEnd,
              snapshot: window.__cortexSnapshotAt, cost: window.__cortexRenderCost };
          }
          await new Promise((r) => requestAnimationFrame(r));
        }
      }, nodes);
      out.render_ms.push(ms.drawn);
      out.html_ms.push(ms.html);
      out.dcl_ms.push(ms.dcl);
      out.snapshot_ms.push(ms.snapshot);
      out.costs = out.costs || [];
      out.costs.push(ms.cost);
      await page.close();
    }

    const page = await ctx.newPage();
    page.on('pageerror', (e) => out.errors.push(e.message));
    await page.goto(a.url, { waitUntil: 'load' });
    await page.waitForFunction((n) => document.querySelectorAll('#nodes tr').length >= Math.min(n, 100), nodes, { timeout: 60000 });
    const csrf = await page.evaluate(async (t) => {
      const r = await fetch('/ui/login', { method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ token: t }) });
      return (await r.json()).csrf;
    }, token);
    const targets = await page.evaluate((m) => [...document.querySelectorAll('#nodes tr')]
      .filter((tr) => tr.querySelector('.state').textContent === 'ready' && tr.dataset.node.startsWith('sim-'))
      .slice(0, m).map((tr) => tr.dataset.id), updates);
    for (const id of targets) {
      const r = await page.evaluate(async ([id, csrf]) => {
        const t0 = performance.now();
        let wrote = null;
        const p = fetch(`/ui/nodes/${id}/drain`, { method: 'POST',
          headers: { 'content-type': 'application/json', 'x-cortex-csrf': csrf }, body: '{}' })
          .then((r) => { wrote = performance.now() - t0; return r.status; });
        for (;;) {
          const cell = document.querySelector(`#nodes tr[data-id="${id}"] .state`);
          if (cell && cell.textContent === 'draining') break;
          await new Promise((res) => requestAnimationFrame(res));
        }
        const seen = performance.now() - t0;
        const status = await p;
        return { seen, wrote, status };
      }, [id, csrf]);
      if (r.status !== 200) out.errors.push('drain answered ' + r.status);
      await new Promise((res) => setTimeout(res, gap));
      out.update_ms.push(r.seen);
      out.write_ms.push(r.wrote);
    }
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(out));
}

main().catch((e) => { console.error(e && e.stack ? e.stack : String(e)); process.exit(1); });
