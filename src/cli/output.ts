/**
 * What the CLI prints: aligned tables and key/value blocks for people, the API's
 * JSON with `--json`, a spinner on a terminal only, and errors as exactly one
 * line on stderr: `strata: <message> (<code>)`.
 */
import { messageOf } from '../core/errors.js';

/** An expected failure: printed as one line, never with a stack. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly code?: string,
    /** Process exit status: 1 for API and runtime errors, 2 for bad usage. */
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/** A usage mistake the API never saw (bad TENANT/NAME, missing flag): exit status 2. */
export const usageError = (message: string): CliError => new CliError(message, 'STRATA_ERR_VALIDATION', 2);

/** The single stderr line for an error. */
export function formatError(e: unknown): string {
  if (e instanceof CliError) return `strata: ${oneLine(e.message)}${e.code ? ` (${e.code})` : ''}`;
  // StrataError (STRATA_ERR_…) from the daemon in `strata up`, or a Node system error (EACCES, …)
  const code = (e as { code?: unknown })?.code;
  const message = messageOf(e);
  return `strata: ${oneLine(message)} (${typeof code === 'string' ? code : 'STRATA_ERR_INTERNAL'})`;
}

export const oneLine = (s: string): string => s.replace(/\s*\n\s*/g, ' ').trim();

/** Any value as a table cell: null and undefined as "-", objects as compact JSON. */
export function cell(v: unknown): string {
  if (v === null || v === undefined || v === '') return '-';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

/** Columns padded to their widest cell, two spaces apart; the last column is not padded. */
export function table(headers: string[], rows: unknown[][]): string {
  const cells = [headers, ...rows.map((r) => r.map(cell))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells
    .map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd())
    .join('\n');
}

/** `key: value` lines with the values aligned. */
export function keyValues(pairs: Array<[string, unknown]>): string {
  const width = Math.max(...pairs.map(([k]) => k.length)) + 1;
  return pairs.map(([k, v]) => `${`${k}:`.padEnd(width)} ${cell(v)}`).join('\n');
}

/** ISO time without milliseconds, for tables. */
export const when = (iso: string | null | undefined): string => (iso ? iso.replace(/\.\d+Z$/, 'Z') : '-');

export function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}

export const print = (text: string): void => {
  process.stdout.write(`${text}\n`);
};

export const printJson = (value: unknown): void => print(JSON.stringify(value, null, 2));

/** Prints `value` as JSON with --json, else the human rendering. */
export function emit<T>(json: boolean, value: T, human: (v: T) => string): void {
  if (json) printJson(value);
  else print(human(value));
}

export interface Spinner {
  update(text: string): void;
  stop(): void;
}

/** A spinner on stderr while long work runs; does nothing unless stderr is a terminal. */
export function spinner(text: string, stream: NodeJS.WriteStream = process.stderr): Spinner {
  if (!stream.isTTY) return { update() {}, stop() {} };
  const frames = '⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏';
  let i = 0;
  let label = text;
  const draw = (): void => {
    stream.write(`\r\x1b[2K${frames[i++ % frames.length]} ${label}`);
  };
  draw();
  const timer = setInterval(draw, 100);
  return {
    update(t) {
      label = t;
    },
    stop() {
      clearInterval(timer);
      stream.write('\r\x1b[2K');
    },
  };
}

/** The answer to a call with no body (204): a sentence, or with --json a small object saying what happened. */
export function done(json: boolean, message: string, value: Record<string, unknown>): void {
  print(json ? JSON.stringify(value) : message);
}
