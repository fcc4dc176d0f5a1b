/**
 * `strata instance move TENANT/NAME --to URL --to-token FILE`: live-moves a
 * running instance to another Strata daemon on this machine (see docs/vm-level.md).
 * The target's provider-admin token is read from a file, never from the command
 * line (where `ps` would show it).
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { parseRef, type Ref } from './args.js';
import { clientFor, seg, type Operation } from './client.js';
import { printPending } from './operation.js';
import { emit, usageError } from './output.js';

function readToken(path: string): string {
  let token: string;
  try {
    token = readFileSync(path, 'utf8').trim();
  } catch (e) {
    throw usageError(`cannot read the target's token file ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  if (!token) throw usageError(`the target's token file ${path} is empty`);
  return token;
}

function targetUrl(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw usageError(`--to ${value}: not a URL (e.g. http://127.0.0.1:8471)`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw usageError(`--to ${value}: an http or https URL`);
  return value;
}

export function registerInstanceMove(instance: Command): void {
  instance.command('move').argument('<tenant/name>', 'the running instance', parseRef)
    .description("move a running instance live to another Strata daemon on this machine; its sites follow, and this daemon's gateway forwards them there")
    .requiredOption('--to <url>', "the target daemon's API URL")
    .requiredOption('--to-token <file>', "a file holding a provider-admin token of the target (e.g. its admin.token)")
    .option('--name <name>', 'its name on the target (default the same)')
    .option('--no-wait', 'return at once with the operation instead of waiting for it')
    .action(async (ref: Ref, o: { to: string; toToken: string; name?: string; wait: boolean }, cmd: Command) => {
      const c = clientFor(cmd);
      const body = { target: { url: targetUrl(o.to), token: readToken(o.toToken) }, ...(o.name ? { name: o.name } : {}) };
      const res = await c.request<{ operation: Operation }>('POST', `/v1/tenants/${seg(ref.tenant)}/instances/${seg(ref.name)}/move`, { body, idempotent: true });
      if (!o.wait && printPending(c.config.json, res)) return;
      const settled = await c.settle(res, o.wait);
      emit(c.config.json, settled, () => `moved ${ref.tenant}/${ref.name} to ${o.to} as ${ref.tenant}/${o.name ?? ref.name}`);
    });
}
