import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { OmnipushError } from '../src/core/errors.js';
import { filterCovers, filterMatches, filtersIntersect, validateFilter, validateTopic } from '../src/core/topic.js';

/** The error code `fn` throws, or 'ok'. */
function code(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof OmnipushError, `expected an OmnipushError, got ${String(e)}`);
    return e.code;
  }
  return 'ok';
}

/**
 * An independent reading of the MQTT matching rules (regular expressions), to check
 * filterMatches against: `+` is one level (possibly empty), `#` is the rest including the parent
 * level, and a filter starting with a wildcard never matches a topic starting with `$`.
 */
function referenceMatches(filter: string, topic: string): boolean {
  const levels = filter.split('/');
  if (topic.startsWith('$') && (levels[0] === '+' || levels[0] === '#')) return false;
  const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  let re = '';
  for (let i = 0; i < levels.length; i++) {
    const l = levels[i];
    if (l === '#') {
      re += i === 0 ? '.*' : '(?:/.*)?';
      break;
    }
    if (i > 0) re += '/';
    re += l === '+' ? '[^/]*' : escape(l);
  }
  return new RegExp(`^${re}$`, 's').test(topic);
}

/** Every string of 1..maxLevels levels drawn from `alphabet`. */
function allCombos(alphabet: string[], maxLevels: number, last: string[] = []): string[] {
  const out: string[] = [];
  let prefixes: string[][] = [[]];
  for (let n = 1; n <= maxLevels; n++) {
    for (const p of prefixes) for (const l of [...alphabet, ...last]) out.push([...p, l].join('/'));
    const next: string[][] = [];
    for (const p of prefixes) for (const l of alphabet) next.push([...p, l]);
    prefixes = next;
  }
  return out;
}

describe('validateTopic', () => {
  it('accepts ordinary, system, empty-level and multi-byte names', () => {
    for (const ok of ['a', 'a/b', '/', '/a', 'a/', 'a//b', '$SYS/x', '$', 'ünï/😀', 'a b/c', 'a.b-c_d']) {
      assert.equal(code(() => validateTopic(ok)), 'ok', JSON.stringify(ok));
      assert.equal(validateTopic(ok), ok);
    }
  });

  it('rejects wildcards anywhere in a name', () => {
    for (const bad of ['a/+', 'a/#', '+', '#', 'a+b', 'x#', '+/a', 'a/#/b', 'sport+', '#x']) {
      assert.equal(code(() => validateTopic(bad)), 'invalid_topic', JSON.stringify(bad));
    }
  });

  it('rejects empty names, NUL, lone surrogates and non-strings', () => {
    for (const bad of ['', 'a\u0000b', '\u0000', 'lone\ud800', '\udc00x', 'a/\ud83d/b']) {
      assert.equal(code(() => validateTopic(bad)), 'invalid_topic', JSON.stringify(bad));
    }
    for (const bad of [42, null, undefined, {}, ['a']]) assert.equal(code(() => validateTopic(bad)), 'invalid_topic', String(bad));
    // a correctly paired surrogate is fine
    assert.equal(code(() => validateTopic('\ud83d\ude00')), 'ok');
  });

  it('limits bytes (UTF-8, not characters) and levels', () => {
    const limits = { maxTopicBytes: 8, maxTopicLevels: 3 };
    assert.equal(code(() => validateTopic('aaaaaaaa', limits)), 'ok');
    assert.equal(code(() => validateTopic('aaaaaaaaa', limits)), 'invalid_topic');
    assert.equal(code(() => validateTopic('éééé', limits)), 'ok', '4 characters, 8 bytes');
    assert.equal(code(() => validateTopic('ééééé', limits)), 'invalid_topic', '5 characters, 10 bytes');
    assert.equal(code(() => validateTopic('😀😀', limits)), 'ok', '2 × 4 bytes');
    assert.equal(code(() => validateTopic('😀😀a', limits)), 'invalid_topic', '9 bytes in 5 UTF-16 units');
    assert.equal(code(() => validateTopic('a/b/c', limits)), 'ok');
    assert.equal(code(() => validateTopic('a/b/c/d', limits)), 'invalid_topic');
    assert.equal(code(() => validateTopic('//', limits)), 'ok', 'three empty levels');
    assert.equal(code(() => validateTopic('///', limits)), 'invalid_topic', 'four empty levels');
    // the defaults: 1024 bytes, 32 levels
    assert.equal(code(() => validateTopic('x'.repeat(1024))), 'ok');
    assert.equal(code(() => validateTopic('x'.repeat(1025))), 'invalid_topic');
    assert.equal(code(() => validateTopic(Array(32).fill('l').join('/'))), 'ok');
    assert.equal(code(() => validateTopic(Array(33).fill('l').join('/'))), 'invalid_topic');
  });
});

describe('validateFilter', () => {
  it('accepts + and # as whole levels, # only last', () => {
    for (const ok of ['#', '+', 'a/#', 'a/+/b', '+/+', '/+', '+/', '$SYS/#', 'a/+/#', '+/#', '/#', '$share/g/a/+', 'a']) {
      assert.equal(code(() => validateFilter(ok)), 'ok', ok);
    }
  });

  it('rejects # not last, wildcards inside a level, NUL, lone surrogates and empty', () => {
    for (const bad of ['a/#/b', '#/a', '#/#', 'a#', 'a/b#', '#a', 'a+', 'a+/b', 'a/+b', '++', '+#', 'a/b/c#/d', '', 'a\u0000', 'a/\udfff', 7]) {
      assert.equal(code(() => validateFilter(bad)), 'invalid_filter', JSON.stringify(bad));
    }
  });

  it('limits bytes and levels', () => {
    const limits = { maxTopicBytes: 6, maxTopicLevels: 3 };
    assert.equal(code(() => validateFilter('+/+/#', limits)), 'ok');
    assert.equal(code(() => validateFilter('+/+/+/#', limits)), 'invalid_filter');
    assert.equal(code(() => validateFilter('ééé', limits)), 'ok');
    assert.equal(code(() => validateFilter('éééa', limits)), 'invalid_filter');
  });
});

describe('filterMatches', () => {
  it('follows the MQTT specification examples', () => {
    const yes: Array<[string, string]> = [
      // 4.7.1.2 multi-level wildcard
      ['sport/tennis/player1/#', 'sport/tennis/player1'],
      ['sport/tennis/player1/#', 'sport/tennis/player1/ranking'],
      ['sport/tennis/player1/#', 'sport/tennis/player1/score/wimbledon'],
      ['sport/#', 'sport'],
      ['#', 'anything/at/all'],
      ['#', '/'],
      // 4.7.1.3 single-level wildcard
      ['sport/tennis/+', 'sport/tennis/player1'],
      ['sport/tennis/+', 'sport/tennis/player2'],
      ['sport/+', 'sport/'],
      ['+/+', '/finance'],
      ['/+', '/finance'],
      ['+/tennis/#', 'sport/tennis/player1'],
      ['a/+/c', 'a//c'],
      ['+', 'x'],
      // 4.7.2 topics beginning with $
      ['$SYS/#', '$SYS/broker/clients'],
      ['$SYS/#', '$SYS'],
      ['$SYS/monitor/+', '$SYS/monitor/Clients'],
      ['$SYS/+/clients', '$SYS/broker/clients'],
      // `$` only matters in the first level
      ['a/+', 'a/$x'],
      ['a/#', 'a/$x/y'],
      ['+/$x', 'a/$x'],
    ];
    const no: Array<[string, string]> = [
      ['sport/tennis/+', 'sport/tennis/player1/ranking'],
      ['sport/+', 'sport'],
      ['sport/tennis/player1/#', 'sport/tennis'],
      ['+', '/finance'],
      ['#', '$SYS/x'],
      ['#', '$SYS'],
      ['+/monitor/Clients', '$SYS/monitor/Clients'],
      ['+', '$SYS'],
      ['+/#', '$SYS/x'],
      ['a/b', 'a/b/c'],
      ['a/b/c', 'a/b'],
      ['a/b', 'A/b'],
      ['$SYS/#', 'SYS/x'],
      ['sport', 'sport/'],
    ];
    for (const [f, t] of yes) assert.equal(filterMatches(f, t), true, `${f} should match ${t}`);
    for (const [f, t] of no) assert.equal(filterMatches(f, t), false, `${f} should not match ${t}`);
  });

  it('agrees with an independent reference on every small filter and topic', () => {
    const filters = allCombos(['a', 'b', '', '$x', '+'], 3, ['#']);
    const topics = allCombos(['a', 'b', '', '$x', 'z'], 4).filter((t) => t !== '');
    let matched = 0;
    for (const f of filters) {
      for (const t of topics) {
        const want = referenceMatches(f, t);
        if (want) matched++;
        assert.equal(filterMatches(f, t), want, `${JSON.stringify(f)} vs ${JSON.stringify(t)}`);
      }
    }
    assert.ok(matched > 1000, 'the universe exercises matches, not only misses');
  });
});

describe('filterCovers and filtersIntersect', () => {
  it('handles the usual cases and the $ rules', () => {
    assert.equal(filterCovers('#', 'a/+/b'), true);
    assert.equal(filterCovers('a/#', 'a'), true);
    assert.equal(filterCovers('a/#', 'a/+/#'), true);
    assert.equal(filterCovers('a/+', 'a/b'), true);
    assert.equal(filterCovers('a/+', 'a/#'), false);
    assert.equal(filterCovers('a/+/#', 'a/#'), false, 'a/# also matches a');
    assert.equal(filterCovers('a/b', 'a/+'), false);
    assert.equal(filterCovers('#', '$SYS/#'), false);
    assert.equal(filterCovers('+/#', '$SYS/x'), false);
    assert.equal(filterCovers('#', '+/x'), true, '+/x excludes $ topics as # does');
    assert.equal(filterCovers('$SYS/#', '$SYS/a/+'), true);
    assert.equal(filterCovers('$SYS/#', '+/a'), false);
    assert.equal(filterCovers('$SYS/#', '#'), false);

    assert.equal(filtersIntersect('a/+', 'a/b'), true);
    assert.equal(filtersIntersect('a/+/c', 'a/b/+'), true);
    assert.equal(filtersIntersect('a/b', 'a/c'), false);
    assert.equal(filtersIntersect('a/#', 'b/#'), false);
    assert.equal(filtersIntersect('#', '$SYS/x'), false);
    assert.equal(filtersIntersect('+/x', '$SYS/+'), false);
    assert.equal(filtersIntersect('$SYS/+', '$SYS/#'), true);
    assert.equal(filtersIntersect('a/+', 'a/b/c'), false);
    assert.equal(filtersIntersect('a/#', 'a'), true);
    assert.equal(filtersIntersect('+', '#'), true);
  });

  it('agree with brute force over every small filter pair', () => {
    // Filters of up to 3 levels; a topic universe one level deeper with a level ('z') no filter
    // names, so that every difference between two filters shows up in some topic. The universe
    // keeps the one-empty-level topic '' (which validateTopic refuses): with it the answers are
    // exact, and without it they can only err on the safe side (covers less, intersects more).
    const filters = allCombos(['a', '', '$x', '+'], 3, ['#']).filter((f) => f !== '');
    const topics = allCombos(['a', '', '$x', 'z'], 4);
    const sets = filters.map((f) => topics.map((t) => filterMatches(f, t)));
    let covered = 0;
    let intersecting = 0;
    for (let i = 0; i < filters.length; i++) {
      for (let j = 0; j < filters.length; j++) {
        const outer = sets[i];
        const inner = sets[j];
        let subset = true;
        let common = false;
        for (let k = 0; k < topics.length; k++) {
          if (inner[k] && !outer[k]) subset = false;
          if (inner[k] && outer[k]) common = true;
        }
        const a = filters[i];
        const b = filters[j];
        // filterCovers must never claim more than the truth (it decides grants) and should be exact
        assert.equal(filterCovers(a, b), subset, `filterCovers(${JSON.stringify(a)}, ${JSON.stringify(b)})`);
        assert.equal(filtersIntersect(a, b), common, `filtersIntersect(${JSON.stringify(a)}, ${JSON.stringify(b)})`);
        if (subset) covered++;
        if (common) intersecting++;
      }
    }
    assert.ok(covered > 100 && intersecting > covered, `a meaningful mix (${covered} covered, ${intersecting} intersecting)`);
  });
});
