/**
 * Loads the N-API addon built from native-shim/vitsd_native.c (`npm run build:native`).
 *
 * The package root is found by walking up from this module to the package.json named
 * "vitsd", so the same code works from src/native/ (tsx, vitest) and from dist/src/native/
 * (compiled). VITSD_NATIVE_ADDON may name another .node file (tests of a debug build).
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NativeBinding } from './binding.js';

export type { NativeBinding, PollHandle } from './binding.js';

const ADDON_RELATIVE_PATH = join('native-shim', 'build', 'vitsd_native.node');

/** Directory of the vitsd package (the one holding package.json and native-shim/). */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let depth = 0; depth < 8; depth++) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest)) {
      try {
        const parsed = JSON.parse(readFileSync(manifest, 'utf8')) as { name?: unknown };
        if (parsed.name === 'vitsd') return dir;
      } catch {
        // an unreadable package.json is not ours: keep walking up
      }
    }
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  throw new Error(`vitsd: cannot find the package root (package.json named "vitsd") above ${fileURLToPath(import.meta.url)}`);
}

/** Absolute path of the addon that loadNative() loads. */
export function nativeAddonPath(): string {
  return process.env['VITSD_NATIVE_ADDON'] ?? join(packageRoot(), ADDON_RELATIVE_PATH);
}

function loadNative(): NativeBinding {
  const path = nativeAddonPath();
  if (!existsSync(path)) {
    throw new Error(
      `vitsd: the native addon is missing (${path}). Build it with \`npm run build:native\` ` +
        '(needs a C compiler and the Node headers in /usr/include/node).',
    );
  }
  const require = createRequire(import.meta.url);
  try {
    return require(path) as NativeBinding;
  } catch (e) {
    const reason = e instanceof Error ? e.message : String(e);
    throw new Error(`vitsd: cannot load the native addon ${path}: ${reason}. Rebuild it with \`npm run build:native\`.`);
  }
}

/** The native shim (see binding.ts for every function and its error convention). */
export const native: NativeBinding = loadNative();
