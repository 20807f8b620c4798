/**
 * Subscription index: maps topic filters to values and finds every value whose filter
 * matches a topic name. Matching walks at most (levels × 3) nodes, independent of how
 * many filters are stored.
 */
class TrieNode<T> {
  children: Map<string, TrieNode<T>> | undefined;
  plus: TrieNode<T> | undefined;
  /** Values whose filter ends here exactly. */
  exact: Set<T> | undefined;
  /** Values whose filter ends with `#` below this node. */
  hash: Set<T> | undefined;
}

export class SubscriptionTrie<T> {
  private readonly root = new TrieNode<T>();
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** Adds `value` under `filter`. Returns false if it was already there. */
  add(filter: string, value: T): boolean {
    let node = this.root;
    const levels = filter.split('/');
    for (let i = 0; i < levels.length; i++) {
      const l = levels[i];
      if (l === '#') {
        node.hash ??= new Set();
        if (node.hash.has(value)) return false;
        node.hash.add(value);
        this.count++;
        return true;
      }
      if (l === '+') {
        node.plus ??= new TrieNode();
        node = node.plus;
      } else {
        node.children ??= new Map();
        let next = node.children.get(l);
        if (!next) {
          next = new TrieNode();
          node.children.set(l, next);
        }
        node = next;
      }
    }
    node.exact ??= new Set();
    if (node.exact.has(value)) return false;
    node.exact.add(value);
    this.count++;
    return true;
  }

  /** Removes `value` from `filter`, pruning empty nodes. Returns false if it was not there. */
  remove(filter: string, value: T): boolean {
    const levels = filter.split('/');
    const removed = this.removeAt(this.root, levels, 0, value);
    if (removed) this.count--;
    return removed;
  }

  private removeAt(node: TrieNode<T>, levels: string[], i: number, value: T): boolean {
    if (i === levels.length) {
      if (!node.exact?.delete(value)) return false;
      if (node.exact.size === 0) node.exact = undefined;
      return true;
    }
    const l = levels[i];
    if (l === '#') {
      if (!node.hash?.delete(value)) return false;
      if (node.hash.size === 0) node.hash = undefined;
      return true;
    }
    const child = l === '+' ? node.plus : node.children?.get(l);
    if (!child || !this.removeAt(child, levels, i + 1, value)) return false;
    if (isEmpty(child)) {
      if (l === '+') node.plus = undefined;
      else {
        node.children!.delete(l);
        if (node.children!.size === 0) node.children = undefined;
      }
    }
    return true;
  }

  /** Calls `visit` once per (filter, value) pair that matches `topic`. A value under two matching filters is visited twice. */
  match(topic: string, visit: (value: T) => void): void {
    const levels = topic.split('/');
    this.matchAt(this.root, levels, 0, visit, topic.charCodeAt(0) === 36 /* $ */);
  }

  private matchAt(node: TrieNode<T>, levels: string[], i: number, visit: (value: T) => void, dollar: boolean): void {
    // `#` matches the parent level too ("a/#" matches "a"), but a leading wildcard never matches `$` topics.
    if (node.hash && !(dollar && i === 0)) for (const v of node.hash) visit(v);
    if (i === levels.length) {
      if (node.exact) for (const v of node.exact) visit(v);
      return;
    }
    const child = node.children?.get(levels[i]);
    if (child) this.matchAt(child, levels, i + 1, visit, dollar);
    if (node.plus && !(dollar && i === 0)) this.matchAt(node.plus, levels, i + 1, visit, dollar);
  }

  /**
   * Calls `visit` once per stored filter with how many values it holds, in no particular order (the
   * server API's topic listing). Recursion is as deep as the longest filter, which the level limit bounds.
   */
  walk(visit: (filter: string, count: number) => void): void {
    walkAt(this.root, '', 0, visit);
  }

  /** Collects matching values into a set (deduplicated). */
  matchSet(topic: string): Set<T> {
    const out = new Set<T>();
    this.match(topic, (v) => out.add(v));
    return out;
  }
}

function walkAt<T>(node: TrieNode<T>, path: string, depth: number, visit: (filter: string, count: number) => void): void {
  // the root stands for no level at all, so its children get no leading '/'
  const prefix = depth === 0 ? '' : `${path}/`;
  if (node.hash) visit(`${prefix}#`, node.hash.size);
  if (node.exact && depth > 0) visit(path, node.exact.size);
  if (node.children) for (const [level, child] of node.children) walkAt(child, prefix + level, depth + 1, visit);
  if (node.plus) walkAt(node.plus, `${prefix}+`, depth + 1, visit);
}

function isEmpty<T>(n: TrieNode<T>): boolean {
  return !n.children && !n.plus && !n.exact && !n.hash;
}
