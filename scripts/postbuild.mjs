#!/usr/bin/env node
// After tsc: make the bin entry points executable (tsc does not keep modes), so that
// `npx vitsd` / `npx vitsctl` work from a fresh clone.
import { chmodSync, existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
for (const rel of Object.values(pkg.bin ?? {})) {
  const file = join(root, rel);
  if (existsSync(file)) chmodSync(file, 0o755);
  else console.error(`postbuild: bin ${rel} was not built`);
}
