/**
 * `strata events`: follows the server-sent event stream and prints one line per
 * event (one JSON object per line with --json) until interrupted.
 */
import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { apiError, clientFor } from './client.js';
import { CliError, print } from './output.js';

const CATEGORIES = ['lifecycle', 'operation', 'audit', 'alert'];

export interface StreamEvent {
  seq: number;
  time: string;
  category: string;
  type: string;
  data: Record<string, unknown>;
}

function categories(value: string): string {
  const bad = value.split(',').find((c) => !CATEGORIES.includes(c));
  if (bad !== undefined) throw new InvalidArgumentError(`'${bad}' is not one of ${CATEGORIES.join(', ')}`);
  return value;
}

/**
 * Splits an SSE byte stream into the `data:` payloads of its events (comments
 * and heartbeats are skipped). Keeps the unfinished tail between chunks.
 */
export function sseParser(onData: (data: string) => void): (chunk: string) => void {
  let buffer = '';
  return (chunk) => {
    buffer += chunk.replace(/\r\n?/g, '\n');
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).replace(/^ /, ''));
      if (data.length) onData(data.join('\n'));
    }
  };
}

/** One human line: time, category, type, then the data as key=value. */
export function formatEvent(e: StreamEvent): string {
  const fields = Object.entries(e.data ?? {})
    .map(([k, v]) => `${k}=${typeof v === 'string' && !/\s/.test(v) ? v : JSON.stringify(v)}`)
    .join(' ');
  return `${e.time.replace(/\.\d+Z$/, 'Z')}  ${e.category.padEnd(9)}  ${e.type}${fields ? `  ${fields}` : ''}`;
}

export function registerEvents(program: Command): void {
  program.command('events').description('follow the event stream (lifecycle, operations, audit, alerts) until interrupted')
    .option('--category <list>', `comma-separated: ${CATEGORIES.join(',')} (default: all you may see)`, categories)
    .action(async (o: { category?: string }, cmd: Command) => {
      const c = clientFor(cmd);
      const abort = new AbortController();
      const stop = (): void => abort.abort();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      const res = await c.fetch('GET', '/v1/events', { query: { category: o.category }, signal: abort.signal }).catch((e: unknown) => {
        if (abort.signal.aborted) return null; // interrupted before the stream opened
        throw e;
      });
      if (!res) return;
      if (!res.ok || !res.body) throw apiError(res.status, await res.text());
      const feed = sseParser((data) => {
        if (c.config.json) return print(data);
        try {
          print(formatEvent(JSON.parse(data) as StreamEvent));
        } catch {
          print(data);
        }
      });
      const decoder = new TextDecoder();
      try {
        for await (const chunk of res.body) feed(decoder.decode(chunk as Uint8Array, { stream: true }));
      } catch {
        /* the connection dropped, or we aborted it on SIGINT */
      } finally {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
      }
      if (!abort.signal.aborted) throw new CliError('the event stream ended: the daemon closed it or went away', 'STRATA_ERR_UNAVAILABLE');
    });
}
