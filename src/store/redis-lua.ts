import { createHash } from 'node:crypto';
import type { Redis, RedisKey } from 'ioredis';

/** A Lua script with its SHA-1, so that calls send the digest instead of the whole text. */
export interface Script {
  lua: string;
  sha: string;
}

export const script = (lua: string): Script => ({ lua, sha: createHash('sha1').update(lua).digest('hex') });

/** EVALSHA, falling back to EVAL when Redis lost its script cache (a restart, SCRIPT FLUSH). */
export async function runScript(redis: Redis, s: Script, keys: RedisKey[], args: Array<string | Buffer>): Promise<unknown> {
  try {
    return await redis.evalsha(s.sha, keys.length, ...keys, ...args);
  } catch (e) {
    if (!(e instanceof Error) || !e.message.startsWith('NOSCRIPT')) throw e;
    return redis.eval(s.lua, keys.length, ...keys, ...args);
  }
}
