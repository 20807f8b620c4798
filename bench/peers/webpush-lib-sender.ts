/**
 * The peer for the Web Push benchmark: the `web-push` library's `sendNotification` over a list
 * of subscriptions, driven over IPC. Its loop keeps as many requests in flight as our server
 * does per origin, over a keep-alive agent, so the comparison is about the work per send.
 */
import { Agent } from 'node:https';
import webpush from 'web-push';

interface SendJob {
  id: number;
  subs: Array<{ endpoint: string; keys: { p256dh: string; auth: string } }>;
  payload: string;
  vapid: { subject: string; publicKey: string; privateKey: string };
  concurrency: number;
  ca: string;
}

let agent: Agent | undefined;

process.on('message', (m: SendJob) => {
  void (async () => {
    agent ??= new Agent({ keepAlive: true, maxSockets: m.concurrency, ca: m.ca });
    const t0 = Date.now();
    let next = 0;
    let failed = 0;
    const worker = async () => {
      while (next < m.subs.length) {
        const s = m.subs[next++];
        try {
          await webpush.sendNotification(s, m.payload, { vapidDetails: m.vapid, TTL: 86400, contentEncoding: 'aes128gcm', agent });
        } catch {
          failed++;
        }
      }
    };
    await Promise.all(Array.from({ length: m.concurrency }, worker));
    process.send!({ id: m.id, result: { startedAt: t0, elapsedMs: Date.now() - t0, failed } });
  })();
});
