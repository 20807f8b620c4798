import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { OmnipushError } from '../core/errors.js';
import type { Member, MemberView, PresenceBackend, PresenceEvent } from '../core/presence.js';
import { isWildcardFilter } from '../core/topic.js';
import { runScript, script } from '../store/redis-lua.js';
import type { ClusterControl } from './control.js';

/*
 * Keys under <prefix>presence:
 *   m:<filter>   hash member id → member JSON (as it joined)
 *   n:<filter>   hash member id → the nodes holding it, space-separated
 *   wild         set of wildcard filters with members (matched against a topic at read time)
 *   pos          the event position (INCR): one sequence for every topic
 *   node:<id>    set of "<g|n><filter>\n<member id>" a node holds, to take them away when it dies
 *                (g: a member with a stable id, swept a leaveGrace later; n: swept at once)
 *   nodes        set of nodes with such an index
 * Each change and its event are one script: the position, the state and the PUBLISH agree, and
 * every node hears the events in position order on one channel.
 */

const ADD = script(`
local nodes = redis.call('HGET', KEYS[2], ARGV[2])
if nodes then
  if not string.find(' ' .. nodes .. ' ', ' ' .. ARGV[3] .. ' ', 1, true) then redis.call('HSET', KEYS[2], ARGV[2], nodes .. ' ' .. ARGV[3]) end
  redis.call('SADD', KEYS[5], ARGV[8] .. ARGV[1] .. '\\n' .. ARGV[2])
  return 0
end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[5]) then return -1 end
redis.call('SADD', KEYS[5], ARGV[8] .. ARGV[1] .. '\\n' .. ARGV[2])
redis.call('SADD', KEYS[6], ARGV[3])
redis.call('HSET', KEYS[1], ARGV[2], ARGV[4])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
if ARGV[7] == '1' then redis.call('SADD', KEYS[3], ARGV[1]) end
local pos = redis.call('INCR', KEYS[4])
redis.call('PUBLISH', ARGV[6], '{"type":"join","position":' .. pos .. ',"filter":' .. cjson.encode(ARGV[1]) .. ',"member":' .. ARGV[4] .. '}')
return pos
`);

/** The removal of one holder, shared by REMOVE and SWEEP (keys built from the prefix in ARGV). */
const DROP = `
local function drop(prefix, flag, filter, id, node, channel)
  local mkey = prefix .. 'm:' .. filter
  local nkey = prefix .. 'n:' .. filter
  redis.call('SREM', prefix .. 'node:' .. node, flag .. filter .. '\\n' .. id)
  local nodes = redis.call('HGET', nkey, id)
  if not nodes then return 0 end
  local rest = {}
  for n in string.gmatch(nodes, '%S+') do if n ~= node then rest[#rest + 1] = n end end
  if #rest > 0 then
    redis.call('HSET', nkey, id, table.concat(rest, ' '))
    return 0
  end
  local m = redis.call('HGET', mkey, id)
  redis.call('HDEL', mkey, id)
  redis.call('HDEL', nkey, id)
  if redis.call('HLEN', mkey) == 0 then redis.call('SREM', prefix .. 'wild', filter) end
  local pos = redis.call('INCR', prefix .. 'pos')
  redis.call('PUBLISH', channel, '{"type":"leave","position":' .. pos .. ',"filter":' .. cjson.encode(filter) .. ',"member":' .. m .. '}')
  return pos
end
`;

const REMOVE = script(`${DROP}
return drop(ARGV[1], ARGV[6], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
`);

/**
 * The members a (dead or closing) node held leave, unless another node holds them too: with
 * ARGV[4] 'n' those without a stable id only, with 'all' every one (and the node's index goes).
 */
const SWEEP = script(`${DROP}
local prefix, node, channel, which = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
for _, e in ipairs(redis.call('SMEMBERS', prefix .. 'node:' .. node)) do
  local flag = string.sub(e, 1, 1)
  if which == 'all' or flag == which then
    local nl = string.find(e, '\\n', 1, true)
    drop(prefix, flag, string.sub(e, 2, nl - 1), string.sub(e, nl + 1), node, channel)
  end
end
if which == 'all' then
  redis.call('DEL', prefix .. 'node:' .. node)
  redis.call('SREM', prefix .. 'nodes', node)
end
return 1
`);

/** The position and the member JSONs of a topic: its own filter's, then every matching wildcard filter's. */
const MEMBERS = script(`
local prefix, topic = ARGV[1], ARGV[2]
local function matches(f, t)
  local fc = string.sub(f, 1, 1)
  if string.sub(t, 1, 1) == '$' and (fc == '+' or fc == '#') then return false end
  local fl, tl = {}, {}
  for p in string.gmatch(f .. '/', '([^/]*)/') do fl[#fl + 1] = p end
  for p in string.gmatch(t .. '/', '([^/]*)/') do tl[#tl + 1] = p end
  for i = 1, #fl do
    if fl[i] == '#' then return true end
    if i > #tl then return false end
    if fl[i] ~= '+' and fl[i] ~= tl[i] then return false end
  end
  return #fl == #tl
end
local out = { redis.call('GET', prefix .. 'pos') or '0' }
for _, v in ipairs(redis.call('HVALS', prefix .. 'm:' .. topic)) do out[#out + 1] = v end
for _, f in ipairs(redis.call('SMEMBERS', prefix .. 'wild')) do
  if matches(f, topic) then
    for _, v in ipairs(redis.call('HVALS', prefix .. 'm:' .. f)) do out[#out + 1] = v end
  end
end
return out
`);

/**
 * Presence for a cluster: members in Redis keyed by filter with the nodes holding each, events on
 * one pub/sub channel. A member held on two nodes (moving between them) joins once and leaves
 * when the last lets go. A node that leaves the live list (control.ts) has its members swept:
 * at once those without a stable id, `leaveGrace` later the others, so that a client whose node
 * died and which reconnected elsewhere meanwhile does not flap.
 */
export class RedisPresence implements PresenceBackend {
  onEvent: (e: PresenceEvent) => void = () => undefined;
  private readonly redis: Redis;
  private readonly sub: Redis;
  private readonly prefix: string;
  private readonly channel: string;
  private closed = false;

  private readonly graceTimers = new Set<NodeJS.Timeout>();

  private constructor(
    url: string,
    prefix: string,
    private readonly control: ClusterControl,
    private readonly log: Logger,
    private readonly leaveGraceMs: number,
  ) {
    this.prefix = `${prefix}presence:`;
    this.channel = `${prefix}presence:events`;
    const common = { lazyConnect: true, connectTimeout: 5_000, retryStrategy: (n: number) => Math.min(50 * 2 ** Math.min(n, 6), 2_000) };
    this.redis = new Redis(url, common);
    this.sub = new Redis(url, common);
    this.redis.on('error', () => undefined);
    this.sub.on('error', () => undefined);
    this.sub.on('message', (_ch: string, text: string) => {
      let e: PresenceEvent;
      try {
        e = JSON.parse(text) as PresenceEvent;
      } catch {
        return;
      }
      this.onEvent(e);
    });
  }

  static async start(url: string, prefix: string, control: ClusterControl, log: Logger, leaveGraceMs: number): Promise<RedisPresence> {
    const p = new RedisPresence(url, prefix, control, log, leaveGraceMs);
    await Promise.all([p.redis.connect(), p.sub.connect()]);
    await p.sub.subscribe(p.channel);
    control.onTick((_nodes, changed) => {
      if (changed) void p.sweepDead(false);
    });
    // nodes found dead at start have been so for an unknown while: no grace
    await p.sweepDead(true);
    return p;
  }

  /** Members of nodes no longer live leave (every node tries; the scripts make each leave happen once). */
  private async sweepDead(now: boolean): Promise<void> {
    if (this.closed) return;
    try {
      for (const node of await this.redis.smembers(`${this.prefix}nodes`)) {
        if (this.control.isLive(node)) continue;
        if (now || this.leaveGraceMs <= 0) {
          await this.sweep(node, 'all');
          continue;
        }
        await this.sweep(node, 'n');
        const t = setTimeout(() => {
          this.graceTimers.delete(t);
          if (!this.closed && !this.control.isLive(node)) this.sweep(node, 'all').catch((e: unknown) => this.log.warn({ err: e, node }, 'presence of a dead node not swept'));
        }, this.leaveGraceMs);
        t.unref();
        this.graceTimers.add(t);
      }
    } catch (e) {
      this.log.warn({ err: e }, 'presence of dead nodes not swept; next node change retries');
    }
  }

  private async sweep(node: string, which: 'n' | 'all'): Promise<void> {
    await runScript(this.redis, SWEEP, [], [this.prefix, node, this.channel, which]);
  }

  /** `g`: a member with a stable id (a string key), whose leave waits for the grace when its node dies. */
  private static flag(member: Member): string {
    return typeof member.key === 'string' ? 'g' : 'n';
  }

  add(filter: string, member: Member, maxMembers: number): void {
    const p = this.prefix;
    const keys = [`${p}m:${filter}`, `${p}n:${filter}`, `${p}wild`, `${p}pos`, `${p}node:${this.control.nodeId}`, `${p}nodes`];
    const args = [filter, member.id, this.control.nodeId, JSON.stringify(member), String(maxMembers), this.channel, isWildcardFilter(filter) ? '1' : '0', RedisPresence.flag(member)];
    runScript(this.redis, ADD, keys, args).catch((e: unknown) => this.log.warn({ err: e, filter, member: member.id }, 'presence join not recorded'));
  }

  remove(filter: string, member: Member): void {
    runScript(this.redis, REMOVE, [], [this.prefix, filter, member.id, this.control.nodeId, this.channel, RedisPresence.flag(member)]).catch((e: unknown) =>
      this.log.warn({ err: e, filter, member: member.id }, 'presence leave not recorded'),
    );
  }

  async members(topic: string): Promise<{ position: number; members: MemberView[] }> {
    let raw: string[];
    try {
      raw = (await runScript(this.redis, MEMBERS, [], [this.prefix, topic])) as string[];
    } catch (e) {
      throw new OmnipushError('unavailable', `presence is unreachable: ${(e as Error).message}`);
    }
    const seen = new Set<string>();
    const members: MemberView[] = [];
    for (let i = 1; i < raw.length; i++) {
      const m = JSON.parse(raw[i]) as MemberView;
      if (seen.has(m.id)) continue;
      seen.add(m.id);
      members.push(m);
    }
    members.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    return { position: Number(raw[0]), members };
  }

  /**
   * This node's members without a stable id leave with it; those with one are left to the other
   * nodes' sweep a `leaveGrace` later, so that clients moving to them during a restart do not flap.
   * (A crash leaves all of it to the others.)
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.graceTimers) clearTimeout(t);
    await this.sweep(this.control.nodeId, this.leaveGraceMs > 0 ? 'n' : 'all').catch(() => undefined);
    this.redis.disconnect();
    this.sub.disconnect();
  }
}
