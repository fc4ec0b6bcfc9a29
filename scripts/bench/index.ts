/**
 * `npm run bench` — runs every suite and prints a readable table;
 * `npm run --silent bench -- --json` prints one JSON object per metric and nothing else.
 * `-- --only NAME[,NAME]` runs the named suites only.
 */
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { BenchResult, BenchSuite } from './harness.js';

const json = process.argv.includes('--json');
const onlyIdx = process.argv.indexOf('--only');
const only = onlyIdx > 0 ? new Set((process.argv[onlyIdx + 1] ?? '').split(',')) : null;

const here = dirname(fileURLToPath(import.meta.url));
const files = readdirSync(here)
  .filter((f) => f.endsWith('.bench.js'))
  .sort();

const all: BenchResult[] = [];
for (const file of files) {
  const mod = (await import(pathToFileURL(join(here, file)).href)) as { suite?: BenchSuite };
  const suite = mod.suite;
  if (!suite || (only && !only.has(suite.name))) continue;
  if (!json) process.stderr.write(`running ${suite.name}...\n`);
  const results = await suite.run();
  for (const r of results) {
    all.push(r);
    if (json) {
      process.stdout.write(JSON.stringify({ metric: r.metric, value: r.value, unit: r.unit, limit: r.limit, ratio: r.ratio }) + '\n');
    }
  }
}

if (!json) {
  const rows = all.map((r) => [r.metric, String(r.value), r.unit, r.limit === null ? '-' : String(r.limit), r.ratio === null ? '-' : String(r.ratio), r.goal, r.note ?? '']);
  const head = ['metric', 'value', 'unit', 'limit', 'ratio', 'goal', 'note'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const fmt = (row: string[]) => row.map((c, i) => c.padEnd(widths[i]!)).join('  ');
  console.log(fmt(head));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const row of rows) console.log(fmt(row));
}
