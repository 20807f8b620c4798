#!/usr/bin/env node
// Bundles the client SDK for browsers: dist/client/omnipush.js (ESM) and omnipush.iife.js (global `Omnipush`).
import { build } from 'esbuild';

const common = { entryPoints: ['src/client/index.ts'], bundle: true, minify: true, sourcemap: true, target: ['es2020'], platform: 'browser', legalComments: 'none' };
await build({ ...common, format: 'esm', outfile: 'dist/client/omnipush.js' });
await build({ ...common, format: 'iife', globalName: 'Omnipush', outfile: 'dist/client/omnipush.iife.js' });
