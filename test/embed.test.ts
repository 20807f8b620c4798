import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createOmnipush, OmnipushError, type EmbeddedMessage, type Omnipush } from '../src/index.js';
import { waitFor } from './helpers/server.js';
import { openRawSse } from './helpers/sse.js';

describe('embedding API', () => {
  let omni: Omnipush;
  before(async () => {
    omni = await createOmnipush({ http: { port: 0 }, mqtt: { port: 0 }, store: { kind: 'memory' }, log: { level: 'silent' } });
  });
  after(() => omni.close());

  it('publishes and subscribes in-process, and meets the doors both ways', async () => {
    const got: EmbeddedMessage[] = [];
    const stop = await omni.subscribe('emb/#', (m) => got.push(m));
    // an SSE client sees what the app publishes
    // since=all: whether the stream is attached before or after the publish, the message reaches it
    const sse = await openRawSse(`${omni.http}/v1/sse?topic=emb/%23&format=json&since=all`);
    try {
      const ack = await omni.publish('emb/a', 'from the app', { event: 'note', properties: [['k', 'v']] });
      assert.equal(ack.topic, 'emb/a');
      await waitFor(() => got.length === 1, 'the app hears its own publish');
      assert.equal(got[0].topic, 'emb/a');
      assert.equal(got[0].cursor, ack.cursor);
      assert.equal(got[0].data, 'from the app');
      assert.equal(got[0].event, 'note');
      assert.deepEqual(got[0].properties, [['k', 'v']]);
      const ev = await waitFor(() => sse.events()[0], 'the SSE client hears the app');
      assert.equal((JSON.parse(ev.data) as { cursor: string }).cursor, ack.cursor);
    } finally {
      sse.close();
    }
    // what a door publishes reaches the app, bytes as they are
    const r = await fetch(`${omni.http}/v1/topics/emb/b`, { method: 'POST', body: new Uint8Array([0xff, 0x00]) });
    assert.equal(r.status, 200);
    await waitFor(() => got.length === 2, 'the HTTP publish');
    assert.deepEqual([...got[1].payload], [0xff, 0x00]);
    assert.equal(got[1].data, undefined);
    // after unsubscribing, nothing more arrives: a second subscriber hearing the next message proves it went out
    stop();
    const later: EmbeddedMessage[] = [];
    const stop2 = await omni.subscribe(['emb/#'], (m) => later.push(m), { since: 'now' });
    await omni.publish('emb/c', 'after');
    await waitFor(() => later.length === 1, 'the second subscriber');
    assert.equal(got.length, 2);
    stop2();
    const metrics = await (await fetch(`${omni.http}/metrics`)).text();
    assert.match(metrics, /omnipush_published_messages_total\{door="embedded"\} 2\b/);
  });

  it('replays from a cursor, and refuses bad filters and topics with the server errors', async () => {
    const first = await omni.publish('replay/x', 'one');
    await omni.publish('replay/x', 'two', { retain: true });
    const got: string[] = [];
    const stop = await omni.subscribe('replay/#', (m) => got.push(m.data!), { since: first.cursor });
    await waitFor(() => got.length === 1, 'the replay');
    assert.deepEqual(got, ['two']);
    stop();
    await assert.rejects(omni.subscribe('a/#/b', () => undefined), (e: unknown) => e instanceof OmnipushError && e.code === 'invalid_filter');
    await assert.rejects(omni.publish('a/+', 'x'), (e: unknown) => e instanceof OmnipushError && e.code === 'invalid_topic');
  });

  it('contains a handler that throws: other subscribers still get the message', async () => {
    const got: string[] = [];
    const stopBad = await omni.subscribe('throw/#', () => {
      throw new Error('app bug');
    });
    const stopGood = await omni.subscribe('throw/#', (m) => got.push(m.data!));
    await omni.publish('throw/x', 'still here');
    await omni.publish('throw/x', 'and again');
    await waitFor(() => got.length === 2, 'both messages');
    stopBad();
    stopGood();
  });

  it('tells a subscription when the server closes', async () => {
    const own = await createOmnipush({ http: { port: 0 }, mqtt: { enabled: false }, store: { kind: 'memory' }, log: { level: 'silent' } });
    let reason: OmnipushError | undefined;
    await own.subscribe('x', () => undefined, { onClose: (r) => (reason = r) });
    await own.close();
    assert.equal(reason?.code, 'shutting_down');
    assert.equal(own.mqtt, undefined);
  });
});
