import { OmnipushError } from './errors.js';

/** Limits applied to every topic name and filter, whatever door it came through. */
export interface TopicLimits {
  /** Maximum length in UTF-8 bytes. */
  maxTopicBytes: number;
  /** Maximum number of `/`-separated levels. */
  maxTopicLevels: number;
}

export const DEFAULT_TOPIC_LIMITS: TopicLimits = { maxTopicBytes: 1024, maxTopicLevels: 32 };

function checkCommon(s: unknown, kind: 'topic' | 'filter', limits: TopicLimits): string {
  const code = kind === 'topic' ? 'invalid_topic' : 'invalid_filter';
  if (typeof s !== 'string') throw new OmnipushError(code, `${kind} must be a string`);
  if (s.length === 0) throw new OmnipushError(code, `${kind} must not be empty`);
  if (s.includes('\u0000')) throw new OmnipushError(code, `${kind} must not contain NUL`);
  if (!s.isWellFormed()) throw new OmnipushError(code, `${kind} must be well-formed UTF-8 (lone surrogate found)`);
  const bytes = Buffer.byteLength(s, 'utf8');
  if (bytes > limits.maxTopicBytes) {
    throw new OmnipushError(code, `${kind} is ${bytes} bytes; the limit is ${limits.maxTopicBytes}`);
  }
  let levels = 1;
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) === 47) levels++;
  if (levels > limits.maxTopicLevels) {
    throw new OmnipushError(code, `${kind} has ${levels} levels; the limit is ${limits.maxTopicLevels}`);
  }
  return s;
}

/** Validates a topic name (what a message is published to). Throws `invalid_topic`. */
export function validateTopic(topic: unknown, limits: TopicLimits = DEFAULT_TOPIC_LIMITS): string {
  const t = checkCommon(topic, 'topic', limits);
  if (t.includes('+') || t.includes('#')) {
    throw new OmnipushError('invalid_topic', `topic name must not contain the wildcards + or #: ${JSON.stringify(t)}`);
  }
  return t;
}

/** Validates a topic filter (`+` one level, `#` the rest, each a whole level). Throws `invalid_filter`. */
export function validateFilter(filter: unknown, limits: TopicLimits = DEFAULT_TOPIC_LIMITS): string {
  const f = checkCommon(filter, 'filter', limits);
  const levels = f.split('/');
  for (let i = 0; i < levels.length; i++) {
    const l = levels[i];
    if (l.includes('#') && (l !== '#' || i !== levels.length - 1)) {
      throw new OmnipushError('invalid_filter', `# must be a whole level and the last one: ${JSON.stringify(f)}`);
    }
    if (l.includes('+') && l !== '+') {
      throw new OmnipushError('invalid_filter', `+ must be a whole level: ${JSON.stringify(f)}`);
    }
  }
  return f;
}

export function isWildcardFilter(filter: string): boolean {
  return filter.includes('+') || filter.includes('#');
}

/** Does `filter` match the topic name `topic`? (MQTT rules, `$` topics not matched by a leading wildcard.) */
export function filterMatches(filter: string, topic: string): boolean {
  if (filter === topic) return true;
  const fl = filter.length;
  const tl = topic.length;
  if (tl > 0 && topic.charCodeAt(0) === 36 /* $ */ && fl > 0 && (filter.charCodeAt(0) === 43 || filter.charCodeAt(0) === 35)) return false;
  // walks both level by level without splitting (this runs per delivery and per grant check);
  // i and j are where the current levels start, j = tl + 1 once the topic has no level left
  let i = 0;
  let j = 0;
  for (;;) {
    let fEnd = filter.indexOf('/', i);
    if (fEnd < 0) fEnd = fl;
    const one = fEnd - i === 1;
    if (one && filter.charCodeAt(i) === 35 /* # */) return true;
    if (j > tl) return false;
    let tEnd = topic.indexOf('/', j);
    if (tEnd < 0) tEnd = tl;
    if (!(one && filter.charCodeAt(i) === 43) /* + */) {
      if (fEnd - i !== tEnd - j) return false;
      for (let k = 0; k < fEnd - i; k++) if (filter.charCodeAt(i + k) !== topic.charCodeAt(j + k)) return false;
    }
    if (fEnd === fl) return tEnd === tl;
    i = fEnd + 1;
    j = tEnd + 1;
  }
}

/**
 * Does filter `outer` match every topic that filter `inner` matches?
 * Used to decide whether a subscription is wholly inside a grant.
 */
export function filterCovers(outer: string, inner: string): boolean {
  if (outer === inner) return true;
  // `+/#` matches every topic `#` does (every name has a first level), though the level walk below cannot see it
  if (outer === '+/#') outer = '#';
  const o = outer.split('/');
  const n = inner.split('/');
  if (n[0].startsWith('$') || n[0] === '+' || n[0] === '#') {
    // a leading wildcard in `outer` never covers `$` topics; `inner` with a leading wildcard excludes them too
    if (n[0].startsWith('$') && (o[0] === '+' || o[0] === '#')) return false;
  }
  for (let i = 0; i < o.length; i++) {
    const ol = o[i];
    if (ol === '#') return true;
    if (i >= n.length) return false;
    const nl = n[i];
    if (nl === '#') return false;
    if (ol === '+') continue;
    if (nl === '+' || ol !== nl) return false;
  }
  return o.length === n.length;
}

/** Is there at least one topic name that both filters match? */
export function filtersIntersect(a: string, b: string): boolean {
  const x = a.split('/');
  const y = b.split('/');
  const dollarX = x[0].startsWith('$');
  const dollarY = y[0].startsWith('$');
  if ((dollarX && (y[0] === '+' || y[0] === '#')) || (dollarY && (x[0] === '+' || x[0] === '#'))) return false;
  for (let i = 0; ; i++) {
    const xl = x[i];
    const yl = y[i];
    if (xl === '#' || yl === '#') return true;
    if (xl === undefined || yl === undefined) return xl === yl;
    if (xl !== '+' && yl !== '+' && xl !== yl) return false;
  }
}
