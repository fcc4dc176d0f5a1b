/**
 * `strata logs [-f] [--tail N] TENANT/NAME`: an instance's captured output
 * (stdout and stderr of a container, the serial console of a VM, the log of an
 * env instance), as it is stored; `-f` keeps following until interrupted or the
 * instance is deleted.
 */
import type { Command } from 'commander';
import { integer, parseRef, type Ref } from './args.js';
import { apiError, clientFor, seg } from './client.js';

export function registerLogs(program: Command): void {
  program.command('logs').argument('<tenant/name>', 'the instance, e.g. acme/web', parseRef)
    .description("print an instance's captured output; -f follows it")
    .option('-f, --follow', 'keep printing new output until interrupted (or the instance is deleted)')
    .option('--tail <n>', 'only the last N lines of what is stored', integer(0, 1_000_000))
    .action(async (ref: Ref, o: { follow?: boolean; tail?: number }, cmd: Command) => {
      const c = clientFor(cmd);
      const abort = new AbortController();
      const stop = (): void => abort.abort();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      try {
        const res = await c.fetch('GET', `/v1/tenants/${seg(ref.tenant)}/instances/${seg(ref.name)}/logs`, {
          query: { follow: o.follow ? 'true' : undefined, tail: o.tail }, signal: abort.signal,
        }).catch((e: unknown) => {
          if (abort.signal.aborted) return null;
          throw e;
        });
        if (!res) return;
        if (!res.ok || !res.body) throw apiError(res.status, await res.text());
        try {
          for await (const chunk of res.body) {
            if (!process.stdout.write(chunk as Uint8Array)) await new Promise((r) => process.stdout.once('drain', r));
          }
        } catch {
          /* interrupted, or the connection dropped */
        }
      } finally {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
      }
    });
}
