import { existsSync } from 'node:fs';
import { REDIS_SERVER } from './redis-server.js';

export * from './redis-server.js';

/** Why Redis tests cannot run here, or '' when they can. Fails loudly where every component is required. */
export const redisMissing = ((): string => {
  if (existsSync(REDIS_SERVER)) return '';
  const why = `redis-server is not installed at ${REDIS_SERVER} (Debian package "redis-server")`;
  if (process.env.OMNIPUSH_REQUIRE_ALL === '1') throw new Error(`${why}, and OMNIPUSH_REQUIRE_ALL=1 requires it`);
  console.error(`\n*** SKIPPING Redis tests: ${why} ***\n`);
  return 'redis-server missing';
})();
