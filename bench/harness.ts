/**
 * What every benchmark shares: its options, the result it returns, timing
 * helpers, and the report. A benchmark module's default export is a `Bench`;
 * `run.ts` calls it and prints the result — a human summary, and with `--json`
 * one JSON object as the last line:
 *
 *     {"bench": NAME, "metric", "unit", "value", "anchor", "anchor_value", "ratio", ...extra}
 *
 * `ratio` is value / anchor_value, so above 1 means Strata is ahead when the
 * metric is higher-is-better.
 */
import { performance } from 'node:perf_hooks';

export interface BenchOptions {
  json: boolean;
  /** `--key=value` and `--key value` options other than --json, e.g. `--appends=10000`. */
  options: Record<string, string>;
}

export interface BenchResult {
  metric: string;
  unit: string;
  value: number;
  /** What the figure is compared with, and where that figure comes from. */
  anchor: string;
  anchor_value: number;
  /** Lines for people, printed before the JSON line. */
  summary: string[];
  extra?: Record<string, unknown>;
}

export type Bench = (opts: BenchOptions) => Promise<BenchResult>;

export function parseBenchArgs(argv: readonly string[]): BenchOptions {
  const options: Record<string, string> = {};
  let json = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--json') json = true;
    else if (arg.startsWith('--')) {
      const [key, inline] = arg.slice(2).split('=', 2) as [string, string | undefined];
      const next = argv[i + 1];
      options[key] = inline ?? (next !== undefined && !next.startsWith('--') ? (i++, next) : 'true');
    }
  }
  return { json, options };
}

/** A positive integer option, or `fallback`. */
export function intOption(opts: BenchOptions, key: string, fallback: number): number {
  const raw = opts.options[key];
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`--${key} must be a positive integer, got '${raw}'`);
  return n;
}

/** Milliseconds `fn` takes, and what it returned. */
export async function timed<T>(fn: () => T | Promise<T>): Promise<{ ms: number; value: T }> {
  const start = performance.now();
  const value = await fn();
  return { ms: performance.now() - start, value };
}

/** The p-th percentile (0..100) of an ascending array. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

const round = (x: number): number => (Number.isFinite(x) ? Math.round(x * 1000) / 1000 : x);

export function printResult(name: string, result: BenchResult, opts: BenchOptions): void {
  const ratio = result.value / result.anchor_value;
  for (const line of result.summary) console.log(line);
  console.log(`${name}: ${round(result.value)} ${result.unit} (${result.metric}); anchor ${result.anchor}: ${result.anchor_value} → ratio ${round(ratio)}`);
  if (opts.json) {
    console.log(JSON.stringify({
      bench: name, metric: result.metric, unit: result.unit, value: round(result.value),
      anchor: result.anchor, anchor_value: result.anchor_value, ratio: round(ratio), ...result.extra,
    }));
  }
}
