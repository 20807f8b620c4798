/**
 * Lua scripts of the Redis store. Each runs atomically inside Redis, which is what makes several
 * processes sharing one Redis see one total order of seqs.
 *
 * Layout (every key starts with the configured prefix, `omnipush:` by default):
 *   state     hash   epoch, seq (the high-water mark: only ever raised), lost_through
 *   msg       hash   seq → encoded message (without seq and cursor)
 *   log       zset   score seq, member "<seq> <topic>": every stored message, for wildcard scans
 *   t:<topic> zset   score seq, member "<seq>:<publishedAt>:<expiresAt or empty>": one topic's
 *                    history, for exact reads and for pruning without reading message bodies
 *   topics    zset   score 0, member topic: topics that have history now (lex ranges expand wildcards)
 *   pruned    zset   score = highest pruned seq, member topic: gap detection
 *   retained  hash   topic → "<seq>\n<encoded message>"; apart from history, never pruned
 *   retained:index  zset  score 0, member = the topic with every `/` made byte 0: the retained
 *                   index, walked by lex ranges level by level (src/store/retained-walk.ts)
 *   retained:meta   hash  topic → "<seq> <publisher>" of its retained message (no body: for the index walk and the quota)
 *   retained:count  hash  publisher → how many retained topics hold a message of theirs (fields at 0 are removed)
 *   meta      hash   Store.getMeta / setMeta
 *   rv:<kind> hash   record key → value;  rk:<kind> zset  score 0, member record key (prefix listing by lex range)
 *   bus       channel: every appended batch, in seq order
 *
 * Every message is stored once (msg); the indexes hold only seqs and what is needed to choose
 * without reading bodies (the topic for wildcard matching, times for pruning).
 *
 * Numbers are formatted with %d because Lua's tostring switches to exponent notation past 1e14.
 */

/**
 * KEYS: state, msg, log, topics, retained, retained:index, retained:meta, retained:count,
 *       then t:<topic> of each message in order, then rv:idempotency and rk:idempotency when some
 *       message has an idempotency record key (only then: a batch without one declares no record key).
 * ARGV: epoch, the highest seq the caller knows, bus channel, '1' when the idempotency keys are
 *       given (else '0'), then per message:
 *       topic, "<publishedAt>:<expiresAt or empty>", retain op (0 none, 1 set, 2 clear), encoded message,
 *       publisher (or empty), idempotency record key (or empty).
 * A message with an idempotency record key gets its record (`{"seq","topic","at"}`, JSON) in the same
 * script, so a crash can never leave the message stored without it (a retry would store it again).
 * Returns the first assigned seq; the batch's seqs are consecutive from there.
 */
export const APPEND_LUA = `
local function fmt(n) return string.format('%d', n) end
local state, msg, log, topics, retained = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local rkeys, rmeta, rcount = KEYS[6], KEYS[7], KEYS[8]
local withIdem = ARGV[4] == '1'
local idemValues, idemKeys = KEYS[#KEYS - 1], KEYS[#KEYS]
local n = #KEYS - 8 - (withIdem and 2 or 0)
local function count(pub, d)
  if redis.call('HINCRBY', rcount, pub, d) <= 0 then redis.call('HDEL', rcount, pub) end
end
local epoch = redis.call('HGET', state, 'epoch')
if epoch ~= ARGV[1] then
  if epoch then
    return redis.error_reply('OMNIPUSH_EPOCH the store in Redis now has epoch ' .. epoch .. ', this process opened ' .. ARGV[1])
  end
  -- Redis lost its data (restarted without persistence, or flushed) under a running process:
  -- carry on in the same epoch rather than hand out cursors that clash with ones already given
  redis.call('HSET', state, 'epoch', ARGV[1])
end
local cur = tonumber(redis.call('HGET', state, 'seq') or '0')
local known = tonumber(ARGV[2])
if cur < known then
  -- the counter is behind a seq this process has seen, so Redis lost data: never reuse those
  -- seqs, and remember that history up to here is gone so resuming clients get a gap signal
  cur = known
  local lost = tonumber(redis.call('HGET', state, 'lost_through') or '0')
  if known > lost then redis.call('HSET', state, 'lost_through', fmt(known)) end
end
local first = cur + 1
redis.call('HSET', state, 'seq', fmt(cur + n))
local frame = { fmt(first), '\\n' }
for i = 1, n do
  local a = 4 + (i - 1) * 6
  local topic, at, op, body = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4]
  local seq = fmt(first + i - 1)
  redis.call('HSET', msg, seq, body)
  redis.call('ZADD', log, seq, seq .. ' ' .. topic)
  redis.call('ZADD', KEYS[8 + i], seq, seq .. ':' .. at)
  local idem = ARGV[a + 6]
  if withIdem and idem ~= '' then
    redis.call('HSET', idemValues, idem, cjson.encode({ seq = first + i - 1, topic = topic, at = tonumber(string.match(at, '^(%d+):')) }))
    redis.call('ZADD', idemKeys, 0, idem)
  end
  redis.call('ZADD', topics, 0, topic)
  if op == '1' or op == '2' then
    local old = redis.call('HGET', rmeta, topic)
    local oldPub = old and string.match(old, '^%d+ (.*)$')
    if op == '1' then
      local pub = ARGV[a + 5]
      redis.call('HSET', retained, topic, seq .. '\\n' .. body)
      redis.call('HSET', rmeta, topic, seq .. ' ' .. pub)
      if not old then redis.call('ZADD', rkeys, 0, (string.gsub(topic, '/', '\\0'))) end
      if oldPub ~= pub then
        if oldPub then count(oldPub, -1) end
        count(pub, 1)
      end
    else
      redis.call('HDEL', retained, topic)
    end
    if op == '2' and old then
      redis.call('HDEL', rmeta, topic)
      redis.call('ZREM', rkeys, (string.gsub(topic, '/', '\\0')))
      count(oldPub, -1)
    end
  end
  frame[#frame + 1] = fmt(#body) .. '\\n'
  frame[#frame + 1] = body
end
-- Published from inside the script so that the channel's order is the seq order, also with many
-- writers. The cluster bus (src/cluster/redis-bus.ts) reads it to fan out on every process.
redis.call('PUBLISH', ARGV[3], table.concat(frame))
return first
`;

/**
 * Prunes the oldest messages of one topic: beyond `maxCount`, then while older than the age cut
 * or expired.
 * Removes at most `budget` messages per call so one call never blocks Redis for long.
 * KEYS: t:<topic>, msg, log, topics, pruned.
 * ARGV: topic, maxCount, oldBefore (publishedAt below it is too old), budget, now.
 * Returns { removed, more } where more = 1 if the budget stopped it.
 */
export const PRUNE_TOPIC_LUA = `
local tkey, msg, log, topics, pruned = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local topic, maxCount, oldBefore, budget, now = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local n = redis.call('ZCARD', tkey)
if n == 0 then
  redis.call('ZREM', topics, topic)
  return { 0, 0 }
end
local cut = math.max(0, n - maxCount)
local more = 0
if cut > budget then cut = budget; more = 1 end
-- then by age and expiry, oldest first; stops at the first message still worth keeping
while more == 0 and cut < n do
  if cut >= budget then more = 1; break end
  local page = redis.call('ZRANGE', tkey, cut, math.min(cut + 99, budget - 1))
  if #page == 0 then break end
  local young = false
  for _, m in ipairs(page) do
    local at, exp = string.match(m, '^%d+:([^:]*):(.*)$')
    if tonumber(at) >= oldBefore and (exp == '' or tonumber(exp) > now) then young = true; break end
    cut = cut + 1
  end
  if young then break end
end
if cut == 0 then return { 0, 0 } end
local gone = redis.call('ZRANGE', tkey, 0, cut - 1)
local seqs, members = {}, {}
for i, m in ipairs(gone) do
  local s = string.match(m, '^(%d+)')
  seqs[i] = s
  members[i] = s .. ' ' .. topic
end
redis.call('HDEL', msg, unpack(seqs))
redis.call('ZREM', log, unpack(members))
redis.call('ZREMRANGEBYRANK', tkey, 0, cut - 1)
redis.call('ZADD', pruned, 'GT', seqs[#seqs], topic)
if cut == n then redis.call('ZREM', topics, topic) end
return { cut, more }
`;
