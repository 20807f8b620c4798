import assert from 'node:assert/strict';
import { SignJWT } from 'jose';
import { WebSocket } from 'ws';
import { openRawSse } from './sse.js';
import { waitFor } from './server.js';
import { prng } from './prng.js';

/** The secret every presence test server verifies tokens with. */
export const PRESENCE_SECRET = 'presence-test-secret-0123456789';

export function presenceToken(sub: string, presence: string[] = ['#']): Promise<string> {
  return new SignJWT({ omnipush: { subscribe: ['#'], publish: ['#'], presence } })
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(sub)
    .setExpirationTime('1h')
    .sign(new TextEncoder().encode(PRESENCE_SECRET));
}

export interface MemberView {
  id: string;
  sub: string;
  door: string;
  connection: string;
}

type Frame = Record<string, unknown> & { type: string };

/**
 * A reader as the SDK does it: join/leave events first (subscribe with `presence: true`), then the
 * list page by page; events up to the first page's position are already in the list, later ones
 * are applied in order.
 */
export class PresenceFollower {
  readonly view = new Map<string, MemberView>();
  position = -1;
  private readonly pending: Frame[] = [];
  private ready = false;
  private nextId = 1;
  private readonly frames: Frame[] = [];

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (d: Buffer) => {
      const f = JSON.parse(d.toString()) as Frame;
      if (f.type === 'join' || f.type === 'leave') {
        if (this.ready) this.apply(f);
        else this.pending.push(f);
      } else this.frames.push(f);
    });
    ws.on('error', () => undefined);
  }

  static async open(base: string, token: string, topic: string, pageSize: number): Promise<PresenceFollower> {
    const ws = new WebSocket(`${base.replace(/^http/, 'ws')}/v1/ws?access_token=${token}`);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    const f = new PresenceFollower(ws);
    const sub = await f.request({ type: 'subscribe', topics: [topic], presence: true });
    assert.equal(sub.type, 'subscribed', JSON.stringify(sub));
    let cursor: string | undefined;
    let first = true;
    do {
      const page = await f.request({ type: 'presence', topic, limit: pageSize, ...(cursor ? { cursor } : {}) });
      assert.equal(page.type, 'presence', JSON.stringify(page));
      if (first) f.position = page.position as number;
      first = false;
      for (const m of page.members as MemberView[]) f.view.set(m.id, m);
      cursor = page.cursor as string | undefined;
    } while (cursor);
    f.ready = true;
    for (const e of f.pending.splice(0)) f.apply(e);
    return f;
  }

  private apply(e: Frame): void {
    const pos = e.position as number;
    if (pos <= this.position) return;
    this.position = pos;
    const m = e.member as MemberView;
    if (e.type === 'join') this.view.set(m.id, m);
    else this.view.delete(m.id);
  }

  async request(msg: Record<string, unknown>): Promise<Frame> {
    const id = this.nextId++;
    this.ws.send(JSON.stringify({ ...msg, id }));
    return waitFor(() => this.frames.find((f) => f.id === id), `reply to ${String(msg.type)}`);
  }

  subs(): string[] {
    return [...this.view.values()].map((m) => m.sub).sort();
  }

  close(): void {
    this.ws.terminate();
  }
}

/** One churning member: over WebSocket or SSE, on a topic name or a wildcard filter, on any node. */
export class ChurnSlot {
  open = false;
  private close: (() => void) | null = null;
  constructor(
    readonly sub: string,
    private readonly token: string,
  ) {}

  /** Joining or joined: told to leave meanwhile, it leaves once the join is done (never pick a slot twice in one go). */
  async join(base: string, door: 'ws' | 'sse', filter: string): Promise<void> {
    this.open = true;
    if (door === 'sse') {
      const s = await openRawSse(`${base}/v1/sse?topic=${encodeURIComponent(filter)}`, { Authorization: `Bearer ${this.token}` });
      assert.equal(s.status, 200);
      this.close = () => s.close();
    } else {
      const ws = new WebSocket(`${base.replace(/^http/, 'ws')}/v1/ws?access_token=${this.token}`);
      ws.on('error', () => undefined);
      await new Promise<void>((resolve, reject) => {
        ws.once('open', () => resolve());
        ws.once('error', reject);
      });
      ws.send(JSON.stringify({ type: 'subscribe', topics: [filter], id: 1 }));
      await new Promise<void>((resolve) => ws.once('message', () => resolve()));
      this.close = () => ws.terminate();
    }
    if (!this.open) this.leave();
  }

  leave(): void {
    this.open = false;
    this.close?.();
    this.close = null;
  }
}

const TOPIC = 'prop/room';

/** The members the server lists for TOPIC, by principal. */
async function listed(base: string, token: string): Promise<string[]> {
  const r = await fetch(`${base}/v1/presence?topic=${TOPIC}&limit=1000`, { headers: { Authorization: `Bearer ${token}` } });
  assert.equal(r.status, 200);
  return ((await r.json()) as { members: Array<{ sub: string }> }).members.map((m) => m.sub).sort();
}

/**
 * Random joins and leaves (WebSocket and SSE, topic and wildcard) on `bases` while followers take
 * paged snapshots at random moments and follow the events; at rest every follower's view is the
 * true member set.
 */
export async function churnProperty(bases: string[], seed: number, rounds: number): Promise<void> {
  const rnd = prng(seed);
  const pick = <T>(xs: T[]) => xs[Math.floor(rnd() * xs.length)];
  const slots: ChurnSlot[] = [];
  for (let i = 0; i < 10; i++) slots.push(new ChurnSlot(`m${i}`, await presenceToken(`m${i}`)));
  const followers: PresenceFollower[] = [];
  const readers: string[] = [];
  const starting: Array<Promise<void>> = [];
  try {
    for (let r = 0; r < rounds; r++) {
      // a follower starts now and then, in the middle of the churn, with small pages
      if (rnd() < 0.08 && readers.length < 5) {
        const n = readers.length;
        readers.push(`reader${n}`);
        const base = pick(bases);
        const pageSize = 1 + Math.floor(rnd() * 4);
        starting.push(
          presenceToken(`reader${n}`).then(async (t) => {
            followers.push(await PresenceFollower.open(base, t, TOPIC, pageSize));
          }),
        );
      }
      const batch: Array<Promise<void>> = [];
      const picked = new Set<ChurnSlot>();
      for (let k = 0; k < 3; k++) {
        const s = pick(slots);
        if (picked.has(s)) continue;
        picked.add(s);
        if (s.open) s.leave();
        else batch.push(s.join(pick(bases), rnd() < 0.5 ? 'ws' : 'sse', rnd() < 0.2 ? 'prop/#' : TOPIC));
      }
      await Promise.all(batch);
      if (rnd() < 0.3) await new Promise((res) => setImmediate(res));
    }
    await Promise.all(starting);
    const expected = [...slots.filter((s) => s.open).map((s) => s.sub), ...readers].sort();
    const reader = await presenceToken('auditor');
    for (const base of bases) {
      let last: string[] = [];
      await waitFor(async () => (last = await listed(base, reader)).join() === expected.join(), `the list on ${base} to settle at ${expected.join()}`).catch((e: Error) => {
        throw new Error(`${e.message}; it is ${last.join()} (seed ${seed})`);
      });
    }
    for (const f of followers) {
      await waitFor(() => f.subs().join() === expected.join(), `follower view ${f.subs().join()} to be ${expected.join()} (seed ${seed})`, 5000);
    }
    assert.ok(followers.length >= 1, 'at least one follower ran');
  } finally {
    for (const s of slots) s.leave();
    for (const f of followers) f.close();
  }
}

