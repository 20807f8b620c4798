#!/usr/bin/env node
// Bundles the operator's console (src/console: preact + htm, uPlot) into dist/console/.
import { copyFileSync, mkdirSync } from 'node:fs';
import { build } from 'esbuild';

mkdirSync('dist/console', { recursive: true });
const common = { bundle: true, minify: true, legalComments: 'none', logLevel: 'warning' };
await build({ ...common, entryPoints: ['src/console/main.js'], outfile: 'dist/console/console.js', format: 'esm', target: ['es2020'], platform: 'browser', sourcemap: false });
await build({ ...common, entryPoints: ['src/console/console.css'], outfile: 'dist/console/console.css' });
copyFileSync('src/console/index.html', 'dist/console/index.html');
