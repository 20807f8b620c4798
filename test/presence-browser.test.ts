import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import type { RunningServer } from '../src/server.js';
import { chromiumMissing, launchChromium } from './helpers/chromium.js';
import { startTestServer, waitFor } from './helpers/server.js';

const missing = chromiumMissing('browser presence tests');

interface PageState {
  events: string[];
  members: string[];
}

/** Loads the SDK on a page of the server and subscribes to `topic` with presence as `clientId`. */
async function join(page: Page, origin: string, topic: string, clientId: string, transport: string): Promise<void> {
  await page.goto(`${origin}/healthz`);
  await page.evaluate(
    async ({ topic, clientId, transport }) => {
      const w = globalThis as unknown as { state: PageState; client: unknown; sub: unknown; location: { origin: string } };
      const { connect } = (await import('/v1/client/omnipush.js' as string)) as typeof import('../src/client/index.js');
      const c = await connect(w.location.origin, { transports: [transport as never], clientId, backoff: { min: 50, max: 500 } });
      w.state = { events: [], members: [] };
      const sub = c.subscribe(topic, () => undefined, { since: 'now', presence: true, info: { tab: clientId } });
      sub.on('join', (m) => w.state.events.push(`join ${m.id}`));
      sub.on('leave', (m) => w.state.events.push(`leave ${m.id}`));
      w.client = c;
      w.sub = sub;
    },
    { topic, clientId, transport },
  );
}

const state = (page: Page) =>
  page.evaluate(async () => {
    const w = globalThis as unknown as { state: PageState; sub: { presence(): Promise<Array<{ id: string }>> } };
    w.state.members = (await w.sub.presence()).map((m) => m.id).sort();
    return w.state;
  });

describe('presence in Chromium', { skip: missing ? 'chromium missing' : false }, () => {
  let browser: Browser;
  let server: RunningServer;
  before(async () => {
    server = await startTestServer({ presence: { rules: [{ filter: 'chat/+', joinLeave: true }], leaveGrace: '200ms' } });
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    await server?.close();
  });

  it('two pages with the SDK (WebSocket and SSE) see each other join and leave', async () => {
    const a = await browser.newPage();
    const b = await browser.newPage();
    await join(a, server.http, 'chat/lobby', 'tab-a', 'websocket');
    await waitFor(async () => (await state(a)).members.join() === 'anonymous/tab-a', 'page A sees itself');
    await join(b, server.http, 'chat/lobby', 'tab-b', 'sse');
    const both = 'anonymous/tab-a,anonymous/tab-b';
    await waitFor(async () => (await state(a)).members.join() === both, 'page A lists page B');
    await waitFor(async () => (await state(b)).members.join() === both, 'page B lists page A');
    assert.ok((await state(a)).events.includes('join anonymous/tab-b'), 'page A heard B join');

    await b.close();
    await waitFor(async () => (await state(a)).events.includes('leave anonymous/tab-b'), 'page A hears B leave');
    const sa = await state(a);
    assert.deepEqual(sa.members, ['anonymous/tab-a']);
    assert.equal(sa.events.filter((e) => e === 'join anonymous/tab-b').length, 1);
    assert.equal(sa.events.filter((e) => e === 'leave anonymous/tab-b').length, 1);

    // and the other way round: B's tab comes back on SSE, then A leaves
    const b2 = await browser.newPage();
    await join(b2, server.http, 'chat/lobby', 'tab-b', 'sse');
    await waitFor(async () => (await state(b2)).members.join() === both, 'page B (again) lists page A');
    await a.close();
    await waitFor(async () => (await state(b2)).events.includes('leave anonymous/tab-a'), 'page B hears A leave');
    assert.deepEqual((await state(b2)).members, ['anonymous/tab-b']);
    await b2.close();
  });
});
