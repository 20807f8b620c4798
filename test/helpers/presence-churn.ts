import assert from 'node:assert/strict';
import { SignJWT } from 'jose';
import { WebSocket } from 'ws';
import { openRawSse } from './sse.js';
import { waitFor } from './server.js';

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
