/**
 * A socket's subscriptions by id, shaped like the part of a Map the connection uses. Most sockets
 * hold one subscription: it sits in a field, and the Map (whose table alone is ~150 bytes) is
 * made for the second.
 */
export class WsSubscriptions<T> {
  private oneId: string | undefined;
  private one: T | undefined;
  private many: Map<string, T> | null = null;

  get size(): number {
    return this.many ? this.many.size : this.oneId === undefined ? 0 : 1;
  }

  get(id: string): T | undefined {
    if (this.many) return this.many.get(id);
    return id === this.oneId ? this.one : undefined;
  }

  has(id: string): boolean {
    return this.get(id) !== undefined;
  }

  set(id: string, v: T): void {
    if (this.many) {
      this.many.set(id, v);
    } else if (this.oneId === undefined || this.oneId === id) {
      this.oneId = id;
      this.one = v;
    } else {
      this.many = new Map([[this.oneId, this.one as T]]);
      this.many.set(id, v);
      this.oneId = undefined;
      this.one = undefined;
    }
  }

  delete(id: string): boolean {
    if (this.many) return this.many.delete(id);
    if (id !== this.oneId) return false;
    this.oneId = undefined;
    this.one = undefined;
    return true;
  }

  clear(): void {
    this.many = null;
    this.oneId = undefined;
    this.one = undefined;
  }

  /** A snapshot of the subscriptions (the connection removes some while it walks them). */
  values(): T[] {
    if (this.many) return [...this.many.values()];
    return this.oneId === undefined ? [] : [this.one as T];
  }
}
