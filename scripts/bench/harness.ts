/**
 * Benchmark harness (../shared/spec/bench.md). Each suite module under scripts/bench/
 * exports `suite: BenchSuite`. Figures are medians of >= 5 repetitions after a warm-up;
 * each metric carries its limit measured in the same run.
 */
export interface BenchResult {
  metric: string;
  value: number;
  unit: string;
  /** The floor measured the simplest way in the same run (null when the contract has none). */
  limit: number | null;
  /** value / limit for times, limit / value where the contract says so; null without limit. */
  ratio: number | null;
  /** The contract's goal, for the readable table (e.g. "<= 1.5"). */
  goal: string;
  /** Free-form detail for the readable table. */
  note?: string;
}

export interface BenchSuite {
  name: string;
  run(): Promise<BenchResult[]>;
}

/** Median of numbers. */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Runs fn once to warm up, then `reps` times; returns the median duration in ms. */
export function timeMedian(fn: () => void, reps = 7, warmups = 1): number {
  for (let i = 0; i < warmups; i++) fn();
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = process.hrtime.bigint();
    fn();
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return median(times);
}

export async function timeMedianAsync(fn: () => Promise<void>, reps = 7, warmups = 1): Promise<number> {
  for (let i = 0; i < warmups; i++) await fn();
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = process.hrtime.bigint();
    await fn();
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return median(times);
}

/** A time metric: ratio = value / limit. */
export function timeMetric(metric: string, valueMs: number, limitMs: number | null, goal: string, note?: string): BenchResult {
  return {
    metric, value: round(valueMs), unit: 'ms', limit: limitMs === null ? null : round(limitMs),
    ratio: limitMs === null || limitMs === 0 ? null : round(valueMs / limitMs), goal, ...(note ? { note } : {}),
  };
}

export function round(x: number): number {
  if (!Number.isFinite(x)) return x;
  const a = Math.abs(x);
  const digits = a >= 100 ? 1 : a >= 1 ? 3 : 6;
  return Number(x.toFixed(digits));
}
