#!/usr/bin/env node
// Bundles the operator's console (src/console: preact + htm, uPlot) into dist/console/.
import { copyFileSync, mkdirSync, rmSync } from 'node:fs';
import { build } from 'esbuild';

// chunk names carry a content hash: old ones are removed so that dist/console holds one build
rmSync('dist/console', { recursive: true, force: true });
mkdirSync('dist/console', { recursive: true });
const common = { bundle: true, minify: true, legalComments: 'none', logLevel: 'warning' };
// splitting puts what is only imported lazily (MQTT.js, for the playground's MQTT door) in its own
// chunk; platform 'browser' picks MQTT.js's browser build through its package exports
await build({
  ...common,
  entryPoints: { console: 'src/console/main.js' },
  outdir: 'dist/console',
  chunkNames: '[name]-[hash]',
  splitting: true,
  format: 'esm',
  target: ['es2020'],
  platform: 'browser',
  sourcemap: false,
});
await build({ ...common, entryPoints: ['src/console/console.css'], outfile: 'dist/console/console.css' });
copyFileSync('src/console/index.html', 'dist/console/index.html');
