// The status page in headless Chromium (Debian's /usr/bin/chromium through playwright-core;
// no browser is ever downloaded). Run by tests/status_page.rs against a real cluster with one
// pending node:
//
//   node status_page.js --url http://127.0.0.1:PORT/ --token-file F --pending NAME --out DIR
//
// Checks: the page loads with no console errors or failed requests, shows the pending node,
// a screenshot (desktop and phone width) is written to DIR, the Approve button asks for a login
// first, logging in with a token works, clicking Approve turns the node READY in the nodes
// table without a reload, and keyboard focus reaches the buttons. Prints "all checks passed".
'use strict';

const fs = require('fs');
const path = require('path');
const { chromium } = require('playwright-core');

function args() {
  const a = {};
  const v = process.argv.slice(2);
  for (let i = 0; i < v.length; i += 2) a[v[i].replace(/^--/, '')] = v[i + 1];
  for (const k of ['url', 'token-file', 'pending', 'out']) {
    if (!a[k]) throw new Error(`missing --${k}`);
  }
  return a;
}

function check(ok, what) {
  if (!ok) throw new Error('check failed: ' + what);
  console.log('ok - ' + what);
}

const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

async function main() {
  const a = args();
  const token = fs.readFileSync(a['token-file'], 'utf8').trim();
  fs.mkdirSync(a.out, { recursive: true });
  const browser = await chromium.launch({
    executablePath: process.env.CORTEX_TEST_CHROMIUM || '/usr/bin/chromium',
    args: FLAGS,
    timeout: 60000,
  });
  try {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await ctx.newPage();
    const problems = [];
    page.on('console', (m) => { if (m.type() === 'error') problems.push('console error: ' + m.text()); });
    page.on('pageerror', (e) => problems.push('page error: ' + e.message));
    page.on('requestfailed', (r) => {
      // The event stream is cut when the page closes; anything else failing is a bug.
      if (!r.url().endsWith('/ui/events')) problems.push('request failed: ' + r.url() + ' ' + (r.failure() || {}).errorText);
    });
    page.on('response', (r) => { if (r.status() >= 400) problems.push(`HTTP ${r.status()} for ${r.url()}`); });

    const t0 = Date.now();
    await page.goto(a.url, { waitUntil: 'load' });
    const pending = page.locator(`.pending-item[data-node="${a.pending}"]`);
    await pending.waitFor({ timeout: 20000 });
    console.log(`# page showed the pending node ${Date.now() - t0} ms after navigation`);
    check((await page.locator('#health').textContent()) !== 'connecting…', 'the health badge is filled in');
    check((await page.locator('#conn').textContent()) === 'live', 'the event stream is connected');
    check(/leader|follower/.test(await page.locator('#facts').textContent()), 'the cluster facts show the Raft role');
    check(/\d/.test(await pending.locator('.code').textContent()) || (await pending.locator('.code').textContent()).length > 3,
      'the pending node shows its verification code');
    check(await page.locator(`#nodes tr[data-node="${a.pending}"] .state`).textContent() === 'pending',
      'the nodes table lists the pending node as pending');
    await page.screenshot({ path: path.join(a.out, 'status-page.png'), fullPage: true });
    console.log('# screenshot: ' + path.join(a.out, 'status-page.png'));

    // Keyboard, before anything was clicked: Tab reaches the skip link first, then the buttons.
    await page.keyboard.press('Tab');
    const first = await page.evaluate(() => document.activeElement && document.activeElement.className);
    check(first === 'skip', 'the first Tab stop is the skip link');
    let reached = false;
    for (let i = 0; i < 8 && !reached; i++) {
      await page.keyboard.press('Tab');
      reached = await page.evaluate(() => document.activeElement && document.activeElement.tagName === 'BUTTON');
    }
    check(reached, 'Tab reaches a button');

    // A marker that a reload would wipe.
    await page.evaluate(() => { window.__noReload = 42; });

    // Not logged in: Approve asks for a login, and nothing changes.
    await pending.locator('button.approve').click();
    check(await page.locator('#login-dialog').evaluate((d) => d.open), 'Approve without a session opens the login dialog');
    const before = problems.length;
    // The dialog opened with a message ("Log in to approve …"): wait for the answer to this
    // login to replace it, not merely for some text (that raced the 401 under load).
    const opened = await page.locator('#login-error').textContent();
    await page.fill('#token', 'cxt_00000000_wrong');
    await page.click('#login-form button[type=submit]');
    await page.waitForFunction((prior) => {
      const t = document.getElementById('login-error').textContent;
      return t.length > 0 && t !== prior;
    }, opened);
    check(/token/i.test(await page.locator('#login-error').textContent()), 'a wrong token is refused with a message');
    // That 401 was expected (Chromium logs it as a console error too); forget it.
    for (let i = problems.length - 1; i >= before; i--) if (/401|\/ui\/login/.test(problems[i])) problems.splice(i, 1);
    await page.fill('#token', token);
    await page.click('#login-form button[type=submit]');
    await page.waitForFunction(() => /\((operate|admin)\)/.test(document.getElementById('who').textContent));
    check(!(await page.locator('#login-dialog').evaluate((d) => d.open)), 'logging in closes the dialog');
    const cookies = await ctx.cookies();
    const session = cookies.find((c) => c.name === 'cortex_session');
    check(session && session.httpOnly && session.sameSite === 'Strict', 'the session cookie is HttpOnly and SameSite=Strict');
    check(await page.evaluate(() => !document.cookie.includes('cortex_session')), 'scripts cannot read the session cookie');

    // Approve: the node becomes READY on the page, live.
    const t1 = Date.now();
    await pending.locator('button.approve').click();
    await page.waitForFunction((name) => {
      const cell = document.querySelector(`#nodes tr[data-node="${name}"] .state`);
      return cell && cell.textContent === 'ready';
    }, a.pending, { timeout: 30000 });
    console.log(`# READY on the page ${Date.now() - t1} ms after the click`);
    check(await page.evaluate(() => window.__noReload === 42), 'the page did not reload');
    await page.waitForFunction((name) => !document.querySelector(`.pending-item[data-node="${name}"]`), a.pending);
    check(true, 'the node left the pending list');
    check(/node_approved|approved/.test(await page.locator('#events').textContent()), 'the event timeline shows the approval');

    // The node's details dialog opens from its row.
    await page.locator(`#nodes tr[data-node="${a.pending}"] button`).click();
    await page.waitForFunction(() => document.getElementById('node-dialog').open);
    await page.waitForFunction(() => !/loading/.test(document.getElementById('node-plot').textContent));
    check(true, 'the node details dialog opens and loads its history');
    await page.screenshot({ path: path.join(a.out, 'status-page-node.png') });
    await page.click('#node-close');

    await page.screenshot({ path: path.join(a.out, 'status-page-after.png'), fullPage: true });

    // A phone-sized view of the same page.
    const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
    const p2 = await phone.newPage();
    p2.on('pageerror', (e) => problems.push('phone page error: ' + e.message));
    await p2.goto(a.url, { waitUntil: 'load' });
    await p2.locator(`#nodes tr[data-node="${a.pending}"]`).waitFor({ timeout: 20000 });
    const overflow = await p2.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(overflow <= 1, `no sideways scrolling of the whole page at phone width (overflow ${overflow}px)`);
    await p2.screenshot({ path: path.join(a.out, 'status-page-phone.png'), fullPage: true });
    await phone.close();

    check(problems.length === 0, 'no console errors or failed requests' + (problems.length ? ':\n  ' + problems.join('\n  ') : ''));
    console.log('all checks passed');
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : String(e));
  process.exit(1);
});
