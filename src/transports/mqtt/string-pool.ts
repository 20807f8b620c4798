/**
 * One copy of the strings many connections hold alike — their source address (clients behind one
 * NAT or proxy), a popular topic filter — rather than one per connection (~32 bytes each). Bounded:
 * past `max` different strings it starts over, so strings nobody shares cannot grow it.
 */
export class StringPool {
  private readonly seen = new Map<string, string>();

  constructor(private readonly max: number) {}

  /** `s`, or an equal string handed out before. */
  get(s: string): string {
    const had = this.seen.get(s);
    if (had !== undefined) return had;
    if (this.seen.size >= this.max) this.seen.clear();
    this.seen.set(s, s);
    return s;
  }
}
