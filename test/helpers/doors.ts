import assert from 'node:assert/strict';
import mqtt from 'mqtt';
import { Agent, fetch, type Dispatcher } from 'undici';
import { WebSocket } from 'ws';
import { waitFor, within } from './server.js';

/** How to reach a server from outside: its public base URL, and the CA to trust when it is https. */
export interface Reach {
  base: string;
  /** PEM of the CA that signed the certificate (self-signed in tests). */
  ca?: string;
}

export interface DoorsReport {
  /** ms from the publish to the SSE event arriving at the client. */
  sseLatencyMs: number;
}

function dispatcherFor(reach: Reach): Dispatcher | undefined {
  return reach.ca ? new Agent({ connect: { ca: reach.ca } }) : undefined;
}

async function getJson(reach: Reach, dispatcher: Dispatcher | undefined, path: string): Promise<Record<string, unknown>> {
  const r = await fetch(`${reach.base}${path}`, { dispatcher });
  assert.equal(r.status, 200, `GET ${path}`);
  return (await r.json()) as Record<string, unknown>;
}

async function publish(reach: Reach, dispatcher: Dispatcher | undefined, topic: string, data: string): Promise<string> {
  const r = await fetch(`${reach.base}/v1/publish`, { method: 'POST', dispatcher, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ topic, data }) });
  assert.equal(r.status, 200, `publish to ${topic}: ${r.status}`);
  return ((await r.json()) as { cursor: string }).cursor;
}

async function connections(reach: Reach, dispatcher: Dispatcher | undefined, transport: string): Promise<number> {
  const text = await (await fetch(`${reach.base}/metrics`, { dispatcher })).text();
  const m = new RegExp(`omnipush_connections\\{transport="${transport}"\\} (\\d+)`).exec(text);
  return m ? Number(m[1]) : 0;
}

/**
 * Speaks every HTTP door through `reach` (directly, over TLS, or through a proxy) and asserts each
 * works: discovery, an SSE event arriving while the stream stays open, WebSocket subscribe and
 * publish, a held long-poll answered by a publish, and MQTT over WebSocket. `sseDeadlineMs` must
 * be well under the server's SSE heartbeat, so a buffering proxy cannot pass by luck.
 */
export async function exerciseDoors(reach: Reach, sseDeadlineMs = 5000): Promise<DoorsReport> {
  const dispatcher = dispatcherFor(reach);
  const wsBase = reach.base.replace(/^http/, 'ws');
  const ac = new AbortController();
  try {
    const doc = await getJson(reach, dispatcher, '/.well-known/omnipush');
    assert.equal(doc.server, 'omnipush');
    const transports = doc.transports as { websocket: { url: string }; sse: { url: string }; mqtt?: { websocket?: string } };
    assert.equal(transports.websocket.url, `${wsBase}/v1/ws`, 'discovery announces the public WebSocket URL');
    assert.equal(transports.sse.url, `${reach.base}/v1/sse`);

    // SSE: a publish after the stream is open must arrive long before the next heartbeat
    const head = (await getJson(reach, dispatcher, '/.well-known/omnipush')).cursor as string;
    const sse = await within(
      fetch(`${reach.base}/v1/sse?topic=doors/sse&since=${encodeURIComponent(head)}`, { dispatcher, signal: ac.signal, headers: { accept: 'text/event-stream' } }),
      sseDeadlineMs,
      'the SSE response head',
    );
    assert.equal(sse.status, 200);
    assert.match(sse.headers.get('content-type') ?? '', /^text\/event-stream/);
    const reader = sse.body!.getReader();
    let text = '';
    const readUntil = async (needle: string, ms: number, what: string) => {
      await within(
        (async () => {
          while (!text.includes(needle)) {
            const { value, done } = await reader.read();
            if (done) throw new Error(`SSE stream ended before ${what}; got ${JSON.stringify(text)}`);
            text += Buffer.from(value).toString('utf8');
          }
        })(),
        ms,
        what,
      );
    };
    await readUntil(': ok', sseDeadlineMs, 'the SSE stream prelude');
    const sentAt = Date.now();
    const cursor = await publish(reach, dispatcher, 'doors/sse', 'via-sse');
    await readUntil('data: via-sse\n', sseDeadlineMs, 'the SSE event');
    const sseLatencyMs = Date.now() - sentAt;
    assert.ok(text.includes(`id: ${cursor}\n`), 'the event carries its cursor as id');
    ac.abort();
    await reader.cancel().catch(() => undefined);

    // WebSocket: subscribe, publish on the same socket, receive
    const ws = new WebSocket(transports.websocket.url, { ca: reach.ca });
    const frames: Array<Record<string, unknown>> = [];
    ws.on('message', (d: Buffer) => frames.push(JSON.parse(d.toString()) as Record<string, unknown>));
    ws.on('error', () => undefined);
    await within(new Promise<void>((resolve, reject) => (ws.once('open', () => resolve()), ws.once('error', reject))), 10_000, 'WebSocket open');
    ws.send(JSON.stringify({ type: 'subscribe', id: 1, topics: ['doors/ws'], since: 'now' }));
    await waitFor(() => frames.find((f) => f.id === 1 && f.type === 'subscribed'), 'WebSocket subscribed');
    ws.send(JSON.stringify({ type: 'publish', id: 2, topic: 'doors/ws', data: 'via-ws' }));
    const ack = await waitFor(() => frames.find((f) => f.id === 2 && f.type === 'ack'), 'WebSocket publish ack');
    const msg = await waitFor(() => frames.find((f) => f.type === 'message'), 'WebSocket message');
    assert.equal(msg.data, 'via-ws');
    assert.equal(msg.cursor, ack.cursor);
    ws.close();

    // long-poll: held (the server counts it) until a message arrives, then answered with it
    const pollHead = (await getJson(reach, dispatcher, '/.well-known/omnipush')).cursor as string;
    const poll = fetch(`${reach.base}/v1/poll?topic=doors/poll&since=${encodeURIComponent(pollHead)}&timeout=30`, { dispatcher });
    await waitFor(async () => (await connections(reach, dispatcher, 'longpoll')) >= 1, 'the long-poll held by the server');
    const pollCursor = await publish(reach, dispatcher, 'doors/poll', 'via-poll');
    const answer = await within(poll, 10_000, 'the held long-poll answered');
    assert.equal(answer.status, 200);
    const body = (await answer.json()) as { messages: Array<{ data: string; cursor: string }>; cursor: string };
    assert.deepEqual(body.messages.map((m) => m.data), ['via-poll']);
    assert.equal(body.cursor, pollCursor);

    // MQTT over WebSocket, with an independent client
    const mqttUrl = transports.mqtt?.websocket;
    assert.equal(mqttUrl, `${wsBase}/mqtt`, 'discovery announces MQTT over WebSocket');
    const client = await within(mqtt.connectAsync(mqttUrl, { protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 10_000, ca: reach.ca, wsOptions: { ca: reach.ca } }), 15_000, 'MQTT over WebSocket CONNACK');
    client.on('error', () => undefined);
    try {
      const got: string[] = [];
      client.on('message', (_t, payload) => got.push(payload.toString()));
      await client.subscribeAsync('doors/mqtt', { qos: 1 });
      await publish(reach, dispatcher, 'doors/mqtt', 'from-http');
      await client.publishAsync('doors/mqtt', 'from-mqtt', { qos: 1 });
      await waitFor(() => got.length >= 2, 'MQTT over WebSocket messages');
      assert.deepEqual(got.sort(), ['from-http', 'from-mqtt']);
    } finally {
      await client.endAsync();
    }
    return { sseLatencyMs };
  } finally {
    // a failed check may leave the stream open: end it rather than wait for it
    ac.abort();
    await (dispatcher as Agent | undefined)?.destroy();
  }
}
