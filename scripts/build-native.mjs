#!/usr/bin/env node
// Builds native-shim/vitsd_native.c into native-shim/build/vitsd_native.node.
//
// Why not node-gyp: an N-API addon needs only the node_api.h/uv.h headers that ship with
// Node; it links against nothing. Calling the C compiler directly keeps `npm ci` offline
// (node-gyp downloads headers unless nodedir is set) and takes well under a second.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(root, 'native-shim', 'vitsd_native.c');
const outDir = join(root, 'native-shim', 'build');
const out = join(outDir, 'vitsd_native.node');

function headerDir() {
  const candidates = [
    process.env.npm_config_nodedir && join(process.env.npm_config_nodedir, 'include', 'node'),
    resolve(dirname(process.execPath), '..', 'include', 'node'),
    '/usr/include/node',
    '/usr/local/include/node',
  ].filter(Boolean);
  for (const dir of candidates) {
    if (existsSync(join(dir, 'node_api.h')) && existsSync(join(dir, 'uv.h'))) return dir;
  }
  console.error(`build-native: node_api.h/uv.h not found in: ${candidates.join(', ')}`);
  process.exit(1);
}

if (!existsSync(src)) {
  console.error(`build-native: ${src} is missing`);
  process.exit(1);
}
if (process.argv.includes('--if-stale') && existsSync(out) && statSync(out).mtimeMs > statSync(src).mtimeMs) {
  process.exit(0);
}
mkdirSync(outDir, { recursive: true });
const cc = process.env.CC || 'cc';
const args = [
  '-std=gnu11', '-O2', '-g', '-Wall', '-Wextra', '-Wno-unused-parameter',
  '-fPIC', '-shared', '-fvisibility=hidden',
  `-I${headerDir()}`,
  '-DNAPI_VERSION=8',
  '-o', out, src,
];
const r = spawnSync(cc, args, { stdio: 'inherit' });
if (r.status !== 0) {
  console.error(`build-native: ${cc} ${args.join(' ')} failed (${r.error?.message ?? `exit ${r.status}`})`);
  process.exit(1);
}
console.log(`build-native: built ${out}`);
