import { readFileSync } from 'node:fs';
import { extname } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { parseConfig, type Config } from './schema.js';

/** Environment variables with the prefix that are not config keys. */
const NON_CONFIG_ENV = new Set(['OMNIPUSH_CONFIG', 'OMNIPUSH_REQUIRE_ALL', 'OMNIPUSH_PROPERTY_SEED', 'OMNIPUSH_URL', 'OMNIPUSH_TOKEN']);

type Tree = Record<string, unknown>;

function isTree(v: unknown): v is Tree {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Deep merge: objects merge key by key, everything else (arrays too) is replaced. */
export function mergeConfig(base: Tree, over: Tree): Tree {
  const out: Tree = { ...base };
  for (const [k, v] of Object.entries(over)) {
    if (v === undefined) continue;
    out[k] = isTree(v) && isTree(out[k]) ? mergeConfig(out[k] as Tree, v) : v;
  }
  return out;
}

/** Reads a YAML (.yaml/.yml) or JSON (.json) config file. */
export function readConfigFile(file: string): Tree {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`cannot read config file ${file}: ${(e as Error).message}`);
  }
  const ext = extname(file).toLowerCase();
  let data: unknown;
  try {
    if (ext === '.json') data = JSON.parse(text);
    else if (ext === '.yaml' || ext === '.yml') data = parseYaml(text);
    else throw new Error('use a .yaml, .yml or .json file');
  } catch (e) {
    throw new Error(`config file ${file}: ${(e as Error).message}`);
  }
  if (data === null || data === undefined) return {};
  if (!isTree(data)) throw new Error(`config file ${file}: the top level must be a mapping`);
  return data;
}

function camel(snake: string): string {
  return snake.toLowerCase().replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/**
 * `OMNIPUSH_HTTP__PORT=0` → `{ http: { port: 0 } }`: `__` separates levels, UPPER_SNAKE becomes
 * camelCase, values are JSON when they parse as JSON (numbers, booleans, arrays), else strings.
 */
export function configFromEnv(env: NodeJS.ProcessEnv): Tree {
  const out: Tree = {};
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith('OMNIPUSH_') || value === undefined || NON_CONFIG_ENV.has(name)) continue;
    const path = name.slice('OMNIPUSH_'.length).split('__').map(camel);
    if (path.some((p) => p === '')) throw new Error(`environment variable ${name} does not name a config key`);
    let parsed: unknown = value;
    try {
      parsed = JSON.parse(value);
    } catch {
      /* a plain string */
    }
    let node = out;
    for (const key of path.slice(0, -1)) {
      if (!isTree(node[key])) node[key] = {};
      node = node[key] as Tree;
    }
    node[path[path.length - 1]] = parsed;
  }
  return out;
}

export interface LoadOptions {
  /** Config file; default: `OMNIPUSH_CONFIG` from the environment, if set. */
  file?: string;
  env?: NodeJS.ProcessEnv;
  /** Overrides from command-line flags, nested like the config. */
  flags?: Tree;
}

/**
 * defaults < file < environment < flags, checked by the schema. Unknown keys (also unknown
 * OMNIPUSH_* variables) and bad values fail with a message naming the key.
 */
export function loadConfig(opts: LoadOptions = {}): Config {
  const env = opts.env ?? process.env;
  const file = opts.file ?? env.OMNIPUSH_CONFIG;
  let tree: Tree = file ? readConfigFile(file) : {};
  const fromEnv = configFromEnv(env);
  tree = mergeConfig(tree, fromEnv);
  tree = mergeConfig(tree, opts.flags ?? {});
  try {
    return parseConfig(tree);
  } catch (e) {
    const envNames = Object.keys(env).filter((n) => n.startsWith('OMNIPUSH_') && !NON_CONFIG_ENV.has(n));
    const hint = envNames.length ? `\n  (environment: ${envNames.join(', ')})` : '';
    throw new Error(`${(e as Error).message}${hint}`);
  }
}
