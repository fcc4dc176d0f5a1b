/** `strata token`: bearer tokens. The secret is shown once, when the token is created. */
import type { Command } from 'commander';
import { integer } from './args.js';
import { clientFor, seg } from './client.js';
import { done, emit, table, when } from './output.js';

interface Token {
  id: string;
  user: string;
  name: string;
  createdAt: string;
  expiresAt: string | null;
  lastUsedAt: string | null;
}

export function registerToken(program: Command): void {
  const token = program.command('token').description('manage API tokens');

  token.command('create').description('create a token for yourself or a user you manage; prints the secret once')
    .option('--user <name>', 'the user the token acts as (default: you)')
    .option('--name <name>', 'a label for the token', 'default')
    .option('--expires-in-days <n>', 'expire after N days (default: never)', integer(1, 3650))
    .action(async (o: { user?: string; name: string; expiresInDays?: number }, cmd: Command) => {
      const c = clientFor(cmd);
      const body = { name: o.name, ...(o.user ? { user: o.user } : {}), ...(o.expiresInDays ? { expiresInDays: o.expiresInDays } : {}) };
      const res = await c.request<{ token: Token; secret: string }>('POST', '/v1/tokens', { body, idempotent: true });
      emit(c.config.json, res, ({ token: t, secret }) => [
        `Created token ${t.id} (${t.name}) for user ${t.user}, expires ${t.expiresAt ? when(t.expiresAt) : 'never'}.`,
        'Copy the secret now: it is shown only this once.',
        '',
        `  ${secret}`,
        '',
        'Use it as STRATA_TOKEN, with --token, or as "token" in ~/.config/strata/config.json.',
      ].join('\n'));
    });

  token.command('list').description('list your tokens, or those of a user you manage (never the secrets)')
    .option('--user <name>', "this user's tokens")
    .action(async (o: { user?: string }, cmd: Command) => {
      const c = clientFor(cmd);
      const res = await c.get<{ items: Token[] }>('/v1/tokens', { user: o.user });
      emit(c.config.json, res, ({ items }) => table(
        ['ID', 'NAME', 'USER', 'CREATED', 'EXPIRES', 'LAST USED'],
        items.map((t) => [t.id, t.name, t.user, when(t.createdAt), when(t.expiresAt), when(t.lastUsedAt)]),
      ));
    });

  token.command('revoke <id>').description('revoke a token at once')
    .action(async (id: string, _o: object, cmd: Command) => {
      const c = clientFor(cmd);
      await c.request('DELETE', `/v1/tokens/${seg(id)}`);
      done(c.config.json, `revoked token ${id}`, { revoked: 'token', id });
    });
}
