import { z } from 'zod';
import { KEY_DESCRIPTIONS } from './descriptions.js';
import { configSchema, parseConfig } from './schema.js';
import { unwrap } from './schema-walk.js';

type Tree = Record<string, unknown>;

const HEADER = [
  'Omnipush configuration: every key with its default, commented out.',
  'Uncomment a line (and the section line above it) to change it; what stays commented keeps its default.',
  'Times take seconds or a duration string: 90, "90s", "5m", "2h", "1d", "500ms".',
  'Any key can also come from the environment: http.port -> OMNIPUSH_HTTP__PORT.',
  'Keys shown as "# # key: <...>" have no default: set them to turn the feature on.',
];

function hint(t: z.ZodTypeAny): string {
  const u = unwrap(t);
  if (u instanceof z.ZodEnum) return (u.options as string[]).join('|');
  if (u instanceof z.ZodBoolean) return '<true|false>';
  if (u instanceof z.ZodNumber) return '<number>';
  if (u instanceof z.ZodArray) return '[]';
  return '<text>';
}

/** The default a field declares itself (used inside sections that have no default as a whole). */
function ownDefault(t: z.ZodTypeAny): unknown {
  while (t instanceof z.ZodOptional || t instanceof z.ZodNullable) t = t.unwrap() as z.ZodTypeAny;
  return t instanceof z.ZodDefault ? (t._def.defaultValue as () => unknown)() : undefined;
}

function describe(path: string, lines: string[]): void {
  const d = KEY_DESCRIPTIONS[path];
  if (d) lines.push(`# ${d}`);
}

/** Lines of one mapping at indent 0; nested mappings are indented by two spaces. */
function render(shape: z.ZodRawShape, values: Tree | undefined, prefix: string): string[] {
  const out: string[] = [];
  for (const [key, field] of Object.entries(shape)) {
    const path = prefix + key;
    const inner = unwrap(field as z.ZodTypeAny);
    const value = values ? values[key] : ownDefault(field as z.ZodTypeAny);
    if (!prefix) out.push('');
    describe(path, out);
    if (inner instanceof z.ZodObject) {
      const children = render(inner.shape as z.ZodRawShape, value as Tree | undefined, `${path}.`);
      // a section whose keys all lack defaults would read as null once uncommented: write it as {}
      const empty = value !== undefined && children.every((l) => l === '' || l.startsWith('#'));
      const body = [empty ? `${key}: {}  # replace {} with the keys below to set them` : `${key}:`, ...children.map((l) => `  ${l}`)];
      // a section without a default is off until written: keep it a comment even once uncommented
      out.push(...(value === undefined ? body.map((l) => `# ${l}`) : body));
    } else if (value === undefined) out.push(`# ${key}: ${hint(field as z.ZodTypeAny)}`);
    else out.push(`${key}: ${JSON.stringify(value)}`);
  }
  return out;
}

/**
 * The starter YAML of `omnipush config init`: every key of the schema with a one-line description
 * and its default, each line commented out so that the file changes nothing until edited.
 */
export function starterConfig(): string {
  const defaults = parseConfig({}) as unknown as Tree;
  const body = render(configSchema.shape, defaults, '');
  // header lines stay comments when a reader strips one "# " from every line
  const lines = [...HEADER.map((l) => `## ${l}`), ...body.map((l) => (l === '' ? '' : `# ${l}`))];
  return `${lines.join('\n')}\n`;
}
