/**
 * `npm run fuzz` — long-running randomized robustness checks, beyond the property tests in
 * `npm test` (which are bounded to keep the suite fast).
 *
 *   npm run fuzz -- [--target commands|restore|all] [--seconds N] [--seed N]
 *
 * Each target is deterministic for a seed; a failure prints the seed and step to reproduce it
 * and exits 1.
 */
import { Rng } from './rng.js';
import { commandsInvariant, commandsStep, setupCommandsFuzz } from './commands.js';

interface Target {
  setup(rng: Rng): unknown;
  step(state: unknown, rng: Rng): void;
  invariant(state: unknown): string | null;
}

const TARGETS: Record<string, Target> = {
  commands: {
    setup: () => setupCommandsFuzz(),
    step: (s, rng) => commandsStep(s as ReturnType<typeof setupCommandsFuzz>, rng),
    invariant: (s) => commandsInvariant(s as ReturnType<typeof setupCommandsFuzz>),
  },
};

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
}

if (process.argv.includes('--help')) {
  console.log('usage: npm run fuzz -- [--target commands|restore|all] [--seconds N] [--seed N]');
  process.exit(0);
}
const targetName = arg('target') ?? 'all';
const seconds = Number(arg('seconds') ?? '20');
const seed = Number(arg('seed') ?? String(Date.now() % 0x7fff_ffff));
const names = targetName === 'all' ? Object.keys(TARGETS) : [targetName];
let failed = false;

for (const name of names) {
  const target = TARGETS[name];
  if (!target) {
    console.error(`unknown target ${name}; targets: ${Object.keys(TARGETS).join(', ')}`);
    process.exit(2);
  }
  const rng = new Rng(seed);
  const state = target.setup(rng);
  const deadline = Date.now() + (seconds * 1000) / names.length;
  let steps = 0;
  const t0 = Date.now();
  try {
    while (Date.now() < deadline) {
      for (let i = 0; i < 256; i++, steps++) target.step(state, rng);
      const problem = target.invariant(state);
      if (problem) throw new Error(`invariant violated: ${problem}`);
    }
    const secs = (Date.now() - t0) / 1000;
    console.log(`${name}: ${steps} steps in ${secs.toFixed(1)} s (${Math.round(steps / secs)}/s), seed ${seed}: ok`);
  } catch (e) {
    failed = true;
    console.error(`${name}: FAILED at step ~${steps} with seed ${seed}: ${(e as Error).stack ?? String(e)}`);
  }
}
process.exit(failed ? 1 : 0);
