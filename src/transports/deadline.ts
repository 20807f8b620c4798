/** setTimeout's longest delay; a later first slot is reached in hops. */
const MAX_DELAY = 2 ** 31 - 1;

/**
 * Width of a slot of the deadline wheel: a deadline fires in the first sweep at or after its moment,
 * at most this much late and never early.
 */
export const DEADLINE_SLOT_MS = 100;

/**
 * A promise to act at a moment (a token's `exp`, the end of an authentication window), kept by the
 * deadline wheel: one timer for the earliest due slot, not one per connection. A timer per
 * connection cost a Timeout object and two closures per socket (and as many again as garbage for
 * the deadlines cancelled at every CONNECT); the wheel holds one Set entry per deadline. It still
 * keeps its promise: the timer is armed for the earliest slot, whatever any periodic sweep does.
 * One per connection that has such a moment; armed on connect or re-auth, not on the delivery path.
 */
export class Deadline {
  /** The slot it waits in; 0 when it is not waiting (fired or cancelled). */
  slot = 0;

  constructor(
    private at: number,
    /** What happens at the deadline; a subclass that overrides {@link fire} passes none. */
    private readonly action?: () => void,
  ) {
    wheel.add(this);
  }

  /** Runs the action; an owner that is a deadline itself overrides it (no closure, no second object). */
  fire(): void {
    this.action?.();
  }

  /** ms since the epoch this deadline is set for. */
  get when(): number {
    return this.at;
  }

  /** Moves the deadline (credentials renewed). */
  reset(at: number): void {
    wheel.remove(this);
    this.at = at;
    wheel.add(this);
  }

  cancel(): void {
    wheel.remove(this);
  }
}

/**
 * Deadlines by slot. Slot numbers wait in a min-heap; a slot emptied by cancellations leaves its
 * number there, and it is skipped when it comes up (the heap holds at most one entry per slot
 * made, and every entry goes once its moment has passed).
 */
class DeadlineWheel {
  private readonly slots = new Map<number, Set<Deadline>>();
  private readonly heap: number[] = [];
  private timer: NodeJS.Timeout | undefined;
  /** The slot the timer is armed for (Infinity: none). */
  private armedFor = Infinity;

  add(d: Deadline): void {
    // a moment that never comes waits nowhere (an owner that is its own deadline may need none)
    if (d.when === Infinity) return;
    // (a moment that is not a number is due now, as setTimeout would take it)
    const slot = Number.isNaN(d.when) ? 1 : Math.max(1, Math.ceil(d.when / DEADLINE_SLOT_MS));
    let set = this.slots.get(slot);
    if (!set) {
      this.slots.set(slot, (set = new Set()));
      this.push(slot);
    }
    set.add(d);
    d.slot = slot;
    if (slot < this.armedFor) this.arm(slot);
  }

  remove(d: Deadline): void {
    if (d.slot === 0) return;
    const set = this.slots.get(d.slot);
    if (set) {
      set.delete(d);
      if (set.size === 0) this.slots.delete(d.slot);
    }
    d.slot = 0;
  }

  private arm(slot: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.armedFor = slot;
    this.timer = setTimeout(() => this.sweep(), Math.min(MAX_DELAY, Math.max(0, slot * DEADLINE_SLOT_MS - Date.now())));
    this.timer.unref();
  }

  private sweep(): void {
    this.timer = undefined;
    this.armedFor = Infinity;
    const now = Date.now();
    while (this.heap.length > 0 && this.heap[0] * DEADLINE_SLOT_MS <= now) {
      const slot = this.pop();
      const set = this.slots.get(slot);
      if (!set) continue;
      this.slots.delete(slot);
      for (const d of set) {
        // an earlier one's action may have cancelled or moved it
        if (d.slot !== slot) continue;
        d.slot = 0;
        try {
          d.fire();
        } catch (e) {
          // the others in its slot still fire; the error surfaces as a timer's would
          queueMicrotask(() => {
            throw e;
          });
        }
      }
    }
    // the first slot still to come (emptied slots are dropped on the way)
    while (this.heap.length > 0 && !this.slots.has(this.heap[0])) this.pop();
    if (this.heap.length > 0) this.arm(this.heap[0]);
  }

  private push(slot: number): void {
    const h = this.heap;
    let i = h.length;
    h.push(slot);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (h[p] <= slot) break;
      h[i] = h[p];
      i = p;
    }
    h[i] = slot;
  }

  private pop(): number {
    const h = this.heap;
    const top = h[0];
    const last = h.pop()!;
    if (h.length > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= h.length) break;
        const c = l + 1 < h.length && h[l + 1] < h[l] ? l + 1 : l;
        if (h[c] >= last) break;
        h[i] = h[c];
        i = c;
      }
      h[i] = last;
    }
    return top;
  }
}

const wheel = new DeadlineWheel();

/** A deadline at the principal's credential expiry, or none when its credentials do not expire. */
export function expiryDeadline(expiresAt: number | undefined, fire: () => void): Deadline | undefined {
  return expiresAt === undefined ? undefined : new Deadline(expiresAt, fire);
}
