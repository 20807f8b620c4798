import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { after, before, describe, it } from 'node:test';
import { SignJWT } from 'jose';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { hashPassword } from '../src/auth/users.js';
import type { RunningServer } from '../src/server.js';
import { mqttClient } from './helpers/mqtt.js';
import { startTestServer, waitFor, within } from './helpers/server.js';
import { chromiumMissing, launchChromium } from './helpers/chromium.js';
import { openWs } from './helpers/ws.js';

const missing = chromiumMissing('console tests');

const SECRET = 'console-test-secret-of-enough-length';
const SHOTS = '/tmp/console-shots';
const PAGES = ['overview', 'topics', 'connections', 'mqtt', 'webpush', 'playground'];
const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

function token(sub: string): Promise<string> {
  return new SignJWT({ omnipush: { publish: ['#'], subscribe: ['#'] } })
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(sub)
    .setExpirationTime('1h')
    .sign(new TextEncoder().encode(SECRET));
}

async function publish(base: string, topic: string, data: string): Promise<void> {
  const r = await fetch(`${base}/v1/publish`, { method: 'POST', headers: { authorization: `Bearer ${await token('feeder')}` }, body: JSON.stringify({ topic, data }) });
  assert.equal(r.status, 200);
}

const numberIn = async (page: Page, sel: string) => Number(((await page.textContent(sel)) ?? '').replace(/[^\d]/g, ''));

describe('the console in Chromium', { skip: missing ? 'chromium missing' : false }, () => {
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let server: RunningServer;
  before(async () => {
    server = await startTestServer({
      auth: { jwt: { secret: SECRET }, allowAnonymous: true, anonymous: { publish: ['demo/#'], subscribe: ['demo/#'] } },
      admin: { users: [{ username: 'op', passwordHash: await hashPassword('s3cret pass') }] },
      webpush: { subject: 'mailto:ops@example.com' },
    });
    browser = await launchChromium();
    // CSP bypass only so that the test can inject axe-core; the console itself runs under its CSP
    context = await browser.newContext({ viewport: { width: 1280, height: 800 }, bypassCSP: true });
    page = await context.newPage();
    mkdirSync(SHOTS, { recursive: true });
  });
  after(async () => {
    await browser?.close();
    await server?.close();
  });

  it('serves the console with a CSP that forbids framing, and sends the old demo page to the playground', async () => {
    const r = await fetch(`${server.http}/admin/`);
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-security-policy') ?? '', /frame-ancestors 'none'/);
    assert.equal(r.headers.get('x-frame-options'), 'DENY');
    const demo = await fetch(`${server.http}/demo/`, { redirect: 'manual' });
    assert.equal(demo.status, 302);
    assert.equal(demo.headers.get('location'), '/admin/#playground');
    // the lazily loaded chunks are served under the same headers; other names are not
    const chunk = readdirSync(new URL('../console/', import.meta.url)).find((f) => /^mqtt-door-[A-Z0-9]{8}\.js$/.test(f));
    assert.ok(chunk, 'the build made an MQTT chunk');
    const c = await fetch(`${server.http}/admin/${chunk}`);
    assert.equal(c.status, 200);
    assert.match(c.headers.get('content-type') ?? '', /^text\/javascript/);
    assert.match(c.headers.get('content-security-policy') ?? '', /frame-ancestors 'none'/);
    for (const name of ['mqtt-door-AAAAAAAA.js', '..%2Fserver.js', 'mqtt-door-../../server.js']) {
      const r = await fetch(`${server.http}/admin/${name}`);
      assert.equal(r.status, 404, name);
      assert.equal(((await r.json()) as { error: { code: string } }).error.code, 'not_found');
    }
  });

  it('refuses a wrong password, then logs in', async () => {
    await page.goto(`${server.http}/admin/`);
    await page.getByLabel('Username').fill('op');
    await page.getByLabel('Password').fill('wrong');
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('alert').filter({ hasText: 'wrong username or password' }).waitFor({ timeout: 10_000 });
    await page.screenshot({ path: `${SHOTS}/login-1280.png` });
    await page.getByLabel('Password').fill('s3cret pass');
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('navigation', { name: 'Console pages' }).waitFor({ timeout: 10_000 });
    const cookies = await context.cookies();
    const session = cookies.find((c) => c.name === 'omnipush_admin');
    assert.ok(session?.httpOnly, 'the session cookie is HttpOnly');
    assert.equal(session.sameSite, 'Strict');
  });

  it('shows the delivery counter move while messages are published', async () => {
    const sub = await mqttClient(server, { protocolVersion: 5, username: 'watcher', password: Buffer.from(await token('watcher')) });
    await sub.subscribeAsync('load/#');
    await page.goto(`${server.http}/admin/#overview`);
    await page.locator('#stat-deliveries').waitFor();
    const start = await numberIn(page, '#stat-deliveries');
    let n = 0;
    await waitFor(
      async () => {
        await publish(server.http, 'load/x', `m${n++}`);
        return (await numberIn(page, '#stat-deliveries')) >= start + 3;
      },
      'the deliveries counter on the page to grow',
      20_000,
    );
    assert.ok((await numberIn(page, '#stat-published')) >= n, 'the published counter counts the test’s publishes');
    assert.ok((await page.locator('.chart canvas').count()) >= 2, 'uPlot drew both charts');
    // the rate chart plots the deliveries of the last seconds
    await waitFor(
      async () => {
        await publish(server.http, 'load/x', `m${n++}`);
        const peak = Number(await page.locator('.chart').nth(1).getAttribute('data-peak'));
        return Number(await page.locator('.chart').nth(1).getAttribute('data-points')) >= 4 && peak > 0;
      },
      'a deliveries-per-second chart with points above zero',
      20_000,
    );
    await page.screenshot({ path: `${SHOTS}/overview-live-1280.png` });
    sub.end(true);
  });

  it('finds a client by principal and disconnects it; the client sees its close code', async () => {
    const ws = await openWs(server.http, { headers: { authorization: `Bearer ${await token('frank')}` } });
    await ws.request({ type: 'subscribe', topics: ['frank/inbox'] });
    await ws.request({ type: 'subscribe', topics: ['frank/news'] });
    await page.goto(`${server.http}/admin/#connections`);
    await page.getByLabel('Principal').fill('frank');
    await page.getByRole('button', { name: 'Find' }).click();
    const row = page.locator('#connections tbody tr').filter({ hasText: 'websocket' });
    await row.waitFor({ timeout: 10_000 });
    assert.match((await row.textContent()) ?? '', /frank\/inbox/);
    await page.getByRole('button', { name: 'Unsubscribe frank from frank/news' }).click();
    await page.locator('#action-status').filter({ hasText: 'Unsubscribed frank from frank/news' }).waitFor({ timeout: 10_000 });
    await waitFor(() => ws.frames.find((f) => f.type === 'unsubscribed'), 'the client told of its dropped subscription');
    await page.getByRole('button', { name: 'Unsubscribe frank from frank/news' }).waitFor({ state: 'detached', timeout: 10_000 });
    await page.screenshot({ path: `${SHOTS}/connections-data-1280.png`, fullPage: true });
    await page.getByLabel('Reason shown to the client').fill('closed from the console');
    await page.getByRole('button', { name: 'Disconnect frank everywhere' }).click();
    const closed = await within(ws.closed, 10_000, 'the WebSocket close');
    assert.equal(closed.code, 4009);
    assert.equal(closed.reason, 'closed from the console');
    await page.locator('#action-status').filter({ hasText: 'Disconnected 1 connection of frank' }).waitFor({ timeout: 10_000 });
  });

  it('publishes from the playground to an MQTT subscriber, and subscribes over SSE', async () => {
    const sub = await mqttClient(server, { protocolVersion: 5, username: 'gina', password: Buffer.from(await token('gina')) });
    await sub.subscribeAsync('demo/#');
    await page.goto(`${server.http}/admin/#playground`);
    await page.getByLabel('Door').selectOption('sse');
    await page.getByRole('button', { name: 'Subscribe' }).click();
    await waitFor(async () => (await page.textContent('#pg-state'))?.startsWith('open over sse'), 'the playground subscribed over SSE');
    await page.locator('#pg-topics').fill('demo/pg, demo/pg2');
    await page.locator('#pg-data').fill('from the playground');
    await page.locator('#pg-publish').click();
    await waitFor(() => sub.received.filter((m) => m.payload === 'from the playground').length === 2, 'the MQTT subscriber got both messages');
    assert.deepEqual(sub.received.map((m) => m.topic).sort(), ['demo/pg', 'demo/pg2']);
    await waitFor(async () => (await page.textContent('#pg-log'))?.includes('sse ← demo/pg2: from the playground'), 'the playground’s own SSE subscription got it');
    sub.end(true);
  });

  it('subscribes and publishes over MQTT from the playground, loading MQTT.js only then, under the console’s CSP', async () => {
    // a context of its own that keeps the CSP: the lazily loaded MQTT.js chunk must run under it
    const strict = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    try {
      const p = await strict.newPage();
      const scripts: string[] = [];
      p.on('request', (r) => {
        if (r.resourceType() === 'script') scripts.push(new URL(r.url()).pathname);
      });
      const cspErrors: string[] = [];
      p.on('console', (m) => {
        if (/Content Security Policy/i.test(m.text())) cspErrors.push(m.text());
      });
      await p.goto(`${server.http}/admin/#playground`);
      await p.getByLabel('Username').fill('op');
      await p.getByLabel('Password').fill('s3cret pass');
      await p.getByRole('button', { name: 'Log in' }).click();
      await p.locator('#pg-door option[value="mqtt"]').waitFor({ state: 'attached', timeout: 10_000 });
      assert.deepEqual(
        scripts.filter((u) => u.includes('mqtt')),
        [],
        'MQTT.js is not loaded before the MQTT door is used',
      );

      // subscribe over MQTT (anonymous: no token), receive what HTTP publishes
      await p.getByLabel('Door').selectOption('mqtt');
      await p.getByLabel('Topic filter').fill('demo/mq/#');
      await p.getByRole('button', { name: 'Subscribe' }).click();
      await waitFor(async () => (await p.textContent('#pg-state')) === 'open over mqtt', 'the playground subscribed over MQTT', 20_000);
      assert.equal(scripts.filter((u) => /\/admin\/mqtt-door-[A-Z0-9]+\.js$/.test(u)).length, 1, `the MQTT chunk was loaded once: ${scripts.join(' ')}`);
      await publish(server.http, 'demo/mq/a', 'over http');
      await waitFor(async () => (await p.textContent('#pg-log'))?.includes('mqtt ← demo/mq/a: over http'), 'the playground’s MQTT subscription got the HTTP publish');

      // publish over MQTT: anonymous grants stop it at priv/, the client token as MQTT password lets it through
      const sub = await mqttClient(server, { protocolVersion: 5, username: 'ivy', password: Buffer.from(await token('ivy')) });
      await sub.subscribeAsync('priv/#');
      await p.getByLabel('Publish through').selectOption('mqtt');
      await p.locator('#pg-topics').fill('priv/pg');
      await p.locator('#pg-data').fill('over mqtt');
      await p.locator('#pg-publish').click();
      await waitFor(async () => /publish failed: .*not authorized/i.test((await p.textContent('#pg-log')) ?? ''), 'the anonymous MQTT publish refused');
      assert.equal(sub.received.length, 0);
      await p.getByLabel('Client token (optional)').fill(await token('pia'));
      await p.locator('#pg-publish').click();
      await waitFor(() => sub.received.find((m) => m.topic === 'priv/pg' && m.payload === 'over mqtt'), 'the independent MQTT client got the playground’s MQTT publish');
      await waitFor(async () => (await p.textContent('#pg-log'))?.includes('published to priv/pg over mqtt'), 'the playground logged the PUBACK');
      assert.deepEqual(cspErrors, []);
      for (const w of [390, 1280]) {
        await p.setViewportSize({ width: w, height: w === 390 ? 844 : 800 });
        await p.screenshot({ path: `${SHOTS}/playground-mqtt-${w}.png`, fullPage: true });
      }
      sub.end(true);
    } finally {
      await strict.close();
    }
  });

  it('browses retained messages and history on the Topics page', async () => {
    const r = await fetch(`${server.http}/v1/publish`, { method: 'POST', headers: { authorization: `Bearer ${await token('feeder')}` }, body: JSON.stringify({ topic: 'status/door', data: 'open', retain: true }) });
    assert.equal(r.status, 200);
    await page.goto(`${server.http}/admin/#topics`);
    const retained = page.locator('section', { has: page.getByRole('heading', { name: 'Retained messages' }) });
    await retained.getByLabel('Topic or filter').fill('status/#');
    await retained.getByRole('button', { name: 'Show' }).click();
    await page.locator('#retained tbody tr').filter({ hasText: 'status/door' }).filter({ hasText: 'open' }).waitFor({ timeout: 10_000 });
    const history = page.locator('section', { has: page.getByRole('heading', { name: 'History' }) });
    await history.getByLabel('Topic or filter').fill('demo/#');
    await history.getByRole('button', { name: 'Read' }).click();
    await history.locator('tbody tr').filter({ hasText: 'demo/pg2' }).waitFor({ timeout: 10_000 });
    await page.screenshot({ path: `${SHOTS}/topics-data-1280.png`, fullPage: true });
  });

  it('has no serious or critical accessibility violations on any page (axe-core), at phone and desktop widths', async () => {
    for (const [w, h] of [
      [390, 844],
      [1280, 800],
    ]) {
      await page.setViewportSize({ width: w, height: h });
      for (const p of PAGES) {
        await page.goto(`${server.http}/admin/#${p}`);
        await page.locator('main h1').waitFor();
        // let the page's first fetch land before looking at it
        await page.waitForLoadState('networkidle');
        await page.screenshot({ path: `${SHOTS}/${p}-${w}.png`, fullPage: true });
        await page.addScriptTag({ content: AXE });
        const violations = await page.evaluate(async () => {
          const axe = (globalThis as unknown as { axe: { run(): Promise<{ violations: Array<{ id: string; impact: string; help: string; nodes: Array<{ target: string[] }> }> }> } }).axe;
          const r = await axe.run();
          return r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
        });
        assert.deepEqual(violations, [], `${p} at ${w}px`);
        // nothing wider than the screen: tables scroll inside their own box
        const overflow = await page.evaluate(() => (globalThis as unknown as { document: { documentElement: { scrollWidth: number } } }).document.documentElement.scrollWidth);
        assert.ok(overflow <= w, `${p} at ${w}px is ${overflow}px wide`);
      }
    }
  });
});
