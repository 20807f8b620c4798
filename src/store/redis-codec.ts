/**
 * Byte encoding of stored messages for the Redis store, and of the batches the append script
 * publishes on the bus channel.
 *
 * A message is encoded as a tagged tree of every own field, not as a fixed list of columns: fields
 * that doors add to `MessageInput` later (an MQTT 5 response topic, correlation data as a Buffer, a
 * payload format indicator ...) are stored and read back without a change here. Buffers stay bytes
 * (no base64), which matters because the payload is most of every message.
 *
 * Value tags: `u` undefined, `z` null, `t` true, `f` false, `n` float64, `s` UTF-8 string,
 * `b` bytes, `a` array, `o` object. Lengths and counts are unsigned LEB128. The first byte is the
 * format version, so a later format can be told apart from this one.
 */

const VERSION = 1;

class Writer {
  buf = Buffer.allocUnsafe(256);
  pos = 0;

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  byte(b: number): void {
    this.ensure(1);
    this.buf[this.pos++] = b;
  }

  uint(n: number): void {
    // LEB128 with arithmetic instead of bit operators, so lengths above 2^31 stay correct
    this.ensure(8);
    while (n >= 0x80) {
      this.buf[this.pos++] = (n % 0x80) | 0x80;
      n = Math.floor(n / 0x80);
    }
    this.buf[this.pos++] = n;
  }

  bytes(b: Uint8Array): void {
    this.uint(b.length);
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  string(s: string): void {
    const max = Buffer.byteLength(s);
    this.uint(max);
    this.ensure(max);
    this.pos += this.buf.write(s, this.pos, 'utf8');
  }

  float(n: number): void {
    this.ensure(8);
    this.buf.writeDoubleBE(n, this.pos);
    this.pos += 8;
  }

  result(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
}

const T = {
  undefined: 0x75, // u
  null: 0x7a, // z
  true: 0x74, // t
  false: 0x66, // f
  number: 0x6e, // n
  string: 0x73, // s
  bytes: 0x62, // b
  array: 0x61, // a
  object: 0x6f, // o
} as const;

function writeValue(w: Writer, v: unknown, path: string): void {
  if (v === undefined) w.byte(T.undefined);
  else if (v === null) w.byte(T.null);
  else if (v === true) w.byte(T.true);
  else if (v === false) w.byte(T.false);
  else if (typeof v === 'number') {
    w.byte(T.number);
    w.float(v);
  } else if (typeof v === 'string') {
    w.byte(T.string);
    w.string(v);
  } else if (v instanceof Uint8Array) {
    w.byte(T.bytes);
    w.bytes(v);
  } else if (Array.isArray(v)) {
    w.byte(T.array);
    w.uint(v.length);
    v.forEach((x, i) => writeValue(w, x, `${path}[${i}]`));
  } else if (typeof v === 'object' && (Object.getPrototypeOf(v) === Object.prototype || Object.getPrototypeOf(v) === null)) {
    writeObject(w, v as Record<string, unknown>, path);
  } else {
    // a Date, Map, bigint ... would come back as something else: refuse loudly instead
    throw new TypeError(`cannot store ${path}: unsupported value of type ${typeof v === 'object' ? (v.constructor?.name ?? 'object') : typeof v}`);
  }
}

function writeObject(w: Writer, o: Record<string, unknown>, path: string): void {
  // undefined fields are left out, as JSON would: `{ a: undefined }` and `{}` mean the same here
  const keys = Object.keys(o).filter((k) => o[k] !== undefined);
  w.byte(T.object);
  w.uint(keys.length);
  for (const k of keys) {
    w.string(k);
    writeValue(w, o[k], path ? `${path}.${k}` : k);
  }
}

class Reader {
  pos = 0;
  constructor(private readonly buf: Buffer) {}

  byte(): number {
    if (this.pos >= this.buf.length) throw new Error('stored message is truncated');
    return this.buf[this.pos++];
  }

  uint(): number {
    let n = 0;
    let scale = 1;
    for (;;) {
      const b = this.byte();
      n += (b & 0x7f) * scale;
      if (b < 0x80) return n;
      scale *= 0x80;
    }
  }

  take(n: number): Buffer {
    if (this.pos + n > this.buf.length) throw new Error('stored message is truncated');
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
}

function readValue(r: Reader): unknown {
  const tag = r.byte();
  switch (tag) {
    case T.undefined:
      return undefined;
    case T.null:
      return null;
    case T.true:
      return true;
    case T.false:
      return false;
    case T.number:
      return r.take(8).readDoubleBE(0);
    case T.string:
      return r.take(r.uint()).toString('utf8');
    case T.bytes:
      // a copy, so a message kept in memory does not pin the whole reply buffer it came in
      return Buffer.from(r.take(r.uint()));
    case T.array: {
      const n = r.uint();
      const a: unknown[] = [];
      for (let i = 0; i < n; i++) a.push(readValue(r));
      return a;
    }
    case T.object: {
      const n = r.uint();
      const o: Record<string, unknown> = {};
      for (let i = 0; i < n; i++) {
        const k = r.take(r.uint()).toString('utf8');
        o[k] = readValue(r);
      }
      return o;
    }
    default:
      throw new Error(`stored message has an unknown value tag 0x${tag.toString(16)}`);
  }
}

/** Encodes every own field of `fields` (a message without its seq and cursor). */
export function encodeFields(fields: object): Buffer {
  const w = new Writer();
  w.byte(VERSION);
  writeObject(w, fields as Record<string, unknown>, '');
  return w.result();
}

/** The inverse of {@link encodeFields}. */
export function decodeFields(buf: Buffer): Record<string, unknown> {
  const r = new Reader(buf);
  const version = r.byte();
  if (version !== VERSION) throw new Error(`stored message has format ${version}; this server knows ${VERSION}`);
  return readValue(r) as Record<string, unknown>;
}

/** `<decimal seq>\n<rest>`: how the retained hash and the bus frame prefix an encoded message. */
export function splitSeq(buf: Buffer): { seq: number; rest: Buffer } {
  const nl = buf.indexOf(0x0a);
  if (nl <= 0) throw new Error('stored value lacks its seq');
  return { seq: Number(buf.toString('latin1', 0, nl)), rest: buf.subarray(nl + 1) };
}

/**
 * A batch as the append script publishes it on `<prefix>bus`:
 * `<first seq>\n` then, per message in seq order, `<byte length>\n<encoded message>`.
 * Seqs in a batch are consecutive, so message i has seq `first + i`.
 */
export function decodeBusBatch(buf: Buffer): Array<{ seq: number; fields: Record<string, unknown> }> {
  const { seq: first, rest } = splitSeq(buf);
  const out: Array<{ seq: number; fields: Record<string, unknown> }> = [];
  let pos = 0;
  while (pos < rest.length) {
    const nl = rest.indexOf(0x0a, pos);
    if (nl < 0) throw new Error('bus frame is truncated');
    const len = Number(rest.toString('latin1', pos, nl));
    const body = rest.subarray(nl + 1, nl + 1 + len);
    if (body.length !== len) throw new Error('bus frame is truncated');
    out.push({ seq: first + out.length, fields: decodeFields(body) });
    pos = nl + 1 + len;
  }
  return out;
}
