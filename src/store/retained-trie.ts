import type { StoredMessage } from '../core/message.js';

interface Node {
  name: string;
  parent: Node | null;
  children: Map<string, Node> | null;
  msg: StoredMessage | null;
}

/** Nodes visited between two ticks of a walk, so a caller can cut pages of bounded work. */
const VISITS_PER_TICK = 256;

/**
 * The memory store's retained messages in a level trie: a filter walks only the nodes on paths it
 * can match. A node lives only while a retained message is at or below it, so the trie's size
 * follows the retained topics that exist now.
 */
export class RetainedTrie {
  private readonly root: Node = { name: '', parent: null, children: null, msg: null };
  private visits = 0;
  /** Retained messages held. */
  size = 0;
  /** Trie nodes below the root: one per level of every retained topic, shared prefixes once. */
  nodes = 0;

  get(topic: string): StoredMessage | undefined {
    let n: Node | undefined = this.root;
    for (const l of topic.split('/')) {
      n = n.children?.get(l);
      if (!n) return undefined;
    }
    return n.msg ?? undefined;
  }

  /** Sets the topic's retained message; returns the one it replaced. */
  set(m: StoredMessage): StoredMessage | null {
    let n = this.root;
    for (const l of m.topic.split('/')) {
      n.children ??= new Map();
      let c = n.children.get(l);
      if (!c) {
        n.children.set(l, (c = { name: l, parent: n, children: null, msg: null }));
        this.nodes++;
      }
      n = c;
    }
    const old = n.msg;
    n.msg = m;
    if (!old) this.size++;
    return old;
  }

  /** Clears the topic's retained message, dropping nodes nothing is below any more; returns it. */
  delete(topic: string): StoredMessage | null {
    let n: Node | undefined = this.root;
    for (const l of topic.split('/')) {
      n = n.children?.get(l);
      if (!n) return null;
    }
    const old = n.msg;
    if (!old) return null;
    n.msg = null;
    this.size--;
    while (n.parent && !n.msg && !n.children?.size) {
      n.parent.children!.delete(n.name);
      this.nodes--;
      if (n.parent.children!.size === 0) n.parent.children = null;
      n = n.parent;
    }
    return old;
  }

  /**
   * Retained messages of topics matching `filter`, depth first; `null` now and then (a tick) tells
   * the caller a bounded amount of work was done, so it may end a page there.
   */
  *match(filter: string): Generator<StoredMessage | null> {
    yield* this.visit(this.root, filter.split('/'), 0);
  }

  private *visit(n: Node, levels: string[], i: number): Generator<StoredMessage | null> {
    if (++this.visits >= VISITS_PER_TICK) {
      this.visits = 0;
      yield null;
    }
    if (i === levels.length) {
      if (n.msg) yield n.msg;
      return;
    }
    const f = levels[i];
    if (f === '#') {
      // `a/#` matches `a` too (MQTT 4.7.1.2)
      if (i > 0 && n.msg) yield n.msg;
      yield* this.below(n, i === 0);
      return;
    }
    if (!n.children) return;
    if (f === '+') {
      for (const [name, c] of n.children) {
        // a leading wildcard does not match `$` topics
        if (i === 0 && name.charCodeAt(0) === 36) continue;
        yield* this.visit(c, levels, i + 1);
      }
      return;
    }
    const c = n.children.get(f);
    if (c) yield* this.visit(c, levels, i + 1);
  }

  private *below(n: Node, skipDollar: boolean): Generator<StoredMessage | null> {
    if (!n.children) return;
    for (const [name, c] of n.children) {
      if (skipDollar && name.charCodeAt(0) === 36) continue;
      if (++this.visits >= VISITS_PER_TICK) {
        this.visits = 0;
        yield null;
      }
      if (c.msg) yield c.msg;
      yield* this.below(c, false);
    }
  }
}
