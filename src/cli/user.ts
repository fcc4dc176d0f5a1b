/** `strata user`: people and robots, each with one role. */
import { Option, type Command } from 'commander';
import { clientFor, seg, withIfMatch } from './client.js';
import { done, emit, keyValues, table, when } from './output.js';

const ROLES = ['provider-admin', 'tenant-admin', 'tenant-member', 'auditor', 'metrics-reader'];

interface User {
  id: string;
  name: string;
  role: string;
  tenant: string | null;
  createdAt: string;
}

const showUser = (u: User): string =>
  keyValues([['user', u.name], ['id', u.id], ['role', u.role], ['tenant', u.tenant], ['created', when(u.createdAt)]]);

export function registerUser(program: Command): void {
  const user = program.command('user').description('manage users and their roles');

  user.command('create <name>').description('create a user (then give it a token: strata token create --user NAME)')
    .addOption(new Option('--role <role>', 'the one role the user has').choices(ROLES).makeOptionMandatory())
    .option('--tenant <tenant>', 'the tenant of a tenant-admin or tenant-member')
    .action(async (name: string, o: { role: string; tenant?: string }, cmd: Command) => {
      const c = clientFor(cmd);
      const body = { name, role: o.role, ...(o.tenant ? { tenant: o.tenant } : {}) };
      emit(c.config.json, await c.request<User>('POST', '/v1/users', { body, idempotent: true }), showUser);
    });

  user.command('list').description('list the users you manage')
    .option('--tenant <tenant>', "only this tenant's users")
    .action(async (o: { tenant?: string }, cmd: Command) => {
      const c = clientFor(cmd);
      const res = await c.get<{ items: User[] }>('/v1/users', { tenant: o.tenant });
      emit(c.config.json, res, ({ items }) =>
        table(['NAME', 'ROLE', 'TENANT', 'CREATED'], items.map((u) => [u.name, u.role, u.tenant, when(u.createdAt)])));
    });

  user.command('show <name>').description('show a user')
    .action(async (name: string, _o: object, cmd: Command) => {
      const c = clientFor(cmd);
      emit(c.config.json, await c.get<User>(`/v1/users/${seg(name)}`), showUser);
    });

  withIfMatch(user.command('set <name>').description("change a user's role (across the tenant/provider line: a provider-admin's alone)")
    .addOption(new Option('--role <role>', 'the new role').choices(ROLES).makeOptionMandatory())
    .option('--tenant <tenant>', "the tenant of a tenant role, when not the user's own"))
    .action(async (name: string, o: { role: string; tenant?: string; ifMatch?: string }, cmd: Command) => {
      const c = clientFor(cmd);
      const res = await c.patch<User>(`/v1/users/${seg(name)}`, { role: o.role, ...(o.tenant ? { tenant: o.tenant } : {}) }, o.ifMatch);
      emit(c.config.json, { ...res.body, etag: res.etag }, (u) => `${showUser(u)}\n${keyValues([['etag', res.etag]])}`);
    });

  user.command('delete <name>').description('delete a user and all of its tokens')
    .action(async (name: string, _o: object, cmd: Command) => {
      const c = clientFor(cmd);
      await c.request('DELETE', `/v1/users/${seg(name)}`);
      done(c.config.json, `deleted user ${name}`, { deleted: 'user', name });
    });
}
