import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { OmnipushError } from '../src/core/errors.js';
import { filterCovers, filterMatches, filtersIntersect, validateFilter, validateTopic } from '../src/core/topic.js';

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof OmnipushError);
    return e.code;
  }
  return 'ok';
}

describe('topic names and filters', () => {
  it('validates names with MQTT rules and limits', () => {
    for (const ok of ['a', 'a/b', '/', '/a', 'a/', '$SYS/x', 'ünï/😀', 'a b/c']) assert.equal(code(() => validateTopic(ok)), 'ok', ok);
    for (const bad of ['', 'a/+', 'a/#', '+', '#', 'a+b', 'x#', 'a\u0000b', 'lone\ud800']) assert.equal(code(() => validateTopic(bad)), 'invalid_topic', JSON.stringify(bad));
    assert.equal(code(() => validateTopic(42)), 'invalid_topic');
    const limits = { maxTopicBytes: 8, maxTopicLevels: 3 };
    assert.equal(code(() => validateTopic('aaaaaaaa', limits)), 'ok');
    assert.equal(code(() => validateTopic('aaaaaaaaa', limits)), 'invalid_topic');
    assert.equal(code(() => validateTopic('ééééé', limits)), 'invalid_topic', 'bytes, not characters');
    assert.equal(code(() => validateTopic('a/b/c', limits)), 'ok');
    assert.equal(code(() => validateTopic('a/b/c/d', limits)), 'invalid_topic');
  });

  it('validates filters: + and # are whole levels, # only last', () => {
    for (const ok of ['#', '+', 'a/#', 'a/+/b', '+/+', '/+', '$SYS/#', 'a/+/#']) assert.equal(code(() => validateFilter(ok)), 'ok', ok);
    for (const bad of ['', 'a/#/b', '#/a', 'a#', 'a/b#', 'a+', 'a/+b', 'a\u0000']) assert.equal(code(() => validateFilter(bad)), 'invalid_filter', JSON.stringify(bad));
  });

  it('matches as the MQTT specification describes', () => {
    const yes: Array<[string, string]> = [
      ['sport/tennis/player1/#', 'sport/tennis/player1'],
      ['sport/tennis/player1/#', 'sport/tennis/player1/ranking'],
      ['sport/tennis/player1/#', 'sport/tennis/player1/score/wimbledon'],
      ['sport/#', 'sport'],
      ['#', 'anything/at/all'],
      ['sport/tennis/+', 'sport/tennis/player1'],
      ['+/+', '/finance'],
      ['/+', '/finance'],
      ['+', ''],
      ['$SYS/#', '$SYS/broker/clients'],
      ['$SYS/+/clients', '$SYS/broker/clients'],
      ['a/+/c', 'a//c'],
    ];
    const no: Array<[string, string]> = [
      ['sport/tennis/+', 'sport/tennis/player1/ranking'],
      ['sport/+', 'sport'],
      ['+', '/finance'],
      ['#', '$SYS/x'],
      ['+/monitor/Clients', '$SYS/monitor/Clients'],
      ['+', '$SYS'],
      ['a/b', 'a/b/c'],
      ['a/b/c', 'a/b'],
    ];
    for (const [f, t] of yes) assert.equal(filterMatches(f, t), true, `${f} ~ ${t}`);
    for (const [f, t] of no) assert.equal(filterMatches(f, t), false, `${f} !~ ${t}`);
  });

  it('decides coverage and intersection of filters', () => {
    assert.equal(filterCovers('#', 'a/+/b'), true);
    assert.equal(filterCovers('a/#', 'a'), true);
    assert.equal(filterCovers('a/+', 'a/b'), true);
    assert.equal(filterCovers('a/+', 'a/#'), false);
    assert.equal(filterCovers('a/b', 'a/+'), false);
    assert.equal(filterCovers('#', '$SYS/#'), false);
    assert.equal(filterCovers('$SYS/#', '$SYS/a/+'), true);
    assert.equal(filtersIntersect('a/+', 'a/b'), true);
    assert.equal(filtersIntersect('a/+/c', 'a/b/+'), true);
    assert.equal(filtersIntersect('a/b', 'a/c'), false);
    assert.equal(filtersIntersect('a/#', 'b/#'), false);
    assert.equal(filtersIntersect('#', '$SYS/x'), false);
    assert.equal(filtersIntersect('a/+', 'a/b/c'), false);
    assert.equal(filtersIntersect('a/#', 'a'), true);
  });
});
