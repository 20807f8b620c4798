import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { canPublish, canReceive, subscribeVerdict, type Principal } from '../src/core/grants.js';

const p: Principal = {
  id: 'alice',
  kind: 'token',
  grants: {
    publish: { allow: ['chat/alice/#', 'status/+'], deny: ['status/admin'] },
    subscribe: { allow: ['chat/#', 'news/+'], deny: ['chat/secret/#'] },
  },
};

describe('grants', () => {
  it('publish: allow filters, deny wins', () => {
    assert.equal(canPublish(p, 'chat/alice/x'), true);
    assert.equal(canPublish(p, 'chat/bob/x'), false);
    assert.equal(canPublish(p, 'status/alice'), true);
    assert.equal(canPublish(p, 'status/admin'), false);
  });

  it('subscribe: covered filters allowed, overlapping denies need per-message checks', () => {
    assert.equal(subscribeVerdict(p, 'chat/room'), 'allow');
    assert.equal(subscribeVerdict(p, 'news/+'), 'allow');
    assert.equal(subscribeVerdict(p, 'news/#'), 'deny', 'wider than the grant');
    assert.equal(subscribeVerdict(p, '#'), 'deny');
    assert.equal(subscribeVerdict(p, 'chat/secret/x'), 'deny');
    assert.equal(subscribeVerdict(p, 'chat/#'), 'filter');
    assert.equal(subscribeVerdict(p, 'chat/+/x'), 'filter');
    assert.equal(canReceive(p, 'chat/secret/x'), false);
    assert.equal(canReceive(p, 'chat/open'), true);
  });
});
